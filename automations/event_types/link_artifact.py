from events.models import EventType

from ..models import ScopeType
from ..spec import Regex, regex_search
from . import register
from .base import ArtifactEvent


@register
class LinkArtifact(ArtifactEvent):
    """A version linked into a registry collection, optionally with an alias matching a regex."""

    name = EventType.LINK_ARTIFACT
    records = (EventType.LINK_ARTIFACT,)
    scopes = (ScopeType.REGISTRY, ScopeType.REGISTRY_COLLECTION, ScopeType.TEAM)
    fields = {"alias_regex": Regex(help="LINK_ARTIFACT: only links with an alias matching this regex.")}

    def match(self, automation, event, condition):
        pattern, aliases = automation.event_filter.get("alias_regex"), event.facts.get("aliases", [])
        if not pattern:
            return {"alias": ", ".join(aliases)}
        hits = [a for a in aliases if regex_search(pattern, a)]
        return {"alias": hits[0]} if hits else None

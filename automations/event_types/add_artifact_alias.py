from events.models import EventType

from ..models import ScopeType
from ..spec import Regex, regex_search
from . import register
from .base import ArtifactEvent


@register
class AddArtifactAlias(ArtifactEvent):
    """An alias matching a regex added to a version (artifact or registry collection)."""

    name = EventType.ADD_ARTIFACT_ALIAS
    records = (EventType.ADD_ARTIFACT_ALIAS,)
    scopes = (ScopeType.PROJECT, ScopeType.ARTIFACT_COLLECTION, ScopeType.REGISTRY, ScopeType.REGISTRY_COLLECTION, ScopeType.TEAM)
    fields = {"alias_regex": Regex(required=True, help="ADD_ARTIFACT_ALIAS (required): regex searched in the alias (anchor with ^ and $).")}

    def match(self, automation, event, condition):
        alias = event.facts.get("alias")
        return {"alias": event.facts["alias"]} if regex_search(automation.event_filter["alias_regex"], alias) else None

from events.models import EventType

from ..models import ScopeType
from ..spec import Regex, regex_search
from . import register
from .base import ArtifactEvent


@register
class AddArtifactTag(ArtifactEvent):
    """A tag matching a regex added to a version (artifact or registry collection)."""

    name = EventType.ADD_ARTIFACT_TAG
    records = (EventType.ADD_ARTIFACT_TAG,)
    scopes = (ScopeType.PROJECT, ScopeType.ARTIFACT_COLLECTION, ScopeType.REGISTRY, ScopeType.REGISTRY_COLLECTION, ScopeType.TEAM)
    fields = {"tag_regex": Regex(required=True, help="Regex searched in the tag (anchor with ^ and $). Required for ADD_ARTIFACT_TAG.")}

    def match(self, automation, event, condition):
        tag = event.facts.get("tag")
        return {"tag": event.facts["tag"]} if regex_search(automation.event_filter["tag_regex"], tag) else None

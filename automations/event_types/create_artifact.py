from events.models import EventType

from ..models import ScopeType
from ..spec import Text
from . import register
from .base import ArtifactEvent


@register
class CreateArtifact(ArtifactEvent):
    """A new version in a project's artifact collection, optionally of one collection type."""

    name = EventType.CREATE_ARTIFACT
    records = (EventType.CREATE_ARTIFACT,)
    scopes = (ScopeType.PROJECT, ScopeType.ARTIFACT_COLLECTION, ScopeType.TEAM)
    fields = {"collection_type": Text(64, optional=True, help="CREATE_ARTIFACT: only collections of this type, e.g. model.")}

    def match(self, automation, event, condition):
        wanted = automation.event_filter.get("collection_type")
        return {} if not wanted or wanted == event.facts.get("collection_type") else None

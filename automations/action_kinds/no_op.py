from ..models import ActionType
from . import register
from .base import ActionKind


@register
class NoOp(ActionKind):
    """Records the execution and sends nothing."""

    name = ActionType.NO_OP
    fields = {}
    sends = False

    def parse(self, team, data, reader):
        return None, {}

from events.models import EventType

from ..spec import States
from . import register
from .base import STATE_NAMES, RunEvent, run_filter_field


@register
class RunState(RunEvent):
    """A run entering one of the chosen states (CRASHED counts as FAILED; KILLED never)."""

    name = EventType.RUN_STATE
    records = (EventType.RUN_STATE,)
    fields = {"states": States(help="RUN_STATE: CRASHED counts as FAILED; KILLED never triggers."), "run_filter": run_filter_field()}

    def match_run(self, automation, event, condition):
        state = STATE_NAMES.get(event.facts.get("new_state"))
        if state == STATE_NAMES.get(event.facts.get("old_state")):
            return None  # crashed → failed: the run was FAILED already, it enters nothing
        return {"run_state": event.facts["new_state"]} if state in automation.event_filter["states"] else None

    def sample_state(self, automation):
        states = automation.event_filter.get("states") or ["RUNNING"]
        return states[0].lower()

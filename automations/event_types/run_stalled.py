"""RUN_STALLED: a run still `running` that has logged nothing — history, summary, state — for
`minutes`. Reported once per silence, with ${run_id}, ${run_name} and ${last_activity}; it
re-arms when the run logs again. Found by the periodic sweep, so it costs nothing per logged row:
a run's last activity is the later of `Run.updated_at` (summary, state, config) and its metrics'
`RunMetric.updated_at` (history), both written anyway."""

import time
from datetime import timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import Exists, Max, OuterRef
from django.utils import timezone

from events.models import Event, EventType, record_event
from tracking.models import Run, RunMetric, RunState

from ..spec import Integer
from . import register
from .base import RunEvent, run_filter_field

_last_sweep = [0.0]  # monotonic time of this process's last look


def minute():
    """Seconds in one of `minutes` (60; a test server may shrink it, see RUN_STALLED_MINUTE_SECONDS)."""
    return settings.RUN_STALLED_MINUTE_SECONDS


def last_activity(run):
    logged = RunMetric.objects.filter(run_id=run.pk).aggregate(last=Max("updated_at"))["last"]
    return max(filter(None, (run.updated_at, logged)))


@register
class RunStalled(RunEvent):
    name = EventType.RUN_STALLED
    records = (EventType.RUN_STALLED,)
    fields = {"minutes": Integer(10, 1, 10080, help="RUN_STALLED: minutes without anything logged"), "run_filter": run_filter_field()}
    variables = {"last_activity": "RUN_STALLED: when the run last logged anything (ISO 8601, UTC)"}

    def wants_condition(self, automation, event):
        return True

    def match_run(self, automation, event, condition):
        """Fire once per silence: when the run is still running and silent for `minutes`, unless
        this automation reported it already and the run has not logged since."""
        run = Run.objects.get(pk=event.run_id)
        last = last_activity(run)
        now = timezone.now()
        silent = run.state == RunState.RUNNING and now - last >= timedelta(seconds=automation.event_filter["minutes"] * minute())
        reported = condition.met and condition.last_fired_at is not None and condition.last_fired_at >= last
        condition.met = silent
        condition.last_event_id = max(condition.last_event_id, event.pk)
        if silent and not reported:
            condition.last_fired_at = now
        condition.changed = True
        if not silent or reported:
            return None
        return {"last_activity": last.isoformat()}

    def sample(self, automation, context):
        super().sample(automation, context)
        context.update(last_activity="2026-01-01T00:00:00+00:00")

    def sentence(self, context):
        return f"run {context['run_name']} ({context['run_id']}) has logged nothing since {context.get('last_activity') or 'it started'}"

    def sweep(self, now=None):
        """Record a RUN_STALLED event for each running run some enabled automation finds silent
        and has not reported yet; the usual evaluation decides per automation. Looks at most every
        RUN_STALLED_SWEEP_SECONDS per process."""
        if time.monotonic() - _last_sweep[0] < settings.RUN_STALLED_SWEEP_SECONDS:
            return 0
        _last_sweep[0] = time.monotonic()
        from ..models import Automation, RunCondition

        now = now or timezone.now()
        watching = Automation.objects.filter(enabled=True, event_type=self.name, project__isnull=False).values_list("pk", "project_id", "event_filter")
        pending = Event.objects.filter(type=self.name, run_id=OuterRef("pk"), evaluated_at__isnull=True)
        found = {}
        for pk, project_id, event_filter in watching:
            cutoff = now - timedelta(seconds=event_filter.get("minutes", 10) * minute())
            recent = RunMetric.objects.filter(run_id=OuterRef("pk"), updated_at__gte=cutoff)
            silent = Run.objects.filter(project_id=project_id, state=RunState.RUNNING, updated_at__lt=cutoff).exclude(Exists(recent)).exclude(Exists(pending))
            reported = {c.run_id: c for c in RunCondition.objects.filter(automation_id=pk, met=True, run__in=silent)}
            for run in silent.select_related("project")[:500]:
                last = last_activity(run)
                done = reported.get(run.pk)
                if done is None or done.last_fired_at is None or done.last_fired_at < last:
                    found.setdefault(run.pk, (run, last))
        for run, last in found.values():
            with transaction.atomic():
                record_event(type=self.name, team_id=run.project.team_id, project_id=run.project_id, run=run,
                             facts={"last_activity": last.isoformat()})
        return len(found)

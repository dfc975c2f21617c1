"""Where automations fired on a run, for the run page's charts (registered with tracking.pages
in AutomationsConfig.ready: tracking cannot import automations)."""

from django.urls import reverse

from events.models import EventType

from .models import Execution

MARKS_PER_RUN = 500


def firings_for_run(run):
    """{metric: [{"step", "value", "label", "url"}]}: the executions on this run triggered by its
    metric history (tests left out) of automations that watch a metric, newest 500, each at the
    last step of the batch that fired it and at the value the condition saw (the threshold when
    that value is not a number). Which automations watch a metric is read from their filter (a
    `metric` field), so the event types' definitions stay the only place that knows the types."""
    executions = (
        Execution.objects.filter(event__run=run, event__type=EventType.RUN_HISTORY, is_test=False)
        .select_related("automation__team", "event")
        .order_by("-triggered_at", "-id")[:MARKS_PER_RUN]
    )
    marks = {}
    for execution in executions:
        automation = execution.automation
        metric = (automation.event_filter or {}).get("metric")
        step = execution.event.facts.get("last_step")
        if not metric or step is None:
            continue
        value = execution.context.get("metric_value")
        if not isinstance(value, (int, float)) or isinstance(value, bool):
            value = automation.event_filter.get("threshold")
        marks.setdefault(metric, []).append({
            "step": step, "value": value, "label": automation.name, "status": execution.status,
            "url": reverse("execution", args=[automation.team.name, execution.pk]),
        })
    for points in marks.values():
        points.reverse()
    return marks

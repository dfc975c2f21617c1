from events.models import EventType

from ..models import ScopeType
from ..spec import AGGS, CMPS, Choice, Integer, Metric, Number
from . import register
from .base import MetricCondition, no_context, run_filter_field
from .metric_words import AGG, CMP


@register
class RunMetricThreshold(MetricCondition):
    """The latest value of a metric, or an aggregate of its last `window` values, compared with a threshold."""

    name = EventType.RUN_METRIC_THRESHOLD
    fields = {
        "metric": Metric(),
        "window": Integer(5, 1, 1000, help="Threshold: the N most recent values"),
        "agg": Choice(AGGS, help="Threshold: aggregation of the window; none = the latest value."),
        "cmp": Choice(CMPS, required=True, help="Threshold: comparison with the threshold."),
        "threshold": Number(required=True, help="Threshold: the threshold value."),
        "run_filter": run_filter_field(),
    }

    def size(self, f):
        return f["window"] if f.get("agg") else 1

    def evaluator(self, f):
        metric, agg, n, threshold = f["metric"], f.get("agg"), f.get("window"), f["threshold"]
        size = self.size(f)
        op, symbol = CMP[f["cmp"]]
        fn = AGG[agg][0] if agg else None

        def evaluate(window):
            values = window.finite_values(metric, size)
            if not values or (agg and len(values) < n):
                return False, no_context
            value = fn(values) if agg else values[-1]

            def context():
                words = f"{AGG[agg][1]}({metric}) over {n}" if agg else metric
                return {"metric_value": value, "metric_values": values, "metric_filter": f"{words} {symbol} {threshold}"}

            return op(value, threshold), context

        return evaluate


def thresholds_for_run(run):
    """{metric: [(threshold, automation name)]} for the run page's charts."""
    from ..models import Automation

    watching = Automation.objects.filter(
        enabled=True, scope_type=ScopeType.PROJECT, project_id=run.project_id, event_type=RunMetricThreshold.name
    ).only("name", "event_filter")
    lines = {}
    for automation in watching:
        f = automation.event_filter
        lines.setdefault(f["metric"], []).append((f["threshold"], automation.name))
    return lines

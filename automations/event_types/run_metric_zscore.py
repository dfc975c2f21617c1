import math

from events.models import EventType

from ..spec import DIRS, Choice, Integer, Metric, Number
from . import register
from .base import MetricCondition, no_context, pstdev, run_filter_field
from .metric_words import average


@register
class RunMetricZscore(MetricCondition):
    """The latest value's z-score against other runs' latest values (runs) or the run's own
    preceding `window` values (history)."""

    name = EventType.RUN_METRIC_ZSCORE
    fields = {
        "metric": Metric(),
        "window": Integer(30, 2, 1000, help="Z-score: the reference size"),
        "threshold": Number(default=3.0, positive=True, help="Z-score: the |z| threshold (default 3)."),
        "change_dir": Choice(DIRS, default="ANY", help="Z-score: the direction of z (default ANY)."),
        "basis": Choice(("runs", "history"), default="runs",
                        help="Z-score against other runs' latest values (runs) or the run's own preceding values (history)."),
        "run_filter": run_filter_field(),
    }

    def size(self, f):
        return f["window"] + 1 if f["basis"] == "history" else 1

    def reads(self, automation):
        f = automation.event_filter
        others = [] if f["basis"] == "history" else [(("others", f["metric"]), f["window"])]
        return super().reads(automation) + others

    def evaluator(self, f):
        metric, n, t, direction, history = f["metric"], f["window"], f["threshold"], f["change_dir"], f["basis"] == "history"
        size = self.size(f)

        def evaluate(window):
            if history:
                values = window.finite_values(metric, size)
                if values is None or len(values) < 3:
                    return False, no_context
                value, reference = values[-1], values[:-1]
            else:
                latest = window.finite_values(metric, 1)
                if not latest:
                    return False, no_context
                value = latest[0]
                reference = [v for v in window.others(metric, n) if math.isfinite(v)]
                if len(reference) < 2:
                    return False, no_context
            mean = average(reference)
            spread = pstdev(reference, mean)
            if spread == 0:
                return False, no_context
            z = (value - mean) / spread
            met = z >= t if direction == "INCREASE" else z <= -t if direction == "DECREASE" else abs(z) >= t

            def context():
                against = f"its last {len(reference)} values" if history else f"{len(reference)} other runs"
                bound = {"INCREASE": f"≥ {t}", "DECREASE": f"≤ -{t}", "ANY": f"beyond ±{t}"}[direction]
                words = f"z-score of {metric} against {against} {bound}"
                return {"metric_value": value, "metric_values": reference, "metric_filter": words, "metric_zscore": z}

            return met, context

        return evaluate

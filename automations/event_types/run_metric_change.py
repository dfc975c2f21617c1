from events.models import EventType

from ..spec import AGGS, DIRS, Choice, Integer, Metric, Number
from . import register
from .base import MetricCondition, no_context, run_filter_field
from .metric_words import AGG


@register
class RunMetricChange(MetricCondition):
    """The aggregate of the last `current_window` values against the `prior_window` before them."""

    name = EventType.RUN_METRIC_CHANGE
    fields = {
        "metric": Metric(),
        "agg": Choice(AGGS, default="AVERAGE", help="Change: aggregation of each window (default AVERAGE)."),
        "current_window": Integer(10, 1, 1000, help="Change: values in the current window"),
        "prior_window": Integer(50, 1, 10000, help="Change: values in the window before it"),
        "change_type": Choice(("ABSOLUTE", "RELATIVE"), default="RELATIVE", help="Default RELATIVE: (current − prior) / |prior|."),
        "change_dir": Choice(DIRS, default="ANY", help="Change: the direction (default ANY)."),
        "change_amount": Number(positive=True, required=True, help="Change at least this much; a fraction for RELATIVE (0.25 = 25 %)."),
        "run_filter": run_filter_field(),
    }

    def size(self, f):
        return f["current_window"] + f["prior_window"]

    def evaluator(self, f):
        metric, cur, prior, amount, relative = f["metric"], f["current_window"], f["prior_window"], f["change_amount"], f["change_type"] == "RELATIVE"
        direction = f["change_dir"]
        fn, name = AGG[f["agg"]]

        def evaluate(window):
            values = window.finite_values(metric, cur + prior)
            if values is None or len(values) < cur + prior:
                return False, no_context
            before, now = fn(values[:prior]), fn(values[prior:])
            if relative:
                if before == 0:
                    return False, no_context
                change = (now - before) / abs(before)
            else:
                change = now - before
            met = change >= amount if direction == "INCREASE" else -change >= amount if direction == "DECREASE" else abs(change) >= amount

            def context():
                unit = f"{amount:.0%}" if relative else f"{amount}"
                words = f"{name}({metric}) over {cur} changed {direction.lower()} by ≥ {unit} vs the {prior} before"
                return {"metric_value": now, "metric_values": values[prior:], "metric_filter": words, "metric_change": change}

            return met, context

        return evaluate

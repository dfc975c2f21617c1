"""What every event type definition has, and the three families they come in: artifact events
(matched on the event's facts), run events (a run filter, project scope only) and run metric
conditions (a window of a metric's recent values, fired on the transition into the condition)."""

import math

from django.conf import settings
from django.utils import timezone

from events.models import EventType
from tracking.models import MetricPoint

from ..models import ScopeType
from ..spec import RunFilter, regex_search


class EventDefinition:
    name = ""
    fields = {}  # {filter field: spec Field}: validation, admin form and OpenAPI schema
    scopes = ()  # the scope types that allow it
    records = ()  # the recorded Event types that may trigger it
    variables = {}  # payload variables it provides besides the common ones: {name: description}

    def match(self, automation, event, condition):
        """The context of a triggering as a dict, or None when the automation does not fire.
        `condition` is the automation's locked RunCondition for the event's run, when
        `wants_condition` said it needs one."""
        raise NotImplementedError

    def wants_condition(self, automation, event):
        return False

    def window_size(self, automation):
        """(metric, how many recent values) its evaluation reads, or None."""
        return None

    def sample(self, automation, context):
        """Fill in `context` with sample values for a test or a preview of `automation`."""

    def sentence(self, context):
        """What happened, in words, for Slack and pages ('' when the facts say it all)."""
        return ""

    def sweep(self, now):
        """Work for the periodic sweep (events found by time rather than by a write)."""
        return 0

    def form_fields(self):
        """The admin form fields of its filter (a run filter is two of them)."""
        names = sorted(name.replace("run_filter", "run_user") for name in self.fields)
        return names + (["run_name_regex"] if "run_filter" in self.fields else [])


class ArtifactEvent(EventDefinition):
    def sample(self, automation, context):
        collection = automation.collection
        name = collection.name if collection else context["artifact_collection_name"]
        place = context["registry_name"] or context["project_name"]
        context.update(artifact_collection_name=name, artifact_version_string=f"{context['entity_name']}/{place}/{name}:v{context['artifact_version_index']}")


STATE_NAMES = {"running": "RUNNING", "finished": "FINISHED", "failed": "FAILED", "crashed": "FAILED"}  # killed: never


def run_passes(run, run_filter):
    if not run_filter:
        return True
    if run_filter.get("user") and (run.user is None or run.user.username != run_filter["user"]):
        return False
    if run_filter.get("name_regex") and not regex_search(run_filter["name_regex"], run.name):
        return False
    return True


class RunEvent(EventDefinition):
    """About one run, in a project scope, with the usual run filter."""

    scopes = (ScopeType.PROJECT,)
    watches_run = True

    def match(self, automation, event, condition):
        if not run_passes(event.run, automation.event_filter.get("run_filter")):
            return None
        return self.match_run(automation, event, condition)

    def match_run(self, automation, event, condition):
        raise NotImplementedError

    def sample_state(self, automation):
        return "running"

    def sample(self, automation, context):
        context.update(
            artifact_collection_name="", artifact_version="", artifact_version_string="", artifact_version_index="", artifact_metadata={},
            alias="", run_id="sample-run", run_name="sample run", run_state=self.sample_state(automation),
        )


def run_filter_field():
    return RunFilter()


def finite(values):
    return all(v is not None and math.isfinite(v) for v in values)


class Window:
    """The one reader of metric windows for an evaluation: each (run, metric) is read once, at
    the largest size any automation of the batch needs, up to the batch's last step; each
    condition then takes the tail it needs, in memory."""

    def __init__(self, run_id, last_step, sizes=None):
        self.run_id, self.last_step = run_id, last_step
        self.sizes = dict(sizes or {})  # {metric: values to read (then: values read)}
        self.read = {}  # {metric: values, oldest first}

    def values(self, key, n):
        """The n most recent values up to the last step, oldest first (None for non-finite)."""
        if key not in self.read or self.sizes.get(key, 0) < n:
            size = max(n, self.sizes.get(key, 0))
            rows = (
                MetricPoint.objects.filter(run_id=self.run_id, key=key, step__lte=self.last_step)
                .order_by("-step", "-id")
                .values_list("value", flat=True)[:size]
            )
            self.read[key] = list(reversed(rows))
            self.sizes[key] = size
        return self.read[key][-n:]


class MetricCondition(RunEvent):
    """A condition on a run's metric, evaluated on each history batch that logs the metric: it
    fires on the false → true transition, at most once per run per cooldown, and re-arms on false."""

    records = (EventType.RUN_HISTORY,)
    watches_metric = True

    def wants_condition(self, automation, event):
        return automation.event_filter.get("metric") in set(event.facts.get("keys", ()))

    def window_size(self, automation):
        return automation.event_filter["metric"], self.size(automation.event_filter)

    def size(self, f):
        raise NotImplementedError

    def evaluate(self, automation, event, window):
        """(met, context) as of the event's last step; `window` is the batch's Window."""
        raise NotImplementedError

    def sample(self, automation, context):
        super().sample(automation, context)
        metric = automation.event_filter["metric"]
        context.update(metric_name=metric, metric_value=0.05, metric_values=[0.09, 0.07, 0.05], metric_filter=f"the condition on {metric} (sample values)")

    def match_run(self, automation, event, condition):
        if automation.event_filter["metric"] not in event.facts.get("keys", ()):
            return None
        if event.pk <= condition.last_event_id:
            return None  # an older batch evaluated late: the newer one already decided
        window = getattr(event, "window", None) or Window(event.run_id, event.facts["last_step"])
        met, context = self.evaluate(automation, event, window)
        if not transition(condition, met, event.pk):
            return None
        return {"metric_name": automation.event_filter["metric"], **context}


def transition(condition, met, event_id):
    """Record whether the condition holds now; True when this is a transition into it outside the
    cooldown (fire). `condition` is locked, so two workers never both see the transition."""
    fire = False
    now = timezone.now()
    if met and not condition.met:
        cooled = condition.last_fired_at is None or (now - condition.last_fired_at).total_seconds() >= settings.AUTOMATION_COOLDOWN
        if cooled:
            fire = True
            condition.last_fired_at = now
    condition.met = met
    condition.last_event_id = event_id
    condition.save(update_fields=["met", "last_event_id", "last_fired_at"])
    return fire

"""What every event type definition has, and the three families they come in: artifact events
(matched on the event's facts), run events (a run filter, project scope only) and run metric
conditions (a window of a metric's recent values, fired on the transition into the condition)."""

import math

from django.conf import settings
from django.utils import timezone

from events.models import EventType
from tracking.models import MetricPoint, RunMetric

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

    def reads(self, automation):
        """[((read, metric), how many values)] its evaluation takes from the batch's Window."""
        return []

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
        own = sorted(n for name, field in self.fields.items() if not field.form_last for n in field.form_helps(name))
        return own + [n for name, field in self.fields.items() if field.form_last for n in field.form_helps(name)]


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
    """The one reader of metric windows for an evaluation. Each read — a run's recent values of a
    metric, or other runs' latest values of it — is made once per batch, at the largest size any
    automation of the batch needs (`plan`); each condition then takes the part it needs, in memory.
    So a batch costs one query per distinct read, however many automations watch it."""

    def __init__(self, event, plan=None):
        self.run_id, self.project_id, self.last_step = event.run_id, event.project_id, event.facts.get("last_step")
        self.sizes = dict(plan or {})  # {(read, metric): how many values to read (then: were read)}
        self.read = {}  # {(read, metric): values}

    def _get(self, what, n):
        if what not in self.read or self.sizes.get(what, 0) < n:
            size = max(n, self.sizes.get(what, 0))
            self.read[what] = getattr(self, "_read_" + what[0])(what[1], size)
            self.sizes[what] = size
        return self.read[what]

    def values(self, key, n):
        """The run's n most recent values up to the batch's last step, oldest first."""
        return self._get(("values", key), n)[-n:]

    def others(self, key, n):
        """The latest values of the n other runs of the project that logged `key` most recently."""
        return self._get(("others", key), n)[:n]

    def _read_values(self, key, size):
        rows = (
            MetricPoint.objects.filter(run_id=self.run_id, key=key, step__lte=self.last_step)
            .order_by("-step", "-id")
            .values_list("value", flat=True)[:size]
        )
        return list(reversed(rows))

    def _read_others(self, key, size):
        return list(
            RunMetric.objects.filter(key=key, run__project_id=self.project_id, last_value__isnull=False)
            .exclude(run_id=self.run_id)
            .order_by("-updated_at", "-id")
            .values_list("last_value", flat=True)[:size]
        )


class MetricCondition(RunEvent):
    """A condition on a run's metric, evaluated on each history batch that logs the metric: it
    fires on the false → true transition, at most once per run per cooldown, and re-arms on false."""

    records = (EventType.RUN_HISTORY,)
    watches_metric = True

    def wants_condition(self, automation, event):
        return automation.event_filter.get("metric") in set(event.facts.get("keys", ()))

    def reads(self, automation):
        return [(("values", automation.event_filter["metric"]), self.size(automation.event_filter))]

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
        window = getattr(event, "window", None) or Window(event)
        met, context = self.evaluate(automation, event, window)
        if not transition(condition, met, event.pk):
            return None
        return {"metric_name": automation.event_filter["metric"], **context}


def transition(condition, met, event_id):
    """Note whether the condition holds now; True when this is a transition into it outside the
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
    condition.changed = True  # written with the others of the batch (matching.save_conditions)
    return fire

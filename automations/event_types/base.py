"""What every event type definition has, and the three families they come in: artifact events
(matched on the event's facts), run events (a run filter, project scope only) and run metric
conditions (a window of a metric's recent values, fired on the transition into the condition)."""

import json
import logging
import math
import statistics

from django.conf import settings
from django.db import connection
from django.utils import timezone

from events.models import Event, EventType
from ops.compiled import prepared_cursor
from tracking.models import MetricPoint, Run, RunMetric

from ..models import ScopeType
from ..spec import RunFilter, regex_search

logger = logging.getLogger("tripline.evaluate")


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


def no_context():
    return {}


def pstdev(values, mean):
    """The population standard deviation of `values` (a list of finite floats) around their
    `mean` (statistics.fmean), in floats: within a few ulps of statistics.pstdev, which works in
    exact fractions and costs some twenty times more. Where floats could lose digits — a spread
    within 1e-7 of the mean's magnitude, or squares that overflow or underflow, or whose sum
    does — it is statistics.pstdev itself."""
    try:
        ss = math.fsum([(v - mean) * (v - mean) for v in values])
    except OverflowError:  # squares near 1e308: their float sum overflows
        return statistics.pstdev(values)
    if ss == 0 and all(v == mean for v in values):
        return 0.0
    spread = math.sqrt(ss / len(values))
    if not (spread > 1e-7 * abs(mean) and 1e-140 < spread < 1e140):
        return statistics.pstdev(values)
    return spread


KEY, SIZE = object(), object()  # in a read's parameters: the metric's, the size's place


def _bound(sql, marker):
    return [marker] if sql == "%s" else []


class Window:
    """The one reader of metric windows for an evaluation. Each read — a run's recent values of a
    metric, or other runs' latest values of it — is made at the largest size any automation of
    the batch needs (`plan`), and all the planned reads of a batch are made together, one query
    per kind of read (a UNION ALL of one LIMITed arm per metric, each served by its index); each
    condition then takes the part it needs, in memory. So a batch costs at most two queries
    however many automations and metrics it has."""

    ARMS = 200  # reads per query (SQLite allows 500 arms in a compound SELECT)

    def __init__(self, event, plan=None):
        # the windows end at the run's highest step when the batch was stored: its own last step,
        # unless it logged earlier steps late (then the run's most recent values are later ones)
        self.last_step = event.facts.get("top_step", event.facts.get("last_step"))
        self.event_id, self.run_id, self.project_id = event.pk, event.run_id, event.project_id
        self.newer = None  # the metrics logged by newer batches of the run evaluated already
        self.sizes = dict(plan or {})  # {(read, metric): how many values to read (then: were read)}
        self.read = {}  # {(read, metric): values}
        self.clean = {}  # {metric: how many of the run's most recent values read are finite}

    def _get(self, what, n):
        if what not in self.read or self.sizes.get(what, 0) < n:
            self.sizes[what] = max(n, self.sizes.get(what, 0))
            # the first read fetches every planned read not yet made, with this one
            wanted = [w for w, size in self.sizes.items() if w not in self.read or w == what]
            for start in range(0, len(wanted), self.ARMS):
                self._fetch(wanted[start:start + self.ARMS])
        return self.read[what]

    def values(self, key, n):
        """The run's n most recent values up to the step the batch ends at (see __init__), oldest first."""
        return self._get(("values", key), n)[-n:]

    def finite(self, key, n):
        """Whether the run's n most recent values are all finite numbers (a stored non-finite
        value reads as None)."""
        values = self._get(("values", key), n)
        return min(n, len(values)) <= self.clean[key]

    def finite_values(self, key, n):
        """values(key, n), or None when one of them is not a finite number: the two in one call,
        for the conditions of a batch's hundred automations."""
        values = self._get(("values", key), n)
        if min(n, len(values)) > self.clean[key]:
            return None
        return values[-n:]

    def others(self, key, n):
        """The latest values of the n other runs of the project that logged `key` most recently."""
        return self._get(("others", key), n)[:n]

    def superseded(self, key):
        """Whether a newer batch of the run that logs `key` was evaluated already: this one is
        late, and the newer one decided (one query per batch, on the index (run, type, -id))."""
        if self.newer is None:
            self.newer = set()
            with prepared_cursor() as cursor:
                cursor.execute(f"SELECT facts FROM {Event._meta.db_table} WHERE run_id = %s AND type = %s AND id > %s"
                               " AND evaluated_at IS NOT NULL", [self.run_id, EventType.RUN_HISTORY, self.event_id])
                for (facts,) in cursor.fetchall():
                    self.newer.update((facts if isinstance(facts, dict) else json.loads(facts)).get("keys", ()))
        return key in self.newer

    def _fetch(self, wanted):
        """Make the reads `wanted`: one query per kind of read (the run's values, the other
        runs' latest) for all the metrics, each metric's part served by its index. On
        PostgreSQL a LATERAL join over the (metric, size) list, planned once whatever the number
        of metrics; elsewhere a UNION ALL of one LIMITed arm per metric. (Both kinds in one
        query cost PostgreSQL more to plan than two queries.)"""
        lateral = connection.vendor == "postgresql"
        for kind in sorted({what[0] for what in wanted}):
            reads = [what for what in wanted if what[0] == kind]
            params = []
            if lateral:
                for what in reads:
                    params += [what[1], self.sizes[what]]
                body, args = getattr(self, "_arm_" + kind)("k.key", "k.n")
                sql = (f"SELECT k.key, p.o1, p.o2, p.v FROM (VALUES {', '.join(['(%s, %s)'] * len(reads))}) AS k(key, n)"
                       # OFFSET 0: planned as its own subquery, once per metric (without statistics,
                       # PostgreSQL pulled it up into a hash join over the run's whole history)
                       f" CROSS JOIN LATERAL ({body} OFFSET 0) AS p")
                params += args
            else:
                arms = []
                for what in reads:
                    arm, args = getattr(self, "_arm_" + kind)("%s", "%s")
                    arms.append(f"SELECT %s, o1, o2, v FROM ({arm}) AS w{len(arms)}")
                    params += [what[1], *(what[1] if a is KEY else self.sizes[what] if a is SIZE else a for a in args)]
                sql = " UNION ALL ".join(arms)
            got = {}
            with prepared_cursor() as cursor:  # its text repeats for batches of as many metrics
                cursor.execute(sql, params)
                for row in cursor.fetchall():  # (key, o1, o2, v)
                    got.setdefault(row[0], []).append(row)
            for what in reads:
                self._store(what, got.get(what[1], []))

    def _store(self, what, rows):
        # each arm's own order, most recent first (a UNION ALL does not promise to keep it): the
        # rows of one arm share their key, and (o1, o2) is unique, so plain tuple order is (o1, o2)
        rows.sort(reverse=True)
        values = [row[3] for row in rows[:self.sizes[what]]]
        if what[0] == "values":
            clean = 0
            for value in values:
                if value is None or not math.isfinite(value):
                    break
                clean += 1
            self.clean[what[1]] = clean
            values.reverse()  # oldest first
        self.read[what] = values

    # The SQL of one metric's read, its metric and size given as SQL (`key`, `size`: placeholders
    # or the LATERAL join's columns), with its parameters (KEY and SIZE where those are placeholders).
    def _arm_values(self, key, size):
        # The index (run, key, -step) orders by step alone: the `size` most recent steps are read
        # from it first, so that only their rows are read, never the whole history of the metric
        # (PostgreSQL sorted all of it by (step, id), short of fresh statistics). All the rows at
        # those steps: more than `size` only when a step was logged twice; _store orders and cuts.
        upto, last = ("", []) if self.last_step is None else (" AND step <= %s", [self.last_step])
        table = MetricPoint._meta.db_table
        sql = (f"SELECT step AS o1, id AS o2, value AS v FROM {table} WHERE run_id = %s AND key = {key}{upto}"
               f" AND step >= (SELECT MIN(step) FROM (SELECT step FROM {table} WHERE run_id = %s AND key = {key}{upto}"
               f" ORDER BY step DESC LIMIT {size}) AS recent)")
        return sql, [self.run_id, *_bound(key, KEY), *last, self.run_id, *_bound(key, KEY), *last, *_bound(size, SIZE)]

    def _arm_others(self, key, size):
        sql = (f"SELECT m.updated_at AS o1, m.id AS o2, m.last_value AS v FROM {RunMetric._meta.db_table} m"
               f" INNER JOIN {Run._meta.db_table} r ON m.run_id = r.id"
               f" WHERE m.key = {key} AND m.last_value IS NOT NULL AND r.project_id = %s AND m.run_id <> %s"
               f" ORDER BY m.updated_at DESC, m.id DESC LIMIT {size}")
        return sql, [*_bound(key, KEY), self.project_id, self.run_id, *_bound(size, SIZE)]


class MetricCondition(RunEvent):
    """A condition on a run's metric, evaluated on each history batch that logs the metric: it
    fires on the false → true transition, at most once per run per cooldown, and re-arms on false."""

    records = (EventType.RUN_HISTORY,)
    watches_metric = True

    def wants_condition(self, automation, event):
        return automation.event_filter.get("metric") in event.facts.get("keys", ())

    def reads(self, automation):
        return [(("values", automation.event_filter["metric"]), self.size(automation.event_filter))]

    def size(self, f):
        raise NotImplementedError

    def evaluator(self, f):
        """A function of the batch's Window that gives (met, context) as of the event's last step,
        for an automation with the filter `f`, whose fields it reads once (it is kept on the
        automation: see `prepared`). `context` is a function that builds the triggering's facts,
        called only when it fires (most evaluations of a batch do not: building them for each
        would cost more than the test)."""
        raise NotImplementedError

    def prepared(self, automation):
        """(metric, run filter, evaluate): kept on the automation, which the candidates' cache
        keeps between batches, so that a batch's hundred conditions cost their arithmetic and
        little else."""
        got = automation.__dict__.get("_prepared")
        if got is None:
            f = automation.event_filter
            got = automation.__dict__["_prepared"] = (f["metric"], f.get("run_filter"), self.evaluator(f))
        return got

    def sample(self, automation, context):
        super().sample(automation, context)
        metric = automation.event_filter["metric"]
        context.update(metric_name=metric, metric_value=0.05, metric_values=[0.09, 0.07, 0.05], metric_filter=f"the condition on {metric} (sample values)")

    def match(self, automation, event, condition):
        metric, run_filter, evaluate = self.prepared(automation)
        if metric not in event.facts.get("keys", ()) or (run_filter and not run_passes(event.run, run_filter)):
            return None
        window = getattr(event, "window", None) or Window(event)
        try:
            met, context = evaluate(window)
        except ArithmeticError:  # a bug in one condition's arithmetic holds up none of the batch's others
            logger.exception("automation %s: its condition on %s could not be evaluated for event %s", automation.pk, metric, event.pk)
            return None
        if met == condition.met:
            return None  # nothing turns, nothing is written: whether the batch is late matters not (no query)
        if event.id <= condition.last_event_id or window.superseded(metric):
            return None  # an older batch evaluated late: the newer one already decided
        if not transition(condition, met, event.id):
            return None
        return {"metric_name": metric, **context()}


def transition(condition, met, event_id):
    """Note whether the condition holds now; True when this is a transition into it outside the
    cooldown (fire). `condition` is locked, so two workers never both see the transition."""
    fire = False
    if met and not condition.met:
        now = timezone.now()
        cooled = condition.last_fired_at is None or (now - condition.last_fired_at).total_seconds() >= settings.AUTOMATION_COOLDOWN
        if cooled:
            fire = True
            condition.last_fired_at = now
    if met != condition.met:  # written with the others of the batch (matching.save_conditions);
        condition.changed = True  # one that holds as it held is not (Window.superseded guards late batches)
    condition.met = met
    condition.last_event_id = event_id
    return fire

"""The project page's runs table: filtered, sorted and paged in the database, every choice read
from (and written back to) the URL query so that a view can be shared.

Query parameters: `state`, `user` (username), `tag`, `name` (part of the name or id), `sort`
(a column key, `-` in front for descending), `page`, `per` (rows per page), `metrics` and
`config` (comma-separated metric and config keys shown as columns). A constant number of
queries whatever the number of runs or columns: the latest value of each metric column is a
subquery of the one query that reads the page."""

from dataclasses import dataclass, field
from urllib.parse import urlencode

from django.core.paginator import Paginator
from django.db import connection
from django.db.models import BooleanField, Case, DurationField, ExpressionWrapper, F, OuterRef, Q, Subquery, When
from django.db.models.expressions import RawSQL
from django.db.models.fields.json import KeyTransform
from django.db.models.functions import Now

from .models import Run, RunMetric, RunState

PER_PAGE = 50
MAX_PER_PAGE = 200
MAX_EXTRA_COLUMNS = 10
# column key -> (heading, ORM field to order by)
FIXED_COLUMNS = {
    "id": ("Run", "run_id"),
    "name": ("Name", "name"),
    "state": ("State", "state"),
    "user": ("User", "user__username"),
    "start": ("Start", "created_at"),
    "duration": ("Duration", "duration"),
    "tags": ("Tags", "tags"),
}
DEFAULT_SORT = "-start"


class BadQuery(ValueError):
    """A query parameter that cannot be used: (field, message)."""

    def __init__(self, field, message):
        super().__init__(message)
        self.field, self.message = field, message


def _keys(value, name):
    keys = [k.strip() for k in (value or "").split(",") if k.strip()]
    if len(keys) > MAX_EXTRA_COLUMNS:
        raise BadQuery(name, f"At most {MAX_EXTRA_COLUMNS} keys.")
    if any(len(k) > 128 for k in keys):
        raise BadQuery(name, "A key has at most 128 characters.")
    return list(dict.fromkeys(keys))


def _positive(value, name, default, most=None):
    if value in (None, ""):
        return default
    try:
        number = int(value)
    except ValueError:
        raise BadQuery(name, "Give a whole number.") from None
    if number < 1 or (most is not None and number > most):
        raise BadQuery(name, f"Give a number from 1 to {most}." if most else "Give a number from 1.")
    return number


def _integer(text):
    try:
        int(text)
    except ValueError:
        return False
    return True


@dataclass
class RunsView:
    """What the URL asks for, validated."""

    state: str = ""
    user: str = ""
    tag: str = ""
    name: str = ""
    sort: str = DEFAULT_SORT
    page: int = 1
    per: int = PER_PAGE
    metrics: list = field(default_factory=list)
    config: list = field(default_factory=list)

    @classmethod
    def from_query(cls, query):
        for name in ("state", "user", "tag", "name", "sort", "page", "per", "metrics", "config"):
            if "\x00" in query.get(name, ""):
                raise BadQuery(name, "A NUL character cannot be stored or matched.")
        state = query.get("state", "")
        if state and state not in RunState.values:
            raise BadQuery("state", f"One of {', '.join(RunState.values)}.")
        view = cls(
            state=state,
            user=query.get("user", "").strip(),
            tag=query.get("tag", "").strip(),
            name=query.get("name", "").strip(),
            sort=query.get("sort", "") or DEFAULT_SORT,
            page=_positive(query.get("page"), "page", 1),
            per=_positive(query.get("per"), "per", PER_PAGE, MAX_PER_PAGE),
            metrics=_keys(query.get("metrics"), "metrics"),
            config=_keys(query.get("config"), "config"),
        )
        if any(_integer(k) for k in view.config):
            # Django reads a JSON key made of digits as an array index
            raise BadQuery("config", "A config key that is a number cannot be a column.")
        if view.sort.lstrip("-") not in view.columns():
            raise BadQuery("sort", "Sort by one of the table's columns.")
        return view

    def columns(self):
        """{column key: heading} in table order."""
        columns = {key: heading for key, (heading, _) in FIXED_COLUMNS.items()}
        columns.update({f"metric:{k}": k for k in self.metrics})
        columns.update({f"config:{k}": f"config.{k}" for k in self.config})
        return columns

    def params(self, **changes):
        """The query string of this view with `changes`, leaving defaults out."""
        values = {"state": self.state, "user": self.user, "tag": self.tag, "name": self.name,
                  "sort": "" if self.sort == DEFAULT_SORT else self.sort, "per": "" if self.per == PER_PAGE else self.per,
                  "metrics": ",".join(self.metrics), "config": ",".join(self.config), "page": ""}
        values.update(changes)
        if values["page"] == 1:
            values["page"] = ""
        return "?" + urlencode({k: v for k, v in values.items() if v not in ("", None)})

    def headings(self):
        """[(key, heading, link that sorts by it, arrow)]: a second click reverses the order."""
        current, descending = self.sort.lstrip("-"), self.sort.startswith("-")
        out = []
        for key, heading in self.columns().items():
            if key == current:
                link, arrow = self.params(sort=key if descending else f"-{key}"), "▼" if descending else "▲"
            else:
                link, arrow = self.params(sort=key), ""
            out.append({"key": key, "heading": heading, "link": link, "arrow": arrow})
        return out


def _alias(kind, index):
    return f"{kind}_{index}"


def _with_tag(runs, tag):
    if connection.vendor == "postgresql":
        return runs.filter(tags__contains=[tag])
    # SQLite has no JSON containment: look through each run's own tags (only the project's runs).
    table = connection.ops.quote_name(Run._meta.db_table)
    tagged = RawSQL(f"EXISTS (SELECT 1 FROM json_each({table}.tags) WHERE json_each.value = %s)", [tag], output_field=BooleanField())
    return runs.alias(tagged=tagged).filter(tagged=True)


def runs_page(project, view):
    """(page of runs, paginator): each run annotated with `duration`, `metric_<i>` and `config_<i>`."""
    runs = project.runs.select_related("user").annotate(
        duration=Case(
            When(state=RunState.RUNNING, then=ExpressionWrapper(Now() - F("created_at"), output_field=DurationField())),
            default=ExpressionWrapper(F("updated_at") - F("created_at"), output_field=DurationField()),
            output_field=DurationField(),
        )
    )
    order_fields = {key: column for key, (_, column) in FIXED_COLUMNS.items()}
    for i, key in enumerate(view.metrics):
        latest = RunMetric.objects.filter(run=OuterRef("pk"), key=key).values("last_value")[:1]
        runs = runs.annotate(**{_alias("metric", i): Subquery(latest)})
        order_fields[f"metric:{key}"] = _alias("metric", i)
    for i, key in enumerate(view.config):
        runs = runs.annotate(**{_alias("config", i): KeyTransform(key, "config")})
        order_fields[f"config:{key}"] = _alias("config", i)
    if view.state:
        runs = runs.filter(state=view.state)
    if view.user:
        runs = runs.filter(user__username=view.user)
    if view.name:
        runs = runs.filter(Q(name__icontains=view.name) | Q(run_id__icontains=view.name))
    if view.tag:
        runs = _with_tag(runs, view.tag)
    column = order_fields[view.sort.lstrip("-")]
    ordering = F(column).desc(nulls_last=True) if view.sort.startswith("-") else F(column).asc(nulls_last=True)
    runs = runs.order_by(ordering, "-id")
    paginator = Paginator(runs, view.per)
    page = paginator.get_page(view.page)
    for run in page.object_list:
        run.duration_text = duration_text(run.duration)
        run.metric_values = [_number(getattr(run, _alias("metric", i))) for i in range(len(view.metrics))]
        run.config_values = [getattr(run, _alias("config", i)) for i in range(len(view.config))]
    return page, paginator


def _number(value):
    return "" if value is None else f"{value:.6g}"


def duration_text(duration):
    """`3d 4h`, `1h 02m`, `5m 03s`, `12s`."""
    if duration is None:
        return ""
    seconds = max(0, int(duration.total_seconds()))
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, seconds = divmod(rest, 60)
    if days:
        return f"{days}d {hours}h"
    if hours:
        return f"{hours}h {minutes:02d}m"
    if minutes:
        return f"{minutes}m {seconds:02d}s"
    return f"{seconds}s"

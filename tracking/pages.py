"""Server-rendered pages for team members: readable without JavaScript."""

import hashlib

from django.contrib.auth.decorators import login_required
from django.core.cache import cache
from django.http import Http404, HttpResponseBadRequest, JsonResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse

from teams.models import Membership, Team

from .history import read_chart
from .models import ArtifactCollection, ArtifactVersion, Project, Registry, RunMetric, RunState
from .runs_table import BadQuery, RunsView, runs_page

# Points per metric in a chart's first drawing (about two per pixel of a wide chart); zooming
# asks for about two per pixel of the chart as drawn.
CHART_SAMPLES = 2000
MAX_CHART_SAMPLES = 10_000
MAX_COMPARED = 20
CHART_CACHE_SECONDS = 3600
CHART_W, CHART_H, PAD = 560, 180, 28


def member_team(request, team_name):
    team = get_object_or_404(Team, name=team_name)
    if team.role_of(request.user) is None:
        raise Http404
    return team


def line_chart(points, thresholds=()):
    """An inline SVG polyline of [[step, value], …] (finite values only) with horizontal
    threshold lines: [(value, label)]."""
    xs_ys = [(s, v) for s, v in points if isinstance(v, (int, float)) and not isinstance(v, bool) and v == v and abs(v) != float("inf")]
    if not xs_ys:
        return None
    ys = [v for _, v in xs_ys] + [t for t, _ in thresholds]
    x0, x1 = xs_ys[0][0], xs_ys[-1][0]
    y0, y1 = min(ys), max(ys)
    xr, yr = (x1 - x0) or 1, (y1 - y0) or 1

    def sx(x):
        return PAD + (x - x0) / xr * (CHART_W - 2 * PAD)

    def sy(y):
        return CHART_H - PAD - (y - y0) / yr * (CHART_H - 2 * PAD)

    return {
        "width": CHART_W,
        "height": CHART_H,
        "points": " ".join(f"{sx(x):.1f},{sy(y):.1f}" for x, y in xs_ys),
        "thresholds": [{"y": f"{sy(t):.1f}", "label": label, "value": t} for t, label in thresholds],
        "min": y0,
        "max": y1,
        "first_step": x0,
        "last_step": x1,
        "last_value": xs_ys[-1][1],
        "count": len(xs_ys),
    }


@login_required
def home(request):
    """Where signing in lands: the team's page for someone in one team, else the list to choose."""
    memberships = list(Membership.objects.filter(user=request.user).select_related("team"))
    if len(memberships) == 1:
        return redirect("team", memberships[0].team.name)
    return render(request, "tripline/home.html", {"memberships": memberships})


@login_required
def team_page(request, team):
    team = member_team(request, team)
    return render(
        request,
        "tripline/team.html",
        {"team": team, "projects": team.projects.all(), "registries": team.registries.all(), "role": team.role_of(request.user)},
    )


@login_required
def project_page(request, team, project):
    team = member_team(request, team)
    project = get_object_or_404(Project, team=team, name=project)
    try:
        view = RunsView.from_query(request.GET)
    except BadQuery as bad:
        return HttpResponseBadRequest(f"{bad.field}: {bad.message}", content_type="text/plain; charset=utf-8")
    page, paginator = runs_page(project, view)
    metric_keys = list(RunMetric.objects.filter(run__project=project).order_by("key").values_list("key", flat=True).distinct()[:200])
    config_keys = sorted({key for run in page.object_list for key in (run.config if isinstance(run.config, dict) else {})})
    return render(request, "tripline/project.html", {
        "team": team, "project": project, "runs": page.object_list, "page": page, "paginator": paginator, "view": view,
        "headings": view.headings(), "metric_keys": metric_keys, "config_keys": config_keys[:200], "states": RunState.values,
        "prev_link": view.params(page=page.previous_page_number()) if page.has_previous() else "",
        "next_link": view.params(page=page.next_page_number()) if page.has_next() else "",
        "collections": project.collections.all(),
    })


def _bad(field, message):
    return JsonResponse({field: [message]}, status=400)


def _chart_params(query):
    """(min_step, max_step, samples) from a chart request, or raise BadQuery naming the field."""
    out = []
    for name in ("min_step", "max_step"):
        value = query.get(name)
        if value in (None, ""):
            out.append(None)
            continue
        try:
            out.append(int(value))
        except ValueError:
            raise BadQuery(name, "Give a whole number.") from None
        if abs(out[-1]) > 2**63 - 1:
            raise BadQuery(name, "Out of range.")
    samples = query.get("samples") or CHART_SAMPLES
    try:
        samples = int(samples)
    except ValueError:
        raise BadQuery("samples", "Give a whole number.") from None
    if not 2 <= samples <= MAX_CHART_SAMPLES:
        raise BadQuery("samples", f"Give a number from 2 to {MAX_CHART_SAMPLES}.")
    return (*out, samples)


def _run_of(request, team, project, run):
    team = member_team(request, team)
    project = get_object_or_404(Project, team=team, name=project)
    return team, project, get_object_or_404(project.runs.select_related("user"), run_id=run)


def _whole_history(run, metric):
    """`read_chart` of a metric's whole history, kept in the cache until the metric grows (its
    count or last step changes): reopening a long finished run does not read it again."""
    digest = hashlib.sha256(metric.key.encode()).hexdigest()[:32]
    key = f"tripline:chart:{run.pk}:{run.created_at.timestamp()}:{digest}:{metric.count}:{metric.last_step}:{CHART_SAMPLES}"
    data = cache.get(key)
    if data is None:
        data = read_chart(run, metric.key, samples=CHART_SAMPLES, times=False)  # fetched when the x-axis is time
        cache.set(key, data, CHART_CACHE_SECONDS)
    return data


def _series(team, project, run, key, samples=CHART_SAMPLES, min_step=None, max_step=None, metric=None):
    if metric is not None and samples == CHART_SAMPLES and min_step is None and max_step is None:
        data = _whole_history(run, metric)
    else:
        data = read_chart(run, key, min_step=min_step, max_step=max_step, samples=samples)
    return {"run": run.run_id, "label": run.name, "url": reverse("run_chart", args=[team.name, project.name, run.run_id]), **data}


@login_required
def run_page(request, team, project, run):
    team, project, run = _run_of(request, team, project, run)
    metrics = list(run.metrics.order_by("key"))
    watch = thresholds_for(run)
    fired = firings_for(run)
    charts = []
    for m in metrics:
        series = _series(team, project, run, m.key, metric=m)
        charts.append({
            "key": m.key, "metric": m, "series": [series],
            "chart": line_chart(list(zip(series["step"], series["value"])), watch.get(m.key, ())),
            "spec": {"key": m.key, "samples": CHART_SAMPLES, "series": [series], "thresholds": [{"value": t, "label": label} for t, label in watch.get(m.key, ())],
                     "firings": fired.get(m.key, [])},
            "firings": fired.get(m.key, []), "drawable": bool(series["step"]),
        })
    return render(request, "tripline/run.html", {"team": team, "project": project, "run": run, "charts": charts})


@login_required
def run_chart(request, team, project, run):
    """One metric of one run for a chart: `?key=&min_step=&max_step=&samples=` → the points of
    `read_chart` (all of them when the range holds at most `samples`, else each bucket's min and
    max). Zooming refetches the visible range here at full resolution."""
    team, project, run = _run_of(request, team, project, run)
    key = request.GET.get("key", "")
    if not key or "\x00" in key:
        return _bad("key", "Name a metric.")
    try:
        min_step, max_step, samples = _chart_params(request.GET)
    except BadQuery as bad:
        return _bad(bad.field, bad.message)
    if not run.metrics.filter(key=key).exists():
        return _bad("key", "This run has no such metric.")
    return JsonResponse(_series(team, project, run, key, samples=samples, min_step=min_step, max_step=max_step))


@login_required
def compare_page(request, team, project):
    """The chosen runs' metrics overlaid, one chart per metric with a series per run: the URL
    lists the run ids (`?runs=a,b` or `?runs=a&runs=b`)."""
    team = member_team(request, team)
    project = get_object_or_404(Project, team=team, name=project)
    ids = list(dict.fromkeys(i.strip() for value in request.GET.getlist("runs") for i in value.split(",") if i.strip()))
    if not ids or any("\x00" in i for i in ids):
        return HttpResponseBadRequest("runs: choose at least one run.", content_type="text/plain; charset=utf-8")
    if len(ids) > MAX_COMPARED:
        return HttpResponseBadRequest(f"runs: at most {MAX_COMPARED} runs.", content_type="text/plain; charset=utf-8")
    by_id = {run.run_id: run for run in project.runs.select_related("user").filter(run_id__in=ids).prefetch_related("metrics")}
    missing = [i for i in ids if i not in by_id]
    if missing:
        raise Http404
    runs = [by_id[i] for i in ids]
    keys = sorted({m.key for run in runs for m in run.metrics.all()})
    charts = []
    for key in keys:
        series = [_series(team, project, run, key, metric=m) for run in runs for m in run.metrics.all() if m.key == key]
        charts.append({"key": key, "series": series, "drawable": any(s["step"] for s in series), "spec": {"key": key, "samples": CHART_SAMPLES, "series": series, "thresholds": [], "firings": []}})
    return render(request, "tripline/compare.html", {"team": team, "project": project, "runs": runs, "charts": charts, "ids": ",".join(ids)})


def thresholds_for(run):
    """{metric: [(threshold, automation name)]} from automations that watch this run's project.
    Filled in by the automations app, which registers itself here (tracking cannot import it)."""
    return {k: v for provider in THRESHOLD_PROVIDERS for k, v in provider(run).items()}


def firings_for(run):
    """{metric: [{"step", "value", "label", "url"}]}: where automations fired on this run, each
    linking to its execution. Filled in by the automations app, like thresholds."""
    marks = {}
    for provider in FIRING_PROVIDERS:
        for key, points in provider(run).items():
            marks.setdefault(key, []).extend(points)
    return marks


FIRING_PROVIDERS = []
THRESHOLD_PROVIDERS = []


def _collection(team, **lookup):
    return get_object_or_404(ArtifactCollection.objects.select_related("project", "registry"), team=team, **lookup)


def _versions(collection):
    return collection.versions.select_related("created_by", "run", "source__collection__project").prefetch_related("aliases", "tags")


@login_required
def artifact_page(request, team, project, name):
    team = member_team(request, team)
    collection = _collection(team, project__name=project, name=name)
    return render(request, "tripline/collection.html", {"team": team, "collection": collection, "versions": _versions(collection)})


@login_required
def registry_collection_page(request, team, registry, collection):
    team = member_team(request, team)
    collection = _collection(team, registry__name=registry, name=collection)
    return render(request, "tripline/collection.html", {"team": team, "collection": collection, "versions": _versions(collection)})


def _version_page(request, team, collection, version):
    try:
        version = _versions(collection).get(pk=collection.resolve(version).pk)
    except ArtifactVersion.DoesNotExist:
        raise Http404 from None
    links = version.links.select_related("collection__registry")
    return render(request, "tripline/version.html", {"team": team, "collection": collection, "version": version, "links": links})


@login_required
def artifact_version_page(request, team, project, name, version):
    team = member_team(request, team)
    return _version_page(request, team, _collection(team, project__name=project, name=name), version)


@login_required
def registry_version_page(request, team, registry, collection, version):
    team = member_team(request, team)
    return _version_page(request, team, _collection(team, registry__name=registry, name=collection), version)


@login_required
def registry_page(request, team, registry):
    team = member_team(request, team)
    registry = get_object_or_404(Registry, team=team, name=registry)
    return render(request, "tripline/registry.html", {"team": team, "registry": registry, "collections": registry.collections.all()})

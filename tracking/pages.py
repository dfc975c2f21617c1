"""Server-rendered pages for team members: readable without JavaScript."""

from django.contrib.auth.decorators import login_required
from django.http import Http404
from django.shortcuts import get_object_or_404, redirect, render

from teams.models import Membership, Team

from .history import read_history
from .models import ArtifactCollection, ArtifactVersion, Project, Registry

CHART_POINTS = 2000
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
    runs = project.runs.select_related("user")[:200]
    return render(request, "tripline/project.html", {"team": team, "project": project, "runs": runs, "collections": project.collections.all()})


@login_required
def run_page(request, team, project, run):
    team = member_team(request, team)
    project = get_object_or_404(Project, team=team, name=project)
    run = get_object_or_404(project.runs.select_related("user"), run_id=run)
    metrics = list(run.metrics.order_by("key"))
    history = read_history(run, [m.key for m in metrics], limit=CHART_POINTS)
    watch = thresholds_for(run)
    charts = [{"key": m.key, "metric": m, "chart": line_chart(history[m.key], watch.get(m.key, ()))} for m in metrics]
    return render(request, "tripline/run.html", {"team": team, "project": project, "run": run, "charts": charts})


def thresholds_for(run):
    """{metric: [(threshold, automation name)]} from automations that watch this run's project.
    Filled in by the automations app, which registers itself here (tracking cannot import it)."""
    return {k: v for provider in THRESHOLD_PROVIDERS for k, v in provider(run).items()}


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

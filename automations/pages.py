import json

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpResponseNotAllowed
from django.shortcuts import get_object_or_404, redirect, render

from teams.models import ROLE_RANK, Role
from tracking.pages import member_team

from .api import execution_queryset, redeliver, shown_request
from . import event_types, lifecycle
from .event_types.run_metric_threshold import thresholds_for_run  # noqa: F401 (the run page's chart lines)


@login_required
def automation_list(request, team):
    team = member_team(request, team)
    automations = team.automations.select_related("project", "registry", "collection__project", "collection__registry", "integration", "team")
    return render(request, "tripline/automations.html", {"team": team, "automations": automations, "metric_events": event_types.names_where("watches_metric")})


@login_required
def automation_page(request, team, pk):
    team = member_team(request, team)
    automation = get_object_or_404(team.automations.select_related("integration", "team"), pk=pk)
    executions = execution_queryset().filter(automation=automation)[:100]
    return render(request, "tripline/automation.html", {"team": team, "automation": automation, "executions": executions,
                                                         "event_filter": json.dumps(automation.event_filter, indent=2)})


@login_required
def execution_page(request, team, pk):
    team = member_team(request, team)
    execution = get_object_or_404(execution_queryset().filter(automation__team=team).prefetch_related("attempts"), pk=pk)
    role = team.role_of(request.user)
    can_redeliver = ROLE_RANK[role] >= ROLE_RANK[Role.MEMBER] and lifecycle.sends(execution.automation)
    return render(request, "tripline/execution.html", {
        "team": team, "execution": execution, "can_redeliver": can_redeliver,
        "request_json": json.dumps(shown_request(execution.request, role), indent=2, ensure_ascii=False),
        "url_hidden": shown_request(execution.request, role) != execution.request,
        "context_json": json.dumps(execution.context, indent=2, ensure_ascii=False),
    })


@login_required
def execution_redeliver(request, team, pk):
    if request.method != "POST":
        return HttpResponseNotAllowed(["POST"])
    team = member_team(request, team)
    if ROLE_RANK[team.role_of(request.user)] < ROLE_RANK[Role.MEMBER]:
        raise Http404
    execution = get_object_or_404(execution_queryset().filter(automation__team=team), pk=pk)
    if redeliver(execution):
        messages.success(request, "Queued for redelivery.")
    else:
        messages.error(request, "This execution is being delivered right now.")
    return redirect(execution.get_absolute_url())

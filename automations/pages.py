import json
from datetime import timedelta

from django import forms
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.paginator import EmptyPage, PageNotAnInteger, Paginator
from django.db.models import Count, OuterRef, Q, Subquery
from django.db.models.functions import Coalesce
from django.http import Http404, HttpResponseNotAllowed
from django.shortcuts import get_object_or_404, redirect, render
from django.utils import timezone
from django.utils.http import url_has_allowed_host_and_scheme

from teams.models import ROLE_RANK, Role
from tracking.pages import member_team

from .api import execution_queryset, redeliver, shown_request
from . import event_types, lifecycle
from .context import payload_context
from .event_types.run_metric_threshold import thresholds_for_run  # noqa: F401 (the run page's chart lines)
from .models import ActionType, EventType, Execution, ExecutionStatus

PAGE_SIZE = 50


def may_write(team, user):
    role = team.role_of(user)
    return role is not None and ROLE_RANK[role] >= ROLE_RANK[Role.MEMBER]


def page_of(request, queryset, size=PAGE_SIZE):
    """One server-side page of `queryset` (?page=N in the URL, kept with the other filters).
    The page is found over the ids alone (a narrow sort, however many rows match), then its
    rows are read whole: two queries and a count, whatever the page."""
    paginator = Paginator(queryset.values_list("pk", flat=True), size)
    try:
        page = paginator.page(request.GET.get("page") or 1)
    except PageNotAnInteger:
        page = paginator.page(1)
    except EmptyPage:
        page = paginator.page(paginator.num_pages)
    ids = list(page.object_list)
    rows = queryset.order_by().in_bulk(ids) if ids else {}
    page.object_list = [rows[pk] for pk in ids if pk in rows]
    return page


def query_without(request, *names):
    """The current query string without `names` (for links that change only those)."""
    kept = request.GET.copy()
    for name in names:
        kept.pop(name, None)
    return kept.urlencode()


def blank(choices):
    return [("", "any")] + [(c, c) for c in choices]


class ExecutionFilter(forms.Form):
    """The filters of the executions pages, all in the URL's query so that a view can be shared."""

    status = forms.ChoiceField(choices=blank(ExecutionStatus.values), required=False)
    automation = forms.TypedChoiceField(coerce=int, required=False, empty_value=None)
    event = forms.ChoiceField(choices=blank(EventType.values), required=False, label="Event type")
    since = forms.DateTimeField(required=False, label="From", widget=forms.DateTimeInput(attrs={"type": "datetime-local"}))
    until = forms.DateTimeField(required=False, label="To", widget=forms.DateTimeInput(attrs={"type": "datetime-local"}))

    def __init__(self, data, automations=None):
        super().__init__(data)
        if automations is None:
            del self.fields["automation"]
        else:
            self.fields["automation"].choices = [("", "any")] + [(a.pk, a.name) for a in automations]

    def clean(self):
        data = super().clean()
        if data.get("since") and data.get("until") and data["since"] > data["until"]:
            self.add_error("until", "Must be after From.")
        return data

    def apply(self, queryset):
        data = self.cleaned_data
        if data.get("status"):
            queryset = queryset.filter(status=data["status"])
        if data.get("automation"):
            queryset = queryset.filter(automation_id=data["automation"])
        if data.get("event"):
            queryset = queryset.filter(automation__event_type=data["event"])
        if data.get("since"):
            queryset = queryset.filter(triggered_at__gte=data["since"])
        if data.get("until"):
            queryset = queryset.filter(triggered_at__lte=data["until"])
        return queryset


def filtered_executions(request, queryset, automations=None):
    """(filter form, page, HTTP status): a bad filter shows the page with the field's error, 400."""
    form = ExecutionFilter(request.GET, automations)
    if not form.is_valid():
        return form, None, 400
    return form, page_of(request, form.apply(queryset)), 200


@login_required
def executions_page(request, team):
    team = member_team(request, team)
    automations = team.automations.only("name", "team_id").order_by("name")
    form, page, status = filtered_executions(request, execution_queryset().filter(automation__team=team), automations)
    return render(request, "tripline/executions.html", {"team": team, "form": form, "page": page, "keep": query_without(request, "page")},
                  status=status)


def automation_rows(team, now=None):
    """The hub's rows: each automation with its last execution and its failures in the last 24 h,
    in a constant number of queries however many automations and executions there are."""
    now = now or timezone.now()
    last = Execution.objects.filter(automation=OuterRef("pk")).order_by("-triggered_at", "-id")
    failures = (Execution.objects.filter(automation=OuterRef("pk"), status=ExecutionStatus.FAILED, triggered_at__gte=now - timedelta(hours=24))
                .order_by().values("automation").annotate(n=Count("pk")).values("n"))
    return (team.automations.select_related("team", "project__team", "registry__team", "collection__project__team", "collection__registry__team",
                                            "integration")
            .annotate(last_id=Subquery(last.values("pk")[:1]), last_status=Subquery(last.values("status")[:1]),
                      last_at=Subquery(last.values("triggered_at")[:1]), failures_24h=Coalesce(Subquery(failures), 0)))


class HubFilter(forms.Form):
    q = forms.CharField(required=False, max_length=200, label="Search")
    event = forms.ChoiceField(choices=blank(EventType.values), required=False, label="Event type")
    action = forms.ChoiceField(choices=blank(ActionType.values), required=False)
    enabled = forms.ChoiceField(choices=[("", "any"), ("yes", "yes"), ("no", "no")], required=False)
    last = forms.ChoiceField(choices=blank(ExecutionStatus.values) + [("never", "never")], required=False, label="Last status")
    failing = forms.BooleanField(required=False, label="Failed in the last 24 h")

    def apply(self, queryset):
        data = self.cleaned_data
        if data.get("q"):
            queryset = queryset.filter(Q(name__icontains=data["q"]) | Q(description__icontains=data["q"]))
        if data.get("event"):
            queryset = queryset.filter(event_type=data["event"])
        if data.get("action"):
            queryset = queryset.filter(action_type=data["action"])
        if data.get("enabled"):
            queryset = queryset.filter(enabled=data["enabled"] == "yes")
        if data.get("last") == "never":
            queryset = queryset.filter(last_status__isnull=True)
        elif data.get("last"):
            queryset = queryset.filter(last_status=data["last"])
        if data.get("failing"):
            queryset = queryset.filter(failures_24h__gt=0)
        return queryset


@login_required
def automation_list(request, team):
    """The automations hub."""
    team = member_team(request, team)
    form = HubFilter(request.GET)
    rows = automation_rows(team)
    status = 200
    if form.is_valid():
        rows = form.apply(rows)
    else:
        rows, status = rows.none(), 400
    return render(request, "tripline/automations.html", {"team": team, "automations": page_of(request, rows), "form": form,
                                                         "keep": query_without(request, "page"), "may_edit": may_write(team, request.user),
                                                         "here": request.get_full_path(),
                                                         "day_ago": (timezone.localtime() - timedelta(hours=24)).strftime("%Y-%m-%dT%H:%M:%S")},
                  status=status)


@login_required
def automation_toggle(request, team, pk):
    """Enable or disable an automation from the hub (members and admins; a POST with its CSRF token)."""
    if request.method != "POST":
        return HttpResponseNotAllowed(["POST"])
    team = member_team(request, team)
    if not may_write(team, request.user):
        raise Http404
    automation = get_object_or_404(team.automations, pk=pk)
    wanted = request.POST.get("enabled")
    if wanted not in ("true", "false"):
        messages.error(request, "enabled: must be true or false.")
    else:
        automation.enabled = wanted == "true"
        automation.save(update_fields=["enabled", "updated_at"])
        messages.success(request, f"{automation.name} is {'enabled' if automation.enabled else 'disabled'}.")
    back = request.POST.get("next", "")
    if not url_has_allowed_host_and_scheme(back, allowed_hosts={request.get_host()}, require_https=request.is_secure()):
        back = automation.get_absolute_url()
    return redirect(back)


@login_required
def automation_page(request, team, pk):
    team = member_team(request, team)
    automation = get_object_or_404(team.automations.select_related("integration", "team"), pk=pk)
    form, page, status = filtered_executions(request, execution_queryset().filter(automation=automation))
    return render(request, "tripline/automation.html", {"team": team, "automation": automation, "page": page, "form": form,
                                                         "keep": query_without(request, "page"), "may_edit": may_write(team, request.user),
                                                         "event_filter": json.dumps(automation.event_filter, indent=2)},
                  status=status)


def what_next(execution, now=None):
    """One sentence: what happens to this execution next."""
    now = now or timezone.now()
    if execution.status == ExecutionStatus.PENDING:
        when = execution.next_attempt_at
        if when is None or when <= now:
            return "Waiting for a worker: it is due now."
        return f"Attempt {execution.attempt_count + 1} at {timezone.localtime(when):%Y-%m-%d %H:%M:%S %Z} (in {naturaldelta(when - now)})."
    if execution.status == ExecutionStatus.RUNNING:
        return "A worker is delivering it right now."
    if not lifecycle.sends(execution.automation):
        return "Nothing: this action delivers nothing."
    if execution.is_test:
        return "Nothing: a test is sent once, without retries. Redelivering sends it again."
    if execution.status == ExecutionStatus.FAILED:
        return "Nothing: every attempt of its round has failed. Redelivering starts a new round with the same delivery id."
    return "Nothing: it is done. Redelivering sends it again with the same delivery id."


def naturaldelta(delta):
    seconds = int(delta.total_seconds())
    if seconds < 60:
        return f"{seconds} s"
    if seconds < 3600:
        return f"{seconds // 60} min {seconds % 60} s"
    return f"{seconds // 3600} h {seconds % 3600 // 60} min"


def execution_for(request, team, pk):
    return get_object_or_404(execution_queryset().filter(automation__team=team).prefetch_related("attempts"), pk=pk)


@login_required
def execution_page(request, team, pk):
    team = member_team(request, team)
    execution = execution_for(request, team, pk)
    role = team.role_of(request.user)
    shown = shown_request(execution.request, role)
    return render(request, "tripline/execution.html", {
        "team": team, "execution": execution, "can_redeliver": ROLE_RANK[role] >= ROLE_RANK[Role.MEMBER],
        "deliverable": lifecycle.sends(execution.automation),
        "request_json": json.dumps(shown, indent=2, ensure_ascii=False),
        "url_hidden": shown != execution.request,
        "context_json": json.dumps(execution.context, indent=2, ensure_ascii=False),
        "next": what_next(execution),
        "what": event_types.get(execution.automation.event_type).sentence(payload_context(execution)),
    })


@login_required
def execution_redeliver(request, team, pk):
    """GET: the confirmation step; POST (with its CSRF token): deliver again, same delivery id."""
    if request.method not in ("GET", "POST"):
        return HttpResponseNotAllowed(["GET", "POST"])
    team = member_team(request, team)
    if not may_write(team, request.user):
        raise Http404
    execution = get_object_or_404(execution_queryset().filter(automation__team=team), pk=pk)
    if not lifecycle.sends(execution.automation):
        messages.error(request, "This execution's action delivers nothing: there is nothing to redeliver.")
        return redirect(execution.get_absolute_url())
    if request.method == "GET":
        return render(request, "tripline/redeliver.html", {"team": team, "execution": execution})
    if redeliver(execution):
        messages.success(request, "Queued for redelivery.")
    else:
        messages.error(request, "This execution is being delivered right now.")
    return redirect(execution.get_absolute_url())

"""Every admin form of every registered model, attacked by signed-in users of each role and of
another team with generated hostile values: never a 5xx, never a secret or another team's object
in an answer, never a write into another team or a row moved between teams, and every table
exactly as before after each refusal.

Models, forms, fields and ids are discovered (admin.site._registry and the forms' own fields),
not listed: a model or field added later is swept too. Each request runs in a savepoint rolled
back afterwards, so every case starts from the same database. Users sign in through /login/.
"""

import logging
from urllib.parse import urlencode

import pytest
from django.contrib import admin
from django.core.exceptions import ValidationError
from django.db import connection, models, transaction
from django.db.models import F, ForeignKey
from django.forms import ModelChoiceField
from django.http import QueryDict
from django.test import Client
from django.utils import timezone

from actions.models import Integration
from automations.models import Automation, DeliveryAttempt, Execution, RunCondition
from events.models import Event
from teams.admin import TEAM_PATHS, scoped, unstorable
from teams.models import Membership, Role, Secret, Team
from tracking.history import log_history
from tracking.models import ArtifactCollection, Run, create_version, link_version

from .engine import make_automation
from .signin import sign_in

pytestmark = pytest.mark.django_db

# One value per class of bad input a form field may meet. Lone surrogates are sent as raw UTF-8
# bytes (the body is encoded with surrogatepass) and, for JSON inputs, as \u escapes.
HOSTILE = {
    "empty": "",
    "several values": ["1", "2"],
    "object": "{}",
    "list": "[1, 2]",
    "null": "null",
    "1 MB": "x" * 1_000_000,
    "lone surrogate": "a\ud800b",
    "JSON lone surrogate": '{"k": "\\udfff"}',
    "JSON NUL": '["\\u0000"]',
    "NUL": "a\x00b",
    "huge integer": "9" * 400,
    "integer too long to read": "9" * 5000,
    "overflowing float": "1e999",
    "NaN": "NaN",
    "negative": "-1",
    "nested 5000 deep": "[" * 5000 + "]" * 5000,
}
ODD_IDS = ["9" * 400, "-1", "abc", "%00"]


def build_team(name, admin_user, member=None, viewer=None):
    """A team with at least one object of every kind the admin shows, each naming its team (so
    that a page showing another team's object gives it away)."""
    team = Team.objects.create(name=name)
    for user, role in ((admin_user, Role.ADMIN), (member, Role.MEMBER), (viewer, Role.VIEWER)):
        if user:
            Membership.objects.create(team=team, user=user, role=role)
    project = team.projects.create(name="vision", description=f"{name} project")
    run = Run.objects.create(project=project, run_id="r1", name=f"{name} run", user=admin_user)
    log_history(run, [{"step": i, "metrics": {"loss": 1 / (i + 1)}} for i in range(3)], user=admin_user)
    registry = team.registries.create(name="models")
    collection = ArtifactCollection.objects.create(team=team, project=project, name="mnist", type="model")
    version = create_version(collection, created_by=admin_user, aliases=["prod"], tags=["t1"], run=run)
    link_version(ArtifactCollection.objects.create(team=team, registry=registry, name="clf", type="model"), version, aliases=["staging"])
    secret = Secret.objects.create(team=team, name="TOKEN", value=f"s3cret-value-of-{name}")
    integration = Integration.objects.create(team=team, kind="webhook", name=f"{name}-hook", url="https://example.org/hook", access_token_secret=secret)
    automation = make_automation(team, f"{name}-watch", {"type": "project", "project": "vision"},
                                 {"type": "RUN_METRIC_THRESHOLD", "metric": "loss", "cmp": "$lt", "threshold": 0.5},
                                 {"type": "WEBHOOK", "integration": integration.pk, "payload": {"v": "${run_id}"}})
    execution = Execution.objects.create(automation=automation, event=Event.objects.filter(team=team).first(), status="failed")
    DeliveryAttempt.objects.create(execution=execution, number=1, started_at=timezone.now(), status_code=500)
    RunCondition.objects.create(automation=automation, run=run, met=True)
    return team


@pytest.fixture
def world(make_user):
    # Thousands of refusals follow, which Django would log with a traceback each; server errors
    # are collected from the answers instead.
    logger = logging.getLogger("django.request")
    level, logger.level = logger.level, logging.CRITICAL
    users = {name: make_user(name) for name in ("alice", "bob", "vic", "charlie", "dora")}
    acme = build_team("acme", users["alice"], users["bob"], users["vic"])
    rivals = build_team("rivals", users["charlie"], users["dora"])
    clients = {}
    for name in ("alice", "bob", "vic", "charlie"):
        clients[name] = Client(raise_request_exception=False)
        assert sign_in(clients[name], name).status_code == 302
    yield {"acme": acme, "rivals": rivals, "clients": clients}
    logger.setLevel(level)


def every_model():
    """The registered models that belong to a team (the others: test_the_site_admins_…)."""
    return [model for model in admin.site._registry if model in TEAM_PATHS]


def one_of(model, team):
    """The team's first object of `model` (for memberships, one that is not an admin's)."""
    queryset = scoped(model._default_manager.order_by("pk"), {team.pk})
    if model is Membership:
        queryset = queryset.exclude(role=Role.ADMIN)
    return queryset.first()


def admin_url(model, suffix=""):
    return f"/admin/{model._meta.app_label}/{model._meta.model_name}/{suffix}"


# --- What the database holds


def snapshot():
    """Every row of every table, as text."""
    tables = {}
    with connection.cursor() as cursor:
        for table in sorted(connection.introspection.table_names()):
            cursor.execute(f"SELECT * FROM {connection.ops.quote_name(table)}")
            tables[table] = sorted(map(repr, cursor.fetchall()))
    return tables


def team_models(tables=None):
    """{model: its path to its team} of the team models, or of those stored in `tables`."""
    return {model: path for model, path in TEAM_PATHS.items() if tables is None or model._meta.db_table in tables}


def team_rows(tables=None):
    """{(model, pk): (team id, {column: value})} for every object that belongs to a team (in `tables`)."""
    rows = {}
    for model, path in team_models(tables).items():
        for row in model._default_manager.annotate(owner_team=F(path)).values():
            rows[model._meta.label, row["id"]] = (row.pop("owner_team"), row)
    return rows


def cross_team_writes(before, after, other_team):
    """Rows of `other_team` added, changed or deleted, and rows moved from one team to another."""
    found = []
    for key in before.keys() | after.keys():
        old, new = before.get(key), after.get(key)
        if old == new:
            continue
        if old and new and old[0] != new[0]:
            found.append(f"{key} moved from team {old[0]} to {new[0]}")
        elif other_team.pk in {row[0] for row in (old, new) if row}:
            found.append(f"{key} of {other_team} written")
    return found


def mixed_teams(tables=None):
    """Rows (in `tables`) whose foreign keys reach another team than their own."""
    found = []
    for model, path in team_models(tables).items():
        for field in model._meta.concrete_fields:
            target = TEAM_PATHS.get(field.related_model) if isinstance(field, ForeignKey) else None
            if target is None or path == "pk" or field.name == path.split("__")[0]:
                continue
            bad = model._default_manager.exclude(**{f"{field.name}__isnull": True}).exclude(**{f"{field.name}__{target}": F(path)})
            found += [f"{model.__name__}.{field.name} of {obj.pk}" for obj in bad]
    return found


# --- Admin form pages


def body(data):
    return urlencode(data, doseq=True, encoding="utf-8", errors="surrogatepass")


class FormPage:
    """An admin add or change page as a user sees it: its fields (inline rows included) and
    what it would post back unchanged."""

    def __init__(self, response):
        self.forms, self.values = [], {}
        if response.status_code != 200 or response.context is None or "adminform" not in response.context:
            return
        main = response.context["adminform"].form
        self.forms = [main]
        management = []
        for inline in response.context["inline_admin_formsets"]:
            self.forms += inline.formset.forms
            management.append(inline.formset.management_form)
        for form in [*self.forms, *management]:
            for name in form.fields:
                value = form[name].value()
                if value is not None and value is not False:
                    self.values[form.add_prefix(name)] = "on" if value is True else value
        self.main_names = {main.add_prefix(name) for name in main.fields}

    @property
    def fields(self):
        """{posted name: field} of the fields that take input (not disabled ones)."""
        return {form.add_prefix(name): field for form in self.forms for name, field in form.fields.items() if not field.disabled}

    def cleaned(self, name, data):
        """What the field alone makes of `data` (as the server decodes it), or REFUSED: a field
        error already answers the case, and values a field cleans alike are one case."""
        field = self.fields[name]
        try:
            return repr(field.clean(field.widget.value_from_datadict(QueryDict(body(data)), {}, name)))
        except ValidationError:
            return REFUSED
        except Exception as exc:  # noqa: BLE001 - the real request will show what it does
            return repr(exc)


REFUSED = object()


def valid_add_values(model, add_page, change_page):
    """An add form's values copied from an existing object's change form, with the columns that
    must be unique changed: an add that hostile values can reach beyond the first error."""
    unique = {f.name for f in model._meta.fields if f.unique}
    for constraint in model._meta.constraints:
        unique |= set(getattr(constraint, "fields", ()))
    values = dict(add_page.values)
    for name in add_page.main_names:
        if name in change_page.values:
            value = change_page.values[name]
            is_text = isinstance(model._meta._forward_fields_map.get(name), (models.CharField, models.TextField))
            values[name] = f"{value}2" if name in unique and is_text and isinstance(value, str) else value
    return values


def all_columns(model):
    """For a form nobody may open (read-only models): post to every column anyway."""
    return [field.name for field in model._meta.concrete_fields]


# --- One request, judged


class Sweep:
    def __init__(self, world):
        self.world = world
        self.baseline = snapshot()
        self.rows = team_rows()
        self.secrets = list(Secret.objects.values_list("value", flat=True))
        self.failures = []
        self.shown = set()

    def request(self, who, method, url, data=None, *, refused, case):
        """One request in a rolled-back savepoint. `refused`: the role table refuses it, so
        nothing at all may change. Nothing of the team `who` is not in may show or change."""
        client = self.world["clients"][who]
        other = self.world["acme" if who == "charlie" else "rivals"]
        label = f"{who} {method} {url} [{case}]"
        with transaction.atomic():
            if method == "POST":
                response = client.post(url, body(data or {}), content_type="application/x-www-form-urlencoded")
            else:
                response = client.get(url, data)
            html = response.content.decode(errors="replace")
            if response.status_code >= 500:
                error = response.exc_info[1] if getattr(response, "exc_info", None) else ""
                self.failures.append(f"{label}: {response.status_code} {error!r}"[:400])
            if any(secret in html for secret in self.secrets):
                self.failures.append(f"{label}: shows a secret")
            if other.name in html:
                self.failures.append(f"{label}: shows an object of {other.name}")
            if method == "POST" and response.status_code < 500:
                self.check_database(label, refused, response, client, other)
            transaction.set_rollback(True)

    def check_database(self, label, refused, response, client, other):
        now = snapshot()
        changed = {table for table in now if now[table] != self.baseline[table]}
        if not changed:
            return
        if refused:
            self.failures.append(f"{label}: changed {sorted(changed)} ({response.status_code})")
            return
        if response.status_code != 302:
            self.failures.append(f"{label}: changed {sorted(changed)} yet answered {response.status_code}")
        # Only the tables that changed can hold a cross-team write.
        labels = {model._meta.label for model in team_models(changed)}
        before = {key: row for key, row in self.rows.items() if key[0] in labels}
        after = team_rows(changed)
        problems = cross_team_writes(before, after, other) + mixed_teams(changed)
        # What was stored must show: text a page can encode, numbers JSON can write.
        problems += [f"{key}: {unstorable(row)}" for key, (_, row) in after.items() if before.get(key) != after[key] and unstorable(row)]
        if problems:
            self.failures.append(f"{label}: {problems}")
        field = (label.split(" [")[0], label.split("=")[0])
        if response.status_code == 302 and field not in self.shown:  # and show (a page, once per field)
            self.shown.add(field)
            shown = client.get(response["Location"])
            if shown.status_code >= 500:
                self.failures.append(f"{label}: then {response['Location']} answers {shown.status_code}")

    def done(self):
        assert not self.failures, f"{len(self.failures)} failures:\n" + "\n".join(self.failures[:40])


def form_targets(model, team, client):
    """(kind, url, page, values) of the model's add and change forms for the team."""
    obj = one_of(model, team)
    change_url = admin_url(model, f"{obj.pk}/change/")
    change = FormPage(client.get(change_url))
    add_url = admin_url(model, "add/")
    add = FormPage(client.get(add_url))
    yield "add", add_url, add, valid_add_values(model, add, change) if add.forms else {}
    yield "change", change_url, change, change.values


def foreign_ids(page, other_team):
    """{posted name: id of the other team's object} for every foreign key of the page."""
    ids = {}
    for name, field in page.fields.items():
        if isinstance(field, ModelChoiceField):
            foreign = one_of(field.queryset.model, other_team)
            if foreign is not None:
                ids[name] = str(getattr(foreign, field.to_field_name or "pk"))
    return ids


def extra_fields(model, other_team):
    """Fields the form does not have, aimed at the other team: they must change nothing."""
    extra = {"zz_unknown": "1", "id": "1", "pk": "1"}
    for field in model._meta.concrete_fields:
        if isinstance(field, ForeignKey):
            foreign = one_of(field.related_model, other_team)
            if foreign is not None:
                extra[field.name] = extra[field.attname] = str(foreign.pk)
    return extra


def attack(sweep, who, model, kind, url, page, values, *, refused, other, every_value=True):
    """Every field at once with each hostile value; every foreign key at once, then one by one,
    with the other team's objects; unknown fields; and, on a change form the user may save,
    each field alone with each hostile value it lets through (the others kept valid, so the
    value reaches the form's and the model's own checks and the save).

    Two hostile bodies stand for all where more would show nothing new: a post the role
    refuses is refused before its body is read, and an add form has the fields of its change
    form, which meets every value."""
    names = list(page.fields) or all_columns(model)
    cases = HOSTILE if every_value and not refused and kind == "change" else {case: HOSTILE[case] for case in ("1 MB", "NUL")}
    for case, value in cases.items():
        sweep.request(who, "POST", url, {**values, **dict.fromkeys(names, value)}, refused=refused, case=f"{kind} all={case}")
    foreign = foreign_ids(page, other)
    sweep.request(who, "POST", url, {**values, **foreign}, refused=refused, case=f"{kind} every foreign key={other}")
    for name, foreign_id in foreign.items() if not refused else ():
        sweep.request(who, "POST", url, {**values, name: foreign_id}, refused=refused, case=f"{kind} {name}={other}")
    sweep.request(who, "POST", url, {**values, **extra_fields(model, other)}, refused=refused, case=f"{kind} unknown fields")
    if every_value and not refused and kind == "change":
        for name in page.fields:
            seen = {REFUSED}
            for case, value in HOSTILE.items():
                data = {**values, name: value}
                cleaned = page.cleaned(name, data)
                if cleaned not in seen:
                    seen.add(cleaned)
                    sweep.request(who, "POST", url, data, refused=refused, case=f"{kind} {name}={case}")


def test_the_fixture_holds_every_team_model(world):
    for model in every_model():
        for team in (world["acme"], world["rivals"]):
            assert one_of(model, team) is not None, f"the fixture has no {model.__name__} in {team}"


def test_a_team_admin_meets_every_field_with_hostile_values(world):
    """charlie, admin of rivals, on his own team's forms: he may change everything there, so
    each field's hostile values reach as deep as they can; acme's objects in foreign keys and
    unknown fields must never write into acme."""
    sweep = Sweep(world)
    rivals, acme = world["rivals"], world["acme"]
    for model in every_model():
        for kind, url, page, values in form_targets(model, rivals, world["clients"]["charlie"]):
            attack(sweep, "charlie", model, kind, url, page, values, refused=not page.forms, other=acme)
    sweep.done()


# SPEC.md section 5 as the admin applies it to a member; viewers and outsiders change nothing.
MEMBER_CHANGES = {"tracking.Project", "tracking.Run", "tracking.Registry", "tracking.ArtifactCollection", "tracking.ArtifactVersion",
                  "tracking.ArtifactAlias", "tracking.ArtifactTag", "automations.Automation"}
NOBODY_ADDS = {"tracking.ArtifactVersion", "teams.Team"}  # versions come from the API; teams too (superusers excepted)


def member_may(model, kind):
    return model._meta.label in MEMBER_CHANGES and not (kind == "add" and model._meta.label in NOBODY_ADDS)


@pytest.mark.parametrize("who", ["bob", "vic", "charlie"])
def test_members_viewers_and_outsiders_change_only_what_their_role_allows(world, who):
    """acme's forms, as acme's admin sees them (values and all), posted by its member, its
    viewer and rivals' admin. What the role table refuses changes nothing at all; what the
    member may change, never with rivals' objects. (An add form is no team's own: charlie's
    adds are his admin's sweep.)"""
    sweep = Sweep(world)
    acme, rivals = world["acme"], world["rivals"]
    for model in every_model():
        for kind, url, page, values in form_targets(model, acme, world["clients"]["alice"]):
            if who == "charlie" and kind == "add":
                continue
            refused = who != "bob" or not member_may(model, kind)
            # The forms themselves meet every value in the team admin's sweep; here, the role.
            attack(sweep, who, model, kind, url, page, values, refused=refused, other=acme if who == "charlie" else rivals, every_value=False)
    sweep.done()


# Deleting in the admin (README, "Who may do what"): what the system records is never deleted on
# its own; a team's history (projects, runs, registries, collections, versions) only by its admins.
NEVER_DELETED = {"events.Event", "tracking.MetricPoint", "tracking.RunMetric", "automations.Execution", "automations.RunCondition"}
MEMBERS_DELETE = {"tracking.ArtifactAlias", "tracking.ArtifactTag", "automations.Automation"}


@pytest.mark.parametrize("who", ["alice", "bob", "vic", "charlie"])
def test_who_may_delete_what(world, who):
    sweep = Sweep(world)
    acme = world["acme"]
    for model in every_model():
        label = model._meta.label
        allowed = label not in NEVER_DELETED and (who == "alice" or (who == "bob" and label in MEMBERS_DELETE))
        obj = one_of(model, acme)
        url = admin_url(model, f"{obj.pk}/delete/")
        sweep.request(who, "POST", url, {"post": "yes"}, refused=not allowed, case="delete")
        sweep.request(who, "POST", admin_url(model), {"action": "delete_selected", "_selected_action": [obj.pk], "post": "yes"},
                      refused=not allowed, case="delete selected")
        if allowed:
            with transaction.atomic():
                # What is in use is PROTECTed (the admin lists what holds it; the API answers 409):
                # automations go before their integration, integrations before their secrets.
                if model in (Team, Secret, Integration):
                    acme.automations.all().delete()
                if model in (Team, Secret):
                    acme.integrations.all().delete()
                response = world["clients"][who].post(url, {"post": "yes"})
                gone = not model._default_manager.filter(pk=obj.pk).exists()
                transaction.set_rollback(True)
            assert response.status_code == 302 and gone, f"{who} could not delete {label}: {response.status_code}"
    sweep.done()


@pytest.mark.parametrize("who", ["bob", "charlie"])
def test_lookups_and_odd_ids_show_nothing_of_another_team(world, who):
    """Raw-id lookup lists, autocompletes, and object URLs holding the other team's id or ids
    that are not ids: no 5xx, nothing of the other team, nothing changed."""
    sweep = Sweep(world)
    team, other = (world["acme"], world["rivals"]) if who == "bob" else (world["rivals"], world["acme"])
    for model in every_model():
        sweep.request(who, "GET", admin_url(model), {"_to_field": "id", "_popup": "1"}, refused=True, case="raw-id lookup")
        for field in model._meta.concrete_fields:
            if isinstance(field, ForeignKey):
                params = {"app_label": model._meta.app_label, "model_name": model._meta.model_name, "field_name": field.name, "term": ""}
                sweep.request(who, "GET", "/admin/autocomplete/", params, refused=True, case=f"autocomplete {field.name}")
        for object_id in [str(one_of(model, other).pk), *ODD_IDS]:
            for method, suffix in (("GET", "history/"), ("POST", "change/"), ("POST", "delete/")):
                sweep.request(who, method, admin_url(model, f"{object_id}/{suffix}"), {"post": "yes"}, refused=True, case="odd id")
    sweep.done()


def test_the_site_admins_are_for_superusers_only(world):
    """Users, groups, tokens and the task queue: no team role opens them."""
    sweep = Sweep(world)
    site_models = [model for model in admin.site._registry if model not in TEAM_PATHS]
    assert {"auth.User", "django_q.Schedule"} <= {model._meta.label for model in site_models}
    for model in site_models:
        obj = model._default_manager.first()
        urls = [admin_url(model), admin_url(model, "add/")] + ([admin_url(model, f"{obj.pk}/change/")] if obj else [])
        for who in world["clients"]:
            for url in urls:
                assert world["clients"][who].get(url).status_code == 403, (who, url)
                sweep.request(who, "POST", url, dict.fromkeys(all_columns(model), "1"), refused=True, case="site model")
    sweep.done()


@pytest.mark.parametrize("case", ["JSON lone surrogate", "JSON NUL"])
def test_a_payload_template_that_cannot_be_stored_is_refused(world, case):
    sweep = Sweep(world)
    automation = one_of(Automation, world["rivals"])
    url = admin_url(Automation, f"{automation.pk}/change/")
    values = FormPage(world["clients"]["charlie"].get(url)).values
    sweep.request("charlie", "POST", url, {**values, "payload": HOSTILE[case]}, refused=True, case=f"payload={case}")
    sweep.done()

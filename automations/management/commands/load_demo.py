"""`manage.py load_demo`: the demo team, safe to run again (nothing is duplicated).

Creates team `demo` with an admin `admin` (password printed; set DEMO_PASSWORD to choose it),
a project with runs and metric history, artifact versions, a registry with a link, and
automations that deliver for real as soon as a worker runs (`make run` starts one): a webhook to
Tripline's own demo receiver that succeeds, one to it that answers 500 and retries, a Slack
message that fails with a clear error (its bot token is a placeholder), and a NO_OP one.
`--site` is where the server answers (the receiver's address); a later run points the demo's
webhooks there again.
"""

import math
import os
import random
import secrets

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand
from django.conf import settings
from django.db import transaction

from automations.models import Automation
from actions.models import Integration, IntegrationKind
from automations.spec import parse_action, parse_event, parse_scope
from teams.context import acting_as
from teams.models import Membership, Role, Secret, Team
from tracking.history import log_history
from tracking.models import ArtifactCollection, Run, add_alias, create_version, link_version


# The demo's webhook integrations and the status Tripline's demo receiver answers them with.
RECEIVERS = {"demo-receiver": 200, "demo-receiver-failing": 500}


class Command(BaseCommand):
    help = "Load the demo team (idempotent) and print the admin password."

    def add_arguments(self, parser):
        parser.add_argument("--site", default="", help="Where the server answers, e.g. http://127.0.0.1:8000 (default SITE_URL).")

    def handle(self, site="", **options):
        self.site = (site or settings.SITE_URL).rstrip("/")
        password = os.environ.get("DEMO_PASSWORD") or secrets.token_urlsafe(9)
        User = get_user_model()
        admin, _ = User.objects.get_or_create(username="admin", defaults={"is_staff": True, "is_superuser": True, "email": "admin@example.com"})
        admin.set_password(password)
        admin.save()
        if Team.objects.filter(name="demo").exists():
            for name, status in RECEIVERS.items():
                Integration.objects.filter(team__name="demo", name=name).update(url=self.receiver_url(status))
            self.stdout.write("Demo data already loaded.")
        else:
            with transaction.atomic(), acting_as(admin):
                self._load(admin)
            self.stdout.write("Demo data loaded: team 'demo'.")
        self.stdout.write(self.style.SUCCESS(f"Sign in at http://localhost:8000/login/ as admin / {password}"))

    def _load(self, admin):
        rng = random.Random(7)
        team = Team.objects.create(name="demo", display_name="Demo ML team")
        Membership.objects.create(team=team, user=admin, role=Role.ADMIN)
        project = team.projects.create(name="mnist", description="Digit classifier experiments")
        registry = team.registries.create(name="models", description="Promoted models")
        # Automations first, so that the demo's own activity gives them a history to show.
        self._automations(team, admin)
        runs = []
        for i, (lr, state) in enumerate([(0.1, "finished"), (0.03, "finished"), (0.01, "running"), (0.3, "crashed")]):
            run = Run.objects.create(project=project, run_id=f"run-{i}", name=f"exp-lr{lr}", user=admin, config={"lr": lr, "epochs": 20})
            rows = []
            for step in range(200):
                loss = 2.3 * math.exp(-step * lr / 8) + rng.uniform(0, 0.05)
                rows.append({"step": step, "metrics": {"loss": round(loss, 4), "acc": round(1 - loss / 2.5, 4)}})
            log_history(run, rows, user=admin)
            run.state = state
            run.summary = {"loss": rows[-1]["metrics"]["loss"], "acc": rows[-1]["metrics"]["acc"]}
            run.save()
            runs.append(run)
        collection = ArtifactCollection.objects.create(team=team, project=project, name="mnist-model", type="model")
        versions = [create_version(collection, created_by=admin, run=runs[i], metadata={"acc": runs[i].summary["acc"]}) for i in range(3)]
        add_alias(versions[1], "best", admin)
        clf = ArtifactCollection.objects.create(team=team, registry=registry, name="digit-classifier", type="model")
        link = link_version(clf, versions[1], linked_by=admin, aliases=["staging"])[0]
        add_alias(link, "production", admin)

    def receiver_url(self, status):
        return f"{self.site}/_demo/receiver/{status}/"

    def _automations(self, team, admin):
        """Made through the same rules as the API and the admin."""
        hooks = {name: Integration.objects.create(team=team, kind=IntegrationKind.WEBHOOK, name=name, url=self.receiver_url(status))
                 for name, status in RECEIVERS.items()}
        token = Secret.objects.create(team=team, name="SLACK_BOT_TOKEN", value="xoxb-demo-placeholder-not-a-real-token")
        slack = Integration.objects.create(team=team, kind=IntegrationKind.SLACK, name="ml-alerts", channel="#ml-alerts", token_secret=token)
        payload = {"text": "${automation_name}: ${event_type} on ${artifact_version_string} by ${event_author}", "alias": "${alias}",
                   "url": "${event_url}"}
        demos = [
            ("loss below 0.1", {"type": "project", "project": "mnist"},
             {"type": "RUN_METRIC_THRESHOLD", "metric": "loss", "window": 5, "agg": "AVERAGE", "cmp": "$lt", "threshold": 0.1},
             {"type": "NO_OP"}),
            ("run failed: tell #ml-alerts", {"type": "project", "project": "mnist"}, {"type": "RUN_STATE", "states": ["FAILED"]},
             {"type": "SLACK", "integration": slack.pk, "title": "Run ${run_name} ${run_state}", "message": "<${event_url}|Open the run>"}),
            ("promoted to production: deploy", {"type": "registry", "registry": "models"},
             {"type": "ADD_ARTIFACT_ALIAS", "alias_regex": "^production$"},
             {"type": "WEBHOOK", "integration": hooks["demo-receiver"].pk, "payload": payload}),
            ("best model: evaluate", {"type": "project", "project": "mnist"}, {"type": "ADD_ARTIFACT_ALIAS", "alias_regex": "^best$"},
             {"type": "WEBHOOK", "integration": hooks["demo-receiver-failing"].pk, "payload": payload}),
        ]
        for name, scope, event, action in demos:
            event_type, event_filter = parse_event(scope["type"], event)
            action_type, integration, action_config = parse_action(team, action)
            Automation.objects.create(team=team, name=name, created_by=admin, event_type=event_type, event_filter=event_filter,
                                      action_type=action_type, integration=integration, action_config=action_config, **parse_scope(team, scope))

"""`manage.py load_demo`: the demo team, safe to run again (nothing is duplicated).

Creates team `demo` with an admin `admin` (password printed; set DEMO_PASSWORD to choose it),
a project with runs and metric history, artifact versions, a registry with a link, and a few
automations that use the NO_OP action, so that the history pages have something to show.
"""

import math
import os
import random
import secrets

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand
from django.db import transaction

from automations.models import ActionType, Automation
from automations.spec import parse_event, parse_scope
from teams.context import acting_as
from teams.models import Membership, Role, Team
from tracking.history import log_history
from tracking.models import ArtifactCollection, Run, add_alias, create_version, link_version


class Command(BaseCommand):
    help = "Load the demo team (idempotent) and print the admin password."

    def handle(self, **options):
        password = os.environ.get("DEMO_PASSWORD") or secrets.token_urlsafe(9)
        User = get_user_model()
        admin, _ = User.objects.get_or_create(username="admin", defaults={"is_staff": True, "is_superuser": True, "email": "admin@example.com"})
        admin.set_password(password)
        admin.save()
        if Team.objects.filter(name="demo").exists():
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

    def _automations(self, team, admin):
        """NO_OP automations, made through the same rules as the API and the admin."""
        demos = [
            ("loss below 0.1", {"type": "project", "project": "mnist"},
             {"type": "RUN_METRIC_THRESHOLD", "metric": "loss", "window": 5, "agg": "AVERAGE", "cmp": "$lt", "threshold": 0.1}),
            ("run failed", {"type": "project", "project": "mnist"}, {"type": "RUN_STATE", "states": ["FAILED"]}),
            ("promoted to production", {"type": "registry", "registry": "models"}, {"type": "ADD_ARTIFACT_ALIAS", "alias_regex": "^production$"}),
        ]
        for name, scope, event in demos:
            event_type, event_filter = parse_event(scope["type"], event)
            Automation.objects.create(team=team, name=name, created_by=admin, event_type=event_type, event_filter=event_filter,
                                      action_type=ActionType.NO_OP, **parse_scope(team, scope))

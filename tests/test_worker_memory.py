"""`manage.py worker` keeps the heap of its cluster process shared with the processes django-q2
forks from it (issue 9, row 6): its heap is frozen before the fork, so a full garbage collection
in a task process does not write to, and so copy, what it inherited."""

import os
import subprocess
import sys

from tests.live import ROOT

SCRIPT = """
import gc, sys
import django
django.setup()
from django_q.cluster import Cluster  # noqa: F401 - as run_cluster has it
from automations.management.commands.worker import share_with_forks
before = len(gc.get_objects())
share_with_forks()
print("COUNTS", before, gc.get_freeze_count(), len(gc.get_objects()))
"""


def test_share_with_forks_freezes_nearly_all_the_cluster_process_heap(tmp_path):
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "config.settings", "DATABASE_URL": f"sqlite:///{tmp_path / 'db.sqlite3'}",
           "PROMETHEUS_MULTIPROC_DIR": str(tmp_path / "metrics")}
    env.pop("REDIS_URL", None)
    done = subprocess.run([sys.executable, "-c", SCRIPT], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    before, frozen, tracked = map(int, done.stdout.split("COUNTS", 1)[1].split()[:3])
    # the tasks' modules (Django's apps import them) are in the heap: the collector no longer
    # walks, and writes to, nearly any of it
    assert before > 50_000
    assert frozen > 0.9 * before and tracked < 0.01 * before

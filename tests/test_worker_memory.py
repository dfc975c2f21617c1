"""`manage.py worker` keeps the heap of its cluster process shared with the processes django-q2
forks from it (issue 9, row 6): its heap is frozen before the fork, so a full garbage collection
in a task process does not write to, and so copy, what it inherited. And what a process would
build on first use is built before it forks, or serves (ops.preload): the threads of a fresh task
process, or of a gunicorn worker, find the URL lookups built."""

import os
import subprocess
import sys

import pytest

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


BUILDS = """
import os, sys, threading
import django
django.setup()
from django.urls import reverse
from django.urls.resolvers import URLResolver
PREPARE
builds, build = [], URLResolver._populate
def counted(self):
    builds.append(1)
    return build(self)
URLResolver._populate = counted
pid = os.fork()  # as django-q2 forks its task processes from the cluster process
if pid:
    sys.exit(os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]))
barrier = threading.Barrier(8)
def link():  # what each delivery thread of a fresh task process does for its payload's links
    barrier.wait()
    reverse("artifact", args=["acme", "vision", "model"])
threads = [threading.Thread(target=link) for _ in range(8)]
[t.start() for t in threads]
[t.join() for t in threads]
print("BUILDS", len(builds))
os._exit(0)
"""


@pytest.mark.parametrize("prepare, built", [
    ("from automations.management.commands.worker import share_with_forks\nshare_with_forks()", 0),  # manage.py worker
    ("import config.wsgi", 0),  # a gunicorn worker
    ("", None),  # the control: left to the first reverse, the threads build it
])
def test_a_fresh_processs_threads_find_the_url_lookups_built(tmp_path, prepare, built):
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "config.settings", "DATABASE_URL": f"sqlite:///{tmp_path / 'db.sqlite3'}",
           "PROMETHEUS_MULTIPROC_DIR": str(tmp_path / "metrics")}
    env.pop("REDIS_URL", None)
    done = subprocess.run([sys.executable, "-c", BUILDS.replace("PREPARE", prepare)], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    builds = int(done.stdout.split("BUILDS", 1)[1].split()[0])
    if built is None:
        assert builds >= 1
    else:
        assert builds == built

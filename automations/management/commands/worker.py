"""`manage.py worker`: a django-q2 cluster plus the ticker.

The ticker looks every couple of seconds (django-q2's scheduler only looks every ~30 s, too slow
for a 5-second first retry): it takes back executions whose worker died and nudges a delivery
task when something is due, an evaluation task when an event's evaluation is late
(automations.dispatch). Run as many workers as you like: work is claimed with conditional
updates.

Stopping: SIGTERM or SIGINT, sent to this process alone (docker stop, Kubernetes) or to its
whole process group (Ctrl-C, `kill -- -PGID`, systemd's KillMode=control-group), stops it within
a second or two. The cluster is killed at once and the executions it was delivering are handed
back, due now, for another worker to deliver (at least once, with the same webhook-id) instead
of after their lease. django-q2's own stop is not used: its signal handler can deadlock on a
lock the interrupted code holds (django-q2 issues #66 and #346), and a graceful stop would wait
for the deliveries in flight. So the cluster runs in a process group of its own, gets signals
from this process only, and cannot outlive it: it holds the read end of a pipe whose write end
only this process holds, and kills its group when the pipe closes, however this process ended.
"""

import argparse
import ctypes
import gc
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid

from django.conf import settings
from django.core.management.base import BaseCommand
from django.db import close_old_connections

logger = logging.getLogger("tripline.worker")
GROUP_GONE_WITHIN = 5.0  # seconds to wait for the killed cluster's processes to be gone
PR_SET_CHILD_SUBREAPER = 36  # linux/prctl.h


class Command(BaseCommand):
    help = "Run a django-q2 cluster and the ticker that nudges due deliveries."

    def add_arguments(self, parser):
        parser.add_argument("--tick", type=float, default=2.0, help="seconds between looks for due work")
        parser.add_argument("--cluster-lifeline", type=int, help=argparse.SUPPRESS)  # the cluster, started by a worker

    def handle(self, tick, cluster_lifeline=None, **options):
        if cluster_lifeline is not None:
            return run_cluster(cluster_lifeline)
        from automations import dispatch, lifecycle
        from ops.health import beat
        from ops.metrics import serve_worker_metrics

        worker = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        stopping = []

        def stop(*_):
            # Only a flag: taking a lock here could deadlock, as django-q2's handler does.
            stopping.append(True)

        signal.signal(signal.SIGINT, stop)
        signal.signal(signal.SIGTERM, stop)
        become_subreaper()
        lifeline, keep = os.pipe()
        cluster = subprocess.Popen(
            [sys.executable, str(settings.BASE_DIR / "manage.py"), "worker", "--cluster-lifeline", str(lifeline)],
            pass_fds=[lifeline], process_group=0, env={**os.environ, "TRIPLINE_WORKER_ID": worker},
        )
        os.close(lifeline)
        serve_worker_metrics()
        dispatch.broker()  # its module imported now, not by the first nudge: 0.4 s of CPU in the middle of the first load
        try:
            while not stopping and cluster.poll() is None:
                try:
                    dispatch.tick()
                    beat()
                except Exception:  # the ticker must outlive a database hiccup
                    logger.exception("dispatch tick failed")
                finally:
                    close_old_connections()
                until = time.monotonic() + tick
                while not stopping and time.monotonic() < until:
                    time.sleep(0.05)
        finally:
            started = time.monotonic()
            kill_cluster(cluster)
            os.close(keep)
            logger.info("cluster killed in %.2f s", time.monotonic() - started)
            try:
                if lifecycle.hand_back(worker):
                    dispatch.nudge("deliver", force=True)  # a nudge waiting in the killed cluster is gone with it
            except Exception:  # the database is away: the leases run out and the ticker of another worker takes them back
                logger.exception("could not hand back this worker's executions")
            logger.info("worker %s stopped", worker)


def become_subreaper():
    """On Linux, adopt the cluster's orphaned processes when it is killed, so that they are reaped
    (and known gone) at once rather than whenever init gets to them."""
    if sys.platform == "linux":
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)


def kill_cluster(cluster):
    """Kill the cluster's process group, and wait until none of its processes can still send."""
    try:
        os.killpg(cluster.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    cluster.wait()
    until = time.monotonic() + GROUP_GONE_WITHIN
    while time.monotonic() < until:
        try:
            os.killpg(cluster.pid, 0)
        except ProcessLookupError:
            return
        try:  # its orphans are ours to reap (a subreaper, or PID 1 in a container)
            while os.waitpid(-1, os.WNOHANG)[0]:
                pass
        except ChildProcessError:
            pass
        time.sleep(0.02)
    logger.warning("the cluster's processes were still there %.0f s after SIGKILL", GROUP_GONE_WITHIN)


def run_cluster(lifeline):
    """The django-q2 cluster of a worker, in the process group the worker made for it."""
    from django_q.cluster import Cluster

    def watch():
        os.read(lifeline, 1)  # returns when the worker's end closes: it stopped, or died
        os.killpg(0, signal.SIGKILL)

    threading.Thread(target=watch, name="lifeline", daemon=True).start()
    cluster = Cluster()
    share_with_forks()
    # Only the worker stops the cluster (see above): django-q2's handler is not installed.
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    cluster.start()
    cluster.sentinel.join()


def share_with_forks():
    """Keep this process's heap shared with the processes django-q2 forks from it (the sentinel,
    and from it the pusher, the monitor and the task processes).

    A forked process shares its parent's memory until either writes to it. A full collection of
    Python's cyclic garbage collector writes to every object it tracks, so the first one in each
    task process, some seconds into a load, copied nearly all the heap it had inherited: about
    20 MiB per task process, and ~45 MiB in all with what the other processes were left holding
    alone (issue 9, row 6). The collector leaves frozen objects alone (gc.freeze), so their pages
    stay shared; what the processes allocate after the fork is collected as before. What each
    task process would build on first use is built here first, once (ops.preload)."""
    from ops import preload

    preload.url_resolver()
    gc.collect()
    gc.freeze()

"""`manage.py worker`: a django-q2 cluster plus the delivery ticker.

The ticker hands due work to the cluster every couple of seconds: retries whose time has come
and executions whose worker died (lease expired), plus a sweep of events left unevaluated.
django-q2's own scheduler only looks every ~30 s, too slow for a 5-second first retry.
Run as many workers as you like: work is claimed with conditional updates.
"""

import logging
import signal
import subprocess
import sys
import time

from django.core.management.base import BaseCommand
from django.db import close_old_connections

logger = logging.getLogger("tripline.worker")


class Command(BaseCommand):
    help = "Run a django-q2 cluster and the ticker that dispatches due deliveries."

    def add_arguments(self, parser):
        parser.add_argument("--tick", type=float, default=2.0, help="seconds between looks for due work")

    def handle(self, tick, **options):
        from automations.dispatch import tick as dispatch_tick
        from ops.health import beat
        from ops.metrics import serve_worker_metrics

        serve_worker_metrics()

        cluster = subprocess.Popen([sys.executable, "manage.py", "qcluster"])
        stopping = False

        def stop(*_):
            nonlocal stopping
            stopping = True

        signal.signal(signal.SIGINT, stop)
        signal.signal(signal.SIGTERM, stop)
        try:
            while not stopping and cluster.poll() is None:
                try:
                    dispatch_tick()
                    beat()
                except Exception:  # the ticker must outlive a database hiccup
                    logger.exception("dispatch tick failed")
                finally:
                    close_old_connections()
                slept = 0.0
                while slept < tick and not stopping:
                    time.sleep(0.2)
                    slept += 0.2
        finally:
            if cluster.poll() is None:
                cluster.send_signal(signal.SIGTERM)
                try:
                    cluster.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    cluster.kill()

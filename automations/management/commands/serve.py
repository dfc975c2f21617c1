"""`manage.py serve`: the web server and the task worker together in the foreground.

Ctrl-C (or SIGTERM) stops both. For production run the web server (gunicorn) and any number
of `manage.py worker` processes separately; see README.
"""

import signal
import subprocess
import sys
import time

from django.core.management.base import BaseCommand


class Command(BaseCommand):
    help = "Run the web server and a task worker together; Ctrl-C stops both."

    def add_arguments(self, parser):
        parser.add_argument("addrport", nargs="?", default="0.0.0.0:8000")

    def handle(self, addrport, **options):
        manage = [sys.executable, "manage.py"]
        children = [
            subprocess.Popen([*manage, "runserver", addrport, "--noreload"]),
            subprocess.Popen([*manage, "worker"]),
        ]
        stopping = False

        def stop(*_):
            nonlocal stopping
            stopping = True

        signal.signal(signal.SIGINT, stop)
        signal.signal(signal.SIGTERM, stop)
        try:
            while not stopping and all(child.poll() is None for child in children):
                time.sleep(0.3)
        finally:
            for child in children:
                if child.poll() is None:
                    # SIGTERM, not SIGINT: a process started in the background ignores SIGINT
                    child.send_signal(signal.SIGTERM)
            deadline = time.monotonic() + 15
            for child in children:
                try:
                    child.wait(timeout=max(0.1, deadline - time.monotonic()))
                except subprocess.TimeoutExpired:
                    child.kill()
        failed = [c for c in children if c.returncode not in (0, -2, -15, None) and not stopping]
        if failed:
            sys.exit(1)

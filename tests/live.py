"""A real Tripline on loopback for end-to-end tests: gunicorn + `manage.py worker` (a real
qcluster) on a database of its own (a SQLite file, or a fresh PostgreSQL database when the suite
runs with a PostgreSQL DATABASE_URL; the Redis broker when REDIS_URL is set)."""

import json
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parent.parent


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class LiveTripline:
    def __init__(self, tmp_path, worker=True, env=None):
        self.tmp_path = Path(tmp_path)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.worker = worker
        self.procs = {}
        self.pg_name = None
        base = os.environ.get("DATABASE_URL", "")
        if base.startswith("postgres"):
            self.pg_name = "tripline_e2e_" + uuid.uuid4().hex[:10]
            self.pg_base = base
            database_url = base.rsplit("/", 1)[0] + "/" + self.pg_name
        else:
            database_url = f"sqlite:///{self.tmp_path / 'live.sqlite3'}"
        self.env = {
            **os.environ,
            "DJANGO_SETTINGS_MODULE": "config.settings",
            "DEBUG": "false",
            "SECRET_KEY": "live-secret-key-" + uuid.uuid4().hex,
            "SALT_KEY": "live-salt",
            "ALLOWED_HOSTS": "127.0.0.1,localhost",
            "SITE_URL": self.url,
            "DATABASE_URL": database_url,
            "WEBHOOK_ALLOW_PRIVATE_IPS": "true",
            "Q_NAME": "e2e" + uuid.uuid4().hex[:8],
            "PYTHONUNBUFFERED": "1",
            "PROMETHEUS_MULTIPROC_DIR": str(self.tmp_path / "metrics"),
            **(env or {}),
        }

    def manage(self, *args, input=None):
        return subprocess.run(
            [sys.executable, "manage.py", *args], cwd=ROOT, env=self.env, input=input, capture_output=True, text=True, check=True
        )

    def start(self):
        if self.pg_name:
            self._pg("CREATE DATABASE " + self.pg_name)
        self.manage("migrate", "--noinput")
        script = (
            "import json\n"
            "from django.contrib.auth import get_user_model\n"
            "from rest_framework.authtoken.models import Token\n"
            "from teams.models import Team, Membership\n"
            "team = Team.objects.create(name='acme')\n"
            "out = {}\n"
            "for name, role in [('alice','admin'),('bob','member'),('vic','viewer'),('charlie',None)]:\n"
            "    u = get_user_model().objects.create_user(name, password=name + '-password')\n"
            "    if role: Membership.objects.create(team=team, user=u, role=role)\n"
            "    out[name] = Token.objects.create(user=u).key\n"
            "print('TOKENS' + json.dumps(out))\n"
        )
        out = self.manage("shell", "-c", script).stdout
        self.tokens = json.loads(out.split("TOKENS", 1)[1].strip())
        self._spawn(
            "web",
            [sys.executable, "-m", "gunicorn", "config.wsgi", "-b", f"127.0.0.1:{self.port}", "-w", "2", "--threads", "8",
             # keep-alive well above any pause of a test: with gunicorn's default of 2 s, a request
             # sent just as the server drops the idle connection fails with a reset
             "--keep-alive", "60", "--graceful-timeout", "5", "--log-level", "warning"],
        )
        if self.worker:
            self.start_worker()
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                if requests.get(self.url + "/api/v1/me/", timeout=5).status_code == 401:
                    return self
            except requests.RequestException:
                pass
            time.sleep(0.1)
        raise RuntimeError("the live server did not start:\n" + self.logs("web"))

    def start_worker(self, name="worker"):
        return self._spawn(name, [sys.executable, "manage.py", "worker", "--tick", "0.5"])

    def _spawn(self, name, argv):
        log = open(self.tmp_path / f"{name}.log", "w")
        proc = subprocess.Popen(argv, cwd=ROOT, env=self.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        self.procs[name] = proc
        return proc

    def kill(self, name, sig=signal.SIGKILL):
        """Signal a process's group (each runs in its own session). A worker's cluster runs in a
        group of its own and dies with its worker, however the worker ends."""
        proc = self.procs.pop(name)
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            pass
        proc.wait(timeout=20)

    def logs(self, name):
        path = self.tmp_path / f"{name}.log"
        return path.read_text() if path.exists() else ""

    def unevaluated_events(self):
        """How many events the worker has not evaluated yet (read from the live database)."""
        script = "from events.models import Event; print('COUNT', Event.objects.filter(evaluated_at__isnull=True).count())"
        return int(self.manage("shell", "-c", script).stdout.split("COUNT", 1)[1])

    def session(self, user):
        s = requests.Session()
        s.headers["Authorization"] = f"Token {self.tokens[user]}"
        return s

    def stop(self):
        for name in list(self.procs):
            self.kill(name)  # nothing to keep: a graceful qcluster stop only costs time here
        if self.pg_name:
            self._pg(f"DROP DATABASE IF EXISTS {self.pg_name} WITH (FORCE)")

    def _pg(self, sql):
        import psycopg

        with psycopg.connect(self.pg_base.replace("postgres://", "postgresql://", 1), autocommit=True) as conn:
            conn.execute(sql)


def running_in_session(sid):
    """The pids of live (not zombie) processes in session `sid` (Linux)."""
    alive = []
    for entry in Path("/proc").iterdir():
        try:
            stat = (entry / "stat").read_text()
        except (OSError, ValueError):
            continue
        fields = stat.rsplit(")", 1)[1].split()  # state ppid pgrp session ...
        if fields[3] == str(sid) and fields[0] != "Z":
            alive.append(int(entry.name))
    return alive


def wait_for(predicate, timeout=30, interval=0.2, message="condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {message}")

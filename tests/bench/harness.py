"""What the benchmarks stand on: a live server with a view into its database and processes, an
open-loop load generator, a receiver that timestamps arrivals, in-process timings run with the
server's own settings, and py-spy.

Settings through the environment: BENCH_SECONDS (length of the 50/s load, default 20),
BENCH_DRAIN_SECONDS (how long to wait for a backlog to drain, default 90), BENCH_PROFILE (a
directory, or 1 for bench/profiles: record py-spy profiles of the server's processes)."""

import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import requests
from prometheus_client.parser import text_string_to_metric_families

from tests.live import ROOT, LiveTripline

from . import results

SECONDS = float(os.environ.get("BENCH_SECONDS", "20"))
DRAIN_SECONDS = float(os.environ.get("BENCH_DRAIN_SECONDS", "90"))
PROFILE = os.environ.get("BENCH_PROFILE", "")
PROFILE_DIR = Path(PROFILE if PROFILE not in ("", "1") else ROOT / "bench" / "profiles")


def percentile(values, p):
    """Nearest-rank percentile (p in 0..100) of a non-empty list."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, int(round(p / 100 * len(ordered) + 0.5)) - 1))]


def median(values):
    return percentile(values, 50)


def history_rows(batch, rows=1000, metrics=5, start=0):
    """The rows of one history batch, the same for the API and the bare insert: `metrics`
    metrics m0…, wandering values with some noise."""
    rng = random.Random(batch)
    out = []
    for i in range(rows):
        step = start + batch * rows + i
        out.append({"step": step, "metrics": {f"m{k}": round(1 + 0.5 * ((step // 50 + k) % 7) / 7 + rng.gauss(0, 0.05), 6) for k in range(metrics)}})
    return out


class LiveDB:
    """Read-only SQL against a live server's database (no Django in this process)."""

    def __init__(self, live):
        if live.pg_name:
            import psycopg

            url = live.pg_base.replace("postgres://", "postgresql://", 1).rsplit("/", 1)[0] + "/" + live.pg_name
            self.conn = psycopg.connect(url, autocommit=True)
            self.vendor = "postgresql"
        else:
            self.conn = sqlite3.connect(live.tmp_path / "live.sqlite3", timeout=30, isolation_level=None, check_same_thread=False)
            self.vendor = "sqlite"
        self.lock = threading.Lock()

    def rows(self, sql, *params):
        if self.vendor == "sqlite":
            sql = sql.replace("%s", "?")
        with self.lock:
            cursor = self.conn.cursor()
            cursor.execute(sql, params)
            return cursor.fetchall()

    def value(self, sql, *params):
        rows = self.rows(sql, *params)
        return rows[0][0] if rows else None

    def close(self):
        self.conn.close()


def process_tree(root):
    """The pid `root` and all its descendants, as {pid: cmdline}."""
    parents = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
                parents[int(entry.name)] = int(stat.rsplit(")", 1)[1].split()[1])
            except (OSError, ValueError, IndexError):
                pass
    tree, frontier = [root], [root]
    while frontier:
        children = [pid for pid, parent in parents.items() if parent in frontier]
        tree += children
        frontier = children
    out = {}
    for pid in tree:
        try:
            out[pid] = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode().strip()
        except OSError:
            pass
    return out


def memory_of(pid):
    """(RSS, PSS) in MiB."""
    def field(path, name):
        for line in Path(path).read_text().splitlines():
            if line.startswith(name):
                return int(line.split()[1]) / 1024
        return None

    try:
        return field(f"/proc/{pid}/status", "VmRSS:"), field(f"/proc/{pid}/smaps_rollup", "Pss:")
    except OSError:
        return None, None


class Receiver:
    """A webhook receiver on loopback (HTTP/1.1, keep-alive) that notes when each request
    arrived (time.monotonic of this process) with its body and webhook-id."""

    def __init__(self):
        self.arrivals = []
        self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True

            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                arrived = time.monotonic()
                with receiver.lock:
                    receiver.arrivals.append((arrived, self.headers.get("webhook-id", ""), body))
                self.send_response(200)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.server.request_queue_size = 1024
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def count(self):
        with self.lock:
            return len(self.arrivals)

    def close(self):
        self.server.shutdown()
        self.server.server_close()


def open_loop(rate, seconds, send, concurrency=64):
    """Call send(i) for i in range(rate × seconds), call i at its scheduled time t0 + i/rate,
    from a pool of threads: an open loop (a slow answer never delays the next send). Latency is
    taken from the scheduled time, so a call that waited for a free thread counts the wait
    (coordinated omission is not hidden). Returns a list of {scheduled, done, ok, value}."""
    n = int(rate * seconds)
    out = [None] * n

    def call(i, scheduled):
        try:
            value, ok = send(i), True
        except Exception as exc:  # noqa: BLE001 - a failed call is a data point
            value, ok = repr(exc), False
        out[i] = {"scheduled": scheduled, "done": time.monotonic(), "ok": ok, "value": value}

    t0 = time.monotonic() + 0.1
    with ThreadPoolExecutor(concurrency) as pool:
        for i in range(n):
            scheduled = t0 + i / rate
            pause = scheduled - time.monotonic()
            if pause > 0:
                time.sleep(pause)
            pool.submit(call, i, scheduled)
    return out


def thread_session(tokens, user):
    """A function returning this thread's own keep-alive session for `user`."""
    local = threading.local()

    def session():
        if not hasattr(local, "session"):
            local.session = requests.Session()
            local.session.headers["Authorization"] = f"Token {tokens[user]}"
        return local.session

    return session


def metric_values(text):
    """{name: summed value over labels} plus {(name, labels…): value}."""
    out = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out[sample.name] = out.get(sample.name, 0.0) + sample.value
            out[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return out


class BenchServer(LiveTripline):
    """A LiveTripline (gunicorn, 2 workers, DEBUG=false, plus `manage.py worker`) with the
    means to measure it."""

    def __init__(self, tmp_path, worker=True, env=None):
        Path(tmp_path).mkdir(parents=True, exist_ok=True)
        super().__init__(tmp_path, worker=worker, env=env)
        self.db = None
        self.profilers = []

    def start(self):
        super().start()
        self.db = LiveDB(self)
        if not results.MACHINE:
            # other work on the machine skews every figure: note how busy it was
            results.MACHINE["load_average_at_start"] = [round(x, 2) for x in os.getloadavg()]
            results.MACHINE["calibration_ms"] = results.calibration()
            results.MACHINE["database_version"] = self.db.value("SELECT version()" if self.db.vendor == "postgresql" else "SELECT 'SQLite ' || sqlite_version()")
            if self.env.get("REDIS_URL"):
                import redis

                results.MACHINE["broker_version"] = "Redis " + redis.from_url(self.env["REDIS_URL"]).info("server")["redis_version"]
        return self

    def stop(self):
        for profiler in self.profilers:
            profiler.stop()
        if self.db is not None:
            self.db.close()
        super().stop()

    def api(self, user="bob"):
        return f"{self.url}/api/v1/teams/acme", self.session(user)

    def metrics(self):
        response = requests.get(f"{self.url}/metrics", timeout=30)
        response.raise_for_status()
        return metric_values(response.text)

    def memory(self):
        """{process label: {"pid", "rss_mib", "pss_mib"}} for each gunicorn worker and each
        process of `manage.py worker` (the ticker, the qcluster and its task processes)."""
        out = {}
        web = process_tree(self.procs["web"].pid)
        for n, pid in enumerate(sorted(p for p in web if p != self.procs["web"].pid)):
            rss, pss = memory_of(pid)
            if pss is not None:
                out[f"gunicorn worker {n + 1}"] = {"pid": pid, "rss_mib": rss, "pss_mib": pss}
        if "worker" in self.procs:
            for pid, cmd in sorted(process_tree(self.procs["worker"].pid).items()):
                rss, pss = memory_of(pid)
                role = "ticker" if "manage.py worker" in cmd else "qcluster"
                if pss is not None:  # not a process that just ended
                    out[f"worker: {role} {pid}"] = {"pid": pid, "rss_mib": rss, "pss_mib": pss}
        return out

    def inproc(self, command, profile=None, **kwargs):
        """Run tests.bench.inproc COMMAND in a process of its own, with this server's settings
        and database; returns its result."""
        argv = [sys.executable, "-m", "tests.bench.inproc", command, json.dumps(kwargs)]
        if profile and PROFILE:
            PROFILE_DIR.mkdir(parents=True, exist_ok=True)
            argv = [py_spy(), "record", "--format", "raw", "--rate", "200", "-o", str(PROFILE_DIR / f"{profile}.txt"), "--", *argv]
        env = {**self.env, "PROMETHEUS_MULTIPROC_DIR": str(self.tmp_path / "inproc-metrics")}
        Path(env["PROMETHEUS_MULTIPROC_DIR"]).mkdir(exist_ok=True)
        done = subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, text=True)
        if done.returncode or "RESULT " not in done.stdout:
            raise RuntimeError(f"inproc {command} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
        return json.loads(done.stdout.rsplit("RESULT ", 1)[1].splitlines()[0])

    def profile(self, name):
        """Context: py-spy records the gunicorn and worker process trees (when BENCH_PROFILE)."""
        return Profiling(self, name)

    def wait_drained(self, predicate, timeout=None, interval=0.1):
        """Wait until predicate() is true, at most `timeout` seconds (BENCH_DRAIN_SECONDS);
        returns (drained, seconds waited)."""
        started = time.monotonic()
        deadline = started + (DRAIN_SECONDS if timeout is None else timeout)
        while time.monotonic() < deadline:
            if predicate():
                return True, time.monotonic() - started
            time.sleep(interval)
        return bool(predicate()), time.monotonic() - started


def py_spy():
    return str(Path(sys.executable).with_name("py-spy"))


class Profiling:
    def __init__(self, server, name):
        self.server, self.name, self.procs = server, name, []

    def __enter__(self):
        if not PROFILE:
            return self
        PROFILE_DIR.mkdir(parents=True, exist_ok=True)
        extra = os.environ.get("BENCH_PYSPY_ARGS", "").split()
        for role in ("web", "worker"):
            if role in self.server.procs:
                out = PROFILE_DIR / f"{self.name}-{role}.txt"
                self.procs.append(subprocess.Popen(
                    [py_spy(), "record", "--pid", str(self.server.procs[role].pid), "--subprocesses", "--format", "raw",
                     "--rate", "100", "--nonblocking", "-o", str(out), *extra],
                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        self.server.profilers.append(self)
        time.sleep(1)  # py-spy attaches
        return self

    def __exit__(self, *exc):
        self.stop()

    def stop(self):
        for proc in self.procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGINT)
        for proc in self.procs:
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
        self.procs = []

"""The benchmark table. Each bench test calls `record` for its rows; at the end of the session
conftest.py prints the table and merges the rows into bench/results.json under this run's
backend ("sqlite+database", "postgresql+redis"), so one file holds the latest run of each.

To add a row from a new bench module: `from tests.bench.results import record` and call it with
a `row` number or name of your own (rows print sorted by it, then in the order recorded)."""

import json
import math
import os
import platform
import subprocess
import sys
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
# figures taken under a profiler are skewed by it: they go beside the profiles
RESULTS = ROOT / "bench" / ("profiles/results.json" if os.environ.get("BENCH_PROFILE") else "results.json")
ROWS = []
MACHINE = {}  # filled in by the first server a bench starts (database and broker versions)


def record(row, what, reference, measured, goal, ratio=None, met=None, **details):
    """One line of the table. `reference` and `measured` are text with units; `ratio` is
    measured against reference (or against the goal, say which in `what`); `met` is True,
    False, or None when the goal is only to report."""
    entry = {"row": str(row), "what": what, "reference": reference, "measured": measured, "ratio": finite(ratio),
             "goal": goal, "met": met, "details": finite(details)}
    ROWS.append(entry)
    print(f"\nbench: {what}: {measured} (reference {reference}; ratio {fmt_ratio(ratio)}; goal {goal})", flush=True)
    return entry


def finite(value):
    """JSON has no infinity: a figure never reached (a webhook not delivered) is null."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [finite(v) for v in value]
    return value


def fmt_ratio(ratio):
    return "" if ratio is None else f"{ratio:.2f}"


def backend():
    database = "postgresql" if os.environ.get("DATABASE_URL", "").startswith("postgres") else "sqlite"
    broker = "redis" if os.environ.get("REDIS_URL") else "database"
    return database, broker


def machine():
    model = ""
    try:
        model = next(line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines() if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    try:
        memory = int(next(line.split()[1] for line in Path("/proc/meminfo").read_text().splitlines() if line.startswith("MemTotal"))) // 1024
    except (OSError, StopIteration):
        memory = None
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout.strip()
    except OSError:
        commit = ""
    database, broker = backend()
    return {"cpu_count": os.cpu_count(), "cpu_model": model or platform.processor(), "memory_mib": memory,
            "python": sys.version.split()[0], **interpreter(), "platform": platform.platform(), "database": database, "broker": broker,
            "date": datetime.now(timezone.utc).isoformat(timespec="seconds"), "commit": commit,
            "load_average_at_end": [round(x, 2) for x in os.getloadavg()], **MACHINE}


def interpreter():
    """Which CPython build ran the bench (gunicorn and the worker run the same): its executable,
    and whether it calls into a shared libpython. pyenv's default build (libpython shared, no
    profile-guided optimization) took 1.5 times as long as Debian's over the same Python on this
    machine kind (README, "Interpreter")."""
    try:
        shared = any("libpython" in line for line in Path("/proc/self/maps").read_text().splitlines())
    except OSError:
        shared = None
    return {"python_executable": os.path.realpath(sys.executable), "libpython_shared": shared}


def calibration(repeat=5):
    """ms for a fixed piece of pure Python (dicts, strings, calls and attributes: what a request
    spends its time on), best of `repeat`: how fast this interpreter is on this machine now, so
    that runs made on different machines, or on one shared with other work, can be compared."""
    import time

    class Row:
        def __init__(self, i):
            self.id, self.name = i, f"m{i % 10}"

        def as_dict(self):
            return {"id": self.id, "name": self.name, "tags": [self.id, self.id + 1]}

    best = math.inf
    for _ in range(repeat):
        started = time.perf_counter()
        total = 0
        for i in range(50_000):
            d = Row(i).as_dict()
            total += len(d["name"]) + d["tags"][1] + len(str(i))
        best = min(best, time.perf_counter() - started)
    return round(best * 1000, 1)


def order(row):
    """"3b" sorts after "3a" and before "10"."""
    digits = "".join(c for c in row["row"] if c.isdigit())
    return (int(digits) if digits else 10**6, row["row"])


def table(rows):
    ordered = sorted(rows, key=order)
    head = ("#", "what", "reference", "measured", "ratio", "goal", "met?")
    lines = [(r["row"], r["what"], r["reference"], r["measured"], fmt_ratio(r["ratio"]), r["goal"],
              {True: "yes", False: "NO", None: "-"}[r["met"]]) for r in ordered]
    widths = [min(60, max(len(str(x)) for x in col)) for col in zip(head, *lines)]
    out = [" | ".join(str(h).ljust(w) for h, w in zip(head, widths)), "-+-".join("-" * w for w in widths)]
    out += [" | ".join(str(c).ljust(w) for c, w in zip(line, widths)) for line in lines]
    return "\n".join(out)


def write(rows):
    existing = {}
    if RESULTS.exists():
        try:
            existing = json.loads(RESULTS.read_text())
        except ValueError:
            existing = {}
    info = machine()
    runs = existing.get("runs", {})
    key = f"{info['database']}+{info['broker']}"
    # a partial run (-k, one module) replaces only the rows it measured
    fresh = {r["row"] for r in rows}
    kept = [r for r in runs.get(key, {}).get("rows", []) if r["row"] not in fresh]
    runs[key] = {"machine": info, "rows": sorted(kept + rows, key=order)}
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(json.dumps({"runs": runs}, indent=2, sort_keys=False) + "\n")
    return RESULTS


def markdown():
    """bench/results.json as the README's table: one line per row, a column per backend."""
    runs = json.loads(RESULTS.read_text())["runs"]
    names = [n for n in ("sqlite+database", "postgresql+redis") if n in runs] + [n for n in runs if n not in ("sqlite+database", "postgresql+redis")]
    lines, seen = {}, []
    for name in names:
        for r in runs[name]["rows"]:
            key = (r["row"], r["what"])
            if key not in lines:
                lines[key] = {"goal": {}, "cells": {}}
                seen.append(key)
            ratio = "" if r["ratio"] is None else f" — **{r['ratio']:.2f}**"
            met = {True: " ✓", False: " ✗", None: ""}[r["met"]]
            lines[key]["cells"][name] = f"{r['measured']} vs {r['reference']}{ratio}{met}"
            lines[key]["goal"][name] = r["goal"]
    out = ["| # | what | " + " | ".join(names) + " | goal |", "|---|---|" + "---|" * len(names) + "---|"]
    for key in sorted(seen, key=lambda k: order({"row": k[0]})):
        goals = list(dict.fromkeys(lines[key]["goal"].values()))
        out.append(f"| {key[0]} | {key[1].strip()} | " + " | ".join(lines[key]["cells"].get(n, "") for n in names) + f" | {' / '.join(goals)} |")
    for name in names:
        m = runs[name]["machine"]
        out.append(f"\n{name}: {m['date']}, commit {m['commit']}, {m['cpu_count']} × {m['cpu_model']}, {m['memory_mib']:,} MiB, "
                   f"Python {m['python']}{' (libpython shared)' if m.get('libpython_shared') else ''}"
                   f"{', calibration ' + format(m['calibration_ms'], '.1f') + ' ms' if m.get('calibration_ms') else ''}, {m.get('database_version', m['database']).split(' on ')[0]}"
                   f"{', ' + m['broker_version'] if m.get('broker_version') else ''}; load average at start {m.get('load_average_at_start')}")
    return "\n".join(out)


if __name__ == "__main__":
    print(markdown())

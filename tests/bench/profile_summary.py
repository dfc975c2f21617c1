"""Summarise py-spy raw profiles (`BENCH_PROFILE=1 make bench` writes them to bench/profiles):
python -m tests.bench.profile_summary bench/profiles/events-50-web.txt [--top 25]

Prints, per process kind, the share of samples spent in each function (inclusive: anywhere on
the stack; self: at the top) — the project's own functions, then everything."""

import argparse
import re
from collections import Counter
from pathlib import Path

FRAME = re.compile(r"^(?P<func>.*?) \((?P<file>[^():]+)(?::(?P<line>\d+))?\)$")
OWN = ("automations/", "tracking/", "events/", "actions/", "teams/", "ops/", "config/")


def parse(path):
    for line in Path(path).read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if stack and count.isdigit():
            yield stack.split(";"), int(count)


def name(frame):
    m = FRAME.match(frame)
    if not m:
        return frame
    file = m["file"]
    for marker in ("site-packages/", "lib/python3.11/", "/ops/"):
        if marker in file:
            file = file.split(marker, 1)[1]
            break
    return f"{m['func']} ({file})"


def own(label):
    return any(f"({prefix}" in label for prefix in OWN)


def summarise(path, top):
    inclusive, self_time, process = Counter(), Counter(), Counter()
    total = 0
    for stack, count in parse(path):
        total += count
        frames = [f for f in stack if not f.startswith("process ") and not f.startswith("thread ")]
        roots = [f for f in stack if f.startswith("process ")]
        process[roots[0][:90] if roots else "?"] += count
        labels = [name(f) for f in frames]
        for label in set(labels):
            inclusive[label] += count
        if labels:
            self_time[labels[-1]] += count
    print(f"== {path}: {total:,} samples")
    for label, count in process.most_common(8):
        print(f"  {count / total:6.1%}  {label}")
    print("-- the project's functions, inclusive")
    for label, count in [(l, c) for l, c in inclusive.most_common() if own(l)][:top]:
        print(f"  {count / total:6.1%}  {label}")
    print("-- all functions, inclusive")
    for label, count in inclusive.most_common(top):
        print(f"  {count / total:6.1%}  {label}")
    print("-- self (top of the stack)")
    for label, count in self_time.most_common(top):
        print(f"  {count / total:6.1%}  {label}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("paths", nargs="+")
    parser.add_argument("--top", type=int, default=25)
    args = parser.parse_args()
    for p in args.paths:
        summarise(p, args.top)

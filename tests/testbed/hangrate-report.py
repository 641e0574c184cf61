#!/usr/bin/env python3
"""tests/testbed/hangrate-report.py - summary.md of one hangrate.sh result directory, computed from its runs.csv."""
import csv
import statistics
import sys
from collections import Counter
from pathlib import Path


def main():
    res = Path(sys.argv[1])
    rows = list(csv.DictReader(open(res / "runs.csv")))
    env = (res / "env.txt").read_text().strip().splitlines()
    n = len(rows)
    out = Counter(r["outcome"] for r in rows)
    secs = [int(r["seconds"]) for r in rows]
    print(f"# Test-bed hang rate: {res.name}\n")
    for line in env:
        print(f"- {line}")
    print()
    if not n:
        print("No runs recorded.")
        return
    hung = out.get("hang", 0)
    stopped = out.get("stopped", 0)
    print(f"**{hung} of {n} test-bed boots hung** ({100.0 * hung / n:.0f}%); "
          f"{out.get('pass', 0)} passed every case, {out.get('fail', 0)} completed with a failed case"
          + (f", {stopped} stopped by hand before the end (not a hang)." if stopped else "."))
    print(f"Run time: median {statistics.median(secs):.0f} s (min {min(secs)}, max {max(secs)}); "
          f"{sum(secs) / 3600:.2f} test-bed hours in all, "
          f"{hung / (sum(secs) / 3600):.2f} hangs per hour.\n")
    if hung:
        print("| symptom | count |\n|---|---|")
        for sym, c in Counter(r["symptom"] for r in rows if r["outcome"] == "hang").most_common():
            print(f"| {sym} | {c} |")
        print()
    failed = Counter(c for r in rows for c in r["failed"].split() if c)
    if failed:
        print("| failed case (boot completed or not) | runs |\n|---|---|")
        for case, c in failed.most_common():
            print(f"| {case} | {c} |")
        print()
    print("| run | outcome | symptom | where | failed | seconds | load before |\n|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['run']} | {r['outcome']} | {r['symptom']} | {r['where']} | {r['failed']} | "
              f"{r['seconds']} | {r['load1_before']} |")


if __name__ == "__main__":
    main()

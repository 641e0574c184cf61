#!/usr/bin/env python3
"""soak-total.py - the failures of several tests/bench/soak.sh runs added up (a soak cut short by the test bed goes on
in a new run), computed from their files with soak-report.py's definitions; no number is typed by hand.

usage: soak-total.py DIR...      (prints markdown: one line per run, then survived / total per kind over all runs)
Every run must have been made at the same --ft-timeout; a run's commit comes from its env.txt (written at the end) or,
otherwise from the "ftvmm commit:" line of its STOPPED.txt or NOTE.txt.
"""
import csv
import importlib.util
import os
import re
import sys

here = os.path.dirname(os.path.abspath(__file__))
spec = importlib.util.spec_from_file_location("soak_report", os.path.join(here, "soak-report.py"))
rep = importlib.util.module_from_spec(spec)
spec.loader.exec_module(rep)


def commit_of(d, env):
    if env.get("ftvmm_commit", "?") != "?":
        return env["ftvmm_commit"][:7]
    for f in ("STOPPED.txt", "NOTE.txt"):
        p = os.path.join(d, f)
        if os.path.exists(p):
            m = re.search(r"ftvmm commit: ([0-9a-f]{7,40})", open(p).read())
            if m:
                return m.group(1)[:7]
    return "?"


def main():
    dirs = sys.argv[1:]
    if not dirs:
        sys.exit(__doc__)
    runs, allinj, allrows = [], [], []
    tmos = set()
    for d in dirs:
        env = rep.env_of(d)
        rows = list(csv.DictReader(open(os.path.join(d, "events.csv"))))
        inj = [r for r in rows if r["injected"] == "yes"]
        tmos.add(env.get("ft_timeout_ms", "?"))
        end = env.get("aborted") or ("ran to its end" if env.get("wall_s") else "ended early (STOPPED.txt)")
        runs.append((os.path.basename(os.path.normpath(d)), commit_of(d, env), env.get("ft_timeout_ms", "?"), inj, rows,
                     end))
        allinj += inj
        allrows += rows
    if len(tmos) != 1:
        sys.exit("soak-total: the runs differ in --ft-timeout (%s): not one soak" % ", ".join(sorted(tmos)))
    out = []
    w = out.append
    w("| run | ftvmm | --ft-timeout | failures | survived | unplanned events | split brains | end |")
    w("|---|---|---|---|---|---|---|---|")
    for name, commit, tmo, inj, rows, end in runs:
        w("| %s | %s | %s ms | %d | %d | %d | %d | %s |" %
          (name, commit, tmo, len(inj), sum(r["verified"] == "ok" for r in inj),
           sum(r["injected"] != "yes" for r in rows), sum(rep.split(r) for r in rows), end))
    w("")
    unplanned = [r for r in allrows if r["injected"] != "yes"]
    w("In all: survived=%d/%d unplanned=%d split_brain=%d false_takeovers=%d" %
      (sum(r["verified"] == "ok" for r in allinj), len(allinj), len(unplanned), sum(rep.split(r) for r in allrows),
       sum("FALSE TAKEOVER" in r["reason"] for r in allrows)))
    w("")
    rep.per_kind(w, allinj)
    print("\n".join(out))


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""pause-parts.py - where an FT pause goes, from the primaries' --stats lines (one file or a directory tree of them).

usage: pause-parts.py [--md] PATH...
Each PATH is a .stats file (JSON lines, one per committed epoch) or a directory searched for *.stats. Baseline
epochs are left out. Per file: epochs, then the median of each part of the pause in microseconds: stop, harvest,
copy, state (and within it: the buffer (malloc + fdt_create's zeroing), vCPUs with the VM-wide KVM devices, devices,
fdt_finish, the rest), resume, plus the pages per epoch, the state tree's bytes and the buffers tried per capture (the
largest seen, not the median: more than 1 means a capture ran twice). Parts that a file's ftvmm did not report are "-"
(older ftvmm reported no buffer part: its time is then inside "rest").
"""
import json
import os
import statistics
import sys

PARTS = ["pause_us", "stop_us", "harvest_us", "copy_us", "state_us", "state_buf_us", "state_cpus_us",
         "state_devices_us", "state_finish_us", "state_rest_us", "resume_us", "pages", "state_bytes"]
HEAD = ["pause", "stop", "harvest", "copy", "state", "state: buffer", "vCPUs+VM", "devices", "fdt_finish", "rest",
        "resume", "pages", "state bytes", "tries (max)"]


def rows_of(path):
    out = []
    with open(path) as f:
        for line in f:
            try:
                d = json.loads(line)
            except ValueError:
                continue
            if d.get("baseline"):
                continue
            if all(k in d for k in ("state_us", "state_cpus_us", "state_devices_us", "state_finish_us")):
                d["state_rest_us"] = (d["state_us"] - d.get("state_buf_us", 0) - d["state_cpus_us"] -
                                      d["state_devices_us"] - d["state_finish_us"])
            out.append(d)
    return out


def files(paths):
    for p in paths:
        if os.path.isdir(p):
            for root, _, names in sorted(os.walk(p)):
                for n in sorted(names):
                    if n.endswith(".stats"):
                        yield os.path.join(root, n)
        else:
            yield p


def med(rows, k):
    v = [r[k] for r in rows if k in r]
    return "%.0f" % statistics.median(v) if v else "-"


def main():
    args = sys.argv[1:]
    md = bool(args) and args[0] == "--md"
    if md:
        args = args[1:]
    if not args:
        print(__doc__.strip(), file=sys.stderr)
        return 2
    table = []
    for f in files(args):
        rows = rows_of(f)
        if len(rows) >= 5:
            tries = [r["state_tries"] for r in rows if "state_tries" in r]
            table.append([f, str(len(rows))] + [med(rows, k) for k in PARTS] + [str(max(tries)) if tries else "-"])
    if not table:
        print("pause-parts: no file with 5 or more epochs", file=sys.stderr)
        return 1
    head = ["file", "epochs"] + HEAD
    if md:
        print("| " + " | ".join(head) + " |")
        print("|" + "---|" * len(head))
        for t in table:
            print("| " + " | ".join(t) + " |")
    else:
        w = [max(len(r[i]) for r in table + [head]) for i in range(len(head))]
        for t in [head] + table:
            print("  ".join(c.rjust(w[i]) for i, c in enumerate(t)))
    return 0


if __name__ == "__main__":
    sys.exit(main())

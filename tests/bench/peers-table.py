#!/usr/bin/env python3
"""peers-table.py - the summary table of a peers benchmark (ftvmm beside QEMU), computed from its runs.csv.

usage: peers-table.py RUNS_CSV DAT_OUT COLUMN:LABEL:DIR...
RUNS_CSV has the columns run, vmm and one per metric; a row whose metrics are not numbers (a failed run) counts as a
run that did not complete. DIR is + where more is better, - where less is. Prints a markdown table (per VMM: runs that
completed, then median [min, max] per metric) and, per peer, ftvmm / peer of the medians; writes DAT_OUT for gnuplot:
one line per metric, "label" then per peer the medians' ratio turned so that above 1 means ftvmm did better
(ftvmm / peer where more is better, peer / ftvmm where less is), then that peer's name.
"""
import csv
import statistics
import sys


def num(x):
    try:
        return float(x)
    except (TypeError, ValueError):
        return None


def main():
    if len(sys.argv) < 4:
        print(__doc__.strip(), file=sys.stderr)
        return 2
    rows = list(csv.DictReader(open(sys.argv[1])))
    metrics = []
    for spec in sys.argv[3:]:
        col, rest = spec.split(":", 1)
        label, d = rest.rsplit(":", 1)
        if d not in "+-" or not d:
            print("peers-table: metric %r: DIR must be + or -" % spec, file=sys.stderr)
            return 2
        metrics.append((col, label, d))
    vmms = list(dict.fromkeys(r["vmm"] for r in rows))
    done = {v: [r for r in rows if r["vmm"] == v and all(num(r.get(c)) is not None for c, _, _ in metrics)]
            for v in vmms}
    med = {}
    print("| VMM | runs completed | " + " | ".join(m[1] for m in metrics) + " |")
    print("|---|---|" + "---|" * len(metrics))
    for v in vmms:
        cells = []
        for c, _, _ in metrics:
            xs = [num(r[c]) for r in done[v]]
            if xs:
                med[(v, c)] = statistics.median(xs)
                cells.append("%.4g [%.4g, %.4g]" % (statistics.median(xs), min(xs), max(xs)))
            else:
                cells.append("-")
        print("| %s | %d of %d | %s |" % (v, len(done[v]), len([r for r in rows if r["vmm"] == v]), " | ".join(cells)))
    print()
    peers = [v for v in vmms if v != "ftvmm"]
    if "ftvmm" not in vmms:
        return 0
    for p in peers:
        parts = []
        for c, label, d in metrics:
            a, b = med.get(("ftvmm", c)), med.get((p, c))
            if a is None or b is None or b == 0:
                parts.append("%s: no ratio (a side has no completed run)" % label)
            else:
                parts.append("%s %.2fx%s" % (label, a / b, " (lower is better)" if d == "-" else ""))
        print("- ftvmm / %s (medians): %s" % (p, "; ".join(parts)))
    with open(sys.argv[2], "w") as f:
        f.write("# metric, then per peer: the medians' ratio turned so that > 1 means ftvmm did better\n")
        f.write("# %s\n" % " ".join(peers))
        for c, label, d in metrics:
            vals = []
            for p in peers:
                a, b = med.get(("ftvmm", c)), med.get((p, c))
                if a is None or b is None or a == 0 or b == 0:
                    vals.append("NaN")
                else:
                    vals.append("%.4f" % (a / b if d == "+" else b / a))
            f.write('"%s" %s\n' % (label, " ".join(vals)))
    return 0


if __name__ == "__main__":
    sys.exit(main())

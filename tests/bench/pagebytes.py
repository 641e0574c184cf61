#!/usr/bin/env python3
"""tests/bench/pagebytes.py - bytes per dirty page on the wire, per FT benchmark run (issue 16 section 4).

usage: pagebytes.py OUT.md RESULT_DIR...   (each RESULT_DIR: one tests/bench/ft.sh run; writes OUT.md)

For each run (its page options from env.txt: ftvmm_with_run, e.g. "--compress lz4 --delta-cache 256M") and each
workload with FT on (its epochs: runs.csv's stats window, the baseline left out): dirty pages sent, zero pages,
pages sent as deltas, raw bytes (pages x 4096), wire bytes (the page payload as sent), wire/raw, wire bytes per
dirty page, the sender's packing CPU (compress_us) per MiB of raw pages, and the workload's throughput with FT on
against off (summary.csv's ratio). Every figure is computed here from those files.
"""
import csv
import json
import os
import sys

from benchenv import env_of


def stats_of(d, epoch):
    p = os.path.join(d, "stats-%s.jsonl" % epoch)
    out = []
    if os.path.exists(p):
        for line in open(p):
            line = line.strip()
            if line:
                try:
                    out.append(json.loads(line))
                except ValueError:
                    pass
    return out


def rows_of(d):
    env = env_of(d)
    label = env.get("ftvmm_with_run", "").strip() or "(defaults: --compress none, no delta cache)"
    ratio = {}
    sp = os.path.join(d, "summary.csv")
    if os.path.exists(sp):
        for r in csv.DictReader(open(sp)):
            ratio[(r["epoch_ms"], r["workload"])] = r.get("ratio", "")
    out = []
    stats = {}
    for r in csv.DictReader(open(os.path.join(d, "runs.csv"))):
        if r["mode"] != "on":
            continue
        e = r["epoch_ms"]
        if e not in stats:
            stats[e] = stats_of(d, e)
        win = [s for s in stats[e][int(r["stats_from"]):int(r["stats_to"])] if not s.get("baseline")]
        if not win:
            continue
        pages = sum(s["pages"] for s in win)
        zero = sum(s.get("zero_pages", 0) for s in win)
        delta = sum(s.get("delta_pages", 0) for s in win)
        raw = sum(s.get("raw_bytes", s["pages"] * 4096) for s in win)
        wire = sum(s.get("wire_bytes", s["pages"] * 4096) for s in win)
        cus = sum(s.get("compress_us", 0.0) for s in win)
        out.append({
            "run": os.path.basename(d.rstrip("/")), "pages_opts": label, "epoch_ms": e, "workload": r["workload"],
            "epochs": len(win), "pages": pages, "zero": zero, "delta": delta, "raw": raw, "wire": wire,
            "wire_raw": wire / raw if raw else 0.0, "bytes_per_page": wire / pages if pages else 0.0,
            "pack_ms_per_mib": (cus / 1000.0) / (raw / 1048576.0) if raw else 0.0,
            "ratio": ratio.get((e, r["workload"]), ""),
        })
    return out


def main():
    if len(sys.argv) < 3:
        sys.exit(__doc__)
    rows = []
    for d in sys.argv[2:]:
        rows.extend(rows_of(d))
    lines = ["# Bytes per dirty page on the wire", "",
             "Computed by tests/bench/pagebytes.py from the FT benchmark runs named below (their env.txt, runs.csv, "
             "stats-<epoch>.jsonl, summary.csv). Per workload, the epochs of its FT-on window without the baseline. "
             "wire/raw: the page payload as sent over the dirty pages x 4096. pack: the sender thread's CPU for "
             "zero tests, deltas and compression per MiB of dirty pages. FT ratio: throughput with FT on / off.", "",
             "| run | page options | epoch ms | workload | epochs | dirty pages | zero | as deltas | wire/raw | "
             "bytes/page | pack ms/MiB | FT ratio |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append("| %s | %s | %s | %s | %d | %d | %d | %d | %.3f | %.0f | %.2f | %s |" % (
            r["run"], r["pages_opts"], r["epoch_ms"], r["workload"], r["epochs"], r["pages"], r["zero"], r["delta"],
            r["wire_raw"], r["bytes_per_page"], r["pack_ms_per_mib"], r["ratio"] or "-"))
    lines.append("")
    # per workload: the best wire/raw of the runs, and whether it meets the goal (<= 0.5 x raw)
    lines.append("Goal (issue 16): <= 0.5x raw bytes per dirty page on the memory writers (mem*).")
    lines.append("")
    for w in sorted({r["workload"] for r in rows if r["workload"].startswith("mem")}):
        best = min((r for r in rows if r["workload"] == w), key=lambda r: r["wire_raw"])
        lines.append("- %s: lowest wire/raw %.3f with %s (%s): %s" % (
            w, best["wire_raw"], best["pages_opts"], best["run"],
            "met" if best["wire_raw"] <= 0.5 else "not met"))
    lines.append("")
    with open(sys.argv[1], "w") as f:
        f.write("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()

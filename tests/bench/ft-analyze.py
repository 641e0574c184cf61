#!/usr/bin/env python3
"""ft-analyze.py - turns a tests/bench/ft.sh run directory into summary CSVs, gnuplot data and results.md.

usage: ft-analyze.py RESULTS_DIR
inputs (written by ft.sh inside the test bed): env.txt, memcpy.csv, runs.csv, stats-<epoch>.jsonl, failover.csv,
protect.txt. outputs: summary.csv, epochs.csv, failover-summary.csv, *.dat (for ft-plots.gp), plots-vars.gp,
results.md.
"""
import csv
import json
import math
import os
import re
import statistics as st
import sys

D = sys.argv[1]


def path(n):
    return os.path.join(D, n)


def read_env():
    env = {}
    for f in ("env.txt", "env-outer.txt"):
        if not os.path.exists(path(f)):
            continue
        for line in open(path(f)):
            if "=" in line:
                k, v = line.rstrip("\n").split("=", 1)
                env[k] = v
    return env


def memcpy_table():
    t = []
    if os.path.exists(path("memcpy.csv")):
        for r in csv.DictReader(open(path("memcpy.csv"))):
            t.append((int(r["pages"]), float(r["ns_per_page"])))
    return sorted(t)


MEMCPY = memcpy_table()


def memcpy_us(pages):
    """plain memcpy time of `pages` scattered pages, interpolated (log scale) from memcpy.csv"""
    if not MEMCPY or pages <= 0:
        return 0.0
    if pages <= MEMCPY[0][0]:
        ns = MEMCPY[0][1]
    elif pages >= MEMCPY[-1][0]:
        ns = MEMCPY[-1][1]
    else:
        for (a, na), (b, nb) in zip(MEMCPY, MEMCPY[1:]):
            if a <= pages <= b:
                f = (math.log(pages) - math.log(a)) / (math.log(b) - math.log(a))
                ns = na + f * (nb - na)
                break
    return pages * ns / 1000.0


def pct(xs, p):
    if not xs:
        return 0.0
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(p * len(xs)))]


def mean(xs):
    return st.mean(xs) if xs else 0.0


def load_stats(epoch):
    f = path("stats-%s.jsonl" % epoch)
    if not os.path.exists(f):
        return []
    out = []
    for line in open(f):
        line = line.strip()
        if line:
            try:
                out.append(json.loads(line))
            except ValueError:
                pass
    return out


def rr_fields(detail):
    m = dict(re.findall(r"(\w+)=([0-9.]+)", detail or ""))
    return {k: float(v) for k, v in m.items()}


runs = list(csv.DictReader(open(path("runs.csv")))) if os.path.exists(path("runs.csv")) else []
epochs = []
for r in runs:
    if r["epoch_ms"] not in epochs:
        epochs.append(r["epoch_ms"])
workloads = []
for r in runs:
    if r["workload"] not in workloads:
        workloads.append(r["workload"])
stats = {e: load_stats(e) for e in epochs}

# per-epoch rows, tagged with the workload whose window they fall in
ep_rows = []
summary = []
for e in epochs:
    S = stats[e]
    byw = {}
    for r in runs:
        if r["epoch_ms"] != e:
            continue
        byw.setdefault(r["workload"], {})[r["mode"]] = r
    for w in workloads:
        if w not in byw:
            continue
        off, on = byw[w].get("off"), byw[w].get("on")
        row = {"epoch_ms": e, "workload": w}
        if off:
            row["off_s"] = float(off["seconds"])
        if on:
            row["on_s"] = float(on["seconds"])
            a, b = int(on["stats_from"]), int(on["stats_to"])
            win = S[a:b]
            for s in win:
                ep_rows.append({"epoch_ms": e, "workload": w, "pages": s["pages"], "pause_us": s["pause_us"],
                                "stop_us": s["stop_us"], "harvest_us": s["harvest_us"], "copy_us": s["copy_us"],
                                "state_us": s["state_us"], "resume_us": s.get("resume_us", 0.0),
                                "bytes": s["bytes"], "ack_latency_us": s["ack_latency_us"],
                                "dirty_device": s["dirty_device"], "disk_writes": s["disk_writes"],
                                "memcpy_us": round(memcpy_us(s["pages"]), 1)})
            pause = [s["pause_us"] for s in win]
            row.update({
                "epochs": len(win),
                "epochs_per_s": round(len(win) / row["on_s"], 1) if row["on_s"] > 0 else 0,
                "pause_us_mean": round(mean(pause), 1), "pause_us_p50": round(pct(pause, 0.5), 1),
                "pause_us_p99": round(pct(pause, 0.99), 1), "pause_us_max": round(max(pause), 1) if pause else 0,
                "stop_us": round(mean([s["stop_us"] for s in win]), 1),
                "harvest_us": round(mean([s["harvest_us"] for s in win]), 1),
                "copy_us": round(mean([s["copy_us"] for s in win]), 1),
                "state_us": round(mean([s["state_us"] for s in win]), 1),
                "resume_us": round(mean([s.get("resume_us", 0.0) for s in win]), 1),
                "pages_mean": round(mean([s["pages"] for s in win]), 1),
                "bytes_mean": round(mean([s["bytes"] for s in win])),
                "memcpy_us_mean": round(mean([memcpy_us(s["pages"]) for s in win]), 1),
                "ack_latency_us_mean": round(mean([s["ack_latency_us"] for s in win]), 1),
                "paused_fraction": round(sum(pause) / 1e6 / row["on_s"], 3) if row["on_s"] > 0 else 0,
            })
        if off and on:
            if w == "rr":
                fo, fn = rr_fields(off["detail"]), rr_fields(on["detail"])
                row["rr_off_rps"], row["rr_on_rps"] = fo.get("rps", 0), fn.get("rps", 0)
                row["rr_off_p50_ms"], row["rr_on_p50_ms"] = fo.get("p50_ms", 0), fn.get("p50_ms", 0)
                row["rr_off_p99_ms"], row["rr_on_p99_ms"] = fo.get("p99_ms", 0), fn.get("p99_ms", 0)
                row["ratio"] = round(fn.get("rps", 0) / fo["rps"], 3) if fo.get("rps") else 0
                row["added_latency_ms"] = round(fn.get("p50_ms", 0) - fo.get("p50_ms", 0), 2)
            elif w == "idle":
                row["ratio"] = 1.0
            else:
                row["ratio"] = round(row["off_s"] / row["on_s"], 3) if row["on_s"] > 0 else 0
        summary.append(row)

cols = ["epoch_ms", "workload", "off_s", "on_s", "ratio", "epochs", "epochs_per_s", "paused_fraction", "pause_us_mean",
        "pause_us_p50", "pause_us_p99", "pause_us_max", "stop_us", "harvest_us", "copy_us", "state_us", "resume_us",
        "pages_mean", "memcpy_us_mean", "bytes_mean", "ack_latency_us_mean", "rr_off_rps", "rr_on_rps",
        "rr_off_p50_ms", "rr_on_p50_ms", "rr_off_p99_ms", "rr_on_p99_ms", "added_latency_ms"]
with open(path("summary.csv"), "w", newline="") as f:
    wr = csv.DictWriter(f, fieldnames=cols, extrasaction="ignore")
    wr.writeheader()
    for r in summary:
        wr.writerow(r)
if ep_rows:
    with open(path("epochs.csv"), "w", newline="") as f:
        wr = csv.DictWriter(f, fieldnames=list(ep_rows[0].keys()))
        wr.writeheader()
        wr.writerows(ep_rows)

# failover
fo_rows = []
if os.path.exists(path("failover.csv")):
    for r in csv.DictReader(open(path("failover.csv"))):
        def dt(k):
            try:
                return round(float(r[k]) - float(r["t_kill"]), 3) if r[k] else None
            except ValueError:
                return None
        fo_rows.append({"epoch_ms": r["epoch_ms"], "reaped_s": dt("t_reaped"), "takeover_s": dt("t_takeover"),
                        "tick_s": dt("t_tick"), "tcp_s": dt("t_tcp"), "from_epoch": r["takeover_from"],
                        "inside_ms": r.get("inside_ms") or None})
    with open(path("failover-summary.csv"), "w", newline="") as f:
        wr = csv.DictWriter(f, fieldnames=["epoch_ms", "reaped_s", "takeover_s", "tick_s", "tcp_s", "from_epoch",
                                           "inside_ms"])
        wr.writeheader()
        wr.writerows(fo_rows)

# gnuplot data: one row per workload, one column per epoch setting
get = {(r["epoch_ms"], r["workload"]): r for r in summary}


def dat(name, key, wl=None, scale=1.0):
    with open(path(name), "w") as f:
        f.write("workload " + " ".join("%sms" % e for e in epochs) + "\n")
        for w in (wl or workloads):
            vals = []
            for e in epochs:
                v = get.get((e, w), {}).get(key)
                vals.append("%.4g" % (v * scale) if isinstance(v, (int, float)) else "?")
            f.write(w + " " + " ".join(vals) + "\n")


dat("ratio.dat", "ratio", [w for w in workloads if w != "idle"])
dat("pause.dat", "pause_us_mean", scale=1e-3)
dat("bytes.dat", "bytes_mean", scale=1.0 / 1024)
with open(path("breakdown.dat"), "w") as f:
    f.write("case stop harvest copy state resume\n")
    for e in epochs:
        for w in workloads:
            r = get.get((e, w))
            if r and "stop_us" in r:
                f.write("%s/%s %.1f %.1f %.1f %.1f %.1f\n" % (w, e, r["stop_us"] / 1e3, r["harvest_us"] / 1e3,
                                                          r["copy_us"] / 1e3, r["state_us"] / 1e3,
                                                          r["resume_us"] / 1e3))
with open(path("rr.dat"), "w") as f:
    f.write("mode p50 p99\n")
    for e in epochs:
        r = get.get((e, "rr"))
        if r and "rr_off_p50_ms" in r:
            f.write("off(%sms-run) %.2f %.2f\n" % (e, r["rr_off_p50_ms"], r["rr_off_p99_ms"]))
            f.write("FT-%sms %.2f %.2f\n" % (e, r["rr_on_p50_ms"], r["rr_on_p99_ms"]))
with open(path("failover.dat"), "w") as f:
    f.write("epoch takeover tick tcp\n")
    for r in fo_rows:
        f.write("%sms %s %s %s\n" % (r["epoch_ms"], r["takeover_s"] if r["takeover_s"] is not None else "?",
                                     r["tick_s"] if r["tick_s"] is not None else "?",
                                     r["tcp_s"] if r["tcp_s"] is not None else "?"))
with open(path("pause-scatter.dat"), "w") as f:
    for e in epochs:
        f.write("# epoch %s\n" % e)
        for r in ep_rows:
            if r["epoch_ms"] == e and r["pages"] > 0:
                f.write("%d %.1f %.1f %.1f\n" % (r["pages"], r["pause_us"], r["copy_us"], r["memcpy_us"]))
        f.write("\n\n")
with open(path("memcpy.dat"), "w") as f:
    for p, ns in MEMCPY:
        f.write("%d %.1f\n" % (p, p * ns / 1000.0))
with open(path("plots-vars.gp"), "w") as f:
    f.write("ncols = %d\nepochs = \"%s\"\n" % (len(epochs) + 1, " ".join(epochs)))

# results.md
env = read_env()
protect = open(path("protect.txt")).read().split() if os.path.exists(path("protect.txt")) else []
md = []
md.append("# ftvmm fault-tolerance benchmark (%s)" % os.path.basename(D.rstrip("/")))
md.append("")
md.append("- environment: %s; host kernel %s, %s CPUs (%s)" % (env.get("env", "?"), env.get("host_kernel", "?"),
                                                                env.get("host_cpus", "?"), env.get("cpu", "?")))
md.append("- **TCG-nested: absolute numbers mean little**; compare ratios within this run. The outer machine was "
          "shared (load average %s before, %s after), so repeated runs differ by tens of percent."
          % (env.get("outer_load_before", "?"), env.get("outer_load_after", "?")))
md.append("- guest: Debian %s, 256 MiB, 2 vCPUs, 64 MiB virtio-blk disk, virtio-net on a TAP; ftvmm %s"
          % (env.get("guest_kernel", "?"), env.get("ftvmm", "?")))
md.append("- method: per epoch setting one guest boots unprotected, runs every workload (FT off), is paired with a "
          "backup on loopback (`ftvmm ctl protect`), runs every workload again (FT on), then fails over (kill -9 "
          "of the primary). Pause figures come from the primary's `--stats` lines of the epochs inside each "
          "workload's window; `memcpy` is a plain copy of the same number of scattered pages measured on the same "
          "host in the same run (tests/bench/ft-memcpy.c).")
md.append("- initial sync (protect to protected=yes): %s" % ", ".join(protect) if protect else "")
md.append("")
md.append("## Throughput and pause per epoch")
md.append("")
md.append("ratio = FT-on throughput / FT-off throughput (time ratio off/on; for rr requests/s). paused = fraction of "
          "the workload's wall time the vCPUs were stopped for checkpoints.")
md.append("")
md.append("| epoch | workload | off (s) | on (s) | ratio | epochs/s | paused | pause mean / p99 (ms) | stop / harvest / copy / state / resume (ms) | pages/epoch | memcpy of those pages (ms) | KiB/epoch |")
md.append("|---|---|---|---|---|---|---|---|---|---|---|---|")
stuck = [r for r in runs if r["detail"].startswith("STUCK")]
if stuck:
    md.append("**Stuck guests**: " + "; ".join("epoch %s ms, %s (%s): %s" % (r["epoch_ms"], r["workload"], r["mode"],
                                                                            r["detail"]) for r in stuck)
              + ". The guest stopped making progress while the checkpoints went on (see logs/p-<epoch>.console: an "
              "RCU stall on one vCPU with the other idle, i.e. a lost interrupt); those rows are not throughput.")
    md.append("")
for r in summary:
    if "on_s" not in r:
        continue
    md.append("| %s ms | %s | %.2f | %.2f | %s | %s | %s | %.2f / %.2f | %.2f / %.2f / %.2f / %.2f / %.2f | %.0f | %.3f | %.0f |" % (
        r["epoch_ms"], r["workload"], r.get("off_s", 0), r["on_s"], r.get("ratio", "?"), r["epochs_per_s"],
        "%.0f%%" % (100 * r["paused_fraction"]), r["pause_us_mean"] / 1e3, r["pause_us_p99"] / 1e3,
        r["stop_us"] / 1e3, r["harvest_us"] / 1e3, r["copy_us"] / 1e3, r["state_us"] / 1e3, r["resume_us"] / 1e3,
        r["pages_mean"], r["memcpy_us_mean"] / 1e3, r["bytes_mean"] / 1024))
md.append("")
md.append("## TCP request/response (host client <-> guest echo, one request in flight)")
md.append("")
md.append("| epoch | off: req/s, p50, p99 (ms) | FT on: req/s, p50, p99 (ms) | added p50 latency (ms) |")
md.append("|---|---|---|---|")
for e in epochs:
    r = get.get((e, "rr"))
    if r and "rr_off_rps" in r:
        md.append("| %s ms | %.0f, %.2f, %.2f | %.0f, %.2f, %.2f | %.2f |" % (
            e, r["rr_off_rps"], r["rr_off_p50_ms"], r["rr_off_p99_ms"], r["rr_on_rps"], r["rr_on_p50_ms"],
            r["rr_on_p99_ms"], r["added_latency_ms"]))
md.append("")
md.append("Output commit holds every reply until the epoch that produced it is acked, so the added latency is about "
          "half an epoch plus the checkpoint pause, the transfer and the ack.")
md.append("")
md.append("## Failover (kill -9 of the primary, backup on the same host)")
md.append("")
md.append("| epoch | primary reaped (s) | backup says 'taking over' (s) | loss seen to vCPUs running, inside ftvmm (ms) | next FTWORK line on the backup (s) | TCP stream moves again (s) | resumed from epoch |")
md.append("|---|---|---|---|---|---|---|")
for r in fo_rows:
    md.append("| %s ms | %s | %s | %s | %s | %s | %s |" % (r["epoch_ms"], r["reaped_s"], r["takeover_s"],
                                                        r["inside_ms"] or "?", r["tick_s"], r["tcp_s"],
                                                        r["from_epoch"]))
md.append("")
md.append("Times from the kill. On one host the backup learns of the death when the kernel closes the dead "
          "primary's sockets, which happens after its address space is torn down (the 'reaped' column); between "
          "hosts it would be the heartbeat timeout (--ft-timeout). The TCP stream then waits for the host's next "
          "retransmission (exponential backoff), which is why it lags the guest's own progress.")
md.append("")
md.append("## memcpy baseline (this host)")
md.append("")
md.append("| pages | ns/page |")
md.append("|---|---|")
for p, ns in MEMCPY:
    md.append("| %d | %.0f |" % (p, ns))
md.append("")
md.append("## Plots")
md.append("")
for png, what in [("ratio.png", "throughput ratio FT on/off per workload and epoch"),
                  ("pause-vs-pages.png", "pause per epoch against dirty pages, with the copy step and a plain memcpy"),
                  ("breakdown.png", "where the pause goes (mean per workload and epoch)"),
                  ("bytes.png", "bytes per epoch"), ("rr.png", "TCP request/response latency"),
                  ("failover.png", "failover timeline")]:
    md.append("- [%s](%s): %s" % (png, png, what))
md.append("")
md.append("Files: summary.csv (one row per epoch setting and workload), epochs.csv (every epoch inside a workload "
          "window), failover-summary.csv, runs.csv (raw windows), stats-*.jsonl (the primary's --stats), "
          "memcpy.csv, logs/.")
open(path("results.md"), "w").write("\n".join(md) + "\n")
print("ft-analyze: %d workload rows, %d epochs, %d failovers -> %s" % (len(summary), len(ep_rows), len(fo_rows),
                                                                       path("results.md")))

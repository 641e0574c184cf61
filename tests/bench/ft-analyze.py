#!/usr/bin/env python3
"""ft-analyze.py - turns a tests/bench/ft.sh run directory into summary CSVs, gnuplot data and results.md.

usage: ft-analyze.py RESULTS_DIR
inputs (written by ft.sh inside the test bed): env.txt, memcpy.csv, runs.csv, stats-<epoch>.jsonl, failover.csv,
protect.txt; for the TLS comparison tls-runs.csv, stats-tls-<epoch>-<mode>-<round>.jsonl, tls-protect.txt.
outputs: summary.csv, epochs.csv, failover-summary.csv, *.dat (for ft-plots.gp), plots-vars.gp, tls-runs-summary.csv
(one row per TLS run and workload), tls-summary.csv (medians, min, max per epoch, workload and TLS mode, and the
psk/off ratios), results.md.
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
    return load_stats_file(path("stats-%s.jsonl" % epoch))


def load_stats_file(f):
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
                                "memcpy_us": round(memcpy_us(s["pages"]), 1),
                                "checkpoint": s.get("checkpoint", "copy"), "cow_faults": s.get("cow_faults", 0),
                                "cow_copy_us": s.get("cow_copy_us", 0.0)})
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
                # parts of state_us (absent in stats from before 2026-12-07: shown as "?")
                "state_cpus_us": round(mean([s["state_cpus_us"] for s in win]), 1)
                if all("state_cpus_us" in s for s in win) else None,
                "state_devices_us": round(mean([s["state_devices_us"] for s in win]), 1)
                if all("state_devices_us" in s for s in win) else None,
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
            else:  # idle too: a `sleep` that FT stretches (late timers) has a ratio below 1, measured like the rest
                row["ratio"] = round(row["off_s"] / row["on_s"], 3) if row["on_s"] > 0 else 0
        summary.append(row)

cols = ["epoch_ms", "workload", "off_s", "on_s", "ratio", "epochs", "epochs_per_s", "paused_fraction", "pause_us_mean",
        "pause_us_p50", "pause_us_p99", "pause_us_max", "stop_us", "harvest_us", "copy_us", "state_us", "resume_us",
        "state_cpus_us", "state_devices_us", "pages_mean", "memcpy_us_mean", "bytes_mean", "ack_latency_us_mean", "rr_off_rps", "rr_on_rps",
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

# ---- TLS on and off: tls-runs.csv (ft.sh's tls_workload) ----
MiB = 1024.0 * 1024.0
tls_rows = list(csv.DictReader(open(path("tls-runs.csv")))) if os.path.exists(path("tls-runs.csv")) else []
tls_stats = {}
tls_runs = []  # one per run and workload, computed
for r in tls_rows:
    fn = r["stats_file"]
    if fn not in tls_stats:
        tls_stats[fn] = load_stats_file(path(fn))
    win = [x for x in tls_stats[fn][int(r["stats_from"]):int(r["stats_to"])] if not x.get("baseline")]
    row = {"epoch_ms": r["epoch_ms"], "tls": r["tls"], "round": r["round"], "workload": r["workload"],
           "rc": r["rc"], "stuck": r["detail"].startswith("STUCK")}
    secs = float(r["seconds"])
    wsecs = float(r["w_end"]) - float(r["w_start"])
    pause = [x["pause_us"] for x in win]
    ack = [x["ack_latency_us"] for x in win]
    nbytes = sum(x["bytes"] for x in win)
    npages = sum(x.get("pages", 0) for x in win)
    copy_us = sum(x.get("copy_us", 0) for x in win)

    def cpu(a, b):
        try:
            return float(r[b]) - float(r[a])
        except ValueError:  # "?": the process was gone
            return None
    p_cpu, p_vcpu, b_cpu = cpu("p_cpu0_ms", "p_cpu1_ms"), cpu("p_vcpu0_ms", "p_vcpu1_ms"), cpu("b_cpu0_ms", "b_cpu1_ms")
    n = len(win)
    row.update({
        "seconds": secs, "window_s": round(wsecs, 3), "epochs": n,
        "guest_mib_s": round(int(r["pages"]) * 4096 * int(r["count"]) / MiB / secs, 2) if secs > 0 else None,
        "pause_us_mean": round(mean(pause), 1) if n else None, "pause_us_p99": round(pct(pause, 0.99), 1) if n else None,
        "bytes_mean": round(nbytes / n) if n else None,
        "pages_mean": round(npages / n, 1) if n else None,
        "pause_us_per_page": round(sum(pause) / npages, 3) if npages else None,
        "copy_us_per_page": round(copy_us / npages, 3) if npages else None,
        "ack_latency_us_mean": round(mean(ack), 1) if n else None,
        "stream_mib_s": round(nbytes / MiB / wsecs, 2) if n and wsecs > 0 else None,
        "send_ack_mib_s": round(nbytes / MiB / (sum(ack) / 1e6), 2) if n and sum(ack) > 0 else None,
        "p_cpu_ms": p_cpu, "p_vcpu_ms": p_vcpu,
        "p_own_ms": p_cpu - p_vcpu if p_cpu is not None and p_vcpu is not None else None, "b_cpu_ms": b_cpu,
    })
    for k in ("p_cpu", "p_own", "b_cpu"):
        v = row[k + "_ms"]
        row[k + "_ms_per_epoch"] = round(v / n, 3) if v is not None and n else None
        row[k + "_pct"] = round(100.0 * v / 1000.0 / wsecs, 1) if v is not None and wsecs > 0 else None
    row["valid"] = (not row["stuck"] and row["rc"] == "0" and n > 0 and None not in (p_cpu, p_vcpu, b_cpu))
    tls_runs.append(row)

TLS_COLS = ["epoch_ms", "tls", "round", "workload", "valid", "rc", "seconds", "guest_mib_s", "epochs", "window_s",
            "pause_us_mean", "pause_us_p99", "bytes_mean", "pages_mean", "pause_us_per_page", "copy_us_per_page",
            "ack_latency_us_mean", "stream_mib_s", "send_ack_mib_s", "p_cpu_ms", "p_vcpu_ms", "p_own_ms", "b_cpu_ms", "p_cpu_ms_per_epoch", "p_own_ms_per_epoch",
            "b_cpu_ms_per_epoch", "p_cpu_pct", "p_own_pct", "b_cpu_pct"]
# the medians: these metrics, per epoch setting, workload and TLS mode, over the valid runs
TLS_MED = ["seconds", "guest_mib_s", "epochs", "pause_us_mean", "pause_us_p99", "bytes_mean", "pages_mean",
           "pause_us_per_page", "copy_us_per_page", "ack_latency_us_mean",
           "stream_mib_s", "send_ack_mib_s", "p_own_ms_per_epoch", "b_cpu_ms_per_epoch", "p_cpu_ms_per_epoch",
           "p_own_pct", "b_cpu_pct"]
TLS_RATIO = ["guest_mib_s", "pause_us_mean", "pause_us_p99", "bytes_mean", "pages_mean", "pause_us_per_page",
             "copy_us_per_page", "ack_latency_us_mean", "stream_mib_s",
             "send_ack_mib_s", "p_own_ms_per_epoch", "b_cpu_ms_per_epoch", "p_cpu_ms_per_epoch"]
tls_keys = []
for r in tls_runs:
    if (r["epoch_ms"], r["workload"]) not in tls_keys:
        tls_keys.append((r["epoch_ms"], r["workload"]))
tls_modes = []
for r in tls_runs:
    if r["tls"] not in tls_modes:
        tls_modes.append(r["tls"])
tls_agg = {}  # (epoch, workload, mode) -> {metric: (median, min, max)}, "runs", "vals"
for e, w in tls_keys:
    for m in tls_modes:
        rs = [r for r in tls_runs if (r["epoch_ms"], r["workload"], r["tls"]) == (e, w, m) and r["valid"]]
        a = {"runs": len(rs), "invalid": len([r for r in tls_runs if (r["epoch_ms"], r["workload"], r["tls"]) == (e, w, m)
                                              and not r["valid"]]), "vals": {}}
        for k in TLS_MED:
            v = [r[k] for r in rs if r[k] is not None]
            a["vals"][k] = v
            a[k] = (st.median(v), min(v), max(v)) if v else None
        tls_agg[(e, w, m)] = a


def tls_ratio(e, w, k):
    a, b = tls_agg.get((e, w, "off")), tls_agg.get((e, w, "psk"))
    if not a or not b or not a.get(k) or not b.get(k) or not a[k][0]:
        return None
    return b[k][0] / a[k][0]


if tls_runs:
    with open(path("tls-runs-summary.csv"), "w", newline="") as f:
        wr = csv.DictWriter(f, fieldnames=TLS_COLS, extrasaction="ignore")
        wr.writeheader()
        wr.writerows(tls_runs)
    with open(path("tls-summary.csv"), "w", newline="") as f:
        cols = ["epoch_ms", "workload", "tls", "runs", "invalid_runs"]
        for k in TLS_MED:
            cols += [k + "_median", k + "_min", k + "_max"]
        cols += ["psk_off_" + k for k in TLS_RATIO]
        wr = csv.writer(f)
        wr.writerow(cols)
        for e, w in tls_keys:
            for m in tls_modes:
                a = tls_agg[(e, w, m)]
                row = [e, w, m, a["runs"], a["invalid"]]
                for k in TLS_MED:
                    row += list(a[k]) if a[k] else ["", "", ""]
                row += [("%.3f" % tls_ratio(e, w, k)) if m == "psk" and tls_ratio(e, w, k) is not None else ""
                        for k in TLS_RATIO]
                wr.writerow(row)


def med3(a, k, scale=1.0, fmt="%.2f"):
    """'median (min-max)' of metric k in aggregate a"""
    if not a or not a.get(k):
        return "-"
    m, lo, hi = a[k]
    return (fmt + " (" + fmt + "-" + fmt + ")") % (m * scale, lo * scale, hi * scale)


def compare(e, w, k):
    """how the psk runs of metric k stand against the off runs: from their ranges, not from the medians alone"""
    a, b = tls_agg.get((e, w, "off")), tls_agg.get((e, w, "psk"))
    if not a or not b or not a.get(k) or not b.get(k):
        return None
    if b[k][1] > a[k][2]:
        return "higher"  # every psk run above every off run
    if b[k][2] < a[k][1]:
        return "lower"
    return "overlap"


def tls_md():
    out = []
    if not tls_runs:
        return out
    out.append("## TLS on and off (memory-writer workloads, FT on)")
    out.append("")
    modes = " and ".join("`%s`" % m for m in tls_modes)
    rounds = sorted({int(r["round"]) for r in tls_runs})
    out.append("- method: per epoch setting, %d round(s); each round boots one fresh guest per TLS mode (%s, in that "
               "order), protects it with a fresh backup on loopback and runs the three memN workloads with FT on "
               "(`ftwork --pages N --interval-ms 0`, 100, 10 and 2 ticks). `off`: the plain loopback link; `psk`: "
               "guest and backup started with `--tls-psk` (the backup then accepts nothing but a TLS 1.3 handshake "
               "with that key, so a protected psk guest is an encrypted link). Figures are medians over the rounds "
               "with (min-max); runs whose guest got stuck or whose ftwork failed are left out (counted in "
               "tls-summary.csv)." % (len(rounds), modes))
    ci = env.get("tls_priority_psk")
    if ci:
        suites = env.get("tls_suites", "").split()
        out.append("- cipher: ftvmm does not log the negotiated suite; both ends run ft/tls.c's priority string `%s`, "
                   "which GnuTLS (%s) reads as %s, so the session uses %s. The CPU %s AES instructions (cpu_aes=%s%s)."
                   % (ci, os.path.basename(env.get("gnutls", "?")) or "?",
                      ", ".join(suites) if suites else "(gnutls-cli not available: not resolved)",
                      suites[0] if suites else "the first cipher named there",
                      "offers" if env.get("cpu_aes") == "yes" else "does not offer", env.get("cpu_aes", "?"),
                      "; here they are emulated by qemu TCG, so TLS's CPU cost is far from that of hardware"
                      if "TCG" in env.get("env", "") else ""))
    tp, failed = {}, []
    if os.path.exists(path("tls-protect.txt")):
        for line in open(path("tls-protect.txt")):
            kv = dict(x.split("=", 1) for x in line.split() if "=" in x)
            if "protect_s" in kv:
                tp.setdefault((kv.get("epoch"), kv.get("tls")), []).append(float(kv["protect_s"]))
            elif "failed" in kv:
                failed.append("epoch %s ms, %s, round %s: %s" % (kv.get("epoch"), kv.get("tls"), kv.get("round"),
                                                                 {"boot": "the guest did not boot",
                                                                  "protect": "never protected"}.get(kv["failed"],
                                                                                                    kv["failed"])))
    if tp:
        out.append("- initial sync (protect to protected=yes), median (min-max) s: " + "; ".join(
            "epoch %s ms %s %.2f (%.2f-%.2f)" % (e, m, st.median(v), min(v), max(v)) for (e, m), v in tp.items()))
    if failed:
        out.append("- **runs without measurements** (see logs/tls-*): " + "; ".join(failed))
    out.append("- columns: guest MiB/s = what ftwork rewrote per second (its throughput); pause = the vCPUs' stop per "
               "epoch (mean, and p99, per run); KiB/epoch = bytes sent per committed epoch; ack = send-to-ack time "
               "per epoch; stream = bytes of the epochs committed in the run's window / the window's wall time (what "
               "the workload made the link carry, not its capacity: the link idles between epochs); send-to-ack = "
               "bytes / sum of the epochs' send-to-ack times (from the sender starting an epoch, encryption "
               "included, to its ack, after the backup received, decrypted, verified and committed it: the epoch "
               "pipeline's rate while busy; when an epoch's send starts before the previous one's ack the times "
               "overlap, so this is a lower bound of that rate); CPU = utime+stime over the window from /proc, ms per "
               "committed epoch: the primary's ftvmm threads other than the vCPUs (epoch engine, sender, where TLS "
               "encrypts, receiver, heartbeat, devices) and the backup's whole process (receive, decrypt, verify, "
               "commit); the primary's vCPU threads run the guest and are in tls-runs-summary.csv. CPU time counts "
               "in clock ticks of %s ms." % (("%.0f" % (1000.0 / float(env["clk_tck"]))) if env.get("clk_tck") else "?"))
    out.append("")
    out.append("| epoch | workload | TLS | runs | guest MiB/s | pause mean (ms) | pause p99 (ms) | KiB/epoch | ack (ms) | stream MiB/s | send-to-ack MiB/s | primary ftvmm CPU ms/epoch | backup CPU ms/epoch | primary ftvmm / backup CPU % of one CPU |")
    out.append("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for e, w in tls_keys:
        for m in tls_modes:
            a = tls_agg[(e, w, m)]
            out.append("| %s ms | %s | %s | %d%s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s / %s |" % (
                e, w, m, a["runs"], (" (+%d left out)" % a["invalid"]) if a["invalid"] else "",
                med3(a, "guest_mib_s"), med3(a, "pause_us_mean", 1e-3), med3(a, "pause_us_p99", 1e-3),
                med3(a, "bytes_mean", 1 / 1024.0, "%.0f"), med3(a, "ack_latency_us_mean", 1e-3),
                med3(a, "stream_mib_s"), med3(a, "send_ack_mib_s"), med3(a, "p_own_ms_per_epoch"),
                med3(a, "b_cpu_ms_per_epoch"), med3(a, "p_own_pct", 1, "%.0f"), med3(a, "b_cpu_pct", 1, "%.0f")))
        if "off" in tls_modes and "psk" in tls_modes:
            def rt(k):
                v = tls_ratio(e, w, k)
                return "**%.2f**" % v if v is not None else "-"
            out.append("| %s ms | %s | psk/off | | %s | %s | %s | %s | %s | %s | %s | %s | %s | |" % (
                e, w, rt("guest_mib_s"), rt("pause_us_mean"), rt("pause_us_p99"), rt("bytes_mean"),
                rt("ack_latency_us_mean"), rt("stream_mib_s"), rt("send_ack_mib_s"), rt("p_own_ms_per_epoch"),
                rt("b_cpu_ms_per_epoch")))
    out.append("")
    if not ("off" in tls_modes and "psk" in tls_modes):
        out.append("Only %s measured: no psk/off comparison." % modes)
        out.append("")
        return out
    pairs = [(e, w) for e, w in tls_keys if tls_agg[(e, w, "off")]["runs"] and tls_agg[(e, w, "psk")]["runs"]]
    out.append("### What the data shows")
    out.append("")
    out.append("Computed from the table: a metric is said to be higher (lower) with TLS only when every psk run is "
               "above (below) every off run; otherwise the two ranges overlap and the difference is within this "
               "run's spread.")
    out.append("")
    if not pairs:
        out.append("- no epoch setting and workload has valid runs in both modes: nothing to compare.")
        out.append("")
        return out

    def say(k, what, unit_scale, unit, fmt="%.2f"):
        parts, cnt = [], {"higher": 0, "lower": 0, "overlap": 0}
        for e, w in pairs:
            c = compare(e, w, k)
            if c is None:
                continue
            cnt[c] += 1
            a, b = tls_agg[(e, w, "off")][k], tls_agg[(e, w, "psk")][k]
            ratio = tls_ratio(e, w, k)
            parts.append(("%s %s ms: " + fmt + " -> " + fmt + " %s (%s, %s)") % (
                w, e, a[0] * unit_scale, b[0] * unit_scale, unit, "x%.2f" % ratio if ratio is not None else "no ratio",
                c))
        n = sum(cnt.values())
        if not n:
            return
        if cnt["higher"] == 0 and cnt["lower"] == 0:
            head = "no case shows a difference beyond the spread"
        else:
            head = "; ".join("%s in %d of %d cases" % (c, cnt[c], n) for c in ("higher", "lower", "overlap") if cnt[c])
        out.append("- **%s** with TLS (off -> psk medians): %s. %s." % (what, head, "; ".join(parts)))

    say("pause_us_mean", "pause (mean per epoch)", 1e-3, "ms")
    say("pause_us_p99", "pause (p99)", 1e-3, "ms")
    say("pages_mean", "pages per epoch", 1, "pages", "%.1f")
    say("pause_us_per_page", "pause per page of the epoch (fixed costs included)", 1, "us", "%.2f")
    say("copy_us_per_page", "copy step per page (the part of the pause that grows with the pages)", 1, "us", "%.2f")
    say("stream_mib_s", "epoch stream throughput", 1, "MiB/s")
    say("send_ack_mib_s", "send-to-ack rate", 1, "MiB/s")
    say("ack_latency_us_mean", "ack latency", 1e-3, "ms")
    say("p_own_ms_per_epoch", "primary CPU (ftvmm threads) per epoch", 1, "ms", "%.3f")
    say("b_cpu_ms_per_epoch", "backup CPU per epoch", 1, "ms", "%.3f")
    say("guest_mib_s", "guest throughput", 1, "MiB/s")
    # the encryption's cost per MiB: the extra CPU per epoch over the bytes per epoch
    cost = []
    for e, w in pairs:
        a, b = tls_agg[(e, w, "off")], tls_agg[(e, w, "psk")]
        if a["bytes_mean"] and b["bytes_mean"] and a["p_own_ms_per_epoch"] and b["p_own_ms_per_epoch"]:
            mib = b["bytes_mean"][0] / MiB
            if mib > 0:
                cost.append("%s %s ms: primary %+.1f, backup %+.1f" % (
                    w, e, (b["p_own_ms_per_epoch"][0] - a["p_own_ms_per_epoch"][0]) / mib,
                    (b["b_cpu_ms_per_epoch"][0] - a["b_cpu_ms_per_epoch"][0]) / mib))
    if cost:
        out.append("- extra CPU with TLS per MiB sent (difference of the median CPU ms per epoch over the psk runs' "
                   "median MiB per epoch; includes whatever else changed between the runs), ms/MiB: %s."
                   % "; ".join(cost))
    grew = [(e, w) for e, w in pairs if compare(e, w, "pause_us_mean") == "higher"]
    rs = [tls_ratio(e, w, "pause_us_mean") for e, w in pairs]
    rs = [x for x in rs if x is not None]
    out.append("- the requirement that the pause not grow (encryption runs on the sender thread, after the vCPUs "
               "resume): %s%s." % (
                   "met: in none of the %d cases is every psk run's mean pause above every off run's" % len(pairs)
                   if not grew else
                   "NOT met for %s: there every psk run's mean pause is above every off run's" %
                   ", ".join("%s at %s ms" % (w, e) for e, w in grew),
                   "; the psk/off ratio of the median pauses ranges %.2f-%.2f" % (min(rs), max(rs)) if rs else ""))
    # a pause grows with the pages it copies: where it grew, did the pause per page grow too, or the epochs?
    for e, w in grew:
        def rx(k):
            x = tls_ratio(e, w, k)
            return "%.2f" % x if x else "?"
        out.append("  - %s at %s ms with TLS: pages per epoch %s (x%s), copy step per page %s (x%s), pause per page "
                   "%s (x%s; it includes the fixed costs, so it falls as pages rise)" % (
                       w, e, compare(e, w, "pages_mean"), rx("pages_mean"), compare(e, w, "copy_us_per_page"),
                       rx("copy_us_per_page"), compare(e, w, "pause_us_per_page"), rx("pause_us_per_page")))
    out.append("")
    return out


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
main_part = bool(summary)
if not main_part:
    md.append("- this run measured the TLS comparison only (FT_BENCH_TLS_ONLY=1): no main table, failover or plots")
    md.append("")
if main_part:
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
    md.append("| epoch | workload | off (s) | on (s) | ratio | epochs/s | paused | pause mean / p99 (ms) | stop / harvest / copy / state / resume (ms) | state: vCPUs+VM / devices (ms) | pages/epoch | memcpy of those pages (ms) | KiB/epoch |")
    md.append("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
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
        split = "?" if r.get("state_cpus_us") is None else "%.2f / %.2f" % (r["state_cpus_us"] / 1e3,
                                                                          r["state_devices_us"] / 1e3)
        md.append("| %s ms | %s | %.2f | %.2f | %s | %s | %s | %.2f / %.2f | %.2f / %.2f / %.2f / %.2f / %.2f | %s | %.0f | %.3f | %.0f |" % (
            r["epoch_ms"], r["workload"], r.get("off_s", 0), r["on_s"], r.get("ratio", "?"), r["epochs_per_s"],
            "%.0f%%" % (100 * r["paused_fraction"]), r["pause_us_mean"] / 1e3, r["pause_us_p99"] / 1e3,
            r["stop_us"] / 1e3, r["harvest_us"] / 1e3, r["copy_us"] / 1e3, r["state_us"] / 1e3, r["resume_us"] / 1e3,
            split, r["pages_mean"], r["memcpy_us_mean"] / 1e3, r["bytes_mean"] / 1024))
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
    # what the data says, in epochs (an expectation written by hand said "half an epoch"; the runs said ~one)
    said = []
    for e in epochs:
        r = get.get((e, "rr"))
        if r and "added_latency_ms" in r and float(e) > 0:
            said.append("%s ms epochs: %.2f ms = %.2f epochs" % (e, r["added_latency_ms"],
                                                                r["added_latency_ms"] / float(e)))
    if said:
        md.append("Output commit holds every reply until the epoch that produced it is acked. Added p50 latency, in "
                  "epochs: " + "; ".join(said) + ".")
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


def fit(xs, ys):
    """least-squares line ys = a + b * xs: (b, a), or None with fewer than 2 distinct xs"""
    if len(xs) < 2 or len(set(xs)) < 2:
        return None
    mx, my = st.mean(xs), st.mean(ys)
    b = sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / sum((x - mx) ** 2 for x in xs)
    return b, my - b * mx


def slope_md():
    """the pause against the epoch's pages over every epoch of the memory workloads, beside a plain memcpy of the
    same pages (issue 16's goal for cow: a slope <= 0.1x memcpy's)"""
    out = ["## Pause against dirty pages (least squares over every epoch of the mem workloads)", "",
           "| epoch | checkpoint | epochs | pause slope (us/page) | intercept (us) | memcpy slope (us/page) | "
           "slope / memcpy | copy step slope (us/page) | cow faults / epoch | cow copy beside the guest (us, mean) |",
           "|---|---|---|---|---|---|---|---|---|---|"]
    for e in sorted({r["epoch_ms"] for r in ep_rows}, key=float):
        rows = [r for r in ep_rows if r["epoch_ms"] == e and r["workload"].startswith("mem") and r["pages"] > 0]
        for mode in sorted({r["checkpoint"] for r in rows}):
            rs = [r for r in rows if r["checkpoint"] == mode]
            xs = [r["pages"] for r in rs]
            fp, fm, fc = fit(xs, [r["pause_us"] for r in rs]), fit(xs, [r["memcpy_us"] for r in rs]), \
                fit(xs, [r["copy_us"] for r in rs])
            if not fp or not fm:
                continue
            out.append("| %s ms | %s | %d | %.3f | %.0f | %.3f | %.2fx | %.3f | %.1f | %.0f |" % (
                e, mode, len(rs), fp[0], fp[1], fm[0], fp[0] / fm[0] if fm[0] > 0 else float("nan"),
                fc[0] if fc else float("nan"), mean([r["cow_faults"] for r in rs]),
                mean([r["cow_copy_us"] for r in rs])))
    out += ["", "The memcpy column is tests/bench/ft-memcpy.c's copy of the same number of scattered pages on this "
            "host in this run. In cow mode the copy step of the pause is the write-protection of the pages; the copy "
            "itself runs beside the guest (last column), and a guest or device write to a page not yet copied waits "
            "for it (faults).", ""]
    return out


if ep_rows:
    md += slope_md()
md += tls_md()
md.append("## memcpy baseline (this host)")
md.append("")
md.append("| pages | ns/page |")
md.append("|---|---|")
for p, ns in MEMCPY:
    md.append("| %d | %.0f |" % (p, ns))
md.append("")
if main_part:
    md.append("## Plots")
    md.append("")
    for png, what in [("ratio.png", "throughput ratio FT on/off per workload and epoch"),
                      ("pause-vs-pages.png", "pause per epoch against dirty pages, with the copy step and a plain memcpy"),
                      ("breakdown.png", "where the pause goes (mean per workload and epoch)"),
                      ("bytes.png", "bytes per epoch"), ("rr.png", "TCP request/response latency"),
                      ("failover.png", "failover timeline")]:
        md.append("- [%s](%s): %s" % (png, png, what))
    md.append("")
md.append(("Files: summary.csv (one row per epoch setting and workload), epochs.csv (every epoch inside a workload "
           "window), failover-summary.csv, runs.csv (raw windows), stats-*.jsonl (the primary's --stats), "
           "memcpy.csv, logs/." if main_part else "Files: memcpy.csv, logs/.") + (" TLS: tls-summary.csv (medians, ranges and psk/off ratios), tls-runs-summary.csv "
                                  "(one row per run and workload), tls-runs.csv (raw windows and CPU samples), "
                                  "stats-tls-*.jsonl, tls-protect.txt, logs/tls-*." if tls_runs else ""))
open(path("results.md"), "w").write("\n".join(md) + "\n")
print("ft-analyze: %d workload rows, %d epochs, %d failovers -> %s" % (len(summary), len(ep_rows), len(fo_rows),
                                                                       path("results.md")))

#!/usr/bin/env python3
"""soak-report.py - summary.md of a tests/bench/soak.sh run, computed from its files (no number is typed by hand).

usage: soak-report.py RESULTS_DIR      (reads env.txt, events.csv, checks.csv, timing.csv if there; writes summary.md
                                        and prints it)

events.csv: one row per injected failure (injected=yes) and per unplanned event (injected=no: "spontaneous", i.e.
something went wrong with nothing injected, such as a false takeover; "reboot", the guest was lost). Survived = the
row's verified column is ok. Every unplanned row counts as a failure of the soak. A row with split_brain=1 (two copies
of the guest ran, or the client received a SPLICE) is counted on its own too: the soak's goal is 0. Timing medians
are over the rows verified ok. Older results (no outcome/cut/stall/split_brain columns) read as empty there.
"""
import csv
import os
import statistics
import sys

from benchenv import env_of


def num(v):
    try:
        return float(v)
    except (TypeError, ValueError):
        return None


def stats(vals, fmt="%.0f"):
    v = [x for x in (num(x) for x in vals) if x is not None]
    if not v:
        return "-", "-", "-", 0
    return fmt % statistics.median(v), fmt % min(v), fmt % max(v), len(v)


def mmm(vals, fmt="%.0f"):
    """'median (min-max)' of the numeric values, '-' when there is none"""
    med, lo, hi, n = stats(vals, fmt)
    return "-" if not n else "%s (%s-%s)" % (med, lo, hi)


def split(r):
    return r.get("split_brain") == "1"


def cut_len(r):
    """link-cut's drawn length: long when it was asked to outlast the timeout"""
    a, t = num(r.get("cut_asked_ms")), num(r.get("ft_timeout_ms"))
    if a is None or t is None:
        return "?"
    return "long" if a > t else "short"


def kinds_of(rows):
    ks = []
    for r in rows:
        if r["kind"] not in ks:
            ks.append(r["kind"])
    return ks


def per_kind(w, inj):
    w("## Failures injected: survived / total per kind")
    w("")
    w("| kind | total | survived | failed | split brain |")
    w("|---|---|---|---|---|")
    for k in kinds_of(inj):
        rs = [r for r in inj if r["kind"] == k]
        ok = sum(r["verified"] == "ok" for r in rs)
        w("| %s | %d | %d | %d | %d |" % (k, len(rs), ok, len(rs) - ok, sum(split(r) for r in rs)))
    ok_all = sum(r["verified"] == "ok" for r in inj)
    w("| **all** | %d | %d | %d | %d |" % (len(inj), ok_all, len(inj) - ok_all, sum(split(r) for r in inj)))
    w("")


def timing_per_kind(w, inj):
    w("## Failover timing per kind, ms from the injection: median (min-max) over the rows verified ok")
    w("")
    w("| kind | ok rows | detect | vCPUs running | guest tick | client stream moving again | client's longest "
      "silence | re-protected (from its start) |")
    w("|---|---|---|---|---|---|---|---|")
    for k in kinds_of(inj):
        rs = [r for r in inj if r["kind"] == k and r["verified"] == "ok"]
        w("| %s | %d | %s | %s | %s | %s | %s | %s |" %
          (k, len(rs), mmm(r["detect_ms"] for r in rs), mmm(r["running_ms"] for r in rs),
           mmm(r["tick_ms"] for r in rs), mmm(r["tcp_ms"] for r in rs), mmm(r.get("stall_ms") for r in rs),
           mmm(r["reprotect_ms"] for r in rs)))
    w("")
    w("(detect: to the survivor's verdict line, `taking over from epoch`, or the primary's `guest continues "
      "UNPROTECTED` (backup-crash, link-cut won by the primary); line times are when the script read the line. "
      "arbiter-outage-crash: from etcd's thaw, not the crash. Client stream: from the client checker's own receive "
      "times: its longest silence from the injection on, and the line that ended it.)")
    w("")


def link_cuts(w, inj):
    cuts = [r for r in inj if r["kind"] == "link-cut"]
    if not cuts:
        return
    w("## link-cut outcomes")
    w("")
    w("none: nobody acted (only right for a cut measured below the timeout); backup: it took over, the old primary "
      "stopped; primary: it went on alone, the backup stood down; undecided: neither within 30 s of the heal.")
    w("")
    w("| cut | outcome | rows | verified ok | split brain | asked ms | measured ms (lab_cut's return to lab_heal's) |")
    w("|---|---|---|---|---|---|---|")
    keys = []
    for r in cuts:
        key = (cut_len(r), r.get("outcome") or "?")
        if key not in keys:
            keys.append(key)
    for ln, oc in sorted(keys):
        rs = [r for r in cuts if (cut_len(r), r.get("outcome") or "?") == (ln, oc)]
        w("| %s | %s | %d | %d | %d | %s | %s |" %
          (ln, oc, len(rs), sum(r["verified"] == "ok" for r in rs), sum(split(r) for r in rs),
           mmm(r.get("cut_asked_ms") for r in rs), mmm(r.get("cut_ms") for r in rs)))
    w("")


def main():
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    d = sys.argv[1]
    env = env_of(d)
    rows = list(csv.DictReader(open(os.path.join(d, "events.csv"))))
    checks = []
    if os.path.exists(os.path.join(d, "checks.csv")):
        checks = list(csv.DictReader(open(os.path.join(d, "checks.csv"))))
    timing = []
    if os.path.exists(os.path.join(d, "timing.csv")):
        timing = list(csv.DictReader(open(os.path.join(d, "timing.csv"))))

    inj = [r for r in rows if r["injected"] == "yes"]
    unplanned = [r for r in rows if r["injected"] != "yes"]
    out = []
    w = out.append
    w("# ftvmm soak: %s (%s)" % (os.path.basename(os.path.normpath(d)), env.get("mode", "?")))
    w("")
    w("Computed by tests/bench/soak-report.py from events.csv, checks.csv%s and env.txt." %
      (", timing.csv" if timing else ""))
    w("")
    for k in ("where", "testbed_kernel", "testbed_cpus", "qemu", "guest_kernel", "ftvmm_commit", "ftvmm_binary",
              "n", "ft_timeout_ms", "timing_timeouts_ms", "timing_n", "kinds", "arbiter", "ft_link", "blip_ms",
              "link_cut_long_ms", "epoch_ms", "guest", "seed", "wall_s", "load_before", "load_after", "aborted"):
        if k in env:
            w("- %s: %s" % (k, env[k]))
    w("")

    n_split = sum(split(r) for r in rows)
    w("survived=%d/%d unplanned=%d split_brain=%d (goal: every failure survived, no unplanned event, no split brain: "
      "a row where two copies of the guest ran or the client received a SPLICE)" %
      (sum(r["verified"] == "ok" for r in inj), len(inj), len(unplanned), n_split))
    w("")
    per_kind(w, inj)
    timing_per_kind(w, inj)
    link_cuts(w, inj)
    n_false = sum("FALSE TAKEOVER" in r["reason"] for r in rows)
    w("## Unplanned events (soak failures with nothing injected)")
    w("")
    w("- spontaneous (state found broken between failures): %d" %
      sum(r["kind"] == "spontaneous" for r in unplanned))
    w("- guest lost and rebooted: %d" % sum(r["kind"] == "reboot" for r in unplanned))
    w("- false takeovers (rows saying FALSE TAKEOVER): %d" % n_false)
    w("- split brains among them: %d" % sum(split(r) for r in unplanned))
    w("")

    w("## Disk record checks (ft_records.py on the survivor's disk)")
    w("")
    if checks:
        okc = sum(c["result"] == "ok" for c in checks)
        w("%d of %d ok." % (okc, len(checks)))
        w("")
        for c in checks:
            w("- check %s after failure %s (generation %s, survivor %s): %s: %s" %
              (c["check"], c["after_failure"], c["generation"], c["survivor"], c["result"], c["detail"]))
    else:
        w("none ran")
    w("")

    if timing:
        w("## Failover timing by phase (host crash of the primary), ms from the crash")
        w("")
        w("The crash's time: when its links were all down (lab_crash's `LAB_SILENT_AT`; in results written before "
          "that existed, when the injector started). injector: from the injector's start to the links down, "
          "not part of the failover. "
          "Phases: takeover line (silence detected, takeover decided), vCPUs running (the `restore: guest running` "
          "line), ftvmm's own loss-seen-to-running figure on that line, the guest's next tick on the survivor's "
          "console, the client's first line after the takeover, re-protected.")
        w("")
        w("| --ft-timeout | phase | n | median | min | max |")
        w("|---|---|---|---|---|---|")
        tmos = []
        for t in timing:
            if t["ft_timeout_ms"] not in tmos:
                tmos.append(t["ft_timeout_ms"])
        phases = [("inject_ms", "injector (start to links down)"), ("detect_ms", "takeover line"), ("running_ms", "vCPUs running"),
                  ("inside_ms", "ftvmm: loss seen to running"), ("claim_ms", "ftvmm: the arbiter's claim (within it)"),
                  ("tick_ms", "next guest tick"),
                  ("tcp_ms", "client stream moving"), ("reprotect_ms", "re-protected (from its start)")]
        for tmo in tmos:
            ts = [t for t in timing if t["ft_timeout_ms"] == tmo]
            for key, name in phases:
                med, lo, hi, n = stats((t.get(key) for t in ts), "%.1f" if key in ("inside_ms", "claim_ms") else "%.0f")
                if n == 0 and key in ("inject_ms", "claim_ms"):
                    continue
                w("| %s | %s | %d | %s | %s | %s |" % (tmo, name, n, med, lo, hi))
        w("")
        w("| --ft-timeout | crashes | verified ok | unplanned events (spontaneous / reboot) | false takeovers |")
        w("|---|---|---|---|---|")
        for tmo in tmos:
            ts = [t for t in timing if t["ft_timeout_ms"] == tmo]
            un = [r for r in unplanned if r["ft_timeout_ms"] == tmo]
            w("| %s | %d | %d | %d / %d | %d |" %
              (tmo, len(ts), sum(t["verified"] == "ok" for t in ts),
               sum(r["kind"] == "spontaneous" for r in un), sum(r["kind"] == "reboot" for r in un),
               sum("FALSE TAKEOVER" in r["reason"] for r in rows if r["ft_timeout_ms"] == tmo)))
        w("")

    bad = [r for r in rows if r["verified"] != "ok"]
    w("## Failures (%d rows)" % len(bad))
    w("")
    if not bad:
        w("none")
    for r in bad:
        w("- row %s (%s%s%s, %s)%s: %s" % (r["row"], r["kind"], " #" + r["failure"] if r["failure"] else "",
                                           ", outcome " + r["outcome"] if r.get("outcome") else "", r["utc"],
                                           " [split brain]" if split(r) else "", r["reason"]))
    w("")
    text = "\n".join(out)
    open(os.path.join(d, "summary.md"), "w").write(text)
    print(text)


if __name__ == "__main__":
    main()

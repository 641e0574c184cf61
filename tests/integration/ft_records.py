#!/usr/bin/env python3
"""ft_records.py - checks ftwork's per-seq disk records and console lines after fault-tolerance runs.

usage: ft_records.py --disk IMG --area BYTES [--last N] [--console FILE]... [--ticks]

The disk: ftwork writes a 512-byte record for each seq s at offset (s * 512) % AREA (AREA from its "FTWORK start"
line): 64 little-endian u64 words, [0] "FTWKREC1", [1] seq, [2] sum, [63] rec_check(words 0..62). Checked:
  - the records from seq 1 form an unbroken prefix 1..M of intact records, M >= N (N = --last, default: the highest
    seq on the consoles; the disk may be read while the guest still runs, so M may be a little ahead of N), and
  - no intact record lies beyond M (nothing after a gap: a stale or lost write), and
  - each record's sum equals the sum the consoles printed for that seq.
The consoles: every "FTWORK seq=<n> sum=<hex> ok" line of every file; a seq printed more than once (a tick redone
after a failover) must carry the same sum every time (ftwork is deterministic), and no BAD line may appear.
Prints one line "records ok last=N ..." (exit 0) or "records FAIL <why>" (exit 1).
"""
import argparse
import re
import struct
import sys

M64 = (1 << 64) - 1
MAGIC = 0x314345524B575446


def mix64(x):
    x ^= x >> 30
    x = (x * 0xBF58476D1CE4E5B9) & M64
    x ^= x >> 27
    x = (x * 0x94D049BB133111EB) & M64
    x ^= x >> 31
    return x


def rec_check(w):
    h = 0x7265636F7264
    for i in range(63):
        h = (mix64(h ^ w[i]) + i) & M64
    return h


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--disk", required=True)
    ap.add_argument("--area", type=int, required=True)
    ap.add_argument("--last", type=int)
    ap.add_argument("--console", action="append", default=[])
    ap.add_argument("--slack", type=int, default=0,
                    help="tolerate intact records this many seqs after a gap (default 0)")
    ap.add_argument("--ticks", action="store_true",
                    help="every CPU's timer count must advance over each console with >= 10 ok lines")
    a = ap.parse_args()

    sums, bad = {}, []
    line_re = re.compile(r"FTWORK seq=(\d+) sum=([0-9a-f]{16}) ok")
    ticks_re = re.compile(r"FTWORK seq=\d+ sum=[0-9a-f]{16} ok .*ticks=([0-9,]+)")
    for f in a.console:
        ticks = []
        with open(f, "rb") as fh:
            for raw in fh:
                if not raw.endswith(b"\n"):
                    continue  # the last line of a killed VMM's console, cut short (it goes on on the backup)
                mt = ticks_re.search(raw.decode("ascii", "replace"))
                if mt:
                    ticks.append([int(x) for x in mt.group(1).split(",")])
                line = raw.decode("ascii", "replace")
                if "FTWORK" in line and " BAD " in line:
                    bad.append("%s: %s" % (f, line.strip()))
                m = line_re.search(line)
                if not m:
                    continue
                s, v = int(m.group(1)), int(m.group(2), 16)
                if s in sums and sums[s] != v:
                    bad.append("seq %d printed with two sums %016x and %016x (%s)" % (s, sums[s], v, f))
                sums[s] = v
        if a.ticks and len(ticks) >= 10:
            first, lastt = ticks[0], ticks[-1]
            stuck = [i for i in range(min(len(first), len(lastt))) if lastt[i] <= first[i]]
            if stuck or len(first) != len(lastt):
                bad.append("%s: timer counts of CPU(s) %s did not advance (%s -> %s)" % (f, stuck, first, lastt))
    if bad:
        print("records FAIL " + "; ".join(bad[:3]))
        return 1
    last = a.last if a.last is not None else (max(sums) if sums else 0)
    if last <= 0:
        print("records FAIL no FTWORK seq lines")
        return 1
    nrec = a.area // 512
    if last >= nrec:
        print("records FAIL last seq %d wraps the record area (%d records): use a bigger disk" % (last, nrec))
        return 1
    with open(a.disk, "rb") as fh:
        img = fh.read(a.area)
    problems = []

    def rec(s):
        w = struct.unpack_from("<64Q", img, s * 512)
        return w if (w[0] == MAGIC and w[1] == s and w[63] == rec_check(w)) else None

    m = 0
    while m + 1 < nrec and rec(m + 1):
        m += 1
    if m < last:
        w = struct.unpack_from("<64Q", img, (m + 1) * 512)
        problems.append("the records stop at seq %d but the guest printed seq %d (record %d: magic %016x seq %d)"
                        % (m, last, m + 1, w[0], w[1]))
    for s in range(1, m + 1):
        v = rec(s)[2]
        if s in sums and v != sums[s]:
            problems.append("record %d sum %016x, console said %016x" % (s, v, sums[s]))
            if len(problems) > 3:
                break
    beyond = [s for s in range(m + 1 + a.slack, nrec) if struct.unpack_from("<Q", img, s * 512)[0] == MAGIC]
    if beyond:
        problems.append("%d records after the gap at seq %d (first: %d)" % (len(beyond), m + 1, beyond[0]))
    if problems:
        print("records FAIL " + "; ".join(problems[:4]))
        return 1
    print("records ok prefix=1..%d guest_last=%d console_seqs=%d" % (m, last, len(sums)))
    return 0


if __name__ == "__main__":
    sys.exit(main())

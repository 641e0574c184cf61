#!/usr/bin/env bash
# tests/bench/tls-stream.sh - what TLS costs the FT link's framing: ft_send -> ft_recv over a socketpair, plain and TLS.
#
# Usage: tests/bench/tls-stream.sh [RUNS] [MIB]   (default 5 runs of 512 MiB each, plain and TLS interleaved).
# Runs on this machine (no KVM needed; the peer is the same framing without TLS). Writes
# tests/bench/results/tls-stream-<date>/: env.txt, runs.csv, summary.md (computed from runs.csv).
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/../.." && pwd)
RUNS=${1:-5} MIB=${2:-512}
make -C "$repo" -s build/libftvmm.a
bin=$(mktemp -d)/tls-stream
trap 'rm -rf "$(dirname "$bin")"' EXIT
gcc -O2 -std=gnu11 -D_GNU_SOURCE -pthread -o "$bin" "$here/tls-stream.c" "$repo/build/libftvmm.a" -luring -lfdt -lgnutls
res="$here/results/tls-stream-$(date -u +%Y%m%d-%H%M%S)"
mkdir -p "$res"
{
	echo "date: $(date -u +%FT%TZ)"
	echo "commit: $(git -C "$repo" rev-parse --short HEAD)"
	echo "machine: $(uname -sr), $(nproc) CPUs, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')"
	echo "cpu flags: $(grep -o -w -m1 'aes\|pclmulqdq\|avx2' /proc/cpuinfo | sort -u | tr '\n' ' ')"
	echo "gnutls: $(dpkg-query -W -f '${Version}' libgnutls30 2>/dev/null || echo ?)"
	echo "load before: $(cut -d' ' -f1-3 /proc/loadavg)"
	echo "runs: $RUNS x $MIB MiB per mode, interleaved"
} >"$res/env.txt"
echo "run,mode,mib,seconds" >"$res/runs.csv"
for ((i = 1; i <= RUNS; i++)); do
	for mode in plain tls; do
		read -r m n s < <("$bin" "$mode" "$MIB")
		echo "$i,$m,$n,$s" >>"$res/runs.csv"
	done
done
echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)" >>"$res/env.txt"
python3 - "$res" <<'PY'
import csv, statistics, sys
res = sys.argv[1]
rows = list(csv.DictReader(open(f"{res}/runs.csv")))
out = ["# ft_send -> ft_recv over a socketpair: plain vs TLS 1.3 (PSK)", "", open(f"{res}/env.txt").read(), "",
       "| mode | median MiB/s | min | max | runs |", "|---|---|---|---|---|"]
med = {}
for mode in ("plain", "tls"):
    v = [float(r["mib"]) / float(r["seconds"]) for r in rows if r["mode"] == mode]
    med[mode] = statistics.median(v)
    out.append(f"| {mode} | {med[mode]:.1f} | {min(v):.1f} | {max(v):.1f} | {len(v)} |")
out += ["", f"TLS streams at {med['tls'] / med['plain']:.3f}x the plain framing's rate on this machine."]
open(f"{res}/summary.md", "w").write("\n".join(out) + "\n")
print("\n".join(out))
PY
echo "results: $res"

#!/usr/bin/env bash
# tests/bench/harvest.sh - dirty-page harvest time per tracking mode (ring, clear, bitmap) at 256 MiB .. 16 GiB of guest RAM, same small dirty set.
#
# Usage: tests/bench/harvest.sh [RUNS] [ROUNDS]   (default 5 runs of 40 harvests each). Runs inside the nested test
# bed unless ITEST_MODE=direct (this machine's /dev/kvm). Each run of tests/bench/harvest.c is one VM (1 vCPU, RAM
# mapped lazily) whose guest writes the same 64 pages without end; ROUNDS harvests, ~20 ms apart, each timed around
# vm_dirty_collect (what the FT primary calls in its pause). Runs are interleaved: run 1 of every (size, mode), then
# run 2, ... Per (mode, size): the median of the runs' medians with min and max; per mode the ratio of the largest
# size's median to the smallest's (issue 16's goal for the ring: <= 1.2).
# Writes tests/bench/results/harvest-<date>/{runs.txt,summary.md}.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/../.." && pwd)
RUNS=${1:-5}
ROUNDS=${2:-40}
SIZES=${HARVEST_SIZES:-"256 1024 4096 16384"}
MODES=${HARVEST_MODES:-"ring clear bitmap"}
[[ "$RUNS" =~ ^[1-9][0-9]*$ && "$ROUNDS" =~ ^[1-9][0-9]*$ ]] || { echo "harvest: RUNS and ROUNDS are positive numbers" >&2; exit 2; }
BIN=$repo/build/bench-harvest

if [[ "${BENCH_INSIDE:-0}" != 1 ]]; then
	make -C "$repo" build/libftvmm.a >/dev/null
	cc -O2 -g -std=gnu11 -Wall -Wextra -Werror -D_GNU_SOURCE -o "$BIN" "$here/harvest.c" "$repo/build/libftvmm.a" \
		-luring -lfdt -lgnutls -lcurl -ljson-c -llz4 -lzstd -pthread
	BENCH_OUTER_LOAD="$(cut -d' ' -f1-3 /proc/loadavg) on $(nproc) CPUs" && export BENCH_OUTER_LOAD
	BENCH_RES="$repo/tests/bench/results/harvest-$(date -u +%Y%m%d-%H%M%S)" && export BENCH_RES
	mkdir -p "$BENCH_RES"
	export SIZES MODES
	if [[ "${ITEST_MODE:-auto}" == direct ]]; then
		BENCH_INSIDE=1 BENCH_ENV="real KVM ($(uname -r))" bash "$0" "$RUNS" "$ROUNDS"
	else
		TESTBED_PASSENV="SIZES MODES BENCH_INSIDE BENCH_ENV BENCH_OUTER_LOAD BENCH_RES" BENCH_INSIDE=1 \
			BENCH_ENV="nested test bed (qemu TCG -cpu max, kvm-amd inside)" TESTBED_TIMEOUT=$((300 + RUNS * 240)) \
			"$repo/tests/testbed/run.sh" bash "$0" "$RUNS" "$ROUNDS"
	fi
	cat "$BENCH_RES/summary.md"
	exit 0
fi

# ---- inside: where /dev/kvm is ----
runs=$BENCH_RES/runs.txt
load_start=$(cut -d' ' -f1-3 /proc/loadavg)
echo "# run mode size_mib rounds median_us min_us max_us median_pages" >"$runs"
fails=0
for run in $(seq "$RUNS"); do
	for size in $SIZES; do
		for mode in $MODES; do
			if out=$("$BIN" "$mode" "$size" "$ROUNDS" 2>&1); then
				echo "$run $out" | tee -a "$runs"
			else
				echo "harvest: $mode at $size MiB failed: $out" >&2
				fails=$((fails + 1))
			fi
		done
	done
done
python3 - "$runs" "$BENCH_RES/summary.md" <<PY
import statistics, sys
rows = [l.split() for l in open(sys.argv[1]) if not l.startswith('#')]
cells = {}
for r in rows:
    cells.setdefault((r[1], int(r[2])), []).append((int(r[4]), int(r[7])))
modes = list(dict.fromkeys(r[1] for r in rows))
sizes = sorted({int(r[2]) for r in rows})
with open(sys.argv[2], 'w') as f:
    f.write("# Dirty-page harvest time by tracking mode and guest RAM\n\n")
    f.write("- environment: ${BENCH_ENV:-unknown}; host kernel $(uname -r); $(nproc) CPUs; load inside $load_start at the start, "
            "$(cut -d' ' -f1-3 /proc/loadavg) at the end; outer machine load ${BENCH_OUTER_LOAD:-?}\n")
    f.write("- each cell: median over runs of one run's median harvest (us), [min-max of the run medians]; pages: "
            "median pages per harvest (the guest writes 64)\n- failed runs: $fails\n\n")
    f.write("| mode | " + " | ".join(f"{s} MiB" for s in sizes) + " | largest / smallest |\n")
    f.write("|---|" + "---|" * (len(sizes) + 1) + "\n")
    for m in modes:
        meds = {}
        line = f"| {m} |"
        for s in sizes:
            v = cells.get((m, s))
            if not v:
                line += " - |"
                continue
            us = [x[0] for x in v]
            meds[s] = statistics.median(us)
            line += f" {meds[s]:.0f} [{min(us)}-{max(us)}], {statistics.median(x[1] for x in v):.0f} pages |"
        ratio = meds[sizes[-1]] / meds[sizes[0]] if sizes[0] in meds and sizes[-1] in meds and meds[sizes[0]] else None
        line += f" {ratio:.2f}x |" if ratio is not None else " - |"
        f.write(line + "\n")
PY
exit $((fails > 0))

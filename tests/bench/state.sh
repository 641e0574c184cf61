#!/usr/bin/env bash
# tests/bench/state.sh - the epoch's state capture, step by step (each KVM ioctl, state_capture whole), 1 and 2 vCPUs.
# Usage: tests/bench/state.sh [ROUNDS]  (default 200 pauses). Runs tests/bench/state.c inside the nested test bed unless
# ITEST_MODE=direct. Writes tests/bench/results/state-<date>.md (the program's tables with the environment).
# STATE_BASE=DIR [STATE_BASE_REV=name]: also the same program built in DIR with DIR/build/libftvmm.a (another checkout,
# built: the "before" of a change), run in turn with this tree's in the same test-bed boot (3 alternations of ROUNDS/3 pauses each).
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/../.." && pwd)
ROUNDS=${1:-200}
[[ "$ROUNDS" =~ ^[1-9][0-9]*$ ]] || { echo "state: ROUNDS is a positive number" >&2; exit 2; }
BIN=$repo/build/bench-state
BASE_BIN=$repo/build/bench-state-base
if [[ "${BENCH_INSIDE:-0}" != 1 ]]; then
	make -C "$repo" build/libftvmm.a >/dev/null
	cc -O2 -g -std=gnu11 -Wall -Wextra -Werror -D_GNU_SOURCE -o "$BIN" "$here/state.c" "$repo/build/libftvmm.a" \
		-luring -lfdt -lgnutls -lcurl -ljson-c -llz4 -lzstd -pthread
	rm -f "$BASE_BIN"
	if [[ -n "${STATE_BASE:-}" ]]; then
		# compiled inside the other checkout: its headers describe its library's structures
		cp "$here/state.c" "$STATE_BASE/tests/bench/state-bench-copy.c"
		cc -O2 -g -std=gnu11 -Wall -Wextra -Werror -D_GNU_SOURCE -o "$BASE_BIN" "$STATE_BASE/tests/bench/state-bench-copy.c" \
			"$STATE_BASE/build/libftvmm.a" -luring -lfdt -lgnutls -lcurl -ljson-c -llz4 -lzstd -pthread
		rm -f "$STATE_BASE/tests/bench/state-bench-copy.c"
		[[ -n "${STATE_BASE_REV:-}" ]] || STATE_BASE_REV=$([[ -e "$STATE_BASE/.git" ]] && git -C "$STATE_BASE" rev-parse --short HEAD || echo "$STATE_BASE")
		export STATE_BASE_REV
	fi
	BENCH_OUTER_LOAD="$(cut -d' ' -f1-3 /proc/loadavg) on $(nproc) CPUs" && export BENCH_OUTER_LOAD
	BENCH_RES="$repo/tests/bench/results/state-$(date -u +%Y%m%d-%H%M%S).md" && export BENCH_RES
	if [[ "${ITEST_MODE:-auto}" == direct ]]; then
		BENCH_INSIDE=1 BENCH_ENV="real KVM ($(uname -r))" bash "$0" "$ROUNDS"
	else
		TESTBED_PASSENV="BENCH_INSIDE BENCH_ENV BENCH_OUTER_LOAD BENCH_RES STATE_BASE_REV" BENCH_INSIDE=1 \
			BENCH_ENV="nested test bed (qemu TCG -cpu max, kvm-amd inside)" TESTBED_TIMEOUT=600 \
			"$repo/tests/testbed/run.sh" bash "$0" "$ROUNDS"
	fi
	cat "$BENCH_RES"
	exit 0
fi
{
	echo "# Epoch state capture by step"
	echo
	echo "- environment: $BENCH_ENV; host kernel $(uname -r) $(grep -oE 'kvm_amd\.npt=[^ ]+' /proc/cmdline); $(nproc) CPUs;" \
		"load inside $(cut -d' ' -f1-3 /proc/loadavg); outer machine load $BENCH_OUTER_LOAD; ftvmm $(git -C "$repo" rev-parse --short HEAD 2>/dev/null || echo '?')"
	for n in 1 2; do
		if [[ -x "$BASE_BIN" ]]; then
			for alt in 1 2 3; do
				for b in "$BASE_BIN" "$BIN"; do
					echo
					echo "$([[ $b == "$BASE_BIN" ]] && echo "before (${STATE_BASE_REV:-base})" || echo "this tree"), alternation $alt:"
					echo '```'
					"$b" "$n" $((ROUNDS / 3 + 1))
					echo '```'
				done
			done
		else
			echo
			echo '```'
			"$BIN" "$n" "$ROUNDS"
			echo '```'
		fi
	done
} >"$BENCH_RES"

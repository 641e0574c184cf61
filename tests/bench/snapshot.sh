#!/usr/bin/env bash
# tests/bench/snapshot.sh - snapshot/restore benchmark: pause latency, state capture, memory save rate beside plain
# memcpy/write baselines, file size, restore-to-running time, for 256 MiB and 1 GiB guests.
#
# Usage: tests/bench/snapshot.sh [MEM_MB...]   (default: 256 1024)
# Runs inside the nested test bed unless ITEST_MODE=direct (a machine with working hardware KVM). Writes
# tests/bench/results/snapshot-<date>.md and .csv. Env: FTVMM (default build/ftvmm), GUEST_KERNEL, GUEST_INITRD,
# SNAPBENCH_DIRS (where snapshot files go, each one measured; default: "/var/tmp /dev/shm", the test bed's ext4
# scratch disk and tmpfs),
# SNAPBENCH_REPS (default 3), SNAPBENCH_COLD=1 (one more restore after dropping the page cache; off by default:
# the one run that did it saw the test bed's own kernel lock up right after `echo 3 >drop_caches`).
#
# Per guest size, one boot: the guest first fills half its RAM once (ftwork --pages <RAM/2> --count 1; freed pages
# keep their contents, so they stay in every snapshot), then ticks ftwork --pages 64 --interval-ms 10. Then:
#   pause     `ctl pause` round trip (client start to reply), beside `ctl status` (the same client doing nothing
#             to the VM), and pause_us from each `snapshot` reply (vm_pause alone)
#   state     state_us from the reply: vCPU + VM + device state capture, no memory
#   save      the reply's scan_ms (zero-page scan of all RAM), mem_write_ms (hash + write of pages and state, fsync,
#             rename) and total_ms, and the rates over the file's bytes, beside snapshot-baseline.c run on the same
#             byte count in the same directory right after: memcpy, write+fsync, snap_hash, page_is_zero scan
#   restore   `ftvmm restore` start until the restored guest prints its next FTWORK line (page cache warm: the
#             file was just written; SNAPBENCH_COLD=1: one more after dropping the page cache), and `ftvmm inspect`
#             (open + read + checksum of the whole file, the first step of every restore)
# Snapshot files go to a disk-backed file system and to tmpfs (SNAPBENCH_DIRS), each measured.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/../.." && pwd)
FTVMM=${FTVMM:-$repo/build/ftvmm}
KERNEL=${GUEST_KERNEL:-$repo/guest-images/out/bzImage}
INITRD=${GUEST_INITRD:-$repo/guest-images/out/initramfs.cpio.gz}
SIZES=("$@")
[[ ${#SIZES[@]} -gt 0 ]] || SIZES=(256 1024)

if [[ "${BENCH_INSIDE:-0}" != 1 ]]; then
	FTVMM=$(cd "$(dirname "$FTVMM")" && pwd)/$(basename "$FTVMM")
	[[ -x "$FTVMM" ]] || make -C "$repo" >/dev/null
	[[ -f "$KERNEL" && -f "$INITRD" ]] || bash "$repo/guest-images/build.sh" >/dev/null
	zcat "$INITRD" | cpio -t 2>/dev/null | grep -q '^bin/ftwork$' ||
		{ echo "snapshot bench: $INITRD has no bin/ftwork (run guest-images/build.sh)" >&2; exit 1; }
	# the baseline helper links the same snap_hash/page_is_zero code as ftvmm
	lib="$(dirname "$FTVMM")/libftvmm.a"
	[[ -f "$lib" ]] || make -C "$repo" B="$(dirname "$FTVMM")" >/dev/null
	BASELINE="$(dirname "$FTVMM")/snapshot-baseline"
	gcc -O2 -Wall -D_GNU_SOURCE -o "$BASELINE" "$here/snapshot-baseline.c" "$lib" -luring -lfdt -pthread
	BENCH_OUTER="$(nproc) CPUs ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)), load average $(cut -d' ' -f1-3 /proc/loadavg) at the start"
	export FTVMM KERNEL INITRD BASELINE BENCH_OUTER
	if [[ "${ITEST_MODE:-auto}" == direct ]]; then
		BENCH_INSIDE=1 BENCH_ENV="real KVM ($(uname -r))" exec bash "$0" "${SIZES[@]}"
	fi
	TESTBED_TIMEOUT=${TESTBED_TIMEOUT:-2400} \
		TESTBED_PASSENV="FTVMM KERNEL INITRD BASELINE BENCH_OUTER BENCH_INSIDE BENCH_ENV SNAPBENCH_DIRS SNAPBENCH_REPS SNAPBENCH_COLD" BENCH_INSIDE=1 \
		BENCH_ENV="nested test bed (qemu TCG -cpu max, kvm-amd with nested SVM inside)" \
		exec "$repo/tests/testbed/run.sh" bash "$0" "${SIZES[@]}"
fi

# ---- inside: where /dev/kvm is ----
REPS=${SNAPBENCH_REPS:-3}
# SNAPBENCH_DIRS: where snapshot files go, each measured: a disk-backed file system, and tmpfs (memory: shows
# ftvmm's own costs without the disk's)
read -ra dirs <<<"${SNAPBENCH_DIRS:-${TESTBED_SCRATCH:-/var/tmp} /dev/shm}"
date=$(date -u +%Y%m%d-%H%M%S)
mkdir -p "$repo/tests/bench/results"
out_md="$repo/tests/bench/results/snapshot-$date.md"
out_csv="$repo/tests/bench/results/snapshot-$date.csv"
tmp=$(mktemp -d)
for i in "${!dirs[@]}"; do dirs[$i]=$(mktemp -d "${dirs[$i]}/ftvmm-snapbench.XXXXXX"); done
SOCK="$tmp/ctl.sock"
VM_PID=""
cleanup() {
	[[ -n "$VM_PID" ]] && kill -9 "$VM_PID" 2>/dev/null
	rm -rf "$tmp" "${dirs[@]}"
}
trap cleanup EXIT

ns() { echo "${EPOCHREALTIME/./}000"; }
ms_since() { local d=$(((${EPOCHREALTIME/./} * 1000 - $1) / 1000)); printf '%d.%d' $((d / 1000)) $((d % 1000 / 100)); }
median() { tr ' ' '\n' | grep . | sort -g | awk '{ v[NR] = $1 } END { if (NR) print (NR % 2 ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2); else print "" }'; }
field() { sed -nE "s/.*$1=([^ ]*).*/\1/p"; }
. "$here/ftwork-wait.sh" # first_ftwork
ctl() { "$FTVMM" ctl "$SOCK" "$@"; }
say() { echo "$*" | sed -E 's#/ftvmm-snapbench\.[A-Za-z0-9]+##g' | tee -a "$tmp/raw"; } # progress, kept for the report

echo "mem_mb,dir,fs,pages,stored_mib,file_bytes,status_rtt_ms,pause_rtt_ms,resume_rtt_ms,pause_us,state_us,scan_ms,mem_write_ms,total_ms,save_mbps,mem_write_mbps,memcpy_ms,memcpy_mbps,write_fsync_ms,write_fsync_mbps,hash_ms,zeroscan_ms,inspect_s,restore_warm_s,restore_cold_s" >"$out_csv"
mbps() { awk -v b="$1" -v ms="$2" 'BEGIN { printf "%.0f", (ms > 0) ? b / 1048576 / (ms / 1000) : 0 }'; }
secs_since() { awk -v m="$(ms_since "$1")" 'BEGIN { printf "%.2f", m / 1000 }'; }

for mem in "${SIZES[@]}"; do
	fill=$((mem * 256 / 2)) # pages: half the RAM
	log="$tmp/boot-$mem.console"
	say "== $mem MiB guest: booting, filling $((fill / 256)) MiB"
	cmd="console=ttyS0 panic=-1 quiet ftvmm.test=ftwork ftvmm.ftwork_pre=--pages,$fill,--count,1,--interval-ms,0 ftvmm.ftwork=--pages,64,--interval-ms,10"
	: >"$log"
	"$FTVMM" run --kernel "$KERNEL" --initrd "$INITRD" --mem "${mem}M" --cpus 2 --control "$SOCK" \
		--cmdline "$cmd" </dev/null >>"$log" 2>"$tmp/err" &
	VM_PID=$!
	if ! first_ftwork "$log" 900; then
		echo "  guest never ticked; console tail:" && tail -n 5 "$log" && cat "$tmp/err"
		kill -9 "$VM_PID" 2>/dev/null || true
		wait "$VM_PID" 2>/dev/null || true
		continue
	fi
	sleep 1

	# pause latency: the ctl client's round trip for status (no-op), pause, resume
	st=() pa=() re=()
	for _ in $(seq 5); do
		t=$(ns); ctl status >/dev/null; st+=("$(ms_since "$t")")
		t=$(ns); ctl pause >/dev/null; pa+=("$(ms_since "$t")")
		t=$(ns); ctl resume >/dev/null; re+=("$(ms_since "$t")")
		sleep 0.2
	done
	status_rtt=$(echo "${st[*]}" | median) pause_rtt=$(echo "${pa[*]}" | median) resume_rtt=$(echo "${re[*]}" | median)
	say "  ctl round trips (median of 5): status ${status_rtt} ms, pause ${pause_rtt} ms, resume ${resume_rtt} ms"

	declare -A row=()
	for d in "${dirs[@]}"; do
		fs=$(df -T "$d" | awk 'NR == 2 { print $2 }')
		snap="$d/snap-$mem"
		pus=() sts=() scs=() mws=() tos=()
		for r in $(seq "$REPS"); do
			reply=$(ctl snapshot "$snap")
			say "  snapshot $r to $d ($fs): ${reply#ok snapshot * }"
			pus+=("$(field pause_us <<<"$reply")") sts+=("$(field state_us <<<"$reply")")
			scs+=("$(field scan_ms <<<"$reply")") mws+=("$(field mem_write_ms <<<"$reply")")
			tos+=("$(field total_ms <<<"$reply")")
			bytes=$(field bytes <<<"$reply") stored=$(field pages <<<"$reply")
			sleep 1
		done
		pause_us=$(echo "${pus[*]}" | median) state_us=$(echo "${sts[*]}" | median) scan_ms=$(echo "${scs[*]}" | median)
		mem_write_ms=$(echo "${mws[*]}" | median) total_ms=$(echo "${tos[*]}" | median)
		stored_mib=$(awk -v p="$stored" 'BEGIN { printf "%.1f", p * 4096 / 1048576 }')
		# baselines on the same bytes, same directory, same machine, now
		base=$("$BASELINE" "$d" $((stored * 4096)) $((mem << 20)))
		say "  baseline in $d: $base"
		memcpy_ms=$(field memcpy_ms <<<"$base") bw=$(field write_ms <<<"$base") bf=$(field fsync_ms <<<"$base")
		hash_ms=$(field hash_ms <<<"$base") zscan_ms=$(field zeroscan_ms <<<"$base")
		wf_ms=$(awk -v a="$bw" -v b="$bf" 'BEGIN { printf "%.1f", a + b }')
		# open + read + verify alone
		t=$(ns)
		"$FTVMM" inspect "$snap" >/dev/null
		inspect_s=$(secs_since "$t")
		row[$d]="$mem,${d%/ftvmm-snapbench.*},$fs,$stored,$stored_mib,$bytes,$status_rtt,$pause_rtt,$resume_rtt,$pause_us,$state_us,$scan_ms,$mem_write_ms,$total_ms,$(mbps "$bytes" "$total_ms"),$(mbps "$bytes" "$mem_write_ms"),$memcpy_ms,$(mbps $((stored * 4096)) "$memcpy_ms"),$wf_ms,$(mbps $((stored * 4096)) "$wf_ms"),$hash_ms,$zscan_ms,$inspect_s"
	done
	kill -9 "$VM_PID" 2>/dev/null || true
	wait "$VM_PID" 2>/dev/null || true
	VM_PID=""

	# restore to running, from each directory: start until the next FTWORK line
	for d in "${dirs[@]}"; do
		snap="$d/snap-$mem"
		rw=() restore_cold=""
		for r in $(seq $((REPS + ${SNAPBENCH_COLD:-0}))); do
			cold=0
			if [[ $r -gt $REPS ]]; then
				cold=1
				sync
				echo 3 >/proc/sys/vm/drop_caches 2>/dev/null || { echo "  (cannot drop caches: cold restore skipped)"; break; }
			fi
			rlog="$tmp/restore-$mem-$r.console"
			: >"$rlog"
			t=$(ns)
			"$FTVMM" restore "$snap" --control "$SOCK" </dev/null >>"$rlog" 2>"$tmp/rerr" &
			VM_PID=$!
			if first_ftwork "$rlog" 300; then
				s=$(secs_since "$t")
			else
				s="fail"
				cat "$tmp/rerr"
			fi
			kill -9 "$VM_PID" 2>/dev/null || true
			wait "$VM_PID" 2>/dev/null || true
			VM_PID=""
			if [[ $cold == 1 ]]; then restore_cold=$s; else rw+=("$s"); fi
			say "  restore $r from $d ($([[ $cold == 1 ]] && echo cold || echo warm)): $s s"
		done
		echo "${row[$d]},$(echo "${rw[*]}" | median),$restore_cold" >>"$out_csv"
		rm -f "$snap"
	done
	unset row
done

{
	echo "# ftvmm snapshot/restore benchmark ($date)"
	echo
	echo "- environment: ${BENCH_ENV:-unknown}; host kernel $(uname -r); $(nproc) CPUs; $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs); $(awk '/MemTotal/ { printf "%d MiB", $2 / 1024 }' /proc/meminfo) RAM"
	[[ -n "${BENCH_OUTER:-}" ]] && echo "- outer machine: ${BENCH_OUTER}"
	echo "- guest: Debian $(cat "$(dirname "$KERNEL")/kernel-version" 2>/dev/null || echo '?') bzImage + test initramfs, 2 vCPUs; half its RAM filled once by ftwork (freed pages"
	echo "  keep their contents), then ftwork ticking every 10 ms; snapshots taken of the running guest"
	echo "- medians of $REPS (ctl round trips: of 5). The test bed emulates the whole host in software (TCG) and"
	echo "  shares its machine, so absolute times are far above what the same code does on hardware KVM and vary"
	echo "  between runs: compare each ftvmm figure with the baselines of its own row"
	echo
	echo "## Pause and state capture"
	echo
	echo "ctl RTTs include starting the ftvmm client process; pause_us (vm_pause) and state_us (vCPU, VM and device"
	echo "state, no memory) are ftvmm's own figures from the \`snapshot\` reply of a running guest."
	echo
	echo "| guest | dir (fs) | ctl status RTT (ms) | ctl pause RTT (ms) | ctl resume RTT (ms) | pause_us | state_us |"
	echo "|---|---|---|---|---|---|---|"
	tail -n +2 "$out_csv" | awk -F, '{ printf "| %s MiB | %s (%s) | %s | %s | %s | %s | %s |\n", $1, $2, $3, $7, $8, $9, $10, $11 }'
	echo
	echo "## Memory save"
	echo
	echo "From the reply: scan_ms (zero-page scan of all RAM), mem_write_ms (hash, write of pages and state, fsync,"
	echo "rename), total_ms (pause to resume). Baselines (snapshot-baseline.c): the same byte count in the same"
	echo "directory, right after."
	echo
	echo "| guest | dir (fs) | stored MiB | file MiB | scan_ms | mem_write_ms (MB/s) | total_ms (MB/s) | memcpy ms (MB/s) | write+fsync ms (MB/s) | snap_hash ms | page_is_zero scan ms |"
	echo "|---|---|---|---|---|---|---|---|---|---|---|"
	tail -n +2 "$out_csv" | awk -F, '{ printf "| %s MiB | %s (%s) | %s | %.1f | %s | %s (%s) | %s (%s) | %s (%s) | %s (%s) | %s | %s |\n", $1, $2, $3, $5, $6 / 1048576, $12, $13, $16, $14, $15, $17, $18, $19, $20, $21, $22 }'
	echo
	echo "## Restore"
	echo
	echo "| guest | dir (fs) | inspect: open + read + verify (s) | restore start to next FTWORK line, page cache warm (s) | same, cold (s, one run) |"
	echo "|---|---|---|---|---|"
	tail -n +2 "$out_csv" | awk -F, '{ printf "| %s MiB | %s (%s) | %s | %s | %s |\n", $1, $2, $3, $23, $24, ($25 == "" ? "not run" : $25) }'
	echo "## Every run (the medians above hide the spread)"
	echo
	echo '```'
	cat "$tmp/raw"
	echo '```'
} >"$out_md"
cat "$out_md"

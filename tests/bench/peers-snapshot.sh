#!/usr/bin/env bash
# tests/bench/peers-snapshot.sh - snapshot to a file and restore to running: ftvmm beside QEMU/KVM, same test-bed boot.
#
# Usage: tests/bench/peers-snapshot.sh [RUNS]   (default 5). Runs inside the nested test bed (its root image with
# QEMU, TESTBED_ROOT=image-peers) unless ITEST_MODE=direct. QEMU is Debian's qemu-system-x86 -accel kvm, the peer a
# user would pick instead; ftvmm never uses it. Writes tests/bench/results/peers-snapshot-<date>/{runs.csv,summary.md,
# snapshot.dat,snapshot.png}.
#
# Each run boots the same guest (bzImage + test initramfs, 256 MiB, 2 vCPUs, serial console only) on each VMM in
# turn (interleaved); the guest fills half its RAM once (ftwork --pages 32768 --count 1), then rewrites 64 pages every
# 10 ms (what snapshot.sh runs). Once it ticks:
#   ftvmm       `ftvmm ctl snapshot FILE` (pause, write, resume): downtime = the reply's total_ms
#   qemu-q35    -M q35 over QMP (peers-qmp.py): stop, migrate "exec:cat >FILE", cont: downtime = stop sent to cont
#               answered (what the same pause-write-resume costs there); then a live snapshot to a second file
#               (migrate while running, QEMU's pre-copy; its own downtime figure), the column qemu-q35-live
# and the file's size; then the VMM is killed and a new one restores the file (ftvmm restore; QEMU -incoming
# "exec:cat FILE", then cont over QMP where it comes back paused): restore = process start to the guest's next FTWORK
# line on the new console.
# QEMU's migration bandwidth cap is lifted (a local file is not a network link). Per VMM and metric: median [min,
# max] of the runs; ratios ftvmm / peer of the medians. Env: FTVMM, GUEST_KERNEL, GUEST_INITRD (guest-images/out);
# PEERS="ftvmm qemu-q35"; PEERS_TESTBED_TIMEOUT (s).
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/../.." && pwd)
RUNS=${1:-5}
[[ "$RUNS" =~ ^[1-9][0-9]*$ ]] || { echo "peers-snapshot: RUNS '$RUNS' is not a positive number" >&2; exit 2; }
FTVMM=${FTVMM:-$repo/build/ftvmm}
KERNEL=${GUEST_KERNEL:-$repo/guest-images/out/bzImage}
INITRD=${GUEST_INITRD:-$repo/guest-images/out/initramfs.cpio.gz}
PEERS=${PEERS:-"ftvmm qemu-q35"}
MEM_MB=256 CPUS=2

if [[ "${BENCH_INSIDE:-0}" != 1 ]]; then
	[[ -x "$FTVMM" ]] || make -C "$repo" >/dev/null
	[[ -f "$KERNEL" && -f "$INITRD" ]] || bash "$repo/guest-images/build.sh" >/dev/null
	command -v qemu-system-x86_64 >/dev/null || { echo "peers-snapshot: qemu-system-x86_64 missing (apt-get install qemu-system-x86)" >&2; exit 1; }
	export FTVMM KERNEL INITRD PEERS RUNS
	BENCH_OUTER_LOAD="$(cut -d' ' -f1-3 /proc/loadavg) on $(nproc) CPUs" && export BENCH_OUTER_LOAD
	BENCH_RES="$repo/tests/bench/results/peers-snapshot-$(date -u +%Y%m%d-%H%M%S)" && export BENCH_RES
	mkdir -p "$BENCH_RES"
	root=image; [[ "$PEERS" != *qemu* ]] || root=image-peers # the suite's test-bed root has no QEMU
	if [[ "${ITEST_MODE:-auto}" == direct ]]; then
		BENCH_INSIDE=1 BENCH_ENV="real KVM ($(uname -r))" bash "$0" "$RUNS"
	else
		TESTBED_PASSENV="FTVMM KERNEL INITRD PEERS BENCH_INSIDE BENCH_ENV BENCH_OUTER_LOAD BENCH_RES" BENCH_INSIDE=1 \
			BENCH_ENV="nested test bed (qemu TCG -cpu max, kvm-amd inside)" \
			TESTBED_TIMEOUT=${PEERS_TESTBED_TIMEOUT:-$((600 + RUNS * $(wc -w <<<"$PEERS") * 300))} \
			TESTBED_ROOT=${TESTBED_ROOT:-$root} "$repo/tests/testbed/run.sh" bash "$0" "$RUNS"
	fi
	if [[ -s "$BENCH_RES/snapshot.dat" ]] && command -v gnuplot >/dev/null; then
		(cd "$BENCH_RES" && gnuplot "$here/peers-snapshot.gp") || echo "peers-snapshot: gnuplot failed" >&2
	elif [[ -s "$BENCH_RES/snapshot.dat" ]]; then
		echo "peers-snapshot: no gnuplot (apt-get install gnuplot-nox): no plot" >&2
	fi
	exit 0
fi

# ---- inside: where /dev/kvm is ----
if [[ "$PEERS" == *qemu* ]] && ! command -v qemu-system-x86_64 >/dev/null; then
	echo "peers-snapshot: no qemu-system-x86_64 where the VMs run: the QEMU peers are left out" >&2
	PEERS=$(tr ' ' '\n' <<<"$PEERS" | grep -v '^qemu' | tr '\n' ' ')
fi
tmp=$(mktemp -d /var/tmp/peers-snapshot.XXXXXX) # a disk file system, as a user's snapshot directory would be
VM_PID=""
cleanup() {
	[[ -z "$VM_PID" ]] || kill -9 "$VM_PID" 2>/dev/null || true
	rm -rf "$tmp"
}
trap cleanup EXIT
CMD="console=ttyS0 panic=-1 quiet ftvmm.test=ftwork ftvmm.ftwork_pre=--pages,$((MEM_MB * 128)),--count,1,--interval-ms,0"
CMD+=" ftvmm.ftwork=--pages,64,--interval-ms,10"
QEMU=(qemu-system-x86_64 -accel kvm -cpu host -M q35 -m "$MEM_MB" -smp "$CPUS" -nodefaults -no-user-config -display none
	-no-reboot -kernel "$KERNEL" -initrd "$INITRD" -append "$CMD")
now_us() { echo "${EPOCHREALTIME/./}"; }
. "$here/ftwork-wait.sh" # first_ftwork
stop_vm() {
	[[ -z "$VM_PID" ]] || { kill -9 "$VM_PID" 2>/dev/null || true; wait "$VM_PID" 2>/dev/null || true; }
	VM_PID=""
}
field() { sed -nE "s/.*(^| )$1=([0-9.]+).*/\\2/p"; }
ms() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.1f", (b - a) / 1000 }'; }

# boot VMM CONSOLE SOCK: a fresh guest, ticking once this returns 0
boot() {
	: >"$2"
	case "$1" in
	ftvmm) "$FTVMM" run --kernel "$KERNEL" --initrd "$INITRD" --mem "${MEM_MB}M" --cpus "$CPUS" --control "$3" \
		--cmdline "$CMD" </dev/null >"$2" 2>"$2.err" & ;;
	qemu-q35) "${QEMU[@]}" -serial "file:$2" -qmp "unix:$3,server=on,wait=off" </dev/null >/dev/null 2>"$2.err" & ;;
	esac
	VM_PID=$!
	first_ftwork "$2" 900
}
# restore VMM FILE CONSOLE SOCK: start until the next tick, in us (empty: it never ticked)
restore() {
	: >"$3"
	local t0
	t0=$(now_us)
	case "$1" in
	ftvmm) "$FTVMM" restore "$2" --control "$4" </dev/null >"$3" 2>"$3.err" & ;;
	qemu-q35) "${QEMU[@]}" -serial "file:$3" -qmp "unix:$4,server=on,wait=off" -incoming "exec:cat $2" \
		</dev/null >/dev/null 2>"$3.err" & ;;
	esac
	VM_PID=$!
	# a file saved from a stopped guest comes back paused: cont once it is in (the live one runs by itself)
	[[ "$1" == ftvmm ]] || python3 "$here/peers-qmp.py" "$4" resume 2>>"$3.err" &
	if first_ftwork "$3" 300; then ms "$t0" "$(now_us)"; fi
	stop_vm
}

csv="$BENCH_RES/runs.csv"
echo "run,vmm,downtime_ms,wall_ms,file_mib,restore_ms" >"$csv"
load_start=$(cut -d' ' -f1-3 /proc/loadavg)
keep_consoles() { local c; for c in "$tmp/$2.$1".*console*; do cp -f "$c" "$BENCH_RES/" 2>/dev/null || true; done; }
failed() { echo "peers-snapshot: run $1 of $2: $3" >&2; echo "$1,$2,failed,,," >>"$csv"; keep_consoles "$1" "${2%-live}"; }
for run in $(seq "$RUNS"); do
	for vmm in $PEERS; do
		con="$tmp/$vmm.$run.console" sock="$tmp/$vmm.sock" snap="$tmp/snap" live="$tmp/snap-live"
		rm -f "$sock" "$snap" "$live"
		if ! boot "$vmm" "$con" "$sock"; then
			failed "$run" "$vmm" "the guest never ticked: $(tail -c 300 "$con.err" | tr '\n' ' ')"
			stop_vm
			continue
		fi
		sleep 1
		lrow=""
		if [[ "$vmm" == ftvmm ]]; then
			t0=$(now_us)
			reply=$("$FTVMM" ctl "$sock" snapshot "$snap")
			wall=$(ms "$t0" "$(now_us)")
			down=$(field total_ms <<<"$reply")
		else
			reply=$(python3 "$here/peers-qmp.py" "$sock" stop "$snap" 2>&1) || true
			wall=$(field wall_ms <<<"$reply") down=$wall
			sleep 1
			lreply=$(python3 "$here/peers-qmp.py" "$sock" live "$live" 2>&1) || true
			ldown=$(field downtime_ms <<<"$lreply") lwall=$(field wall_ms <<<"$lreply")
			if [[ -n "$ldown" && -s "$live" ]]; then
				lrow="$run,$vmm-live,$ldown,$lwall,$(awk -v b="$(stat -c %s "$live")" 'BEGIN { printf "%.1f", b / 1048576 }')"
			else
				failed "$run" "$vmm-live" "live snapshot: $lreply"
			fi
		fi
		stop_vm
		if [[ -z "$down" || ! -s "$snap" ]]; then
			failed "$run" "$vmm" "snapshot: $reply"
			continue
		fi
		mib=$(awk -v b="$(stat -c %s "$snap")" 'BEGIN { printf "%.1f", b / 1048576 }')
		rs=$(restore "$vmm" "$snap" "$tmp/$vmm.$run.restore.console" "$sock.r")
		[[ -n "$rs" ]] || echo "peers-snapshot: run $run of $vmm: the restored guest never ticked: $(tail -c 300 "$tmp/$vmm.$run.restore.console.err" | tr '\n' ' ')" >&2
		echo "$run,$vmm,$down,$wall,$mib,$rs" >>"$csv"
		echo "run $run $vmm: downtime $down ms (client $wall ms), file $mib MiB, restore ${rs:-failed} ms"
		if [[ -n "$lrow" && -s "$live" ]]; then
			lrs=$(restore "$vmm" "$live" "$tmp/$vmm.$run.lrestore.console" "$sock.r")
			echo "$lrow,$lrs" >>"$csv"
			echo "run $run $vmm-live: ${lrow#*,*,}, restore ${lrs:-failed} ms"
		fi
		rm -f "$snap" "$live"
		keep_consoles "$run" "$vmm"
	done
done

{
	echo "# Snapshot to a file and restore: ftvmm beside QEMU/KVM ($(date -u +%F\ %T) UTC)"
	echo
	echo "- environment: ${BENCH_ENV:-unknown}; host kernel $(uname -r) $(grep -oE 'kvm_amd\.[a-z_]+=[^ ]+' /proc/cmdline | tr '\n' ' '); $(nproc) CPUs"
	[[ -n "${BENCH_OUTER_LOAD:-}" ]] && echo "- outer machine load average at the start: $BENCH_OUTER_LOAD"
	echo "- load average inside: $load_start at the start, $(cut -d' ' -f1-3 /proc/loadavg) at the end"
	echo "- peer: $(qemu-system-x86_64 --version 2>/dev/null | head -n1 || echo 'none: no qemu-system-x86_64 here') -M q35 -accel kvm -cpu host, migration to \"exec:cat >FILE\" with max-bandwidth lifted; ftvmm ${FTVMM_COMMIT:-$(git -C "$repo" rev-parse --short HEAD 2>/dev/null || echo '?')}"
	echo "- guest: Debian $(cat "$(dirname "$KERNEL")/kernel-version" 2>/dev/null || echo '?') bzImage + test initramfs, $MEM_MB MiB ($((MEM_MB / 2)) MiB filled once), $CPUS vCPUs, rewriting 64 pages every 10 ms; files on $(df -T /var/tmp | awk 'NR==2 {print $2}')"
	echo "- downtime: ftvmm = its snapshot's total_ms (pause, write, resume); qemu-q35 = stop, migrate, cont as seen by the QMP client; qemu-q35-live = QEMU's own downtime of a pre-copy migration to the file (the guest runs during the copy). restore: process start to the guest's next tick"
	echo "- $RUNS runs per VMM, interleaved; each figure: median [min, max]"
	echo
	python3 "$here/peers-table.py" "$csv" "$BENCH_RES/snapshot.dat" \
		"downtime_ms:downtime (ms):-" "wall_ms:snapshot command, client's wall (ms):-" \
		"file_mib:file size (MiB):-" "restore_ms:restore to the next tick (ms):-"
} >"$BENCH_RES/summary.md"
cat "$BENCH_RES/summary.md"

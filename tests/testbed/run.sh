#!/usr/bin/env bash
# tests/testbed/run.sh - boots the nested-KVM test bed (qemu TCG, -cpu max) and runs one shell command inside it.
#
# Usage: tests/testbed/run.sh CMD [ARG...]
# The command runs as root under bash inside the test-bed host, in the caller's working directory, with:
#   - as its root an ext4 image of the outer machine's packages the suite runs (bash, coreutils, python3, etcd,
#     ftvmm's shared libraries: tests/testbed/rootfs.sh), writable, the writes thrown away at the end,
#   - this repository visible read-write at the same path (build/ftvmm, guest-images/out/ are reachable),
#   - /tmp, /run, /dev/shm as tmpfs; /var/tmp on an ext4 scratch disk (virtio-blk, sparse file outside),
#   - /dev/kvm from kvm-amd (nested SVM emulated by TCG), loopback up, tun/bridge/veth loaded.
# Two serial ports: ttyS0 carries the test bed's own kernel console (loglevel 5: a stall report comes with its
# backtrace) and init's markers (prefixed `testbed| ` on
# stdout), ttyS1 the command's output (as it is). Only ttyS0 is watched for the kernel's stall reports, so a
# guest's console that a failing test prints can never be taken for the test bed's own. The exit status is the
# command's, carried back by a `TESTBED-EXIT <rc>` line on ttyS0; none (crash, hang, timeout) is a failure (125/124).
# Env:
#   TESTBED_TIMEOUT=1500   seconds before the test bed is killed (exit 124)
#   TESTBED_CPU=max   qemu's -cpu for the test bed
#   TESTBED_QEMU=path TESTBED_QEMU_DATA=dir   the emulator and its firmware directory (default: the system's);
#                          TESTBED_QEMU=10: QEMU 10.0 from bookworm-backports (tests/testbed/results/qemu10-20261207.md)
#   TESTBED_MEM=3G TESTBED_SMP=2   test-bed host size (1 vCPU starves FT guests: see the README, the test bed)
#   TESTBED_ACCEL=tcg      qemu accelerator for the test bed (tcg: what CI has; kvm only for experiments)
#   TESTBED_SCRATCH_MB=8192  size of the sparse scratch disk (0: none)
#   TESTBED_IDLE_LIMIT=120 seconds of a CPU-idle qemu after which the test bed counts as hung (exit 126; 0: off);
#                          a soft lockup, an RCU stall or a task blocked 120 s reported by the test bed's kernel counts as hung at once
#   TESTBED_QUIET_LIMIT=0  seconds without any console output after which the test bed counts as hung (exit 126;
#                          0: off). For commands that report progress (the integration suite sets 300): the test
#                          bed's kernel has also been seen spinning with both CPUs busy and no message at all
#   TESTBED_KSERIES=6.1    the test bed's kernel series (Debian 12: 6.1 = linux-image-amd64, 6.12 =
#                          linux-image-6.12-amd64); its images live in tests/testbed/out/<series>/
#   TESTBED_KVM_ARGS="kvm_amd.npt=0 kvm_amd.vgif=0 transparent_hugepage=never"  kernel command line for the test
#                          bed's KVM. No THP: khugepaged collapsing guest RAM (TLB-flush IPIs, KVM MMU notifiers)
#                          was spinning in a soft lockup when the test bed's kernel hung during t_snapshot. TCG's emulation of nested SVM loses state under frequent guest exits: with nested
#                          paging (NPT) guests hang or triple-fault after a few thousand FT epochs (once the test-bed
#                          kernel itself crashed); with npt=0 25927 5 ms epochs ran clean, and faster. With vGIF the
#                          test-bed kernel once lost its own timer (RCU stall) during an FT run. Both are emulated
#                          features a real host would have; here they are off.
#   TESTBED_CLOCK="tsc=reliable idle=poll"  the test bed's clock. TCG reads every vCPU's TSC from the host's one TSC, yet the
#                          kernel's boot-time TSC sync check (slow emulated CPUs) marks it unstable and falls back to
#                          HPET: a 32-bit 100 MHz counter (wraps every 43 s) read by an MMIO exit under QEMU's big lock,
#                          for every clock read of the kernel and of KVM's timers for the guests. "" = the kernel's choice
#                          idle=poll: the test bed's CPUs never halt. Halted, its CPU 0 was seen never to get its own
#                          timer interrupt again (RCU: "timer wakeup didn't happen", both CPUs in native_safe_halt):
#                          TCG's halt/wakeup path. Polling costs nothing here (qemu's two threads are the machine's
#                          two cores anyway) but makes TESTBED_IDLE_LIMIT moot: the console watchdogs remain.
#                          Tried and dropped: periodic ticks (lapic=notscdeadline nohz=off highres=off, so that a
#                          lost timer interrupt cannot stall a CPU for good): the guests' emulated timers then fire
#                          on the test bed's 4 ms tick, and run r7 had guest failures never seen before (a restored
#                          guest's double fault at syscall entry, a CPU timer silent after a restore)
#   TESTBED_KVMPIN=1       init keeps one idle VM for the test bed's lifetime (tests/testbed/kvmpin.c), so the VMs
#                          tests create and destroy no longer flip static keys, i.e. no longer rewrite kernel code
#                          under the other emulated CPU (0: off, for comparisons)
#   TESTBED_PASSENV="A B"  extra variables to pass into the command's environment (FTVMM_* always pass)
#   TESTBED_ROOT=image     the test bed's root file system: image = an ext4 image of the packages the suite runs
#                          (tests/testbed/rootfs.sh, built into tests/testbed/out/<series>/root.img on first use,
#                          booted with snapshot=on); image-peers = the same plus Debian's QEMU (root-peers.img), for
#                          the benchmarks that run it beside ftvmm (tests/bench/peers-*.sh); 9p = the outer
#                          machine's / shared read-only over 9p, what the test bed used until 2026-12-07 (its request
#                          path deadlocks the emulated host now and then: README, the test bed)
#   TESTBED_LOG=path       where to leave a copy of the command's output at the end, and the kernel console beside it
#                          as path.kernel (default tests/testbed/out/last-run.log; concurrent runs: the last wins)
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/../.." && pwd -P)
# the test bed's root image has no git: what the benchmarks record as ftvmm's commit is read here (FTVMM_* pass in)
if [[ -z "${FTVMM_COMMIT:-}" ]] && FTVMM_COMMIT=$(git -c safe.directory='*' -C "$repo" rev-parse HEAD 2>/dev/null); then
	[[ -z "$(git -c safe.directory='*' -C "$repo" status --porcelain --untracked-files=no 2>/dev/null)" ]] ||
		FTVMM_COMMIT+=" (work tree modified)"
	export FTVMM_COMMIT
fi

if [[ $# -eq 0 ]]; then
	echo "usage: $0 CMD [ARG...]" >&2
	exit 2
fi

TESTBED_TIMEOUT=${TESTBED_TIMEOUT:-1500}
TESTBED_MEM=${TESTBED_MEM:-3G}
TESTBED_SMP=${TESTBED_SMP:-2}
TESTBED_ACCEL=${TESTBED_ACCEL:-tcg}
TESTBED_CPU=${TESTBED_CPU:-max}
TESTBED_SCRATCH_MB=${TESTBED_SCRATCH_MB:-8192}
TESTBED_KVM_ARGS=${TESTBED_KVM_ARGS-"kvm_amd.npt=0 kvm_amd.vgif=0 transparent_hugepage=never"}
TESTBED_IDLE_LIMIT=${TESTBED_IDLE_LIMIT:-120}
TESTBED_QUIET_LIMIT=${TESTBED_QUIET_LIMIT:-0}
TESTBED_KSERIES=${TESTBED_KSERIES:-6.1}
TESTBED_CLOCK=${TESTBED_CLOCK-"tsc=reliable idle=poll"}
TESTBED_KVMPIN=${TESTBED_KVMPIN:-1}
TESTBED_LOG=${TESTBED_LOG:-$here/out/last-run.log}
TESTBED_ROOT=${TESTBED_ROOT:-image}
# the emulator: the system's (QEMU 7.2), or with TESTBED_QEMU=10 QEMU 10.0 from bookworm-backports, unpacked into
# tests/testbed/out/qemu by tests/deps.sh (install_testbed_qemu) on first use
if [[ "${TESTBED_QEMU:-}" == 10 ]]; then
	# shellcheck source=tests/deps.sh
	[[ -x "$here/out/qemu/usr/bin/qemu-system-x86_64" ]] || (source "$repo/tests/deps.sh" && install_testbed_qemu >&2) || exit 125
	TESTBED_QEMU=$here/out/qemu/usr/bin/qemu-system-x86_64
	TESTBED_QEMU_DATA=${TESTBED_QEMU_DATA-$here/out/qemu/usr/share/qemu}
	# QEMU 10's TCG runs no nested guest with shadow paging (npt=0: every Linux guest stops early in its boot,
	# after its decompressor); nested paging works there
	TESTBED_KVM_ARGS=${TESTBED_KVM_ARGS-"kvm_amd.npt=1 kvm_amd.vgif=0 transparent_hugepage=never"}
fi
TESTBED_QEMU=${TESTBED_QEMU:-qemu-system-x86_64}
TESTBED_QEMU_DATA=${TESTBED_QEMU_DATA:-}
out="$here/out/$TESTBED_KSERIES"
export TESTBED_KSERIES

command -v "$TESTBED_QEMU" >/dev/null || { echo "testbed: $TESTBED_QEMU not found (apt-get install qemu-system-x86)" >&2; exit 125; }

# (Re)build the test-bed image when missing or older than its sources.
stale=0
for f in "$out/bzImage" "$out/initramfs.cpio.gz"; do [[ -f "$f" ]] || stale=1; done
if [[ $stale == 0 ]]; then
	for src in "$here/build.sh" "$here/init" "$repo/guest-images/lib.sh" "$repo/tests/integration/kvmcheck.c" "$here/kvmpin.c"; do
		[[ "$src" -nt "$out/initramfs.cpio.gz" ]] && stale=1
	done
fi
if [[ $stale == 1 ]]; then
	OUT="$out" bash "$here/build.sh" >&2
fi
# The root image (rootfs.sh): again when missing, older than its scripts, or older than dpkg's record of what is
# installed (a package added or upgraded outside).
case "$TESTBED_ROOT" in
image) rootimg=$out/root.img peers=0 ;;
image-peers) rootimg=$out/root-peers.img peers=1 ;;
9p) rootimg= ;;
*) echo "testbed: TESTBED_ROOT '$TESTBED_ROOT' is not image, image-peers or 9p" >&2; exit 125 ;;
esac
if [[ -n "$rootimg" ]]; then
	stale=0
	for src in "$here/rootfs.sh" "$here/rootfs-files.py" /var/lib/dpkg/status; do
		[[ -f "$rootimg" && ! "$src" -nt "$rootimg" ]] || stale=1
	done
	if [[ $stale == 1 ]]; then
		OUT="$out" KVER=$(cat "$out/kernel-version") ROOTFS_PEERS=$peers bash "$here/rootfs.sh" >&2 || exit 125
	fi
fi

ctl=$(mktemp -d "${TMPDIR:-/tmp}/ftvmm-testbed.XXXXXX")
qpid=""
conlog="$ctl/console.log" # the command's output (ttyS1); private to this run
klog="$ctl/kernel.log"    # the test bed's kernel console and init's markers (ttyS0)
tailpid=""
cleanup() {
	if [[ -n "$qpid" ]]; then kill "$qpid" 2>/dev/null || true; fi
	if [[ -n "$tailpid" ]]; then kill "$tailpid" 2>/dev/null || true; fi
	if [[ -f "$conlog" ]] && mkdir -p "$(dirname "$TESTBED_LOG")" 2>/dev/null; then
		cp -f "$conlog" "$TESTBED_LOG.$$" 2>/dev/null && mv -f "$TESTBED_LOG.$$" "$TESTBED_LOG" 2>/dev/null || true
		cp -f "$klog" "$TESTBED_LOG.kernel.$$" 2>/dev/null && mv -f "$TESTBED_LOG.kernel.$$" "$TESTBED_LOG.kernel" 2>/dev/null || true
		[[ -s "$ctl/cpus.txt" ]] && cp -f "$ctl/cpus.txt" "$TESTBED_LOG.cpus" 2>/dev/null
	fi
	rm -rf "$ctl"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# The command, its working directory and the variables that pass through, as a bash script.
cwd=$(pwd -P)
{
	echo "# generated by tests/testbed/run.sh"
	for v in $(compgen -e | grep -E '^FTVMM_' || true) ${TESTBED_PASSENV:-}; do
		[[ -v $v ]] && printf 'export %s=%q\n' "$v" "${!v}"
	done
	printf 'export TESTBED_TIMEOUT=%q\n' "$TESTBED_TIMEOUT"
	printf 'cd %q 2>/dev/null || cd %q\n' "$cwd" "$repo"
	printf '%q ' "$@"
	echo
} >"$ctl/cmd.sh"
{
	printf 'TB_REPO=%q\n' "$repo"
	# the drives' order below: the root image (if any) is vda, the scratch disk the next one
	if [[ -n "$rootimg" ]]; then echo "TB_ROOTDEV=/dev/vda"; sdev=/dev/vdb; else echo "TB_ROOTDEV="; sdev=/dev/vda; fi
	[[ "$TESTBED_SCRATCH_MB" -gt 0 ]] && echo "TB_SCRATCH=1 TB_SCRATCHDEV=$sdev" || echo "TB_SCRATCH=0"
	echo "TB_KVMPIN=$TESTBED_KVMPIN"
} >"$ctl/config"

qemu=("$TESTBED_QEMU"
	-accel "$TESTBED_ACCEL" -cpu "$TESTBED_CPU" -m "$TESTBED_MEM" -smp "$TESTBED_SMP"
	-nodefaults -no-user-config -display none -no-reboot -nic none
	-chardev file,id=kcon,path="$klog" -serial chardev:kcon
	-chardev stdio,id=con,signal=off -serial chardev:con
	-kernel "$out/bzImage" -initrd "$out/initramfs.cpio.gz"
	-append "console=ttyS0 loglevel=5 panic=-1 mitigations=off nokaslr $TESTBED_CLOCK $TESTBED_KVM_ARGS"
	-monitor "unix:$ctl/mon.sock,server=on,wait=off"
	-virtfs "local,path=$repo,mount_tag=repo,security_model=none,multidevs=remap"
	-virtfs "local,path=$ctl,mount_tag=tbctl,security_model=none"
)
if [[ -n "$rootimg" ]]; then
	qemu+=(-drive "file=$rootimg,if=virtio,format=raw,snapshot=on,cache=unsafe")
else
	qemu+=(-virtfs "local,path=/,mount_tag=hostroot,security_model=none,readonly=on,multidevs=remap")
fi
# firmware of the emulator's own release first, then the system's (seabios)
[[ -n "$TESTBED_QEMU_DATA" ]] && qemu+=(-L "$TESTBED_QEMU_DATA" -L /usr/share/qemu)
if [[ "$TESTBED_SCRATCH_MB" -gt 0 ]]; then
	truncate -s "${TESTBED_SCRATCH_MB}M" "$ctl/scratch.img"
	qemu+=(-drive "file=$ctl/scratch.img,if=virtio,format=raw,cache=unsafe,discard=unmap")
fi

echo "testbed: booting ($("$TESTBED_QEMU" --version | head -n1 | sed 's/ emulator version//'), $TESTBED_ACCEL, ${TESTBED_SMP} vCPUs, $TESTBED_MEM, kernel $(cat "$out/kernel-version"), $TESTBED_CLOCK $TESTBED_KVM_ARGS, kvmpin=$TESTBED_KVMPIN, root=$TESTBED_ROOT," \
	"timeout ${TESTBED_TIMEOUT}s): $*" >&2
: >"$klog"
tail -n +1 -F "$klog" 2>/dev/null | sed -u 's/\r$//; s/^/testbed| /' &
tailpid=$!
start=$(date +%s.%N)
# qemu runs in the background (so a signal here stops it via timeout); its console, cleaned of \r,
# streams to stdout and to the log.
exec {confd}> >(sed -u 's/\r$//' | tee "$conlog")
conpid=$!
timeout -k 10 "$TESTBED_TIMEOUT" "${qemu[@]}" </dev/null >&"$confd" 2>&1 &
qpid=$!
# Hang watchdog: a test bed whose qemu burns (almost) no CPU for TESTBED_IDLE_LIMIT seconds has lost an
# interrupt in its emulated host (both its CPUs halted while a test waits on them): stop it at once rather
# than at the timeout, and say so. Tests keep guests busy, so a healthy run is never that idle.
wdpid=""
if [[ "$TESTBED_IDLE_LIMIT" -gt 0 || "$TESTBED_QUIET_LIMIT" -gt 0 ]]; then
	(
		exec {confd}>&- # not the console's writer: the tee must see EOF when qemu ends
		cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat" 2>/dev/null || echo -1; }
		qemu_pid=""
		for _ in $(seq 100); do
			qemu_pid=$(pgrep -P "$qpid" | head -n1 || true)
			[[ -n "$qemu_pid" ]] && break
			sleep 0.1
		done
		[[ -n "$qemu_pid" ]] || exit 0
		# where its CPUs are (twice, 2 s apart: stuck or spinning), named from the kallsyms its init saved, then stop it
		stop_hung() {
			{
				python3 "$here/cpu-dump.py" "$ctl/mon.sock" "$ctl/kallsyms"
				sleep 2
				python3 "$here/cpu-dump.py" "$ctl/mon.sock" "$ctl/kallsyms" | grep '^testbed cpu'
			} >"$ctl/cpus.txt" 2>&1
			echo "$1" >"$ctl/hung"
			kill "$qemu_pid" 2>/dev/null
			exit 0
		}
		hz=$(getconf CLK_TCK)
		quiet_since=$(date +%s) last_size=0
		last=$(cpu_ticks "$qemu_pid") since=$(date +%s)
		while kill -0 "$qemu_pid" 2>/dev/null; do
			sleep 5
			# the test bed's kernel says it is stuck (a lost IPI or timer in the emulated SVM): it never recovers
			# (a task of the test bed's kernel in D state for 120 s: an I/O completion that never came, seen in
			# r15 after a 2 s late timer; its reports every 2 minutes would also keep the quiet watchdog from firing)
			if grep -aqE 'watchdog: BUG: soft lockup|rcu: INFO: rcu_(preempt|sched) detected stalls|INFO: task .* blocked for more than' "$klog" 2>/dev/null; then
				stop_hung "kernel stall"
			fi
			size=$(cat "$conlog" "$klog" 2>/dev/null | wc -c)
			if ((size != last_size)); then
				last_size=$size quiet_since=$(date +%s)
			elif ((TESTBED_QUIET_LIMIT > 0 && $(date +%s) - quiet_since >= TESTBED_QUIET_LIMIT)); then
				stop_hung "quiet ${TESTBED_QUIET_LIMIT}s"
			fi
			now=$(cpu_ticks "$qemu_pid")
			((now < 0)) && exit 0
			if ((now - last > hz / 2)); then # more than 0.5 s of CPU: alive
				last=$now since=$(date +%s)
			elif ((TESTBED_IDLE_LIMIT > 0 && $(date +%s) - since >= TESTBED_IDLE_LIMIT)); then
				stop_hung "idle ${TESTBED_IDLE_LIMIT}s"
			fi
		done
	) &
	wdpid=$!
fi
qrc=0
wait "$qpid" || qrc=$?
qpid=""
if [[ -n "$wdpid" ]]; then kill "$wdpid" 2>/dev/null || true; wait "$wdpid" 2>/dev/null || true; fi
exec {confd}>&-
for _ in $(seq 50); do kill -0 "$conpid" 2>/dev/null || break; sleep 0.1; done
elapsed=$(awk -v s="$start" -v e="$(date +%s.%N)" 'BEGIN { printf "%.1f", e - s }')

sleep 0.5 # let the kernel console's tail catch up
kill "$tailpid" 2>/dev/null || true
tailpid=""
marker=$(grep -aoE '^TESTBED-EXIT [0-9]+' "$klog" | tail -n1 | awk '{print $2}' || true)
if [[ -n "$marker" ]]; then
	rc=$marker
elif [[ -s "$ctl/rc" ]]; then
	rc=$(tr -dc 0-9 <"$ctl/rc")
	echo "testbed: warning: no TESTBED-EXIT line on the console, using the status file ($rc)" >&2
elif [[ -f "$ctl/hung" ]]; then
	grep '^testbed cpu' "$ctl/cpus.txt" 2>/dev/null | sed 's/^/testbed: hung: /' >&2 || true
	if grep -q quiet "$ctl/hung"; then
		echo "testbed: FAIL: the test bed printed nothing for ${TESTBED_QUIET_LIMIT}s (after ${elapsed}s): its kernel is" \
			"stuck (TCG's nested SVM, not a fault of the command; log: $TESTBED_LOG)" >&2
	elif grep -q stall "$ctl/hung"; then
		echo "testbed: FAIL: the test bed's kernel stalled after ${elapsed}s (soft lockup, RCU stall or a task blocked 120 s on its console: a" \
			"lost interrupt in TCG's nested SVM, not a fault of the command; log: $TESTBED_LOG)" >&2
	else
		echo "testbed: FAIL: the test bed hung after ${elapsed}s: qemu used no CPU for ${TESTBED_IDLE_LIMIT}s (its emulated" \
			"host lost an interrupt: a fault of TCG's nested SVM, not of the command; log: $TESTBED_LOG)" >&2
	fi
	exit 126
elif [[ $qrc == 124 || $qrc == 137 ]]; then
	echo "testbed: FAIL: timed out after ${TESTBED_TIMEOUT}s without a TESTBED-EXIT line (log: $TESTBED_LOG)" >&2
	exit 124
else
	echo "testbed: FAIL: the test bed stopped after ${elapsed}s (qemu status $qrc) without a TESTBED-EXIT line" \
		"(crash or panic? log: $TESTBED_LOG)" >&2
	exit 125
fi
echo "testbed: command exited $rc; test bed ran ${elapsed}s wall (log: $TESTBED_LOG)" >&2
exit "$rc"

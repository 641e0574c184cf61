#!/usr/bin/env bash
# tests/bench/devices.sh - virtio-blk and virtio-net throughput of an ftvmm guest, each beside the same operation on its host.
#
# Usage: tests/bench/devices.sh          (as root: it creates a TAP device)
# Measures, in the guest (ftvmm run --disk IMG --net tap=...) and on the host that runs ftvmm:
#   - sequential write and read, 1 MiB O_DIRECT requests, BENCH_DISK_MB from offset 0
#     (guest: /dev/vda; host: the image file itself, with the same tool: guest-images/tools/blkbench.c)
#   - random 4 KiB O_DIRECT reads at queue depth 32 (32 threads) over the same span, BENCH_SECS seconds
#   - TCP bulk throughput guest->host and host->guest over the TAP, BENCH_NET_MB each
#     (host column: the same tool, guest-images/tools/netbench.c, over loopback on the host)
# Where: directly when /dev/kvm is a working hardware KVM (same test as tests/integration/run.sh: kvmcheck,
# then qemu -accel kvm must boot the test guest), else inside the nested test bed (tests/testbed/run.sh),
# where "host" means the test-bed host (qemu TCG, -cpu max): there the ratios say more than the numbers.
# Prints a table; writes tests/bench/results/devices-<date>.md and .csv (with the environment).
# Env:
#   FTVMM=build/ftvmm  GUEST_KERNEL=guest-images/out/bzImage  GUEST_INITRD=guest-images/out/initramfs.cpio.gz
#   BENCH_MODE=auto|direct|testbed   BENCH_DISK_MB=256  BENCH_NET_MB=256  BENCH_SECS=10
#   BENCH_DIR=/var/tmp      where the disk image goes (a real file system: O_DIRECT does not work on tmpfs)
#   BENCH_RESULTS=tests/bench/results   BENCH_GUEST_CPUS=2  BENCH_GUEST_MEM=512M
# Timing: disk numbers come from the guest's (or host's) CLOCK_MONOTONIC around the I/O loop; TCP numbers from
# the receiving end (guest->host: the host; host->guest: the guest), from accept to EOF.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)
repo=$(cd "$here/../.." && pwd -P)
inside=0
if [[ "${1:-}" == --inside ]]; then
	inside=1
	shift
fi
abspath() { [[ "$1" == /* ]] && echo "$1" || echo "$PWD/$1"; }
FTVMM=$(abspath "${FTVMM:-$repo/build/ftvmm}")
GUEST_KERNEL=$(abspath "${GUEST_KERNEL:-$repo/guest-images/out/bzImage}")
GUEST_INITRD=$(abspath "${GUEST_INITRD:-$repo/guest-images/out/initramfs.cpio.gz}")
BENCH_RESULTS=$(abspath "${BENCH_RESULTS:-$repo/tests/bench/results}")
export FTVMM GUEST_KERNEL GUEST_INITRD BENCH_RESULTS
export BENCH_DISK_MB=${BENCH_DISK_MB:-256} BENCH_NET_MB=${BENCH_NET_MB:-256} BENCH_SECS=${BENCH_SECS:-10}
export BENCH_DIR=${BENCH_DIR:-/var/tmp}
export BENCH_GUEST_CPUS=${BENCH_GUEST_CPUS:-2} BENCH_GUEST_MEM=${BENCH_GUEST_MEM:-512M}
export BENCH_TOOLS=${BENCH_TOOLS:-$(dirname "$FTVMM")/bench-tools}

# ---------------------------------------------------------------- outside: build, pick where, go there
if [[ $inside == 0 ]]; then
	[[ -x "$FTVMM" ]] || { echo "bench: no ftvmm binary at $FTVMM (run make first)" >&2; exit 1; }
	if [[ ! -f "$GUEST_KERNEL" || ! -f "$GUEST_INITRD" ]] ||
		! zcat "$GUEST_INITRD" | cpio -t --quiet 2>/dev/null | grep -qx 'checks/blkperf.sh'; then
		echo "bench: building the guest images (the initramfs lacks the bench tools)" >&2
		bash "$repo/guest-images/build.sh" >&2
	fi
	# The host half uses the same tools as the guest, built for this machine (static: the test bed runs them too).
	mkdir -p "$BENCH_TOOLS"
	for t in blkbench netbench; do
		src="$repo/guest-images/tools/$t.c"
		if [[ ! -x "$BENCH_TOOLS/$t" || "$src" -nt "$BENCH_TOOLS/$t" ]]; then
			gcc -static -O2 -pthread -Wall -o "$BENCH_TOOLS/$t" "$src"
		fi
	done
	kvmcheck="$BENCH_TOOLS/kvmcheck"
	[[ -x "$kvmcheck" && "$kvmcheck" -nt "$repo/tests/integration/kvmcheck.c" ]] ||
		gcc -O2 -Wall -o "$kvmcheck" "$repo/tests/integration/kvmcheck.c"
	mode=${BENCH_MODE:-auto}
	if [[ $mode == auto ]]; then
		mode=testbed
		if "$kvmcheck" >/dev/null 2>&1 && command -v qemu-system-x86_64 >/dev/null &&
			timeout -k 5 60 qemu-system-x86_64 -accel kvm -cpu host -m 256M -smp 1 -nodefaults -no-user-config \
				-display none -serial stdio -no-reboot -nic none -kernel "$GUEST_KERNEL" -initrd "$GUEST_INITRD" \
				-append "console=ttyS0 panic=-1 quiet ftvmm.test=nproc ftvmm.expect_cpus=1" </dev/null 2>&1 |
			grep -q 'FTVMM-RESULT nproc PASS'; then
			mode=direct
		fi
	fi
	BENCH_OUTER_CPU="$(grep -m1 'model name' /proc/cpuinfo | sed 's/.*: //') x$(nproc)"
	BENCH_OUTER_KERNEL="$(uname -r)"
	BENCH_OUTER_LOAD="$(cut -d' ' -f1-3 /proc/loadavg)"
	BENCH_REV="$(cd "$repo" && git rev-parse --short HEAD 2>/dev/null || echo unknown)$(cd "$repo" &&
		[[ -n "$(git status --porcelain -- vmm devices ft cmd 2>/dev/null)" ]] && echo +dirty || true)"
	export BENCH_OUTER_CPU BENCH_OUTER_KERNEL BENCH_OUTER_LOAD BENCH_REV
	case "$mode" in
	direct) export BENCH_WHERE=direct; exec bash "$here/devices.sh" --inside ;;
	testbed)
		echo "bench: running inside the nested test bed (TCG); numbers there show ratios, not real speeds" >&2
		export BENCH_WHERE=testbed
		TESTBED_TIMEOUT=${TESTBED_TIMEOUT:-1200} \
			TESTBED_PASSENV="FTVMM GUEST_KERNEL GUEST_INITRD BENCH_DISK_MB BENCH_NET_MB BENCH_SECS BENCH_DIR BENCH_RESULTS BENCH_GUEST_CPUS BENCH_GUEST_MEM BENCH_TOOLS BENCH_OUTER_CPU BENCH_OUTER_KERNEL BENCH_OUTER_LOAD BENCH_REV BENCH_WHERE" \
			exec bash "$repo/tests/testbed/run.sh" bash "$here/devices.sh" --inside
		;;
	*) echo "bench: bad BENCH_MODE=$mode" >&2; exit 2 ;;
	esac
fi

# ---------------------------------------------------------------- inside: measure
[[ $(id -u) == 0 ]] || { echo "bench: needs root (TAP device)" >&2; exit 1; }
BB="$BENCH_TOOLS/blkbench" NB="$BENCH_TOOLS/netbench"
TAP=ftvmmb0 HOST_IP=192.0.2.1 GUEST_IP=192.0.2.2
work=$(mktemp -d "$BENCH_DIR/ftvmm-bench.XXXXXX")
pids=()
cleanup() {
	local p
	for p in ${pids[@]+"${pids[@]}"}; do kill "$p" 2>/dev/null || true; done
	ip link del "$TAP" 2>/dev/null || true
	rm -rf "$work"
}
trap cleanup EXIT
img="$work/disk.img"
size=$((BENCH_DISK_MB << 20)) nbytes=$((BENCH_NET_MB << 20))
say() { echo "bench: $*" >&2; }
val() { sed -n "s/.* $1=\\([0-9.]*\\).*/\\1/p" <<<"$2" | head -n1; }

# Fully written (not sparse, not unwritten extents) so host and guest both overwrite allocated blocks.
say "preparing a ${BENCH_DISK_MB} MiB image in $BENCH_DIR"
dd if=/dev/zero of="$img" bs=1M count="$BENCH_DISK_MB" conv=fsync status=none

say "host: disk"
h_sw=$("$BB" seqwrite "$img" "$size" -b 1M)
h_sr=$("$BB" seqread "$img" "$size" -b 1M)
h_rr=$("$BB" randread "$img" "$size" -b 4K -q 32 -t "$BENCH_SECS")
printf '%s\n' "$h_sw" "$h_sr" "$h_rr" >&2

say "host: TCP over loopback (x2)"
loop_tcp() {
	local port=$1 out
	"$NB" recv "$port" -a 127.0.0.1 -n -w 60 >"$work/lo-$port" &
	local rp=$!
	"$NB" send 127.0.0.1 "$port" "$nbytes" -n >/dev/null
	wait "$rp" || true
	out=$(grep '^NETBENCH recv' "$work/lo-$port" || true)
	echo "$out" >&2
	val MBps "$out"
}
h_tx=$(loop_tcp 5101)
h_rx=$(loop_tcp 5102)

say "guest: disk + TCP (ftvmm, ${BENCH_GUEST_CPUS} vCPUs, $BENCH_GUEST_MEM)"
ip link del "$TAP" 2>/dev/null || true
ip tuntap add "$TAP" mode tap
ip addr add "$HOST_IP/24" dev "$TAP"
ip link set "$TAP" up
"$NB" recv 5002 -a "$HOST_IP" -n -w 600 >"$work/g2h" 2>&1 &
pids+=("$!")
con="$work/console" err="$work/stderr"
timeout -k 5 900 "$FTVMM" run --kernel "$GUEST_KERNEL" --initrd "$GUEST_INITRD" --mem "$BENCH_GUEST_MEM" \
	--cpus "$BENCH_GUEST_CPUS" --disk "$img" --net "tap=$TAP" \
	--cmdline "console=ttyS0 panic=-1 quiet ftvmm.test=blkperf,net ftvmm.blkperf_dev=vda ftvmm.blkperf_size=$size ftvmm.blkperf_secs=$BENCH_SECS ftvmm.net_ip=$GUEST_IP/24 ftvmm.net_peer=$HOST_IP ftvmm.net_bytes=$nbytes ftvmm.net_rxport=5001 ftvmm.net_txport=5002 ftvmm.net_nohash" \
	</dev/null >"$con" 2>"$err" &
ftpid=$!
pids+=("$ftpid")
sent=0
while kill -0 "$ftpid" 2>/dev/null; do
	if [[ $sent == 0 ]] && grep -aq 'NETBENCH listening' "$con"; then
		"$NB" send "$GUEST_IP" 5001 "$nbytes" -n >"$work/h2g" 2>&1 || true
		sent=1
	fi
	sleep 0.5
done
rc=0
wait "$ftpid" || rc=$?
tr -d '\r' <"$con" | grep -aE '^(FTVMM-|BLKBENCH|NETBENCH|  NETBENCH)' >&2 || true
if [[ $rc != 0 ]] || ! grep -aq 'FTVMM-RESULT blkperf PASS' "$con" || ! grep -aq 'FTVMM-RESULT net PASS' "$con"; then
	say "FAIL: the guest run did not complete (ftvmm exit $rc); console tail:"
	tail -n 30 "$con" >&2
	cat "$err" >&2
	exit 1
fi
g_sw=$(grep -a '^BLKBENCH seqwrite' "$con" | tr -d '\r')
g_sr=$(grep -a '^BLKBENCH seqread' "$con" | tr -d '\r')
g_rr=$(grep -a '^BLKBENCH randread' "$con" | tr -d '\r')
g_tx=$(val MBps "$(grep '^NETBENCH recv' "$work/g2h" || true)")          # guest->host, timed by the host
g_rx=$(val MBps "$(grep -a '^FTVMM-NET rx ' "$con" | tr -d '\r' || true)") # host->guest, timed by the guest

# ---------------------------------------------------------------- report
ratio() { awk -v g="$1" -v h="$2" 'BEGIN { if (h > 0 && g != "") printf "%.2f", g / h; else print "-" }'; }
rows=(
	"seq write 1M O_DIRECT|MB/s|$(val MBps "$g_sw")|$(val MBps "$h_sw")"
	"seq read 1M O_DIRECT|MB/s|$(val MBps "$g_sr")|$(val MBps "$h_sr")"
	"rand read 4K QD32|IOPS|$(val IOPS "$g_rr")|$(val IOPS "$h_rr")"
	"TCP guest->host|MB/s|$g_tx|$h_tx"
	"TCP host->guest|MB/s|$g_rx|$h_rx"
)
if [[ $BENCH_WHERE == testbed ]]; then
	where="nested test bed: ftvmm runs on KVM inside a qemu TCG guest (-cpu max, nested SVM); 'host' = that test-bed host"
else
	where="direct: ftvmm on this machine's hardware KVM; 'host' = this machine"
fi
stamp=$(date +%Y%m%d-%H%M%S)
mkdir -p "$BENCH_RESULTS"
md="$BENCH_RESULTS/devices-$stamp.md" csv="$BENCH_RESULTS/devices-$stamp.csv"
{
	echo "# ftvmm device benchmark, $(date -u '+%Y-%m-%d %H:%M UTC')"
	echo
	echo "- where: $where"
	echo "- ftvmm: $BENCH_REV; guest: $BENCH_GUEST_CPUS vCPUs, $BENCH_GUEST_MEM, kernel $(cat "$(dirname "$GUEST_KERNEL")/kernel-version" 2>/dev/null || echo '?')"
	echo "- host that runs ftvmm: kernel $(uname -r), CPU $(grep -m1 'model name' /proc/cpuinfo | sed 's/.*: //') x$(nproc), image on $(df -T "$BENCH_DIR" | awk 'NR==2 {print $2}') ($BENCH_DIR)"
	[[ $BENCH_WHERE == testbed ]] && echo "- outer machine: kernel $BENCH_OUTER_KERNEL, CPU $BENCH_OUTER_CPU, load average at start $BENCH_OUTER_LOAD (shared machine)"
	echo "- sizes: disk ${BENCH_DISK_MB} MiB sequential + ${BENCH_SECS} s random over the same span; TCP ${BENCH_NET_MB} MiB per run (netbench -n: no checksum)"
	echo "- ftvmm's disk backend is buffered I/O on io_uring: the guest's O_DIRECT requests reach the host page cache, the host column's O_DIRECT does not"
	[[ $BENCH_WHERE == testbed ]] && echo "- in the test bed the host column's disk I/O is mostly qemu's own native DMA into the outer machine's page cache, while all of ftvmm and its guest run emulated (TCG, nested SVM): there the disk ratios measure TCG more than ftvmm; the machine is shared, so runs differ by 2x or more"
	echo
	echo "| operation | unit | guest (ftvmm) | host | guest/host |"
	echo "|---|---|---:|---:|---:|"
	for r in "${rows[@]}"; do
		IFS='|' read -r op unit g h <<<"$r"
		echo "| $op | $unit | ${g:--} | ${h:--} | $(ratio "$g" "$h") |"
	done
	echo
	echo "Host TCP is loopback (the same tool at both ends); guest TCP crosses virtio-net, the TAP and the host stack."
	echo
	echo '```'
	printf '%s\n' "guest: $g_sw" "guest: $g_sr" "guest: $g_rr" "host:  $h_sw" "host:  $h_sr" "host:  $h_rr"
	echo "guest->host, host end: $(grep '^NETBENCH recv' "$work/g2h" || true)"
	echo "guest->host, guest end: $(grep -a '^FTVMM-NET tx ' "$con" | tr -d '\r' || true)"
	echo "host->guest, guest end: $(grep -a '^FTVMM-NET rx ' "$con" | tr -d '\r' || true)"
	echo "host->guest, host end: $(grep '^NETBENCH sent' "$work/h2g" || true)"
	echo "host loopback 1: $(grep '^NETBENCH recv' "$work/lo-5101" || true)"
	echo "host loopback 2: $(grep '^NETBENCH recv' "$work/lo-5102" || true)"
	echo "guest eth0: $(grep -a '^FTVMM-NET stats' "$con" | tr -d '\r' | sed 's/^FTVMM-NET stats //' || true)"
	echo '```'
} >"$md"
{
	echo "date,where,rev,operation,unit,guest,host,ratio"
	for r in "${rows[@]}"; do
		IFS='|' read -r op unit g h <<<"$r"
		echo "$stamp,$BENCH_WHERE,$BENCH_REV,$op,$unit,$g,$h,$(ratio "$g" "$h")"
	done
} >"$csv"
echo
sed -n '/^| operation/,/^$/p' "$md" | column -t -s '|' 2>/dev/null || sed -n '/^| operation/,/^$/p' "$md"
echo "bench: results in $md and $csv"

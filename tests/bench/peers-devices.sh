#!/usr/bin/env bash
# tests/bench/peers-devices.sh - disk and TCP of an ftvmm guest beside the same guest on QEMU/KVM, same test-bed boot.
#
# Usage: tests/bench/peers-devices.sh [RUNS]   (default 5). Runs inside the nested test bed unless ITEST_MODE=direct
# (this machine's /dev/kvm). QEMU is Debian's qemu-system-x86 with -accel kvm, the peer a user would pick instead;
# ftvmm never uses it. Writes tests/bench/results/peers-devices-<date>/{runs.csv,summary.md,devices.dat,devices.png}.
#
# Each run boots the same bzImage + test initramfs (2 vCPUs, 512 MiB, one raw disk image written in full first, one
# TAP NIC) on each VMM in turn (interleaved: run 1 of every VMM, then run 2, ...), with the guest's own tools
# (guest-images/checks/blkperf.sh and net.sh, the same binaries in every VMM):
#   disk: sequential write and read of PEERS_DISK_MB in 1 MiB O_DIRECT requests, random 4 KiB O_DIRECT reads at queue
#         depth 32 and at queue depth 1 for PEERS_SECS each (guest CLOCK_MONOTONIC)
#   TCP:  PEERS_NET_MB guest->host (timed by the host's receiver) and host->guest (timed by the guest's receiver), then
#         PEERS_SECS of request/response (one byte each way, TCP_NODELAY) against `netbench echo` on the host:
#         transactions per second and the median and 99th percentile latency
#   ftvmm         ftvmm run: its virtio-pci devices; its disk backend is buffered I/O on io_uring
#   qemu-q35      -M q35, virtio-blk-pci (cache=writeback, aio=threads: buffered as ftvmm's) and virtio-net-pci (vhost off:
#                 the test bed's kernel has vhost-net, but ftvmm has no in-kernel data path either)
#   qemu-microvm  -M microvm with virtio-mmio devices, the same backends
# Per VMM and metric: median [min, max] of the runs; ratios ftvmm / peer of the medians (higher is better for ftvmm
# except latency, where lower is).
# Env: FTVMM (build/ftvmm), GUEST_KERNEL, GUEST_INITRD (default: the test image plus virtio_mmio, build/peers-image, as
# peers-boot.sh); PEERS="ftvmm qemu-q35 qemu-microvm"; PEERS_DISK_MB=64 PEERS_NET_MB=64 PEERS_SECS=5;
# PEERS_TESTBED_TIMEOUT (s; default from the runs and sizes).
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/../.." && pwd)
RUNS=${1:-5}
[[ "$RUNS" =~ ^[1-9][0-9]*$ ]] || { echo "peers-devices: RUNS '$RUNS' is not a positive number" >&2; exit 2; }
FTVMM=${FTVMM:-$repo/build/ftvmm}
KERNEL=${GUEST_KERNEL:-$repo/build/peers-image/bzImage}
INITRD=${GUEST_INITRD:-$repo/build/peers-image/initramfs.cpio.gz}
PEERS=${PEERS:-"ftvmm qemu-q35 qemu-microvm"}
PEERS_DISK_MB=${PEERS_DISK_MB:-64} PEERS_NET_MB=${PEERS_NET_MB:-64} PEERS_SECS=${PEERS_SECS:-5}
for v in PEERS_DISK_MB PEERS_NET_MB PEERS_SECS; do
	[[ "${!v}" =~ ^[1-9][0-9]*$ ]] || { echo "peers-devices: $v '${!v}' is not a positive number" >&2; exit 2; }
done
MEM_MB=512
CPUS=2
TOOLS=$repo/build/bench-tools

if [[ "${BENCH_INSIDE:-0}" != 1 ]]; then
	[[ -x "$FTVMM" ]] || make -C "$repo" >/dev/null
	[[ -f "$KERNEL" && -f "$INITRD" && "$INITRD" -nt "$repo/guest-images/tools/netbench.c" &&
		"$INITRD" -nt "$repo/guest-images/checks/net.sh" && "$INITRD" -nt "$repo/guest-images/checks/blkperf.sh" ]] ||
		OUT="$repo/build/peers-image" GUEST_EXTRA_MODULES=virtio_mmio bash "$repo/guest-images/build.sh" >/dev/null
	command -v qemu-system-x86_64 >/dev/null || { echo "peers-devices: qemu-system-x86_64 missing (apt-get install qemu-system-x86)" >&2; exit 1; }
	# the host ends of the TCP runs: the guest's own netbench, built static for the test-bed host
	mkdir -p "$TOOLS"
	[[ -x "$TOOLS/netbench" && "$TOOLS/netbench" -nt "$repo/guest-images/tools/netbench.c" ]] ||
		gcc -static -O2 -Wall -o "$TOOLS/netbench" "$repo/guest-images/tools/netbench.c"
	export FTVMM KERNEL INITRD PEERS RUNS PEERS_DISK_MB PEERS_NET_MB PEERS_SECS
	BENCH_OUTER_LOAD="$(cut -d' ' -f1-3 /proc/loadavg) on $(nproc) CPUs" && export BENCH_OUTER_LOAD
	BENCH_RES="$repo/tests/bench/results/peers-devices-$(date -u +%Y%m%d-%H%M%S)" && export BENCH_RES
	mkdir -p "$BENCH_RES"
	# the suite's test-bed root has no QEMU: the peers boot one that has (tests/testbed/rootfs.sh, ROOTFS_PEERS)
	root=image; [[ "$PEERS" != *qemu* ]] || root=image-peers
	if [[ "${ITEST_MODE:-auto}" == direct ]]; then
		BENCH_INSIDE=1 BENCH_ENV="real KVM ($(uname -r))" bash "$0" "$RUNS"
	else
		TESTBED_PASSENV="FTVMM KERNEL INITRD PEERS PEERS_DISK_MB PEERS_NET_MB PEERS_SECS BENCH_INSIDE BENCH_ENV BENCH_OUTER_LOAD BENCH_RES" \
			BENCH_INSIDE=1 BENCH_ENV="nested test bed (qemu TCG -cpu max, kvm-amd inside)" \
			TESTBED_TIMEOUT=${PEERS_TESTBED_TIMEOUT:-$((600 + RUNS * $(wc -w <<<"$PEERS") * (120 + 6 * PEERS_SECS)))} \
			TESTBED_ROOT=${TESTBED_ROOT:-$root} "$repo/tests/testbed/run.sh" bash "$0" "$RUNS"
	fi
	if [[ -s "$BENCH_RES/devices.dat" ]] && command -v gnuplot >/dev/null; then
		(cd "$BENCH_RES" && gnuplot "$here/peers-devices.gp") || echo "peers-devices: gnuplot failed" >&2
	elif [[ -s "$BENCH_RES/devices.dat" ]]; then
		echo "peers-devices: no gnuplot (apt-get install gnuplot-nox): no plot" >&2
	fi
	exit 0
fi

# ---- inside: where /dev/kvm is ----
# the test bed's root image for the peers (TESTBED_ROOT=image-peers) has QEMU; another root may not
if [[ "$PEERS" == *qemu* ]] && ! command -v qemu-system-x86_64 >/dev/null; then
	echo "peers-devices: no qemu-system-x86_64 where the VMs run (the test bed's root image lacks it): the QEMU peers are left out" >&2
	PEERS=$(tr ' ' '\n' <<<"$PEERS" | grep -v '^qemu' | tr '\n' ' ')
fi
# the image on a disk file system, not tmpfs (O_DIRECT in the host column of devices.sh; QEMU's aio=native)
tmp=$(mktemp -d /var/tmp/peers-devices.XXXXXX)
TAP=pdtap0 HOST_IP=192.0.2.1 GUEST_IP=192.0.2.2
RXPORT=5201 TXPORT=5202 RRPORT=5203
NB=$TOOLS/netbench
pids=()
cleanup() {
	local p
	for p in ${pids[@]+"${pids[@]}"}; do kill "$p" 2>/dev/null || true; done
	ip link del "$TAP" 2>/dev/null || true
	rm -rf "$tmp"
}
trap cleanup EXIT
ip tuntap add dev "$TAP" mode tap && ip addr add "$HOST_IP/24" dev "$TAP" && ip link set "$TAP" up ||
	{ echo "peers-devices: cannot create TAP $TAP" >&2; exit 1; }
csv="$BENCH_RES/runs.csv"
echo "run,vmm,seqwrite_MBps,seqread_MBps,randread_qd32_iops,randread_qd1_iops,tcp_g2h_MBps,tcp_h2g_MBps,rr_tps,rr_p50_us,rr_p99_us" >"$csv"
load_start=$(cut -d' ' -f1-3 /proc/loadavg)
size=$((PEERS_DISK_MB << 20)) nbytes=$((PEERS_NET_MB << 20))
ARGS="ftvmm.test=blkperf,net ftvmm.blkperf_dev=vda ftvmm.blkperf_size=$size ftvmm.blkperf_secs=$PEERS_SECS ftvmm.blkperf_qd1"
ARGS+=" ftvmm.net_ip=$GUEST_IP/24 ftvmm.net_peer=$HOST_IP ftvmm.net_bytes=$nbytes ftvmm.net_rxport=$RXPORT"
ARGS+=" ftvmm.net_txport=$TXPORT ftvmm.net_nohash ftvmm.net_rrport=$RRPORT ftvmm.net_rrsecs=$PEERS_SECS"
EXTRA="quiet $ARGS"
QEMU_APPEND="console=ttyS0 reboot=k panic=-1 $EXTRA"

# vmm_start VMM CONSOLE IMG: one VMM in the background (pid in VMM_PID); the guest powers off when its checks end
vmm_start() {
	local q=(qemu-system-x86_64 -accel kvm -cpu host -m "$MEM_MB" -smp "$CPUS" -nodefaults -no-user-config
		-display none -no-reboot -serial "file:$2" -kernel "$KERNEL" -initrd "$INITRD" -append "$QEMU_APPEND"
		-drive "id=d0,file=$3,format=raw,if=none,cache=writeback,aio=threads"
		-netdev "tap,id=n0,ifname=$TAP,script=no,downscript=no,vhost=off")
	case "$1" in
	ftvmm)
		"$FTVMM" run --kernel "$KERNEL" --initrd "$INITRD" --mem "${MEM_MB}M" --cpus "$CPUS" --disk "$3" \
			--net "tap=$TAP" --cmdline "$EXTRA" </dev/null >"$2" 2>"$2.err" &
		;;
	qemu-microvm)
		"${q[@]}" -M microvm -device virtio-blk-device,drive=d0 -device virtio-net-device,netdev=n0 \
			</dev/null >"$2.out" 2>"$2.err" &
		;;
	qemu-q35)
		"${q[@]}" -M q35 -device virtio-blk-pci,drive=d0 -device virtio-net-pci,netdev=n0 </dev/null >"$2.out" 2>"$2.err" &
		;;
	*) echo "peers-devices: unknown VMM '$1' in PEERS" >&2; exit 2 ;;
	esac
	VMM_PID=$!
}

field() { tr -d '\r' <"$2" | grep -a "$3" | head -n1 | sed -n "s/.* $1=\\([0-9.]*\\).*/\\1/p"; }

for run in $(seq "$RUNS"); do
	for vmm in $PEERS; do
		con="$tmp/$vmm.$run.console" img="$tmp/disk.img"
		: >"$con"
		dd if=/dev/zero of="$img" bs=1M count="$PEERS_DISK_MB" conv=fsync status=none # allocated, not sparse
		"$NB" recv "$TXPORT" -a "$HOST_IP" -n -w 600 >"$tmp/g2h" 2>&1 &
		rx_pid=$!
		"$NB" echo "$RRPORT" -a "$HOST_IP" -w 600 >"$tmp/echo" 2>&1 &
		echo_pid=$!
		pids=("$rx_pid" "$echo_pid")
		vmm_start "$vmm" "$con" "$img"
		pids+=("$VMM_PID")
		sent=0
		end=$((SECONDS + 300)) # the checks take about a minute in the test bed (a count of polls was 10+ minutes there)
		while ((SECONDS < end)); do
			kill -0 "$VMM_PID" 2>/dev/null || break
			grep -aq 'FTVMM-RESULT net ' "$con" && break # the last check's verdict (blkperf runs first)
			if ((sent == 0)) && grep -aq 'NETBENCH listening' "$con"; then
				"$NB" send "$GUEST_IP" "$RXPORT" "$nbytes" -n >"$tmp/h2g" 2>&1 || true
				sent=1
			fi
			sleep 0.1
		done
		kill "$VMM_PID" "$rx_pid" "$echo_pid" 2>/dev/null || true
		wait "$VMM_PID" "$rx_pid" "$echo_pid" 2>/dev/null || true
		pids=()
		cp -f "$con" "$BENCH_RES/$vmm.$run.console" 2>/dev/null || true
		if ! grep -aq 'FTVMM-RESULT blkperf PASS' "$con" || ! grep -aq 'FTVMM-RESULT net PASS' "$con"; then
			echo "peers-devices: run $run of $vmm did not complete: $(tr -d '\r' <"$con" | grep -a 'FTVMM-RESULT' | tr '\n' ' ')$(tail -c 300 "$con.err" 2>/dev/null | tr '\n' ' ')" >&2
			echo "$run,$vmm,failed,,,,,,,," >>"$csv"
			continue
		fi
		row="$run,$vmm,$(field MBps "$con" '^BLKBENCH seqwrite'),$(field MBps "$con" '^BLKBENCH seqread')"
		row+=",$(field IOPS "$con" '^BLKBENCH randread.* qd=32 '),$(field IOPS "$con" '^BLKBENCH randread.* qd=1 ')"
		row+=",$(field MBps "$tmp/g2h" '^NETBENCH recv'),$(field MBps "$con" '^FTVMM-NET rx ')"
		row+=",$(field tps "$con" '^FTVMM-NET rr '),$(field p50_us "$con" '^FTVMM-NET rr '),$(field p99_us "$con" '^FTVMM-NET rr ')"
		echo "$row" >>"$csv"
		echo "run $run $vmm: $row"
	done
done

{
	echo "# Disk and TCP: ftvmm beside QEMU/KVM ($(date -u +%F\ %T) UTC)"
	echo
	echo "- environment: ${BENCH_ENV:-unknown}; host kernel $(uname -r) $(grep -oE 'kvm_amd\.[a-z_]+=[^ ]+' /proc/cmdline | tr '\n' ' '); $(nproc) CPUs"
	[[ -n "${BENCH_OUTER_LOAD:-}" ]] && echo "- outer machine load average at the start: $BENCH_OUTER_LOAD"
	echo "- load average inside: $load_start at the start, $(cut -d' ' -f1-3 /proc/loadavg) at the end"
	echo "- peer: $(qemu-system-x86_64 --version 2>/dev/null | head -n1 || echo 'none: no qemu-system-x86_64 here') with -accel kvm -cpu host, disk cache=writeback aio=threads, net vhost=off; ftvmm ${FTVMM_COMMIT:-$(git -C "$repo" rev-parse --short HEAD 2>/dev/null || echo '?')}"
	echo "- guest: Debian $(cat "$(dirname "$KERNEL")/kernel-version" 2>/dev/null || echo '?') bzImage + test initramfs, $MEM_MB MiB, $CPUS vCPUs; disk image $PEERS_DISK_MB MiB on $(df -T /var/tmp | awk 'NR==2 {print $2}'), TCP $PEERS_NET_MB MiB each way (no checksum), random reads and request/response $PEERS_SECS s each"
	echo "- $RUNS runs per VMM, interleaved; each figure: median [min, max]"
	echo
	python3 "$here/peers-table.py" "$csv" "$BENCH_RES/devices.dat" \
		"seqwrite_MBps:seq write 1M O_DIRECT (MB/s):+" "seqread_MBps:seq read 1M O_DIRECT (MB/s):+" \
		"randread_qd32_iops:rand read 4K QD32 (IOPS):+" "randread_qd1_iops:rand read 4K QD1 (IOPS):+" \
		"tcp_g2h_MBps:TCP guest->host (MB/s):+" "tcp_h2g_MBps:TCP host->guest (MB/s):+" \
		"rr_tps:TCP request/response (trans/s):+" "rr_p50_us:request/response latency p50 (us):-" \
		"rr_p99_us:request/response latency p99 (us):-"
} >"$BENCH_RES/summary.md"
cat "$BENCH_RES/summary.md"

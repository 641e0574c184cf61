#!/usr/bin/env bash
# tests/bench/peers-boot.sh - boot time and VMM memory of ftvmm beside QEMU/KVM (-M microvm, -M q35), same guest, same test-bed boot.
#
# Usage: tests/bench/peers-boot.sh [RUNS]   (default 5). Runs inside the nested test bed unless ITEST_MODE=direct (this
# machine's /dev/kvm). QEMU is Debian's qemu-system-x86 with -accel kvm, run beside ftvmm as the peer a user would pick
# instead; ftvmm never uses it. Writes tests/bench/results/peers-boot-<date>/{runs.csv,summary.md,boot.dat,boot.png}.
#
# Each run boots the same bzImage + test initramfs, 256 MiB, 2 vCPUs, one 64 MiB raw disk and one TAP NIC, in turn
# (interleaved: run 1 of every VMM, then run 2, ...):
#   ftvmm         ftvmm run (its own virtio-pci devices, no firmware: the kernel is entered directly)
#   qemu-microvm  -M microvm: virtio-mmio devices, found by the guest through ACPI (virtio_mmio module), no PCI
#   qemu-q35      -M q35 with SeaBIOS, virtio-blk-pci and virtio-net-pci
# Measured: wall time from the VMM's start to the guest init's first line (FTVMM-GUEST-INIT), the guest's uptime at
# that line, and the VMM's memory beside guest RAM (process RSS minus the resident part of the guest RAM mapping) a
# second after init. Per VMM: median, min and max of the runs; ratios ftvmm / peer of the medians.
# Env: FTVMM (build/ftvmm), GUEST_KERNEL, GUEST_INITRD (default: the test image plus virtio_mmio, built into
# build/peers-image); PEERS="ftvmm qemu-microvm qemu-q35".
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/../.." && pwd)
RUNS=${1:-5}
[[ "$RUNS" =~ ^[1-9][0-9]*$ ]] || { echo "peers-boot: RUNS '$RUNS' is not a positive number" >&2; exit 2; }
FTVMM=${FTVMM:-$repo/build/ftvmm}
KERNEL=${GUEST_KERNEL:-$repo/build/peers-image/bzImage}
INITRD=${GUEST_INITRD:-$repo/build/peers-image/initramfs.cpio.gz}
PEERS=${PEERS:-"ftvmm qemu-microvm qemu-q35"}
MEM_MB=256
CPUS=2

if [[ "${BENCH_INSIDE:-0}" != 1 ]]; then
	[[ -x "$FTVMM" ]] || make -C "$repo" >/dev/null
	# the test guest image plus virtio_mmio (microvm's devices), the same image for every VMM
	[[ -f "$KERNEL" && -f "$INITRD" ]] ||
		OUT="$repo/build/peers-image" GUEST_EXTRA_MODULES=virtio_mmio bash "$repo/guest-images/build.sh" >/dev/null
	command -v qemu-system-x86_64 >/dev/null || { echo "peers-boot: qemu-system-x86_64 missing (apt-get install qemu-system-x86)" >&2; exit 1; }
	export FTVMM KERNEL INITRD PEERS RUNS
	BENCH_OUTER_LOAD="$(cut -d' ' -f1-3 /proc/loadavg) on $(nproc) CPUs" && export BENCH_OUTER_LOAD
	BENCH_RES="$repo/tests/bench/results/peers-boot-$(date -u +%Y%m%d-%H%M%S)" && export BENCH_RES
	mkdir -p "$BENCH_RES"
	# the suite's test-bed root has no QEMU: the peers boot one that has (tests/testbed/rootfs.sh, ROOTFS_PEERS)
	root=image; [[ "$PEERS" != *qemu* ]] || root=image-peers
	if [[ "${ITEST_MODE:-auto}" == direct ]]; then
		BENCH_INSIDE=1 BENCH_ENV="real KVM ($(uname -r))" bash "$0" "$RUNS"
	else
		TESTBED_PASSENV="FTVMM KERNEL INITRD PEERS BENCH_INSIDE BENCH_ENV BENCH_OUTER_LOAD BENCH_RES" BENCH_INSIDE=1 \
			BENCH_ENV="nested test bed (qemu TCG -cpu max, kvm-amd inside)" TESTBED_TIMEOUT=$((600 + RUNS * 240)) \
			TESTBED_ROOT=${TESTBED_ROOT:-$root} "$repo/tests/testbed/run.sh" bash "$0" "$RUNS"
	fi
	if [[ -s "$BENCH_RES/boot.dat" ]] && command -v gnuplot >/dev/null; then
		(cd "$BENCH_RES" && gnuplot "$here/peers-boot.gp") || echo "peers-boot: gnuplot failed" >&2
	elif [[ -s "$BENCH_RES/boot.dat" ]]; then
		echo "peers-boot: no gnuplot (apt-get install gnuplot-nox): no plot" >&2
	fi
	exit 0
fi

# ---- inside: where /dev/kvm is ----
# on a disk file system, not tmpfs: QEMU's cache=none opens the image with O_DIRECT, which tmpfs refuses (the first
# run lost every QEMU boot to that: results/peers-boot-20261207-120017)
tmp=$(mktemp -d /var/tmp/peers-boot.XXXXXX)
TAP=pbtap0
trap 'ip link del "$TAP" 2>/dev/null || true; rm -rf "$tmp"' EXIT
ip tuntap add dev "$TAP" mode tap && ip link set "$TAP" up || { echo "peers-boot: cannot create TAP $TAP" >&2; exit 1; }
truncate -s 64M "$tmp/disk.img"
csv="$BENCH_RES/runs.csv"
echo "run,vmm,wall_to_init_s,guest_uptime_at_init_s,rss_total_kib,guest_ram_rss_kib,vmm_overhead_kib" >"$csv"
load_start=$(cut -d' ' -f1-3 /proc/loadavg)

# The guest's command line: what ftvmm puts first (cmd/cli.h DEFAULT_CMDLINE) and the same extras for every VMM;
# microvm finds its virtio-mmio devices through ACPI, so only ftvmm's own run keeps its acpi=off.
EXTRA="quiet ftvmm.noreboot"
QEMU_APPEND="console=ttyS0 reboot=k panic=-1 $EXTRA"

# vmm_start VMM LOG: start one VMM in the background (pid in VMM_PID)
vmm_start() {
	local q=(qemu-system-x86_64 -accel kvm -cpu host -m "$MEM_MB" -smp "$CPUS" -nodefaults -no-user-config
		-display none -no-reboot -serial "file:$2" -kernel "$KERNEL" -initrd "$INITRD" -append "$QEMU_APPEND"
		-drive "id=d0,file=$tmp/disk.img,format=raw,if=none,cache=none,aio=native"
		-netdev "tap,id=n0,ifname=$TAP,script=no,downscript=no")
	case "$1" in
	ftvmm)
		"$FTVMM" run --kernel "$KERNEL" --initrd "$INITRD" --mem "${MEM_MB}M" --cpus "$CPUS" --disk "$tmp/disk.img" \
			--net "tap=$TAP" --cmdline "$EXTRA" </dev/null >"$2" 2>"$2.err" &
		;;
	qemu-microvm)
		"${q[@]}" -M microvm -device virtio-blk-device,drive=d0 -device virtio-net-device,netdev=n0 \
			</dev/null >"$2.out" 2>"$2.err" &
		;;
	qemu-q35)
		"${q[@]}" -M q35 -device virtio-blk-pci,drive=d0 -device virtio-net-pci,netdev=n0 </dev/null >"$2.out" 2>"$2.err" &
		;;
	*) echo "peers-boot: unknown VMM '$1' in PEERS" >&2; exit 2 ;;
	esac
	VMM_PID=$!
}

# measure_rss PID MEM_KIB -> "TOTAL GUEST": the process's RSS, and the RSS of its guest RAM mapping (the mapping whose
# size is the guest's RAM, up to 4 MiB more for a VMM that rounds it; the most resident one if several match)
measure_rss() {
	awk -v want="$2" '
		/^[0-9a-f]+-[0-9a-f]+ / { sz = -1 }
		/^Size:/ { sz = $2 }
		/^Rss:/ { total += $2; if (sz >= want && sz <= want + 4096 && $2 > guest) guest = $2 }
		END { print total + 0, guest + 0 }' "/proc/$1/smaps" 2>/dev/null || echo "0 0"
}

vmm_stop() {
	kill "$1" 2>/dev/null || true
	for _ in $(seq 100); do kill -0 "$1" 2>/dev/null || break; sleep 0.1; done
	kill -9 "$1" 2>/dev/null || true
	wait "$1" 2>/dev/null || true
}

for run in $(seq "$RUNS"); do
	for vmm in $PEERS; do
		log="$tmp/$vmm.$run.console"
		: >"$log"
		t0=$(date +%s.%N)
		vmm_start "$vmm" "$log"
		t_init=""
		for _ in $(seq 2400); do # 120 s
			if grep -aq FTVMM-GUEST-INIT "$log" 2>/dev/null; then t_init=$(date +%s.%N); break; fi
			kill -0 "$VMM_PID" 2>/dev/null || break
			sleep 0.05
		done
		sleep 1 # let the init settle before reading memory
		read -r total guest < <(measure_rss "$VMM_PID" $((MEM_MB * 1024)))
		vmm_stop "$VMM_PID"
		cp -f "$log" "$BENCH_RES/$vmm.$run.console" 2>/dev/null || true
		if [[ -z "$t_init" ]]; then
			echo "peers-boot: run $run of $vmm: the guest's init never started ($(tail -c 300 "$log.err" 2>/dev/null | tr '\n' ' '))" >&2
			echo "$run,$vmm,no-init,,,," >>"$csv"
			continue
		fi
		up=$(sed -n 's/.*FTVMM-GUEST-INIT uptime=\([0-9.]*\).*/\1/p' "$log" | head -1)
		wall=$(echo "$t_init - $t0" | bc -l)
		printf '%s,%s,%.3f,%s,%s,%s,%s\n' "$run" "$vmm" "$wall" "$up" "$total" "$guest" $((total - guest)) >>"$csv"
		echo "run $run $vmm: init after $(printf '%.2f' "$wall") s (guest uptime $up s), VMM overhead $(((total - guest) / 1024)) MiB"
	done
done

{
	echo "# Boot and VMM memory: ftvmm beside QEMU/KVM ($(date -u +%F\ %T) UTC)"
	echo
	echo "- environment: ${BENCH_ENV:-unknown}; host kernel $(uname -r) $(grep -oE 'kvm_amd\.[a-z_]+=[^ ]+' /proc/cmdline | tr '\n' ' '); $(nproc) CPUs"
	[[ -n "${BENCH_OUTER_LOAD:-}" ]] && echo "- outer machine load average at the start: $BENCH_OUTER_LOAD"
	echo "- load average inside: $load_start at the start, $(cut -d' ' -f1-3 /proc/loadavg) at the end"
	echo "- peer: $(qemu-system-x86_64 --version | head -n1) with -accel kvm -cpu host; ftvmm ${FTVMM_COMMIT:-$(git -C "$repo" rev-parse --short HEAD 2>/dev/null || echo '?')}"
	echo "- guest: Debian $(cat "$(dirname "$KERNEL")/kernel-version" 2>/dev/null || echo '?') bzImage + test initramfs, $MEM_MB MiB, $CPUS vCPUs, one 64 MiB disk, one TAP NIC; command line \`$QEMU_APPEND\` (ftvmm adds acpi=off)"
	echo "- $RUNS runs per VMM, interleaved; each figure: median [min, max]"
	echo
	python3 - "$csv" <<'PYEOF'
import csv, statistics, sys
rows = list(csv.DictReader(open(sys.argv[1])))
vmms = list(dict.fromkeys(r["vmm"] for r in rows))
ok = {v: [r for r in rows if r["vmm"] == v and r["wall_to_init_s"] != "no-init"] for v in vmms}
metrics = [("wall_to_init_s", "wall to init (s)", 1.0), ("guest_uptime_at_init_s", "guest uptime at init (s)", 1.0),
           ("vmm_overhead_kib", "VMM memory beside guest RAM (MiB)", 1 / 1024)]
def cell(v, k, scale):
    xs = [float(r[k]) * scale for r in ok[v] if r[k] != ""]
    if not xs:
        return None, "no run reached init"
    return statistics.median(xs), "%.2f [%.2f, %.2f]" % (statistics.median(xs), min(xs), max(xs))
print("| VMM | runs reaching init | " + " | ".join(m[1] for m in metrics) + " |")
print("|---|---|" + "---|" * len(metrics))
med = {}
for v in vmms:
    cells = []
    for k, _, s in metrics:
        m, txt = cell(v, k, s)
        med[(v, k)] = m
        cells.append(txt)
    print("| %s | %d of %d | %s |" % (v, len(ok[v]), len([r for r in rows if r["vmm"] == v]), " | ".join(cells)))
print()
if "ftvmm" in vmms:
    for p in vmms:
        if p == "ftvmm":
            continue
        parts = []
        for k, name, _ in metrics:
            a, b = med.get(("ftvmm", k)), med.get((p, k))
            if a is None or b is None or b == 0:
                parts.append("%s: no ratio (a side has no run)" % name)
            else:
                parts.append("%s %.2fx" % (name, a / b))
        print("- ftvmm / %s (medians): %s" % (p, "; ".join(parts)))
with open(sys.argv[1].replace("runs.csv", "boot.dat"), "w") as f:
    f.write("# vmm wall_med wall_min wall_max mem_med_mib mem_min_mib mem_max_mib\n")
    for v in vmms:
        if not ok[v]:
            continue
        w = [float(r["wall_to_init_s"]) for r in ok[v]]
        m = [float(r["vmm_overhead_kib"]) / 1024 for r in ok[v]]
        f.write("%s %.3f %.3f %.3f %.2f %.2f %.2f\n" % (v, statistics.median(w), min(w), max(w),
                                                    statistics.median(m), min(m), max(m)))
PYEOF
} >"$BENCH_RES/summary.md"
cat "$BENCH_RES/summary.md"

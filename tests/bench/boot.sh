#!/usr/bin/env bash
# tests/bench/boot.sh - boot benchmark: wall time to the guest init's first line, guest uptime at init, VMM memory beside guest RAM.
#
# Usage: tests/bench/boot.sh [RUNS]   (make bench-boot). Runs inside the nested test bed unless this
# machine has hardware KVM (ITEST_MODE=direct forces direct). Writes tests/bench/results/boot-<date>.{md,csv}.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/../.." && pwd)
RUNS=${1:-5}
FTVMM=${FTVMM:-$repo/build/ftvmm}
KERNEL=${GUEST_KERNEL:-$repo/guest-images/out/bzImage}
INITRD=${GUEST_INITRD:-$repo/guest-images/out/initramfs.cpio.gz}

if [[ "${BENCH_INSIDE:-0}" != 1 ]]; then
	[[ -x "$FTVMM" ]] || make -C "$repo" >/dev/null
	[[ -f "$KERNEL" && -f "$INITRD" ]] || bash "$repo/guest-images/build.sh" >/dev/null
	mode=testbed
	if [[ "${ITEST_MODE:-auto}" == direct ]]; then mode=direct; fi
	if [[ $mode == direct ]]; then
		BENCH_INSIDE=1 BENCH_ENV="real KVM ($(uname -r))" exec bash "$0" "$RUNS"
	fi
	export FTVMM KERNEL INITRD
	BENCH_OUTER_LOAD="$(cut -d' ' -f1-3 /proc/loadavg) on $(nproc) CPUs" && export BENCH_OUTER_LOAD
	TESTBED_PASSENV="FTVMM KERNEL INITRD BENCH_INSIDE BENCH_ENV BENCH_OUTER_LOAD" BENCH_INSIDE=1 \
		BENCH_ENV="nested test bed (qemu TCG -cpu max, kvm-amd inside)" \
		exec "$repo/tests/testbed/run.sh" bash "$0" "$RUNS"
fi

# ---- inside: where /dev/kvm is ----
date=$(date -u +%Y%m%d-%H%M%S)
out_md="$repo/tests/bench/results/boot-$date.md"
out_csv="$repo/tests/bench/results/boot-$date.csv"
tmp=$(mktemp -d)
echo "run,cpus,mem_mb,wall_to_init_s,guest_uptime_at_init_s,vmm_rss_total_kib,guest_ram_rss_kib,vmm_overhead_kib" >"$out_csv"

# The VMM's own memory is the process RSS minus the resident part of the guest RAM mapping
# (the one anonymous mapping whose size equals --mem).
measure_rss() { # pid mem_bytes -> "total guest"
	local pid=$1 mem=$2
	awk -v want=$((mem / 1024)) '
		/^[0-9a-f]+-[0-9a-f]+ / { inmap = 0 }
		/^Size:/ { inmap = ($2 == want) }
		/^Rss:/ { total += $2; if (inmap) guest += $2 }
		END { print total, guest + 0 }' "/proc/$pid/smaps"
}

for cpus in 1 2; do
	for run in $(seq "$RUNS"); do
		log="$tmp/console.$cpus.$run"
		t0=$(date +%s.%N)
		"$FTVMM" run --kernel "$KERNEL" --initrd "$INITRD" --mem 256M --cpus "$cpus" \
			--cmdline "quiet ftvmm.noreboot" </dev/null >"$log" 2>"$tmp/err" &
		pid=$!
		t_init=""
		for _ in $(seq 1200); do
			if grep -q FTVMM-GUEST-INIT "$log" 2>/dev/null; then t_init=$(date +%s.%N); break; fi
			sleep 0.05
		done
		sleep 1 # let the init settle before reading memory
		read -r total guest < <(measure_rss "$pid" $((256 << 20)))
		kill "$pid" 2>/dev/null || true
		for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
		kill -9 "$pid" 2>/dev/null || true # a vCPU the test bed's KVM does not give back (seen under TCG)
		wait "$pid" 2>/dev/null || true
		if [[ -z "$t_init" ]]; then
			echo "run $run ($cpus cpu): guest init never started" >&2
			printf '%s,%s,256,no-init,,,,\n' "$run" "$cpus" >>"$out_csv"
			continue
		fi
		up=$(sed -n 's/.*FTVMM-GUEST-INIT uptime=\([0-9.]*\).*/\1/p' "$log" | head -1)
		wall=$(echo "$t_init - $t0" | bc -l)
		printf '%s,%s,256,%.2f,%s,%s,%s,%s\n' "$run" "$cpus" "$wall" "$up" "$total" "$guest" $((total - guest)) >>"$out_csv"
	done
done

{
	echo "# ftvmm boot benchmark ($date)"
	echo
	echo "- environment: ${BENCH_ENV:-unknown}; host kernel $(uname -r) $(grep -oE 'kvm_amd\.[a-z_]+=[^ ]+' /proc/cmdline | tr '\n' ' '); $(nproc) CPUs; $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)"
	[[ -n "${BENCH_OUTER_LOAD:-}" ]] && echo "- outer machine load average at the start: $BENCH_OUTER_LOAD (TCG: guest time scales with it)"
	echo "- guest: Debian $(cat "$repo/guest-images/out/kernel-version" 2>/dev/null) bzImage + test initramfs, 256 MiB, \`quiet\`"
	echo "- baseline: kvmtool reaches init in about 7 s of guest uptime on the same test bed (figure from the"
	echo "  project notes; kvmtool is not packaged for Debian 12, so it is not re-measured here)"
	echo
	echo "| run | vCPUs | wall to init (s) | guest uptime at init (s) | ftvmm RSS total (KiB) | guest RAM resident (KiB) | VMM overhead (KiB) |"
	echo "|---|---|---|---|---|---|---|"
	tail -n +2 "$out_csv" | awk -F, '{ printf "| %s | %s | %s | %s | %s | %s | %s |\n", $1, $2, $4, $5, $6, $7, $8 }'
	echo
	tail -n +2 "$out_csv" | awk -F, '$4 != "no-init" { w[$2] += $4; u[$2] += $5; o[$2] += $8; n[$2]++ } $4 == "no-init" { bad[$2]++ }
		END { for (c in n) printf "- %s vCPU: mean wall to init %.2f s, mean guest uptime at init %.2f s, mean VMM overhead %.0f KiB (%.1f MiB)%s\n", c, w[c]/n[c], u[c]/n[c], o[c]/n[c], o[c]/n[c]/1024, bad[c] ? sprintf("; %d run(s) never reached init", bad[c]) : "" }'
} >"$out_md"
cat "$out_md"
rm -rf "$tmp"

#!/usr/bin/env bash
# tests/bench/ft.sh - fault-tolerance benchmark: what checkpointing costs a guest (throughput, response latency, pause
# per epoch against a plain memcpy, bytes per epoch) and how long a failover takes. Not a test: numbers and plots.
#
# Usage: tests/bench/ft.sh [EPOCHS]      EPOCHS: the FT epochs to measure, ms (default "5 25 100")
# Runs inside the nested test bed (ITEST_MODE=direct: on this machine's /dev/kvm). Results, plots and results.md go to
# tests/bench/results/ft-<date>/. A full run takes about 10 minutes in the test bed, and the TLS comparison (below)
# 3-4 minutes more per epoch setting.
#
# Per epoch setting, one guest (256M, 2 vCPUs, a 64M disk, a TAP) boots unprotected; its console is a shell driven
# through a FIFO. Every workload runs once with FT off, then the guest is paired with a backup (`ftvmm ctl protect`)
# and every workload runs again with FT on:
#   idle      sleep 6                                   (what an idle guest costs: pause, bytes per epoch)
#   cpu       busybox awk loop, 600k iterations         (CPU-bound, few dirty pages)
#   memN      ftwork --pages N --interval-ms 0 >/dev/null, N = 256, 2048, 8192 (1, 8, 32 MiB rewritten and verified
#             per tick: three dirty rates; every 8-byte word of a page changes at each rewrite)
#   memhot2048  the same on 2048 pages of which each rewrite changes 16 words of 512 (ftwork --hot-words 16):
#             a guest updating a few fields per page, what page deltas (--delta-cache) are for
#   disk      blkbench seqwrite /dev/vda 64M            (O_DIRECT 256K writes: replicated inside the epochs)
#   rr        TCP request/response: a host client (ft-rr.py) against `nc -l -p 7000 -e cat` in the guest
# Then the failover: ftwork ticking every 20 ms with a TCP stream to a host checker; kill -9 the primary; from the
# kill to the backup's takeover line, to the guest's next FTWORK line on the backup's console, to the next TCP seq.
# Then the TLS comparison (FT_BENCH_TLS, default "off psk"): per epoch setting, rounds of fresh guests, one per TLS
# mode in turn (off, psk, off, psk, ...; FT_BENCH_TLS_REPS rounds, default 3), each booted, protected and running the
# three memN workloads with FT on (the quick sizes: 100, 10, 2 ticks). "off": the plain loopback link, as above;
# "psk": guest and backup started with --tls-psk KEY (psktool), so `protect` runs TLS 1.3. A guest's credentials are
# fixed at its start, hence a boot per run. Per workload: the --stats epochs in its window, and the CPU time
# (utime+stime from /proc) of the primary ftvmm (vCPU threads apart) and of the backup over the same window.
# Env: FTVMM, GUEST_KERNEL, GUEST_INITRD (defaults: build/, guest-images/out/); FT_BENCH_QUICK=1 (shorter runs);
# FT_BENCH_TLS="off psk" (the TLS modes; "" skips the comparison); FT_BENCH_TLS_REPS=3; FT_BENCH_TLS_ONLY=1 (only the
# TLS comparison, at EPOCHS default "25": about 5 minutes in the test bed).
# FT_BENCH_GUEST_ARGS="..." (appended to the guest's kernel command line, e.g. no-kvmapf).
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/../.." && pwd)
TLS_MODES=${FT_BENCH_TLS-off psk}
TLS_ONLY=${FT_BENCH_TLS_ONLY:-0}
TLS_REPS=${FT_BENCH_TLS_REPS:-3}
if [[ "$TLS_ONLY" == 1 ]]; then EPOCHS=${1:-25}; else EPOCHS=${1:-"5 25 100"}; fi
for m in $TLS_MODES; do
	[[ "$m" == off || "$m" == psk ]] || { echo "ft bench: FT_BENCH_TLS: '$m' is not a TLS mode (off, psk)" >&2; exit 2; }
done
[[ "$TLS_ONLY" == 0 || "$TLS_ONLY" == 1 ]] || { echo "ft bench: FT_BENCH_TLS_ONLY=$TLS_ONLY: want 0 or 1" >&2; exit 2; }
[[ "$TLS_REPS" =~ ^[1-9][0-9]*$ ]] || { echo "ft bench: FT_BENCH_TLS_REPS=$TLS_REPS: want a count" >&2; exit 2; }
if [[ "$TLS_ONLY" == 1 && -z "${TLS_MODES// /}" ]]; then
	echo "ft bench: FT_BENCH_TLS_ONLY=1 with no TLS modes (FT_BENCH_TLS is empty): nothing to measure" >&2
	exit 2
fi
export FTVMM=${FTVMM:-$repo/build/ftvmm}
export GUEST_KERNEL=${GUEST_KERNEL:-$repo/guest-images/out/bzImage}
export GUEST_INITRD=${GUEST_INITRD:-$repo/guest-images/out/initramfs.cpio.gz}

if [[ "${BENCH_INSIDE:-0}" != 1 ]]; then
	[[ -x "$FTVMM" ]] || make -C "$repo" >/dev/null
	[[ -f "$GUEST_KERNEL" && -f "$GUEST_INITRD" ]] || bash "$repo/guest-images/build.sh" >/dev/null
	zcat "$GUEST_INITRD" | cpio -it 2>/dev/null | grep -qE '^(\./)?bin/ftwork$' ||
		{ echo "ft bench: $GUEST_INITRD has no /bin/ftwork: rebuild it (guest-images/build.sh)" >&2; exit 1; }
	# built here: the test bed's root has no compiler (tests/testbed/rootfs.sh)
	export FT_BENCH_MEMCPY="$repo/build/bench-tools/ft-memcpy"
	mkdir -p "$(dirname "$FT_BENCH_MEMCPY")"
	gcc -O2 -o "$FT_BENCH_MEMCPY" "$here/ft-memcpy.c" || exit 1
	# ft/tls.c's priority string for the PSK links, for env.txt (cpp: not in the test bed either)
	FT_BENCH_TLS_PRIO=$({ grep -E '^#define PRIO_(CIPHERS|PSK)' "$repo/ft/tls.c"; echo PRIO_PSK; } | cpp -P 2>/dev/null |
		tail -n1 | sed -E 's/" *"//g; s/"//g' || true)
	export FT_BENCH_TLS_PRIO
	date=$(date -u +%Y%m%d-%H%M%S)
	export FTVMM_BENCH_RES="$repo/tests/bench/results/ft-$date"
	export FTVMM_BENCH_EPOCHS="$EPOCHS"
	mkdir -p "$FTVMM_BENCH_RES"
	t0=$(date +%s)
	echo "outer_load_before=$(cut -d' ' -f1-3 /proc/loadavg) ($(nproc) CPUs, shared with other work)" >"$FTVMM_BENCH_RES/env-outer.txt"
	if [[ "${ITEST_MODE:-auto}" == direct ]]; then
		BENCH_INSIDE=1 FT_BENCH_TLS="$TLS_MODES" FTVMM_BENCH_ENV="this machine's KVM ($(uname -r))" bash "$0" "$EPOCHS"
	else
		# the main part about 10 minutes, each TLS run (boot, protect, three workloads) 30-40 s: twice that
		nepochs=$(wc -w <<<"$EPOCHS") nmodes=$(wc -w <<<"$TLS_MODES")
		tmo=$(((TLS_ONLY == 1 ? 300 : 1500) + 80 * nmodes * TLS_REPS * nepochs))
		FTVMM_BENCH_ENV="nested test bed: qemu TCG -cpu max, 2 vCPUs, kvm-amd inside (nested SVM emulated)" \
			TESTBED_TIMEOUT=${TESTBED_TIMEOUT:-$tmo} TESTBED_LOG="$FTVMM_BENCH_RES/testbed.log" \
			TESTBED_PASSENV="FTVMM GUEST_KERNEL GUEST_INITRD BENCH_INSIDE FT_BENCH_QUICK FT_BENCH_TLS FT_BENCH_TLS_ONLY FT_BENCH_TLS_REPS FT_BENCH_GUEST_ARGS FT_BENCH_MEMCPY FT_BENCH_TLS_PRIO" \
			BENCH_INSIDE=1 FT_BENCH_TLS="$TLS_MODES" \
			"$repo/tests/testbed/run.sh" bash "$0" "$EPOCHS" || echo "ft bench: the test bed run failed ($?)" >&2
	fi
	echo "outer_load_after=$(cut -d' ' -f1-3 /proc/loadavg)" >>"$FTVMM_BENCH_RES/env-outer.txt"
	echo "ft bench: measured in $(($(date +%s) - t0)) s; analysing" >&2
	python3 "$here/ft-analyze.py" "$FTVMM_BENCH_RES"
	if (($(wc -l <"$FTVMM_BENCH_RES/runs.csv" 2>/dev/null || echo 0) <= 1)); then
		echo "ft bench: no main-part runs (FT_BENCH_TLS_ONLY=1?): no plots" >&2
	elif command -v gnuplot >/dev/null; then
		(cd "$FTVMM_BENCH_RES" && gnuplot "$here/ft-plots.gp") || echo "ft bench: gnuplot failed" >&2
	else
		echo "ft bench: no gnuplot (apt-get install gnuplot-nox): CSV only" >&2
	fi
	echo "ft bench: results in $FTVMM_BENCH_RES (results.md)"
	exit 0
fi

# ---------------------------------------------------------------------------------------------------------------
# inside: where /dev/kvm is
RES=$FTVMM_BENCH_RES
source "$repo/tests/integration/lib.sh"
source "$repo/tests/integration/ft_lib.sh"
IT_LOGDIR="$RES/logs" # (after lib.sh, which resets it)
mkdir -p "$IT_LOGDIR"
ft_setup
W=$FT_WORK
TAP=ftbench0
HOST_IP=198.51.100.1
GUEST_IP=198.51.100.2
QUICK=${FT_BENCH_QUICK:-0}
WL_TIMEOUT=90 # s: a workload takes 3-15 s; more means the guest is stuck
STUCK=0
{
	echo "env=${FTVMM_BENCH_ENV:-unknown}"
	echo "host_kernel=$(uname -r) $(grep -oE 'kvm_amd\.[a-z_]+=[^ ]+' /proc/cmdline | tr '\n' ' ')"
	echo "host_cpus=$(nproc)"
	echo "cpu=$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)"
	echo "guest_kernel=$(cat "$(dirname "$GUEST_KERNEL")/kernel-version" 2>/dev/null || echo '?')"
	echo "ftvmm=$FTVMM (${FTVMM_COMMIT:-$(cd "$repo" && git rev-parse --short HEAD 2>/dev/null || echo '?')})"
	echo "ftvmm_with=${FTVMM_WITH:-}"
	echo "ftvmm_with_run=${FTVMM_WITH_RUN:-}"
	echo "guest_args=${FT_BENCH_GUEST_ARGS:-}"
	echo "epochs=$FTVMM_BENCH_EPOCHS"
	echo "load_before=$(cut -d' ' -f1-3 /proc/loadavg)"
	if [[ -n "${TLS_MODES// /}" ]]; then
		echo "tls_modes=$TLS_MODES"
		echo "tls_reps=$TLS_REPS"
		echo "tls_only=$TLS_ONLY"
		# the cipher: ftvmm does not log what a session negotiated; both ends are ftvmm with ft/tls.c's priority
		# string, so the first suite it names is the one used. The string from the source, and GnuTLS's reading of it.
		prio=${FT_BENCH_TLS_PRIO:-}
		echo "tls_priority_psk=${prio:-?}"
		echo "tls_suites=$( (gnutls-cli -l --priority "$prio" 2>/dev/null || true) | awk '$NF == "TLS1.3" { printf "%s%s", n++ ? " " : "", $1 }')"
		echo "gnutls=$( (ldd "$FTVMM" 2>/dev/null || true) | awk '/libgnutls/ { print $3; exit }' | xargs -r readlink -f 2>/dev/null || echo '?')"
		echo "cpu_aes=$(grep -qw aes /proc/cpuinfo && echo yes || echo no)"
		echo "clk_tck=$(getconf CLK_TCK)"
	fi
} >"$RES/env.txt"

"${FT_BENCH_MEMCPY:?the memcpy probe is built outside the test bed}" 256 >"$RES/memcpy.csv"
ft_tap_up "$TAP" "$HOST_IP/24" || { echo "ft bench: cannot create TAP $TAP" >&2; exit 1; }

echo "epoch_ms,mode,workload,t_start,t_end,seconds,stats_from,stats_to,detail" >"$RES/runs.csv"
echo "epoch_ms,t_kill,t_reaped,t_takeover,t_tick,t_tcp,takeover_from,backup_pid,inside_ms" >"$RES/failover.csv"

# start NAME OUTFILE ERRFILE CMD...: background, stdout and stderr line-stamped, stdin from $W/NAME.in (a FIFO)
start() {
	local name="$1" out="$2" err="$3"
	shift 3
	local ofd="FD_$name" o
	if [[ -n "${!ofd:-}" ]]; then # an earlier process of that name: its FIFO's fd goes
		o=${!ofd}
		exec {o}>&-
	fi
	rm -f "$W/$name.in"
	mkfifo "$W/$name.in"
	exec {fd}<>"$W/$name.in"
	eval "FD_$name=$fd"
	"$@" <"$W/$name.in" > >(python3 "$here/ft-stamp.py" "$out") 2> >(python3 "$here/ft-stamp.py" "$err") &
	FT_PID[$name]=$!
}

# cmd NAME TEXT: type a line on the guest's console
cmd() {
	local fdv="FD_$1"
	printf '%s\n' "$2" >&"${!fdv}"
}

# wait_stamped FILE REGEX SECS -> prints the stamp of the first matching line (after the optional AFTER time)
wait_stamped() {
	local file="$1" re="$2" secs="$3" after="${4:-0}" end line
	end=$(($(date +%s) + secs))
	while (($(date +%s) <= end)); do
		line=$(awk -v a="$after" -v re="$re" '$1 > a && $0 ~ re { print $1; exit }' "$file" 2>/dev/null || true)
		[[ -n "$line" ]] && { echo "$line"; return 0; }
		sleep 0.05
	done
	return 1
}

nstats() { [[ -f "$1" ]] && wc -l <"$1" || echo 0; }

# workload EPOCH MODE NAME GUESTCMD: run one workload on the console of "p"; record its window
workload() {
	local epoch="$1" mode="$2" name="$3" gcmd="$4" stats="$RES/stats-$1.jsonl" s0 s1 t0 t1 detail=""
	local tag="W$RANDOM"
	s0=$(nstats "$stats")
	t0=$(ft_now)
	if [[ "$name" == rr ]]; then
		cmd p "nc -l -p 7000 -e cat; echo BENCH-DONE-\$((1+1))-$tag"
		sleep 1
		python3 "$here/ft-rr.py" "$GUEST_IP" 7000 $((QUICK ? 3 : 6)) >"$IT_LOGDIR/rr-$epoch-$mode.log" 2>&1 || true
		detail=$(tail -n1 "$IT_LOGDIR/rr-$epoch-$mode.log")
	else
		cmd p "$gcmd; echo BENCH-DONE-\$((1+1))-$tag rc=\$?"
	fi
	if ! t1=$(wait_stamped "$W/p.console" "BENCH-DONE-2-$tag" "$WL_TIMEOUT" "$t0"); then
		echo "ft bench: $name ($mode, epoch $epoch) did not finish in $WL_TIMEOUT s: the guest is stuck" >&2
		t1=$(ft_now)
		detail="STUCK after ${WL_TIMEOUT}s $detail"
		STUCK=1
	fi
	if [[ "$name" == disk ]]; then
		detail=$(awk -v a="$t0" '$1 > a && /BLKBENCH/ { sub(/.*BLKBENCH/, "BLKBENCH"); print; exit }' "$W/p.console" || true)
	fi
	sleep 0.3 # the last epochs' acks reach the stats file
	s1=$(nstats "$stats")
	printf '%s,%s,%s,%s,%s,%s,%s,%s,"%s"\n' "$epoch" "$mode" "$name" "$t0" "$t1" \
		"$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.3f", b - a }')" "$s0" "$s1" "$detail" >>"$RES/runs.csv"
	echo "  [$(date +%T)] epoch $epoch $mode $name: $(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.2f", b - a }') s $detail" >&2
}

all_workloads() {
	local epoch="$1" mode="$2" w
	# sizes: about 3 s each with FT off in the test bed
	local n256=$((QUICK ? 100 : 800)) n2048=$((QUICK ? 10 : 75)) n8192=$((QUICK ? 2 : 10))
	local -a wls=(
		"idle|sleep $((QUICK ? 3 : 6))"
		"cpu|awk 'BEGIN { for (i = 0; i < $((QUICK ? 100000 : 600000)); i++) s += i * i }'"
		"mem256|ftwork --pages 256 --interval-ms 0 --count $n256 >/dev/null"
		"mem2048|ftwork --pages 2048 --interval-ms 0 --count $n2048 >/dev/null"
		"mem8192|ftwork --pages 8192 --interval-ms 0 --count $n8192 >/dev/null"
		"memhot2048|ftwork --pages 2048 --hot-words 16 --interval-ms 0 --count $n2048 >/dev/null"
		"disk|blkbench seqwrite /dev/vda $((QUICK ? 16 : 64))M -b 256K"
		"rr|")
	for w in "${wls[@]}"; do
		((STUCK)) && break # a stuck guest (seen: a lost interrupt under frequent checkpoints) ends this epoch's runs
		workload "$epoch" "$mode" "${w%%|*}" "${w#*|}"
	done
}

# main_epoch EPOCH: every workload FT off and on, then the failover, on one guest
main_epoch() {
	local epoch="$1" tp tport t_kill t_reaped t_take t_tick t_tcp from inside
	echo "ft bench: epoch $epoch ms" >&2
	STUCK=0
	truncate -s 64M "$W/p.img" "$W/b.img"
	rm -f "$W/p.console" "$W/b.console"
	start p "$W/p.console" "$W/p.err" "$FTVMM" run --kernel "$GUEST_KERNEL" --initrd "$GUEST_INITRD" --mem 256M --cpus 2 \
		--disk "$W/p.img" --net "tap=$TAP" --control "$W/p.sock" --epoch "$epoch" --ft-timeout 10000 \
		--stats "$RES/stats-$epoch.jsonl" --cmdline "console=ttyS0 panic=-1 quiet ftvmm.noreboot${FT_BENCH_GUEST_ARGS:+ $FT_BENCH_GUEST_ARGS}"
	if ! wait_stamped "$W/p.console" FTVMM-GUEST-DONE 300 >/dev/null; then
		echo "ft bench: the guest did not boot (epoch $epoch)" >&2
		ft_kill p
		return 0
	fi
	sleep 2
	cmd p "ip addr add $GUEST_IP/24 dev eth0; ip link set eth0 up; stty -echo"
	sleep 2
	all_workloads "$epoch" off
	# pair with a backup
	ft_port
	start b "$W/b.console" "$W/b.err" "$FTVMM" backup --listen "127.0.0.1:$FT_PORT" --disk "$W/b.img" --net "tap=$TAP" \
		--control "$W/b.sock" --ft-timeout 10000
	wait_stamped "$W/b.err" 'listening on' 30 >/dev/null || true
	tp=$(ft_now)
	ft_ctl "$W/p.sock" protect "127.0.0.1:$FT_PORT" >&2
	if ! ft_wait_status "$W/p.sock" 'protected=yes' 300; then
		echo "ft bench: never protected (epoch $epoch): $FT_LAST_STATUS" >&2
		ft_kill p
		ft_kill b
		return 0
	fi
	echo "epoch=$epoch protect_s=$(awk -v a="$tp" -v b="$(ft_now)" 'BEGIN { printf "%.2f", b - a }')" >>"$RES/protect.txt"
	all_workloads "$epoch" on
	if ((STUCK)); then
		echo "ft bench: epoch $epoch: guest stuck; no failover measurement" >&2
		ft_ctl "$W/p.sock" status >&2
		tail -c 1200 "$W/p.console" | sed 's/^/  | /' >&2
		cp "$W/p.console" "$IT_LOGDIR/p-$epoch.console"
		ft_kill p
		ft_kill b
		return 0
	fi
	# failover: ftwork ticking with a TCP stream, then kill -9 the primary
	ft_port
	tport=$FT_PORT
	rm -f "$W/tcp.log"
	ft_bg tcp python3 "$repo/tests/integration/ft_tcpcheck.py" --listen "$HOST_IP:$tport" --log "$W/tcp.log"
	sleep 1
	cmd p "ftwork --pages 64 --interval-ms 20 --tcp $HOST_IP:$tport --count 10000000 &"
	for _ in $(seq 300); do
		n=$(grep -c '^seq ' "$W/tcp.log" 2>/dev/null) || true # (no file yet: empty)
		((${n:-0} >= 30)) && break
		sleep 0.1
	done
	ft_wait_status "$W/p.sock" 'protected=yes' 30 || true
	t_kill=$(ft_now)
	kill -9 "${FT_PID[p]}"
	wait "${FT_PID[p]}" 2>/dev/null || true
	t_reaped=$(ft_now)
	unset "FT_PID[p]"
	t_take=$(wait_stamped "$W/b.err" 'taking over from epoch' 60 "$t_kill" || echo "")
	t_tick=$(wait_stamped "$W/b.console" 'FTWORK seq=' 60 "$t_kill" || echo "")
	t_tcp=""
	for _ in $(seq 300); do
		# after the takeover line: before it, seqs can still come from the dying primary's last released packets
		t_tcp=$(awk -v a="${t_take:-$t_kill}" '$1 == "seq" && $3 > a { print $3; exit }' "$W/tcp.log" 2>/dev/null || true)
		[[ -n "$t_tcp" ]] && break
		sleep 0.1
	done
	# (b.err is stamped and kept across epoch settings: only the lines after this kill)
	from=$(awk -v a="$t_kill" '$1 > a' "$W/b.err" | sed -nE 's/.*taking over from epoch ([0-9]+).*/\1/p' | head -n1)
	# ftvmm's own figure: from the backup seeing the loss to its restored vCPUs running
	inside=$(awk -v a="$t_kill" '$1 > a' "$W/b.err" | sed -nE 's/.*restore: guest running ([0-9.]+) ms after.*/\1/p' | head -n1)
	echo "$epoch,$t_kill,$t_reaped,$t_take,$t_tick,$t_tcp,$from,${FT_PID[b]},$inside" >>"$RES/failover.csv"
	echo "  failover (epoch $epoch): takeover +$(awk -v a="$t_kill" -v b="${t_take:-0}" 'BEGIN { printf "%.2f", b - a }') s," \
		"tick +$(awk -v a="$t_kill" -v b="${t_tick:-0}" 'BEGIN { printf "%.2f", b - a }') s," \
		"tcp +$(awk -v a="$t_kill" -v b="${t_tcp:-0}" 'BEGIN { printf "%.2f", b - a }') s" >&2
	grep -a 'FTWORK.*BAD' "$W/b.console" >&2 || true
	ft_kill b
	ft_kill tcp 15
	cp "$W/p.console" "$IT_LOGDIR/p-$epoch.console"
	cp "$W/b.console" "$IT_LOGDIR/b-$epoch.console"
	cp "$W/p.err" "$IT_LOGDIR/p-$epoch.err"
	cp "$W/b.err" "$IT_LOGDIR/b-$epoch.err"
	cp "$W/tcp.log" "$IT_LOGDIR/tcp-$epoch.log"
}
# ---- TLS on and off ------------------------------------------------------------------------------------------
CLK_TCK=$(getconf CLK_TCK)

# cpu_ms PID -> "TOTAL VCPU": the process's utime+stime in ms (its exited threads included), and that of its threads
# named vcpuN (the guest's own execution); "? ?" when PID is gone. Bash only: no program started per sample.
cpu_ms() {
	local pid="$1" line rest comm f total=0 vcpu=0
	local -a a
	if ! read -r line 2>/dev/null <"/proc/$pid/stat"; then
		echo "? ?"
		return 0
	fi
	rest=${line##*) }
	read -ra a <<<"$rest"
	total=$((a[11] + a[12]))
	for f in /proc/"$pid"/task/*/stat; do
		read -r line 2>/dev/null <"$f" || continue
		comm=${line#*(}
		comm=${comm%)*}
		[[ "$comm" == vcpu* ]] || continue
		rest=${line##*) }
		read -ra a <<<"$rest"
		vcpu=$((vcpu + a[11] + a[12]))
	done
	echo "$((total * 1000 / CLK_TCK)) $((vcpu * 1000 / CLK_TCK))"
}

# tls_workload EPOCH MODE ROUND NAME PAGES COUNT STATS: one memN workload on "p" (FT on), with its --stats lines,
# the wall time and both processes' CPU time sampled together before and after
tls_workload() {
	local epoch="$1" mode="$2" round="$3" name="$4" pages="$5" count="$6" stats="$7" tag="T$RANDOM"
	local w0 w1 s0 s1 t0 t1 p0 p1 b0 b1 rc detail=""
	w0=$(ft_now)
	s0=$(nstats "$stats")
	p0=$(cpu_ms "${FT_PID[p]}")
	b0=$(cpu_ms "${FT_PID[b]}")
	t0=$(ft_now)
	cmd p "ftwork --pages $pages --interval-ms 0 --count $count >/dev/null; echo BENCH-DONE-\$((1+1))-$tag rc=\$?"
	if ! t1=$(wait_stamped "$W/p.console" "BENCH-DONE-2-$tag" "$WL_TIMEOUT" "$t0"); then
		echo "ft bench: $name (FT on, TLS $mode, epoch $epoch) did not finish in $WL_TIMEOUT s: the guest is stuck" >&2
		t1=$(ft_now)
		detail="STUCK after ${WL_TIMEOUT}s"
		STUCK=1
	fi
	sleep 0.3 # the last epochs' acks reach the stats file
	w1=$(ft_now)
	s1=$(nstats "$stats")
	p1=$(cpu_ms "${FT_PID[p]}")
	b1=$(cpu_ms "${FT_PID[b]}")
	rc=$(tr -d '\r' <"$W/p.console" | awk -v t="BENCH-DONE-2-$tag" '$0 ~ t { sub(/.*rc=/, ""); print $1; exit }' || true)
	printf '%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,"%s"\n' "$epoch" "$mode" "$round" "$name" \
		"$pages" "$count" "$t0" "$t1" "$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.3f", b - a }')" "$w0" "$w1" \
		"$(basename "$stats")" "$s0" "$s1" "${p0% *}" "${p0#* }" "${p1% *}" "${p1#* }" "${b0% *}" "${b1% *}" \
		"${rc:-?}" "$detail" >>"$RES/tls-runs.csv"
	echo "  [$(date +%T)] epoch $epoch TLS $mode round $round $name: $(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.2f", b - a }') s," \
		"$((s1 - s0)) epochs, CPU ms primary $(awk -v a="${p0% *}" -v b="${p1% *}" 'BEGIN { print b - a }')" \
		"backup $(awk -v a="${b0% *}" -v b="${b1% *}" 'BEGIN { print b - a }') $detail" >&2
}

# tls_run EPOCH MODE ROUND: a fresh guest started in that TLS mode, protected by a fresh backup in the same mode,
# the memN workloads with FT on; then both killed (backup first: no takeover)
tls_run() {
	local epoch="$1" mode="$2" round="$3" name="tls-$1-$2-$3" stats ts tp w
	local -a targs=()
	stats="$RES/stats-$name.jsonl"
	if [[ "$mode" == psk ]]; then targs=(--tls-psk "$W/ft.psk"); fi
	STUCK=0
	truncate -s 64M "$W/p.img" "$W/b.img"
	rm -f "$W/p.console" "$W/b.console"
	ts=$(ft_now)
	start p "$W/p.console" "$W/p.err" "$FTVMM" run --kernel "$GUEST_KERNEL" --initrd "$GUEST_INITRD" --mem 256M --cpus 2 \
		--disk "$W/p.img" --net "tap=$TAP" --control "$W/p.sock" --epoch "$epoch" --ft-timeout 10000 \
		--stats "$stats" "${targs[@]}" --cmdline "console=ttyS0 panic=-1 quiet ftvmm.noreboot${FT_BENCH_GUEST_ARGS:+ $FT_BENCH_GUEST_ARGS}"
	if ! wait_stamped "$W/p.console" FTVMM-GUEST-DONE 300 >/dev/null; then
		echo "ft bench: the guest did not boot (epoch $epoch, TLS $mode, round $round)" >&2
		echo "epoch=$epoch tls=$mode round=$round failed=boot" >>"$RES/tls-protect.txt"
		ft_kill p
		cp "$W/p.console" "$IT_LOGDIR/$name-p.console" 2>/dev/null || true
		return 0
	fi
	sleep 2
	cmd p "stty -echo"
	sleep 1
	ft_port
	start b "$W/b.console" "$W/b.err" "$FTVMM" backup --listen "127.0.0.1:$FT_PORT" --disk "$W/b.img" --net "tap=$TAP" \
		--control "$W/b.sock" --ft-timeout 10000 "${targs[@]}"
	wait_stamped "$W/b.err" 'listening on' 30 "$ts" >/dev/null || true
	tp=$(ft_now)
	ft_ctl "$W/p.sock" protect "127.0.0.1:$FT_PORT" >&2
	if ! ft_wait_status "$W/p.sock" 'protected=yes' 300; then
		echo "ft bench: never protected (epoch $epoch, TLS $mode, round $round): $FT_LAST_STATUS" >&2
		echo "epoch=$epoch tls=$mode round=$round failed=protect" >>"$RES/tls-protect.txt"
		awk -v a="$ts" '$1 > a' "$W/p.err" "$W/b.err" | tail -n 6 >&2 || true
		ft_kill b
		ft_kill p
		awk -v a="$ts" '$1 > a' "$W/p.err" >"$IT_LOGDIR/$name-p.err" || true
		awk -v a="$ts" '$1 > a' "$W/b.err" >"$IT_LOGDIR/$name-b.err" || true
		return 0
	fi
	echo "epoch=$epoch tls=$mode round=$round protect_s=$(awk -v a="$tp" -v b="$(ft_now)" 'BEGIN { printf "%.2f", b - a }')" \
		>>"$RES/tls-protect.txt"
	sleep 1
	for w in "mem256 256 100" "mem2048 2048 10" "mem8192 8192 2"; do
		((STUCK)) && break
		# shellcheck disable=SC2086 # three words: name, pages, ticks
		tls_workload "$epoch" "$mode" "$round" $w "$stats"
	done
	ft_ctl "$W/p.sock" status >"$IT_LOGDIR/$name.status"
	ft_kill b
	ft_kill p
	cp "$W/p.console" "$IT_LOGDIR/$name-p.console" || true
	awk -v a="$ts" '$1 > a' "$W/p.err" >"$IT_LOGDIR/$name-p.err" || true
	awk -v a="$ts" '$1 > a' "$W/b.err" >"$IT_LOGDIR/$name-b.err" || true
}

# tls_epoch EPOCH: the rounds, the modes interleaved within each
tls_epoch() {
	local epoch="$1" r m
	echo "ft bench: epoch $epoch ms: TLS $TLS_MODES, $TLS_REPS rounds" >&2
	for r in $(seq "$TLS_REPS"); do
		for m in $TLS_MODES; do
			tls_run "$epoch" "$m" "$r"
		done
	done
}

if [[ -n "${TLS_MODES// /}" ]]; then
	echo "epoch_ms,tls,round,workload,pages,count,t_start,t_end,seconds,w_start,w_end,stats_file,stats_from,stats_to,p_cpu0_ms,p_vcpu0_ms,p_cpu1_ms,p_vcpu1_ms,b_cpu0_ms,b_cpu1_ms,rc,detail" \
		>"$RES/tls-runs.csv"
	if [[ " $TLS_MODES " == *" psk "* ]]; then
		rm -f "$W/ft.psk"
		if command -v psktool >/dev/null; then
			(umask 077 && psktool -u ftvmm -p "$W/ft.psk" >/dev/null)
		else # psktool's format, without it: IDENTITY:HEX-KEY, 32 bytes
			(umask 077 && printf 'ftvmm:%s\n' "$(od -An -tx1 -N32 /dev/urandom | tr -d ' \n')" >"$W/ft.psk")
		fi
		chmod 600 "$W/ft.psk"
	fi
fi

for epoch in $FTVMM_BENCH_EPOCHS; do
	[[ "$TLS_ONLY" == 1 ]] || main_epoch "$epoch"
	[[ -z "${TLS_MODES// /}" ]] || tls_epoch "$epoch"
done
echo "load_after=$(cut -d' ' -f1-3 /proc/loadavg)" >>"$RES/env.txt"
echo "ft bench: done" >&2

#!/usr/bin/env bash
# tests/bench/soak.sh - fault-tolerance soak in the failure lab (tests/lab/lab.sh): hundreds of failures of mixed kinds
# at random moments on ONE protected guest, each verified and followed by re-protection; or (TIMING=1) failover timing
# by phase for several --ft-timeout values. Not CI: a benchmark-style run whose results go to
# tests/bench/results/soak-<UTC stamp>/ (timing: soak-timing-<UTC stamp>/).
#
# Runs INSIDE the nested test bed (root, /dev/kvm, network namespaces), from the repository root:
#   quick check:  TESTBED_TIMEOUT=1500 tests/testbed/run.sh env SOAK_N=10 bash tests/bench/soak.sh
#   full soak:    TESTBED_TIMEOUT=5400 tests/testbed/run.sh bash tests/bench/soak.sh
#   timing:       TESTBED_TIMEOUT=2400 tests/testbed/run.sh env TIMING=1 bash tests/bench/soak.sh
# (run.sh passes only FTVMM_* variables and those in TESTBED_PASSENV into the test bed: hence `env VAR=...` inside the
# command; FTVMM_SOAK_N etc. work too.) It refuses to run outside the test bed unless SOAK_ANYWHERE=1 (a host with
# hardware KVM). It stops injecting TESTBED_TIMEOUT - SOAK_MARGIN (240) s after its start, so the report is always
# written before the test bed's timeout.
#
# The lab (as in tests/integration/t_lab.sh, whose tested pieces are copied here): hosts a and b run ftvmm, c runs
# the client ft_tcpcheck.py --chain. The guest (160M, 2 vCPUs) boots on a running ftwork (512 pages a tick every
# 50 ms, O_DSYNC disk records, DMA-read pages, per-CPU timers, one chained TCP stream to the client) and is protected
# by a backup on b. Then SOAK_N failures; the kinds are dealt from a shuffled deck (every kind once per round), each
# injected at a random moment (0..SOAK_JITTER_MS after a tick under protection):
#   host-crash    lab_crash of the primary's host (links silent, then every process killed). Verified: the backup
#                 takes over on silence ("no heartbeat from the primary", not before --ft-timeout - 250 ms), from an
#                 epoch >= the last one acked; the crashed host comes back fresh (lab_revive) and runs the next backup.
#   kill9         kill -9 of the primary's ftvmm (its host lives: the kernel closes its sockets). Verified: the backup
#                 takes over (its reason is recorded), from an epoch >= the last acked; the next backup on that host.
#   sigterm       SIGTERM to the primary's ftvmm: a planned failover. Verified: it says "planned failover: last epoch
#                 N committed" and exits; the backup takes over from epoch N exactly; the next backup on that host.
#   freeze        lab_freeze of the primary's host (SIGSTOP; its kernel still ACKs) until the backup takes over on
#                 silence, then lab_thaw. Verified as host-crash, and: the thawed old primary exits 1 saying it was
#                 "frozen longer than the N ms timeout" and is "stopping this copy", never "continues UNPROTECTED",
#                 and writes no frame into its TAP from the thaw to its exit; the next backup on that host.
#   backup-crash  lab_crash of the backup's host. Verified: the primary says "backup lost (no heartbeat from the
#                 backup...): guest continues UNPROTECTED", status protected=no link=down, the guest never stops
#                 ticking, the held output goes out; the host comes back fresh and `ctl protect` pairs a new backup.
#   link-blip     the primary's replication link cut both ways for SOAK_BLIP_MS (default --ft-timeout / 5), then
#                 healed: below the timeout, so NO takeover and no loss: watched for --ft-timeout + 2 s after the heal
#                 (backup alive, never "taking over", primary never "UNPROTECTED"), then protected=yes on both
#                 sides, epochs commit again, the blackhole qdiscs dropped packets (else the blip proved nothing).
#                 (A cut with both sides alive past the timeout is a partition, the arbiter's business: not done.)
# After every takeover kind: the guest goes on on the survivor (a tick line within 60 s, no BAD, the first tick at
# most 2 after the last complete one on the old copy), the client's stream has 3 new lines after the takeover with no
# gap, repeat, reset or SPLICE (ft_tcpcheck.py --chain). After every kind: re-protection ("guest is PROTECTED" again
# on the survivor). Every SOAK_RECORDS_EVERY (25) failures and at the end: ft_records.py on the survivor's disk (an
# unbroken prefix of ftwork's records with the sums every console printed, no BAD, timers advancing) -> checks.csv.
# Between failures the state is checked (both copies run, protected=yes, ticks, no new stream problem): anything
# found there happened with nothing injected (a "spontaneous" row, e.g. a false takeover from a test-bed stall).
# A failed check does not stop the soak: the state is repaired (the running copy kept, the other host revived, a
# fresh backup); only a guest with no running copy, a dead stream or no ticks is rebooted (a "reboot" row: a soak
# failure too; at most SOAK_MAX_REBOOTS (3), then the soak stops).
#
# TIMING=1: for each --ft-timeout in TIMING_TIMEOUTS ("300 1000 2000" ms), TIMING_N (10) host crashes of the primary
# (verified as above), each one's phases in timing.csv: from the crash to the backup's "taking over from epoch" line
# (silence detected, takeover decided), to its "restore: guest running" line (vCPUs running) and ftvmm's own figure
# on that line (from the loss seen to vCPUs running), to the guest's next tick line on the survivor's console, to the
# client's first seq received after the takeover (ft_tcpcheck's own time stamp), to re-protection. ftvmm's stderr
# has no time stamps: a line's time is when this script's follower (every 20 ms, no process started per poll) first
# read it. One guest for all settings: a new setting replaces the backup with one started with the new timeout (the
# survivor of a crash keeps its own backup-side --ft-timeout as its primary timeout). False takeovers: the
# "spontaneous" rows of each setting.
#
# Results: env.txt (test bed, qemu, kernels, ftvmm commit, settings), events.csv (one row per failure and per
# unplanned event), checks.csv (disk record checks), timing.csv (TIMING=1), summary.md computed from them by
# tests/bench/soak-report.py, progress.log, fail-<row>/ (log tails of each failed row), logs.tar.gz (every console,
# stderr and the client's log).
# Env: SOAK_N=200  SOAK_TIMEOUT=1000 (--ft-timeout, ms)  SOAK_KINDS="host-crash kill9 sigterm freeze backup-crash
#      link-blip"  SOAK_BLIP_MS  SOAK_JITTER_MS=1000  SOAK_RECORDS_EVERY=25 (0: at the end only)  SOAK_SEED (random)
#      SOAK_EPOCH=25 (--epoch, ms)  SOAK_DISK_MB=32 (its record area must hold every tick of the run: ~7 a second
#      here)  SOAK_MAX_REBOOTS=3  SOAK_MARGIN=240  SOAK_RES (results directory)  TIMING=0  TIMING_N=10
#      TIMING_TIMEOUTS="300 1000 2000"; FTVMM, GUEST_KERNEL, GUEST_INITRD (default build/, guest-images/out/).
#      Each also as FTVMM_<name> (passes into the test bed by itself).
set -euo pipefail
export LC_ALL=C
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/../.." && pwd)
itest="$repo/tests/integration"
export FTVMM=${FTVMM:-$repo/build/ftvmm}
export GUEST_KERNEL=${GUEST_KERNEL:-$repo/guest-images/out/bzImage}
export GUEST_INITRD=${GUEST_INITRD:-$repo/guest-images/out/initramfs.cpio.gz}

# opt NAME DEFAULT: $NAME, else $FTVMM_NAME, else DEFAULT
opt() {
	local v="${!1:-}" f="FTVMM_$1"
	[[ -n "$v" ]] || v="${!f:-}"
	echo "${v:-$2}"
}
TIMING=$(opt TIMING 0)
N=$(opt SOAK_N 200)
SOAK_TMO=$(opt SOAK_TIMEOUT 1000)
KINDS=$(opt SOAK_KINDS "host-crash kill9 sigterm freeze backup-crash link-blip")
JITTER_MS=$(opt SOAK_JITTER_MS 1000)
RECORDS_EVERY=$(opt SOAK_RECORDS_EVERY 25)
SEED=$(opt SOAK_SEED $((($(date +%s) ^ $$) % 32768)))
EPOCH=$(opt SOAK_EPOCH 25)
DISK_MB=$(opt SOAK_DISK_MB 32)
MAX_REBOOTS=$(opt SOAK_MAX_REBOOTS 3)
MARGIN=$(opt SOAK_MARGIN 240)
TIMING_N=$(opt TIMING_N 10)
TIMING_TIMEOUTS=$(opt TIMING_TIMEOUTS "300 1000 2000")
BLIP_OPT=$(opt SOAK_BLIP_MS "")
GUEST_MEM=160M
DISK_SIZE=$((DISK_MB << 20))
PY=python3
BK_PORT=7000  # backup N listens on BK_PORT+N: never a port an earlier process on that host held
TCP_PORT=7100 # guest generation G streams to TCP_PORT+G

die() {
	echo "soak: $*" >&2
	exit 1
}
if [[ ! -f /run/testbed/cmd.sh && "$(opt SOAK_ANYWHERE 0)" != 1 ]]; then
	die "runs inside the nested test bed: tests/testbed/run.sh env SOAK_N=10 bash tests/bench/soak.sh (SOAK_ANYWHERE=1: here)"
fi
((EUID == 0)) || die "needs root (network namespaces)"
[[ -c /dev/kvm ]] || die "no /dev/kvm"
[[ -x "$FTVMM" ]] || die "no ftvmm at $FTVMM (make)"
[[ -f "$GUEST_KERNEL" && -f "$GUEST_INITRD" ]] || die "no guest images (guest-images/build.sh)"
if [[ "$TIMING" != 1 ]]; then
	for k in $KINDS; do
		case "$k" in host-crash | kill9 | sigterm | freeze | backup-crash | link-blip) ;; *) die "unknown kind '$k'" ;; esac
	done
fi
ftwork_name=$(zcat "$GUEST_INITRD" | cpio -it 2>/dev/null | grep -m1 -E '^(\./)?bin/ftwork$' || true)
if [[ -z "$ftwork_name" ]] ||
	(($(zcat "$GUEST_INITRD" | cpio -i --quiet --to-stdout "$ftwork_name" 2>/dev/null | grep -ac -- '--tcp-chain' || true) == 0)); then
	die "$GUEST_INITRD lacks bin/ftwork with --tcp-chain: rebuild it (guest-images/build.sh)"
fi

source "$itest/lib.sh"
source "$itest/ft_lib.sh"
source "$repo/tests/lab/lab.sh"

T_START=$(date +%s)
DEADLINE=$((T_START + ${TESTBED_TIMEOUT:-1500} - MARGIN))
stamp=$(date -u +%Y%m%d-%H%M%S)
if [[ "$TIMING" == 1 ]]; then RES=$(opt SOAK_RES "$repo/tests/bench/results/soak-timing-$stamp"); else RES=$(opt SOAK_RES "$repo/tests/bench/results/soak-$stamp"); fi
mkdir -p "$RES"
RANDOM=$SEED

ft_setup
W=$FT_WORK
LAB_DIR="$W/lab"
LAB_LOG="$W/logs"
mkdir -p "$LAB_LOG"
mkfifo "$W/sleep.fifo"
exec {SLEEPFD}<>"$W/sleep.fifo" # read -t on it: a sleep without a process

say() { ft_log "$*" | tee -a "$RES/progress.log"; }

# ---- the results' files ----------------------------------------------------------------------------------------
TMO=$SOAK_TMO
[[ "$TIMING" == 1 ]] && TMO=${TIMING_TIMEOUTS%% *}
BLIP_MS=${BLIP_OPT:-$((SOAK_TMO / 5))}
{
	echo "mode=$([[ "$TIMING" == 1 ]] && echo timing || echo soak)"
	echo "date_utc=$stamp"
	if [[ "$TIMING" == 1 ]]; then
		echo "timing_timeouts_ms=$TIMING_TIMEOUTS"
		echo "timing_n=$TIMING_N"
	else
		echo "n=$N"
		echo "ft_timeout_ms=$SOAK_TMO"
		echo "kinds=$KINDS"
		echo "blip_ms=$BLIP_MS"
		echo "jitter_ms=$JITTER_MS"
		echo "records_every=$RECORDS_EVERY"
	fi
	echo "seed=$SEED"
	echo "epoch_ms=$EPOCH"
	echo "guest=$GUEST_MEM, 2 vCPUs, disk ${DISK_MB} MiB; ftwork --pages 512 --interval-ms 50 --disk --dma-pages 16 --tcp --tcp-chain --timers"
	echo "guest_kernel=$(cat "$(dirname "$GUEST_KERNEL")/kernel-version" 2>/dev/null || echo '?')"
	echo "where=$([[ -f /run/testbed/cmd.sh ]] && echo "nested test bed (qemu TCG, nested SVM)" || echo "this machine's KVM")"
	echo "testbed_kernel=$(uname -r)"
	echo "testbed_cmdline=$(cat /proc/cmdline)"
	echo "testbed_cpus=$(nproc) ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs))"
	echo "testbed_mem_kib=$(awk '/MemTotal/ { print $2 }' /proc/meminfo)"
	echo "testbed_timeout_s=${TESTBED_TIMEOUT:-?}"
	echo "qemu=$(qemu-system-x86_64 --version 2>/dev/null | head -n1 || echo '?') (the outer machine's, running the test bed)"
	echo "outer_host=$(cat /etc/hostname 2>/dev/null || echo '?')"
	echo "ftvmm_commit=$(git -c safe.directory='*' -C "$repo" rev-parse HEAD 2>/dev/null || echo '?')$(
		[[ -n "$(git -c safe.directory='*' -C "$repo" status --porcelain --untracked-files=no 2>/dev/null)" ]] && echo ' (work tree modified)')"
	echo "ftvmm_binary=$FTVMM sha256 $(sha256sum "$FTVMM" | cut -c1-16) built $(date -u -r "$FTVMM" +%Y-%m-%dT%H:%M:%SZ)"
	echo "netem=$(lsmod 2>/dev/null | grep -q sch_netem && echo loaded || echo no)"
	echo "load_before=$(cut -d' ' -f1-3 /proc/loadavg)"
} >"$RES/env.txt"
EV_CSV="$RES/events.csv"
echo "row,failure,kind,injected,ft_timeout_ms,t_inject,utc,primary,primary_host,backup,backup_host,survivor,detect_ms,running_ms,inside_ms,tick_ms,tcp_ms,reprotect_ms,acked_epoch,from_epoch,verdict,verified,reason" >"$EV_CSV"
echo "check,after_failure,t,generation,survivor,result,detail" >"$RES/checks.csv"
[[ "$TIMING" == 1 ]] &&
	echo "ft_timeout_ms,crash,row,t_crash,detect_ms,running_ms,inside_ms,tick_ms,tcp_ms,reprotect_ms,verified" >"$RES/timing.csv"

finished=0
finish() {
	((finished)) && return 0
	finished=1
	set +e
	echo "load_after=$(cut -d' ' -f1-3 /proc/loadavg)" >>"$RES/env.txt"
	echo "wall_s=$(($(date +%s) - T_START))" >>"$RES/env.txt"
	[[ -n "${ABORT:-}" ]] && echo "aborted=$ABORT" >>"$RES/env.txt"
	if [[ -n "${TC:-}" && -n "${LAB_PID[$TC]:-}" ]]; then
		lab_kill "$TC" TERM # (its summary line into its log)
		say "client ($TC): $(grep -a '^summary' "$TCPLOG" | tail -n1)"
	fi
	lab_teardown
	FT_PID=()
	tar -czf "$RES/logs.tar.gz" -C "$W" logs 2>/dev/null || echo "soak: cannot save the logs" >&2
	"$PY" "$here/soak-report.py" "$RES" || echo "soak: soak-report.py failed" >&2
	ft_cleanup
}
trap finish EXIT

# ---- helpers (copied from t_lab.sh, some extended) ---------------------------------------------------------------
kargs=(--kernel "$GUEST_KERNEL" --initrd "$GUEST_INITRD")
ms() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.0f", (b - a) * 1000 }'; }
other() { if [[ "$1" == a ]]; then echo b; else echo a; fi; }
declare -A HOST_OF=() DISK=() BADSEEN=()
ERRS=()
err() { ERRS+=("$*"); }

# lbg HOST NAME CMD...: lab_bg, and the same process known to ft_lib's waits (ft_wait_line ... NAME, ft_alive)
lbg() {
	lab_bg "$@"
	FT_PID[$2]=${LAB_PID[$2]} FT_O[$2]=${LAB_OUT[$2]} FT_E[$2]=${LAB_ERR[$2]}
	HOST_OF[$2]=$1
}

# host_gone HOST: lab_crash / lab_revive killed and reaped every process of HOST: forget their pids (may be reused)
# and the disks of those that are not the current primary
host_gone() {
	local n
	for n in "${!HOST_OF[@]}"; do
		[[ "${HOST_OF[$n]}" == "$1" ]] || continue
		unset "FT_PID[$n]" "LAB_PID[$n]"
		[[ "$n" == "${cur:-}" || -z "${DISK[$n]:-}" ]] || rm -f "${DISK[$n]}"
	done
}

# ended NAME: NAME's process ended and was reaped (ft_wait_exit / lab_kill): forget its pids, drop its disk
ended() {
	unset "FT_PID[$1]" "LAB_PID[$1]"
	[[ "$1" == "${cur:-}" || -z "${DISK[$1]:-}" ]] || rm -f "${DISK[$1]}"
}

# stderr_tail NAME: its last lines on stderr, on one line (less FTVMM_DEBUG's register dumps)
stderr_tail() {
	[[ -n "$1" && -n "${FT_E[$1]:-}" ]] || return 0
	grep -avE '^ |vcpu [0-9]+ registers' "${FT_E[$1]}" 2>/dev/null | tail -n 2 | tr '\n' ' ' || true
}

# tap_frames HOST: frames ftvmm wrote into HOST's TAP (its rx_packets)
tap_frames() { lab_exec "$1" cat "/sys/class/net/$LAB_TAP/statistics/rx_packets" 2>/dev/null || echo "?"; }

# new_bad NAME: NEWBAD = the BAD lines NAME's console printed since the last call (one line; "" none)
new_bad() {
	local n
	NEWBAD=""
	[[ -n "$1" && -n "${FT_O[$1]:-}" ]] || return 0
	n=$(ft_count "${FT_O[$1]}" 'FTWORK.* BAD ')
	((n > ${BADSEEN[$1]:-0})) || return 0
	NEWBAD=$(grep -a 'FTWORK.* BAD ' "${FT_O[$1]}" | tail -n +$((${BADSEEN[$1]:-0} + 1)) | head -n 2 | tr -d '\r' | tr '\n' ' ')
	BADSEEN[$1]=$n
}

# ticks_on NAME WHAT [K]: the guest on NAME prints K (3) more ticks within 30 s
ticks_on() {
	local n k=${3:-3}
	n=$(ft_count "${FT_O[$1]}" 'FTWORK seq=[0-9]+ sum')
	ft_wait_count "${FT_O[$1]}" 'FTWORK seq=[0-9]+ sum' $((n + k)) 30 "$1" && return 0
	err "$2: the guest on $1 stopped ticking (last seq $(ft_last_seq_any "${FT_O[$1]}"))"
	return 1
}

# new_backup HOST: a fresh backup on HOST (its own disk, port and --ft-timeout TMO) and `protect` on cur; sets bk
nbk=0
new_backup() {
	local h="$1" name port reply
	nbk=$((nbk + 1))
	name=b$nbk port=$((BK_PORT + nbk))
	DISK[$name]="$(lab_host_dir "$h")/$name.img"
	truncate -s "$DISK_SIZE" "${DISK[$name]}"
	# FTVMM_DEBUG: a guest that stops can be diagnosed (vCPU registers on SIGTERM)
	lbg "$h" "$name" env FTVMM_DEBUG=1 "$FTVMM" backup --listen "${LAB_REP_IP[$h]}:$port" --control "$W/$name.sock" \
		--ft-timeout "$TMO" --disk "${DISK[$name]}" --net "tap=$LAB_TAP" ${LAB_FT_ARGS[@]+"${LAB_FT_ARGS[@]}"}
	bk=$name
	GEN_CONSOLES+=("${FT_O[$name]}")
	if ! ft_wait_line "${FT_E[$name]}" 'backup: listening on' 30 "$name"; then
		err "$name did not start listening: $(head -c 300 "${FT_E[$name]}")"
		return 1
	fi
	reply=$(ft_ctl "$W/$cur.sock" protect "${LAB_REP_IP[$h]}:$port")
	[[ "$reply" == ok* ]] || { err "protect $cur -> $name: $reply"; return 1; }
}

# protect_on HOST: pair cur with a fresh backup on HOST, wait for its "guest is PROTECTED" line; PROT_MS
protect_on() {
	local h="$1" n0 t0
	n0=$(ft_count "${FT_E[$cur]}" 'guest is PROTECTED')
	t0=$(ft_now)
	PROT_MS=""
	new_backup "$h" || return 1
	if ! ft_wait_count "${FT_E[$cur]}" 'guest is PROTECTED' $((n0 + 1)) 180 "$cur"; then
		err "$cur did not become PROTECTED with $bk on host $h: $(stderr_tail "$cur") / $bk: $(stderr_tail "$bk")"
		return 1
	fi
	PROT_MS=$(ms "$t0" "$(ft_now)")
	ft_wait_status "$W/$cur.sock" 'protected=yes' 10 || { err "$cur says PROTECTED but its status: $FT_LAST_STATUS"; return 1; }
}

# ---- the client's stream -----------------------------------------------------------------------------------------
TCP_SEEN=0
# tcp_new_problems WHAT: an error for the checker's problem lines since the last call; STREAM_DEAD=1 on a reset/EOF
tcp_new_problems() {
	local all new
	all=$(ft_count "$TCPLOG" "$FT_TCP_PROBLEM_RE")
	((all > TCP_SEEN)) || return 0
	new=$(ft_tcp_problems "$TCPLOG" "$TCP_SEEN")
	TCP_SEEN=$all
	if [[ "$new" == *SPLICE* ]]; then
		err "$1: the client received output the surviving copy of the guest did not produce: $new"
	else
		err "$1: TCP checker: $new"
	fi
	grep -aqE '^(reset|eof)( |$)|^error recv-' "$TCPLOG" && STREAM_DEAD=1
	return 0
}
stream_dead() { grep -aqE '^(reset|eof)( |$)|^error recv-' "$TCPLOG" 2>/dev/null || ! ft_alive "$TC"; }

# tcp_moves T0 T WHAT: 3 seq lines received after time T (within 30 s); EV_TCP = the first one's time - T0 (ms)
tcp_moves() {
	local t0="$1" t="$2" end=$((SECONDS + 30)) n=0 first=0
	while :; do
		read -r n first < <(awk -v a="$t" '$1 == "seq" && $3 > a { n++; if (!f) f = $3 } END { print n + 0, f + 0 }' "$TCPLOG")
		((n >= 3 || SECONDS > end)) && break
		sleep 0.2
	done
	if ((n >= 3)); then
		EV_TCP=$(ms "$t0" "$first")
	else
		err "$3: the client's stream did not move within 30 s ($n lines)"
	fi
	tcp_new_problems "$3"
}

# ---- following a survivor ---------------------------------------------------------------------------------------
# watch_takeover NAME SECS: follow NAME's stderr and console (from their start) until it said "taking over from
# epoch", "restore: guest running" and printed a tick line, it ended, or SECS passed without a takeover (60 s more
# after one). Each line's time is when this loop first read it ($EPOCHREALTIME; a 20 ms poll, no process per poll).
# Sets P_TAKE P_RUN P_TICK (times), P_TAKE_LINE, P_INSIDE (ftvmm: ms from the loss seen to vCPUs running).
watch_takeover() {
	local name="$1" pid=${FT_PID[$1]:-} fe fo pe="" po="" l now end dead=0
	P_TAKE="" P_RUN="" P_TICK="" P_TAKE_LINE="" P_INSIDE=""
	exec {fe}<"${FT_E[$name]}" {fo}<"${FT_O[$name]}"
	end=$((EPOCHSECONDS + $2))
	while :; do
		while :; do
			if IFS= read -r -u "$fe" l; then
				l=$pe$l pe=""
				now=$EPOCHREALTIME
				if [[ -z "$P_TAKE" && "$l" == *"taking over from epoch"* ]]; then
					P_TAKE=$now P_TAKE_LINE=$l
					end=$((EPOCHSECONDS + 60))
				fi
				if [[ -z "$P_RUN" && "$l" =~ restore:\ guest\ running\ ([0-9.]+)\ ms ]]; then
					P_RUN=$now P_INSIDE=${BASH_REMATCH[1]}
				fi
			else
				pe+=$l
				break
			fi
		done
		while :; do
			if IFS= read -r -u "$fo" l; then
				l=$po$l po=""
				[[ -z "$P_TICK" && "$l" =~ FTWORK\ seq=[0-9]+\ (sum|BAD) ]] && P_TICK=$EPOCHREALTIME
			else
				po+=$l
				break
			fi
		done
		[[ -n "$P_TAKE" && -n "$P_RUN" && -n "$P_TICK" ]] && break
		((dead || EPOCHSECONDS > end)) && break
		# (one more pass after its end: what it wrote last)
		[[ -n "$pid" ]] && ! kill -0 "$pid" 2>/dev/null && dead=1
		read -r -t 0.02 -u "$SLEEPFD" _ || true
	done
	exec {fe}<&- {fo}<&-
}

# takeover T0 WHY_RE MIN_MS: after an injection on the primary cur at T0, its backup bk must take over (WHY_RE: the
# reason it must give, "" any; MIN_MS: not sooner), from an epoch >= ACKED; the guest goes on there (a tick line, no
# BAD, no skipped tick) and the client's stream moves on. Then the survivor is cur (bk empty). 1: no running survivor.
takeover() {
	local t0="$1" why_re="$2" min_ms="$3" old=$cur surv=$bk why from seq_at first
	watch_takeover "$surv" $((TMO / 1000 + 30))
	if [[ -z "$P_TAKE" ]]; then
		err "$surv did not take over in $((TMO / 1000 + 30)) s: $(stderr_tail "$surv")"
		return 1
	fi
	EV_DETECT=$(ms "$t0" "$P_TAKE")
	why=$(sed -nE 's/.*primary lost \((.*)\): taking over.*/\1/p' <<<"$P_TAKE_LINE")
	from=$(sed -nE 's/.*taking over from epoch ([0-9]+).*/\1/p' <<<"$P_TAKE_LINE")
	EV_WHY=$why EV_FROM=$from EV_SURV=$surv
	[[ -z "$why_re" || "$why" =~ $why_re ]] || err "$surv took over on '$why', not on /$why_re/"
	((EV_DETECT >= min_ms)) || err "$surv took over $EV_DETECT ms after the injection, before ${min_ms} ms"
	if [[ "$ACKED" =~ ^[0-9]+$ && "$from" =~ ^[0-9]+$ ]] && ((from < ACKED)); then
		err "$surv resumed from epoch $from but $old had epoch $ACKED acked: a committed epoch was lost"
	fi
	[[ -n "$P_RUN" ]] && EV_RUNNING=$(ms "$t0" "$P_RUN") EV_INSIDE=$P_INSIDE
	if [[ -z "$P_TICK" ]]; then
		err "the guest printed nothing on $surv in 60 s after the takeover from epoch $from: $(stderr_tail "$surv")"
		ft_diagnose "$surv" "$W/$surv.sock" >>"$RES/progress.log" 2>&1 || true
		ended "$surv"
		return 1
	fi
	EV_TICK=$(ms "$t0" "$P_TICK")
	cur=$surv bk=""
	new_bad "$surv"
	[[ -z "$NEWBAD" ]] || err "the guest on $surv after the takeover: $NEWBAD"
	# at most 2 after the last complete line on the old copy (the console is not output-committed: one tick may
	# have started its line there and finished it here)
	seq_at=$(ft_last_seq "${FT_O[$old]}")
	first=$(grep -aoE 'FTWORK seq=[0-9]+ sum=' "${FT_O[$surv]}" | head -n1 | sed -E 's/FTWORK seq=([0-9]+) .*/\1/' || true)
	if [[ ! "$first" =~ ^[0-9]+$ ]] || ((first > seq_at + 2)); then
		err "the guest resumed at seq ${first:-none} on $surv after $old printed $seq_at: ticks were skipped"
	fi
	# (the old copy's disk is of no more use once it ended; a frozen one's goes when it ends)
	ft_alive "$old" || rm -f "${DISK[$old]:-/nonexistent}"
	tcp_moves "$t0" "$P_TAKE" "after the takeover by $surv"
	return 0
}

# ---- the failure kinds: on cur (protected by bk); errors into ERRS; NEED_RECOVER=1 when the state is not the
# expected one (recover repairs it after the row is written) ---------------------------------------------------------
reprotect() {
	if protect_on "$1"; then EV_PROT=$PROT_MS; else NEED_RECOVER=1; fi
}

ev_host_crash() {
	local ph=${HOST_OF[$cur]}
	EV_T0=$(ft_now)
	lab_crash "$ph" || err "lab_crash $ph: processes survived"
	host_gone "$ph"
	# silence is all a crashed host leaves: a closed connection would mean a FIN or RST got out of it
	takeover "$EV_T0" '^no heartbeat from the primary$' $((TMO - 250)) || { NEED_RECOVER=1; return 0; }
	lab_revive "$ph" || { err "lab_revive $ph failed"; NEED_RECOVER=1; return 0; }
	host_gone "$ph"
	reprotect "$ph"
}

ev_kill9() {
	local old=$cur ph=${HOST_OF[$cur]}
	EV_T0=$(ft_now)
	lab_kill "$old" KILL
	ended "$old"
	takeover "$EV_T0" '' 0 || { NEED_RECOVER=1; return 0; }
	reprotect "$ph"
}

ev_sigterm() {
	local old=$cur ph=${HOST_OF[$cur]} tk=0 rc final last_ep
	EV_T0=$(ft_now)
	kill -TERM "${FT_PID[$old]}"
	takeover "$EV_T0" '' 0 || tk=1
	# the last ack is awaited for at most --ft-timeout
	if ft_wait_exit "$old" $((TMO / 1000 + 40)); then
		rc=${FT_RCS[$old]}
		ended "$old"
		NOTES+=("$old exited $rc")
	else
		err "$old still runs $((TMO / 1000 + 40)) s after SIGTERM: $(stderr_tail "$old")"
		lab_kill "$old" KILL
		ended "$old"
	fi
	final=$(grep -aE 'ft: planned failover: ' "${FT_E[$old]}" | tail -n1 || true)
	if [[ "$final" =~ planned\ failover:\ last\ epoch\ ([0-9]+)\ committed ]]; then
		last_ep=${BASH_REMATCH[1]}
		[[ -z "$EV_FROM" || "$EV_FROM" == "$last_ep" ]] ||
			err "$EV_SURV took over from epoch $EV_FROM, but $old's final committed epoch was $last_ep"
	else
		err "$old did not commit a final epoch: ${final:-no 'ft: planned failover: last epoch N committed' line}"
	fi
	((tk)) && { NEED_RECOVER=1; return 0; }
	reprotect "$ph"
}

ev_freeze() {
	local old=$cur ph=${HOST_OF[$cur]} tk=0 lost0 tap0 tap1 rc
	lost0=$(ft_count "${FT_E[$old]}" 'continues UNPROTECTED')
	EV_T0=$(ft_now)
	lab_freeze "$ph"
	takeover "$EV_T0" '^no heartbeat from the primary$' $((TMO - 250)) || tk=1
	if ((tk)); then
		lab_thaw "$ph"
		NEED_RECOVER=1
		return 0
	fi
	# the thaw: from here on the old copy must put nothing on its TAP, and stop
	tap0=$(tap_frames "$ph")
	lab_thaw "$ph"
	if ft_wait_exit "$old" 30; then
		rc=${FT_RCS[$old]}
		ended "$old"
		[[ "$rc" == 1 ]] || err "the thawed primary $old exited with status $rc, not 1: $(stderr_tail "$old")"
		if ! grep -aqE 'frozen longer than the [0-9]+ ms timeout' "${FT_E[$old]}" ||
			! grep -aq 'stopping this copy of the guest' "${FT_E[$old]}"; then
			err "the thawed primary $old did not say it stops because it was frozen: $(stderr_tail "$old")"
		fi
	else
		err "the thawed primary $old still runs 30 s after the thaw, beside $cur's copy (split brain): $(stderr_tail "$old")"
		lab_kill "$old" KILL
		ended "$old"
	fi
	(($(ft_count "${FT_E[$old]}" 'continues UNPROTECTED') == lost0)) ||
		err "the thawed primary $old went on unprotected: $(grep -a 'continues UNPROTECTED' "${FT_E[$old]}" | tail -n1 || true)"
	tap1=$(tap_frames "$ph")
	if [[ ! "$tap0" =~ ^[0-9]+$ || ! "$tap1" =~ ^[0-9]+$ ]]; then
		err "cannot read the frame count of $LAB_TAP on host $ph: '$tap0' -> '$tap1'"
	elif ((tap1 != tap0)); then
		err "the old primary $old wrote $((tap1 - tap0)) frame(s) into its TAP after the thaw"
	fi
	reprotect "$ph"
}

ev_backup_crash() {
	local bh=${HOST_OF[$bk]} dead=$bk lost0 tl line why
	lost0=$(ft_count "${FT_E[$cur]}" 'guest continues UNPROTECTED')
	EV_T0=$(ft_now)
	lab_crash "$bh" || err "lab_crash $bh: processes survived"
	host_gone "$bh"
	bk=""
	tl=$EV_T0
	if ft_wait_count "${FT_E[$cur]}" 'guest continues UNPROTECTED' $((lost0 + 1)) $((TMO / 1000 + 30)) "$cur"; then
		tl=$(ft_now)
		EV_DETECT=$(ms "$EV_T0" "$tl")
		line=$(grep -a 'guest continues UNPROTECTED' "${FT_E[$cur]}" | tail -n1 || true)
		why=$(sed -nE 's/.*backup lost \((.*)\): guest continues UNPROTECTED.*/\1/p' <<<"$line")
		EV_WHY=${why:-$line}
		# silence is all a crashed host leaves
		[[ "$why" == "no heartbeat from the backup"* ]] || err "$cur lost $dead on '${why:-$line}', not on silence"
		((EV_DETECT >= TMO - 250)) || err "$cur declared $dead lost $EV_DETECT ms after the crash, before the timeout"
		if ft_wait_status "$W/$cur.sock" 'protected=no' 10; then
			[[ "$FT_LAST_STATUS" == *" link=down"* ]] || err "status does not say link=down: $FT_LAST_STATUS"
		else
			err "status once the backup's host crashed: ${FT_LAST_STATUS:-no reply}"
		fi
	else
		err "$cur never said it lost $dead after host $bh crashed: $(stderr_tail "$cur")"
	fi
	EV_SURV=$cur
	ticks_on "$cur" "after the crash of the backup's host" || true
	new_bad "$cur"
	[[ -z "$NEWBAD" ]] || err "the guest on $cur: $NEWBAD"
	if ! ft_alive "$cur"; then
		err "$cur ended after its backup's host crashed: $(stderr_tail "$cur")"
		NEED_RECOVER=1
		return 0
	fi
	! grep -aq 'frozen longer than' "${FT_E[$cur]}" || err "$cur fenced itself: $(stderr_tail "$cur")"
	# the output it held goes out once it runs alone
	tcp_moves "$EV_T0" "$tl" "after the crash of the backup's host"
	lab_revive "$bh" || { err "lab_revive $bh failed"; NEED_RECOVER=1; return 0; }
	host_gone "$bh"
	reprotect "$bh"
}

ev_link_blip() {
	local ph=${HOST_OF[$cur]} link th c0 c1="" lost0 end broke="" q drops="" d st
	link="$ph-rep"
	st=$(ft_ctl "$W/$cur.sock" status)
	c0=$(ft_field last_commit "$st")
	lost0=$(ft_count "${FT_E[$cur]}" 'continues UNPROTECTED')
	EV_T0=$(ft_now)
	lab_cut "$link" both || err "lab_cut $link failed"
	sleep "$(awk -v m="$BLIP_MS" 'BEGIN { printf "%.3f", m / 1000 }')"
	# what the blackhole qdiscs dropped (out: the host's end; in: the wire's end)
	for q in "$(tc -s -n "$(lab_ns "$ph")" qdisc show dev rep0 2>&1)" "$(tc -s -n "$(lab_ns net)" qdisc show dev "$link" 2>&1)"; do
		d=$(sed -nE 's/.*\(dropped ([0-9]+),.*/\1/p' <<<"$q" | head -n1)
		drops+="${drops:+/}${d:-?}"
	done
	lab_heal "$link" || err "lab_heal $link failed"
	th=$(ft_now)
	EV_WHY="cut both ways for $(ms "$EV_T0" "$th") ms (asked $BLIP_MS), dropped out/in $drops"
	[[ "$drops" =~ [1-9] ]] || err "the cut dropped nothing ($drops): the blip proved nothing"
	# no takeover and no loss, for the timeout and 2 s more after the heal (TCP retransmits what the cut dropped)
	end=$(($(date +%s%N) + (TMO + 2000) * 1000000))
	while (($(date +%s%N) < end)); do
		if grep -aq 'taking over from epoch' "${FT_E[$bk]}"; then
			broke="FALSE TAKEOVER: $(grep -a 'taking over from epoch' "${FT_E[$bk]}" | tail -n1)"
		elif ! ft_alive "$bk"; then
			broke="the backup $bk ended: $(stderr_tail "$bk")"
		elif ! ft_alive "$cur"; then
			broke="the primary $cur ended: $(stderr_tail "$cur")"
		elif (($(ft_count "${FT_E[$cur]}" 'continues UNPROTECTED') > lost0)); then
			broke="$cur lost its backup: $(grep -a 'continues UNPROTECTED' "${FT_E[$cur]}" | tail -n1)"
		fi
		[[ -z "$broke" ]] || break
		sleep 0.2
	done
	if [[ -n "$broke" ]]; then
		err "after a link blip below the timeout: $broke"
		NEED_RECOVER=1
		return 0
	fi
	ft_wait_status "$W/$cur.sock" 'protected=yes' 10 || err "$cur after the blip: $FT_LAST_STATUS"
	st=$(ft_ctl "$W/$bk.sock" status)
	[[ "$st" == *"state=mirroring protected=yes"* ]] || err "the backup $bk after the blip: $st"
	# epochs commit again
	end=$((SECONDS + 10))
	while ((SECONDS < end)); do
		c1=$(ft_field last_commit "$(ft_ctl "$W/$cur.sock" status)")
		[[ "$c0" =~ ^[0-9]+$ && "$c1" =~ ^[0-9]+$ ]] && ((c1 > c0)) && break
		sleep 0.3
	done
	if [[ ! "$c0" =~ ^[0-9]+$ || ! "$c1" =~ ^[0-9]+$ ]] || ((c1 <= c0)); then
		err "no epoch committed after the blip (last_commit '$c0' -> '$c1')"
	fi
	EV_SURV=$cur
	ticks_on "$cur" "after the blip" || true
	new_bad "$cur"
	[[ -z "$NEWBAD" ]] || err "the guest on $cur: $NEWBAD"
	tcp_moves "$EV_T0" "$th" "after the blip"
}

# ---- rows ----------------------------------------------------------------------------------------------------------
ROW=0
csvq() {
	local s="$*"
	s=${s//\"/\'}
	s=${s//$'\n'/ }
	s=${s//$'\r'/}
	printf '"%s"' "$s"
}
# row FAILURE KIND INJECTED VERIFIED REASON: one line of events.csv from the EV_* values
row() {
	ROW=$((ROW + 1))
	printf '%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s\n' "$ROW" "$1" "$2" "$3" "$TMO" \
		"${EV_T0:-}" "$(date -u -d "@${EV_T0:-$(date +%s)}" +%Y-%m-%dT%H:%M:%S.%3NZ)" "${EV_PRIM:-}" "${EV_PH:-}" \
		"${EV_BK:-}" "${EV_BH:-}" "${EV_SURV:-}" "${EV_DETECT:-}" "${EV_RUNNING:-}" "${EV_INSIDE:-}" "${EV_TICK:-}" \
		"${EV_TCP:-}" "${EV_PROT:-}" "${ACKED:-}" "${EV_FROM:-}" "$(csvq "${EV_WHY:-}")" "$4" "$(csvq "$5")" >>"$EV_CSV"
}

# keep_evidence WHAT: tails of the logs of the processes involved, into fail-<row>/
keep_evidence() {
	local d="$RES/fail-$ROW" n
	mkdir -p "$d"
	for n in "$@"; do
		[[ -n "$n" && -n "${FT_O[$n]:-}" ]] || continue
		tail -n 200 "${FT_O[$n]}" >"$d/$n.out" 2>/dev/null || true
		grep -avE '^ ' "${FT_E[$n]}" 2>/dev/null | tail -n 200 >"$d/$n.err" || true
	done
	tail -n 300 "$TCPLOG" >"$d/tcpcheck.log" 2>/dev/null || true
}

ev_reset() {
	EV_T0="" EV_PRIM=$cur EV_PH="" EV_BK=$bk EV_BH="" EV_SURV="" EV_DETECT="" EV_RUNNING="" EV_INSIDE=""
	EV_TICK="" EV_TCP="" EV_PROT="" EV_FROM="" EV_WHY="" ACKED=""
	[[ -n "$cur" ]] && EV_PH=${HOST_OF[$cur]:-}
	[[ -n "$bk" ]] && EV_BH=${HOST_OF[$bk]:-}
	ERRS=() NOTES=() NEED_RECOVER=0 STREAM_DEAD=0
}

# ---- the guest, its repair, its reboot ----------------------------------------------------------------------------
gen=-1 REBOOTS=0 ABORT="" cur="" bk="" TC="" TCPLOG="/dev/null"
GEN_CONSOLES=()
# start_guest: a fresh guest p<G> booted unprotected on host a, its chained TCP stream to a fresh checker on the
# client, paired once ftwork ticks with a new backup on host b. 1 after an err.
start_guest() {
	local p port ftargs cmdline
	gen=$((gen + 1))
	p=p$gen port=$((TCP_PORT + gen))
	TC=tc$gen TCPLOG="$LAB_LOG/tcpcheck$gen.log" TCP_SEEN=0
	GEN_CONSOLES=()
	cur=$p bk=""
	lbg c "$TC" "$PY" "$itest/ft_tcpcheck.py" --listen "${LAB_LAN_IP[c]}:$port" --log "$TCPLOG" --chain
	ft_wait_line "$TCPLOG" '^listening' 20 "$TC" || { err "the TCP checker did not start on the client"; return 1; }
	DISK[$p]="$(lab_host_dir a)/$p.img"
	truncate -s "$DISK_SIZE" "${DISK[$p]}"
	ftargs="--pages,512,--interval-ms,50,--disk,/dev/vda,--dma-pages,16,--tcp,${LAB_LAN_IP[c]}:$port,--tcp-chain,--timers,--timer-stall-ms,15000,--count,100000000"
	cmdline=$(guest_cmdline "ftvmm.test=ftguest ftvmm.ftnet=$LAB_GUEST_IP/24 ftvmm.ftargs=$ftargs")
	lbg a "$p" env FTVMM_DEBUG=1 "$FTVMM" run "${kargs[@]}" --mem "$GUEST_MEM" --cpus 2 --disk "${DISK[$p]}" \
		--net "tap=$LAB_TAP" --control "$W/$p.sock" --epoch "$EPOCH" --ft-timeout "$TMO" \
		${LAB_FT_ARGS[@]+"${LAB_FT_ARGS[@]}"} --cmdline "$cmdline"
	GEN_CONSOLES+=("${FT_O[$p]}")
	if ! ft_wait_line "${FT_O[$p]}" 'FTWORK seq=[0-9]+ sum' 240 "$p"; then
		err "ftwork never ticked on $p: $(stderr_tail "$p")"
		return 1
	fi
	protect_on b || return 1
	say "guest $p on host a is PROTECTED by $bk on host b (--ft-timeout $TMO ms, stream to port $port)"
}

# reboot_guest WHY: the guest is lost (no running copy, a dead stream, no ticks): a "reboot" row, a fresh guest
reboot_guest() {
	local n
	REBOOTS=$((REBOOTS + 1))
	ev_reset
	EV_T0=$(ft_now)
	row "" reboot no fail "guest lost ($1): rebooted"
	say "row $ROW: the guest is lost ($1): reboot $REBOOTS"
	keep_evidence "$cur" "$bk"
	if ((REBOOTS > MAX_REBOOTS)); then
		ABORT="the guest was lost $REBOOTS times (SOAK_MAX_REBOOTS $MAX_REBOOTS)"
		return 1
	fi
	[[ -n "${LAB_PID[$TC]:-}" ]] && lab_kill "$TC" TERM
	unset "FT_PID[$TC]"
	for n in a b; do
		lab_thaw "$n" 2>/dev/null || true
		lab_revive "$n" || { ABORT="lab_revive $n failed"; return 1; }
		cur="" # (its disk too)
		host_gone "$n"
	done
	ERRS=()
	if ! start_guest; then
		ABORT="a fresh guest did not start: ${ERRS[*]}"
		return 1
	fi
}

# recover WHY: one running copy of the guest (the primary if it runs, else a backup that took over), its stream alive
# and ticking, protected by a fresh backup on the other host (revived: whatever ran there ends); else reboot_guest
recover() {
	local keep="" h tries
	ERRS=()
	lab_thaw a 2>/dev/null || true
	lab_thaw b 2>/dev/null || true
	lab_heal a-rep 2>/dev/null || true
	lab_heal b-rep 2>/dev/null || true
	if [[ -n "$cur" ]] && ft_alive "$cur"; then
		keep=$cur
	elif [[ -n "$bk" ]] && ft_alive "$bk" && grep -aq 'taking over from epoch' "${FT_E[$bk]}"; then
		keep=$bk
	fi
	[[ -n "$keep" ]] || { reboot_guest "$1: no copy of the guest runs"; return; }
	cur=$keep bk=""
	if stream_dead; then
		reboot_guest "$1: the client's stream is dead ($(grep -aE "$FT_TCP_PROBLEM_RE" "$TCPLOG" | tail -n1))"
		return
	fi
	ticks_on "$cur" "recovery" 1 || { reboot_guest "$1: the guest on $cur does not tick"; return; }
	h=$(other "${HOST_OF[$cur]}")
	for tries in 1 2; do
		lab_revive "$h" || { ABORT="lab_revive $h failed"; return 1; }
		host_gone "$h"
		bk=""
		if protect_on "$h"; then
			say "recovered ($1): $cur on host ${HOST_OF[$cur]} protected by $bk on host $h"
			return 0
		fi
		say "recovery ($1), try $tries: ${ERRS[*]}"
		ERRS=()
	done
	reboot_guest "$1: $cur could not be protected again"
}

# steady: before a failure, the state the last one left: both copies run, no takeover, protected=yes, ticks, no new
# BAD, no new stream problem. Anything else happened with nothing injected: a "spontaneous" row, then recover. 1 then.
steady() {
	local st
	ev_reset
	EV_T0=$(ft_now)
	if [[ -z "$cur" ]] || ! ft_alive "$cur"; then
		err "the primary ${cur:-?} ended: $(stderr_tail "$cur")"
	else
		if [[ -z "$bk" ]]; then
			err "no backup"
		elif grep -aq 'taking over from epoch' "${FT_E[$bk]}"; then
			err "FALSE TAKEOVER: $bk took over with nothing injected: $(grep -a 'taking over from epoch' "${FT_E[$bk]}" | tail -n1)"
		elif ! ft_alive "$bk"; then
			err "the backup $bk ended: $(stderr_tail "$bk")"
		fi
		st=$(ft_ctl "$W/$cur.sock" status)
		if [[ "$st" != *protected=yes* ]]; then
			ft_wait_status "$W/$cur.sock" 'protected=yes|link=down' 30 || true
			[[ "$FT_LAST_STATUS" == *protected=yes* ]] || err "$cur: $FT_LAST_STATUS ($(stderr_tail "$cur"))"
		fi
		ticks_on "$cur" "between failures" 1 || true
		new_bad "$cur"
		[[ -z "$NEWBAD" ]] || err "the guest on $cur: $NEWBAD"
	fi
	tcp_new_problems "between failures"
	((${#ERRS[@]} == 0)) && return 0
	local msg
	printf -v msg '%s; ' "${ERRS[@]}"
	row "" spontaneous no fail "${msg%; }"
	say "row $ROW: SPONTANEOUS (nothing injected): ${msg%; }"
	keep_evidence "$cur" "$bk"
	recover "spontaneous event at row $ROW" || true
	return 1
}

# run_event FAILURE KIND: a tick under protection, a random moment, the failure, its checks, its row; then recover
# if the state is not the expected one
run_event() {
	local fno="$1" kind="$2" j msg verified=ok
	ev_reset
	j=$((RANDOM % (JITTER_MS + 1)))
	sleep "$((j / 1000)).$(printf '%03d' $((j % 1000)))"
	ACKED=$(ft_field last_commit "$(ft_ctl "$W/$cur.sock" status)")
	new_bad "$cur" # (a BAD before the failure was reported by steady)
	tcp_new_problems "before failure $fno"
	case "$kind" in
	host-crash) ev_host_crash ;;
	kill9) ev_kill9 ;;
	sigterm) ev_sigterm ;;
	freeze) ev_freeze ;;
	backup-crash) ev_backup_crash ;;
	link-blip) ev_link_blip ;;
	esac
	((${#ERRS[@]} == 0)) || verified=fail
	msg=""
	((${#ERRS[@]} == 0)) || printf -v msg '%s; ' "${ERRS[@]}"
	((${#NOTES[@]} == 0)) || msg+="(${NOTES[*]})"
	row "$fno" "$kind" yes "$verified" "${msg%; }"
	[[ "$TIMING" == 1 ]] && echo "$TMO,$TIMING_K,$ROW,$EV_T0,${EV_DETECT:-},${EV_RUNNING:-},${EV_INSIDE:-},${EV_TICK:-},${EV_TCP:-},${EV_PROT:-},$verified" >>"$RES/timing.csv"
	say "row $ROW: failure $fno $kind: $EV_PRIM@$EV_PH (acked ${ACKED:-?}) -> ${EV_SURV:-?}: detect ${EV_DETECT:--} ms," \
		"tick ${EV_TICK:--} ms, stream ${EV_TCP:--} ms, re-protected ${EV_PROT:--} ms [${EV_WHY:-}]: $verified${msg:+: $msg}"
	[[ "$verified" == ok ]] || keep_evidence "$EV_PRIM" "$EV_BK" "$EV_SURV" "$cur" "$bk"
	if ((NEED_RECOVER || STREAM_DEAD)) || [[ -z "$bk" || -z "$cur" ]] || ! ft_alive "$cur"; then
		recover "failure $fno ($kind)" || true
	fi
	return 0
}

# records_check AFTER: ftwork's disk records on the survivor's disk and every console of this guest -> checks.csv
NCHECK=0
records_check() {
	local area last out res=ok
	[[ -n "$cur" ]] && ft_alive "$cur" || return 0
	NCHECK=$((NCHECK + 1))
	area=$(grep -aoE 'FTWORK start .* area=[0-9]+' "${GEN_CONSOLES[0]}" | head -n1 | sed 's/.*area=//' || true)
	last=$(ft_last_seq "${FT_O[$cur]}")
	out=$("$PY" "$itest/ft_records.py" --disk "${DISK[$cur]}" --area "${area:-0}" --last "$last" \
		--ticks "${GEN_CONSOLES[@]/#/--console=}" 2>&1) || res=fail
	echo "$NCHECK,$1,$(ft_now),$gen,$cur,$res,$(csvq "$out")" >>"$RES/checks.csv"
	say "records check $NCHECK (after failure $1, guest generation $gen, survivor $cur): $out"
}

# next_kind: KIND from a deck of the kinds, shuffled again whenever it runs out (each kind once per round)
DECK=()
next_kind() {
	local i j t
	if ((${#DECK[@]} == 0)); then
		read -r -a DECK <<<"$KINDS"
		for ((i = ${#DECK[@]} - 1; i > 0; i--)); do
			j=$((RANDOM % (i + 1)))
			t=${DECK[i]} DECK[i]=${DECK[j]} DECK[j]=$t
		done
	fi
	KIND=${DECK[0]}
	DECK=("${DECK[@]:1}")
}

time_left() { (($(date +%s) < DEADLINE)); }

# ---- the run -------------------------------------------------------------------------------------------------------
# (from here on a failing command does not end the soak: every check is explicit, and one unforeseen status must not
# cost the rest of an hour's run; finish writes the report whatever happens)
set +eu
if ! lab_setup; then
	ABORT="cannot build the lab (network namespaces, veth, bridge, tun)"
	die "$ABORT"
fi
# the hosts' FT links as in t_lab: TLS with the lab's pre-shared key where the library makes one
if declare -F lab_ft_credentials >/dev/null && ! lab_ft_credentials; then
	ABORT="cannot make the lab's TLS key (psktool, from gnutls-bin)"
	die "$ABORT"
fi
say "soak: results in $RES; $(grep -E '^(mode|n|ft_timeout_ms|timing_timeouts_ms|kinds|seed)=' "$RES/env.txt" | tr '\n' ' ')"
ERRS=()
if ! start_guest; then
	ABORT="the first guest did not start: ${ERRS[*]}"
	die "$ABORT"
fi

done_n=0
if [[ "$TIMING" != 1 ]]; then
	for ((i = 1; i <= N; i++)); do
		time_left || { ABORT="time limit: stopped after $done_n of $N failures (TESTBED_TIMEOUT - SOAK_MARGIN)"; break; }
		steady || true
		[[ -z "$ABORT" ]] || break
		next_kind
		run_event "$i" "$KIND"
		done_n=$i
		[[ -z "$ABORT" ]] || break
		if ((RECORDS_EVERY > 0 && i % RECORDS_EVERY == 0 && i < N)); then records_check "$i"; fi
	done
else
	first=1
	for t in $TIMING_TIMEOUTS; do
		[[ -z "$ABORT" ]] || break
		if ((!first)); then
			steady || true # (at the old setting)
			[[ -z "$ABORT" ]] || break
		fi
		TMO=$t
		if ((!first)); then
			# the backup that detects the next crash must run with the new timeout: replace it
			ERRS=()
			old=$bk
			lab_kill "$old" KILL
			ended "$old"
			bk=""
			ft_wait_status "$W/$cur.sock" 'protected=no' 15 || say "note: $cur after its backup $old was killed: $FT_LAST_STATUS"
			if ! protect_on "$(other "${HOST_OF[$cur]}")"; then
				say "backup with --ft-timeout $TMO: ${ERRS[*]}"
				recover "a backup with --ft-timeout $TMO" || true
			fi
			say "--ft-timeout $TMO ms: $cur protected by $bk"
		fi
		first=0
		for ((k = 1; k <= TIMING_N; k++)); do
			time_left || { ABORT="time limit (TESTBED_TIMEOUT - SOAK_MARGIN)"; break; }
			steady || true
			[[ -z "$ABORT" ]] || break
			done_n=$((done_n + 1))
			TIMING_K=$k
			run_event "$done_n" host-crash
			[[ -z "$ABORT" ]] || break
		done
	done
fi
[[ -z "$ABORT" ]] || say "soak stopped: $ABORT"
records_check "$done_n"
say "soak: $done_n failures injected; $ROW rows in events.csv; results in $RES"
exit 0

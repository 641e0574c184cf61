#!/usr/bin/env bash
# tests/bench/soak.sh - fault-tolerance soak in the failure lab (tests/lab/lab.sh): hundreds of failures of mixed kinds
# at random moments on ONE protected guest, each verified and followed by re-protection; or (TIMING=1) failover timing
# by phase for several --ft-timeout values. Not CI: a benchmark-style run whose results go to
# tests/bench/results/soak-<UTC stamp>/ (timing: soak-timing-<UTC stamp>/).
#
# Runs INSIDE the nested test bed (root, /dev/kvm, network namespaces), from the repository root:
#   quick check:  TESTBED_TIMEOUT=1500 TESTBED_QUIET_LIMIT=600 tests/testbed/run.sh env SOAK_N=10 bash tests/bench/soak.sh
#   full soak:    TESTBED_TIMEOUT=5400 TESTBED_QUIET_LIMIT=600 tests/testbed/run.sh bash tests/bench/soak.sh
#   timing:       TESTBED_TIMEOUT=2400 TESTBED_QUIET_LIMIT=600 tests/testbed/run.sh env TIMING=1 bash tests/bench/soak.sh
# (TESTBED_QUIET_LIMIT: a row comes every ~20-60 s; ten silent minutes is the test bed's own kernel deadlocked, as in
# soak-20261208-042135, and the watchdog then stops it with the CPUs' dump instead of waiting for the timeout)
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
#   link-cut      the primary's replication link cut both ways (lab_cut), for a duration drawn from {short:
#                 SOAK_BLIP_MS (default --ft-timeout / 5); long: 2-3 x --ft-timeout}, then healed (lab_heal); the cut
#                 recorded as asked and as measured (lab_cut's return to lab_heal's: the tc calls take seconds under
#                 TCG). Exactly one of these outcomes, verified: (a) nothing happened (no takeover, the primary still
#                 protected=yes after the heal, epochs commit again), only if the measured cut was below the timeout;
#                 (b) the backup won: it took over (as host-crash), the old primary exited 1 saying "the backup runs
#                 the guest now" and wrote no frame into its TAP from a second after the cut to its exit; (c) the
#                 primary won ("won generation"), the backup exited 1 ("the primary went on alone"). Both copies alive
#                 30 s after the heal with the backup taken over, or a SPLICE on the client, is a SPLIT BRAIN (a
#                 failure, counted on its own). Without the arbiter only the short cut is drawn.
#   arbiter-outage  etcd frozen (SIGSTOP) for 2 x --ft-timeout in steady state: the guest stays protected=yes, epochs
#                 commit, the stream moves, the backup does nothing; the generation does not move. Then SIGCONT.
#   arbiter-outage-crash  etcd frozen, then lab_crash of the primary's host: no takeover for --ft-timeout + 5 s (the
#                 backup says "claiming generation"); etcd thawed: the backup takes over within 60 s (timed as
#                 host-crash, from the thaw), the generation moved by one; the host comes back and runs the backup.
# The arbiter (SOAK_ARBITER=1, the default): one etcd on the client host c (as in tests/integration/t_arbiter.sh),
# started before the first guest; every ftvmm run/backup gets --arbiter etcd://192.0.2.1:2379 --name soakvm, so a
# takeover or a primary going on alone needs the next generation first, and the loser exits 1 (freeze: the thawed
# primary says "the backup runs the guest now" instead of "frozen longer than"). SOAK_ARBITER=0: no etcd, no
# arbiter kinds, link-cut short only (today's ftvmm without a tie-breaker, whose partitions are split brains).
# After every takeover kind: the guest goes on on the survivor (a tick line within 60 s, no BAD, the first tick at
# most 2 after the last complete one on the old copy), the client's stream has 3 new lines after the takeover with no
# gap, repeat, reset or SPLICE (ft_tcpcheck.py --chain); its timing is from the checker's own receive times: the
# stream's longest silence from the injection on (stall_ms) and the line that ended it (tcp_ms, "moving again").
# After every kind: re-protection ("guest is PROTECTED" again on the survivor). Every SOAK_RECORDS_EVERY (25)
# failures and at the end: ft_records.py on the survivor's disk (an unbroken prefix of ftwork's records with the sums
# every console printed, no BAD, timers advancing) -> checks.csv.
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
#      link-cut arbiter-outage arbiter-outage-crash" (the deck: a kind named twice comes twice a round)
#      SOAK_ARBITER=1  SOAK_BLIP_MS (link-cut's short cut)  SOAK_JITTER_MS=1000  SOAK_RECORDS_EVERY=25 (0: at the end
#      only)  SOAK_SEED (random)
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
ARBITER=$(opt SOAK_ARBITER 1)
KINDS=$(opt SOAK_KINDS "host-crash kill9 sigterm freeze backup-crash link-cut arbiter-outage arbiter-outage-crash")
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
[[ "$ARBITER" == 0 || "$ARBITER" == 1 ]] || die "SOAK_ARBITER is 0 or 1, not '$ARBITER'"
if [[ "$TIMING" != 1 ]]; then
	kinds=""
	for k in $KINDS; do
		case "$k" in
		host-crash | kill9 | sigterm | freeze | backup-crash | link-cut) ;;
		arbiter-outage | arbiter-outage-crash) ((ARBITER)) || continue ;; # (nothing to freeze without one)
		link-blip) die "the kind link-blip is now link-cut (a cut that may outlast the timeout, then verified)" ;;
		*) die "unknown kind '$k'" ;;
		esac
		kinds+="${kinds:+ }$k"
	done
	KINDS=$kinds
	[[ -n "$KINDS" ]] || die "no kind left to inject (SOAK_KINDS, SOAK_ARBITER=$ARBITER)"
fi
if ((ARBITER)) && ! { command -v etcd && command -v etcdctl; } >/dev/null; then
	die "SOAK_ARBITER=1 needs etcd and etcdctl (Debian's etcd-server, etcd-client: tests/deps.sh); SOAK_ARBITER=0:" \
		"without"
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
LONG_CUT="none (no arbiter)"
((ARBITER)) && LONG_CUT="$((2 * SOAK_TMO))-$((3 * SOAK_TMO))"
ARB_DESC=none
((ARBITER)) && ARB_DESC="etcd on host c, --arbiter etcd://192.0.2.1:2379 --name soakvm ($(etcd --version 2>/dev/null | head -n1 || true))"
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
		echo "link_cut_long_ms=$LONG_CUT"
		echo "jitter_ms=$JITTER_MS"
		echo "records_every=$RECORDS_EVERY"
	fi
	echo "arbiter=$ARB_DESC"
	echo "ft_link=${LAB_FT_SEC:-psk} (psk: TLS 1.3 with the lab's pre-shared key; insecure: plain, --ft-insecure)"
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
	echo "ftvmm_commit=${FTVMM_COMMIT:-$(git -c safe.directory='*' -C "$repo" rev-parse HEAD 2>/dev/null || echo '?')$(
		[[ -n "$(git -c safe.directory='*' -C "$repo" status --porcelain --untracked-files=no 2>/dev/null)" ]] && echo ' (work tree modified)')}"
	echo "ftvmm_binary=$FTVMM sha256 $(sha256sum "$FTVMM" | cut -c1-16) built $(date -u -r "$FTVMM" +%Y-%m-%dT%H:%M:%SZ)"
	echo "netem=$(lsmod 2>/dev/null | grep -q sch_netem && echo loaded || echo no)"
	echo "load_before=$(cut -d' ' -f1-3 /proc/loadavg)"
} >"$RES/env.txt"
EV_CSV="$RES/events.csv"
# (outcome: link-cut's (none, backup, primary, undecided); cut_*: asked and measured; stall_ms: the client stream's
# longest silence from the injection on; split_brain: 1 when two copies ran or the client got a SPLICE)
echo "row,failure,kind,injected,ft_timeout_ms,t_inject,utc,primary,primary_host,backup,backup_host,survivor,detect_ms,running_ms,inside_ms,tick_ms,tcp_ms,reprotect_ms,acked_epoch,from_epoch,outcome,cut_asked_ms,cut_ms,stall_ms,split_brain,verdict,verified,reason" >"$EV_CSV"
echo "check,after_failure,t,generation,survivor,result,detail" >"$RES/checks.csv"
[[ "$TIMING" == 1 ]] &&
	echo "ft_timeout_ms,crash,row,t_crash,detect_ms,running_ms,inside_ms,tick_ms,tcp_ms,reprotect_ms,verified,inject_ms,claim_ms" >"$RES/timing.csv"

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

# nap MS: a sleep without a process (read -t on the script's own fifo)
nap() {
	local s
	printf -v s '%d.%03d' $(($1 / 1000)) $(($1 % 1000))
	read -r -t "$s" -u "$SLEEPFD" _ || true
}
# (now in microseconds, no process: $EPOCHREALTIME is "seconds.micro" with 6 digits)
now_us() { NOW_US=${EPOCHREALTIME/./}; }

# ---- the arbiter: one etcd on the client host, as in t_arbiter.sh ------------------------------------------------
VMNAME=soakvm
ARB_URL="http://${LAB_LAN_IP[c]}:2379"
ARB_KEY="/ftvmm/$VMNAME/generation"
FT_ARB=()
((ARBITER)) && FT_ARB=(--arbiter "etcd://${ARB_URL#http://}" --name "$VMNAME")
# What each side says when the arbiter (or, without one, the heartbeat link) decided: the primary that runs on alone,
# the primary that stops its copy, the backup that stands down
if ((ARBITER)); then
	RE_PRIM_WON='won generation [0-9]+ from the arbiter: guest continues UNPROTECTED'
	RE_PRIM_LOST='the backup runs the guest now; stopping this copy'
	# or, when only the primary lost the link (a short cut: its silence passed the timeout, the backup's did not), the
	# backup hears its BYE and stands down without a claim (soak-20261208-042135 row 3 failed on that message alone)
	RE_BK_LOST='the primary went on alone; not taking over|the primary is alive and runs on unprotected'
else
	RE_PRIM_WON='backup lost \(.*\): guest continues UNPROTECTED'
	RE_PRIM_LOST='(frozen longer than the [0-9]+ ms timeout|heard nothing from this primary for the [0-9]+ ms timeout and took over).*stopping this copy of the guest'
	RE_BK_LOST='the primary is alive and runs on unprotected'
fi

arb_healthy() { lab_exec c etcdctl --endpoints="$ARB_URL" --command-timeout=3s endpoint health >/dev/null 2>&1; }
# arb_start: etcd on host c, answering within 60 s (its data directory survives a restart: the generation goes on)
arb_start() {
	mkdir -p "$W/etcd"
	lbg c etcd etcd --name arb --data-dir "$W/etcd" --listen-client-urls "$ARB_URL" --advertise-client-urls "$ARB_URL" \
		--listen-peer-urls http://127.0.0.1:2380 --initial-advertise-peer-urls http://127.0.0.1:2380 \
		--initial-cluster arb=http://127.0.0.1:2380
	for _ in $(seq 60); do
		arb_healthy && return 0
		ft_alive etcd || break
		sleep 1
	done
	arb_healthy
}
# arb_ensure: etcd runs (thawed, if a kind that froze it failed half-way) and answers; restarted if it ended (its
# last log kept as etcd-ended-K.err). 1 if it does not come back.
NETCD=0
arb_ensure() {
	((ARBITER)) || return 0
	if ft_alive etcd; then
		kill -CONT "${FT_PID[etcd]}" 2>/dev/null
		return 0
	fi
	NETCD=$((NETCD + 1))
	cp "${FT_E[etcd]}" "$LAB_LOG/etcd-ended-$NETCD.err" 2>/dev/null
	say "etcd ended ($(tail -n 1 "${FT_E[etcd]}" 2>/dev/null | cut -c1-200)): restarting it"
	lab_kill etcd KILL # (reaps it)
	unset "FT_PID[etcd]"
	arb_start
}
# arb_get: the key's value "G OWNER" ("" when absent or etcd does not answer); arb_gen: G
arb_get() {
	lab_exec c etcdctl --endpoints="$ARB_URL" --command-timeout=5s get "$ARB_KEY" --print-value-only 2>/dev/null |
		head -n1 || true
}
arb_gen() {
	((ARBITER)) || return 0
	local v
	v=$(arb_get)
	echo "${v%% *}"
}
etcd_freeze() { kill -STOP "${FT_PID[etcd]}"; }
etcd_thaw() { kill -CONT "${FT_PID[etcd]}"; }
# gen_check WHAT G0 D: the arbiter's generation is G0 + D now (one claim won per decision, none without one)
gen_check() {
	((ARBITER)) || return 0
	local g
	if [[ ! "$2" =~ ^[0-9]+$ ]]; then
		NOTES+=("the generation before the injection was not read")
		return 0
	fi
	g=$(arb_gen)
	if [[ ! "$g" =~ ^[0-9]+$ ]] || ((g != $2 + $3)); then
		err "$1: the arbiter's generation is '${g:-?}' ($(arb_get)), not $2 + $3"
	fi
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

# lost_why NAME: why the primary NAME last said it lost its backup ("backup lost (WHY): ...", with or without the
# arbiter's "output held until the arbiter decides" in between)
lost_why() {
	sed -nE 's/.*backup lost \((.*)\): (guest continues UNPROTECTED|output held).*/\1/p' "${FT_E[$1]}" | tail -n1
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
		--ft-timeout "$TMO" --disk "${DISK[$name]}" --net "tap=$LAB_TAP" ${LAB_FT_ARGS[@]+"${LAB_FT_ARGS[@]}"} \
		${FT_ARB[@]+"${FT_ARB[@]}"}
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
# tcp_new_problems WHAT: an error for the checker's problem lines since the last call; STREAM_DEAD=1 on a reset/EOF;
# EV_SPLIT=1 on a SPLICE (the client got bytes of two copies of the guest)
tcp_new_problems() {
	local all new
	all=$(ft_count "$TCPLOG" "$FT_TCP_PROBLEM_RE")
	((all > TCP_SEEN)) || return 0
	new=$(ft_tcp_problems "$TCPLOG" "$TCP_SEEN")
	TCP_SEEN=$all
	if [[ "$new" == *SPLICE* ]]; then
		EV_SPLIT=1
		err "$1: SPLIT BRAIN: the client received output the surviving copy of the guest did not produce: $new"
	else
		err "$1: TCP checker: $new"
	fi
	grep -aqE '^(reset|eof)( |$)|^error recv-' "$TCPLOG" && STREAM_DEAD=1
	return 0
}
stream_dead() { grep -aqE '^(reset|eof)( |$)|^error recv-' "$TCPLOG" 2>/dev/null || ! ft_alive "$TC"; }

# tcp_stall T0 T: "N AT SILENCE_MS" from the checker's log, its own receive times only: N seq lines after T (counted
# up to 3); over the lines from the last one before T0 to the third after T, the longest silence (ms) and the time
# of the line that ended it. (Printed with %f: awk's default %.6g turned every time stamp into 1.79661e+09, the
# soak's first run's meaningless and negative stream times.)
tcp_stall() {
	awk -v t0="$1" -v a="$2" '
		BEGIN { prev = t0 + 0; best = -1 }
		$1 != "seq" { next }
		$3 <= t0 + 0 { prev = $3; next }
		{
			if ($3 - prev > best) { best = $3 - prev; at = $3 }
			prev = $3
			if ($3 > a + 0 && ++n >= 3) exit
		}
		END { printf "%d %.6f %.0f\n", n, at, best * 1000 }' "$TCPLOG"
}

# tcp_moves T0 T WHAT: the client's stream moves on: 3 seq lines received after time T (the verdict), within 30 s.
# EV_TCP = from the injection T0 to the first line after the stream's longest silence since T0, EV_STALL = that
# silence: when the client saw the guest again, from the checker's receive times (not from this script's reads).
tcp_moves() {
	local t0="$1" t="$2" end=$((SECONDS + 30)) n=0 at="" gap=""
	while :; do
		read -r n at gap < <(tcp_stall "$t0" "$t")
		((n >= 3 || SECONDS > end)) && break
		nap 200
	done
	if ((n >= 3)); then
		EV_TCP=$(ms "$t0" "$at") EV_STALL=$gap
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

# takeover T0 WHY_RE MIN_MS [SECS]: after an injection on the primary cur at T0, its backup bk must take over within
# SECS (--ft-timeout + 30 s) (WHY_RE: the reason it must give, "" any; MIN_MS: not sooner), from an epoch >= ACKED;
# the guest goes on there (a tick line, no BAD, no skipped tick) and the client's stream moves on. Then the survivor
# is cur (bk empty). 1: no running survivor.
takeover() {
	local secs=${4:-$((TMO / 1000 + 30))}
	watch_takeover "$bk" "$secs"
	takeover_check "$1" "$2" "$3" "$secs"
}

# takeover_check T0 WHY_RE MIN_MS SECS: takeover's verdict on what watch_takeover (or link-cut's follower) saw: P_*
takeover_check() {
	local t0="$1" why_re="$2" min_ms="$3" old=$cur surv=$bk why from seq_at first
	if [[ -z "$P_TAKE" ]]; then
		err "$surv did not take over in $4 s: $(stderr_tail "$surv")"
		return 1
	fi
	EV_DETECT=$(ms "$t0" "$P_TAKE")
	why=$(sed -nE 's/.*primary lost \((.*)\): taking over.*/\1/p' <<<"$P_TAKE_LINE")
	from=$(sed -nE 's/.*taking over from epoch ([0-9]+).*/\1/p' <<<"$P_TAKE_LINE")
	EV_WHY=$why EV_FROM=$from EV_SURV=$surv
	EV_CLAIM=$(sed -nE 's/.*taking over from epoch [0-9]+ \(generation [0-9]+ won in ([0-9.]+) ms\).*/\1/p' <<<"$P_TAKE_LINE")
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
	# the phases count from the silence (the links down), not from the injector's start: its own ip command
	# costs 150-350 ms in the test bed (EV_INJECT says how long)
	EV_INJECT=$(ms "$EV_T0" "$LAB_SILENT_AT")
	EV_T0=$LAB_SILENT_AT
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
	# the last ack is awaited for at most --ft-timeout or 2 s, whichever is longer
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
		# (with the arbiter it asks, and learns the backup holds the next generation; without, it judges its freeze)
		grep -aqE "$RE_PRIM_LOST" "${FT_E[$old]}" ||
			err "the thawed primary $old did not say it stops its copy (/$RE_PRIM_LOST/): $(stderr_tail "$old")"
	else
		EV_SPLIT=1
		err "SPLIT BRAIN: the thawed primary $old still runs 30 s after the thaw, beside $cur's copy: $(stderr_tail "$old")"
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
		[[ "$line" =~ $RE_PRIM_WON ]] || err "$cur went on alone without /$RE_PRIM_WON/: $line"
		why=$(lost_why "$cur")
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

# ---- link-cut: following both copies through a cut, no process per poll -----------------------------------------
# cf_open OLD BK: follow the primary OLD's stderr and the backup BK's stderr and console from here on (cf_poll)
cf_open() {
	# shellcheck disable=SC2034 # (the partial lines, used through cf_read's nameref)
	CF_OLD=$1 CF_BK=$2 CF_POE="" CF_PBE="" CF_PBO=""
	T_PLOST="" T_WON="" T_BLOST="" T_TOOK="" T_RUN="" T_TICK="" TOOK_LINE="" RUN_INSIDE=""
	exec {CF_OE}<"${FT_E[$1]}" {CF_BE}<"${FT_E[$2]}" {CF_BO}<"${FT_O[$2]}"
	# (what they wrote before the cut is no news)
	cf_read "$CF_OE" CF_POE
	cf_read "$CF_BE" CF_PBE
	cf_read "$CF_BO" CF_PBO
}
cf_close() { exec {CF_OE}<&- {CF_BE}<&- {CF_BO}<&-; }
# cf_read FD PARTIAL: CF_NEW = the complete lines FD has now; a line still being written waits in PARTIAL
cf_read() {
	local -n part=$2
	local l
	CF_NEW=""
	while IFS= read -r -u "$1" l; do
		CF_NEW+="$part$l"$'\n'
		part=""
	done
	part+=$l
}
# cf_poll: the time each verdict line first shows ($EPOCHREALTIME): the primary lost its backup (T_PLOST) and went on
# alone (T_WON); the backup lost the primary (T_BLOST), took over (T_TOOK, TOOK_LINE), ran the guest (T_RUN,
# RUN_INSIDE) and the guest ticked there (T_TICK)
TOOK_RE=$'[^\n]*taking over from epoch [0-9]+[^\n]*'
cf_poll() {
	local now=$EPOCHREALTIME
	cf_read "$CF_OE" CF_POE
	[[ -z "$T_PLOST" && "$CF_NEW" == *"backup lost ("* ]] && T_PLOST=$now
	[[ -z "$T_WON" && "$CF_NEW" =~ $RE_PRIM_WON ]] && T_WON=$now
	cf_read "$CF_BE" CF_PBE
	[[ -z "$T_BLOST" && "$CF_NEW" == *"primary lost ("* ]] && T_BLOST=$now
	[[ -z "$T_TOOK" && "$CF_NEW" =~ $TOOK_RE ]] && T_TOOK=$now TOOK_LINE=${BASH_REMATCH[0]}
	[[ -z "$T_RUN" && "$CF_NEW" =~ restore:\ guest\ running\ ([0-9.]+)\ ms ]] && T_RUN=$now RUN_INSIDE=${BASH_REMATCH[1]}
	cf_read "$CF_BO" CF_PBO
	[[ -z "$T_TICK" && "$CF_NEW" =~ FTWORK\ seq=[0-9]+\ (sum|BAD) ]] && T_TICK=$now
	return 0
}
# cf_until US: follow until the time US (microseconds)
cf_until() {
	while now_us && ((NOW_US < $1)); do
		cf_poll
		nap 20
	done
}
# cf_verdict TH: follow from the heal at TH (us) until the outcome shows: the backup took over, the guest ticked there
# and the old primary ended; the primary went on alone and the backup ended; nothing at all for --ft-timeout + 2 s;
# both ended; or 30 s passed (60 s from a takeover whose guest has not ticked yet)
cf_verdict() {
	local quiet=$(($1 + (TMO + 2000) * 1000)) end=$(($1 + 30000000))
	while :; do
		cf_poll
		now_us
		if [[ -n "$T_TOOK" ]]; then
			[[ -n "$T_TICK" ]] && ! ft_alive "$CF_OLD" && return 0
			[[ -z "$T_TICK" ]] && ((${T_TOOK/./} + 60000000 > end)) && end=$((${T_TOOK/./} + 60000000))
			ft_alive "$CF_BK" || return 0
		elif [[ -n "$T_WON" ]]; then
			ft_alive "$CF_BK" || return 0
		elif [[ -z "$T_PLOST$T_BLOST" ]] && ft_alive "$CF_OLD" && ft_alive "$CF_BK"; then
			((NOW_US > quiet)) && return 0
		fi
		ft_alive "$CF_OLD" || ft_alive "$CF_BK" || return 0
		((NOW_US > end)) && return 0
		nap 20
	done
}

# ev_link_cut: the primary's replication link cut both ways, short or long, healed; then exactly one of the outcomes
# (see the top), else a failure. The follower reads both copies' lines during the cut, so verdict times are real.
ev_link_cut() {
	local old=$cur ob=$bk ph=${HOST_OF[$cur]} bh=${HOST_OF[$bk]} link asked len=short c0 g0 tap0="" tcut th_s th held
	link="$ph-rep"
	asked=$BLIP_MS
	# (a long cut outlasts the timeout: both sides claim; without an arbiter that is a split brain by design)
	((ARBITER && RANDOM % 2)) && len=long asked=$((2 * TMO + RANDOM % (TMO + 1)))
	c0=$(ft_field last_commit "$(ft_ctl "$W/$cur.sock" status)")
	g0=$(arb_gen)
	cf_open "$old" "$ob"
	EV_T0=$(ft_now)
	lab_cut "$link" both || err "lab_cut $link failed"
	now_us
	tcut=$NOW_US
	# output of epochs acked before the cut may leave for a moment; from a second on nothing may (outcome b)
	if ((asked > 1000)); then
		cf_until $((tcut + 1000000))
		tap0=$(tap_frames "$ph")
	fi
	cf_until $((tcut + asked * 1000))
	lab_heal "$link" || err "lab_heal $link failed"
	th_s=$EPOCHREALTIME
	th=${th_s/./}
	# (a short cut: counted from the heal, no process run while it lasts)
	[[ -n "$tap0" ]] || tap0=$(tap_frames "$ph")
	EV_CUT_ASKED=$asked EV_CUT=$(((th - tcut) / 1000))
	EV_WHY="$len cut both ways: asked $asked ms, $EV_CUT ms from lab_cut's return to lab_heal's"
	cf_verdict "$th"
	cf_close
	if [[ -n "$T_TOOK" ]]; then
		cut_backup_won "$old" "$ph" "$th" "$tap0"
		gen_check "after the backup's takeover" "$g0" 1
	elif [[ -n "$T_WON" ]]; then
		cut_primary_won "$ob" "$bh" "$th"
		gen_check "after the primary went on alone" "$g0" 1
	elif [[ -n "$T_PLOST$T_BLOST" ]] || ! ft_alive "$old" || ! ft_alive "$ob"; then
		EV_OUTCOME=undecided
		err "no outcome 30 s after the heal: the primary $old $(ft_alive "$old" && echo runs || echo ended): " \
			"$(stderr_tail "$old") / the backup $ob $(ft_alive "$ob" && echo runs || echo ended): $(stderr_tail "$ob")"
		NEED_RECOVER=1
	else
		cut_nothing "$c0" "$th_s"
		gen_check "after a cut nobody acted on" "$g0" 0
	fi
	# (output goes out only once acked: a cut that worked silenced the client's stream until it healed or a side won
	# the decision, which comes a timeout after the cut at the earliest)
	held=$((asked < TMO ? asked : TMO))
	[[ -z "$EV_STALL" ]] || ((EV_STALL >= held / 2)) ||
		err "the client's stream never paused (longest silence $EV_STALL ms): the $asked ms cut held nothing back"
}

# cut_backup_won OLD PH TH TAP0: outcome (b): the backup took over (checked as after a crash, with the follower's line
# times); OLD ends within 30 s of the heal TH, exit 1 saying the backup runs the guest, and wrote nothing into its
# TAP since TAP0; both running 30 s after the heal is a split brain. Then a backup on PH.
cut_backup_won() {
	local old=$1 ph=$2 ok=0 left rc tap1 cut=$EV_WHY
	EV_OUTCOME=backup
	P_TAKE=$T_TOOK P_TAKE_LINE=$TOOK_LINE P_RUN=$T_RUN P_INSIDE=$RUN_INSIDE P_TICK=$T_TICK
	takeover_check "$EV_T0" '' $((TMO - 250)) 60 && ok=1
	EV_WHY="${EV_WHY:-?}; $cut"
	now_us
	left=$((($3 + 30000000 - NOW_US) / 1000000))
	((left > 0)) || left=1
	if ft_wait_exit "$old" "$left"; then
		rc=${FT_RCS[$old]}
		ended "$old"
		[[ "$rc" == 1 ]] || err "the old primary $old exited with status $rc, not 1: $(stderr_tail "$old")"
		grep -aqE "$RE_PRIM_LOST" "${FT_E[$old]}" ||
			err "the old primary $old did not say it stops its copy (/$RE_PRIM_LOST/): $(stderr_tail "$old")"
	else
		EV_SPLIT=1
		err "SPLIT BRAIN: the old primary $old still runs 30 s after the heal, beside the takeover: $(stderr_tail "$old")"
		lab_kill "$old" KILL
		ended "$old"
	fi
	tap1=$(tap_frames "$ph")
	if [[ ! "$4" =~ ^[0-9]+$ || ! "$tap1" =~ ^[0-9]+$ ]]; then
		err "cannot read the frame count of $LAB_TAP on host $ph: '$4' -> '$tap1'"
	elif ((tap1 != $4)); then
		err "the old primary $old wrote $((tap1 - $4)) frame(s) into its TAP after the cut"
	fi
	((ok)) || { NEED_RECOVER=1; return 0; }
	reprotect "$ph"
}

# cut_primary_won OB BH TH: outcome (c): the primary cur went on alone; the backup OB ends within 30 s of the heal,
# exit 1 saying so (one that took over after all: a split brain). The guest goes on unprotected. Then a backup on BH.
cut_primary_won() {
	local ob=$1 left rc
	EV_OUTCOME=primary EV_SURV=$cur
	EV_DETECT=$(ms "$EV_T0" "$T_WON")
	EV_WHY="$(lost_why "$cur"); $EV_WHY"
	now_us
	left=$((($3 + 30000000 - NOW_US) / 1000000))
	((left > 0)) || left=1
	if ft_wait_exit "$ob" "$left"; then
		rc=${FT_RCS[$ob]}
		[[ "$rc" == 1 ]] || err "the backup $ob exited with status $rc, not 1: $(stderr_tail "$ob")"
		grep -aqE "$RE_BK_LOST" "${FT_E[$ob]}" ||
			err "the backup $ob did not say the primary went on (/$RE_BK_LOST/): $(stderr_tail "$ob")"
	elif grep -aq 'taking over from epoch' "${FT_E[$ob]}"; then
		EV_SPLIT=1
		err "SPLIT BRAIN: $cur went on alone and $ob took over, both run 30 s after the heal: $(stderr_tail "$ob")"
		lab_kill "$ob" KILL
	else
		err "the backup $ob still runs 30 s after the heal though $cur went on alone: $(stderr_tail "$ob")"
		lab_kill "$ob" KILL
	fi
	ended "$ob"
	bk=""
	if ! ft_alive "$cur"; then
		err "$cur ended after it went on alone: $(stderr_tail "$cur")"
		NEED_RECOVER=1
		return 0
	fi
	ft_wait_status "$W/$cur.sock" 'protected=no' 10 || err "$cur went on alone but its status says: $FT_LAST_STATUS"
	ticks_on "$cur" "after $cur went on alone" || true
	new_bad "$cur"
	[[ -z "$NEWBAD" ]] || err "the guest on $cur: $NEWBAD"
	tcp_moves "$EV_T0" "$T_WON" "after $cur went on alone"
	reprotect "$2"
}

# cut_nothing C0 TH: outcome (a): nobody acted; acceptable only for a cut measured below the timeout. Both sides
# protected=yes, epochs commit again (after C0), the guest ticks, the stream moves after the heal TH.
cut_nothing() {
	local c1="" end st
	EV_OUTCOME=none EV_SURV=$cur
	((EV_CUT < TMO)) || err "nobody acted on a cut of $EV_CUT ms (measured), not below the $TMO ms timeout"
	ft_wait_status "$W/$cur.sock" 'protected=yes' 10 || err "$cur after the cut: $FT_LAST_STATUS"
	st=$(ft_ctl "$W/$bk.sock" status)
	[[ "$st" == *"state=mirroring protected=yes"* ]] || err "the backup $bk after the cut: $st"
	end=$((SECONDS + 10))
	while ((SECONDS < end)); do
		c1=$(ft_field last_commit "$(ft_ctl "$W/$cur.sock" status)")
		[[ "$1" =~ ^[0-9]+$ && "$c1" =~ ^[0-9]+$ ]] && ((c1 > $1)) && break
		nap 300
	done
	if [[ ! "$1" =~ ^[0-9]+$ || ! "$c1" =~ ^[0-9]+$ ]] || ((c1 <= $1)); then
		err "no epoch committed after the cut (last_commit '$1' -> '$c1')"
	fi
	ticks_on "$cur" "after the cut" || true
	new_bad "$cur"
	[[ -z "$NEWBAD" ]] || err "the guest on $cur: $NEWBAD"
	tcp_moves "$EV_T0" "$2" "after the cut"
}

# ---- the arbiter's outages ----------------------------------------------------------------------------------------
# ev_arbiter_outage: etcd frozen for 2 x --ft-timeout in steady state: nothing may change (nobody asks it anything)
ev_arbiter_outage() {
	local st c0 c1 g0 acted0 end
	c0=$(ft_field last_commit "$(ft_ctl "$W/$cur.sock" status)")
	g0=$(arb_gen)
	acted0=$(ft_count "${FT_E[$bk]}" 'primary lost|claiming|taking over')
	EV_SURV=$cur
	EV_T0=$(ft_now)
	etcd_freeze
	now_us
	end=$((NOW_US + 2 * TMO * 1000))
	while now_us && ((NOW_US < end)); do
		st=$(ft_ctl "$W/$cur.sock" status)
		[[ "$st" == *protected=yes* ]] || { err "$cur with etcd frozen: $st"; break; }
		nap 300
	done
	c1=$(ft_field last_commit "$(ft_ctl "$W/$cur.sock" status)")
	# (the window: the whole freeze; EV_STALL is the stream's longest silence in it)
	tcp_moves "$EV_T0" "$(ft_now)" "with etcd frozen"
	etcd_thaw
	EV_WHY="etcd frozen $(ms "$EV_T0" "$(ft_now)") ms; last_commit $c0 -> $c1"
	if [[ ! "$c0" =~ ^[0-9]+$ || ! "$c1" =~ ^[0-9]+$ ]] || ((c1 <= c0)); then
		err "no epoch committed with etcd frozen: '$c0' -> '$c1'"
	fi
	ticks_on "$cur" "with etcd frozen" || true
	new_bad "$cur"
	[[ -z "$NEWBAD" ]] || err "the guest on $cur: $NEWBAD"
	if ! ft_alive "$bk" || (($(ft_count "${FT_E[$bk]}" 'primary lost|claiming|taking over') > acted0)); then
		err "the backup $bk acted with etcd frozen: $(stderr_tail "$bk")"
		NEED_RECOVER=1
	fi
	ft_alive "$cur" || { err "$cur ended with etcd frozen: $(stderr_tail "$cur")"; NEED_RECOVER=1; }
	gen_check "after etcd's outage" "$g0" 0
}

# ev_arbiter_outage_crash: etcd frozen, then the primary's host crashes: the backup claims but may not take over
# (--ft-timeout + 5 s from the crash); etcd thawed: it takes over within 60 s, timed from the thaw
ev_arbiter_outage_crash() {
	local ph=${HOST_OF[$cur]} ob=$bk g0 tf tcrash wait_ms tt
	g0=$(arb_gen)
	etcd_freeze
	tf=$(ft_now)
	EV_T0=$(ft_now)
	now_us
	tcrash=$NOW_US
	lab_crash "$ph" || err "lab_crash $ph: processes survived"
	host_gone "$ph"
	ft_wait_line "${FT_E[$ob]}" 'claiming generation' $((TMO / 1000 + 30)) "$ob" ||
		err "$ob never said it was claiming after the crash: $(stderr_tail "$ob")"
	now_us
	wait_ms=$(((tcrash + (TMO + 5000) * 1000 - NOW_US) / 1000))
	((wait_ms > 0)) && nap "$wait_ms"
	if grep -aq 'taking over from epoch' "${FT_E[$ob]}"; then
		err "$ob took over while the arbiter was frozen: $(grep -a 'taking over from epoch' "${FT_E[$ob]}" | tail -n1)"
	fi
	etcd_thaw
	tt=$(ft_now)
	takeover "$tt" '^no heartbeat from the primary$' 0 60 || { NEED_RECOVER=1; return 0; }
	EV_WHY+="; etcd frozen $(ms "$tf" "$tt") ms, timed from its thaw"
	gen_check "after the takeover" "$g0" 1
	lab_revive "$ph" || { err "lab_revive $ph failed"; NEED_RECOVER=1; return 0; }
	host_gone "$ph"
	reprotect "$ph"
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
	printf '%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s\n' "$ROW" "$1" "$2" "$3" \
		"$TMO" "${EV_T0:-}" "$(date -u -d "@${EV_T0:-$(date +%s)}" +%Y-%m-%dT%H:%M:%S.%3NZ)" "${EV_PRIM:-}" "${EV_PH:-}" \
		"${EV_BK:-}" "${EV_BH:-}" "${EV_SURV:-}" "${EV_DETECT:-}" "${EV_RUNNING:-}" "${EV_INSIDE:-}" "${EV_TICK:-}" \
		"${EV_TCP:-}" "${EV_PROT:-}" "${ACKED:-}" "${EV_FROM:-}" "${EV_OUTCOME:-}" "${EV_CUT_ASKED:-}" "${EV_CUT:-}" \
		"${EV_STALL:-}" "${EV_SPLIT:-0}" "$(csvq "${EV_WHY:-}")" "$4" "$(csvq "$5")" >>"$EV_CSV"
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
	[[ -z "${FT_E[etcd]:-}" ]] || tail -n 50 "${FT_E[etcd]}" >"$d/etcd.err" 2>/dev/null || true
}

ev_reset() {
	EV_T0="" EV_INJECT="" EV_PRIM=$cur EV_PH="" EV_BK=$bk EV_BH="" EV_SURV="" EV_DETECT="" EV_RUNNING="" EV_INSIDE="" EV_CLAIM=""
	EV_TICK="" EV_TCP="" EV_PROT="" EV_FROM="" EV_WHY="" ACKED=""
	EV_OUTCOME="" EV_CUT_ASKED="" EV_CUT="" EV_STALL="" EV_SPLIT=0
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
		${LAB_FT_ARGS[@]+"${LAB_FT_ARGS[@]}"} ${FT_ARB[@]+"${FT_ARB[@]}"} --cmdline "$cmdline"
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
	arb_ensure || { ABORT="etcd (the arbiter) does not come back"; return 1; }
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
	if ((ARBITER)) && ! ft_alive etcd; then
		err "the arbiter (etcd) ended: $(tail -n 1 "${FT_E[etcd]}" 2>/dev/null | cut -c1-200)"
	fi
	if [[ -z "$cur" ]] || ! ft_alive "$cur"; then
		err "the primary ${cur:-?} ended: $(stderr_tail "$cur")"
	else
		if [[ -z "$bk" ]]; then
			err "no backup"
		elif grep -aq 'taking over from epoch' "${FT_E[$bk]}"; then
			err "FALSE TAKEOVER: $bk took over with nothing injected: $(grep -a 'taking over from epoch' "${FT_E[$bk]}" | tail -n1)"
			# (the primary must learn it lost and stop; both running is a split brain)
			if ft_alive "$bk" && ft_wait_exit "$cur" 30; then
				ended "$cur"
			elif ft_alive "$bk"; then
				EV_SPLIT=1
				err "SPLIT BRAIN: $cur still runs 30 s later beside $bk: $(stderr_tail "$cur")"
			fi
		elif ! ft_alive "$bk"; then
			err "the backup $bk ended: $(stderr_tail "$bk")"
		fi
	fi
	if [[ -n "$cur" ]] && ft_alive "$cur"; then # (a primary that lost to a false takeover has ended by now)
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
	local fno="$1" kind="$2" j msg verified=ok sb=""
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
	link-cut) ev_link_cut ;;
	arbiter-outage) ev_arbiter_outage ;;
	arbiter-outage-crash) ev_arbiter_outage_crash ;;
	esac
	((${#ERRS[@]} == 0)) || verified=fail
	msg=""
	((${#ERRS[@]} == 0)) || printf -v msg '%s; ' "${ERRS[@]}"
	((${#NOTES[@]} == 0)) || msg+="(${NOTES[*]})"
	((EV_SPLIT)) && sb=" (SPLIT BRAIN)"
	row "$fno" "$kind" yes "$verified" "${msg%; }"
	[[ "$TIMING" == 1 ]] && echo "$TMO,$TIMING_K,$ROW,$EV_T0,${EV_DETECT:-},${EV_RUNNING:-},${EV_INSIDE:-},${EV_TICK:-},${EV_TCP:-},${EV_PROT:-},$verified,${EV_INJECT:-},${EV_CLAIM:-}" >>"$RES/timing.csv"
	say "row $ROW: failure $fno $kind${EV_OUTCOME:+ (outcome $EV_OUTCOME)}: $EV_PRIM@$EV_PH (acked ${ACKED:-?}) ->" \
		"${EV_SURV:-?}: detect ${EV_DETECT:--} ms, tick ${EV_TICK:--} ms, stream ${EV_TCP:--} ms (silent ${EV_STALL:--}" \
		"ms), re-protected ${EV_PROT:--} ms [${EV_WHY:-}]: $verified${sb}${msg:+: $msg}"
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
# the arbiter before the first guest: every ftvmm of the soak asks it (a primary already when it pairs)
if ((ARBITER)) && ! arb_start; then
	ABORT="etcd did not answer on host c: $(tail -n 3 "${FT_E[etcd]}" 2>/dev/null | tr '\n' ' ' | cut -c1-300)"
	die "$ABORT"
fi
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

# tests/integration/ft_lib.sh - helpers for the fault-tolerance tests (t_ft.sh) and tests/bench/ft.sh: ftvmm primaries
# and backups as background processes with their logs, waits on log lines, control-socket queries, a TAP. Sourced
# after lib.sh (uses FTVMM, GUEST_KERNEL, GUEST_INITRD, IT_LOGDIR, case_error).
#
#   ft_setup                     scratch dir $FT_WORK (on /var/tmp: a real file system, O_DIRECT works) + cleanup trap
#   ft_bg NAME CMD...            start CMD in the background: stdout -> $IT_LOGDIR/NAME.out, stderr -> NAME.err;
#                                FT_PID[NAME]=pid; the log paths are FT_O[NAME], FT_E[NAME]
#   ft_kill NAME [SIG]           kill -SIG (default 9) and reap; FT_RCS[NAME]=its exit status
#   ft_wait_exit NAME SECS       wait for it to end by itself; FT_RCS[NAME]; 1 if still running after SECS
#   ft_alive NAME                it is still running
#   ft_wait_line FILE REGEX SECS [NAME]   a line of FILE matches (grep -E); gives up early if process NAME died
#   ft_count FILE REGEX          how many lines match
#   ft_ctl SOCK CMD...           ftvmm ctl; prints the reply
#   ft_wait_status SOCK REGEX SECS   poll `status` until it matches (the last reply: FT_LAST_STATUS)
#   ft_port                      FT_PORT=a fresh TCP port number (sequential from a random base)
#   ft_tap_up NAME ADDR/LEN / ft_tap_down NAME
#   ft_now                       time.time()-style seconds with decimals
#   ft_log MSG                   "  [+Ns] MSG" (N: seconds since ft_lib.sh was sourced)
#   ft_tcp_problems LOG SKIP     ft_tcpcheck.py's problem lines (error incl. SPLICE, reset, eof) after the first SKIP
#                                of them, at most 3, on one line; ft_count LOG "$FT_TCP_PROBLEM_RE" counts them all

FT_HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
declare -A FT_PID=() FT_O=() FT_E=() FT_RCS=()
FT_WORK=""
FT_TAPS=()
FT_NEXT_PORT=$((20000 + (RANDOM % 2000) * 10))

ft_now() { date +%s.%N; }
FT_T0=$(date +%s)
# ft_log MSG: an indented progress line with the seconds since the script started
ft_log() { echo "  [+$(($(date +%s) - FT_T0))s] $*"; }

ft_setup() {
	local base=${FT_SCRATCH:-/var/tmp}
	[[ -d "$base" && -w "$base" ]] || base=${TMPDIR:-/tmp}
	FT_WORK=$(mktemp -d "$base/ftvmm-ft.XXXXXX")
	trap ft_cleanup EXIT
}

ft_cleanup() {
	local n
	for n in "${!FT_PID[@]}"; do
		kill -9 "${FT_PID[$n]}" 2>/dev/null || true
	done
	for n in "${!FT_PID[@]}"; do
		wait "${FT_PID[$n]}" 2>/dev/null || true
	done
	for n in "${FT_TAPS[@]}"; do
		ip link del "$n" 2>/dev/null || true
	done
	[[ -n "$FT_WORK" && "${FTVMM_FT_KEEP:-0}" != 1 ]] && rm -rf "$FT_WORK"
	return 0
}

ft_bg() {
	local name="$1"
	shift
	FT_O[$name]="$IT_LOGDIR/$name.out"
	FT_E[$name]="$IT_LOGDIR/$name.err"
	: >"${FT_O[$name]}"
	: >"${FT_E[$name]}"
	"$@" </dev/null >"${FT_O[$name]}" 2>"${FT_E[$name]}" &
	FT_PID[$name]=$!
	printf '%s\n' "$*" >"$IT_LOGDIR/$name.cmd"
}

ft_alive() { [[ -n "${FT_PID[$1]:-}" ]] && kill -0 "${FT_PID[$1]}" 2>/dev/null; }

ft_reap() {
	local name="$1" rc=0
	wait "${FT_PID[$name]}" 2>/dev/null || rc=$?
	FT_RCS[$name]=$rc
	unset "FT_PID[$name]"
}

ft_kill() {
	local name="$1" sig="${2:-9}"
	[[ -n "${FT_PID[$name]:-}" ]] || return 0
	kill "-$sig" "${FT_PID[$name]}" 2>/dev/null || true
	ft_reap "$name"
}

ft_wait_exit() {
	local name="$1" secs="$2" end
	end=$(($(date +%s%N) + secs * 1000000000))
	while ft_alive "$name"; do
		(($(date +%s%N) > end)) && return 1
		sleep 0.1
	done
	[[ -n "${FT_PID[$name]:-}" ]] && ft_reap "$name"
	return 0
}

ft_wait_line() {
	local file="$1" re="$2" secs="$3" name="${4:-}" end
	end=$(($(date +%s%N) + ${secs%.*} * 1000000000))
	while :; do
		grep -aqE -- "$re" "$file" 2>/dev/null && return 0
		if [[ -n "$name" ]] && ! ft_alive "$name"; then
			grep -aqE -- "$re" "$file" 2>/dev/null && return 0
			return 2
		fi
		(($(date +%s%N) > end)) && return 1
		sleep 0.05
	done
}

ft_count() { grep -acE -- "$2" "$1" 2>/dev/null || true; }

# ft_wait_count FILE REGEX N SECS [NAME]: until FILE has at least N lines matching REGEX (0), SECS pass (1) or
# process NAME ends first (2)
ft_wait_count() {
	local file="$1" re="$2" n="$3" secs="$4" name="${5:-}" end
	end=$(($(date +%s%N) + secs * 1000000000))
	while :; do
		(($(ft_count "$file" "$re") >= n)) && return 0
		[[ -n "$name" ]] && ! ft_alive "$name" && return 2
		(($(date +%s%N) > end)) && return 1
		sleep 0.1
	done
}

ft_ctl() { timeout 10 "$FTVMM" ctl "$@" 2>&1 || true; }

ft_wait_status() {
	local sock="$1" re="$2" secs="$3" end st
	end=$(($(date +%s%N) + secs * 1000000000))
	while :; do
		st=$(ft_ctl "$sock" status)
		FT_LAST_STATUS=$st
		grep -qE -- "$re" <<<"$st" && return 0
		(($(date +%s%N) > end)) && return 1
		sleep 0.2
	done
}

# (not `$(ft_port)`: a subshell would not advance the counter)
ft_port() {
	FT_NEXT_PORT=$((FT_NEXT_PORT + 1))
	FT_PORT=$FT_NEXT_PORT
}

ft_tap_up() {
	local name="$1" addr="$2"
	ip link del "$name" 2>/dev/null || true
	ip tuntap add dev "$name" mode tap || return 1
	FT_TAPS+=("$name")
	ip addr add "$addr" dev "$name" && ip link set "$name" up
}

ft_tap_down() { ip link del "$1" 2>/dev/null || true; }

# ft_field KEY STRING: the value of KEY=value in STRING
ft_field() { sed -nE "s/.*(^| )$1=([^ ]*).*/\\2/p" <<<"$2" | head -n1; }

# ft_last_seq_any FILE: the last "FTWORK seq=N" in a console log, even on a line cut short by a kill (0 if none).
# (The serial console is not held for the backup's ack: a line can stop mid-way on a killed primary and go on,
# from the same byte, on the backup.)
ft_last_seq_any() {
	local s
	# (a number cut short by the kill has no blank after it: "seq=7" of "seq=719" must not count)
	s=$(grep -aoE 'FTWORK seq=[0-9]+ ' "$1" 2>/dev/null | tail -n1 | sed -E 's/FTWORK seq=([0-9]+) /\1/')
	echo "${s:-0}"
}

# ft_threads NAME: where each thread of ftvmm process NAME is (state, kernel wait channel, current syscall number:
# 16 = ioctl, i.e. a vCPU inside KVM_RUN; 202 = futex), into the test log. Tells a guest the test bed's KVM
# stopped running from a VMM thread stuck in user space.
ft_threads() {
	local pid=${FT_PID[$1]:-} t
	[[ -n "$pid" && -d /proc/$pid ]] || return 0
	for t in /proc/"$pid"/task/*; do
		echo "  | thread $(cat "$t/comm" 2>/dev/null): state $(awk '{print $3}' "$t/stat" 2>/dev/null)" \
			"wchan $(cat "$t/wchan" 2>/dev/null) syscall $(cut -d' ' -f1 "$t/syscall" 2>/dev/null)"
	done
}

# ft_host_timer_evidence: the test bed's own hrtimers (this kernel's /proc/timer_list), for a guest whose timer
# stopped: a KVM guest's LAPIC timer is an hrtimer on the CPU that runs its vCPU thread (apic_timer_fn), and a CPU
# that lost its own timer interrupt keeps its expired hrtimers queued. Prints each CPU's expires_next against now
# and every hrtimer overdue by more than 100 ms (callback, CPU, how late): none means the host's timers are fine.
ft_host_timer_evidence() {
	awk '
		/^now at / { now = $3 }
		/^cpu: / { cpu = $2 }
		/^ #[0-9]+: / { cb = $3; sub(/,$/, "", cb) }
		/^ # expires at / {
			split($4, e, "-"); late = (now - e[2]) / 1e6
			if (late > 100) { printf "  | host cpu %s: %s overdue by %.0f ms\n", cpu, cb, late; n++ }
		}
		/\.expires_next/ { printf "  | host cpu %s: expires_next %+.0f ms from now\n", cpu, ($3 - now) / 1e6 }
		END { if (!n) print "  | host: no hrtimer overdue by more than 100 ms" }
	' /proc/timer_list 2>/dev/null || echo "  | host: /proc/timer_list unreadable"
}

# ft_stuck_evidence NAME SOCK: a guest that stopped printing, seen from outside while it still runs: the status, the
# threads, then twice, 2 s apart, a snapshot's vCPU registers, LAPIC (timer, ISR/IRR), pending events and the disk
# device's queue (requests in flight, last_avail): moving RIPs and an armed timer with nothing delivered tell a lost
# interrupt from a vCPU stuck in one place, an unconsumed ring from a guest waiting on its disk.
ft_stuck_evidence() {
	local name="$1" sock="$2" i
	echo "  --- $name stopped printing: status: $(ft_ctl "$sock" status)"
	ft_threads "$name"
	ft_host_timer_evidence
	for i in 1 2; do
		if ft_ctl "$sock" snapshot "$FT_WORK/stuck-$name.snap" | grep -q '^ok'; then
			echo "  | snapshot $i (whole: ${IT_LOGDIR:-$FT_WORK}/stuck-$name.inspect$i):"
			"$FTVMM" inspect "$FT_WORK/stuck-$name.snap" >"${IT_LOGDIR:-$FT_WORK}/stuck-$name.inspect$i" 2>&1 || true
			grep -E '^  vcpu|RIP|events|LAPIC|ISR|IRR|TSC_DEADLINE|^kvmclock|^PIT|^IOAPIC|^PIC|^  virtio-blk|blk-|virtio-vq|virtio-status|thri-pending|^ +(ier|mcr) =' \
				"${IT_LOGDIR:-$FT_WORK}/stuck-$name.inspect$i" | head -n 80 | sed 's/^/  | /' || true
			rm -f "$FT_WORK/stuck-$name.snap"
		fi
		((i == 2)) || sleep 2
	done
}

# ft_diagnose NAME SOCK: when a guest stopped: its status and threads, then SIGTERM (with FTVMM_DEBUG=1 in its
# environment it prints every vCPU's registers on the way out) and the tail of its stderr, into the test log.
ft_diagnose() {
	local name="$1" sock="$2"
	echo "  --- diagnosis of $name: status: $(ft_ctl "$sock" status)"
	ft_threads "$name"
	ft_host_timer_evidence
	ft_kill "$name" TERM
	grep -v '^ftvmm: backup: \(listening\|primary connected\|baseline\)' "${FT_E[$name]}" | tail -n 30 | sed 's/^/  | /'
	# the guest's own last words (ftwork's BAD line, its result, a panic) say why it stopped ticking
	echo "  --- the last console lines of $name:"
	tail -n 8 "${FT_O[$name]}" 2>/dev/null | tr -d '\r' | cut -c1-200 | sed 's/^/  | /'
}

# ft_last_seq FILE: the last "FTWORK seq=N ... ok" seq in a console log (0 if none)
ft_last_seq() {
	local s
	s=$(grep -aoE 'FTWORK seq=[0-9]+ sum=[0-9a-f]+ ok' "$1" 2>/dev/null | tail -n1 | sed -E 's/FTWORK seq=([0-9]+).*/\1/')
	echo "${s:-0}"
}

# ft_tcp_problems LOG SKIP: the problem lines of an ft_tcpcheck.py log (an error: SPLICE, a seq gap or repeat, a
# malformed line, a second connection; a reset; EOF) after the first SKIP of them, at most 3, joined on one line
FT_TCP_PROBLEM_RE='^(error|reset|eof)( |$)'
ft_tcp_problems() {
	awk -v s="$2" -v re="$FT_TCP_PROBLEM_RE" \
		'$0 ~ re && ++n > s && n <= s + 3 { printf "%s%s", (n > s + 1 ? " | " : ""), $0 }' "$1" 2>/dev/null || true
}

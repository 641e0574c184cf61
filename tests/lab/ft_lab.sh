# tests/lab/ft_lab.sh - FT in the failure lab: the guests, backups, client checker and checks that t_lab.sh and t_arbiter.sh share; sourced after lib.sh, ft_lib.sh and lab.sh.
# shellcheck shell=bash disable=SC2034
# The sourcing script sets: W (scratch dir), L (log dir), TMO (--ft-timeout), DISK_SIZE, GUEST_MEM, BK_PORT, TCP_PORT,
# PY, kargs (--kernel/--initrd), LAB_FT_ARGS (the FT links' TLS); FT_EXTRA (default none): more options for every
# primary and backup (t_arbiter.sh: --arbiter and --name); LAB_PAGES (default 512): ftwork's pages rewritten per tick.
# State shared with the script: cur (the primary), bk (its
# backup), TCPLOG, fresh_failed.
FT_EXTRA=(${FT_EXTRA[@]+"${FT_EXTRA[@]}"})
LAB_PAGES=${LAB_PAGES:-512}
declare -gA HOST_OF=() DISK=()

ms() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.0f", (b - a) * 1000 }'; }

# lbg HOST NAME CMD...: lab_bg, and the same process known to ft_lib's waits (ft_wait_line ... NAME, ft_alive)
lbg() {
	lab_bg "$@"
	FT_PID[$2]=${LAB_PID[$2]} FT_O[$2]=${LAB_OUT[$2]} FT_E[$2]=${LAB_ERR[$2]}
	HOST_OF[$2]=$1
}

# start_backup NAME HOST: an ftvmm backup on HOST with a fresh disk of its own, listening on HOST's replication address
start_backup() {
	local name="$1" h="$2"
	DISK[$name]="$(lab_host_dir "$h")/$name.img"
	truncate -s "$DISK_SIZE" "${DISK[$name]}"
	# FTVMM_DEBUG: a guest that stops can be diagnosed (vCPU registers on SIGTERM)
	# LAB_FT_ARGS: TLS with the lab's pre-shared key (lab_ft_credentials)
	# --stats: once it took over and is protected again, its epochs' telemetry (lab/lossy-link reads it)
	lbg "$h" "$name" env FTVMM_DEBUG=1 "$FTVMM" backup --listen "${LAB_REP_IP[$h]}:$BK_PORT" --control "$W/$name.sock" \
		--ft-timeout "$TMO" --stats "$L/$name.stats" --disk "${DISK[$name]}" --net "tap=$LAB_TAP" "${LAB_FT_ARGS[@]}" ${FT_EXTRA[@]+"${FT_EXTRA[@]}"}
	ft_wait_line "${FT_E[$name]}" 'backup: listening on' 20 "$name" ||
		{ case_error "$name did not start listening: $(head -c 300 "${FT_E[$name]}")"; return 1; }
}

# new_backup HOST: a fresh backup on HOST and `protect` on the current primary
nbk=0
new_backup() {
	nbk=$((nbk + 1))
	bk=b$nbk
	start_backup "$bk" "$1" || return 1
	local reply
	reply=$(ft_ctl "$W/$cur.sock" protect "${LAB_REP_IP[$1]}:$BK_PORT")
	[[ "$reply" == ok* ]] || { case_error "protect $cur -> $bk: $reply"; return 1; }
}

# ensure_protected: wait for protected=yes. A link lost without a crash (a stall of the test bed longer than the
# timeout) is not what this case tests: note it and pair the primary with a fresh backup on the same host (twice at most).
spurious=0
ensure_protected() {
	local tries=0 h
	while :; do
		if ! ft_wait_status "$W/$cur.sock" 'protected=yes|link=down' 150; then
			case_error "$cur never reached protected=yes (${FT_LAST_STATUS:-})"
			return 1
		fi
		grep -q 'protected=yes' <<<"$FT_LAST_STATUS" && return 0
		spurious=$((spurious + 1))
		ft_log "note: $cur lost $bk without a crash: $(grep -v '^ ' "${FT_E[$bk]}" | tail -n1)"
		((++tries > 2)) && { case_error "$cur keeps losing its backup: $FT_LAST_STATUS"; return 1; }
		h=${HOST_OF[$bk]}
		lab_kill "$bk"
		unset "FT_PID[$bk]"
		new_backup "$h" || return 1
	done
}

# tcp_problems WHAT: one case_error for the checker's problem lines since the last call (a SPLICE: the client received
# bytes the surviving copy of the guest did not send; a gap or repeat of seqs; a reset; EOF)
tcp_seen=0 TCPLOG="$L/tcpcheck.log"
tcp_problems() {
	local all new
	all=$(ft_count "$TCPLOG" "$FT_TCP_PROBLEM_RE")
	((all > tcp_seen)) || return 0
	new=$(ft_tcp_problems "$TCPLOG" "$tcp_seen")
	tcp_seen=$all
	if [[ "$new" == *SPLICE* ]]; then
		case_error "$1: the client received output the surviving copy of the guest did not produce: $new"
	else
		case_error "$1: TCP checker: $new"
	fi
	return 1
}
# tcp_moved: the client has 3 more lines than at the last crash, with no problem (checked while the next backup
# syncs); 3: a splice shows on the survivor's first line after the foreign bytes
tcp_at_crash=-1 crash_no=0
tcp_moved() {
	((tcp_at_crash < 0)) && return 0
	if ! ft_wait_count "$TCPLOG" '^seq ' $((tcp_at_crash + 3)) 30; then
		case_error "crash $crash_no: the client's TCP stream did not move again within 30 s"
		tcp_problems "crash $crash_no" || true
		return 1
	fi
	tcp_ms+=("$(awk -v a="$t_take" -v k="$t_crash" '$1 == "seq" && $3 > a { printf "%.0f", ($3 - k) * 1000; exit }' "$TCPLOG")")
	tcp_at_crash=-1
	tcp_problems "crash $crash_no" || true
}

# start_guest: a fresh guest p<G> (G = 0, 1, ...) booted unprotected on host a (faster in the test bed), its chained
# TCP stream to a fresh checker on the client (port TCP_PORT+G, log TCPLOG), paired once ftwork ticks with a new
# backup on host b. Sets cur and bk. 1 after a case_error.
gen=-1 fresh_failed=""
start_guest() {
	local p port ftargs cmdline
	gen=$((gen + 1))
	p=p$gen port=$((TCP_PORT + gen))
	TCPLOG="$L/tcpcheck.log"
	((gen == 0)) || TCPLOG="$L/tcpcheck$gen.log"
	tcp_seen=0 tcp_at_crash=-1
	cur=$p bk=""
	lbg c tcpcheck "$PY" "$here/ft_tcpcheck.py" --listen "${LAB_LAN_IP[c]}:$port" --log "$TCPLOG" --chain
	if ! ft_wait_line "$TCPLOG" '^listening' 20 tcpcheck; then
		case_error "the TCP checker did not start on the client"
		return 1
	fi
	DISK[$p]="$(lab_host_dir a)/$p.img"
	truncate -s "$DISK_SIZE" "${DISK[$p]}"
	ftargs="--pages,$LAB_PAGES,--interval-ms,50,--disk,/dev/vda,--dma-pages,16,--tcp,${LAB_LAN_IP[c]}:$port,--tcp-chain,--timers,--timer-stall-ms,15000,--count,1000000"
	cmdline=$(guest_cmdline "ftvmm.test=ftguest ftvmm.ftnet=$LAB_GUEST_IP/24 ftvmm.ftargs=$ftargs")
	lbg a "$p" env FTVMM_DEBUG=1 "$FTVMM" run "${kargs[@]}" --mem "$GUEST_MEM" --cpus 2 --disk "${DISK[$p]}" \
		--net "tap=$LAB_TAP" --control "$W/$p.sock" --epoch 25 --ft-timeout "$TMO" --stats "$L/$p.stats" "${LAB_FT_ARGS[@]}" ${FT_EXTRA[@]+"${FT_EXTRA[@]}"} \
		--cmdline "$cmdline"
	if ! ft_wait_line "${FT_O[$p]}" 'FTWORK seq=[0-9]+ sum' 240 "$p"; then
		case_error "ftwork never ticked on $p"
		return 1
	fi
	new_backup b || return 1
	if ! ft_wait_line "${FT_E[$p]}" 'guest is PROTECTED' 120 "$p"; then
		case_error "$p never became PROTECTED"
		return 1
	fi
	ft_log "$p on host a is PROTECTED by $bk on host b"
}

# The cases below go on with the guest the case before left running and protected (guest_ready), else start one.

# retire_guest: the current guest ends (its ftvmm processes, SIGKILL) and so does the client's checker (SIGTERM: its
# summary line goes into the log)
retire_guest() {
	local n summary
	for n in "${!LAB_PID[@]}"; do
		[[ "$n" == tcpcheck ]] && continue
		# (one that ft_lib reaped already has no FT_PID: its pid may belong to someone else now, never signal it)
		if [[ -n "${FT_PID[$n]:-}" ]]; then lab_kill "$n"; else unset "LAB_PID[$n]"; fi
		unset "FT_PID[$n]"
	done
	if [[ -n "${LAB_PID[tcpcheck]:-}" ]]; then
		lab_kill tcpcheck TERM
		summary=$(grep '^summary' "$TCPLOG" | tail -n1 || true)
		ft_log "client (${TCPLOG##*/}): ${summary:-no summary}"
	fi
	unset "FT_PID[tcpcheck]"
	cur="" bk=""
}

# guest_ready: the guest the last case left, when it runs with its backup and its checker (ensure_protected); else a
# fresh one (start_guest) on hosts a and b revived first (a case that failed half-way may have left one crashed,
# frozen or degraded). Every primary writes --stats ($L/NAME.stats): p<G> from its start, a backup that took over
# from its next pairing. A fresh guest that failed to start is not tried again (each try may cost minutes of the
# test bed). 1 after a case_error.
guest_ready() {
	if [[ -n "$cur" && -n "$bk" ]] && ft_alive "$cur" && ft_alive "$bk" && ft_alive tcpcheck; then
		ensure_protected
		return
	fi
	if [[ -n "$fresh_failed" ]]; then
		case_error "skipped: a fresh guest could not be started in $fresh_failed"
		return 1
	fi
	if [[ -n "$cur" ]]; then
		ft_log "a fresh guest; the last case left primary $cur" \
			"($(ft_alive "$cur" && echo running || echo gone)), backup ${bk:-none}"
	fi
	retire_guest
	if ! lab_revive a || ! lab_revive b; then
		case_error "cannot revive hosts a and b for a fresh guest"
		fresh_failed=$CASE_NAME
		return 1
	fi
	start_guest || { fresh_failed=$CASE_NAME; return 1; }
}

# tcp_moves_on WHAT N: the client's stream has 3 lines more than N (within 30 s), with no problem (a splice shows on
# the first line the survivor sends after foreign bytes)
tcp_moves_on() {
	if ! ft_wait_count "$TCPLOG" '^seq ' $(($2 + 3)) 30; then
		case_error "$1: the client's TCP stream did not move within 30 s ($2 lines before, $(ft_count "$TCPLOG" '^seq ') now)"
		tcp_problems "$1" || true
		return 1
	fi
	tcp_problems "$1"
}

# no_bad NAME WHAT: a case_error for the first BAD line on NAME's console
no_bad() {
	local bad
	bad=$(grep -a 'FTWORK.* BAD ' "${FT_O[$1]}" | head -n1 | tr -d '\r' || true)
	[[ -z "$bad" ]] || case_error "$2: the guest on $1: $bad"
}

# ticks_on NAME WHAT: the guest on NAME prints 3 more ticks (within 30 s). If not, once per copy, what its vCPUs,
# LAPICs and disk queue look like from outside while it still runs (ft_stuck_evidence: a guest stopped after a
# takeover was seen once, 2026-12-07 r23, its epochs then writing no guest page at all)
declare -A TICKS_EVIDENCE=()
ticks_on() {
	local n
	n=$(ft_count "${FT_O[$1]}" 'FTWORK seq=[0-9]+ sum')
	ft_wait_count "${FT_O[$1]}" 'FTWORK seq=[0-9]+ sum' $((n + 3)) 30 "$1" && return 0
	case_error "$2: the guest on $1 stopped ticking (last seq $(ft_last_seq_any "${FT_O[$1]}"))"
	if [[ -z "${TICKS_EVIDENCE[$1]:-}" ]] && ft_alive "$1"; then
		TICKS_EVIDENCE[$1]=1
		ft_stuck_evidence "$1" "$W/$1.sock"
		[[ -s "$L/$1.stats" ]] && echo "  | $1's last epoch: $(tail -n1 "$L/$1.stats" | cut -c1-300)"
		echo "  --- the last console lines of $1:"
		tail -n 8 "${FT_O[$1]}" 2>/dev/null | tr -d '\r' | cut -c1-200 | sed 's/^/  | /'
	fi
	return 0 # (the scripts run under set -e: the case goes on, its error recorded)
}

# stderr_tail NAME: its last lines on stderr, on one line (less FTVMM_DEBUG's register dumps)
stderr_tail() { grep -avE '^ |vcpu [0-9]+ registers' "${FT_E[$1]}" | tail -n 2 | tr '\n' ' ' || true; }

# tap_frames HOST: frames ftvmm wrote into HOST's TAP (its rx_packets: what the host's kernel received from the VMM)
tap_frames() { lab_exec "$1" cat "/sys/class/net/$LAB_TAP/statistics/rx_packets" 2>/dev/null || echo "?"; }
# lan_frames HOST: frames HOST put on the LAN (rx_packets of its link's end in lab-net)
lan_frames() { lab_exec net cat "/sys/class/net/$1-lan/statistics/rx_packets" 2>/dev/null || echo "?"; }
# delta A B: B - A, or ? when either is not a count
delta() {
	if [[ "$1" =~ ^[0-9]+$ && "$2" =~ ^[0-9]+$ ]]; then echo $(($2 - $1)); else echo "?"; fi
}

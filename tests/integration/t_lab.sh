#!/usr/bin/env bash
# tests/integration/t_lab.sh - the primary's whole host crashes, silently, in the failure lab (tests/lab/lab.sh). DRAFT: not yet run in the test bed.
#
# Case:
#   lab/host-crash  hosts a and b and the client c are network namespaces on an emulated wire (tests/lab/lab.sh). The
#                   guest (160M, 2 vCPUs, 192.0.2.2 on the LAN through tap0 of its host) boots unprotected on a, runs
#                   ftwork (512 pages rewritten per tick, O_DIRECT disk records, DMA-read pages, per-CPU timers, one
#                   chained TCP stream to ft_tcpcheck.py --chain on the client) and is paired (`ctl protect`) with a
#                   backup on b over the replication link. FTVMM_LAB_CRASHES (3) times, at a random moment (0-1 s after
#                   a tick under protection), lab_crash of the primary's host: its links go silent first, then every
#                   process on it is killed, so no FIN or RST reaches anyone. The backup must take over because the
#                   heartbeats stopped ("no heartbeat from the primary"), not before --ft-timeout of silence, from an
#                   epoch >= the primary's last acked one; the guest goes on (no BAD: memory, disk, DMA pages, clock,
#                   timers); the client's stream moves again with no gap, repeat, reset or SPLICE (the chain: every
#                   byte the client received was produced by the copy that survived). The crashed host comes back
#                   fresh (lab_revive) and runs the next backup. At the end the survivor's disk holds ftwork's records
#                   as an unbroken prefix with the sums the consoles printed (ft_records.py), and the client's last
#                   seq matches the guest's.
# Needs root, python3, and in the kernel: network namespaces, veth, bridge, tun (no tc netem: crashes only).
# Env (FTVMM_* names pass into the test bed): FTVMM_LAB_CRASHES=3  FTVMM_LAB_TIMEOUT=4000 (--ft-timeout, ms: every
#      crash costs that much silence)  FTVMM_FT_KEEP=1 (keep the scratch dir with the disk images)
set -euo pipefail
here=$(dirname "${BASH_SOURCE[0]}")
source "$here/lib.sh"
source "$here/ft_lib.sh"
source "$here/../lab/lab.sh"
it_begin lab

CRASHES=${FTVMM_LAB_CRASHES:-3}
TMO=${FTVMM_LAB_TIMEOUT:-4000}
DISK_SIZE=$((8 << 20))
GUEST_MEM=160M
PY=python3
# every host has its own network stack: fixed ports cannot collide
BK_PORT=7000
TCP_PORT=7100

ft_setup
W=$FT_WORK
L=$IT_LOGDIR
rm -f "$L"/*.out "$L"/*.err "$L"/*.cmd "$L"/*.log "$L"/*.stats 2>/dev/null || true
LAB_DIR="$W/lab"
LAB_LOG="$L"
# (every process runs in the lab: lab_teardown kills and reaps them all, then ft_cleanup must not kill their old pids)
trap 'lab_teardown; FT_PID=(); ft_cleanup' EXIT

case_begin lab/host-crash
initrd_files=$(zcat "$GUEST_INITRD" | cpio -it 2>/dev/null || true)
ftwork_name=$(grep -m1 -E '^(\./)?bin/ftwork$' <<<"$initrd_files" || true)
if [[ -z "$ftwork_name" ]] ||
	(($(zcat "$GUEST_INITRD" | cpio -i --quiet --to-stdout "$ftwork_name" 2>/dev/null | grep -ac -- '--tcp-chain' || true) == 0)); then
	case_error "$GUEST_INITRD lacks bin/ftwork with --tcp-chain: rebuild it (guest-images/build.sh)"
	case_end
	it_end
fi
if ! lab_setup; then
	case_error "cannot build the lab (network namespaces, veth, bridge, tun)"
	case_end
	it_end
fi

kargs=(--kernel "$GUEST_KERNEL" --initrd "$GUEST_INITRD")
ms() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.0f", (b - a) * 1000 }'; }
declare -A HOST_OF=() DISK=()

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
	lbg "$h" "$name" env FTVMM_DEBUG=1 "$FTVMM" backup --listen "${LAB_REP_IP[$h]}:$BK_PORT" --control "$W/$name.sock" \
		--ft-timeout "$TMO" --disk "${DISK[$name]}" --net "tap=$LAB_TAP"
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
tcp_seen=0
tcp_problems() {
	local all new
	all=$(ft_count "$L/tcpcheck.log" "$FT_TCP_PROBLEM_RE")
	((all > tcp_seen)) || return 0
	new=$(ft_tcp_problems "$L/tcpcheck.log" "$tcp_seen")
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
	if ! ft_wait_count "$L/tcpcheck.log" '^seq ' $((tcp_at_crash + 3)) 30; then
		case_error "crash $crash_no: the client's TCP stream did not move again within 30 s"
		tcp_problems "crash $crash_no" || true
		return 1
	fi
	tcp_ms+=("$(awk -v a="$t_take" -v k="$t_crash" '$1 == "seq" && $3 > a { printf "%.0f", ($3 - k) * 1000; exit }' "$L/tcpcheck.log")")
	tcp_at_crash=-1
	tcp_problems "crash $crash_no" || true
}

ok=1
lbg c tcpcheck "$PY" "$here/ft_tcpcheck.py" --listen "${LAB_LAN_IP[c]}:$TCP_PORT" --log "$L/tcpcheck.log" --chain
ft_wait_line "$L/tcpcheck.log" '^listening' 20 tcpcheck || { case_error "the TCP checker did not start on the client"; ok=0; }
DISK[p0]="$(lab_host_dir a)/p0.img"
truncate -s "$DISK_SIZE" "${DISK[p0]}"
ftargs="--pages,512,--interval-ms,50,--disk,/dev/vda,--dma-pages,16,--tcp,${LAB_LAN_IP[c]}:$TCP_PORT,--tcp-chain,--timers,--timer-stall-ms,15000,--count,1000000"
cmdline=$(guest_cmdline "ftvmm.test=ftguest ftvmm.ftnet=$LAB_GUEST_IP/24 ftvmm.ftargs=$ftargs")
cur=p0 bk=""
if ((ok)); then
	# booted unprotected (faster in the test bed), paired once ftwork ticks
	lbg a p0 env FTVMM_DEBUG=1 "$FTVMM" run "${kargs[@]}" --mem "$GUEST_MEM" --cpus 2 --disk "${DISK[p0]}" \
		--net "tap=$LAB_TAP" --control "$W/p0.sock" --epoch 25 --ft-timeout "$TMO" --stats "$L/p0.stats" --cmdline "$cmdline"
	ft_wait_line "${FT_O[p0]}" 'FTWORK seq=[0-9]+ sum' 240 p0 || { case_error "ftwork never ticked on p0"; ok=0; }
fi
((ok)) && { new_backup b || ok=0; }
((ok)) && { ft_wait_line "${FT_E[p0]}" 'guest is PROTECTED' 120 p0 || { case_error "p0 never became PROTECTED"; ok=0; }; }
((ok)) && ft_log "p0 on host a is PROTECTED by $bk on host b"

crashes=0 takeover_ms=() tcp_ms=() t_take=0 t_crash=0
for ((k = 1; k <= CRASHES && ok; k++)); do
	ensure_protected || { ok=0; break; }
	tcp_moved || { ok=0; break; }
	n0=$(ft_count "${FT_O[$cur]}" 'FTWORK seq=')
	if ! ft_wait_count "${FT_O[$cur]}" 'FTWORK seq=' $((n0 + 1)) 20; then
		case_error "crash $k: the guest on $cur stopped ticking before the crash"
		ft_diagnose "$cur" "$W/$cur.sock"
		ok=0
		break
	fi
	sleep "0.$(printf '%03d' $((RANDOM % 1000)))"
	st=$(ft_ctl "$W/$cur.sock" status)
	acked=$(ft_field last_commit "$st")
	tcp_at_crash=$(ft_count "$L/tcpcheck.log" '^seq ') crash_no=$k
	ch=${HOST_OF[$cur]}
	t_crash=$(ft_now)
	lab_crash "$ch" || case_error "crash $k: lab_crash $ch: processes survived"
	unset "FT_PID[$cur]" # (reaped by lab_crash: its pid may be reused)
	crashes=$((crashes + 1))
	seq_at_crash=$(ft_last_seq "${FT_O[$cur]}")
	if ! ft_wait_line "${FT_E[$bk]}" 'taking over from epoch' $((TMO / 1000 + 30)) "$bk"; then
		case_error "crash $k (host $ch, $cur acked $acked): $bk did not take over: $(tail -n 2 "${FT_E[$bk]}" | tr '\n' ' ')"
		ok=0
		break
	fi
	t_take=$(ft_now)
	line=$(grep -aE 'taking over from epoch' "${FT_E[$bk]}" | tail -n1)
	why=$(sed -nE 's/.*primary lost \((.*)\): taking over.*/\1/p' <<<"$line")
	from=$(sed -nE 's/.*taking over from epoch ([0-9]+).*/\1/p' <<<"$line")
	# silence is all a crashed host leaves: a closed connection would mean a FIN or RST got out of it
	[[ "$why" == "no heartbeat from the primary" ]] || case_error "crash $k: $bk took over on '$why', not on silence"
	took=$(ms "$t_crash" "$t_take")
	((took >= TMO - 250)) || case_error "crash $k: $bk took over $took ms after the crash, before --ft-timeout ($TMO ms) of silence"
	takeover_ms+=("$took")
	if [[ -n "$acked" && -n "$from" ]] && ((from < acked)); then
		case_error "crash $k: $bk resumed from epoch $from but $cur had epoch $acked acked: a committed epoch was lost"
	fi
	if ! ft_wait_line "${FT_O[$bk]}" 'FTWORK seq=[0-9]+ (sum|BAD)' 60 "$bk"; then
		case_error "crash $k: the guest printed nothing on $bk in 60 s after the takeover from epoch $from"
		ft_diagnose "$bk" "$W/$bk.sock"
		ok=0
		break
	fi
	if grep -aq 'FTWORK.* BAD ' "${FT_O[$bk]}"; then
		case_error "crash $k: $(grep -a 'FTWORK.* BAD ' "${FT_O[$bk]}" | head -n1 | tr -d '\r')"
		ok=0
		break
	fi
	# at most 2 after the last complete line on the dead primary (the console is not output-committed: one tick
	# may have started its line there and finished it here)
	first=$(grep -aoE 'FTWORK seq=[0-9]+ sum=' "${FT_O[$bk]}" | head -n1 | sed -E 's/FTWORK seq=([0-9]+) .*/\1/' || true)
	((first <= seq_at_crash + 2)) || case_error "crash $k: the guest resumed at seq $first after $cur printed $seq_at_crash"
	ft_log "crash $k: host $ch ($cur, acked $acked, seq $seq_at_crash) -> $bk on host ${HOST_OF[$bk]} from epoch $from" \
		"after $took ms ($why), resumed at seq $first"
	# the survivor is the primary now; the crashed host comes back fresh and runs its next backup
	cur=$bk
	lab_revive "$ch" || { case_error "lab_revive $ch failed"; ok=0; break; }
	new_backup "$ch" || { ok=0; break; }
done
((ok)) && { tcp_moved || ok=0; }
tcp_problems "lab/host-crash" || true
((crashes >= CRASHES)) || case_error "only $crashes of $CRASHES host crashes completed"
ft_log "$crashes crashes ($spurious spurious link losses); takeover ms after the crash: ${takeover_ms[*]:-}; TCP moving again ms: ${tcp_ms[*]:-}"

# the survivor's disk (read while it runs: ftwork's records are O_DSYNC, on the disk before the line is printed)
if ((ok)); then
	tlast=$(grep '^seq ' "$L/tcpcheck.log" | tail -n1 | awk '{print $2}' || true)
	area=$(grep -aoE 'FTWORK start .* area=[0-9]+' "$L/p0.out" | head -n1 | sed 's/.*area=//' || true)
	final_last=$(ft_last_seq "${FT_O[$cur]}")
	consoles=("$L"/p0.out "$L"/b[0-9]*.out)
	if out=$("$PY" "$here/ft_records.py" --disk "${DISK[$cur]}" --area "${area:-0}" --last "$final_last" \
		--ticks "${consoles[@]/#/--console=}" 2>&1); then
		ft_log "$out (survivor $cur on host ${HOST_OF[$cur]})"
	else
		case_error "$out"
	fi
	[[ -n "$tlast" ]] && ((tlast <= final_last + 1 && tlast >= final_last - 40)) ||
		case_error "the client's TCP stream ended at seq ${tlast:-none}, the guest at $final_last"
fi
lab_kill tcpcheck TERM
unset "FT_PID[tcpcheck]"
summary=$(grep '^summary' "$L/tcpcheck.log" | tail -n1 || true)
ft_log "client: ${summary:-no summary}"
[[ "$summary" == *" splices=0"* ]] || case_error "the client's checker: ${summary:-no summary line}"
case_end

it_end

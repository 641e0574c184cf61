#!/usr/bin/env bash
# tests/integration/t_floodchain.sh - repro, not in the default suite: many kill -9 takeovers of a guest flooding its NIC and disk.
#
# Why: ftflood/takeover failed once (clean-clone run r14, 2026-12-07): after b1 took over, the guest's UDP flood went on
# (718 MiB reached the host) but its ticks and disk counter stood still. One takeover per ftflood run is too few to
# catch it again, so this chains them on one guest: boot unprotected (flooding), then FTVMM_FLOODCHAIN_KILLS (30)
# times: a fresh backup, `protect`, a random 1-6 s of flooding under protection, kill -9 of the primary, the backup
# must take over and the guest must go on (3 flood ticks with UDP and disk moving, 2 verified ftwork ticks). When it
# does not: the vCPUs' and virtio-blk's state from two snapshots (ft_stuck_evidence), the guest's hung-task lines
# (15 s timeout on its command line), then its registers (ft_diagnose), and the chain stops.
# Run: ITEST_GROUPS=floodchain tests/integration/run.sh floodchain
set -euo pipefail
here=$(dirname "${BASH_SOURCE[0]}")
source "$here/lib.sh"
source "$here/ft_lib.sh"
it_begin floodchain

TAP=ftfc0
HOST_IP=198.18.1.1
GUEST_NET=198.18.1.2/24
REC_DISK=$((8 << 20))
FLOOD_DISK=$((64 << 20))
HB_TIMEOUT=30000
KILLS=${FTVMM_FLOODCHAIN_KILLS:-30}
FLOOD_RE='FTWORK flood tick=[0-9]+ udp_bytes=[0-9]+ udp_pkts=[0-9]+ udp_errs=[0-9]+ disk_bytes=[0-9]+ disk_writes=[0-9]+ disk_errs=[0-9]+ nic_tx_bytes=-?[0-9]+ mono_ns=[0-9]+'

ft_setup
W=$FT_WORK
L=$IT_LOGDIR
rm -f "$L"/*.out "$L"/*.err "$L"/*.cmd 2>/dev/null || true
kargs=(--kernel "$GUEST_KERNEL" --initrd "$GUEST_INITRD")

start_backup() { # NAME PORT
	truncate -s "$REC_DISK" "$W/$1-vda.img"
	truncate -s "$FLOOD_DISK" "$W/$1-vdb.img"
	ft_bg "$1" env FTVMM_DEBUG=1 "$FTVMM" backup --listen "127.0.0.1:$2" --control "$W/$1.sock" \
		--ft-timeout "$HB_TIMEOUT" --disk "$W/$1-vda.img" --disk "$W/$1-vdb.img" --net "tap=$TAP"
	ft_wait_line "${FT_E[$1]}" 'backup: listening on' 20 "$1"
}
flood_last() { # FILE -> FL_TICK FL_UDP FL_DISK
	local l
	l=$(grep -aoE "$FLOOD_RE" "$1" 2>/dev/null | tail -n1 || true)
	FL_TICK=$(ft_field tick "$l") FL_UDP=$(ft_field udp_bytes "$l") FL_DISK=$(ft_field disk_bytes "$l")
	FL_TICK=${FL_TICK:-0} FL_UDP=${FL_UDP:-0} FL_DISK=${FL_DISK:-0}
}
flood_moves() { # NAME SECS: 3 more ticks with UDP and disk bytes moving
	local t0 u0 d0 end=$((SECONDS + $2))
	flood_last "${FT_O[$1]}"
	t0=$FL_TICK u0=$FL_UDP d0=$FL_DISK
	while ((SECONDS < end)); do
		flood_last "${FT_O[$1]}"
		((FL_TICK >= t0 + 3 && FL_UDP > u0 && FL_DISK > d0)) && break
		sleep 0.5
	done
	FLOOD_MOVED="tick $t0 -> $FL_TICK, udp $((u0 >> 20)) -> $((FL_UDP >> 20)) MiB, disk $((d0 >> 20)) -> $((FL_DISK >> 20)) MiB"
	((FL_TICK >= t0 + 3 && FL_UDP > u0 && FL_DISK > d0))
}

case_begin floodchain/takeovers
ok=1
ft_tap_up "$TAP" "$HOST_IP/24" || { case_error "cannot create TAP $TAP"; ok=0; }
truncate -s "$REC_DISK" "$W/p0-vda.img"
truncate -s "$FLOOD_DISK" "$W/p0-vdb.img"
ftargs="--pages,64,--interval-ms,500,--disk,/dev/vda,--count,1000000,--flood-udp,$HOST_IP:9,--flood-disk,/dev/vdb"
cmdline=$(guest_cmdline "sysctl.kernel.hung_task_timeout_secs=15 ftvmm.test=ftguest ftvmm.ftnet=$GUEST_NET ftvmm.ftargs=$ftargs")
ft_bg p0 env FTVMM_DEBUG=1 "$FTVMM" run "${kargs[@]}" --mem 128M --cpus 1 --disk "$W/p0-vda.img" \
	--disk "$W/p0-vdb.img" --net "tap=$TAP" --control "$W/p0.sock" --epoch 25 --ft-timeout "$HB_TIMEOUT" --cmdline "$cmdline"
((ok)) && { ft_wait_line "${FT_O[p0]}" 'FTWORK flood tick=' 240 p0 || { case_error "the guest never flooded"; ok=0; }; }
cur=p0 done_kills=0 waits=()
for ((k = 1; k <= KILLS && ok; k++)); do
	bk=b$k FLOOD_MOVED=""
	ft_port
	start_backup "$bk" "$FT_PORT" || { case_error "$bk did not listen"; break; }
	reply=$(ft_ctl "$W/$cur.sock" protect "127.0.0.1:$FT_PORT")
	[[ "$reply" == ok* ]] || { case_error "protect $cur -> $bk: $reply"; break; }
	ft_wait_status "$W/$cur.sock" 'protected=yes' 240 || { case_error "kill $k: $cur never protected: $FT_LAST_STATUS"; break; }
	w=$((1 + RANDOM % 6))
	sleep "$w.$((RANDOM % 10))"
	st=$(ft_ctl "$W/$cur.sock" status)
	ft_alive "$cur" || { case_error "kill $k: $cur ended before the kill: $(grep -v '^ ' "${FT_E[$cur]}" | tail -n 2 | tr '\n' ' ')"; break; }
	kill -9 "${FT_PID[$cur]}" 2>/dev/null || true
	ft_wait_exit "$cur" 10 || true
	if ! ft_wait_line "${FT_E[$bk]}" 'taking over from epoch' 60 "$bk"; then
		case_error "kill $k: $bk did not take over: $(grep -v '^ ' "${FT_E[$bk]}" | tail -n 2 | tr '\n' ' ')"
		break
	fi
	from=$(sed -nE 's/.*taking over from epoch ([0-9]+).*/\1/p' "${FT_E[$bk]}" | tail -n1)
	acked=$(ft_field last_commit "$st")
	[[ -n "$acked" && -n "$from" ]] && ((from < acked)) &&
		{ case_error "kill $k: $bk resumed from epoch $from, the primary had $acked acked: a committed epoch was lost"; break; }
	moved=1
	ft_wait_line "${FT_O[$bk]}" 'FTWORK flood tick=' 60 "$bk" || moved=0
	((moved)) && { flood_moves "$bk" 40 || moved=0; }
	n0=$(ft_count "${FT_O[$bk]}" 'FTWORK seq=[0-9]+ sum=[0-9a-f]+ ok')
	((moved)) && { ft_wait_count "${FT_O[$bk]}" 'FTWORK seq=[0-9]+ sum=[0-9a-f]+ ok' $((n0 + 2)) 30 "$bk" || moved=0; }
	ft_log "kill $k after ${w}s under protection ($(ft_field epoch "$st")/$(ft_field last_commit "$st")): $bk from epoch $from: ${FLOOD_MOVED:-no flood tick}"
	if ((!moved)); then
		case_error "kill $k: the guest did not go on on $bk (${FLOOD_MOVED:-no flood tick})"
		ft_stuck_evidence "$bk" "$W/$bk.sock"
		sleep 20
		grep -a 'blocked for more than' "${FT_O[$bk]}" | head -n 5 | tr -d '\r' | sed 's/^/  | guest: /' || true
		ft_diagnose "$bk" "$W/$bk.sock"
		break
	fi
	! grep -aqE 'FTWORK.* BAD |FTWORK error' "${FT_O[$bk]}" ||
		{ case_error "kill $k: $(grep -aE 'FTWORK.* BAD |FTWORK error' "${FT_O[$bk]}" | head -n1)"; break; }
	done_kills=$k
	cur=$bk
done
ft_log "$done_kills of $KILLS takeovers of the flooding guest went on"
ft_tap_down "$TAP"
case_end
it_end

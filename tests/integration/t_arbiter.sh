#!/usr/bin/env bash
# tests/integration/t_arbiter.sh - the arbiter (etcd) in the failure lab: partitions, a cut-off host, an arbiter outage, a thawed primary: never two copies.
#
# The lab of t_lab.sh (tests/lab/lab.sh, tests/lab/ft_lab.sh): hosts a and b run ftvmm, the client c runs the guest's
# TCP checker and one etcd (Debian's etcd-server) on its LAN address. Every primary and backup runs with
# --arbiter etcd://192.0.2.1:2379 --name labvm. Each case starts from a protected guest (the case before left it, or a
# fresh one) and checks: the copy that runs on is one copy (the other exits 1, or never takes over); the client's chained
# TCP stream moves on with no gap, repeat, reset or SPLICE (a byte the surviving copy did not produce); the guest never
# prints BAD (memory, disk records, DMA pages, timers); the generation in etcd moved by one to the winner. At the end the
# survivor's disk holds ftwork's records as an unbroken prefix (ft_records.py).
#   arbiter/partition       lab_cut of the primary's replication link, both ways: both sides still reach the client and
#                           etcd, both lose their peer and claim the next generation; exactly one runs on (the backup
#                           takes over, or the primary continues UNPROTECTED), the other exits 1 saying who won.
#   arbiter/isolated-primary  the primary's host is cut from everything (LAN and replication link): it cannot reach etcd,
#                           so it holds its output and claims on; the backup wins and takes over. Nothing leaves the
#                           old copy (its TAP's frame count from a second after the cut to its exit); once its links
#                           heal it learns it lost and exits 1.
#   arbiter/etcd-down-steady  etcd frozen (SIGSTOP) for 2 x --ft-timeout: the guest stays protected, unaffected.
#   arbiter/etcd-down-crash etcd frozen, then the primary's host crashes: no takeover while etcd is down (the backup says
#                           it is claiming); etcd thawed: the backup takes over.
#   arbiter/frozen-primary-thawed  the primary's host frozen until the backup takes over, then thawed: the old primary
#                           loses the claim, emits nothing (its TAP's count) and exits 1.
# Env: FTVMM_ARB_TIMEOUT=3000 (--ft-timeout, ms)  FTVMM_FT_KEEP=1 (keep the scratch dir)  FTVMM_ARB_PAGES=128 (ftwork's
#      pages per tick: these cases test who may run, over TLS; with t_lab's 512 every pairing streamed ~3 MB epochs
#      through TLS at ~4 MB/s in the test bed and took ~45 s: tests/testbed/results/tls-in-testbed-20261207.md)
set -euo pipefail
here=$(dirname "${BASH_SOURCE[0]}")
source "$here/lib.sh"
source "$here/ft_lib.sh"
source "$here/../lab/lab.sh"
it_begin arbiter

TMO=${FTVMM_ARB_TIMEOUT:-3000}
LAB_PAGES=${FTVMM_ARB_PAGES:-128}
DISK_SIZE=$((8 << 20))
GUEST_MEM=160M
PY=python3
BK_PORT=7000
TCP_PORT=7200
VMNAME=labvm
ETCD_URL="http://192.0.2.1:2379"
KEY="/ftvmm/$VMNAME/generation"

ft_setup
W=$FT_WORK
L=$IT_LOGDIR
rm -f "$L"/*.out "$L"/*.err "$L"/*.cmd "$L"/*.log "$L"/*.stats 2>/dev/null || true
LAB_DIR="$W/lab"
LAB_LOG="$L"
trap 'lab_teardown; FT_PID=(); ft_cleanup' EXIT

kargs=(--kernel "$GUEST_KERNEL" --initrd "$GUEST_INITRD")
FT_EXTRA=(--arbiter "etcd://${ETCD_URL#http://}" --name "$VMNAME")
source "$here/../lab/ft_lab.sh"

# arb_get: the key's value "G OWNER" read on the client host ("" when absent or etcd does not answer)
arb_get() {
	lab_exec c etcdctl --endpoints="$ETCD_URL" --command-timeout=5s get "$KEY" --print-value-only 2>/dev/null |
		head -n1 || true
}
arb_gen() { local v; v=$(arb_get); echo "${v%% *}"; }
etcd_freeze() { kill -STOP "${LAB_PID[etcd]}"; }
etcd_thaw() { kill -CONT "${LAB_PID[etcd]}"; }
other_host() { if [[ "$1" == a ]]; then echo b; else echo a; fi; }

# gen_moved WHAT G0: the generation is G0 + 1 now
gen_moved() {
	local g
	g=$(arb_gen)
	[[ "$g" =~ ^[0-9]+$ && "$2" =~ ^[0-9]+$ ]] && ((g == $2 + 1)) ||
		case_error "$1: the arbiter's generation is '${g:-?}' ($(arb_get)), not $2 + 1"
}

# follow NAME: `ftvmm ctl SOCK events` of NAME into $L/NAME.ev in the background (it ends when NAME's socket closes)
FOLLOWERS=()
follow() {
	"$FTVMM" ctl "$W/$1.sock" events >"$L/$1.ev" 2>&1 &
	FOLLOWERS+=($!)
	ft_wait_line "$L/$1.ev" '"event":"subscribed"' 10 || case_error "ctl events of $1 printed no subscribed line"
}
# has_event NAME EVENT [WHAT]: NAME's event stream has an EVENT line (a case_error naming WHAT otherwise)
has_event() {
	grep -q "\"event\":\"$2\"" "$L/$1.ev" 2>/dev/null ||
		case_error "${3:-}: no '$2' event from $1 ($(tr '\n' ' ' <"$L/$1.ev" 2>/dev/null | cut -c1-300))"
}
count_event() { grep -c "\"event\":\"$2\"" "$L/$1.ev" 2>/dev/null || true; }

# reprotect HOST: a fresh backup for the survivor cur on HOST (revived first: the case may have crashed or cut it)
reprotect() {
	lab_heal "$1-lan" 2>/dev/null || true
	lab_heal "$1-rep" 2>/dev/null || true
	new_backup "$1" && ensure_protected
}

case_begin arbiter/partition
ok=1
if ! lab_setup || ! lab_ft_credentials; then
	case_error "cannot build the lab (namespaces, veth, bridge, tun) or its TLS key (psktool)"
	ok=0
fi
if ((ok)); then
	mkdir -p "$W/etcd"
	lbg c etcd etcd --name arb --data-dir "$W/etcd" --listen-client-urls "$ETCD_URL" --advertise-client-urls "$ETCD_URL" \
		--listen-peer-urls http://127.0.0.1:2380 --initial-advertise-peer-urls http://127.0.0.1:2380 \
		--initial-cluster arb=http://127.0.0.1:2380
	for _ in $(seq 60); do
		lab_exec c etcdctl --endpoints="$ETCD_URL" --command-timeout=3s endpoint health >/dev/null 2>&1 && break
		sleep 1
	done
	if ! lab_exec c etcdctl --endpoints="$ETCD_URL" --command-timeout=3s endpoint health >/dev/null 2>&1; then
		case_error "etcd did not become healthy on the client host: $(tail -n 3 "${FT_E[etcd]}" | tr '\n' ' ')"
		ok=0
	fi
fi
if ((ok)) && start_guest; then
	ft_log "$cur on host a is PROTECTED by $bk on host b; arbiter: $(arb_get)"
	old=$cur ob=$bk ph=${HOST_OF[$cur]} g0=$(arb_gen)
	# the JSON status a cluster manager reads, and the event streams of both sides
	js=$(ft_ctl "$W/$old.sock" status --json)
	if ! python3 -c 'import json,sys; d=json.loads(sys.argv[1]); sys.exit(0 if d["protected"] is True and d["link"] == "up" and d["generation"] == int(sys.argv[2]) and d["arbiter"]["state"] == "reachable" else 1)' "$js" "$g0" 2>/dev/null; then
		case_error "status --json of $old: $js (want protected, link up, generation $g0, arbiter reachable)"
	fi
	follow "$old"
	follow "$ob"
	ticks_on "$old" "before the partition"
	tcp_problems "before the partition" || true
	tcp0=$(ft_count "$TCPLOG" '^seq ')
	lab_cut "$ph-rep" both
	t0=$(ft_now)
	# both lose their peer after the timeout and claim: one exits
	end=$(($(date +%s) + TMO / 1000 + 60))
	while ft_alive "$old" && ft_alive "$ob" && (($(date +%s) < end)); do sleep 0.5; done
	sleep 5 # the winner must still run after the loser is gone
	if ft_alive "$old" && ft_alive "$ob"; then
		case_error "both copies still run $((TMO / 1000 + 65)) s after the partition:" \
			"$old: $(stderr_tail "$old") / $ob: $(stderr_tail "$ob")"
	elif ! ft_alive "$old" && ! ft_alive "$ob"; then
		case_error "both copies ended: $old: $(stderr_tail "$old") / $ob: $(stderr_tail "$ob")"
	else
		if ft_alive "$ob"; then win=$ob lose=$old; else win=$old lose=$ob; fi
		ft_wait_exit "$lose" 5 || true
		unset "LAB_PID[$lose]"
		[[ "${FT_RCS[$lose]:-}" == 1 ]] || case_error "the loser $lose exited with status ${FT_RCS[$lose]:-?}, not 1"
		if [[ "$win" == "$ob" ]]; then
			grep -aq 'taking over from epoch' "${FT_E[$ob]}" || case_error "$ob runs on without a takeover line"
			grep -aq 'the backup runs the guest now' "${FT_E[$old]}" ||
				case_error "the primary $old did not say the backup won: $(stderr_tail "$old")"
			ft_wait_line "${FT_O[$ob]}" 'FTWORK seq=[0-9]+ (sum|BAD)' 60 "$ob" ||
				case_error "the guest printed nothing on $ob after the takeover"
		else
			grep -aq 'continues UNPROTECTED' "${FT_E[$old]}" || case_error "$old runs on without saying so"
			grep -aq 'the primary went on alone' "${FT_E[$ob]}" ||
				case_error "the backup $ob did not say the primary won: $(stderr_tail "$ob")"
		fi
		gen_moved "after the partition" "$g0"
		has_event "$win" takeover_won "the partition's winner"
		has_event "$lose" takeover_lost "the partition's loser"
		has_event "$old" unprotected "the primary that lost its backup"
		ft_log "partition of $ph-rep: $win runs on, $lose exited ($(stderr_tail "$lose")) after" \
			"$(ms "$t0" "$(ft_now)") ms; arbiter: $(arb_get)"
		no_bad "$win" "after the partition"
		ticks_on "$win" "after the partition"
		tcp_moves_on "after the partition" "$tcp0" || true
		lab_heal "$ph-rep"
		cur=$win bk=""
		reprotect "$(other_host "${HOST_OF[$win]}")" || true
	fi
fi
case_end

###############################################################################################################
case_begin arbiter/isolated-primary
if guest_ready; then
	old=$cur ph=${HOST_OF[$cur]} g0=$(arb_gen)
	ticks_on "$old" "before the cut"
	tcp0=$(ft_count "$TCPLOG" '^seq ')
	lab_cut "$ph-lan" both
	lab_cut "$ph-rep" both
	sleep 1 # (output of epochs acked before the cut may still be leaving; from here on nothing may)
	tap0=$(tap_frames "$ph")
	if ft_wait_line "${FT_E[$bk]}" 'taking over from epoch' $((TMO / 1000 + 60)) "$bk"; then
		ft_wait_line "${FT_O[$bk]}" 'FTWORK seq=[0-9]+ (sum|BAD)' 60 "$bk" ||
			case_error "the guest printed nothing on $bk after the takeover"
		ticks_on "$bk" "after the takeover" # it goes on, not only one line (r23: one, then nothing)
		no_bad "$bk" "after the takeover"
		tcp_moves_on "after the takeover from the cut-off $old" "$tcp0" || true
		gen_moved "after the takeover" "$g0"
		ft_alive "$old" || case_error "the cut-off primary $old ended before its links healed: $(stderr_tail "$old")"
		st=$(ft_ctl "$W/$old.sock" status)
		[[ "$st" == *arbiter=unreachable* ]] || case_error "the cut-off primary $old's status does not say the arbiter is" \
			"unreachable: $st"
		tap1=$(tap_frames "$ph")
		lab_heal "$ph-lan"
		lab_heal "$ph-rep"
		if ft_wait_exit "$old" 30; then
			unset "LAB_PID[$old]"
			[[ "${FT_RCS[$old]}" == 1 ]] || case_error "the healed old primary $old exited with ${FT_RCS[$old]}, not 1"
			grep -aq 'the backup runs the guest now' "${FT_E[$old]}" ||
				case_error "the old primary $old did not say it lost: $(stderr_tail "$old")"
		else
			case_error "the old primary $old still runs 30 s after its links healed, beside $bk (split brain)"
			lab_kill "$old"
			unset "FT_PID[$old]"
		fi
		tap2=$(tap_frames "$ph")
		[[ "$tap0" == "$tap1" && "$tap1" == "$tap2" ]] ||
			case_error "the cut-off primary $old wrote frames into its TAP: $tap0 -> $tap1 (heal) -> $tap2 (exit)"
		ft_log "host $ph cut off: $bk took over; $old held its output (TAP $tap0 -> $tap2) and exited after the heal:" \
			"$(stderr_tail "$old")"
		cur=$bk bk=""
		reprotect "$ph" || true
	else
		case_error "$bk did not take over from the cut-off primary $old: $(stderr_tail "$bk")"
		lab_heal "$ph-lan"
		lab_heal "$ph-rep"
	fi
else
	case_error "not run: no protected guest to start from"
fi
case_end

###############################################################################################################
case_begin arbiter/etcd-down-steady
if guest_ready; then
	st=$(ft_ctl "$W/$cur.sock" status)
	c0=$(ft_field last_commit "$st")
	tcp0=$(ft_count "$TCPLOG" '^seq ')
	etcd_freeze
	for ((i = 0; i < 2 * TMO / 1000; i++)); do
		sleep 1
		st=$(ft_ctl "$W/$cur.sock" status)
		[[ "$st" == *protected=yes* ]] || { case_error "with etcd frozen $i s: $cur says $st"; break; }
	done
	c1=$(ft_field last_commit "$st")
	ticks_on "$cur" "with etcd frozen"
	no_bad "$cur" "with etcd frozen"
	tcp_moves_on "with etcd frozen" "$tcp0" || true
	[[ "$c0" =~ ^[0-9]+$ && "$c1" =~ ^[0-9]+$ ]] && ((c1 > c0)) || case_error "no epoch committed with etcd frozen: $c0 -> $c1"
	ft_alive "$bk" && ! grep -aq 'taking over\|claiming' "${FT_E[$bk]}" || case_error "the backup $bk acted: $(stderr_tail "$bk")"
	etcd_thaw
	ft_log "etcd frozen $((2 * TMO / 1000)) s: $cur stayed protected, last_commit $c0 -> $c1"
else
	case_error "not run: no protected guest to start from"
fi
case_end

###############################################################################################################
case_begin arbiter/etcd-down-crash
if guest_ready; then
	old=$cur ph=${HOST_OF[$cur]} g0=$(arb_gen)
	ticks_on "$old" "before the crash"
	tcp0=$(ft_count "$TCPLOG" '^seq ')
	follow "$bk"
	etcd_freeze
	lab_crash "$ph" || case_error "lab_crash $ph: processes survived"
	unset "FT_PID[$old]"
	ft_wait_line "${FT_E[$bk]}" 'claiming generation' $((TMO / 1000 + 30)) "$bk" ||
		case_error "$bk never started claiming after the crash: $(stderr_tail "$bk")"
	sleep 5 # (it has claimed for a while already: the timeout passed before 'claiming')
	if grep -aq 'taking over from epoch' "${FT_E[$bk]}"; then
		case_error "$bk took over while the arbiter was down"
	fi
	etcd_thaw
	t0=$(ft_now)
	if ft_wait_line "${FT_E[$bk]}" 'taking over from epoch' 60 "$bk"; then
		ft_wait_line "${FT_O[$bk]}" 'FTWORK seq=[0-9]+ (sum|BAD)' 60 "$bk" ||
			case_error "the guest printed nothing on $bk after the takeover"
		no_bad "$bk" "after the takeover"
		tcp_moves_on "after the takeover" "$tcp0" || true
		gen_moved "after the takeover" "$g0"
		# the backup's stream, until its socket became the VM's: the outage and its end once each, then the win
		nu=$(count_event "$bk" arbiter_unreachable) nb=$(count_event "$bk" arbiter_back)
		((nu == 1 && nb == 1)) ||
			case_error "$bk's events: arbiter_unreachable $nu times, arbiter_back $nb times (want 1 and 1)"
		has_event "$bk" takeover_won "the backup after etcd came back"
		ft_log "etcd down, host $ph crashed: $bk waited, took over $(ms "$t0" "$(ft_now)") ms after etcd came back"
		cur=$bk bk=""
		lab_revive "$ph" && reprotect "$ph" || true
	else
		case_error "$bk did not take over after etcd came back: $(stderr_tail "$bk")"
	fi
else
	case_error "not run: no protected guest to start from"
fi
case_end

###############################################################################################################
case_begin arbiter/frozen-primary-thawed
if guest_ready; then
	old=$cur ph=${HOST_OF[$cur]} g0=$(arb_gen)
	ticks_on "$old" "before the freeze"
	tcp0=$(ft_count "$TCPLOG" '^seq ')
	lab_freeze "$ph"
	if ft_wait_line "${FT_E[$bk]}" 'taking over from epoch' $((TMO / 1000 + 60)) "$bk"; then
		ft_wait_line "${FT_O[$bk]}" 'FTWORK seq=[0-9]+ (sum|BAD)' 60 "$bk" ||
			case_error "the guest printed nothing on $bk after the takeover"
		no_bad "$bk" "after the takeover"
		tcp_moves_on "after the takeover from the frozen $old" "$tcp0" || true
		gen_moved "after the takeover" "$g0"
		tap0=$(tap_frames "$ph")
		lab_thaw "$ph"
		if ft_wait_exit "$old" 30; then
			unset "LAB_PID[$old]"
			[[ "${FT_RCS[$old]}" == 1 ]] || case_error "the thawed primary $old exited with ${FT_RCS[$old]}, not 1"
			grep -aq 'the backup runs the guest now' "${FT_E[$old]}" ||
				case_error "the thawed primary $old did not say it lost the claim: $(stderr_tail "$old")"
		else
			case_error "the thawed primary $old still runs 30 s after the thaw, beside $bk (split brain)"
			lab_kill "$old"
			unset "FT_PID[$old]"
		fi
		tap1=$(tap_frames "$ph")
		[[ "$tap0" == "$tap1" ]] || case_error "the thawed primary $old wrote frames into its TAP: $tap0 -> $tap1"
		ft_log "host $ph frozen: $bk took over; thawed $old lost the claim and exited: $(stderr_tail "$old")"
		cur=$bk bk=""
	else
		case_error "$bk did not take over from the frozen primary $old"
		lab_thaw "$ph"
	fi
else
	case_error "not run: no protected guest to start from"
fi
# the survivor's disk: ftwork's records an unbroken prefix with the sums the consoles printed
if ((gen == 0)) && [[ -n "$cur" ]] && ft_alive "$cur"; then # (one guest all along: its consoles tell its story)
	area=$(grep -aoE 'FTWORK start .* area=[0-9]+' "$L/p0.out" | head -n1 | sed 's/.*area=//' || true)
	consoles=("$L"/p[0-9]*.out "$L"/b[0-9]*.out)
	if out=$("$PY" "$here/ft_records.py" --disk "${DISK[$cur]}" --area "${area:-0}" --last "$(ft_last_seq "${FT_O[$cur]}")" \
		--ticks "${consoles[@]/#/--console=}" 2>&1); then
		ft_log "$out (survivor $cur on host ${HOST_OF[$cur]})"
	else
		case_error "$out"
	fi
fi
case_end

retire_guest
for f in "${FOLLOWERS[@]}"; do kill "$f" 2>/dev/null || true; done
it_end

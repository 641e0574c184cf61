# tests/lab/lab.sh - failure lab: emulated hosts (network namespaces) on an emulated wire, with injectors for crashes, freezes, partitions and bad links; sourced.
# shellcheck shell=bash disable=SC2034 # (the LAB_* variables are for the scripts that source this)
#
#   lab-c (client)           lab-net ("the network")              lab-a, lab-b (hosts running ftvmm)
#   lan0 192.0.2.1 --- c-lan -[bridge lan]- a-lan ------ lan0 -[br0 192.0.2.11]- tap0   (guest 192.0.2.2)
#                                         \- b-lan ------ lan0 -[br0 192.0.2.12]- tap0
#                            [bridge rep]-- a-rep ------ rep0 10.77.0.1
#                                         \- b-rep ------ rep0 10.77.0.2
#
# Every link is a veth pair with one end in lab-net, named after the link (a-lan, a-rep, b-lan, b-rep, c-lan), so
# faults are injected on the wire, never inside a host. Directions are seen from the host: "in" is what the wire
# delivers to it (a qdisc on the lab-net end), "out" is what it sends (a qdisc on the host's own end: the only egress
# queue of that direction without ifb/mirred modules). Each host has its own TAP (LAB_TAP) in br0 for its ftvmm; a
# backup's TAP stays without carrier until ftvmm opens it at the takeover, whose RARP then moves the guest's MAC.
#
#   lab_setup / lab_teardown        build the lab (tears down leftovers of the same LAB_PREFIX first) / remove it all
#   lab_ns HOST                     the namespace of HOST (a, b, c or net)
#   lab_host_dir HOST               a directory of HOST's own (its disk image copies); kept across lab_revive
#   lab_exec HOST CMD...            run CMD in HOST
#   lab_bg HOST NAME CMD...         CMD in the background in HOST: LAB_PID[NAME], logs LAB_OUT[NAME] / LAB_ERR[NAME]
#   lab_kill NAME [SIG]             end one lab_bg process with SIG (default KILL) and reap it: LAB_RC[NAME]
#   lab_crash HOST                  silence the host's links (lab-net ends down), then SIGKILL everything in it
#   lab_revive HOST                 a crashed host comes back as a fresh host (new namespace, same addresses and MACs)
#   lab_freeze HOST / lab_thaw HOST SIGSTOP / SIGCONT every process of HOST (its kernel still receives and ACKs)
#   lab_cut LINK [in|out|both]      drop everything on LINK (default both); lab_heal LINK undoes every cut on LINK
#   lab_degrade LINK SPEC [in|out|both]   tc netem SPEC on LINK ("delay 10ms loss 2% rate 100mbit"); lab_restore LINK
#   lab_netem_ok                    tc netem works here (sch_netem); lab_degrade fails with one line otherwise
#
# Crashes and cuts need no tc module (link down, the blackhole qdisc built into the kernel); only lab_degrade needs
# sch_netem. netem sees packets as the kernel passes them: a TSO/GSO burst from a guest is one packet to it.
# Env in: LAB_PREFIX=lab (namespace names), LAB_DIR (default: a new directory under /var/tmp: O_DIRECT works there;
# removed by lab_teardown only when lab_setup made it), LAB_LOG=$LAB_DIR/log, LAB_TAP=tap0, LAB_KEEP=1 (keep LAB_DIR).
# Addresses: LAB_LAN_IP[a|b|c], LAB_REP_IP[a|b], LAB_GUEST_IP (for the guest's ftvmm.ftnet).
# Needs root, iproute2 (ip, tc) and in the kernel: network namespaces, veth, bridge, tun.

LAB_PREFIX=${LAB_PREFIX:-lab}
LAB_TAP=${LAB_TAP:-tap0}
LAB_GUEST_IP=192.0.2.2
declare -gA LAB_LAN_IP=([a]=192.0.2.11 [b]=192.0.2.12 [c]=192.0.2.1)
declare -gA LAB_REP_IP=([a]=10.77.0.1 [b]=10.77.0.2)
declare -gA LAB_PID=() LAB_HOST=() LAB_OUT=() LAB_ERR=() LAB_RC=()
declare -gA LAB_CUT=() LAB_SPEC=() # per "LINK/in" and "LINK/out": the cut flag, the netem spec
LAB_DIR=${LAB_DIR:-}
LAB_LOG=${LAB_LOG:-}
_LAB_OWN_DIR=0

_lab_die() {
	echo "lab: $*" >&2
	return 1
}

lab_ns() {
	case "$1" in
	a | b | c | net) echo "$LAB_PREFIX-$1" ;;
	*) _lab_die "no such host: '$1' (a, b, c or net)" ;;
	esac
}

lab_host_dir() { echo "$LAB_DIR/$1"; }

# _lab_mac HOST DEV: fixed MACs, so a revived host is the same machine to its peers' ARP caches (a rebooted host keeps
# its NICs' addresses; a new MAC would leave the client sending to the old one until its ARP entry times out)
_lab_mac() {
	local h k
	case "$1" in a) h=1 ;; b) h=2 ;; c) h=3 ;; esac
	case "$2" in lan0) k=1 ;; br0) k=2 ;; rep0) k=3 ;; esac
	echo "02:77:0$h:00:00:0$k"
}

# the lab-net ends of HOST's links
_lab_links() {
	case "$1" in
	a | b) echo "$1-lan $1-rep" ;;
	c) echo "c-lan" ;;
	esac
}

lab_exec() {
	local ns
	ns=$(lab_ns "$1") || return 1
	shift
	ip netns exec "$ns" "$@"
}

lab_bg() {
	local h="$1" name="$2" ns
	ns=$(lab_ns "$h") || return 1
	shift 2
	LAB_OUT[$name]="$LAB_LOG/$name.out"
	LAB_ERR[$name]="$LAB_LOG/$name.err"
	printf '%s\n' "$*" >"$LAB_LOG/$name.cmd"
	# emptied here, not by the child's redirection: a wait for a line right after must not find the last run's
	: >"${LAB_OUT[$name]}"
	: >"${LAB_ERR[$name]}"
	# `ip netns exec` execs CMD in place (no fork), so $! is CMD's own pid
	ip netns exec "$ns" "$@" </dev/null >"${LAB_OUT[$name]}" 2>"${LAB_ERR[$name]}" &
	LAB_PID[$name]=$!
	LAB_HOST[$name]=$h
}

lab_kill() {
	local name="$1" sig="${2:-KILL}" rc=0
	[[ -n "${LAB_PID[$name]:-}" ]] || return 0
	{
		kill -"$sig" "${LAB_PID[$name]}" || true
		wait "${LAB_PID[$name]}" || rc=$?
	} 2>/dev/null
	LAB_RC[$name]=$rc
	unset "LAB_PID[$name]"
}

# _lab_signal NS SIG: signal every process in NS
_lab_signal() {
	local p
	for p in $(ip netns pids "$1" 2>/dev/null); do
		kill -"$2" "$p" 2>/dev/null || true
	done
}

# _lab_kill_ns NS: SIGKILL everything in NS until nothing is left (a process may fork meanwhile); 1 after 5 s.
# (stderr off meanwhile: bash would print a "Killed" line for each lab_bg child it sees die)
_lab_kill_ns() {
	local i
	{
		for ((i = 0; i < 50; i++)); do
			[[ -z "$(ip netns pids "$1")" ]] && break
			_lab_signal "$1" KILL
			sleep 0.1
		done
	} 2>/dev/null
	[[ -z "$(ip netns pids "$1" 2>/dev/null)" ]] ||
		_lab_die "processes left in $1 after SIGKILL: $(ip netns pids "$1" | tr '\n' ' ')"
}

# _lab_reap HOST: collect the exit status of HOST's lab_bg processes that have ended (LAB_RC)
_lab_reap() {
	local name rc
	for name in "${!LAB_PID[@]}"; do
		[[ "${LAB_HOST[$name]}" == "$1" ]] || continue
		# (a killed child stays a zombie until waited for, and kill -0 still finds a zombie)
		[[ "$(sed 's/.*) //' "/proc/${LAB_PID[$name]}/stat" 2>/dev/null | cut -d' ' -f1)" =~ ^(Z|X|)$ ]] || continue
		rc=0
		{ wait "${LAB_PID[$name]}" || rc=$?; } 2>/dev/null
		LAB_RC[$name]=$rc
		unset "LAB_PID[$name]"
	done
}

# _lab_settle HOST: wait (at most 5 s) until HOST's interfaces are operationally up (the kernel sets that a moment
# after the link comes up), so a test starts on a working wire
_lab_settle() {
	local ns="$LAB_PREFIX-$1" want="lan0 br0 rep0" i
	[[ "$1" == c ]] && want="lan0"
	for ((i = 0; i < 50; i++)); do
		ip -n "$ns" -br link | awk -v want="$want" '
			{ sub(/@.*/, "", $1); up[$1] = ($2 == "UP") }
			END { n = split(want, w, " "); for (i = 1; i <= n; i++) if (!up[w[i]]) exit 1 }' && return 0
		sleep 0.1
	done
	_lab_die "the links of host $1 did not come up: $(ip -n "$ns" -br link | tr -s ' ' | tr '\n' ';')"
}

_lab_ns_exists() { [[ -e "/run/netns/$1" || -e "/var/run/netns/$1" ]]; }

# _lab_host_up HOST: the namespace, its links into lab-net, its addresses (and for a and b: br0, the TAP)
_lab_host_up() {
	local h="$1" ns="$LAB_PREFIX-$1" net="$LAB_PREFIX-net" o
	mkdir -p "$LAB_DIR/$h"
	ip netns add "$ns" || return 1
	ip -n "$ns" link set lo up
	# no IPv6 chatter (DAD, router solicitations, MLD) on the wire: only what the test sends
	ip netns exec "$ns" sysctl -qw net.ipv6.conf.all.disable_ipv6=1 net.ipv6.conf.default.disable_ipv6=1 2>/dev/null || true
	ip -n "$net" link add name "$h-lan" type veth peer name lan0 address "$(_lab_mac "$h" lan0)" netns "$ns" || return 1
	ip -n "$net" link set "$h-lan" master lan up
	if [[ "$h" == c ]]; then
		ip -n "$ns" addr add "${LAB_LAN_IP[c]}/24" dev lan0
		ip -n "$ns" link set lan0 up
		return
	fi
	# the guest's LAN: a local bridge with the uplink and the TAP (STP is off: ports forward at once)
	ip -n "$ns" link add name br0 address "$(_lab_mac "$h" br0)" type bridge
	ip -n "$ns" link set lan0 master br0 up
	ip -n "$ns" tuntap add dev "$LAB_TAP" mode tap || return 1
	ip -n "$ns" link set "$LAB_TAP" master br0 up
	ip -n "$ns" addr add "${LAB_LAN_IP[$h]}/24" dev br0
	ip -n "$ns" link set br0 up
	# the replication link
	ip -n "$net" link add name "$h-rep" type veth peer name rep0 address "$(_lab_mac "$h" rep0)" netns "$ns" || return 1
	ip -n "$net" link set "$h-rep" master rep up
	ip -n "$ns" addr add "${LAB_REP_IP[$h]}/24" dev rep0
	ip -n "$ns" link set rep0 up
	# the peer's ARP entry is permanent, so a one-way cut stays one-way (ARP needs both directions: once the entry
	# aged, a one-way cut would silence the link both ways)
	for o in a b; do
		[[ "$o" == "$h" ]] || ip -n "$ns" neigh replace "${LAB_REP_IP[$o]}" lladdr "$(_lab_mac "$o" rep0)" dev rep0 nud permanent
	done
}

# _lab_host_down HOST: kill its processes, delete its links and devices, delete the namespace. The namespace may
# live on, unnamed, while its kernel keeps sockets of killed processes (a FIN retried into nowhere); with its
# links deleted it can no longer reach anyone, and the kernel frees it when they time out.
_lab_host_down() {
	local h="$1" ns="$LAB_PREFIX-$1" l
	for l in $(_lab_links "$h"); do
		ip -n "$LAB_PREFIX-net" link del "$l" 2>/dev/null || true
		unset "LAB_CUT[$l/in]" "LAB_CUT[$l/out]" "LAB_SPEC[$l/in]" "LAB_SPEC[$l/out]"
	done
	if ! _lab_ns_exists "$ns"; then
		_lab_reap "$h"
		return 0
	fi
	_lab_kill_ns "$ns" || true
	_lab_reap "$h"
	ip -n "$ns" link del "$LAB_TAP" 2>/dev/null || true
	ip -n "$ns" link del br0 2>/dev/null || true
	ip netns del "$ns"
}

# lab_ft_credentials: one pre-shared key for the hosts' FT links (psktool, mode 0600) in LAB_DIR; LAB_FT_ARGS then
# holds the ftvmm options that use it. The lab's replication link is not loopback, and ftvmm refuses that without
# credentials: the hosts talk TLS 1.3 as real ones would. LAB_FT_SEC=insecure uses --ft-insecure instead.
LAB_FT_ARGS=()
lab_ft_credentials() {
	if [[ "${LAB_FT_SEC:-psk}" == insecure ]]; then
		LAB_FT_ARGS=(--ft-insecure)
		return 0
	fi
	command -v psktool >/dev/null || _lab_die "psktool not found (apt-get install gnutls-bin)" || return 1
	rm -f "$LAB_DIR/ft.psk"
	psktool -u ftvmm -p "$LAB_DIR/ft.psk" >/dev/null || _lab_die "psktool failed" || return 1
	chmod 600 "$LAB_DIR/ft.psk"
	LAB_FT_ARGS=(--tls-psk "$LAB_DIR/ft.psk")
}

lab_setup() {
	local net="$LAB_PREFIX-net" h
	lab_teardown # leftovers of a run that could not clean up
	if [[ -z "$LAB_DIR" ]]; then
		LAB_DIR=$(mktemp -d /var/tmp/ftvmm-lab.XXXXXX) || return 1
		_LAB_OWN_DIR=1
	fi
	LAB_LOG=${LAB_LOG:-$LAB_DIR/log}
	mkdir -p "$LAB_DIR" "$LAB_LOG"
	ip netns add "$net" || return 1
	ip -n "$net" link set lo up
	ip netns exec "$net" sysctl -qw net.ipv6.conf.all.disable_ipv6=1 net.ipv6.conf.default.disable_ipv6=1 2>/dev/null || true
	ip -n "$net" link add name lan type bridge
	ip -n "$net" link add name rep type bridge
	ip -n "$net" link set lan up
	ip -n "$net" link set rep up
	for h in a b c; do
		_lab_host_up "$h" || { _lab_die "cannot set up host $h"; return 1; }
	done
	for h in a b c; do
		_lab_settle "$h" || return 1
	done
}

lab_teardown() {
	local h net="$LAB_PREFIX-net" name
	for h in a b c; do
		_lab_host_down "$h"
	done
	if _lab_ns_exists "$net"; then
		_lab_kill_ns "$net" || true
		ip netns del "$net"
	fi
	# lab_bg processes that somehow left their namespace
	for name in "${!LAB_PID[@]}"; do lab_kill "$name"; done
	LAB_CUT=() LAB_SPEC=()
	if ((_LAB_OWN_DIR)) && [[ "${LAB_KEEP:-0}" != 1 ]]; then
		rm -rf "$LAB_DIR"
		LAB_DIR="" LAB_LOG=""
		_LAB_OWN_DIR=0
	fi
	return 0
}

lab_crash() {
	local h="$1" ns l
	ns=$(lab_ns "$h") || return 1
	# the wire first: once the host's lab-net ends are down nothing its kernel sends as the processes die (FIN,
	# RST) leaves it, and its peers see only silence, as after a power loss. All its links in one `ip -batch`: one
	# ip command costs 150-350 ms in the test bed, and a real host's links all go silent at once.
	# LAB_SILENT_AT: when they were down (date +%s.%N), for timings that start at the silence.
	for l in $(_lab_links "$h"); do echo "link set $l down"; done | ip -n "$LAB_PREFIX-net" -batch -
	LAB_SILENT_AT=$(date +%s.%N)
	_lab_kill_ns "$ns"
	_lab_reap "$h"
}

# A rebooted machine comes back with a fresh kernel, so the crashed namespace is replaced, not reconnected: its
# kernel still holds the killed processes' sockets and would deliver their FINs once its links were up.
lab_revive() {
	lab_ns "$1" >/dev/null || return 1
	_lab_host_down "$1"
	_lab_host_up "$1" && _lab_settle "$1"
}

lab_freeze() {
	local ns
	ns=$(lab_ns "$1") || return 1
	# only the processes stop: the host's kernel still receives, queues and ACKs (a stalled VMM, not a dead box)
	_lab_signal "$ns" STOP
}

lab_thaw() {
	local ns
	ns=$(lab_ns "$1") || return 1
	_lab_signal "$ns" CONT
}

# _lab_link LINK: checks LINK; sets _LH (its host) and _LD (the host's end of it)
_lab_link() {
	case "$1" in
	a-lan | b-lan | c-lan) _LH=${1%%-*} _LD=lan0 ;;
	a-rep | b-rep) _LH=${1%%-*} _LD=rep0 ;;
	*) _lab_die "no such link: '$1' (a-lan, a-rep, b-lan, b-rep, c-lan)" ;;
	esac
}

_lab_dirs() {
	case "$1" in
	in | out) echo "$1" ;;
	both) echo "in out" ;;
	*) _lab_die "no such direction: '$1' (in, out, both)" ;;
	esac
}

# _lab_apply LINK DIR: give that direction of LINK the qdisc its state asks for: a cut drops everything (blackhole,
# built into every kernel with tc), else netem with the link's spec, else none
_lab_apply() {
	local link="$1" dir="$2" ns dev q
	_lab_link "$link" || return 1
	if [[ "$dir" == in ]]; then ns="$LAB_PREFIX-net" dev="$link"; else ns="$LAB_PREFIX-$_LH" dev="$_LD"; fi
	if [[ -n "${LAB_CUT[$link/$dir]:-}" ]]; then
		q="blackhole"
	elif [[ -n "${LAB_SPEC[$link/$dir]:-}" ]]; then
		q="netem ${LAB_SPEC[$link/$dir]}"
	else
		tc -n "$ns" qdisc del dev "$dev" root 2>/dev/null || true
		return 0
	fi
	# (word splitting of $q on purpose: the netem spec is several words)
	# shellcheck disable=SC2086
	tc -n "$ns" qdisc replace dev "$dev" root $q || _lab_die "tc qdisc $q on $link ($dir) failed"
}

lab_cut() {
	local link="$1" d dirs
	dirs=$(_lab_dirs "${2:-both}") && _lab_link "$link" || return 1
	for d in $dirs; do
		LAB_CUT[$link/$d]=1
		_lab_apply "$link" "$d" || return 1
	done
}

# (a degradation set on LINK comes back with the heal)
lab_heal() {
	local link="$1" d
	_lab_link "$link" || return 1
	for d in in out; do
		unset "LAB_CUT[$link/$d]"
		_lab_apply "$link" "$d" || return 1
	done
}

lab_netem_ok() {
	local ns="$LAB_PREFIX-net"
	tc -n "$ns" qdisc replace dev lo root netem delay 0ms 2>/dev/null || return 1
	tc -n "$ns" qdisc del dev lo root 2>/dev/null || true
}

lab_degrade() {
	local link="$1" spec="$2" d dirs
	dirs=$(_lab_dirs "${3:-both}") && _lab_link "$link" || return 1
	lab_netem_ok || { _lab_die "tc netem is not available here (kernel module sch_netem)"; return 1; }
	for d in $dirs; do
		LAB_SPEC[$link/$d]=$spec
		_lab_apply "$link" "$d" || return 1
	done
}

lab_restore() {
	local link="$1" d
	_lab_link "$link" || return 1
	for d in in out; do
		unset "LAB_SPEC[$link/$d]"
		_lab_apply "$link" "$d" || return 1
	done
}

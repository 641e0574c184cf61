#!/usr/bin/env bash
# tests/lab/selftest.sh - checks tests/lab/lab.sh on any Linux machine with network namespaces (root; no KVM, no VM).
#
# Checks: the lab's namespaces, TAPs and host directories; delivery both ways on the guest LAN and on the replication
# link, and that the client has no route to the replication link; that lab_bg's pid is the command's own; that a
# plain kill -9 of a TCP client shows its peer a FIN or RST (the control) while lab_crash leaves the peer in silence,
# also after lab_revive; freeze/thaw (processes stop, the host's kernel still queues); one-way and two-way cuts and
# their heal; netem degradation surviving a cut and its heal (only where tc netem works: else "SKIP: no sch_netem
# here", and lab_degrade must fail cleanly); bad link names; and that lab_teardown leaves nothing behind.
# Prints "ok ..." / "FAIL ..." per check; exit status 1 if any check failed. Run as root: nice -n 19 bash tests/lab/selftest.sh
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
source "$here/lab.sh"

fails=0
check() { # WHAT CMD...: one line per check
	local what="$1"
	shift
	if "$@"; then echo "ok   $what"; else echo "FAIL $what"; fails=$((fails + 1)); fi
}
trap 'lab_teardown' EXIT
trap 'exit 130' INT TERM

lab_setup
PY=python3
probe="$LAB_DIR/probe.py"
cat >"$probe" <<'EOF'
import socket, statistics, sys, time
mode, a = sys.argv[1], sys.argv[2:]
def out(*w): print(*w, flush=True)
if mode == "udp-recv":          # PORT: print every datagram
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(("0.0.0.0", int(a[0]))); out("ready")
    while True: out(s.recv(200).decode())
elif mode == "udp-echo":        # PORT: send every datagram back
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(("0.0.0.0", int(a[0]))); out("ready")
    while True:
        d, peer = s.recvfrom(200); s.sendto(d, peer)
elif mode == "udp-rtt":         # DST PORT N: the median round trip in ms, or "lost"
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.settimeout(2); rtts = []
    for i in range(int(a[2])):
        t = time.monotonic(); s.sendto(b"%d" % i, (a[0], int(a[1])))
        try:
            while s.recv(200) != b"%d" % i: pass
            rtts.append((time.monotonic() - t) * 1000)
        except socket.timeout: pass
    out("%.0f" % statistics.median(rtts) if rtts else "lost")
elif mode == "tcp-server":      # ADDR PORT: accept one connection, report what arrives: data, eof or reset
    ls = socket.socket(); ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    ls.bind((a[0], int(a[1]))); ls.listen(1); out("listening")
    c, _ = ls.accept(); out("accepted")
    while True:
        try: d = c.recv(200)
        except ConnectionResetError: out("reset"); break
        if not d: out("eof"); break
        out("data", d.decode().strip())
elif mode == "tcp-client":      # DST PORT: connect, say hello, then wait forever
    c = socket.create_connection((a[0], int(a[1])), timeout=10); c.sendall(b"hello\n"); out("connected")
    time.sleep(1e6)
EOF

# wait_line FILE REGEX SECS: a line of FILE matches within SECS
wait_line() {
	local end=$((SECONDS + $3))
	while ! grep -qE -- "$2" "$1" 2>/dev/null; do
		((SECONDS < end)) || return 1
		sleep 0.1
	done
}
# never_line FILE REGEX SECS: no line of FILE matches for SECS
never_line() {
	sleep "$3"
	! grep -qE -- "$2" "$1" 2>/dev/null
}

# UDP receivers, one per host: what a host got is in LAB_OUT[recv-HOST]
UPORT=5555
start_recv() {
	lab_bg "$1" "recv-$1" "$PY" "$probe" udp-recv "$UPORT"
	wait_line "${LAB_OUT[recv-$1]}" '^ready' 20
}
# addr HOST lan|rep
addr() { if [[ "$2" == rep ]]; then echo "${LAB_REP_IP[$1]}"; else echo "${LAB_LAN_IP[$1]}"; fi; }
# delivered FROM TO lan|rep SECS: one datagram from FROM reaches TO's receiver within SECS
# (a fresh message each time; bash's /dev/udp: no process to start on the sending side)
nmsg=0
delivered() {
	local msg="m$((++nmsg))-$1-$2-$3"
	lab_exec "$1" bash -c 'echo "$1" >"/dev/udp/$2/$3"' _ "$msg" "$(addr "$2" "$3")" "$UPORT" 2>/dev/null || return 1
	wait_line "${LAB_OUT[recv-$2]}" "^$msg\$" "$4"
}
reaches() { delivered "$@" 5; }
lost() { ! delivered "$@" 2; }

##### the lab as built
check "setup: namespaces lab-a, lab-b, lab-c, lab-net" \
	bash -c "ip netns list | grep -cE '^$LAB_PREFIX-(a|b|c|net)( |\$)' | grep -qx 4"
for h in a b; do
	check "host $h: persistent TAP $LAB_TAP in br0" \
		bash -c "ip -n $(lab_ns "$h") -d link show $LAB_TAP | grep -q 'master br0' && ip -n $(lab_ns "$h") -d link show $LAB_TAP | grep -q 'persist on'"
	check "host $h: its own directory" test -d "$(lab_host_dir "$h")"
done
for h in a b c; do
	start_recv "$h" || echo "FAIL udp receiver in $h did not start: $(cat "${LAB_ERR[recv-$h]}")"
done
lab_bg a sleeper sleep 300
check "lab_bg: \$! is the command's own pid" bash -c "sleep 0.5; [[ \$(cat /proc/${LAB_PID[sleeper]}/comm) == sleep ]]"
lab_kill sleeper

##### connectivity
check "LAN: client -> host a" reaches c a lan
check "LAN: host a -> client" reaches a c lan
check "LAN: client -> host b" reaches c b lan
check "LAN: host b -> client" reaches b c lan
check "LAN: host a -> host b" reaches a b lan
check "replication link: a -> b" reaches a b rep
check "replication link: b -> a" reaches b a rep
check "the client has no route to the replication link" \
	bash -c "! ip netns exec $(lab_ns c) bash -c 'echo x >/dev/udp/${LAB_REP_IP[b]}/$UPORT' 2>/dev/null"

##### crash: a plain kill -9 is seen by the peer; lab_crash is not
# tcp_pair N: a TCP server on b's replication address, a client from a, connected and greeted
tcp_pair() {
	lab_bg b "srv$1" "$PY" "$probe" tcp-server "${LAB_REP_IP[b]}" $((7000 + $1))
	wait_line "${LAB_OUT[srv$1]}" '^listening' 20 || return 1
	lab_bg a "cli$1" "$PY" "$probe" tcp-client "${LAB_REP_IP[b]}" $((7000 + $1))
	wait_line "${LAB_OUT[srv$1]}" '^data hello' 20
}
check "TCP: connected a -> b" tcp_pair 1
lab_kill cli1
check "control: kill -9 of the client alone: the server sees a FIN or RST" wait_line "${LAB_OUT[srv1]}" '^(eof|reset)' 5

check "TCP: connected a -> b again" tcp_pair 2
lab_crash a
check "lab_crash a: nothing left running in lab-a" test -z "$(ip netns pids "$(lab_ns a)")"
check "lab_crash a: the client died of SIGKILL" test "${LAB_RC[cli2]:-}" = 137
check "lab_crash a: a-lan and a-rep are down in lab-net" \
	bash -c "ip -n $(lab_ns net) -br link show dev a-lan | grep -q DOWN && ip -n $(lab_ns net) -br link show dev a-rep | grep -q DOWN"
check "lab_crash a: the server sees silence for 4 s (no FIN, no RST)" never_line "${LAB_OUT[srv2]}" '^(eof|reset)' 4
alive() { kill -0 "$1" 2>/dev/null; }
check "lab_crash a: the server still waits in recv" alive "${LAB_PID[srv2]}"
check "lab_crash a: nothing reaches a" lost b a rep

lab_revive a
check "lab_revive a: TCP server from before the crash still hears nothing" never_line "${LAB_OUT[srv2]}" '^(eof|reset)' 3
check "lab_revive a: a fresh host (no process)" test -z "$(ip netns pids "$(lab_ns a)")"
start_recv a || echo "FAIL udp receiver in revived a did not start"
check "lab_revive a: replication link a -> b" reaches a b rep
check "lab_revive a: replication link b -> a" reaches b a rep
check "lab_revive a: LAN client -> a" reaches c a lan
check "lab_revive a: LAN a -> client" reaches a c lan
check "lab_revive a: its directory is still there" test -d "$(lab_host_dir a)"
lab_kill srv1
lab_kill srv2

##### freeze / thaw
all_state() { # HOST STATE: every process of HOST is in STATE (T: stopped), or none is (!STATE)
	local p s n=0
	for p in $(ip netns pids "$(lab_ns "$1")"); do
		s=$(sed 's/.*) //' "/proc/$p/stat" | cut -d' ' -f1)
		n=$((n + 1))
		if [[ "$2" == '!'* ]]; then [[ "$s" != "${2#!}" ]] || return 1; else [[ "$s" == "$2" ]] || return 1; fi
	done
	((n > 0))
}
lab_freeze b
check "lab_freeze b: every process of b is stopped" all_state b T
msg="frozen-$RANDOM"
lab_exec a bash -c 'echo "$1" >"/dev/udp/$2/$3"' _ "$msg" "${LAB_REP_IP[b]}" "$UPORT"
check "lab_freeze b: its receiver prints nothing meanwhile" never_line "${LAB_OUT[recv-b]}" "^$msg\$" 2
lab_thaw b
check "lab_thaw b: every process of b runs again" all_state b '!T'
check "lab_thaw b: the datagram sent meanwhile was queued by b's kernel and arrives" \
	wait_line "${LAB_OUT[recv-b]}" "^$msg\$" 5

##### cuts
lab_cut a-rep out
check "lab_cut a-rep out: a -> b dropped" lost a b rep
check "lab_cut a-rep out: b -> a still delivered" reaches b a rep
check "lab_cut a-rep out: a keeps its carrier (a silent partition, not a dead link)" \
	bash -c "ip -n $(lab_ns a) link show rep0 | grep -q LOWER_UP"
lab_heal a-rep
check "lab_heal a-rep: a -> b" reaches a b rep
check "lab_heal a-rep: b -> a" reaches b a rep
lab_cut a-rep in
check "lab_cut a-rep in: b -> a dropped" lost b a rep
check "lab_cut a-rep in: a -> b still delivered" reaches a b rep
lab_heal a-rep
lab_cut c-lan
check "lab_cut c-lan (both): client -> a dropped" lost c a lan
check "lab_cut c-lan (both): a -> client dropped" lost a c lan
check "lab_cut c-lan (both): a -> b on the LAN still delivered" reaches a b lan
lab_cut c-lan both # (idempotent)
lab_heal c-lan
lab_heal c-lan
check "lab_heal c-lan: client -> a" reaches c a lan
check "lab_heal c-lan: a -> client" reaches a c lan

##### degradation (tc netem)
if lab_netem_ok; then
	lab_bg b echo-b "$PY" "$probe" udp-echo 5556
	wait_line "${LAB_OUT[echo-b]}" '^ready' 20 || echo "FAIL the UDP echo in b did not start"
	rtt() { lab_exec a "$PY" "$probe" udp-rtt "${LAB_REP_IP[b]}" 5556 5; }
	rtt_in() { local r; r=$(rtt); echo "  rtt a <-> b: $r ms (want $1..$2)"; [[ "$r" != lost ]] && ((r >= $1 && r <= $2)); }
	check "netem: plain rtt a <-> b under 50 ms" rtt_in 0 50
	lab_degrade a-rep "delay 100ms"
	check "lab_degrade a-rep 'delay 100ms' (both ways): rtt >= 190 ms" rtt_in 190 2000
	lab_cut a-rep out
	check "lab_cut over a degraded link drops a -> b" lost a b rep
	lab_heal a-rep
	check "lab_heal brings the degradation back: rtt >= 190 ms" rtt_in 190 2000
	lab_restore a-rep
	check "lab_restore a-rep: rtt under 50 ms again" rtt_in 0 50
	lab_degrade a-rep "delay 100ms" in
	check "lab_degrade a-rep ... in: one way only, rtt 90..180 ms" rtt_in 90 180
	lab_restore a-rep
	lab_degrade a-rep "loss 100%"
	check "lab_degrade a-rep 'loss 100%': a -> b dropped" lost a b rep
	lab_restore a-rep
	check "lab_restore a-rep: a -> b" reaches a b rep
else
	echo "SKIP: no sch_netem here (tc netem checks)"
	degrade_refused() {
		local err
		err=$(lab_degrade a-rep "delay 10ms" 2>&1) && return 1
		[[ "$err" == *sch_netem* ]]
	}
	check "without netem lab_degrade fails, saying so" degrade_refused
	check "... and leaves the link as it was" reaches a b rep
fi

##### bad arguments
refused() { ! "$@" 2>/dev/null; }
check "lab_cut x-lan is refused" refused lab_cut x-lan
check "lab_cut c-rep is refused" refused lab_cut c-rep
check "lab_cut a-rep sideways is refused" refused lab_cut a-rep sideways
check "lab_exec z is refused" refused lab_exec z true
check "... and no cut was made: a -> b" reaches a b rep

##### teardown
pids="${LAB_PID[*]}"
dir=$LAB_DIR
lab_teardown
check "lab_teardown: no lab namespace left" bash -c "! ip netns list | grep -qE '^$LAB_PREFIX-(a|b|c|net)( |\$)'"
check "lab_teardown: no lab_bg process left" bash -c "for p in $pids; do ! kill -0 \$p 2>/dev/null || exit 1; done"
check "lab_teardown: its directory is gone" test ! -e "$dir"
check "lab_teardown: no lab link in this namespace" bash -c "! ip -br link | grep -qE '^(lan0|rep0|br0|$LAB_TAP|[abc]-(lan|rep))[@ ]'"
lab_teardown # (twice: harmless)

if ((fails)); then
	echo "lab selftest: $fails check(s) FAILED"
	exit 1
fi
echo "lab selftest: all checks passed"

#!/usr/bin/env bash
# tests/integration/t_resume.sh - a guest resumed elsewhere goes on: QEMU live migration (the reference), ftvmm snapshot -> restore, ftvmm kill -9 failover.
#
# Meant for the test bed's KVM with nested paging on (tests/testbed/run.sh with TESTBED_KVM_ARGS kvm_amd.npt=1), where
# a guest taken over by a backup was seen to stop after a few lines. QEMU/KVM's own live migration between two QEMU
# processes in the same test bed is the reference: if it also stops, the emulated host is at fault, not ftvmm.
# Cases (each a chain of RESUME_N hops, default 5, of one guest (RESUME_CPUS=2 vCPUs) running ftwork with per-CPU
# timers; after every hop the guest must print RESUME_LINES (default 20) more FTWORK lines within 60 s, with no BAD):
#   resume/qemu-migrate    qemu -accel kvm, migrate over TCP on loopback to a fresh qemu -incoming (QMP)
#   resume/snapshot        ftvmm ctl snapshot + kill -9 + ftvmm restore in a new process
#   resume/failover        ftvmm run --backup, kill -9 the primary, the backup takes over; `protect` to a new backup
# Needs qemu-system-x86_64 for the first case (skipped with a FAIL line naming why when missing).
set -euo pipefail
here=$(dirname "${BASH_SOURCE[0]}")
source "$here/lib.sh"
source "$here/ft_lib.sh"
it_begin resume

N=${RESUME_N:-5}
LINES=${RESUME_LINES:-20}
RE='FTWORK seq=[0-9]+ sum'
ft_setup
W=$FT_WORK
npt=$(cat /sys/module/kvm_amd/parameters/npt 2>/dev/null || cat /sys/module/kvm_intel/parameters/ept 2>/dev/null || echo '?')
echo "resume: KVM nested paging: $npt"
CPUS=${RESUME_CPUS:-2}
# per-CPU timers with a stall check: a vCPU whose timer stops after a resume is a BAD line (with the guest's own
# view of its timers dumped just before it)
cmdline=$(guest_cmdline "ftvmm.test=ftguest ftvmm.ftargs=--pages,64,--interval-ms,50,--timers,--timer-stall-ms,15000,--count,1000000")

# goes_on FILE NAME HOP: the guest printing to FILE (process NAME) prints LINES more FTWORK lines
goes_on() {
	local f="$1" name="$2" hop="$3" n0 rc=0
	n0=$(ft_count "$f" "$RE")
	ft_wait_count "$f" "$RE" $((n0 + LINES)) 60 "$name" || rc=$?
	if ((rc)); then
		case_error "hop $hop: the guest stopped after $(($(ft_count "$f" "$RE") - n0)) lines ($([[ $rc == 2 ]] && echo "$name exited" || echo "60 s"))"
		return 1
	fi
	if grep -aq 'FTWORK.* BAD ' "$f"; then
		case_error "hop $hop: $(grep -a 'FTWORK.* BAD ' "$f" | head -n1)"
		return 1
	fi
}

# qmp SOCK CMD [ARGS-JSON]: one QMP command; prints the reply's "return" or "error" as JSON
qmp() {
	python3 - "$@" <<'EOF'
import json, socket, sys
# a QEMU that went away (its socket gone, the connection cut) is an answer too: {"error": ...}, never a traceback
try:
    s = socket.socket(socket.AF_UNIX); s.settimeout(20); s.connect(sys.argv[1]); f = s.makefile("rw")
    def rd():
        while True:
            line = f.readline()
            if not line:
                raise ConnectionError("QMP connection closed")
            m = json.loads(line)
            if "event" not in m:
                return m
    rd(); f.write(json.dumps({"execute": "qmp_capabilities"}) + "\n"); f.flush(); rd()
    cmd = {"execute": sys.argv[2]}
    if len(sys.argv) > 3:
        cmd["arguments"] = json.loads(sys.argv[3])
    f.write(json.dumps(cmd) + "\n"); f.flush(); print(json.dumps(rd()))
except (OSError, ValueError) as e:
    print(json.dumps({"error": {"desc": "%s: %s" % (sys.argv[1], e)}}))
EOF
}

case_begin resume/qemu-migrate
if command -v qemu-system-x86_64 >/dev/null; then
	qemu_vm() { # NAME [EXTRA...]
		local name="$1"
		shift
		ft_bg "$name" qemu-system-x86_64 -accel kvm -cpu host -m 128M -smp "$CPUS" -nodefaults -no-user-config \
			-display none -no-reboot -nic none -serial "file:$W/$name.console" -qmp "unix:$W/$name.qmp,server=on,wait=off" \
			-kernel "$GUEST_KERNEL" -initrd "$GUEST_INITRD" -append "$cmdline" "$@"
		FT_O[$name]="$W/$name.console"
		for _ in $(seq 100); do [[ -S "$W/$name.qmp" ]] && break; sleep 0.1; done
	}
	qemu_vm q0
	cur=q0
	if ft_wait_line "$W/q0.console" "$RE" "$ITEST_BOOT_TIMEOUT" q0; then
		for hop in $(seq 1 "$N"); do
			nxt=q$hop
			ft_port
			qemu_vm "$nxt" -incoming "tcp:127.0.0.1:$FT_PORT"
			reply=$(qmp "$W/$cur.qmp" migrate "{\"uri\": \"tcp:127.0.0.1:$FT_PORT\"}")
			[[ "$reply" == *return* ]] || { case_error "hop $hop: migrate: $reply"; break; }
			st=""
			for _ in $(seq 600); do
				st=$(qmp "$W/$cur.qmp" query-migrate | python3 -c 'import json,sys; print(json.load(sys.stdin).get("return", {}).get("status", "qmp-error"))')
				[[ "$st" == qmp-error ]] && break
				[[ "$st" == completed || "$st" == failed ]] && break
				sleep 0.1
			done
			[[ "$st" == completed ]] || { case_error "hop $hop: migration $st"; break; }
			ft_kill "$cur"
			cur=$nxt
			goes_on "$W/$cur.console" "$cur" "$hop" || break
			ft_log "qemu hop $hop: the migrated guest goes on"
		done
	else
		case_error "qemu's guest never printed FTWORK"
	fi
	for n in "${!FT_PID[@]}"; do ft_kill "$n"; done
else
	case_error "no qemu-system-x86_64 here"
fi
case_end

case_begin resume/snapshot
ft_bg s0 "$FTVMM" run --kernel "$GUEST_KERNEL" --initrd "$GUEST_INITRD" --mem 128M --cpus "$CPUS" --control "$W/s0.sock" --cmdline "$cmdline"
cur=s0
if ft_wait_line "${FT_O[s0]}" "$RE" "$ITEST_BOOT_TIMEOUT" s0; then
	for hop in $(seq 1 "$N"); do
		reply=$(ft_ctl "$W/$cur.sock" snapshot "$W/snap")
		[[ "$reply" == ok* ]] || { case_error "hop $hop: snapshot: $reply"; break; }
		ft_kill "$cur"
		nxt=s$hop
		ft_bg "$nxt" "$FTVMM" restore "$W/snap" --control "$W/$nxt.sock"
		cur=$nxt
		goes_on "${FT_O[$cur]}" "$cur" "$hop" || break
		ft_log "snapshot hop $hop: the restored guest goes on"
	done
else
	case_error "the guest never printed FTWORK"
fi
for n in "${!FT_PID[@]}"; do ft_kill "$n"; done
case_end

case_begin resume/failover
backup() { # NAME PORT
	ft_bg "$1" "$FTVMM" backup --listen "127.0.0.1:$2" --control "$W/$1.sock" --ft-timeout 10000
	ft_wait_line "${FT_E[$1]}" 'backup: listening on' 20 "$1" || case_error "$1 did not start listening"
}
ft_port
backup f1 "$FT_PORT"
ft_bg f0 "$FTVMM" run --kernel "$GUEST_KERNEL" --initrd "$GUEST_INITRD" --mem 128M --cpus "$CPUS" --control "$W/f0.sock" \
	--epoch 25 --ft-timeout 10000 --backup "127.0.0.1:$FT_PORT" --cmdline "$cmdline"
cur=f0
if ft_wait_line "${FT_E[f0]}" 'guest is PROTECTED' 180 f0 && ft_wait_line "${FT_O[f0]}" "$RE" 120 f0; then
	for hop in $(seq 1 "$N"); do
		nxt=f$hop
		ft_kill "$cur"
		ft_wait_line "${FT_E[$nxt]}" 'taking over from epoch' 30 "$nxt" || { case_error "hop $hop: no takeover"; break; }
		cur=$nxt
		goes_on "${FT_O[$cur]}" "$cur" "$hop" || break
		ft_log "failover hop $hop: the guest goes on on the backup"
		((hop < N)) || break
		ft_port
		backup "f$((hop + 1))" "$FT_PORT"
		reply=$(ft_ctl "$W/$cur.sock" protect "127.0.0.1:$FT_PORT")
		[[ "$reply" == ok* ]] || { case_error "hop $hop: protect: $reply"; break; }
		ft_wait_status "$W/$cur.sock" 'protected=yes' 120 || { case_error "hop $hop: not protected again: $FT_LAST_STATUS"; break; }
	done
else
	case_error "the guest never became protected and ticking"
fi
for n in "${!FT_PID[@]}"; do ft_kill "$n"; done
case_end

it_end

#!/usr/bin/env bash
# tests/integration/t_snapshot.sh - snapshot / kill -9 / restore of a live guest running ftwork (memory pages, disk records,
# DMA-written pages, a TCP stream, per-CPU timers) FTVMM_TEST_SNAP_CYCLES (10) times in a row; busy disk + NIC; inspect; atomic write; bad
# snapshot files and restore arguments.
#
# Needs root (creates TAP ftsnap0 with 192.0.2.1/24; the guest is 192.0.2.2) and python3 on the host.
# The guest: 2 vCPUs, 256M, init_on_free=1 (freed pages are zero, so they are not stored: smaller, faster
# snapshots), ftwork --pages 256 --interval-ms 100 --disk /dev/vda --dma-pages 16 --tcp 192.0.2.1:7000 --timers.
#
# What "the counter continues" means (checked on the console, where every tick prints seq, sum, mono_ns, ticks):
#   - paused snapshot (`ctl pause`, `ctl snapshot`, kill -9): the guest never ran after the snapshot, so S = the
#     last FTWORK line the old process completed, and the first line the restored guest completes is exactly
#     S+1 (the old console's unfinished last line, if any, is completed by the restored guest: the
#     concatenation old-tail + new console must parse, and its first line is S+1). Nothing is redone.
#   - live snapshot (`ctl snapshot` of a running guest, kill -9 right after the reply): the guest may have run
#     a little past the snapshot (the host's TAP is down meanwhile, so none of that output reaches the peer). With A = the last line before the command and R = the last line when the reply
#     came, the first complete line X of the restored guest is in [A+1, R+2] (R+2: a line half printed at the
#     snapshot), and every seq printed by both processes carries the same sum (ticks are deterministic: the
#     redone ticks are the same ticks). The TCP peer sees no duplicate (the host stack drops the re-sent bytes,
#     which are identical) and no gap.
#   In both: no BAD line (ftwork verifies all its pages, its DMA buffer and its disk records every tick), the
#   first restored line's mono_ns is above that of the line before it in the old console (clock not backwards),
#   and every CPU's timer count grows over each process's lifetime.
# At the end: the TCP sink saw one connection carrying 1, 2, 3, ... to the last seq; the disk image holds an intact
# record for every seq with the sum the console printed.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
it_begin snapshot

CYCLES=${FTVMM_TEST_SNAP_CYCLES:-10} # FTVMM_* variables pass into the test bed (longer runs: 20, 100)
TAP=ftsnap0
HOST_IP=192.0.2.1 GUEST_IP=192.0.2.2
SEQ_PORT=7000 STREAM_PORT=7001
DISK_MB=64 DMA_PAGES=16
FTWORK_ARGS="--pages,256,--interval-ms,100,--disk,/dev/vda,--dma-pages,$DMA_PAGES,--tcp,$HOST_IP:$SEQ_PORT,--timers"
WAIT_TMO=120 # seconds for a guest to reach a seq (boot, or one restore)

tmp=$(mktemp -d "$ITEST_TMP/ftvmm-snapshot.XXXXXX")
rm -f "$IT_LOGDIR"/seg[0-9]* "$IT_LOGDIR"/busy[0-9]* # consoles of an earlier run
SOCK="$tmp/ctl.sock"
pids=()
cleanup() {
	local p
	for p in ${pids[@]+"${pids[@]}"}; do kill -9 "$p" 2>/dev/null || true; done
	ip link del "$TAP" 2>/dev/null || true
	ip link del ftsnapnone0 2>/dev/null || true
	rm -rf "$tmp"
}
trap cleanup EXIT

# ---- host-side helpers (python3) ----

# ftsink.py MODE ADDR PORT STATUSFILE: the host end of the guest's TCP connections.
#   seq:    the first connection must carry "1\n2\n3\n..." (each line = previous + 1): a gap, a duplicate, a bad
#           line, a reset or a second connection is an error. stream: sends and receives as fast as it can.
# STATUSFILE holds one line, rewritten every 0.1 s: conns= count= last= rx= tx= eof= errors=
cat >"$tmp/ftsink.py" <<'EOF'
import os, socket, sys, threading, time
mode, addr, port, status = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
st = {"conns": 0, "count": 0, "last": 0, "rx": 0, "tx": 0, "eof": 0, "errors": []}
lock = threading.Lock()
def err(msg):
    with lock:
        if len(st["errors"]) < 5:
            st["errors"].append(str(msg).replace(" ", "_"))
def dumper():
    while True:
        with lock:
            line = "conns=%d count=%d last=%d rx=%d tx=%d eof=%d errors=%s\n" % (st["conns"], st["count"], st["last"],
                   st["rx"], st["tx"], st["eof"], ",".join(st["errors"]) or "none")
        with open(status + ".tmp", "w") as f:
            f.write(line)
        os.replace(status + ".tmp", status)
        time.sleep(0.1)
def rx_loop(c, on_data):
    while True:
        try:
            d = c.recv(65536)
        except OSError as e:
            err("recv:%s" % e)
            return
        if not d:
            with lock:
                st["eof"] = 1
            return
        with lock:
            st["rx"] += len(d)
        on_data(d)
def seq_conn(c):
    buf = [b""]
    def on_data(d):
        buf[0] += d
        *lines, buf[0] = buf[0].split(b"\n")
        for l in lines:
            try:
                v = int(l)
            except ValueError:
                err("bad_line:%r" % l[:20])
                continue
            with lock:
                if v != st["last"] + 1 and len(st["errors"]) < 5:
                    st["errors"].append("got_%d_after_%d" % (v, st["last"]))
                st["last"] = v
                st["count"] += 1
    rx_loop(c, on_data)
def stream_conn(c):
    def tx():
        blk = b"x" * 16384
        while True:
            try:
                n = c.send(blk)
            except OSError as e:
                err("send:%s" % e)
                return
            with lock:
                st["tx"] += n
    threading.Thread(target=tx, daemon=True).start()
    rx_loop(c, lambda d: None)
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind((addr, port))
s.listen(4)
threading.Thread(target=dumper, daemon=True).start()
while True:
    c, peer = s.accept()
    with lock:
        st["conns"] += 1
        n = st["conns"]
    if n > 1:
        err("second_connection")
        c.close()
        continue
    threading.Thread(target=seq_conn if mode == "seq" else stream_conn, args=(c,), daemon=True).start()
EOF

# records.py IMG AREA LAST CONSOLE...: ftwork's disk records 1..LAST intact, each with the sum the consoles
# printed; a seq printed twice must have the same sum. Prints "ok ..." or "FAIL ...".
cat >"$tmp/records.py" <<'EOF'
import re, struct, sys
img, area, last, consoles = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4:]
M = (1 << 64) - 1
def mix64(x):
    x ^= x >> 30; x = (x * 0xBF58476D1CE4E5B9) & M
    x ^= x >> 27; x = (x * 0x94D049BB133111EB) & M
    return x ^ (x >> 31)
def rec_check(w):
    h = 0x7265636F7264
    for i in range(63):
        h = (mix64(h ^ w[i]) + i) & M
    return h
sums, probs = {}, []
pat = re.compile(rb"FTWORK seq=(\d+) sum=([0-9a-f]{16}) ok mono_ns=\d+ ticks=[-0-9,]+\r?$")
for f in consoles:
    for line in open(f, "rb"):
        m = pat.search(line.rstrip(b"\n"))
        if m:
            s, v = int(m.group(1)), int(m.group(2), 16)
            if sums.get(s, v) != v:
                probs.append("seq %d printed with sums %016x and %016x" % (s, sums[s], v))
            sums[s] = v
data = open(img, "rb").read(min(area, (last + 2) * 512))  # only what the records use
data += bytes(area - len(data)) if last * 512 >= len(data) else b""
nrec = area // 512
first = max(1, last - nrec + 2)  # older records may have been overwritten by wrapping
for s in range(first, last + 1):
    w = struct.unpack_from("<64Q", data, (s * 512) % area)
    if w[0] != 0x314345524B575446 or w[1] != s or w[63] != rec_check(w):
        probs.append("record %d missing or damaged (magic %016x seq %d)" % (s, w[0], w[1]))
    elif s in sums and sums[s] != w[2]:
        probs.append("record %d has sum %016x, the console printed %016x" % (s, w[2], sums[s]))
    if len(probs) > 3:
        break
missing = [s for s in range(1, last + 1) if s not in sums]
print(("FAIL " + "; ".join(probs[:4])) if probs else
      "ok records %d..%d intact, sums match the %d seqs printed whole on one console (%d lines were cut by a snapshot)" % (first, last, len(sums), len(missing)))
EOF

# ---- console helpers: builtins only in the loops (forking is slow in the test bed and steals its 2 CPUs) ----

# A follower reads one console log incrementally. fo_open FILE [PENDING]: start on FILE, PENDING = the previous
# process's unfinished last line (the restored guest completes it). fo_poll: consume what was written since:
# FTWORK ok lines append to FO_SEQ/FO_SUM/FO_MONO/FO_TICKS; FO_BAD keeps the first BAD/error line; FO_PENDING the
# unfinished last line; FO_LAST the last seq (or 0).
OKRE='FTWORK seq=([0-9]+) sum=([0-9a-f]{16}) ok mono_ns=([0-9]+) ticks=([-0-9,]+)$'
FO_FD=""
fo_open() {
	[[ -n "$FO_FD" ]] && exec {FO_FD}<&-
	exec {FO_FD}<"$1"
	FO_PENDING=${2:-} FO_BAD="" FO_LAST=0
	FO_SEQ=() FO_SUM=() FO_MONO=() FO_TICKS=()
}
fo_poll() {
	local line
	while :; do
		line=""
		if IFS= read -r -u "$FO_FD" line; then
			line="$FO_PENDING$line"
			FO_PENDING=""
			line=${line%$'\r'}
			if [[ "$line" =~ $OKRE ]]; then
				FO_SEQ+=("${BASH_REMATCH[1]}") FO_SUM+=("${BASH_REMATCH[2]}")
				FO_MONO+=("${BASH_REMATCH[3]}") FO_TICKS+=("${BASH_REMATCH[4]}")
				FO_LAST=${BASH_REMATCH[1]}
			elif [[ -z "$FO_BAD" && ("$line" == *"FTWORK seq="*" BAD "* || "$line" == *"FTWORK error"*) ]]; then
				FO_BAD=$line
			fi
		else
			FO_PENDING+=$line
			return 0
		fi
	done
}
# fo_save: keep the current follower's lines as the previous process's: OLD_* and OLD_IDX[seq] -> index
fo_save() {
	OLD_SEQ=("${FO_SEQ[@]}") OLD_SUM=("${FO_SUM[@]}") OLD_MONO=("${FO_MONO[@]}") OLD_TICKS=("${FO_TICKS[@]}")
	OLD_IDX=()
	local k
	for k in "${!OLD_SEQ[@]}"; do OLD_IDX[${OLD_SEQ[$k]}]=$k; done
}
declare -A OLD_IDX=()

mkfifo "$tmp/nap.fifo"
exec {NAP_FD}<>"$tmp/nap.fifo"
nap() { read -r -t "$1" -u "$NAP_FD" _ || true; } # sleep without a process
secs() { # secs START_USEC [END_USEC]: seconds between, 2 decimals (builtins only)
	local e=${2:-${EPOCHREALTIME/./}} d
	d=$(((e - $1) / 10000))
	printf '%d.%02d' $((d / 100)) $((d % 100))
}
field() { sed -E "s/.*$1=([^ ]*).*/\1/"; } # field NAME: the value of NAME=... on stdin's line

# vm_start NAME ARG...: ftvmm ARG... in the background: VM_PID, VM_OUT (console), VM_ERR.
vm_start() {
	local name="$1"
	shift
	VM_OUT="$IT_LOGDIR/$name.console"
	VM_ERR="$IT_LOGDIR/$name.stderr"
	printf '%s\n' "ftvmm $*" >"$IT_LOGDIR/$name.cmd"
	: >"$VM_OUT" # created here, appended to there: a follower opened next must not see an older file
	: >"$VM_ERR"
	"$FTVMM" "$@" </dev/null >>"$VM_OUT" 2>>"$VM_ERR" &
	VM_PID=$!
	pids+=("$VM_PID")
}
vm_kill() {
	kill -9 "$VM_PID" 2>/dev/null || true
	wait "$VM_PID" 2>/dev/null || true
	local p keep=()
	for p in ${pids[@]+"${pids[@]}"}; do [[ "$p" == "$VM_PID" ]] || keep+=("$p"); done
	pids=(${keep[@]+"${keep[@]}"})
}
# wait_seq N TIMEOUT: until the followed console shows seq >= N. 0 ok, 1 timeout, 2 BAD line, 3 ftvmm exited.
wait_seq() {
	local n="$1" end=$((${EPOCHREALTIME%.*} + $2))
	while :; do
		fo_poll
		[[ "$FO_LAST" -ge "$n" ]] && return 0
		[[ -n "$FO_BAD" ]] && return 2
		kill -0 "$VM_PID" 2>/dev/null || { fo_poll; [[ "$FO_LAST" -ge "$n" ]] && return 0; return 3; }
		[[ ${EPOCHREALTIME%.*} -ge $end ]] && return 1
		nap 0.05
	done
}
wait_err() {
	case "$1" in
	1) echo "timed out (last seq ${FO_LAST})" ;;
	2) echo "ftwork reported: $FO_BAD" ;;
	3) echo "ftvmm exited: $(tail -n2 "$VM_ERR" | tr '\n' ' ')" ;;
	esac
}
ctl() { "$FTVMM" ctl "$SOCK" "$@" 2>&1; }
# sink_read FILE: SINK[key]=value from a sink's status line (builtins only)
declare -A SINK=()
sink_read() {
	local line="" kv
	SINK=()
	read -r line <"$1" 2>/dev/null || true
	for kv in $line; do SINK[${kv%%=*}]=${kv#*=}; done
}
sink_status() { sink_read "$1"; echo "conns=${SINK[conns]:-?} last=${SINK[last]:-?} count=${SINK[count]:-?} eof=${SINK[eof]:-?} errors=${SINK[errors]:-?}"; }

# Timers: every CPU's count must grow. The counts live in guest memory, so they carry across a restore: the
# check runs over a window of lines that may span processes, and only fails once the window covers more than
# TIMER_WINDOW_NS of guest time without some CPU's count moving (a short segment on a loaded test bed can fall
# between two of a starved vCPU's timer ticks). timer_window_start: the window starts at line K of the follower.
TIMER_WINDOW_NS=3000000000
TW_TICKS="" TW_MONO=0
timer_window_start() { TW_TICKS=${FO_TICKS[$1]} TW_MONO=${FO_MONO[$1]}; }
# timer_check WHAT: compare the follower's last line with the window start; restart the window when all moved
timer_check() {
	local n=${#FO_TICKS[@]} i stuck=""
	[[ $n -gt 0 && -n "$TW_TICKS" ]] || return 0
	local -a a b
	IFS=, read -ra a <<<"$TW_TICKS"
	IFS=, read -ra b <<<"${FO_TICKS[$((n - 1))]}"
	if [[ ${#a[@]} != 2 || ${#b[@]} != 2 ]]; then
		case_error "$1: expected timer counts for 2 CPUs, got '$TW_TICKS' .. '${FO_TICKS[$((n - 1))]}'"
		return
	fi
	for i in 0 1; do
		[[ "${b[$i]}" -gt "${a[$i]}" ]] || stuck+=" $i (count ${a[$i]} -> ${b[$i]})"
	done
	if [[ -z "$stuck" ]]; then
		timer_window_start $((n - 1))
	elif ((FO_MONO[n - 1] - TW_MONO > TIMER_WINDOW_NS)); then
		case_error "$1: the timer of CPU$stuck did not tick in $(((FO_MONO[n - 1] - TW_MONO) / 1000000)) ms of guest time"
		timer_window_start $((n - 1))
	fi
}

# ---- setup: TAP (persistent, so it outlives each killed ftvmm), sink, disk ----
ip link del "$TAP" 2>/dev/null || true
ip tuntap add dev "$TAP" mode tap
ip addr add "$HOST_IP/24" dev "$TAP"
ip link set "$TAP" up
truncate -s "${DISK_MB}M" "$tmp/disk.img"
AREA=$(((DISK_MB << 20) - 4 * DMA_PAGES * 4096)) # ftwork's DMA area: 4 slots of DMA_PAGES at the end
start_sink() { # start_sink MODE PORT STATUSFILE
	python3 "$tmp/ftsink.py" "$1" "$HOST_IP" "$2" "$3" &
	pids+=("$!")
	local i
	for i in $(seq 100); do [[ -s "$3" ]] && return 0; sleep 0.1; done
	echo "  warning: sink on port $2 did not start"
}
start_sink seq "$SEQ_PORT" "$tmp/sink.status"

CMDLINE=$(guest_cmdline "init_on_free=1 ftvmm.test=ftwork ftvmm.ip=$GUEST_IP/24 ftvmm.ftwork=$FTWORK_ARGS")
RUN=(run --kernel "$GUEST_KERNEL" --initrd "$GUEST_INITRD" --mem 256M --cpus 2 --disk "$tmp/disk.img"
	--net "tap=$TAP" --control "$SOCK" --cmdline "$CMDLINE")

# ======== 1. boot, then CYCLES x (snapshot, kill -9, restore in a new process) ========
case_begin "snapshot/cycles$CYCLES"
consoles=()
t0=${EPOCHREALTIME/./}
vm_start seg00 "${RUN[@]}"
consoles+=("$VM_OUT")
fo_open "$VM_OUT"
FT_OUT="$VM_OUT" FT_ERR="$VM_ERR"
rc=0
wait_seq 3 "$WAIT_TMO" || rc=$?
if [[ $rc != 0 ]]; then
	case_error "the guest never reached FTWORK seq=3: $(wait_err $rc)"
else
	echo "  booted: seq 3 after $(secs "$t0")s"
	timer_window_start 0
	grep -aq "FTWORK start pages=256 .*dma_pages=$DMA_PAGES tcp=$HOST_IP:$SEQ_PORT area=$AREA" "$VM_OUT" ||
		case_error "unexpected FTWORK start line: $(grep -a 'FTWORK start' "$VM_OUT" | tr -d '\r')"
fi
snap="$tmp/snap"
REPLYRE='^ok snapshot [^ ]+ bytes=([0-9]+) .*pause_us=([0-9]+) .*total_ms=([0-9.]+)'
write_ms_sum=0 restore_us_sum=0 ncycles=0 bytes=0
for ((i = 1; i <= CYCLES && ${#CASE_ERRORS[@]} == 0; i++)); do
	live=0
	((i % 5 == 0)) && live=1 # every 5th cycle: snapshot of the running guest, ticks after it are redone
	fo_poll
	A=$FO_LAST
	if [[ $live == 0 ]]; then
		r=$(ctl pause) || { case_error "cycle $i: ctl pause: $r"; break; }
	fi
	# Live: the guest runs on after the snapshot and its TCP output of that time would reach the sink, which
	# would then have ACKed bytes the restored guest never sent (a rolled-back TCP sender stalls for good:
	# exactly what FT's output commit prevents). So the host's side of the TAP is down from just before the
	# snapshot until the restore: like a cable pulled, nothing leaves, the guest retransmits afterwards.
	[[ $live == 1 ]] && ip link set "$TAP" down
	reply=$(ctl snapshot "$snap") || { ip link set "$TAP" up; case_error "cycle $i: ctl snapshot: $reply"; break; }
	fo_poll
	R=$FO_LAST
	vm_kill
	[[ $live == 1 ]] && ip link set "$TAP" up
	fo_poll
	C=$FO_LAST
	timer_check "cycle $i: before the snapshot"
	fo_save
	tail_part=$FO_PENDING
	if [[ "$reply" =~ $REPLYRE ]]; then
		bytes=${BASH_REMATCH[1]} pus=${BASH_REMATCH[2]} wms=${BASH_REMATCH[3]}
	else
		case_error "cycle $i: unexpected snapshot reply: $reply"
		break
	fi
	[[ "$(stat -c %s "$snap")" == "$bytes" ]] || case_error "cycle $i: reply says $bytes bytes, the file has $(stat -c %s "$snap")"
	# restore in a new process: same disk, same TAP, same control socket path (stale now)
	t0=${EPOCHREALTIME/./}
	vm_start "$(printf 'seg%02d' "$i")" restore "$snap" --control "$SOCK"
	consoles+=("$VM_OUT")
	# paused: the old console's unfinished line is the one the restored guest completes. Live: the old process
	# printed on after the snapshot, so its unfinished line is not where the restored guest resumes.
	[[ $live == 1 ]] && tail_part=""
	fo_open "$VM_OUT" "$tail_part"
	FT_OUT="$VM_OUT" FT_ERR="$VM_ERR"
	rc=0
	wait_seq 1 "$WAIT_TMO" || rc=$?
	t_first=${EPOCHREALTIME/./}
	target=$((C + 2)) # past any redone tick, and at least 2 lines (timers are compared over them)
	[[ $rc == 0 && ${FO_SEQ[0]} -ge $target ]] && target=$((FO_SEQ[0] + 1))
	[[ $rc == 0 ]] && { wait_seq "$target" "$WAIT_TMO" || rc=$?; }
	if [[ $rc != 0 ]]; then
		case_error "cycle $i: the restored guest did not reach seq $target: $(wait_err $rc)"
		break
	fi
	X=${FO_SEQ[0]}
	[[ $live == 1 ]] && timer_window_start 0 # the lines the old process printed after the snapshot never happened
	timer_check "cycle $i: after the restore"
	if [[ $live == 0 ]]; then
		[[ "$X" == $((C + 1)) ]] || case_error "cycle $i (paused): first seq after restore is $X, expected $((C + 1)) (the last before: $C)"
	else
		[[ "$X" -gt "$A" && "$X" -le $((R + 2)) ]] ||
			case_error "cycle $i (live): first seq after restore is $X, expected within [$((A + 1)), $((R + 2))]"
		# every seq printed by both processes: the same sum (redone ticks are the same ticks)
		for k in "${!FO_SEQ[@]}"; do
			s=${FO_SEQ[$k]}
			[[ -n "${OLD_IDX[$s]:-}" ]] || continue
			[[ "${OLD_SUM[${OLD_IDX[$s]}]}" == "${FO_SUM[$k]}" ]] ||
				case_error "cycle $i: seq $s redone with sum ${FO_SUM[$k]}, the first time ${OLD_SUM[${OLD_IDX[$s]}]}"
		done
	fi
	# the clock: the first restored line's mono_ns above the old console's line before it
	if [[ -n "${OLD_IDX[$((X - 1))]:-}" ]]; then
		m_old=${OLD_MONO[${OLD_IDX[$((X - 1))]}]}
		((FO_MONO[0] > m_old)) ||
			case_error "cycle $i: guest clock went backwards: seq $X at mono_ns ${FO_MONO[0]} after seq $((X - 1)) at $m_old"
	fi
	sink_read "$tmp/sink.status"
	rs_us=$((t_first - t0))
	echo "  cycle $i ($([[ $live == 1 ]] && echo "live: snapshot within seq $A..$((R + 1))" || echo "paused at seq $C")):" \
		"${bytes} B, pause_us=$pus write_ms=$wms; restored: seq $X after $(secs "$t0" "$t_first")s; TCP sink at ${SINK[last]:-?}"
	write_ms_sum=$(awk -v a="$write_ms_sum" -v b="$wms" 'BEGIN { print a + b }')
	restore_us_sum=$((restore_us_sum + rs_us))
	ncycles=$((ncycles + 1))
done
if [[ $ncycles -gt 0 ]]; then
	echo "  $ncycles cycles: snapshot $bytes bytes, mean write_ms $(awk -v a="$write_ms_sum" -v n="$ncycles" 'BEGIN { printf "%.0f", a / n }')," \
		"mean restore-to-first-line $(secs 0 $((restore_us_sum / ncycles)))s"
fi
[[ $ncycles == "$CYCLES" ]] || case_error "only $ncycles of $CYCLES cycles completed"
case_end

# ======== 2. the state the restores left: TCP stream, disk records, timers ========
case_begin snapshot/stream-disk-timers
FT_OUT="$VM_OUT" FT_ERR="$VM_ERR"
if kill -0 "$VM_PID" 2>/dev/null; then
	rc=0
	wait_seq $((FO_LAST + 5)) 60 || rc=$?
	[[ $rc == 0 ]] || case_error "the last restored guest stopped: $(wait_err $rc)"
	# every CPU's timer must tick once more (or the window runs out: timer_check reports it)
	end=$((${EPOCHREALTIME%.*} + 30))
	while :; do
		fo_poll
		before=$TW_MONO
		timer_check "the last process"
		[[ "$TW_MONO" != "$before" ]] && break
		if [[ ${EPOCHREALTIME%.*} -ge $end ]]; then
			case_error "the last process: timer counts did not move in 30 s (guest at seq $FO_LAST)"
			break
		fi
		nap 0.2
	done
	# the sink must catch up with the console (retransmissions after a restore can lag a little)
	end=$((${EPOCHREALTIME%.*} + 20))
	while :; do
		fo_poll
		sink_read "$tmp/sink.status"
		[[ "${SINK[last]:-0}" -ge $((FO_LAST - 1)) || ${EPOCHREALTIME%.*} -ge $end ]] && break
		nap 0.2
	done
	ctl pause >/dev/null || true
	fo_poll
	final=$FO_LAST
	sink_read "$tmp/sink.status"
	echo "  TCP sink: $(sink_status "$tmp/sink.status") (console: last seq $final)"
	[[ "${SINK[conns]:-}" == 1 ]] || case_error "TCP: the sink saw ${SINK[conns]:-no} connections, expected 1 (no reconnect)"
	[[ "${SINK[errors]:-}" == none ]] || case_error "TCP: sink errors: ${SINK[errors]:-}"
	[[ "${SINK[eof]:-}" == 0 ]] || case_error "TCP: the guest closed the connection"
	# (the sink may be ahead: ftwork sends a tick before printing it, and the console drains slowly)
	[[ "${SINK[last]:-0}" -ge $((final - 1)) ]] ||
		case_error "TCP: the sink's last seq is ${SINK[last]:-?}, the console's $final: the stream stalled"
	[[ "${SINK[count]:-}" == "${SINK[last]:-}" ]] || case_error "TCP: received ${SINK[count]:-?} lines for seq 1..${SINK[last]:-?}"
	# disk records: the guest is paused; records up to the last printed seq are on the disk image
	out=$(python3 "$tmp/records.py" "$tmp/disk.img" "$AREA" "$final" "${consoles[@]}" 2>&1)
	echo "  disk: $out"
	[[ "$out" == ok* ]] || case_error "disk records: $out"
	ctl resume >/dev/null || true
else
	case_error "no running guest left by the cycles"
fi
for f in "${consoles[@]}"; do
	l=$(grep -aE 'FTWORK (seq=[0-9]+ BAD|error)' "$f" | sed -n 1p | tr -d '\r' || true)
	[[ -z "$l" ]] || case_error "$(basename "$f"): $l"
done
case_end

case_begin snapshot/inspect
if [[ -f "$snap" ]]; then
	ft_run 60 inspect "$snap"
	expect_exit 0
	expect_console "^snapshot $snap: format 1\.[0-9]+, [0-9]+ bytes, checksum [0-9a-f]+ \(verified\)" "the header line"
	expect_console '^memory: 256 MiB, [0-9]+ of 65536 pages stored' "the memory line"
	expect_console '^  ncpus = 2$' "the machine's vCPU count"
	expect_console "^    path = \"$tmp/disk.img\"" "the disk path"
	expect_console '^  vcpu 0: mp-state ' "vCPU 0"
	expect_console '^  vcpu 1: mp-state ' "vCPU 1"
	expect_console '^    RIP [0-9a-f]{16} RSP [0-9a-f]{16} RFLAGS [0-9a-f]+' "registers"
	expect_console '^    CR0 [0-9a-f]+ CR3 [0-9a-f]+ CR4 [0-9a-f]+ EFER [0-9a-f]+' "control registers"
	expect_console '^    MSRs saved: [1-9][0-9]*' "MSRs"
	expect_console '^kvmclock: [0-9.]+ s' "the clock"
	expect_console '^PIT channel 0: mode [0-5], count [0-9]+' "the PIT"
	expect_console '^IOAPIC: irr 0x[0-9a-f]+, pin 0: vector 0x[0-9a-f]{2}' "the IOAPIC's first pins"
	expect_console '^PIC master: irr 0x[0-9a-f]{2} imr 0x[0-9a-f]{2} isr 0x[0-9a-f]{2}' "the master PIC"
	expect_console '^devices:' "the device section"
	expect_console '^  serial@3f8:' "the serial port's node"
	expect_console '^  virtio-blk@0:$' "the virtio-blk node"
	expect_console '^  virtio-net@0:$' "the virtio-net node"
	# the TAP name is a string property (not a number), whatever its length
	expect_console "^    tap = \"$TAP\"" "the TAP name printed as a string"
else
	case_error "no snapshot file from the cycles"
fi
case_end

# ======== 3. killed while writing: never a partial file at the final name ========
case_begin snapshot/atomic-write
if kill -0 "$VM_PID" 2>/dev/null; then
	ms=$(awk -v a="$write_ms_sum" -v n="$ncycles" 'BEGIN { printf "%.3f", (n ? a / n : 1000) / 2000 }')
	"$FTVMM" ctl "$SOCK" snapshot "$tmp/atomic.snap" >"$tmp/atomic.reply" 2>&1 &
	cpid=$!
	sleep "$ms"
	vm_kill
	wait "$cpid" 2>/dev/null || true
	leftover=$(compgen -G "$tmp/atomic.snap.tmp.*" | wc -l || true)
	if [[ -e "$tmp/atomic.snap" ]]; then
		if grep -q '^ok' "$tmp/atomic.reply"; then
			echo "  the snapshot completed before the kill (after ${ms}s): not conclusive; checking the file"
		fi
		"$FTVMM" inspect "$tmp/atomic.snap" >/dev/null 2>"$tmp/atomic.err" ||
			case_error "a damaged file at the final name after kill -9 during the write: $(cat "$tmp/atomic.err")"
	else
		echo "  killed during the write (after ${ms}s): no file at the final name; $leftover temporary file(s) left"
	fi
	rm -f "$tmp"/atomic.snap*
else
	case_error "no running guest to kill during a snapshot"
fi
case_end
vm_kill

# ======== 4. busy devices: a dd loop on a second disk and a TCP stream both ways ========
case_begin snapshot/busy-devices
truncate -s 64M "$tmp/busy.img"
truncate -s 0 "$tmp/disk.img" && truncate -s "${DISK_MB}M" "$tmp/disk.img"
start_sink seq $((SEQ_PORT + 2)) "$tmp/sink2.status"
start_sink stream "$STREAM_PORT" "$tmp/stream.status"
BUSY_ARGS="--pages,64,--interval-ms,100,--disk,/dev/vda,--dma-pages,$DMA_PAGES,--tcp,$HOST_IP:$((SEQ_PORT + 2)),--timers"
CMDLINE=$(guest_cmdline "init_on_free=1 ftvmm.test=ftwork ftvmm.ip=$GUEST_IP/24 ftvmm.busy=disk:/dev/vdb,net:$HOST_IP:$STREAM_PORT ftvmm.ftwork=$BUSY_ARGS")
vm_start busy00 run --kernel "$GUEST_KERNEL" --initrd "$GUEST_INITRD" --mem 256M --cpus 2 --disk "$tmp/disk.img" \
	--disk "$tmp/busy.img" --net "tap=$TAP" --control "$SOCK" --cmdline "$CMDLINE"
busy_consoles=("$VM_OUT")
fo_open "$VM_OUT"
FT_OUT="$VM_OUT" FT_ERR="$VM_ERR"
busy_count() { # BUSY_N: the disk loop's counter from the first block of busy.img
	local l=""
	read -r l < <(head -c 32 "$tmp/busy.img" | tr -d '\0') || true
	BUSY_N=0
	[[ "$l" =~ ^BUSY\ ([0-9]+) ]] && BUSY_N=${BASH_REMATCH[1]}
	return 0
}
# loads_moving WHAT SECONDS: the disk loop's counter and both stream directions advance within SECONDS
loads_moving() {
	local b0 rx0 tx0 t0=${EPOCHREALTIME/./} end=$((${EPOCHREALTIME%.*} + $2))
	busy_count; b0=$BUSY_N
	sink_read "$tmp/stream.status"; rx0=${SINK[rx]:-0} tx0=${SINK[tx]:-0}
	while :; do
		nap 0.25
		busy_count
		sink_read "$tmp/stream.status"
		[[ "$BUSY_N" -gt "$b0" && "${SINK[rx]:-0}" -gt "$rx0" && "${SINK[tx]:-0}" -gt "$tx0" ]] && break
		[[ ${EPOCHREALTIME%.*} -ge $end ]] && break
	done
	echo "  $1: within $(secs "$t0")s: disk loop $b0 -> $BUSY_N, stream guest->host $rx0 -> ${SINK[rx]:-?} B, host->guest $tx0 -> ${SINK[tx]:-?} B"
	[[ "$BUSY_N" -gt "$b0" ]] || case_error "$1: the disk loop is not running ($b0 -> $BUSY_N)"
	[[ "${SINK[rx]:-0}" -gt "$rx0" ]] || case_error "$1: the guest->host stream is not flowing"
	[[ "${SINK[tx]:-0}" -gt "$tx0" ]] || case_error "$1: the host->guest stream is not flowing"
}
rc=0
wait_seq 3 "$WAIT_TMO" || rc=$?
[[ $rc == 0 ]] || case_error "the busy guest never reached seq 3: $(wait_err $rc)"
for ((i = 1; i <= 2 && ${#CASE_ERRORS[@]} == 0; i++)); do
	loads_moving "busy $i, before the snapshot" 30
	[[ ${#CASE_ERRORS[@]} == 0 ]] || break
	# paused first: a guest that ran on after the snapshot would have ACKed stream data the restored one never
	# received, which no TCP peer resends (what output commit is for, in fault tolerance)
	r=$(ctl pause) || { case_error "busy $i: ctl pause: $r"; break; }
	reply=$(ctl snapshot "$tmp/busy.snap") || { case_error "busy $i: ctl snapshot: $reply"; break; }
	vm_kill
	fo_poll
	C=$FO_LAST
	echo "  busy $i: paused at seq $C: $reply"
	tail_part=$FO_PENDING
	vm_start "busy0$i" restore "$tmp/busy.snap" --control "$SOCK"
	busy_consoles+=("$VM_OUT")
	fo_open "$VM_OUT" "$tail_part"
	FT_OUT="$VM_OUT" FT_ERR="$VM_ERR"
	rc=0
	wait_seq $((C + 3)) "$WAIT_TMO" || rc=$?
	if [[ $rc != 0 ]]; then
		case_error "busy $i: the restored guest did not reach seq $((C + 3)): $(wait_err $rc)"
		break
	fi
	[[ "${FO_SEQ[0]}" == $((C + 1)) ]] || case_error "busy $i: first seq after restore is ${FO_SEQ[0]}, expected $((C + 1))"
	loads_moving "busy $i, after the restore" 30
done
l=$(grep -ah 'FTVMM-BUSY .* ended' "${busy_consoles[@]}" | sed -n 1p | tr -d '\r' || true)
[[ -z "$l" ]] || case_error "a load loop ended: $l"
for f in "${busy_consoles[@]}"; do
	l=$(grep -aE 'FTWORK (seq=[0-9]+ BAD|error)' "$f" | sed -n 1p | tr -d '\r' || true)
	[[ -z "$l" ]] || case_error "$(basename "$f"): $l"
done
for s in sink2 stream; do
	echo "  $s: $(sink_status "$tmp/$s.status")"
	sink_read "$tmp/$s.status"
	[[ "${SINK[conns]:-}" == 1 && "${SINK[errors]:-}" == none && "${SINK[eof]:-}" == 0 ]] ||
		case_error "$s: $(sink_status "$tmp/$s.status")"
done
vm_kill
rm -f "$tmp/busy.snap" "$tmp/busy.img"
case_end

# ======== 5. the guest's TSC rate: set at boot (--tsc-khz), kept by a snapshot, set again by restore ========
# KVM without TSC scaling (the test bed's emulated CPU has none) can still run a guest's TSC faster than the
# host's (it catches the TSC up at every entry), so the rate asked for is this host's + 20%: a restore that
# did not set it (no KVM_SET_TSC_KHZ) would run the guest at the host's rate, and a snapshot of the restored
# process would say so. A rate below the host's is refused with one line unless the CPU scales TSCs.
case_begin snapshot/tsc-rate
tsc_of() { "$FTVMM" inspect "$1" 2>&1 | sed -nE 's/^  vcpu [0-9]+: .*TSC ([0-9]+) kHz$/\1/p' | sort -u | tr '\n' ' '; }
host_khz=$(tsc_of "$snap")
host_khz=${host_khz% }
if [[ ! "$host_khz" =~ ^[1-9][0-9]*$ ]]; then
	case_error "no single host TSC rate in the cycles' snapshot: '$host_khz'"
else
	want=$((host_khz + host_khz / 5))
	TSOCK="$tmp/tsc.sock"
	TRUN=(--kernel "$GUEST_KERNEL" --initrd "$GUEST_INITRD" --mem 128M --cpus 2 --control "$TSOCK"
		--cmdline "$(guest_cmdline "ftvmm.test=ftwork ftvmm.ftwork=--pages,16,--interval-ms,100,--timers")")
	vm_start tsc-run run "${TRUN[@]}" --tsc-khz "$want"
	fo_open "$VM_OUT"
	rc=0
	wait_seq 3 "$WAIT_TMO" || rc=$?
	if [[ $rc != 0 ]]; then
		case_error "the guest with --tsc-khz $want never reached seq 3: $(wait_err $rc)"
	else
		r=$("$FTVMM" ctl "$TSOCK" pause 2>&1) && r=$("$FTVMM" ctl "$TSOCK" snapshot "$tmp/tsc1.snap" 2>&1) ||
			case_error "snapshot of the --tsc-khz guest: $r"
		vm_kill
		got=$(tsc_of "$tmp/tsc1.snap")
		[[ "$got" == "$want " ]] || case_error "run --tsc-khz $want (host $host_khz): the snapshot says '$got'"
		fo_poll
		last=$FO_LAST
		vm_start tsc-restore restore "$tmp/tsc1.snap" --control "$TSOCK"
		fo_open "$VM_OUT"
		rc=0
		wait_seq $((last + 2)) "$WAIT_TMO" || rc=$?
		if [[ $rc != 0 ]]; then
			case_error "the restored guest did not go on: $(wait_err $rc)"
		else
			r=$("$FTVMM" ctl "$TSOCK" snapshot "$tmp/tsc2.snap" 2>&1) || case_error "snapshot of the restored guest: $r"
			got=$(tsc_of "$tmp/tsc2.snap")
			[[ "$got" == "$want " ]] ||
				case_error "after restore the guest's TSC runs at '$got' kHz, not the saved $want (host $host_khz)"
			echo "  host TSC $host_khz kHz; guest asked $want; after restore: $got"
		fi
		grep -a 'TSC' "$VM_ERR" && case_error "restore complained about the TSC rate"
		vm_kill
	fi
	# a rate below the host's: refused with one line (no TSC scaling), or given (scaling)
	low=$((host_khz / 2))
	vm_start tsc-low run "${TRUN[@]}" --tsc-khz "$low"
	fo_open "$VM_OUT"
	rc=0
	wait_seq 1 "$WAIT_TMO" || rc=$?
	if [[ $rc == 3 ]]; then
		nl=$(wc -l <"$VM_ERR")
		[[ $nl == 1 ]] && grep -q "^ftvmm: --tsc-khz $low: KVM cannot run .*this host's: $host_khz kHz" "$VM_ERR" ||
			case_error "--tsc-khz $low refused, but not with one clear line: $(head -c 400 "$VM_ERR")"
		[[ -s "$VM_OUT" ]] && case_error "--tsc-khz $low refused, yet the guest printed"
		echo "  --tsc-khz $low (half the host's): refused: $(cat "$VM_ERR")"
	elif [[ $rc == 0 ]]; then
		r=$("$FTVMM" ctl "$TSOCK" snapshot "$tmp/tsc3.snap" 2>&1) || case_error "snapshot of the slow-TSC guest: $r"
		got=$(tsc_of "$tmp/tsc3.snap")
		[[ "$got" == "$low " ]] || case_error "run --tsc-khz $low ran, but the snapshot says '$got'"
		echo "  --tsc-khz $low (half the host's): this CPU scales TSCs, the guest runs at $got kHz"
	else
		case_error "--tsc-khz $low: neither refused nor running: $(wait_err $rc)"
	fi
	vm_kill
	rm -f "$tmp"/tsc[0-9].snap
fi
case_end

# ======== 6. bad snapshot files and restore arguments: one clear line, non-zero, no VM ========
# bad NAME REGEX ARG...: `ftvmm ARG...` fails with one "ftvmm: ..." stderr line matching REGEX, prints no guest
# output and never creates the control socket (the VM never started).
bad() {
	local name="$1" re="$2"
	shift 2
	case_begin "snapshot/bad-$name"
	rm -f "$tmp/bad.sock"
	ft_run 30 "$@"
	expect_exit nonzero
	expect_stderr_one_line "$re"
	[[ ! -s "$FT_OUT" ]] || case_error "the guest printed something: $(head -c 200 "$FT_OUT")"
	[[ ! -e "$tmp/bad.sock" ]] || case_error "the control socket was created: a VM was started"
	case_end
}
flip_byte() { # flip_byte FILE OFFSET
	local b
	b=$(od -An -tu1 -j "$2" -N1 "$1" | tr -d ' ')
	printf "\\$(printf %03o $((b ^ 0xff)))" | dd of="$1" bs=1 seek="$2" conv=notrunc status=none
}
if [[ -f "$snap" ]]; then
	# each damage is made in place and undone (no copies of the file: the test bed is slow at that); the
	# truncation comes last
	size=$(stat -c %s "$snap")
	flip_byte "$snap" $((size / 2))
	bad flipped-memory-byte 'checksum' restore "$snap" --control "$tmp/bad.sock"
	flip_byte "$snap" $((size / 2))
	flip_byte "$snap" 300
	bad flipped-state-byte 'checksum' restore "$snap" --control "$tmp/bad.sock"
	flip_byte "$snap" 300
	printf '\x02\x00' | dd of="$snap" bs=1 seek=8 conv=notrunc status=none
	bad major-version 'version' restore "$snap" --control "$tmp/bad.sock"
	printf '\x01\x00' | dd of="$snap" bs=1 seek=8 conv=notrunc status=none
	bad not-a-snapshot 'magic|not an ftvmm snapshot' restore "$GUEST_INITRD" --control "$tmp/bad.sock"
	bad missing-file 'no such file' restore "$tmp/nonexistent.snap" --control "$tmp/bad.sock"
	truncate -s 32M "$tmp/small.img"
	bad disk-size 'disk.*(size|bytes)' restore "$snap" --disk "$tmp/small.img" --control "$tmp/bad.sock"
	bad disk-count 'disk' restore "$snap" --disk "$tmp/disk.img" --disk "$tmp/small.img" --control "$tmp/bad.sock"
	bad net-count 'net|nic' restore "$snap" --net "tap=$TAP" --net tap=ftsnap1 --control "$tmp/bad.sock"
	# a TAP that does not exist: the snapshot's network cannot be reached through it (a fresh TAP would leave the
	# guest unplugged). The disk is a same-size copy so that a VM started by mistake cannot touch the real one.
	truncate -s "${DISK_MB}M" "$tmp/copy.img"
	bad net-missing-tap 'tap|ftsnapnone0' restore "$snap" --disk "$tmp/copy.img" --net tap=ftsnapnone0 --control "$tmp/bad.sock"
	ip link del ftsnapnone0 2>/dev/null || true
	truncate -s $((size - 4096)) "$snap"
	bad truncated 'truncated|corrupt' restore "$snap" --control "$tmp/bad.sock"
	bad inspect-truncated 'truncated|corrupt' inspect "$snap"
else
	case_begin snapshot/bad-inputs
	case_error "no snapshot file from the cycles"
	case_end
fi

# ======== a guest that ticks on the PIT alone, restored again and again ========
case_begin snapshot/pit-tick
# noapictimer: Linux then ticks on the PIT, as a guest does whose LAPIC timer failed its boot calibration (seen in
# the test bed: such a guest's LAPIC timer stays in its calibration setting, periodic and masked). Every restore
# must give it its next PIT interrupt. Until 2026-12-07 the PIT was restored first and re-armed from then: an
# interrupt that came before the IOAPIC and the LAPICs were restored was lost, and KVM's PIT waits for that
# interrupt's EOI before it injects another, so the guest slept for good (r23, r24: after takeovers).
PIT_CYCLES=${FTVMM_TEST_PIT_CYCLES:-4}
PSOCK="$tmp/pit.sock" psnap="$tmp/pit.snap"
pit_cmd=$(guest_cmdline "noapictimer ftvmm.test=ftguest ftvmm.ftargs=--pages,16,--interval-ms,20,--count,1000000")
vm_start pit00 run --kernel "$GUEST_KERNEL" --initrd "$GUEST_INITRD" --mem 128M --cpus 1 --control "$PSOCK" \
	--cmdline "$pit_cmd"
fo_open "$VM_OUT"
rc=0
wait_seq 3 "$WAIT_TMO" || rc=$?
[[ $rc == 0 ]] || case_error "the PIT-ticking guest never reached FTWORK seq=3: $(wait_err $rc)"
pit_done=0
for ((i = 1; i <= PIT_CYCLES && rc == 0; i++)); do
	fo_poll
	r=$("$FTVMM" ctl "$PSOCK" pause 2>&1) || { case_error "cycle $i: ctl pause: $r"; break; }
	r=$("$FTVMM" ctl "$PSOCK" snapshot "$psnap" 2>&1)
	[[ "$r" == ok* ]] || { case_error "cycle $i: ctl snapshot: $r"; break; }
	fo_poll
	C=$FO_LAST
	vm_kill
	vm_start "$(printf 'pit%02d' "$i")" restore "$psnap" --control "$PSOCK"
	fo_open "$VM_OUT"
	wait_seq $((C + 5)) 60 || rc=$?
	if [[ $rc != 0 ]]; then
		case_error "restore $i: the guest did not tick on past seq $C: $(wait_err $rc)"
		"$FTVMM" ctl "$PSOCK" snapshot "$tmp/pit-stuck.snap" >/dev/null 2>&1 &&
			"$FTVMM" inspect "$tmp/pit-stuck.snap" 2>&1 | grep -E 'LAPIC|ISR|^PIT|^IOAPIC|^PIC|mp-state' | sed 's/^/  | /'
		break
	fi
	pit_done=$i
done
echo "  PIT-ticking guest (noapictimer, 1 vCPU): $pit_done of $PIT_CYCLES restores ticked on"
vm_kill
case_end

# ======== restore checks at the KVM level (real-mode vCPUs, ftvmm's own capture and restore) ========
# pv-kick: KVM keeps a KVM_HC_KICK_CPU as a flag no state ioctl reads while the vCPU runs; a capture between the kick
# and the waiter's HLT lost it, and the restored PV-spinlock waiter slept with interrupts off for good (r26, a CI
# run on 2026-12-07). pit-edge: a capture between the two halves of a PIT pulse left the IOAPIC pin's irr set after
# the restore, the PIT's next edge was coalesced away and KVM's PIT waited for its EOI for ever (r10, r23, r24).
kvm_check() {
	local name=$1 rc=0 out bin=${ITEST_KVMTESTS:-}/$2
	case_begin "snapshot/$name"
	if [[ ! -x "$bin" ]]; then
		case_error "no $2 binary at '$bin' (tests/integration/run.sh builds it from build/libftvmm.a)"
	else
		out=$(timeout -k 5 60 "$bin" 2>&1) || rc=$?
		sed 's/^/  | /' <<<"$out"
		[[ $rc == 0 ]] || case_error "$2 exit $rc: $(grep -E '^FAILED' <<<"$out" | tr '\n' ' ')"
	fi
	case_end
}
kvm_check pv-kick pvkick
kvm_check pit-edge pitedge

it_end

#!/usr/bin/env bash
# tests/integration/t_net.sh - virtio-net on a TAP: guest and host ping each other, 64 MiB TCP each way with SHA-256 compared on both ends; bad --net inputs fail before boot.
# Needs root (creates TAP ftvmmt0 with 203.0.113.1/24; the guest is 203.0.113.2), python3 and busybox (for ping) on the host.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
it_begin net

# The guest's half (guest-images/checks/, guest-images/tools/) lives in the initramfs: one built before
# those files were added cannot run this test, and says so here rather than as an "unknown check".
guest_has() {
	local have f missing=()
	have=$(zcat "$GUEST_INITRD" 2>/dev/null | cpio -t --quiet 2>/dev/null || true)
	for f in "$@"; do grep -qxF "$f" <<<"$have" || missing+=("$f"); done
	[[ ${#missing[@]} == 0 ]] && return 0
	case_error "$GUEST_INITRD lacks ${missing[*]}: rebuild it (bash guest-images/build.sh)"
	return 1
}

tmp=$(mktemp -d "$ITEST_TMP/ftvmm-net.XXXXXX")
TAP=ftvmmt0
HOST_IP=203.0.113.1 GUEST_IP=203.0.113.2  # TEST-NET-3: t_snapshot uses 192.0.2.0/24 on its own TAP
RX_PORT=5001 TX_PORT=5002  # guest's view: it receives on RX_PORT, sends to the host's TX_PORT
BYTES=$((64 << 20))
MAC=52:54:00:12:34:56
pids=()
cleanup() {
	local p
	for p in ${pids[@]+"${pids[@]}"}; do kill "$p" 2>/dev/null || true; done
	ip link del "$TAP" 2>/dev/null || true
	rm -rf "$tmp"
}
trap cleanup EXIT

# One TCP transfer on the host side; prints "bytes=N sha256=HEX secs=S" (or "error=...") to OUTFILE.
#   serve ADDR PORT TIMEOUT OUTFILE: accept one connection, read to EOF, close
#   send  ADDR PORT BYTES OUTFILE:   connect, send BYTES of fresh pseudo-random data, shut down, wait for the close
cat >"$tmp/xfer.py" <<'EOF'
import hashlib, random, socket, sys, time
mode, addr, port, arg, out = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), sys.argv[5]
h, n = hashlib.sha256(), 0
try:
    if mode == "serve":
        ls = socket.socket()
        ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        ls.bind((addr, port))
        ls.listen(1)
        ls.settimeout(arg)
        c, _ = ls.accept()
        c.settimeout(60)
        t0 = time.monotonic()
        while True:
            b = c.recv(1 << 20)
            if not b:
                break
            h.update(b)
            n += len(b)
        c.close()
    else:
        rnd = random.Random()  # seeded from the OS: different data each run (os.urandom is slow under TCG)
        c = socket.create_connection((addr, port), timeout=30)
        c.settimeout(60)
        t0 = time.monotonic()
        while n < arg:
            b = rnd.randbytes(min(1 << 20, arg - n))
            h.update(b)
            c.sendall(b)
            n += len(b)
        c.shutdown(socket.SHUT_WR)
        while c.recv(65536):
            pass
        c.close()
    res = "bytes=%d sha256=%s secs=%.3f" % (n, h.hexdigest(), time.monotonic() - t0)
except Exception as e:
    res = "error=%r bytes=%d" % (e, n)
with open(out, "w") as f:
    f.write(res + "\n")
EOF
field() { sed -n "s/.*$1=\\([^ ]*\\).*/\\1/p" <<<"$2" | head -n1; }

# ---- ping both ways, 64 MiB each way
case_begin net/tap-tcp
ip link del "$TAP" 2>/dev/null || true
if ! guest_has checks/net.sh bin/netbench; then
	:
elif ! ip tuntap add "$TAP" mode tap || ! ip addr add "$HOST_IP/24" dev "$TAP" || ! ip link set "$TAP" up; then
	case_error "cannot create TAP $TAP (root and the tun module needed)"
else
	python3 "$tmp/xfer.py" serve "$HOST_IP" "$TX_PORT" 200 "$tmp/host-recv" &
	pids+=("$!")
	# ft_run, but in the background: the host does its half while the guest runs.
	base="$IT_LOGDIR/${CASE_NAME//\//_}"
	FT_OUT="$base.console" FT_ERR="$base.stderr"
	args=(run --kernel "$GUEST_KERNEL" --initrd "$GUEST_INITRD" --mem 256M --cpus 2 --net "tap=$TAP,mac=$MAC"
		--cmdline "$(guest_cmdline "ftvmm.test=net ftvmm.net_ip=$GUEST_IP/24 ftvmm.net_peer=$HOST_IP ftvmm.net_mac=$MAC ftvmm.net_bytes=$BYTES ftvmm.net_rxport=$RX_PORT ftvmm.net_txport=$TX_PORT")")
	start=$(date +%s.%N)
	timeout -k 5 "$ITEST_BOOT_TIMEOUT" "$FTVMM" "${args[@]}" </dev/null >"$FT_OUT" 2>"$FT_ERR" &
	ftpid=$!
	pids+=("$ftpid")
	# The guest prints "NETBENCH listening" once it has pinged us and waits for our connection.
	ready=0
	for _ in $(seq $((ITEST_BOOT_TIMEOUT * 2))); do
		if grep -aq 'NETBENCH listening' "$FT_OUT" 2>/dev/null; then ready=1; break; fi
		kill -0 "$ftpid" 2>/dev/null || break
		sleep 0.5
	done
	if [[ $ready == 1 ]]; then
		pout=$(busybox ping -c 3 -w 20 "$GUEST_IP" 2>&1 || true)
		hping=$(sed -n 's/.* \([0-9]*\) packets received.*/\1/p' <<<"$pout")
		[[ "${hping:-0}" -gt 0 ]] || case_error "host: no ping reply from the guest $GUEST_IP: $(tail -n2 <<<"$pout" | tr '\n' ' ')"
		python3 "$tmp/xfer.py" send "$GUEST_IP" "$RX_PORT" "$BYTES" "$tmp/host-send" || true
	else
		case_error "the guest never got to listening for the host->guest transfer"
	fi
	FT_RC=0
	wait "$ftpid" || FT_RC=$?
	FT_WALL=$(awk -v s="$start" -v e="$(date +%s.%N)" 'BEGIN { printf "%.1f", e - s }')
	printf '%s\n' "ftvmm ${args[*]}" "exit $FT_RC after ${FT_WALL}s" >"$base.cmd"
	for _ in $(seq 50); do kill -0 "${pids[0]}" 2>/dev/null || break; sleep 0.1; done

	expect_exit 0
	expect_console '^FTVMM-GUEST-INIT uptime=' "the guest init never started"
	expect_result net "mac=$MAC ping=[1-3]/3"
	expect_console 'FTVMM-GUEST-DONE' "the guest init did not finish"
	# host -> guest: what we sent == what the guest got
	hs=$(cat "$tmp/host-send" 2>/dev/null || echo "error=no result")
	grx=$(grep -a '^FTVMM-NET rx ' "$FT_OUT" | tr -d '\r' | tail -n1 || true)
	if [[ $ready == 1 ]]; then
		if [[ -z "$(field sha256 "$hs")" ]]; then
			case_error "host->guest: the host's sender failed: $hs"
		elif [[ "$(field sha256 "$grx")" != "$(field sha256 "$hs")" || "$(field bytes "$grx")" != "$BYTES" ]]; then
			case_error "host->guest: host sent $(field bytes "$hs") bytes sha256 $(field sha256 "$hs"), guest got $(field bytes "$grx") bytes sha256 $(field sha256 "$grx")"
		fi
	fi
	# guest -> host: what the guest sent == what we got
	hr=$(cat "$tmp/host-recv" 2>/dev/null || echo "error=no result (the host's server did not finish)")
	gtx=$(grep -a '^FTVMM-NET tx ' "$FT_OUT" | tr -d '\r' | tail -n1 || true)
	if [[ -z "$(field sha256 "$hr")" ]]; then
		case_error "guest->host: the host's server got no complete transfer: $hr"
	elif [[ "$(field sha256 "$gtx")" != "$(field sha256 "$hr")" || "$(field bytes "$hr")" != "$BYTES" ]]; then
		case_error "guest->host: guest sent $(field bytes "$gtx") bytes sha256 $(field sha256 "$gtx"), host got $(field bytes "$hr") bytes sha256 $(field sha256 "$hr")"
	fi
	echo "  net/tap-tcp: host ping ${hping:-0}/3; host->guest $(field bytes "$hs") B in $(field secs "$hs")s (host clock);" \
		"guest->host $(field bytes "$hr") B in $(field secs "$hr")s (host clock)"
fi
case_end
ip link del "$TAP" 2>/dev/null || true

# ---- bad --net inputs: one stderr line naming the problem, non-zero exit, no guest.
bad() {
	local name="$1" re="$2"
	shift 2
	case_begin "net/$name"
	ft_run 60 run --kernel "$GUEST_KERNEL" --initrd "$GUEST_INITRD" --mem 128M --cmdline "$(guest_cmdline)" "$@"
	expect_exit nonzero
	expect_stderr_one_line "$re"
	expect_no_console 'FTVMM-GUEST-INIT' "a guest booted"
	case_end
}
bad tap-name-too-long 'tap.*abcdefghijklmnop.*(15|long)' --net tap=abcdefghijklmnop
bad bad-mac           'mac.*zz:11:22:33:44:55'            --net tap=ftvmmt1,mac=zz:11:22:33:44:55
bad multicast-mac     'mac.*01:00:5e:00:00:01'            --net tap=ftvmmt1,mac=01:00:5e:00:00:01

it_end

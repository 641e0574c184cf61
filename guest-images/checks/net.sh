# guest-images/checks/net.sh - check `net`: virtio-net on a host TAP: ping, then one TCP transfer each way (sourced by init).
#
# Kernel command line (defaults in brackets):
#   ftvmm.net_ip=ADDR/LEN [192.0.2.2/24]   eth0's address      ftvmm.net_peer=ADDR [192.0.2.1]  the host's end
#   ftvmm.net_mac=MAC                       optional: eth0 must have this MAC
#   ftvmm.net_bytes=N [64M]                 bytes per direction
#   ftvmm.net_rxport=P [5001]               host->guest: the guest listens here (after "NETBENCH listening" the
#                                           host pings the guest, then connects and sends N bytes)
#   ftvmm.net_txport=P [5002]               guest->host: the host listens here; the guest sends N bytes
#   ftvmm.net_nohash                        benchmark mode: netbench -n (no SHA-256, only the transport timed)
#   ftvmm.net_rrport=P                      optional, after both transfers: request/response against the host's
#                                           `netbench echo P` for ftvmm.net_rrsecs [5] seconds (one byte each way)
# The guest cannot know what the host sent: it prints what it got and the host compares.
#   FTVMM-NET link mac=MAC
#   FTVMM-NET ping sent=N received=M
#   FTVMM-NET rx bytes=N sha256=HEX secs=S MBps=M      (host -> guest, as the guest received it)
#   FTVMM-NET tx bytes=N sha256=HEX secs=S MBps=M      (guest -> host, as the guest sent it)
#   FTVMM-NET rr trans=N secs=S tps=T p50_us=A p99_us=B   (only with ftvmm.net_rrport)
#   FTVMM-NET stats rx_packets=N ... rx_length_errors=N ...   (eth0's counters after both transfers)
# Result: FTVMM-RESULT net PASS|FAIL <detail>: PASS means the link came up, the host answered pings, both
# transfers ran to completion with N bytes each and eth0 counted no rx/tx errors (rx_length_errors,
# rx_frame_errors: malformed packets from the device); equality of the checksums is the host's test.

net_run() {
	ip=$(arg ftvmm.net_ip) || ip=192.0.2.2/24
	peer=$(arg ftvmm.net_peer) || peer=192.0.2.1
	bytes=$(arg ftvmm.net_bytes) || bytes=64M
	rxport=$(arg ftvmm.net_rxport) || rxport=5001
	txport=$(arg ftvmm.net_txport) || txport=5002
	nb=""
	has ftvmm.net_nohash && nb=-n
	if [ ! -d /sys/class/net/eth0 ]; then
		result net FAIL "no eth0 (interfaces: $(ls /sys/class/net | tr '\n' ' '))"
		return
	fi
	mac=$(cat /sys/class/net/eth0/address)
	echo "FTVMM-NET link mac=$mac"
	if want=$(arg ftvmm.net_mac) && [ "$mac" != "$(echo "$want" | tr 'A-F' 'a-f')" ]; then
		result net FAIL "eth0 has MAC $mac, expected $want"
		return
	fi
	if ! eth0_up "$ip"; then
		result net FAIL "cannot configure eth0 with $ip"
		return
	fi
	pout=$(ping -c 3 -w 20 "$peer" 2>&1)
	echo "$pout" | sed 's/^/  /'
	prx=$(echo "$pout" | sed -n 's/.* \([0-9]*\) packets received.*/\1/p')
	echo "FTVMM-NET ping sent=3 received=${prx:-0} operstate=$(cat /sys/class/net/eth0/operstate)"
	if [ "${prx:-0}" = 0 ]; then
		result net FAIL "no ping reply from $peer (operstate $(cat /sys/class/net/eth0/operstate))"
		return
	fi

	# host -> guest: the host waits for the listening line, pings us, then sends.
	# (through tee: the listening line must reach the console now, not when the transfer is over)
	{
		netbench recv "$rxport" -w 120 $nb 2>&1
		echo "rc=$?"
	} | tee /tmp/netrx.out
	rout=$(grep -v '^rc=' /tmp/netrx.out)
	rrc=$(sed -n 's/^rc=//p' /tmp/netrx.out)
	rline=$(echo "$rout" | grep '^NETBENCH recv ' | sed 's/^NETBENCH recv //')
	echo "FTVMM-NET rx $rline"
	# guest -> host
	tout=$(netbench send "$peer" "$txport" "$bytes" 7 -w 30 $nb 2>&1)
	trc=$?
	echo "$tout" | sed 's/^/  /'
	tline=$(echo "$tout" | grep '^NETBENCH sent ' | sed 's/^NETBENCH sent //')
	echo "FTVMM-NET tx $tline"
	rrc2=0
	if rrport=$(arg ftvmm.net_rrport); then
		rrsecs=$(arg ftvmm.net_rrsecs) || rrsecs=5
		rrout=$(netbench rr "$peer" "$rrport" "$rrsecs" -w 30 2>&1)
		rrc2=$?
		echo "FTVMM-NET rr $(echo "$rrout" | grep '^NETBENCH rr ' | sed 's/^NETBENCH rr //')"
	fi

	st=/sys/class/net/eth0/statistics
	stats=""
	for c in rx_packets tx_packets rx_errors rx_dropped rx_length_errors rx_frame_errors tx_errors tx_dropped; do
		stats="$stats $c=$(cat $st/$c 2>/dev/null)"
	done
	echo "FTVMM-NET stats$stats"

	want=$(netbench_bytes "$bytes")
	rgot=$(echo "$rline" | sed -n 's/.*bytes=\([0-9]*\).*/\1/p')
	tgot=$(echo "$tline" | sed -n 's/.*bytes=\([0-9]*\).*/\1/p')
	# A length/frame error is a malformed packet from the device (e.g. a merged packet's buffers published
	# before num_buffers of them were used); TCP recovers, so only the counters show it.
	errs=$(echo "$stats" | tr ' ' '\n' | grep -E '^(rx_errors|rx_length_errors|rx_frame_errors|tx_errors)=' | grep -v '=0$' | tr '\n' ' ')
	if [ $rrc != 0 ] || [ "$rgot" != "$want" ]; then
		result net FAIL "host->guest transfer: got ${rgot:-nothing} of $want bytes: $(echo "$rout" | tail -n1)"
	elif [ $trc != 0 ] || [ "$tgot" != "$want" ]; then
		result net FAIL "guest->host transfer failed: $(echo "$tout" | tail -n1)"
	elif [ $rrc2 != 0 ]; then
		result net FAIL "request/response failed: $(echo "$rrout" | tail -n1)"
	elif [ -n "$errs" ]; then
		result net FAIL "eth0 error counters are not zero after the transfers: ${errs% }"
	else
		rmb=$(echo "$rline" | sed -n 's/.*MBps=\([0-9.]*\).*/\1/p')
		tmb=$(echo "$tline" | sed -n 's/.*MBps=\([0-9.]*\).*/\1/p')
		result net PASS "mac=$mac ping=$prx/3 rx=${rgot}B@${rmb}MB/s tx=${tgot}B@${tmb}MB/s"
	fi
}

netbench_bytes() { # 64M -> 67108864
	case "$1" in
	*[kK]) echo $((${1%?} * 1024)) ;;
	*[mM]) echo $((${1%?} * 1048576)) ;;
	*[gG]) echo $((${1%?} * 1073741824)) ;;
	*) echo "$1" ;;
	esac
}

net_run

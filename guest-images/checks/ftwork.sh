# guest-images/checks/ftwork.sh - check `ftwork`: optional eth0 address and background device load, then
# /bin/ftwork until it exits (sourced by init; used by tests/integration/t_snapshot.sh and tests/bench/snapshot.sh).
#
# Kernel command line:
#   ftvmm.ip=ADDR/LEN          optional: give eth0 this address, bring it up, wait for the link
#   ftvmm.ftwork_pre=A,B,...   optional: run ftwork once with these options first (commas for spaces), e.g.
#                              --pages,200000,--count,1,--interval-ms,0 to leave 800 MB of guest RAM non-zero
#                              (freed pages keep their contents) before the real workload starts
#   ftvmm.ftwork=A,B,...       ftwork's options, commas for spaces (see the top of guest-images/tools/ftwork.c)
#   ftvmm.busy=ITEM,...        optional background load, started right after ftwork, running until the VM ends:
#                                disk:DEV       loop: "BUSY <n>" into DEV's first 512 bytes, 1 MiB of zeros
#                                               written and read back after it, all O_DIRECT (dd)
#                                net:IP:PORT    busybox nc to IP:PORT sending zeros, discarding what it receives
#                              each prints "FTVMM-BUSY <item> started" and, should it ever end, "FTVMM-BUSY <item> ended"
# Output: ftwork's own lines, then FTVMM-RESULT ftwork PASS|FAIL rc=<ftwork's exit status> (PASS: it ran to
# --count with every tick verified; without --count ftwork runs until the VM is stopped).

ftwork_busy() {
	for item in $(echo "$1" | tr ',' ' '); do
		case "$item" in
		disk:*)
			dev=${item#disk:}
			(
				echo "FTVMM-BUSY $item started"
				n=0
				while :; do
					n=$((n + 1))
					echo "BUSY $n" | dd of="$dev" bs=512 count=1 conv=sync oflag=direct 2>/dev/null || break
					dd if=/dev/zero of="$dev" bs=64k count=16 seek=1 oflag=direct 2>/dev/null || break
					dd if="$dev" of=/dev/null bs=64k count=16 skip=1 iflag=direct 2>/dev/null || break
				done
				echo "FTVMM-BUSY $item ended"
			) &
			;;
		net:*)
			hp=${item#net:}
			(
				echo "FTVMM-BUSY $item started"
				nc "${hp%:*}" "${hp##*:}" </dev/zero >/dev/null 2>&1
				echo "FTVMM-BUSY $item ended rc=$?"
			) &
			;;
		*) echo "FTVMM-BUSY unknown item $item" ;;
		esac
	done
}

ftwork_run() {
	fwip=$(arg ftvmm.ip) || fwip=""
	fwargs=$(arg ftvmm.ftwork) || fwargs=""
	if [ -n "$fwip" ]; then
		if [ ! -d /sys/class/net/eth0 ] || ! eth0_up "$fwip"; then
			result ftwork FAIL "cannot configure eth0 with $fwip (interfaces: $(ls /sys/class/net | tr '\n' ' '))"
			return
		fi
	fi
	if [ ! -x /bin/ftwork ]; then
		result ftwork FAIL "no /bin/ftwork in this initramfs (rebuild guest-images)"
		return
	fi
	if fwpre=$(arg ftvmm.ftwork_pre); then
		# shellcheck disable=SC2046
		/bin/ftwork $(echo "$fwpre" | tr ',' ' ') | tail -n 1
	fi
	# ftwork first (it connects and starts ticking before the load competes for the CPUs), then the load
	# shellcheck disable=SC2046
	/bin/ftwork $(echo "$fwargs" | tr ',' ' ') &
	fwpid=$!
	if fwbusy=$(arg ftvmm.busy); then
		ftwork_busy "$fwbusy"
	fi
	wait "$fwpid"
	rc=$?
	if [ "$rc" = 0 ]; then
		result ftwork PASS "rc=0"
	else
		result ftwork FAIL "rc=$rc"
	fi
}

ftwork_run

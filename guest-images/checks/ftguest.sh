# guest-images/checks/ftguest.sh - check `ftguest`: the fault-tolerance tests' guest side (sourced by init):
# optionally bring eth0 up, then run /bin/ftwork with the given options until it exits.
#
# Kernel command line:
#   ftvmm.ftnet=ADDR/LEN       optional: give eth0 this address and wait for the link (e.g. 198.51.100.2/24)
#   ftvmm.ftargs=A,B,C...      ftwork's options, commas for spaces (e.g. --pages,2000,--disk,/dev/vda,--count,100)
#   ftvmm.ftpre=N              optional: sleep N seconds before starting ftwork
# Output: ftwork's own lines (FTWORK ...), then FTVMM-RESULT ftguest PASS|FAIL rc=<ftwork's exit status>.
# PASS means ftwork exited 0 (it ran to --count with every tick verified); BAD lines come from ftwork itself.

ftguest_run() {
	ftnet=$(arg ftvmm.ftnet) || ftnet=""
	ftargs=$(arg ftvmm.ftargs) || ftargs=""
	ftpre=$(arg ftvmm.ftpre) || ftpre=0
	if [ -n "$ftnet" ]; then
		if [ ! -d /sys/class/net/eth0 ]; then
			result ftguest FAIL "no eth0 (interfaces: $(ls /sys/class/net | tr '\n' ' '))"
			return
		fi
		if ! eth0_up "$ftnet"; then
			result ftguest FAIL "cannot configure eth0 with $ftnet"
			return
		fi
		echo "FTVMM-FTGUEST net $ftnet mac=$(cat /sys/class/net/eth0/address) operstate=$(cat /sys/class/net/eth0/operstate)"
	fi
	if [ ! -x /bin/ftwork ]; then
		result ftguest FAIL "no /bin/ftwork in this initramfs (rebuild guest-images)"
		return
	fi
	[ "$ftpre" -gt 0 ] 2>/dev/null && sleep "$ftpre"
	echo "FTVMM-FTGUEST start ftwork $(echo "$ftargs" | tr ',' ' ')"
	# shellcheck disable=SC2046
	/bin/ftwork $(echo "$ftargs" | tr ',' ' ')
	rc=$?
	if [ "$rc" = 0 ]; then
		result ftguest PASS "rc=0"
	else
		result ftguest FAIL "rc=$rc"
	fi
}

ftguest_run

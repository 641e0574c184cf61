# guest-images/checks/blkperf.sh - check `blkperf`: virtio-blk micro-benchmark for tests/bench/devices.sh (sourced by init).
#
# Kernel command line (defaults in brackets):
#   ftvmm.blkperf_dev=vda [vda]     the disk (its first SIZE bytes are overwritten)
#   ftvmm.blkperf_size=256M [256M]  bytes for the sequential passes, and the span of the random reads
#   ftvmm.blkperf_secs=10 [10]      seconds of random reads
#   ftvmm.blkperf_qd1               also random 4 KiB reads at queue depth 1 (one thread), after the QD32 pass
# Runs blkbench seqwrite (1 MiB O_DIRECT writes, then fsync), seqread (1 MiB O_DIRECT reads) and randread
# (32 threads of 4 KiB O_DIRECT preads = queue depth 32); prints their "BLKBENCH ..." lines, timed by the
# guest's CLOCK_MONOTONIC. Result: FTVMM-RESULT blkperf PASS|FAIL <the three numbers>.

blkperf_run() {
	dev=$(arg ftvmm.blkperf_dev) || dev=vda
	size=$(arg ftvmm.blkperf_size) || size=256M
	secs=$(arg ftvmm.blkperf_secs) || secs=10
	if [ ! -b "/dev/$dev" ]; then
		result blkperf FAIL "no block device /dev/$dev"
		return
	fi
	sw=$(blkbench seqwrite "/dev/$dev" "$size" -b 1M 2>&1) &&
		sr=$(blkbench seqread "/dev/$dev" "$size" -b 1M 2>&1) &&
		rr=$(blkbench randread "/dev/$dev" "$size" -b 4K -q 32 -t "$secs" 2>&1)
	rc=$?
	r1=""
	if [ $rc = 0 ] && has ftvmm.blkperf_qd1; then
		r1=$(blkbench randread "/dev/$dev" "$size" -b 4K -q 1 -t "$secs" 2>&1)
		rc=$?
	fi
	printf '%s\n' "$sw" "$sr" "$rr" "$r1" | grep -v '^$'
	if [ $rc != 0 ]; then
		result blkperf FAIL "$(printf '%s\n' "$sw" "$sr" "$rr" "$r1" | grep -v '^$' | tail -n1)"
		return
	fi
	result blkperf PASS "seqwrite=$(echo "$sw" | sed -n 's/.*MBps=//p')MB/s seqread=$(echo "$sr" | sed -n 's/.*MBps=//p')MB/s randread4k_qd32=$(echo "$rr" | sed -n 's/.*IOPS=\([0-9]*\).*/\1/p')IOPS"
}

blkperf_run

# guest-images/checks/blkro.sh - check `blkro`: a disk given to ftvmm with ,ro reads correctly and refuses every write (sourced by init).
#
# Kernel command line:
#   ftvmm.blkro_dev=vdb        the read-only disk (default vdb)
#   ftvmm.blkro_sha=HEX        SHA-256 of the whole image as the host has it (optional but then the read is checked)
# Steps: /sys/block/DEV/ro must be 1; the whole disk read back (dd) must have HEX; `blkbench rowrite` tries a
# buffered write + fsync, an O_DIRECT write, BLKROSET 0 then an O_DIRECT write again, and `dd conv=fsync`
# writes too: each must fail and sector 0 must stay the same; the whole disk must still have HEX afterwards.
# One line per attempt: "BLKBENCH rowrite <how>: <what happened>". Result: FTVMM-RESULT blkro PASS|FAIL <detail>.

blkro_run() {
	dev=$(arg ftvmm.blkro_dev) || dev=vdb
	want=$(arg ftvmm.blkro_sha) || want=""
	path=/dev/$dev
	if [ ! -b "$path" ]; then
		result blkro FAIL "no block device $path ($(ls /sys/block 2>/dev/null | tr '\n' ' '))"
		return
	fi
	ro=$(cat /sys/block/$dev/ro)
	sha0=$(dd if="$path" bs=64K 2>/dev/null | sha256sum | cut -d' ' -f1)
	echo "FTVMM-BLK ro $dev sectors=$(cat /sys/block/$dev/size) ro=$ro sha=$sha0"
	if [ "$ro" != 1 ]; then
		result blkro FAIL "$dev: /sys/block/$dev/ro=$ro, expected 1 (VIRTIO_BLK_F_RO not seen?)"
		return
	fi
	if [ -n "$want" ] && [ "$sha0" != "$want" ]; then
		result blkro FAIL "$dev reads back sha $sha0, the host's image has $want"
		return
	fi
	out=$(blkbench rowrite "$path" 2>&1)
	rc=$?
	echo "$out" | sed 's/^/  /'
	ddout=$(dd if=/dev/zero of="$path" bs=4096 count=1 seek=1 conv=fsync 2>&1)
	ddrc=$?
	echo "  dd write: rc=$ddrc $(echo "$ddout" | head -n1)"
	blockdev --flushbufs "$path" 2>/dev/null
	echo 3 >/proc/sys/vm/drop_caches
	sha1=$(dd if="$path" bs=64K 2>/dev/null | sha256sum | cut -d' ' -f1)
	how=$(echo "$out" | grep 'rowrite ' | grep -v 'rowrite result' | sed 's/.*rowrite //' | tr '\n' ';')
	if [ $rc != 0 ]; then
		result blkro FAIL "a write to read-only $dev was accepted or changed it: $(echo "$out" | tail -n1)"
	elif [ $ddrc = 0 ]; then
		result blkro FAIL "dd conv=fsync onto read-only $dev succeeded"
	elif [ "$sha1" != "$sha0" ]; then
		result blkro FAIL "read-only $dev changed: sha $sha0 before, $sha1 after the write attempts"
	else
		result blkro PASS "ro=1 sha=${sha0%${sha0#????????????}}... writes refused: ${how%;}"
	fi
}

blkro_run

# guest-images/checks/blk.sh - check `blk`: writes a known pattern to a virtio-blk disk and reads it back (sourced by init).
#
# Kernel command line:
#   ftvmm.blk_dev=vda                  the disk (default vda); must be writable
#   ftvmm.blk_sectors=N                optional: the capacity the disk must report (512-byte sectors)
#   ftvmm.blk_plan=ITEM[,ITEM...]      what to write, in order; ITEM = OFF:LEN:SEED:MODE (bytes, K/M suffixes ok)
#       MODE b    buffered pwrite (64K pieces), fsync
#            d    O_DIRECT pwrite (128K pieces), fsync
#            pN   N threads at once on disjoint slices of the range, O_DIRECT 64K pieces in scattered order
#            z    write the pattern, fsync, then BLKZEROOUT the range (virtio WRITE_ZEROES): must read as zeros
# The pattern (blkbench gen OFF LEN SEED) depends on the absolute offset, so a misplaced block is caught.
# After all writes: sync, BLKFLSBUF and drop_caches (so reads reach the device), then each item is read
# back with O_DIRECT and compared with the pattern (zeros for z). One line per item:
#   FTVMM-BLK item off=OFF len=LEN mode=MODE sha256=HEX ok|BAD
# (HEX: SHA-256 of the bytes read back, so of the pattern when ok; the host checks the image file against it).
# Result: FTVMM-RESULT blk PASS|FAIL <detail>.

blk_bytes() { # 4M -> 4194304
	case "$1" in
	*[kK]) echo $((${1%?} * 1024)) ;;
	*[mM]) echo $((${1%?} * 1048576)) ;;
	*) echo "$1" ;;
	esac
}

blk_item() { # OFF:LEN:SEED:MODE -> $off $len $seed $mode (no `set --`: init's own arguments stay intact)
	off=$(blk_bytes "${1%%:*}")
	rest=${1#*:}
	len=$(blk_bytes "${rest%%:*}")
	rest=${rest#*:}
	seed=${rest%%:*}
	mode=${rest#*:}
}

blk_run() {
	dev=$(arg ftvmm.blk_dev) || dev=vda
	plan=$(arg ftvmm.blk_plan) || plan=""
	path=/dev/$dev
	if [ ! -b "$path" ]; then
		result blk FAIL "no block device $path ($(ls /sys/block 2>/dev/null | tr '\n' ' '))"
		return
	fi
	if [ -z "$plan" ]; then
		result blk FAIL "no ftvmm.blk_plan= on the command line"
		return
	fi
	sectors=$(cat /sys/block/$dev/size)
	if want=$(arg ftvmm.blk_sectors) && [ "$sectors" != "$want" ]; then
		result blk FAIL "$dev has $sectors sectors, expected $want"
		return
	fi
	if [ "$(cat /sys/block/$dev/ro)" != 0 ]; then
		result blk FAIL "$dev is read-only in the guest (/sys/block/$dev/ro=$(cat /sys/block/$dev/ro))"
		return
	fi
	echo "FTVMM-BLK disk $dev sectors=$sectors serial=$(cat /sys/block/$dev/serial 2>/dev/null)"

	items=$(echo "$plan" | tr ',' ' ')
	t0=$(cut -d' ' -f1 /proc/uptime)
	for it in $items; do
		blk_item "$it"
		case "$mode" in
		b) out=$(blkbench write "$path" "$off" "$len" "$seed" -b 64K 2>&1) ;;
		d) out=$(blkbench write "$path" "$off" "$len" "$seed" -d -b 128K 2>&1) ;;
		p*) out=$(blkbench par "$path" "$off" "$len" "${mode#p}" "$seed" -d -b 64K 2>&1) ;;
		z) out=$(blkbench write "$path" "$off" "$len" "$seed" -d -b 128K 2>&1 &&
			blkbench zero "$path" "$off" "$len" -c 2>&1) ;;
		*) out="bad mode '$mode' in $it"; false ;;
		esac
		rc=$?
		echo "$out" | sed 's/^/  /'
		if [ $rc != 0 ]; then
			result blk FAIL "writing $it failed: $(echo "$out" | tail -n1)"
			return
		fi
	done
	sync
	blockdev --flushbufs "$path"
	echo 3 >/proc/sys/vm/drop_caches
	t1=$(cut -d' ' -f1 /proc/uptime)

	nitems=0 nbytes=0 bad=""
	for it in $items; do
		blk_item "$it"
		if [ "$mode" = z ]; then
			out=$(blkbench zero "$path" "$off" "$len" -d 2>&1)
		else
			out=$(blkbench verify "$path" "$off" "$len" "$seed" -d 2>&1)
		fi
		rc=$?
		echo "$out" | grep -v '^BLKBENCH verify ' | sed 's/^/  /'
		got=$(echo "$out" | sed -n 's/^BLKBENCH verify .* sha256=\([0-9a-f]*\) .*/\1/p')
		echo "FTVMM-BLK item off=$off len=$len mode=$mode sha256=${got:-none} $([ $rc = 0 ] && echo ok || echo BAD)"
		if [ $rc != 0 ]; then
			bad="$bad; $it: $(echo "$out" | grep -m1 mismatch || echo "$out" | tail -n1)"
		fi
		nitems=$((nitems + 1))
		nbytes=$((nbytes + len))
	done
	t2=$(cut -d' ' -f1 /proc/uptime)
	if [ -n "$bad" ]; then
		result blk FAIL "${bad#; }"
	else
		result blk PASS "items=$nitems bytes=$nbytes write+flush=$(awk -v a="$t0" -v b="$t1" 'BEGIN{printf "%.1f", b-a}')s verify=$(awk -v a="$t1" -v b="$t2" 'BEGIN{printf "%.1f", b-a}')s"
	fi
}

blk_run

#!/usr/bin/env bash
# tests/integration/t_blk.sh - virtio-blk: a guest writes known patterns to a raw image (buffered, O_DIRECT, 8 concurrent writers, WRITE_ZEROES, last MiB), a read-only disk refuses writes, and the host finds exactly those bytes in the image file; bad --disk inputs fail before boot.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
it_begin blk

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

tmp=$(mktemp -d "$ITEST_TMP/ftvmm-blk.XXXXXX")
trap 'rm -rf "$tmp"' EXIT

MiB=$((1 << 20))
IMG_SIZE=$((64 * MiB))
RO_SIZE=$((4 * MiB))
# What the guest writes to /dev/vda (guest-images/checks/blk.sh): OFF:LEN:SEED:MODE, bytes.
# b buffered, d O_DIRECT, p8 eight threads at once on disjoint slices, z pattern then BLKZEROOUT (reads as zeros).
# Odd places on purpose: a 4K-aligned range that is not MiB-aligned, a 512-aligned one (1001 sectors) that
# the guest page cache must read-modify-write, a zeroed range between two written ones, the disk's last MiB.
PLAN=(
	"0:$((4 * MiB)):11:b"
	"$((10 * MiB + 4096)):$((3 * MiB + 12288)):12:d"
	"$((20 * MiB + 1536)):512512:13:b"
	"$((26 * MiB)):$((MiB / 2)):14:d"
	"$((26 * MiB + MiB / 2)):$MiB:15:z"
	"$((27 * MiB + MiB / 2)):$((MiB / 2)):16:d"
	"$((32 * MiB)):$((16 * MiB)):50:p8"
	"$((63 * MiB)):$MiB:17:d"
)

# The host's half, in one python3 process (every process start is slow in the TCG test bed): each planned
# range of the image file has the SHA-256 of what the guest read back from its disk (and compared with the
# pattern); zeroed ranges and every byte outside the plan are zero. Prints "ERR <why>" lines, then "SUMMARY ...".
cat >"$tmp/check.py" <<'EOF'
import hashlib, re, sys
img, size, plan, console = sys.argv[1], int(sys.argv[2]), sys.argv[3].split(","), sys.argv[4]
items = {}
for line in open(console, "rb").read().decode("latin-1").splitlines():
    m = re.match(r"FTVMM-BLK item off=(\d+) len=(\d+) mode=(\w+) sha256=(\S+) (\w+)", line.strip())
    if m:
        items[(int(m[1]), int(m[2]), m[3])] = (m[4], m[5])
errs, covered, gaps = [], [], 0
with open(img, "rb") as f:
    def read(off, n):
        f.seek(off)
        return f.read(n)
    for it in plan:
        off, n, _, mode = it.split(":")
        off, n = int(off), int(n)
        covered.append((off, off + n))
        if (off, n, mode) not in items:
            errs.append("the guest reported nothing for plan item " + it)
            continue
        gsha, gok = items[(off, n, mode)]
        data = read(off, n)
        hsha = hashlib.sha256(data).hexdigest()
        if hsha != gsha:
            errs.append("image [%d,+%d) mode %s: sha256 %s, the guest read back %s (%s)" % (off, n, mode, hsha, gsha, gok))
        if mode == "z" and data.count(0) != n:
            errs.append("image [%d,+%d): zeroed by the guest (BLKZEROOUT) but %d bytes are not zero" % (off, n, n - data.count(0)))
    pos = 0
    for a, b in sorted(covered) + [(size, size)]:
        if a > pos:
            gaps += 1
            d = read(pos, a - pos)
            if d.count(0) != a - pos:
                i = next(i for i, c in enumerate(d) if c)
                errs.append("image [%d,%d) lies outside every written range but byte %d is 0x%02x" % (pos, a, pos + i, d[i]))
        pos = max(pos, b)
for e in errs:
    print("ERR " + e)
print("SUMMARY %d ranges, %d untouched gaps" % (len(plan), gaps))
EOF

# ---- the data path
case_begin blk/pattern
if guest_has checks/blk.sh checks/blkro.sh bin/blkbench; then
	img="$tmp/rw.img" ro="$tmp/ro.img"
	truncate -s "$IMG_SIZE" "$img"
	head -c "$RO_SIZE" /dev/urandom >"$ro"
	ro_sha=$(sha256sum <"$ro" | cut -d' ' -f1)
	plan=$(IFS=,; echo "${PLAN[*]}")
	ft_boot 256M 2 "ftvmm.test=blk,blkro ftvmm.blk_dev=vda ftvmm.blk_sectors=$((IMG_SIZE / 512)) ftvmm.blk_plan=$plan ftvmm.blkro_dev=vdb ftvmm.blkro_sha=$ro_sha" \
		--disk "$img" --disk "$ro,ro"
	expect_exit 0
	expect_console '^FTVMM-GUEST-INIT uptime=' "the guest init never started"
	expect_result blk
	expect_result blkro
	expect_console 'FTVMM-GUEST-DONE' "the guest init did not finish"
	[[ $(stat -c %s "$img") == "$IMG_SIZE" ]] || case_error "rw.img changed size: $(stat -c %s "$img") bytes, was $IMG_SIZE"
	[[ $(stat -c %s "$ro") == "$RO_SIZE" ]] || case_error "ro.img changed size: $(stat -c %s "$ro") bytes, was $RO_SIZE"
	now_sha=$(sha256sum <"$ro" | cut -d' ' -f1)
	[[ "$now_sha" == "$ro_sha" ]] || case_error "ro.img changed: sha256 $now_sha, was $ro_sha"
	t_host=$(date +%s)
	check=$(python3 "$tmp/check.py" "$img" "$IMG_SIZE" "$plan" "$FT_OUT" 2>&1) || case_error "host check crashed: $(tail -n1 <<<"$check")"
	while read -r line; do
		if [[ "$line" == "ERR "* ]]; then case_error "${line#ERR }"; fi
	done <<<"$check"
	echo "  blk/pattern: host checked $(sed -n 's/^SUMMARY //p' <<<"$check") in the image file ($(($(date +%s) - t_host))s);" \
		"guest: $(grep -aoE 'FTVMM-RESULT blk(ro)? [A-Z]+ .*' "$FT_OUT" | tr -d '\r' | tr '\n' '|')"
fi
case_end

# ---- bad --disk inputs: one stderr line naming the problem, non-zero exit, no guest.
printf '%1000s' x >"$tmp/odd.img"
: >"$tmp/empty.img"
bad() {
	local name="$1" re="$2"
	shift 2
	case_begin "blk/$name"
	ft_run 60 run --kernel "$GUEST_KERNEL" --initrd "$GUEST_INITRD" --mem 128M --cmdline "$(guest_cmdline)" "$@"
	expect_exit nonzero
	expect_stderr_one_line "$re"
	expect_no_console 'FTVMM-GUEST-INIT' "a guest booted"
	case_end
}
bad missing-image    '/nonexistent.*(no such file|not found)' --disk /nonexistent/disk.img
bad missing-image-ro '/nonexistent.*(no such file|not found)' --disk /nonexistent/disk.img,ro
bad directory        'directory'                              --disk "$tmp"
bad size-not-512     'odd\.img.*(512|sector)'                 --disk "$tmp/odd.img"
bad empty-image      'empty\.img.*(zero|empty|512)'           --disk "$tmp/empty.img"

it_end

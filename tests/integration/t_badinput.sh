#!/usr/bin/env bash
# tests/integration/t_badinput.sh - every bad `ftvmm run` input exits non-zero with exactly one "ftvmm: ..." stderr line naming the problem.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
it_begin badinput

tmp=$(mktemp -d "$ITEST_TMP/ftvmm-badinput.XXXXXX")
trap 'rm -rf "$tmp"' EXIT

# Inputs: a random 64K file, a bzImage whose boot protocol version (offset 0x206) says 2.05,
# and a 160M initrd (sparse) that cannot fit in 128M of guest RAM (64M is below what the kernel itself needs).
head -c 65536 /dev/urandom >"$tmp/random.bin"
cp "$GUEST_KERNEL" "$tmp/old-protocol.bzImage"
printf '\x05\x02' | dd of="$tmp/old-protocol.bzImage" bs=1 seek=$((0x206)) conv=notrunc status=none
truncate -s 160M "$tmp/huge.initrd"

K=(--kernel "$GUEST_KERNEL")
# bad NAME REGEX ARG...: `ftvmm ARG...` must fail cleanly with one stderr line matching REGEX.
bad() {
	local name="$1" re="$2"
	shift 2
	case_begin "badinput/$name"
	ft_run 60 "$@"
	expect_exit nonzero
	expect_stderr_one_line "$re"
	expect_no_console 'FTVMM-GUEST-INIT' "a guest booted"
	case_end
}

bad no-kernel         'kernel'             run --mem 128M
bad missing-kernel    'kernel|/nonexistent' run --kernel /nonexistent/bzImage --mem 128M
bad dir-kernel        'kernel|directory'   run --kernel "$tmp" --mem 128M
if [[ $(id -u) != 0 ]]; then
	cp "$GUEST_KERNEL" "$tmp/unreadable.bzImage" && chmod 000 "$tmp/unreadable.bzImage"
	bad unreadable-kernel 'kernel|permission' run --kernel "$tmp/unreadable.bzImage" --mem 128M
fi
bad text-kernel       'bzimage|kernel'     run --kernel /etc/passwd --mem 128M
bad random-kernel     'bzimage|kernel'     run --kernel "$tmp/random.bin" --mem 128M
bad old-protocol      'protocol'           run --kernel "$tmp/old-protocol.bzImage" --mem 128M
bad missing-initrd    'initrd'             run "${K[@]}" --initrd /nonexistent/initrd --mem 128M
bad huge-initrd       'initrd'             run "${K[@]}" --initrd "$tmp/huge.initrd" --mem 128M
bad mem-too-small     'mem'                run "${K[@]}" --mem 1M
bad mem-too-large     'mem'                run "${K[@]}" --mem 1T
bad mem-garbage       'mem|size'           run "${K[@]}" --mem lots
bad cpus-zero         'cpu'                run "${K[@]}" --mem 128M --cpus 0
bad cpus-huge         'cpu'                run "${K[@]}" --mem 128M --cpus 100000
bad cpus-garbage      'cpu'                run "${K[@]}" --mem 128M --cpus two
bad unknown-option    'option|--bogus'     run "${K[@]}" --mem 128M --bogus
bad missing-value     'mem|argument|value|option' run "${K[@]}" --mem
bad unknown-command   'command|frobnicate' frobnicate

# /dev/kvm missing: ftvmm honours FTVMM_KVM_DEVICE so this can be tested on a machine that has KVM.
case_begin badinput/no-kvm-device
FT_ENV=(FTVMM_KVM_DEVICE=/nonexistent/kvm)
ft_run 60 run "${K[@]}" --initrd "$GUEST_INITRD" --mem 128M
expect_exit nonzero
expect_stderr_one_line 'kvm|/nonexistent'
expect_no_console 'FTVMM-GUEST-INIT' "a guest booted"
case_end

it_end

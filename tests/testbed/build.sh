#!/usr/bin/env bash
# tests/testbed/build.sh - builds the nested-KVM test-bed HOST (kernel + initramfs) into tests/testbed/out/.
#
# The test-bed host is the Debian kernel under qemu TCG (-cpu max emulates AMD SVM, so kvm-amd loads).
# Its initramfs holds only static busybox, tests/testbed/init, a static kvmcheck and the modules it needs
# (9p over virtio for the shared host root, kvm, tun/bridge/veth, virtio-blk + ext4 for the scratch disk).
# Everything else (bash, ftvmm's shared libraries, coreutils) comes from the outer machine's root,
# shared read-only over 9p; see tests/testbed/run.sh.
# Env: TESTBED_KSERIES=<series> picks the test bed's kernel (see run.sh); KVER=<version> overrides it;
#      OUT=<dir> (default tests/testbed/out/<series>).
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/../.." && pwd -P)
# shellcheck source=guest-images/lib.sh
source "$repo/guest-images/lib.sh"

TESTBED_KSERIES=${TESTBED_KSERIES:-6.1}
OUT=${OUT:-$here/out/$TESTBED_KSERIES}
TESTBED_MODULES=(
	virtio_pci virtio_blk 9pnet_virtio 9p          # transport for the shared roots and the scratch disk
	crc32c_generic ext4 loop                       # scratch file system
	irqbypass ccp kvm kvm_amd kvm_intel            # nested KVM (kvm_intel only loads on VMX hosts)
	tun bridge veth                                # TAP devices and bridges for network tests
	sch_netem                                      # link delay/loss/rate and cuts (tests/lab/lab.sh)
)

gi_pick_kernel "$TESTBED_KSERIES"
mkdir -p "$OUT"
stage=$(mktemp -d "${TMPDIR:-/tmp}/ftvmm-testbed-initramfs.XXXXXX")
trap 'rm -rf "$stage"' EXIT

gi_install_busybox "$stage"
gi_install_modules "$stage" "${TESTBED_MODULES[@]}"
install -m 755 "$here/init" "$stage/init"
echo "$KVER" >"$stage/etc/kernel-version"
mkdir -p "$stage/newroot" "$stage/ctl"
if ! gcc -O2 -static -o "$stage/bin/kvmcheck" "$repo/tests/integration/kvmcheck.c" 2>"$stage/kvmcheck.err"; then
	echo "testbed: warning: could not build a static kvmcheck (libc6-dev?):" >&2
	cat "$stage/kvmcheck.err" >&2
fi
rm -f "$stage/kvmcheck.err"
gcc -O2 -static -o "$stage/bin/kvmpin" "$repo/tests/testbed/kvmpin.c" ||
	echo "testbed: warning: could not build a static kvmpin: VM lifecycles will patch the kernel's code" >&2

gi_make_cpio "$stage" "$OUT/initramfs.cpio.gz"
gi_install_file "$KIMAGE" "$OUT/bzImage"
echo "$KVER" >"$OUT/kernel-version.$$" && mv -f "$OUT/kernel-version.$$" "$OUT/kernel-version"
echo "testbed: kernel $KVER, initramfs $OUT/initramfs.cpio.gz ($(stat -c %s "$OUT/initramfs.cpio.gz") bytes)"

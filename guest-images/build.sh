#!/usr/bin/env bash
# guest-images/build.sh - builds the test guest into guest-images/out/: bzImage (host's Debian kernel) + initramfs.cpio.gz.
#
# The initramfs holds static busybox, the virtio and pvpanic guest modules (decompressed, with their
# modules.dep dependencies) and guest-images/init, the test init that reads ftvmm.test=... from the kernel command line.
# Env: GUEST_KSERIES=6.1 (the kernel series: Debian 12's linux-image-amd64, also when the test bed's 6.12 is
#      installed beside it); KVER=<version or series> overrides it; OUT=<dir> (default out/).
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=guest-images/lib.sh
source "$here/lib.sh"

OUT=${OUT:-$here/out}
GUEST_MODULES=(virtio_pci virtio_pci_modern_dev virtio_pci_legacy_dev virtio_ring virtio
	virtio_blk virtio_net net_failover failover
	pvpanic_pci)   # pvpanic PCI device (1b36:0011): how the guest tells ftvmm it panicked

# GUEST_EXTRA_MODULES: more modules for an image of one's own (tests/bench/peers-boot.sh adds virtio_mmio for
# QEMU's microvm); the default image is built without
read -r -a extra_modules <<<"${GUEST_EXTRA_MODULES:-}"
GUEST_MODULES+=(${extra_modules[@]+"${extra_modules[@]}"})

gi_pick_kernel "${GUEST_KSERIES:-6.1}"
mkdir -p "$OUT"
stage=$(mktemp -d "${TMPDIR:-/tmp}/ftvmm-guest-initramfs.XXXXXX")
trap 'rm -rf "$stage"' EXIT

gi_install_busybox "$stage"
gi_install_modules "$stage" "${GUEST_MODULES[@]}"
install -m 755 "$here/init" "$stage/init"
# extra checks (sourced by init for ftvmm.test=<name>) and static guest tools (workloads, benchmarks)
mkdir -p "$stage/checks" "$stage/bin"
for f in "$here"/checks/*.sh; do [[ -e "$f" ]] && install -m 644 "$f" "$stage/checks/"; done
for f in "$here"/tools/*.c; do
	[[ -e "$f" ]] || continue
	gcc -static -O2 -pthread -Wall -o "$stage/bin/$(basename "$f" .c)" "$f"
done
echo "$KVER" >"$stage/etc/kernel-version"

gi_make_cpio "$stage" "$OUT/initramfs.cpio.gz"
gi_install_file "$KIMAGE" "$OUT/bzImage"
echo "$KVER" >"$OUT/kernel-version.$$" && mv -f "$OUT/kernel-version.$$" "$OUT/kernel-version"
echo "guest-images: kernel $KVER -> $OUT/bzImage ($(stat -c %s "$OUT/bzImage") bytes)," \
	"initramfs $OUT/initramfs.cpio.gz ($(stat -c %s "$OUT/initramfs.cpio.gz") bytes," \
	"modules: $(tr '\n' ' ' <"$stage/etc/modules.load"))"

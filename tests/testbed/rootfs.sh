#!/usr/bin/env bash
# tests/testbed/rootfs.sh - builds the test bed's root file system: an ext4 image of the outer machine's packages the suite runs.
#
# Why not the outer root over 9p (what the test bed used until 2026-12-07): 9p's request path rings the device's
# doorbell while it holds its channel lock with interrupts off, QEMU answers at once, and the emulated host has been
# seen taking that interrupt with IF clear: its handler spins on the lock the interrupted code holds, and the test
# bed deadlocks (README, the test bed). Every program start and library load was such a request. virtio-blk rings
# its doorbell after dropping its queue lock, with interrupts on; and a root on a block device is read once into the
# test bed's page cache, not asked again at every open and exec.
# The image holds the files of PACKAGES below and of the installed packages they depend on (rootfs-files.py), all
# of /etc, the test bed kernel's network modules (modprobe for what the initramfs did not load), and empty mount
# points. The test bed boots it with snapshot=on: writes inside go to a throw-away overlay, the image never changes.
# Usage: OUT=dir KVER=version [ROOTFS_PEERS=1] tests/testbed/rootfs.sh   (writes $OUT/root.img; build.sh's caller,
# run.sh, calls it). ROOTFS_PEERS=1 writes $OUT/root-peers.img instead: the same plus Debian's QEMU, the peer the
# benchmarks (tests/bench/peers-*.sh) run beside ftvmm inside the test bed. The suite's image stays without it.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
: "${OUT:?}" "${KVER:?}"

# What runs inside the test bed: the shells and tools of tests/integration, tests/lab, tests/bench (those run
# there) and tests/testbed/init, python3 for the test helpers, etcd for the arbiter, psktool for TLS keys, and the
# libraries ftvmm links (ldd build/ftvmm). A tool missing here fails inside the test bed with "command not found":
# add its package.
PACKAGES=(bash dash coreutils util-linux mount bsdutils bsdextrautils procps findutils grep sed mawk gawk tar gzip
	xz-utils zstd lz4 cpio bc time file diffutils hostname debianutils libc-bin ncurses-bin kmod iproute2 e2fsprogs
	python3 python3.11 busybox-static etcd-server etcd-client curl gnutls-bin openssl
	liburing2 libfdt1 libgnutls30 libcurl3-gnutls libjson-c5 liblz4-1 libzstd1)

img=$OUT/root.img
if [[ "${ROOTFS_PEERS:-0}" == 1 ]]; then
	# qemu-system-x86's Depends bring its firmware (seabios, ipxe-qemu: the PCI NICs' option ROMs) and libraries
	PACKAGES+=(qemu-system-x86 qemu-system-common qemu-system-data)
	img=$OUT/root-peers.img
fi
work=$(mktemp -d "$OUT/root.work.XXXXXX")
stage=$work/root
mkdir "$stage"
trap 'rm -rf "$work" "$img.new"' EXIT

# the outer root's usrmerge links first (/bin -> usr/bin, ...), so that a package's /bin/x lands in usr/bin
for d in bin sbin lib lib32 lib64 libx32; do
	if [[ -L /$d ]]; then
		ln -s "$(readlink "/$d")" "$stage/$d"
		mkdir -p "$stage/$(readlink -f "/$d" | sed 's|^/||')"
	fi
done
python3 "$here/rootfs-files.py" "${PACKAGES[@]}" >"$work/list"
{
	cat "$work/list"
	find /etc -mindepth 1 -maxdepth 1
	# update-alternatives' links (awk -> /etc/alternatives/awk -> mawk): no package owns them
	find /usr/bin /usr/sbin -maxdepth 1 -type l -lname '/etc/alternatives/*'
	for d in kernel/net kernel/drivers/net kernel/lib kernel/crypto; do
		[[ -d /lib/modules/$KVER/$d ]] && echo "/lib/modules/$KVER/$d"
	done
	find "/lib/modules/$KVER" -maxdepth 1 -name 'modules.*'
} >"$work/all"
# directories dpkg lists come without their contents (--no-recursion); /etc and the module trees with theirs
grep -E "^/etc/|^/lib/modules/" "$work/all" >"$work/rec" || true
grep -vE "^/etc/|^/lib/modules/" "$work/all" >"$work/flat" || true
{
	tar -C / --no-recursion -cf - -T <(sed 's|^/||' "$work/flat")
	# stderr: /etc holds sockets and files only root reads on some machines; what tar cannot read it names
} 2>"$work/err" | tar -C "$stage" --keep-directory-symlink -xpf -
tar -C / -cf - -T <(sed 's|^/||' "$work/rec") 2>>"$work/err" | tar -C "$stage" --keep-directory-symlink -xpf -
if grep -v 'socket ignored' "$work/err" | grep -q .; then
	echo "rootfs: warning: tar could not copy some files:" >&2
	grep -v 'socket ignored' "$work/err" | head -n5 >&2
fi
mkdir -p "$stage"/{proc,sys,dev,tmp,run,root,home,mnt,var/tmp,var/lib,var/log,"lib/modules/$KVER"}
chmod 1777 "$stage/tmp" "$stage/var/tmp"

# size: the files plus a quarter and 64 MiB for the overlay's writes (logs, netns, a test's own dirs)
kb=$(du -sk "$stage" | cut -f1)
mb=$((kb * 5 / 4 / 1024 + 64))
rm -f "$img.new"
mke2fs -q -t ext4 -L ftvmm-tbroot -m 0 -E root_owner=0:0 -d "$stage" "$img.new" "${mb}M" >/dev/null
mv -f "$img.new" "$img"
echo "testbed: root image $img: $(find "$stage" -xdev | wc -l) files, ${mb} MiB"

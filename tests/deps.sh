# tests/deps.sh - install_deps: the Debian packages ftvmm, its guest images, tests and test bed need (sourced).
# libcurl4-gnutls-dev, libjson-c-dev: the arbiter's etcd client (ft/arbiter.c; the GnuTLS flavour of libcurl, as
# ftvmm links GnuTLS already); etcd-server, etcd-client: the real etcd test_arbiter starts. liblz4-dev, libzstd-dev:
# the epoch stream's page compression (ft/compress.c, `run --compress`).
PACKAGES=(gcc libc6-dev make liburing-dev libfdt-dev libgnutls28-dev gnutls-bin qemu-system-x86 busybox-static linux-image-amd64
	cpio gzip xz-utils clang libclang-rt-14-dev valgrind iproute2 python3 bc libcurl4-gnutls-dev libjson-c-dev
	etcd-server etcd-client liblz4-dev libzstd-dev)

install_deps() {
	local missing=() p
	for p in "${PACKAGES[@]}"; do
		dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
	done
	if [[ ${#missing[@]} == 0 ]]; then
		echo "all packages present"
		return 0
	fi
	echo "missing packages: ${missing[*]}"
	if [[ $(id -u) != 0 ]]; then
		echo "run as root (or install them: apt-get install ${missing[*]})" >&2
		return 1
	fi
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -q
	apt-get install -y -q --no-install-recommends "${missing[@]}"
}

# An alternative test-bed emulator (TESTBED_QEMU=10, tests/testbed/run.sh): QEMU 7.2 (bookworm) emulates nested SVM
# with faults that hang the test bed now and then (lost timer interrupts, a wrong GS base after a nested exit:
# tests/testbed/results/, README); bookworm-backports carries QEMU 10.0 with two and a half years of TCG x86/SVM
# fixes. It is unpacked into tests/testbed/out/qemu, not installed: the system's qemu-system-x86 stays what it is
# (the test bed's default and the peer the benchmarks run). Its shared libraries are bookworm's (checked with ldd).
# Why it is not the default: tests/testbed/results/qemu10-20261207.md.
TESTBED_QEMU_DIR=${TESTBED_QEMU_DIR:-$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)/testbed/out/qemu}
install_testbed_qemu() {
	local d=$TESTBED_QEMU_DIR bin=$TESTBED_QEMU_DIR/usr/bin/qemu-system-x86_64 tmp p
	if [[ -x "$bin" ]] && "$bin" --version >/dev/null 2>&1; then
		echo "test-bed emulator: $("$bin" --version | head -n1) ($d)"
		return 0
	fi
	if ! apt-cache policy qemu-system-x86 2>/dev/null | grep -q bookworm-backports; then
		[[ $(id -u) == 0 ]] || { echo "test-bed emulator: bookworm-backports is not an apt source (run as root to add it)" >&2; return 1; }
		printf 'Types: deb\nURIs: http://deb.debian.org/debian\nSuites: bookworm-backports\nComponents: main\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n' \
			>/etc/apt/sources.list.d/ftvmm-backports.sources
		apt-get update -q
	fi
	tmp=$(mktemp -d "${TMPDIR:-/tmp}/ftvmm-qemu.XXXXXX")
	chmod 755 "$tmp" # apt's download user writes there
	if ! (cd "$tmp" && apt-get download -q -t bookworm-backports qemu-system-x86 qemu-system-common qemu-system-data); then
		rm -rf "$tmp"
		echo "test-bed emulator: could not download QEMU from bookworm-backports" >&2
		return 1
	fi
	rm -rf "$d.new" && mkdir -p "$d.new"
	for p in "$tmp"/*.deb; do dpkg -x "$p" "$d.new"; done
	rm -rf "$tmp"
	if ldd "$d.new/usr/bin/qemu-system-x86_64" | grep -q 'not found'; then
		echo "test-bed emulator: QEMU from bookworm-backports misses libraries:" >&2
		ldd "$d.new/usr/bin/qemu-system-x86_64" | grep 'not found' >&2
		rm -rf "$d.new"
		return 1
	fi
	rm -rf "$d" && mv "$d.new" "$d"
	echo "test-bed emulator: $("$bin" --version | head -n1) unpacked into $d"
}

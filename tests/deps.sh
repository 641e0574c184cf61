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

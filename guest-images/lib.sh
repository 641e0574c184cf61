# guest-images/lib.sh - shared initramfs helpers (kernel pick, module closure, busybox, cpio); sourced, not run.
# Used by guest-images/build.sh (guest initramfs) and tests/testbed/build.sh (test-bed host initramfs).

# gi_pick_kernel [SERIES]: set KVER, KIMAGE and KMODDIR. Honours $KVER (a full version, or a series such as
# 6.12); else the newest /boot/vmlinuz-* of SERIES (any when empty) that has /lib/modules/<ver>/modules.dep
# (so the modules we copy match the kernel we boot). Series "6.1" matches 6.1.0-57-amd64, not 6.12.x.
gi_pick_kernel() {
	local v cand="" series="${1:-}"
	if [[ -n "${KVER:-}" && -f "/boot/vmlinuz-$KVER" ]]; then
		cand="$KVER"
	else
		[[ -n "${KVER:-}" ]] && series="$KVER"
		for v in $(ls /boot/vmlinuz-* 2>/dev/null | sed 's|^/boot/vmlinuz-||' | sort -V); do
			[[ -z "$series" || "$v" == "$series".* || "$v" == "$series"-* ]] || continue
			[[ -f "/lib/modules/$v/modules.dep" ]] && cand="$v"
		done
	fi
	if [[ -z "$cand" || ! -f "/boot/vmlinuz-$cand" || ! -f "/lib/modules/$cand/modules.dep" ]]; then
		echo "error: no usable kernel${series:+ of series $series} (/boot/vmlinuz-<ver> with" \
			"/lib/modules/<ver>/modules.dep); install linux-image-amd64 (6.1) or linux-image-6.12-amd64 (6.12)" >&2
		return 1
	fi
	KVER="$cand"
	KIMAGE="/boot/vmlinuz-$KVER"
	KMODDIR="/lib/modules/$KVER"
}

# _gi_mod_path NAME: path (relative to KMODDIR) of module NAME ('-' and '_' interchangeable), or fail.
_gi_mod_path() {
	local n="$1" a b
	a="${n//_/-}"
	b="${n//-/_}"
	awk -F: -v a="$a" -v b="$b" '{
		p = $1; f = p; sub(/.*\//, "", f); sub(/\.ko(\.(xz|zst|gz))?$/, "", f)
		if (f == a || f == b) { print p; found = 1; exit }
	} END { if (!found) exit 1 }' "$KMODDIR/modules.dep"
}

# gi_mod_closure NAME...: module paths (relative to KMODDIR), dependencies first, each once.
# Modules built into the kernel (modules.builtin) are skipped silently; unknown ones are an error.
gi_mod_closure() {
	local -A _seen=()
	local _order=() n p
	_gi_visit() {
		local path="$1" d
		[[ -n "${_seen[$path]:-}" ]] && return 0
		_seen[$path]=1
		for d in $(awk -F: -v p="$path" '$1 == p { print $2; exit }' "$KMODDIR/modules.dep"); do
			_gi_visit "$d"
		done
		_order+=("$path")
	}
	for n in "$@"; do
		if p=$(_gi_mod_path "$n"); then
			_gi_visit "$p"
		elif grep -qE "/(${n//_/-}|${n//-/_})\.ko$" "$KMODDIR/modules.builtin" 2>/dev/null; then
			continue
		else
			echo "error: kernel module '$n' not found for $KVER" >&2
			return 1
		fi
	done
	printf '%s\n' "${_order[@]}"
}

# gi_install_modules ROOT NAME...: copy NAME... and their dependencies, decompressed, into
# ROOT/lib/modules/<base>.ko and append their load order (one file name per line) to ROOT/etc/modules.load.
gi_install_modules() {
	local root="$1" p base
	shift
	mkdir -p "$root/lib/modules" "$root/etc"
	local list
	list=$(gi_mod_closure "$@") || return 1
	for p in $list; do
		base="${p##*/}"
		case "$base" in
		*.ko.xz) base="${base%.xz}"; xz -dc "$KMODDIR/$p" >"$root/lib/modules/$base" ;;
		*.ko.zst) base="${base%.zst}"; zstd -qdc "$KMODDIR/$p" >"$root/lib/modules/$base" ;;
		*.ko.gz) base="${base%.gz}"; gzip -dc "$KMODDIR/$p" >"$root/lib/modules/$base" ;;
		*.ko) cp "$KMODDIR/$p" "$root/lib/modules/$base" ;;
		*) echo "error: odd module file $p" >&2; return 1 ;;
		esac
		grep -qxF "$base" "$root/etc/modules.load" 2>/dev/null || echo "$base" >>"$root/etc/modules.load"
	done
}

# gi_install_busybox ROOT: static busybox at ROOT/bin/busybox plus one symlink per applet in /bin.
gi_install_busybox() {
	local root="$1" bb="" c a
	for c in /bin/busybox /usr/bin/busybox; do
		if [[ -x "$c" ]] && ! ldd "$c" >/dev/null 2>&1; then bb="$c"; break; fi
	done
	if [[ -z "$bb" ]]; then
		echo "error: no static busybox found (apt-get install busybox-static)" >&2
		return 1
	fi
	mkdir -p "$root/bin" "$root/sbin" "$root/proc" "$root/sys" "$root/dev" "$root/tmp" "$root/run" "$root/root"
	cp "$bb" "$root/bin/busybox"
	for a in $("$root/bin/busybox" --list); do
		[[ "$a" == busybox ]] && continue
		[[ -e "$root/bin/$a" ]] || ln -s busybox "$root/bin/$a"
	done
	# The kernel's built-in initramfs already has /dev/console; add ours too where mknod is allowed.
	mknod -m 600 "$root/dev/console" c 5 1 2>/dev/null || true
	mknod -m 666 "$root/dev/null" c 1 3 2>/dev/null || true
}

# gi_make_cpio ROOT OUT: newc cpio of ROOT, owned by root, gzip'd to OUT (written atomically).
gi_make_cpio() {
	local root="$1" out="$2" tmp
	tmp=$(mktemp "$out.XXXXXX")
	(cd "$root" && find . -mindepth 1 | LC_ALL=C sort | cpio --quiet -o -H newc -R 0:0) | gzip -6 >"$tmp"
	chmod 644 "$tmp"
	mv -f "$tmp" "$out"
}

# gi_install_file SRC DST: copy SRC to DST atomically (concurrent builds and readers never see half a file).
gi_install_file() {
	local tmp
	tmp=$(mktemp "$2.XXXXXX")
	cp -f "$1" "$tmp"
	chmod 644 "$tmp"
	mv -f "$tmp" "$2"
}

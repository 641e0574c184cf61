#!/usr/bin/env bash
# guest-images/demo.sh - the main job: set up a fresh Debian machine, boot a demo guest, show an FT failover.
#
# Installs what is missing (apt-get), builds ftvmm and the guest images, then runs the demo directly
# where hardware KVM works, else inside the nested test bed (qemu TCG host with kvm-amd inside):
#   1. boot Debian's kernel with 2 vCPUs, a disk and the test init's checks;
#   2. fault tolerance: a backup and a protected primary running the ftwork counter; kill -9 the
#      primary; the backup resumes the guest and the counter carries on.
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)
cd "$repo"

if [[ "${DEMO_INSIDE:-0}" != 1 ]]; then
	source tests/deps.sh
	install_deps
	make -j"$(nproc)"
	bash guest-images/build.sh
	mode=${ITEST_MODE:-auto}
	if [[ $mode == auto ]]; then
		mode=testbed
		# hardware KVM only: a paravirtual /dev/kvm (kvm_pvm) cannot run a stock kernel at usable speed
		if [[ -c /dev/kvm ]] && grep -qE '^(kvm_intel|kvm_amd) ' /proc/modules 2>/dev/null; then mode=direct; fi
	fi
	if [[ $mode == direct ]]; then
		DEMO_INSIDE=1 exec bash "$0"
	fi
	echo "demo: no hardware KVM here: running inside the nested test bed (takes a minute or two)"
	TESTBED_PASSENV="DEMO_INSIDE" DEMO_INSIDE=1 exec tests/testbed/run.sh bash "$0"
fi

F=$repo/build/ftvmm
K=(--kernel guest-images/out/bzImage --initrd guest-images/out/initramfs.cpio.gz)
tmp=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$tmp"' EXIT

echo "=== 1. boot: 2 vCPUs, 256 MiB, a 16 MiB disk"
truncate -s 16M "$tmp/disk.img"
rc=0
"$F" run "${K[@]}" --mem 256M --cpus 2 --disk "$tmp/disk.img" \
	--cmdline "quiet ftvmm.test=nproc,mem,cmdline ftvmm.expect_cpus=2 ftvmm.expect_mem_mb=256 ftvmm.marker=demo" \
	</dev/null >"$tmp/boot.out" || rc=$?
grep -a -E 'FTVMM-(GUEST-INIT|RESULT)' "$tmp/boot.out" || true
echo "ftvmm exited with $rc after the guest's reboot -f"

echo
echo "=== 2. fault tolerance: kill -9 the primary, the backup takes over"
work='i=0; while [ $i -lt 40 ]; do i=$((i+1)); echo "COUNTER $i"; sleep 0.5; done; reboot -f'
if [[ -x guest-images/tools/ftwork.c || -f guest-images/tools/ftwork.c ]]; then
	work='ftwork --pages 256 --interval-ms 500 --count 40; reboot -f'
fi
mkfifo "$tmp/in"
exec 3<>"$tmp/in"
"$F" backup --listen 127.0.0.1:7000 >"$tmp/backup.out" 2>"$tmp/backup.err" </dev/null &
bpid=$!
sleep 0.5
"$F" run "${K[@]}" --mem 256M --cpus 2 --backup 127.0.0.1:7000 --epoch 50 --control "$tmp/p.sock" \
	--cmdline "quiet ftvmm.noreboot" <"$tmp/in" >"$tmp/primary.out" 2>"$tmp/primary.err" &
ppid=$!
for _ in $(seq 240); do grep -q PROTECTED "$tmp/primary.err" 2>/dev/null && grep -q FTVMM-GUEST-DONE "$tmp/primary.out" && break; sleep 0.5; done
"$F" ctl "$tmp/p.sock" status
echo "$work" >&3
sleep 6
echo "primary's console, last lines before the kill:"
grep -a -E 'COUNTER|FTWORK' "$tmp/primary.out" | tail -3
kill -9 "$ppid"
echo "--- kill -9 primary"
wait "$bpid" || true
grep -a 'backup:' "$tmp/backup.err" || true
echo "backup's console after the takeover (first and last lines):"
grep -a -E 'COUNTER|FTWORK' "$tmp/backup.out" | head -3
echo "..."
grep -a -E 'COUNTER|FTWORK' "$tmp/backup.out" | tail -2
echo "demo done"

#!/bin/bash
# tests/fuzz/run.sh [seconds] - build the libFuzzer targets (ASan+UBSan) and run each for a bounded time.
# fuzz_virtqueue: guest memory + queue programming into the ring walker; fuzz_virtio_blk: guest memory
# as virtio-blk requests on a scratch image; fuzz_backup_stream: a byte stream as the backup's data
# link (initial-sync frames, epochs committed all or nothing) on a small mirror and two memfd disks. Exits non-zero on a build failure, crash, leak or
# sanitizer report (the input is kept under $out/artifacts). Env: B (build dir), FUZZ_OUT.
set -euo pipefail

secs=${1:-30}
root=$(cd "$(dirname "$0")/../.." && pwd)
out=${FUZZ_OUT:-$root/${B:-build}/fuzz}
cc=clang
command -v clang-14 >/dev/null && cc=clang-14
cflags=(-g -O1 -std=gnu11 -D_GNU_SOURCE -pthread -Wall -Wextra -Werror
	-fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer)

cd "$root"
mkdir -p "$out/artifacts"
$cc "${cflags[@]}" -o "$out/fuzz_virtqueue" tests/fuzz/fuzz_virtqueue.c \
	devices/virtio.c vmm/guest_mem.c vmm/util.c -lfdt
$cc "${cflags[@]}" -o "$out/fuzz_virtio_blk" tests/fuzz/fuzz_virtio_blk.c \
	devices/virtio_blk.c devices/blk_backend.c devices/virtio.c vmm/guest_mem.c vmm/util.c vmm/ioloop.c \
	-luring -lfdt
# the backup's code reaches into most of the VMM (takeover runs the guest): link all of it but main.
# The KVM MSR buffers (a kvm_msrs header followed by its entries) are a GNU extension gcc accepts.
mapfile -t all_srcs < <(ls vmm/*.c devices/*.c ft/*.c | grep -vx vmm/main.c)
$cc "${cflags[@]}" -Wno-gnu-variable-sized-type-not-at-end -o "$out/fuzz_backup_stream" \
	tests/fuzz/fuzz_backup_stream.c "${all_srcs[@]}" -luring -lfdt

for t in fuzz_virtqueue fuzz_virtio_blk fuzz_backup_stream; do
	mkdir -p "$out/corpus-$t"
	seeds=()
	[ -d "tests/fuzz/corpus-$t" ] && seeds+=("tests/fuzz/corpus-$t") # read-only seeds, if any
	echo "== $t: ${secs}s"
	# -close_fd_mask=2: the targets' own warnings are noise; libFuzzer still reports crashes.
	"$out/$t" -max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
		-close_fd_mask=2 -artifact_prefix="$out/artifacts/$t-" "$out/corpus-$t" ${seeds[@]+"${seeds[@]}"}
done

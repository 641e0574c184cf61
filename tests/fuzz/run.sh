#!/bin/bash
# tests/fuzz/run.sh [seconds] - build the virtqueue libFuzzer target (ASan+UBSan) and run it for a bounded time.
# Exits non-zero if the build fails or the fuzzer finds a crash, leak or sanitizer error.
set -euo pipefail

secs=${1:-30}
root=$(cd "$(dirname "$0")/../.." && pwd)
out=${FUZZ_OUT:-$root/${B:-build}/fuzz}
cc=clang
command -v clang-14 >/dev/null && cc=clang-14

mkdir -p "$out/corpus" "$out/artifacts"
cd "$root"
$cc -g -O1 -std=gnu11 -D_GNU_SOURCE -pthread -Wall -Wextra -Werror \
	-fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer \
	-o "$out/fuzz_virtqueue" tests/fuzz/fuzz_virtqueue.c devices/virtio.c vmm/guest_mem.c vmm/util.c -lfdt

# Seeds kept in the tree (if any) are read but never written; new inputs go to the build corpus.
seeds=()
[ -d tests/fuzz/corpus ] && seeds+=(tests/fuzz/corpus)
echo "fuzz_virtqueue: running for ${secs}s (corpus $out/corpus)"
# stderr of the target is noisy (restore warnings); libFuzzer still reports crashes.
"$out/fuzz_virtqueue" -max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
	-close_fd_mask=2 -artifact_prefix="$out/artifacts/" "$out/corpus" "${seeds[@]}"

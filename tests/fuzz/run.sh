#!/bin/bash
# tests/fuzz/run.sh [seconds] - build the libFuzzer targets (ASan+UBSan) and run them for a bounded time:
# `seconds` (default 120) is the whole run's fuzzing time, split evenly among the targets (at least 5 s
# each), so adding a target does not lengthen `make fuzz`.
#   fuzz_virtqueue: guest memory + queue programming into the ring walker;
#   fuzz_virtio_blk: guest memory as virtio-blk requests on a scratch image, and a restored in-flight list;
#   fuzz_virtio_net: a hostile guest's RX/TX rings and memory (dirty bitmap, NEEDS_RESET, frame size);
#   fuzz_virtio_pci: config space, BAR 0 and MSI-X table accesses to a virtio-pci function;
#   fuzz_backup_stream: a byte stream as the backup's data link (initial-sync frames, epochs committed
#     all or nothing: whole pages, or packed with zero pages flagged and none/lz4/zstd chunks, as its
#     first byte says the HELLO announced) on a small mirror and two memfd disks;
#   fuzz_snapshot: a crafted snapshot file into snapshot_open, ftvmm inspect and restore's readers;
#   fuzz_arbiter: bytes as etcd's answer to the arbiter (range or txn), as base64 and a "G OWNER" value.
# Exits non-zero on a build failure, crash, leak or sanitizer report (the input is kept under
# $out/artifacts). Env: B (build dir), FUZZ_OUT.
set -euo pipefail

secs=${1:-120}
root=$(cd "$(dirname "$0")/../.." && pwd)
out=${FUZZ_OUT:-$root/${B:-build}/fuzz}
cc=clang
command -v clang-14 >/dev/null && cc=clang-14
san=(-fsanitize=address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer)
cflags=(-g -O1 -std=gnu11 -D_GNU_SOURCE -pthread -Wall -Wextra -Werror "${san[@]}"
	# the KVM MSR buffers (a kvm_msrs header followed by its entries) are a GNU extension gcc accepts
	-Wno-gnu-variable-sized-type-not-at-end)
targets=(fuzz_virtqueue fuzz_virtio_blk fuzz_virtio_net fuzz_virtio_pci fuzz_backup_stream fuzz_snapshot fuzz_arbiter)

cd "$root"
mkdir -p "$out/artifacts" "$out/obj"
# The VMM once, instrumented for coverage, as an archive: each target takes the objects it needs
# (the backup's and the snapshot reader's code reach into most of it). Two compilers at a time.
mapfile -t srcs < <(ls vmm/*.c devices/*.c ft/*.c cmd/*.c | grep -vx cmd/main.c)
rm -f "$out"/obj/*.o "$out/libftvmm-fuzz.a"
objs=() pids=()
for s in "${srcs[@]}"; do
	o="$out/obj/$(echo "$s" | tr / _).o"
	objs+=("$o")
	$cc "${cflags[@]}" -fsanitize=fuzzer-no-link -c -o "$o" "$s" &
	pids+=($!)
	if [ ${#pids[@]} -ge 2 ]; then
		wait "${pids[0]}" # set -e: a failed compile ends the run
		pids=("${pids[@]:1}")
	fi
done
for p in "${pids[@]}"; do wait "$p"; done
ar rcs "$out/libftvmm-fuzz.a" "${objs[@]}"
for t in "${targets[@]}"; do
	$cc "${cflags[@]}" -fsanitize=fuzzer -o "$out/$t" "tests/fuzz/$t.c" "$out/libftvmm-fuzz.a" -luring -lfdt -lgnutls -lcurl -ljson-c -llz4 -lzstd
done

per=$((secs / ${#targets[@]}))
[ "$per" -ge 5 ] || per=5
for t in "${targets[@]}"; do
	mkdir -p "$out/corpus-$t"
	seeds=()
	[ -d "tests/fuzz/corpus-$t" ] && seeds+=("tests/fuzz/corpus-$t") # read-only seeds, if any
	echo "== $t: ${per}s"
	# -close_fd_mask=2: the targets' own warnings are noise; libFuzzer still reports crashes.
	# -max_len: room for the largest seeds (a snapshot with pages, a guest's 16 pages of rings).
	"$out/$t" -max_total_time="$per" -timeout=10 -rss_limit_mb=2048 -max_len=70000 -print_final_stats=1 \
		-close_fd_mask=2 -artifact_prefix="$out/artifacts/$t-" "$out/corpus-$t" ${seeds[@]+"${seeds[@]}"}
done

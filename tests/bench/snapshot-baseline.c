/* snapshot-baseline.c - reference costs for tests/bench/snapshot.sh, measured on the same machine in the same run:
 * a plain memcpy and a plain write+fsync of the bytes a snapshot stores, and the snapshot writer's own building
 * blocks (page_is_zero over the whole RAM size, snap_hash over the stored bytes) from libftvmm.
 *
 * usage: snapshot-baseline DIR STORED_BYTES RAM_BYTES
 *   DIR           where the snapshot files go (the write+fsync test writes and deletes DIR/baseline.XXXXXX)
 *   STORED_BYTES  bytes of non-zero pages (what the snapshot stored)
 *   RAM_BYTES     the guest's RAM size (the zero scan reads STORED_BYTES of non-zero pages, which exit early,
 *                 and RAM_BYTES - STORED_BYTES of never-touched anonymous memory, which is read in full)
 * Memory: two 64 MiB buffers, cycled over the byte count (the test bed's 3 GiB also hold the guest and its
 * snapshot files). Prints one line: memcpy_ms= write_ms= fsync_ms= hash_ms= zeroscan_ms= (best of 2, except the
 * zero scan: its one pass faults the untouched memory in, as the snapshot's does).
 */
#include "../../ft/snapshot.h"

#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

static double now_ms(void)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return (double)t.tv_sec * 1e3 + (double)t.tv_nsec / 1e6;
}

static void *map(uint64_t len)
{
	void *p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	if (p == MAP_FAILED) {
		fprintf(stderr, "snapshot-baseline: cannot map %llu bytes: %s\n", (unsigned long long)len, strerror(errno));
		exit(1);
	}
	return p;
}

#define CHUNK (64ull << 20) /* the byte count is covered in chunks of this size: the test bed's RAM is small */

int main(int argc, char **argv)
{
	if (argc != 4) {
		fprintf(stderr, "usage: snapshot-baseline DIR STORED_BYTES RAM_BYTES\n");
		return 2;
	}
	uint64_t bytes = strtoull(argv[2], NULL, 0) & ~(PAGE_SIZE - 1), ram = strtoull(argv[3], NULL, 0);
	if (!bytes || ram < bytes) {
		fprintf(stderr, "snapshot-baseline: need 0 < STORED_BYTES <= RAM_BYTES\n");
		return 2;
	}
	uint64_t chunk = bytes < CHUNK ? bytes : CHUNK;
	uint64_t *src = map(chunk), *dst = map(chunk);
	uint64_t x = 0x9e3779b97f4a7c15ull;
	for (uint64_t i = 0; i < chunk / 8; i++) {
		x ^= x << 13, x ^= x >> 7, x ^= x << 17;
		src[i] = x | 1;
	}
	memset(dst, 1, chunk); /* fault it in: the copy measures copying, not page faults */

	double best_copy = 1e18, t;
	for (int r = 0; r < 2; r++) {
		t = now_ms();
		for (uint64_t off = 0; off < bytes; off += chunk)
			memcpy(dst, src, bytes - off < chunk ? bytes - off : chunk);
		t = now_ms() - t;
		if (t < best_copy)
			best_copy = t;
	}
	double best_hash = 1e18;
	uint64_t h1 = 0;
	for (int r = 0; r < 2; r++) {
		struct snap_hash h;
		t = now_ms();
		snap_hash_init(&h, 1);
		for (uint64_t off = 0; off < bytes; off += chunk)
			snap_hash_update(&h, src, bytes - off < chunk ? bytes - off : chunk);
		h1 = snap_hash_final(&h);
		t = now_ms() - t;
		if (t < best_hash)
			best_hash = t;
	}

	/* the zero scan as snapshot_write does it: every page of RAM; non-zero ones exit at their first word,
	 * never-touched ones are read in full (and faulted in as the zero page, as in a guest's RAM) */
	uint64_t zbytes = ram - bytes;
	uint8_t *zero = zbytes ? map(zbytes) : NULL;
	uint64_t nz = 0;
	t = now_ms();
	for (uint64_t off = 0; off < bytes; off += PAGE_SIZE)
		nz += !page_is_zero((uint8_t *)src + off % chunk);
	for (uint64_t off = 0; off < zbytes; off += PAGE_SIZE)
		nz += !page_is_zero(zero + off);
	double zscan = now_ms() - t;

	/* a plain write of the same byte count to a new file in the same directory, then fsync: best of 2 */
	double wr = 1e18, fs = 0;
	for (int r = 0; r < 2; r++) {
		char path[4096];
		snprintf(path, sizeof(path), "%s/baseline.XXXXXX", argv[1]);
		int fd = mkstemp(path);
		if (fd < 0) {
			fprintf(stderr, "snapshot-baseline: %s: %s\n", path, strerror(errno));
			return 1;
		}
		double t0 = now_ms();
		for (uint64_t off = 0; off < bytes;) {
			size_t n = (size_t)(bytes - off < chunk ? bytes - off : chunk);
			ssize_t w = write(fd, src, n);
			if (w <= 0) {
				fprintf(stderr, "snapshot-baseline: write: %s\n", strerror(errno));
				unlink(path);
				return 1;
			}
			off += (uint64_t)w;
		}
		double t1 = now_ms();
		fsync(fd);
		double t2 = now_ms();
		close(fd);
		unlink(path);
		if (t2 - t0 < wr + fs) {
			wr = t1 - t0;
			fs = t2 - t1;
		}
	}
	printf("memcpy_ms=%.1f write_ms=%.1f fsync_ms=%.1f hash_ms=%.1f zeroscan_ms=%.1f nonzero_pages=%llu hash=%016llx\n",
	       best_copy, wr, fs, best_hash, zscan, (unsigned long long)nz, (unsigned long long)h1);
	return 0;
}

/* fuzz_snapshot.c - libFuzzer target: a crafted snapshot file into snapshot_open, ftvmm inspect and restore's readers. */
#include <errno.h>
#include <fcntl.h>
#include <libfdt.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "../../cmd/inspect.h"
#include "../../ft/snapshot.h"
#include "../../vmm/fdt_prop.h"
#include "../../ft/state.h"
#include "../../devices/machine.h"
#include "../../vmm/guest_mem.h"
#include "../../vmm/vm.h"

/*
 * Input: one flags byte, then the file. Flags bit 0: the harness writes the right checksum into the
 * header first (when its own reading of the header can compute one), so mutations get past the
 * checksum into the state and bitmap parsers; a fuzzer could never forge it otherwise.
 *
 * The file is a memfd opened by path (/proc/self/fd/N), as `ftvmm restore` / `ftvmm inspect` open
 * theirs. The harness reads the header independently (overflow-checked) and predicts the verdict:
 * accepted exactly when magic, major version, every size, the bitmap's count, the checksum and the
 * state's fdt header are right. Checked beyond the sanitizers:
 *  - the reader's verdict is the prediction: a file that fails the checksum or a shape check is
 *    refused, and a refusal leaves nothing behind (no state, no bitmap, fd closed);
 *  - an accepted file: the state blob and bitmap are exactly the file's bytes (so nothing read past
 *    the buffers, ASan checks the reads); cmd_inspect accepts it too (and walks all of it), refuses
 *    what snapshot_open refused; state_read_machine stays within its limits; loading memory
 *    (small guests) gives exactly the stored pages where the bitmap says and zeros elsewhere.
 */

#define LOAD_MAX (64 * PAGE_SIZE) /* guests up to this size are also loaded into memory */

static int fd = -1;
static char path[64];

struct expect {
	bool ok;
	uint64_t npages, bm_bytes;
};

/* The reader's rules, written again: sizes from the header against the file, all sums checked. */
static bool shape_ok(const uint8_t *f, size_t len, struct snap_header *h, uint64_t *bm_bytes)
{
	if (len < sizeof(*h))
		return false;
	memcpy(h, f, sizeof(*h));
	if (memcmp(h->magic, SNAP_MAGIC, 8) || h->major != SNAP_MAJOR)
		return false;
	if (h->mem_size == 0 || h->mem_size % PAGE_SIZE || h->mem_size > VM_MAX_MEM)
		return false;
	uint64_t npages = h->mem_size / PAGE_SIZE, end, pages;
	*bm_bytes = (npages + 63) / 64 * 8;
	if (h->state_len < 64 || h->state_len > (64u << 20) || h->state_off != sizeof(*h))
		return false;
	if (h->bitmap_off < sizeof(*h) + h->state_len || __builtin_add_overflow(h->bitmap_off, *bm_bytes, &end) ||
	    h->pages_off < end || h->npages_stored > npages)
		return false;
	return !__builtin_mul_overflow(h->npages_stored, PAGE_SIZE, &pages) &&
	       !__builtin_add_overflow(h->pages_off, pages, &end) && end == len;
}

static uint64_t checksum(const uint8_t *f, const struct snap_header *h, uint64_t bm_bytes)
{
	struct snap_header z = *h;
	z.checksum = 0;
	struct snap_hash s;
	snap_hash_init(&s, 0x46545653ull);
	snap_hash_update(&s, &z, sizeof(z));
	snap_hash_init(&s, snap_hash_final(&s));
	snap_hash_update(&s, f + h->state_off, h->state_len & ~(uint64_t)31);
	snap_hash_update(&s, f + h->state_off + (h->state_len & ~(uint64_t)31), h->state_len % 32);
	snap_hash_update(&s, f + h->bitmap_off, bm_bytes);
	snap_hash_update(&s, f + h->pages_off, h->npages_stored * PAGE_SIZE);
	return snap_hash_final(&s);
}

static bool bit(const uint8_t *bm, uint64_t pg)
{
	return bm[pg / 8] >> (pg % 8) & 1;
}

/* The verdict the reader must reach on file f (whose checksum field may be fixed up here). */
static struct expect predict(uint8_t *f, size_t len, bool fix)
{
	struct expect e = { 0 };
	struct snap_header h;
	if (!shape_ok(f, len, &h, &e.bm_bytes))
		return e;
	e.npages = h.mem_size / PAGE_SIZE;
	uint64_t set = 0;
	for (uint64_t i = 0; i < e.bm_bytes; i++)
		set += (uint64_t)__builtin_popcount(f[h.bitmap_off + i]);
	if (set != h.npages_stored)
		return e;
	uint64_t sum = checksum(f, &h, e.bm_bytes);
	if (fix) {
		h.checksum = sum;
		memcpy(f + offsetof(struct snap_header, checksum), &sum, sizeof(sum));
	}
	if (h.checksum != sum)
		return e;
	const uint8_t *st = f + h.state_off;
	/* the state tree: fdtp_whole (its own unit test covers what it refuses) */
	e.ok = fdtp_whole(st, h.state_len);
	return e;
}

static void write_file(const uint8_t *f, size_t len)
{
	if (ftruncate(fd, 0) || pwrite(fd, f, len, 0) != (ssize_t)len)
		abort();
}

static void check_load(struct snapshot *s, const uint8_t *f)
{
	static uint8_t *ram;
	struct guest_mem m;
	char err[256];
	if (!ram && !(ram = aligned_alloc(PAGE_SIZE, LOAD_MAX)))
		abort();
	memset(ram, 0, LOAD_MAX);
	if (gmem_init_buffer(&m, ram, s->hdr.mem_size) || snapshot_load_memory(s, &m, err, sizeof(err)))
		abort();
	const uint8_t *bm = f + s->hdr.bitmap_off, *pg = f + s->hdr.pages_off;
	for (uint64_t i = 0; i < m.npages; i++) {
		const uint8_t *p = ram + i * PAGE_SIZE;
		if (bit(bm, i)) {
			if (memcmp(p, pg, PAGE_SIZE))
				abort();
			pg += PAGE_SIZE;
		} else if (p[0] || memcmp(p, p + 1, PAGE_SIZE - 1)) {
			abort(); /* a page the file does not store stays zero */
		}
	}
	gmem_free(&m); /* the buffer is ours: only the dirty bitmap goes */
	/* the wrong size is refused, nothing read */
	if (gmem_init_buffer(&m, ram, s->hdr.mem_size == PAGE_SIZE ? 2 * PAGE_SIZE : PAGE_SIZE) ||
	    snapshot_load_memory(s, &m, err, sizeof(err)) != -EINVAL)
		abort();
	gmem_free(&m);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (fd < 0) {
		fd = memfd_create("fuzz-snapshot", MFD_CLOEXEC);
		if (fd < 0)
			abort();
		snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
		/* inspect prints everything it reads: keep it, not the fuzzer's report, out of sight */
		int null = open("/dev/null", O_WRONLY | O_CLOEXEC);
		if (null < 0 || dup2(null, 1) < 0)
			abort();
		close(null);
	}
	if (size < 1)
		return 0;
	size_t len = size - 1;
	uint8_t *f = malloc(len ? len : 1);
	if (!f)
		abort();
	memcpy(f, data + 1, len);
	struct expect e = predict(f, len, data[0] & 1);
	write_file(f, len);

	struct snapshot s;
	char err[512];
	int r = snapshot_open(path, &s, err, sizeof(err));
	if ((r == 0) != e.ok)
		abort();
	if (r) {
		if (s.fdt || s.bitmap || s.fd != -1 || r != -EINVAL || !err[0])
			abort();
	} else {
		const struct snap_header *h = &s.hdr;
		if (memcmp(h, f, sizeof(*h)) || s.file_size != len ||
		    memcmp(s.fdt, f + h->state_off, h->state_len) || memcmp(s.bitmap, f + h->bitmap_off, e.bm_bytes))
			abort();
		struct machine cfg;
		if (state_read_machine(s.fdt, &cfg, err, sizeof(err)) == 0) {
			if (cfg.ndisks > MACHINE_MAX_DISKS || cfg.nnics > MACHINE_MAX_NICS || cfg.cpus == 0)
				abort();
			/* restore opens these paths: each a C string inside the state blob */
			const char *end = (const char *)s.fdt + h->state_len;
			for (unsigned i = 0; i < cfg.ndisks; i++) {
				const char *p = cfg.disks[i].path;
				if (p < (const char *)s.fdt || p >= end || !memchr(p, 0, (size_t)(end - p)))
					abort();
			}
		}
		if (h->mem_size <= LOAD_MAX)
			check_load(&s, f);
		snapshot_close(&s);
	}
	char *argv[] = { "inspect", path, NULL };
	if ((cmd_inspect(2, argv) == 0) != e.ok)
		abort();
	fflush(stdout);
	free(f);
	return 0;
}

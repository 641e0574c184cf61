/* gen_backup_seeds.c - writes the seed corpus of fuzz_backup_stream: real data-link streams (frames with
 * their checksums, as ft/primary.c sends them) for the fuzzer's mirror of 16 pages and two disks of
 * 16 and 32 KiB. Rebuild the committed seeds after a protocol change:
 *   make build/libftvmm.a && cc -std=gnu11 -D_GNU_SOURCE -o /tmp/gen tests/fuzz/gen_backup_seeds.c \
 *     build/libftvmm.a -luring -lfdt -pthread && /tmp/gen tests/fuzz/corpus-fuzz_backup_stream
 */
#include <libfdt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../ft/proto.h"
#include "../../vmm/guest_mem.h"
#include "../../vmm/util.h"

/* the stream being built */
static uint8_t *out;
static size_t out_len;

static void emit(const void *p, size_t n)
{
	out = realloc(out, out_len + n);
	if (!out)
		abort();
	memcpy(out + out_len, p, n);
	out_len += n;
}

static void frame(uint16_t type, uint64_t seq, const void *p, size_t len)
{
	struct ft_frame f = { .magic = FT_MAGIC, .version = FT_VERSION, .type = type, .len = len, .seq = seq,
			      .checksum = ft_payload_hash(type, seq, p, len) };
	emit(&f, sizeof(f));
	if (len)
		emit(p, len);
}

/* a payload under construction */
struct buf {
	uint8_t *p;
	size_t len;
};

static void put(struct buf *b, const void *src, size_t n)
{
	b->p = realloc(b->p, b->len + n + 1);
	if (!b->p)
		abort();
	if (n) /* src may be NULL for nothing */
		memcpy(b->p + b->len, src, n);
	b->len += n;
}

static void put_pages(struct buf *b, unsigned n, uint8_t tag)
{
	uint8_t page[PAGE_SIZE];
	for (unsigned i = 0; i < n; i++) {
		memset(page, tag + i, sizeof(page));
		put(b, page, sizeof(page));
	}
}

static void put_rec(struct buf *b, uint32_t disk, uint32_t kind, uint64_t off, uint64_t len, uint8_t fill)
{
	struct ft_disk_rec r = { .disk = disk, .kind = kind, .off = off, .len = len };
	put(b, &r, sizeof(r));
	for (uint64_t i = 0; kind == FT_DISK_WRITE && i < len; i++)
		put(b, &fill, 1);
}

static void mem_frame(const uint64_t *pfns, uint64_t n, uint64_t claimed)
{
	struct buf b = { 0 };
	put(&b, &claimed, 8);
	put(&b, pfns, n * 8);
	put_pages(&b, (unsigned)n, 0x11);
	frame(FT_MEM, 0, b.p, b.len);
	free(b.p);
}

static void disk_frame(uint32_t disk, uint32_t kind, uint64_t off, uint64_t len)
{
	struct buf b = { 0 };
	put_rec(&b, disk, kind, off, len, 0x5a);
	frame(FT_DISK, 0, b.p, b.len);
	free(b.p);
}

/* An epoch: header, pfns, pages, a small state fdt, then the disk records given in recs. */
static void epoch_frame(uint64_t num, bool baseline, const uint64_t *pfns, uint64_t n, const struct buf *recs)
{
	uint8_t state[128];
	if (fdt_create(state, sizeof(state)) || fdt_finish_reservemap(state) || fdt_begin_node(state, "") ||
	    fdt_property_u64(state, "epoch", num) || fdt_end_node(state) || fdt_finish(state))
		abort();
	struct ft_epoch_hdr h = { .epoch = num, .npages = n, .state_len = fdt_totalsize(state),
				  .disk_len = recs ? recs->len : 0, .flags = baseline ? FT_EPOCH_BASELINE : 0,
				  .guest_dirty = n };
	struct buf b = { 0 };
	put(&b, &h, sizeof(h));
	put(&b, pfns, n * 8);
	put_pages(&b, (unsigned)n, (uint8_t)(0x20 + num));
	put(&b, state, fdt_totalsize(state));
	if (recs)
		put(&b, recs->p, recs->len);
	frame(FT_EPOCH, num, b.p, b.len);
	free(b.p);
}

static void save(const char *dir, const char *name)
{
	char path[4096];
	snprintf(path, sizeof(path), "%s/%s", dir, name);
	FILE *f = fopen(path, "wb");
	if (!f || fwrite(out, 1, out_len, f) != out_len || fclose(f))
		abort();
	free(out);
	out = NULL;
	out_len = 0;
}

int main(int argc, char **argv)
{
	if (argc != 2) {
		fprintf(stderr, "usage: %s DIR\n", argv[0]);
		return 2;
	}
	static const uint64_t p03[] = { 0, 3 }, p5[] = { 5 }, p5f[] = { 5, 15 }, p16[] = { 16 };
	struct buf r1 = { 0 }, r2 = { 0 };
	put_rec(&r1, 1, FT_DISK_WRITE, 0, 100, 0x61);
	put_rec(&r2, 0, FT_DISK_ZERO, 0, 4096, 0);
	put_rec(&r2, 0, FT_DISK_WRITE, 4096, 10, 0x62);

	/* the whole life of a pairing: initial sync, baseline, an epoch, the guest's end */
	mem_frame(p03, 2, 2);
	disk_frame(0, FT_DISK_WRITE, 512, 1024);
	disk_frame(1, FT_DISK_ZERO, 4096, 8192);
	epoch_frame(1, true, p5, 1, &r1);
	epoch_frame(2, false, p5f, 2, &r2);
	frame(FT_BYE, 0, NULL, 0);
	save(argv[1], "sync-epochs-bye");
	/* epochs only, from a high number */
	epoch_frame(7, true, NULL, 0, NULL);
	epoch_frame(8, false, p5, 1, NULL);
	epoch_frame(9, false, p03, 2, &r2);
	save(argv[1], "epochs");
	/* a baseline, then an epoch with a page past guest RAM: refused */
	epoch_frame(1, true, p5, 1, &r1);
	epoch_frame(2, false, p16, 1, NULL);
	save(argv[1], "refused-epoch");
	/* an initial-sync batch whose count wraps its size (1 + 2^61 pages in one page's length) */
	mem_frame(p5, 1, 1 + (1ull << 61));
	save(argv[1], "mem-count-wraps");
	free(r1.p);
	free(r2.p);
	return 0;
}

/* gen_backup_seeds.c - writes the seed corpus of fuzz_backup_stream: real data-link streams (frames with
 * their checksums, as ft/primary.c sends them) for the fuzzer's mirror of 16 pages and two disks of
 * 16 and 32 KiB, each after the mode byte (what the HELLO announced: 0 whole pages, 1-3 packed epochs in
 * codec none, lz4, zstd; 5-7 the same with page deltas). Rebuild the committed seeds after a protocol change:
 *   make build/libftvmm.a && cc -std=gnu11 -D_GNU_SOURCE -o /tmp/gen tests/fuzz/gen_backup_seeds.c \
 *     build/libftvmm.a -luring -lfdt -lgnutls -llz4 -lzstd -pthread && /tmp/gen tests/fuzz/corpus-fuzz_backup_stream
 * (libfdt-check-full-version2-root, a fuzzer's find, is not made here: it got its mode byte, 0, by hand.)
 */
#include <libfdt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../ft/compress.h"
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

/* Page i of a packed epoch: zero when zero_mask has bit i, else text-like bytes tagged by tag + i. */
static void packed_page(uint8_t *pg, unsigned i, uint8_t tag, unsigned zero_mask)
{
	static const char words[] = "the guest wrote this page in epoch ";
	for (size_t k = 0; k < PAGE_SIZE; k++)
		pg[k] = (zero_mask >> i) & 1 ? 0 : k % 64 == 0 ? (uint8_t)(tag + i) : (uint8_t)words[k % (sizeof(words) - 1)];
}

/* A packed epoch as the sender makes it (ft_pack_pages): header, ft_pages_hdr, pfns (zero pages flagged),
 * payload, padding, state, disk records. raw_lie is added to the page header's raw_len. */
static void packed_epoch_frame_pk(struct ft_packer *pk, uint64_t num, bool baseline, const uint64_t *pfns, uint64_t n,
				  unsigned zero_mask, const struct buf *recs, uint64_t raw_lie);

/* One with a packer of its own (no deltas). */
static void packed_epoch_frame(uint64_t num, bool baseline, const uint64_t *pfns, uint64_t n, unsigned zero_mask,
			       const struct buf *recs, enum ft_codec codec, uint64_t raw_lie)
{
	struct ft_packer pk;
	if (ft_packer_init(&pk, codec))
		abort();
	packed_epoch_frame_pk(&pk, num, baseline, pfns, n, zero_mask, recs, raw_lie);
	ft_packer_free(&pk);
}

/* ...packed by pk, which keeps what it sent (with deltas on, pages that changed little go as deltas). */
static void packed_epoch_frame_pk(struct ft_packer *pk, uint64_t num, bool baseline, const uint64_t *pfns, uint64_t n,
				  unsigned zero_mask, const struct buf *recs, uint64_t raw_lie)
{
	uint8_t state[128];
	if (fdt_create(state, sizeof(state)) || fdt_finish_reservemap(state) || fdt_begin_node(state, "") ||
	    fdt_property_u64(state, "epoch", num) || fdt_end_node(state) || fdt_finish(state))
		abort();
	uint8_t *pages = malloc(n * PAGE_SIZE + 1);
	uint64_t *pf = malloc(n * 8 + 1);
	if (!pages || !pf)
		abort();
	for (unsigned i = 0; i < n; i++) {
		packed_page(pages + i * PAGE_SIZE, i, (uint8_t)(0x40 + num), zero_mask);
		pf[i] = pfns[i];
	}
	struct ft_pages_hdr ph;
	const uint8_t *payload;
	if (baseline)
		ft_packer_forget(pk);
	if (ft_pack_pages(pk, pages, pf, n, &ph, &payload))
		abort();
	ph.raw_len += raw_lie;
	struct ft_epoch_hdr h = { .epoch = num, .npages = n, .state_len = fdt_totalsize(state),
				  .disk_len = recs ? recs->len : 0,
				  .flags = FT_EPOCH_PACKED | (baseline ? FT_EPOCH_BASELINE : 0), .guest_dirty = n };
	static const uint8_t pad[8];
	struct buf b = { 0 };
	put(&b, &h, sizeof(h));
	put(&b, &ph, sizeof(ph));
	put(&b, pf, n * 8);
	put(&b, payload, ph.wire_len);
	put(&b, pad, FT_PAGES_PAD_TO(ph.wire_len) - ph.wire_len);
	put(&b, state, fdt_totalsize(state));
	if (recs)
		put(&b, recs->p, recs->len);
	frame(FT_EPOCH, num, b.p, b.len);
	free(b.p);
	free(pages);
	free(pf);
}

static void mode(uint8_t m)
{
	emit(&m, 1);
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
	mode(0);
	mem_frame(p03, 2, 2);
	disk_frame(0, FT_DISK_WRITE, 512, 1024);
	disk_frame(1, FT_DISK_ZERO, 4096, 8192);
	epoch_frame(1, true, p5, 1, &r1);
	epoch_frame(2, false, p5f, 2, &r2);
	frame(FT_BYE, 0, NULL, 0);
	save(argv[1], "sync-epochs-bye");
	/* epochs only, from a high number */
	mode(0);
	epoch_frame(7, true, NULL, 0, NULL);
	epoch_frame(8, false, p5, 1, NULL);
	epoch_frame(9, false, p03, 2, &r2);
	save(argv[1], "epochs");
	/* a baseline, then an epoch with a page past guest RAM: refused */
	mode(0);
	epoch_frame(1, true, p5, 1, &r1);
	epoch_frame(2, false, p16, 1, NULL);
	save(argv[1], "refused-epoch");
	/* an initial-sync batch whose count wraps its size (1 + 2^61 pages in one page's length) */
	mode(0);
	mem_frame(p5, 1, 1 + (1ull << 61));
	save(argv[1], "mem-count-wraps");
	/* packed epochs in each codec: sync, a baseline of 12 pages (4 zero) with disk records, an epoch of
	 * 2 pages (one zero), an empty one, the end */
	static const uint64_t p12[] = { 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 15 };
	static const char *const names[] = { "packed-none", "packed-lz4", "packed-zstd" };
	for (unsigned c = 0; c < FT_CODEC_COUNT; c++) {
		mode((uint8_t)(1 + c));
		mem_frame(p03, 2, 2);
		packed_epoch_frame(1, true, p12, 12, 0x0a5, &r1, c, 0);
		packed_epoch_frame(2, false, p5f, 2, 0x2, &r2, c, 0);
		packed_epoch_frame(3, false, NULL, 0, 0, NULL, c, 0);
		frame(FT_BYE, 0, NULL, 0);
		save(argv[1], names[c]);
	}
	/* page deltas in each codec: a baseline of 12 pages (4 zero), then two epochs of the same pages, each
	 * changing one byte in 64 (deltas) and one page becoming zero, then non-zero again (whole) */
	static const char *const dnames[] = { "delta-none", "delta-lz4", "delta-zstd" };
	for (unsigned c = 0; c < FT_CODEC_COUNT; c++) {
		struct ft_packer pk;
		if (ft_packer_init(&pk, c) || ft_packer_delta(&pk, 16 * PAGE_SIZE)) /* the fuzzer's guest: 16 pages */
			abort();
		pk.delta_on = true;
		mode((uint8_t)(4 + 1 + c));
		packed_epoch_frame_pk(&pk, 1, true, p12, 12, 0x0a5, &r1, 0);
		packed_epoch_frame_pk(&pk, 2, false, p12, 12, 0x0a5 | 0x2, NULL, 0);
		packed_epoch_frame_pk(&pk, 3, false, p12, 12, 0x0a5, &r2, 0);
		if (pk.ndelta == 0)
			abort(); /* the seeds would not exercise what they are for */
		ft_packer_free(&pk);
		save(argv[1], dnames[c]);
	}
	/* a packed lz4 baseline, then an epoch whose page header says a page more than its chunks hold */
	mode(2);
	packed_epoch_frame(1, true, p12, 12, 0, NULL, FT_CODEC_LZ4, 0);
	packed_epoch_frame(2, false, p12, 12, 0x800, NULL, FT_CODEC_LZ4, PAGE_SIZE);
	save(argv[1], "packed-lying-size");
	/* a zstd-packed epoch to a backup that expects whole pages: refused */
	mode(0);
	packed_epoch_frame(1, true, p5f, 2, 0, NULL, FT_CODEC_ZSTD, 0);
	save(argv[1], "packed-to-old-backup");
	free(r1.p);
	free(r2.p);
	return 0;
}

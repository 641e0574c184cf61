/* test_compress.c - packed epochs: zero pages as flags, none/lz4/zstd round trips through the backup's commit, and
 * every lying count, size or chunk from a peer refused with nothing of the epoch applied. */
#include "../../ft/backup_int.h"
#include "../../ft/compress.h"
#include "../../ft/disklog.h"
#include "../../ft/proto.h"
#include "../../vmm/guest_mem.h"
#include "../../vmm/util.h"
#include "test.h"
#include "epoch_test.h"

#include <errno.h>
#include <libfdt.h>
#include <lz4.h>
#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <zstd.h>

#define NPAGES 600 /* three chunks: 256 + 256 + 88 */
#define MEM_SIZE ((size_t)NPAGES * PAGE_SIZE)
#define CHUNK ((size_t)FT_CHUNK_PAGES * PAGE_SIZE)

/* ---- page contents like a guest's ---------------------------------------------------------------- */

enum kind { K_ZERO, K_TEXT, K_STRUCTS, K_RANDOM, K_SPARSE, K_PATTERN, K_COUNT };

static uint64_t rng = 0x9e3779b97f4a7c15ull;

static uint64_t rnd(void)
{
	rng ^= rng << 13;
	rng ^= rng >> 7;
	rng ^= rng << 17;
	return rng;
}

static void page_of(uint8_t *pg, enum kind k)
{
	static const char *const words[] = { "the ", "kernel ", "epoch ", "page ", "backup ", "primary ", "commit ",
					     "\n", "error=0 ", "pid=1234 ", "GET /index.html ", "HTTP/1.1 200 OK\r\n" };
	uint64_t *w = (uint64_t *)pg;
	memset(pg, 0, PAGE_SIZE);
	switch (k) {
	case K_ZERO: break;
	case K_TEXT:
		for (size_t off = 0; off < PAGE_SIZE;) {
			const char *s = words[rnd() % ARRAY_SIZE(words)];
			size_t n = MIN(strlen(s), PAGE_SIZE - off);
			memcpy(pg + off, s, n);
			off += n;
		}
		break;
	case K_STRUCTS: /* pointers into the direct map, small counters, flags, zeroes */
		for (size_t i = 0; i < PAGE_SIZE / 8; i++) {
			uint64_t r = rnd() % 8;
			w[i] = r < 3 ? 0 : r < 5 ? 0xffff888000000000ull | (rnd() & 0x3ffffff8) : r < 7 ? rnd() % 256 : rnd();
		}
		break;
	case K_RANDOM:
		for (size_t i = 0; i < PAGE_SIZE / 8; i++)
			w[i] = rnd();
		break;
	case K_SPARSE:
		for (int i = 0; i < 4; i++)
			w[rnd() % (PAGE_SIZE / 8)] = rnd() | 1;
		break;
	case K_PATTERN:
		for (size_t i = 0; i < PAGE_SIZE / 8; i++)
			w[i] = 0x00ff00ff5a5a0000ull + (i % 4);
		break;
	default: break;
	}
}

/* n pages of a mix of every kind (page i of kind kinds[i % nk]). */
static uint8_t *pages_of(uint64_t n, const enum kind *kinds, size_t nk)
{
	uint8_t *p = malloc(n * PAGE_SIZE + 1);
	CHECK(p);
	for (uint64_t i = 0; i < n; i++)
		page_of(p + i * PAGE_SIZE, kinds[i % nk]);
	return p;
}

static const enum kind mix[] = { K_TEXT, K_ZERO, K_STRUCTS, K_RANDOM, K_SPARSE, K_PATTERN, K_ZERO, K_TEXT };

/* ---- a packed epoch, as the primary's sender makes it ------------------------------------------------ */

/* Epoch num of n pages (copied: packing works in place) at pfns, packed with codec; its page header in *ph. */
static struct buf packed(uint64_t num, bool baseline, const uint64_t *pfns, uint64_t n, const uint8_t *pages,
			 enum ft_codec codec, struct ft_pages_hdr *ph)
{
	uint8_t *stage = malloc(n * PAGE_SIZE + 1);
	uint64_t *pf = malloc(n * 8 + 1);
	CHECK(stage && pf);
	if (n) {
		memcpy(stage, pages, n * PAGE_SIZE);
		memcpy(pf, pfns, n * 8);
	}
	struct ft_packer pk;
	CHECK_EQ(ft_packer_init(&pk, codec), 0);
	const uint8_t *payload;
	CHECK_EQ(ft_pack_pages(&pk, stage, pf, n, ph, &payload), 0);
	struct ft_epoch_hdr h = { .epoch = num, .npages = n,
				  .flags = FT_EPOCH_PACKED | (baseline ? FT_EPOCH_BASELINE : 0) };
	struct buf b = assemble(h, ph, pf, payload, ph->wire_len);
	ft_packer_free(&pk);
	free(stage);
	free(pf);
	struct ft_epoch_hdr chk;
	CHECK_EQ(ft_epoch_check(b.p, b.len, true, &chk), 0);
	return b;
}

#define PH_AT(field) (sizeof(struct ft_epoch_hdr) + offsetof(struct ft_pages_hdr, field))

static void set64(struct buf *b, size_t off, uint64_t v)
{
	memcpy(b->p + off, &v, 8);
}

static void set32(struct buf *b, size_t off, uint32_t v)
{
	memcpy(b->p + off, &v, 4);
}

/* ---- the backup -------------------------------------------------------------------------------------- */

static struct backup b;
static uint8_t *mem, *mem_before;

static void backup_fresh(enum ft_codec codec)
{
	free(b.state);
	gmem_free(&b.mem); /* its bitmap (the buffer is ours) */
	ft_unpacker_free(&b.unpacker);
	memset(&b, 0, sizeof(b));
	pthread_mutex_init(&b.lock, NULL);
	CHECK_EQ(gmem_init_buffer(&b.mem, mem, MEM_SIZE), 0);
	b.packed = true;
	b.codec = codec;
	memset(mem, 0xc3, MEM_SIZE); /* not zero: a zero page must be written, not assumed */
}

/* A refused epoch: -EBADMSG, and nothing of it anywhere. It is committed from a copy of exactly e->len bytes
 * (e's own buffer may be longer): ASan sees any read past its length. */
static void refused(uint64_t seq, struct buf *e, int line)
{
	memcpy(mem_before, mem, MEM_SIZE);
	uint64_t committed = b.committed;
	const void *st = b.state;
	bool base = b.have_baseline;
	uint8_t *copy = malloc(e->len ? e->len : 1);
	CHECK(copy);
	if (e->len)
		memcpy(copy, e->p, e->len);
	int r = backup_commit_epoch(&b, seq, copy, e->len);
	free(copy);
	if (r != -EBADMSG)
		fprintf(stderr, "line %d: want -EBADMSG, got %d\n", line, r);
	CHECK_EQ(r, -EBADMSG);
	CHECK(memcmp(mem, mem_before, MEM_SIZE) == 0);
	CHECK(b.committed == committed && b.state == st && b.have_baseline == base);
}
#define REFUSED(seq, e) refused(seq, e, __LINE__)

/* guest memory now holds pages[i] at pfns[i] (later pfns win) */
static void holds(const uint64_t *pfns, uint64_t n, const uint8_t *pages)
{
	for (uint64_t i = 0; i < n; i++) {
		bool last = true;
		for (uint64_t j = i + 1; j < n; j++)
			last = last && pfns[j] != pfns[i];
		if (last)
			CHECK(memcmp(mem + pfns[i] * PAGE_SIZE, pages + i * PAGE_SIZE, PAGE_SIZE) == 0);
	}
}

/* ---- tests ------------------------------------------------------------------------------------------- */

static void test_names(void)
{
	enum ft_codec c = FT_CODEC_COUNT;
	CHECK(!ft_codec_parse("none", &c) && c == FT_CODEC_NONE);
	CHECK(!ft_codec_parse("lz4", &c) && c == FT_CODEC_LZ4);
	CHECK(!ft_codec_parse("zstd", &c) && c == FT_CODEC_ZSTD);
	static const char *const bad[] = { "", "LZ4", "lz4 ", " none", "zst", "zstd1", "gzip" };
	for (size_t i = 0; i < ARRAY_SIZE(bad); i++)
		CHECK_EQ(ft_codec_parse(bad[i], &c), -EINVAL);
	for (unsigned i = 0; i < FT_CODEC_COUNT; i++) {
		CHECK(!ft_codec_parse(ft_codec_name(i), &c) && c == i);
		CHECK(strstr(FT_CODEC_NAMES, ft_codec_name(i)) != NULL);
	}
	CHECK(!strcmp(ft_codec_name(FT_CODEC_COUNT), "?") && !strcmp(ft_codec_name(~0u), "?"));
}

/* Packing: zero pages flagged and left out, the rest in order; compressed chunks decompress to them; an
 * incompressible chunk travels stored; nothing at all is nothing on the wire. */
static void pack_case(enum ft_codec codec, const enum kind *kinds, size_t nk, uint64_t n)
{
	uint8_t *pages = pages_of(n, kinds, nk), *stage = malloc(n * PAGE_SIZE + 1), *nonzero = malloc(n * PAGE_SIZE + 1);
	uint64_t *pfns = malloc(n * 8 + 1);
	CHECK(stage && nonzero && pfns);
	memcpy(stage, pages, n * PAGE_SIZE);
	uint64_t k = 0;
	for (uint64_t i = 0; i < n; i++) {
		pfns[i] = (i * 7) % NPAGES;
		if (kinds[i % nk] != K_ZERO)
			memcpy(nonzero + k++ * PAGE_SIZE, pages + i * PAGE_SIZE, PAGE_SIZE);
	}
	struct ft_packer pk;
	CHECK_EQ(ft_packer_init(&pk, codec), 0);
	struct ft_pages_hdr ph;
	const uint8_t *payload;
	CHECK_EQ(ft_pack_pages(&pk, stage, pfns, n, &ph, &payload), 0);
	CHECK_EQ(ph.codec, codec);
	CHECK_EQ(ph.reserved, 0);
	CHECK_EQ(ph.nzero, n - k);
	CHECK_EQ(ph.raw_len, k * PAGE_SIZE);
	for (uint64_t i = 0; i < n; i++) /* flagged exactly the zero pages, the page number kept */
		CHECK_EQ(pfns[i], ((i * 7) % NPAGES) | (kinds[i % nk] == K_ZERO ? FT_PFN_ZERO : 0));
	CHECK(ph.wire_len <= ft_pack_bound(k));
	if (codec == FT_CODEC_NONE) {
		CHECK_EQ(ph.wire_len, ph.raw_len);
		CHECK(k == 0 || memcmp(payload, nonzero, k * PAGE_SIZE) == 0);
	} else {
		uint8_t *out = malloc(k * PAGE_SIZE + 1);
		CHECK(out);
		CHECK_EQ(ft_unpack_pages(NULL, codec, payload, ph.wire_len, out, ph.raw_len), 0);
		CHECK(k == 0 || memcmp(out, nonzero, k * PAGE_SIZE) == 0);
		free(out);
	}
	if (k == 0)
		CHECK_EQ(ph.wire_len, 0);
	if (codec != FT_CODEC_NONE && nk == 1 && kinds[0] == K_RANDOM) /* every chunk stored */
		CHECK_EQ(ph.wire_len, ft_pack_bound(k));
	if (codec != FT_CODEC_NONE && nk == 1 && kinds[0] == K_TEXT) /* words of a small dictionary */
		CHECK(ph.wire_len < ph.raw_len / 2);
	if (codec != FT_CODEC_NONE && nk == 1 && kinds[0] == K_PATTERN) /* the same page again and again */
		CHECK(ph.wire_len < ph.raw_len / 16);
	ft_packer_free(&pk);
	free(pages);
	free(stage);
	free(nonzero);
	free(pfns);
}

static void test_pack(void)
{
	static const enum kind zero[] = { K_ZERO }, random[] = { K_RANDOM }, text[] = { K_TEXT },
			       pattern[] = { K_PATTERN };
	for (unsigned c = 0; c < FT_CODEC_COUNT; c++) {
		pack_case(c, mix, ARRAY_SIZE(mix), 600); /* three chunks of the non-zero ones */
		pack_case(c, mix, ARRAY_SIZE(mix), 1);
		pack_case(c, mix, ARRAY_SIZE(mix), 0);
		pack_case(c, zero, 1, 300);
		pack_case(c, random, 1, 257); /* a full chunk and one page, both stored */
		pack_case(c, text, 1, 256);
		pack_case(c, pattern, 1, 513);
	}
}

/* Epochs packed by each codec, committed by a backup paired with it: memory as the primary had it,
 * zero pages written as zeroes (over old contents), pages of later epochs over earlier ones. */
static void test_commit_roundtrip(void)
{
	for (unsigned c = 0; c < FT_CODEC_COUNT; c++) {
		backup_fresh(c);
		uint64_t n = NPAGES;
		uint64_t *pfns = malloc(n * 8);
		CHECK(pfns);
		for (uint64_t i = 0; i < n; i++)
			pfns[i] = (i * 367) % NPAGES; /* every page once, out of order */
		uint8_t *pages = pages_of(n, mix, ARRAY_SIZE(mix));
		struct ft_pages_hdr ph;
		struct buf e = packed(4, true, pfns, n, pages, c, &ph);
		CHECK_EQ(backup_commit_epoch(&b, 4, e.p, e.len), 0);
		CHECK(b.have_baseline && b.committed == 4);
		holds(pfns, n, pages);
		if (c != FT_CODEC_NONE)
			CHECK(ph.wire_len < ph.raw_len / 2);
		free(e.p);
		/* the next epoch: a few pages, one of them becoming zero, one written twice */
		uint64_t pf2[4] = { 10, 11, 12, 10 };
		static const enum kind k2[] = { K_TEXT, K_ZERO, K_RANDOM, K_STRUCTS };
		uint8_t *p2 = pages_of(4, k2, 4);
		e = packed(5, false, pf2, 4, p2, c, &ph);
		CHECK_EQ(ph.nzero, 1);
		CHECK_EQ(backup_commit_epoch(&b, 5, e.p, e.len), 0);
		CHECK_EQ(b.committed, 5);
		holds(pf2, 4, p2);
		CHECK(mem[11 * PAGE_SIZE] == 0 && mem[12 * PAGE_SIZE - 1] == 0);
		free(e.p);
		/* an epoch without pages */
		e = packed(6, false, NULL, 0, NULL, c, &ph);
		CHECK_EQ(backup_commit_epoch(&b, 6, e.p, e.len), 0);
		free(e.p);
		free(p2);
		free(pages);
		free(pfns);
	}
}

/* A chunk stream built by hand: length word, then bytes. */
static void chunk(struct buf *w, uint32_t word, const void *p, size_t n)
{
	put(w, &word, 4);
	put(w, p, n);
}

static size_t lz4_of(const uint8_t *src, size_t n, uint8_t *dst, size_t cap)
{
	int r = LZ4_compress_default((const char *)src, (char *)dst, (int)n, (int)cap);
	CHECK(r > 0);
	return (size_t)r;
}

static size_t zstd_of(const uint8_t *src, size_t n, uint8_t *dst, size_t cap)
{
	size_t r = ZSTD_compress(dst, cap, src, n, 1);
	CHECK(!ZSTD_isError(r));
	return r;
}

static size_t compressed(enum ft_codec c, const uint8_t *src, size_t n, uint8_t *dst, size_t cap)
{
	return c == FT_CODEC_LZ4 ? lz4_of(src, n, dst, cap) : zstd_of(src, n, dst, cap);
}

/* One context for every unpack below, as the backup keeps one: each call must start afresh whatever the one
 * before it left (a refused frame, one cut short). */
static struct ft_unpacker shared;

/* ft_unpack_pages on exact-size copies: the payload in a buffer of wire_len bytes, the pages into one of
 * raw_len (ASan sees any access past either, which the callers' larger buffers would hide); on success the
 * pages are copied to out. */
static int unpack_exact(enum ft_codec c, const uint8_t *wire, size_t wire_len, uint8_t *out, uint64_t raw_len)
{
	uint8_t *w = malloc(wire_len ? wire_len : 1), *d = malloc(raw_len ? raw_len : 1);
	CHECK(w && d);
	if (wire_len)
		memcpy(w, wire, wire_len);
	int r = ft_unpack_pages(&shared, c, w, wire_len, d, raw_len);
	if (!r && raw_len)
		memcpy(out, d, raw_len);
	free(w);
	free(d);
	return r;
}

/* ft_unpack_pages on a payload from a hostile peer: each chunk must be whole, inside the payload and
 * decompress to exactly its pages; the chunks must fill raw_len and leave nothing over. */
static void unpack_hostile(enum ft_codec c)
{
	const size_t raw = CHUNK + 44 * PAGE_SIZE; /* two chunks */
	static const enum kind text[] = { K_TEXT, K_STRUCTS };
	uint8_t *src = pages_of(raw / PAGE_SIZE, text, 2), *out = malloc(raw + CHUNK), *tmp = malloc(2 * CHUNK);
	CHECK(out && tmp);
	size_t n1 = compressed(c, src, CHUNK, tmp, 2 * CHUNK);
	struct buf good = { 0 };
	chunk(&good, (uint32_t)n1, tmp, n1);
	size_t n2 = compressed(c, src + CHUNK, 44 * PAGE_SIZE, tmp, 2 * CHUNK);
	chunk(&good, (uint32_t)n2, tmp, n2);
	CHECK_EQ(unpack_exact(c, good.p, good.len, out, raw), 0);
	CHECK(memcmp(out, src, raw) == 0);

	/* truncated anywhere: in a length word, in a chunk, by one byte (each cut its own exact-size buffer) */
	const size_t cuts[] = { 0, 1, 3, 4, 5, n1 / 2, 4 + n1, 4 + n1 + 2, 4 + n1 + 4, good.len - 1 };
	for (size_t i = 0; i < ARRAY_SIZE(cuts); i++)
		CHECK_EQ(unpack_exact(c, good.p, cuts[i], out, raw), -EBADMSG);
	/* the decompressed size lies: a page less or more than the chunks hold, nothing, not whole pages */
	CHECK_EQ(unpack_exact(c, good.p, good.len, out, raw - PAGE_SIZE), -EBADMSG);
	CHECK_EQ(unpack_exact(c, good.p, good.len, out, raw + PAGE_SIZE), -EBADMSG);
	CHECK_EQ(unpack_exact(c, good.p, good.len, out, 0), -EBADMSG); /* all of it left over */
	CHECK_EQ(unpack_exact(c, good.p, good.len, out, raw - 1), -EBADMSG);
	/* a byte left over after the last chunk */
	struct buf more = { 0 };
	put(&more, good.p, good.len);
	put(&more, "x", 1);
	CHECK_EQ(unpack_exact(c, more.p, more.len, out, raw), -EBADMSG);
	free(more.p);
	/* length words: past the payload, zero, stored with another size than its pages */
	uint32_t w;
	memcpy(&w, good.p, 4);
	set32(&good, 0, (uint32_t)good.len);
	CHECK_EQ(unpack_exact(c, good.p, good.len, out, raw), -EBADMSG);
	set32(&good, 0, 0xffffffffu);
	CHECK_EQ(unpack_exact(c, good.p, good.len, out, raw), -EBADMSG);
	set32(&good, 0, 0);
	CHECK_EQ(unpack_exact(c, good.p, good.len, out, raw), -EBADMSG);
	set32(&good, 0, FT_CHUNK_STORED | w); /* its compressed bytes said to be the pages themselves */
	CHECK_EQ(unpack_exact(c, good.p, good.len, out, raw), -EBADMSG);
	set32(&good, 0, w - 1); /* the chunk one byte short, the next word misread */
	CHECK_EQ(unpack_exact(c, good.p, good.len, out, raw), -EBADMSG);
	set32(&good, 0, w);
	CHECK_EQ(unpack_exact(c, good.p, good.len, out, raw), 0);

	/* a chunk that holds fewer pages than its place needs (the size it decompresses to lies) */
	struct buf fewer = { 0 };
	size_t nf = compressed(c, src, CHUNK - PAGE_SIZE, tmp, 2 * CHUNK);
	chunk(&fewer, (uint32_t)nf, tmp, nf);
	CHECK_EQ(unpack_exact(c, fewer.p, fewer.len, out, CHUNK), -EBADMSG);
	CHECK_EQ(unpack_exact(c, fewer.p, fewer.len, out, CHUNK - PAGE_SIZE), 0); /* what it does hold */
	free(fewer.p);
	/* one that holds more: two chunks' worth in the first */
	struct buf big = { 0 };
	size_t nb = compressed(c, src, raw, tmp, 2 * CHUNK);
	chunk(&big, (uint32_t)nb, tmp, nb);
	CHECK_EQ(unpack_exact(c, big.p, big.len, out, raw), -EBADMSG);
	free(big.p);
	/* bytes that are no lz4 block or zstd frame */
	struct buf junk = { 0 };
	for (size_t i = 0; i < 1000; i++)
		tmp[i] = (uint8_t)rnd();
	chunk(&junk, 1000, tmp, 1000);
	CHECK_EQ(unpack_exact(c, junk.p, junk.len, out, PAGE_SIZE), -EBADMSG);
	free(junk.p);
	/* stored chunks: exactly their pages */
	struct buf st = { 0 };
	chunk(&st, FT_CHUNK_STORED | (uint32_t)(2 * PAGE_SIZE), src, 2 * PAGE_SIZE);
	CHECK_EQ(unpack_exact(c, st.p, st.len, out, 2 * PAGE_SIZE), 0);
	CHECK(memcmp(out, src, 2 * PAGE_SIZE) == 0);
	CHECK_EQ(unpack_exact(c, st.p, st.len, out, 3 * PAGE_SIZE), -EBADMSG);
	CHECK_EQ(unpack_exact(c, st.p, st.len, out, PAGE_SIZE), -EBADMSG);
	free(st.p);
	/* not a codec that has chunks */
	CHECK_EQ(unpack_exact(FT_CODEC_NONE, good.p, good.len, out, raw), -EBADMSG);
	CHECK_EQ(unpack_exact(FT_CODEC_COUNT, good.p, good.len, out, raw), -EBADMSG);
	free(good.p);
	free(src);
	free(out);
	free(tmp);
}

/* zstd frames that decompress to the right bytes but are not what a primary sends: no content size, a
 * content size that lies, two frames in one chunk, a skippable frame before the real one or an empty or
 * skippable one after it, a legacy format's magic, a chunk too short for a magic, a dictionary's frame. */
static void unpack_zstd_frames(void)
{
	static const enum kind text[] = { K_TEXT };
	uint8_t *src = pages_of(2, text, 1), *out = malloc(3 * PAGE_SIZE), *tmp = malloc(4 * PAGE_SIZE);
	CHECK(out && tmp);
	ZSTD_CCtx *cc = ZSTD_createCCtx();
	CHECK(cc);
	CHECK(!ZSTD_isError(ZSTD_CCtx_setParameter(cc, ZSTD_c_contentSizeFlag, 0)));
	size_t n = ZSTD_compress2(cc, tmp, 4 * PAGE_SIZE, src, 2 * PAGE_SIZE);
	CHECK(!ZSTD_isError(n));
	struct buf nosize = { 0 };
	chunk(&nosize, (uint32_t)n, tmp, n);
	CHECK_EQ(unpack_exact(FT_CODEC_ZSTD, nosize.p, nosize.len, out, 2 * PAGE_SIZE), -EBADMSG);
	free(nosize.p);
	ZSTD_freeCCtx(cc);

	/* two frames of a page each: the bytes are right, the chunk is not one frame */
	struct buf two = { 0 };
	size_t a = zstd_of(src, PAGE_SIZE, tmp, 4 * PAGE_SIZE);
	size_t bb = zstd_of(src + PAGE_SIZE, PAGE_SIZE, tmp + a, 4 * PAGE_SIZE - a);
	chunk(&two, (uint32_t)(a + bb), tmp, a + bb);
	CHECK_EQ(unpack_exact(FT_CODEC_ZSTD, two.p, two.len, out, 2 * PAGE_SIZE), -EBADMSG);
	free(two.p);

	/* a skippable frame (magic 0x184D2A50, 4 bytes of length, that many bytes), then the real one */
	uint8_t skip[12] = { 0x50, 0x2a, 0x4d, 0x18, 4, 0, 0, 0, 1, 2, 3, 4 };
	struct buf sk = { 0 };
	size_t f = zstd_of(src, 2 * PAGE_SIZE, tmp, 4 * PAGE_SIZE);
	uint32_t word = (uint32_t)(sizeof(skip) + f);
	put(&sk, &word, 4);
	put(&sk, skip, sizeof(skip));
	put(&sk, tmp, f);
	CHECK_EQ(unpack_exact(FT_CODEC_ZSTD, sk.p, sk.len, out, 2 * PAGE_SIZE), -EBADMSG);
	free(sk.p);

	/* the frame's own content size: 2 pages, where 3 or 1 are expected */
	struct buf lie = { 0 };
	chunk(&lie, (uint32_t)f, tmp, f);
	CHECK_EQ(unpack_exact(FT_CODEC_ZSTD, lie.p, lie.len, out, 2 * PAGE_SIZE), 0);
	CHECK(ZSTD_getFrameContentSize(lie.p + 4, f) == 2 * PAGE_SIZE);
	CHECK_EQ(unpack_exact(FT_CODEC_ZSTD, lie.p, lie.len, out, 3 * PAGE_SIZE), -EBADMSG);
	CHECK_EQ(unpack_exact(FT_CODEC_ZSTD, lie.p, lie.len, out, PAGE_SIZE), -EBADMSG);
	/* ...rewritten to say 3 pages (single segment, a 2-byte content size of value - 256, after the magic
	 * and the descriptor byte): the header now agrees with what is expected, the data does not */
	uint8_t fhd = lie.p[4 + 4];
	CHECK((fhd >> 6) == 1 && (fhd & 0x20) && (fhd & 3) == 0);
	uint16_t fcs = (uint16_t)(3 * PAGE_SIZE - 256);
	memcpy(lie.p + 4 + 5, &fcs, 2);
	CHECK(ZSTD_getFrameContentSize(lie.p + 4, f) == 3 * PAGE_SIZE);
	CHECK_EQ(unpack_exact(FT_CODEC_ZSTD, lie.p, lie.len, out, 3 * PAGE_SIZE), -EBADMSG);
	CHECK_EQ(unpack_exact(FT_CODEC_ZSTD, lie.p, lie.len, out, 2 * PAGE_SIZE), -EBADMSG);
	free(lie.p);

	/* The 2 pages' frame (still in tmp, f bytes), which alone is taken, followed in its chunk by an empty
	 * frame or a skippable one: the bytes decompress to exactly the 2 pages and the first frame says so,
	 * only "one frame, nothing after it" refuses them */
	struct buf one = { 0 };
	chunk(&one, (uint32_t)f, tmp, f);
	CHECK_EQ(unpack_exact(FT_CODEC_ZSTD, one.p, one.len, out, 2 * PAGE_SIZE), 0);
	CHECK(memcmp(out, src, 2 * PAGE_SIZE) == 0);
	uint8_t empty[128];
	size_t ne = zstd_of(src, 0, empty, sizeof(empty));
	const uint8_t *after[2] = { empty, skip };
	const size_t after_len[2] = { ne, sizeof(skip) };
	for (int i = 0; i < 2; i++) {
		struct buf t = { 0 };
		uint32_t w = (uint32_t)(f + after_len[i]);
		put(&t, &w, 4);
		put(&t, tmp, f);
		put(&t, after[i], after_len[i]);
		CHECK(ZSTD_findFrameCompressedSize(t.p + 4, t.len - 4) == f);
		CHECK(ZSTD_getFrameContentSize(t.p + 4, t.len - 4) == 2 * PAGE_SIZE);
		CHECK_EQ(unpack_exact(FT_CODEC_ZSTD, t.p, t.len, out, 2 * PAGE_SIZE), -EBADMSG);
		free(t.p);
	}
	/* the same frame under the magic of zstd v0.7 (0xFD2FB527): a legacy format, which a libzstd built with
	 * legacy decoders (Debian's) would still decode, refused before any zstd call */
	struct buf legacy = { 0 };
	chunk(&legacy, (uint32_t)f, tmp, f);
	static const uint8_t v07[4] = { 0x27, 0xb5, 0x2f, 0xfd };
	memcpy(legacy.p + 4, v07, 4);
	CHECK_EQ(unpack_exact(FT_CODEC_ZSTD, legacy.p, legacy.len, out, 2 * PAGE_SIZE), -EBADMSG);
	free(legacy.p);
	/* chunks shorter than a magic (their exact-size copies: nothing read past them) */
	for (uint32_t k = 1; k < 4; k++) {
		struct buf sh = { 0 };
		chunk(&sh, k, tmp, k);
		CHECK_EQ(unpack_exact(FT_CODEC_ZSTD, sh.p, sh.len, out, PAGE_SIZE), -EBADMSG);
		free(sh.p);
	}
	/* a frame that names a dictionary: a 1-byte dictionary ID (7) inserted after its descriptor (single
	 * segment, checked above: no window byte before it) */
	uint8_t *dict = malloc(f + 1);
	CHECK(dict);
	memcpy(dict, tmp, 5);
	dict[4] |= 1; /* Dictionary_ID_flag: 1 byte */
	dict[5] = 7;
	memcpy(dict + 6, tmp + 5, f - 5);
	CHECK_EQ(ZSTD_getDictID_fromFrame(dict, f + 1), 7);
	CHECK(ZSTD_getFrameContentSize(dict, f + 1) == 2 * PAGE_SIZE);
	struct buf dw = { 0 };
	chunk(&dw, (uint32_t)(f + 1), dict, f + 1);
	CHECK_EQ(unpack_exact(FT_CODEC_ZSTD, dw.p, dw.len, out, 2 * PAGE_SIZE), -EBADMSG);
	free(dw.p);
	free(dict);
	/* and the shared context still takes a good frame after all those refusals */
	CHECK_EQ(unpack_exact(FT_CODEC_ZSTD, one.p, one.len, out, 2 * PAGE_SIZE), 0);
	CHECK(memcmp(out, src, 2 * PAGE_SIZE) == 0);
	free(one.p);
	free(src);
	free(out);
	free(tmp);
}

static void test_unpack_hostile(void)
{
	unpack_hostile(FT_CODEC_LZ4);
	unpack_hostile(FT_CODEC_ZSTD);
	unpack_zstd_frames();
}

static bool padded_seen;

/* The backup's commit of crafted packed epochs: every count and size checked (overflow included) before
 * anything is allocated for it or applied; each refusal leaves memory, commit and state as they were. */
static void commit_hostile(enum ft_codec c)
{
	backup_fresh(c);
	uint64_t pf[6] = { 1, 2, 3, 4, 5, 6 };
	static const enum kind k[] = { K_TEXT, K_ZERO, K_STRUCTS, K_ZERO, K_PATTERN, K_RANDOM };
	uint8_t *pages = pages_of(6, k, 6);
	struct ft_pages_hdr ph;
	struct buf base = packed(1, true, pf, 6, pages, c, &ph);
	CHECK_EQ(backup_commit_epoch(&b, 1, base.p, base.len), 0);
	free(base.p);
	struct buf e = packed(2, false, pf, 6, pages, c, &ph);
	CHECK_EQ(ph.nzero, 2);
	const uint64_t raw = ph.raw_len;

	/* the decompressed size lies: a page more or less, none, not whole pages, absurd (never allocated) */
	const uint64_t lies[] = { raw + PAGE_SIZE, raw - PAGE_SIZE, 0, raw + 1, 1ull << 40, UINT64_MAX,
				  (uint64_t)(NPAGES + 1) * PAGE_SIZE };
	for (size_t i = 0; i < ARRAY_SIZE(lies); i++) {
		set64(&e, PH_AT(raw_len), lies[i]);
		REFUSED(2, &e);
	}
	set64(&e, PH_AT(raw_len), raw);
	/* the count of zero pages: off by one either way, more than the pages, wrapping npages - nzero */
	const uint64_t nz[] = { 1, 3, 7, UINT64_MAX, 1ull << 63 };
	for (size_t i = 0; i < ARRAY_SIZE(nz); i++) {
		set64(&e, PH_AT(nzero), nz[i]);
		REFUSED(2, &e);
	}
	/* a zero page's count kept, raw_len made to match one flag fewer */
	set64(&e, PH_AT(nzero), 1);
	set64(&e, PH_AT(raw_len), raw + PAGE_SIZE);
	REFUSED(2, &e);
	set64(&e, PH_AT(nzero), 2);
	set64(&e, PH_AT(raw_len), raw);
	/* another codec than the HELLO's, an unknown one, the reserved word */
	set32(&e, PH_AT(codec), (c + 1) % FT_CODEC_COUNT);
	REFUSED(2, &e);
	set32(&e, PH_AT(codec), 77);
	REFUSED(2, &e);
	set32(&e, PH_AT(codec), c);
	set32(&e, PH_AT(reserved), 1);
	REFUSED(2, &e);
	set32(&e, PH_AT(reserved), 0);
	/* pfns: past guest RAM with or without the flag, another high bit, the page count wrapping */
	const size_t pfn0 = sizeof(struct ft_epoch_hdr) + sizeof(struct ft_pages_hdr);
	const uint64_t badpfn[] = { NPAGES, NPAGES | FT_PFN_ZERO, 1ull << 62 | 1, FT_PFN_ZERO >> 1 };
	for (size_t i = 0; i < ARRAY_SIZE(badpfn); i++) {
		set64(&e, pfn0 + 8, badpfn[i]); /* pfns[1] is a zero page */
		REFUSED(2, &e);
	}
	set64(&e, pfn0 + 8, 2 | FT_PFN_ZERO);
	/* a zero page's flag cleared (pfns[1] a plain page number), nzero, raw_len and the payload as they were:
	 * only the count of flags disagrees with nzero (taken, it would apply 5 pages from a payload of 4) */
	set64(&e, pfn0 + 8, 2);
	REFUSED(2, &e);
	set64(&e, pfn0 + 8, 2 | FT_PFN_ZERO);
	const uint64_t badn[] = { 7, 5, 0, (1ull << 61) + 6, UINT64_MAX, NPAGES + 1 };
	for (size_t i = 0; i < ARRAY_SIZE(badn); i++) {
		set64(&e, offsetof(struct ft_epoch_hdr, npages), badn[i]);
		REFUSED(2, &e);
	}
	set64(&e, offsetof(struct ft_epoch_hdr, npages), 6);
	/* wire_len: one off, absurd, wrapping */
	const uint64_t wl = ph.wire_len, badwl[] = { wl + 1, wl - 1, 0, UINT64_MAX, UINT64_MAX - 100 };
	for (size_t i = 0; i < ARRAY_SIZE(badwl); i++) {
		set64(&e, PH_AT(wire_len), badwl[i]);
		REFUSED(2, &e);
	}
	set64(&e, PH_AT(wire_len), wl);
	/* the padding before the state: zero bytes only */
	const size_t pay0 = sizeof(struct ft_epoch_hdr) + sizeof(struct ft_pages_hdr) + 6 * 8;
	if (FT_PAGES_PAD_TO(wl) != wl) {
		e.p[pay0 + FT_PAGES_PAD_TO(wl) - 1] = 1;
		REFUSED(2, &e);
		e.p[pay0 + FT_PAGES_PAD_TO(wl) - 1] = 0;
		padded_seen = true;
	}
	/* the payload truncated, or a byte longer */
	e.len--;
	REFUSED(2, &e);
	e.len++;
	/* the layout: a packed epoch without its flag (read as pages whole), to a backup of the old layout */
	set64(&e, offsetof(struct ft_epoch_hdr, flags), 0);
	REFUSED(2, &e);
	set64(&e, offsetof(struct ft_epoch_hdr, flags), FT_EPOCH_PACKED);
	b.packed = false;
	REFUSED(2, &e);
	b.packed = true;
	/* still good after all that: then applied */
	CHECK_EQ(backup_commit_epoch(&b, 2, e.p, e.len), 0);
	holds(pf, 6, pages);
	free(e.p);

	/* an epoch of the old layout (pages whole) to a backup paired for packed ones */
	struct ft_epoch_hdr h = { .epoch = 3, .npages = 1 };
	uint64_t one = 7;
	struct buf old = assemble(h, NULL, &one, pages, PAGE_SIZE);
	REFUSED(3, &old);
	b.packed = false; /* and a flagged pfn in the old layout */
	set64(&old, sizeof(h), 7 | FT_PFN_ZERO);
	REFUSED(3, &old);
	set64(&old, sizeof(h), 7);
	CHECK_EQ(backup_commit_epoch(&b, 3, old.p, old.len), 0);
	CHECK(memcmp(mem + 7 * PAGE_SIZE, pages, PAGE_SIZE) == 0);
	b.packed = true;
	free(old.p);

	if (c == FT_CODEC_NONE) {
		/* sizes that add up, but the payload is not the pages (a page short; a page more) */
		struct ft_pages_hdr p2 = { .codec = c, .raw_len = 2 * PAGE_SIZE, .wire_len = PAGE_SIZE };
		struct ft_epoch_hdr h2 = { .epoch = 4, .npages = 2, .flags = FT_EPOCH_PACKED };
		uint64_t two[2] = { 8, 9 };
		struct buf s = assemble(h2, &p2, two, pages, PAGE_SIZE);
		REFUSED(4, &s);
		free(s.p);
		p2.wire_len = 3 * PAGE_SIZE;
		s = assemble(h2, &p2, two, pages, 3 * PAGE_SIZE);
		REFUSED(4, &s);
		free(s.p);
	} else {
		/* chunks that do not decompress to what the header says: a chunk's length word broken */
		struct buf s = packed(4, false, pf, 6, pages, c, &ph);
		uint32_t w;
		memcpy(&w, s.p + pay0, 4);
		set32(&s, pay0, w - 1);
		REFUSED(4, &s);
		set32(&s, pay0, w | FT_CHUNK_STORED);
		REFUSED(4, &s);
		set32(&s, pay0, w);
		/* raw_len and nzero agreeing with each other and the flags, but not with the chunks */
		set64(&s, pfn0 + 0, 1 | FT_PFN_ZERO);
		set64(&s, PH_AT(nzero), 3);
		set64(&s, PH_AT(raw_len), raw - PAGE_SIZE);
		REFUSED(4, &s);
		free(s.p);
	}
	free(pages);
}

static void test_commit_hostile(void)
{
	for (unsigned c = 0; c < FT_CODEC_COUNT; c++)
		commit_hostile(c);
	CHECK(padded_seen); /* lz4's or zstd's payload was not a multiple of 8 */
}

/* A valid epoch packed with another codec than the HELLO's (a zstd epoch to a backup paired for lz4...): the
 * page header's codec alone refuses it; the same bytes commit once the backup is paired for that codec. */
static void test_codec_mismatch(void)
{
	uint64_t pf[4] = { 3, 4, 5, 6 };
	static const enum kind k[] = { K_TEXT, K_ZERO, K_STRUCTS, K_PATTERN };
	uint8_t *pages = pages_of(4, k, 4);
	for (unsigned c = 0; c < FT_CODEC_COUNT; c++)
		for (unsigned d = 0; d < FT_CODEC_COUNT; d++) {
			if (c == d)
				continue;
			backup_fresh(c);
			struct ft_pages_hdr ph;
			struct buf e = packed(1, true, pf, 4, pages, d, &ph);
			CHECK_EQ(ph.codec, d);
			CHECK_EQ(ph.nzero, 1);
			REFUSED(1, &e);
			b.codec = d;
			CHECK_EQ(backup_commit_epoch(&b, 1, e.p, e.len), 0);
			CHECK(b.have_baseline && b.committed == 1);
			holds(pf, 4, pages);
			free(e.p);
		}
	free(pages);
}

/* The FT_EPOCH bound holds what a packer can send: a guest whose every page is incompressible. */
static void test_frame_bound(void)
{
	static const enum kind random[] = { K_RANDOM };
	uint64_t n = NPAGES;
	uint8_t *pages = pages_of(n, random, 1);
	uint64_t *pfns = malloc(n * 8);
	CHECK(pfns);
	for (uint64_t i = 0; i < n; i++)
		pfns[i] = i;
	for (unsigned c = 0; c < FT_CODEC_COUNT; c++) {
		struct ft_pages_hdr ph;
		struct buf e = packed(1, true, pfns, n, pages, c, &ph);
		/* its header, pfns and pages (3 chunks, all stored), then the largest state and disk log: the bound */
		uint64_t worst = sizeof(struct ft_epoch_hdr) + sizeof(struct ft_pages_hdr) + n * 8 +
				 FT_PAGES_PAD_TO(ph.wire_len);
		CHECK(e.len <= ft_data_frame_max(FT_EPOCH, n, 1));
		CHECK(worst + FT_MAX_STATE(1) + DISKLOG_MAX_BYTES <= ft_data_frame_max(FT_EPOCH, n, 1));
		if (c != FT_CODEC_NONE) {
			CHECK_EQ(ph.wire_len, n * PAGE_SIZE + 4 * 3);
			CHECK(ft_data_frame_max(FT_EPOCH, n, 1) - (worst + FT_MAX_STATE(1) + DISKLOG_MAX_BYTES) < 8);
		}
		free(e.p);
	}
	free(pages);
	free(pfns);
}

int main(void)
{
	mem = aligned_alloc(PAGE_SIZE, MEM_SIZE);
	mem_before = malloc(MEM_SIZE);
	CHECK(mem && mem_before);
	test_names();
	test_pack();
	test_commit_roundtrip();
	test_unpack_hostile();
	test_commit_hostile();
	test_codec_mismatch();
	test_frame_bound();
	free(b.state);
	gmem_free(&b.mem);
	ft_unpacker_free(&b.unpacker);
	ft_unpacker_free(&shared);
	free(mem);
	free(mem_before);
	TEST_DONE("test_compress");
}

/* compress.c - packing an epoch's pages for the wire (zero pages flagged, the rest in lz4/zstd chunks) and unpacking them, every length from the peer checked. */
#include "compress.h"
#include "../vmm/guest_mem.h"
#include "../vmm/util.h"
#include "hash.h"

#include <errno.h>
#include <lz4.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
/* for ZSTD_getFrameHeader (its prototype is in zstd.h's "static linking" part; libzstd.so exports it) */
#define ZSTD_STATIC_LINKING_ONLY
#include <zstd.h>

#define CHUNK_BYTES ((size_t)FT_CHUNK_PAGES * PAGE_SIZE)
#define ZSTD_LEVEL 1 /* its fastest regular level: the sender must keep up with the epochs */

static const char *const names[FT_CODEC_COUNT] = { "none", "lz4", "zstd" };

const char *ft_codec_name(unsigned codec)
{
	return codec < FT_CODEC_COUNT ? names[codec] : "?";
}

int ft_codec_parse(const char *name, enum ft_codec *codec)
{
	for (unsigned i = 0; i < FT_CODEC_COUNT; i++)
		if (!strcmp(name, names[i])) {
			*codec = (enum ft_codec)i;
			return 0;
		}
	return -EINVAL;
}

/* ---- the sender's side ----------------------------------------------------------------------- */

int ft_packer_init(struct ft_packer *pk, enum ft_codec codec)
{
	*pk = (struct ft_packer){ .codec = codec };
	if (codec == FT_CODEC_LZ4)
		pk->ctx = malloc((size_t)LZ4_sizeofState());
	else if (codec == FT_CODEC_ZSTD)
		pk->ctx = ZSTD_createCCtx();
	else
		return 0;
	return pk->ctx ? 0 : -ENOMEM;
}

void ft_packer_free(struct ft_packer *pk)
{
	if (pk->codec == FT_CODEC_ZSTD)
		ZSTD_freeCCtx(pk->ctx);
	else
		free(pk->ctx);
	free(pk->out);
	free(pk->raw);
	ft_delta_cache_free(&pk->delta);
	*pk = (struct ft_packer){ .codec = FT_CODEC_NONE };
}

int ft_packer_delta(struct ft_packer *pk, uint64_t cache_bytes)
{
	ft_delta_cache_free(&pk->delta);
	return ft_delta_cache_init(&pk->delta, cache_bytes);
}

void ft_packer_forget(struct ft_packer *pk)
{
	ft_delta_cache_clear(&pk->delta);
}

uint64_t ft_pack_bound(uint64_t n)
{
	return n * PAGE_SIZE + (n + FT_CHUNK_PAGES - 1) / FT_CHUNK_PAGES * 4;
}

/* Flag the zero pages and move the others down over them: how many are left. A zero page's cached content
 * is stale from now on. */
static uint64_t drop_zero_pages(struct ft_delta_cache *dc, uint8_t *pages, uint64_t *pfns, uint64_t n)
{
	uint64_t k = 0;
	for (uint64_t i = 0; i < n; i++) {
		const uint8_t *pg = pages + i * PAGE_SIZE;
		if (page_is_zero(pg)) {
			ft_delta_cache_drop(dc, pfns[i]);
			pfns[i] |= FT_PFN_ZERO;
			continue;
		}
		if (k != i)
			memcpy(pages + k * PAGE_SIZE, pg, PAGE_SIZE);
		k++;
	}
	return k;
}

/* One chunk compressed into dst (room for cap bytes): its size, or 0 when it does not fit (then it
 * travels stored: compressing it did not pay). */
static size_t compress_chunk(struct ft_packer *pk, const uint8_t *src, size_t len, uint8_t *dst, size_t cap)
{
	if (pk->codec == FT_CODEC_LZ4) {
		int n = LZ4_compress_fast_extState(pk->ctx, (const char *)src, (char *)dst, (int)len, (int)cap, 1);
		return n > 0 ? (size_t)n : 0;
	}
	size_t n = ZSTD_compressCCtx(pk->ctx, dst, cap, src, len, ZSTD_LEVEL);
	return ZSTD_isError(n) ? 0 : n;
}

/* pk->out of at least need bytes (its old contents do not matter). */
static int out_room(struct ft_packer *pk, uint64_t need)
{
	if (need <= pk->cap)
		return 0;
	uint8_t *b = malloc(need);
	if (!b)
		return -ENOMEM;
	free(pk->out);
	pk->out = b;
	pk->cap = need;
	return 0;
}

/* The raw_len bytes at raw as chunks (of CHUNK_BYTES, the last one shorter) into pk->out: the bytes written. */
static uint64_t write_chunks(struct ft_packer *pk, const uint8_t *raw, uint64_t raw_len)
{
	uint8_t *o = pk->out;
	for (uint64_t i = 0; i < raw_len; i += CHUNK_BYTES) {
		size_t len = (size_t)MIN(raw_len - i, (uint64_t)CHUNK_BYTES);
		const uint8_t *src = raw + i;
		size_t c = compress_chunk(pk, src, len, o + 4, len - 1);
		uint32_t word = (uint32_t)c;
		if (!c) {
			memcpy(o + 4, src, len);
			c = len;
			word = (uint32_t)len | FT_CHUNK_STORED;
		}
		memcpy(o, &word, 4);
		o += 4 + c;
	}
	return (uint64_t)(o - pk->out);
}

/* The k non-zero pages (pages, in the order of the unflagged pfns among n) into pk->raw, each whole or as a
 * delta against its cached last content where that is small enough; every one becomes its pfn's cached
 * content. The bytes written (at most k pages: a delta is shorter than a page). */
static int64_t delta_pass(struct ft_packer *pk, const uint8_t *pages, uint64_t *pfns, uint64_t n, uint64_t k)
{
	if (k * PAGE_SIZE > pk->raw_cap) {
		uint8_t *b = malloc(k * PAGE_SIZE);
		if (!b)
			return -ENOMEM;
		free(pk->raw);
		pk->raw = b;
		pk->raw_cap = k * PAGE_SIZE;
	}
	uint64_t off = 0, j = 0;
	for (uint64_t i = 0; i < n; i++) {
		if (pfns[i] & FT_PFN_ZERO)
			continue;
		const uint8_t *pg = pages + j++ * PAGE_SIZE;
		const uint8_t *old = ft_delta_cache_get(&pk->delta, pfns[i]);
		/* room: off <= (j - 1) pages, and a record takes less than the page it stands for */
		int len = old ? ft_delta_encode(old, pg, pk->raw + off + 2) : -1;
		if (len >= 0) {
			pk->raw[off] = (uint8_t)len;
			pk->raw[off + 1] = (uint8_t)(len >> 8);
			off += 2 + (uint64_t)len;
			pfns[i] |= FT_PFN_DELTA;
			pk->ndelta++;
		} else {
			memcpy(pk->raw + off, pg, PAGE_SIZE);
			off += PAGE_SIZE;
		}
		ft_delta_cache_put(&pk->delta, pfns[i] & ~FT_PFN_DELTA, pg);
	}
	return (int64_t)off;
}

int ft_pack_pages(struct ft_packer *pk, uint8_t *pages, uint64_t *pfns, uint64_t n, struct ft_pages_hdr *ph,
		  const uint8_t **payload)
{
	uint64_t k = drop_zero_pages(&pk->delta, pages, pfns, n);
	uint64_t raw_len = k * PAGE_SIZE;
	const uint8_t *raw = pages;
	pk->ndelta = 0;
	if (pk->delta.nslots && pk->delta_on && k) {
		int64_t len = delta_pass(pk, pages, pfns, n, k);
		if (len < 0)
			return (int)len;
		raw_len = (uint64_t)len;
		raw = pk->raw;
	}
	*ph = (struct ft_pages_hdr){ .codec = pk->codec, .nzero = n - k, .raw_len = raw_len, .wire_len = raw_len };
	*payload = raw;
	if (pk->codec == FT_CODEC_NONE || raw_len == 0) /* no chunk for no page */
		return 0;
	int r = out_room(pk, ft_pack_bound(k));
	if (r)
		return r;
	ph->wire_len = write_chunks(pk, raw, raw_len);
	*payload = pk->out;
	return 0;
}

/* ---- the backup's side: everything here comes from the peer ------------------------------------ */

void ft_unpacker_free(struct ft_unpacker *u)
{
	ZSTD_freeDCtx(u->zstd); /* NULL is fine */
	u->zstd = NULL;
}

/* The 4 bytes at p as a little-endian number (a zstd magic). */
static uint32_t le32(const uint8_t *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

/* Is the zstd chunk (c bytes) exactly what a packer writes: one frame of the current format (its magic:
 * not a skippable frame, nor a legacy format's, which a libzstd built with legacy decoders would still
 * decode), without a dictionary, that says it holds len bytes, nothing after it? (Error codes are never c
 * or len.) */
static bool zstd_frame_ok(const uint8_t *src, size_t c, size_t len)
{
	if (c < 4 || le32(src) != ZSTD_MAGICNUMBER)
		return false;
	ZSTD_frameHeader fh;
	if (ZSTD_getFrameHeader(&fh, src, c) != 0 || fh.frameType != ZSTD_frame || fh.dictID != 0)
		return false;
	return ZSTD_findFrameCompressedSize(src, c) == c && ZSTD_getFrameContentSize(src, c) == len;
}

/* c bytes of one lz4 block or zstd frame into exactly len bytes at dst: 0 or -EBADMSG. */
static int decompress(ZSTD_DCtx *dctx, enum ft_codec codec, const uint8_t *src, size_t c, uint8_t *dst, size_t len)
{
	if (codec == FT_CODEC_LZ4) /* c < 2^31 (the length word's other bit), len at most a chunk */
		return LZ4_decompress_safe((const char *)src, (char *)dst, (int)c, (int)len) == (int)len ? 0 : -EBADMSG;
	if (!zstd_frame_ok(src, c, len))
		return -EBADMSG;
	size_t n = ZSTD_decompressDCtx(dctx, dst, len, src, c); /* starts afresh: an earlier failure leaves nothing */
	return !ZSTD_isError(n) && n == len ? 0 : -EBADMSG;
}

/* The chunk at *off (its length word, then its bytes, all inside the payload) into len bytes at dst. */
static int unpack_chunk(ZSTD_DCtx *dctx, enum ft_codec codec, const uint8_t *wire, uint64_t wire_len, uint64_t *off,
			uint8_t *dst, size_t len)
{
	uint32_t word;
	if (wire_len - *off < 4)
		return -EBADMSG;
	memcpy(&word, wire + *off, 4);
	*off += 4;
	uint32_t c = word & ~FT_CHUNK_STORED;
	if (c == 0 || c > wire_len - *off)
		return -EBADMSG;
	const uint8_t *src = wire + *off;
	*off += c;
	if (!(word & FT_CHUNK_STORED))
		return decompress(dctx, codec, src, c, dst, len);
	if (c != len)
		return -EBADMSG;
	memcpy(dst, src, len);
	return 0;
}

int ft_unpack_pages(struct ft_unpacker *u, enum ft_codec codec, const uint8_t *wire, uint64_t wire_len,
		    uint8_t *dst, uint64_t raw_len)
{
	if (codec != FT_CODEC_LZ4 && codec != FT_CODEC_ZSTD)
		return -EBADMSG;
	struct ft_unpacker once = { 0 };
	if (!u)
		u = &once;
	if (codec == FT_CODEC_ZSTD && !u->zstd && !(u->zstd = ZSTD_createDCtx()))
		return -ENOMEM;
	uint64_t off = 0;
	int r = 0;
	/* one chunk per CHUNK_BYTES of raw_len (bounded by the caller), each taking at least 5 wire bytes */
	for (uint64_t done = 0; !r && done < raw_len;) {
		size_t len = (size_t)MIN(raw_len - done, (uint64_t)CHUNK_BYTES);
		r = unpack_chunk(u->zstd, codec, wire, wire_len, &off, dst + done, len);
		done += len;
	}
	if (!r && off != wire_len)
		r = -EBADMSG;
	ft_unpacker_free(&once);
	return r;
}

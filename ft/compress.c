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
	*pk = (struct ft_packer){ .codec = FT_CODEC_NONE };
}

uint64_t ft_pack_bound(uint64_t n)
{
	return n * PAGE_SIZE + (n + FT_CHUNK_PAGES - 1) / FT_CHUNK_PAGES * 4;
}

/* Flag the zero pages and move the others down over them: how many are left. */
static uint64_t drop_zero_pages(uint8_t *pages, uint64_t *pfns, uint64_t n)
{
	uint64_t k = 0;
	for (uint64_t i = 0; i < n; i++) {
		const uint8_t *pg = pages + i * PAGE_SIZE;
		if (page_is_zero(pg)) {
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

/* The k pages at pages as chunks into pk->out: the bytes written. */
static uint64_t write_chunks(struct ft_packer *pk, const uint8_t *pages, uint64_t k)
{
	uint8_t *o = pk->out;
	for (uint64_t i = 0; i < k; i += FT_CHUNK_PAGES) {
		size_t len = (size_t)(MIN(k - i, (uint64_t)FT_CHUNK_PAGES) * PAGE_SIZE);
		const uint8_t *src = pages + i * PAGE_SIZE;
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

int ft_pack_pages(struct ft_packer *pk, uint8_t *pages, uint64_t *pfns, uint64_t n, struct ft_pages_hdr *ph,
		  const uint8_t **payload)
{
	uint64_t k = drop_zero_pages(pages, pfns, n);
	*ph = (struct ft_pages_hdr){ .codec = pk->codec, .nzero = n - k, .raw_len = k * PAGE_SIZE,
				     .wire_len = k * PAGE_SIZE };
	*payload = pages;
	if (pk->codec == FT_CODEC_NONE || k == 0) /* no chunk for no page */
		return 0;
	int r = out_room(pk, ft_pack_bound(k));
	if (r)
		return r;
	ph->wire_len = write_chunks(pk, pages, k);
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
	if ((codec != FT_CODEC_LZ4 && codec != FT_CODEC_ZSTD) || raw_len % PAGE_SIZE)
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

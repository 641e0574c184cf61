/* compress.h - an epoch's pages on the wire: zero pages as a flag on their pfn, the others as they are or in lz4/zstd chunks. */
#ifndef FTVMM_COMPRESS_H
#define FTVMM_COMPRESS_H

#include "delta.h"
#include "proto.h"

#include <stdint.h>

/* The page payload's codec (`run --compress`), named in the HELLO and in every packed epoch. */
enum ft_codec { FT_CODEC_NONE = 0, FT_CODEC_LZ4, FT_CODEC_ZSTD, FT_CODEC_COUNT };
#define FT_CODEC_NAMES "none, lz4 or zstd"

/* "none", "lz4", "zstd"; "?" for anything else. */
const char *ft_codec_name(unsigned codec);
/* A codec by its name: 0, or -EINVAL for a name this build does not know. */
int ft_codec_parse(const char *name, enum ft_codec *codec);

/* The primary's sender packs each epoch with one of these (never the pause: it only copies). */
struct ft_packer {
	enum ft_codec codec;
	void *ctx;    /* ZSTD_CCtx, or lz4's state */
	uint8_t *out; /* the compressed payload of the epoch being sent (kept: the next reuses it) */
	size_t cap;
	struct ft_delta_cache delta; /* `run --delta-cache`: pages as last sent (nslots 0: no deltas) */
	uint8_t *raw;                /* with deltas: the epoch's pages, whole or as delta records */
	size_t raw_cap;
	bool delta_on;   /* the backup applies deltas (its HELLO_OK said so): without it the cache stays unused */
	uint64_t ndelta; /* pages the last ft_pack_pages sent as deltas */
};
/* 0 or -ENOMEM. */
int ft_packer_init(struct ft_packer *pk, enum ft_codec codec);
/* Frees what init and packing allocated (a zeroed packer is fine). */
void ft_packer_free(struct ft_packer *pk);
/* Send pages as deltas where that pays, against a cache of bytes (whole pages) of what was sent: only to a
 * backup that said it applies them. 0, -EINVAL (less than a page), -ENOMEM. */
int ft_packer_delta(struct ft_packer *pk, uint64_t cache_bytes);
/* Forget what was sent (a new backup: its first epoch carries every page whole). */
void ft_packer_forget(struct ft_packer *pk);

/* Pack n staged pages (pages: n whole pages; pfns: their n page numbers) for the wire, in place: each
 * zero page's pfn gets FT_PFN_ZERO and the other pages move down over the zero ones; with deltas on, each
 * page whose last sent content is cached and whose delta record is small enough (FT_DELTA_MAX) becomes a
 * length word and that record (its pfn gets FT_PFN_DELTA), in pk->raw; then all that (ph->raw_len bytes)
 * is compressed into pk->out (codec none: sent as it is). Fills ph and *payload (ph->wire_len bytes, valid
 * until the next call). 0 or -ENOMEM. */
int ft_pack_pages(struct ft_packer *pk, uint8_t *pages, uint64_t *pfns, uint64_t n, struct ft_pages_hdr *ph,
		  const uint8_t **payload);
/* The most bytes the chunks of n non-zero pages take (every chunk stored). */
uint64_t ft_pack_bound(uint64_t n);

/* The backup's decompression state: a zstd context, made for the first zstd chunk and kept for the next
 * epochs (a zeroed one has none yet). */
struct ft_unpacker {
	void *zstd; /* ZSTD_DCtx */
};
/* Frees its context (a zeroed unpacker is fine) and leaves it zeroed. */
void ft_unpacker_free(struct ft_unpacker *u);

/* The backup's side: the chunks of a packed payload from the peer (wire, wire_len bytes; codec lz4 or
 * zstd) into dst, which holds raw_len bytes (pages and delta records; the caller bounds raw_len by the guest before
 * allocating dst). Each chunk's length word must lie inside the payload and its bytes decompress to
 * exactly its pages (a zstd chunk: one frame of the current format, its magic first, no dictionary, whose
 * header says that size, nothing after it), the chunks must fill dst and tile the payload with nothing
 * left over. u: the context to use and keep (NULL: one for this call only). 0, or -EBADMSG (dst then holds
 * garbage), -ENOMEM. */
int ft_unpack_pages(struct ft_unpacker *u, enum ft_codec codec, const uint8_t *wire, uint64_t wire_len,
		    uint8_t *dst, uint64_t raw_len);

#endif

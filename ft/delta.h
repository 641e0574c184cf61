/* delta.h - a dirty page as a delta against its content in the previous epoch that sent it (XBZRLE-style), and the bounded cache of those contents. */
#ifndef FTVMM_DELTA_H
#define FTVMM_DELTA_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* A delta record: runs over the page, each "skip S unchanged bytes, then the next L bytes are these", S and
 * L as LEB128 numbers, L > 0, up to the page's end; unchanged bytes at the end are not written. It travels
 * as a 2-byte little-endian length then the record. A page goes as a delta only when that (length word and
 * record) takes at most FT_DELTA_MAX bytes: less than half a page, or it is not worth the cache. */
#define FT_DELTA_MAX 2048u

/* The record for page new against old (both PAGE_SIZE bytes) into out (room for FT_DELTA_MAX - 2 bytes): its
 * length, or -1 when it would not fit (send the page whole). */
int ft_delta_encode(const uint8_t *old, const uint8_t *new_, uint8_t *out);
/* Does rec (len bytes, from the peer) decode onto a page: runs in order, L > 0, numbers of at most two bytes,
 * every run inside the page, nothing after the last one? */
bool ft_delta_valid(const uint8_t *rec, size_t len);
/* Apply a record that ft_delta_valid accepted to page (PAGE_SIZE bytes), in place. */
void ft_delta_apply(uint8_t *page, const uint8_t *rec, size_t len);

/* The sender's copies of pages as last sent, direct-mapped by pfn (a page evicts the one in its slot): a
 * page found here is what the backup holds for that pfn, so a delta against it decodes there. Every page
 * sent must update its slot (ft_delta_cache_put) or drop it (a zero page: ft_delta_cache_drop). */
struct ft_delta_cache {
	uint64_t nslots; /* 0: off */
	uint64_t *tags;  /* pfn + 1 in each slot, 0: empty */
	uint8_t *pages;  /* nslots pages */
};
/* A cache of bytes (whole pages, at least one; at most what the guest has is the caller's bound). 0 or -ENOMEM. */
int ft_delta_cache_init(struct ft_delta_cache *c, uint64_t bytes);
void ft_delta_cache_free(struct ft_delta_cache *c);
/* Forget every page (a new backup, whose first epoch carries every page). */
void ft_delta_cache_clear(struct ft_delta_cache *c);
/* pfn's last sent content, or NULL. */
const uint8_t *ft_delta_cache_get(const struct ft_delta_cache *c, uint64_t pfn);
/* Record page as pfn's last sent content (evicting its slot's page). */
void ft_delta_cache_put(struct ft_delta_cache *c, uint64_t pfn, const uint8_t *page);
/* pfn's content is no longer known (it went as a zero page). */
void ft_delta_cache_drop(struct ft_delta_cache *c, uint64_t pfn);

#endif

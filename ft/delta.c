/* delta.c - XBZRLE-style page deltas (encode on the sender, check and apply on the backup) and the sender's direct-mapped page cache. */
#include "delta.h"
#include "../vmm/guest_mem.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

/* Equal bytes shorter than this inside a changed stretch travel as part of it: a new run would cost its two
 * numbers (two bytes at least) for nothing. */
#define GAP_MIN 3

/* The first index from i on where a and b differ (PAGE_SIZE if none), eight bytes at a time. */
static size_t same_until(const uint8_t *a, const uint8_t *b, size_t i)
{
	while (i < PAGE_SIZE && (i & 7)) {
		if (a[i] != b[i])
			return i;
		i++;
	}
	for (; i + 8 <= PAGE_SIZE; i += 8) {
		uint64_t x, y;
		memcpy(&x, a + i, 8);
		memcpy(&y, b + i, 8);
		if (x != y)
			break;
	}
	while (i < PAGE_SIZE && a[i] == b[i])
		i++;
	return i;
}

/* The end of the changed stretch that starts at i: the first run of GAP_MIN equal bytes, or the page's end. */
static size_t changed_until(const uint8_t *a, const uint8_t *b, size_t i)
{
	size_t eq = 0;
	for (; i < PAGE_SIZE; i++) {
		if (a[i] != b[i]) {
			eq = 0;
		} else if (++eq == GAP_MIN) {
			return i + 1 - GAP_MIN;
		}
	}
	return PAGE_SIZE - eq; /* equal bytes at the page's end are not sent */
}

/* v (< 2^14) as LEB128 at out[*n], if it fits under cap. */
static bool put_num(uint8_t *out, size_t *n, size_t cap, size_t v)
{
	size_t need = v < 0x80 ? 1 : 2;
	if (cap - *n < need)
		return false;
	if (v < 0x80) {
		out[(*n)++] = (uint8_t)v;
	} else {
		out[(*n)++] = (uint8_t)(0x80 | (v & 0x7f));
		out[(*n)++] = (uint8_t)(v >> 7);
	}
	return true;
}

int ft_delta_encode(const uint8_t *old, const uint8_t *new_, uint8_t *out)
{
	const size_t cap = FT_DELTA_MAX - 2;
	size_t n = 0, pos = 0;
	for (;;) {
		size_t start = same_until(old, new_, pos);
		if (start == PAGE_SIZE)
			return (int)n;
		size_t end = changed_until(old, new_, start);
		size_t len = end - start;
		if (!put_num(out, &n, cap, start - pos) || !put_num(out, &n, cap, len) || cap - n < len)
			return -1;
		memcpy(out + n, new_ + start, len);
		n += len;
		pos = end;
	}
}

/* A LEB128 number of one or two bytes from rec[*off] (off < len checked here): false if cut or longer. */
static bool get_num(const uint8_t *rec, size_t len, size_t *off, size_t *v)
{
	if (*off >= len)
		return false;
	uint8_t b0 = rec[(*off)++];
	if (!(b0 & 0x80)) {
		*v = b0;
		return true;
	}
	if (*off >= len || (rec[*off] & 0x80))
		return false;
	*v = (size_t)(b0 & 0x7f) | (size_t)rec[(*off)++] << 7;
	return true;
}

bool ft_delta_valid(const uint8_t *rec, size_t len)
{
	size_t off = 0, pos = 0;
	while (off < len) {
		size_t skip, run;
		if (!get_num(rec, len, &off, &skip) || !get_num(rec, len, &off, &run))
			return false;
		/* each number < 2^14: these sums cannot wrap */
		if (run == 0 || skip > PAGE_SIZE - pos || run > PAGE_SIZE - pos - skip || run > len - off)
			return false;
		pos += skip + run;
		off += run;
	}
	return true;
}

void ft_delta_apply(uint8_t *page, const uint8_t *rec, size_t len)
{
	size_t off = 0, pos = 0;
	while (off < len) {
		size_t skip = 0, run = 0;
		get_num(rec, len, &off, &skip);
		get_num(rec, len, &off, &run);
		pos += skip;
		memcpy(page + pos, rec + off, run);
		pos += run;
		off += run;
	}
}

/* ---- the sender's cache ---------------------------------------------------------------------- */

int ft_delta_cache_init(struct ft_delta_cache *c, uint64_t bytes)
{
	*c = (struct ft_delta_cache){ 0 };
	uint64_t n = bytes / PAGE_SIZE;
	if (!n)
		return -EINVAL;
	c->tags = calloc(n, sizeof(*c->tags));
	c->pages = malloc(n * PAGE_SIZE); /* bytes fit a size_t: n * PAGE_SIZE <= bytes */
	if (!c->tags || !c->pages) {
		ft_delta_cache_free(c);
		return -ENOMEM;
	}
	c->nslots = n;
	return 0;
}

void ft_delta_cache_free(struct ft_delta_cache *c)
{
	free(c->tags);
	free(c->pages);
	*c = (struct ft_delta_cache){ 0 };
}

void ft_delta_cache_clear(struct ft_delta_cache *c)
{
	if (c->nslots)
		memset(c->tags, 0, c->nslots * sizeof(*c->tags));
}

const uint8_t *ft_delta_cache_get(const struct ft_delta_cache *c, uint64_t pfn)
{
	if (!c->nslots)
		return NULL;
	uint64_t s = pfn % c->nslots;
	return c->tags[s] == pfn + 1 ? c->pages + s * PAGE_SIZE : NULL;
}

void ft_delta_cache_put(struct ft_delta_cache *c, uint64_t pfn, const uint8_t *page)
{
	if (!c->nslots)
		return;
	uint64_t s = pfn % c->nslots;
	c->tags[s] = pfn + 1;
	memcpy(c->pages + s * PAGE_SIZE, page, PAGE_SIZE);
}

void ft_delta_cache_drop(struct ft_delta_cache *c, uint64_t pfn)
{
	if (c->nslots && c->tags[pfn % c->nslots] == pfn + 1)
		c->tags[pfn % c->nslots] = 0;
}

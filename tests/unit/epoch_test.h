/* epoch_test.h - the unit tests' FT_EPOCH payloads built by hand: a growing buffer, a one-property state fdt, the parts put together. */
#ifndef FTVMM_EPOCH_TEST_H
#define FTVMM_EPOCH_TEST_H

#include "../../ft/proto.h"
#include "test.h"

#include <libfdt.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

struct buf {
	uint8_t *p;
	size_t len;
};

/* Append n bytes (static inline here and below: a test that includes this for one piece leaves the rest unused) */
static inline void put(struct buf *b, const void *src, size_t n)
{
	b->p = realloc(b->p, b->len + n + 1);
	CHECK(b->p);
	if (n)
		memcpy(b->p + b->len, src, n);
	b->len += n;
}

/* A finished state fdt in dst[size]: one property, "epoch" = num. */
static inline void state_fdt_into(void *dst, int size, uint64_t num)
{
	CHECK_EQ(fdt_create(dst, size), 0);
	CHECK_EQ(fdt_finish_reservemap(dst), 0);
	CHECK_EQ(fdt_begin_node(dst, ""), 0);
	CHECK_EQ(fdt_property_u64(dst, "epoch", num), 0);
	CHECK_EQ(fdt_end_node(dst), 0);
	CHECK_EQ(fdt_finish(dst), 0);
}

/* The payload from its parts (hdr's state_len is the state's; its sizes otherwise as given). */
static inline struct buf assemble(struct ft_epoch_hdr h, const struct ft_pages_hdr *ph, const uint64_t *pfns,
				  const void *payload, size_t payload_len)
{
	uint8_t state[128];
	state_fdt_into(state, sizeof(state), h.epoch);
	h.state_len = fdt_totalsize(state);
	struct buf b = { 0 };
	put(&b, &h, sizeof(h));
	if (ph)
		put(&b, ph, sizeof(*ph));
	put(&b, pfns, h.npages * 8);
	put(&b, payload, payload_len);
	if (ph) /* the state starts 8-byte aligned */
		put(&b, "\0\0\0\0\0\0\0", FT_PAGES_PAD_TO(payload_len) - payload_len);
	put(&b, state, h.state_len);
	return b;
}

#endif

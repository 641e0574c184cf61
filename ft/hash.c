/* hash.c - the 64-bit checksum of snapshot files and replication frames, and the zero-page test. */
#include "hash.h"
#include "../vmm/guest_mem.h"

#include <string.h>

#define P1 0x9E3779B185EBCA87ull
#define P2 0xC2B2AE3D27D4EB4Full

static inline uint64_t rotl(uint64_t x, int r) { return (x << r) | (x >> (64 - r)); }
static inline uint64_t round64(uint64_t acc, uint64_t in) { return rotl(acc + in * P2, 31) * P1; }

void snap_hash_init(struct snap_hash *h, uint64_t seed)
{
	h->lane[0] = seed + P1 + P2;
	h->lane[1] = seed + P2;
	h->lane[2] = seed;
	h->lane[3] = seed - P1;
	h->len = 0;
}

void snap_hash_update(struct snap_hash *h, const void *p, size_t len)
{
	const uint8_t *b = p;
	size_t i = 0;
	for (; i + 32 <= len; i += 32) {
		uint64_t w[4];
		memcpy(w, b + i, 32);
		h->lane[0] = round64(h->lane[0], w[0]);
		h->lane[1] = round64(h->lane[1], w[1]);
		h->lane[2] = round64(h->lane[2], w[2]);
		h->lane[3] = round64(h->lane[3], w[3]);
	}
	for (; i < len; i++) /* tail: only at the very end */
		h->lane[i & 3] = round64(h->lane[i & 3], b[i] + 1);
	h->len += len;
}

uint64_t snap_hash_final(const struct snap_hash *h)
{
	uint64_t x = rotl(h->lane[0], 1) + rotl(h->lane[1], 7) + rotl(h->lane[2], 12) + rotl(h->lane[3], 18);
	x ^= h->len * P1;
	x ^= x >> 33;
	x *= P2;
	x ^= x >> 29;
	return x;
}

int page_is_zero(const void *p)
{
	const uint64_t *w = p;
	for (size_t i = 0; i < PAGE_SIZE / 8; i += 8)
		if (w[i] | w[i + 1] | w[i + 2] | w[i + 3] | w[i + 4] | w[i + 5] | w[i + 6] | w[i + 7])
			return 0;
	return 1;
}

/* hash.h - what the snapshot file and the replication stream both run over every page: a fast checksum and a zero test. */
#ifndef FTVMM_HASH_H
#define FTVMM_HASH_H

#include <stddef.h>
#include <stdint.h>

/* Fast 64-bit hash (4 independent lanes, so it keeps up with memcpy). Not cryptographic: it catches
 * truncation and corruption, not an attacker. */
struct snap_hash {
	uint64_t lane[4];
	uint64_t len;
};
void snap_hash_init(struct snap_hash *h, uint64_t seed);
/* len must be a multiple of 32 except for the last call */
void snap_hash_update(struct snap_hash *h, const void *p, size_t len);
uint64_t snap_hash_final(const struct snap_hash *h);

/* True if the 4 KiB page is all zeros. */
int page_is_zero(const void *p);

#endif

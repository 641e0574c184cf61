/* fdt_prop.h - checked readers and error-mapped writers of flattened-device-tree properties (checkpoint state). */
#ifndef FTVMM_FDT_PROP_H
#define FTVMM_FDT_PROP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/*
 * Checkpoint state comes from a snapshot file or the FT peer: untrusted. Every reader checks the
 * property's exact size (or its bound) before using it, reads unaligned (properties are only 4-byte
 * aligned) and fails with -EINVAL, leaving *v / out untouched, when the property is missing, has
 * another size or is out of range; a debug line (FTVMM_DEBUG) names it. The writers add to the
 * current node of a tree in sequential-write mode; libfdt's errors come back as -ENOSPC (tree full)
 * or -EINVAL.
 */

/* True when the len bytes at fdt hold one whole, well-formed tree (version >= 17) that libfdt may
 * walk: the header, every block inside len, every tag and name inside the structure block. */
bool fdtp_whole(const void *fdt, size_t len);

/* A 32-bit cell; _max also refuses a value above max. */
int fdtp_u32(const void *fdt, int node, const char *name, uint32_t *v);
int fdtp_u32_max(const void *fdt, int node, const char *name, uint32_t max, uint32_t *v);
/* Several bounded 32-bit cells, fdtp_u32_max for each in turn, stopping at the first failure. */
struct fdtp_field {
	const char *name;
	uint32_t max;
	uint32_t *v;
};
int fdtp_u32_fields(const void *fdt, int node, const struct fdtp_field *f, size_t n);
/* A 64-bit value (two cells). */
int fdtp_u64(const void *fdt, int node, const char *name, uint64_t *v);
/* Exactly len bytes, copied to out. */
int fdtp_copy(const void *fdt, int node, const char *name, void *out, size_t len);
/* A pointer into the tree to exactly len bytes, or NULL (missing or another size). */
const void *fdtp_exact(const void *fdt, int node, const char *name, size_t len);
/* A pointer into the tree and the length, which must be <= maxlen. */
int fdtp_ref(const void *fdt, int node, const char *name, uint32_t maxlen, const uint8_t **p, uint32_t *len);

int fdtp_put_u32(void *fdt, const char *name, uint32_t v);
int fdtp_put_u64(void *fdt, const char *name, uint64_t v);
int fdtp_put_blob(void *fdt, const char *name, const void *p, uint32_t len);

#endif

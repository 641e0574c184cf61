/* snapshot.h - the snapshot file: versioned header, device-tree state, sparse memory, one checksum over all. */
#ifndef FTVMM_SNAPSHOT_H
#define FTVMM_SNAPSHOT_H

#include <stddef.h>
#include <stdint.h>

#include "../vmm/guest_mem.h"
#include "hash.h"

struct vm;
struct machine;

#define SNAP_MAGIC "FTVMSNAP"
#define SNAP_MAJOR 1 /* a reader refuses any other major */
#define SNAP_MINOR 0 /* a newer minor only adds properties an older reader may ignore */
#define SNAP_ALIGN 4096

struct snap_header {
	char magic[8];
	uint16_t major, minor;
	uint32_t flags;
	uint64_t state_off, state_len; /* fdt blob */
	uint64_t bitmap_off;           /* one bit per RAM page: stored (non-zero) or not */
	uint64_t pages_off;            /* stored pages in ascending order, SNAP_ALIGN-aligned */
	uint64_t mem_size;
	uint64_t npages_stored;
	uint64_t checksum; /* snap_hash over state, bitmap and pages, seeded with the fields above */
	uint64_t reserved[3];
};

/* What a snapshot cost, for the control reply and the benchmark. */
struct snap_stats {
	uint64_t bytes;     /* file size */
	uint64_t pages;     /* non-zero pages stored */
	uint64_t state_ns;  /* vCPU + VM + device state capture (no memory) */
	uint64_t scan_ns;   /* zero-page scan of all RAM */
	uint64_t write_ns;  /* pages + state to the file, fsync and rename */
};

/* Write a snapshot of a paused VM to path: its state (state_capture), then a temp file in the same
 * directory, fsync, rename. Returns 0 or -errno with one line in err. On success fills *st when
 * non-NULL. */
int snapshot_write(struct vm *vm, const struct machine *mach, const char *path, struct snap_stats *st, char *err,
		   size_t errlen);

/* An opened, fully verified snapshot. */
struct snapshot {
	int fd;
	struct snap_header hdr;
	void *fdt;               /* the state blob (malloc'd) */
	unsigned long *bitmap;   /* malloc'd */
	uint64_t file_size;
};

/* Open and check: magic, version, sizes, and the checksum over everything (reads the whole file).
 * 0 or -errno with one line in err. */
int snapshot_open(const char *path, struct snapshot *s, char *err, size_t errlen);
/* Copy the stored pages into guest memory (sizes must match; zero pages are left as they are, so
 * the mapping must be fresh). Marks nothing dirty: this is the baseline. */
int snapshot_load_memory(struct snapshot *s, struct guest_mem *m, char *err, size_t errlen);
void snapshot_close(struct snapshot *s);

#endif

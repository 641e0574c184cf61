/* disklog.h - the disk writes of the current epoch, captured as they complete, for replication. */
#ifndef FTVMM_DISKLOG_H
#define FTVMM_DISKLOG_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>

/* One epoch's log never holds more than this (records + data). A guest writing faster than the
 * epochs drain (checkpoints wait while MAX_INFLIGHT_EPOCHS are unacked, the guest does not) would
 * otherwise grow it without bound. Past DISKLOG_SOFT_BYTES the engine is asked for an early
 * checkpoint; a write that would pass DISKLOG_MAX_BYTES is not recorded and the epoch fails with
 * -EFBIG (it cannot be replicated faithfully: the primary goes on unprotected). */
#define DISKLOG_MAX_BYTES (64ull << 20)
#define DISKLOG_SOFT_BYTES (DISKLOG_MAX_BYTES / 2)
#define DISKLOG_MAX_DISKS 16

struct disklog {
	pthread_mutex_t lock;
	uint8_t *buf; /* ft_disk_rec + data, back to back */
	size_t len, cap;
	uint64_t writes;
	int error; /* a record was lost (no memory, over the cap): the epoch cannot be replicated faithfully */
	bool asked; /* the soft limit was passed and `full` called, this epoch */
	void (*full)(void *ctx); /* past DISKLOG_SOFT_BYTES: take a checkpoint soon (called without l->lock) */
	void *full_ctx;
	uint64_t pending[DISKLOG_MAX_DISKS]; /* per disk: data bytes of writes in flight, as last admitted */
};

void disklog_init(struct disklog *l);
void disklog_destroy(struct disklog *l);
/* Record a write of len bytes at off on disk `disk` (iov in guest memory), or a zeroing (zero=true):
 * what reached the primary's image, logged when it completed. */
void disklog_add(struct disklog *l, unsigned disk, uint64_t off, const struct iovec *iov, unsigned n, uint64_t len,
		 bool zero);
/* Take the current log (caller frees *buf) and start an empty one. Returns -ENOMEM or -EFBIG if a
 * record was lost this epoch. */
int disklog_take(struct disklog *l, uint8_t **buf, size_t *len, uint64_t *writes);

/* Bytes logged so far this epoch. */
size_t disklog_bytes(struct disklog *l);

/* Hook context handed to virtio-blk: which disk this is. */
struct disklog_hook {
	struct disklog *log;
	unsigned disk;
};
void disklog_hook_fn(void *ctx, uint64_t off, const struct iovec *iov, unsigned n, uint64_t len, bool zero);

/* May disk `disk`, with `inflight` data bytes of writes in flight, take another request? Only while
 * this epoch's log plus every disk's writes in flight stays under DISKLOG_SOFT_BYTES (and asks for an
 * early checkpoint otherwise). The guest's disk waits instead of the log growing past its cap: only a
 * single request larger than DISKLOG_MAX_BYTES - DISKLOG_SOFT_BYTES can still overflow it. */
bool disklog_admit(struct disklog *l, unsigned disk, uint64_t inflight);
bool disklog_hook_admit(void *ctx, uint64_t inflight); /* virtio-blk's admit hook; ctx: a disklog_hook */

#endif

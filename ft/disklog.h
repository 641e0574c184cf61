/* disklog.h - the disk writes of the current epoch, captured at submission for replication. */
#ifndef FTVMM_DISKLOG_H
#define FTVMM_DISKLOG_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>

struct disklog {
	pthread_mutex_t lock;
	uint8_t *buf; /* ft_disk_rec + data, back to back */
	size_t len, cap;
	uint64_t writes;
	int error; /* allocation failed: the epoch cannot be replicated faithfully */
};

void disklog_init(struct disklog *l);
void disklog_destroy(struct disklog *l);
/* Record a write of len bytes at off on disk `disk` (iov in guest memory), or a zeroing (zero=true). */
void disklog_add(struct disklog *l, unsigned disk, uint64_t off, const struct iovec *iov, unsigned n, uint64_t len,
		 bool zero);
/* Take the current log (caller frees *buf) and start an empty one. Returns -ENOMEM if a record
 * was lost this epoch. */
int disklog_take(struct disklog *l, uint8_t **buf, size_t *len, uint64_t *writes);

/* Hook context handed to virtio-blk: which disk this is. */
struct disklog_hook {
	struct disklog *log;
	unsigned disk;
};
void disklog_hook_fn(void *ctx, uint64_t off, const struct iovec *iov, unsigned n, uint64_t len, bool zero);

#endif

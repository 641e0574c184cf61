/* blk_backend.h - a raw disk image driven through io_uring: open checks, submissions, completions. */
#ifndef FTVMM_BLK_BACKEND_H
#define FTVMM_BLK_BACKEND_H

#include <liburing.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>

struct blk_sync_done {
	void *tag;
	int res;
};

struct blk_backend {
	int fd;
	uint64_t size; /* bytes, a multiple of 512 */
	bool ro;
	struct io_uring ring;
	bool ring_ok;
	int efd; /* completion eventfd (registered with the ring) */
	/* Fallback where io_uring is unavailable (seccomp'd containers, io_uring_disabled, or
	 * FTVMM_BLK_SYNC=1 in the environment): each operation runs synchronously when queued and its
	 * result waits in this FIFO for blk_backend_reap(), so callers see the same interface. */
	bool sync;
	struct blk_sync_done *done;
	unsigned done_head, done_len, done_cap;
};

/* Open and vet a raw image: regular file or block device, non-empty, size a multiple of 512.
 * Returns 0, or -errno with a one-line reason in err (for the CLI). */
int blk_image_open(const char *path, bool ro, int *fd, uint64_t *size, char *err, size_t errlen);

/* Image + an io_uring of `depth` entries whose completions signal be->efd (or the synchronous
 * fallback, with a one-line notice on stderr). 0 or -errno (+ err). */
int blk_backend_open(struct blk_backend *be, const char *path, bool ro, unsigned depth, char *err, size_t errlen);
void blk_backend_close(struct blk_backend *be);

/* Queue one operation; `tag` comes back with its result. 0 or -EBUSY when no SQE is free even
 * after flushing the queue. Nothing reaches the kernel until blk_backend_submit(). */
int blk_backend_readv(struct blk_backend *be, const struct iovec *iov, unsigned n, uint64_t off, void *tag);
int blk_backend_writev(struct blk_backend *be, const struct iovec *iov, unsigned n, uint64_t off, void *tag);
int blk_backend_fsync(struct blk_backend *be, void *tag);
int blk_backend_fallocate(struct blk_backend *be, int mode, uint64_t off, uint64_t len, void *tag);
int blk_backend_submit(struct blk_backend *be);

typedef void (*blk_done_fn)(void *ctx, void *tag, int res);
/* Hand every ready completion to fn. With wait, block until at least one arrives. Returns the number
 * reaped or -errno. Clears the eventfd first so a completion racing with us re-arms it. */
int blk_backend_reap(struct blk_backend *be, bool wait, blk_done_fn fn, void *ctx);

#endif

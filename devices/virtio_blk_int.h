/* virtio_blk_int.h - virtio-blk's private state, shared by its data path and its checkpoint half (_persist.c). */
#ifndef FTVMM_VIRTIO_BLK_INT_H
#define FTVMM_VIRTIO_BLK_INT_H

#include <linux/virtio_blk.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/uio.h>

#include "virtio_blk.h"

/* Version 2 may carry "blk-inflight". A state with nothing in flight is still written as version 1,
 * so an older build (which would drop the list and leave the guest waiting forever) refuses only the
 * checkpoints it cannot honour. Both are read. */
#define BLK_STATE_VERSION 2
#define BLK_STATE_VERSION_PLAIN 1
#define SECTOR 512u

enum blk_op { OP_READ, OP_WRITE, OP_FLUSH, OP_DISCARD, OP_WRITE_ZEROES };

struct blk_req {
	uint16_t head;
	uint8_t op;
	uint8_t retries;
	uint64_t seq;             /* submission order, for the saved in-flight list */
	bool fallback_tried;      /* write-zeroes: second fallocate mode attempted */
	int falloc_mode;
	uint64_t off, len, done;  /* image byte offset, data bytes, bytes completed */
	uint8_t *status;          /* the guest's status byte */
	unsigned niov, ncur;
	struct iovec *cur;        /* working copy, advanced on short transfers */
	struct iovec iov[];       /* [0, niov) data segments as the guest gave them, then the working copy */
};

struct virtio_blk {
	struct virtio_dev dev;
	struct blk_backend be;
	struct ioloop *loop;
	pthread_mutex_t lock;
	pthread_cond_t cond;
	bool active;     /* DRIVER_OK seen and no reset since */
	bool quiesced;   /* no popping, no guest writes, no interrupts */
	bool dropping;   /* reset: completions are discarded instead of pushed */
	bool pushed;     /* used entries added since the last notify decision */
	bool want_reset; /* a malformed chain was seen: raise NEEDS_RESET once unlocked */
	bool restored;   /* common state replaced by a restore; adopted by the next run of the data path */
	bool owe_irq;    /* re-raise the queue interrupt once not quiesced (after a restore) */
	bool warned_io;  /* a host I/O error has been logged */
	unsigned ninflight, notifying;
	uint64_t next_seq;
	struct blk_req *inflight[VIRTIO_BLK_QUEUE_SIZE]; /* by head */
	/* Heads in flight at the restored checkpoint, in submission order: re-submitted once running. */
	unsigned nsaved;
	uint16_t saved[VIRTIO_BLK_QUEUE_SIZE];
	struct virtio_blk_config cfg;
	char serial[VIRTIO_BLK_ID_LEN];
	blk_write_hook_fn write_hook; /* FT disk replication: sees what reached the image, as it completes */
	void *write_hook_ctx;
	blk_admit_fn admit; /* FT: asked before each new request is taken from the ring */
	void *admit_ctx;
	uint64_t wbytes_inflight; /* data bytes of the writes in flight: what their completions may still log */
	char name[32];
	struct vq_req scratch;
};

static inline struct virtio_blk *to_blk(struct virtio_dev *d)
{
	return d->priv;
}

/* virtio_blk.c. Lock held: complete (and throw away) everything in flight; rings are about to be
 * forgotten. Waits for the I/O (reset, destroy, restore). */
void blk_drop_inflight(struct virtio_blk *b);

/* virtio_blk_persist.c: the d->ops checkpoint halves. */
int blk_save(struct virtio_dev *d, void *fdt);
int blk_restore_check(struct virtio_dev *d, const void *fdt, int node);
int blk_restore(struct virtio_dev *d, const void *fdt, int node);

#endif

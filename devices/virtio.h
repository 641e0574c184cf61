/* virtio.h - transport-neutral virtio 1.x device model and the checked virtqueue walker. */
#ifndef FTVMM_VIRTIO_H
#define FTVMM_VIRTIO_H

#include <linux/virtio_config.h>
#include <linux/virtio_ring.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/uio.h>

#include "../vmm/guest_mem.h"

#define VQ_MAX_SIZE 1024   /* largest queue a device offers; also the chain length limit */
#define VQ_MAX_SEGS 1024   /* iovecs in one flattened chain (indirect included) */
#define VIRTIO_MSI_NO_VECTOR 0xffff

struct virtio_dev;

/* One queue. Guest-programmed fields are written by the transport; progress fields by the device. */
struct virtqueue {
	struct virtio_dev *dev;
	unsigned index;
	uint16_t max_size;  /* offered to the driver */
	uint16_t size;      /* programmed by the driver (power of two, <= max_size) */
	bool ready;
	uint64_t desc_gpa, avail_gpa, used_gpa;
	uint16_t msix_vector;
	uint16_t notify_off;
	/* device progress (part of the saved state) */
	uint16_t last_avail; /* next avail->ring[] slot to consume */
	uint16_t used_idx;   /* the device's copy of used->idx */
	bool broken;         /* set when the guest handed us a malformed ring; device then NEEDS_RESET */
	/* EVENT_IDX bookkeeping: used->idx at the last vq_needs_notify() (not saved: after a restore
	 * the first check notifies unconditionally, which is always safe). */
	uint16_t signalled_used;
	bool signalled_used_valid;
};

/* A popped descriptor chain, flattened into host iovecs: all device-readable ("out") segments
 * first, then the device-writable ("in") ones, as the spec requires the guest to lay them out. */
struct vq_req {
	uint16_t head;
	unsigned nout, nin;  /* iov[0..nout) readable, iov[nout..nout+nin) writable */
	uint64_t out_len, in_len;
	struct iovec iov[VQ_MAX_SEGS];
};

/* Pop the next available chain. Returns 1 with *req filled, 0 if the ring is empty, or a negative
 * errno if the guest's ring or chain is malformed (address outside RAM, loop, too long, nested or
 * oversized indirect table, writable-before-readable, bad avail idx); then vq->broken is set. */
int vq_pop(struct virtqueue *vq, struct vq_req *req);
/* Rebuild the request of a chain popped earlier, from its head, without touching the avail ring or
 * last_avail: for requests a checkpoint recorded as in flight, re-walked from restored guest memory.
 * Every check of vq_pop applies (head < queue size included). 0 with *req filled, or -EINVAL with
 * vq->broken set (also for a queue that is not ready: nothing can be in flight on it). */
int vq_chain_at(struct virtqueue *vq, uint16_t head, struct vq_req *req);
/* Return a chain: write the used element (head, written) and bump used->idx. Marks dirty the used
 * ring and the first `written` bytes of the writable segments (the device wrote them). 0 or -EFAULT. */
int vq_push(struct virtqueue *vq, const struct vq_req *req, uint32_t written);
/* True if the driver wants an interrupt now (honours VIRTIO_RING_F_EVENT_IDX / NO_INTERRUPT). */
bool vq_needs_notify(struct virtqueue *vq);
/* Lower half of vq_push for devices that keep their own compact request records: write the used
 * element (head, len) and bump used->idx, marking only the used ring dirty; the caller has already
 * marked every guest byte it wrote. 0 or -EFAULT. */
int vq_push_used(struct virtqueue *vq, uint16_t head, uint32_t len);
/* Same for n chains published together with one used->idx store, so the driver never sees part of
 * the batch (mergeable RX buffers of one packet). All heads are checked before anything is written.
 * 0, or -EFAULT / -EINVAL (n > queue size, a head out of range) with nothing written. */
struct vq_used {
	uint16_t head;
	uint32_t len;
};
int vq_push_used_n(struct virtqueue *vq, const struct vq_used *u, unsigned n);
/* Number of chains the guest has made available and we have not consumed (0 on a bad ring). */
unsigned vq_pending(struct virtqueue *vq);
/* Copy helpers across a request's iovecs. Return bytes copied. */
size_t vq_iov_to_buf(const struct iovec *iov, unsigned n, size_t skip, void *buf, size_t len);
size_t vq_buf_to_iov(const struct iovec *iov, unsigned n, size_t skip, const void *buf, size_t len);

struct virtio_dev_ops {
	/* device-specific config space (struct virtio_blk_config...) access, offsets checked by the core */
	void (*config_read)(struct virtio_dev *d, uint32_t off, void *data, uint32_t len);
	void (*config_write)(struct virtio_dev *d, uint32_t off, const void *data, uint32_t len);
	/* the driver notified queue q; called on the I/O thread (ioeventfd) without d->lock held */
	void (*queue_notify)(struct virtio_dev *d, unsigned q);
	/* DRIVER_OK was set: start backends. */
	int (*activate)(struct virtio_dev *d);
	/* the driver wrote status 0: drop in-flight work, stop backends. */
	void (*reset)(struct virtio_dev *d);
	/* Checkpointing halves, called by the transport's vm_device (virtio_pci_vm_device), which saves
	 * and restores the common part itself: see virtio_pci_save/restore for the order. restore_check
	 * validates the device half of a checkpoint and changes nothing; the transport calls it before it
	 * touches any state, so a refused restore leaves the device as it was. restore then applies it
	 * (checking again: it must never trust its caller) once the common state is back. */
	int (*quiesce)(struct virtio_dev *d);
	void (*resume)(struct virtio_dev *d);
	int (*save)(struct virtio_dev *d, void *fdt);
	int (*restore_check)(struct virtio_dev *d, const void *fdt, int node);
	int (*restore)(struct virtio_dev *d, const void *fdt, int node);
};

struct virtio_dev {
	const char *name;
	uint32_t device_id;     /* VIRTIO_ID_BLOCK, VIRTIO_ID_NET */
	uint64_t host_features; /* offered (core adds VIRTIO_F_VERSION_1) */
	uint64_t guest_features;
	uint8_t status;
	uint8_t isr;            /* legacy/INTx interrupt status bits */
	uint16_t config_msix_vector;
	uint32_t config_generation;
	uint32_t config_len;
	unsigned nqueues;
	struct virtqueue *vqs;
	struct guest_mem *mem;
	const struct virtio_dev_ops *ops;
	void *priv;
	pthread_mutex_t lock;   /* protects common state and queues */

	/* Filled in by the transport: raise the queue's / the config-change interrupt. */
	void (*notify_queue)(struct virtio_dev *d, struct virtqueue *vq);
	void (*notify_config)(struct virtio_dev *d);
	void *transport;
};

int virtio_dev_init(struct virtio_dev *d, const char *name, uint32_t device_id, unsigned nqueues,
		    uint16_t max_queue_size, uint32_t config_len, struct guest_mem *mem,
		    const struct virtio_dev_ops *ops, void *priv);
void virtio_dev_destroy(struct virtio_dev *d);
/* Common reset: status, features, queues back to power-on (calls ops->reset first). */
void virtio_dev_reset(struct virtio_dev *d);
/* Put the device into NEEDS_RESET and tell the driver (config interrupt). */
void virtio_dev_set_needs_reset(struct virtio_dev *d);
/* Interrupt for vq if vq_needs_notify() says so. */
void virtio_queue_notify_guest(struct virtio_dev *d, struct virtqueue *vq);
bool virtio_has_feature(const struct virtio_dev *d, unsigned bit);

/* Common (transport-neutral) state: features, status, queues, as properties of the current fdt node
 * (virtio_persist.c). Restore is all or nothing: 0, or -EINVAL / -ENOMEM with the device unchanged. */
int virtio_dev_save(struct virtio_dev *d, void *fdt);
int virtio_dev_restore(struct virtio_dev *d, const void *fdt, int node);

#endif

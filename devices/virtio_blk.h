/* virtio_blk.h - virtio-blk device model over a raw image (see blk_backend.h for the host side). */
#ifndef FTVMM_VIRTIO_BLK_H
#define FTVMM_VIRTIO_BLK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "../vmm/guest_mem.h"
#include "../vmm/ioloop.h"
#include "../vmm/vm.h"
#include "blk_backend.h"
#include "virtio.h"

#define VIRTIO_BLK_QUEUE_SIZE 256
#define VIRTIO_BLK_SEG_MAX (VIRTIO_BLK_QUEUE_SIZE - 2) /* data segments; header + status on top */
#define VIRTIO_BLK_ID_LEN 20

/* Vet a raw image without creating a device (CLI argument checks). 0 or -errno + one-line err. */
static inline int virtio_blk_open_image(const char *path, bool ro, int *fd, uint64_t *size, char *err,
					size_t errlen)
{
	return blk_image_open(path, ro, fd, size, err, errlen);
}

/* Create a single-queue virtio-blk device on `path`. Completions run on `loop`'s thread. Devices are
 * numbered in creation order: name "virtio-blk@N" (also its checkpoint node's), serial "ftvmm-vdX".
 * Returns the transport-neutral device, or NULL with errno set and a one-line reason in err. */
struct virtio_dev *virtio_blk_create(struct guest_mem *mem, struct ioloop *loop, const char *path,
				     bool readonly, char *err, size_t errlen);
/* Checkpointing goes through the transport's vm_device (virtio_pci_vm_device), which saves the common
 * virtio state and calls the device halves in d->ops: quiesce/resume and save/restore_check/restore of
 * the "blk-*" properties. Quiesce does not wait for I/O: while quiesced no completion is reaped (no
 * guest write, no interrupt, no write hook call) and requests still in flight are saved with the state;
 * a restore re-submits them (walking their chains again in the restored guest memory) before it pops
 * anything new. Save needs a quiesced device (or one restored and not yet running). A restored device
 * picks up chains the driver made available before the checkpoint (it will not kick for those again)
 * when resumed, when its ioloop runs or when a kick arrives, so restore guest memory first. A quiesced
 * device stays quiesced until resume. */

/* Free everything. Call with the ioloop stopped (or from its thread) and the transport gone. */
void virtio_blk_destroy(struct virtio_dev *d);

/* Wait until every in-flight request has completed and been pushed to the used ring (the guest is
 * notified as usual). The device keeps accepting work. -EBUSY while quiesced (completing would break
 * the pause). Tests and shutdown. */
int virtio_blk_drain(struct virtio_dev *d);
/* Requests currently submitted to the host and not yet completed. */
unsigned virtio_blk_inflight(struct virtio_dev *d);

/* Fault tolerance: called with what reached the image, when it completed: each completed piece of a
 * write (zero=false, iov = the guest's data) and each discard / write-zeroes that worked (zero=true,
 * no iov); never for a failed request. With the device locked, on the I/O thread or one calling
 * resume, reset or destroy; never while quiesced. So a result lands in the log of the epoch in which
 * it completed: a request in flight at a checkpoint is in that checkpoint's device state (a restore
 * re-submits it) and its result in the next epoch's log. */
typedef void (*blk_write_hook_fn)(void *ctx, uint64_t off, const struct iovec *iov, unsigned n, uint64_t len,
				  bool zero);
void virtio_blk_set_write_hook(struct virtio_dev *d, blk_write_hook_fn fn, void *ctx);

/* Fault tolerance: asked (device locked) before each new request is taken from the ring, with the data
 * bytes of the writes now in flight; false leaves the guest's requests in the ring (the guest sees a
 * slow disk) until virtio_blk_kick() or the next resume asks again. Requests a restore re-submits are
 * not asked: they are already the guest's. Bounds what one epoch's disk log can receive. */
typedef bool (*blk_admit_fn)(void *ctx, uint64_t wbytes_inflight);
void virtio_blk_set_admit(struct virtio_dev *d, blk_admit_fn fn, void *ctx);
/* Run the data path again now (admission may have room again). */
void virtio_blk_kick(struct virtio_dev *d);

#endif

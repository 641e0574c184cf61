/* virtio_int.h - what the virtio core (virtio.c) shares with its checkpoint half (virtio_persist.c). */
#ifndef FTVMM_VIRTIO_INT_H
#define FTVMM_VIRTIO_INT_H

#include "virtio.h"

/* 0 if the queue's rings pass the walker's layout checks (size a power of two within bounds, aligned,
 * each ring inside one RAM region), else -EINVAL: what vq_pop would refuse before reading a ring. */
int vq_rings_check(const struct virtqueue *vq);

#endif

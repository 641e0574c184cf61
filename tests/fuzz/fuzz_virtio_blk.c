/* fuzz_virtio_blk.c - libFuzzer target: arbitrary guest memory as virtio-blk requests on a scratch image. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../../devices/virtio_blk.h"

/*
 * Input: [0] flags (1 INDIRECT_DESC, 2 EVENT_IDX, 4 quiesce/resume after the kick), [1] log2(queue
 * size) ^ 4, then guest memory from RING_BASE. Layout: desc RING_BASE, avail +0x100, used +0x200 (so
 * they overlap for big queues, which is fine here), headers and buffers wherever descriptors point.
 * Checks beyond the sanitizers: nothing left in flight after a drain, no more chains answered
 * than were consumed.
 */

#define MEM_SIZE (16 * PAGE_SIZE)
#define RING_BASE 0x1000u
#define HDR_LEN 2

static uint8_t *ram;
static struct guest_mem mem;
static struct ioloop loop;
static struct virtio_dev *dev;

static void setup_once(void)
{
	char path[] = "/tmp/ftvmm-fuzz-blk-XXXXXX", err[256];
	int fd = mkstemp(path);
	if (fd < 0 || ftruncate(fd, 64 * 1024) < 0)
		abort();
	close(fd);
	ram = aligned_alloc(PAGE_SIZE, MEM_SIZE);
	if (!ram || gmem_init_buffer(&mem, ram, MEM_SIZE) || ioloop_init(&loop, "fuzz"))
		abort();
	dev = virtio_blk_create(&mem, &loop, path, false, err, sizeof(err));
	if (!dev)
		abort();
	unlink(path); /* the open fd keeps it */
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	uint8_t hdr[HDR_LEN] = { 0 };

	if (!dev)
		setup_once();
	memcpy(hdr, data, size < HDR_LEN ? size : HDR_LEN);
	virtio_dev_reset(dev);
	memset(ram, 0, MEM_SIZE);
	if (size > HDR_LEN) {
		size_t n = size - HDR_LEN;
		memcpy(ram + RING_BASE, data + HDR_LEN, n < MEM_SIZE - RING_BASE ? n : MEM_SIZE - RING_BASE);
	}
	dev->guest_features = dev->host_features;
	if (!(hdr[0] & 1))
		dev->guest_features &= ~(1ull << VIRTIO_RING_F_INDIRECT_DESC);
	if (!(hdr[0] & 2))
		dev->guest_features &= ~(1ull << VIRTIO_RING_F_EVENT_IDX);
	struct virtqueue *vq = &dev->vqs[0];
	unsigned lg = (hdr[1] ^ 4) % 9;
	vq->size = (uint16_t)(1u << lg);
	vq->desc_gpa = RING_BASE;
	vq->avail_gpa = RING_BASE + 0x100;
	vq->used_gpa = RING_BASE + 0x200;
	vq->ready = true;
	dev->status = VIRTIO_CONFIG_S_ACKNOWLEDGE | VIRTIO_CONFIG_S_DRIVER | VIRTIO_CONFIG_S_FEATURES_OK |
		      VIRTIO_CONFIG_S_DRIVER_OK;
	if (dev->ops->activate(dev))
		abort();

	dev->ops->queue_notify(dev, 0);
	if (hdr[0] & 4) {
		/* quiesce leaves requests in flight (they are device state) but completes and publishes nothing */
		unsigned n = virtio_blk_inflight(dev);
		uint16_t used = vq->used_idx;
		if (dev->ops->quiesce(dev) || virtio_blk_inflight(dev) != n || vq->used_idx != used)
			abort();
		dev->ops->resume(dev);
	}
	if (virtio_blk_drain(dev) || virtio_blk_inflight(dev))
		abort();
	if (vq->used_idx > vq->last_avail)
		abort();
	return 0;
}

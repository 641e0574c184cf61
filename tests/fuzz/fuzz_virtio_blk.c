/* fuzz_virtio_blk.c - libFuzzer target: arbitrary guest memory as virtio-blk requests on a scratch image. */
#include <libfdt.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../../devices/virtio_blk.h"
#include "../../devices/virtio_blk_int.h"
#include "../../vmm/util.h"

/*
 * Input: [0] flags (1 INDIRECT_DESC, 2 EVENT_IDX, 4 quiesce/resume after the kick, 8 restore), [1]
 * log2(queue size) ^ 4; with flag 8, [2] a length L and L bytes: a checkpoint's "blk-inflight" list
 * (raw, as a snapshot file or the FT peer could send it); then guest memory from RING_BASE. Layout:
 * desc RING_BASE, avail +0x100, used +0x200 (so they overlap for big queues, which is fine here),
 * headers and buffers wherever descriptors point.
 * Restore: the list goes through restore_check and restore as the transport calls them (a refusal by
 * one is a refusal by both, and leaves the device untouched), the accepted heads count as popped
 * before the checkpoint (last_avail), then resume re-submits them, walking their chains in the
 * crafted memory.
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

/* A checkpoint's device node with this in-flight list; the fdt in buf. */
static void make_state(uint8_t *buf, size_t cap, const uint8_t *list, size_t len)
{
	struct virtio_blk *b = to_blk(dev);
	if (fdt_create(buf, (int)cap) || fdt_finish_reservemap(buf) || fdt_begin_node(buf, "") ||
	    fdt_property_u32(buf, "blk-version", BLK_STATE_VERSION) ||
	    fdt_property_u64(buf, "blk-capacity", b->be.size / SECTOR) || fdt_property_u32(buf, "blk-readonly", 0) ||
	    fdt_property(buf, "blk-inflight", list, (int)len) || fdt_end_node(buf) || fdt_finish(buf))
		abort();
}

/* Flag 8: restore the list onto the active queue, as a restore would before its resume. */
static void restore_list(const uint8_t *list, size_t len)
{
	static uint8_t buf[2048];
	struct virtqueue *vq = &dev->vqs[0];
	make_state(buf, sizeof(buf), list, len);
	if (dev->ops->quiesce(dev))
		abort();
	int c = dev->ops->restore_check(dev, buf, 0);
	int r = dev->ops->restore(dev, buf, 0);
	if ((c == 0) != (r == 0))
		abort();
	if (r == 0) {
		if (len % 4 || len / 4 > VIRTIO_BLK_QUEUE_SIZE || to_blk(dev)->nsaved != len / 4)
			abort();
		vq->last_avail = (uint16_t)(len / 4); /* the driver popped them before the checkpoint */
	} else if (to_blk(dev)->nsaved != 0 || virtio_blk_inflight(dev) != 0) {
		abort();
	}
	dev->ops->resume(dev);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	uint8_t hdr[HDR_LEN] = { 0 };
	const uint8_t *list = NULL;
	size_t list_len = 0;

	if (!dev)
		setup_once();
	memcpy(hdr, data, size < HDR_LEN ? size : HDR_LEN);
	data += size < HDR_LEN ? size : HDR_LEN;
	size -= size < HDR_LEN ? size : HDR_LEN;
	if ((hdr[0] & 8) && size) {
		list_len = MIN((size_t)data[0], size - 1);
		list = data + 1;
		data += 1 + list_len;
		size -= 1 + list_len;
	}
	virtio_dev_reset(dev);
	memset(ram, 0, MEM_SIZE);
	memcpy(ram + RING_BASE, data, size < MEM_SIZE - RING_BASE ? size : MEM_SIZE - RING_BASE);
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
	if (hdr[0] & 8)
		restore_list(list, list_len);

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

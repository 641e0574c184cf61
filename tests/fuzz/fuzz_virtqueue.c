/* fuzz_virtqueue.c - libFuzzer target: arbitrary guest memory and queue programming into vq_pop/vq_push. */
#include <libfdt.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "../../devices/virtio.h"

/*
 * Input: a 33-byte header, then guest memory from RING_BASE on. The header is XORed with a valid
 * layout so an all-zero input already describes a working queue and mutations start from there:
 *   [0]     flags: 1 INDIRECT_DESC, 2 EVENT_IDX, 4 save+restore half way, 8 restore fuzzed values
 *   [1]     log2(queue size) ^ 4 (>= 11: take [2..3] as the raw size)
 *   [2..3]  raw size
 *   [4..27] desc, avail, used gpa ^ their defaults (u64 each)
 *   [28..31] last_avail, used_idx
 *   [32]    number of pop/push rounds
 * Crash conditions besides ASan/UBSan: an iovec outside guest RAM, lengths that do not add up.
 */

#define MEM_SIZE (16 * PAGE_SIZE)
#define RING_BASE 0x1000u
#define HDR_LEN 33

static uint8_t *ram;
static struct guest_mem mem;
static struct vq_req req;
static const struct virtio_dev_ops ops;

static uint64_t get(const uint8_t *p, unsigned n)
{
	uint64_t v = 0;
	for (unsigned i = 0; i < n; i++)
		v |= (uint64_t)p[i] << (8 * i);
	return v;
}

static void check_req(const struct virtqueue *vq)
{
	uint64_t out = 0, in = 0;
	if (req.nout + req.nin > VQ_MAX_SEGS || req.head >= vq->size)
		abort();
	for (unsigned i = 0; i < req.nout + req.nin; i++) {
		uint8_t *p = req.iov[i].iov_base;
		size_t l = req.iov[i].iov_len;
		if (p < ram || l == 0 || l > MEM_SIZE || p + l > ram + MEM_SIZE)
			abort();
		*(i < req.nout ? &out : &in) += l;
	}
	if (out != req.out_len || in != req.in_len)
		abort();
}

/* Pop and push until the queue is empty, broken or `rounds` is spent; touch every byte handed out. */
static void drive(struct virtqueue *vq, unsigned rounds)
{
	static uint8_t scratch[4096];
	for (unsigned r = 0; r < rounds; r++) {
		unsigned pending = vq_pending(vq);
		int ret = vq_pop(vq, &req);
		if (ret < 0) {
			if (!vq->broken || vq_pending(vq) != 0 || vq_pop(vq, &req) != ret)
				abort();
			return;
		}
		if (ret == 0) {
			if (pending != 0 && !vq->broken)
				abort();
			return;
		}
		check_req(vq);
		for (unsigned i = 0; i < req.nout; i++)
			vq_iov_to_buf(&req.iov[i], 1, 0, scratch, sizeof(scratch));
		for (unsigned i = req.nout; i < req.nout + req.nin; i++)
			memset(req.iov[i].iov_base, 0xa5, req.iov[i].iov_len);
		vq_buf_to_iov(req.iov + req.nout, req.nin, r, scratch, sizeof(scratch));
		if (vq_push(vq, &req, (uint32_t)(req.in_len > r ? req.in_len - r : 0)) != 0)
			abort(); /* the rings passed vq_pop's checks a moment ago */
		vq_needs_notify(vq);
	}
}

static void *save(struct virtio_dev *d)
{
	static uint8_t buf[8192];
	if (fdt_create(buf, sizeof(buf)) || fdt_finish_reservemap(buf) || fdt_begin_node(buf, "") ||
	    virtio_dev_save(d, buf) || fdt_end_node(buf) || fdt_finish(buf))
		abort();
	return buf;
}

/* A checkpoint whose values come from the input: restore must refuse it or leave a safe device. */
static void *fuzzed_checkpoint(const struct virtio_dev *d, const uint8_t *in)
{
	static uint8_t buf[8192];
	fdt32_t c[13];
	for (unsigned i = 0; i < 13; i++)
		c[i] = cpu_to_fdt32((uint32_t)get(in + 2 * i, 2) ^ (i == 0 ? 16 : i == 1 ? 1 : 0));
	c[8] = cpu_to_fdt32(RING_BASE ^ fdt32_to_cpu(c[8]));
	c[10] = cpu_to_fdt32((RING_BASE + 0x100) ^ fdt32_to_cpu(c[10]));
	c[12] = cpu_to_fdt32((RING_BASE + 0x200) ^ fdt32_to_cpu(c[12]));
	if (fdt_create(buf, sizeof(buf)) || fdt_finish_reservemap(buf) || fdt_begin_node(buf, "") ||
	    fdt_property_u32(buf, "virtio-version", 1) || fdt_property_u32(buf, "virtio-device-id", d->device_id) ||
	    fdt_property_u64(buf, "virtio-host-features", d->host_features) ||
	    fdt_property_u64(buf, "virtio-guest-features", d->guest_features ^ (get(in + 26, 1) << 27)) ||
	    fdt_property_u32(buf, "virtio-status", (uint32_t)get(in + 27, 1)) ||
	    fdt_property_u32(buf, "virtio-isr", 0) || fdt_property_u32(buf, "virtio-config-vector", 0xffff) ||
	    fdt_property_u32(buf, "virtio-config-generation", 0) || fdt_property_u32(buf, "virtio-nqueues", 1) ||
	    fdt_property(buf, "virtio-vq0", c, sizeof(c)) || fdt_end_node(buf) || fdt_finish(buf))
		abort();
	return buf;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct virtio_dev dev, dev2;
	uint8_t hdr[HDR_LEN] = { 0 };

	if (!ram) {
		ram = aligned_alloc(PAGE_SIZE, MEM_SIZE);
		if (!ram || gmem_init_buffer(&mem, ram, MEM_SIZE))
			abort();
	}
	memcpy(hdr, data, size < HDR_LEN ? size : HDR_LEN);
	memset(ram, 0, MEM_SIZE);
	if (size > HDR_LEN) {
		size_t n = size - HDR_LEN;
		memcpy(ram + RING_BASE, data + HDR_LEN, n < MEM_SIZE - RING_BASE ? n : MEM_SIZE - RING_BASE);
	}

	if (virtio_dev_init(&dev, "fuzz", 1, 1, VQ_MAX_SIZE, 0, &mem, &ops, NULL))
		abort();
	dev.host_features |= 1ull << VIRTIO_RING_F_INDIRECT_DESC | 1ull << VIRTIO_RING_F_EVENT_IDX;
	dev.guest_features = 1ull << VIRTIO_F_VERSION_1;
	if (hdr[0] & 1)
		dev.guest_features |= 1ull << VIRTIO_RING_F_INDIRECT_DESC;
	if (hdr[0] & 2)
		dev.guest_features |= 1ull << VIRTIO_RING_F_EVENT_IDX;
	struct virtqueue *vq = &dev.vqs[0];
	unsigned lg = hdr[1] ^ 4;
	vq->size = lg < 11 ? (uint16_t)(1u << lg) : (uint16_t)get(hdr + 2, 2);
	vq->desc_gpa = RING_BASE ^ get(hdr + 4, 8);
	vq->avail_gpa = (RING_BASE + 0x100) ^ get(hdr + 12, 8);
	vq->used_gpa = (RING_BASE + 0x200) ^ get(hdr + 20, 8);
	vq->last_avail = (uint16_t)get(hdr + 28, 2);
	vq->used_idx = (uint16_t)get(hdr + 30, 2);
	vq->ready = true;
	unsigned rounds = hdr[32] % 64 + 1;

	drive(vq, rounds);

	if (hdr[0] & 4) {
		/* what a checkpoint taken now and restored elsewhere does with the rest of the ring */
		void *fdt = save(&dev);
		if (virtio_dev_init(&dev2, "fuzz2", 1, 1, VQ_MAX_SIZE, 0, &mem, &ops, NULL))
			abort();
		dev2.host_features = dev.host_features;
		if (virtio_dev_restore(&dev2, fdt, 0) != 0)
			abort(); /* our own save must always restore */
		if (dev2.vqs[0].last_avail != vq->last_avail || dev2.vqs[0].broken != vq->broken)
			abort();
		drive(&dev2.vqs[0], rounds);
		virtio_dev_destroy(&dev2);
	}
	if (hdr[0] & 8) {
		void *fdt = fuzzed_checkpoint(&dev, hdr + 4);
		if (virtio_dev_init(&dev2, "fuzz2", 1, 1, VQ_MAX_SIZE, 0, &mem, &ops, NULL))
			abort();
		dev2.host_features = dev.host_features;
		if (virtio_dev_restore(&dev2, fdt, 0) == 0)
			drive(&dev2.vqs[0], rounds);
		virtio_dev_destroy(&dev2);
	}
	virtio_dev_destroy(&dev);
	return 0;
}

/* fuzz_virtio_net.c - libFuzzer target: a hostile guest's RX and TX rings (and all its memory) into virtio-net. */
#include <errno.h>
#include <fcntl.h>
#include <linux/virtio_config.h>
#include <linux/virtio_net.h>
#include <linux/virtio_ring.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "../../devices/tap.h"
#include "../../devices/virtio_net.h"

/*
 * Input: an 8-byte header, then the guest's memory from address 0 (16 pages; the rest zero):
 *   [0]    feature bits offered by the driver: 1 MRG_RXBUF, 2 EVENT_IDX, 4 INDIRECT_DESC
 *   [1]    log2 of both queue sizes ^ 3 (mod 8)
 *   [2]    packets the backend delivers to RX (mod 8), before the kicks
 *   [3]    their length seed; [4] rounds of kicks (mod 4) + 1; [5..7] unused
 * Rings: RX desc/avail/used at 0x1000/0x2000/0x3000, TX at 0x4000/0x5000/0x6000, but the descriptors,
 * indexes and every buffer address are the input's. The RX packets' bytes come from the input too.
 * Checked beyond the sanitizers (which catch any access outside guest memory, a 16-page buffer):
 *  - every page whose bytes changed was marked in the VMM dirty bitmap (compared before/after);
 *  - a broken queue (malformed ring) puts the device in NEEDS_RESET; a device in NEEDS_RESET
 *    writes nothing more into guest memory;
 *  - every TX packet reaching the sink has the header and is at most NET_MAX_PKT bytes, and its
 *    segments lie inside guest memory.
 */

#define NPAGES 16
#define MEM_SIZE (NPAGES * PAGE_SIZE)
#define HDR 8

static uint8_t *ram, *before;
static const uint8_t mac[6] = { 0x52, 0x54, 0x00, 0x12, 0x34, 0x56 };
static const uint64_t ring[2][3] = { { 0x1000, 0x2000, 0x3000 }, { 0x4000, 0x5000, 0x6000 } };

static void on_queue(struct virtio_dev *d, struct virtqueue *vq) { (void)d, (void)vq; }
static void on_config(struct virtio_dev *d) { (void)d; }

static int sink_send(void *ctx, const struct iovec *iov, int iovcnt)
{
	(void)ctx;
	uint64_t len = 0;
	for (int i = 0; i < iovcnt; i++) {
		const uint8_t *p = iov[i].iov_base;
		if (iov[i].iov_len && (p < ram || p + iov[i].iov_len > ram + MEM_SIZE))
			abort();
		len += iov[i].iov_len;
	}
	if (len < NET_HDR_LEN || len > NET_MAX_PKT)
		abort();
	return 0;
}
static const struct net_tx_sink sink = { sink_send, NULL };

static void pump(struct ioloop *io)
{
	for (int i = 0; i < 64; i++)
		ioloop_poll_once(io, 0);
}

/* Every changed page marked dirty since the last harvest. */
static void check_dirty(struct guest_mem *m)
{
	unsigned long bits[(NPAGES + 63) / 64] = { 0 };
	gmem_dirty_harvest(m, bits);
	for (unsigned pg = 0; pg < NPAGES; pg++) {
		bool changed = memcmp(ram + pg * PAGE_SIZE, before + pg * PAGE_SIZE, PAGE_SIZE) != 0;
		if (changed && !(bits[pg / 64] >> (pg % 64) & 1))
			abort();
	}
	memcpy(before, ram, MEM_SIZE);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	uint8_t h[HDR] = { 0 };
	memcpy(h, data, size < HDR ? size : HDR);
	if (!ram) {
		ram = aligned_alloc(PAGE_SIZE, MEM_SIZE);
		before = malloc(MEM_SIZE);
		if (!ram || !before)
			abort();
	}
	memset(ram, 0, MEM_SIZE);
	if (size > HDR)
		memcpy(ram, data + HDR, size - HDR < MEM_SIZE ? size - HDR : MEM_SIZE);

	struct guest_mem mem;
	struct ioloop io;
	struct virtio_dev *d;
	int sv[2];
	if (gmem_init_buffer(&mem, ram, MEM_SIZE) || ioloop_init(&io, "fuzz") ||
	    socketpair(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0, sv) || fcntl(sv[1], F_SETFL, O_NONBLOCK))
		abort();
	struct virtio_net_opts opts = { .name = "virtio-net@0", .no_offloads = true, .queue_size = 64 };
	if (virtio_net_create(&d, &mem, &io, sv[0], mac, &opts))
		abort();
	d->notify_queue = on_queue;
	d->notify_config = on_config;
	virtio_net_set_tx_sink(d, &sink);

	uint64_t feat = 1ull << VIRTIO_F_VERSION_1 | 1ull << VIRTIO_NET_F_MAC | 1ull << VIRTIO_NET_F_STATUS;
	if (h[0] & 1)
		feat |= 1ull << VIRTIO_NET_F_MRG_RXBUF;
	if (h[0] & 2)
		feat |= 1ull << VIRTIO_RING_F_EVENT_IDX;
	if (h[0] & 4)
		feat |= 1ull << VIRTIO_RING_F_INDIRECT_DESC;
	d->guest_features = feat & d->host_features;
	unsigned qsz = 1u << ((h[1] ^ 3) % 7); /* 1..64: at most the device's queue size */
	for (unsigned q = 0; q < 2; q++) {
		struct virtqueue *vq = &d->vqs[q];
		vq->size = (uint16_t)qsz;
		vq->desc_gpa = ring[q][0];
		vq->avail_gpa = ring[q][1];
		vq->used_gpa = ring[q][2];
		vq->ready = true;
	}
	d->status = VIRTIO_CONFIG_S_ACKNOWLEDGE | VIRTIO_CONFIG_S_DRIVER | VIRTIO_CONFIG_S_FEATURES_OK |
		    VIRTIO_CONFIG_S_DRIVER_OK;
	memcpy(before, ram, MEM_SIZE);
	gmem_dirty_harvest(&mem, (unsigned long[1]){ 0 });
	if (d->ops->activate(d))
		abort();
	pump(&io);
	check_dirty(&mem);

	/* RX packets: lengths from the seed (some shorter than the header, one near the maximum) */
	static uint8_t pkt[NET_MAX_PKT];
	for (unsigned i = 0; i < (h[2] & 7u); i++) {
		size_t len = (size_t)(h[3] * 97u + i * 1531u) % 9000u;
		if ((h[3] ^ i) == 0xff)
			len = NET_MAX_PKT;
		for (size_t j = 0; j < len; j++)
			pkt[j] = (uint8_t)(j * 7 + i) ^ (size > HDR ? data[HDR + j % (size - HDR)] : 0);
		if (send(sv[1], pkt, len, MSG_DONTWAIT) < 0 && errno != EAGAIN)
			abort();
	}
	unsigned rounds = (h[4] & 3u) + 1;
	for (unsigned r = 0; r < rounds; r++) {
		bool was_reset = d->status & VIRTIO_CONFIG_S_NEEDS_RESET;
		d->ops->queue_notify(d, VIRTIO_NET_TXQ);
		d->ops->queue_notify(d, VIRTIO_NET_RXQ);
		pump(&io);
		if (was_reset && memcmp(ram, before, MEM_SIZE))
			abort(); /* a device that asked for a reset leaves guest memory alone */
		check_dirty(&mem);
		if ((d->vqs[0].broken || d->vqs[1].broken) && !(d->status & VIRTIO_CONFIG_S_NEEDS_RESET))
			abort();
	}
	/* everything of this run goes: the next one starts from a fresh device, loop and socket */
	virtio_net_destroy(d);
	ioloop_destroy(&io);
	close(sv[1]);
	gmem_free(&mem);
	return 0;
}

/* test_virtio_net.c - virtio-net on a socketpair (and a TAP in a private netns): data path, dirty pages, checkpoint. */
#include "../../devices/tap.h"
#include "../../devices/virtio_net.h"
#include "test.h"
#include "vp_harness.h"

#include <arpa/inet.h>
#include <endian.h>
#include <errno.h>
#include <fcntl.h>
#include <libfdt.h>
#include <linux/if_packet.h>
#include <linux/virtio_net.h>
#include <linux/virtio_ring.h>
#include <net/if.h>
#include <poll.h>
#include <sched.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

/* The "guest": 1 MiB of RAM, rings at fixed pages, one page per buffer so dirty pages are exact. */
#define MEM_SIZE (1u << 20)
#define QSZ 128u
static const uint64_t ring_gpa[2][3] = { { 0x1000, 0x2000, 0x3000 }, { 0x4000, 0x5000, 0x6000 } };
#define INDIRECT_GPA 0x8000
#define TXBUF(i) (0x20000ull + (uint64_t)(i) * 0x1000)
#define RXBUF(i) (0x80000ull + (uint64_t)(i) * 0x1000)
#define PG(gpa) ((gpa) >> 12)
#define ALL_FEATURES                                                                                \
	((1ull << VIRTIO_F_VERSION_1) | (1ull << VIRTIO_NET_F_MAC) | (1ull << VIRTIO_NET_F_STATUS) | \
	 (1ull << VIRTIO_NET_F_MRG_RXBUF) | (1ull << VIRTIO_RING_F_EVENT_IDX) |                     \
	 (1ull << VIRTIO_RING_F_INDIRECT_DESC))
#define NO_MRG (ALL_FEATURES & ~(1ull << VIRTIO_NET_F_MRG_RXBUF))

struct seg {
	uint64_t gpa;
	uint32_t len;
	bool write;
};

struct env {
	uint8_t *ram;
	struct guest_mem mem;
	struct ioloop io;
	struct virtio_dev *d;
	struct vp_harness h; /* d behind virtio-pci: checkpoints take the production vm_device */
	int peer;
	uint16_t next_desc[2], avail_idx[2];
	unsigned notified[2], cfg_notified;
};

static const uint8_t mac0[6] = { 0x52, 0x54, 0x00, 0x12, 0x34, 0x56 };
static const struct virtio_net_opts opts0 = { .name = "virtio-net@0", .no_offloads = true };

static void on_queue(struct virtio_dev *d, struct virtqueue *vq)
{
	((struct env *)d->transport)->notified[vq->index]++;
}

static void on_config(struct virtio_dev *d)
{
	((struct env *)d->transport)->cfg_notified++;
}

/* Ready events left in the loop? poll() on the epoll fd does not consume edge-triggered events. */
static bool loop_busy(struct env *e)
{
	struct pollfd p = { .fd = e->io.epfd, .events = POLLIN };
	return poll(&p, 1, 0) > 0;
}

static void pump(struct env *e)
{
	for (int i = 0; i < 1000; i++) {
		if (!loop_busy(e))
			return;
		ioloop_poll_once(&e->io, 0);
	}
	CHECK(!"the I/O loop never settles (busy loop)");
}

static void env_open_fd(struct env *e, int fd, int peer, const uint8_t mac[6], const struct virtio_net_opts *o)
{
	memset(e, 0, sizeof(*e));
	e->ram = aligned_alloc(4096, MEM_SIZE);
	CHECK(e->ram);
	memset(e->ram, 0, MEM_SIZE);
	CHECK_EQ(gmem_init_buffer(&e->mem, e->ram, MEM_SIZE), 0);
	CHECK_EQ(ioloop_init(&e->io, "test"), 0);
	CHECK_EQ(virtio_net_create(&e->d, &e->mem, &e->io, fd, mac, o), 0);
	e->peer = peer;
	vph_attach(&e->h, e->ram, MEM_SIZE, e->d, virtio_net_destroy, e, on_queue, on_config);
}

static void env_open(struct env *e, int sndbuf)
{
	int sv[2];
	CHECK_EQ(socketpair(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0, sv), 0);
	if (sndbuf)
		CHECK_EQ(setsockopt(sv[0], SOL_SOCKET, SO_SNDBUF, &sndbuf, sizeof(sndbuf)), 0);
	CHECK_EQ(fcntl(sv[1], F_SETFL, O_NONBLOCK), 0);
	env_open_fd(e, sv[0], sv[1], mac0, &opts0);
}

static void env_close(struct env *e)
{
	vph_fini(&e->h); /* the transport, then the device */
	ioloop_destroy(&e->io);
	if (e->peer >= 0)
		close(e->peer);
	gmem_free(&e->mem);
	free(e->ram);
}

/* What the driver does up to DRIVER_OK. */
static void drv_start(struct env *e, uint64_t features)
{
	struct virtio_dev *d = e->d;
	CHECK_EQ(features & ~d->host_features, 0);
	memset(e->ram, 0, 0x7000);
	d->guest_features = features;
	for (unsigned q = 0; q < 2; q++) {
		struct virtqueue *vq = &d->vqs[q];
		vq->size = QSZ;
		vq->desc_gpa = ring_gpa[q][0];
		vq->avail_gpa = ring_gpa[q][1];
		vq->used_gpa = ring_gpa[q][2];
		vq->ready = true;
		e->next_desc[q] = e->avail_idx[q] = 0;
	}
	d->status = VIRTIO_CONFIG_S_ACKNOWLEDGE | VIRTIO_CONFIG_S_DRIVER | VIRTIO_CONFIG_S_FEATURES_OK |
		    VIRTIO_CONFIG_S_DRIVER_OK;
	CHECK_EQ(d->ops->activate(d), 0);
	pump(e);
}

static void put_desc(uint8_t *table, unsigned i, uint64_t gpa, uint32_t len, uint16_t flags, uint16_t next)
{
	struct vring_desc desc = { .addr = htole64(gpa), .len = htole32(len), .flags = htole16(flags),
				   .next = htole16(next) };
	memcpy(table + 16 * i, &desc, sizeof(desc));
}

static void drv_publish(struct env *e, unsigned q, uint16_t head)
{
	uint8_t *avail = e->ram + ring_gpa[q][1];
	uint16_t h = htole16(head);
	memcpy(avail + 4 + 2 * (e->avail_idx[q] % QSZ), &h, 2);
	e->avail_idx[q]++;
	__atomic_store_n((uint16_t *)(avail + 2), htole16(e->avail_idx[q]), __ATOMIC_RELEASE);
}

static uint16_t drv_add(struct env *e, unsigned q, const struct seg *s, unsigned n)
{
	uint8_t *table = e->ram + ring_gpa[q][0];
	uint16_t head = e->next_desc[q];
	for (unsigned i = 0; i < n; i++) {
		unsigned idx = (head + i) % QSZ;
		uint16_t flags = (s[i].write ? VRING_DESC_F_WRITE : 0) | (i + 1 < n ? VRING_DESC_F_NEXT : 0);
		put_desc(table, idx, s[i].gpa, s[i].len, flags, (uint16_t)((idx + 1) % QSZ));
	}
	e->next_desc[q] = (uint16_t)((head + n) % QSZ);
	drv_publish(e, q, head);
	return head;
}

static uint16_t drv_rxbuf(struct env *e, unsigned i, uint32_t len)
{
	struct seg s = { RXBUF(i), len, true };
	return drv_add(e, VIRTIO_NET_RXQ, &s, 1);
}

static uint16_t used_idx(struct env *e, unsigned q)
{
	return le16toh(*(uint16_t *)(e->ram + ring_gpa[q][2] + 2));
}

static void used_elem(struct env *e, unsigned q, unsigned i, uint32_t *id, uint32_t *len)
{
	struct vring_used_elem u;
	memcpy(&u, e->ram + ring_gpa[q][2] + 4 + 8 * (i % QSZ), sizeof(u));
	*id = le32toh(u.id);
	*len = le32toh(u.len);
}

/* A packet: 12-byte header (no offload) then a frame whose bytes depend on `seed`. */
static void make_pkt(uint8_t *p, size_t len, unsigned seed)
{
	memset(p, 0, NET_HDR_LEN);
	for (size_t i = NET_HDR_LEN; i < len; i++)
		p[i] = (uint8_t)(seed * 31 + i * 7);
}

static void peer_send(struct env *e, size_t len, unsigned seed)
{
	static uint8_t p[NET_MAX_PKT];
	make_pkt(p, len, seed);
	CHECK_EQ(send(e->peer, p, len, 0), (long long)len);
}

/* Queue one TX packet as two segments (header, frame) in TXBUF(slot). */
static uint16_t drv_tx(struct env *e, unsigned slot, size_t len, unsigned seed)
{
	make_pkt(e->ram + TXBUF(slot), len, seed);
	struct seg s[2] = { { TXBUF(slot), NET_HDR_LEN, false },
			    { TXBUF(slot) + NET_HDR_LEN, (uint32_t)(len - NET_HDR_LEN), false } };
	return drv_add(e, VIRTIO_NET_TXQ, s, 2);
}

static void check_peer_got(struct env *e, size_t len, unsigned seed)
{
	static uint8_t want[NET_MAX_PKT], got[NET_MAX_PKT];
	make_pkt(want, len, seed);
	ssize_t r = recv(e->peer, got, sizeof(got), 0);
	CHECK_EQ(r, (long long)len);
	CHECK(memcmp(got, want, len) == 0);
}

static void check_peer_empty(struct env *e)
{
	uint8_t b[16];
	CHECK_EQ(recv(e->peer, b, sizeof(b), MSG_DONTWAIT), -1);
	CHECK_EQ(errno, EAGAIN);
}

/* Harvest the VMM dirty bitmap; it must hold exactly these pages. */
static void check_dirty(struct env *e, const uint64_t *pages, unsigned n)
{
	size_t words = gmem_bitmap_words(e->mem.npages);
	unsigned long got[words], want[words];
	memset(got, 0, sizeof(got));
	memset(want, 0, sizeof(want));
	gmem_dirty_harvest(&e->mem, got);
	for (unsigned i = 0; i < n; i++)
		want[pages[i] / (8 * sizeof(long))] |= 1ul << (pages[i] % (8 * sizeof(long)));
	for (size_t i = 0; i < words; i++) {
		if (got[i] != want[i])
			fprintf(stderr, "dirty word %zu: got %#lx want %#lx\n", i, got[i], want[i]);
		CHECK_EQ(got[i], want[i]);
	}
}

static void clear_dirty(struct env *e)
{
	size_t words = gmem_bitmap_words(e->mem.npages);
	unsigned long sink[words];
	gmem_dirty_harvest(&e->mem, sink);
}

/* The packet the guest sees in RX buffers [first, first+n) of the given lengths. */
static void check_rx(struct env *e, unsigned first, const uint32_t *lens, unsigned n, size_t len, unsigned seed)
{
	static uint8_t want[NET_MAX_PKT], got[NET_MAX_PKT];
	size_t off = 0;
	make_pkt(want, len, seed);
	for (unsigned i = 0; i < n; i++) {
		memcpy(got + off, e->ram + RXBUF(first + i), lens[i]);
		off += lens[i];
	}
	CHECK_EQ(off, len);
	struct virtio_net_hdr_mrg_rxbuf h;
	memcpy(&h, got, sizeof(h));
	CHECK_EQ(le16toh(h.num_buffers), n);
	memset(got + 10, 0, 2); /* num_buffers aside, the header and frame are the TAP's */
	CHECK(memcmp(got, want, len) == 0);
}

static uint16_t cfg_status(struct env *e)
{
	uint16_t s;
	e->d->ops->config_read(e->d, offsetof(struct virtio_net_config, status), &s, 2);
	return le16toh(s);
}

/* ---- tests ---- */

static void test_tx(void)
{
	struct env e;
	env_open(&e, 0);
	drv_start(&e, ALL_FEATURES);
	clear_dirty(&e);

	uint16_t head = drv_tx(&e, 0, 112, 1);
	e.d->ops->queue_notify(e.d, VIRTIO_NET_TXQ);
	check_peer_got(&e, 112, 1);
	CHECK_EQ(used_idx(&e, VIRTIO_NET_TXQ), 1);
	uint32_t id, len;
	used_elem(&e, VIRTIO_NET_TXQ, 0, &id, &len);
	CHECK_EQ(id, head);
	CHECK_EQ(len, 0);
	CHECK_EQ(e.notified[VIRTIO_NET_TXQ], 1);
	/* TX writes nothing of the guest's but the used ring. */
	uint64_t pages[] = { PG(ring_gpa[1][2]) };
	check_dirty(&e, pages, 1);

	/* The same through an indirect table. */
	make_pkt(e.ram + TXBUF(1), 300, 2);
	put_desc(e.ram + INDIRECT_GPA, 0, TXBUF(1), NET_HDR_LEN, VRING_DESC_F_NEXT, 1);
	put_desc(e.ram + INDIRECT_GPA, 1, TXBUF(1) + NET_HDR_LEN, 300 - NET_HDR_LEN, 0, 0);
	put_desc(e.ram + ring_gpa[1][0], e.next_desc[1], INDIRECT_GPA, 32, VRING_DESC_F_INDIRECT, 0);
	drv_publish(&e, VIRTIO_NET_TXQ, e.next_desc[1]++);
	e.d->ops->queue_notify(e.d, VIRTIO_NET_TXQ);
	check_peer_got(&e, 300, 2);
	CHECK_EQ(used_idx(&e, VIRTIO_NET_TXQ), 2);

	struct virtio_net_stats st;
	virtio_net_get_stats(e.d, &st);
	CHECK_EQ(st.tx_packets, 2);
	CHECK_EQ(st.tx_bytes, 100 + 288);
	CHECK_EQ(st.tx_dropped, 0);
	check_peer_empty(&e);
	env_close(&e);
}

static void test_rx_mergeable(void)
{
	struct env e;
	env_open(&e, 0);
	drv_start(&e, ALL_FEATURES);
	uint16_t heads[4];
	for (unsigned i = 0; i < 4; i++)
		heads[i] = drv_rxbuf(&e, i, 1000);
	e.d->ops->queue_notify(e.d, VIRTIO_NET_RXQ);
	pump(&e);
	clear_dirty(&e);

	peer_send(&e, 2500, 7);
	ioloop_poll_once(&e.io, 1000);
	pump(&e);
	CHECK_EQ(used_idx(&e, VIRTIO_NET_RXQ), 3);
	uint32_t lens[3] = { 1000, 1000, 500 };
	for (unsigned i = 0; i < 3; i++) {
		uint32_t id, len;
		used_elem(&e, VIRTIO_NET_RXQ, i, &id, &len);
		CHECK_EQ(id, heads[i]);
		CHECK_EQ(len, lens[i]);
	}
	check_rx(&e, 0, lens, 3, 2500, 7);
	CHECK_EQ(e.d->vqs[VIRTIO_NET_RXQ].last_avail, 3);
	CHECK_EQ(e.notified[VIRTIO_NET_RXQ], 1);
	/* Exactly the three buffers' pages and the used ring; not the fourth buffer, not the rings. */
	uint64_t pages[] = { PG(ring_gpa[0][2]), PG(RXBUF(0)), PG(RXBUF(1)), PG(RXBUF(2)) };
	check_dirty(&e, pages, 4);
	for (unsigned i = 0; i < 1000; i++)
		CHECK_EQ(e.ram[RXBUF(3) + i], 0);

	/* A small one goes into the fourth buffer alone. */
	peer_send(&e, 60, 8);
	ioloop_poll_once(&e.io, 1000);
	pump(&e);
	CHECK_EQ(used_idx(&e, VIRTIO_NET_RXQ), 4);
	uint32_t l60 = 60;
	check_rx(&e, 3, &l60, 1, 60, 8);
	env_close(&e);
}

static void test_rx_waits_for_buffers(void)
{
	struct env e;
	env_open(&e, 0);
	drv_start(&e, ALL_FEATURES);

	peer_send(&e, 300, 1);
	ioloop_poll_once(&e.io, 1000);
	pump(&e);
	CHECK_EQ(used_idx(&e, VIRTIO_NET_RXQ), 0);
	CHECK(!loop_busy(&e)); /* waiting, not spinning */
	peer_send(&e, 400, 2);
	ioloop_poll_once(&e.io, 1000);
	pump(&e);
	CHECK_EQ(used_idx(&e, VIRTIO_NET_RXQ), 0);
	CHECK(!loop_busy(&e));

	/* One buffer that is too small for the packet with mergeable buffers on: still waits. */
	drv_rxbuf(&e, 0, 200);
	e.d->ops->queue_notify(e.d, VIRTIO_NET_RXQ);
	pump(&e);
	CHECK_EQ(used_idx(&e, VIRTIO_NET_RXQ), 0);
	CHECK_EQ(e.d->vqs[VIRTIO_NET_RXQ].last_avail, 0);

	drv_rxbuf(&e, 1, 1000);
	drv_rxbuf(&e, 2, 1000);
	e.d->ops->queue_notify(e.d, VIRTIO_NET_RXQ);
	pump(&e);
	CHECK_EQ(used_idx(&e, VIRTIO_NET_RXQ), 3);
	uint32_t la[2] = { 200, 100 }, lb = 400;
	check_rx(&e, 0, la, 2, 300, 1);
	check_rx(&e, 2, &lb, 1, 400, 2);
	struct virtio_net_stats st;
	virtio_net_get_stats(e.d, &st);
	CHECK_EQ(st.rx_packets, 2);
	CHECK_EQ(st.rx_dropped, 0);
	env_close(&e);
}

/* More packets than one pass takes: the pass re-kicks itself, nothing is left behind. */
static void test_rx_burst(void)
{
	enum { N = 100 };
	struct env e;
	env_open(&e, 0);
	drv_start(&e, ALL_FEATURES);
	for (unsigned i = 0; i < N; i++)
		drv_rxbuf(&e, i % 64, 256); /* buffers may share pages: only the count matters here */
	e.d->ops->queue_notify(e.d, VIRTIO_NET_RXQ);
	pump(&e);
	for (unsigned i = 0; i < N; i++)
		peer_send(&e, 100, 200 + i);
	ioloop_poll_once(&e.io, 1000);
	CHECK(used_idx(&e, VIRTIO_NET_RXQ) < N); /* one pass is bounded */
	pump(&e);
	CHECK_EQ(used_idx(&e, VIRTIO_NET_RXQ), N);
	CHECK(e.notified[VIRTIO_NET_RXQ] >= 1);
	uint32_t id, len;
	used_elem(&e, VIRTIO_NET_RXQ, N - 1, &id, &len);
	CHECK_EQ(id, N - 1);
	CHECK_EQ(len, 100);
	uint32_t l = 100;
	check_rx(&e, (N - 1) % 64, &l, 1, 100, 200 + N - 1);
	CHECK(!loop_busy(&e));
	env_close(&e);
}

static void test_rx_not_mergeable(void)
{
	struct env e;
	env_open(&e, 0);
	drv_start(&e, NO_MRG);
	drv_rxbuf(&e, 0, 1000);
	e.d->ops->queue_notify(e.d, VIRTIO_NET_RXQ);
	/* Too big for the one buffer: dropped, the buffer stays available. */
	peer_send(&e, 2500, 1);
	peer_send(&e, 200, 2);
	ioloop_poll_once(&e.io, 1000);
	pump(&e);
	CHECK_EQ(used_idx(&e, VIRTIO_NET_RXQ), 1);
	uint32_t l = 200;
	check_rx(&e, 0, &l, 1, 200, 2);
	struct virtio_net_stats st;
	virtio_net_get_stats(e.d, &st);
	CHECK_EQ(st.rx_dropped, 1);
	CHECK_EQ(st.rx_packets, 1);
	env_close(&e);
}

static void test_malformed(void)
{
	struct env e;
	env_open(&e, 0);
	drv_start(&e, ALL_FEATURES);

	/* A writable segment in a TX chain. */
	make_pkt(e.ram + TXBUF(0), 100, 1);
	struct seg bad[2] = { { TXBUF(0), 100, false }, { TXBUF(1), 64, true } };
	drv_add(&e, VIRTIO_NET_TXQ, bad, 2);
	e.d->ops->queue_notify(e.d, VIRTIO_NET_TXQ);
	pump(&e);
	CHECK(e.d->status & VIRTIO_CONFIG_S_NEEDS_RESET);
	CHECK_EQ(e.cfg_notified, 1);
	CHECK_EQ(used_idx(&e, VIRTIO_NET_TXQ), 0);
	check_peer_empty(&e);
	/* Broken stays broken (and quiet) until the driver resets. */
	drv_tx(&e, 2, 100, 2);
	e.d->ops->queue_notify(e.d, VIRTIO_NET_TXQ);
	pump(&e);
	check_peer_empty(&e);
	CHECK_EQ(e.cfg_notified, 1);

	/* Reset brings it back. */
	virtio_dev_reset(e.d);
	drv_start(&e, ALL_FEATURES);
	drv_tx(&e, 0, 100, 3);
	e.d->ops->queue_notify(e.d, VIRTIO_NET_TXQ);
	check_peer_got(&e, 100, 3);

	/* A buffer outside RAM. */
	struct seg out[1] = { { MEM_SIZE + 0x1000, 100, false } };
	drv_add(&e, VIRTIO_NET_TXQ, out, 1);
	e.d->ops->queue_notify(e.d, VIRTIO_NET_TXQ);
	pump(&e);
	CHECK(e.d->status & VIRTIO_CONFIG_S_NEEDS_RESET);
	CHECK_EQ(e.cfg_notified, 2);
	check_peer_empty(&e);

	/* A TX chain too short for the header. */
	virtio_dev_reset(e.d);
	drv_start(&e, ALL_FEATURES);
	struct seg shortc[1] = { { TXBUF(0), NET_HDR_LEN - 1, false } };
	drv_add(&e, VIRTIO_NET_TXQ, shortc, 1);
	e.d->ops->queue_notify(e.d, VIRTIO_NET_TXQ);
	pump(&e);
	CHECK(e.d->status & VIRTIO_CONFIG_S_NEEDS_RESET);
	CHECK_EQ(e.cfg_notified, 3);

	/* A readable RX buffer. */
	virtio_dev_reset(e.d);
	drv_start(&e, ALL_FEATURES);
	struct seg ro[1] = { { RXBUF(0), 1000, false } };
	drv_add(&e, VIRTIO_NET_RXQ, ro, 1);
	peer_send(&e, 100, 4);
	ioloop_poll_once(&e.io, 1000);
	pump(&e);
	CHECK(e.d->status & VIRTIO_CONFIG_S_NEEDS_RESET);
	CHECK_EQ(e.cfg_notified, 4);
	CHECK_EQ(used_idx(&e, VIRTIO_NET_RXQ), 0);
	for (unsigned i = 0; i < 1000; i++)
		CHECK_EQ(e.ram[RXBUF(0) + i], 0);
	env_close(&e);
}

static void test_tx_backpressure(void)
{
	enum { N = 40 };
	struct env e;
	env_open(&e, 4096);
	drv_start(&e, ALL_FEATURES);
	for (unsigned i = 0; i < N; i++)
		drv_tx(&e, i, 1000, 100 + i);
	e.d->ops->queue_notify(e.d, VIRTIO_NET_TXQ);
	pump(&e);
	uint16_t sent = used_idx(&e, VIRTIO_NET_TXQ);
	CHECK(sent > 0 && sent < N); /* the peer is full */
	CHECK_EQ(e.d->vqs[VIRTIO_NET_TXQ].last_avail, sent); /* the refused chain is not consumed */
	CHECK(!loop_busy(&e));

	unsigned got = 0;
	for (int spin = 0; spin < 1000 && got < N; spin++) {
		for (;;) {
			uint8_t b[2048];
			if (recv(e.peer, b, sizeof(b), MSG_DONTWAIT) < 0)
				break;
			uint8_t want[1000];
			make_pkt(want, 1000, 100 + got);
			CHECK(memcmp(b, want, 1000) == 0); /* every packet, in order */
			got++;
		}
		ioloop_poll_once(&e.io, 10);
	}
	CHECK_EQ(got, N);
	CHECK_EQ(used_idx(&e, VIRTIO_NET_TXQ), N);
	struct virtio_net_stats st;
	virtio_net_get_stats(e.d, &st);
	CHECK_EQ(st.tx_packets, N);
	CHECK_EQ(st.tx_dropped, 0);
	env_close(&e);
}

static void test_link_down(void)
{
	struct env e;
	env_open(&e, 0);
	drv_start(&e, ALL_FEATURES);
	CHECK_EQ(cfg_status(&e), VIRTIO_NET_S_LINK_UP);
	uint32_t gen = e.d->config_generation;

	close(e.peer);
	e.peer = -1;
	drv_tx(&e, 0, 100, 1);
	e.d->ops->queue_notify(e.d, VIRTIO_NET_TXQ);
	pump(&e);
	CHECK_EQ(cfg_status(&e), 0);
	CHECK_EQ(e.cfg_notified, 1);
	CHECK(e.d->config_generation != gen);
	CHECK(!(e.d->status & VIRTIO_CONFIG_S_NEEDS_RESET));
	CHECK_EQ(used_idx(&e, VIRTIO_NET_TXQ), 1); /* completed, not stuck */

	/* Later packets are completed (dropped) too, and nothing else happens. */
	drv_tx(&e, 1, 100, 2);
	e.d->ops->queue_notify(e.d, VIRTIO_NET_TXQ);
	pump(&e);
	CHECK_EQ(used_idx(&e, VIRTIO_NET_TXQ), 2);
	CHECK_EQ(e.cfg_notified, 1);
	struct virtio_net_stats st;
	virtio_net_get_stats(e.d, &st);
	CHECK_EQ(st.tx_dropped, 2);
	CHECK_EQ(virtio_net_announce(e.d), -ENOLINK);
	env_close(&e);
}

static void test_quiesce(void)
{
	struct env e;
	env_open(&e, 0);
	drv_start(&e, ALL_FEATURES);
	struct vm_device *v = vph_vmdev(&e.h);
	CHECK(strcmp(v->name, "virtio-net@0") == 0);

	CHECK_EQ(v->quiesce(v->opaque), 0);
	clear_dirty(&e);
	unsigned n0 = e.notified[0], n1 = e.notified[1];
	drv_rxbuf(&e, 0, 1000);
	drv_tx(&e, 0, 100, 1);
	peer_send(&e, 200, 2);
	e.d->ops->queue_notify(e.d, VIRTIO_NET_RXQ);
	e.d->ops->queue_notify(e.d, VIRTIO_NET_TXQ);
	ioloop_poll_once(&e.io, 50);
	pump(&e);
	/* Nothing touched, sent or raised while quiesced. */
	check_dirty(&e, NULL, 0);
	check_peer_empty(&e);
	CHECK_EQ(used_idx(&e, 0), 0);
	CHECK_EQ(used_idx(&e, 1), 0);
	CHECK_EQ(e.notified[0], n0);
	CHECK_EQ(e.notified[1], n1);

	v->resume(v->opaque);
	pump(&e);
	check_peer_got(&e, 100, 1);
	CHECK_EQ(used_idx(&e, 0), 1);
	CHECK_EQ(used_idx(&e, 1), 1);
	uint32_t l = 200;
	check_rx(&e, 0, &l, 1, 200, 2);
	CHECK(e.notified[0] > n0);
	CHECK(e.notified[1] > n1);
	env_close(&e);
}

/* The same guest steps on two devices. */
static void both_rxbuf(struct env *a, struct env *b, unsigned i, uint32_t len)
{
	drv_rxbuf(a, i, len);
	drv_rxbuf(b, i, len);
	a->d->ops->queue_notify(a->d, VIRTIO_NET_RXQ);
	b->d->ops->queue_notify(b->d, VIRTIO_NET_RXQ);
	pump(a);
	pump(b);
}

static void test_save_restore(void)
{
	struct env a, b, c;
	env_open(&a, 0);
	drv_start(&a, ALL_FEATURES);
	struct vm_device *va = vph_vmdev(&a.h);

	/* Some history, then a packet that waits for buffers at the checkpoint. */
	drv_tx(&a, 0, 100, 1);
	drv_tx(&a, 1, 200, 2);
	a.d->ops->queue_notify(a.d, VIRTIO_NET_TXQ);
	check_peer_got(&a, 100, 1);
	check_peer_got(&a, 200, 2);
	drv_rxbuf(&a, 0, 1000);
	a.d->ops->queue_notify(a.d, VIRTIO_NET_RXQ);
	peer_send(&a, 600, 3);
	peer_send(&a, 2500, 4);
	ioloop_poll_once(&a.io, 1000);
	pump(&a);
	drv_rxbuf(&a, 1, 1000);
	a.d->ops->queue_notify(a.d, VIRTIO_NET_RXQ);
	pump(&a);
	CHECK_EQ(used_idx(&a, VIRTIO_NET_RXQ), 1);

	void *unq = calloc(1, 4096);
	CHECK_EQ(fdt_create(unq, 4096), 0);
	CHECK_EQ(va->save(va->opaque, unq), -EBUSY); /* only a quiesced device saves */
	free(unq);
	CHECK_EQ(va->quiesce(va->opaque), 0);
	void *fdt = vph_save(va, 1 << 18, NULL, NULL, 0);
	int node = fdt_path_offset(fdt, "/virtio-net@0");
	CHECK(node >= 0);

	/* The backup: same RAM, its own backend, another MAC on the command line. */
	int sv[2];
	CHECK_EQ(socketpair(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0, sv), 0);
	CHECK_EQ(fcntl(sv[1], F_SETFL, O_NONBLOCK), 0);
	uint8_t other[6];
	virtio_net_default_mac(other, "backup", 1);
	env_open_fd(&b, sv[0], sv[1], other, &opts0);
	memcpy(b.ram, a.ram, MEM_SIZE);
	memcpy(b.next_desc, a.next_desc, sizeof(a.next_desc));
	memcpy(b.avail_idx, a.avail_idx, sizeof(a.avail_idx));
	struct vm_device *vb = vph_vmdev(&b.h);
	CHECK_EQ(vb->restore(vb->opaque, fdt, node), 0);
	vb->resume(vb->opaque); /* as cmd/run.c does after a restore or a takeover */
	uint8_t m[6];
	b.d->ops->config_read(b.d, 0, m, 6);
	CHECK(memcmp(m, mac0, 6) == 0);
	CHECK_EQ(b.d->guest_features, ALL_FEATURES);
	CHECK_EQ(b.d->vqs[0].last_avail, a.d->vqs[0].last_avail);
	CHECK_EQ(b.d->vqs[1].used_idx, 2);
	CHECK_EQ(cfg_status(&b), VIRTIO_NET_S_LINK_UP);
	pump(&b);
	CHECK(b.notified[0] >= 1 && b.notified[1] >= 1); /* interrupts re-raised after a restore */
	va->resume(va->opaque);
	pump(&a);

	/* Continue identically: the waiting packet lands on both once it fits, then new traffic. */
	both_rxbuf(&a, &b, 2, 1000);
	CHECK_EQ(used_idx(&a, VIRTIO_NET_RXQ), 1);
	CHECK_EQ(used_idx(&b, VIRTIO_NET_RXQ), 1);
	both_rxbuf(&a, &b, 3, 1000);
	CHECK_EQ(used_idx(&a, VIRTIO_NET_RXQ), 4);
	CHECK_EQ(used_idx(&b, VIRTIO_NET_RXQ), 4);
	uint32_t l3[3] = { 1000, 1000, 500 };
	check_rx(&a, 1, l3, 3, 2500, 4);
	check_rx(&b, 1, l3, 3, 2500, 4);
	both_rxbuf(&a, &b, 4, 1000);
	peer_send(&a, 333, 5);
	peer_send(&b, 333, 5);
	ioloop_poll_once(&a.io, 1000);
	ioloop_poll_once(&b.io, 1000);
	pump(&a);
	pump(&b);
	drv_tx(&a, 2, 150, 6);
	drv_tx(&b, 2, 150, 6);
	a.d->ops->queue_notify(a.d, VIRTIO_NET_TXQ);
	b.d->ops->queue_notify(b.d, VIRTIO_NET_TXQ);
	check_peer_got(&a, 150, 6);
	check_peer_got(&b, 150, 6);
	check_peer_empty(&a);
	check_peer_empty(&b);
	CHECK_EQ(used_idx(&b, VIRTIO_NET_RXQ), 5);
	CHECK(memcmp(a.ram, b.ram, MEM_SIZE) == 0);

	/* After a failover the backup announces the restored MAC (not its command-line one). */
	CHECK_EQ(virtio_net_announce(b.d), 0);
	uint8_t rarp[128];
	CHECK_EQ(recv(b.peer, rarp, sizeof(rarp), MSG_DONTWAIT), NET_HDR_LEN + 60);
	static const uint8_t zero_hdr[NET_HDR_LEN], bcast[6] = { 0xff, 0xff, 0xff, 0xff, 0xff, 0xff };
	const uint8_t *f = rarp + NET_HDR_LEN;
	CHECK(memcmp(rarp, zero_hdr, NET_HDR_LEN) == 0);
	CHECK(memcmp(f, bcast, 6) == 0);
	CHECK(memcmp(f + 6, mac0, 6) == 0);
	CHECK(f[12] == 0x80 && f[13] == 0x35 && f[21] == 3);
	CHECK(memcmp(f + 22, mac0, 6) == 0 && memcmp(f + 32, mac0, 6) == 0);
	struct virtio_net_stats stb;
	virtio_net_get_stats(b.d, &stb);
	CHECK_EQ(stb.tx_packets, 1); /* not guest traffic */

	/* Restore refuses bad state and leaves the device untouched. */
	int sv2[2];
	CHECK_EQ(socketpair(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0, sv2), 0);
	env_open_fd(&c, sv2[0], sv2[1], mac0, &opts0);
	struct vm_device *vc = vph_vmdev(&c.h);
	static const uint8_t mcast[6] = { 0x01, 0x00, 0x5e, 0x00, 0x00, 0x01 };
	CHECK_EQ(fdt_setprop_inplace(fdt, node, "net-mac", mcast, 6), 0);
	CHECK_EQ(vc->restore(vc->opaque, fdt, node), -EINVAL);
	CHECK_EQ(c.d->status, 0);
	CHECK_EQ(c.d->guest_features, 0);
	CHECK_EQ(fdt_setprop_inplace(fdt, node, "net-mac", mac0, 6), 0);
	CHECK_EQ(fdt_setprop_inplace_u32(fdt, node, "net-status", 0x80), 0);
	CHECK_EQ(vc->restore(vc->opaque, fdt, node), -EINVAL);
	CHECK_EQ(fdt_setprop_inplace_u32(fdt, node, "net-status", 1), 0);
	CHECK_EQ(fdt_setprop_inplace_u32(fdt, node, "net-version", 99), 0);
	CHECK_EQ(vc->restore(vc->opaque, fdt, node), -EINVAL);
	CHECK_EQ(c.d->status, 0);
	CHECK_EQ(fdt_setprop_inplace_u32(fdt, node, "net-version", 1), 0);
	CHECK_EQ(vc->restore(vc->opaque, fdt, node), 0); /* and the repaired blob is accepted */
	CHECK(c.d->status & VIRTIO_CONFIG_S_DRIVER_OK);

	free(fdt);
	env_close(&a);
	env_close(&b);
	env_close(&c);
}

/* The sink hook: a stand-in for the FT engine that holds packets until "acked". */
struct hold_sink {
	int held;
	bool refuse;
};

static int hold_send(void *ctx, const struct iovec *iov, int iovcnt)
{
	struct hold_sink *h = ctx;
	(void)iov;
	(void)iovcnt;
	if (h->refuse)
		return -EAGAIN;
	h->held++;
	return 0;
}

static void test_sink(void)
{
	struct env e;
	env_open(&e, 0);
	drv_start(&e, ALL_FEATURES);
	struct hold_sink h = { .refuse = true };
	struct net_tx_sink s = { .send = hold_send, .ctx = &h };
	virtio_net_set_tx_sink(e.d, &s);
	pump(&e);
	drv_tx(&e, 0, 100, 1);
	e.d->ops->queue_notify(e.d, VIRTIO_NET_TXQ);
	pump(&e);
	CHECK_EQ(used_idx(&e, VIRTIO_NET_TXQ), 0); /* refused: kept, not dropped */
	CHECK_EQ(e.d->vqs[VIRTIO_NET_TXQ].last_avail, 0);
	h.refuse = false;
	virtio_net_kick(e.d);
	pump(&e);
	CHECK_EQ(h.held, 1);
	CHECK_EQ(used_idx(&e, VIRTIO_NET_TXQ), 1);
	check_peer_empty(&e);
	virtio_net_set_tx_sink(e.d, NULL); /* back to the fd */
	drv_tx(&e, 1, 100, 2);
	e.d->ops->queue_notify(e.d, VIRTIO_NET_TXQ);
	check_peer_got(&e, 100, 2);
	CHECK_EQ(h.held, 1);
	env_close(&e);
}

static void test_mac(void)
{
	uint8_t m[6], m2[6];
	CHECK_EQ(virtio_net_parse_mac("52:54:00:12:34:56", m), 0);
	CHECK(memcmp(m, mac0, 6) == 0);
	CHECK_EQ(virtio_net_parse_mac("02:AB:cd:EF:01:ff", m), 0);
	CHECK_EQ(m[1], 0xab);
	CHECK_EQ(m[5], 0xff);
	memcpy(m2, m, 6);
	const char *bad[] = { "01:00:5e:00:00:01", "ff:ff:ff:ff:ff:ff", "00:00:00:00:00:00", "52:54:00:12:34",
			      "52:54:00:12:34:567", "52:54:00:12:34:5g", "52-54-00-12-34-56", "", " 52:54:00:12:34:5",
			      "52:54:00:12:34:56 " };
	for (unsigned i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		CHECK_EQ(virtio_net_parse_mac(bad[i], m), -EINVAL);
		CHECK(memcmp(m, m2, 6) == 0); /* untouched on error */
	}
	CHECK_EQ(virtio_net_parse_mac(NULL, m), -EINVAL);

	uint8_t a[6], b[6], c[6], d[6];
	virtio_net_default_mac(a, "/boot/bzImage,tap0", 0);
	virtio_net_default_mac(b, "/boot/bzImage,tap0", 0);
	virtio_net_default_mac(c, "/boot/bzImage,tap0", 1);
	virtio_net_default_mac(d, "/boot/bzImage,tap1", 0);
	CHECK(memcmp(a, b, 6) == 0);
	CHECK(memcmp(a, c, 6) != 0);
	CHECK(memcmp(a, d, 6) != 0);
	CHECK(memcmp(c, d, 6) != 0);
	CHECK_EQ(a[0], 0x52); /* locally administered (bit 1), unicast (bit 0 clear) */
	CHECK(!(a[0] & 1) && (a[0] & 2));
	char s[18];
	virtio_net_format_mac(c, s);
	CHECK_EQ(virtio_net_parse_mac(s, m), 0);
	CHECK(memcmp(m, c, 6) == 0);

	/* The device refuses a multicast MAC (and closes the fd it was given). */
	struct guest_mem mem;
	struct ioloop io;
	void *ram = aligned_alloc(4096, 4096 * 4);
	CHECK_EQ(gmem_init_buffer(&mem, ram, 4096 * 4), 0);
	CHECK_EQ(ioloop_init(&io, "t"), 0);
	int sv[2];
	CHECK_EQ(socketpair(AF_UNIX, SOCK_DGRAM, 0, sv), 0);
	struct virtio_dev *dev = NULL;
	static const uint8_t mc[6] = { 0x33, 0x33, 0, 0, 0, 1 };
	CHECK_EQ(virtio_net_create(&dev, &mem, &io, sv[0], mc, NULL), -EINVAL);
	CHECK_EQ(fcntl(sv[0], F_GETFD), -1);
	close(sv[1]);
	ioloop_destroy(&io);
	gmem_free(&mem);
	free(ram);
}

static void test_config(void)
{
	struct env e;
	int sv[2];
	CHECK_EQ(socketpair(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0, sv), 0);
	struct virtio_net_opts o = { .name = "virtio-net@1", .mtu = 9000 };
	env_open_fd(&e, sv[0], sv[1], mac0, &o);
	struct virtio_dev *d = e.d;
	CHECK(d->host_features & (1ull << VIRTIO_NET_F_MTU));
	CHECK(d->host_features & (1ull << VIRTIO_NET_F_GUEST_TSO4));
	CHECK(d->host_features & (1ull << VIRTIO_NET_F_HOST_TSO6));
	CHECK(d->host_features & (1ull << VIRTIO_F_VERSION_1));
	CHECK(!(d->host_features & (1ull << VIRTIO_NET_F_CTRL_VQ)));
	CHECK(!(d->host_features & (1ull << VIRTIO_NET_F_GUEST_UFO)));
	CHECK_EQ(d->device_id, 1);
	CHECK_EQ(d->nqueues, 2);
	CHECK_EQ(d->config_len, 12);
	struct virtio_net_config c;
	d->ops->config_read(d, 0, &c, 12);
	CHECK(memcmp(c.mac, mac0, 6) == 0);
	CHECK_EQ(le16toh(c.status), VIRTIO_NET_S_LINK_UP);
	CHECK_EQ(le16toh(c.max_virtqueue_pairs), 1);
	CHECK_EQ(le16toh(c.mtu), 9000);
	uint8_t byte;
	d->ops->config_read(d, 5, &byte, 1);
	CHECK_EQ(byte, 0x56);
	d->ops->config_write(d, 0, "\x02\x00\x00\x00\x00\x01", 6); /* ignored */
	d->ops->config_read(d, 0, &c, 6);
	CHECK(memcmp(c.mac, mac0, 6) == 0);
	env_close(&e);

	env_open(&e, 0);
	CHECK(!(e.d->host_features & (1ull << VIRTIO_NET_F_CSUM))); /* no_offloads */
	CHECK(!(e.d->host_features & (1ull << VIRTIO_NET_F_MTU)));
	env_close(&e);

	/* The TAP helpers on things that are not TAPs. */
	char err[256];
	CHECK_EQ(tap_open("", err, sizeof(err)), -EINVAL);
	CHECK(strlen(err) > 0);
	CHECK_EQ(tap_open("a-name-longer-than-15", err, sizeof(err)), -EINVAL);
	CHECK(strstr(err, "bad interface name"));
	CHECK_EQ(tap_open("a/b", err, sizeof(err)), -EINVAL);
	CHECK_EQ(socketpair(AF_UNIX, SOCK_DGRAM, 0, sv), 0);
	CHECK_EQ(tap_set_offload(sv[0], 0), -ENOTTY);
	close(sv[0]);
	close(sv[1]);
	CHECK(tap_error_is_fatal(-EBADFD) && tap_error_is_fatal(ENODEV));
	/* EIO is what a write to a TAP whose host side is down gets: a pulled cable, not a dead backend */
	CHECK(!tap_error_is_fatal(-EIO));
	CHECK(!tap_error_is_fatal(-EINVAL) && !tap_error_is_fatal(-EAGAIN) && !tap_error_is_fatal(-ENOBUFS));
}

/* ---- a real TAP, in a private user+network namespace (skipped where those are not allowed) ---- */

static bool write_file(const char *path, const char *s)
{
	int fd = open(path, O_WRONLY | O_CLOEXEC);
	if (fd < 0)
		return false;
	bool ok = write(fd, s, strlen(s)) == (ssize_t)strlen(s);
	close(fd);
	return ok;
}

static int enter_netns(void)
{
	uid_t uid = getuid();
	gid_t gid = getgid();
	if (unshare(CLONE_NEWUSER | CLONE_NEWNET) < 0)
		return -1;
	char map[64];
	snprintf(map, sizeof(map), "0 %u 1", (unsigned)uid);
	write_file("/proc/self/setgroups", "deny");
	write_file("/proc/self/uid_map", map);
	snprintf(map, sizeof(map), "0 %u 1", (unsigned)gid);
	write_file("/proc/self/gid_map", map);
	/* No IPv6 autoconf chatter on the TAP. */
	write_file("/proc/sys/net/ipv6/conf/default/disable_ipv6", "1");
	write_file("/proc/sys/net/ipv6/conf/all/disable_ipv6", "1");
	return 0;
}

static void tap_child(void)
{
	if (enter_netns() < 0)
		_exit(77);
	char err[256] = "";
	int fd = tap_open("ftvnet0", err, sizeof(err));
	if (fd < 0)
		fprintf(stderr, "tap_open: %s\n", err);
	CHECK(fd >= 0);
	CHECK_EQ(err[0], 0);

	/* We created it, so it is up. */
	int s = socket(AF_INET, SOCK_DGRAM, 0);
	struct ifreq ifr;
	memset(&ifr, 0, sizeof(ifr));
	strcpy(ifr.ifr_name, "ftvnet0");
	CHECK_EQ(ioctl(s, SIOCGIFFLAGS, &ifr), 0);
	CHECK(ifr.ifr_flags & IFF_UP);
	close(s);

	CHECK_EQ(tap_open("ftvnet0", err, sizeof(err)), -EBUSY);
	CHECK(strstr(err, "busy"));
	uint64_t gf = (1ull << VIRTIO_NET_F_GUEST_CSUM) | (1ull << VIRTIO_NET_F_GUEST_TSO4) |
		      (1ull << VIRTIO_NET_F_GUEST_TSO6) | (1ull << VIRTIO_NET_F_GUEST_ECN);
	CHECK_EQ(tap_set_offload(fd, gf), 0);
	CHECK_EQ(tap_set_offload(fd, 0), 0);

	/* End to end: a packet socket on the host side of the TAP. */
	int ps = socket(AF_PACKET, SOCK_RAW | SOCK_CLOEXEC, htons(0x88b5));
	CHECK(ps >= 0);
	struct sockaddr_ll ll = { .sll_family = AF_PACKET, .sll_protocol = htons(0x88b5),
				  .sll_ifindex = (int)if_nametoindex("ftvnet0") };
	CHECK_EQ(bind(ps, (struct sockaddr *)&ll, sizeof(ll)), 0);

	struct env e;
	struct virtio_net_opts o = { .name = "virtio-net@0" };
	env_open_fd(&e, fd, -1, mac0, &o);
	drv_start(&e, ALL_FEATURES | (1ull << VIRTIO_NET_F_CSUM) | (1ull << VIRTIO_NET_F_GUEST_CSUM));

	/* Guest -> host: header (no offload) + Ethernet frame with our ethertype. */
	uint8_t *p = e.ram + TXBUF(0);
	memset(p, 0, NET_HDR_LEN);
	uint8_t *f = p + NET_HDR_LEN;
	memset(f, 0xff, 6);
	memcpy(f + 6, mac0, 6);
	f[12] = 0x88;
	f[13] = 0xb5;
	for (unsigned i = 14; i < 100; i++)
		f[i] = (uint8_t)i;
	struct seg sg[2] = { { TXBUF(0), NET_HDR_LEN, false }, { TXBUF(0) + NET_HDR_LEN, 100, false } };
	drv_add(&e, VIRTIO_NET_TXQ, sg, 2);
	e.d->ops->queue_notify(e.d, VIRTIO_NET_TXQ);
	uint8_t got[2048];
	struct pollfd pf = { .fd = ps, .events = POLLIN };
	CHECK_EQ(poll(&pf, 1, 2000), 1);
	CHECK_EQ(recv(ps, got, sizeof(got), 0), 100);
	CHECK(memcmp(got, f, 100) == 0);

	/* Host -> guest. */
	for (unsigned i = 0; i < 4; i++)
		drv_rxbuf(&e, i, 2048);
	e.d->ops->queue_notify(e.d, VIRTIO_NET_RXQ);
	uint8_t out[80];
	memcpy(out, mac0, 6);
	memset(out + 6, 0x02, 6);
	out[12] = 0x88;
	out[13] = 0xb5;
	for (unsigned i = 14; i < sizeof(out); i++)
		out[i] = (uint8_t)(0xa0 + i);
	ll.sll_halen = 6;
	memcpy(ll.sll_addr, mac0, 6);
	CHECK_EQ(sendto(ps, out, sizeof(out), 0, (struct sockaddr *)&ll, sizeof(ll)), (long long)sizeof(out));
	for (int i = 0; i < 200 && used_idx(&e, VIRTIO_NET_RXQ) == 0; i++)
		ioloop_poll_once(&e.io, 10);
	CHECK_EQ(used_idx(&e, VIRTIO_NET_RXQ), 1);
	uint32_t id, len;
	used_elem(&e, VIRTIO_NET_RXQ, 0, &id, &len);
	CHECK_EQ(len, NET_HDR_LEN + sizeof(out));
	struct virtio_net_hdr_mrg_rxbuf h;
	memcpy(&h, e.ram + RXBUF(0), sizeof(h));
	CHECK_EQ(h.hdr.gso_type, VIRTIO_NET_HDR_GSO_NONE);
	CHECK_EQ(le16toh(h.num_buffers), 1);
	CHECK(memcmp(e.ram + RXBUF(0) + NET_HDR_LEN, out, sizeof(out)) == 0);

	close(ps);
	env_close(&e);
	exit(test_checks > 0 ? 0 : 1);
}

static void perm_child(void)
{
	/* A user namespace without its own network namespace: no CAP_NET_ADMIN over the real one. */
	if (unshare(CLONE_NEWUSER) < 0)
		_exit(77);
	char err[256] = "";
	int r = tap_open("ftvnetperm0", err, sizeof(err));
	CHECK(r == -EPERM || r == -EACCES);
	CHECK(strstr(err, "not allowed"));
	CHECK(strchr(err, '\n') == NULL);
	exit(0);
}

static void run_child(const char *what, void (*fn)(void))
{
	fflush(NULL);
	pid_t pid = fork();
	CHECK(pid >= 0);
	if (pid == 0)
		fn();
	int st;
	CHECK_EQ(waitpid(pid, &st, 0), pid);
	CHECK(WIFEXITED(st));
	if (WEXITSTATUS(st) == 77) {
		printf("%s: skipped (no user/network namespaces here)\n", what);
		return;
	}
	CHECK_EQ(WEXITSTATUS(st), 0);
	test_checks++;
}

int main(void)
{
	test_mac();
	test_config();
	test_tx();
	test_rx_mergeable();
	test_rx_waits_for_buffers();
	test_rx_not_mergeable();
	test_rx_burst();
	test_malformed();
	test_tx_backpressure();
	test_link_down();
	test_quiesce();
	test_sink();
	test_save_restore();
	run_child("tap in a netns", tap_child);
	run_child("tap permission error", perm_child);
	TEST_DONE("test_virtio_net");
}

/* virtio_net.c - virtio-net device model: TX/RX data path on the ioloop, link state, quiesce and resume. */
#include "virtio_net.h"
#include "virtio_net_int.h"
#include "../vmm/util.h"

#include <endian.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/virtio_ids.h>
#include <linux/virtio_net.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <unistd.h>

/*
 * Threading. The data path (TX, RX) runs on the ioloop thread, one pass at a time under n->lock,
 * which also guards everything the transport (config_read, activate, reset; d->lock held) and the
 * checkpoint hooks (quiesce, save, restore; other threads) touch. Lock order: d->lock -> n->lock, and
 * notify_lock -> n->lock. Interrupts are raised after n->lock is dropped, under notify_lock only,
 * because the transport's notify callbacks may take d->lock; quiesce takes notify_lock once after
 * setting `quiesced`, so when it returns no pass is still touching guest memory or raising
 * interrupts, and interrupts a late pass owed are kept in `owed` and raised on resume.
 *
 * No chain is ever held across passes: a TX chain refused with -EAGAIN is un-popped (last_avail
 * rewound) and popped again when the fd turns writable; RX chains are popped only once a packet is
 * in hand and are un-popped if the packet does not fit yet. So quiesce never has a half-consumed
 * chain to finish, and the saved queue state is exact. A packet read from the fd but not yet
 * delivered is device state and is saved with it.
 *
 * The fd is watched edge-triggered (EPOLLIN|EPOLLOUT|EPOLLET) and registered once: RX stops simply by
 * not reading (the kernel queues, then drops, as a NIC without buffers would), and restarts on the
 * driver's RX kick, on resume or on a kick of our eventfd, each of which reads until EAGAIN.
 */

#define NET_CONFIG_LEN (offsetof(struct virtio_net_config, mtu) + sizeof(uint16_t))
/* Per pass: bounded so a busy guest or a flooding peer cannot starve the other direction or keep
 * interrupts from being raised; the pass re-kicks itself to go on. */
#define RX_BUDGET 64
#define TX_BUDGET 256

#define BIT(b) (1ull << (b))
#define NET_FEATURES_BASE                                                                           \
	(BIT(VIRTIO_NET_F_MAC) | BIT(VIRTIO_NET_F_STATUS) | BIT(VIRTIO_NET_F_MRG_RXBUF) |          \
	 BIT(VIRTIO_RING_F_EVENT_IDX) | BIT(VIRTIO_RING_F_INDIRECT_DESC))
/* The TAP does checksum and segmentation for us both ways: the header is passed through as is. */
#define NET_FEATURES_OFFLOAD                                                                        \
	(BIT(VIRTIO_NET_F_CSUM) | BIT(VIRTIO_NET_F_GUEST_CSUM) | BIT(VIRTIO_NET_F_HOST_TSO4) |     \
	 BIT(VIRTIO_NET_F_HOST_TSO6) | BIT(VIRTIO_NET_F_HOST_ECN) | BIT(VIRTIO_NET_F_GUEST_TSO4) |  \
	 BIT(VIRTIO_NET_F_GUEST_TSO6) | BIT(VIRTIO_NET_F_GUEST_ECN))

void net_kick(struct virtio_net *n)
{
	uint64_t one = 1;
	/* EAGAIN means the counter is already non-zero: a kick is pending anyway. */
	if (write(n->kickfd, &one, sizeof(one)) < 0 && errno != EAGAIN)
		warnx("virtio-net %s: cannot kick the I/O loop: %s", n->vdev.name, strerror(errno));
}

static bool net_can_run(struct virtio_net *n)
{
	uint8_t st = __atomic_load_n(&n->vdev.status, __ATOMIC_ACQUIRE);
	return n->active && !n->quiesced && (st & VIRTIO_CONFIG_S_DRIVER_OK) && !(st & VIRTIO_CONFIG_S_NEEDS_RESET);
}

static void net_backend_failed(struct virtio_net *n, struct net_work *w, int err, const char *what)
{
	if (n->dead)
		return;
	n->dead = true;
	warnx("virtio-net %s: backend %s failed (%s): link down, the VM keeps running", n->vdev.name, what,
	      err ? strerror(err < 0 ? -err : err) : "end of file");
	ioloop_del(n->io, n->fd);
	n->status &= ~VIRTIO_NET_S_LINK_UP;
	n->rx_len = 0;
	n->tx_blocked = false;
	w->config = true;
}

/* ---- TX ---- */

static void net_tx(struct virtio_net *n, struct net_work *w)
{
	struct virtqueue *vq = &n->vdev.vqs[VIRTIO_NET_TXQ];
	struct vq_req *req = n->tx_req;
	bool pushed = false;

	if (n->tx_blocked || vq->broken)
		return;
	for (unsigned done = 0;; done++) {
		if (done == TX_BUDGET) {
			w->rekick = true;
			break;
		}
		int r = vq_pop(vq, req);
		if (r <= 0) {
			w->needs_reset |= r < 0;
			break;
		}
		/* Writable segments or no room for the header: the driver is broken, not the packet. */
		if (req->nin || req->out_len < NET_HDR_LEN) {
			debugx("virtio-net %s: malformed TX chain %u (%u writable, %llu bytes)", n->vdev.name,
			       req->head, req->nin, (unsigned long long)req->out_len);
			vq->broken = true;
			w->needs_reset = true;
			break;
		}
		if (n->dead) {
			n->stats.tx_dropped++; /* complete it, as a NIC without carrier would */
		} else if (req->out_len > NET_MAX_PKT) {
			/* No real frame is this long (chains may reach 1024 descriptors of 4 GiB): drop it
			 * before any sink sees it, so none ever sizes an allocation by it. */
			debugx("virtio-net %s: TX chain %u of %llu bytes dropped (over %u)", n->vdev.name, req->head,
			       (unsigned long long)req->out_len, (unsigned)NET_MAX_PKT);
			n->stats.tx_dropped++;
		} else {
			int e = n->sink.send(n->sink.ctx, req->iov, (int)req->nout);
			if (e == -EAGAIN) {
				vq->last_avail--; /* un-pop: offered again, never dropped */
				n->tx_blocked = true;
				break;
			}
			if (e < 0) {
				n->stats.tx_dropped++;
				if (tap_error_is_fatal(e))
					net_backend_failed(n, w, e, "write");
				else
					debugx("virtio-net %s: TX packet dropped: %s", n->vdev.name, strerror(-e));
			} else {
				n->stats.tx_packets++;
				n->stats.tx_bytes += req->out_len - NET_HDR_LEN;
			}
		}
		if (vq_push(vq, req, 0) < 0) {
			vq->broken = true;
			w->needs_reset = true;
			break;
		}
		pushed = true;
	}
	if (pushed && vq_needs_notify(vq))
		w->queue[VIRTIO_NET_TXQ] = true;
}

/* ---- RX ---- */

/* Deliver n->rx_buf. 2: delivered; 1: dropped for good; 0: not enough buffers yet (nothing
 * consumed); -1: malformed ring (the queue is broken). Buffers are filled as they are popped and published
 * together once the packet is complete, so num_buffers is known before the driver sees any. */
static int net_rx_deliver(struct virtio_net *n, struct virtqueue *vq)
{
	bool mrg = virtio_has_feature(&n->vdev, VIRTIO_NET_F_MRG_RXBUF);
	size_t len = n->rx_len, off = 0;
	unsigned nbuf = 0;

	while (off < len) {
		struct vq_req *req = nbuf ? n->rx_req : n->rx_first;
		if (nbuf && nbuf == vq->size) {
			/* Bigger than every buffer the ring can hold at once: it will never fit. */
			vq->last_avail -= nbuf;
			n->stats.rx_dropped++;
			return 1;
		}
		int r = vq_pop(vq, req);
		if (r < 0)
			return -1;
		if (r == 0) {
			/* The bytes already copied are harmless (the buffers are the device's until used)
			 * and were marked dirty; they are rewritten when the packet goes in. */
			vq->last_avail -= nbuf;
			return 0;
		}
		if (req->nout || req->in_len < (nbuf ? 1u : NET_HDR_LEN)) {
			debugx("virtio-net %s: malformed RX chain %u", n->vdev.name, req->head);
			vq->broken = true;
			return -1;
		}
		size_t c = MIN(len - off, req->in_len);
		if (!mrg && c < len) {
			/* Without mergeable buffers a packet must fit one buffer: drop it, keep the buffer. */
			vq->last_avail--;
			n->stats.rx_dropped++;
			return 1;
		}
		vq_buf_to_iov(req->iov + req->nout, req->nin, 0, n->rx_buf + off, c);
		gmem_mark_iov(n->mem, req->iov + req->nout, req->nin, c);
		n->rx_used[nbuf++] = (struct vq_used){ .head = req->head, .len = (uint32_t)c };
		off += c;
	}
	/* The TAP leaves num_buffers alone; it lies in the first 12 bytes, already written and dirty. */
	uint16_t nb = htole16((uint16_t)nbuf);
	vq_buf_to_iov(n->rx_first->iov + n->rx_first->nout, n->rx_first->nin,
		      offsetof(struct virtio_net_hdr_mrg_rxbuf, num_buffers), &nb, sizeof(nb));
	/* One used->idx store for all of them: a driver polling right now must never see the first
	 * buffer of a merged packet without the rest (Linux drops it as an rx length error). */
	if (vq_push_used_n(vq, n->rx_used, nbuf) < 0) {
		vq->broken = true;
		return -1;
	}
	n->stats.rx_packets++;
	n->stats.rx_bytes += len - NET_HDR_LEN;
	return 2;
}

static void net_rx(struct virtio_net *n, struct net_work *w)
{
	struct virtqueue *vq = &n->vdev.vqs[VIRTIO_NET_RXQ];
	bool pushed = false;

	if (n->dead || vq->broken)
		return;
	for (unsigned done = 0;;) {
		if (!n->rx_len) {
			if (done == RX_BUDGET) {
				w->rekick = true;
				break;
			}
			ssize_t r = read(n->fd, n->rx_buf, NET_MAX_PKT);
			if (r < 0 && errno == EINTR)
				continue;
			if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
				break;
			if (r <= 0) {
				net_backend_failed(n, w, r < 0 ? -errno : 0, "read");
				break;
			}
			if (r < NET_HDR_LEN) {
				n->stats.rx_dropped++;
				continue;
			}
			n->rx_len = (size_t)r;
		}
		int r = net_rx_deliver(n, vq);
		if (r < 0) {
			w->needs_reset = true;
			break;
		}
		if (r == 0)
			break; /* wait for the driver's RX kick */
		pushed |= r == 2;
		n->rx_len = 0;
		done++;
	}
	if (pushed && vq_needs_notify(vq))
		w->queue[VIRTIO_NET_RXQ] = true;
}

/* ---- one pass, and what follows it outside the lock ---- */

static void net_finish(struct virtio_net *n, struct net_work *w)
{
	struct virtio_dev *d = &n->vdev;

	pthread_mutex_lock(&n->notify_lock);
	pthread_mutex_lock(&n->lock);
	if (n->quiesced) {
		n->owed.queue[0] |= w->queue[0];
		n->owed.queue[1] |= w->queue[1];
		n->owed.config |= w->config;
		n->owed.needs_reset |= w->needs_reset;
		n->owed.rekick |= w->rekick;
		memset(w, 0, sizeof(*w));
	} else {
		w->queue[0] |= n->owed.queue[0];
		w->queue[1] |= n->owed.queue[1];
		w->config |= n->owed.config;
		w->needs_reset |= n->owed.needs_reset;
		memset(&n->owed, 0, sizeof(n->owed));
	}
	pthread_mutex_unlock(&n->lock);

	if (w->config) {
		/* A plain atomic: d->lock is the transport's, and we may not hold it here. */
		__atomic_add_fetch(&d->config_generation, 1, __ATOMIC_RELEASE);
		if (d->notify_config)
			d->notify_config(d);
	}
	if (w->needs_reset)
		virtio_dev_set_needs_reset(d);
	for (unsigned q = 0; q < 2; q++)
		if (w->queue[q] && d->notify_queue)
			d->notify_queue(d, &d->vqs[q]);
	pthread_mutex_unlock(&n->notify_lock);
	if (w->rekick)
		net_kick(n);
}

static void net_run(struct virtio_net *n, bool rx, bool tx, bool unblock)
{
	struct net_work w = { 0 };

	pthread_mutex_lock(&n->lock);
	if (unblock && n->tx_blocked) {
		n->tx_blocked = false;
		tx = true;
	}
	if (net_can_run(n)) {
		if (tx)
			net_tx(n, &w);
		if (rx)
			net_rx(n, &w);
	}
	pthread_mutex_unlock(&n->lock);
	net_finish(n, &w);
}

static void net_fd_event(void *opaque, uint32_t events)
{
	bool err = events & (EPOLLERR | EPOLLHUP);
	net_run(opaque, err || (events & EPOLLIN), false, err || (events & EPOLLOUT));
}

static void net_kick_event(void *opaque, uint32_t events)
{
	struct virtio_net *n = opaque;
	uint64_t v;
	(void)events;
	if (read(n->kickfd, &v, sizeof(v)) < 0 && errno != EAGAIN)
		warnx("virtio-net %s: kick eventfd: %s", n->vdev.name, strerror(errno));
	net_run(n, true, true, true);
}

/* ---- virtio_dev_ops ---- */

static void net_config_read(struct virtio_dev *d, uint32_t off, void *data, uint32_t len)
{
	struct virtio_net *n = to_net(d);
	struct virtio_net_config c;

	memset(&c, 0, sizeof(c));
	pthread_mutex_lock(&n->lock);
	memcpy(c.mac, n->mac, sizeof(c.mac));
	c.status = htole16(n->status);
	pthread_mutex_unlock(&n->lock);
	c.max_virtqueue_pairs = htole16(1);
	c.mtu = htole16(n->mtu);

	memset(data, 0, len);
	if (off < NET_CONFIG_LEN)
		memcpy(data, (const uint8_t *)&c + off, MIN((size_t)len, NET_CONFIG_LEN - off));
}

static void net_config_write(struct virtio_dev *d, uint32_t off, const void *data, uint32_t len)
{
	(void)data;
	/* Every field is read-only for a 1.x driver (the MAC too: no CTRL_MAC_ADDR). */
	debugx("virtio-net %s: ignored config write at %u+%u", d->name, off, len);
}

static void net_queue_notify(struct virtio_dev *d, unsigned q)
{
	net_run(to_net(d), q == VIRTIO_NET_RXQ, q == VIRTIO_NET_TXQ, false);
}

void net_apply_offload(struct virtio_net *n)
{
	int r = tap_set_offload(n->fd, n->vdev.guest_features);
	/* ENOTTY/EINVAL: not a TAP (a test socketpair); it never hands us offloaded packets anyway. */
	if (r < 0 && r != -ENOTTY && r != -EINVAL && !n->dead)
		warnx("virtio-net %s: cannot set TAP offloads: %s", n->vdev.name, strerror(-r));
}

static int net_activate(struct virtio_dev *d)
{
	struct virtio_net *n = to_net(d);

	pthread_mutex_lock(&n->lock);
	n->active = true;
	n->tx_blocked = false;
	net_apply_offload(n);
	pthread_mutex_unlock(&n->lock);
	net_kick(n); /* edge-triggered fd: packets queued before DRIVER_OK raise no new event */
	return 0;
}

static void net_reset(struct virtio_dev *d)
{
	struct virtio_net *n = to_net(d);

	pthread_mutex_lock(&n->lock);
	n->active = false;
	n->rx_len = 0; /* reset drops in-flight work */
	n->tx_blocked = false;
	memset(&n->owed, 0, sizeof(n->owed));
	pthread_mutex_unlock(&n->lock);
}

static int net_quiesce(struct virtio_dev *d)
{
	struct virtio_net *n = to_net(d);

	pthread_mutex_lock(&n->lock);
	n->quiesced = true;
	pthread_mutex_unlock(&n->lock);
	/* Wait out a pass that finished before `quiesced` was set but is still raising interrupts. */
	pthread_mutex_lock(&n->notify_lock);
	pthread_mutex_unlock(&n->notify_lock);
	return 0;
}

static void net_resume(struct virtio_dev *d)
{
	struct virtio_net *n = to_net(d);

	pthread_mutex_lock(&n->lock);
	n->quiesced = false;
	pthread_mutex_unlock(&n->lock);
	net_kick(n); /* edges seen while quiesced were ignored; owed interrupts go out in that pass */
}

static const struct virtio_dev_ops net_ops = {
	.config_read = net_config_read,
	.config_write = net_config_write,
	.queue_notify = net_queue_notify,
	.activate = net_activate,
	.reset = net_reset,
	.quiesce = net_quiesce,
	.resume = net_resume,
	.save = net_save,
	.restore_check = net_restore_check,
	.restore = net_restore,
};

/* ---- public ---- */

/* A half-built device's buffers and the struct (each may be NULL). */
static void net_free(struct virtio_net *n)
{
	free(n->rx_buf);
	free(n->rx_first);
	free(n->rx_req);
	free(n->tx_req);
	free(n->rx_used);
	free(n);
}

/* The struct and its buffers: a frame, the three request scratch areas, a used list per queue slot. */
static struct virtio_net *net_alloc(int fd, uint16_t qsize)
{
	struct virtio_net *n = calloc(1, sizeof(*n));
	if (!n)
		return NULL;
	n->fd = fd;
	n->kickfd = -1;
	n->rx_buf = malloc(NET_MAX_PKT);
	n->rx_first = malloc(sizeof(*n->rx_first));
	n->rx_req = malloc(sizeof(*n->rx_req));
	n->tx_req = malloc(sizeof(*n->tx_req));
	n->rx_used = calloc(qsize, sizeof(*n->rx_used));
	if (!n->rx_buf || !n->rx_first || !n->rx_req || !n->tx_req || !n->rx_used) {
		net_free(n);
		return NULL;
	}
	return n;
}

/* After virtio_dev_init: what the device offers, and its state at power-on. */
static void net_setup(struct virtio_net *n, struct guest_mem *mem, struct ioloop *io, const uint8_t mac[6],
		      const struct virtio_net_opts *opts)
{
	n->vdev.host_features |= NET_FEATURES_BASE | (opts->no_offloads ? 0 : NET_FEATURES_OFFLOAD);
	if (opts->mtu)
		n->vdev.host_features |= BIT(VIRTIO_NET_F_MTU);
	n->mem = mem;
	n->io = io;
	n->mtu = opts->mtu;
	memcpy(n->mac, mac, 6);
	n->status = VIRTIO_NET_S_LINK_UP;
	n->sink = (struct net_tx_sink){ .send = tap_sink_send, .ctx = &n->fd };
	pthread_mutex_init(&n->lock, NULL);
	pthread_mutex_init(&n->notify_lock, NULL);
}

/* The kick eventfd, then the packet fd and it on the I/O loop. 0, or -errno with neither registered
 * (the caller closes a kickfd left open). */
static int net_watch(struct virtio_net *n)
{
	n->kickfd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	if (n->kickfd < 0)
		return -errno;
	int r = ioloop_add(n->io, n->fd, EPOLLIN | EPOLLOUT | EPOLLET, net_fd_event, n);
	if (r)
		return r;
	r = ioloop_add(n->io, n->kickfd, EPOLLIN, net_kick_event, n);
	if (r)
		ioloop_del(n->io, n->fd);
	return r;
}

int virtio_net_create(struct virtio_dev **out, struct guest_mem *mem, struct ioloop *io, int fd,
		      const uint8_t mac[6], const struct virtio_net_opts *opts)
{
	static const struct virtio_net_opts defaults;
	struct virtio_net *n;
	int r;

	if (!opts)
		opts = &defaults;
	uint16_t qsize = opts->queue_size ? opts->queue_size : VIRTIO_NET_QUEUE_SIZE;
	if (fd < 0)
		return -EBADF;
	if (!out || !mem || !io || !mac || !mac_ok(mac) || (opts->mtu && opts->mtu < 68) ||
	    (qsize & (qsize - 1)) || qsize > VQ_MAX_SIZE) {
		r = -EINVAL;
		goto fail_fd;
	}
	int fl = fcntl(fd, F_GETFL);
	if (fl < 0 || fcntl(fd, F_SETFL, fl | O_NONBLOCK) < 0) {
		r = -errno;
		goto fail_fd;
	}
	n = net_alloc(fd, qsize);
	if (!n) {
		r = -ENOMEM;
		goto fail_fd;
	}
	snprintf(n->name, sizeof(n->name), "%s", opts->name ? opts->name : "virtio-net");
	r = virtio_dev_init(&n->vdev, n->name, VIRTIO_ID_NET, 2, qsize, NET_CONFIG_LEN, mem, &net_ops, n);
	if (r) {
		net_free(n);
		goto fail_fd;
	}
	net_setup(n, mem, io, mac, opts);
	r = net_watch(n);
	if (r) {
		if (n->kickfd >= 0)
			close(n->kickfd);
		pthread_mutex_destroy(&n->lock);
		pthread_mutex_destroy(&n->notify_lock);
		virtio_dev_destroy(&n->vdev);
		net_free(n);
		goto fail_fd;
	}
	*out = &n->vdev;
	return 0;

fail_fd:
	close(fd);
	return r;
}

void virtio_net_destroy(struct virtio_dev *d)
{
	if (!d)
		return;
	struct virtio_net *n = to_net(d);
	ioloop_del(n->io, n->fd);
	ioloop_del(n->io, n->kickfd);
	close(n->fd);
	close(n->kickfd);
	virtio_dev_destroy(d);
	pthread_mutex_destroy(&n->lock);
	pthread_mutex_destroy(&n->notify_lock);
	net_free(n);
}

void virtio_net_set_tx_sink(struct virtio_dev *d, const struct net_tx_sink *sink)
{
	struct virtio_net *n = to_net(d);
	pthread_mutex_lock(&n->lock);
	n->sink = sink ? *sink : (struct net_tx_sink){ .send = tap_sink_send, .ctx = &n->fd };
	n->tx_blocked = false;
	pthread_mutex_unlock(&n->lock);
	net_kick(n);
}

void virtio_net_kick(struct virtio_dev *d)
{
	net_kick(to_net(d));
}

int virtio_net_announce(struct virtio_dev *d)
{
	struct virtio_net *n = to_net(d);
	/* RARP "reverse request" from the guest MAC, as QEMU's announce: switches and bridges learn the
	 * address on its new port; no IP is claimed, so nothing in the guest's stack is contradicted. */
	uint8_t pkt[NET_HDR_LEN + 60];
	uint8_t *f = pkt + NET_HDR_LEN;
	memset(pkt, 0, sizeof(pkt));
	memset(f, 0xff, 6);
	f[12] = 0x80, f[13] = 0x35;                 /* ETH_P_RARP */
	f[14] = 0x00, f[15] = 0x01;                 /* hardware: Ethernet */
	f[16] = 0x08, f[17] = 0x00;                 /* protocol: IPv4 */
	f[18] = 6, f[19] = 4;
	f[20] = 0x00, f[21] = 0x03;                 /* reverse request */
	int r;
	pthread_mutex_lock(&n->lock);
	memcpy(f + 6, n->mac, 6);
	memcpy(f + 22, n->mac, 6);                  /* sender hardware address */
	memcpy(f + 32, n->mac, 6);                  /* target hardware address */
	if (n->dead) {
		r = -ENOLINK;
	} else {
		struct iovec iov = { .iov_base = pkt, .iov_len = sizeof(pkt) };
		/* Straight to the backend, not through the sink: this is the VMM's output, not the guest's. */
		r = tap_sink_send(&n->fd, &iov, 1);
	}
	pthread_mutex_unlock(&n->lock);
	return r;
}

void virtio_net_get_stats(struct virtio_dev *d, struct virtio_net_stats *st)
{
	struct virtio_net *n = to_net(d);
	pthread_mutex_lock(&n->lock);
	*st = n->stats;
	pthread_mutex_unlock(&n->lock);
}

/* ---- MAC helpers ---- */

void virtio_net_default_mac(uint8_t mac[6], const char *seed, unsigned index)
{
	/* FNV-1a over seed and index, then a splitmix64 finish so nearby indexes differ everywhere.
	 * Fixed constants: the same command line must give the same MAC on every host. */
	uint64_t h = 0xcbf29ce484222325ull;
	for (const unsigned char *p = (const unsigned char *)(seed ? seed : ""); *p; p++)
		h = (h ^ *p) * 0x100000001b3ull;
	for (unsigned i = 0; i < 4; i++)
		h = (h ^ ((index >> (8 * i)) & 0xff)) * 0x100000001b3ull;
	h ^= h >> 30;
	h *= 0xbf58476d1ce4e5b9ull;
	h ^= h >> 27;
	h *= 0x94d049bb133111ebull;
	h ^= h >> 31;
	mac[0] = 0x52; /* locally administered, unicast */
	mac[1] = 0x54;
	for (unsigned i = 2; i < 6; i++)
		mac[i] = (uint8_t)(h >> (8 * (i - 2)));
}

static int hexval(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

int virtio_net_parse_mac(const char *s, uint8_t mac[6])
{
	uint8_t m[6];

	if (!s || strlen(s) != 17)
		return -EINVAL;
	for (unsigned i = 0; i < 6; i++) {
		int hi = hexval(s[3 * i]), lo = hexval(s[3 * i + 1]);
		if (hi < 0 || lo < 0 || (i < 5 && s[3 * i + 2] != ':'))
			return -EINVAL;
		m[i] = (uint8_t)(hi << 4 | lo);
	}
	if (!mac_ok(m))
		return -EINVAL;
	memcpy(mac, m, 6);
	return 0;
}

void virtio_net_format_mac(const uint8_t mac[6], char out[18])
{
	snprintf(out, 18, "%02x:%02x:%02x:%02x:%02x:%02x", mac[0], mac[1], mac[2], mac[3], mac[4], mac[5]);
}

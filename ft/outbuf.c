/* outbuf.c - per-epoch held packet queue between virtio-net and its TAP (Remus's output commit). */
#include "outbuf.h"
#include "../vmm/util.h"

#include <errno.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

struct held_pkt {
	struct held_pkt *next;
	uint64_t epoch;
	size_t len;
	uint8_t data[];
};

void outbuf_init(struct outbuf *o, int tap_fd, uint64_t first_epoch)
{
	memset(o, 0, sizeof(*o));
	pthread_mutex_init(&o->lock, NULL);
	o->fd = tap_fd;
	o->cur_epoch = first_epoch;
	o->max_held = OUTBUF_MAX_HELD;
}

uint64_t outbuf_pkt_cost(size_t len)
{
	/* glibc's chunk for the request: the bytes and an 8-byte size header, in 16-byte granules, 32 at least */
	uint64_t n = ALIGN_UP((uint64_t)sizeof(struct held_pkt) + len + sizeof(size_t), 16);
	n = n < 32 ? 32 : n;
	/* A free chunk that splitting would leave with less than those 32 bytes is handed out whole: up to 16
	 * more than asked (seen in test_outbuf: 96-byte chunks for 80-byte requests once the heap was used). */
	return n + 16;
}

void outbuf_destroy(struct outbuf *o)
{
	struct held_pkt *p = o->head;
	while (p) {
		struct held_pkt *n = p->next;
		free(p);
		p = n;
	}
	o->head = o->tail = NULL;
	pthread_mutex_destroy(&o->lock);
}

void outbuf_set_wake(struct outbuf *o, void (*wake)(void *ctx), void *ctx)
{
	pthread_mutex_lock(&o->lock);
	o->wake = wake;
	o->wake_ctx = ctx;
	pthread_mutex_unlock(&o->lock);
}

/* The packet's length in *len; false if it is over OUTBUF_MAX_PKT. Summed with a bound per step, so
 * a chain of huge descriptors can neither overflow the sum nor reach malloc. */
static bool packet_len(const struct iovec *iov, int iovcnt, size_t *len)
{
	*len = 0;
	for (int i = 0; i < iovcnt; i++) {
		if (iov[i].iov_len > OUTBUF_MAX_PKT - *len)
			return false;
		*len += iov[i].iov_len;
	}
	return true;
}

/* Room for a packet of this cost? An empty buffer always takes one (a packet is far below the
 * cap), so a refusal always has a held packet whose release will wake the producer. */
static bool has_room(struct outbuf *o, uint64_t cost)
{
	pthread_mutex_lock(&o->lock);
	bool ok = o->held_bytes == 0 || cost <= o->max_held - MIN(o->held_bytes, o->max_held);
	if (!ok)
		o->full = true;
	pthread_mutex_unlock(&o->lock);
	return ok;
}

int outbuf_sink_send(void *ctx, const struct iovec *iov, int iovcnt)
{
	struct outbuf *o = ctx;
	size_t len;
	if (!packet_len(iov, iovcnt, &len))
		return -EMSGSIZE;
	/* one producer per outbuf (the NIC's TX pass) and releases only shrink held_bytes: the room
	 * checked here is still there when the packet is queued below */
	uint64_t cost = outbuf_pkt_cost(len);
	if (!has_room(o, cost))
		return -EAGAIN;
	struct held_pkt *p = malloc(sizeof(*p) + len);
	if (!p)
		return -ENOMEM;
	size_t off = 0;
	for (int i = 0; i < iovcnt; i++) {
		memcpy(p->data + off, iov[i].iov_base, iov[i].iov_len);
		off += iov[i].iov_len;
	}
	p->len = len;
	p->next = NULL;
	pthread_mutex_lock(&o->lock);
	p->epoch = o->cur_epoch;
	if (o->tail)
		o->tail->next = p;
	else
		o->head = p;
	o->tail = p;
	o->held++;
	o->held_bytes += cost;
	pthread_mutex_unlock(&o->lock);
	return 0;
}

void outbuf_seal(struct outbuf *o, uint64_t epoch)
{
	pthread_mutex_lock(&o->lock);
	o->cur_epoch = epoch + 1;
	pthread_mutex_unlock(&o->lock);
}

static void send_one(struct outbuf *o, const struct held_pkt *p)
{
	for (int tries = 0; tries < 100; tries++) {
		ssize_t n = write(o->fd, p->data, p->len);
		if (n >= 0)
			return;
		if (errno == EINTR)
			continue;
		if (errno != EAGAIN) {
			o->dropped++;
			return;
		}
		/* the TAP queue is full: wait a little for the host side to drain it */
		struct pollfd pf = { .fd = o->fd, .events = POLLOUT };
		poll(&pf, 1, 10);
	}
	o->dropped++;
}

/* After packets left the buffer: wake a producer that was refused for room. */
static void room_freed(struct outbuf *o)
{
	pthread_mutex_lock(&o->lock);
	bool wake = o->full;
	o->full = false;
	void (*fn)(void *) = o->wake;
	void *ctx = o->wake_ctx;
	pthread_mutex_unlock(&o->lock);
	if (wake && fn)
		fn(ctx);
}

uint64_t outbuf_release(struct outbuf *o, uint64_t upto)
{
	uint64_t n = 0;
	for (;;) {
		pthread_mutex_lock(&o->lock);
		struct held_pkt *p = o->head;
		if (!p || p->epoch > upto) {
			pthread_mutex_unlock(&o->lock);
			break;
		}
		o->head = p->next;
		if (!o->head)
			o->tail = NULL;
		o->held_bytes -= outbuf_pkt_cost(p->len);
		pthread_mutex_unlock(&o->lock);
		/* written outside the lock: the guest keeps queueing into the next epoch meanwhile */
		send_one(o, p);
		free(p);
		n++;
	}
	pthread_mutex_lock(&o->lock);
	o->released += n;
	pthread_mutex_unlock(&o->lock);
	if (n)
		room_freed(o);
	return n;
}

uint64_t outbuf_discard(struct outbuf *o)
{
	pthread_mutex_lock(&o->lock);
	struct held_pkt *p = o->head;
	o->head = o->tail = NULL;
	o->held_bytes = 0;
	pthread_mutex_unlock(&o->lock);
	uint64_t n = 0;
	while (p) {
		struct held_pkt *next = p->next;
		free(p);
		p = next;
		n++;
	}
	pthread_mutex_lock(&o->lock);
	o->discarded += n;
	pthread_mutex_unlock(&o->lock);
	if (n)
		room_freed(o);
	return n;
}

uint64_t outbuf_pending(struct outbuf *o)
{
	pthread_mutex_lock(&o->lock);
	uint64_t n = 0;
	for (struct held_pkt *p = o->head; p; p = p->next)
		n++;
	pthread_mutex_unlock(&o->lock);
	return n;
}

void outbuf_held(struct outbuf *o, uint64_t *pkts, uint64_t *bytes)
{
	uint64_t n = 0, b = 0;
	pthread_mutex_lock(&o->lock);
	for (struct held_pkt *p = o->head; p; p = p->next) {
		n++;
		b += p->len;
	}
	pthread_mutex_unlock(&o->lock);
	*pkts = n;
	*bytes = b;
}

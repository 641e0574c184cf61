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

int outbuf_sink_send(void *ctx, const struct iovec *iov, int iovcnt)
{
	struct outbuf *o = ctx;
	size_t len = 0;
	for (int i = 0; i < iovcnt; i++)
		len += iov[i].iov_len;
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
	o->held_bytes += len;
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
		o->held_bytes -= p->len;
		pthread_mutex_unlock(&o->lock);
		/* written outside the lock: the guest keeps queueing into the next epoch meanwhile */
		send_one(o, p);
		free(p);
		n++;
	}
	pthread_mutex_lock(&o->lock);
	o->released += n;
	pthread_mutex_unlock(&o->lock);
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

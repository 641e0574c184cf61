/* outbuf.h - output commit: packets the guest sends in epoch N are held until the backup acks N. */
#ifndef FTVMM_OUTBUF_H
#define FTVMM_OUTBUF_H

#include <pthread.h>
#include <stdint.h>
#include <sys/uio.h>

struct held_pkt;

struct outbuf {
	pthread_mutex_t lock;
	struct held_pkt *head, *tail;
	uint64_t cur_epoch; /* epoch the guest is running now: new packets are tagged with it */
	int fd;             /* the TAP: where released packets go */
	uint64_t held, released, dropped; /* counters for telemetry */
	uint64_t held_bytes;
};

void outbuf_init(struct outbuf *o, int tap_fd, uint64_t first_epoch);
void outbuf_destroy(struct outbuf *o);
/* The net_tx_sink send hook: copy the packet (the iovecs point into guest memory) and hold it. */
int outbuf_sink_send(void *ctx, const struct iovec *iov, int iovcnt);
/* Called while the VM is paused at the end of epoch N: later packets belong to N+1. */
void outbuf_seal(struct outbuf *o, uint64_t epoch);
/* Write every held packet of epochs <= upto to the TAP, in order; returns how many. */
uint64_t outbuf_release(struct outbuf *o, uint64_t upto);
/* Held packets right now. */
uint64_t outbuf_pending(struct outbuf *o);

#endif

/* outbuf.h - output commit: packets the guest sends in epoch N are held until the backup acks N. */
#ifndef FTVMM_OUTBUF_H
#define FTVMM_OUTBUF_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/uio.h>

#include "../devices/tap.h"

/* One packet is at most what the device could ever hand the TAP (header + 64 KiB GSO frame): a
 * longer chain is a broken or hostile driver, and is refused before anything is allocated. */
#define OUTBUF_MAX_PKT NET_MAX_PKT
/* Memory held per NIC (outbuf_pkt_cost of each packet), all unacked epochs together. Beyond this the sink says -EAGAIN: virtio-net
 * leaves the guest's TX descriptors unconsumed until an ack frees room (the guest's queue fills and
 * its stack waits, as on a slow link), so a guest cannot make the host hold unbounded memory while
 * the backup is slow. 64 MiB is ~1.3 epochs of 10 Gbit/s at the default 50 ms epoch. */
#define OUTBUF_MAX_HELD (64ull << 20)

struct held_pkt;

struct outbuf {
	pthread_mutex_t lock;
	struct held_pkt *head, *tail;
	uint64_t cur_epoch; /* epoch the guest is running now: new packets are tagged with it */
	int fd;             /* the TAP: where released packets go */
	uint64_t held, released, dropped; /* counters for telemetry */
	uint64_t discarded; /* held packets thrown away unsent (their epoch never committed) */
	uint64_t held_bytes; /* memory the held packets take (outbuf_pkt_cost each), not only their bytes */
	uint64_t max_held;   /* OUTBUF_MAX_HELD (unit tests lower it) */
	bool full;          /* a packet was refused for room: wake the producer on the next release */
	void (*wake)(void *ctx); /* called (no lock held) when room frees after a refusal */
	void *wake_ctx;
};

void outbuf_init(struct outbuf *o, int tap_fd, uint64_t first_epoch);
/* The most that holding a packet of len bytes takes in memory: the bytes, the queue's header and the
 * allocator's own (glibc: an 8-byte header, 16-byte granules, 32 at least, and up to 16 more when a
 * free chunk is handed out whole). A guest sending tiny frames would otherwise hold ~4x the cap in
 * headers; counting the worst case keeps what is held under the cap whatever the heap looks like. */
uint64_t outbuf_pkt_cost(size_t len);
void outbuf_destroy(struct outbuf *o);
/* Who to call once a release makes room after the sink refused a packet (virtio_net_kick). */
void outbuf_set_wake(struct outbuf *o, void (*wake)(void *ctx), void *ctx);
/* The net_tx_sink send hook: copy the packet (the iovecs point into guest memory) and hold it.
 * -EMSGSIZE for a packet over OUTBUF_MAX_PKT (dropped), -EAGAIN while OUTBUF_MAX_HELD is reached. */
int outbuf_sink_send(void *ctx, const struct iovec *iov, int iovcnt);
/* Called while the VM is paused at the end of epoch N: later packets belong to N+1. */
void outbuf_seal(struct outbuf *o, uint64_t epoch);
/* Write every held packet of epochs <= upto to the TAP, in order; returns how many. */
uint64_t outbuf_release(struct outbuf *o, uint64_t upto);
/* Free every packet still held without sending it (their epochs were never acked, and the backup
 * takes over or the guest is gone on both sides); returns how many. */
uint64_t outbuf_discard(struct outbuf *o);
/* Held packets right now. */
uint64_t outbuf_pending(struct outbuf *o);
/* Held packets and their bytes (the frames as the guest sent them) right now, for status. */
void outbuf_held(struct outbuf *o, uint64_t *pkts, uint64_t *bytes);

#endif

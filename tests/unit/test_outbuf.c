/* test_outbuf.c - output commit limits and endings: oversized packets refused before any copy, the
 * held-bytes cap with its wake-up, and dropping what was never acked. outbuf.c is included for its
 * held packets (the allocator is asked what they take); the library's copy is then never linked in. */
#include "../../ft/outbuf.c"
#include "test.h"

#include <errno.h>
#include <malloc.h>
#include <stdint.h>
#include <sys/socket.h>
#include <unistd.h>

static int wakes;
static void on_wake(void *ctx)
{
	(void)ctx;
	wakes++;
}

static int send_len(struct outbuf *o, size_t len, uint8_t tag)
{
	uint8_t *b = malloc(len + 1); /* + 1: a 0-byte frame too */
	CHECK(b);
	memset(b, tag, len);
	struct iovec iov = { b, len };
	int r = outbuf_sink_send(o, &iov, 1);
	free(b);
	return r;
}

static size_t wire(int fd, uint8_t *tag)
{
	uint8_t buf[256];
	ssize_t n = recv(fd, buf, sizeof(buf), MSG_DONTWAIT);
	if (n <= 0)
		return 0;
	*tag = buf[0];
	return (size_t)n;
}

/* The stop path: packets of acked epochs leave, the others are dropped, never sent. */
static void test_release_then_discard(void)
{
	int fds[2];
	CHECK(socketpair(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0, fds) == 0);
	struct outbuf o;
	outbuf_init(&o, fds[0], 0);
	CHECK_EQ(send_len(&o, 60, 0xa0), 0);
	outbuf_seal(&o, 0);
	CHECK_EQ(send_len(&o, 61, 0xa1), 0);
	CHECK_EQ(send_len(&o, 62, 0xa1), 0);
	CHECK_EQ(outbuf_release(&o, 0), 1);
	CHECK_EQ(outbuf_discard(&o), 2);
	CHECK_EQ(outbuf_pending(&o), 0);
	CHECK_EQ(o.held_bytes, 0);
	CHECK_EQ(o.discarded, 2);
	uint8_t tag = 0;
	CHECK_EQ(wire(fds[1], &tag), 60);
	CHECK_EQ(tag, 0xa0);
	CHECK_EQ(wire(fds[1], &tag), 0); /* the unacked epoch never reached the TAP */
	outbuf_destroy(&o);
	close(fds[0]);
	close(fds[1]);
}

/* A chain longer than any frame is refused from its lengths alone: iov_base is never read. */
static void test_oversized(void)
{
	struct outbuf o;
	outbuf_init(&o, -1, 0);
	struct iovec huge[2] = { { NULL, OUTBUF_MAX_PKT / 2 + 1 }, { NULL, OUTBUF_MAX_PKT / 2 + 1 } };
	CHECK_EQ(outbuf_sink_send(&o, huge, 2), -EMSGSIZE);
	struct iovec wrap[2] = { { NULL, SIZE_MAX }, { NULL, 2 } }; /* would wrap a plain sum */
	CHECK_EQ(outbuf_sink_send(&o, wrap, 2), -EMSGSIZE);
	CHECK_EQ(outbuf_pending(&o), 0);
	CHECK_EQ(o.held_bytes, 0);
	CHECK_EQ(send_len(&o, OUTBUF_MAX_PKT, 1), 0); /* the largest real packet still goes */
	outbuf_destroy(&o);
}

/* Held bytes never pass OUTBUF_MAX_HELD; the refused producer is woken when an ack frees room. */
static void test_cap(void)
{
	int fds[2];
	CHECK(socketpair(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0, fds) == 0);
	struct outbuf o;
	outbuf_init(&o, fds[0], 0);
	outbuf_set_wake(&o, on_wake, NULL);
	unsigned taken = 0;
	int r;
	while ((r = send_len(&o, OUTBUF_MAX_PKT, 2)) == 0)
		taken++;
	CHECK_EQ(r, -EAGAIN);
	CHECK(o.held_bytes <= OUTBUF_MAX_HELD);
	CHECK(o.held_bytes + outbuf_pkt_cost(OUTBUF_MAX_PKT) > OUTBUF_MAX_HELD);
	CHECK_EQ(taken, OUTBUF_MAX_HELD / outbuf_pkt_cost(OUTBUF_MAX_PKT));
	CHECK_EQ(send_len(&o, OUTBUF_MAX_PKT, 2), -EAGAIN); /* still full: still refused */
	CHECK_EQ(wakes, 0);
	outbuf_seal(&o, 0);
	/* the ack: the TAP end is closed so the packets are counted dropped, and room is back */
	close(fds[1]);
	CHECK_EQ(outbuf_release(&o, 0), taken);
	CHECK_EQ(wakes, 1);
	CHECK_EQ(o.held_bytes, 0);
	CHECK_EQ(send_len(&o, OUTBUF_MAX_PKT, 3), 0);
	CHECK_EQ(outbuf_discard(&o), 1);
	CHECK_EQ(wakes, 1); /* no refusal since the last wake: nobody to wake */
	outbuf_destroy(&o);
	close(fds[0]);
}

/* Tiny frames: the cap counts what they take in memory, headers and allocator included, so a guest
 * sending 1-byte frames holds no more memory than one sending full ones. Failed before the cost: the
 * cap counted payload only, and 1 MiB of 1-byte frames held ~48 MiB. */
static void test_tiny_frames(void)
{
	int fds[2];
	CHECK(socketpair(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0, fds) == 0);
	struct outbuf o;
	outbuf_init(&o, fds[0], 0);
	o.max_held = 1 << 20;
	CHECK(outbuf_pkt_cost(1) >= 1 + 3 * sizeof(void *) + sizeof(size_t)); /* header + malloc's own */
	CHECK(outbuf_pkt_cost(0) >= 32);
	CHECK(outbuf_pkt_cost(OUTBUF_MAX_PKT) > OUTBUF_MAX_PKT);
	unsigned taken = 0;
	while (send_len(&o, 1, 4) == 0)
		taken++;
	CHECK(taken > 0);
	CHECK((uint64_t)taken * outbuf_pkt_cost(1) <= o.max_held);
	CHECK(o.held_bytes == (uint64_t)taken * outbuf_pkt_cost(1));
	CHECK_EQ(outbuf_discard(&o), taken);
	CHECK_EQ(o.held_bytes, 0);
	outbuf_destroy(&o);
	close(fds[0]);
	close(fds[1]);
}

/* What the held packets take by the allocator's own account: each chunk's usable size and its size
 * header. glibc's malloc reports its chunks exactly; ASan's and valgrind's report the size asked for,
 * which is still at least the queue header plus the frame. */
static uint64_t held_chunks(struct outbuf *o)
{
	uint64_t n = 0;
	for (struct held_pkt *p = o->head; p; p = p->next)
		n += malloc_usable_size(p) + sizeof(size_t);
	return n;
}

/* glibc's own malloc, not a sanitizer's or valgrind's: its usable sizes are rounded up. */
static bool glibc_chunks(void)
{
	void *x = malloc(1);
	CHECK(x);
	bool rounded = malloc_usable_size(x) > 1;
	free(x);
	return rounded;
}

/* Frames of every size up to the cap, counted against what the allocator says they take: the memory
 * held stays within max_held whatever the frames' size. Failed with the cost counting only the payload
 * (before outbuf_pkt_cost; ASan: 1M 0-byte frames taken, 32 MiB of chunks, the cap never refused one),
 * and in a glibc build with the cost at glibc's rounded request (40-byte frames: one chunk handed out
 * whole, 1048576 bytes of chunks for 1048560 counted). */
static void test_held_memory(void)
{
	static const size_t sizes[] = { 0, 1, 7, 8, 9, 24, 25, 40, 41, 60, 64, 1514, 9018, OUTBUF_MAX_PKT };
	bool exact = glibc_chunks();
	for (unsigned i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
		struct outbuf o;
		outbuf_init(&o, -1, 0);
		o.max_held = 1 << 20;
		unsigned taken = 0;
		while (taken <= o.max_held && send_len(&o, sizes[i], 6) == 0) /* (a cap that never refuses: stop) */
			taken++;
		uint64_t chunks = held_chunks(&o);
		CHECK(taken > 0);
		CHECK(chunks <= o.max_held);
		CHECK(chunks <= o.held_bytes && o.held_bytes <= o.max_held);
		if (exact) /* the cost is at most the 16 bytes of a chunk handed out whole above the real one */
			CHECK(o.held_bytes <= chunks + 16ull * taken);
		CHECK_EQ(outbuf_discard(&o), taken);
		outbuf_destroy(&o);
	}
}

int main(void)
{
	test_held_memory();
	test_tiny_frames();
	test_release_then_discard();
	test_oversized();
	test_cap();
	TEST_DONE("test_outbuf");
}

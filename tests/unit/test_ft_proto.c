/* test_ft_proto.c - the FT replication stream without KVM: framing round trips and every receive error,
 * epoch payload validation, host:port parsing, TCP setup, output commit (outbuf) and the disk write log. */
#include "../../ft/disklog.h"
#include "../../ft/outbuf.h"
#include "../../ft/proto.h"
#include "../../vmm/guest_mem.h"
#include "../../vmm/util.h"
#include "epoch_test.h"
#include "test.h"

#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

/* ---- helpers --------------------------------------------------------------------------- */

static uint64_t rng = 0x9e3779b97f4a7c15ull;
static uint32_t rnd(void)
{
	rng ^= rng << 13;
	rng ^= rng >> 7;
	rng ^= rng << 17;
	return (uint32_t)rng;
}

static void fill(uint8_t *p, size_t n)
{
	for (size_t i = 0; i < n; i++)
		p[i] = (uint8_t)rnd();
}

static uint8_t dummy_hdr[8] = "ftvmm!!";

static void sp(int fds[2])
{
	CHECK(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds) == 0);
}

/* A sender thread so payloads bigger than the socket buffer can go through a socketpair. */
struct send_job {
	int fd;
	uint16_t type;
	uint64_t seq;
	const struct iovec *iov;
	int iovcnt;
	int rc;
	bool close_after;
	bool gated;     /* through a link whose gate counts its calls */
	unsigned gates; /* how many */
};

static void count_gate(void *ctx)
{
	(*(unsigned *)ctx)++;
}

static void *send_thread(void *arg)
{
	struct send_job *j = arg;
	struct ft_link gl = { .fd = j->fd, .gate = count_gate, .gate_ctx = &j->gates };
	j->rc = ft_send(j->gated ? &gl : FT_PLAIN(j->fd), j->type, j->seq, j->iov, j->iovcnt);
	if (j->close_after)
		shutdown(j->fd, SHUT_WR);
	return NULL;
}

/* Send iov as one frame (gated: through a link with a gate, which must be called once per FT_SEND_CHUNK of
 * the frame) and receive it on the other end; check every field and the bytes. */
static void roundtrip_gated(const struct iovec *iov, int iovcnt, uint16_t type, uint64_t seq, bool gated)
{
	int fds[2];
	sp(fds);
	size_t total = 0;
	for (int i = 0; i < iovcnt; i++)
		total += iov[i].iov_len;
	uint8_t *flat = malloc(total + 1);
	CHECK(flat);
	size_t off = 0;
	for (int i = 0; i < iovcnt; i++) {
		if (iov[i].iov_len)
			memcpy(flat + off, iov[i].iov_base, iov[i].iov_len);
		off += iov[i].iov_len;
	}
	struct send_job j = { .fd = fds[0], .type = type, .seq = seq, .iov = iov, .iovcnt = iovcnt, .gated = gated };
	pthread_t t;
	CHECK(pthread_create(&t, NULL, send_thread, &j) == 0);
	struct ft_frame f;
	void *p = (void *)1;
	int r = ft_recv(FT_PLAIN(fds[1]), &f, &p);
	pthread_join(t, NULL);
	CHECK_EQ(j.rc, 0);
	if (gated) /* iovcnt + 1 <= 64 here, so chunks are full but the last */
		CHECK_EQ(j.gates, (total + sizeof(struct ft_frame) + FT_SEND_CHUNK - 1) / FT_SEND_CHUNK);
	else
		CHECK_EQ(j.gates, 0);
	CHECK_EQ(r, 0);
	CHECK(p != NULL);
	CHECK_EQ(f.magic, FT_MAGIC);
	CHECK_EQ(f.version, FT_VERSION);
	CHECK_EQ(f.type, type);
	CHECK_EQ(f.seq, seq);
	CHECK_EQ(f.len, total);
	/* the checksum of scattered iovecs equals the one of the contiguous payload */
	CHECK(f.checksum == ft_payload_hash(type, seq, flat, total));
	CHECK(total == 0 || memcmp(p, flat, total) == 0);
	free(p);
	free(flat);
	close(fds[0]);
	close(fds[1]);
}

static void roundtrip(const struct iovec *iov, int iovcnt, uint16_t type, uint64_t seq)
{
	roundtrip_gated(iov, iovcnt, type, seq, false);
}

/* A gated link sends the same frame, in runs of FT_SEND_CHUNK with the gate before each: sizes around the
 * chunk edges, empty pieces between, a piece larger than several chunks. */
static void test_gated_send(void)
{
	size_t big = 3 * FT_SEND_CHUNK + 12345;
	uint8_t *b = malloc(big);
	CHECK(b != NULL);
	for (size_t i = 0; i < big; i++)
		b[i] = (uint8_t)(i * 7 + (i >> 12));
	const size_t sizes[] = { 0, 1, FT_SEND_CHUNK - sizeof(struct ft_frame), FT_SEND_CHUNK, FT_SEND_CHUNK + 1, big };
	for (unsigned k = 0; k < sizeof(sizes) / sizeof(sizes[0]); k++) {
		struct iovec one = { b, sizes[k] };
		roundtrip_gated(&one, sizes[k] ? 1 : 0, 9, k, true);
	}
	struct iovec parts[5] = { { b, 100 }, { b + 100, 0 }, { b + 100, FT_SEND_CHUNK }, { NULL, 0 },
				  { b + 100 + FT_SEND_CHUNK, big - 100 - FT_SEND_CHUNK } };
	roundtrip_gated(parts, 5, 9, 99, true);
	free(b);
}

static void test_roundtrip_shapes(void)
{
	/* empty: no iovecs, and iovecs that are all empty */
	static uint8_t dummy[1];
	struct iovec none[1] = { { dummy, 0 } };
	roundtrip(none, 0, FT_HEARTBEAT, 7);
	struct iovec e[3] = { { dummy, 0 }, { dummy, 0 }, { dummy, 0 } };
	roundtrip(e, 3, FT_ACK, 1);
	{ /* ft_send_buf with no payload */
		int fds[2];
		sp(fds);
		CHECK_EQ(ft_send_buf(FT_PLAIN(fds[0]), FT_BYE, 0, NULL, 0), 0);
		struct ft_frame f;
		void *p;
		CHECK_EQ(ft_recv(FT_PLAIN(fds[1]), &f, &p), 0);
		CHECK_EQ(f.type, FT_BYE);
		CHECK_EQ(f.len, 0);
		CHECK(p != NULL); /* always a buffer on success, even for 0 bytes */
		free(p);
		close(fds[0]);
		close(fds[1]);
	}
	/* single buffers of every length around the 32-byte hash block */
	uint8_t buf[200];
	fill(buf, sizeof(buf));
	for (size_t n = 1; n <= 100; n++) {
		struct iovec one = { buf, n };
		roundtrip(&one, 1, FT_MEM, n);
	}
	/* many small iovecs of odd lengths (the checksum carries partial blocks across them), with empty
	 * ones in between */
	for (int round = 0; round < 40; round++) {
		int n = 1 + (int)(rnd() % 64);
		struct iovec iov[64];
		uint8_t *store = malloc(64 * 70);
		CHECK(store);
		fill(store, 64 * 70);
		for (int i = 0; i < n; i++) {
			size_t len = rnd() % 5 == 0 ? 0 : rnd() % 70;
			iov[i] = (struct iovec){ store + i * 70, len };
		}
		roundtrip(iov, n, FT_EPOCH, (uint64_t)round << 40);
		free(store);
	}
	/* more iovecs than one writev takes (1024), and a payload far bigger than the socket buffer */
	{
		enum { N = 3000 };
		struct iovec *iov = calloc(N, sizeof(*iov));
		uint8_t *store = malloc(N * 13);
		CHECK(iov && store);
		fill(store, N * 13);
		for (int i = 0; i < N; i++)
			iov[i] = (struct iovec){ store + i * 13, (size_t)(i % 14) };
		roundtrip(iov, N, FT_EPOCH, 12345);
		free(iov);
		free(store);
	}
	{
		size_t big = (4u << 20) + 17;
		uint8_t *a = malloc(big);
		CHECK(a);
		fill(a, big);
		struct iovec iov[3] = { { a, 5 }, { a + 5, big - 4096 - 5 }, { a + big - 4096, 4096 } };
		roundtrip(iov, 3, FT_EPOCH, UINT64_MAX);
		free(a);
	}
}

/* Capture the exact bytes ft_send puts on the wire for a small frame. */
static size_t wire_bytes(uint16_t type, uint64_t seq, const void *p, size_t len, uint8_t *out, size_t cap)
{
	int fds[2];
	sp(fds);
	CHECK_EQ(ft_send_buf(FT_PLAIN(fds[0]), type, seq, p, len), 0);
	close(fds[0]);
	size_t got = 0;
	for (;;) {
		ssize_t n = read(fds[1], out + got, cap - got);
		CHECK(n >= 0);
		if (n == 0)
			break;
		got += (size_t)n;
	}
	close(fds[1]);
	CHECK_EQ(got, sizeof(struct ft_frame) + len);
	return got;
}

/* Feed raw bytes (then EOF) to ft_recv; returns its result and checks *payload is NULL on errors. */
static int recv_raw(const uint8_t *b, size_t n)
{
	int fds[2];
	sp(fds);
	CHECK(n < 100000); /* fits the socket buffer: no writer thread needed */
	size_t off = 0;
	while (off < n) {
		ssize_t w = write(fds[0], b + off, n - off);
		CHECK(w > 0);
		off += (size_t)w;
	}
	close(fds[0]);
	struct ft_frame f;
	void *p = (void *)1;
	int r = ft_recv(FT_PLAIN(fds[1]), &f, &p);
	if (r)
		CHECK(p == NULL);
	free(p);
	close(fds[1]);
	return r;
}

static void test_recv_errors(void)
{
	uint8_t payload[1000];
	fill(payload, sizeof(payload));
	uint8_t w[2200], c[4400];
	size_t n = wire_bytes(FT_EPOCH, 42, payload, sizeof(payload), w, sizeof(w));
	const size_t H = sizeof(struct ft_frame);
	CHECK_EQ(recv_raw(w, n), 0);

	/* any payload byte flipped (and any bit): -EBADMSG */
	for (size_t i = H; i < n; i += 37) {
		memcpy(c, w, n);
		c[i] ^= (uint8_t)(1u << (i % 8));
		CHECK_EQ(recv_raw(c, n), -EBADMSG);
	}
	memcpy(c, w, n);
	c[n - 1] ^= 0x80; /* the last byte: in the sub-block tail */
	CHECK_EQ(recv_raw(c, n), -EBADMSG);
	/* the header's checksum, seq or type changed: the checksum is seeded with type and seq */
	struct ft_frame h;
	memcpy(c, w, n);
	memcpy(&h, c, H);
	h.checksum ^= 1;
	memcpy(c, &h, H);
	CHECK_EQ(recv_raw(c, n), -EBADMSG);
	memcpy(c, w, n);
	h.checksum ^= 1;
	h.seq = 43;
	memcpy(c, &h, H);
	CHECK_EQ(recv_raw(c, n), -EBADMSG);
	memcpy(&h, w, H);
	h.type = FT_MEM;
	memcpy(c, &h, H);
	CHECK_EQ(recv_raw(c, n), -EBADMSG);
	/* bad magic: another protocol */
	memcpy(c, w, n);
	memcpy(&h, w, H);
	h.magic = 0x20544547; /* "GET " */
	memcpy(c, &h, H);
	CHECK_EQ(recv_raw(c, n), -EPROTO);
	memcpy(c, "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", 39);
	CHECK_EQ(recv_raw(c, 39), -EPROTO);
	/* other version */
	for (unsigned v = 0; v < 4; v++) {
		if (v == FT_VERSION)
			continue;
		memcpy(&h, w, H);
		h.version = (uint16_t)v;
		memcpy(c, &h, H);
		memcpy(c + H, w + H, n - H);
		CHECK_EQ(recv_raw(c, n), -EPROTONOSUPPORT);
	}
	/* unknown type */
	memcpy(&h, w, H);
	h.type = 0;
	memcpy(c, &h, H);
	CHECK_EQ(recv_raw(c, n), -EPROTO);
	h.type = FT_TYPE_MAX;
	memcpy(c, &h, H);
	CHECK_EQ(recv_raw(c, n), -EPROTO);
	/* truncated: nothing, half a header, a header without its payload, all but the last byte */
	CHECK_EQ(recv_raw(w, 0), -ECONNRESET);
	CHECK_EQ(recv_raw(w, H / 2), -ECONNRESET);
	CHECK_EQ(recv_raw(w, H), -ECONNRESET);
	CHECK_EQ(recv_raw(w, n - 1), -ECONNRESET);
	/* oversized length: refused from the header alone, before any allocation */
	memcpy(&h, w, H);
	h.len = FT_MAX_FRAME + 1;
	CHECK_EQ(recv_raw((uint8_t *)&h, H), -EMSGSIZE);
	h.len = UINT64_MAX;
	CHECK_EQ(recv_raw((uint8_t *)&h, H), -EMSGSIZE);
	/* control frames are small: a big length is refused for them at once, not only past 16 GiB */
	static const uint16_t small[] = { FT_HELLO, FT_HB_HELLO, FT_HELLO_OK, FT_HELLO_ERR, FT_ACK, FT_HEARTBEAT, FT_BYE };
	for (unsigned i = 0; i < sizeof(small) / sizeof(small[0]); i++) {
		h.type = small[i];
		h.len = FT_MAX_SMALL_FRAME + 1;
		CHECK_EQ(recv_raw((uint8_t *)&h, H), -EMSGSIZE);
	}
	memcpy(&h, w, H);
	/* a frame right behind another one: each read exactly */
	memcpy(c, w, n);
	memcpy(c + n, w, n);
	{
		int fds[2];
		sp(fds);
		CHECK_EQ(write(fds[0], c, 2 * n), (ssize_t)(2 * n));
		close(fds[0]);
		struct ft_frame f;
		void *p;
		for (int i = 0; i < 2; i++) {
			CHECK_EQ(ft_recv(FT_PLAIN(fds[1]), &f, &p), 0);
			CHECK_EQ(f.len, sizeof(payload));
			CHECK(memcmp(p, payload, sizeof(payload)) == 0);
			free(p);
		}
		CHECK_EQ(ft_recv(FT_PLAIN(fds[1]), &f, &p), -ECONNRESET);
		close(fds[1]);
	}
	/* sending on a closed peer: an error, not a crash (SIGPIPE is ignored by ftvmm and here) */
	{
		int fds[2];
		sp(fds);
		close(fds[1]);
		CHECK(ft_send_buf(FT_PLAIN(fds[0]), FT_ACK, 1, payload, sizeof(payload)) == -EPIPE);
		close(fds[0]);
	}
	CHECK(strcmp(ft_type_name(FT_EPOCH), "EPOCH") == 0);
	CHECK(strcmp(ft_type_name(FT_BYE), "BYE") == 0);
	CHECK(strcmp(ft_type_name(0), "?") == 0);
	CHECK(strcmp(ft_type_name(999), "?") == 0);
}

/* ft_recv_max: a peer that has not identified itself gets a few KiB, whatever the frame's type. */
static int recv_raw_max(const uint8_t *b, size_t n, uint64_t max)
{
	int fds[2];
	sp(fds);
	CHECK_EQ(write(fds[0], b, n), (ssize_t)n);
	close(fds[0]);
	struct ft_frame f;
	void *p = (void *)1;
	int r = ft_recv_max(FT_PLAIN(fds[1]), &f, &p, max);
	if (r)
		CHECK(p == NULL);
	free(p);
	close(fds[1]);
	return r;
}

static void test_recv_max(void)
{
	static uint8_t payload[FT_MAX_HELLO_FRAME + 1], w[sizeof(struct ft_frame) + sizeof(payload)];
	fill(payload, sizeof(payload));
	const size_t H = sizeof(struct ft_frame);
	/* exactly the cap: taken; one more byte: refused from the header alone (no payload sent) */
	size_t n = wire_bytes(FT_HELLO, 5, payload, FT_MAX_HELLO_FRAME, w, sizeof(w));
	CHECK_EQ(recv_raw_max(w, n, FT_MAX_HELLO_FRAME), 0);
	n = wire_bytes(FT_HELLO, 5, payload, FT_MAX_HELLO_FRAME + 1, w, sizeof(w));
	CHECK_EQ(recv_raw_max(w, H, FT_MAX_HELLO_FRAME), -EMSGSIZE);
	CHECK_EQ(recv_raw_max(w, n, FT_MAX_HELLO_FRAME + 1), 0);
	/* bulk types get no exemption from the cap */
	struct ft_frame h = { .magic = FT_MAGIC, .version = FT_VERSION, .type = FT_EPOCH, .len = FT_MAX_SMALL_FRAME + 1 };
	CHECK_EQ(recv_raw_max((uint8_t *)&h, H, FT_MAX_HELLO_FRAME), -EMSGSIZE);
	CHECK_EQ(ft_frame_check(&h, FT_MAX_HELLO_FRAME), -EMSGSIZE);
	CHECK_EQ(ft_frame_check(&h, FT_MAX_FRAME), 0);
	/* the header checks of ft_recv, in ft_frame_check */
	h.type = FT_HELLO;
	CHECK_EQ(ft_frame_check(&h, FT_MAX_FRAME), -EMSGSIZE); /* a control frame: over 1 MiB is too big */
	h.len = 0;
	CHECK_EQ(ft_frame_check(&h, 0), 0);
	h.magic ^= 1;
	CHECK_EQ(ft_frame_check(&h, 0), -EPROTO);
	h.magic ^= 1;
	h.version++;
	CHECK_EQ(ft_frame_check(&h, 0), -EPROTONOSUPPORT);
	h.version--;
	h.type = FT_TYPE_MAX;
	CHECK_EQ(ft_frame_check(&h, 0), -EPROTO);
}

/* ---- epoch payloads ---------------------------------------------------------------------- */

/* hdr + npages pfns + pages + state + disk, hdr fields as given */
static struct buf make_epoch(uint64_t npages, uint64_t state_len, const void *disk, uint64_t disk_len)
{
	struct buf e = { 0 };
	struct ft_epoch_hdr h = { .epoch = 9, .npages = npages, .state_len = state_len, .disk_len = disk_len,
				  .flags = FT_EPOCH_BASELINE, .guest_dirty = npages };
	put(&e, &h, sizeof(h));
	for (uint64_t i = 0; i < npages; i++) {
		uint64_t pfn = i * 3;
		put(&e, &pfn, 8);
	}
	uint8_t page[PAGE_SIZE];
	for (uint64_t i = 0; i < npages; i++) {
		fill(page, sizeof(page));
		put(&e, page, sizeof(page));
	}
	uint8_t *state = calloc(1, state_len + 1);
	CHECK(state);
	put(&e, state, state_len);
	free(state);
	put(&e, disk, disk_len);
	return e;
}

static void set_hdr(struct buf *e, size_t field_off, uint64_t v)
{
	memcpy(e->p + field_off, &v, 8);
}

/* ft_epoch_check on e's first len bytes copied into a buffer of exactly len bytes (zeroes past e's end):
 * ASan sees any read past len, which e's own buffer would hide. */
static int check_len(const struct buf *e, size_t len, bool packed, struct ft_epoch_hdr *h)
{
	uint8_t *c = calloc(1, len ? len : 1);
	CHECK(c);
	memcpy(c, e->p, MIN(len, e->len));
	int r = ft_epoch_check(c, len, packed, h);
	free(c);
	return r;
}

static size_t add_rec(uint8_t *d, size_t off, unsigned disk, unsigned kind, uint64_t o, uint64_t len, bool data)
{
	struct ft_disk_rec r = { .disk = disk, .kind = kind, .off = o, .len = len };
	memcpy(d + off, &r, sizeof(r));
	off += sizeof(r);
	if (data) {
		memset(d + off, 0xab, len);
		off += len;
	}
	return off;
}

/* A packed epoch (FT_EPOCH_PACKED): header, ft_pages_hdr, pfns, wire_len payload bytes, state, disk. */
static struct buf make_packed(uint64_t npages, uint64_t wire_len, uint64_t state_len, const void *disk,
				    uint64_t disk_len)
{
	struct buf e = { 0 };
	struct ft_epoch_hdr h = { .epoch = 9, .npages = npages, .state_len = state_len, .disk_len = disk_len,
				  .flags = FT_EPOCH_BASELINE | FT_EPOCH_PACKED };
	struct ft_pages_hdr ph = { .codec = 1, .raw_len = npages * PAGE_SIZE, .wire_len = wire_len };
	put(&e, &h, sizeof(h));
	put(&e, &ph, sizeof(ph));
	for (uint64_t i = 0; i < npages; i++)
		put(&e, &i, 8);
	uint64_t area = FT_PAGES_PAD_TO(wire_len);
	uint8_t *b = calloc(1, area + state_len + 1);
	CHECK(b);
	fill(b, wire_len);
	put(&e, b, area + state_len);
	free(b);
	put(&e, disk, disk_len);
	return e;
}

/* ft_epoch_check on the packed layout: the page area is ft_pages_hdr + wire_len padded to 8 bytes,
 * whatever npages says; wire_len a padded size off, absurd or wrapping the sum is refused, and so is a
 * payload too short for the ft_pages_hdr (the sizes beyond it, the padding's bytes included, are
 * backup_commit_epoch's: test_compress). The layout is the one the HELLO announced: a flag that says the
 * other is refused even where the sizes would add up; an unknown flag is refused in either. */
static void packed_epoch_check(const uint8_t *disk, size_t dl)
{
	struct ft_epoch_hdr h;
	struct buf e = make_packed(3, 999, 77, disk, dl);
	CHECK_EQ(ft_epoch_check(e.p, e.len, true, &h), 0);
	CHECK_EQ(h.flags, FT_EPOCH_BASELINE | FT_EPOCH_PACKED);
	const size_t wl = sizeof(struct ft_epoch_hdr) + offsetof(struct ft_pages_hdr, wire_len);
	const size_t fl = offsetof(struct ft_epoch_hdr, flags);
	const uint64_t bad[] = { 1001, 992, 0, UINT64_MAX, UINT64_MAX - 998, UINT64_MAX - 7, 1ull << 63,
				 FT_MAX_FRAME + 1, 3 * PAGE_SIZE };
	for (size_t k = 0; k < ARRAY_SIZE(bad); k++) {
		set_hdr(&e, wl, bad[k]);
		CHECK_EQ(ft_epoch_check(e.p, e.len, true, &h), -EBADMSG);
	}
	for (uint64_t w = 993; w <= 1000; w++) { /* the same area once padded */
		set_hdr(&e, wl, w);
		CHECK_EQ(ft_epoch_check(e.p, e.len, true, &h), 0);
	}
	set_hdr(&e, wl, 999);
	/* a packed epoch to a backup of whole pages: refused */
	CHECK_EQ(ft_epoch_check(e.p, e.len, false, &h), -EBADMSG);
	/* its flag cleared: the sizes still add up as packed, the flag alone refuses it; as whole pages they
	 * do not add up */
	set_hdr(&e, fl, FT_EPOCH_BASELINE);
	CHECK_EQ(ft_epoch_check(e.p, e.len, true, &h), -EBADMSG);
	CHECK_EQ(ft_epoch_check(e.p, e.len, false, &h), -EBADMSG);
	set_hdr(&e, fl, FT_EPOCH_BASELINE | FT_EPOCH_PACKED);
	CHECK_EQ(ft_epoch_check(e.p, e.len, true, &h), 0);
	/* the reverse: whole pages to a backup of packed ones; then flagged packed, the sizes still add up as
	 * whole pages (the flag alone refuses it) and not as packed */
	struct buf o = make_epoch(3, 77, disk, dl);
	CHECK_EQ(ft_epoch_check(o.p, o.len, false, &h), 0);
	CHECK_EQ(ft_epoch_check(o.p, o.len, true, &h), -EBADMSG);
	set_hdr(&o, fl, FT_EPOCH_BASELINE | FT_EPOCH_PACKED);
	CHECK_EQ(ft_epoch_check(o.p, o.len, false, &h), -EBADMSG);
	CHECK_EQ(ft_epoch_check(o.p, o.len, true, &h), -EBADMSG);
	set_hdr(&o, fl, FT_EPOCH_BASELINE);
	CHECK_EQ(ft_epoch_check(o.p, o.len, false, &h), 0);
	/* flags this build does not know, in either layout, with or without the others */
	const uint64_t unknown[] = { 4, 8, 1ull << 63, ~(uint64_t)FT_EPOCH_FLAGS };
	for (size_t k = 0; k < ARRAY_SIZE(unknown); k++) {
		set_hdr(&o, fl, FT_EPOCH_BASELINE | unknown[k]);
		CHECK_EQ(ft_epoch_check(o.p, o.len, false, &h), -EBADMSG);
		set_hdr(&o, fl, unknown[k]);
		CHECK_EQ(ft_epoch_check(o.p, o.len, false, &h), -EBADMSG);
		set_hdr(&e, fl, FT_EPOCH_BASELINE | FT_EPOCH_PACKED | unknown[k]);
		CHECK_EQ(ft_epoch_check(e.p, e.len, true, &h), -EBADMSG);
	}
	set_hdr(&o, fl, 0); /* not a baseline: the flag is the backup's to judge */
	CHECK_EQ(ft_epoch_check(o.p, o.len, false, &h), 0);
	set_hdr(&e, fl, FT_EPOCH_PACKED);
	CHECK_EQ(ft_epoch_check(e.p, e.len, true, &h), 0);
	free(o.p);
	free(e.p);

	/* wire_len above FT_MAX_FRAME whose padded size wraps to one the frame's length matches: only that bound
	 * refuses it. Built with no payload bytes and a 64-byte state: 2^64 - 1 .. 2^64 - 7 pad to 0 (the same
	 * area as wire_len 0), 2^64 - 8k pads to -8k, which a state 8k bytes longer makes up. */
	struct buf w = make_packed(1, 0, 64, NULL, 0);
	const size_t sl = offsetof(struct ft_epoch_hdr, state_len);
	CHECK_EQ(ft_epoch_check(w.p, w.len, true, &h), 0);
	for (uint64_t j = 1; j <= 7; j++) {
		uint64_t wrap = 0 - j;
		CHECK_EQ(FT_PAGES_PAD_TO(wrap), 0);
		set_hdr(&w, wl, wrap);
		CHECK_EQ(ft_epoch_check(w.p, w.len, true, &h), -EBADMSG);
	}
	for (uint64_t k = 1; k <= 4; k++) {
		uint64_t wrap = 0 - 8 * k;
		CHECK(sizeof(struct ft_pages_hdr) + FT_PAGES_PAD_TO(wrap) == sizeof(struct ft_pages_hdr) - 8 * k);
		set_hdr(&w, wl, wrap);
		set_hdr(&w, sl, 64 + 8 * k);
		CHECK_EQ(ft_epoch_check(w.p, w.len, true, &h), -EBADMSG);
	}
	set_hdr(&w, wl, 0);
	set_hdr(&w, sl, 64);
	CHECK_EQ(ft_epoch_check(w.p, w.len, true, &h), 0);
	free(w.p);

	/* no room for the ft_pages_hdr (each cut in a buffer of exactly its size: ASan sees a read past it) */
	struct buf z = make_packed(0, 0, 0, NULL, 0);
	CHECK_EQ(ft_epoch_check(z.p, z.len, true, &h), 0);
	for (size_t cut = 1; cut <= sizeof(struct ft_pages_hdr); cut++)
		CHECK_EQ(check_len(&z, z.len - cut, true, &h), -EBADMSG);
	free(z.p);
}

static void test_epoch_check(void)
{
	uint8_t disk[8192];
	size_t dl = 0;
	dl = add_rec(disk, dl, 0, FT_DISK_WRITE, 512, 512, true);
	dl = add_rec(disk, dl, 1, FT_DISK_ZERO, 1 << 20, 1 << 20, false);
	dl = add_rec(disk, dl, 0, FT_DISK_WRITE, 0, 0, true); /* an empty write is well-formed */
	dl = add_rec(disk, dl, 0, FT_DISK_WRITE, 4096, 1000, true);
	struct ft_epoch_hdr h;

	/* well-formed: with and without pages, state, disk */
	struct buf e = make_epoch(3, 333, disk, dl);
	memset(&h, 0xee, sizeof(h));
	CHECK_EQ(ft_epoch_check(e.p, e.len, false, &h), 0);
	CHECK_EQ(h.epoch, 9);
	CHECK_EQ(h.npages, 3);
	CHECK_EQ(h.state_len, 333);
	CHECK_EQ(h.disk_len, dl);
	CHECK_EQ(h.flags, FT_EPOCH_BASELINE);
	struct buf e0 = make_epoch(0, 0, NULL, 0);
	CHECK_EQ(ft_epoch_check(e0.p, e0.len, false, &h), 0);
	struct buf e1 = make_epoch(0, 40, disk, dl);
	CHECK_EQ(ft_epoch_check(e1.p, e1.len, false, &h), 0);

	/* the payload one byte short or long, or shorter than a header (each in a buffer of exactly that size) */
	CHECK_EQ(check_len(&e, e.len - 1, false, &h), -EBADMSG);
	CHECK_EQ(check_len(&e, e.len + 1, false, &h), -EBADMSG);
	CHECK_EQ(check_len(&e, sizeof(h) - 1, false, &h), -EBADMSG);
	CHECK_EQ(check_len(&e, 0, false, &h), -EBADMSG);
	CHECK_EQ(check_len(&e0, e0.len + 8, false, &h), -EBADMSG);
	CHECK_EQ(check_len(&e, e.len, false, &h), 0);

	/* each size field off by one either way, or absurd (must not wrap the sum) */
	const size_t fields[3] = { offsetof(struct ft_epoch_hdr, npages), offsetof(struct ft_epoch_hdr, state_len),
				   offsetof(struct ft_epoch_hdr, disk_len) };
	const uint64_t good[3] = { 3, 333, dl };
	for (int fi = 0; fi < 3; fi++) {
		const uint64_t bad[] = { good[fi] + 1, good[fi] - 1, good[fi] + PAGE_SIZE + 8, UINT64_MAX,
					 UINT64_MAX - good[fi], 1ull << 63, (1ull << 52) + good[fi], FT_MAX_FRAME + 1,
					 good[fi] - 8 - PAGE_SIZE };
		for (size_t k = 0; k < ARRAY_SIZE(bad); k++) {
			set_hdr(&e, fields[fi], bad[k]);
			CHECK_EQ(ft_epoch_check(e.p, e.len, false, &h), -EBADMSG);
		}
		set_hdr(&e, fields[fi], good[fi]);
		CHECK_EQ(ft_epoch_check(e.p, e.len, false, &h), 0);
	}
	/* sizes that compensate (npages one less, state_len grown by a page slot) still add up, but then
	 * the disk area is where it should be and must still parse: this is consistent by construction */
	set_hdr(&e, fields[0], 2);
	set_hdr(&e, fields[1], 333 + 8 + PAGE_SIZE);
	CHECK_EQ(ft_epoch_check(e.p, e.len, false, &h), 0);
	set_hdr(&e, fields[0], 3);
	set_hdr(&e, fields[1], 333);
	/* moving bytes from the state to the disk area: the disk area no longer starts on a record */
	set_hdr(&e, fields[1], 333 - 8);
	set_hdr(&e, fields[2], dl + 8);
	CHECK_EQ(ft_epoch_check(e.p, e.len, false, &h), -EBADMSG);
	set_hdr(&e, fields[1], 333);
	set_hdr(&e, fields[2], dl);
	CHECK_EQ(ft_epoch_check(e.p, e.len, false, &h), 0);
	free(e.p);

	/* bad disk records: unknown kind, data longer than what is left, a partial record header,
	 * a write whose data runs past disk_len */
	{
		uint8_t d[4096];
		size_t n = add_rec(d, 0, 0, 7, 0, 0, false);
		struct buf b = make_epoch(1, 0, d, n);
		CHECK_EQ(ft_epoch_check(b.p, b.len, false, &h), -EBADMSG);
		free(b.p);
		n = add_rec(d, 0, 0, FT_DISK_WRITE, 0, 100, true);
		b = make_epoch(1, 0, d, n - 1); /* the data one byte short */
		CHECK_EQ(ft_epoch_check(b.p, b.len, false, &h), -EBADMSG);
		free(b.p);
		n = add_rec(d, 0, 0, FT_DISK_WRITE, 0, 100, true);
		memcpy(d + n, d, 10); /* a trailing partial header */
		b = make_epoch(0, 0, d, n + 10);
		CHECK_EQ(ft_epoch_check(b.p, b.len, false, &h), -EBADMSG);
		free(b.p);
		n = add_rec(d, 0, 0, FT_DISK_WRITE, 0, UINT64_MAX, false); /* len overflows */
		b = make_epoch(0, 0, d, n);
		CHECK_EQ(ft_epoch_check(b.p, b.len, false, &h), -EBADMSG);
		free(b.p);
		n = add_rec(d, 0, 0, FT_DISK_WRITE, 0, UINT64_MAX - sizeof(struct ft_disk_rec) + 1, false);
		b = make_epoch(0, 0, d, n);
		CHECK_EQ(ft_epoch_check(b.p, b.len, false, &h), -EBADMSG);
		free(b.p);
		/* a ZERO record carries no data: bytes after it must be another record */
		n = add_rec(d, 0, 0, FT_DISK_ZERO, 0, 512, true);
		b = make_epoch(0, 0, d, n);
		CHECK_EQ(ft_epoch_check(b.p, b.len, false, &h), -EBADMSG);
		free(b.p);
	}
	free(e0.p);
	free(e1.p);
	packed_epoch_check(disk, dl);
}

/* ---- host:port ------------------------------------------------------------------------- */

static void test_hostport(void)
{
	char host[64], port[16];
	CHECK_EQ(ft_parse_hostport("127.0.0.1:7000", host, sizeof(host), port, sizeof(port)), 0);
	CHECK(!strcmp(host, "127.0.0.1") && !strcmp(port, "7000"));
	CHECK_EQ(ft_parse_hostport("backup.example:1", host, sizeof(host), port, sizeof(port)), 0);
	CHECK(!strcmp(host, "backup.example") && !strcmp(port, "1"));
	CHECK_EQ(ft_parse_hostport("h:65535", host, sizeof(host), port, sizeof(port)), 0);
	CHECK_EQ(ft_parse_hostport("[::1]:9000", host, sizeof(host), port, sizeof(port)), 0);
	CHECK(!strcmp(host, "::1") && !strcmp(port, "9000"));
	CHECK_EQ(ft_parse_hostport("[fe80::1%eth0]:22", host, sizeof(host), port, sizeof(port)), 0);
	CHECK(!strcmp(host, "fe80::1%eth0"));
	const char *bad[] = { "", ":", "host", "host:", ":7000", "host:0", "host:65536", "host:99999999999999999999",
			      "host:-1", "host:7000x", "host:x", "host:7 000" };
	for (size_t i = 0; i < ARRAY_SIZE(bad); i++) {
		if (ft_parse_hostport(bad[i], host, sizeof(host), port, sizeof(port)) != -EINVAL) {
			fprintf(stderr, "accepted bad host:port '%s'\n", bad[i]);
			CHECK(0);
		}
	}
	/* buffers too small: refused, never overflowed */
	char h4[4], p2[2];
	CHECK_EQ(ft_parse_hostport("abcd:1", h4, sizeof(h4), port, sizeof(port)), -EINVAL);
	CHECK_EQ(ft_parse_hostport("abc:1", h4, sizeof(h4), port, sizeof(port)), 0);
	CHECK_EQ(ft_parse_hostport("abc:12", host, sizeof(host), p2, sizeof(p2)), -EINVAL);
	CHECK_EQ(ft_parse_hostport("abc:1", host, sizeof(host), p2, sizeof(p2)), 0);
	char longhost[400];
	memset(longhost, 'a', sizeof(longhost));
	memcpy(longhost + 390, ":80", 4);
	CHECK_EQ(ft_parse_hostport(longhost, host, sizeof(host), port, sizeof(port)), -EINVAL);
}

/* ---- TCP: listen, connect, accept, a frame over loopback, unreachable and malformed peers ------- */

static int free_port(void)
{
	int s = socket(AF_INET, SOCK_STREAM, 0);
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	CHECK(bind(s, (struct sockaddr *)&a, sizeof(a)) == 0);
	socklen_t l = sizeof(a);
	CHECK(getsockname(s, (struct sockaddr *)&a, &l) == 0);
	close(s);
	return ntohs(a.sin_port);
}

static void test_tcp(void)
{
	char err[256] = "", hp[64];
	int port = free_port();
	snprintf(hp, sizeof(hp), "127.0.0.1:%d", port);
	/* nobody listening: refused, with a line naming the peer */
	int fd = ft_connect(hp, false, err, sizeof(err));
	CHECK_EQ(fd, -ECONNREFUSED);
	CHECK(strstr(err, hp) != NULL);
	CHECK(strstr(err, "cannot reach backup") != NULL);
	/* not host:port */
	CHECK_EQ(ft_connect("127.0.0.1", false, err, sizeof(err)), -EINVAL);
	CHECK(strstr(err, "not HOST:PORT") != NULL);
	CHECK_EQ(ft_listen("127.0.0.1:0", false, err, sizeof(err)), -EINVAL);
	/* a real frame over loopback TCP */
	int lfd = ft_listen(hp, false, err, sizeof(err));
	CHECK(lfd >= 0);
	/* the same address twice: an error with a line, not a crash (SO_REUSEADDR does not allow it) */
	char err2[256] = "";
	int l2 = ft_listen(hp, false, err2, sizeof(err2));
	CHECK(l2 < 0);
	CHECK(strstr(err2, "cannot listen on") != NULL);
	fd = ft_connect(hp, false, err, sizeof(err));
	CHECK(fd >= 0);
	int afd = ft_accept_tuned(lfd);
	CHECK(afd >= 0);
	uint8_t msg[3000];
	fill(msg, sizeof(msg));
	CHECK_EQ(ft_send_buf(FT_PLAIN(fd), FT_HELLO, 77, msg, sizeof(msg)), 0);
	struct ft_frame f;
	void *p;
	CHECK_EQ(ft_recv(FT_PLAIN(afd), &f, &p), 0);
	CHECK_EQ(f.type, FT_HELLO);
	CHECK_EQ(f.seq, 77);
	CHECK(memcmp(p, msg, sizeof(msg)) == 0);
	free(p);
	/* the peer goes away: ECONNRESET on the next receive */
	close(fd);
	CHECK_EQ(ft_recv(FT_PLAIN(afd), &f, &p), -ECONNRESET);
	close(afd);
	close(lfd);
}

/* ---- outbuf ---------------------------------------------------------------------------- */

static size_t read_pkt(int fd, uint8_t *buf, size_t cap)
{
	ssize_t n = recv(fd, buf, cap, MSG_DONTWAIT);
	return n < 0 ? (size_t)-1 : (size_t)n;
}

static void send_pkt(struct outbuf *o, uint32_t id, size_t len, int pieces)
{
	uint8_t *b = malloc(len);
	CHECK(b && len >= 4);
	memset(b, (int)(id & 0xff), len);
	memcpy(b, &id, 4);
	struct iovec iov[4];
	size_t off = 0;
	for (int i = 0; i < pieces; i++) {
		size_t n = i == pieces - 1 ? len - off : (len - off) / 2;
		iov[i] = (struct iovec){ b + off, n };
		off += n;
	}
	CHECK_EQ(outbuf_sink_send(o, iov, pieces), 0);
	/* the guest reuses its buffer at once: the held copy must not change */
	memset(b, 0xee, len);
	free(b);
}

static void expect_pkt(int fd, uint32_t id, size_t len)
{
	uint8_t buf[2048];
	size_t n = read_pkt(fd, buf, sizeof(buf));
	CHECK_EQ(n, len);
	uint32_t got;
	memcpy(&got, buf, 4);
	CHECK_EQ(got, id);
	for (size_t i = 4; i < len; i++)
		if (buf[i] != (uint8_t)(id & 0xff))
			CHECK(0);
}

static void expect_none(int fd)
{
	uint8_t buf[16];
	CHECK_EQ(read_pkt(fd, buf, sizeof(buf)), (size_t)-1);
	CHECK(errno == EAGAIN || errno == EWOULDBLOCK);
}

static void test_outbuf(void)
{
	int fds[2];
	CHECK(socketpair(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0, fds) == 0);
	struct outbuf o;
	outbuf_init(&o, fds[0], 0);
	CHECK_EQ(outbuf_pending(&o), 0);
	CHECK_EQ(outbuf_release(&o, 5), 0); /* nothing held */
	/* epoch 0: three packets; the guest runs on into epoch 1 after the seal */
	send_pkt(&o, 1, 60, 1);
	send_pkt(&o, 2, 1514, 3);
	send_pkt(&o, 3, 100, 2);
	outbuf_seal(&o, 0);
	send_pkt(&o, 4, 64, 1);
	send_pkt(&o, 5, 200, 4);
	outbuf_seal(&o, 1);
	send_pkt(&o, 6, 80, 1);
	CHECK_EQ(outbuf_pending(&o), 6);
	CHECK_EQ(o.held, 6);
	static const size_t lens[] = { 60, 1514, 100, 64, 200, 80 };
	uint64_t cost = 0;
	for (size_t i = 0; i < sizeof(lens) / sizeof(lens[0]); i++)
		cost += outbuf_pkt_cost(lens[i]);
	CHECK_EQ(o.held_bytes, cost); /* what they take in memory, not only their bytes */
	/* nothing reaches the wire before its epoch's ack */
	expect_none(fds[1]);
	/* an ack for an epoch before the first: nothing (epochs start at 0 so use a fresh outbuf below) */
	/* ack 0: exactly epoch 0's packets, in order */
	CHECK_EQ(outbuf_release(&o, 0), 3);
	expect_pkt(fds[1], 1, 60);
	expect_pkt(fds[1], 2, 1514);
	expect_pkt(fds[1], 3, 100);
	expect_none(fds[1]);
	CHECK_EQ(outbuf_release(&o, 0), 0); /* a repeated ack releases nothing more */
	CHECK_EQ(outbuf_pending(&o), 3);
	/* an ack for a later epoch covers the earlier ones too (acks may be coalesced) */
	CHECK_EQ(outbuf_release(&o, 2), 3);
	expect_pkt(fds[1], 4, 64);
	expect_pkt(fds[1], 5, 200);
	expect_pkt(fds[1], 6, 80);
	expect_none(fds[1]);
	CHECK_EQ(o.released, 6);
	CHECK_EQ(o.held_bytes, 0);
	CHECK_EQ(o.dropped, 0);
	/* packets of the current (unsealed) epoch are not released by an ack of the previous one */
	send_pkt(&o, 7, 70, 1); /* cur_epoch is 2: sealed(1) -> 2 */
	CHECK_EQ(outbuf_release(&o, 1), 0);
	expect_none(fds[1]);
	outbuf_seal(&o, 2);
	send_pkt(&o, 8, 70, 1);
	CHECK_EQ(outbuf_release(&o, 2), 1);
	expect_pkt(fds[1], 7, 70);
	expect_none(fds[1]);
	/* held packets are freed on destroy (the leak checker sees it) */
	send_pkt(&o, 9, 90, 2);
	CHECK_EQ(outbuf_pending(&o), 2);
	outbuf_destroy(&o);

	/* a first epoch other than 0 (a re-protect starts a fresh outbuf) */
	outbuf_init(&o, fds[0], 10);
	send_pkt(&o, 20, 50, 1);
	CHECK_EQ(outbuf_release(&o, 9), 0);
	CHECK_EQ(outbuf_release(&o, 10), 1);
	expect_pkt(fds[1], 20, 50);
	/* the TAP gone: packets are counted as dropped, release goes on */
	close(fds[1]);
	send_pkt(&o, 21, 50, 1);
	send_pkt(&o, 22, 50, 1);
	outbuf_seal(&o, 10);
	CHECK_EQ(outbuf_release(&o, 11), 2);
	CHECK_EQ(o.dropped, 2);
	outbuf_destroy(&o);
	close(fds[0]);
}

/* Guest (producer) and acks (consumer) race: order is kept and every packet is released once. */
struct race {
	struct outbuf *o;
	uint64_t sealed; /* last sealed epoch + 1 */
	pthread_mutex_t lock;
	uint32_t n;
};

static void *producer(void *arg)
{
	struct race *r = arg;
	for (uint32_t i = 0; i < r->n; i++) {
		send_pkt(r->o, i, 32, 1 + (int)(i % 3));
		if (i % 17 == 16) {
			pthread_mutex_lock(&r->lock);
			outbuf_seal(r->o, r->sealed);
			r->sealed++;
			pthread_mutex_unlock(&r->lock);
		}
	}
	pthread_mutex_lock(&r->lock);
	outbuf_seal(r->o, r->sealed);
	r->sealed++;
	pthread_mutex_unlock(&r->lock);
	return NULL;
}

static void test_outbuf_race(void)
{
	int fds[2];
	CHECK(socketpair(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0, fds) == 0);
	int big = 4 << 20;
	setsockopt(fds[0], SOL_SOCKET, SO_SNDBUF, &big, sizeof(big));
	setsockopt(fds[1], SOL_SOCKET, SO_RCVBUF, &big, sizeof(big));
	struct outbuf o;
	outbuf_init(&o, fds[0], 0);
	struct race r = { .o = &o, .n = 2000 };
	pthread_mutex_init(&r.lock, NULL);
	pthread_t t;
	CHECK(pthread_create(&t, NULL, producer, &r) == 0);
	uint32_t next = 0;
	uint8_t buf[64];
	for (;;) {
		pthread_mutex_lock(&r.lock);
		uint64_t s = r.sealed;
		pthread_mutex_unlock(&r.lock);
		if (s)
			outbuf_release(&o, s - 1);
		size_t n;
		while ((n = read_pkt(fds[1], buf, sizeof(buf))) != (size_t)-1) {
			uint32_t id;
			CHECK_EQ(n, 32);
			memcpy(&id, buf, 4);
			CHECK_EQ(id, next);
			next++;
		}
		if (next == r.n)
			break;
		usleep(100);
	}
	pthread_join(t, NULL);
	CHECK_EQ(outbuf_pending(&o), 0);
	CHECK_EQ(o.released, r.n);
	outbuf_destroy(&o);
	pthread_mutex_destroy(&r.lock);
	close(fds[0]);
	close(fds[1]);
}

/* ---- disklog --------------------------------------------------------------------------- */

static void test_disklog(void)
{
	struct disklog l;
	disklog_init(&l);
	struct disklog_hook hook0 = { .log = &l, .disk = 0 }, hook1 = { .log = &l, .disk = 1 };
	uint8_t a[3000], b2[600];
	fill(a, sizeof(a));
	fill(b2, sizeof(b2));
	struct iovec iov[2] = { { a, 1000 }, { a + 1000, 2000 } };
	disklog_hook_fn(&hook0, 4096, iov, 2, 3000, false);  /* a write from two pieces */
	disklog_hook_fn(&hook1, 1 << 20, NULL, 0, 65536, true); /* a zeroing: no data */
	struct iovec one = { b2, 600 };
	disklog_hook_fn(&hook1, 512, &one, 1, 512, false);      /* iovecs longer than len: cut */
	disklog_hook_fn(&hook0, 8192, &one, 1, 1024, false);    /* shorter than len: zero padded */

	uint8_t *buf;
	size_t len;
	uint64_t writes;
	CHECK_EQ(disklog_take(&l, &buf, &len, &writes), 0);
	CHECK_EQ(writes, 4);
	const size_t R = sizeof(struct ft_disk_rec);
	CHECK_EQ(len, 4 * R + 3000 + 512 + 1024);
	/* the log as it travels in an epoch: ft_epoch_check accepts it */
	struct buf e = make_epoch(2, 100, buf, len);
	struct ft_epoch_hdr h;
	CHECK_EQ(ft_epoch_check(e.p, e.len, false, &h), 0);
	CHECK_EQ(h.disk_len, len);
	free(e.p);
	/* and the records read back exactly */
	struct ft_disk_rec rec;
	size_t off = 0;
	memcpy(&rec, buf + off, R);
	off += R;
	CHECK(rec.disk == 0 && rec.kind == FT_DISK_WRITE && rec.off == 4096 && rec.len == 3000);
	CHECK(memcmp(buf + off, a, 3000) == 0);
	off += 3000;
	memcpy(&rec, buf + off, R);
	off += R;
	CHECK(rec.disk == 1 && rec.kind == FT_DISK_ZERO && rec.off == (1 << 20) && rec.len == 65536);
	memcpy(&rec, buf + off, R);
	off += R;
	CHECK(rec.disk == 1 && rec.kind == FT_DISK_WRITE && rec.off == 512 && rec.len == 512);
	CHECK(memcmp(buf + off, b2, 512) == 0);
	off += 512;
	memcpy(&rec, buf + off, R);
	off += R;
	CHECK(rec.disk == 0 && rec.kind == FT_DISK_WRITE && rec.off == 8192 && rec.len == 1024);
	CHECK(memcmp(buf + off, b2, 600) == 0);
	for (size_t i = 600; i < 1024; i++)
		CHECK(buf[off + i] == 0);
	off += 1024;
	CHECK_EQ(off, len);
	free(buf);

	/* take starts an empty log */
	CHECK_EQ(disklog_take(&l, &buf, &len, &writes), 0);
	CHECK(buf == NULL);
	CHECK_EQ(len, 0);
	CHECK_EQ(writes, 0);
	e = make_epoch(1, 10, buf, len);
	CHECK_EQ(ft_epoch_check(e.p, e.len, false, &h), 0);
	free(e.p);

	/* growth past the first 1 MiB buffer, many times over: records stay intact */
	static uint8_t big[64 << 10];
	fill(big, sizeof(big));
	for (unsigned i = 0; i < 100; i++) {
		struct iovec v = { big, sizeof(big) - i };
		disklog_add(&l, i % 3, (uint64_t)i << 20, &v, 1, sizeof(big) - i, i % 10 == 9);
	}
	CHECK_EQ(disklog_take(&l, &buf, &len, &writes), 0);
	CHECK_EQ(writes, 100);
	e = make_epoch(0, 0, buf, len);
	CHECK_EQ(ft_epoch_check(e.p, e.len, false, &h), 0);
	free(e.p);
	off = 0;
	for (unsigned i = 0; i < 100; i++) {
		memcpy(&rec, buf + off, R);
		off += R;
		CHECK_EQ(rec.disk, i % 3);
		CHECK_EQ(rec.off, (uint64_t)i << 20);
		CHECK_EQ(rec.len, sizeof(big) - i);
		CHECK_EQ(rec.kind, i % 10 == 9 ? FT_DISK_ZERO : FT_DISK_WRITE);
		if (rec.kind == FT_DISK_WRITE) {
			CHECK(memcmp(buf + off, big, rec.len) == 0);
			off += rec.len;
		}
	}
	CHECK_EQ(off, len);
	free(buf);
	/* left in the log at destroy: freed */
	disklog_add(&l, 0, 0, &one, 1, 100, false);
	disklog_destroy(&l);
}

/* A disk log and pages shipped as a real FT_EPOCH frame, received and validated. */
static void test_epoch_frame(void)
{
	struct disklog l;
	disklog_init(&l);
	uint8_t data[4096];
	fill(data, sizeof(data));
	struct iovec v = { data, sizeof(data) };
	disklog_add(&l, 0, 8192, &v, 1, 4096, false);
	uint8_t *disk;
	size_t dl;
	uint64_t w;
	CHECK_EQ(disklog_take(&l, &disk, &dl, &w), 0);
	uint64_t pfns[2] = { 5, 77 };
	uint8_t pages[2 * PAGE_SIZE];
	fill(pages, sizeof(pages));
	uint8_t state[52];
	fill(state, sizeof(state));
	struct ft_epoch_hdr h = { .epoch = 3, .npages = 2, .state_len = sizeof(state), .disk_len = dl };
	struct iovec iov[5] = { { &h, sizeof(h) }, { pfns, 16 }, { pages, sizeof(pages) }, { state, sizeof(state) },
				{ disk, dl } };
	int fds[2];
	sp(fds);
	struct send_job j = { .fd = fds[0], .type = FT_EPOCH, .seq = 3, .iov = iov, .iovcnt = 5 };
	pthread_t t;
	CHECK(pthread_create(&t, NULL, send_thread, &j) == 0);
	struct ft_frame f;
	void *p;
	CHECK_EQ(ft_recv(FT_PLAIN(fds[1]), &f, &p), 0);
	pthread_join(t, NULL);
	struct ft_epoch_hdr got;
	CHECK_EQ(ft_epoch_check(p, f.len, false, &got), 0);
	CHECK_EQ(got.epoch, f.seq);
	CHECK(memcmp((uint8_t *)p + sizeof(h) + 16 + PAGE_SIZE, pages + PAGE_SIZE, PAGE_SIZE) == 0);
	free(p);
	free(disk);
	disklog_destroy(&l);
	close(fds[0]);
	close(fds[1]);
}

/* The primary's sender passes { NULL, 0 } iovecs for an epoch without pages or disk writes (s->pages / s->disk
 * are NULL then): they must hash and send like empty ones (UBSan aborts on memcpy(x, NULL, 0)). */
static void test_null_empty_iovecs(void)
{
	struct iovec e[5] = { { dummy_hdr, 8 }, { NULL, 0 }, { NULL, 0 }, { dummy_hdr, 3 }, { NULL, 0 } };
	roundtrip(e, 5, FT_EPOCH, 1);
	struct iovec only_null[2] = { { NULL, 0 }, { NULL, 0 } };
	roundtrip(only_null, 2, FT_EPOCH, 2);
}

/* A peer that is gone: an error, never a SIGPIPE (this process keeps SIGPIPE's default action, which
 * would kill it, as it would have killed a backup sending a heartbeat to a dead primary). */
static void test_send_to_closed_peer(void)
{
	signal(SIGPIPE, SIG_DFL); /* main() ignores it for the other tests */
	int fds[2];
	sp(fds);
	close(fds[1]);
	uint8_t b[64] = { 0 };
	struct iovec iov = { b, sizeof(b) };
	CHECK_EQ(ft_send(FT_PLAIN(fds[0]), FT_HEARTBEAT, 1, &iov, 1), -EPIPE);
	CHECK_EQ(ft_send_buf(FT_PLAIN(fds[0]), FT_BYE, 1, NULL, 0), -EPIPE);
	close(fds[0]);
	signal(SIGPIPE, SIG_IGN);
}

/* The heartbeat link's reader: an empty frame (a TAKEOVER with its seq) reads; a header longer than FT_MAX_HB_FRAME
 * is refused from the header alone; a frame cut short fails. */
static int recv_hb_raw(const uint8_t *b, size_t n, struct ft_frame *f)
{
	int fds[2];
	sp(fds);
	CHECK_EQ(write(fds[0], b, n), (ssize_t)n);
	close(fds[0]);
	int r = ft_recv_hb(FT_PLAIN(fds[1]), f);
	close(fds[1]);
	return r;
}

static void test_recv_hb(void)
{
	uint8_t w[256], pl[FT_MAX_HB_FRAME + 1] = { 0 };
	struct ft_frame f;
	size_t n = wire_bytes(FT_TAKEOVER, 41, NULL, 0, w, sizeof(w));
	CHECK_EQ(recv_hb_raw(w, n, &f), 0);
	CHECK(f.type == FT_TAKEOVER && f.seq == 41 && f.len == 0);
	n = wire_bytes(FT_HEARTBEAT, 7, pl, FT_MAX_HB_FRAME, w, sizeof(w));
	CHECK_EQ(recv_hb_raw(w, n, &f), 0); /* at the bound */
	n = wire_bytes(FT_HEARTBEAT, 7, pl, FT_MAX_HB_FRAME + 1, w, sizeof(w));
	CHECK_EQ(recv_hb_raw(w, sizeof(struct ft_frame), &f), -EMSGSIZE);
	CHECK(recv_hb_raw(w, n - 1, &f) < 0);
}

/* The heartbeat clock: a normal wait changes nothing; a freeze is not counted as the peer's silence. */
static void test_hb_clock(void)
{
	const uint64_t ms = 1000000ull;
	uint64_t prev = 1000 * ms, last_rx = 1000 * ms;
	CHECK_EQ(ft_hb_clock(1050 * ms, &prev, &last_rx), 50 * ms);
	CHECK_EQ(last_rx, 1000 * ms); /* 50 ms of real silence counts */
	CHECK_EQ(prev, 1050 * ms);
	CHECK_EQ(ft_hb_clock(1050 * ms + 2 * FT_HEARTBEAT_MS * ms, &prev, &last_rx), 2 * FT_HEARTBEAT_MS * ms);
	CHECK_EQ(last_rx, 1000 * ms); /* up to 2 periods: still the loop's own pace */
	uint64_t t3 = prev + 3 * FT_HEARTBEAT_MS * ms; /* held up 3 periods (a 300 ms timeout would have fired) */
	CHECK_EQ(ft_hb_clock(t3, &prev, &last_rx), 3 * FT_HEARTBEAT_MS * ms);
	CHECK_EQ(last_rx, 1000 * ms + 2 * FT_HEARTBEAT_MS * ms); /* one period of it counts */
	last_rx = 1000 * ms;
	uint64_t t = prev + 5000 * ms; /* frozen 5 s */
	CHECK_EQ(ft_hb_clock(t, &prev, &last_rx), 5000 * ms);
	CHECK_EQ(last_rx, 1000 * ms + 5000 * ms - FT_HEARTBEAT_MS * ms); /* one period of it counts */
	CHECK(t - last_rx < 1000 * ms);
	last_rx = t; /* a heartbeat just arrived: a later freeze never moves last_rx past now */
	CHECK_EQ(ft_hb_clock(t + 3000 * ms, &prev, &last_rx), 3000 * ms);
	CHECK(last_rx <= t + 3000 * ms);
}

/* ft_send(FT_PLAIN(fd), type, seq, NULL, 0): no payload and no iovec array at all (it used to memcpy from NULL). */
static void test_null_iov_array(void)
{
	roundtrip(NULL, 0, FT_HEARTBEAT, 2);
	roundtrip(NULL, 0, FT_BYE, 0);
}

/* ---- data-link bounds after the handshake ------------------------------------------------ */

/* Only a frame header on the wire: what ft_recv_data makes of it. -EMSGSIZE means refused from the
 * header alone; -ECONNRESET means the header was taken and the payload (never sent) was waited for,
 * i.e. a buffer of f.len bytes was allocated first. */
static int recv_data_hdr(uint16_t type, uint64_t len, uint64_t guest_pages, unsigned ncpus)
{
	int fds[2];
	sp(fds);
	struct ft_frame h = { .magic = FT_MAGIC, .version = FT_VERSION, .type = type, .len = len, .seq = 1,
			      .checksum = ft_payload_hash(type, 1, NULL, 0) }; /* right for an empty one */
	CHECK_EQ(write(fds[0], &h, sizeof(h)), (ssize_t)sizeof(h));
	shutdown(fds[0], SHUT_WR);
	struct ft_frame f;
	void *p = (void *)1;
	int r = ft_recv_data(FT_PLAIN(fds[1]), &f, &p, guest_pages, ncpus);
	CHECK(r ? p == NULL : p != NULL);
	free(r ? NULL : p);
	close(fds[0]);
	close(fds[1]);
	return r;
}

static void test_data_bounds(void)
{
	const uint64_t pair = 8 + PAGE_SIZE; /* a pfn and its page */
	/* FT_MEM: the count, then at most one primary batch (or the whole guest, if smaller) */
	CHECK_EQ(ft_data_frame_max(FT_MEM, 16, 1), 8 + 16 * pair);
	CHECK_EQ(ft_data_frame_max(FT_MEM, 1u << 20, 1), 8 + FT_MEM_BATCH_PAGES * pair);
	/* FT_DISK: one initial-sync chunk or one disk-log record, never more than the whole log */
	CHECK_EQ(ft_data_frame_max(FT_DISK, 16, 1), DISKLOG_MAX_BYTES);
	CHECK(ft_data_frame_max(FT_DISK, 16, 1) >= sizeof(struct ft_disk_rec) + FT_DISK_SYNC_CHUNK);
	/* FT_EPOCH: header, every page of the guest, the largest state, a full disk log; packed: its page
	 * header and a length word per chunk (16 pages: one chunk; 257: two), every chunk stored */
	uint64_t ep = sizeof(struct ft_epoch_hdr) + 16 * pair + FT_MAX_STATE(2) + DISKLOG_MAX_BYTES +
		      sizeof(struct ft_pages_hdr) + 4 + 7;
	CHECK_EQ(ft_data_frame_max(FT_EPOCH, 16, 2), ep);
	CHECK_EQ(ft_data_frame_max(FT_EPOCH, 257, 2) - ft_data_frame_max(FT_EPOCH, 16, 2), 241 * pair + 4);
	CHECK_EQ(ft_data_frame_max(FT_EPOCH, 256, 2) - ft_data_frame_max(FT_EPOCH, 16, 2), 240 * pair);
	CHECK(FT_MAX_STATE(2) > FT_MAX_STATE(1));
	/* a guest whose every page would not fit a frame: capped by the protocol's own bound */
	CHECK_EQ(ft_data_frame_max(FT_EPOCH, 1ull << 27, 254), FT_MAX_FRAME);
	CHECK_EQ(ft_data_frame_max(FT_EPOCH, UINT64_MAX, UINT32_MAX), FT_MAX_FRAME); /* no wrap */
	/* anything else on the data link is small */
	CHECK(ft_data_frame_max(FT_BYE, 16, 1) <= FT_MAX_SMALL_FRAME);
	CHECK(ft_data_frame_max(FT_HELLO, 16, 1) <= FT_MAX_SMALL_FRAME);

	/* One byte over the bound: refused from its header, before an allocation of that size. The
	 * largest legitimate size is taken (and then misses its payload). */
	CHECK_EQ(recv_data_hdr(FT_EPOCH, FT_MAX_FRAME, 16, 1), -EMSGSIZE); /* the old 16 GiB allocation */
	CHECK_EQ(recv_data_hdr(FT_EPOCH, ft_data_frame_max(FT_EPOCH, 16, 1) + 1, 16, 1), -EMSGSIZE);
	CHECK_EQ(recv_data_hdr(FT_EPOCH, ft_data_frame_max(FT_EPOCH, 16, 1), 16, 1), -ECONNRESET);
	CHECK_EQ(recv_data_hdr(FT_MEM, 8 + FT_MEM_BATCH_PAGES * pair + 1, 1u << 20, 1), -EMSGSIZE);
	CHECK_EQ(recv_data_hdr(FT_MEM, 8 + FT_MEM_BATCH_PAGES * pair, 1u << 20, 1), -ECONNRESET);
	CHECK_EQ(recv_data_hdr(FT_MEM, 8 + 16 * pair + 1, 16, 1), -EMSGSIZE);
	CHECK_EQ(recv_data_hdr(FT_DISK, DISKLOG_MAX_BYTES + 1, 16, 1), -EMSGSIZE);
	CHECK_EQ(recv_data_hdr(FT_DISK, DISKLOG_MAX_BYTES, 16, 1), -ECONNRESET);
	CHECK_EQ(recv_data_hdr(FT_BYE, FT_MAX_SMALL_FRAME, 16, 1), -EMSGSIZE);
	CHECK_EQ(recv_data_hdr(FT_BYE, 0, 16, 1), 0); /* a BYE has no payload and is complete */
	/* the other header checks still come first */
	CHECK_EQ(recv_data_hdr(FT_TYPE_MAX, 0, 16, 1), -EPROTO);

	/* a real frame within its bound arrives whole */
	int fds[2];
	sp(fds);
	uint8_t payload[8 + 2 * (8 + PAGE_SIZE)];
	fill(payload, sizeof(payload));
	CHECK_EQ(ft_send_buf(FT_PLAIN(fds[0]), FT_MEM, 0, payload, sizeof(payload)), 0);
	struct ft_frame f;
	void *p;
	CHECK_EQ(ft_recv_data(FT_PLAIN(fds[1]), &f, &p, 16, 1), 0);
	CHECK_EQ(f.len, sizeof(payload));
	CHECK(memcmp(p, payload, sizeof(payload)) == 0);
	free(p);
	close(fds[0]);
	close(fds[1]);
}

int main(void)
{
	signal(SIGPIPE, SIG_IGN);
	test_null_empty_iovecs();
	test_null_iov_array();
	test_send_to_closed_peer();
	test_hb_clock();
	test_recv_hb();
	test_roundtrip_shapes();
	test_gated_send();
	test_recv_errors();
	test_recv_max();
	test_data_bounds();
	test_epoch_check();
	test_hostport();
	test_tcp();
	test_outbuf();
	test_outbuf_race();
	test_disklog();
	test_epoch_frame();
	TEST_DONE("test_ft_proto");
}

/* test_primary.c - the epoch engine's pieces that need no KVM: acks (a bogus one ends the link and
 * releases nothing), the staging pool (the sender gives its buffer back), and the end of output
 * (acked epochs leave, the rest is dropped). The primary's three files are included for their static
 * functions; the library's copies are then never linked in. */
#include "../../ft/primary.c"
#include "../../ft/primary_link.c"
#include "../../ft/primary_sync.c"
#include "../../ft/backup_int.h"
#include "json_test.h"
#include "test.h"
#include "tls_test.h"

#include <sys/socket.h>

static void prim_init(struct ft_primary *p, int data_fd, int hb_fd)
{
	memset(p, 0, sizeof(*p));
	pthread_mutex_init(&p->lock, NULL);
	pthread_mutex_init(&p->hb_send_lock, NULL);
	pthread_condattr_t ca; /* CLOCK_MONOTONIC, as ft_primary_start makes it */
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&p->cond, &ca);
	pthread_condattr_destroy(&ca);
	p->data = (struct ft_link){ .fd = data_fd };
	p->hb = (struct ft_link){ .fd = hb_fd };
	p->timeout_ms = 2000;
}

static void prim_fini(struct ft_primary *p)
{
	free_queues(p);
	pthread_cond_destroy(&p->cond);
	pthread_mutex_destroy(&p->hb_send_lock);
	pthread_mutex_destroy(&p->lock);
}

static void hold(struct outbuf *o, uint8_t tag)
{
	uint8_t b[64];
	memset(b, tag, sizeof(b));
	struct iovec iov = { b, sizeof(b) };
	CHECK_EQ(outbuf_sink_send(o, &iov, 1), 0);
}

static int on_wire(int fd)
{
	uint8_t b[128];
	ssize_t n = recv(fd, b, sizeof(b), MSG_DONTWAIT);
	return n > 0 ? b[0] : -1;
}

static void *run_receiver(void *arg)
{
	return primary_receiver_thread(arg);
}

/* Epochs 0 and 1 sent, packets held for both; the backup acks `first` (if >= 0), then `bad`. */
static void ack_case(int64_t first, uint64_t bad, int released_first)
{
	int data[2], hb[2], tap[2];
	CHECK(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, data) == 0);
	CHECK(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, hb) == 0);
	CHECK(socketpair(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0, tap) == 0);
	static struct ft_primary p;
	prim_init(&p, data[0], hb[0]);
	p.nouts = 1;
	outbuf_init(&p.out[0], tap[0], 0);
	hold(&p.out[0], 0xe0);
	outbuf_seal(&p.out[0], 0);
	hold(&p.out[0], 0xe1);
	outbuf_seal(&p.out[0], 1);
	p.sent_any = true;
	p.sent_hi = 1;
	if (first >= 0)
		CHECK_EQ(ft_send_buf(FT_PLAIN(data[1]), FT_ACK, (uint64_t)first, NULL, 0), 0);
	CHECK_EQ(ft_send_buf(FT_PLAIN(data[1]), FT_ACK, bad, NULL, 0), 0);
	pthread_t t;
	CHECK(pthread_create(&t, NULL, run_receiver, &p) == 0);
	pthread_join(t, NULL);
	CHECK(p.lost);
	CHECK(strstr(p.lost_reason, "acked epoch") != NULL);
	CHECK_EQ(p.out[0].released, released_first);
	CHECK_EQ(outbuf_pending(&p.out[0]), 2 - released_first);
	for (int i = 0; i < released_first; i++)
		CHECK_EQ(on_wire(tap[1]), 0xe0 + i);
	CHECK_EQ(on_wire(tap[1]), -1); /* the bogus ack let nothing out */
	CHECK_EQ(p.acked, first >= 0 ? (uint64_t)first : 0);
	outbuf_destroy(&p.out[0]);
	prim_fini(&p);
	for (int i = 0; i < 2; i++) {
		close(data[i]);
		close(hb[i]);
		close(tap[i]);
	}
}

/* An ack that waited in the socket while this process was frozen past the timeout: its output waits
 * until the freeze is old news with the link up (`settles`), and never leaves if the link is lost
 * meanwhile (the backup took over). Failed before: the ack released its epoch's output at once. */
static void ack_after_freeze(bool settles)
{
	int data[2], tap[2];
	CHECK(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, data) == 0);
	CHECK(socketpair(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0, tap) == 0);
	static struct ft_primary p;
	prim_init(&p, data[0], -1);
	p.nouts = 1;
	outbuf_init(&p.out[0], tap[0], 0);
	hold(&p.out[0], 0xf0);
	outbuf_seal(&p.out[0], 0);
	p.sent_any = true;
	p.sent_hi = 0;
	/* the heartbeat thread last ran 2 timeouts ago: frozen, as after SIGCONT */
	__atomic_store_n(&p.hb_sent_ns, now_ns() - 2 * p.timeout_ms * 1000000ull, __ATOMIC_RELEASE);
	CHECK_EQ(ft_send_buf(FT_PLAIN(data[1]), FT_ACK, 0, NULL, 0), 0);
	pthread_t t;
	CHECK(pthread_create(&t, NULL, run_receiver, &p) == 0);
	usleep(300 * 1000);
	CHECK_EQ(on_wire(tap[1]), -1); /* held while the freeze is recent */
	CHECK_EQ(p.out[0].released, 0);
	if (settles) {
		/* the heartbeat thread runs again and no freeze is on record: the link held up */
		__atomic_store_n(&p.hb_sent_ns, now_ns(), __ATOMIC_RELEASE);
		usleep(300 * 1000);
		CHECK_EQ(on_wire(tap[1]), 0xf0);
		close(data[1]); /* then the backup goes: the receiver ends */
	} else {
		primary_mark_lost(&p, "no heartbeat from the backup for %s", "the timeout");
	}
	pthread_join(t, NULL);
	CHECK_EQ(p.out[0].released, settles ? 1 : 0);
	CHECK_EQ(on_wire(tap[1]), -1);
	CHECK_EQ(outbuf_pending(&p.out[0]), settles ? 0 : 1);
	outbuf_destroy(&p.out[0]);
	prim_fini(&p);
	close(data[0]);
	if (!settles)
		close(data[1]);
	close(tap[0]);
	close(tap[1]);
}

static void *run_heartbeat(void *arg)
{
	return primary_heartbeat_thread(arg);
}

/* The backup's FT_TAKEOVER behind heartbeats, then its close. `data_first`: another thread saw the data link
 * go (and, its clock showing no freeze, decided to run on) before the heartbeat thread read the notice: the
 * decision must still become a stop. That order ran a second copy in ft/frozen-primary (CI of dd95c4a). */
static void takeover_notice(bool data_first)
{
	int hb[2];
	CHECK(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, hb) == 0);
	static struct ft_primary p;
	prim_init(&p, -1, hb[0]);
	for (int i = 0; i < 5; i++)
		CHECK_EQ(ft_send_buf(FT_PLAIN(hb[1]), FT_HEARTBEAT, (uint64_t)i, NULL, 0), 0);
	CHECK_EQ(ft_send_buf(FT_PLAIN(hb[1]), FT_TAKEOVER, 41, NULL, 0), 0);
	if (data_first) {
		primary_mark_lost(&p, "connection to the backup broke: %s", "reset");
		CHECK(p.lost && !p.frozen_fence); /* the heartbeat went out just now: no freeze seen */
	}
	if (data_first)
		close(hb[1]); /* the backup's close came too: the thread's first send fails */
	pthread_t t;
	CHECK(pthread_create(&t, NULL, run_heartbeat, &p) == 0);
	pthread_join(t, NULL);
	if (!data_first)
		close(hb[1]);
	CHECK(p.lost && primary_fenced(&p) && p.hb_ended);
	CHECK_EQ(p.took_over_from, 42);
	CHECK(strstr(p.lost_reason, data_first ? "connection to the backup broke" : "the backup took over") != NULL);
	prim_fini(&p);
	close(hb[0]);
}

/* The backup counts its silence from the last heartbeat it got: a freeze is judged from the last one sent,
 * even when the heartbeat thread's own loop saw no gap as long (it had run since, without sending). */
static void test_frozen_since_sent(void)
{
	static struct ft_primary p;
	prim_init(&p, -1, -1);
	uint64_t tmo = p.timeout_ms * 1000000ull;
	__atomic_store_n(&p.hb_sent_ns, now_ns() - tmo / 2, __ATOMIC_RELEASE);
	hb_check_frozen(&p);
	CHECK(!primary_was_frozen(&p) && p.frozen_at_ns == 0);
	__atomic_store_n(&p.hb_sent_ns, now_ns() - tmo - tmo / 10, __ATOMIC_RELEASE);
	CHECK(primary_was_frozen(&p)); /* the heartbeat thread has not looked yet */
	hb_check_frozen(&p);
	CHECK(p.frozen_at_ns != 0);
	__atomic_store_n(&p.hb_sent_ns, now_ns(), __ATOMIC_RELEASE); /* it sends again: the freeze stays on record */
	CHECK(primary_was_frozen(&p));
	__atomic_store_n(&p.frozen_at_ns, now_ns() - 3 * tmo - 1000000000ull, __ATOMIC_RELEASE);
	CHECK(!primary_was_frozen(&p)); /* old news */
	prim_fini(&p);
}

static void test_bad_acks(void)
{
	ack_case(-1, 7, 0); /* an epoch never sent */
	ack_case(0, 0, 1);  /* the same epoch again */
	ack_case(1, 0, 2);  /* backwards */
}

/* ---- acks over TLS ---- */

static struct tls_fixture fx;

struct shake_job {
	struct ft_tls_creds *c;
	struct ft_link *l;
	int rc;
};

static void *shake_thread(void *arg)
{
	struct shake_job *j = arg;
	j->rc = ft_tls_new(j->c, j->l->fd, "127.0.0.1", &j->l->tls);
	j->rc = j->rc ? j->rc : ft_tls_handshake(j->l->tls, 5000);
	return NULL;
}

/* The data link as TLS (PSK) through a relay; epoch 0 sent with a packet held for it. The backup acks
 * it; with flip, one byte of that ack's record is altered on the way: the primary must not take it
 * (the link ends, nothing is released, not protected). Without, the ack releases the packet. */
static void tls_ack_case(bool flip)
{
	int hb[2], tap[2], x, y;
	struct relay r;
	relayed_pair(&r, &x, &y); /* x: the primary's end, y: the backup's */
	CHECK(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, hb) == 0);
	CHECK(socketpair(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0, tap) == 0);
	struct ft_tls_creds *cc = tls_creds(FT_TLS_CLIENT, NULL, NULL, fx.psk);
	struct ft_tls_creds *sc = tls_creds(FT_TLS_SERVER, NULL, NULL, fx.psk);
	static struct ft_primary p;
	prim_init(&p, x, hb[0]);
	struct ft_link backup = { .fd = y };
	struct shake_job js = { sc, &backup, -1 }, jc = { cc, &p.data, -1 };
	pthread_t t;
	CHECK(pthread_create(&t, NULL, shake_thread, &js) == 0);
	shake_thread(&jc);
	pthread_join(t, NULL);
	CHECK(js.rc == 0 && jc.rc == 0);
	p.nouts = 1;
	outbuf_init(&p.out[0], tap[0], 0);
	hold(&p.out[0], 0xe0);
	outbuf_seal(&p.out[0], 0);
	p.sent_any = true;
	p.sent_hi = 0;
	if (flip)
		relay_flip(&r, 1, 10); /* backup -> primary: inside the ack's record */
	CHECK_EQ(ft_send_buf(&backup, FT_ACK, 0, NULL, 0), 0);
	shutdown(backup.fd, SHUT_WR); /* then the backup goes: the receiver ends either way */
	CHECK(pthread_create(&t, NULL, run_receiver, &p) == 0);
	pthread_join(t, NULL);
	CHECK(p.lost);
	if (flip) {
		CHECK(strstr(p.lost_reason, "connection to the backup broke") != NULL);
		CHECK(!p.protected_);
		CHECK_EQ(p.out[0].released, 0);
		CHECK_EQ(on_wire(tap[1]), -1); /* nothing left the host on the altered ack */
	} else {
		CHECK(p.protected_ && p.acked == 0);
		CHECK_EQ(p.out[0].released, 1);
		CHECK_EQ(on_wire(tap[1]), 0xe0);
	}
	outbuf_destroy(&p.out[0]);
	prim_fini(&p);
	ft_link_close(&p.data);
	ft_link_close(&backup);
	relay_stop(&r);
	close(hb[0]);
	close(hb[1]);
	close(tap[0]);
	close(tap[1]);
	ft_tls_creds_free(cc);
	ft_tls_creds_free(sc);
}

static void test_tls_acks(void)
{
	tls_fixture_make(&fx);
	tls_ack_case(false);
	tls_ack_case(true);
	tls_fixture_free(&fx);
}

/* The sender returns the staging buffer to the pool, so the next epoch's pause reuses it. */
static void test_pool_reuse(void)
{
	int data[2];
	CHECK(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, data) == 0);
	static struct ft_primary p;
	prim_init(&p, data[0], -1);
	struct ft_staged *s = calloc(1, sizeof(*s));
	CHECK(s);
	s->pages = pool_get(&p, PAGE_SIZE + 8, &s->pages_cap);
	CHECK(s->pages);
	memset(s->pages, 0x5a, PAGE_SIZE);
	s->pfns = (uint64_t *)(s->pages + PAGE_SIZE);
	s->pfns[0] = 3;
	s->hdr = (struct ft_epoch_hdr){ .epoch = 0, .npages = 1 };
	uint8_t *buf = s->pages;
	enqueue(&p, s);
	p.closing = true; /* send what is queued, then end */
	primary_sender_thread(&p);
	CHECK(!p.lost);
	CHECK_EQ(p.sent_hi, 0);
	CHECK_EQ(p.npool, 1);
	CHECK(p.pool[0].p == buf);
	size_t cap;
	CHECK(pool_get(&p, PAGE_SIZE, &cap) == buf); /* the next epoch gets it back */
	pool_put(&p, buf, cap);
	prim_fini(&p);
	close(data[0]);
	close(data[1]);
}

/* Epochs that grow: a buffer too small for the next epoch is replaced, not kept beside the new one,
 * so idle + in use never pass FT_POOL (failed before: an outgrown buffer stayed idle in the pool). */
static void test_pool_bounded(void)
{
	static struct ft_primary p;
	prim_init(&p, -1, -1);
	uint8_t *b[FT_POOL];
	size_t cap[FT_POOL];
	size_t size = PAGE_SIZE;
	for (unsigned round = 0; round < 5; round++, size *= 2) {
		for (unsigned i = 0; i < FT_POOL; i++) { /* the most ever in use at once */
			b[i] = pool_get(&p, size + i, &cap[i]);
			CHECK(b[i] && cap[i] >= size + i);
			memset(b[i], (int)i, size + i); /* ASan: the whole size is ours */
			CHECK(i + 1 + p.npool <= FT_POOL);
		}
		CHECK_EQ(p.npool, 0);
		for (unsigned i = 0; i < FT_POOL; i++)
			pool_put(&p, b[i], cap[i]);
		CHECK_EQ(p.npool, FT_POOL);
	}
	/* a small epoch reuses the smallest buffer that fits */
	size_t c;
	uint8_t *x = pool_get(&p, 100, &c);
	CHECK(x && c >= 100 && c < size);
	CHECK_EQ(p.npool, FT_POOL - 1);
	pool_put(&p, x, c);
	pool_drain(&p);
	prim_fini(&p);
}

/* An epoch staged as checkpoint() stages one: pages from the pool, one page and its pfn. */
static uint8_t *stage(struct ft_primary *p, uint64_t epoch, size_t bytes)
{
	struct ft_staged *s = calloc(1, sizeof(*s));
	CHECK(s);
	s->pages = pool_get(p, bytes, &s->pages_cap);
	CHECK(s->pages && s->pages_cap >= bytes);
	memset(s->pages, 0x11, PAGE_SIZE);
	s->pfns = (uint64_t *)(s->pages + PAGE_SIZE);
	s->pfns[0] = 0;
	s->hdr = (struct ft_epoch_hdr){ .epoch = epoch, .npages = 1 };
	enqueue(p, s);
	return s->pages;
}

/* The sender streams every staged epoch, giving the buffers back, then returns. */
static void send_staged(struct ft_primary *p)
{
	p->closing = true;
	primary_sender_thread(p);
	p->closing = false;
	CHECK(!p->lost);
}

static void *ack_epoch0_later(void *arg)
{
	usleep(50 * 1000);
	CHECK(take_ack(arg, 0));
	return NULL;
}

/* The most staging buffers alive at once, idle and in use: MAX_INFLIGHT_EPOCHS = FT_POOL. Epochs fill
 * the engine's room; the sender gives their buffers back; a planned failover's last checkpoint then
 * waits for an ack (handover_room) instead of taking a fourth buffer beside the three (it did before,
 * with FT_POOL 4: a slot no later epoch ever reused), and reuses one of the three. */
static void test_pool_inflight(void)
{
	int data[2];
	CHECK(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, data) == 0);
	static struct ft_primary p;
	prim_init(&p, data[0], -1);
	CHECK_EQ(FT_POOL, MAX_INFLIGHT_EPOCHS);
	uint8_t *bufs[MAX_INFLIGHT_EPOCHS];
	for (unsigned e = 0; e < MAX_INFLIGHT_EPOCHS; e++) {
		CHECK(p.sendq_len < MAX_INFLIGHT_EPOCHS); /* wait_for_room lets the engine take it */
		bufs[e] = stage(&p, e, (PAGE_SIZE + 8) << e);
		CHECK_EQ(p.npool, 0); /* e + 1 in use, none idle */
	}
	struct timespec soon;
	primary_deadline_in(&soon, 20 * 1000000ull);
	CHECK(!handover_room(&p, &soon)); /* three unacked: no fourth, even for the last checkpoint */
	send_staged(&p);
	CHECK_EQ(p.npool, FT_POOL); /* all three idle, kept for reuse */
	primary_deadline_in(&soon, 20 * 1000000ull);
	CHECK(!handover_room(&p, &soon)); /* streamed is not acked: still no room */
	pthread_t t;
	CHECK(pthread_create(&t, NULL, ack_epoch0_later, &p) == 0);
	struct timespec later;
	primary_deadline_in(&later, 10000 * 1000000ull);
	uint64_t t0 = now_ns();
	CHECK(handover_room(&p, &later)); /* woken by the ack, not by the deadline */
	CHECK(now_ns() - t0 < 5000 * 1000000ull);
	pthread_join(t, NULL);
	uint8_t *last = stage(&p, MAX_INFLIGHT_EPOCHS, PAGE_SIZE + 8);
	CHECK(last == bufs[0]); /* the smallest that fits: reused, nothing new */
	CHECK_EQ(p.npool + 1, FT_POOL);
	send_staged(&p);
	CHECK(take_ack(&p, MAX_INFLIGHT_EPOCHS));
	CHECK_EQ(p.sendq_len, 0);
	CHECK_EQ(p.npool, FT_POOL);
	prim_fini(&p);
	close(data[0]);
	close(data[1]);
}

/* The end of a protected run: the acked epoch's packets go out, the unacked ones never do. */
static void test_finish_output(void)
{
	int tap[2];
	CHECK(socketpair(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0, tap) == 0);
	static struct ft_primary p;
	prim_init(&p, -1, -1);
	p.nouts = 1;
	outbuf_init(&p.out[0], tap[0], 0);
	hold(&p.out[0], 0xc0);
	outbuf_seal(&p.out[0], 0);
	hold(&p.out[0], 0xc1);
	outbuf_seal(&p.out[0], 1);
	hold(&p.out[0], 0xc2);
	p.protected_ = true;
	p.acked = 0;
	finish_output(&p);
	CHECK_EQ(on_wire(tap[1]), 0xc0);
	CHECK_EQ(on_wire(tap[1]), -1);
	CHECK_EQ(p.nouts, 0);
	prim_fini(&p);
	close(tap[0]);
	close(tap[1]);
}

/* The epoch schedule: on time while pauses are short; after a pause longer than the interval the guest still
 * runs as long as it was paused before the next one (no back-to-back pauses) */
static void test_next_epoch(void)
{
	const uint64_t ms = 1000000ull;
	CHECK_EQ(primary_next_epoch(100 * ms, 25 * ms, 110 * ms, 3 * ms), 125 * ms); /* on schedule */
	CHECK_EQ(primary_next_epoch(100 * ms, 25 * ms, 124 * ms, 3 * ms), 127 * ms); /* late: 3 ms of run first */
	CHECK_EQ(primary_next_epoch(100 * ms, 25 * ms, 140 * ms, 40 * ms), 180 * ms); /* a 40 ms pause: 40 ms run */
	CHECK_EQ(primary_next_epoch(100 * ms, 25 * ms, 300 * ms, 0), 300 * ms);     /* no burst to catch up */
	/* a run of slow epochs: every pause is followed by at least as much run */
	uint64_t next = 0, now = 0;
	for (int i = 0; i < 50; i++) {
		uint64_t pause = (uint64_t)(20 + i % 30) * ms;
		uint64_t start = next > now ? next : now;
		now = start + pause; /* the checkpoint's pause */
		next = primary_next_epoch(start, 25 * ms, now, pause);
		CHECK(next >= now + pause && next >= start + 25 * ms);
	}
}

/* ---- packed epochs: the HELLO_OK's codec, the sender's packing, its telemetry ---- */

/* The backup names our codec back (after its arbiter part, if any); one that names none is older: refused
 * with lz4 or zstd, sent whole pages with codec none. */
static void test_hello_ok(void)
{
	static struct ft_primary p;
	prim_init(&p, -1, -1);
	char err[256];
#define AGREES(text) hello_ok_agrees(&p, text, strlen(text), "b:7000", err, sizeof(err))
	p.codec = FT_CODEC_LZ4;
	CHECK_EQ(AGREES("codec lz4"), 0);
	CHECK(!p.whole_pages);
	CHECK_EQ(AGREES(""), -EINVAL);
	CHECK(strstr(err, "b:7000 is an older ftvmm") && strstr(err, "upgrade it") && !strchr(err, '\n'));
	CHECK(strstr(err, "--compress lz4") && strstr(err, "--compress none"));
	CHECK_EQ(AGREES("codec zstd"), -EPROTO);
	CHECK(strstr(err, "--compress lz4") != NULL);
	CHECK_EQ(AGREES("codec lz"), -EPROTO);
	CHECK_EQ(AGREES("codec lz4 "), -EPROTO);
	CHECK_EQ(AGREES("codec "), -EPROTO);
	CHECK_EQ(AGREES("arbiter 3 codec lz4"), -EINVAL);
	CHECK(strstr(err, "uses an arbiter") != NULL);
	CHECK_EQ(AGREES("xcodec lz4"), -EINVAL); /* no codec token: an arbiter part that is not ours */
	p.gen = 3;
	CHECK_EQ(AGREES("arbiter 3 codec lz4"), 0);
	CHECK_EQ(AGREES("arbiter 3"), -EINVAL);
	CHECK(strstr(err, "older ftvmm") != NULL);
	CHECK_EQ(AGREES("codec lz4"), -EINVAL);
	CHECK(strstr(err, "does not use the arbiter") != NULL);
	CHECK_EQ(AGREES("arbiter 4 codec lz4"), -EINVAL);
	CHECK_EQ(AGREES("arbiter 3  codec lz4"), -EINVAL);
	CHECK_EQ(AGREES("arbiter 3 codec none"), -EPROTO);
	p.codec = FT_CODEC_NONE;
	CHECK_EQ(AGREES("arbiter 3 codec none"), 0);
	CHECK(!p.whole_pages);
	/* an older backup with codec none: paired, its epochs carry their pages whole (the arbiter part still
	 * checked) */
	CHECK_EQ(AGREES("arbiter 3"), 0);
	CHECK(p.whole_pages);
	CHECK_EQ(AGREES("arbiter 3 codec none"), 0);
	CHECK(!p.whole_pages);
	CHECK_EQ(AGREES("arbiter 4"), -EINVAL);
	CHECK_EQ(AGREES(""), -EINVAL);
	CHECK(strstr(err, "does not use the arbiter") != NULL);
	CHECK_EQ(AGREES("arbiter 3 codec lz4"), -EPROTO);
	p.gen = 0;
	CHECK_EQ(AGREES(""), 0);
	CHECK(p.whole_pages);
	CHECK_EQ(AGREES("codec none"), 0);
	CHECK(!p.whole_pages);
	CHECK_EQ(AGREES("arbiter 3"), -EINVAL);
	CHECK(strstr(err, "uses an arbiter") != NULL);
	p.codec = FT_CODEC_ZSTD;
	CHECK_EQ(AGREES(""), -EINVAL);
	CHECK(strstr(err, "older ftvmm") && strstr(err, "--compress zstd"));
	/* " delta" after the codec: the backup applies the deltas our HELLO offered (only with a cache) */
	CHECK_EQ(AGREES("codec zstd delta"), 0);
	CHECK(!p.packer.delta_on); /* none offered: no cache */
	CHECK_EQ(ft_packer_delta(&p.packer, 4 * PAGE_SIZE), 0);
	CHECK_EQ(AGREES("codec zstd delta"), 0);
	CHECK(p.packer.delta_on);
	CHECK_EQ(AGREES("codec zstd"), 0);
	CHECK(!p.packer.delta_on);
	CHECK_EQ(AGREES("codec zstd delta "), -EPROTO);
	CHECK_EQ(AGREES("codec zstddelta"), -EPROTO);
	CHECK_EQ(AGREES("codec delta"), -EPROTO);
	CHECK(!p.packer.delta_on);
	ft_packer_free(&p.packer);
#undef AGREES
	prim_fini(&p);
}

#define SPG 300 /* pages of the sender's epoch: two chunks */

struct recv_job {
	int fd, r;
	struct ft_frame f;
	void *p;
};

static void *recv_epoch(void *arg)
{
	struct recv_job *j = arg;
	j->r = ft_recv_data(FT_PLAIN(j->fd), &j->f, &j->p, SPG, 1);
	return NULL;
}

/* A staged epoch as copy_pages leaves it (page i at pfn SPG - 1 - i): every third page zero, the others
 * text or (one in 7) random bytes. Returns how many are zero; want: the pages as the backup must end up. */
static uint64_t stage_mixed(struct ft_primary *p, struct ft_staged *s, uint8_t *want)
{
	s->pages = pool_get(p, SPG * (PAGE_SIZE + 8), &s->pages_cap);
	CHECK(s->pages);
	s->pfns = (uint64_t *)(s->pages + SPG * PAGE_SIZE);
	uint64_t nz = 0, x = 88172645463325252ull;
	for (uint64_t i = 0; i < SPG; i++) {
		uint8_t *pg = s->pages + i * PAGE_SIZE;
		s->pfns[i] = SPG - 1 - i;
		if (i % 3 == 0) {
			memset(pg, 0, PAGE_SIZE);
			nz++;
		} else if (i % 7 == 0) {
			for (size_t k = 0; k < PAGE_SIZE; k++, x ^= x << 13, x ^= x >> 7, x ^= x << 17)
				pg[k] = (uint8_t)x;
		} else {
			for (size_t k = 0; k < PAGE_SIZE; k++)
				pg[k] = (uint8_t)"the backup commits epoch "[(k + i) % 25];
		}
		memcpy(want + s->pfns[i] * PAGE_SIZE, pg, PAGE_SIZE);
	}
	static uint8_t state[128];
	CHECK_EQ(fdt_create(state, sizeof(state)) | fdt_finish_reservemap(state) | fdt_begin_node(state, "") |
			 fdt_end_node(state) | fdt_finish(state), 0);
	s->state = malloc(fdt_totalsize(state));
	CHECK(s->state);
	memcpy(s->state, state, fdt_totalsize(state));
	s->hdr = (struct ft_epoch_hdr){ .epoch = 0, .npages = SPG, .state_len = fdt_totalsize(state),
					.flags = FT_EPOCH_BASELINE };
	return nz;
}

/* The sender packs the staged epoch (never the pause): what it sends, a backup paired with the codec
 * commits, memory exactly as staged; the ack writes the --stats line with the packing's fields. whole: the
 * backup is an older one (p->whole_pages), which gets the epoch with its pages whole, not packed. */
static void sender_case(enum ft_codec codec, bool whole)
{
	int data[2];
	CHECK(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, data) == 0);
	static struct ft_primary p;
	prim_init(&p, data[0], -1);
	p.codec = codec;
	p.whole_pages = whole;
	CHECK_EQ(ft_packer_init(&p.packer, codec), 0);
	p.stats = tmpfile();
	CHECK(p.stats);
	uint8_t *want = calloc(SPG, PAGE_SIZE), *mem = aligned_alloc(PAGE_SIZE, SPG * PAGE_SIZE);
	CHECK(want && mem);
	memset(mem, 0x77, SPG * PAGE_SIZE);
	struct ft_staged *s = calloc(1, sizeof(*s));
	CHECK(s);
	uint64_t nz = stage_mixed(&p, s, want);
	struct recv_job j = { .fd = data[1] };
	pthread_t t;
	CHECK_EQ(pthread_create(&t, NULL, recv_epoch, &j), 0);
	enqueue(&p, s);
	p.closing = true; /* send what is queued, then end */
	primary_sender_thread(&p);
	CHECK_EQ(pthread_join(t, NULL), 0);
	CHECK(!p.lost);
	CHECK_EQ(j.r, 0);
	CHECK_EQ(j.f.type, FT_EPOCH);
	struct ft_epoch_hdr sent;
	CHECK(j.f.len >= sizeof(sent));
	memcpy(&sent, j.p, sizeof(sent));
	CHECK_EQ(sent.flags, whole ? FT_EPOCH_BASELINE : FT_EPOCH_BASELINE | FT_EPOCH_PACKED);
	if (whole) /* as before packed epochs: header, pfns, pages, state */
		CHECK_EQ(j.f.len, sizeof(sent) + SPG * (8 + PAGE_SIZE) + sent.state_len);

	static struct backup b;
	memset(&b, 0, sizeof(b));
	pthread_mutex_init(&b.lock, NULL);
	CHECK_EQ(gmem_init_buffer(&b.mem, mem, SPG * PAGE_SIZE), 0);
	b.packed = !whole;
	b.codec = codec;
	CHECK_EQ(backup_commit_epoch(&b, 0, j.p, j.f.len), 0);
	CHECK(memcmp(mem, want, SPG * PAGE_SIZE) == 0);
	ft_unpacker_free(&b.unpacker);

	CHECK(take_ack(&p, 0)); /* the telemetry of the acked epoch */
	char line[2048] = "";
	rewind(p.stats);
	CHECK(fgets(line, sizeof(line), p.stats) != NULL);
	struct json_object *o = json_check(line), *v; /* json-c strict, and python3's json where there is one */
	CHECK(o != NULL);
	CHECK(json_get_str(o, "compress") && !strcmp(json_get_str(o, "compress"), ft_codec_name(codec)));
	CHECK_EQ(json_get_int(o, "raw_bytes"), SPG * PAGE_SIZE);
	CHECK_EQ(json_get_int(o, "zero_pages"), whole ? 0 : nz);
	long long wire = json_get_int(o, "wire_bytes"), nonzero = (long long)(SPG - nz) * PAGE_SIZE;
	if (whole)
		CHECK_EQ(wire, SPG * PAGE_SIZE);
	else
		CHECK(codec == FT_CODEC_NONE ? wire == nonzero : wire > 0 && wire < nonzero / 2);
	CHECK_EQ(json_get_int(o, "bytes"), j.f.len);
	CHECK(json_has(o, "compress_us") && json_object_object_get_ex(o, "compress_us", &v) &&
	      json_object_get_double(v) >= 0);
	CHECK_EQ(json_get_int(o, "pages"), SPG);
	CHECK(json_object_object_get_ex(o, "baseline", &v) && json_object_get_boolean(v));
	json_object_put(o);

	free(j.p);
	free(b.state);
	gmem_free(&b.mem);
	fclose(p.stats);
	p.stats = NULL;
	ft_packer_free(&p.packer);
	prim_fini(&p);
	free(want);
	free(mem);
	close(data[0]);
	close(data[1]);
}

static void test_sender_packs(void)
{
	for (unsigned c = 0; c < FT_CODEC_COUNT; c++)
		sender_case(c, false);
	sender_case(FT_CODEC_NONE, true); /* to an older backup */
}

int main(void)
{
	test_bad_acks();
	test_pool_reuse();
	ack_after_freeze(false);
	ack_after_freeze(true);
	takeover_notice(false);
	takeover_notice(true);
	test_frozen_since_sent();
	test_pool_bounded();
	test_pool_inflight();
	test_finish_output();
	test_next_epoch();
	test_tls_acks();
	test_hello_ok();
	test_sender_packs();
	TEST_DONE("test_primary");
}

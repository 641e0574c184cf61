/* test_events.c - the event bus (order for every subscriber, a reader that never reads blocks nothing and is
 * told what it lost, subscribers come and go), JSON quoting that strict parsers take whatever the input, the
 * structured status getters (held output summed over NICs), and the backup's pairing events over real TLS. */
#include "../../ft/backup.h"
#include "../../ft/backup_int.h"
#include "../../ft/events.h"
#include "../../ft/fence.h"
#include "../../ft/outbuf.h"
#include "../../ft/primary.h"
#include "../../vmm/util.h"
#include "json_test.h"
#include "test.h"
#include "tls_test.h"

#include <arpa/inet.h>
#include <errno.h>
#include <libfdt.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <sys/socket.h>
#include <unistd.h>

/* s quoted, parsed back (by python3 too, unless fast): the string read (static buffer). */
static const char *roundtrip_by(const char *quoted, bool fast)
{
	static char out[4096];
	char doc[4200];
	snprintf(doc, sizeof(doc), "{\"s\":%s}", quoted);
	struct json_object *o = fast ? json_strict(doc) : json_check(doc);
	CHECK(o != NULL);
	const char *s = json_get_str(o, "s");
	CHECK(s != NULL);
	snprintf(out, sizeof(out), "%s", s);
	json_object_put(o);
	return out;
}

static const char *roundtrip(const char *quoted)
{
	return roundtrip_by(quoted, false);
}

static void test_quote(void)
{
	/* the checkers themselves refuse what a strict reader would */
	static const char *const invalid[] = { "{\"s\":\"\xff\"}", "{\"s\":\"a\nb\"}", "{\"s\":\"\\x\"}", "{\"s\":1,}" };
	for (size_t i = 0; i < ARRAY_SIZE(invalid); i++) {
		CHECK(json_strict(invalid[i]) == NULL);
		CHECK(json_python(invalid[i]) != 1);
	}
	CHECK(json_python("{\"s\":\"ok\"}") != 0);
	char q[FT_JSON_STR_MAX];
	const char *tricky = "a \"quoted\" back\\slash\nnew line\ttab\r\x01\x1f\x7f end";
	CHECK(!strcmp(roundtrip(ft_json_quote(q, sizeof(q), tricky)), tricky));
	CHECK(!strcmp(ft_json_quote(q, sizeof(q), NULL), "null"));
	CHECK(!strcmp(ft_json_quote(q, sizeof(q), ""), "\"\""));
	/* UTF-8 passes as it is; what is not UTF-8 becomes U+FFFD, so a strict parser still takes the line */
	const char *utf8 = "caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80";
	CHECK(!strcmp(roundtrip(ft_json_quote(q, sizeof(q), utf8)), utf8));
	static const char *const bad[] = { "\xff", "\xc3", "\x80", "\xc0\x80", "\xed\xa0\x80", "\xf4\x90\x80\x80",
					   "\xe2\x82", "\xf0\x9f\x98" };
	for (size_t i = 0; i < ARRAY_SIZE(bad); i++) {
		char in[32];
		snprintf(in, sizeof(in), "x%sy", bad[i]);
		const char *back = roundtrip(ft_json_quote(q, sizeof(q), in));
		CHECK(back[0] == 'x' && back[strlen(back) - 1] == 'y' && strstr(back, "\xef\xbf\xbd"));
	}
	/* cut at every length: always a whole string, never half an escape or half a character, and a
	 * prefix of the uncut one */
	const char *mix = "\"q\" \\ \xc3\xa9\xe2\x82\xac\n\x02 \xf0\x9f\x98\x80 tail";
	char full[256];
	snprintf(full, sizeof(full), "%s", roundtrip(ft_json_quote(q, sizeof(q), mix)));
	CHECK(!strcmp(full, mix));
	for (size_t len = 5; len < 48; len++) {
		char small[48];
		ft_json_quote(small, len, mix);
		CHECK(strlen(small) < len);
		const char *back = roundtrip_by(small, len % 8 != 0);
		CHECK(!strncmp(full, back, strlen(back)));
	}
	/* FT_JSON_STR: a buffer per argument, all alive for the call */
	snprintf(q, sizeof(q), "%s|%s", FT_JSON_STR("a\"b"), FT_JSON_STR("c\\d"));
	CHECK(!strcmp(q, "\"a\\\"b\"|\"c\\\\d\""));
}

static void test_builder(void)
{
	char buf[256];
	struct ft_json j;
	ft_json_init(&j, buf, sizeof(buf));
	ft_json_open(&j, NULL);
	ft_json_str(&j, "role", "primary");
	ft_json_bool(&j, "protected", true);
	ft_json_u64(&j, "epoch", UINT64_MAX);
	ft_json_open(&j, "arbiter");
	ft_json_str(&j, "state", "reachable");
	ft_json_str(&j, "detail", NULL);
	ft_json_close(&j);
	ft_json_str(&j, "peer", "x");
	ft_json_close(&j);
	CHECK(!j.over);
	CHECK(!strcmp(buf, "{\"role\":\"primary\",\"protected\":true,\"epoch\":18446744073709551615,"
			   "\"arbiter\":{\"state\":\"reachable\",\"detail\":null},\"peer\":\"x\"}"));
	struct json_object *o = json_check(buf);
	CHECK(o != NULL);
	json_object_put(o);
	/* what does not fit says so */
	ft_json_init(&j, buf, 16);
	ft_json_open(&j, NULL);
	ft_json_str(&j, "role", "a long role name");
	CHECK(j.over);
	CHECK(strlen(buf) < 16);
}

/* The next line of s (NULL when none waits), parsed: its "event" must be there and "ts" a number. */
static struct json_object *next_event(struct ft_event_sub *s, char *line)
{
	size_t n = ft_events_next(s, line, FT_EVENT_LINE);
	if (!n)
		return NULL;
	CHECK(line[n - 1] == '\n' && memchr(line, '\n', n) == line + n - 1);
	line[n] = 0;
	struct json_object *o = json_strict(line);
	CHECK(o != NULL);
	struct json_object *ts;
	CHECK(json_object_object_get_ex(o, "ts", &ts) && json_object_is_type(ts, json_type_double));
	CHECK(json_object_get_double(ts) > 1.6e9);
	CHECK(json_get_str(o, "event") != NULL);
	return o;
}

static bool readable(int fd)
{
	struct pollfd p = { .fd = fd, .events = POLLIN };
	return poll(&p, 1, 0) == 1;
}

struct emitter {
	int id, n;
};

static void *emit_thread(void *arg)
{
	const struct emitter *e = arg;
	for (int i = 0; i < e->n; i++)
		ft_event_emit("tick", "\"thread\":%d,\"seq\":%d", e->id, i);
	return NULL;
}

/* Two subscribers see every event, in one order, whichever thread emitted it. */
static void test_order(void)
{
	struct ft_event_sub *a = ft_events_subscribe(), *b = ft_events_subscribe();
	CHECK(a && b);
	CHECK(!readable(ft_events_fd(a)));
	struct emitter e[2] = { { 0, 30 }, { 1, 30 } };
	pthread_t t[2];
	for (int i = 0; i < 2; i++)
		CHECK_EQ(pthread_create(&t[i], NULL, emit_thread, &e[i]), 0);
	for (int i = 0; i < 2; i++)
		pthread_join(t[i], NULL);
	CHECK(readable(ft_events_fd(a)) && readable(ft_events_fd(b)));
	char la[FT_EVENT_LINE + 1], lb[FT_EVENT_LINE + 1];
	int next[2] = { 0, 0 }, got = 0;
	struct json_object *oa, *ob;
	while ((oa = next_event(a, la))) {
		ob = next_event(b, lb);
		CHECK(ob != NULL);
		CHECK(!strcmp(la, lb)); /* the same line, in the same place */
		CHECK(!json_has(oa, "dropped"));
		long long th = json_get_int(oa, "thread"), seq = json_get_int(oa, "seq");
		CHECK(th == 0 || th == 1);
		CHECK_EQ(seq, next[th]++); /* each thread's events in the order it emitted them */
		got++;
		json_object_put(oa);
		json_object_put(ob);
	}
	CHECK_EQ(got, 60);
	CHECK(next_event(b, lb) == NULL);
	CHECK(!readable(ft_events_fd(a)) && !readable(ft_events_fd(b)));
	ft_events_unsubscribe(a);
	ft_events_unsubscribe(b);
}

/* A subscriber that never reads: emit goes on at once, the reader beside it misses nothing, and the
 * slow one gets its queue, then how many it lost, in the place they were lost. */
static void test_slow_reader(void)
{
	struct ft_event_sub *slow = ft_events_subscribe(), *fast = ft_events_subscribe();
	CHECK(slow && fast);
	char line[FT_EVENT_LINE + 1];
	uint64_t t0 = now_ns();
	for (int i = 0; i < 1000; i++) {
		ft_event_emit("tick", "\"seq\":%d", i);
		struct json_object *o = next_event(fast, line);
		CHECK(o != NULL);
		CHECK_EQ(json_get_int(o, "seq"), i);
		json_object_put(o);
	}
	CHECK(now_ns() - t0 < 5000000000ull); /* nothing waited for the slow one */
	for (int i = 0; i < FT_EVENT_QUEUE; i++) {
		struct json_object *o = next_event(slow, line);
		CHECK(o != NULL);
		CHECK_EQ(json_get_int(o, "seq"), i);
		json_object_put(o);
	}
	/* the queue is empty and events were lost after it: said now, not at the next event */
	struct json_object *o = next_event(slow, line);
	CHECK(o != NULL);
	CHECK(!strcmp(json_get_str(o, "event"), "events_dropped"));
	CHECK_EQ(json_get_int(o, "dropped"), 1000 - FT_EVENT_QUEUE);
	json_object_put(o);
	CHECK(next_event(slow, line) == NULL);
	CHECK(!readable(ft_events_fd(slow)));

	/* lost while lines still wait: the next event queued carries the count */
	for (int i = 0; i < FT_EVENT_QUEUE + 5; i++)
		ft_event_emit("tick", "\"seq\":%d", i);
	o = next_event(slow, line);
	CHECK_EQ(json_get_int(o, "seq"), 0);
	json_object_put(o);
	ft_event_emit("after", NULL);
	for (int i = 1; i < FT_EVENT_QUEUE; i++) {
		o = next_event(slow, line);
		CHECK(!json_has(o, "dropped"));
		json_object_put(o);
	}
	o = next_event(slow, line);
	CHECK(!strcmp(json_get_str(o, "event"), "after"));
	CHECK_EQ(json_get_int(o, "dropped"), 5);
	json_object_put(o);
	CHECK(next_event(slow, line) == NULL);
	ft_events_unsubscribe(slow);
	while ((o = next_event(fast, line)))
		json_object_put(o);
	ft_events_unsubscribe(fast);
}

/* At most FT_EVENT_SUBS at once; one that leaves makes room; a line whose fields do not fit still goes out. */
static void test_subscribers(void)
{
	struct ft_event_sub *s[FT_EVENT_SUBS];
	for (int i = 0; i < FT_EVENT_SUBS; i++) {
		s[i] = ft_events_subscribe();
		CHECK(s[i] != NULL);
	}
	CHECK(ft_events_subscribe() == NULL);
	ft_events_unsubscribe(s[1]);
	s[1] = ft_events_subscribe();
	CHECK(s[1] != NULL);
	static char big[FT_EVENT_LINE + 100];
	memset(big, 'x', sizeof(big) - 1);
	ft_event_emit("big", "\"v\":\"%s\"", big);
	ft_event_emit("near", "\"v\":\"%.*s\"", FT_EVENT_LINE - 60, big);
	char line[FT_EVENT_LINE + 1];
	struct json_object *o = next_event(s[0], line);
	CHECK(!strcmp(json_get_str(o, "event"), "big"));
	struct json_object *v;
	CHECK(json_object_object_get_ex(o, "truncated", &v) && json_object_get_boolean(v));
	json_object_put(o);
	o = next_event(s[0], line);
	CHECK(!strcmp(json_get_str(o, "event"), "near"));
	json_object_put(o);
	/* no subscriber: emitting costs nothing and keeps nothing */
	for (int i = 0; i < FT_EVENT_SUBS; i++)
		ft_events_unsubscribe(s[i]);
	ft_event_emit("nobody", NULL);
	struct ft_event_sub *late = ft_events_subscribe();
	CHECK(ft_events_next(late, line, sizeof(line)) == 0);
	ft_events_unsubscribe(late);
	/* the line the control socket sends first */
	CHECK(ft_event_line(line, sizeof(line), "subscribed", "\"status\":{\"role\":\"backup\"}") > 0);
	o = json_check(line);
	CHECK(o != NULL && !strcmp(json_get_str(o, "event"), "subscribed"));
	json_object_put(o);
	CHECK_EQ(ft_event_line(line, 20, "subscribed", NULL), 0);
}

static void hold_pkt(struct outbuf *o, size_t len)
{
	uint8_t b[256] = { 0 };
	struct iovec iov = { b, len };
	CHECK_EQ(outbuf_sink_send(o, &iov, 1), 0);
}

/* What `status --json` is built from: output held on every NIC summed, the lost reason, no arbiter. */
static void test_getters(void)
{
	static struct ft_primary p;
	memset(&p, 0, sizeof(p));
	pthread_mutex_init(&p.lock, NULL);
	int tap[2];
	CHECK_EQ(socketpair(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0, tap), 0);
	struct ft_primary_info pi;
	ft_primary_info(&p, &pi);
	CHECK(!pi.started && !pi.protected_ && pi.last_commit_ms_ago == -1 && pi.held_packets == 0);
	p.threads_started = true;
	p.protected_ = true;
	p.acked = 7;
	p.epoch = 9;
	p.gen = 3;
	p.last_commit_ns = now_ns();
	snprintf(p.peer, sizeof(p.peer), "10.77.0.2:7000");
	p.nouts = 2;
	outbuf_init(&p.out[0], tap[0], 0);
	outbuf_init(&p.out[1], tap[0], 0);
	hold_pkt(&p.out[0], 100);
	hold_pkt(&p.out[0], 60);
	hold_pkt(&p.out[1], 200);
	ft_primary_info(&p, &pi);
	CHECK(pi.started && pi.protected_ && !pi.lost);
	CHECK_EQ(pi.held_packets, 3);
	CHECK_EQ(pi.held_bytes, 360);
	CHECK_EQ(pi.last_commit, 7);
	CHECK_EQ(pi.epoch, 9);
	CHECK_EQ(pi.generation, 3);
	CHECK(pi.last_commit_ms_ago >= 0 && pi.last_commit_ms_ago < 5000);
	CHECK(!strcmp(pi.peer, "10.77.0.2:7000") && !pi.reason[0]);
	p.lost = true;
	snprintf(p.lost_reason, sizeof(p.lost_reason), "no heartbeat");
	ft_primary_info(&p, &pi);
	CHECK(pi.lost && !pi.protected_ && !strcmp(pi.reason, "no heartbeat"));
	for (int i = 0; i < 2; i++) {
		outbuf_discard(&p.out[i]);
		outbuf_destroy(&p.out[i]);
	}
	pthread_mutex_destroy(&p.lock);
	close(tap[0]);
	close(tap[1]);

	struct ft_fence_info fi;
	fence_info(NULL, &fi);
	CHECK(!fi.on && fi.gen == 0);
	static struct backup b;
	backup_init(&b);
	struct backup_info bi;
	backup_info(&b, &bi);
	CHECK(!strcmp(bi.state, "waiting-for-primary") && !bi.protected_ && !bi.link_up && !bi.peer[0]);
	b.done = true;
	snprintf(b.why, sizeof(b.why), "no heartbeat from the primary");
	backup_info(&b, &bi);
	CHECK(!strcmp(bi.state, "ended") && !strcmp(bi.reason, "no heartbeat from the primary"));
	pthread_mutex_destroy(&b.lock);
}

/* ---- the backup's pairing: link_refused (tls, shape) and link_authenticated ---- */

static struct sockaddr_in pair_addr;

static int pair_listen(void)
{
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	CHECK(fd >= 0);
	pair_addr = (struct sockaddr_in){ .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	socklen_t al = sizeof(pair_addr);
	CHECK_EQ(bind(fd, (struct sockaddr *)&pair_addr, sizeof(pair_addr)), 0);
	CHECK_EQ(listen(fd, 16), 0);
	CHECK_EQ(getsockname(fd, (struct sockaddr *)&pair_addr, &al), 0);
	return fd;
}

/* A primary's connection, TLS with c if given (its handshake's result in *ok); reads give up after 5 s. */
static struct ft_link pair_connect(struct ft_tls_creds *c, bool *ok)
{
	struct ft_link l = { .fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0) };
	CHECK(l.fd >= 0);
	CHECK_EQ(connect(l.fd, (struct sockaddr *)&pair_addr, sizeof(pair_addr)), 0);
	struct timeval tv = { 5, 0 };
	setsockopt(l.fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	if (c) {
		CHECK_EQ(ft_tls_new(c, l.fd, "127.0.0.1", &l.tls), 0);
		*ok = ft_tls_handshake(l.tls, 5000) == 0;
	}
	return l;
}

/* "127.0.0.1:PORT" of our end of l: what the backup must name as its peer. */
static void local_name(const struct ft_link *l, char *buf, size_t len)
{
	struct sockaddr_in a = { 0 };
	socklen_t al = sizeof(a);
	CHECK_EQ(getsockname(l->fd, (struct sockaddr *)&a, &al), 0);
	snprintf(buf, len, "127.0.0.1:%u", ntohs(a.sin_port));
}

/* The handshake's shape of a 64 KiB, 1-vCPU guest with ndisks disks and no NIC. */
static size_t pair_shape(void *buf, size_t size, uint32_t ndisks)
{
	int r = fdt_create(buf, (int)size);
	r |= fdt_finish_reservemap(buf);
	r |= fdt_begin_node(buf, "");
	r |= fdt_property_u64(buf, "mem-size", 16 * 4096);
	r |= fdt_property_u32(buf, "ncpus", 1);
	r |= fdt_property_u32(buf, "ndisks", ndisks);
	r |= fdt_property_u32(buf, "nnics", 0);
	r |= fdt_end_node(buf);
	r |= fdt_finish(buf);
	CHECK_EQ(r, 0);
	return fdt_totalsize(buf);
}

struct accept_job {
	struct backup *b;
	int lfd, rc;
};

static void *accept_thread(void *arg)
{
	struct accept_job *j = arg;
	j->rc = backup_accept(j->b, j->lfd);
	return NULL;
}

/* HELLO (shape with ndisks) and HB_HELLO of one session from a primary with creds c (NULL: plain); the
 * backup's answer type. */
static uint16_t pair_primary(struct ft_tls_creds *c, uint32_t ndisks, struct ft_link *data, struct ft_link *hb)
{
	bool ok = true;
	uint8_t shape[1024];
	size_t n = pair_shape(shape, sizeof(shape), ndisks);
	*data = pair_connect(c, &ok);
	CHECK(ok);
	CHECK_EQ(ft_send_buf(data, FT_HELLO, 9, shape, n), 0);
	*hb = pair_connect(c, &ok);
	CHECK(ok);
	CHECK_EQ(ft_send_buf(hb, FT_HB_HELLO, 9, NULL, 0), 0);
	struct ft_frame f;
	void *reply;
	CHECK_EQ(ft_recv(data, &f, &reply), 0);
	free(reply);
	return f.type;
}

static struct json_object *expect_event(struct ft_event_sub *s, const char *type)
{
	char line[FT_EVENT_LINE + 1];
	struct json_object *o = next_event(s, line);
	CHECK(o != NULL);
	if (strcmp(json_get_str(o, "event"), type) != 0)
		fprintf(stderr, "expected %s, got %s\n", type, line);
	CHECK(!strcmp(json_get_str(o, "event"), type));
	CHECK(!strcmp(json_get_str(o, "role"), "backup"));
	return o;
}

static void test_pairing_events(void)
{
	static struct tls_fixture fx;
	tls_fixture_make(&fx);
	struct ft_tls_creds *sc = tls_creds(FT_TLS_SERVER, NULL, NULL, fx.psk);
	struct ft_tls_creds *good = tls_creds(FT_TLS_CLIENT, NULL, NULL, fx.psk);
	struct ft_tls_creds *other = tls_creds(FT_TLS_CLIENT, NULL, NULL, fx.psk_other);
	struct ft_event_sub *sub = ft_events_subscribe();
	static struct backup b;
	backup_init(&b);
	b.tls = sc;
	int lfd = pair_listen();
	struct accept_job job = { &b, lfd, -1 };
	pthread_t t;
	CHECK_EQ(pthread_create(&t, NULL, accept_thread, &job), 0);
	/* a peer with another key fails the handshake: refused, with its address and why */
	bool ok = true;
	struct ft_link rogue = pair_connect(other, &ok);
	CHECK(!ok);
	char rogue_name[64];
	local_name(&rogue, rogue_name, sizeof(rogue_name));
	ft_link_close(&rogue);
	struct ft_link data, hb;
	CHECK_EQ(pair_primary(good, 0, &data, &hb), FT_HELLO_OK);
	CHECK_EQ(pthread_join(t, NULL), 0);
	CHECK_EQ(job.rc, 0);
	struct json_object *o = expect_event(sub, "link_refused");
	CHECK(!strcmp(json_get_str(o, "stage"), "tls") && !strcmp(json_get_str(o, "peer"), rogue_name));
	CHECK(strstr(json_get_str(o, "reason"), "failed the TLS handshake") != NULL);
	json_object_put(o);
	char data_name[64];
	local_name(&data, data_name, sizeof(data_name));
	o = expect_event(sub, "link_authenticated");
	CHECK(!strcmp(json_get_str(o, "peer"), data_name));
	CHECK_EQ(json_get_int(o, "generation"), 0);
	json_object_put(o);
	/* what status says of it */
	struct backup_info bi;
	backup_info(&b, &bi);
	CHECK(!strcmp(bi.peer, data_name) && !strcmp(bi.state, "initial-sync") && bi.link_up);
	ft_link_close(&data);
	ft_link_close(&hb);
	ft_link_close(&b.data);
	ft_link_close(&b.hb);
	gmem_free(&b.mem);

	/* no TLS, and a primary whose shape this backup cannot take: refused at that step */
	b.tls = NULL;
	CHECK_EQ(pthread_create(&t, NULL, accept_thread, &job), 0);
	CHECK_EQ(pair_primary(NULL, 1, &data, &hb), FT_HELLO_ERR);
	CHECK_EQ(pthread_join(t, NULL), 0);
	CHECK_EQ(job.rc, -EINVAL);
	local_name(&data, data_name, sizeof(data_name));
	o = expect_event(sub, "link_refused");
	CHECK(!strcmp(json_get_str(o, "stage"), "shape") && !strcmp(json_get_str(o, "peer"), data_name));
	CHECK(!strcmp(json_get_str(o, "reason"), "primary has 1 disks, backup was given 0 --disk"));
	json_object_put(o);
	char line[FT_EVENT_LINE + 1];
	CHECK(next_event(sub, line) == NULL); /* no link_authenticated without TLS */
	ft_link_close(&data);
	ft_link_close(&hb);
	close(lfd);
	pthread_mutex_destroy(&b.lock);
	ft_events_unsubscribe(sub);
	ft_tls_creds_free(sc);
	ft_tls_creds_free(good);
	ft_tls_creds_free(other);
	tls_fixture_free(&fx);
}

int main(void)
{
	test_quote();
	test_builder();
	test_order();
	test_slow_reader();
	test_subscribers();
	test_getters();
	test_pairing_events();
	TEST_DONE("test_events");
}

/* test_tls.c - TLS on the FT links without KVM: x509 and PSK handshakes, refused credentials, altered records, buffered records, the loopback rule. */
#include "../../ft/proto.h"
#include "../../ft/tls.h"
#include "../../vmm/util.h"
#include "test.h"
#include "tls_test.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdint.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/uio.h>
#include <unistd.h>

static struct tls_fixture fx;

/* One end of a TLS connection under test. */
struct end {
	struct ft_tls_creds *c;
	struct ft_link l;
	const char *host; /* a client's: the name it connects to */
	int rc;           /* its handshake's result */
};

static void *shake_thread(void *arg)
{
	struct end *e = arg;
	e->rc = ft_tls_new(e->c, e->l.fd, e->host, &e->l.tls);
	if (!e->rc)
		e->rc = ft_tls_handshake(e->l.tls, 5000); /* a stuck handshake fails the test, never hangs it */
	return NULL;
}

/* A client and a server on the two fds, each shaking hands on a thread of its own. */
static void shake(struct end *cli, struct end *srv)
{
	pthread_t t;
	CHECK_EQ(pthread_create(&t, NULL, shake_thread, srv), 0);
	shake_thread(cli);
	CHECK_EQ(pthread_join(t, NULL), 0);
}

/* cli and srv over a fresh socketpair, shaken hands. */
static void pair_up(struct end *cli, struct end *srv, struct ft_tls_creds *cc, struct ft_tls_creds *sc, const char *host)
{
	int sv[2];
	CHECK_EQ(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
	*cli = (struct end){ .c = cc, .l = { .fd = sv[0] }, .host = host };
	*srv = (struct end){ .c = sc, .l = { .fd = sv[1] } };
	shake(cli, srv);
}

static void unpair(struct end *cli, struct end *srv)
{
	ft_link_close(&cli->l);
	ft_link_close(&srv->l);
}

/* ---- frames over a session --------------------------------------------------------------------- */

struct send_job {
	const struct ft_link *l;
	const struct iovec *iov;
	int iovcnt, rc;
};

static void *send_thread(void *arg)
{
	struct send_job *j = arg;
	j->rc = ft_send(j->l, FT_EPOCH, 99, j->iov, j->iovcnt);
	return NULL;
}

/* Frames flow both ways, small and large (odd iovecs: records filled across them, then straight from
 * the caller's memory), and arrive exactly as sent. */
static void frames_flow(struct end *cli, struct end *srv)
{
	static const char hello[] = "shape";
	struct ft_frame f;
	void *p;
	CHECK_EQ(ft_send_buf(&cli->l, FT_HELLO, 7, hello, sizeof(hello)), 0);
	CHECK_EQ(ft_recv(&srv->l, &f, &p), 0);
	CHECK(f.type == FT_HELLO && f.seq == 7 && f.len == sizeof(hello) && !memcmp(p, hello, sizeof(hello)));
	free(p);
	CHECK_EQ(ft_send_buf(&srv->l, FT_ACK, 8, NULL, 0), 0);
	CHECK_EQ(ft_recv(&cli->l, &f, &p), 0);
	CHECK(f.type == FT_ACK && f.seq == 8 && f.len == 0);
	free(p);
	size_t big = (3u << 20) + 12345;
	uint8_t *b = malloc(big);
	CHECK(b);
	for (size_t i = 0; i < big; i++)
		b[i] = (uint8_t)(i * 131 + (i >> 9));
	struct iovec iov[5] = { { b, 3 }, { b + 3, 0 }, { b + 3, 20000 }, { b + 20003, 70 }, { b + 20073, big - 20073 } };
	struct send_job j = { &cli->l, iov, 5, -1 };
	pthread_t t;
	CHECK_EQ(pthread_create(&t, NULL, send_thread, &j), 0);
	CHECK_EQ(ft_recv(&srv->l, &f, &p), 0);
	CHECK_EQ(pthread_join(t, NULL), 0);
	CHECK_EQ(j.rc, 0);
	CHECK(f.type == FT_EPOCH && f.len == big && !memcmp(p, b, big));
	free(p);
	free(b);
}

/* The primary's sender and receiver on one session at once: frames out, acks in, neither waits for
 * the other (the session's lock is never held while waiting). */
struct stream_job {
	struct end *e;
	int frames, rc;
};

static void *stream_frames(void *arg)
{
	struct stream_job *j = arg;
	static uint8_t mib[1 << 20];
	j->rc = 0;
	for (int i = 0; i < j->frames && !j->rc; i++)
		j->rc = ft_send_buf(&j->e->l, FT_EPOCH, (uint64_t)i, mib, sizeof(mib));
	return NULL;
}

static void *ack_frames(void *arg)
{
	struct stream_job *j = arg;
	j->rc = 0;
	for (int i = 0; i < j->frames && !j->rc; i++) {
		struct ft_frame f;
		void *p;
		j->rc = ft_recv(&j->e->l, &f, &p);
		if (!j->rc) {
			free(p);
			j->rc = f.type == FT_EPOCH && f.seq == (uint64_t)i ? ft_send_buf(&j->e->l, FT_ACK, f.seq, NULL, 0) : -EPROTO;
		}
	}
	return NULL;
}

static void both_ways_at_once(struct end *cli, struct end *srv)
{
	enum { N = 24 };
	struct stream_job tx = { cli, N, -1 }, peer = { srv, N, -1 };
	pthread_t a, b;
	CHECK_EQ(pthread_create(&a, NULL, stream_frames, &tx), 0);
	CHECK_EQ(pthread_create(&b, NULL, ack_frames, &peer), 0);
	for (int i = 0; i < N; i++) { /* this thread receives the acks while `a` sends */
		struct ft_frame f;
		void *p;
		CHECK_EQ(ft_recv(&cli->l, &f, &p), 0);
		CHECK(f.type == FT_ACK && f.seq == (uint64_t)i);
		free(p);
	}
	CHECK_EQ(pthread_join(a, NULL), 0);
	CHECK_EQ(pthread_join(b, NULL), 0);
	CHECK_EQ(tx.rc, 0);
	CHECK_EQ(peer.rc, 0);
}

/* A peer that finished its handshake but never answers: a read gives up after the socket's
 * SO_RCVTIMEO (the primary's bound on the backup's reply), as a plain socket's would. */
static void rcvtimeo_honoured(struct end *cli)
{
	struct timeval tv = { 0, 200000 };
	CHECK_EQ(setsockopt(cli->l.fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv)), 0);
	struct ft_frame f;
	void *p = (void *)1;
	uint64_t t0 = now_ns();
	CHECK_EQ(ft_recv(&cli->l, &f, &p), -EAGAIN);
	CHECK(p == NULL);
	uint64_t waited = now_ns() - t0;
	CHECK(waited >= 150000000ull && waited < 3000000000ull);
	struct timeval none = { 0, 0 };
	CHECK_EQ(setsockopt(cli->l.fd, SOL_SOCKET, SO_RCVTIMEO, &none, sizeof(none)), 0);
}

/* ---- credentials files -------------------------------------------------------------------------- */

static int load(const char *dir, const char *psk, enum ft_tls_role role, char *err, size_t errlen)
{
	struct ft_tls_opts o = { .x509_dir = dir, .psk_file = psk };
	struct ft_tls_creds *c = (void *)1;
	err[0] = '\0';
	int r = ft_tls_creds_load(&o, role, &c, err, errlen);
	CHECK(r ? c == NULL && err[0] && !strchr(err, '\n') : c != NULL); /* one line when refused */
	ft_tls_creds_free(c);
	return r;
}

static void test_creds_files(void)
{
	char err[512];
	CHECK_EQ(load(NULL, fx.psk, FT_TLS_CLIENT, err, sizeof(err)), 0);
	CHECK_EQ(load(NULL, fx.psk, FT_TLS_SERVER, err, sizeof(err)), 0);
	CHECK_EQ(load(NULL, fx.psk_ident, FT_TLS_SERVER, err, sizeof(err)), 0); /* 0400: stricter is fine */
	/* a key group and others may read is refused, saying so and what to do */
	CHECK_EQ(load(NULL, fx.psk_open, FT_TLS_CLIENT, err, sizeof(err)), -EPERM);
	CHECK(strstr(err, fx.psk_open) && strstr(err, "0644") && strstr(err, "0600") && strstr(err, "chmod 600"));
	CHECK_EQ(load(NULL, fx.psk_open, FT_TLS_SERVER, err, sizeof(err)), -EPERM);
	CHECK_EQ(load(NULL, fx.psk_bad, FT_TLS_CLIENT, err, sizeof(err)), -EINVAL);
	CHECK(strstr(err, "IDENTITY:HEX-KEY") != NULL);
	CHECK_EQ(load(NULL, "/nonexistent/ft.psk", FT_TLS_CLIENT, err, sizeof(err)), -ENOENT);
	CHECK_EQ(load(NULL, fx.root, FT_TLS_CLIENT, err, sizeof(err)), -EPERM); /* a directory (0700) */
	CHECK(strstr(err, "not a regular file") != NULL);
	CHECK_EQ(load(fx.good, NULL, FT_TLS_CLIENT, err, sizeof(err)), 0);
	CHECK_EQ(load(fx.good, NULL, FT_TLS_SERVER, err, sizeof(err)), 0);
	CHECK_EQ(load(fx.root, NULL, FT_TLS_SERVER, err, sizeof(err)), -ENOENT); /* no ca-cert.pem there */
	CHECK(strstr(err, "ca-cert.pem") != NULL);
	CHECK(load(fx.good, fx.psk, FT_TLS_CLIENT, err, sizeof(err)) == -EINVAL && strstr(err, "either"));
	/* a key file that is not a key */
	char dir[128], cmd[1024];
	snprintf(dir, sizeof(dir), "%s/broken", fx.root);
	snprintf(cmd, sizeof(cmd), "mkdir %s && cp %s/ca-cert.pem %s/client-cert.pem %s/ && echo junk > %s/client-key.pem", dir,
		 fx.good, fx.good, dir, dir);
	CHECK_EQ(system(cmd), 0);
	CHECK_EQ(load(dir, NULL, FT_TLS_CLIENT, err, sizeof(err)), -EINVAL);
	CHECK(strstr(err, "client-key.pem") != NULL);
}

/* ---- x509 --------------------------------------------------------------------------------------- */

static void test_x509_ok(void)
{
	struct ft_tls_creds *cc = tls_creds(FT_TLS_CLIENT, fx.good, NULL, NULL);
	struct ft_tls_creds *sc = tls_creds(FT_TLS_SERVER, fx.good, NULL, NULL);
	struct ft_tls_creds *sc_named = tls_creds(FT_TLS_SERVER, fx.good, "primary.test", NULL);
	struct end cli, srv;
	pair_up(&cli, &srv, cc, sc, "backup.test"); /* the name the backup's certificate carries */
	CHECK_EQ(cli.rc, 0);
	CHECK_EQ(srv.rc, 0);
	frames_flow(&cli, &srv);
	both_ways_at_once(&cli, &srv);
	rcvtimeo_honoured(&cli);
	unpair(&cli, &srv);
	pair_up(&cli, &srv, cc, sc_named, "127.0.0.1"); /* its address; and the backup checks our name */
	CHECK_EQ(cli.rc, 0);
	CHECK_EQ(srv.rc, 0);
	frames_flow(&cli, &srv);
	unpair(&cli, &srv);
	ft_tls_creds_free(cc);
	ft_tls_creds_free(sc);
	ft_tls_creds_free(sc_named);
}

/* The refusing side fails its handshake; a client whose own side finished (TLS 1.3 ends the client's
 * part before the server checks its certificate) sends a frame anyway, and the server's session gives
 * none of it; the client then hears why. */
static void refused(struct end *cli, struct end *srv, bool client_refuses, const char *why)
{
	if (client_refuses) {
		CHECK_EQ(cli->rc, -EACCES);
		if (!strstr(ft_tls_error(cli->l.tls), why))
			fprintf(stderr, "client's error: %s\n", ft_tls_error(cli->l.tls));
		CHECK(strstr(ft_tls_error(cli->l.tls), why) != NULL);
		CHECK(srv->rc < 0);
	} else {
		CHECK_EQ(srv->rc, -EACCES);
		if (!strstr(ft_tls_error(srv->l.tls), why))
			fprintf(stderr, "server's error: %s\n", ft_tls_error(srv->l.tls));
		CHECK(strstr(ft_tls_error(srv->l.tls), why) != NULL);
		if (cli->rc == 0)
			(void)ft_send_buf(&cli->l, FT_HELLO, 1, "x", 1);
		struct ft_frame f;
		void *p = (void *)1;
		CHECK(ft_recv(&srv->l, &f, &p) < 0 && p == NULL);
		CHECK(cli->rc < 0 || ft_recv(&cli->l, &f, &p) < 0);
	}
}

/* A client with a certificate but no key of its own: GnuTLS's API directly, as a stranger would. */
static void *certless_client(void *arg)
{
	struct end *e = arg;
	gnutls_certificate_credentials_t x;
	gnutls_session_t s;
	char ca[160];
	snprintf(ca, sizeof(ca), "%s/ca-cert.pem", fx.good);
	CHECK_EQ(gnutls_certificate_allocate_credentials(&x), 0);
	CHECK(gnutls_certificate_set_x509_trust_file(x, ca, GNUTLS_X509_FMT_PEM) > 0);
	CHECK_EQ(gnutls_init(&s, GNUTLS_CLIENT | GNUTLS_NO_SIGNAL), 0);
	CHECK_EQ(gnutls_priority_set_direct(s, "NORMAL:-VERS-ALL:+VERS-TLS1.3", NULL), 0);
	CHECK_EQ(gnutls_credentials_set(s, GNUTLS_CRD_CERTIFICATE, x), 0);
	gnutls_transport_set_int(s, e->l.fd);
	gnutls_handshake_set_timeout(s, 5000);
	int r;
	while ((r = gnutls_handshake(s)) < 0 && !gnutls_error_is_fatal(r))
		;
	if (r == 0) /* its side finished: it tries to speak */
		gnutls_record_send(s, "HELLO", 5);
	e->rc = r;
	gnutls_deinit(s);
	gnutls_certificate_free_credentials(x);
	return NULL;
}

static void test_x509_refused(void)
{
	struct ft_tls_creds *sc = tls_creds(FT_TLS_SERVER, fx.good, NULL, NULL);
	struct ft_tls_creds *evil = tls_creds(FT_TLS_CLIENT, fx.evil, NULL, NULL);
	struct ft_tls_creds *mixed = tls_creds(FT_TLS_CLIENT, fx.mixed, NULL, NULL);
	struct ft_tls_creds *good = tls_creds(FT_TLS_CLIENT, fx.good, NULL, NULL);
	struct ft_tls_creds *other_name = tls_creds(FT_TLS_CLIENT, fx.good, "other.test", NULL);
	struct ft_tls_creds *sc_nobody = tls_creds(FT_TLS_SERVER, fx.good, "nobody.test", NULL);
	struct end cli, srv;
	/* the primary trusts another CA: the backup's certificate is refused */
	pair_up(&cli, &srv, evil, sc, "backup.test");
	refused(&cli, &srv, true, "issuer is unknown");
	unpair(&cli, &srv);
	/* a stranger's certificate (another CA) presented to the backup */
	pair_up(&cli, &srv, mixed, sc, "backup.test");
	refused(&cli, &srv, false, "issuer is unknown");
	unpair(&cli, &srv);
	/* the right CA, but not the backup we meant to reach (by --tls-peer, then by address) */
	pair_up(&cli, &srv, other_name, sc, "backup.test");
	refused(&cli, &srv, true, "does not match");
	unpair(&cli, &srv);
	pair_up(&cli, &srv, good, sc, "10.9.8.7");
	refused(&cli, &srv, true, "does not match");
	unpair(&cli, &srv);
	/* the backup wants another primary's name */
	pair_up(&cli, &srv, good, sc_nobody, "backup.test");
	refused(&cli, &srv, false, "does not match");
	unpair(&cli, &srv);
	/* no client certificate at all */
	int sv[2];
	CHECK_EQ(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
	cli = (struct end){ .l = { .fd = sv[0] } };
	srv = (struct end){ .c = sc, .l = { .fd = sv[1] } };
	pthread_t t;
	CHECK_EQ(pthread_create(&t, NULL, certless_client, &cli), 0);
	shake_thread(&srv);
	CHECK_EQ(pthread_join(t, NULL), 0);
	CHECK_EQ(srv.rc, -EACCES);
	struct ft_frame f;
	void *p = (void *)1;
	CHECK(ft_recv(&srv.l, &f, &p) < 0 && p == NULL);
	unpair(&cli, &srv);
	ft_tls_creds_free(sc);
	ft_tls_creds_free(evil);
	ft_tls_creds_free(mixed);
	ft_tls_creds_free(good);
	ft_tls_creds_free(other_name);
	ft_tls_creds_free(sc_nobody);
}

/* ---- PSK ---------------------------------------------------------------------------------------- */

static void test_psk(void)
{
	struct ft_tls_creds *sc = tls_creds(FT_TLS_SERVER, NULL, NULL, fx.psk);
	struct ft_tls_creds *cc = tls_creds(FT_TLS_CLIENT, NULL, NULL, fx.psk);
	struct ft_tls_creds *wrong_key = tls_creds(FT_TLS_CLIENT, NULL, NULL, fx.psk_other);
	struct ft_tls_creds *wrong_id = tls_creds(FT_TLS_CLIENT, NULL, NULL, fx.psk_ident);
	struct end cli, srv;
	pair_up(&cli, &srv, cc, sc, "127.0.0.1");
	CHECK_EQ(cli.rc, 0);
	CHECK_EQ(srv.rc, 0);
	frames_flow(&cli, &srv);
	unpair(&cli, &srv);
	/* the right identity with another key, and an identity the backup does not know */
	struct ft_tls_creds *bad[2] = { wrong_key, wrong_id };
	for (int i = 0; i < 2; i++) {
		pair_up(&cli, &srv, bad[i], sc, "127.0.0.1");
		CHECK(srv.rc < 0);
		CHECK(cli.rc < 0);
		if (!strstr(ft_tls_error(srv.l.tls), "pre-shared key refused"))
			fprintf(stderr, "server's error: %s\n", ft_tls_error(srv.l.tls));
		CHECK(strstr(ft_tls_error(srv.l.tls), "pre-shared key refused") != NULL);
		struct ft_frame f;
		void *p = (void *)1;
		CHECK(ft_recv(&srv.l, &f, &p) < 0 && p == NULL);
		unpair(&cli, &srv);
	}
	ft_tls_creds_free(sc);
	ft_tls_creds_free(cc);
	ft_tls_creds_free(wrong_key);
	ft_tls_creds_free(wrong_id);
}

/* ---- altered records ---------------------------------------------------------------------------- */

/* One byte of the next frame's records flipped on the wire, `at` bytes into them. The receiver never
 * gets altered bytes: a flip inside a record's protected bytes (length, content, tag) fails its MAC
 * (-EBADMSG, or an error for a length that no longer fits) and the link stays dead; TLS 1.3 ignores
 * the outer type and version (mac false), so there the frame may arrive, but only exactly as sent. */
static void flipped(struct ft_tls_creds *cc, struct ft_tls_creds *sc, uint64_t at, bool mac)
{
	struct relay r;
	struct end cli, srv;
	int x, y;
	relayed_pair(&r, &x, &y);
	cli = (struct end){ .c = cc, .l = { .fd = x }, .host = "backup.test" };
	srv = (struct end){ .c = sc, .l = { .fd = y } };
	shake(&cli, &srv);
	CHECK(cli.rc == 0 && srv.rc == 0);
	struct ft_frame f;
	void *p;
	CHECK_EQ(ft_send_buf(&cli.l, FT_ACK, 1, NULL, 0), 0); /* the link works... */
	CHECK_EQ(ft_recv(&srv.l, &f, &p), 0);
	free(p);
	size_t len = 40000; /* three records */
	uint8_t *b = malloc(len);
	CHECK(b);
	for (size_t i = 0; i < len; i++)
		b[i] = (uint8_t)(i * 7);
	relay_flip(&r, 0, at);
	struct iovec iov = { b, len };
	struct send_job j = { &cli.l, &iov, 1, -1 };
	pthread_t t;
	CHECK_EQ(pthread_create(&t, NULL, send_thread, &j), 0);
	CHECK_EQ(pthread_join(t, NULL), 0);
	shutdown(cli.l.fd, SHUT_WR); /* a flipped length must not leave the reader waiting for bytes that never come */
	p = (void *)1;
	int rc = ft_recv(&srv.l, &f, &p);
	if (mac && rc != -EBADMSG && at != 3 && at != 4)
		fprintf(stderr, "flip at %llu: %d (%s)\n", (unsigned long long)at, rc, ft_tls_error(srv.l.tls));
	if (mac || rc) {
		CHECK(rc < 0 && p == NULL);
		CHECK(ft_recv(&srv.l, &f, &p) < 0); /* and nothing after it either */
	} else {
		CHECK(f.type == FT_EPOCH && f.len == len && !memcmp(p, b, len));
		free(p);
	}
	CHECK(!mac || rc == -EBADMSG || at == 3 || at == 4);
	free(b);
	ft_link_close(&cli.l);
	ft_link_close(&srv.l);
	relay_stop(&r);
}

static void test_flipped_record(void)
{
	struct ft_tls_creds *cc = tls_creds(FT_TLS_CLIENT, fx.good, NULL, NULL);
	struct ft_tls_creds *sc = tls_creds(FT_TLS_SERVER, fx.good, NULL, NULL);
	/* the record's outer type and version: not protected, and not used */
	static const uint64_t outer[] = { 0, 1, 2 };
	for (unsigned i = 0; i < ARRAY_SIZE(outer); i++)
		flipped(cc, sc, outer[i], false);
	/* its length, the frame header inside the first record, the payload, the first record's tag, a
	 * later record */
	static const uint64_t protected_[] = { 3, 4, 5, 20, 37, 4000, 16400, 16405, 20000, 39000 };
	for (unsigned i = 0; i < ARRAY_SIZE(protected_); i++)
		flipped(cc, sc, protected_[i], true);
	ft_tls_creds_free(cc);
	ft_tls_creds_free(sc);
}

/* ---- records TLS has read already --------------------------------------------------------------- */

/* Two frames in one record: once the first is read, the second sits decrypted in the session while
 * the socket is empty. poll(2) says nothing is there; ft_link_wait_in must say there is. */
static void test_pending(void)
{
	struct ft_tls_creds *cc = tls_creds(FT_TLS_CLIENT, NULL, NULL, fx.psk);
	struct ft_tls_creds *sc = tls_creds(FT_TLS_SERVER, NULL, NULL, fx.psk);
	struct end cli, srv;
	pair_up(&cli, &srv, cc, sc, "127.0.0.1");
	CHECK(cli.rc == 0 && srv.rc == 0);
	int sv[2];
	CHECK_EQ(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
	CHECK_EQ(ft_send_buf(FT_PLAIN(sv[0]), FT_HEARTBEAT, 1, NULL, 0), 0);
	CHECK_EQ(ft_send_buf(FT_PLAIN(sv[0]), FT_BYE, 2, NULL, 0), 0);
	uint8_t two[2 * sizeof(struct ft_frame)];
	CHECK_EQ(read(sv[1], two, sizeof(two)), (ssize_t)sizeof(two));
	close(sv[0]);
	close(sv[1]);
	struct iovec iov = { two, sizeof(two) };
	CHECK_EQ(ft_tls_sendv(cli.l.tls, &iov, 1), 0);
	struct ft_frame f;
	void *p;
	CHECK_EQ(ft_recv(&srv.l, &f, &p), 0);
	CHECK_EQ(f.type, FT_HEARTBEAT);
	free(p);
	struct pollfd pf = { .fd = srv.l.fd, .events = POLLIN };
	CHECK_EQ(poll(&pf, 1, 0), 0); /* the socket is empty... */
	CHECK(ft_link_pending(&srv.l) > 0);
	CHECK_EQ(ft_link_wait_in(&srv.l, 0), 1); /* ...and the frame is there */
	CHECK_EQ(ft_recv(&srv.l, &f, &p), 0);
	CHECK_EQ(f.type, FT_BYE);
	free(p);
	CHECK_EQ(ft_link_pending(&srv.l), 0);
	CHECK_EQ(ft_link_wait_in(&srv.l, 0), 0);
	unpair(&cli, &srv);
	ft_tls_creds_free(cc);
	ft_tls_creds_free(sc);
}

/* ---- where a link without credentials may go ---------------------------------------------------- */

static void test_loopback_rule(void)
{
	CHECK(ft_addr_is_loopback("127.0.0.1:7000"));
	CHECK(ft_addr_is_loopback("127.8.9.10:7000"));
	CHECK(ft_addr_is_loopback("[::1]:7000"));
	CHECK(ft_addr_is_loopback("localhost:7000"));
	CHECK(!ft_addr_is_loopback("192.0.2.1:7000"));
	CHECK(!ft_addr_is_loopback("0.0.0.0:7000"));
	CHECK(!ft_addr_is_loopback("[::]:7000"));
	CHECK(!ft_addr_is_loopback("[::ffff:192.0.2.1]:7000"));
	CHECK(!ft_addr_is_loopback("no-port"));
	char err[512] = "";
	/* refused before any socket is made: one line saying why and what allows it */
	CHECK_EQ(ft_listen("0.0.0.0:7000", true, err, sizeof(err)), -EACCES);
	CHECK(strstr(err, "0.0.0.0:7000 is not a loopback address") && strstr(err, "--ft-insecure") && !strchr(err, '\n'));
	err[0] = '\0';
	CHECK_EQ(ft_connect("192.0.2.1:7000", true, err, sizeof(err)), -EACCES);
	CHECK(strstr(err, "--tls-creds") != NULL);
	/* loopback is fine */
	int lfd = ft_listen("127.0.0.1:0", true, err, sizeof(err));
	CHECK_EQ(lfd, -EINVAL); /* port 0 is not a port ftvmm takes: the rule did not get in the way */
	int s = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	socklen_t al = sizeof(a);
	CHECK(s >= 0 && bind(s, (struct sockaddr *)&a, sizeof(a)) == 0 && getsockname(s, (struct sockaddr *)&a, &al) == 0);
	close(s);
	char hp[64];
	snprintf(hp, sizeof(hp), "127.0.0.1:%u", ntohs(a.sin_port));
	lfd = ft_listen(hp, true, err, sizeof(err));
	CHECK(lfd >= 0);
	int fd = ft_connect(hp, true, err, sizeof(err));
	CHECK(fd >= 0);
	close(fd);
	close(lfd);
}

int main(void)
{
	alarm(240); /* a wait that never ends (a read past its SO_RCVTIMEO, a lost wake-up) fails, not hangs */
	tls_fixture_make(&fx);
	test_creds_files();
	test_x509_ok();
	test_x509_refused();
	test_psk();
	test_flipped_record();
	test_pending();
	test_loopback_rule();
	tls_fixture_free(&fx);
	TEST_DONE("test_tls");
}

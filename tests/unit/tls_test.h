/* tls_test.h - the TLS unit tests' fixtures: throwaway credentials made with GnuTLS's API, a byte-flipping relay. */
#ifndef FTVMM_TLS_TEST_H
#define FTVMM_TLS_TEST_H

#include "../../ft/proto.h"
#include "../../ft/tls.h"
#include "test.h"

#include <fcntl.h>
#include <gnutls/gnutls.h>
#include <gnutls/x509.h>
#include <poll.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

/*
 * tls_fixture_make() writes, under a fresh /tmp directory, credentials in QEMU's layout:
 *   good/   CA A; server-cert.pem for backup.test and 127.0.0.1; client-cert.pem for primary.test
 *   evil/   the same names, all from CA B (a stranger with a CA of its own)
 *   mixed/  trusts CA A but holds B's certificates (accepts the real backup, presents a stranger's cert)
 *   ft.psk (0600), other.psk (same identity, another key), ident.psk (another identity, same key),
 *   open.psk (the right key, mode 0644), bad.psk (not IDENTITY:HEX)
 * No certtool needed: the tests make them with the library ftvmm links anyway.
 */

struct tls_fixture {
	char root[64];
	char good[96], evil[96], mixed[96];
	char psk[96], psk_other[96], psk_ident[96], psk_open[96], psk_bad[96];
};

struct tls_pki {
	gnutls_x509_privkey_t ca_key, srv_key, cli_key;
	gnutls_x509_crt_t ca, srv, cli;
};

static inline void tls_write_file(const char *dir, const char *name, const void *p, size_t n, mode_t mode)
{
	char path[192];
	snprintf(path, sizeof(path), "%s/%s", dir, name);
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode);
	CHECK(fd >= 0);
	CHECK_EQ(write(fd, p, n), (ssize_t)n);
	CHECK_EQ(fchmod(fd, mode), 0); /* whatever the umask */
	close(fd);
}

static inline gnutls_x509_privkey_t tls_key(void)
{
	gnutls_x509_privkey_t k;
	CHECK_EQ(gnutls_x509_privkey_init(&k), 0);
	CHECK_EQ(gnutls_x509_privkey_generate(k, GNUTLS_PK_ECDSA, GNUTLS_CURVE_TO_BITS(GNUTLS_ECC_CURVE_SECP256R1), 0), 0);
	return k;
}

/* A certificate for key named cn, valid from an hour ago for a day: a CA (issuer NULL: self-signed),
 * or a leaf for purpose with a DNS name and, for a server, 127.0.0.1. */
static inline gnutls_x509_crt_t tls_cert(gnutls_x509_privkey_t key, const char *cn, gnutls_x509_crt_t issuer,
				  gnutls_x509_privkey_t issuer_key, const char *purpose, unsigned serial)
{
	gnutls_x509_crt_t c;
	CHECK_EQ(gnutls_x509_crt_init(&c), 0);
	CHECK_EQ(gnutls_x509_crt_set_version(c, 3), 0);
	uint8_t sn[4] = { 0x10, 0, 0, (uint8_t)serial };
	CHECK_EQ(gnutls_x509_crt_set_serial(c, sn, sizeof(sn)), 0);
	time_t now = time(NULL);
	CHECK_EQ(gnutls_x509_crt_set_activation_time(c, now - 3600), 0);
	CHECK_EQ(gnutls_x509_crt_set_expiration_time(c, now + 86400), 0);
	CHECK_EQ(gnutls_x509_crt_set_key(c, key), 0);
	CHECK_EQ(gnutls_x509_crt_set_dn_by_oid(c, GNUTLS_OID_X520_COMMON_NAME, 0, cn, (unsigned)strlen(cn)), 0);
	if (!issuer) {
		CHECK_EQ(gnutls_x509_crt_set_basic_constraints(c, 1, -1), 0);
		CHECK_EQ(gnutls_x509_crt_set_key_usage(c, GNUTLS_KEY_KEY_CERT_SIGN | GNUTLS_KEY_CRL_SIGN), 0);
		CHECK_EQ(gnutls_x509_crt_sign2(c, c, key, GNUTLS_DIG_SHA256, 0), 0);
		return c;
	}
	CHECK_EQ(gnutls_x509_crt_set_basic_constraints(c, 0, -1), 0);
	CHECK_EQ(gnutls_x509_crt_set_key_usage(c, GNUTLS_KEY_DIGITAL_SIGNATURE), 0);
	CHECK_EQ(gnutls_x509_crt_set_key_purpose_oid(c, purpose, 0), 0);
	CHECK_EQ(gnutls_x509_crt_set_subject_alt_name(c, GNUTLS_SAN_DNSNAME, cn, (unsigned)strlen(cn), GNUTLS_FSAN_SET), 0);
	if (!strcmp(purpose, GNUTLS_KP_TLS_WWW_SERVER)) {
		static const uint8_t lo[4] = { 127, 0, 0, 1 };
		CHECK_EQ(gnutls_x509_crt_set_subject_alt_name(c, GNUTLS_SAN_IPADDRESS, lo, 4, GNUTLS_FSAN_APPEND), 0);
	}
	CHECK_EQ(gnutls_x509_crt_sign2(c, issuer, issuer_key, GNUTLS_DIG_SHA256, 0), 0);
	return c;
}

static inline void tls_pki_make(struct tls_pki *k, const char *ca_name, unsigned serial)
{
	k->ca_key = tls_key();
	k->srv_key = tls_key();
	k->cli_key = tls_key();
	k->ca = tls_cert(k->ca_key, ca_name, NULL, NULL, NULL, serial);
	k->srv = tls_cert(k->srv_key, "backup.test", k->ca, k->ca_key, GNUTLS_KP_TLS_WWW_SERVER, serial + 1);
	k->cli = tls_cert(k->cli_key, "primary.test", k->ca, k->ca_key, GNUTLS_KP_TLS_WWW_CLIENT, serial + 2);
}

static inline void tls_pki_free(struct tls_pki *k)
{
	gnutls_x509_crt_deinit(k->ca);
	gnutls_x509_crt_deinit(k->srv);
	gnutls_x509_crt_deinit(k->cli);
	gnutls_x509_privkey_deinit(k->ca_key);
	gnutls_x509_privkey_deinit(k->srv_key);
	gnutls_x509_privkey_deinit(k->cli_key);
}

static inline void tls_put_crt(const char *dir, const char *name, gnutls_x509_crt_t c)
{
	gnutls_datum_t d;
	CHECK_EQ(gnutls_x509_crt_export2(c, GNUTLS_X509_FMT_PEM, &d), 0);
	tls_write_file(dir, name, d.data, d.size, 0644);
	gnutls_free(d.data);
}

static inline void tls_put_key(const char *dir, const char *name, gnutls_x509_privkey_t k)
{
	gnutls_datum_t d;
	CHECK_EQ(gnutls_x509_privkey_export2(k, GNUTLS_X509_FMT_PEM, &d), 0);
	tls_write_file(dir, name, d.data, d.size, 0600);
	gnutls_free(d.data);
}

/* dir: trust ca's CA, hold certs' server and client certificates and keys */
static inline void tls_put_dir(const char *dir, const struct tls_pki *ca, const struct tls_pki *certs)
{
	CHECK_EQ(mkdir(dir, 0700), 0);
	tls_put_crt(dir, "ca-cert.pem", ca->ca);
	tls_put_crt(dir, "server-cert.pem", certs->srv);
	tls_put_key(dir, "server-key.pem", certs->srv_key);
	tls_put_crt(dir, "client-cert.pem", certs->cli);
	tls_put_key(dir, "client-key.pem", certs->cli_key);
}

static inline void tls_put_psk(const char *path, const char *line, mode_t mode)
{
	const char *slash = strrchr(path, '/');
	char dir[96];
	snprintf(dir, sizeof(dir), "%.*s", (int)(slash - path), path);
	tls_write_file(dir, slash + 1, line, strlen(line), mode);
}

static inline void tls_fixture_make(struct tls_fixture *f)
{
	snprintf(f->root, sizeof(f->root), "/tmp/ftvmm-test-tls.XXXXXX");
	CHECK(mkdtemp(f->root) != NULL);
	snprintf(f->good, sizeof(f->good), "%s/good", f->root);
	snprintf(f->evil, sizeof(f->evil), "%s/evil", f->root);
	snprintf(f->mixed, sizeof(f->mixed), "%s/mixed", f->root);
	struct tls_pki a, b;
	tls_pki_make(&a, "ftvmm test CA A", 1);
	tls_pki_make(&b, "ftvmm test CA B", 11);
	tls_put_dir(f->good, &a, &a);
	tls_put_dir(f->evil, &b, &b);
	tls_put_dir(f->mixed, &a, &b);
	tls_pki_free(&a);
	tls_pki_free(&b);
	static const char key1[] = "3b1e2f6a9c0d4e5f60718293a4b5c6d7e8f90a1b2c3d4e5f6a7b8c9d0e1f2a3b";
	static const char key2[] = "c0ffee00c0ffee00c0ffee00c0ffee00c0ffee00c0ffee00c0ffee00c0ffee00";
	char line[160];
	snprintf(f->psk, sizeof(f->psk), "%s/ft.psk", f->root);
	snprintf(line, sizeof(line), "ftvmm:%s\n", key1);
	tls_put_psk(f->psk, line, 0600);
	snprintf(f->psk_open, sizeof(f->psk_open), "%s/open.psk", f->root);
	tls_put_psk(f->psk_open, line, 0644);
	snprintf(f->psk_other, sizeof(f->psk_other), "%s/other.psk", f->root);
	snprintf(line, sizeof(line), "ftvmm:%s\n", key2);
	tls_put_psk(f->psk_other, line, 0600);
	snprintf(f->psk_ident, sizeof(f->psk_ident), "%s/ident.psk", f->root);
	snprintf(line, sizeof(line), "intruder:%s\n", key1);
	tls_put_psk(f->psk_ident, line, 0400);
	snprintf(f->psk_bad, sizeof(f->psk_bad), "%s/bad.psk", f->root);
	tls_put_psk(f->psk_bad, "ftvmm:not-hex-at-all\n", 0600);
}

static inline void tls_fixture_free(struct tls_fixture *f)
{
	char cmd[160];
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", f->root);
	CHECK_EQ(system(cmd), 0);
}

/* Credentials for role from a --tls-creds DIR (peer may be NULL) or a --tls-psk FILE: must load. */
static inline struct ft_tls_creds *tls_creds(enum ft_tls_role role, const char *dir, const char *peer, const char *psk)
{
	struct ft_tls_opts o = { .x509_dir = dir, .psk_file = psk, .peer = peer };
	struct ft_tls_creds *c;
	char err[512] = "";
	int r = ft_tls_creds_load(&o, role, &c, err, sizeof(err));
	if (r)
		fprintf(stderr, "tls_creds: %s\n", err);
	CHECK_EQ(r, 0);
	return c;
}

/* ---- a relay between two sockets that can flip one byte on its way, in either direction ---------- */

struct relay_dir {
	int from, to;
	uint64_t passed;  /* bytes relayed so far; atomic */
	int64_t flip_at;  /* the byte of the stream to flip (-1: none); atomic */
	pthread_t t;
};

struct relay {
	struct relay_dir d[2]; /* [0]: a -> b, [1]: b -> a */
};

static void *relay_thread(void *arg)
{
	struct relay_dir *d = arg;
	uint8_t buf[65536];
	for (;;) {
		ssize_t n = read(d->from, buf, sizeof(buf));
		if (n <= 0)
			break;
		int64_t at = __atomic_load_n(&d->flip_at, __ATOMIC_ACQUIRE);
		if (at >= 0 && (uint64_t)at >= d->passed && (uint64_t)at < d->passed + (uint64_t)n) {
			buf[(uint64_t)at - d->passed] ^= 0x01;
			__atomic_store_n(&d->flip_at, -1, __ATOMIC_RELEASE);
		}
		__atomic_store_n(&d->passed, d->passed + (uint64_t)n, __ATOMIC_RELEASE);
		for (ssize_t off = 0; off < n;) {
			ssize_t w = send(d->to, buf + off, (size_t)(n - off), MSG_NOSIGNAL);
			if (w <= 0)
				goto out;
			off += w;
		}
	}
out:
	shutdown(d->to, SHUT_WR);
	return NULL;
}

/* Relay between a and b (the relay owns both; relay_stop closes them). */
static inline void relay_start(struct relay *r, int a, int b)
{
	r->d[0] = (struct relay_dir){ .from = a, .to = b, .flip_at = -1 };
	r->d[1] = (struct relay_dir){ .from = b, .to = a, .flip_at = -1 };
	for (int i = 0; i < 2; i++)
		CHECK_EQ(pthread_create(&r->d[i].t, NULL, relay_thread, &r->d[i]), 0);
}

/* Flip the byte `ahead` bytes after what has passed so far in direction dir (call while it is idle). */
static inline void relay_flip(struct relay *r, int dir, uint64_t ahead)
{
	uint64_t passed = __atomic_load_n(&r->d[dir].passed, __ATOMIC_ACQUIRE);
	__atomic_store_n(&r->d[dir].flip_at, (int64_t)(passed + ahead), __ATOMIC_RELEASE);
}

static inline void relay_stop(struct relay *r)
{
	shutdown(r->d[0].from, SHUT_RDWR);
	shutdown(r->d[1].from, SHUT_RDWR);
	for (int i = 0; i < 2; i++)
		pthread_join(r->d[i].t, NULL);
	close(r->d[0].from);
	close(r->d[1].from);
}

/* A connected pair of sockets, one end each for two parties, with a relay between them: *x talks to *y. */
static inline void relayed_pair(struct relay *r, int *x, int *y)
{
	int s1[2], s2[2];
	CHECK_EQ(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, s1), 0);
	CHECK_EQ(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, s2), 0);
	*x = s1[0];
	*y = s2[0];
	relay_start(r, s1[1], s2[1]);
}

#endif

/* tls.c - the FT links' TLS 1.3 glue on GnuTLS: x509 or PSK credentials, a session per connection, record I/O. */
#include "tls.h"
#include "../vmm/util.h"

#include <errno.h>
#include <fcntl.h>
#include <gnutls/gnutls.h>
#include <gnutls/x509.h>
#include <limits.h>
#include <poll.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/uio.h>
#include <unistd.h>

/* TLS 1.3 only: nothing older is needed between two ftvmm processes, so nothing older is allowed. With
 * a PSK, only the (EC)DHE modes: a key that leaks later must not decrypt recorded traffic. AES-GCM first:
 * the epoch stream is bulk data, and with AES-NI AES-128-GCM ran 6.4x faster than what NORMAL's order
 * picked (757.7 against 119.4 MiB/s through ft_send/ft_recv on this project's dev machine); ChaCha20
 * stays for CPUs without AES instructions. */
#define PRIO_CIPHERS ":-CIPHER-ALL:+AES-128-GCM:+AES-256-GCM:+CHACHA20-POLY1305"
#define PRIO_X509 "NORMAL:-VERS-ALL:+VERS-TLS1.3" PRIO_CIPHERS
#define PRIO_PSK "NORMAL:-VERS-ALL:+VERS-TLS1.3:-KX-ALL:+ECDHE-PSK:+DHE-PSK" PRIO_CIPHERS
#define REC_MAX 16384u              /* TLS's largest plaintext record */
#define HANDSHAKE_MSG_MAX (64u << 10) /* a certificate chain fits; an unauthenticated peer gets no more */
#define PSK_MIN 16u                 /* bytes: psktool makes 32 */
#define PSK_MAX 64u

struct ft_tls_creds {
	enum ft_tls_role role;
	bool psk;
	gnutls_certificate_credentials_t x509;
	gnutls_psk_client_credentials_t psk_client;
	gnutls_psk_server_credentials_t psk_server;
	gnutls_priority_t prio;
	char identity[129];
	uint8_t key[PSK_MAX];
	size_t key_len;
	char peer[256]; /* "" when not given */
};

struct ft_tls {
	gnutls_session_t s;
	pthread_mutex_t lock; /* around every GnuTLS call on s (see "sessions" below) */
	int fd;               /* non-blocking from ft_tls_new on */
	bool blocking;        /* the callers' view: wait in poll for the fd, or answer -EAGAIN */
	const struct ft_tls_creds *c;
	char name[256]; /* the peer's certificate name, kept for the session's life as GnuTLS asks */
	char err[256];
};

/* ---- credentials ------------------------------------------------------------------------------- */

static int hexval(char c)
{
	return c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
}

/* The file's first line, refused when group or others may touch it: a key others can read is no key.
 * fstat on the opened file, so the mode checked is the mode of what is read. */
static int read_psk_line(const char *path, char *line, size_t cap, char *err, size_t errlen)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	struct stat st;
	if (fd < 0 || fstat(fd, &st) < 0) {
		int e = errno;
		snprintf(err, errlen, "--tls-psk %s: %s", path, strerror(e));
		if (fd >= 0)
			close(fd);
		return -e;
	}
	if (!S_ISREG(st.st_mode) || (st.st_mode & 077)) {
		snprintf(err, errlen, "--tls-psk %s: %s (mode %04o): the key must be private, mode 0600 or stricter (chmod 600 %s)",
			 path, S_ISREG(st.st_mode) ? "group or others may access it" : "not a regular file",
			 (unsigned)(st.st_mode & 07777), path);
		close(fd);
		return -EPERM;
	}
	ssize_t n = read(fd, line, cap - 1);
	close(fd);
	if (n < 0) {
		snprintf(err, errlen, "--tls-psk %s: %s", path, strerror(errno));
		return -EIO;
	}
	line[n] = '\0';
	line[strcspn(line, "\r\n")] = '\0';
	return 0;
}

/* `identity:hex-key` (psktool's format) into c. */
static int parse_psk(struct ft_tls_creds *c, const char *path, char *line, char *err, size_t errlen)
{
	char *colon = strchr(line, ':');
	size_t idlen = colon ? (size_t)(colon - line) : 0, hexlen = colon ? strlen(colon + 1) : 0;
	bool ok = colon && idlen > 0 && idlen < sizeof(c->identity) && hexlen % 2 == 0 && hexlen / 2 >= PSK_MIN &&
		  hexlen / 2 <= PSK_MAX;
	for (size_t i = 0; ok && i < hexlen / 2; i++) {
		int hi = hexval(colon[1 + 2 * i]), lo = hexval(colon[2 + 2 * i]);
		ok = hi >= 0 && lo >= 0;
		c->key[i] = (uint8_t)(hi << 4 | lo);
	}
	if (!ok) {
		snprintf(err, errlen, "--tls-psk %s: want one line IDENTITY:HEX-KEY with a key of %u to %u bytes (psktool -u NAME -p FILE)",
			 path, PSK_MIN, PSK_MAX);
		return -EINVAL;
	}
	memcpy(c->identity, line, idlen);
	c->identity[idlen] = '\0';
	c->key_len = hexlen / 2;
	return 0;
}

/* The backup's lookup of the identity a client names: ours, or the handshake fails. */
static int psk_lookup(gnutls_session_t s, const char *username, gnutls_datum_t *key)
{
	const struct ft_tls *t = gnutls_session_get_ptr(s);
	if (!t || strcmp(username, t->c->identity) != 0)
		return -1;
	key->data = gnutls_malloc(t->c->key_len);
	if (!key->data)
		return -1;
	memcpy(key->data, t->c->key, t->c->key_len);
	key->size = (unsigned)t->c->key_len;
	return 0;
}

static int psk_load(struct ft_tls_creds *c, const char *path, char *err, size_t errlen)
{
	char line[512];
	int r = read_psk_line(path, line, sizeof(line), err, errlen);
	r = r ? r : parse_psk(c, path, line, err, errlen);
	explicit_bzero(line, sizeof(line));
	if (r)
		return r;
	c->psk = true;
	if (c->role == FT_TLS_SERVER) {
		if (gnutls_psk_allocate_server_credentials(&c->psk_server))
			return -ENOMEM;
		gnutls_psk_set_server_credentials_function(c->psk_server, psk_lookup);
		return 0;
	}
	gnutls_datum_t k = { c->key, (unsigned)c->key_len };
	if (gnutls_psk_allocate_client_credentials(&c->psk_client) ||
	    gnutls_psk_set_client_credentials(c->psk_client, c->identity, &k, GNUTLS_PSK_KEY_RAW)) {
		snprintf(err, errlen, "--tls-psk %s: GnuTLS refused the key", path);
		return -EINVAL;
	}
	return 0;
}

/* DIR/name readable, or one line naming it. */
static int creds_file(const char *dir, const char *name, char *path, size_t cap, char *err, size_t errlen)
{
	if ((size_t)snprintf(path, cap, "%s/%s", dir, name) >= cap) {
		snprintf(err, errlen, "--tls-creds %s: path too long", dir);
		return -ENAMETOOLONG;
	}
	if (access(path, R_OK) < 0) {
		int e = errno;
		snprintf(err, errlen, "--tls-creds %s: %s: %s", dir, name, strerror(e));
		return -e;
	}
	return 0;
}

/* QEMU's layout: the CA both sides trust, and this side's certificate and key. */
static int x509_load(struct ft_tls_creds *c, const char *dir, char *err, size_t errlen)
{
	bool server = c->role == FT_TLS_SERVER;
	const char *cert_name = server ? "server-cert.pem" : "client-cert.pem";
	const char *key_name = server ? "server-key.pem" : "client-key.pem";
	char ca[PATH_MAX], cert[PATH_MAX], key[PATH_MAX];
	int r = creds_file(dir, "ca-cert.pem", ca, sizeof(ca), err, errlen);
	r = r ? r : creds_file(dir, cert_name, cert, sizeof(cert), err, errlen);
	r = r ? r : creds_file(dir, key_name, key, sizeof(key), err, errlen);
	if (r)
		return r;
	if (gnutls_certificate_allocate_credentials(&c->x509))
		return -ENOMEM;
	int n = gnutls_certificate_set_x509_trust_file(c->x509, ca, GNUTLS_X509_FMT_PEM);
	if (n <= 0) {
		snprintf(err, errlen, "--tls-creds %s: ca-cert.pem: no CA certificate in it (%s)", dir,
			 n < 0 ? gnutls_strerror(n) : "empty");
		return -EINVAL;
	}
	n = gnutls_certificate_set_x509_key_file(c->x509, cert, key, GNUTLS_X509_FMT_PEM);
	if (n < 0) {
		snprintf(err, errlen, "--tls-creds %s: %s / %s: %s", dir, cert_name, key_name, gnutls_strerror(n));
		return -EINVAL;
	}
	return 0;
}

int ft_tls_creds_load(const struct ft_tls_opts *o, enum ft_tls_role role, struct ft_tls_creds **out, char *err,
		      size_t errlen)
{
	*out = NULL;
	if (!ft_tls_opts_given(o) || (o->x509_dir && o->psk_file)) {
		snprintf(err, errlen, "give either --tls-creds DIR or --tls-psk FILE");
		return -EINVAL;
	}
	struct ft_tls_creds *c = calloc(1, sizeof(*c));
	if (!c)
		return -ENOMEM;
	c->role = role;
	if (o->peer)
		snprintf(c->peer, sizeof(c->peer), "%s", o->peer);
	int r = o->psk_file ? psk_load(c, o->psk_file, err, errlen) : x509_load(c, o->x509_dir, err, errlen);
	if (!r && gnutls_priority_init(&c->prio, c->psk ? PRIO_PSK : PRIO_X509, NULL) < 0) {
		snprintf(err, errlen, "this GnuTLS does not offer TLS 1.3");
		r = -ENOTSUP;
	}
	if (r) {
		ft_tls_creds_free(c);
		return r;
	}
	*out = c;
	return 0;
}

void ft_tls_creds_free(struct ft_tls_creds *c)
{
	if (!c)
		return;
	if (c->x509)
		gnutls_certificate_free_credentials(c->x509);
	if (c->psk_client)
		gnutls_psk_free_client_credentials(c->psk_client);
	if (c->psk_server)
		gnutls_psk_free_server_credentials(c->psk_server);
	if (c->prio)
		gnutls_priority_deinit(c->prio);
	explicit_bzero(c->key, sizeof(c->key));
	free(c);
}

/* ---- sessions ---------------------------------------------------------------------------------- */

/*
 * One thread may send on a session while another receives (the primary's sender and receiver share
 * the data link), which GnuTLS allows except while a TLS 1.3 key update is processed: GnuTLS starts
 * one by itself after 2^24 records (AES-GCM's limit, some 256 GiB), on the sending thread, and the
 * peer's arrives on the receiving one. So every GnuTLS call on a session holds its lock, and none ever
 * waits inside GnuTLS: the fd is non-blocking, and a caller that wants to wait does so in poll(2) with
 * the lock released (t->blocking; a wait for reading honours the socket's SO_RCVTIMEO).
 */

/* x509: the server asks for the client's certificate and refuses the handshake without a valid one;
 * each side checks the other's chain against the CA, and the name where there is one to check. */
static int x509_session(struct ft_tls *t, const char *host)
{
	const struct ft_tls_creds *c = t->c;
	bool server = c->role == FT_TLS_SERVER;
	if (gnutls_credentials_set(t->s, GNUTLS_CRD_CERTIFICATE, c->x509))
		return -EINVAL;
	if (server) {
		gnutls_certificate_server_set_request(t->s, GNUTLS_CERT_REQUIRE);
		/* no list of our CA's names in the request: a client sends the one certificate it has,
		 * and a stranger learns nothing of ours */
		gnutls_certificate_send_x509_rdn_sequence(t->s, 1);
	}
	const char *name = c->peer[0] ? c->peer : server ? NULL : host;
	if (name)
		snprintf(t->name, sizeof(t->name), "%s", name);
	gnutls_session_set_verify_cert(t->s, name ? t->name : NULL, 0);
	return 0;
}

static int session_setup(struct ft_tls *t, const char *host)
{
	const struct ft_tls_creds *c = t->c;
	bool server = c->role == FT_TLS_SERVER;
	if (gnutls_priority_set(t->s, c->prio) < 0)
		return -EINVAL;
	if (!c->psk)
		return x509_session(t, host);
	void *cred = server ? (void *)c->psk_server : (void *)c->psk_client;
	return gnutls_credentials_set(t->s, GNUTLS_CRD_PSK, cred) ? -EINVAL : 0;
}

int ft_tls_new(const struct ft_tls_creds *c, int fd, const char *host, struct ft_tls **out)
{
	*out = NULL;
	int fl = fcntl(fd, F_GETFL);
	if (fl < 0 || fcntl(fd, F_SETFL, fl | O_NONBLOCK) < 0)
		return -errno;
	struct ft_tls *t = calloc(1, sizeof(*t));
	if (!t)
		return -ENOMEM;
	t->c = c;
	t->fd = fd;
	t->blocking = true;
	pthread_mutex_init(&t->lock, NULL);
	/* no tickets: nothing resumes, and the server's tickets would be records nobody reads */
	unsigned flags = (c->role == FT_TLS_SERVER ? GNUTLS_SERVER : GNUTLS_CLIENT) | GNUTLS_NO_SIGNAL | GNUTLS_NO_TICKETS;
	if (gnutls_init(&t->s, flags) < 0) {
		pthread_mutex_destroy(&t->lock);
		free(t);
		return -ENOMEM;
	}
	gnutls_session_set_ptr(t->s, t);
	int r = session_setup(t, host);
	if (r) {
		ft_tls_free(t);
		return r;
	}
	gnutls_handshake_set_max_packet_length(t->s, HANDSHAKE_MSG_MAX);
	gnutls_handshake_set_timeout(t->s, GNUTLS_INDEFINITE_TIMEOUT); /* the callers keep the deadlines */
	gnutls_transport_set_int(t->s, fd);
	*out = t;
	return 0;
}

void ft_tls_free(struct ft_tls *t)
{
	if (!t)
		return;
	gnutls_deinit(t->s);
	pthread_mutex_destroy(&t->lock);
	free(t);
}

void ft_tls_set_blocking(struct ft_tls *t, bool blocking)
{
	t->blocking = blocking;
}

const char *ft_tls_error(const struct ft_tls *t)
{
	return t && t->err[0] ? t->err : "no TLS error";
}

/* Wait (lock not held) until the fd is ready for what GnuTLS wants, at most timeout_ms (-1: no limit).
 * 0, -ETIMEDOUT, or -errno. */
static int wait_fd(const struct ft_tls *t, short events, int timeout_ms)
{
	struct pollfd pf = { .fd = t->fd, .events = events };
	int n;
	while ((n = poll(&pf, 1, timeout_ms)) < 0 && errno == EINTR)
		;
	return n < 0 ? -errno : n == 0 ? -ETIMEDOUT : 0;
}

/* The socket's SO_RCVTIMEO in ms (-1: none), as a blocking read on it would wait. */
static int rcvtimeo_ms(int fd)
{
	struct timeval tv;
	socklen_t len = sizeof(tv);
	if (getsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, &len) < 0 || (!tv.tv_sec && !tv.tv_usec))
		return -1;
	return (int)MIN((uint64_t)tv.tv_sec * 1000 + (uint64_t)(tv.tv_usec + 999) / 1000, (uint64_t)INT32_MAX);
}

/* Why a handshake failed, in t->err; the errno the callers tell apart. Lock held. */
static int handshake_failed(struct ft_tls *t, int r)
{
	gnutls_datum_t out = { NULL, 0 };
	unsigned st = gnutls_session_get_verify_cert_status(t->s);
	if (r == GNUTLS_E_CERTIFICATE_VERIFICATION_ERROR && st &&
	    gnutls_certificate_verification_status_print(st, GNUTLS_CRT_X509, &out, 0) == 0) {
		snprintf(t->err, sizeof(t->err), "peer's certificate refused: %s", (const char *)out.data);
		gnutls_free(out.data);
		for (size_t n = strlen(t->err); n && t->err[n - 1] == ' '; n--)
			t->err[n - 1] = '\0'; /* GnuTLS ends each reason with a space */
	} else if (r == GNUTLS_E_UNEXPECTED_PACKET || r == GNUTLS_E_UNEXPECTED_PACKET_LENGTH ||
		   r == GNUTLS_E_UNSUPPORTED_VERSION_PACKET) {
		snprintf(t->err, sizeof(t->err), "the peer does not speak TLS 1.3 (%s): without --tls-creds or --tls-psk?",
			 gnutls_strerror(r));
	} else if (r == GNUTLS_E_FATAL_ALERT_RECEIVED) {
		snprintf(t->err, sizeof(t->err), "the peer refused us: %s", gnutls_alert_get_name(gnutls_alert_get(t->s)));
	} else if (t->c->psk && r != GNUTLS_E_PREMATURE_TERMINATION && r != GNUTLS_E_PULL_ERROR &&
		   r != GNUTLS_E_PUSH_ERROR && r != GNUTLS_E_TIMEDOUT) {
		/* a wrong key shows as a binder or parameter that does not check out: say what it means */
		snprintf(t->err, sizeof(t->err), "pre-shared key refused: the peer's identity or key is not ours (%s)",
			 gnutls_strerror(r));
	} else {
		snprintf(t->err, sizeof(t->err), "%s", gnutls_strerror(r));
	}
	if (r != GNUTLS_E_FATAL_ALERT_RECEIVED && r != GNUTLS_E_PREMATURE_TERMINATION && r != GNUTLS_E_PUSH_ERROR)
		(void)gnutls_alert_send_appropriate(t->s, r); /* tell the peer why, if it listens */
	switch (r) {
	case GNUTLS_E_TIMEDOUT: return -ETIMEDOUT;
	case GNUTLS_E_PREMATURE_TERMINATION:
	case GNUTLS_E_PULL_ERROR:
	case GNUTLS_E_PUSH_ERROR: return -ECONNRESET;
	case GNUTLS_E_UNEXPECTED_PACKET:
	case GNUTLS_E_UNEXPECTED_PACKET_LENGTH:
	case GNUTLS_E_UNSUPPORTED_VERSION_PACKET: return -EPROTO; /* not TLS at all, or not 1.3 */
	default: return -EACCES;
	}
}

int ft_tls_handshake_step(struct ft_tls *t)
{
	pthread_mutex_lock(&t->lock);
	int r = gnutls_handshake(t->s);
	if (r == GNUTLS_E_SUCCESS)
		r = 1;
	else if (r == GNUTLS_E_AGAIN || r == GNUTLS_E_INTERRUPTED || !gnutls_error_is_fatal(r))
		r = 0;
	else
		r = handshake_failed(t, r);
	pthread_mutex_unlock(&t->lock);
	return r;
}

bool ft_tls_wants_write(struct ft_tls *t)
{
	pthread_mutex_lock(&t->lock);
	bool w = gnutls_record_get_direction(t->s) == 1;
	pthread_mutex_unlock(&t->lock);
	return w;
}

int ft_tls_handshake(struct ft_tls *t, unsigned timeout_ms)
{
	uint64_t end = now_ns() + (uint64_t)(timeout_ms ? timeout_ms : 10000) * 1000000ull;
	int r;
	while ((r = ft_tls_handshake_step(t)) == 0) {
		uint64_t now = now_ns();
		int w = now < end ? wait_fd(t, ft_tls_wants_write(t) ? POLLOUT : POLLIN, (int)((end - now + 999999) / 1000000))
				  : -ETIMEDOUT;
		if (w) {
			snprintf(t->err, sizeof(t->err), "%s", w == -ETIMEDOUT ? "no answer in time" : strerror(-w));
			return w;
		}
	}
	return r < 0 ? r : 0;
}

/* ---- records ----------------------------------------------------------------------------------- */

/* A failed record call's errno, and why in t->err. Lock held. */
static int record_error(struct ft_tls *t, ssize_t n, int e)
{
	if (n == GNUTLS_E_FATAL_ALERT_RECEIVED)
		snprintf(t->err, sizeof(t->err), "the peer refused us: %s", gnutls_alert_get_name(gnutls_alert_get(t->s)));
	else
		snprintf(t->err, sizeof(t->err), "%s", gnutls_strerror((int)n));
	switch (n) {
	case GNUTLS_E_FATAL_ALERT_RECEIVED: return -EACCES;
	case GNUTLS_E_DECRYPTION_FAILED: return -EBADMSG; /* the record's MAC: altered on the way */
	case GNUTLS_E_PREMATURE_TERMINATION: return -ECONNRESET;
	case GNUTLS_E_PULL_ERROR:
	case GNUTLS_E_PUSH_ERROR: return e ? -e : -ECONNRESET;
	default: return -EPROTO;
	}
}

/* One call of GnuTLS's record send, under the lock: bytes taken, -EAGAIN, or -errno. */
static ssize_t send_once(struct ft_tls *t, const uint8_t *p, size_t len)
{
	pthread_mutex_lock(&t->lock);
	errno = 0;
	ssize_t n = gnutls_record_send(t->s, p, len);
	if (n == GNUTLS_E_AGAIN || n == GNUTLS_E_INTERRUPTED)
		n = -EAGAIN; /* GnuTLS keeps the record: the next call must pass the same bytes */
	else if (n < 0)
		n = record_error(t, n, errno);
	pthread_mutex_unlock(&t->lock);
	return n;
}

static int send_all(struct ft_tls *t, const uint8_t *p, size_t len)
{
	while (len) {
		size_t chunk = MIN(len, (size_t)REC_MAX);
		ssize_t n = send_once(t, p, chunk);
		if (n == -EAGAIN) {
			int w = t->blocking ? wait_fd(t, POLLOUT, -1) : -EAGAIN;
			if (w)
				return w;
			continue;
		}
		if (n < 0)
			return (int)n;
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

/* Small pieces (a frame header, a record's header) go out together in one record; a large piece goes
 * straight from the caller's memory once the record it started is full. */
int ft_tls_sendv(struct ft_tls *t, const struct iovec *iov, int iovcnt)
{
	uint8_t buf[REC_MAX];
	size_t have = 0;
	for (int i = 0; i < iovcnt; i++) {
		const uint8_t *p = iov[i].iov_base;
		size_t len = iov[i].iov_len;
		while (len) {
			size_t take = have || len < REC_MAX ? MIN(REC_MAX - have, len) : 0;
			int r = 0;
			if (take) {
				memcpy(buf + have, p, take);
				have += take;
			} else {
				take = ALIGN_DOWN(len, REC_MAX);
				r = send_all(t, p, take);
			}
			p += take;
			len -= take;
			if (!r && have == REC_MAX) {
				r = send_all(t, buf, have);
				have = 0;
			}
			if (r)
				return r;
		}
	}
	return have ? send_all(t, buf, have) : 0;
}

ssize_t ft_tls_recv(struct ft_tls *t, void *p, size_t len)
{
	for (;;) {
		pthread_mutex_lock(&t->lock);
		errno = 0;
		ssize_t n = gnutls_record_recv(t->s, p, len);
		bool again = n == GNUTLS_E_AGAIN || n == GNUTLS_E_INTERRUPTED;
		if (n < 0 && !again)
			n = record_error(t, n, errno);
		pthread_mutex_unlock(&t->lock);
		if (!again)
			return n;
		int w = t->blocking ? wait_fd(t, POLLIN, rcvtimeo_ms(t->fd)) : -EAGAIN;
		if (w)
			return w == -ETIMEDOUT ? -EAGAIN : w; /* what a blocking read past SO_RCVTIMEO says */
	}
}

size_t ft_tls_pending(struct ft_tls *t)
{
	pthread_mutex_lock(&t->lock);
	size_t n = gnutls_record_check_pending(t->s);
	pthread_mutex_unlock(&t->lock);
	return n;
}

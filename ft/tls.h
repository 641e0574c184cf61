/* tls.h - TLS 1.3 on the FT links (GnuTLS): credentials, a session on a connected fd, its record I/O. */
#ifndef FTVMM_TLS_H
#define FTVMM_TLS_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

/*
 * Both FT connections (data and heartbeat) run TLS 1.3 when the process was given credentials, and
 * both ends authenticate: x509 (a directory in QEMU's layout: ca-cert.pem, server-cert.pem and
 * server-key.pem on the backup, client-cert.pem and client-key.pem on the primary; each side checks
 * the other's certificate against ca-cert.pem, the primary also the backup's name) or one pre-shared
 * key (psktool's `identity:hex-key` line). The primary is the TLS client, the backup the server.
 */

enum ft_tls_role { FT_TLS_CLIENT, FT_TLS_SERVER };

/* What the command line gave: at most one of x509_dir and psk_file; peer is the name the other side's
 * certificate must carry (the client: default the host it connects to; the server: unchecked if NULL). */
struct ft_tls_opts {
	const char *x509_dir;
	const char *psk_file;
	const char *peer;
};

struct ft_tls_creds;
struct ft_tls;

static inline bool ft_tls_opts_given(const struct ft_tls_opts *o)
{
	return o && (o->x509_dir || o->psk_file);
}

/* Load the credentials for role: 0, or -errno with one line in err (a missing or unreadable file, a
 * PSK file that group or others may read, a malformed key...). */
int ft_tls_creds_load(const struct ft_tls_opts *o, enum ft_tls_role role, struct ft_tls_creds **out, char *err,
		      size_t errlen);
void ft_tls_creds_free(struct ft_tls_creds *c);

/* A session on the connected socket fd, not yet shaken hands; fd becomes non-blocking for good (the
 * session waits in poll itself: ft_tls_set_blocking). host: what a client connects to, the name the
 * server's certificate must carry unless the credentials name a peer. 0 or -errno. One thread may
 * send while another receives. */
int ft_tls_new(const struct ft_tls_creds *c, int fd, const char *host, struct ft_tls **out);
void ft_tls_free(struct ft_tls *t);
/* Whether ft_tls_sendv and ft_tls_recv wait for the fd (the default; a read no longer than the
 * socket's SO_RCVTIMEO) or answer -EAGAIN at once (the backup's loop over peers it is pairing). */
void ft_tls_set_blocking(struct ft_tls *t, bool blocking);
/* One step of the handshake, never waiting: 1 done, 0 call again once the fd is ready (for writing if
 * ft_tls_wants_write), or -errno (ft_tls_error says why; the peer was sent an alert). */
int ft_tls_handshake_step(struct ft_tls *t);
bool ft_tls_wants_write(struct ft_tls *t);
/* The whole handshake, at most timeout_ms. 0 or -errno (ft_tls_error says why). */
int ft_tls_handshake(struct ft_tls *t, unsigned timeout_ms);
/* The last failure of this session, one line. */
const char *ft_tls_error(const struct ft_tls *t);

/* Records: send all of iov (coalesced into full records), 0 or -errno. */
struct iovec;
int ft_tls_sendv(struct ft_tls *t, const struct iovec *iov, int iovcnt);
/* Up to len bytes: > 0, 0 at the end of the stream, or -errno: -EAGAIN (nothing yet, not blocking, or
 * SO_RCVTIMEO ran out), -EBADMSG (a record that fails its MAC: altered on the way), -ECONNRESET
 * (the connection ended without TLS's close), -EPROTO (anything else the peer got wrong). */
ssize_t ft_tls_recv(struct ft_tls *t, void *p, size_t len);
/* Decrypted bytes already buffered: poll(2) on the fd does not see them. */
size_t ft_tls_pending(struct ft_tls *t);

#endif

/* backup_pair.c - pairing the backup with its primary: hellos on the listening socket, the shape check, HELLO_OK. */
#include "backup_int.h"
#include "../vmm/fdt_prop.h"
#include "../vmm/util.h"
#include "../vmm/vm.h"
#include "events.h"
#include "fence.h"
#include "proto.h"
#include "tls.h"

#include <errno.h>
#include <libfdt.h>
#include <netdb.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

/*
 * backup_accept, called by backup_mirror (backup.c) before anything else: wait_hello takes
 * connections and their hellos (any number of strangers may connect; each gets a deadline and a few
 * KiB), pair matches a HELLO with the HB_HELLO of its session, greet_primary checks the shape
 * (backup_check_shape), maps guest memory and answers.
 */

/* Both sides use the arbiter or neither does: a backup that took over on silence alone beside a primary that
 * claims (or the reverse) could run a second copy. The primary pairs under a generation of the same VM name. */
static int check_generation(struct backup *b, const void *fdt, char *why, size_t wl)
{
	uint64_t gen = 0;
	int nl = 0, gl = 0;
	/* optional: asked for only when there (the property readers say on stderr what they miss) */
	bool has = fdt_getprop(fdt, 0, "generation", &gl) != NULL;
	if (has && (gl != 8 || fdtp_u64(fdt, 0, "generation", &gen))) {
		snprintf(why, wl, "malformed generation in the handshake");
		return -EINVAL;
	}
	const char *name = fdt_getprop(fdt, 0, "vm-name", &nl);
	if (!fence_on(b->fence)) {
		if (has) {
			snprintf(why, wl, "the primary decides takeovers with an arbiter; this backup was started without "
				 "--arbiter");
			return -EINVAL;
		}
		return 0;
	}
	if (!has || gen == 0) {
		snprintf(why, wl, "this backup decides takeovers with an arbiter: the primary needs --arbiter and --name %s",
			 b->fence->name);
		return -EINVAL;
	}
	if (!name || nl < 1 || name[nl - 1] || strcmp(name, b->fence->name) != 0) {
		snprintf(why, wl, "the primary's --name differs from this backup's (%s)", b->fence->name);
		return -EINVAL;
	}
	b->gen = gen;
	return 0;
}

/* How the primary's epochs carry their pages: one that names a codec (property "compress") packs them
 * (zero pages as a flag, the rest in that codec); one that names none is an older ftvmm whose pages travel
 * whole. A codec this build does not know is refused with one line. */
static int check_codec(struct backup *b, const void *fdt, char *why, size_t wl)
{
	int len = 0;
	const char *name = fdt_getprop(fdt, 0, "compress", &len);
	b->packed = name != NULL;
	b->codec = FT_CODEC_NONE;
	if (!name)
		return 0;
	/* the peer's bytes: quoted only when they are a short string of printable characters */
	bool printable = len >= 2 && len <= 32 && name[len - 1] == '\0' && strlen(name) == (size_t)len - 1;
	for (int i = 0; printable && i < len - 1; i++)
		printable = name[i] > ' ' && name[i] < 0x7f;
	if (!printable) {
		snprintf(why, wl, "malformed compress codec in the handshake");
		return -EINVAL;
	}
	if (ft_codec_parse(name, &b->codec)) {
		snprintf(why, wl, "the primary compresses its epochs with '%s', which this backup does not know (it knows "
			 "%s)", name, FT_CODEC_NAMES);
		return -EINVAL;
	}
	return 0;
}

/* Page deltas (property "delta-cache", the primary's cache in bytes): only with packed epochs; the size,
 * whole pages and at most the guest's RAM, is kept for a `protect` after a takeover (so it bounds what a
 * peer can make this host allocate later). */
static int check_delta(struct backup *b, const void *fdt, uint64_t mem, char *why, size_t wl)
{
	uint64_t bytes;
	b->delta = false;
	b->delta_cache = 0;
	if (!fdt_getprop(fdt, 0, "delta-cache", NULL))
		return 0;
	if (!b->packed || fdtp_u64(fdt, 0, "delta-cache", &bytes) || bytes < PAGE_SIZE || bytes % PAGE_SIZE ||
	    bytes > mem) {
		snprintf(why, wl, "malformed delta-cache in the handshake");
		return -EINVAL;
	}
	b->delta = true;
	b->delta_cache = bytes;
	return 0;
}

/* Compare the primary's shape with what this backup was given; one line on mismatch. */
int backup_check_shape(struct backup *b, const void *fdt, size_t len, char *why, size_t wl)
{
	uint64_t mem;
	uint32_t ncpus, ndisks, nnics;
	if (!fdtp_whole(fdt, len) || fdtp_u64(fdt, 0, "mem-size", &mem) ||
	    fdtp_u32(fdt, 0, "ncpus", &ncpus) || fdtp_u32(fdt, 0, "ndisks", &ndisks) ||
	    fdtp_u32(fdt, 0, "nnics", &nnics) || ndisks > MACHINE_MAX_DISKS || nnics > MACHINE_MAX_NICS ||
	    mem == 0 || mem % PAGE_SIZE || mem > VM_MAX_MEM || ncpus == 0) {
		snprintf(why, wl, "malformed VM shape in the handshake");
		return -EINVAL;
	}
	if (ndisks != b->machine.ndisks) {
		snprintf(why, wl, "primary has %u disks, backup was given %u --disk", ndisks, b->machine.ndisks);
		return -EINVAL;
	}
	if (nnics != b->machine.nnics) {
		snprintf(why, wl, "primary has %u NICs, backup was given %u --net", nnics, b->machine.nnics);
		return -EINVAL;
	}
	uint64_t sizes[MACHINE_MAX_DISKS];
	if (ndisks && fdtp_copy(fdt, 0, "disk-sizes", sizes, ndisks * sizeof(uint64_t))) {
		snprintf(why, wl, "malformed disk sizes in the handshake");
		return -EINVAL;
	}
	for (unsigned i = 0; i < ndisks; i++)
		if (sizes[i] != b->disk_sizes[i]) {
			snprintf(why, wl, "disk %u: primary's is %llu bytes, backup's %s is %llu", i,
				 (unsigned long long)sizes[i], b->machine.disks[i].path, (unsigned long long)b->disk_sizes[i]);
			return -EINVAL;
		}
	uint8_t macs[MACHINE_MAX_NICS][6];
	if (nnics && fdtp_copy(fdt, 0, "macs", macs, nnics * 6)) {
		snprintf(why, wl, "malformed MACs in the handshake");
		return -EINVAL;
	}
	for (unsigned i = 0; i < nnics; i++) { /* the guest keeps its MAC across the takeover */
		memcpy(b->machine.nics[i].mac, macs[i], 6);
		b->machine.nics[i].has_mac = true;
	}
	if (check_generation(b, fdt, why, wl) || check_codec(b, fdt, why, wl) || check_delta(b, fdt, mem, why, wl))
		return -EINVAL;
	b->machine.mem = mem;
	b->machine.cpus = ncpus;
	/* after a takeover, `protect` keeps the protection this guest had: the primary's epoch, our timeout */
	uint32_t epoch_ms;
	if (!fdtp_u32(fdt, 0, "epoch-ms", &epoch_ms) && epoch_ms >= 5 && epoch_ms <= 1000)
		b->epoch_ms = epoch_ms;
	return 0;
}

/* ---- pairing ---------------------------------------------------------------------------- */

/* Before the handshake anyone may connect. Every connection gets a few KiB and a deadline to say who
 * it is, all of them at once (poll), so a silent, slow or foreign peer is dropped and never holds up
 * the primary, whose hellos arrive within a round trip of its connects. With credentials the TLS
 * handshake comes first, inside the same deadline: a peer that cannot authenticate is dropped before
 * one byte of a frame is read from it. */
enum { PENDING_MAX = 8 };

struct pending {
	struct ft_link link; /* fd -1: a free slot */
	bool shaking;        /* its TLS handshake is under way: no frame is read before it succeeds */
	uint64_t deadline_ns;
	size_t got; /* bytes of buf filled: the frame header, then its payload */
	uint8_t buf[sizeof(struct ft_frame) + FT_MAX_HELLO_FRAME];
};

/* A peer that said HELLO (with its shape) or HB_HELLO. */
struct hello {
	struct ft_link link;
	uint16_t type;
	uint64_t session;
	void *shape;
	size_t len;
};

/* How long a new connection has to identify itself: the heartbeat timeout, but at least a second
 * so that a primary behind a slow link with a short --ft-timeout can still pair. */
static uint64_t hello_timeout_ns(const struct backup *b)
{
	return MAX(b->timeout_ms, 1000u) * 1000000ull;
}

static const char *hello_error(int r)
{
	switch (r) {
	case -EPROTO: return "does not speak the ftvmm protocol";
	case -EPROTONOSUPPORT: return "speaks another ftvmm protocol version";
	case -ETIMEDOUT: return "sent no handshake in time";
	case -EMSGSIZE: return "sent an oversized handshake";
	case -EBADMSG: return "sent a corrupt handshake";
	case -ENOMSG: return "sent something other than a handshake";
	case -EPROTOTYPE: return "speaks TLS: give this backup the --tls-creds or --tls-psk of its primary";
	default: return "sent no handshake";
	}
}

/* "ADDR:PORT" ("[ADDR]:PORT" for IPv6) of the peer of a connected socket, for status and events. */
static void peer_name(int fd, char *buf, size_t len)
{
	struct sockaddr_storage ss = { 0 };
	socklen_t sl = sizeof(ss);
	char host[NI_MAXHOST] = "?", port[NI_MAXSERV] = "?";
	if (getpeername(fd, (struct sockaddr *)&ss, &sl) == 0 &&
	    getnameinfo((struct sockaddr *)&ss, sl, host, sizeof(host), port, sizeof(port), NI_NUMERICHOST | NI_NUMERICSERV))
		snprintf(host, sizeof(host), "?");
	snprintf(buf, len, ss.ss_family == AF_INET6 ? "[%s]:%s" : "%s:%s", host, port);
}

/* The link_refused event: who was dropped while pairing, at which step (tls, hello, shape), and why. */
static void say_refused(int fd, const char *stage, const char *reason)
{
	char peer[64];
	peer_name(fd, peer, sizeof(peer));
	ft_event_emit("link_refused", "\"role\":\"backup\",\"peer\":%s,\"stage\":\"%s\",\"reason\":%s",
		      FT_JSON_STR(peer), stage, FT_JSON_STR(reason));
}

static void pending_close(struct pending *p, int why)
{
	char reason[256];
	if (p->shaking && why == -ETIMEDOUT)
		snprintf(reason, sizeof(reason), "did not finish its TLS handshake in time");
	else if (p->shaking)
		snprintf(reason, sizeof(reason), "failed the TLS handshake: %s", ft_tls_error(p->link.tls));
	else
		snprintf(reason, sizeof(reason), "%s", hello_error(why));
	warnx("backup: a peer connected but %s", reason);
	say_refused(p->link.fd, p->shaking ? "tls" : "hello", reason);
	if (why == -EPROTONOSUPPORT) { /* an ftvmm of another version: tell it why */
		const char *m = "protocol version mismatch";
		ft_send_buf(&p->link, FT_HELLO_ERR, 0, m, strlen(m));
	}
	ft_link_close(&p->link);
	p->shaking = false;
}

static void drop_hello(struct hello *h)
{
	ft_link_close(&h->link);
	free(h->shape);
	*h = (struct hello){ .link.fd = -1 };
}

/* A new connection into a free slot; with all taken, the one nearest its deadline makes room. With
 * credentials its TLS session starts here (the server's side: nothing is sent before the peer's hello). */
static void pending_add(struct pending *pend, int fd, uint64_t deadline, const struct ft_tls_creds *tls)
{
	struct ft_tls *session = NULL;
	if (tls && ft_tls_new(tls, fd, NULL, &session)) {
		warnx("backup: cannot start a TLS session for a peer");
		close(fd);
		return;
	}
	if (session)
		ft_tls_set_blocking(session, false);
	struct pending *slot = &pend[0];
	for (int i = 0; i < PENDING_MAX; i++) {
		if (pend[i].link.fd < 0) {
			slot = &pend[i];
			break;
		}
		if (pend[i].deadline_ns < slot->deadline_ns)
			slot = &pend[i];
	}
	if (slot->link.fd >= 0)
		pending_close(slot, -ETIMEDOUT);
	slot->link = (struct ft_link){ .fd = fd, .tls = session };
	slot->shaking = session != NULL;
	slot->deadline_ns = deadline;
	slot->got = 0;
}

/* The buffer holds a whole frame: a checksummed HELLO or HB_HELLO moves to *h (1), else an error. */
static int hello_done(struct pending *p, struct hello *h)
{
	struct ft_frame f;
	memcpy(&f, p->buf, sizeof(f));
	const uint8_t *pl = p->buf + sizeof(f);
	if (ft_payload_hash(f.type, f.seq, pl, f.len) != f.checksum)
		return -EBADMSG;
	if (f.type != FT_HELLO && f.type != FT_HB_HELLO)
		return -ENOMSG;
	void *shape = malloc(f.len ? f.len : 1); /* at most FT_MAX_HELLO_FRAME */
	if (!shape)
		return -ENOMEM;
	memcpy(shape, pl, f.len);
	*h = (struct hello){ .link = p->link, .type = f.type, .session = f.seq, .shape = shape, .len = f.len };
	p->link = (struct ft_link){ .fd = -1 };
	return 1;
}

/* Take what the peer has sent so far without blocking, until the socket (and the TLS session) has no
 * more: 1 a whole hello (in *h), 0 more to come, or the error to drop it for. The handshake must
 * succeed first; the header is checked, its length capped, before the payload is read. */
static int pending_read(struct pending *p, struct hello *h)
{
	if (p->shaking) {
		int r = ft_tls_handshake_step(p->link.tls);
		if (r <= 0)
			return r;
		p->shaking = false; /* authenticated: its first frame may already be buffered */
	}
	const size_t hs = sizeof(struct ft_frame);
	for (;;) {
		struct ft_frame f;
		memcpy(&f, p->buf, hs);
		size_t want = p->got < hs ? hs : hs + f.len; /* f.len was capped when the header came in */
		ssize_t n = ft_link_read(&p->link, p->buf + p->got, want - p->got);
		if (n == 0)
			return -ECONNRESET;
		if (n < 0)
			return n == -EAGAIN || n == -EWOULDBLOCK || n == -EINTR ? 0 : (int)n;
		p->got += (size_t)n;
		if (p->got < want)
			continue;
		if (want == hs) {
			memcpy(&f, p->buf, hs);
			int r = ft_frame_check(&f, FT_MAX_HELLO_FRAME);
			if (r == -EPROTO && p->buf[0] == 0x16 && p->buf[1] == 0x03)
				return -EPROTOTYPE; /* a TLS handshake record: a primary with credentials */
			if (r)
				return r;
			if (f.len)
				continue; /* its payload comes next */
		}
		return hello_done(p, h);
	}
}

/* poll entries for the pending connections, and the wait until the first deadline (ms, -1: none).
 * Polling the fd is enough even with TLS: pending_read reads until the socket and the session both
 * have nothing more (-EAGAIN), so no decrypted byte waits in a session while its peer waits here. */
static int pending_poll(const struct pending *pend, struct pollfd *pfd, uint64_t now)
{
	uint64_t first = UINT64_MAX;
	for (int i = 0; i < PENDING_MAX; i++) {
		const struct pending *p = &pend[i];
		short ev = p->shaking && ft_tls_wants_write(p->link.tls) ? POLLOUT : POLLIN;
		pfd[i] = (struct pollfd){ .fd = p->link.fd, .events = ev }; /* poll skips fd -1 */
		if (p->link.fd >= 0)
			first = MIN(first, p->deadline_ns);
	}
	if (first == UINT64_MAX)
		return -1;
	return first <= now ? 0 : (int)MIN((first - now + 999999) / 1000000, (uint64_t)INT32_MAX);
}

static void pending_expire(struct pending *pend, uint64_t now)
{
	for (int i = 0; i < PENDING_MAX; i++)
		if (pend[i].link.fd >= 0 && now >= pend[i].deadline_ns)
			pending_close(&pend[i], -ETIMEDOUT);
}

/* accept(2) errors that concern one client (it reset, the network hiccuped), not the listener */
static bool accept_transient(int e)
{
	return e == EINTR || e == EAGAIN || e == ECONNABORTED || e == EPROTO || e == EPERM || e == ENETDOWN ||
	       e == ENOPROTOOPT || e == EHOSTDOWN || e == ENONET || e == EHOSTUNREACH || e == ENETUNREACH;
}

/* Accept and listen to connections until one completes a hello: 0 with *h, or -errno when the
 * listening socket fails. */
static int wait_hello(struct backup *b, int lfd, struct pending *pend, struct hello *h)
{
	for (;;) {
		struct pollfd pfd[PENDING_MAX + 1];
		int timeout = pending_poll(pend, pfd + 1, now_ns());
		pfd[0] = (struct pollfd){ .fd = lfd, .events = POLLIN };
		if (poll(pfd, PENDING_MAX + 1, timeout) < 0 && errno != EINTR)
			return -errno;
		pending_expire(pend, now_ns());
		for (int i = 0; i < PENDING_MAX; i++) {
			if (pend[i].link.fd < 0 || !pfd[i + 1].revents)
				continue;
			int r = pending_read(&pend[i], h);
			if (r == 1)
				return 0;
			if (r < 0)
				pending_close(&pend[i], r);
		}
		if (!(pfd[0].revents & POLLIN))
			continue;
		int fd = ft_accept_tuned(lfd);
		if (fd >= 0) /* pending peers never block the loop; the paired links wait again (backup_accept) */
			ft_link_set_blocking(FT_PLAIN(fd), false);
		if (fd >= 0)
			pending_add(pend, fd, now_ns() + hello_timeout_ns(b), b->tls);
		else if (!accept_transient(errno))
			return -errno;
	}
}

/* Hold the new hello h with what is held. The newest HELLO wins (an older one is an attempt that
 * gave up); a heartbeat link must carry the held HELLO's session. True once both are held. */
static bool pair(struct hello *data, struct hello *hb, struct hello *h)
{
	if (h->type == FT_HELLO) {
		drop_hello(data);
		*data = *h;
		if (hb->link.fd >= 0 && hb->session != data->session)
			drop_hello(hb);
	} else if (data->link.fd < 0 || h->session == data->session) {
		drop_hello(hb);
		*hb = *h;
	} else {
		drop_hello(h);
	}
	return data->link.fd >= 0 && hb->link.fd >= 0;
}

/* Paired: check the shape, map guest memory, answer HELLO_OK (or HELLO_ERR with the reason). */
static int greet_primary(struct backup *b, const void *shape, size_t len)
{
	char why[256];
	if (backup_check_shape(b, shape, len, why, sizeof(why))) {
		ft_send_buf(&b->data, FT_HELLO_ERR, 0, why, strlen(why));
		warnx("backup: refusing the primary: %s", why);
		say_refused(b->data.fd, "shape", why);
		return -EINVAL;
	}
	int r = gmem_init(&b->mem, b->machine.mem);
	if (r) {
		snprintf(why, sizeof(why), "cannot map %llu MiB of guest memory", (unsigned long long)(b->machine.mem >> 20));
		ft_send_buf(&b->data, FT_HELLO_ERR, 0, why, strlen(why));
		warnx("backup: %s", why);
		return r;
	}
	/* with an arbiter, HELLO_OK says so: a primary that claims refuses a backup that would not; to a primary
	 * that named a codec it names it back (a primary that hears none takes it for an older backup: whole
	 * pages, or refused when it compresses) */
	char ok[96] = "";
	if (fence_on(b->fence))
		snprintf(ok, sizeof(ok), "arbiter %llu", (unsigned long long)b->gen);
	if (b->packed)
		snprintf(ok + strlen(ok), sizeof(ok) - strlen(ok), "%scodec %s%s", ok[0] ? " " : "", ft_codec_name(b->codec),
			 b->delta ? " delta" : "");
	return ft_send_buf(&b->data, FT_HELLO_OK, 0, ok, strlen(ok));
}


int backup_accept(struct backup *b, int lfd)
{
	b->data = b->hb = (struct ft_link){ .fd = -1 };
	struct pending *pend = calloc(PENDING_MAX, sizeof(*pend));
	if (!pend)
		return -ENOMEM;
	for (int i = 0; i < PENDING_MAX; i++)
		pend[i].link.fd = -1;
	struct hello data = { .link.fd = -1 }, hb = { .link.fd = -1 }, h;
	int r;
	do
		r = wait_hello(b, lfd, pend, &h);
	while (!r && !pair(&data, &hb, &h));
	for (int i = 0; i < PENDING_MAX; i++)
		ft_link_close(&pend[i].link); /* whoever else was still introducing itself */
	free(pend);
	if (r) {
		drop_hello(&data);
		drop_hello(&hb);
		return r;
	}
	free(hb.shape);
	pthread_mutex_lock(&b->lock);
	b->data = data.link;
	b->hb = hb.link;
	peer_name(b->data.fd, b->peer, sizeof(b->peer));
	pthread_mutex_unlock(&b->lock);
	ft_link_set_blocking(&b->data, true); /* each has a thread of its own from here on */
	ft_link_set_blocking(&b->hb, true);
	r = greet_primary(b, data.shape, data.len);
	free(data.shape);
	if (r) {
		ft_link_close(&b->data);
		ft_link_close(&b->hb);
	} else if (b->tls) { /* both links passed the handshake: the primary proved who it is */
		ft_event_emit("link_authenticated", "\"role\":\"backup\",\"peer\":%s,\"generation\":%llu",
			      FT_JSON_STR(b->peer), (unsigned long long)b->gen);
	}
	return r;
}

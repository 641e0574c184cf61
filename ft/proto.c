/* proto.c - frames on the replication stream: checked header, checksummed payload, TCP setup. */
#include "proto.h"
#include "../vmm/guest_mem.h"
#include "../vmm/util.h"
#include "disklog.h"
#include "hash.h"
#include "tls.h"

#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

uint64_t ft_payload_hash(uint16_t type, uint64_t seq, const void *p, size_t len)
{
	struct snap_hash h;
	snap_hash_init(&h, ((uint64_t)type << 56) ^ seq ^ 0x4654ull);
	snap_hash_update(&h, p, ALIGN_DOWN(len, 32));
	snap_hash_update(&h, (const uint8_t *)p + ALIGN_DOWN(len, 32), len % 32);
	return snap_hash_final(&h);
}

static uint64_t iov_hash(uint16_t type, uint64_t seq, const struct iovec *iov, int n)
{
	/* hash as if contiguous: carry partial 32-byte blocks across iovec boundaries */
	struct snap_hash h;
	snap_hash_init(&h, ((uint64_t)type << 56) ^ seq ^ 0x4654ull);
	uint8_t carry[32];
	size_t have = 0;
	for (int i = 0; i < n; i++) {
		const uint8_t *p = iov[i].iov_base;
		size_t len = iov[i].iov_len;
		if (len == 0)
			continue; /* an empty iovec may carry a NULL base */
		if (have) {
			size_t take = MIN(32 - have, len);
			memcpy(carry + have, p, take);
			have += take;
			p += take;
			len -= take;
			if (have < 32)
				continue; /* this iovec is used up and the block is still partial */
			snap_hash_update(&h, carry, 32);
		}
		size_t whole = ALIGN_DOWN(len, 32);
		snap_hash_update(&h, p, whole);
		memcpy(carry, p + whole, len - whole);
		have = len - whole;
	}
	snap_hash_update(&h, carry, have);
	return snap_hash_final(&h);
}

static int writev_all(int fd, struct iovec *iov, int n)
{
	while (n > 0) {
		/* MSG_NOSIGNAL: a peer that went away is an error to handle, not a SIGPIPE that kills a
		 * backup right when it should take over */
		struct msghdr mh = { .msg_iov = iov, .msg_iovlen = (size_t)MIN(n, 1024) };
		ssize_t w = sendmsg(fd, &mh, MSG_NOSIGNAL);
		if (w < 0 && errno == ENOTSOCK)
			w = writev(fd, iov, MIN(n, 1024));
		if (w < 0 && errno == EINTR)
			continue;
		if (w < 0)
			return -errno;
		size_t left = (size_t)w;
		while (n > 0 && left >= iov->iov_len) {
			left -= iov->iov_len;
			iov++;
			n--;
		}
		if (n > 0) {
			iov->iov_base = (uint8_t *)iov->iov_base + left;
			iov->iov_len -= left;
		}
	}
	return 0;
}

static int send_iov(const struct ft_link *l, struct iovec *iov, int n)
{
	return l->tls ? ft_tls_sendv(l->tls, iov, n) : writev_all(l->fd, iov, n);
}

/* The pieces in runs of at most FT_SEND_CHUNK bytes, l->gate called before each (iov is consumed). */
static int send_gated(const struct ft_link *l, struct iovec *iov, int n)
{
	struct iovec run[64];
	int i = 0, r = 0;
	while (!r && i < n) {
		size_t room = FT_SEND_CHUNK;
		int k = 0;
		while (i < n && room && k < (int)(sizeof(run) / sizeof(run[0]))) {
			size_t take = MIN(iov[i].iov_len, room);
			run[k++] = (struct iovec){ iov[i].iov_base, take };
			iov[i].iov_base = (uint8_t *)iov[i].iov_base + take;
			iov[i].iov_len -= take;
			room -= take;
			if (!iov[i].iov_len)
				i++;
		}
		l->gate(l->gate_ctx);
		r = send_iov(l, run, k);
	}
	return r;
}

int ft_send(const struct ft_link *l, uint16_t type, uint64_t seq, const struct iovec *iov, int iovcnt)
{
	uint64_t len = 0;
	for (int i = 0; i < iovcnt; i++)
		len += iov[i].iov_len;
	struct ft_frame f = { .magic = FT_MAGIC, .version = FT_VERSION, .type = type, .len = len, .seq = seq,
			      .checksum = iov_hash(type, seq, iov, iovcnt) };
	struct iovec *all = malloc(sizeof(*all) * (size_t)(iovcnt + 1));
	if (!all)
		return -ENOMEM;
	all[0] = (struct iovec){ &f, sizeof(f) };
	if (iovcnt > 0)
		memcpy(all + 1, iov, sizeof(*iov) * (size_t)iovcnt);
	/* on a TLS link the caller's thread encrypts: the primary's sender, never the epoch's pause */
	int r = l->gate ? send_gated(l, all, iovcnt + 1) : send_iov(l, all, iovcnt + 1);
	free(all);
	return r;
}

int ft_send_buf(const struct ft_link *l, uint16_t type, uint64_t seq, const void *p, size_t len)
{
	struct iovec iov = { (void *)p, len };
	return ft_send(l, type, seq, &iov, len ? 1 : 0);
}

ssize_t ft_link_read(const struct ft_link *l, void *p, size_t len)
{
	if (l->tls)
		return ft_tls_recv(l->tls, p, len);
	ssize_t n = read(l->fd, p, len);
	return n < 0 ? -errno : n;
}

static int read_all(const struct ft_link *l, void *p, size_t len)
{
	uint8_t *b = p;
	while (len) {
		ssize_t n = ft_link_read(l, b, len);
		if (n == -EINTR)
			continue;
		if (n == 0)
			return -ECONNRESET;
		if (n < 0)
			return (int)n;
		b += n;
		len -= (size_t)n;
	}
	return 0;
}

size_t ft_link_pending(const struct ft_link *l)
{
	return l->tls ? ft_tls_pending(l->tls) : 0;
}

int ft_link_wait_in(const struct ft_link *l, int timeout_ms)
{
	if (ft_link_pending(l))
		return 1; /* already read off the socket: poll would wait for more */
	struct pollfd pf = { .fd = l->fd, .events = POLLIN };
	int n = poll(&pf, 1, timeout_ms);
	return n < 0 ? -errno : n;
}

void ft_link_set_blocking(const struct ft_link *l, bool blocking)
{
	if (l->tls) { /* its fd stays non-blocking: the session waits in poll, outside GnuTLS */
		ft_tls_set_blocking(l->tls, blocking);
		return;
	}
	int fl = fcntl(l->fd, F_GETFL);
	if (fl >= 0)
		fcntl(l->fd, F_SETFL, blocking ? fl & ~O_NONBLOCK : fl | O_NONBLOCK);
}

void ft_link_shutdown(const struct ft_link *l)
{
	if (l->fd >= 0)
		shutdown(l->fd, SHUT_RDWR);
}

void ft_link_close(struct ft_link *l)
{
	ft_tls_free(l->tls);
	if (l->fd >= 0)
		close(l->fd);
	*l = (struct ft_link){ .fd = -1 };
}

int ft_frame_check(const struct ft_frame *f, uint64_t max_len)
{
	if (f->magic != FT_MAGIC)
		return -EPROTO;
	if (f->version != FT_VERSION)
		return -EPROTONOSUPPORT;
	if (f->type == 0 || f->type >= FT_TYPE_MAX)
		return -EPROTO;
	if (f->len > FT_MAX_FRAME || f->len > max_len)
		return -EMSGSIZE;
	/* only bulk frames may be large: a stray or hostile peer's header must not make us allocate gigabytes */
	bool bulk = f->type == FT_EPOCH || f->type == FT_MEM || f->type == FT_DISK;
	if (!bulk && f->len > FT_MAX_SMALL_FRAME)
		return -EMSGSIZE;
	return 0;
}

/* The payload of a header that passed the checks: allocated, read whole, checksum verified. */
static int recv_payload(const struct ft_link *l, const struct ft_frame *f, void **payload)
{
	void *p = malloc(f->len ? f->len : 1);
	if (!p)
		return -ENOMEM;
	int r = read_all(l, p, f->len);
	if (r) {
		free(p);
		return r;
	}
	if (ft_payload_hash(f->type, f->seq, p, f->len) != f->checksum) {
		free(p);
		return -EBADMSG;
	}
	*payload = p;
	return 0;
}

int ft_recv_max(const struct ft_link *l, struct ft_frame *f, void **payload, uint64_t max_len)
{
	*payload = NULL;
	int r = read_all(l, f, sizeof(*f));
	if (r)
		return r;
	r = ft_frame_check(f, max_len);
	return r ? r : recv_payload(l, f, payload);
}

/* a + b, at most FT_MAX_FRAME: the bounds below are sums of products of peer-described sizes */
static uint64_t sat_add(uint64_t a, uint64_t b)
{
	uint64_t s;
	return __builtin_add_overflow(a, b, &s) || s > FT_MAX_FRAME ? FT_MAX_FRAME : s;
}

static uint64_t sat_mul(uint64_t a, uint64_t b)
{
	uint64_t p;
	return __builtin_mul_overflow(a, b, &p) || p > FT_MAX_FRAME ? FT_MAX_FRAME : p;
}

uint64_t ft_data_frame_max(uint16_t type, uint64_t guest_pages, unsigned ncpus)
{
	const uint64_t pair = 8 + PAGE_SIZE; /* a pfn and its page */
	switch (type) {
	case FT_MEM: /* the count, then one batch: never more pages than the guest has */
		return sat_add(8, sat_mul(MIN(guest_pages, (uint64_t)FT_MEM_BATCH_PAGES), pair));
	case FT_DISK:
		/* one record: a sync range (header + chunk), or a disk-log record sent on its own during the
		 * sync (flush_disklog), which fits the whole log's cap with its header */
		return MAX(DISKLOG_MAX_BYTES, sizeof(struct ft_disk_rec) + (uint64_t)FT_DISK_SYNC_CHUNK);
	case FT_EPOCH: {
		/* FT_MAX_STATE in steps: ncpus is the peer's number, the macro's product could wrap */
		uint64_t state = sat_mul(sat_add(256ull << 10, sat_mul(ncpus, 64ull << 10)), 32);
		uint64_t n = sat_add(sizeof(struct ft_epoch_hdr), sat_mul(guest_pages, pair));
		/* a packed epoch's worst case: nothing zero, nothing compressible, a length word per chunk */
		uint64_t chunks = guest_pages / FT_CHUNK_PAGES + (guest_pages % FT_CHUNK_PAGES != 0);
		n = sat_add(n, sat_add(sizeof(struct ft_pages_hdr) + 7, sat_mul(chunks, 4)));
		return sat_add(sat_add(n, state), DISKLOG_MAX_BYTES);
	}
	default: /* BYE, or a type the receive loop refuses anyway: nothing big is ever legitimate */
		return FT_MAX_HB_FRAME;
	}
}

int ft_recv_data(const struct ft_link *l, struct ft_frame *f, void **payload, uint64_t guest_pages, unsigned ncpus)
{
	*payload = NULL;
	int r = read_all(l, f, sizeof(*f));
	if (r)
		return r;
	/* the type is checked (inside ft_frame_check) before its bound is believed; the bound before malloc */
	r = ft_frame_check(f, FT_MAX_FRAME);
	r = r ? r : ft_frame_check(f, ft_data_frame_max(f->type, guest_pages, ncpus));
	return r ? r : recv_payload(l, f, payload);
}

int ft_recv(const struct ft_link *l, struct ft_frame *f, void **payload)
{
	return ft_recv_max(l, f, payload, FT_MAX_FRAME);
}

int ft_recv_hb(const struct ft_link *l, struct ft_frame *f)
{
	void *pl;
	int r = ft_recv_max(l, f, &pl, FT_MAX_HB_FRAME);
	free(pl); /* NULL after a failure */
	return r;
}

/* sizeof(hdr) + npages * 8 + the page area + state_len + disk_len, false if it wraps: the fields come
 * from the wire, so the sum is checked even though each one is bounded too. The page area: npages *
 * PAGE_SIZE, or a packed epoch's ft_pages_hdr and its wire_len bytes padded to 8. */
static bool epoch_size(const struct ft_epoch_hdr *h, const struct ft_pages_hdr *ph, uint64_t *need)
{
	uint64_t area;
	if (ph)
		area = sizeof(*ph) + FT_PAGES_PAD_TO(ph->wire_len); /* wire_len <= FT_MAX_FRAME: no wrap */
	else if (__builtin_mul_overflow(h->npages, PAGE_SIZE, &area))
		return false;
	return !__builtin_mul_overflow(h->npages, 8, need) && !__builtin_add_overflow(*need, area, need) &&
	       !__builtin_add_overflow(*need, sizeof(*h), need) && !__builtin_add_overflow(*need, h->state_len, need) &&
	       !__builtin_add_overflow(*need, h->disk_len, need);
}

/* The disk records must tile the disk area exactly, each a known kind, a write's data inside it. */
static int disk_recs_check(const uint8_t *d, uint64_t disk_len)
{
	uint64_t off = 0;
	while (off < disk_len) {
		struct ft_disk_rec rec;
		if (disk_len - off < sizeof(rec))
			return -EBADMSG;
		memcpy(&rec, d + off, sizeof(rec));
		off += sizeof(rec);
		if (rec.kind == FT_DISK_WRITE) {
			if (rec.len > disk_len - off)
				return -EBADMSG;
			off += rec.len;
		} else if (rec.kind != FT_DISK_ZERO) {
			return -EBADMSG;
		}
	}
	return 0;
}

int ft_epoch_check(const void *payload, size_t len, bool packed, struct ft_epoch_hdr *hdr)
{
	if (len < sizeof(*hdr))
		return -EBADMSG;
	memcpy(hdr, payload, sizeof(*hdr));
	/* no flag this build does not know, and the layout the HELLO announced, whatever the sizes would say */
	bool flagged = (hdr->flags & FT_EPOCH_PACKED) != 0;
	if ((hdr->flags & ~(uint64_t)FT_EPOCH_FLAGS) || flagged != packed)
		return -EBADMSG;
	if (hdr->npages > (FT_MAX_FRAME >> PAGE_SHIFT) || hdr->state_len > FT_MAX_FRAME || hdr->disk_len > FT_MAX_FRAME)
		return -EBADMSG;
	struct ft_pages_hdr ph;
	if (packed) {
		if (len - sizeof(*hdr) < sizeof(ph))
			return -EBADMSG;
		memcpy(&ph, (const uint8_t *)payload + sizeof(*hdr), sizeof(ph));
		if (ph.wire_len > FT_MAX_FRAME)
			return -EBADMSG;
	}
	uint64_t need;
	if (!epoch_size(hdr, packed ? &ph : NULL, &need) || need != len)
		return -EBADMSG;
	/* the disk area is the payload's tail */
	return disk_recs_check((const uint8_t *)payload + (len - hdr->disk_len), hdr->disk_len);
}

int ft_parse_hostport(const char *s, char *host, size_t hostlen, char *port, size_t portlen)
{
	const char *colon = strrchr(s, ':');
	if (!colon || colon == s || !colon[1] || (size_t)(colon - s) >= hostlen || strlen(colon + 1) >= portlen)
		return -EINVAL;
	const char *h = s;
	size_t hl = (size_t)(colon - s);
	if (h[0] == '[' && hl >= 2 && h[hl - 1] == ']') { /* [v6]:port */
		h++;
		hl -= 2;
	}
	memcpy(host, h, hl);
	host[hl] = '\0';
	memcpy(port, colon + 1, strlen(colon + 1) + 1);
	char *end;
	long p = strtol(port, &end, 10);
	if (*end || p <= 0 || p > 65535)
		return -EINVAL;
	return 0;
}

static int resolve(const char *hostport, bool passive, struct addrinfo **res, char *err, size_t errlen)
{
	char host[256], port[16];
	if (ft_parse_hostport(hostport, host, sizeof(host), port, sizeof(port))) {
		snprintf(err, errlen, "'%s' is not HOST:PORT (port 1-65535)", hostport);
		return -EINVAL;
	}
	struct addrinfo hints = { .ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM, .ai_flags = passive ? AI_PASSIVE : 0 };
	int g = getaddrinfo(host, port, &hints, res);
	if (g) {
		snprintf(err, errlen, "cannot resolve %s: %s", hostport, gai_strerror(g));
		return -EHOSTUNREACH;
	}
	return 0;
}

static void tune(int fd)
{
	int one = 1;
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	int buf = 8 << 20;
	setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &buf, sizeof(buf));
	setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &buf, sizeof(buf));
}

static bool is_loopback(const struct sockaddr *sa)
{
	if (sa->sa_family == AF_INET)
		return (ntohl(((const struct sockaddr_in *)sa)->sin_addr.s_addr) >> 24) == 127;
	if (sa->sa_family != AF_INET6)
		return false;
	const struct in6_addr *a6 = &((const struct sockaddr_in6 *)sa)->sin6_addr;
	return IN6_IS_ADDR_LOOPBACK(a6) || (IN6_IS_ADDR_V4MAPPED(a6) && a6->s6_addr[12] == 127);
}

/* Addresses of res that may be used: all, or only loopback ones. */
static bool usable(const struct addrinfo *a, bool loopback_only)
{
	return !loopback_only || is_loopback(a->ai_addr);
}

/* A socket on the first usable address of res that connects (or, listening, binds and listens): its
 * fd, or -errno of the last address that failed (-e when none got that far). */
static int first_socket(const struct addrinfo *res, bool listening, bool loopback_only, int e)
{
	for (const struct addrinfo *a = res; a; a = a->ai_next) {
		if (!usable(a, loopback_only))
			continue;
		int fd = socket(a->ai_family, a->ai_socktype | SOCK_CLOEXEC, a->ai_protocol);
		if (fd < 0)
			continue;
		if (listening) {
			int one = 1;
			setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
			if (bind(fd, a->ai_addr, a->ai_addrlen) == 0 && listen(fd, 4) == 0)
				return fd;
		} else if (connect(fd, a->ai_addr, a->ai_addrlen) == 0) {
			return fd;
		}
		e = errno;
		close(fd);
	}
	return -e;
}

/* Without credentials an FT link never leaves this host: a name that resolves to no loopback address
 * is refused with one line saying why and what would allow it. */
static int check_loopback(const struct addrinfo *res, const char *hostport, char *err, size_t errlen)
{
	for (const struct addrinfo *a = res; a; a = a->ai_next)
		if (is_loopback(a->ai_addr))
			return 0;
	snprintf(err, errlen,
		 "%s is not a loopback address: without --tls-creds DIR or --tls-psk FILE the FT link is neither "
		 "authenticated nor encrypted (give credentials, or --ft-insecure to allow it)",
		 hostport);
	return -EACCES;
}

bool ft_addr_is_loopback(const char *hostport)
{
	char err[256];
	struct addrinfo *res;
	if (resolve(hostport, false, &res, err, sizeof(err)))
		return false;
	bool all = res != NULL;
	for (const struct addrinfo *a = res; a; a = a->ai_next)
		all = all && is_loopback(a->ai_addr);
	freeaddrinfo(res);
	return all;
}

int ft_connect(const char *hostport, bool loopback_only, char *err, size_t errlen)
{
	struct addrinfo *res;
	int r = resolve(hostport, false, &res, err, errlen);
	if (r)
		return r;
	r = loopback_only ? check_loopback(res, hostport, err, errlen) : 0;
	int fd = r ? r : first_socket(res, false, loopback_only, ECONNREFUSED);
	freeaddrinfo(res);
	if (fd < 0) {
		if (!r)
			snprintf(err, errlen, "cannot reach backup %s: %s", hostport, strerror(-fd));
		return fd;
	}
	tune(fd);
	return fd;
}

int ft_listen(const char *hostport, bool loopback_only, char *err, size_t errlen)
{
	struct addrinfo *res;
	int r = resolve(hostport, true, &res, err, errlen);
	if (r)
		return r;
	r = loopback_only ? check_loopback(res, hostport, err, errlen) : 0;
	int fd = r ? r : first_socket(res, true, loopback_only, EADDRNOTAVAIL);
	freeaddrinfo(res);
	if (fd < 0 && !r)
		snprintf(err, errlen, "cannot listen on %s: %s", hostport, strerror(-fd));
	return fd;
}

const char *ft_type_name(unsigned t)
{
	static const char *const n[] = { "?", "HELLO", "HB_HELLO", "HELLO_OK", "HELLO_ERR", "MEM", "DISK", "EPOCH",
					 "ACK", "HEARTBEAT", "BYE", "TAKEOVER" };
	return t < ARRAY_SIZE(n) ? n[t] : "?";
}

int ft_accept_tuned(int lfd)
{
	int fd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
	if (fd >= 0)
		tune(fd);
	return fd;
}

uint64_t ft_hb_clock(uint64_t now, uint64_t *prev, uint64_t *last_rx)
{
	uint64_t gap = now - *prev;
	/* the loop waits half a period: two periods between looks is this process held up, not its peer silent.
	 * (It was four: a test-bed-wide stall of 300-400 ms then counted whole against a 300 ms --ft-timeout.) */
	if (gap > 2 * FT_HEARTBEAT_MS * 1000000ull)
		*last_rx = MIN(*last_rx + (gap - FT_HEARTBEAT_MS * 1000000ull), now);
	*prev = now;
	return gap;
}

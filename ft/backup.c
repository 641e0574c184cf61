/* backup.c - the backup VMM: handshake, initial sync, staged all-or-nothing epoch commits, acks, failover. */
#include "backup.h"
#include "backup_int.h"
#include "../vmm/util.h"
#include "../vmm/vm.h"
#include "primary.h"
#include "proto.h"
#include "vmstate.h"

#include <errno.h>
#include <fcntl.h>
#include <libfdt.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>


/* An fdt from the wire, whole and well-formed inside its len bytes. Checked before libfdt reads
 * anything else: fdt_check_header reads a full header whatever the buffer's size and trusts the
 * structure block, which every later lookup walks. */
static bool fdt_whole(const void *fdt, size_t len)
{
	return len >= sizeof(struct fdt_header) && fdt_check_full(fdt, len) == 0;
}

/* Compare the primary's shape with what this backup was given; one line on mismatch. */
int backup_check_shape(struct backup *b, const void *fdt, size_t len, char *why, size_t wl)
{
	uint64_t mem;
	uint32_t ncpus, ndisks, nnics;
	if (!fdt_whole(fdt, len) || fdt_get_u64(fdt, 0, "mem-size", &mem) ||
	    fdt_get_u32(fdt, 0, "ncpus", &ncpus) || fdt_get_u32(fdt, 0, "ndisks", &ndisks) ||
	    fdt_get_u32(fdt, 0, "nnics", &nnics) || ndisks > MACHINE_MAX_DISKS || nnics > MACHINE_MAX_NICS ||
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
	if (ndisks && fdt_get_blob(fdt, 0, "disk-sizes", sizes, ndisks * sizeof(uint64_t))) {
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
	if (nnics && fdt_get_blob(fdt, 0, "macs", macs, nnics * 6)) {
		snprintf(why, wl, "malformed MACs in the handshake");
		return -EINVAL;
	}
	for (unsigned i = 0; i < nnics; i++) { /* the guest keeps its MAC across the takeover */
		memcpy(b->machine.nics[i].mac, macs[i], 6);
		b->machine.nics[i].has_mac = true;
	}
	b->machine.mem = mem;
	b->machine.cpus = ncpus;
	/* after a takeover, `protect` keeps the protection this guest had: the primary's epoch, our timeout */
	uint32_t epoch_ms;
	if (!fdt_get_u32(fdt, 0, "epoch-ms", &epoch_ms) && epoch_ms >= 5 && epoch_ms <= 1000)
		b->epoch_ms = epoch_ms;
	return 0;
}

static bool finished(struct backup *b)
{
	pthread_mutex_lock(&b->lock);
	bool d = b->done;
	pthread_mutex_unlock(&b->lock);
	return d;
}

static void set_done(struct backup *b, const char *why)
{
	pthread_mutex_lock(&b->lock);
	if (!b->done) {
		b->done = true;
		b->done_ns = now_ns();
		snprintf(b->why, sizeof(b->why), "%s", why);
	}
	pthread_mutex_unlock(&b->lock);
	shutdown(b->data_fd, SHUT_RDWR); /* breaks the receive loop */
	shutdown(b->hb_fd, SHUT_RDWR);
}

/* The primary said (or showed) it runs on without us: end mirroring, and never take over. */
static void primary_runs_on(struct backup *b, const char *why)
{
	pthread_mutex_lock(&b->lock);
	b->primary_alive = true;
	pthread_mutex_unlock(&b->lock);
	set_done(b, why);
}

/* One frame from the heartbeat link: 0 a heartbeat, 1 the primary's BYE (it runs on without us),
 * -1 the link failed. */
static int hb_read(struct backup *b)
{
	struct ft_frame f;
	void *pl;
	/* heartbeats and BYE are empty: a big header on this link is not our primary's, and must not
	 * make us allocate for it */
	if (ft_recv_max(b->hb_fd, &f, &pl, FT_MAX_HB_FRAME))
		return -1;
	free(pl);
	if (f.type != FT_BYE)
		return 0;
	primary_runs_on(b, "the primary runs on without this backup");
	return 1;
}

static void *hb_thread(void *arg)
{
	struct backup *b = arg;
	uint64_t last_rx = now_ns(), next_tx = 0, prev = last_rx;
	while (!finished(b)) {
		uint64_t now = now_ns();
		if (now >= next_tx) {
			if (ft_send_buf(b->hb_fd, FT_HEARTBEAT, now, NULL, 0)) {
				/* the primary may have said BYE and closed before we got to read it */
				struct pollfd pf = { .fd = b->hb_fd, .events = POLLIN };
				int r = 0;
				while (r == 0 && poll(&pf, 1, 0) > 0)
					r = hb_read(b);
				if (r != 1)
					set_done(b, "heartbeat link broke");
				break;
			}
			next_tx = now + FT_HEARTBEAT_MS * 1000000ull;
		}
		struct pollfd pf = { .fd = b->hb_fd, .events = POLLIN };
		int n = poll(&pf, 1, FT_HEARTBEAT_MS / 2);
		ft_hb_clock(now_ns(), &prev, &last_rx); /* a local stall is not the primary's silence */
		if (n > 0) {
			int r = hb_read(b);
			if (r < 0) {
				/* The primary's process closed its sockets. Whether its guest ended (a BYE queued on
				 * the data link) or it died, the data link tells: leave it to the receive loop, which
				 * no longer waits for this thread (hb_closed), and only step in if it stays silent. */
				pthread_mutex_lock(&b->lock);
				b->hb_closed = true;
				pthread_mutex_unlock(&b->lock);
				for (int i = 0; i < 200 && !finished(b); i++)
					usleep(10000);
				set_done(b, "heartbeat link closed by the primary");
			}
			if (r)
				break;
			last_rx = now_ns();
		}
		if (now_ns() - last_rx > b->timeout_ms * 1000000ull) {
			set_done(b, "no heartbeat from the primary");
			break;
		}
	}
	return NULL;
}

static bool disk_rec_fits(const struct backup *b, const struct ft_disk_rec *rec)
{
	return rec->disk < b->machine.ndisks && rec->off <= b->disk_sizes[rec->disk] &&
	       rec->len <= b->disk_sizes[rec->disk] - rec->off;
}

static int apply_disk_rec(struct backup *b, const struct ft_disk_rec *rec, const uint8_t *data)
{
	if (!disk_rec_fits(b, rec))
		return -ERANGE;
	int fd = b->disk_fds[rec->disk];
	if (rec->kind == FT_DISK_WRITE)
		return pwrite_all(fd, data, rec->len, rec->off);
	if (fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, (off_t)rec->off, (off_t)rec->len) == 0)
		return 0;
	static const uint8_t zeros[65536];
	for (uint64_t o = 0; o < rec->len; o += sizeof(zeros)) {
		int r = pwrite_all(fd, zeros, (size_t)MIN(sizeof(zeros), rec->len - o), rec->off + o);
		if (r)
			return r;
	}
	return 0;
}

/* pfn i of a batch; the wire gives no alignment guarantee, so read it as bytes */
static uint64_t pfn_at(const uint8_t *pfns, uint64_t i)
{
	uint64_t v;
	memcpy(&v, pfns + i * 8, 8);
	return v;
}

/* Every pfn of a batch inside guest RAM. n is at most the guest's page count (the callers check
 * that first), so this loop is bounded by the guest, not by the wire. */
static bool pages_fit(const struct backup *b, uint64_t n, const uint8_t *pfns)
{
	for (uint64_t i = 0; i < n; i++)
		if (pfn_at(pfns, i) >= b->mem.npages)
			return false;
	return true;
}

static void apply_pages(struct backup *b, uint64_t n, const uint8_t *pfns, const uint8_t *pages)
{
	for (uint64_t i = 0; i < n; i++)
		memcpy(b->mem.host + (pfn_at(pfns, i) << PAGE_SHIFT), pages + i * PAGE_SIZE, PAGE_SIZE);
}

/* Bytes that n (pfn, page) pairs take, false if more pages than the guest has: a count from the wire
 * is bounded by the guest before it meets a size, and the product is checked anyway. */
static bool batch_size(const struct backup *b, uint64_t n, uint64_t *bytes)
{
	return n <= b->mem.npages && !__builtin_mul_overflow(n, 8 + PAGE_SIZE, bytes);
}

int backup_sync_mem(struct backup *b, const void *p, size_t len)
{
	uint64_t n, bytes;
	if (b->have_baseline || len < 8)
		return -EBADMSG;
	memcpy(&n, p, 8);
	/* compare with what is left after the count: no sum that could wrap */
	if (!batch_size(b, n, &bytes) || bytes != len - 8)
		return -EBADMSG;
	const uint8_t *pfns = (const uint8_t *)p + 8;
	if (!pages_fit(b, n, pfns))
		return -EBADMSG;
	apply_pages(b, n, pfns, pfns + n * 8);
	return 0;
}

int backup_sync_disk(struct backup *b, const void *p, size_t len)
{
	struct ft_disk_rec rec;
	if (b->have_baseline || len < sizeof(rec))
		return -EBADMSG;
	memcpy(&rec, p, sizeof(rec));
	if (rec.kind != FT_DISK_WRITE && rec.kind != FT_DISK_ZERO)
		return -EBADMSG;
	/* a write's data is the rest of the frame, a zero has none: compare, never add */
	uint64_t data = rec.kind == FT_DISK_WRITE ? rec.len : 0;
	if (data != len - sizeof(rec))
		return -EBADMSG;
	return apply_disk_rec(b, &rec, (const uint8_t *)p + sizeof(rec)) ? -EBADMSG : 0;
}

/* The frame was fully received and its checksum verified; its sizes are checked here before a
 * single byte is applied, so a bad epoch leaves the last commit untouched. */
int backup_commit_epoch(struct backup *b, uint64_t seq, void *payload, size_t len)
{
	struct ft_epoch_hdr h;
	if (ft_epoch_check(payload, len, &h) || h.epoch != seq)
		return -EBADMSG;
	if (!b->have_baseline ? !(h.flags & FT_EPOCH_BASELINE) : h.epoch != b->committed + 1)
		return -EBADMSG;
	/* ft_epoch_check added these sizes up without overflow to exactly len: the areas lie inside it */
	const uint8_t *pfns = (const uint8_t *)payload + sizeof(h);
	const uint8_t *pages = pfns + h.npages * 8;
	const uint8_t *state = pages + h.npages * PAGE_SIZE;
	const uint8_t *disk = state + h.state_len;
	if (h.npages > b->mem.npages || !pages_fit(b, h.npages, pfns))
		return -EBADMSG;
	if (!fdt_whole(state, h.state_len))
		return -EBADMSG;
	/* every disk record in range before anything is applied (ft_epoch_check saw that they tile disk_len) */
	for (uint64_t off = 0; off < h.disk_len;) {
		struct ft_disk_rec rec;
		memcpy(&rec, disk + off, sizeof(rec));
		if (!disk_rec_fits(b, &rec))
			return -ERANGE;
		off += sizeof(rec) + (rec.kind == FT_DISK_WRITE ? rec.len : 0);
	}
	void *nstate = malloc(h.state_len);
	if (!nstate)
		return -ENOMEM;
	memcpy(nstate, state, h.state_len);
	/* commit: memory, disks, then the state that describes them */
	apply_pages(b, h.npages, pfns, pages);
	for (uint64_t off = 0; off < h.disk_len;) {
		struct ft_disk_rec rec;
		memcpy(&rec, disk + off, sizeof(rec));
		off += sizeof(rec);
		int r = apply_disk_rec(b, &rec, disk + off);
		if (r) /* the memory of this epoch is applied already: nothing consistent is left to resume */
			die("backup: cannot write epoch %llu to the disk copy: %s", (unsigned long long)h.epoch,
			    strerror(-r));
		if (rec.kind == FT_DISK_WRITE)
			off += rec.len;
	}
	if (h.disk_len)
		for (unsigned i = 0; i < b->machine.ndisks; i++)
			fdatasync(b->disk_fds[i]);
	pthread_mutex_lock(&b->lock);
	free(b->state);
	b->state = nstate;
	b->committed = h.epoch;
	bool first = !b->have_baseline;
	b->have_baseline = true;
	pthread_mutex_unlock(&b->lock);
	if (first)
		warnx("backup: baseline committed (epoch %llu): the guest is protected", (unsigned long long)h.epoch);
	return 0;
}

/* The data link failed (closed, reset, a corrupt or bad frame). That alone does not say the primary
 * is dead: it may have lost only this link, or we may have just refused its stream. The heartbeat
 * link decides: closed or silent for the timeout = dead (take over); a BYE = it runs on unprotected;
 * heartbeats still arriving a timeout later = alive (no takeover either: two guests must never run). */
static int link_lost(struct backup *b, const char *why)
{
	pthread_mutex_lock(&b->lock);
	if (!b->done && !b->link_why[0])
		snprintf(b->link_why, sizeof(b->link_why), "%s", why);
	pthread_mutex_unlock(&b->lock);
	shutdown(b->data_fd, SHUT_RDWR); /* the primary sees it at once and answers on the heartbeat link */
	uint64_t deadline = now_ns() + (b->timeout_ms + 2 * FT_HEARTBEAT_MS) * 1000000ull;
	while (!finished(b)) {
		pthread_mutex_lock(&b->lock);
		bool hb_closed = b->hb_closed;
		pthread_mutex_unlock(&b->lock);
		if (hb_closed) { /* both links ended with no BYE: the primary is gone */
			set_done(b, why);
			break;
		}
		if (now_ns() > deadline) {
			primary_runs_on(b, "the primary's heartbeats go on without its data link");
			break;
		}
		usleep(10000);
	}
	return 1;
}

int backup_apply_frame(struct backup *b, const struct ft_frame *f, void *p)
{
	switch (f->type) {
	case FT_MEM: return backup_sync_mem(b, p, f->len);
	case FT_DISK: return backup_sync_disk(b, p, f->len);
	case FT_EPOCH: return backup_commit_epoch(b, f->seq, p, f->len);
	default: return -ENOMSG;
	}
}

/* Why the data link ends over a frame backup_apply_frame refused (said on stderr for an epoch). */
static const char *refused(const struct backup *b, const struct ft_frame *f, int r)
{
	switch (f->type) {
	case FT_MEM: return "malformed initial-sync memory frame";
	case FT_DISK: return "malformed initial-sync disk frame";
	case FT_EPOCH:
		warnx("backup: epoch %llu rejected (%s); last commit %llu kept", (unsigned long long)f->seq,
		      strerror(-r), (unsigned long long)b->committed);
		return "bad epoch";
	default: return "unexpected frame";
	}
}

/* Returns 0 when the primary's guest ended normally (BYE), 1 when the primary is gone. */
static int receive_loop(struct backup *b)
{
	for (;;) {
		struct ft_frame f;
		void *p;
		/* each frame no larger than this guest makes legitimate, refused before its payload is
		 * allocated (its checksum is only known once it is all here) */
		int r = ft_recv_data(b->data_fd, &f, &p, b->mem.npages, b->machine.cpus);
		if (r == -EBADMSG) {
			/* a corrupted epoch is never applied; the link itself is now untrustworthy */
			warnx("backup: corrupted frame rejected (checksum); last commit %llu kept",
			      (unsigned long long)b->committed);
			return link_lost(b, "corrupted stream");
		}
		if (r)
			return link_lost(b, r == -ECONNRESET ? "connection closed by the primary" : strerror(-r));
		if (f.type == FT_BYE) {
			free(p);
			set_done(b, "primary's guest ended");
			return 0;
		}
		r = backup_apply_frame(b, &f, p);
		free(p);
		if (r)
			return link_lost(b, refused(b, &f, r));
		if (f.type == FT_EPOCH && ft_send_buf(b->data_fd, FT_ACK, f.seq, NULL, 0))
			return link_lost(b, "cannot ack");
	}
}

/* ---- pairing ---------------------------------------------------------------------------- */

/* Before the handshake anyone may connect. Every connection gets a few KiB and a deadline to say who
 * it is, all of them at once (poll), so a silent, slow or foreign peer is dropped and never holds up
 * the primary, whose hellos arrive within a round trip of its connects. */
enum { PENDING_MAX = 8 };

struct pending {
	int fd; /* -1: a free slot */
	uint64_t deadline_ns;
	size_t got; /* bytes of buf filled: the frame header, then its payload */
	uint8_t buf[sizeof(struct ft_frame) + FT_MAX_HELLO_FRAME];
};

/* A peer that said HELLO (with its shape) or HB_HELLO. */
struct hello {
	int fd;
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
	default: return "sent no handshake";
	}
}

static void pending_close(struct pending *p, int why)
{
	warnx("backup: a peer connected but %s", hello_error(why));
	if (why == -EPROTONOSUPPORT) { /* an ftvmm of another version: tell it why */
		const char *m = "protocol version mismatch";
		ft_send_buf(p->fd, FT_HELLO_ERR, 0, m, strlen(m));
	}
	close(p->fd);
	p->fd = -1;
}

static void drop_hello(struct hello *h)
{
	if (h->fd >= 0)
		close(h->fd);
	free(h->shape);
	*h = (struct hello){ .fd = -1 };
}

/* A new connection into a free slot; with all taken, the one nearest its deadline makes room. */
static void pending_add(struct pending *pend, int fd, uint64_t deadline)
{
	struct pending *slot = &pend[0];
	for (int i = 0; i < PENDING_MAX; i++) {
		if (pend[i].fd < 0) {
			slot = &pend[i];
			break;
		}
		if (pend[i].deadline_ns < slot->deadline_ns)
			slot = &pend[i];
	}
	if (slot->fd >= 0)
		pending_close(slot, -ETIMEDOUT);
	slot->fd = fd;
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
	*h = (struct hello){ .fd = p->fd, .type = f.type, .session = f.seq, .shape = shape, .len = f.len };
	p->fd = -1;
	return 1;
}

/* Take what the peer has sent so far without blocking: 1 a whole hello (in *h), 0 more to come, or
 * the error to drop it for. The header is checked, its length capped, before the payload is read. */
static int pending_read(struct pending *p, struct hello *h)
{
	const size_t hs = sizeof(struct ft_frame);
	struct ft_frame f;
	memcpy(&f, p->buf, hs);
	size_t want = p->got < hs ? hs : hs + f.len; /* f.len was capped when the header came in */
	ssize_t n = recv(p->fd, p->buf + p->got, want - p->got, MSG_DONTWAIT);
	if (n == 0)
		return -ECONNRESET;
	if (n < 0)
		return errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR ? 0 : -errno;
	p->got += (size_t)n;
	if (p->got < want)
		return 0;
	if (want == hs) {
		memcpy(&f, p->buf, hs);
		int r = ft_frame_check(&f, FT_MAX_HELLO_FRAME);
		if (r || f.len)
			return r; /* refused, or its payload comes next */
	}
	return hello_done(p, h);
}

/* poll entries for the pending connections, and the wait until the first deadline (ms, -1: none) */
static int pending_poll(const struct pending *pend, struct pollfd *pfd, uint64_t now)
{
	uint64_t first = UINT64_MAX;
	for (int i = 0; i < PENDING_MAX; i++) {
		pfd[i] = (struct pollfd){ .fd = pend[i].fd, .events = POLLIN }; /* poll skips fd -1 */
		if (pend[i].fd >= 0)
			first = MIN(first, pend[i].deadline_ns);
	}
	if (first == UINT64_MAX)
		return -1;
	return first <= now ? 0 : (int)MIN((first - now + 999999) / 1000000, (uint64_t)INT32_MAX);
}

static void pending_expire(struct pending *pend, uint64_t now)
{
	for (int i = 0; i < PENDING_MAX; i++)
		if (pend[i].fd >= 0 && now >= pend[i].deadline_ns)
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
			if (pend[i].fd < 0 || !pfd[i + 1].revents)
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
		if (fd >= 0)
			pending_add(pend, fd, now_ns() + hello_timeout_ns(b));
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
		if (hb->fd >= 0 && hb->session != data->session)
			drop_hello(hb);
	} else if (data->fd < 0 || h->session == data->session) {
		drop_hello(hb);
		*hb = *h;
	} else {
		drop_hello(h);
	}
	return data->fd >= 0 && hb->fd >= 0;
}

/* Paired: check the shape, map guest memory, answer HELLO_OK (or HELLO_ERR with the reason). */
static int greet_primary(struct backup *b, const void *shape, size_t len)
{
	char why[256];
	if (backup_check_shape(b, shape, len, why, sizeof(why))) {
		ft_send_buf(b->data_fd, FT_HELLO_ERR, 0, why, strlen(why));
		warnx("backup: refusing the primary: %s", why);
		return -EINVAL;
	}
	int r = gmem_init(&b->mem, b->machine.mem);
	if (r) {
		snprintf(why, sizeof(why), "cannot map %llu MiB of guest memory", (unsigned long long)(b->machine.mem >> 20));
		ft_send_buf(b->data_fd, FT_HELLO_ERR, 0, why, strlen(why));
		warnx("backup: %s", why);
		return r;
	}
	return ft_send_buf(b->data_fd, FT_HELLO_OK, 0, NULL, 0);
}

int backup_accept(struct backup *b, int lfd)
{
	b->data_fd = b->hb_fd = -1;
	struct pending *pend = calloc(PENDING_MAX, sizeof(*pend));
	if (!pend)
		return -ENOMEM;
	for (int i = 0; i < PENDING_MAX; i++)
		pend[i].fd = -1;
	struct hello data = { .fd = -1 }, hb = { .fd = -1 }, h;
	int r;
	do
		r = wait_hello(b, lfd, pend, &h);
	while (!r && !pair(&data, &hb, &h));
	for (int i = 0; i < PENDING_MAX; i++)
		if (pend[i].fd >= 0)
			close(pend[i].fd); /* whoever else was still introducing itself */
	free(pend);
	if (r) {
		drop_hello(&data);
		drop_hello(&hb);
		return r;
	}
	free(hb.shape);
	b->data_fd = data.fd;
	b->hb_fd = hb.fd;
	r = greet_primary(b, data.shape, data.len);
	free(data.shape);
	return r;
}

void backup_status(void *ctx, char *buf, size_t len)
{
	struct backup *b = ctx;
	pthread_mutex_lock(&b->lock);
	snprintf(buf, len, "state=%s protected=%s epoch=%llu last_commit=%llu link=%s",
		 b->data_fd < 0 ? "waiting-for-primary" : b->have_baseline ? "mirroring" : "initial-sync",
		 b->have_baseline && !b->done ? "yes" : "no", (unsigned long long)b->committed,
		 (unsigned long long)b->committed, b->done || b->data_fd < 0 ? "down" : "up");
	pthread_mutex_unlock(&b->lock);
}


/* ---- the backup's life, as the command layer drives it ----------------------------------- */

void backup_init(struct backup *b)
{
	memset(b, 0, sizeof(*b));
	b->timeout_ms = FT_DEFAULT_TIMEOUT_MS;
	b->data_fd = b->hb_fd = -1;
	pthread_mutex_init(&b->lock, NULL);
}

int backup_open_disks(struct backup *b)
{
	for (unsigned i = 0; i < b->machine.ndisks; i++) {
		const char *path = b->machine.disks[i].path;
		struct stat st;
		if (stat(path, &st) < 0 || !S_ISREG(st.st_mode)) {
			warnx("--disk %s: %s", path, errno == ENOENT ? "no such file" : "not a regular file");
			return -1;
		}
		b->disk_fds[i] = open(path, O_RDWR | O_CLOEXEC);
		if (b->disk_fds[i] < 0) {
			warnx("--disk %s: cannot open for writing: %s", path, strerror(errno));
			return -1;
		}
		b->disk_sizes[i] = (uint64_t)st.st_size;
	}
	return 0;
}

int backup_mirror(struct backup *b, int lfd)
{
	if (backup_accept(b, lfd)) {
		close(lfd);
		return -1;
	}
	close(lfd);
	warnx("backup: primary connected (%llu MiB, %u vCPUs, %u disks, %u NICs): initial sync",
	      (unsigned long long)(b->machine.mem >> 20), b->machine.cpus, b->machine.ndisks, b->machine.nnics);
	pthread_create(&b->hb_thread, NULL, hb_thread, b);
	int gone = receive_loop(b);
	set_done(b, "receiver finished");
	pthread_join(b->hb_thread, NULL);
	close(b->data_fd);
	close(b->hb_fd);
	for (unsigned i = 0; i < b->machine.ndisks; i++)
		close(b->disk_fds[i]);
	return gone;
}

int backup_outcome(struct backup *b, int gone, struct backup_takeover *to)
{
	if (!gone) {
		warnx("backup: the primary's guest shut down normally; nothing to take over");
		gmem_free(&b->mem);
		return 0;
	}
	if (b->primary_alive) {
		warnx("backup: the primary is alive and runs on unprotected (%s%s%s): not taking over",
		      b->link_why[0] ? b->link_why : b->why, b->link_why[0] ? "; " : "", b->link_why[0] ? b->why : "");
		gmem_free(&b->mem);
		free(b->state);
		return 1;
	}
	if (!b->have_baseline) {
		warnx("backup: primary lost during the initial sync (%s): no consistent state to resume", b->why);
		gmem_free(&b->mem);
		return 1;
	}
	uint64_t t0 = b->done_ns ? b->done_ns : now_ns();
	warnx("backup: primary lost (%s): taking over from epoch %llu", b->why, (unsigned long long)b->committed);
	*to = (struct backup_takeover){ .state = b->state, .mem = &b->mem, .t0_ns = t0 };
	return BACKUP_TAKE_OVER;
}

/* backup.c - the backup's side of every epoch: receive it whole, verify, commit all or nothing, ack; and the takeover decision. */
#include "backup.h"
#include "backup_int.h"
#include "../vmm/fdt_prop.h"
#include "../vmm/util.h"
#include "../vmm/vm.h"
#include "compress.h"
#include "delta.h"
#include "events.h"
#include "fence.h"
#include "primary.h"
#include "proto.h"

#include <errno.h>
#include <fcntl.h>
#include <libfdt.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/*
 * This file reads in the order mirroring runs:
 *   backup_mirror       pair (backup_accept, backup_pair.c), start hb_thread, run receive_loop, close
 *   receive_loop        the loop: one checksummed frame -> backup_apply_frame -> ack an epoch;
 *                       a BYE ends it, a failed or refused frame goes to link_lost
 *   backup_apply_frame  the initial sync (backup_sync_mem, backup_sync_disk) or an epoch
 *                       (backup_commit_epoch: epoch_parts checks it all, then pages, disk writes, state)
 *   the watchdog        hb_thread (heartbeats, the primary's BYE) and link_lost: whether to take over
 *   backup_outcome      how mirroring ended: nothing to run, or the last commit to take over
 * backup_init, backup_open_disks and backup_status serve the command (cmd/backup.c).
 */

static void *hb_thread(void *arg);
static int receive_loop(struct backup *b);
static void set_done(struct backup *b, const char *why);
static int link_lost(struct backup *b, const char *why);
static const char *refused(const struct backup *b, const struct ft_frame *f, int r);

/* ---- the loop --------------------------------------------------------------------------------- */

int backup_mirror(struct backup *b, int lfd)
{
	if (backup_accept(b, lfd)) {
		close(lfd);
		return -1;
	}
	close(lfd);
	warnx("backup: primary connected (%llu MiB, %u vCPUs, %u disks, %u NICs, pages %s%s): initial sync",
	      (unsigned long long)(b->machine.mem >> 20), b->machine.cpus, b->machine.ndisks, b->machine.nnics,
	      b->packed ? ft_codec_name(b->codec) : "whole", b->delta ? " + deltas" : "");
	pthread_create(&b->hb_thread, NULL, hb_thread, b);
	int gone = receive_loop(b);
	set_done(b, "receiver finished");
	pthread_join(b->hb_thread, NULL);
	ft_link_close(&b->data);
	ft_link_close(&b->hb);
	for (unsigned i = 0; i < b->machine.ndisks; i++)
		close(b->disk_fds[i]);
	ft_unpacker_free(&b->unpacker); /* the receive loop, its only user, is done */
	return gone;
}

/* Returns 0 when the primary's guest ended normally (BYE), 1 when the primary is gone. */
static int receive_loop(struct backup *b)
{
	for (;;) {
		struct ft_frame f;
		void *p;
		/* each frame no larger than this guest makes legitimate, refused before its payload is
		 * allocated (its checksum is only known once it is all here) */
		int r = ft_recv_data(&b->data, &f, &p, b->mem.npages, b->machine.cpus);
		if (r == -EBADMSG) {
			/* a corrupted epoch is never applied; the link itself is now untrustworthy */
			warnx("backup: corrupted frame rejected (%s); last commit %llu kept",
			      b->data.tls ? "TLS record MAC" : "checksum", (unsigned long long)b->committed);
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
		if (f.type == FT_EPOCH && ft_send_buf(&b->data, FT_ACK, f.seq, NULL, 0))
			return link_lost(b, "cannot ack");
	}
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

/* ---- the initial sync and the epochs: checked whole, then applied ------------------------------ */

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

#define PFN_FLAGS (FT_PFN_ZERO | FT_PFN_DELTA)

/* Every pfn of a batch inside guest RAM, with at most one of the flags in allowed (a packed epoch's may
 * carry FT_PFN_ZERO, and FT_PFN_DELTA where this pairing said so). n is at most the guest's page count (the
 * callers check that first), so this loop is bounded by the guest, not by the wire. */
static bool pages_fit(const struct backup *b, uint64_t n, const uint8_t *pfns, uint64_t allowed)
{
	for (uint64_t i = 0; i < n; i++) {
		uint64_t v = pfn_at(pfns, i), f = v & PFN_FLAGS;
		if ((v & ~allowed) >= b->mem.npages || (f & ~allowed) || f == PFN_FLAGS)
			return false;
	}
	return true;
}

/* The flags a packed epoch's pfns may carry on this pairing. */
static uint64_t packed_flags(const struct backup *b)
{
	return FT_PFN_ZERO | (b->delta ? FT_PFN_DELTA : 0);
}

/* The n pages at pfns, from pages one after the other; a pfn flagged FT_PFN_ZERO is a page of zeroes that
 * takes none of them, one flagged FT_PFN_DELTA a length word and a delta record applied to the page as it
 * is (only a packed epoch's pfns have flags, all checked by pages_fit and deltas_check). */
static void apply_pages(struct backup *b, uint64_t n, const uint8_t *pfns, const uint8_t *pages)
{
	for (uint64_t i = 0; i < n; i++) {
		uint64_t pfn = pfn_at(pfns, i);
		uint8_t *dst = b->mem.host + ((pfn & ~PFN_FLAGS) << PAGE_SHIFT);
		if (pfn & FT_PFN_ZERO) {
			memset(dst, 0, PAGE_SIZE);
			continue;
		}
		if (pfn & FT_PFN_DELTA) {
			size_t len = (size_t)pages[0] | (size_t)pages[1] << 8;
			ft_delta_apply(dst, pages + 2, len);
			pages += 2 + len;
			continue;
		}
		memcpy(dst, pages, PAGE_SIZE);
		pages += PAGE_SIZE;
	}
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
	if (!pages_fit(b, n, pfns, 0))
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

/* Where the parts of an epoch's payload lie, once every one of them is checked. */
struct epoch_parts {
	struct ft_epoch_hdr h;
	struct ft_pages_hdr ph; /* a packed epoch's */
	const uint8_t *pfns, *pages, *state, *disk; /* pages: the non-zero ones, one after the other */
	uint8_t *unpacked;      /* a compressed epoch's pages, decompressed (malloc'd: the caller frees it) */
	uint64_t ndelta;        /* a packed epoch's pfns with FT_PFN_DELTA */
};

/* How many of the n pfns carry flag. */
static uint64_t flagged(uint64_t n, const uint8_t *pfns, uint64_t flag)
{
	uint64_t z = 0;
	for (uint64_t i = 0; i < n; i++)
		z += (pfn_at(pfns, i) & flag) != 0;
	return z;
}

/* A packed epoch's page area (npages already bounded by the guest, its pfns inside it): the codec of the
 * HELLO, as many pfns flagged zero as nzero says, raw_len at most the other pages whole (so at most the
 * guest's memory: the bound of any allocation for them) and exactly that without deltas, a codec none
 * payload exactly raw_len, zero padding. (With deltas, deltas_check walks raw_len once it is unpacked.) */
static int packed_check(const struct backup *b, struct epoch_parts *e)
{
	const struct ft_pages_hdr *ph = &e->ph;
	uint64_t raw;
	if (ph->codec != b->codec || ph->reserved || ph->nzero > e->h.npages)
		return -EBADMSG;
	if (__builtin_mul_overflow(e->h.npages - ph->nzero, PAGE_SIZE, &raw) || raw > b->mem.npages * PAGE_SIZE)
		return -EBADMSG;
	if (flagged(e->h.npages, e->pfns, FT_PFN_ZERO) != ph->nzero)
		return -EBADMSG;
	e->ndelta = flagged(e->h.npages, e->pfns, FT_PFN_DELTA);
	if (e->ndelta ? ph->raw_len > raw : ph->raw_len != raw)
		return -EBADMSG;
	for (uint64_t i = ph->wire_len; i < FT_PAGES_PAD_TO(ph->wire_len); i++)
		if (e->pages[i])
			return -EBADMSG;
	return ph->codec == FT_CODEC_NONE && ph->wire_len != ph->raw_len ? -EBADMSG : 0;
}

/* An unpacked payload with deltas: for each pfn not zero, in order, a whole page or (FT_PFN_DELTA) a length
 * word and a record that ft_delta_valid accepts, all inside raw_len and filling it exactly. */
static int deltas_check(const struct epoch_parts *e)
{
	const uint64_t raw_len = e->ph.raw_len;
	uint64_t off = 0;
	for (uint64_t i = 0; i < e->h.npages; i++) {
		uint64_t pfn = pfn_at(e->pfns, i);
		if (pfn & FT_PFN_ZERO)
			continue;
		if (!(pfn & FT_PFN_DELTA)) {
			if (raw_len - off < PAGE_SIZE)
				return -EBADMSG;
			off += PAGE_SIZE;
			continue;
		}
		if (raw_len - off < 2)
			return -EBADMSG;
		size_t len = (size_t)e->pages[off] | (size_t)e->pages[off + 1] << 8;
		off += 2;
		if (len > FT_DELTA_MAX - 2 || len > raw_len - off || !ft_delta_valid(e->pages + off, len))
			return -EBADMSG;
		off += len;
	}
	return off == raw_len ? 0 : -EBADMSG;
}

/* A compressed epoch's pages into e->unpacked, the last check (its size was checked by packed_check): each
 * chunk inside the payload, decompressing to exactly its pages (with the backup's kept zstd context).
 * Codec none: the payload is the pages. */
static int unpack(struct backup *b, struct epoch_parts *e)
{
	if (e->ph.codec == FT_CODEC_NONE)
		return 0;
	uint8_t *u = malloc(e->ph.raw_len ? e->ph.raw_len : 1);
	if (!u)
		return -ENOMEM;
	int r = ft_unpack_pages(&b->unpacker, e->ph.codec, e->pages, e->ph.wire_len, u, e->ph.raw_len);
	if (r) {
		free(u);
		return r == -ENOMEM ? r : -EBADMSG;
	}
	e->unpacked = u;
	e->pages = u;
	return 0;
}

/* Everything checked before a byte is applied: the frame's flags and sizes in the layout its HELLO announced
 * (ft_epoch_check), its number, its pages inside guest RAM, a packed page area consistent and decompressing
 * exactly, a whole state fdt, every disk record in range. 0, -EBADMSG or -ERANGE (nothing allocated), -ENOMEM. */
static int epoch_parts(struct backup *b, uint64_t seq, const void *payload, size_t len, struct epoch_parts *e)
{
	struct ft_epoch_hdr *h = &e->h;
	e->unpacked = NULL;
	e->ndelta = 0;
	if (ft_epoch_check(payload, len, b->packed, h) || h->epoch != seq)
		return -EBADMSG;
	if (!b->have_baseline ? !(h->flags & FT_EPOCH_BASELINE) : h->epoch != b->committed + 1)
		return -EBADMSG;
	if (h->generation != b->gen) /* the fencing token: only the primary of the generation we paired with */
		return -EBADMSG;
	/* ft_epoch_check added these sizes up without overflow to exactly len: the areas lie inside it */
	const uint8_t *area = (const uint8_t *)payload + sizeof(*h);
	if (b->packed) {
		memcpy(&e->ph, area, sizeof(e->ph));
		area += sizeof(e->ph);
	}
	e->pfns = area;
	e->pages = e->pfns + h->npages * 8;
	e->state = e->pages + (b->packed ? FT_PAGES_PAD_TO(e->ph.wire_len) : h->npages * PAGE_SIZE);
	e->disk = e->state + h->state_len;
	if (h->npages > b->mem.npages || !pages_fit(b, h->npages, e->pfns, b->packed ? packed_flags(b) : 0))
		return -EBADMSG;
	if (b->packed && packed_check(b, e))
		return -EBADMSG;
	if (!fdtp_whole(e->state, h->state_len))
		return -EBADMSG;
	/* every disk record in range before anything is applied (ft_epoch_check saw that they tile disk_len) */
	for (uint64_t off = 0; off < h->disk_len;) {
		struct ft_disk_rec rec;
		memcpy(&rec, e->disk + off, sizeof(rec));
		if (!disk_rec_fits(b, &rec))
			return -ERANGE;
		off += sizeof(rec) + (rec.kind == FT_DISK_WRITE ? rec.len : 0);
	}
	if (!b->packed)
		return 0;
	int r = unpack(b, e);
	if (!r && e->ndelta && (r = deltas_check(e))) {
		free(e->unpacked);
		e->unpacked = NULL;
	}
	return r;
}

/* The epoch's disk writes onto this host's copies, then made durable. Only called once the epoch's
 * memory is applied, so a write that fails leaves nothing consistent to resume: fatal. */
static void apply_disk_log(struct backup *b, const struct ft_epoch_hdr *h, const uint8_t *disk)
{
	for (uint64_t off = 0; off < h->disk_len;) {
		struct ft_disk_rec rec;
		memcpy(&rec, disk + off, sizeof(rec));
		off += sizeof(rec);
		int r = apply_disk_rec(b, &rec, disk + off);
		if (r)
			die("backup: cannot write epoch %llu to the disk copy: %s", (unsigned long long)h->epoch,
			    strerror(-r));
		if (rec.kind == FT_DISK_WRITE)
			off += rec.len;
	}
	if (h->disk_len)
		for (unsigned i = 0; i < b->machine.ndisks; i++)
			fdatasync(b->disk_fds[i]);
}

/* The frame was fully received and its checksum verified; its sizes are checked here before a
 * single byte is applied, so a bad epoch leaves the last commit untouched. */
int backup_commit_epoch(struct backup *b, uint64_t seq, void *payload, size_t len)
{
	struct epoch_parts e;
	int r = epoch_parts(b, seq, payload, len, &e);
	if (r)
		return r;
	void *nstate = malloc(e.h.state_len);
	if (!nstate) {
		free(e.unpacked);
		return -ENOMEM;
	}
	memcpy(nstate, e.state, e.h.state_len);
	/* commit: memory, disks, then the state that describes them */
	apply_pages(b, e.h.npages, e.pfns, e.pages);
	free(e.unpacked);
	apply_disk_log(b, &e.h, e.disk);
	pthread_mutex_lock(&b->lock);
	free(b->state);
	b->state = nstate;
	b->committed = e.h.epoch;
	bool first = !b->have_baseline;
	b->have_baseline = true;
	pthread_mutex_unlock(&b->lock);
	if (first) {
		warnx("backup: baseline committed (epoch %llu): the guest is protected", (unsigned long long)e.h.epoch);
		ft_event_emit("protected", "\"role\":\"backup\",\"peer\":%s,\"generation\":%llu,\"epoch\":%llu",
			      FT_JSON_STR(b->peer), (unsigned long long)b->gen, (unsigned long long)e.h.epoch);
	}
	return 0;
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

/* ---- the watchdog: is the primary alive? ------------------------------------------------------ */

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
	ft_link_shutdown(&b->data); /* breaks the receive loop */
	ft_link_shutdown(&b->hb);
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
	if (ft_recv_hb(&b->hb, &f))
		return -1;
	if (f.type != FT_BYE)
		return 0;
	primary_runs_on(b, "the primary runs on without this backup");
	return 1;
}

/* Silence for the timeout: we take over. A primary that was only frozen (or whose link only stalled) finds
 * this in its socket before the close that follows, and stops instead of running a second copy: its own
 * clock cannot always tell that the freeze was long enough (ft/primary_link.c). A dead one never reads it. */
static void tell_takeover(struct backup *b)
{
	pthread_mutex_lock(&b->lock);
	uint64_t from = b->committed;
	pthread_mutex_unlock(&b->lock);
	(void)ft_send_buf(&b->hb, FT_TAKEOVER, from, NULL, 0);
}

static void *hb_thread(void *arg)
{
	struct backup *b = arg;
	uint64_t last_rx = now_ns(), next_tx = 0, prev = last_rx;
	bool was_synced = false;
	while (!finished(b)) {
		uint64_t now = now_ns();
		if (now >= next_tx) {
			if (ft_send_buf(&b->hb, FT_HEARTBEAT, now, NULL, 0)) {
				/* the primary may have said BYE and closed before we got to read it */
				int r = 0;
				while (r == 0 && ft_link_wait_in(&b->hb, 0) > 0)
					r = hb_read(b);
				if (r != 1)
					set_done(b, "heartbeat link broke");
				break;
			}
			next_tx = now + FT_HEARTBEAT_MS * 1000000ull;
		}
		int n = ft_link_wait_in(&b->hb, FT_HEARTBEAT_MS / 2); /* records TLS holds already count */
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
		pthread_mutex_lock(&b->lock);
		bool synced = b->have_baseline;
		pthread_mutex_unlock(&b->lock);
		/* before the baseline there is nothing to take over: see FT_SYNC_TIMEOUT_MIN_MS. The baseline's last bytes
		 * were the primary alive just now: a silence from before it is not judged by the shorter timeout. */
		if (synced && !was_synced)
			last_rx = MAX(last_rx, now_ns());
		was_synced = synced;
		if (now_ns() - last_rx > (synced ? b->timeout_ms : MAX(b->timeout_ms, FT_SYNC_TIMEOUT_MIN_MS)) * 1000000ull) {
			if (synced)
				tell_takeover(b);
			set_done(b, "no heartbeat from the primary");
			break;
		}
	}
	return NULL;
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
	ft_link_shutdown(&b->data); /* the primary sees it at once and answers on the heartbeat link */
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

/* ---- the backup's life, as the command layer drives it ----------------------------------------- */

/* Mirroring ended with nothing to take over (said on stderr already): the event, the memory freed. 1. */
static int not_taking_over(struct backup *b, const char *why)
{
	ft_event_emit("unprotected", "\"role\":\"backup\",\"peer\":%s,\"reason\":%s,\"was_protected\":%s,"
		      "\"action\":\"exit\"", FT_JSON_STR(b->peer), FT_JSON_STR(why), b->have_baseline ? "true" : "false");
	gmem_free(&b->mem);
	free(b->state);
	b->state = NULL;
	return 1;
}

/* takeover_won / takeover_lost, with the arbiter's outcome (generation 0 and no winner without one). */
static void say_takeover(struct backup *b, bool won)
{
	struct ft_fence_info fi;
	fence_info(b->fence, &fi);
	ft_event_emit(won ? "takeover_won" : "takeover_lost",
		      "\"role\":\"backup\",\"generation\":%llu,\"winner\":%s,\"epoch\":%llu,\"reason\":%s",
		      (unsigned long long)fi.winner_gen, FT_JSON_STR(fi.on ? fi.winner : NULL),
		      (unsigned long long)b->committed, FT_JSON_STR(b->why));
}

int backup_outcome(struct backup *b, int gone, struct backup_takeover *to)
{
	char why[400];
	if (!gone) {
		warnx("backup: the primary's guest shut down normally; nothing to take over");
		ft_event_emit("guest_ended", "\"role\":\"backup\",\"peer\":%s,\"reason\":\"the primary's guest shut "
			      "down\"", FT_JSON_STR(b->peer));
		gmem_free(&b->mem);
		return 0;
	}
	if (b->primary_alive) {
		snprintf(why, sizeof(why), "%s%s%s", b->link_why[0] ? b->link_why : b->why, b->link_why[0] ? "; " : "",
			 b->link_why[0] ? b->why : "");
		warnx("backup: the primary is alive and runs on unprotected (%s): not taking over", why);
		return not_taking_over(b, why);
	}
	if (!b->have_baseline) {
		snprintf(why, sizeof(why), "primary lost during the initial sync (%s)", b->why);
		warnx("backup: %s: no consistent state to resume", why);
		return not_taking_over(b, why);
	}
	uint64_t t0 = b->done_ns ? b->done_ns : now_ns();
	char won_in[64] = ""; /* with an arbiter, its share of the takeover: the claim's round trips to etcd */
	if (fence_on(b->fence)) {
		/* the primary may be alive on the other side of a partition, claiming too: one of us wins */
		warnx("backup: primary lost (%s): claiming generation %llu from the arbiter", b->why,
		      (unsigned long long)b->gen + 1);
		char who[192];
		uint64_t c0 = now_ns();
		if (fence_claim(b->fence, b->gen, NULL, NULL, who, sizeof(who)) != FENCE_WON) {
			warnx("backup: the arbiter is at %s: the primary went on alone; not taking over", who);
			say_takeover(b, false);
			gmem_free(&b->mem);
			free(b->state);
			return 1;
		}
		snprintf(won_in, sizeof(won_in), " (generation %llu won in %.1f ms)", (unsigned long long)b->gen + 1,
			 (double)(now_ns() - c0) / 1e6);
	}
	warnx("backup: primary lost (%s): taking over from epoch %llu%s", b->why, (unsigned long long)b->committed,
	      won_in);
	say_takeover(b, true);
	*to = (struct backup_takeover){ .state = b->state, .mem = &b->mem, .t0_ns = t0 };
	return BACKUP_TAKE_OVER;
}

void backup_init(struct backup *b)
{
	memset(b, 0, sizeof(*b));
	b->timeout_ms = FT_DEFAULT_TIMEOUT_MS;
	b->data = b->hb = (struct ft_link){ .fd = -1 };
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

/* Where mirroring is (b->lock held). Its links closed and done: it ended, and the command decides (a claim
 * from the arbiter may take a while) or exits. */
static const char *mirror_state(const struct backup *b)
{
	if (b->data.fd < 0)
		return b->done ? "ended" : "waiting-for-primary";
	return b->have_baseline ? "mirroring" : "initial-sync";
}

void backup_status(void *ctx, char *buf, size_t len)
{
	struct backup *b = ctx;
	pthread_mutex_lock(&b->lock);
	snprintf(buf, len, "state=%s protected=%s epoch=%llu last_commit=%llu link=%s", mirror_state(b),
		 b->have_baseline && !b->done ? "yes" : "no", (unsigned long long)b->committed,
		 (unsigned long long)b->committed, b->done || b->data.fd < 0 ? "down" : "up");
	pthread_mutex_unlock(&b->lock);
	size_t n = strlen(buf);
	if (n < len)
		fence_status(b->fence, buf + n, len - n);
}

void backup_info(struct backup *b, struct backup_info *i)
{
	memset(i, 0, sizeof(*i));
	pthread_mutex_lock(&b->lock);
	i->state = mirror_state(b);
	i->protected_ = b->have_baseline && !b->done;
	i->link_up = !b->done && b->data.fd >= 0;
	snprintf(i->peer, sizeof(i->peer), "%s", b->peer);
	i->last_commit = b->committed;
	snprintf(i->reason, sizeof(i->reason), "%s", b->done ? b->why : "");
	i->generation = b->gen;
	pthread_mutex_unlock(&b->lock);
}

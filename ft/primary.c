/* primary.c - the epoch engine: pause, harvest dirty pages, copy, capture state, resume, then stream while the guest runs. */
#include "primary.h"
#include "../devices/virtio_blk.h"
#include "../devices/virtio_net.h"
#include "../devices/tap.h"
#include "../devices/machine.h"
#include "../devices/platform.h"
#include "../vmm/util.h"
#include "../vmm/vcpu.h"
#include "../vmm/vm.h"
#include "hash.h"
#include "proto.h"
#include "state.h"

#include <errno.h>
#include <fcntl.h>
#include <libfdt.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <linux/kvm.h>
#include <sys/ioctl.h>
#include <sys/uio.h>
#include <unistd.h>

#define MAX_INFLIGHT_EPOCHS 3 /* staged but unacked: beyond this, checkpoints wait (the guest does not) */
#define PRECOPY_ROUNDS 5

struct ft_staged {
	struct ft_staged *next;
	struct ft_epoch_hdr hdr;
	uint8_t *pages;   /* from the pool: npages pages, then their npages pfns */
	uint64_t *pfns;   /* inside pages */
	size_t pages_cap; /* bytes of that pool buffer */
	void *state;
	uint8_t *disk;
	uint64_t disk_writes;
	/* telemetry */
	uint64_t t_start_ns, stop_ns, harvest_ns, copy_ns, state_ns, resume_ns, pause_ns;
	uint64_t sent_ns, bytes;
	uint64_t pkts_held;
};

/* A staging buffer of at least `bytes` (lock held by no one; takes p->lock). The smallest that fits. */
static uint8_t *pool_get(struct ft_primary *p, size_t bytes, size_t *cap)
{
	pthread_mutex_lock(&p->lock);
	int best = -1;
	for (unsigned i = 0; i < p->npool; i++)
		if (p->pool[i].cap >= bytes && (best < 0 || p->pool[i].cap < p->pool[best].cap))
			best = (int)i;
	if (best >= 0) {
		uint8_t *b = p->pool[best].p;
		*cap = p->pool[best].cap;
		p->pool[best] = p->pool[--p->npool];
		pthread_mutex_unlock(&p->lock);
		return b;
	}
	pthread_mutex_unlock(&p->lock);
	*cap = bytes;
	return malloc(bytes);
}

/* Keep a buffer for the next epochs; when the pool is full, the smallest goes. */
static void pool_put(struct ft_primary *p, uint8_t *b, size_t cap)
{
	if (!b)
		return;
	pthread_mutex_lock(&p->lock);
	if (p->npool < FT_POOL) {
		p->pool[p->npool++] = (struct ft_pagebuf){ b, cap };
		b = NULL;
	} else {
		unsigned small = 0;
		for (unsigned i = 1; i < p->npool; i++)
			if (p->pool[i].cap < p->pool[small].cap)
				small = i;
		if (p->pool[small].cap < cap) {
			uint8_t *old = p->pool[small].p;
			p->pool[small] = (struct ft_pagebuf){ b, cap };
			b = old;
		}
	}
	pthread_mutex_unlock(&p->lock);
	free(b);
}

static void pool_drain(struct ft_primary *p)
{
	for (unsigned i = 0; i < p->npool; i++)
		free(p->pool[i].p);
	p->npool = 0;
}

static void staged_free(struct ft_primary *p, struct ft_staged *s)
{
	if (!s)
		return;
	pool_put(p, s->pages, s->pages_cap);
	free(s->state);
	free(s->disk);
	free(s);
}

/* Was this process frozen for longer than the timeout just now? The heartbeat thread either saw the
 * gap already, or has not run since (all threads resume together; the engine may look first). */
static bool primary_was_frozen(struct ft_primary *p)
{
	uint64_t now = now_ns(), tmo = p->timeout_ms * 1000000ull;
	uint64_t tick = __atomic_load_n(&p->hb_tick_ns, __ATOMIC_ACQUIRE);
	uint64_t frozen = __atomic_load_n(&p->frozen_at_ns, __ATOMIC_ACQUIRE);
	return (tick && now - tick > tmo) || (frozen && now - frozen < 2 * tmo + 1000000000ull);
}

static int hb_send(struct ft_primary *p, enum ft_type type, uint64_t seq)
{
	pthread_mutex_lock(&p->hb_send_lock);
	int r = ft_send_buf(p->hb_fd, type, seq, NULL, 0);
	pthread_mutex_unlock(&p->hb_send_lock);
	return r;
}

/* First failure wins; everyone blocked on a socket is woken by the shutdown. Before that, a BYE on
 * the heartbeat link tells a backup that is still there (it rejected a corrupt epoch, or only the
 * data link broke) that this guest runs on: it must not take over, or two copies would run. */
static void mark_lost(struct ft_primary *p, const char *fmt, const char *detail)
{
	/* decided once, here: a primary that was frozen past the timeout stops (see the engine), so it must
	 * not tell a backup that may still be there to stand down */
	bool frozen = primary_was_frozen(p);
	pthread_mutex_lock(&p->lock);
	/* while stopping a failure is not `lost` (nothing goes unprotected, and no BYE: a planned
	 * failover's backup must still take over), but whoever waits for an ack must hear of it */
	bool first = !p->lost && !p->stop;
	if (first) {
		p->lost = true;
		p->fence = frozen;
		snprintf(p->lost_reason, sizeof(p->lost_reason), fmt, detail);
	}
	p->link_down = true;
	pthread_cond_broadcast(&p->cond);
	pthread_mutex_unlock(&p->lock);
	if (first && !frozen && p->hb_fd >= 0)
		(void)hb_send(p, FT_BYE, 1); /* fails harmlessly when the backup is dead */
	if (p->data_fd >= 0)
		shutdown(p->data_fd, SHUT_RDWR);
	if (p->hb_fd >= 0)
		shutdown(p->hb_fd, SHUT_RDWR);
}

/* The engine's test: no more periodic checkpoints. */
static bool should_quit(struct ft_primary *p)
{
	pthread_mutex_lock(&p->lock);
	bool q = p->stop || p->lost;
	pthread_mutex_unlock(&p->lock);
	return q;
}

/* The link threads' test: they outlive `stop` until `closing`, so a planned failover's last epoch
 * still goes out, gets its ack, and the backup keeps hearing heartbeats meanwhile. */
static bool links_done(struct ft_primary *p)
{
	pthread_mutex_lock(&p->lock);
	bool q = p->closing || p->lost || p->link_down;
	pthread_mutex_unlock(&p->lock);
	return q;
}

static int build_shape(struct ft_primary *p, void **out, size_t *len)
{
	size_t size = 16384;
	void *fdt = malloc(size);
	if (!fdt)
		return -ENOMEM;
	int r = fdt_create(fdt, (int)size);
	r |= fdt_finish_reservemap(fdt);
	r |= fdt_begin_node(fdt, "");
	r |= fdt_property_u64(fdt, "mem-size", p->vm->mem.size);
	r |= fdt_property_u32(fdt, "ncpus", p->vm->ncpus);
	r |= fdt_property_u32(fdt, "ndisks", p->plat->ndisks);
	r |= fdt_property_u32(fdt, "nnics", p->plat->nnics);
	r |= fdt_property(fdt, "disk-sizes", p->plat->disk_sizes, (int)(p->plat->ndisks * sizeof(uint64_t)));
	r |= fdt_property(fdt, "macs", p->plat->macs, (int)(p->plat->nnics * 6));
	r |= fdt_property_u32(fdt, "epoch-ms", p->epoch_ms);
	r |= fdt_end_node(fdt);
	r |= fdt_finish(fdt);
	if (r) {
		free(fdt);
		return -EINVAL;
	}
	*out = fdt;
	*len = fdt_totalsize(fdt);
	return 0;
}

/* ---- initial sync ---------------------------------------------------------------------- */

/* During the initial sync there is no epoch to carry the disk log: once it passes its soft limit, send
 * its records as FT_DISK frames (one record each), after every range already sent, so a long sync
 * of a busy guest never reaches DISKLOG_MAX_BYTES. */
static int flush_disklog(struct ft_primary *p)
{
	if (disklog_bytes(&p->disklog) < DISKLOG_SOFT_BYTES)
		return 0;
	uint8_t *buf;
	size_t len;
	uint64_t writes;
	int r = disklog_take(&p->disklog, &buf, &len, &writes);
	for (size_t off = 0; !r && off < len;) {
		struct ft_disk_rec rec;
		memcpy(&rec, buf + off, sizeof(rec)); /* well-formed: disklog_add wrote it */
		size_t data = rec.kind == FT_DISK_WRITE ? (size_t)rec.len : 0;
		struct iovec iov[2] = { { &rec, sizeof(rec) }, { buf + off + sizeof(rec), data } };
		r = ft_send(p->data_fd, FT_DISK, 0, iov, 2);
		off += sizeof(rec) + data;
	}
	free(buf);
	return r;
}

/* skip_zero: only for the first full pass; later a page that became zero must be sent too */
static int send_pages(struct ft_primary *p, const unsigned long *bm, bool skip_zero, uint64_t *sent)
{
	struct guest_mem *m = &p->vm->mem;
	enum { BATCH = 256 };
	uint64_t pfns[BATCH];
	/* The guest runs during the initial sync: copy each page before it is checksummed and sent, or
	 * the checksum would cover bytes that changed on the way. Later writes are in the dirty log. */
	uint8_t *buf = malloc(BATCH * PAGE_SIZE);
	if (!buf)
		return -ENOMEM;
	uint64_t n = 0;
	int r = 0;
	*sent = 0;
	for (uint64_t pg = 0; pg <= m->npages && !r; pg++) {
		if (pg < m->npages && (bm[pg / 64] & (1ul << (pg % 64)))) {
			uint8_t *hp = m->host + (pg << PAGE_SHIFT);
			memcpy(buf + n * PAGE_SIZE, hp, PAGE_SIZE);
			if (!skip_zero || !page_is_zero(buf + n * PAGE_SIZE))
				pfns[n++] = pg;
		}
		if (n == BATCH || (pg == m->npages && n)) {
			struct iovec iov[3] = { { &n, sizeof(n) }, { pfns, n * sizeof(uint64_t) }, { buf, n * PAGE_SIZE } };
			r = ft_send(p->data_fd, FT_MEM, 0, iov, 3);
			r = r ?: flush_disklog(p);
			*sent += n;
			n = 0;
		}
	}
	free(buf);
	return r;
}

static int send_disks(struct ft_primary *p)
{
	enum { CHUNK = 1 << 20 };
	uint8_t *buf = malloc(CHUNK);
	if (!buf)
		return -ENOMEM;
	int r = 0;
	for (unsigned d = 0; d < p->plat->ndisks && !r; d++) {
		int fd = open(p->machine->disks[d].path, O_RDONLY | O_CLOEXEC);
		if (fd < 0) {
			r = -errno;
			break;
		}
		for (uint64_t off = 0; off < p->plat->disk_sizes[d] && !r; off += CHUNK) {
			ssize_t n = pread(fd, buf, CHUNK, (off_t)off);
			if (n <= 0) {
				r = n < 0 ? -errno : -EIO;
				break;
			}
			bool zero = true;
			for (ssize_t i = 0; i < n && zero; i += 8)
				zero = *(uint64_t *)(buf + i) == 0;
			struct ft_disk_rec rec = { .disk = d, .kind = zero ? FT_DISK_ZERO : FT_DISK_WRITE, .off = off,
						   .len = (uint64_t)n };
			struct iovec iov[2] = { { &rec, sizeof(rec) }, { buf, zero ? 0 : (size_t)n } };
			r = ft_send(p->data_fd, FT_DISK, 0, iov, 2);
			r = r ?: flush_disklog(p);
		}
		close(fd);
	}
	free(buf);
	return r;
}

/* ---- one checkpoint -------------------------------------------------------------------- */

static struct ft_staged *checkpoint(struct ft_primary *p, uint64_t epoch, bool baseline, int *err)
{
	struct vm *vm = p->vm;
	struct guest_mem *m = &vm->mem;
	size_t words = gmem_bitmap_words(m->npages);
	struct ft_staged *s = calloc(1, sizeof(*s));
	if (!s) {
		*err = -ENOMEM;
		return NULL;
	}
	s->t_start_ns = now_ns();
	int r = vm_pause(vm);
	uint64_t t1 = now_ns();
	if (r) {
		free(s);
		*err = r;
		return NULL;
	}
	/* harvest: KVM's log of guest writes, OR the VMM's own writes (used rings, RX, disk reads) */
	r = vm_dirty_harvest(vm, p->dirty, p->devdirty);
	uint64_t guest = 0, dev = 0, n = 0;
	for (size_t i = 0; i < words; i++) {
		guest += (uint64_t)__builtin_popcountl(p->dirty[i]);
		dev += (uint64_t)__builtin_popcountl(p->devdirty[i] & ~p->dirty[i]);
		p->dirty[i] |= p->devdirty[i];
		n += (uint64_t)__builtin_popcountl(p->dirty[i]);
	}
	uint64_t t2 = now_ns();
	/* copy to staging so the guest may run on while the epoch streams; pages and pfns share one
	 * pooled buffer, which the sender gives back, so the pause reuses memory already faulted in */
	if (n) {
		s->pages = pool_get(p, n * (PAGE_SIZE + sizeof(uint64_t)), &s->pages_cap);
		s->pfns = s->pages ? (uint64_t *)(s->pages + n * PAGE_SIZE) : NULL;
	}
	if (!r && n && !s->pages)
		r = -ENOMEM;
	uint64_t k = 0;
	for (size_t i = 0; i < words && !r && s->pages; i++) {
		unsigned long w = p->dirty[i];
		while (w) {
			unsigned b = (unsigned)__builtin_ctzl(w);
			w &= w - 1;
			uint64_t pg = i * 64 + b;
			s->pfns[k] = pg;
			memcpy(s->pages + k * PAGE_SIZE, m->host + (pg << PAGE_SHIFT), PAGE_SIZE);
			k++;
		}
	}
	uint64_t t3 = now_ns();
	size_t state_len = 0;
	if (!r)
		r = state_capture(vm, p->machine, &s->state, &state_len);
	uint64_t t4 = now_ns();
	size_t disk_len = 0;
	int dr = disklog_take(&p->disklog, &s->disk, &disk_len, &s->disk_writes);
	if (!r && dr)
		r = dr;
	for (unsigned i = 0; i < p->nouts; i++) {
		s->pkts_held += outbuf_pending(&p->out[i]);
		outbuf_seal(&p->out[i], epoch);
	}
	vm_resume(vm);
	uint64_t t5 = now_ns();
	if (r) {
		staged_free(p, s);
		*err = r;
		return NULL;
	}
	s->hdr = (struct ft_epoch_hdr){ .epoch = epoch, .npages = n, .state_len = state_len, .disk_len = disk_len,
					.flags = baseline ? FT_EPOCH_BASELINE : 0, .guest_dirty = guest,
					.device_dirty = dev };
	s->stop_ns = t1 - s->t_start_ns;
	s->harvest_ns = t2 - t1;
	s->copy_ns = t3 - t2;
	s->state_ns = t4 - t3;
	s->resume_ns = t5 - t4;
	s->pause_ns = t5 - s->t_start_ns;
	s->bytes = sizeof(s->hdr) + n * (8 + PAGE_SIZE) + state_len + disk_len;
	return s;
}

static void enqueue(struct ft_primary *p, struct ft_staged *s)
{
	pthread_mutex_lock(&p->lock);
	if (p->sendq_tail)
		p->sendq_tail->next = s;
	else
		p->sendq = s;
	p->sendq_tail = s;
	p->sendq_len++;
	p->epoch = s->hdr.epoch;
	pthread_cond_broadcast(&p->cond);
	pthread_mutex_unlock(&p->lock);
}

/* ---- threads --------------------------------------------------------------------------- */

/* The next epoch to send, or NULL once the links close. Its epoch counts as sent from here on: the
 * backup may ack it before ft_send even returns. */
static struct ft_staged *next_to_send(struct ft_primary *p)
{
	pthread_mutex_lock(&p->lock);
	while (!p->sendq && !p->closing && !p->lost && !p->link_down)
		pthread_cond_wait(&p->cond, &p->lock);
	struct ft_staged *s = p->sendq;
	if (s && !p->lost && !p->link_down) {
		p->sendq = s->next;
		if (!p->sendq)
			p->sendq_tail = NULL;
		s->next = NULL;
		p->sent_hi = s->hdr.epoch;
		p->sent_any = true;
	} else {
		s = NULL;
	}
	pthread_mutex_unlock(&p->lock);
	return s;
}

static void write_stats(struct ft_primary *p, struct ft_staged *s, uint64_t ack_ns, uint64_t released);

/* The epoch is on the wire (or lost): its staging buffer goes back to the pool at once, the
 * telemetry waits for the ack, unless that ack already came. */
static void sent_done(struct ft_primary *p, struct ft_staged *s)
{
	pool_put(p, s->pages, s->pages_cap);
	free(s->state);
	free(s->disk);
	s->pages = NULL;
	s->pfns = NULL;
	s->state = NULL;
	s->disk = NULL;
	pthread_mutex_lock(&p->lock);
	bool acked = p->protected_ && s->hdr.epoch <= p->acked;
	if (acked) {
		if (p->sendq_len)
			p->sendq_len--;
		pthread_cond_broadcast(&p->cond);
	} else if (p->ackq_tail) {
		p->ackq_tail->next = s;
		p->ackq_tail = s;
	} else {
		p->ackq = p->ackq_tail = s;
	}
	pthread_mutex_unlock(&p->lock);
	if (acked) {
		write_stats(p, s, now_ns(), 0);
		staged_free(p, s);
	}
}

static void *sender_thread(void *arg)
{
	struct ft_primary *p = arg;
	struct ft_staged *s;
	while ((s = next_to_send(p))) {
		struct iovec iov[5] = {
			{ &s->hdr, sizeof(s->hdr) }, { s->pfns, s->hdr.npages * 8 }, { s->pages, s->hdr.npages * PAGE_SIZE },
			{ s->state, s->hdr.state_len }, { s->disk, s->hdr.disk_len },
		};
		s->sent_ns = now_ns();
		int r = ft_send(p->data_fd, FT_EPOCH, s->hdr.epoch, iov, 5);
		sent_done(p, s);
		if (r) {
			mark_lost(p, "sending an epoch failed: %s", strerror(-r));
			break;
		}
	}
	return NULL;
}

static void write_stats(struct ft_primary *p, struct ft_staged *s, uint64_t ack_ns, uint64_t released)
{
	if (!p->stats)
		return;
	fprintf(p->stats,
		"{\"epoch\":%llu,\"wall_ms\":%.3f,\"pause_us\":%.1f,\"stop_us\":%.1f,\"harvest_us\":%.1f,"
		"\"copy_us\":%.1f,\"state_us\":%.1f,\"resume_us\":%.1f,\"dirty_guest\":%llu,\"dirty_device\":%llu,\"pages\":%llu,"
		"\"bytes\":%llu,\"ack_latency_us\":%.1f,\"pkts_held\":%llu,\"pkts_released\":%llu,\"disk_writes\":%llu,"
		"\"baseline\":%s}\n",
		(unsigned long long)s->hdr.epoch, (double)(s->t_start_ns - p->started_ns) / 1e6, (double)s->pause_ns / 1e3,
		(double)s->stop_ns / 1e3, (double)s->harvest_ns / 1e3, (double)s->copy_ns / 1e3, (double)s->state_ns / 1e3,
		(double)s->resume_ns / 1e3,
		(unsigned long long)s->hdr.guest_dirty, (unsigned long long)s->hdr.device_dirty,
		(unsigned long long)s->hdr.npages, (unsigned long long)s->bytes, (double)(ack_ns - s->sent_ns) / 1e3,
		(unsigned long long)s->pkts_held, (unsigned long long)released, (unsigned long long)s->disk_writes,
		(s->hdr.flags & FT_EPOCH_BASELINE) ? "true" : "false");
	fflush(p->stats);
}

/* An ack must name an epoch that was sent and is newer than the last one acked (the first may be
 * the baseline, 0). Anything else is a protocol error: it proves nothing was committed. */
static bool ack_ok(struct ft_primary *p, uint64_t seq)
{
	return p->sent_any && seq <= p->sent_hi && (!p->protected_ || seq > p->acked);
}

/* Epoch `seq` is committed on the backup: its output (and all before it) may leave. false if the
 * ack is bogus; then nothing was released or changed. */
static bool take_ack(struct ft_primary *p, uint64_t seq)
{
	uint64_t now = now_ns();
	pthread_mutex_lock(&p->lock);
	if (!ack_ok(p, seq)) {
		pthread_mutex_unlock(&p->lock);
		return false;
	}
	pthread_mutex_unlock(&p->lock);
	uint64_t released = 0;
	for (unsigned i = 0; i < p->nouts; i++)
		released += outbuf_release(&p->out[i], seq);
	pthread_mutex_lock(&p->lock);
	bool first = !p->protected_;
	p->acked = seq;
	p->protected_ = true;
	p->last_commit_ns = now;
	struct ft_staged *done = NULL;
	while (p->ackq && p->ackq->hdr.epoch <= seq) {
		struct ft_staged *s = p->ackq;
		p->ackq = s->next;
		if (!p->ackq)
			p->ackq_tail = NULL;
		s->next = done;
		done = s;
		if (p->sendq_len)
			p->sendq_len--;
	}
	pthread_cond_broadcast(&p->cond);
	pthread_mutex_unlock(&p->lock);
	for (struct ft_staged *s = done; s;) {
		struct ft_staged *n = s->next;
		write_stats(p, s, now, released);
		released = 0;
		staged_free(p, s);
		s = n;
	}
	if (first)
		warnx("ft: baseline committed on the backup: guest is PROTECTED (epoch %u ms)", p->epoch_ms);
	return true;
}

static void *receiver_thread(void *arg)
{
	struct ft_primary *p = arg;
	for (;;) {
		struct ft_frame f;
		void *payload;
		int r = ft_recv(p->data_fd, &f, &payload);
		if (r) {
			if (!links_done(p))
				mark_lost(p, "connection to the backup broke: %s", strerror(-r));
			break;
		}
		free(payload);
		if (f.type != FT_ACK) {
			mark_lost(p, "backup sent an unexpected %s", ft_type_name(f.type));
			break;
		}
		if (!take_ack(p, f.seq)) {
			char what[64];
			snprintf(what, sizeof(what), "%llu", (unsigned long long)f.seq);
			mark_lost(p, "backup acked epoch %s, never sent or not newer than the last ack", what);
			break;
		}
	}
	return NULL;
}

/* ft_hb_clock, plus what the fencing decision needs: a freeze past the timeout means the backup may
 * have taken over meanwhile (primary_was_frozen). */
static void hb_clock(struct ft_primary *p, uint64_t *prev, uint64_t *last_rx)
{
	uint64_t t = now_ns();
	if (ft_hb_clock(t, prev, last_rx) > p->timeout_ms * 1000000ull)
		__atomic_store_n(&p->frozen_at_ns, t, __ATOMIC_RELEASE);
	__atomic_store_n(&p->hb_tick_ns, t, __ATOMIC_RELEASE);
}

static void *heartbeat_thread(void *arg)
{
	struct ft_primary *p = arg;
	uint64_t last_rx = now_ns(), next_tx = 0, prev = last_rx;
	__atomic_store_n(&p->hb_tick_ns, last_rx, __ATOMIC_RELEASE);
	while (!links_done(p)) {
		hb_clock(p, &prev, &last_rx);
		uint64_t now = now_ns();
		if (now >= next_tx) {
			if (hb_send(p, FT_HEARTBEAT, now)) {
				mark_lost(p, "heartbeat link broke%s", "");
				break;
			}
			next_tx = now + FT_HEARTBEAT_MS * 1000000ull;
		}
		struct pollfd pf = { .fd = p->hb_fd, .events = POLLIN };
		int n = poll(&pf, 1, FT_HEARTBEAT_MS / 2);
		hb_clock(p, &prev, &last_rx); /* a freeze most likely happened in poll: see it before reading */
		if (n > 0) {
			struct ft_frame f;
			void *pl;
			if (ft_recv(p->hb_fd, &f, &pl)) {
				if (!links_done(p))
					mark_lost(p, "heartbeat link closed by the backup%s", "");
				break;
			}
			free(pl);
			last_rx = now_ns();
		}
		if (now_ns() - last_rx > p->timeout_ms * 1000000ull) {
			mark_lost(p, "no heartbeat from the backup for %s", "the timeout");
			break;
		}
	}
	return NULL;
}

/* Back to running unprotected: stop holding output (release it all: there is no backup whose
 * state it must wait for), stop logging disk writes and dirty pages. Done with the VM paused so the
 * switch is atomic with respect to the guest. */
static void go_unprotected(struct ft_primary *p)
{
	if (vm_pause(p->vm) == 0) {
		for (unsigned i = 0; i < p->plat->nnics; i++)
			virtio_net_set_tx_sink(p->plat->nics[i], NULL);
		p->sinks_on = false;
		for (unsigned i = 0; i < p->plat->ndisks; i++)
			virtio_blk_set_write_hook(p->plat->disks[i], NULL, NULL);
		for (unsigned i = 0; i < p->nouts; i++)
			outbuf_release(&p->out[i], UINT64_MAX);
		vm_dirty_log_enable(p->vm, false);
		vm_resume(p->vm);
	}
}

static void nic_wake(void *nic)
{
	virtio_net_kick(nic);
}

/* The disk log passed its soft limit: cut the epoch short (the engine still honours back-pressure). */
static void disklog_full(void *ctx)
{
	struct ft_primary *p = ctx;
	pthread_mutex_lock(&p->lock);
	p->early = true;
	pthread_cond_broadcast(&p->cond);
	pthread_mutex_unlock(&p->lock);
}

/* Disk write hooks and the dirty log, switched on with the VM paused: a quiesced disk reaps nothing and
 * the hook runs at reap, so a write is either on the image before send_disks reads it or logged. */
static int start_logging(struct ft_primary *p)
{
	int r = vm_pause(p->vm);
	if (r)
		return r;
	p->disklog.full = disklog_full;
	p->disklog.full_ctx = p;
	for (unsigned i = 0; i < p->plat->ndisks; i++) {
		p->hooks[i] = (struct disklog_hook){ .log = &p->disklog, .disk = i };
		virtio_blk_set_write_hook(p->plat->disks[i], disklog_hook_fn, &p->hooks[i]);
	}
	r = vm_dirty_log_enable(p->vm, true);
	size_t words = gmem_bitmap_words(p->vm->mem.npages);
	memset(p->dirty, 0, words * sizeof(long));
	gmem_dirty_harvest(&p->vm->mem, p->dirty); /* old VMM writes: covered by the full copy */
	vm_resume(p->vm);
	return r;
}

static void *engine_thread(void *arg)
{
	struct ft_primary *p = arg;
	struct guest_mem *m = &p->vm->mem;
	size_t words = gmem_bitmap_words(m->npages);
	int r = 0;
	uint64_t sent = 0;

	/* Initial sync. Order matters: start logging disk writes and dirty pages first, then copy, so
	 * anything that changes during the copy is sent again afterwards. */
	r = start_logging(p);
	if (!r) {
		warnx("ft: initial sync to %s: disks", p->peer);
		r = send_disks(p);
	}
	if (!r) {
		memset(p->dirty, 0xff, words * sizeof(long));
		r = send_pages(p, p->dirty, true, &sent);
		warnx("ft: initial sync: memory round 0, %llu non-zero pages", (unsigned long long)sent);
	}
	for (int round = 1; !r && round <= PRECOPY_ROUNDS && !should_quit(p); round++) {
		r = vm_dirty_harvest(p->vm, p->dirty, p->dirty);
		if (!r)
			r = send_pages(p, p->dirty, false, &sent);
		warnx("ft: initial sync: memory round %d, %llu dirty pages", round, (unsigned long long)sent);
		if (sent < 256)
			break;
	}
	/* From the baseline on, guest output waits for the backup's ack. */
	if (!r && !should_quit(p)) {
		if (vm_pause(p->vm) == 0) {
			p->nouts = p->plat->nnics;
			for (unsigned i = 0; i < p->nouts; i++) {
				outbuf_init(&p->out[i], p->plat->tap_fds[i], 0);
				outbuf_set_wake(&p->out[i], nic_wake, p->plat->nics[i]);
				struct net_tx_sink sink = { .send = outbuf_sink_send, .ctx = &p->out[i] };
				virtio_net_set_tx_sink(p->plat->nics[i], &sink);
			}
			p->sinks_on = true;
			vm_resume(p->vm);
		}
	}
	uint64_t epoch = 0;
	uint64_t next = now_ns();
	while (!r && !should_quit(p)) {
		pthread_mutex_lock(&p->lock);
		while (!p->stop && !p->lost && p->sendq_len >= MAX_INFLIGHT_EPOCHS) /* backpressure */
			pthread_cond_wait(&p->cond, &p->lock);
		pthread_mutex_unlock(&p->lock);
		if (should_quit(p))
			break;
		pthread_mutex_lock(&p->lock);
		p->early = false;
		pthread_mutex_unlock(&p->lock);
		struct ft_staged *s = checkpoint(p, epoch, epoch == 0, &r);
		if (!s)
			break;
		enqueue(p, s); /* sendq_len counts epochs not yet acked: the receiver lowers it */
		epoch++;
		next += p->epoch_ms * 1000000ull;
		uint64_t now = now_ns();
		if (next < now)
			next = now; /* fell behind (slow link, big epoch): do not burst */
		pthread_mutex_lock(&p->lock);
		struct timespec ts;
		clock_gettime(CLOCK_MONOTONIC, &ts);
		uint64_t wait = next - now;
		ts.tv_sec += (time_t)(wait / 1000000000ull);
		ts.tv_nsec += (long)(wait % 1000000000ull);
		if (ts.tv_nsec >= 1000000000L) {
			ts.tv_sec++;
			ts.tv_nsec -= 1000000000L;
		}
		while (!p->stop && !p->lost && !p->early && pthread_cond_timedwait(&p->cond, &p->lock, &ts) != ETIMEDOUT)
			;
		pthread_mutex_unlock(&p->lock);
	}
	/* A pause refused because the VM is ending (the guest powered off, a stop request): not a replication
	 * failure. ft_primary_stop, called once the vCPUs are gone, tells the backup what happened (a BYE for a
	 * guest that ended, a last epoch for a planned failover); going unprotected here would tell it that the
	 * primary runs on, and the backup of a guest that shut down would exit 1 instead of 0. */
	if (r == -ECANCELED)
		r = 0;
	if (r && !should_quit(p))
		mark_lost(p, "replication failed: %s", r == -EFBIG ? "the guest wrote more to disk in one epoch than "
				"the disk log holds" : strerror(-r));
	pthread_mutex_lock(&p->lock);
	bool lost = p->lost, fence = p->fence;
	pthread_mutex_unlock(&p->lock);
	if (lost && fence) {
		/* Frozen past the timeout, then the backup is gone: it saw a dead primary and most likely
		 * runs the guest now. Running on here would make two copies: this one stops (fencing). */
		warnx("ft: this primary was frozen longer than the %u ms timeout and then lost its backup (%s): the "
		      "backup has most likely taken over; stopping this copy of the guest", p->timeout_ms, p->lost_reason);
		vm_request_exit(p->vm, VM_EXIT_ERROR);
	} else if (lost) {
		warnx("ft: backup lost (%s): guest continues UNPROTECTED", p->lost_reason);
		go_unprotected(p);
	}
	return NULL;
}

int ft_primary_start(struct ft_primary *p, struct vm *vm, struct platform *plat, const struct machine *machine,
		     const char *peer, unsigned epoch_ms, unsigned timeout_ms, const char *stats_path, char *err,
		     size_t errlen)
{
	memset(p, 0, sizeof(*p));
	p->vm = vm;
	p->plat = plat;
	p->machine = machine;
	p->epoch_ms = epoch_ms;
	p->timeout_ms = timeout_ms;
	p->data_fd = p->hb_fd = -1;
	snprintf(p->peer, sizeof(p->peer), "%s", peer);
	pthread_mutex_init(&p->lock, NULL);
	pthread_mutex_init(&p->hb_send_lock, NULL);
	pthread_condattr_t ca;
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&p->cond, &ca);
	pthread_condattr_destroy(&ca);
	disklog_init(&p->disklog);
	p->started_ns = now_ns();
	if (stats_path) {
		p->stats = fopen(stats_path, "w");
		if (!p->stats) {
			snprintf(err, errlen, "--stats %s: %s", stats_path, strerror(errno));
			return -errno;
		}
	}
	size_t words = gmem_bitmap_words(vm->mem.npages);
	p->dirty = calloc(words + 1, sizeof(unsigned long));
	p->devdirty = calloc(words + 1, sizeof(unsigned long));
	if (!p->dirty || !p->devdirty)
		return -ENOMEM;

	p->data_fd = ft_connect(peer, err, errlen);
	if (p->data_fd < 0)
		return p->data_fd;
	p->hb_fd = ft_connect(peer, err, errlen);
	if (p->hb_fd < 0)
		return p->hb_fd;
	/* a peer that accepts but never answers must not hang us: bound the handshake */
	struct timeval tv = { .tv_sec = timeout_ms / 1000, .tv_usec = (timeout_ms % 1000) * 1000 };
	setsockopt(p->data_fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	uint64_t session = now_ns() ^ ((uint64_t)getpid() << 32);
	void *shape;
	size_t shape_len;
	int r = build_shape(p, &shape, &shape_len);
	if (r)
		return r;
	r = ft_send_buf(p->data_fd, FT_HELLO, session, shape, shape_len);
	free(shape);
	if (!r)
		r = ft_send_buf(p->hb_fd, FT_HB_HELLO, session, NULL, 0);
	if (r) {
		snprintf(err, errlen, "backup %s: handshake failed: %s", peer, strerror(-r));
		return r;
	}
	struct ft_frame f;
	void *reply;
	r = ft_recv(p->data_fd, &f, &reply);
	if (r == -EPROTO || r == -EPROTONOSUPPORT) {
		snprintf(err, errlen, "backup %s speaks another protocol or version (%s)", peer,
			 r == -EPROTO ? "not ftvmm" : "ftvmm protocol version differs");
		return r;
	}
	if (r) {
		snprintf(err, errlen, "backup %s: no handshake reply: %s", peer,
			 r == -EAGAIN || r == -EWOULDBLOCK ? "timed out (is it an ftvmm backup?)" : strerror(-r));
		return r;
	}
	if (f.type == FT_HELLO_ERR) {
		snprintf(err, errlen, "backup %s refused: %.*s", peer, (int)MIN(f.len, 300u), (char *)reply);
		free(reply);
		return -EINVAL;
	}
	free(reply);
	if (f.type != FT_HELLO_OK) {
		snprintf(err, errlen, "backup %s: unexpected reply %s", peer, ft_type_name(f.type));
		return -EPROTO;
	}
	/* the handshake is over: from here on, waiting is the heartbeat's job */
	struct timeval none = { 0, 0 };
	setsockopt(p->data_fd, SOL_SOCKET, SO_RCVTIMEO, &none, sizeof(none));
	return 0;
}

int ft_primary_go(struct ft_primary *p)
{
	if (pthread_create(&p->receiver, NULL, receiver_thread, p) || pthread_create(&p->sender, NULL, sender_thread, p) ||
	    pthread_create(&p->heartbeat, NULL, heartbeat_thread, p) || pthread_create(&p->engine, NULL, engine_thread, p))
		return -EAGAIN;
	p->threads_started = true;
	return 0;
}

/* A vCPU that left its loop right after an I/O exit has that I/O half done inside KVM (an IN's
 * value not yet in RAX, RIP not past it). One KVM_RUN with immediate_exit set completes it without
 * entering the guest, so the state a last checkpoint reads is exact. vCPU threads are joined. */
static void settle_vcpus(struct vm *vm)
{
	for (unsigned i = 0; i < vm->ncpus; i++) {
		struct vcpu *v = &vm->vcpus[i];
		if (v->fd < 0 || !v->run || v->started)
			continue;
		__atomic_store_n(&v->run->immediate_exit, 1, __ATOMIC_RELEASE);
		if (ioctl(v->fd, KVM_RUN, 0) == 0 || errno != EINTR)
			debugx("ft: vcpu %u: completing its last exit: %s", i, strerror(errno));
	}
}

/* Planned failover: one last checkpoint of the stopped guest, and its ack awaited (at most the ft
 * timeout), so the output held for it may go out before the backup takes over. Nothing is lost
 * either way: an unacked epoch's output is dropped, the backup resumes from its last commit. */
static void handover(struct ft_primary *p)
{
	pthread_mutex_lock(&p->lock);
	bool ok = p->protected_ && !p->lost && !p->link_down;
	uint64_t last = p->epoch + 1;
	pthread_mutex_unlock(&p->lock);
	if (!ok)
		return;
	settle_vcpus(p->vm);
	int r = 0;
	struct ft_staged *s = checkpoint(p, last, false, &r);
	if (!s) {
		warnx("ft: planned failover: last checkpoint failed (%s); the backup resumes from its last commit",
		      strerror(-r));
		return;
	}
	enqueue(p, s);
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	ts.tv_sec += (time_t)(p->timeout_ms / 1000);
	ts.tv_nsec += (long)(p->timeout_ms % 1000) * 1000000L;
	if (ts.tv_nsec >= 1000000000L) {
		ts.tv_sec++;
		ts.tv_nsec -= 1000000000L;
	}
	pthread_mutex_lock(&p->lock);
	while (p->acked < last && !p->link_down && pthread_cond_timedwait(&p->cond, &p->lock, &ts) != ETIMEDOUT)
		;
	bool acked = p->acked >= last;
	pthread_mutex_unlock(&p->lock);
	warnx("ft: planned failover: last epoch %llu %s; the backup takes over", (unsigned long long)last,
	      acked ? "committed" : "not acked in time, its output is dropped");
}

static int refuse_send(void *ctx, const struct iovec *iov, int iovcnt)
{
	(void)ctx, (void)iov, (void)iovcnt;
	return -EAGAIN;
}

/* Output at the end: what the backup acked may leave (the receiver has released it already, this
 * only makes sure), the rest never does. The NICs still pointing at p->out are given a sink that
 * takes nothing, so no TX pass can reach the freed buffers nor send a later packet unheld. */
static void finish_output(struct ft_primary *p)
{
	uint64_t dropped = 0;
	for (unsigned i = 0; i < p->nouts; i++) {
		if (p->sinks_on) {
			struct net_tx_sink hold = { .send = refuse_send, .ctx = NULL };
			virtio_net_set_tx_sink(p->plat->nics[i], &hold);
		}
		if (p->protected_)
			outbuf_release(&p->out[i], p->acked);
		dropped += outbuf_discard(&p->out[i]);
		outbuf_destroy(&p->out[i]);
	}
	if (dropped)
		warnx("ft: %llu packets of unacknowledged epochs dropped", (unsigned long long)dropped);
	p->nouts = 0;
	p->sinks_on = false;
}

static void free_queues(struct ft_primary *p)
{
	while (p->sendq) {
		struct ft_staged *s = p->sendq;
		p->sendq = s->next;
		staged_free(p, s);
	}
	p->sendq_tail = NULL;
	while (p->ackq) {
		struct ft_staged *s = p->ackq;
		p->ackq = s->next;
		staged_free(p, s);
	}
	p->ackq_tail = NULL;
	pool_drain(p);
}

void ft_primary_stop(struct ft_primary *p, enum ft_stop why)
{
	if (!p->threads_started)
		goto close_fds;
	pthread_mutex_lock(&p->lock);
	bool was_lost = p->lost;
	p->stop = true;
	pthread_cond_broadcast(&p->cond);
	pthread_mutex_unlock(&p->lock);
	pthread_join(p->engine, NULL);
	if (why == FT_STOP_HANDOVER)
		handover(p);
	pthread_mutex_lock(&p->lock);
	p->closing = true;
	pthread_cond_broadcast(&p->cond);
	pthread_mutex_unlock(&p->lock);
	pthread_join(p->sender, NULL);
	/* tell the backup the guest is gone so it does not take over; then close */
	if (!was_lost && why == FT_STOP_GUEST_ENDED && p->data_fd >= 0)
		ft_send_buf(p->data_fd, FT_BYE, 0, NULL, 0);
	if (p->data_fd >= 0)
		shutdown(p->data_fd, SHUT_RDWR);
	if (p->hb_fd >= 0)
		shutdown(p->hb_fd, SHUT_RDWR);
	pthread_join(p->receiver, NULL);
	pthread_join(p->heartbeat, NULL);
	p->threads_started = false;
	finish_output(p);
	free_queues(p);
close_fds:
	if (p->data_fd >= 0)
		close(p->data_fd);
	if (p->hb_fd >= 0)
		close(p->hb_fd);
	p->data_fd = p->hb_fd = -1;
	if (p->stats)
		fclose(p->stats);
	p->stats = NULL;
	free(p->dirty);
	free(p->devdirty);
	p->dirty = p->devdirty = NULL;
	disklog_destroy(&p->disklog);
}

bool ft_primary_active(struct ft_primary *p)
{
	pthread_mutex_lock(&p->lock);
	bool a = p->threads_started && !p->lost && !p->stop;
	pthread_mutex_unlock(&p->lock);
	return a;
}

void ft_primary_status(void *ctx, char *buf, size_t len)
{
	struct ft_primary *p = ctx;
	if (!p->threads_started && !p->lost) {
		snprintf(buf, len, "protected=no");
		return;
	}
	pthread_mutex_lock(&p->lock);
	double since = p->last_commit_ns ? (double)(now_ns() - p->last_commit_ns) / 1e6 : -1;
	snprintf(buf, len, "protected=%s backup=%s epoch=%llu last_commit=%llu last_commit_ms_ago=%.0f link=%s%s%s",
		 p->protected_ && !p->lost ? "yes" : "no", p->peer, (unsigned long long)p->epoch,
		 (unsigned long long)p->acked, since, p->lost ? "down" : "up", p->lost ? " reason=" : "",
		 p->lost ? p->lost_reason : "");
	pthread_mutex_unlock(&p->lock);
}

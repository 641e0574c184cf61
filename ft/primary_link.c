/* primary_link.c - the primary's links to its backup: handshake, the sender, acks releasing output, heartbeats, the first failure. */
#include "primary_int.h"
#include "events.h"
#include "fence.h"
#include "../vmm/util.h"
#include "../vmm/vm.h"
#include "../devices/platform.h"
#include "tls.h"

#include <errno.h>
#include <libfdt.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/uio.h>
#include <unistd.h>

/*
 * Two TCP connections to the backup: the data link (HELLO with the VM's shape, then initial-sync
 * frames and epochs out, acks in) and the heartbeat link (heartbeats both ways, a BYE). Three threads
 * beside the engine (primary.c):
 *   sender     takes staged epochs off p->sendq, streams them, gives their pages back to the pool
 *   receiver   reads acks: an epoch committed on the backup releases its held output (take_ack)
 *   heartbeat  sends and watches heartbeats, and notices a freeze of this process
 * Any failure goes through primary_mark_lost: the first wins, the others only wake whoever waits.
 */

/* ---- what every thread tests: lost, stopping, closing ------------------------------------- */

/* Could the backup have heard no heartbeat for the timeout just now, and have taken over? It counts the
 * silence from the last heartbeat it got: so this measures from the last one sent, not from the heartbeat
 * thread's last loop (ft/frozen-primary, CI of dd95c4a: a SIGSTOP whose loop-to-loop gap was under the
 * timeout while the backup, whose last heartbeat was older, took over; the thawed primary ran on). Either
 * the heartbeat thread saw it already (frozen_at_ns, recent), or it has not sent since (all threads resume
 * together; another may look first), or the backup said so (FT_TAKEOVER). */
static bool primary_was_frozen(struct ft_primary *p)
{
	uint64_t now = now_ns(), tmo = p->timeout_ms * 1000000ull;
	uint64_t sent = __atomic_load_n(&p->hb_sent_ns, __ATOMIC_ACQUIRE);
	uint64_t frozen = __atomic_load_n(&p->frozen_at_ns, __ATOMIC_ACQUIRE);
	return (sent && now - sent > tmo) || (frozen && now - frozen < 2 * tmo + 1000000000ull) ||
	       __atomic_load_n(&p->took_over_from, __ATOMIC_ACQUIRE);
}

static int hb_send(struct ft_primary *p, enum ft_type type, uint64_t seq)
{
	pthread_mutex_lock(&p->hb_send_lock);
	int r = ft_send_buf(&p->hb, type, seq, NULL, 0);
	pthread_mutex_unlock(&p->hb_send_lock);
	return r;
}

/* First failure wins; everyone blocked on a socket is woken by the shutdown. Before that, a BYE on
 * the heartbeat link tells a backup that is still there (it rejected a corrupt epoch, or only the
 * data link broke) that this guest runs on: it must not take over, or two copies would run. */
void primary_mark_lost(struct ft_primary *p, const char *fmt, const char *detail)
{
	/* decided once, here: a primary that was frozen past the timeout stops (engine_end, primary.c), so it must
	 * not tell a backup that may still be there to stand down */
	bool frozen = primary_was_frozen(p);
	pthread_mutex_lock(&p->lock);
	/* while stopping a failure is not `lost` (nothing goes unprotected, and no BYE: a planned
	 * failover's backup must still take over), but whoever waits for an ack must hear of it */
	bool first = !p->lost && !p->stop;
	if (first) {
		p->lost = true;
		p->frozen_fence = frozen;
		snprintf(p->lost_reason, sizeof(p->lost_reason), fmt, detail);
	}
	p->link_down = true;
	pthread_cond_broadcast(&p->cond);
	pthread_mutex_unlock(&p->lock);
	if (first && !frozen && p->hb.fd >= 0)
		(void)hb_send(p, FT_BYE, 1); /* fails harmlessly when the backup is dead */
	ft_link_shutdown(&p->data);
	ft_link_shutdown(&p->hb);
}

/* The engine's test: no more periodic checkpoints. */
bool primary_should_quit(struct ft_primary *p)
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

/* ---- pairing ------------------------------------------------------------------------------ */

/* The VM's shape for the HELLO, which the backup checks against what it was given (backup_check_shape). */
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
	/* its epochs are packed (zero pages as a flag) in this codec: a backup that does not know it refuses, one
	 * that predates packed epochs ignores the property and answers without naming it back (read_reply) */
	r |= fdt_property_string(fdt, "compress", ft_codec_name(p->codec));
	/* pages may go as deltas (--delta-cache): a backup that applies them says "delta" back, one that does not
	 * know the property ignores it and gets no delta */
	if (p->packer.delta.nslots)
		r |= fdt_property_u64(fdt, "delta-cache", p->packer.delta.nslots * PAGE_SIZE);
	if (p->gen) { /* the fencing token, and the VM's name in the arbiter, which the backup's must match */
		r |= fdt_property_u64(fdt, "generation", p->gen);
		r |= fdt_property_string(fdt, "vm-name", p->fence->name);
	}
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

/* HELLO with the VM's shape on the data link and HB_HELLO on the heartbeat link, one session. */
static int send_hellos(struct ft_primary *p)
{
	uint64_t session = now_ns() ^ ((uint64_t)getpid() << 32);
	void *shape;
	size_t shape_len;
	int r = build_shape(p, &shape, &shape_len);
	if (r)
		return r;
	r = ft_send_buf(&p->data, FT_HELLO, session, shape, shape_len);
	free(shape);
	return r ? r : ft_send_buf(&p->hb, FT_HB_HELLO, session, NULL, 0);
}

/* HELLO_OK's text: "[arbiter G][ ]codec NAME[ delta]". With an arbiter the backup must claim before it takes over:
 * it says so, with our generation. It names our codec back: a backup that names none predates packed
 * epochs and would refuse the first one, so with codec none it gets the epochs of before, pages whole
 * (p->whole_pages), and with lz4 or zstd it is refused. 0, or -EINVAL (-EPROTO: another codec named back)
 * with one line in err. */
static int hello_ok_agrees(struct ft_primary *p, const char *reply, size_t len, const char *peer, char *err,
			   size_t errlen)
{
	/* the reply's arbiter part, and its codec after "codec " (none: an older backup) */
	size_t alen = len, clen = 0;
	const char *codec = NULL;
	for (size_t i = 0; !codec && i + 6 <= len; i++)
		if ((i == 0 || reply[i - 1] == ' ') && memcmp(reply + i, "codec ", 6) == 0) {
			codec = reply + i + 6;
			clen = len - i - 6;
			alen = i ? i - 1 : 0;
		}
	char arb[64] = "";
	if (p->gen)
		snprintf(arb, sizeof(arb), "arbiter %llu", (unsigned long long)p->gen);
	const char *mine = ft_codec_name(p->codec);
	if (alen != strlen(arb) || memcmp(reply, arb, alen) != 0) {
		snprintf(err, errlen, "backup %s %s", peer, p->gen ? "does not use the arbiter (start it with --arbiter "
			 "and --name): it could take over beside this primary" : "uses an arbiter: start this primary with "
			 "--arbiter and --name too");
		return -EINVAL;
	}
	p->whole_pages = false;
	/* " delta" after the codec's name: it applies the page deltas our HELLO offered */
	p->packer.delta_on = false;
	if (codec && clen > 6 && memcmp(codec + clen - 6, " delta", 6) == 0) {
		clen -= 6;
		p->packer.delta_on = p->packer.delta.nslots != 0;
	}
	if (!codec && p->codec == FT_CODEC_NONE) { /* an older backup, nothing to compress: the epochs of before */
		p->whole_pages = true;
		return 0;
	}
	if (!codec) {
		snprintf(err, errlen, "backup %s is an older ftvmm that cannot read this primary's compressed epochs "
			 "(--compress %s): upgrade it, or run with --compress none", peer, mine);
		return -EINVAL;
	}
	if (clen != strlen(mine) || memcmp(codec, mine, clen) != 0) {
		snprintf(err, errlen, "backup %s answered with another codec than --compress %s", peer, mine);
		return -EPROTO;
	}
	return 0;
}

/* The backup's answer to our HELLO: HELLO_OK, or why not (one line in err). */
static int read_reply(struct ft_primary *p, const char *peer, char *err, size_t errlen)
{
	struct ft_frame f;
	void *reply;
	/* HELLO_OK or HELLO_ERR is one short line: a larger frame is refused from its header, before allocating */
	int r = ft_recv_max(&p->data, &f, &reply, FT_MAX_HELLO_FRAME);
	if (r && p->data.tls && r != -EAGAIN && r != -EWOULDBLOCK) {
		/* TLS 1.3: the backup checks our certificate after our side of the handshake is done, so
		 * its refusal (an alert) arrives here */
		snprintf(err, errlen, "backup %s: no handshake reply over TLS: %s", peer, ft_tls_error(p->data.tls));
		return r;
	}
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
	if (f.type != FT_HELLO_OK) {
		free(reply);
		snprintf(err, errlen, "backup %s: unexpected reply %s", peer, ft_type_name(f.type));
		return -EPROTO;
	}
	int r2 = hello_ok_agrees(p, reply, f.len, peer, err, errlen);
	free(reply);
	return r2;
}

/* With credentials, one TLS session on each link: the backup must prove who it is (its certificate
 * against our CA and its name: --tls-peer, else the host we connect to; or the PSK) before a frame goes
 * out, and every ack and heartbeat read later comes through these sessions only. */
static int authenticate(struct ft_primary *p, const char *peer, char *err, size_t errlen)
{
	char host[256], port[16];
	if (ft_parse_hostport(peer, host, sizeof(host), port, sizeof(port)))
		return -EINVAL; /* ft_connect took it: cannot happen */
	struct ft_link *links[2] = { &p->data, &p->hb };
	for (int i = 0; i < 2; i++) {
		int r = ft_tls_new(p->tls, links[i]->fd, host, &links[i]->tls);
		if (r) {
			snprintf(err, errlen, "backup %s: cannot start TLS: %s", peer, strerror(-r));
			return r;
		}
		/* as the backup allows a new peer: the heartbeat timeout, but at least a second */
		r = ft_tls_handshake(links[i]->tls, MAX(p->timeout_ms, 1000u));
		if (r) {
			/* a backup without credentials reads our hello as a bad frame and hangs up */
			snprintf(err, errlen, "backup %s: TLS handshake failed: %s%s", peer, ft_tls_error(links[i]->tls),
				 r == -ECONNRESET ? " (is the backup without --tls-creds / --tls-psk?)" : "");
			return r;
		}
	}
	return 0;
}

int primary_connect(struct ft_primary *p, const char *peer, bool loopback_only, char *err, size_t errlen)
{
	p->data.fd = ft_connect(peer, loopback_only, err, errlen);
	if (p->data.fd < 0)
		return p->data.fd;
	p->hb.fd = ft_connect(peer, loopback_only, err, errlen);
	if (p->hb.fd < 0)
		return p->hb.fd;
	int r = p->tls ? authenticate(p, peer, err, errlen) : 0;
	if (r)
		return r;
	/* a peer that accepts but never answers must not hang us: bound the handshake */
	struct timeval tv = { .tv_sec = p->timeout_ms / 1000, .tv_usec = (p->timeout_ms % 1000) * 1000 };
	setsockopt(p->data.fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	r = send_hellos(p);
	if (r) {
		snprintf(err, errlen, "backup %s: handshake failed: %s", peer,
			 p->tls ? ft_tls_error(p->data.tls) : strerror(-r));
		return r;
	}
	r = read_reply(p, peer, err, errlen);
	if (r)
		return r;
	/* the handshake is over: from here on, waiting is the heartbeat's job */
	struct timeval none = { 0, 0 };
	setsockopt(p->data.fd, SOL_SOCKET, SO_RCVTIMEO, &none, sizeof(none));
	return 0;
}

/* ---- the sender ---------------------------------------------------------------------------- */

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

/* One JSON line per committed epoch (--stats). */
static void write_stats(struct ft_primary *p, struct ft_staged *s, uint64_t ack_ns, uint64_t released)
{
	if (!p->stats)
		return;
	fprintf(p->stats,
		"{\"epoch\":%llu,\"wall_ms\":%.3f,\"pause_us\":%.1f,\"stop_us\":%.1f,\"harvest_us\":%.1f,"
		"\"copy_us\":%.1f,\"state_us\":%.1f,\"resume_us\":%.1f,\"dirty_guest\":%llu,\"dirty_device\":%llu,\"pages\":%llu,"
		"\"bytes\":%llu,\"ack_latency_us\":%.1f,\"pkts_held\":%llu,\"pkts_released\":%llu,\"disk_writes\":%llu,"
		"\"baseline\":%s,\"compress\":\"%s\",\"raw_bytes\":%llu,\"wire_bytes\":%llu,\"zero_pages\":%llu,"
		"\"compress_us\":%.1f,\"checkpoint\":\"%s\",\"cow_faults\":%llu,\"cow_copy_us\":%.1f,\"delta_pages\":%llu,"
		"\"state_cpus_us\":%.1f,\"state_devices_us\":%.1f,\"state_finish_us\":%.1f,\"state_buf_us\":%.1f,\"state_tries\":%u,"
		"\"state_bytes\":%llu}\n",
		(unsigned long long)s->hdr.epoch, (double)(s->t_start_ns - p->started_ns) / 1e6, (double)s->pause_ns / 1e3,
		(double)s->stop_ns / 1e3, (double)s->harvest_ns / 1e3, (double)s->copy_ns / 1e3, (double)s->state_ns / 1e3,
		(double)s->resume_ns / 1e3,
		(unsigned long long)s->hdr.guest_dirty, (unsigned long long)s->hdr.device_dirty,
		(unsigned long long)s->hdr.npages, (unsigned long long)s->bytes, (double)(ack_ns - s->sent_ns) / 1e3,
		(unsigned long long)s->pkts_held, (unsigned long long)released, (unsigned long long)s->disk_writes,
		(s->hdr.flags & FT_EPOCH_BASELINE) ? "true" : "false", ft_codec_name(p->codec),
		(unsigned long long)(s->hdr.npages * PAGE_SIZE), (unsigned long long)s->wire_bytes,
		(unsigned long long)s->zero_pages, (double)s->compress_ns / 1e3, ft_ckpt_name(p->ckpt),
		(unsigned long long)s->cow_faults, (double)s->cow_ns / 1e3, (unsigned long long)s->delta_pages,
		(double)s->state_cpus_ns / 1e3, (double)s->state_devices_ns / 1e3, (double)s->state_finish_ns / 1e3,
		(double)s->state_buf_ns / 1e3, s->state_tries, (unsigned long long)s->hdr.state_len);
	fflush(p->stats);
}

/* The epoch is on the wire (or lost): its staging buffer goes back to the pool at once, the
 * telemetry waits for the ack, unless that ack already came. */
static void sent_done(struct ft_primary *p, struct ft_staged *s)
{
	primary_staged_release(p, s);
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
		primary_staged_free(p, s);
	}
}

/* CPU time of the calling thread (the sender's cost of packing an epoch, whatever else the host runs). */
static uint64_t thread_cpu_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* The FT_EPOCH frame of s from its n parts (s->bytes: their sum). */
static int send_parts(struct ft_primary *p, struct ft_staged *s, const struct iovec *iov, int n)
{
	s->bytes = 0;
	for (int i = 0; i < n; i++)
		s->bytes += iov[i].iov_len;
	/* on a TLS link this thread encrypts too */
	return ft_send(&p->data, FT_EPOCH, s->hdr.epoch, iov, n);
}

/* One staged epoch onto the data link, packed here, while the guest runs (the pause only copied): its
 * zero pages become flags on their pfns, the others are compressed with p->codec. To an older backup
 * (p->whole_pages) every page goes whole, as before packed epochs. */
static int send_epoch(struct ft_primary *p, struct ft_staged *s)
{
	if (p->ckpt == FT_CKPT_COW) {
		int r = cow_wait(&p->cow); /* its pages are in staging once the copier is done */
		if (r)
			return r;
	}
	if (p->whole_pages) {
		s->zero_pages = 0;
		s->delta_pages = 0;
		s->wire_bytes = s->hdr.npages * PAGE_SIZE;
		s->compress_ns = 0;
		const struct iovec whole[5] = {
			{ &s->hdr, sizeof(s->hdr) }, { s->pfns, s->hdr.npages * 8 }, { s->pages, s->hdr.npages * PAGE_SIZE },
			{ s->state, s->hdr.state_len }, { s->disk, s->hdr.disk_len },
		};
		return send_parts(p, s, whole, 5);
	}
	struct ft_pages_hdr ph;
	const uint8_t *payload;
	uint64_t t0 = thread_cpu_ns();
	if (s->hdr.flags & FT_EPOCH_BASELINE) /* a backup that has nothing yet: no delta against anything */
		ft_packer_forget(&p->packer);
	int r = ft_pack_pages(&p->packer, s->pages, s->pfns, s->hdr.npages, &ph, &payload);
	s->compress_ns = thread_cpu_ns() - t0;
	if (r)
		return r;
	s->hdr.flags |= FT_EPOCH_PACKED;
	s->zero_pages = ph.nzero;
	s->delta_pages = p->packer.ndelta;
	s->wire_bytes = ph.wire_len;
	static const uint8_t pad[8];
	const struct iovec iov[7] = {
		{ &s->hdr, sizeof(s->hdr) }, { &ph, sizeof(ph) }, { s->pfns, s->hdr.npages * 8 },
		{ (void *)payload, ph.wire_len }, { (void *)pad, FT_PAGES_PAD_TO(ph.wire_len) - ph.wire_len },
		{ s->state, s->hdr.state_len }, { s->disk, s->hdr.disk_len },
	};
	return send_parts(p, s, iov, 7);
}

void *primary_sender_thread(void *arg)
{
	struct ft_primary *p = arg;
	struct ft_staged *s;
	while ((s = next_to_send(p))) {
		s->sent_ns = now_ns(); /* the ack latency includes the packing: the output waits for it too */
		int r = send_epoch(p, s);
		sent_done(p, s);
		if (r) {
			primary_mark_lost(p, "sending an epoch failed: %s", strerror(-r));
			break;
		}
	}
	return NULL;
}

/* ---- the receiver: acks ---------------------------------------------------------------------- */

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
		primary_staged_free(p, s);
		s = n;
	}
	if (first) {
		warnx("ft: baseline committed on the backup: guest is PROTECTED (epoch %u ms)", p->epoch_ms);
		ft_event_emit("protected", "\"role\":\"primary\",\"peer\":%s,\"generation\":%llu,\"epoch\":%llu",
			      FT_JSON_STR(p->peer), (unsigned long long)p->gen, (unsigned long long)seq);
	}
	return true;
}

/* Acks read right after this process was frozen past the timeout may have waited in the socket while
 * the backup, hearing nothing, took over: releasing their output now would put the old copy's packets
 * (and its MAC) on the network after the takeover. So an ack waits until the freeze is old news
 * (primary_was_frozen turns false 2 timeouts after it) with the link still up; a backup that took over
 * has closed it or gone silent by then, the link is lost, this primary fences itself and its held
 * output is dropped. false: the links ended meanwhile (nothing released). */
static bool freeze_settled(struct ft_primary *p)
{
	bool gone = false;
	while (!gone && primary_was_frozen(p)) {
		struct timespec ts;
		primary_deadline_in(&ts, 50 * 1000000ull);
		pthread_mutex_lock(&p->lock);
		if (!p->closing && !p->lost && !p->link_down)
			pthread_cond_timedwait(&p->cond, &p->lock, &ts);
		gone = p->closing || p->lost || p->link_down; /* links_done */
		pthread_mutex_unlock(&p->lock);
	}
	return !gone;
}

void *primary_receiver_thread(void *arg)
{
	struct ft_primary *p = arg;
	for (;;) {
		struct ft_frame f;
		void *payload;
		int r = ft_recv(&p->data, &f, &payload);
		if (r) {
			if (!links_done(p))
				primary_mark_lost(p, "connection to the backup broke: %s", strerror(-r));
			break;
		}
		free(payload);
		if (f.type != FT_ACK) {
			primary_mark_lost(p, "backup sent an unexpected %s", ft_type_name(f.type));
			break;
		}
		if (!freeze_settled(p))
			break;
		if (!take_ack(p, f.seq)) {
			char what[64];
			snprintf(what, sizeof(what), "%llu", (unsigned long long)f.seq);
			primary_mark_lost(p, "backup acked epoch %s, never sent or not newer than the last ack", what);
			break;
		}
	}
	return NULL;
}

/* ---- heartbeats ------------------------------------------------------------------------------ */

/* What the fencing decision needs: no heartbeat out for the timeout means the backup may have taken over
 * meanwhile (primary_was_frozen). Called before every send and after every wait; frozen_at_ns is stored
 * before hb_sent_ns moves, so whoever sees the new send time also sees the freeze. */
static void hb_check_frozen(struct ft_primary *p)
{
	uint64_t t = now_ns(), sent = __atomic_load_n(&p->hb_sent_ns, __ATOMIC_RELAXED);
	if (t - sent > p->timeout_ms * 1000000ull)
		__atomic_store_n(&p->frozen_at_ns, t, __ATOMIC_RELEASE);
}

static int hb_send_heartbeat(struct ft_primary *p)
{
	int r = hb_send(p, FT_HEARTBEAT, now_ns());
	if (!r) {
		hb_check_frozen(p); /* the freeze may have come between the last check and this send */
		__atomic_store_n(&p->hb_sent_ns, now_ns(), __ATOMIC_RELEASE);
	}
	return r;
}

/* The backup said it takes over: this copy must stop (engine_end, primary_fenced), whatever its own clock says,
 * and whichever thread marked the loss first. */
static void hb_took_over(struct ft_primary *p, uint64_t from)
{
	__atomic_store_n(&p->took_over_from, from + 1, __ATOMIC_RELEASE);
	char what[64];
	snprintf(what, sizeof(what), "%llu", (unsigned long long)from);
	primary_mark_lost(p, "the backup took over (its last commit: epoch %s)", what);
}

/* After every wait: a stall of this process is not the backup's silence (ft_hb_clock), and may be a freeze
 * the backup took for a death (hb_check_frozen). */
static void hb_clock(struct ft_primary *p, uint64_t *prev, uint64_t *last_rx)
{
	hb_check_frozen(p);
	ft_hb_clock(now_ns(), prev, last_rx);
}

/* One frame off the heartbeat link: 0 read (a heartbeat), 1 the backup's FT_TAKEOVER, -1 the link failed. */
static int hb_read(struct ft_primary *p)
{
	struct ft_frame f;
	if (ft_recv_hb(&p->hb, &f))
		return -1;
	if (f.type != FT_TAKEOVER)
		return 0;
	hb_took_over(p, f.seq);
	return 1;
}

/* The links are down: what the backup wrote before its close may still wait in the socket (our shutdown
 * leaves received bytes readable), its FT_TAKEOVER among them. Read it before engine_end decides. */
static void hb_end(struct ft_primary *p)
{
	for (int i = 0; i < 256 && ft_link_wait_in(&p->hb, 0) > 0; i++)
		if (hb_read(p))
			break;
	pthread_mutex_lock(&p->lock);
	p->hb_ended = true;
	pthread_cond_broadcast(&p->cond);
	pthread_mutex_unlock(&p->lock);
}

/* The backup's silence that means it is gone: the timeout, or FT_SYNC_TIMEOUT_MIN_MS while the initial sync runs. */
static uint64_t hb_timeout_ns(struct ft_primary *p, bool *synced)
{
	pthread_mutex_lock(&p->lock);
	*synced = p->protected_;
	pthread_mutex_unlock(&p->lock);
	return (*synced ? p->timeout_ms : MAX(p->timeout_ms, FT_SYNC_TIMEOUT_MIN_MS)) * 1000000ull;
}

void *primary_heartbeat_thread(void *arg)
{
	struct ft_primary *p = arg;
	uint64_t last_rx = now_ns(), next_tx = 0, prev = last_rx;
	bool was_synced = false, synced;
	__atomic_store_n(&p->hb_sent_ns, last_rx, __ATOMIC_RELEASE);
	while (!links_done(p)) {
		hb_clock(p, &prev, &last_rx);
		uint64_t now = now_ns();
		if (now >= next_tx) {
			if (hb_send_heartbeat(p)) {
				primary_mark_lost(p, "heartbeat link broke%s", "");
				break;
			}
			next_tx = now + FT_HEARTBEAT_MS * 1000000ull;
		}
		/* records TLS holds already count: poll on the fd alone would not see them */
		int n = ft_link_wait_in(&p->hb, FT_HEARTBEAT_MS / 2);
		hb_clock(p, &prev, &last_rx); /* a freeze most likely happened in poll: see it before reading */
		if (n > 0) {
			int r = hb_read(p);
			if (r < 0 && !links_done(p))
				primary_mark_lost(p, "heartbeat link closed by the backup%s", "");
			if (r)
				break;
			last_rx = now_ns();
		}
		uint64_t tmo = hb_timeout_ns(p, &synced);
		if (synced && !was_synced) /* the baseline's ack was the backup alive just now (see FT_SYNC_TIMEOUT_MIN_MS) */
			last_rx = MAX(last_rx, now_ns());
		was_synced = synced;
		if (now_ns() - last_rx > tmo) {
			primary_mark_lost(p, "no heartbeat from the backup for %s", "the timeout");
			break;
		}
	}
	hb_end(p);
	return NULL;
}

/* virtio_blk.c - virtio-blk: request parsing and checks, the io_uring data path, quiesce and resume. */
#include "virtio_blk.h"
#include "virtio_blk_int.h"

#include <endian.h>
#include <errno.h>
#include <linux/falloc.h>
#include <linux/virtio_blk.h>
#include <linux/virtio_ids.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <unistd.h>

#include "../vmm/util.h"

/*
 * Locking: b->lock serialises everything on the data path (popping the queue, the in-flight table,
 * the io_uring, pushing used entries). d->lock is never taken here: the transport may hold it while
 * calling virtio_dev_reset() -> blk_reset(), which takes b->lock. Interrupts (queue, and the config
 * one for NEEDS_RESET) are raised with b->lock dropped, so the transport's callbacks may take its own
 * locks; `notifying` lets quiesce wait for such a call in progress, so none escapes after it returns.
 *
 * Data path: readv/writev iovecs point straight into guest memory (buffered I/O, so no alignment
 * demands on the guest). A request stays in b->inflight[head] until its CQE is reaped, which also
 * catches a driver that makes a head available again while it is still in flight.
 *
 * Quiesce does not wait for I/O (an fsync or a big fallocate on a slow disk would stretch the pause
 * without bound): it stops reaping instead. A completion is only ever handled outside a pause, so it
 * writes guest memory, raises interrupts and reaches the FT write hook in the epoch after the
 * checkpoint. Requests still in flight belong to the saved state ("blk-inflight", their heads in
 * submission order) and a restore re-submits them, as QEMU does.
 */

#define MAX_DISCARD_SECTORS (1u << 22) /* 2 GiB per request keeps one fallocate short */
#define MAX_RETRIES 8

/* dst[] = the bytes [skip, skip+len) of src[]; returns the segment count (<= n). */
static unsigned iov_slice(const struct iovec *src, unsigned n, uint64_t skip, uint64_t len, struct iovec *dst)
{
	unsigned k = 0;
	for (unsigned i = 0; i < n && len; i++) {
		if (skip >= src[i].iov_len) {
			skip -= src[i].iov_len;
			continue;
		}
		uint64_t c = MIN((uint64_t)src[i].iov_len - skip, len);
		dst[k].iov_base = (uint8_t *)src[i].iov_base + skip;
		dst[k].iov_len = c;
		k++;
		len -= c;
		skip = 0;
	}
	return k;
}

static void iov_advance(struct blk_req *req, uint64_t bytes)
{
	while (req->ncur && bytes >= req->cur->iov_len) {
		bytes -= req->cur->iov_len;
		req->cur++;
		req->ncur--;
	}
	if (req->ncur && bytes) {
		req->cur->iov_base = (uint8_t *)req->cur->iov_base + bytes;
		req->cur->iov_len -= bytes;
	}
}

/* Status byte, then the used entry. Lock held. */
static void blk_finish(struct virtio_blk *b, uint16_t head, uint8_t *status, uint8_t st, uint32_t used_len)
{
	*status = st;
	gmem_mark_dirty_host(b->dev.mem, status, 1);
	if (vq_push_used(&b->dev.vqs[0], head, used_len) == 0)
		b->pushed = true;
}

static void blk_req_done(struct virtio_blk *b, struct blk_req *req, uint8_t st)
{
	/* A read lands in guest memory even when it fails half way: mark every data byte it may have
	 * touched, success or not, and even when the result is discarded by a reset. */
	if (req->op == OP_READ)
		gmem_mark_iov(b->dev.mem, req->iov, req->niov, req->len);
	if (!b->dropping) {
		uint32_t used = 1 + (req->op == OP_READ && st == VIRTIO_BLK_S_OK ? (uint32_t)req->len : 0);
		blk_finish(b, req->head, req->status, st, used);
	}
	b->inflight[req->head] = NULL;
	b->ninflight--;
	if (req->op == OP_WRITE)
		b->wbytes_inflight -= req->len;
	free(req);
}

static int blk_submit_one(struct virtio_blk *b, struct blk_req *req)
{
	switch (req->op) {
	case OP_READ:
		return blk_backend_readv(&b->be, req->cur, req->ncur, req->off + req->done, req);
	case OP_WRITE:
		return blk_backend_writev(&b->be, req->cur, req->ncur, req->off + req->done, req);
	case OP_FLUSH:
		return blk_backend_fsync(&b->be, req);
	default:
		return blk_backend_fallocate(&b->be, req->falloc_mode, req->off, req->len, req);
	}
}

/* FT: replicate results, not requests. A write's CQE covers res bytes at off + done from cur (not
 * yet advanced); a zeroing counts only if its fallocate worked (a refused discard keeps the data,
 * and a punched hole reads back as zeros). Failures, and the retries after them, add nothing. */
static void blk_replicate(struct virtio_blk *b, const struct blk_req *req, int res)
{
	if (!b->write_hook || res < 0)
		return;
	if (req->op == OP_WRITE && res > 0)
		b->write_hook(b->write_hook_ctx, req->off + req->done, req->cur, req->ncur, (uint64_t)res, false);
	else if ((req->op == OP_DISCARD || req->op == OP_WRITE_ZEROES) && res == 0)
		b->write_hook(b->write_hook_ctx, req->off, NULL, 0, req->len, true);
}

/* One io_uring completion. Lock held. */
static void blk_on_cqe(void *ctx, void *tag, int res)
{
	struct virtio_blk *b = ctx;
	struct blk_req *req = tag;

	blk_replicate(b, req, res); /* also while dropping: the image changed all the same */
	if (b->dropping) {
		blk_req_done(b, req, VIRTIO_BLK_S_IOERR);
		return;
	}
	if ((res == -EAGAIN || res == -EINTR) && req->retries++ < MAX_RETRIES) {
		if (blk_submit_one(b, req) == 0)
			return;
		res = -EIO;
	}
	switch (req->op) {
	case OP_READ:
	case OP_WRITE:
		if (res <= 0) /* 0: the image shrank under us; never report a partial transfer as done */
			break;
		req->done += (uint64_t)res;
		if (req->done >= req->len) {
			blk_req_done(b, req, VIRTIO_BLK_S_OK);
			return;
		}
		iov_advance(req, (uint64_t)res);
		if (blk_submit_one(b, req) == 0)
			return;
		res = -EIO;
		break;
	case OP_DISCARD:
		if (res == -EOPNOTSUPP) /* discard is a hint: the data may stay */
			res = 0;
		break;
	case OP_WRITE_ZEROES:
		if (res == -EOPNOTSUPP && !req->fallback_tried) {
			/* e.g. tmpfs has no ZERO_RANGE; a punched hole reads back as zeroes too */
			req->fallback_tried = true;
			req->falloc_mode = (req->falloc_mode & FALLOC_FL_PUNCH_HOLE)
						   ? FALLOC_FL_ZERO_RANGE | FALLOC_FL_KEEP_SIZE
						   : FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE;
			if (blk_submit_one(b, req) == 0)
				return;
			res = -EIO;
		}
		break;
	default:
		break;
	}
	if (res < 0 && !b->warned_io) {
		/* Once per device: a failing host disk must be visible without flooding the log. */
		b->warned_io = true;
		warnx("%s: host I/O error (%s); the guest gets IOERR", b->name, strerror(-res));
	}
	blk_req_done(b, req, res < 0 || (res == 0 && req->op <= OP_WRITE) ? VIRTIO_BLK_S_IOERR : VIRTIO_BLK_S_OK);
}

static bool blk_range_ok(const struct virtio_blk *b, uint64_t sector, uint64_t bytes)
{
	uint64_t cap = b->be.size / SECTOR;
	return sector <= cap && bytes / SECTOR <= cap - sector;
}

/* Discard / write-zeroes: one segment (max_*_seg = 1). Returns a status, or 0xff if submitted. */
static uint8_t blk_start_falloc(struct virtio_blk *b, const struct vq_req *r, uint8_t op, struct blk_req **out)
{
	struct virtio_blk_discard_write_zeroes seg;
	uint64_t hdr = sizeof(struct virtio_blk_outhdr);

	if (b->be.ro || r->out_len - hdr != sizeof(seg))
		return VIRTIO_BLK_S_IOERR;
	vq_iov_to_buf(r->iov, r->nout, hdr, &seg, sizeof(seg));
	uint64_t sector = le64toh(seg.sector);
	uint32_t num = le32toh(seg.num_sectors), flags = le32toh(seg.flags);
	if (flags & ~VIRTIO_BLK_WRITE_ZEROES_FLAG_UNMAP || (op == OP_DISCARD && flags))
		return VIRTIO_BLK_S_UNSUPP;
	if (num > MAX_DISCARD_SECTORS || !blk_range_ok(b, sector, (uint64_t)num * SECTOR))
		return VIRTIO_BLK_S_IOERR;
	if (num == 0)
		return VIRTIO_BLK_S_OK;
	struct blk_req *req = calloc(1, sizeof(*req));
	if (!req)
		return VIRTIO_BLK_S_IOERR;
	req->op = op;
	req->off = sector * SECTOR;
	req->len = (uint64_t)num * SECTOR;
	req->falloc_mode = (op == OP_DISCARD || (flags & VIRTIO_BLK_WRITE_ZEROES_FLAG_UNMAP))
				   ? FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE
				   : FALLOC_FL_ZERO_RANGE | FALLOC_FL_KEEP_SIZE;
	*out = req;
	return 0xff;
}

/* Read/write: the data segments go straight to io_uring, pointing into guest memory. */
static uint8_t blk_start_rw(struct virtio_blk *b, const struct vq_req *r, bool write, uint64_t sector,
			    struct blk_req **out)
{
	uint64_t hdr = sizeof(struct virtio_blk_outhdr);
	const struct iovec *src = write ? r->iov : r->iov + r->nout;
	unsigned nsrc = write ? r->nout : r->nin;
	uint64_t skip = write ? hdr : 0;
	uint64_t len = write ? r->out_len - hdr : r->in_len - 1;

	if (write && b->be.ro)
		return VIRTIO_BLK_S_IOERR; /* F_RO: fail without touching the image */
	if (len % SECTOR || !blk_range_ok(b, sector, len))
		return VIRTIO_BLK_S_IOERR;
	if (len == 0)
		return VIRTIO_BLK_S_OK;
	struct blk_req *req = malloc(sizeof(*req) + 2 * nsrc * sizeof(struct iovec));
	if (!req)
		return VIRTIO_BLK_S_IOERR;
	memset(req, 0, sizeof(*req));
	req->op = write ? OP_WRITE : OP_READ;
	req->off = sector * SECTOR;
	req->len = len;
	req->niov = iov_slice(src, nsrc, skip, len, req->iov);
	req->cur = req->iov + req->niov;
	req->ncur = req->niov;
	memcpy(req->cur, req->iov, req->niov * sizeof(struct iovec));
	*out = req;
	return 0xff;
}

/* Parse one popped chain and either finish it now or put it in flight. Lock held.
 * Returns -EINVAL if the chain is malformed beyond what a status byte can report. */
static int blk_start(struct virtio_blk *b, const struct vq_req *r)
{
	struct virtio_blk_outhdr hdr;
	struct blk_req *req = NULL;
	uint8_t st;

	/* No writable byte: nowhere to put a status. A head still in flight: the driver reused it. */
	if (r->nin == 0 || b->inflight[r->head])
		return -EINVAL;
	const struct iovec *last = &r->iov[r->nout + r->nin - 1];
	uint8_t *status = (uint8_t *)last->iov_base + last->iov_len - 1;
	uint32_t used = 1;

	if (r->out_len < sizeof(hdr)) {
		st = VIRTIO_BLK_S_IOERR;
		goto now;
	}
	vq_iov_to_buf(r->iov, r->nout, 0, &hdr, sizeof(hdr));
	uint32_t type = le32toh(hdr.type);
	uint64_t sector = le64toh(hdr.sector);
	switch (type) {
	case VIRTIO_BLK_T_IN:
	case VIRTIO_BLK_T_OUT:
		st = blk_start_rw(b, r, type == VIRTIO_BLK_T_OUT, sector, &req);
		break;
	case VIRTIO_BLK_T_FLUSH:
		req = calloc(1, sizeof(*req));
		st = req ? 0xff : VIRTIO_BLK_S_IOERR;
		if (req)
			req->op = OP_FLUSH;
		break;
	case VIRTIO_BLK_T_GET_ID: {
		size_t n = vq_buf_to_iov(r->iov + r->nout, r->nin, 0, b->serial, MIN(r->in_len - 1, VIRTIO_BLK_ID_LEN));
		gmem_mark_iov(b->dev.mem, r->iov + r->nout, r->nin, n);
		used += (uint32_t)n;
		st = VIRTIO_BLK_S_OK;
		break;
	}
	case VIRTIO_BLK_T_DISCARD:
	case VIRTIO_BLK_T_WRITE_ZEROES:
		if (!(b->dev.host_features & (1ull << (type == VIRTIO_BLK_T_DISCARD ? VIRTIO_BLK_F_DISCARD
										 : VIRTIO_BLK_F_WRITE_ZEROES)))) {
			st = VIRTIO_BLK_S_UNSUPP;
			break;
		}
		st = blk_start_falloc(b, r, type == VIRTIO_BLK_T_DISCARD ? OP_DISCARD : OP_WRITE_ZEROES, &req);
		break;
	default:
		st = VIRTIO_BLK_S_UNSUPP;
		break;
	}
	if (st == 0xff) {
		req->head = r->head;
		req->status = status;
		if (blk_submit_one(b, req) == 0) {
			req->seq = b->next_seq++;
			b->inflight[r->head] = req;
			b->ninflight++;
			if (req->op == OP_WRITE)
				b->wbytes_inflight += req->len;
			return 0;
		}
		free(req);
		st = VIRTIO_BLK_S_IOERR;
	}
now:
	blk_finish(b, r->head, status, st, used);
	return 0;
}

/* Malformed ring or chain: stop this queue until the driver resets the device. Lock held. */
static void blk_break(struct virtio_blk *b)
{
	b->dev.vqs[0].broken = true;
	b->want_reset = true; /* raised with the lock dropped: notify_config may take d->lock */
}

/*
 * Lock held, running. Re-submit the requests the restored checkpoint had in flight: the driver
 * popped them before it (last_avail already counts them) and waits for their used entries. Their
 * chains are walked again from the restored guest memory; one that no longer parses is a malformed
 * chain like any other. Why this is right for FT: a write in flight at checkpoint E completes on the
 * primary after E was taken, so its result went to epoch E+1's disk log, which a backup taking over
 * at E never applied; doing the write again (the data is still in the guest's buffer, which the
 * driver may not touch until completion) gives the image it would have had. A read reads again into
 * guest memory, marked dirty at completion as usual. Flush, discard and write-zeroes repeat safely.
 */
static void blk_resubmit_saved(struct virtio_blk *b)
{
	struct virtqueue *vq = &b->dev.vqs[0];
	for (unsigned i = 0; i < b->nsaved; i++) {
		if (vq_chain_at(vq, b->saved[i], &b->scratch) || blk_start(b, &b->scratch)) {
			blk_break(b);
			break;
		}
	}
	b->nsaved = 0;
}

/* Consume the avail ring (after what the restored checkpoint had in flight). Lock held. */
static void blk_process(struct virtio_blk *b)
{
	struct virtqueue *vq = &b->dev.vqs[0];
	if (b->nsaved && b->active && !b->quiesced)
		blk_resubmit_saved(b);
	while (b->active && !b->quiesced) {
		if (b->admit && !b->admit(b->admit_ctx, b->wbytes_inflight))
			break; /* left in the ring: a kick or the next resume asks again */
		int r = vq_pop(vq, &b->scratch);
		if (r == 0)
			break;
		if (r > 0 && blk_start(b, &b->scratch) == 0)
			continue;
		blk_break(b);
		break;
	}
	int r = blk_backend_submit(&b->be);
	if (r < 0)
		warnx("%s: io_uring submit: %s", b->name, strerror(-r));
}

/* Called with the lock held; drops it, then raises the interrupts the work just done calls for
 * (queue, and config for NEEDS_RESET). `notifying` covers the window without the lock. */
static void blk_unlock_and_notify(struct virtio_blk *b)
{
	bool rst = b->want_reset, n = false;
	b->want_reset = false;
	if (b->pushed) {
		b->pushed = false;
		n = vq_needs_notify(&b->dev.vqs[0]);
	}
	if (b->owe_irq && !b->quiesced) { /* raised unconditionally: a spurious one is always safe */
		b->owe_irq = false;
		n = true;
	}
	if (!n && !rst) {
		pthread_mutex_unlock(&b->lock);
		return;
	}
	b->notifying++;
	pthread_mutex_unlock(&b->lock);
	if (rst)
		virtio_dev_set_needs_reset(&b->dev);
	if (n && b->dev.notify_queue)
		b->dev.notify_queue(&b->dev, &b->dev.vqs[0]);
	pthread_mutex_lock(&b->lock);
	if (--b->notifying == 0)
		pthread_cond_broadcast(&b->cond);
	pthread_mutex_unlock(&b->lock);
}

/* Lock held. After a restore the driver will not kick again for chains it made available before
 * the checkpoint, and only the restored status says whether the driver is up: adopt both. */
static void blk_adopt_restored(struct virtio_blk *b)
{
	uint8_t st = __atomic_load_n(&b->dev.status, __ATOMIC_RELAXED);
	b->restored = false;
	b->active = (st & VIRTIO_CONFIG_S_DRIVER_OK) && !(st & VIRTIO_CONFIG_S_FAILED);
	if (!b->active)
		b->nsaved = 0; /* a driver that is not running has nothing in flight: never run them later */
	/* Used entries whose interrupt was raised after the irqchip was captured would wait forever:
	 * the checkpoint has the entries but not the interrupt. Re-raise it, as virtio-net does. */
	b->owe_irq = b->active;
}

/* Lock held, quiesced: consume the eventfd's count without reaping. The loop watches it level
 * triggered, so an unread count would spin the I/O thread for the whole pause; resume reaps. */
static void blk_event_clear(struct virtio_blk *b)
{
	uint64_t v;
	if (read(b->be.efd, &v, sizeof(v)) < 0) {
		/* EAGAIN: already cleared */
	}
}

/* ioloop: the io_uring eventfd fired (completions, or the nudge a restore leaves behind). */
static void blk_on_event(void *opaque, uint32_t events)
{
	struct virtio_blk *b = opaque;
	(void)events;
	pthread_mutex_lock(&b->lock);
	if (b->quiesced) {
		blk_event_clear(b);
		pthread_mutex_unlock(&b->lock);
		return;
	}
	blk_backend_reap(&b->be, false, blk_on_cqe, b);
	if (b->restored) {
		blk_adopt_restored(b);
		blk_process(b);
	}
	blk_backend_submit(&b->be); /* remainders of short transfers */
	blk_unlock_and_notify(b);
}

/* Wait for every in-flight request (pushed, or discarded if b->dropping). Lock held. */
static int blk_wait_all(struct virtio_blk *b)
{
	while (b->ninflight) {
		int r = blk_backend_reap(&b->be, true, blk_on_cqe, b);
		if (r < 0) {
			warnx("%s: waiting for in-flight I/O: %s", b->name, strerror(-r));
			return r;
		}
	}
	return 0;
}

static void blk_queue_notify(struct virtio_dev *d, unsigned q)
{
	struct virtio_blk *b = to_blk(d);
	if (q != 0)
		return;
	pthread_mutex_lock(&b->lock);
	if (b->restored)
		blk_adopt_restored(b);
	blk_process(b);
	blk_unlock_and_notify(b);
}

static int blk_activate(struct virtio_dev *d)
{
	struct virtio_blk *b = to_blk(d);
	pthread_mutex_lock(&b->lock);
	b->active = true;
	pthread_mutex_unlock(&b->lock);
	return 0;
}

/* Lock held: complete (and throw away) everything in flight; rings are about to be forgotten. Not a
 * pause: this does wait for the I/O (reset, destroy, restore). */
void blk_drop_inflight(struct virtio_blk *b)
{
	b->dropping = true;
	blk_wait_all(b);
	b->dropping = false;
	b->nsaved = 0;
	b->pushed = false;
	b->want_reset = false;
}

static void blk_reset(struct virtio_dev *d)
{
	struct virtio_blk *b = to_blk(d);
	pthread_mutex_lock(&b->lock);
	b->active = false;
	b->owe_irq = false; /* nothing is owed to a driver that reset the device */
	blk_drop_inflight(b);
	pthread_mutex_unlock(&b->lock);
}

static void blk_config_read(struct virtio_dev *d, uint32_t off, void *data, uint32_t len)
{
	struct virtio_blk *b = to_blk(d);
	memset(data, 0, len);
	if (off < sizeof(b->cfg))
		memcpy(data, (const uint8_t *)&b->cfg + off, MIN(len, (uint32_t)sizeof(b->cfg) - off));
}

static void blk_config_write(struct virtio_dev *d, uint32_t off, const void *data, uint32_t len)
{
	/* Nothing is writable without CONFIG_WCE, which we do not offer. */
	(void)d, (void)off, (void)data, (void)len;
}

/* Stop touching guest-visible state without waiting for I/O: requests in flight stay in flight (and
 * in the saved state); only an interrupt being raised right now is waited for, so none escapes
 * after this returns. Every path that pushes notifies before it unlocks: nothing is owed here. */
static int blk_quiesce(struct virtio_dev *d)
{
	struct virtio_blk *b = to_blk(d);
	pthread_mutex_lock(&b->lock);
	b->quiesced = true;
	while (b->notifying)
		pthread_cond_wait(&b->cond, &b->lock);
	pthread_mutex_unlock(&b->lock);
	return 0;
}

static void blk_resume(struct virtio_dev *d)
{
	struct virtio_blk *b = to_blk(d);
	pthread_mutex_lock(&b->lock);
	b->quiesced = false;
	/* Completions that arrived during the pause (their eventfd count was consumed unreaped). */
	blk_backend_reap(&b->be, false, blk_on_cqe, b);
	if (b->restored)
		blk_adopt_restored(b);
	blk_process(b); /* also catches kicks that arrived while quiesced */
	blk_unlock_and_notify(b);
}

static const struct virtio_dev_ops blk_ops = {
	.config_read = blk_config_read,
	.config_write = blk_config_write,
	.queue_notify = blk_queue_notify,
	.activate = blk_activate,
	.reset = blk_reset,
	.quiesce = blk_quiesce,
	.resume = blk_resume,
	.save = blk_save,
	.restore_check = blk_restore_check,
	.restore = blk_restore,
};

struct virtio_dev *virtio_blk_create(struct guest_mem *mem, struct ioloop *loop, const char *path,
				     bool readonly, char *err, size_t errlen)
{
	static unsigned counter;
	struct virtio_blk *b = calloc(1, sizeof(*b));
	int r;

	if (!b) {
		snprintf(err, errlen, "virtio-blk: out of memory");
		errno = ENOMEM;
		return NULL;
	}
	r = blk_backend_open(&b->be, path, readonly, VIRTIO_BLK_QUEUE_SIZE, err, errlen);
	if (r) {
		free(b);
		errno = -r;
		return NULL;
	}
	unsigned n = __atomic_fetch_add(&counter, 1, __ATOMIC_RELAXED);
	snprintf(b->name, sizeof(b->name), "virtio-blk@%u", n);
	char serial[VIRTIO_BLK_ID_LEN + 1] = { 0 };
	if (n < 26)
		snprintf(serial, sizeof(serial), "ftvmm-vd%c", 'a' + n);
	else
		snprintf(serial, sizeof(serial), "ftvmm-vd%u", n);
	memcpy(b->serial, serial, VIRTIO_BLK_ID_LEN); /* NUL-padded, not necessarily terminated */

	r = virtio_dev_init(&b->dev, b->name, VIRTIO_ID_BLOCK, 1, VIRTIO_BLK_QUEUE_SIZE, sizeof(b->cfg), mem,
			    &blk_ops, b);
	if (r) {
		snprintf(err, errlen, "%s: virtio init: %s", b->name, strerror(-r));
		blk_backend_close(&b->be);
		free(b);
		errno = -r;
		return NULL;
	}
	b->dev.host_features |= 1ull << VIRTIO_BLK_F_SEG_MAX | 1ull << VIRTIO_BLK_F_BLK_SIZE |
				1ull << VIRTIO_BLK_F_FLUSH | 1ull << VIRTIO_RING_F_EVENT_IDX |
				1ull << VIRTIO_RING_F_INDIRECT_DESC;
	b->cfg.capacity = htole64(b->be.size / SECTOR);
	b->cfg.seg_max = htole32(VIRTIO_BLK_SEG_MAX);
	b->cfg.blk_size = htole32(SECTOR);
	if (readonly) {
		b->dev.host_features |= 1ull << VIRTIO_BLK_F_RO;
	} else {
		b->dev.host_features |= 1ull << VIRTIO_BLK_F_DISCARD | 1ull << VIRTIO_BLK_F_WRITE_ZEROES;
		b->cfg.max_discard_sectors = htole32(MAX_DISCARD_SECTORS);
		b->cfg.max_discard_seg = htole32(1);
		b->cfg.discard_sector_alignment = htole32(8);
		b->cfg.max_write_zeroes_sectors = htole32(MAX_DISCARD_SECTORS);
		b->cfg.max_write_zeroes_seg = htole32(1);
		b->cfg.write_zeroes_may_unmap = 1;
	}
	pthread_mutex_init(&b->lock, NULL);
	pthread_cond_init(&b->cond, NULL);
	b->loop = loop;
	r = ioloop_add(loop, b->be.efd, EPOLLIN, blk_on_event, b);
	if (r) {
		snprintf(err, errlen, "%s: ioloop: %s", b->name, strerror(-r));
		b->loop = NULL;
		virtio_blk_destroy(&b->dev);
		errno = -r;
		return NULL;
	}
	return &b->dev;
}

void virtio_blk_set_admit(struct virtio_dev *d, blk_admit_fn fn, void *ctx)
{
	struct virtio_blk *b = to_blk(d);
	pthread_mutex_lock(&b->lock);
	b->admit = fn;
	b->admit_ctx = ctx;
	pthread_mutex_unlock(&b->lock);
}

void virtio_blk_kick(struct virtio_dev *d)
{
	blk_queue_notify(d, 0);
}

void virtio_blk_set_write_hook(struct virtio_dev *d, blk_write_hook_fn fn, void *ctx)
{
	struct virtio_blk *b = to_blk(d);
	pthread_mutex_lock(&b->lock);
	b->write_hook = fn;
	b->write_hook_ctx = ctx;
	pthread_mutex_unlock(&b->lock);
}

void virtio_blk_destroy(struct virtio_dev *d)
{
	struct virtio_blk *b = to_blk(d);
	if (b->loop)
		ioloop_del(b->loop, b->be.efd);
	pthread_mutex_lock(&b->lock);
	b->active = false;
	blk_drop_inflight(b);
	pthread_mutex_unlock(&b->lock);
	blk_backend_close(&b->be);
	virtio_dev_destroy(&b->dev);
	pthread_cond_destroy(&b->cond);
	pthread_mutex_destroy(&b->lock);
	free(b);
}

int virtio_blk_drain(struct virtio_dev *d)
{
	struct virtio_blk *b = to_blk(d);
	pthread_mutex_lock(&b->lock);
	if (b->quiesced) { /* completing now would write guest memory (and the FT log) during a pause */
		pthread_mutex_unlock(&b->lock);
		return -EBUSY;
	}
	int r = blk_wait_all(b);
	blk_unlock_and_notify(b);
	return r;
}

unsigned virtio_blk_inflight(struct virtio_dev *d)
{
	struct virtio_blk *b = to_blk(d);
	pthread_mutex_lock(&b->lock);
	unsigned n = b->ninflight;
	pthread_mutex_unlock(&b->lock);
	return n;
}

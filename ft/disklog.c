/* disklog.c - appends each guest disk write of an epoch (offset + data) to a buffer the epoch carries. */
#include "disklog.h"
#include "proto.h"

#include "../vmm/util.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

void disklog_init(struct disklog *l)
{
	memset(l, 0, sizeof(*l));
	pthread_mutex_init(&l->lock, NULL);
}

void disklog_destroy(struct disklog *l)
{
	free(l->buf);
	l->buf = NULL;
	pthread_mutex_destroy(&l->lock);
}

/* Room for `more` bytes, never past DISKLOG_MAX_BYTES: -EFBIG beyond it, -ENOMEM without memory. */
static int reserve(struct disklog *l, uint64_t more)
{
	if (more > DISKLOG_MAX_BYTES - l->len)
		return -EFBIG;
	size_t want = l->len + (size_t)more;
	if (want <= l->cap)
		return 0;
	size_t ncap = l->cap ? l->cap : (1u << 20);
	while (ncap < want)
		ncap *= 2;
	ncap = MIN(ncap, (size_t)DISKLOG_MAX_BYTES);
	uint8_t *n = realloc(l->buf, ncap);
	if (!n)
		return -ENOMEM;
	l->buf = n;
	l->cap = ncap;
	return 0;
}

static void append(struct disklog *l, const struct ft_disk_rec *rec, const struct iovec *iov, unsigned n)
{
	memcpy(l->buf + l->len, rec, sizeof(*rec));
	l->len += sizeof(*rec);
	if (rec->kind != FT_DISK_WRITE)
		return;
	uint64_t left = rec->len;
	for (unsigned i = 0; i < n && left; i++) {
		size_t take = iov[i].iov_len < left ? iov[i].iov_len : (size_t)left;
		memcpy(l->buf + l->len, iov[i].iov_base, take);
		l->len += take;
		left -= take;
	}
	if (left) { /* iovecs shorter than len: keep the record well-formed */
		memset(l->buf + l->len, 0, (size_t)left);
		l->len += (size_t)left;
	}
}

/* Lock held; drops it. When `over` (the log or its admissions passed the soft limit), ask the engine
 * for an early checkpoint, once per epoch, with the lock dropped (the callback takes the engine's). */
static void unlock_and_ask(struct disklog *l, bool over)
{
	bool ask = over && !l->asked && l->full;
	l->asked |= ask;
	void (*full)(void *) = l->full;
	void *ctx = l->full_ctx;
	pthread_mutex_unlock(&l->lock);
	if (ask)
		full(ctx);
}

void disklog_add(struct disklog *l, unsigned disk, uint64_t off, const struct iovec *iov, unsigned n, uint64_t len,
		 bool zero)
{
	struct ft_disk_rec rec = { .disk = disk, .kind = zero ? FT_DISK_ZERO : FT_DISK_WRITE, .off = off, .len = len };
	/* a len past the cap is refused as such, before the sum could wrap */
	uint64_t need = sizeof(rec);
	if (!zero)
		need = len > DISKLOG_MAX_BYTES ? UINT64_MAX : need + len;
	pthread_mutex_lock(&l->lock);
	/* after a lost record the epoch fails anyway: keep no more of it */
	int r = l->error ? l->error : reserve(l, need);
	if (r) {
		l->error = r;
		pthread_mutex_unlock(&l->lock);
		return;
	}
	append(l, &rec, iov, n);
	l->writes++;
	unlock_and_ask(l, l->len >= DISKLOG_SOFT_BYTES);
}

int disklog_take(struct disklog *l, uint8_t **buf, size_t *len, uint64_t *writes)
{
	pthread_mutex_lock(&l->lock);
	*buf = l->buf;
	*len = l->len;
	*writes = l->writes;
	int e = l->error;
	l->buf = NULL;
	l->len = l->cap = 0;
	l->writes = 0;
	l->error = 0;
	l->asked = false;
	pthread_mutex_unlock(&l->lock);
	return e;
}

size_t disklog_bytes(struct disklog *l)
{
	pthread_mutex_lock(&l->lock);
	size_t n = l->len;
	pthread_mutex_unlock(&l->lock);
	return n;
}

void disklog_hook_fn(void *ctx, uint64_t off, const struct iovec *iov, unsigned n, uint64_t len, bool zero)
{
	struct disklog_hook *h = ctx;
	disklog_add(h->log, h->disk, off, iov, n, len, zero);
}

bool disklog_admit(struct disklog *l, unsigned disk, uint64_t inflight)
{
	pthread_mutex_lock(&l->lock);
	if (disk < DISKLOG_MAX_DISKS)
		l->pending[disk] = inflight;
	uint64_t total = l->len;
	for (unsigned i = 0; i < DISKLOG_MAX_DISKS; i++)
		total += MIN(l->pending[i], (uint64_t)DISKLOG_MAX_BYTES); /* no wrap: each term is capped */
	bool ok = !l->error && total < DISKLOG_SOFT_BYTES;
	unlock_and_ask(l, !ok);
	return ok;
}

bool disklog_hook_admit(void *ctx, uint64_t inflight)
{
	struct disklog_hook *h = ctx;
	return disklog_admit(h->log, h->disk, inflight);
}

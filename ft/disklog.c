/* disklog.c - appends each guest disk write of an epoch (offset + data) to a buffer the epoch carries. */
#include "disklog.h"
#include "proto.h"

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

static int reserve(struct disklog *l, size_t more)
{
	if (l->len + more <= l->cap)
		return 0;
	size_t ncap = l->cap ? l->cap : (1u << 20);
	while (ncap < l->len + more)
		ncap *= 2;
	uint8_t *n = realloc(l->buf, ncap);
	if (!n)
		return -ENOMEM;
	l->buf = n;
	l->cap = ncap;
	return 0;
}

void disklog_add(struct disklog *l, unsigned disk, uint64_t off, const struct iovec *iov, unsigned n, uint64_t len,
		 bool zero)
{
	struct ft_disk_rec rec = { .disk = disk, .kind = zero ? FT_DISK_ZERO : FT_DISK_WRITE, .off = off, .len = len };
	pthread_mutex_lock(&l->lock);
	if (reserve(l, sizeof(rec) + (zero ? 0 : len))) {
		l->error = -ENOMEM;
		pthread_mutex_unlock(&l->lock);
		return;
	}
	memcpy(l->buf + l->len, &rec, sizeof(rec));
	l->len += sizeof(rec);
	if (!zero) {
		uint64_t left = len;
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
	l->writes++;
	pthread_mutex_unlock(&l->lock);
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
	pthread_mutex_unlock(&l->lock);
	return e;
}

void disklog_hook_fn(void *ctx, uint64_t off, const struct iovec *iov, unsigned n, uint64_t len, bool zero)
{
	struct disklog_hook *h = ctx;
	disklog_add(h->log, h->disk, off, iov, n, len, zero);
}

/* blk_backend.c - raw image file on io_uring: open-time vetting, SQE helpers, completion reaping. */
#include "blk_backend.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/fs.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../vmm/util.h"

static int fail(char *err, size_t errlen, int e, const char *fmt, ...)
{
	if (err && errlen) {
		va_list ap;
		va_start(ap, fmt);
		vsnprintf(err, errlen, fmt, ap);
		va_end(ap);
	}
	return e;
}

int blk_image_open(const char *path, bool ro, int *fdp, uint64_t *sizep, char *err, size_t errlen)
{
	struct stat st;
	uint64_t size;

	if (!path || !*path)
		return fail(err, errlen, -EINVAL, "disk image: no path given");
	/* O_NONBLOCK so a FIFO given by mistake cannot hang us in open(); cleared below. */
	int fd = open(path, (ro ? O_RDONLY : O_RDWR) | O_CLOEXEC | O_NONBLOCK);
	if (fd < 0) {
		int e = errno;
		if (!ro && (e == EACCES || e == EROFS || e == EPERM))
			return fail(err, errlen, -e, "disk image %s: %s (use read-only mode?)", path, strerror(e));
		return fail(err, errlen, -e, "disk image %s: %s", path, strerror(e));
	}
	if (fstat(fd, &st) < 0) {
		int e = errno;
		close(fd);
		return fail(err, errlen, -e, "disk image %s: stat: %s", path, strerror(e));
	}
	if (S_ISDIR(st.st_mode)) {
		close(fd);
		return fail(err, errlen, -EISDIR, "disk image %s: is a directory", path);
	}
	if (S_ISBLK(st.st_mode)) {
		if (ioctl(fd, BLKGETSIZE64, &size) < 0) {
			int e = errno;
			close(fd);
			return fail(err, errlen, -e, "disk image %s: cannot get device size: %s", path, strerror(e));
		}
	} else if (S_ISREG(st.st_mode)) {
		size = (uint64_t)st.st_size;
	} else {
		close(fd);
		return fail(err, errlen, -EINVAL, "disk image %s: not a regular file or block device", path);
	}
	if (size == 0 || size % 512) {
		close(fd);
		return fail(err, errlen, -EINVAL, "disk image %s: size %llu is %s", path, (unsigned long long)size,
			    size ? "not a multiple of 512 bytes" : "zero");
	}
	int fl = fcntl(fd, F_GETFL);
	if (fl < 0 || fcntl(fd, F_SETFL, fl & ~O_NONBLOCK) < 0) {
		int e = errno;
		close(fd);
		return fail(err, errlen, -e, "disk image %s: fcntl: %s", path, strerror(e));
	}
	*fdp = fd;
	*sizep = size;
	return 0;
}

int blk_backend_open(struct blk_backend *be, const char *path, bool ro, unsigned depth, char *err, size_t errlen)
{
	memset(be, 0, sizeof(*be));
	be->fd = be->efd = -1;
	int r = blk_image_open(path, ro, &be->fd, &be->size, err, errlen);
	if (r)
		return r;
	be->ro = ro;
	be->efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (be->efd < 0) {
		r = fail(err, errlen, -errno, "disk image %s: eventfd: %s", path, strerror(errno));
		goto out;
	}
	const char *force_sync = getenv("FTVMM_BLK_SYNC");
	r = force_sync && *force_sync == '1' ? -ENOSYS : io_uring_queue_init(depth, &be->ring, 0);
	if (r == -ENOSYS || r == -EPERM || r == -EACCES) {
		/* Slower (the I/O thread blocks on each request) but the guest sees no difference. */
		if (!force_sync)
			warnx("disk image %s: io_uring unavailable (%s), using synchronous I/O", path, strerror(-r));
		be->sync = true;
		be->done_cap = 2 * depth;
		be->done = calloc(be->done_cap, sizeof(*be->done));
		if (!be->done) {
			r = fail(err, errlen, -ENOMEM, "disk image %s: out of memory", path);
			goto out;
		}
		return 0;
	}
	if (r < 0) {
		r = fail(err, errlen, r, "disk image %s: io_uring setup: %s", path, strerror(-r));
		goto out;
	}
	be->ring_ok = true;
	r = io_uring_register_eventfd(&be->ring, be->efd);
	if (r < 0) {
		r = fail(err, errlen, r, "disk image %s: io_uring eventfd: %s", path, strerror(-r));
		goto out;
	}
	return 0;
out:
	blk_backend_close(be);
	return r;
}

void blk_backend_close(struct blk_backend *be)
{
	if (be->ring_ok)
		io_uring_queue_exit(&be->ring);
	be->ring_ok = false;
	free(be->done);
	be->done = NULL;
	if (be->efd >= 0)
		close(be->efd);
	if (be->fd >= 0)
		close(be->fd);
	be->efd = be->fd = -1;
}

/* Synchronous fallback: record a finished operation for the next reap. */
static int sync_done(struct blk_backend *be, void *tag, ssize_t res)
{
	if (be->done_len == be->done_cap)
		return -EBUSY;
	be->done[(be->done_head + be->done_len++) % be->done_cap] =
		(struct blk_sync_done){ .tag = tag, .res = res < 0 ? -errno : (int)res };
	return 0;
}

static struct io_uring_sqe *get_sqe(struct blk_backend *be)
{
	struct io_uring_sqe *sqe = io_uring_get_sqe(&be->ring);
	if (!sqe) {
		/* SQ full: push what is queued to the kernel and try once more. */
		io_uring_submit(&be->ring);
		sqe = io_uring_get_sqe(&be->ring);
	}
	return sqe;
}

int blk_backend_readv(struct blk_backend *be, const struct iovec *iov, unsigned n, uint64_t off, void *tag)
{
	if (be->sync)
		return sync_done(be, tag, preadv(be->fd, iov, (int)n, (off_t)off));
	struct io_uring_sqe *sqe = get_sqe(be);
	if (!sqe)
		return -EBUSY;
	io_uring_prep_readv(sqe, be->fd, iov, n, off);
	io_uring_sqe_set_data(sqe, tag);
	return 0;
}

int blk_backend_writev(struct blk_backend *be, const struct iovec *iov, unsigned n, uint64_t off, void *tag)
{
	if (be->ro)
		return -EROFS; /* belt and braces: the device refuses writes before they get here */
	if (be->sync)
		return sync_done(be, tag, pwritev(be->fd, iov, (int)n, (off_t)off));
	struct io_uring_sqe *sqe = get_sqe(be);
	if (!sqe)
		return -EBUSY;
	io_uring_prep_writev(sqe, be->fd, iov, n, off);
	io_uring_sqe_set_data(sqe, tag);
	return 0;
}

int blk_backend_fsync(struct blk_backend *be, void *tag)
{
	if (be->sync)
		return sync_done(be, tag, fsync(be->fd));
	struct io_uring_sqe *sqe = get_sqe(be);
	if (!sqe)
		return -EBUSY;
	/* Full fsync, not datasync: a completed flush must also cover size/extent metadata. */
	io_uring_prep_fsync(sqe, be->fd, 0);
	io_uring_sqe_set_data(sqe, tag);
	return 0;
}

int blk_backend_fallocate(struct blk_backend *be, int mode, uint64_t off, uint64_t len, void *tag)
{
	if (be->ro)
		return -EROFS;
	if (be->sync)
		return sync_done(be, tag, fallocate(be->fd, mode, (off_t)off, (off_t)len));
	struct io_uring_sqe *sqe = get_sqe(be);
	if (!sqe)
		return -EBUSY;
	io_uring_prep_fallocate(sqe, be->fd, mode, off, len);
	io_uring_sqe_set_data(sqe, tag);
	return 0;
}

int blk_backend_submit(struct blk_backend *be)
{
	int r;
	if (be->sync) {
		/* Keep the completion path identical: results are picked up from the eventfd callback. */
		uint64_t one = 1;
		if (be->done_len && write(be->efd, &one, sizeof(one)) < 0)
			return -errno;
		return 0;
	}
	do
		r = io_uring_submit(&be->ring);
	while (r == -EINTR);
	return r < 0 ? r : 0;
}

int blk_backend_reap(struct blk_backend *be, bool wait, blk_done_fn fn, void *ctx)
{
	struct io_uring_cqe *cqe;
	uint64_t v;
	int n = 0;

	if (read(be->efd, &v, sizeof(v)) < 0) {
		/* EAGAIN: nothing signalled, fine */
	}
	if (be->sync) {
		/* fn may queue follow-ups (remainders); they are done already, so take them too. */
		if (wait && !be->done_len)
			return -EIO; /* nothing can ever complete: do not let the caller spin */
		while (be->done_len) {
			struct blk_sync_done d = be->done[be->done_head];
			be->done_head = (be->done_head + 1) % be->done_cap;
			be->done_len--;
			fn(ctx, d.tag, d.res);
			n++;
		}
		return n;
	}
	if (wait) {
		int r;
		/* submit_and_wait, not wait_cqe: queued SQEs (resubmitted remainders) must reach the
		 * kernel or we would wait for completions that can never come. */
		do
			r = io_uring_submit_and_wait(&be->ring, 1);
		while (r == -EINTR);
		if (r < 0)
			return r;
	}
	while (io_uring_peek_cqe(&be->ring, &cqe) == 0) {
		void *tag = io_uring_cqe_get_data(cqe);
		int res = cqe->res;
		io_uring_cqe_seen(&be->ring, cqe);
		fn(ctx, tag, res);
		n++;
	}
	return n;
}

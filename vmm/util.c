/* util.c - fatal errors, logging, size parsing, whole-buffer file I/O and file helpers. */
#include "util.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

static void vlog(const char *fmt, va_list ap, int err)
{
	char buf[1024];
	int n = vsnprintf(buf, sizeof(buf), fmt, ap);
	if (n < 0)
		n = 0;
	if (err)
		snprintf(buf + MIN((size_t)n, sizeof(buf) - 1), sizeof(buf) - MIN((size_t)n, sizeof(buf) - 1),
			 ": %s", strerror(err));
	fprintf(stderr, "ftvmm: %s\n", buf);
}

void die(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vlog(fmt, ap, 0);
	va_end(ap);
	exit(1);
}

void die_errno(const char *fmt, ...)
{
	int err = errno;
	va_list ap;
	va_start(ap, fmt);
	vlog(fmt, ap, err);
	va_end(ap);
	exit(1);
}

void warnx(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vlog(fmt, ap, 0);
	va_end(ap);
}

void debugx(const char *fmt, ...)
{
	static int enabled = -1;
	if (enabled < 0)
		enabled = getenv("FTVMM_DEBUG") != NULL;
	if (!enabled)
		return;
	va_list ap;
	va_start(ap, fmt);
	vlog(fmt, ap, 0);
	va_end(ap);
}

enum io_op { IO_WRITE, IO_PWRITE, IO_PREAD };

/* The one loop behind write_all, pwrite_all and pread_all: retries EINTR and short transfers. */
static int io_all(enum io_op op, int fd, void *p, size_t len, uint64_t off)
{
	/* an offset past what off_t holds would turn negative in the cast */
	if (op != IO_WRITE && (off > (uint64_t)INT64_MAX || len > (uint64_t)INT64_MAX - off))
		return -EINVAL;
	uint8_t *b = p;
	while (len) {
		ssize_t n = op == IO_WRITE  ? write(fd, b, len)
			    : op == IO_PWRITE ? pwrite(fd, b, len, (off_t)off)
					      : pread(fd, b, len, (off_t)off);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return n < 0 ? -errno : -EIO;
		b += n;
		len -= (size_t)n;
		off += (uint64_t)n;
	}
	return 0;
}

int write_all(int fd, const void *p, size_t len)
{
	return io_all(IO_WRITE, fd, (void *)p, len, 0);
}

int pwrite_all(int fd, const void *p, size_t len, uint64_t off)
{
	return io_all(IO_PWRITE, fd, (void *)p, len, off);
}

int pread_all(int fd, void *p, size_t len, uint64_t off)
{
	return io_all(IO_PREAD, fd, p, len, off);
}

int read_file_all(const char *path, uint8_t **buf, size_t *len)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	struct stat st;
	if (fstat(fd, &st) < 0) {
		int e = -errno;
		close(fd);
		return e;
	}
	if (S_ISDIR(st.st_mode)) {
		close(fd);
		return -EISDIR;
	}
	if (!S_ISREG(st.st_mode)) {
		close(fd);
		return -EINVAL;
	}
	size_t size = (size_t)st.st_size;
	uint8_t *b = malloc(size ? size : 1);
	if (!b) {
		close(fd);
		return -ENOMEM;
	}
	int r = pread_all(fd, b, size, 0);
	close(fd);
	if (r) {
		free(b);
		return r;
	}
	*buf = b;
	*len = size;
	return 0;
}

int parse_size(const char *s, uint64_t *out)
{
	if (!s || !*s)
		return -EINVAL;
	for (const char *p = s; *p && p[0] >= '0' && p[0] <= '9'; p++)
		;
	if (*s < '0' || *s > '9')
		return -EINVAL;
	errno = 0;
	char *end;
	unsigned long long v = strtoull(s, &end, 10);
	if (errno == ERANGE)
		return -ERANGE;
	unsigned shift = 0;
	switch (*end) {
	case '\0': break;
	case 'k': case 'K': shift = 10; break;
	case 'm': case 'M': shift = 20; break;
	case 'g': case 'G': shift = 30; break;
	case 't': case 'T': shift = 40; break;
	default: return -EINVAL;
	}
	if (*end) {
		end++;
		/* accept an optional "iB" or "B" after the suffix: 256MiB, 256MB */
		if (*end == 'i' || *end == 'I')
			end++;
		if (*end == 'b' || *end == 'B')
			end++;
	}
	if (*end)
		return -EINVAL;
	if (shift && v > (UINT64_MAX >> shift))
		return -ERANGE;
	*out = (uint64_t)v << shift;
	return 0;
}

uint64_t now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

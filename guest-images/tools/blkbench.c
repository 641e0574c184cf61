/* blkbench - block-device pattern writer/checker and micro-benchmark for the ftvmm test guest (static, no libs).
 *
 * Built into the guest's /bin by guest-images/build.sh (gcc -static -O2 -pthread) and, for the host half of
 * tests/bench/devices.sh, natively for the test-bed host. Sizes accept K/M/G suffixes (powers of 1024).
 *
 * The pattern: every 8-byte word at absolute device offset o (o % 8 == 0) holds splitmix64(seed * K + o),
 * so a block written to the wrong place, a stale block, a torn block or a zeroed block all fail to match.
 *
 *   blkbench gen OFF LEN SEED                 the pattern bytes [OFF, OFF+LEN) on stdout (OFF, LEN: 8-aligned)
 *   blkbench write DEV OFF LEN SEED [-d] [-b BS]   write the pattern (BS per pwrite, default 64K), then fsync
 *   blkbench verify DEV OFF LEN SEED [-d] [-b BS]  read back and compare; exit 1 on a mismatch (the first one
 *                                                 is printed); prints the SHA-256 of the bytes read
 *   blkbench zero DEV OFF LEN [-c] [-d]       expect LEN zero bytes at OFF, as verify (-c: instead, BLKZEROOUT them)
 *   blkbench par DEV OFF LEN NTHREADS SEED [-d] [-b BS]
 *            NTHREADS writers, each owning one disjoint slice of [OFF, OFF+LEN), all writing at once in BS
 *            pieces (interleaved order), then fsync, then each thread verifies its own slice
 *   blkbench rowrite DEV                      try every way to write sector 0 of a read-only disk: prints
 *            what happened to each; exit 0 only if none of them changed the disk or reported success
 *   blkbench seqwrite DEV SIZE [-b BS]        O_DIRECT sequential write of SIZE bytes from 0 (default BS 1M)
 *   blkbench seqread DEV SIZE [-b BS]         O_DIRECT sequential read
 *   blkbench randread DEV SIZE [-b BS] [-q QD] [-t SECS]
 *            QD threads (default 32) each doing O_DIRECT pread of BS (default 4K) at random aligned offsets
 *            in [0, SIZE) for SECS seconds (default 10)
 * -d: O_DIRECT (offsets, lengths and BS must be 512-aligned). Results: one line "BLKBENCH <what> key=value ...".
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <linux/fs.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define ALIGN 4096

/* SHA-256 (FIPS 180-4); the same code as in netbench.c (each tool is one file). */
struct sha256 {
	uint32_t h[8];
	uint64_t len;
	uint8_t buf[64];
	unsigned n;
};

static const uint32_t K256[64] = {
	0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
	0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
	0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
	0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
	0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
	0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
	0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
	0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2,
};

#define ROR(x, n) (((x) >> (n)) | ((x) << (32 - (n))))

static void sha256_block(struct sha256 *s, const uint8_t *p)
{
	uint32_t w[64], a, b, c, d, e, f, g, h;
	for (int i = 0; i < 16; i++)
		w[i] = (uint32_t)p[4 * i] << 24 | (uint32_t)p[4 * i + 1] << 16 | (uint32_t)p[4 * i + 2] << 8 | p[4 * i + 3];
	for (int i = 16; i < 64; i++) {
		uint32_t s0 = ROR(w[i - 15], 7) ^ ROR(w[i - 15], 18) ^ (w[i - 15] >> 3);
		uint32_t s1 = ROR(w[i - 2], 17) ^ ROR(w[i - 2], 19) ^ (w[i - 2] >> 10);
		w[i] = w[i - 16] + s0 + w[i - 7] + s1;
	}
	a = s->h[0], b = s->h[1], c = s->h[2], d = s->h[3], e = s->h[4], f = s->h[5], g = s->h[6], h = s->h[7];
	for (int i = 0; i < 64; i++) {
		uint32_t t1 = h + (ROR(e, 6) ^ ROR(e, 11) ^ ROR(e, 25)) + ((e & f) ^ (~e & g)) + K256[i] + w[i];
		uint32_t t2 = (ROR(a, 2) ^ ROR(a, 13) ^ ROR(a, 22)) + ((a & b) ^ (a & c) ^ (b & c));
		h = g, g = f, f = e, e = d + t1, d = c, c = b, b = a, a = t1 + t2;
	}
	s->h[0] += a, s->h[1] += b, s->h[2] += c, s->h[3] += d, s->h[4] += e, s->h[5] += f, s->h[6] += g, s->h[7] += h;
}

static void sha256_init(struct sha256 *s)
{
	static const uint32_t iv[8] = { 0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a,
					0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19 };
	memcpy(s->h, iv, sizeof(iv));
	s->len = 0;
	s->n = 0;
}

static void sha256_update(struct sha256 *s, const uint8_t *p, size_t len)
{
	s->len += len;
	if (s->n) {
		while (len && s->n < 64)
			s->buf[s->n++] = *p++, len--;
		if (s->n < 64)
			return;
		sha256_block(s, s->buf);
		s->n = 0;
	}
	for (; len >= 64; p += 64, len -= 64)
		sha256_block(s, p);
	memcpy(s->buf, p, len);
	s->n = (unsigned)len;
}

static void sha256_hex(struct sha256 *s, char out[65])
{
	uint64_t bits = s->len * 8;
	uint8_t pad = 0x80, zero = 0, lenb[8];
	sha256_update(s, &pad, 1);
	while (s->n != 56)
		sha256_update(s, &zero, 1);
	for (int i = 0; i < 8; i++)
		lenb[i] = (uint8_t)(bits >> (56 - 8 * i));
	sha256_update(s, lenb, 8);
	for (int i = 0; i < 8; i++)
		sprintf(out + 8 * i, "%08x", s->h[i]);
}

static void die(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	fprintf(stderr, "blkbench: ");
	vfprintf(stderr, fmt, ap);
	fprintf(stderr, "\n");
	va_end(ap);
	exit(2);
}

static uint64_t parse_size(const char *s)
{
	char *end;
	errno = 0;
	unsigned long long v = strtoull(s, &end, 0);
	if (errno || end == s)
		die("bad size '%s'", s);
	switch (*end) {
	case 'k': case 'K': v <<= 10; end++; break;
	case 'm': case 'M': v <<= 20; end++; break;
	case 'g': case 'G': v <<= 30; end++; break;
	default: break;
	}
	if (*end)
		die("bad size '%s'", s);
	return v;
}

static double now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

static uint64_t splitmix64(uint64_t x)
{
	x += 0x9e3779b97f4a7c15ull;
	x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
	x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
	return x ^ (x >> 31);
}

/* buf = the pattern for [off, off+len); off and len multiples of 8. */
static void fill(uint8_t *buf, uint64_t off, uint64_t len, uint64_t seed)
{
	for (uint64_t i = 0; i < len; i += 8) {
		uint64_t w = splitmix64(seed * 0x100000001b3ull + off + i);
		memcpy(buf + i, &w, 8);
	}
}

static void *xalloc(size_t n)
{
	void *p = NULL;
	if (posix_memalign(&p, ALIGN, n ? n : ALIGN))
		die("out of memory (%zu bytes)", n);
	return p;
}

static int xopen(const char *path, int flags, int direct)
{
	int fd = open(path, flags | (direct ? O_DIRECT : 0));
	if (fd < 0)
		die("open %s: %s", path, strerror(errno));
	return fd;
}

static void pwrite_all(int fd, const uint8_t *buf, size_t len, uint64_t off, const char *what)
{
	while (len) {
		ssize_t r = pwrite(fd, buf, len, (off_t)off);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			die("%s: pwrite at %" PRIu64 ": %s", what, off, r < 0 ? strerror(errno) : "wrote 0");
		buf += r, len -= (size_t)r, off += (uint64_t)r;
	}
}

static void pread_all(int fd, uint8_t *buf, size_t len, uint64_t off, const char *what)
{
	while (len) {
		ssize_t r = pread(fd, buf, len, (off_t)off);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			die("%s: pread at %" PRIu64 ": %s", what, off, r < 0 ? strerror(errno) : "end of device");
		buf += r, len -= (size_t)r, off += (uint64_t)r;
	}
}

/* Options after the positional arguments. */
static int opt_direct, opt_clear;
static uint64_t opt_bs, opt_qd, opt_secs;

static void parse_opts(int argc, char **argv, int first)
{
	for (int i = first; i < argc; i++) {
		if (!strcmp(argv[i], "-d"))
			opt_direct = 1;
		else if (!strcmp(argv[i], "-c"))
			opt_clear = 1;
		else if (!strcmp(argv[i], "-b") && i + 1 < argc)
			opt_bs = parse_size(argv[++i]);
		else if (!strcmp(argv[i], "-q") && i + 1 < argc)
			opt_qd = parse_size(argv[++i]);
		else if (!strcmp(argv[i], "-t") && i + 1 < argc)
			opt_secs = parse_size(argv[++i]);
		else
			die("unknown option '%s'", argv[i]);
	}
}

static void check_align(uint64_t off, uint64_t len, uint64_t bs)
{
	if (off % 8 || len % 8)
		die("offset and length must be multiples of 8");
	if (opt_direct && (off % 512 || len % 512 || bs % 512))
		die("O_DIRECT needs 512-aligned offset, length and block size");
}

static int cmd_gen(uint64_t off, uint64_t len, uint64_t seed)
{
	check_align(off, len, 8);
	size_t chunk = 1 << 20;
	uint8_t *buf = xalloc(chunk);
	while (len) {
		size_t n = len < chunk ? (size_t)len : chunk;
		fill(buf, off, n, seed);
		if (fwrite(buf, 1, n, stdout) != n)
			die("gen: write: %s", strerror(errno));
		off += n, len -= n;
	}
	return fflush(stdout) ? 2 : 0;
}

static int cmd_write(const char *dev, uint64_t off, uint64_t len, uint64_t seed)
{
	uint64_t bs = opt_bs ? opt_bs : 64 << 10;
	check_align(off, len, bs);
	int fd = xopen(dev, O_WRONLY, opt_direct);
	uint8_t *buf = xalloc(bs);
	double t0 = now();
	for (uint64_t p = 0; p < len; p += bs) {
		uint64_t n = len - p < bs ? len - p : bs;
		fill(buf, off + p, n, seed);
		pwrite_all(fd, buf, n, off + p, dev);
	}
	if (fsync(fd))
		die("fsync %s: %s", dev, strerror(errno));
	close(fd);
	printf("BLKBENCH write dev=%s off=%" PRIu64 " len=%" PRIu64 " seed=%" PRIu64 " direct=%d secs=%.3f\n", dev, off,
	       len, seed, opt_direct, now() - t0);
	return 0;
}

/* 0 if [off, off+len) of fd holds the pattern (or zeros when zero != 0); else prints the first difference.
 * hex (if not NULL): the SHA-256 of everything read (the whole range, even after a mismatch). */
static int verify_range(int fd, const char *dev, uint64_t off, uint64_t len, uint64_t seed, int zero, uint64_t bs,
			char *hex)
{
	uint8_t *got = xalloc(bs), *want = xalloc(bs);
	int bad = 0;
	struct sha256 h;
	sha256_init(&h);
	for (uint64_t p = 0; p < len && (!bad || hex); p += bs) {
		uint64_t n = len - p < bs ? len - p : bs;
		pread_all(fd, got, n, off + p, dev);
		if (hex)
			sha256_update(&h, got, n);
		if (bad)
			continue;
		if (zero)
			memset(want, 0, n);
		else
			fill(want, off + p, n, seed);
		if (memcmp(got, want, n)) {
			uint64_t i = 0;
			while (got[i] == want[i])
				i++;
			uint64_t at = off + p + i;
			int allzero = 1;
			for (uint64_t j = i & ~511ull; j < ((i & ~511ull) + 512) && j < n; j++)
				allzero &= got[j] == 0;
			printf("BLKBENCH mismatch dev=%s at=%" PRIu64 " (sector %" PRIu64 ") got=%02x want=%02x%s\n", dev, at,
			       at / 512, got[i], want[i], allzero ? " (that sector reads as zeros)" : "");
			bad = 1;
		}
	}
	free(got);
	free(want);
	if (hex)
		sha256_hex(&h, hex);
	return bad;
}

static int cmd_verify(const char *dev, uint64_t off, uint64_t len, uint64_t seed, int zero)
{
	uint64_t bs = opt_bs ? opt_bs : 1 << 20;
	check_align(off, len, bs);
	int fd = xopen(dev, O_RDONLY, opt_direct);
	char hex[65];
	int bad = verify_range(fd, dev, off, len, seed, zero, bs, hex);
	close(fd);
	printf("BLKBENCH verify dev=%s off=%" PRIu64 " len=%" PRIu64 " want=%s%" PRIu64 " direct=%d sha256=%s %s\n", dev,
	       off, len, zero ? "zeros" : "seed", zero ? 0 : seed, opt_direct, hex, bad ? "BAD" : "ok");
	return bad;
}

static int cmd_zero(const char *dev, uint64_t off, uint64_t len)
{
	if (!opt_clear)
		return cmd_verify(dev, off, len, 0, 1);
	int fd = xopen(dev, O_WRONLY, 0);
	uint64_t range[2] = { off, len };
	if (ioctl(fd, BLKZEROOUT, range))
		die("BLKZEROOUT %s [%" PRIu64 ", +%" PRIu64 "): %s", dev, off, len, strerror(errno));
	if (fsync(fd))
		die("fsync %s: %s", dev, strerror(errno));
	close(fd);
	printf("BLKBENCH zeroout dev=%s off=%" PRIu64 " len=%" PRIu64 "\n", dev, off, len);
	return 0;
}

static uint64_t gcd(uint64_t a, uint64_t b)
{
	while (b) {
		uint64_t t = a % b;
		a = b;
		b = t;
	}
	return a;
}

/* par: writers to disjoint slices, at once. */
struct par_arg {
	const char *dev;
	int fd;
	uint64_t off, len, seed, bs;
	int bad;
	pthread_barrier_t *bar;
};

static void *par_thread(void *p)
{
	struct par_arg *a = p;
	uint8_t *buf = xalloc(a->bs);
	pthread_barrier_wait(a->bar);
	/* Scattered order so the threads' requests interleave on the queue and reach the image out of order. */
	uint64_t nblk = (a->len + a->bs - 1) / a->bs;
	uint64_t step = 7; /* k -> (k * step + 3) % nblk is a permutation when gcd(step, nblk) == 1 */
	while (gcd(step, nblk) != 1)
		step++;
	for (uint64_t k = 0; k < nblk; k++) {
		uint64_t b = (k * step + 3) % nblk;
		uint64_t o = b * a->bs, n = a->len - o < a->bs ? a->len - o : a->bs;
		fill(buf, a->off + o, n, a->seed);
		pwrite_all(a->fd, buf, n, a->off + o, a->dev);
	}
	if (fdatasync(a->fd))
		die("fdatasync %s: %s", a->dev, strerror(errno));
	pthread_barrier_wait(a->bar);
	a->bad = verify_range(a->fd, a->dev, a->off, a->len, a->seed, 0, a->bs, NULL);
	free(buf);
	return NULL;
}

static int cmd_par(const char *dev, uint64_t off, uint64_t len, unsigned nthr, uint64_t seed)
{
	uint64_t bs = opt_bs ? opt_bs : 64 << 10;
	check_align(off, len, bs);
	if (nthr < 1 || nthr > 256 || len % nthr || (len / nthr) % 512)
		die("par: LEN must split into NTHREADS 512-aligned slices");
	int fd = xopen(dev, O_RDWR, opt_direct);
	pthread_barrier_t bar;
	pthread_barrier_init(&bar, NULL, nthr);
	struct par_arg *a = calloc(nthr, sizeof(*a));
	pthread_t *t = calloc(nthr, sizeof(*t));
	double t0 = now();
	for (unsigned i = 0; i < nthr; i++) {
		a[i] = (struct par_arg){ .dev = dev, .fd = fd, .off = off + i * (len / nthr), .len = len / nthr,
					 .seed = seed, .bs = bs, .bar = &bar };
		if (pthread_create(&t[i], NULL, par_thread, &a[i]))
			die("pthread_create failed");
	}
	int bad = 0;
	for (unsigned i = 0; i < nthr; i++) {
		pthread_join(t[i], NULL);
		bad |= a[i].bad;
	}
	close(fd);
	printf("BLKBENCH par dev=%s off=%" PRIu64 " len=%" PRIu64 " threads=%u seed=%" PRIu64 " direct=%d secs=%.3f %s\n",
	       dev, off, len, nthr, seed, opt_direct, now() - t0, bad ? "BAD" : "ok");
	return bad;
}

/* rowrite: every write path to a read-only disk must fail, and sector 0 must not change. */
static int cmd_rowrite(const char *dev)
{
	uint8_t *before = xalloc(4096), *after = xalloc(4096), *junk = xalloc(4096);
	memset(junk, 0xa5, 4096);
	int fd = xopen(dev, O_RDONLY, 1);
	pread_all(fd, before, 4096, 0, dev);
	close(fd);
	int leaks = 0;

	/* 1. open for writing */
	int wfd = open(dev, O_RDWR);
	printf("BLKBENCH rowrite open-rdwr: %s\n", wfd < 0 ? strerror(errno) : "opened (writes must still fail)");
	if (wfd >= 0) {
		/* 2. buffered write + fsync */
		ssize_t r = pwrite(wfd, junk, 4096, 0);
		int e = errno;
		int fr = r == 4096 ? fsync(wfd) : 0;
		int fe = errno;
		printf("BLKBENCH rowrite buffered: pwrite=%s%s%s\n", r < 0 ? strerror(e) : "ok",
		       r == 4096 ? " fsync=" : "", r == 4096 ? (fr ? strerror(fe) : "ok") : "");
		leaks += r >= 0 && fr == 0;
		close(wfd);
		/* 3. O_DIRECT write */
		wfd = open(dev, O_RDWR | O_DIRECT);
		if (wfd >= 0) {
			r = pwrite(wfd, junk, 4096, 0);
			printf("BLKBENCH rowrite direct: pwrite=%s\n", r < 0 ? strerror(errno) : "ok");
			leaks += r >= 0;
			/* 4. ask the kernel to forget the read-only flag, then write again: only the device stands
			 * in the way now (on kernels where BLKROSET can clear it) */
			int zero = 0;
			int ir = ioctl(wfd, BLKROSET, &zero);
			printf("BLKBENCH rowrite blkroset0: %s\n", ir ? strerror(errno) : "ok");
			close(wfd);
			wfd = open(dev, O_RDWR | O_DIRECT);
			if (wfd >= 0) {
				r = pwrite(wfd, junk, 4096, 0);
				printf("BLKBENCH rowrite direct-after-blkroset: pwrite=%s\n", r < 0 ? strerror(errno) : "ok");
				leaks += r >= 0;
				close(wfd);
			}
		}
	}
	fd = xopen(dev, O_RDONLY, 1);
	pread_all(fd, after, 4096, 0, dev);
	close(fd);
	int changed = memcmp(before, after, 4096) != 0;
	printf("BLKBENCH rowrite result: writes-accepted=%d sector0-changed=%d\n", leaks, changed);
	return leaks || changed;
}

/* Benchmarks. */
static int cmd_seq(const char *dev, uint64_t size, int write)
{
	uint64_t bs = opt_bs ? opt_bs : 1 << 20;
	opt_direct = 1;
	check_align(0, size, bs);
	int fd = xopen(dev, write ? O_WRONLY : O_RDONLY, 1);
	uint8_t *buf = xalloc(bs);
	fill(buf, 0, bs, 12345);
	double t0 = now();
	for (uint64_t p = 0; p < size; p += bs) {
		uint64_t n = size - p < bs ? size - p : bs;
		if (write)
			pwrite_all(fd, buf, n, p, dev);
		else
			pread_all(fd, buf, n, p, dev);
	}
	if (write && fsync(fd))
		die("fsync %s: %s", dev, strerror(errno));
	double s = now() - t0;
	close(fd);
	printf("BLKBENCH seq%s dev=%s bytes=%" PRIu64 " bs=%" PRIu64 " secs=%.3f MBps=%.1f\n", write ? "write" : "read",
	       dev, size, bs, s, size / s / 1e6);
	return 0;
}

struct rr_arg {
	int fd;
	uint64_t nblk, bs, ops, seed;
	double end;
};

static void *rr_thread(void *p)
{
	struct rr_arg *a = p;
	uint8_t *buf = xalloc(a->bs);
	uint64_t x = a->seed;
	for (;;) {
		for (int i = 0; i < 16; i++) {
			x = splitmix64(x);
			pread_all(a->fd, buf, a->bs, (x % a->nblk) * a->bs, "randread");
			a->ops++;
		}
		if (now() >= a->end)
			break;
	}
	free(buf);
	return NULL;
}

static int cmd_randread(const char *dev, uint64_t size)
{
	uint64_t bs = opt_bs ? opt_bs : 4096, qd = opt_qd ? opt_qd : 32, secs = opt_secs ? opt_secs : 10;
	opt_direct = 1;
	check_align(0, size, bs);
	int fd = xopen(dev, O_RDONLY, 1);
	struct rr_arg *a = calloc(qd, sizeof(*a));
	pthread_t *t = calloc(qd, sizeof(*t));
	double t0 = now();
	for (uint64_t i = 0; i < qd; i++) {
		a[i] = (struct rr_arg){ .fd = fd, .nblk = size / bs, .bs = bs, .seed = i * 7919 + 1, .end = t0 + secs };
		if (pthread_create(&t[i], NULL, rr_thread, &a[i]))
			die("pthread_create failed");
	}
	uint64_t ops = 0;
	for (uint64_t i = 0; i < qd; i++) {
		pthread_join(t[i], NULL);
		ops += a[i].ops;
	}
	double s = now() - t0;
	close(fd);
	printf("BLKBENCH randread dev=%s span=%" PRIu64 " bs=%" PRIu64 " qd=%" PRIu64 " ops=%" PRIu64
	       " secs=%.3f IOPS=%.0f MBps=%.1f\n",
	       dev, size, bs, qd, ops, s, ops / s, ops * bs / s / 1e6);
	return 0;
}

static void usage(void)
{
	fprintf(stderr, "usage: blkbench gen OFF LEN SEED | write|verify DEV OFF LEN SEED [-d] [-b BS] |\n"
			"       zero DEV OFF LEN [-c] | par DEV OFF LEN NTHREADS SEED [-d] [-b BS] | rowrite DEV |\n"
			"       seqwrite|seqread DEV SIZE [-b BS] | randread DEV SIZE [-b BS] [-q QD] [-t SECS]\n");
	exit(2);
}

int main(int argc, char **argv)
{
	setvbuf(stdout, NULL, _IOLBF, 0);
	if (argc < 2)
		usage();
	const char *c = argv[1];
	if (!strcmp(c, "gen") && argc == 5)
		return cmd_gen(parse_size(argv[2]), parse_size(argv[3]), parse_size(argv[4]));
	if ((!strcmp(c, "write") || !strcmp(c, "verify")) && argc >= 6) {
		parse_opts(argc, argv, 6);
		uint64_t off = parse_size(argv[3]), len = parse_size(argv[4]), seed = parse_size(argv[5]);
		return c[0] == 'w' ? cmd_write(argv[2], off, len, seed) : cmd_verify(argv[2], off, len, seed, 0);
	}
	if (!strcmp(c, "zero") && argc >= 5) {
		parse_opts(argc, argv, 5);
		return cmd_zero(argv[2], parse_size(argv[3]), parse_size(argv[4]));
	}
	if (!strcmp(c, "par") && argc >= 7) {
		parse_opts(argc, argv, 7);
		return cmd_par(argv[2], parse_size(argv[3]), parse_size(argv[4]), (unsigned)parse_size(argv[5]),
			       parse_size(argv[6]));
	}
	if (!strcmp(c, "rowrite") && argc == 3)
		return cmd_rowrite(argv[2]);
	if ((!strcmp(c, "seqwrite") || !strcmp(c, "seqread")) && argc >= 4) {
		parse_opts(argc, argv, 4);
		return cmd_seq(argv[2], parse_size(argv[3]), c[3] == 'w');
	}
	if (!strcmp(c, "randread") && argc >= 4) {
		parse_opts(argc, argv, 4);
		return cmd_randread(argv[2], parse_size(argv[3]));
	}
	usage();
	return 2;
}

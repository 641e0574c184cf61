/* netbench - one TCP bulk transfer with a SHA-256 of the bytes on each end, for the ftvmm test guest (static, no libs).
 *
 * Built into the guest's /bin by guest-images/build.sh and, for tests/bench/devices.sh, natively for the test-bed
 * host. Sizes accept K/M/G suffixes (powers of 1024).
 *
 *   netbench send IP PORT BYTES [SEED] [-w SECS] [-n]
 *       connect (retrying for up to SECS, default 30), send BYTES of a pseudo-random stream (xorshift from SEED),
 *       shut the write side, wait for the peer to close, print what was sent
 *   netbench recv PORT [-w SECS] [-a ADDR] [-n]
 *       listen on ADDR:PORT (default 0.0.0.0), print "NETBENCH listening", accept one connection within SECS
 *       (default 60), read to EOF, print what was received, close
 *   netbench echo PORT [-w SECS] [-a ADDR]
 *       listen as recv does, accept one connection, send back every byte it reads until EOF, close
 *   netbench rr IP PORT SECS [-w SECS]
 *       request/response: connect (retrying as send does), TCP_NODELAY, then for SECS one byte out and the same byte
 *       back, one at a time; prints "NETBENCH rr trans=N secs=S tps=T p50_us=A p99_us=B" (latency per transaction)
 *   -n: benchmark mode: no SHA-256, and the sender repeats one 256 KiB block (only the transport is timed)
 * Output: "NETBENCH sent|recv bytes=N sha256=HEX secs=S MBps=M" on stdout (sha256=- with -n); errors on
 * stderr, exit 1. secs runs from connect/accept until the peer has closed (sender) or EOF (receiver).
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

/* SHA-256 (FIPS 180-4). */
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
	fprintf(stderr, "netbench: ");
	vfprintf(stderr, fmt, ap);
	fprintf(stderr, "\n");
	va_end(ap);
	exit(1);
}

static uint64_t parse_size(const char *s)
{
	char *end;
	errno = 0;
	unsigned long long v = strtoull(s, &end, 0);
	if (errno || end == s)
		die("bad number '%s'", s);
	switch (*end) {
	case 'k': case 'K': v <<= 10; end++; break;
	case 'm': case 'M': v <<= 20; end++; break;
	case 'g': case 'G': v <<= 30; end++; break;
	default: break;
	}
	if (*end)
		die("bad number '%s'", s);
	return v;
}

static double now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

#define CHUNK (256 << 10)

static int nohash;

/* Connect to ip:port, retrying for up to wait_s (the peer may not listen yet). */
static int connect_retry(const char *ip, unsigned port, double wait_s)
{
	struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port) };
	if (inet_pton(AF_INET, ip, &sa.sin_addr) != 1)
		die("bad IPv4 address '%s'", ip);
	double deadline = now() + wait_s;
	for (;;) {
		int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
		if (fd < 0)
			die("socket: %s", strerror(errno));
		if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0)
			return fd;
		int e = errno;
		close(fd);
		if (now() > deadline)
			die("connect %s:%u: %s", ip, port, strerror(e));
		usleep(200000);
	}
}

/* Listen on addr:port, say so, accept one connection within wait_s. */
static int accept_one(const char *addr, unsigned port, double wait_s)
{
	struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port) };
	if (inet_pton(AF_INET, addr, &sa.sin_addr) != 1)
		die("bad IPv4 address '%s'", addr);
	int ls = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0), one = 1;
	if (ls < 0)
		die("socket: %s", strerror(errno));
	setsockopt(ls, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (bind(ls, (struct sockaddr *)&sa, sizeof(sa)) || listen(ls, 1))
		die("listen %s:%u: %s", addr, port, strerror(errno));
	printf("NETBENCH listening %s:%u\n", addr, port);
	fflush(stdout);
	struct pollfd pfd = { .fd = ls, .events = POLLIN };
	int pr;
	do
		pr = poll(&pfd, 1, (int)(wait_s * 1000));
	while (pr < 0 && errno == EINTR);
	if (pr <= 0)
		die("no connection on port %u within %.0f s", port, wait_s);
	int fd = accept(ls, NULL, NULL);
	if (fd < 0)
		die("accept: %s", strerror(errno));
	close(ls);
	return fd;
}

static int cmd_send(const char *ip, unsigned port, uint64_t bytes, uint64_t seed, double wait_s)
{
	int fd = connect_retry(ip, port, wait_s);
	uint8_t *buf = malloc(CHUNK);
	if (!buf)
		die("out of memory");
	struct sha256 h;
	sha256_init(&h);
	uint64_t x = seed * 0x9e3779b97f4a7c15ull + 0x1234567;
	double t0 = now();
	for (uint64_t left = bytes; left;) {
		size_t n = left < CHUNK ? (size_t)left : CHUNK;
		for (size_t i = 0; i < n && !(nohash && left < bytes); i += 8) {
			x ^= x << 13, x ^= x >> 7, x ^= x << 17;
			memcpy(buf + i, &x, 8); /* n is a multiple of 8 except at the very end: buf has room */
		}
		if (!nohash)
			sha256_update(&h, buf, n);
		for (size_t o = 0; o < n;) {
			ssize_t r = send(fd, buf + o, n - o, MSG_NOSIGNAL);
			if (r < 0 && errno == EINTR)
				continue;
			if (r <= 0)
				die("send after %" PRIu64 " bytes: %s", bytes - left + o, r < 0 ? strerror(errno) : "0");
			o += (size_t)r;
		}
		left -= n;
	}
	if (shutdown(fd, SHUT_WR))
		die("shutdown: %s", strerror(errno));
	/* The peer closes after it has read everything: then the time covers delivery, not just buffering. */
	for (;;) {
		ssize_t r = recv(fd, buf, CHUNK, 0);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			break;
	}
	double s = now() - t0;
	close(fd);
	char hex[65] = "-";
	if (!nohash)
		sha256_hex(&h, hex);
	printf("NETBENCH sent bytes=%" PRIu64 " sha256=%s secs=%.3f MBps=%.1f\n", bytes, hex, s, bytes / s / 1e6);
	return 0;
}

static int cmd_recv(const char *addr, unsigned port, double wait_s)
{
	int fd = accept_one(addr, port, wait_s);
	uint8_t *buf = malloc(CHUNK);
	if (!buf)
		die("out of memory");
	struct sha256 h;
	sha256_init(&h);
	uint64_t got = 0;
	double t0 = now();
	for (;;) {
		ssize_t r = recv(fd, buf, CHUNK, 0);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0)
			die("recv after %" PRIu64 " bytes: %s", got, strerror(errno));
		if (r == 0)
			break;
		if (!nohash)
			sha256_update(&h, buf, (size_t)r);
		got += (uint64_t)r;
	}
	double s = now() - t0;
	close(fd);
	char hex[65] = "-";
	if (!nohash)
		sha256_hex(&h, hex);
	printf("NETBENCH recv bytes=%" PRIu64 " sha256=%s secs=%.3f MBps=%.1f\n", got, hex, s, got / s / 1e6);
	return 0;
}

static int cmd_echo(const char *addr, unsigned port, double wait_s)
{
	int fd = accept_one(addr, port, wait_s), one = 1;
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	uint8_t buf[4096];
	uint64_t n = 0;
	for (;;) {
		ssize_t r = recv(fd, buf, sizeof(buf), 0);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			break;
		for (ssize_t o = 0; o < r;) {
			ssize_t w = send(fd, buf + o, (size_t)(r - o), MSG_NOSIGNAL);
			if (w < 0 && errno == EINTR)
				continue;
			if (w <= 0)
				die("echo send after %" PRIu64 " bytes: %s", n, w < 0 ? strerror(errno) : "0");
			o += w;
		}
		n += (uint64_t)r;
	}
	close(fd);
	printf("NETBENCH echo bytes=%" PRIu64 "\n", n);
	return 0;
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return x < y ? -1 : x > y;
}

#define RR_MAX (1u << 20) /* latencies kept: more transactions than that are counted, not sampled */

static int cmd_rr(const char *ip, unsigned port, double secs, double wait_s)
{
	int fd = connect_retry(ip, port, wait_s), one = 1;
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	double *lat = malloc(RR_MAX * sizeof(*lat));
	if (!lat)
		die("out of memory");
	uint64_t n = 0;
	double t0 = now(), t = t0;
	while (t - t0 < secs) {
		uint8_t c = (uint8_t)n, back;
		double a = now();
		if (send(fd, &c, 1, MSG_NOSIGNAL) != 1)
			die("rr send after %" PRIu64 " transactions: %s", n, strerror(errno));
		ssize_t r;
		do
			r = recv(fd, &back, 1, 0);
		while (r < 0 && errno == EINTR);
		if (r != 1 || back != c)
			die("rr: transaction %" PRIu64 ": %s", n, r == 1 ? "wrong byte back" : "no answer");
		t = now();
		if (n < RR_MAX)
			lat[n] = (t - a) * 1e6;
		n++;
	}
	double s = t - t0;
	shutdown(fd, SHUT_WR);
	close(fd);
	size_t k = n < RR_MAX ? (size_t)n : RR_MAX;
	if (!k)
		die("rr: no transaction in %.1f s", secs);
	qsort(lat, k, sizeof(*lat), cmp_double);
	printf("NETBENCH rr trans=%" PRIu64 " secs=%.3f tps=%.1f p50_us=%.0f p99_us=%.0f\n", n, s, n / s, lat[k / 2],
	       lat[k * 99 / 100]);
	free(lat);
	return 0;
}

int main(int argc, char **argv)
{
	setvbuf(stdout, NULL, _IOLBF, 0);
	double wait_s = -1;
	const char *addr = "0.0.0.0";
	char *pos[8];
	int npos = 0;
	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "-w") && i + 1 < argc)
			wait_s = (double)parse_size(argv[++i]);
		else if (!strcmp(argv[i], "-n"))
			nohash = 1;
		else if (!strcmp(argv[i], "-a") && i + 1 < argc)
			addr = argv[++i];
		else if (npos < 8)
			pos[npos++] = argv[i];
		else
			die("too many arguments");
	}
	if (npos >= 4 && !strcmp(pos[0], "send") && npos <= 5)
		return cmd_send(pos[1], (unsigned)parse_size(pos[2]), parse_size(pos[3]), npos == 5 ? parse_size(pos[4]) : 1,
				wait_s < 0 ? 30 : wait_s);
	if (npos == 2 && !strcmp(pos[0], "recv"))
		return cmd_recv(addr, (unsigned)parse_size(pos[1]), wait_s < 0 ? 60 : wait_s);
	if (npos == 2 && !strcmp(pos[0], "echo"))
		return cmd_echo(addr, (unsigned)parse_size(pos[1]), wait_s < 0 ? 60 : wait_s);
	if (npos == 4 && !strcmp(pos[0], "rr"))
		return cmd_rr(pos[1], (unsigned)parse_size(pos[2]), (double)parse_size(pos[3]), wait_s < 0 ? 30 : wait_s);
	fprintf(stderr, "usage: netbench send IP PORT BYTES [SEED] [-w SECS] [-n] | recv PORT [-w SECS] [-a ADDR] [-n] |\n"
			"       echo PORT [-w SECS] [-a ADDR] | rr IP PORT SECS [-w SECS]\n");
	return 2;
}

/* ftwork.c - guest workload for the snapshot/restore and fault-tolerance tests: a counter whose state lives in
 * memory, on disk, in DMA-written pages, on a TCP stream and in per-CPU timers, all checked every tick.
 *
 * Built static into the test guest as /bin/ftwork by guest-images/build.sh; started by the ftwork check
 * (guest-images/checks/ftwork.sh: ftvmm.test=ftwork ftvmm.ftwork=--pages,256,--tcp,192.0.2.1:7000,...).
 *
 * usage: ftwork [--pages N] [--hot-words K] [--interval-ms M] [--stride S] [--disk DEV] [--dma-pages P] [--tcp HOST:PORT]
 *               [--tcp-chain] [--timers] [--timer-stall-ms T] [--count K]
 *
 *   --pages N        N 4 KiB pages (default 64) whose contents are a function of the counter: each 8-byte word
 *                    is hash(last write counter of the page, page, word). Every tick verifies ALL pages against
 *                    the counter (a lost page reads as zero, a stale one as an older counter's pattern), then
 *                    advances the counter and rewrites the pages due (all of them with stride 1).
 *   --hot-words K    each rewrite of a page changes only K of its 512 words, evenly spread (1, 2, 4 ... 512;
 *                    default 512: all): the others keep the pattern of counter 0. A guest that updates a few
 *                    fields per page (what page deltas, ftvmm run --delta-cache, are for).
 *   --stride S       rewrite only pages p with p % S == seq % S each tick (default 1: every page every tick);
 *                    large S dirties few pages per tick (fault-tolerance epochs with a small dirty set).
 *   --interval-ms M  tick period on CLOCK_MONOTONIC (default 100; 0: as fast as possible).
 *   --disk DEV       block device (or file). Each tick writes a 512-byte record at offset (seq * 512) mod AREA
 *                    with O_DIRECT|O_DSYNC BEFORE printing the tick's line, reads it back, and reads back the
 *                    previous tick's record (written before a snapshot/failover, read after it). So records
 *                    on disk always form a prefix at least as new as memory. AREA = the device minus the DMA
 *                    area (the last P pages, rounded down to 512). Record: 64 little-endian u64 words:
 *                    [0] magic, the bytes "FTWKREC1", [1] seq, [2] sum (as printed for seq), [3..62] zero,
 *                    [63] rec_check(words 0..62) (see rec_check below; tests re-implement it on the host).
 *   --dma-pages P    (needs --disk) the last 4 x P pages of DEV are a DMA area of 4 slots (tick n: slot n % 4,
 *                    so a copy killed a few ticks after a live snapshot has not overwritten the slot the restored
 *                    copy reads back next): each tick writes a fresh pattern
 *                    of the new seq there from one buffer, then reads it with O_DIRECT into ANOTHER buffer that
 *                    the CPU never writes (only the device model does, as a VMM write into guest memory). The
 *                    next tick verifies that buffer still holds the pattern: a snapshot or checkpoint that
 *                    misses VMM-written pages (dirty bitmap) fails this as "BAD dma-stale".
 *   --tcp HOST:PORT  one TCP connection (IPv4 literal; connect retried for 60 s at start only), TCP_NODELAY,
 *                    sending "<seq>\n" every tick. Never reconnects: a send error, a reset or EOF from the
 *                    peer is BAD (the connection must survive restore/failover). Data from the peer is ignored.
 *   --tcp-chain      (with --tcp) each line is "<seq> <nonce> <chain>\n" instead, both 16 lower-case hex digits:
 *                    nonce = mix of RDTSC, CLOCK_REALTIME/CLOCK_MONOTONIC ns and getrandom(): a tick re-executed
 *                    (after a restore or failover) sends a different nonce than the run it replaces; chain =
 *                    64-bit FNV-1a over every byte this process sent on the connection before this line (the
 *                    first line carries the FNV offset basis cbf29ce484222325). The receiver hashes what it
 *                    received: a chain that disagrees means bytes before that line came from a run of the guest
 *                    that did not go on (a splice: output of an epoch the surviving copy never produced). The
 *                    line has the same length in both runs, so only the chain can tell them apart.
 *                    tests/integration/ft_tcpcheck.py --chain checks it. Without --tcp-chain the bytes are
 *                    deterministic (tests/integration/t_snapshot.sh reads the plain "<seq>\n" stream).
 *   --timers         one thread pinned per online CPU, each looping nanosleep(10 ms) and counting; the counts
 *                    are printed in CPU order (tests check every CPU's count keeps increasing).
 *   --timer-stall-ms T  BAD if some CPU's count has not moved for T ms of CLOCK_MONOTONIC (default 0: off).
 *   --count K        exit 0 after the line with seq=K (seq counts from 1 and survives restore/failover).
 *
 * Flood mode (tests/integration/t_ftflood.sh: a hostile guest must not make the VMM grow). --flood-udp or
 * --flood-disk start threads beside the ticks above that run until the VM ends, plus a progress line every second:
 *   --flood-udp IPV4:PORT  send UDP datagrams of --flood-udp-size bytes (default 65507, the largest; the NIC sends
 *                    them as MTU-sized IP fragments) to IPV4:PORT as fast as the socket takes them (unconnected:
 *                    ICMP errors are not reported; a send error is counted and retried after 1 ms)
 *   --flood-disk DEV write --flood-block bytes (default 1 MiB, a multiple of 4096) per O_DIRECT pwrite over all of
 *                    DEV, front to back, round and round (each block carries the pass and its offset; never read
 *                    back). Use a device --disk does not use: its records would be overwritten.
 *   --flood-nic IF   the interface whose tx_bytes the progress line shows (default eth0)
 *   Output:  FTWORK flood start udp=IPV4:PORT|- udp_size=N disk=DEV|- disk_size=BYTES block=N nic=IF
 *            FTWORK flood tick=<n> udp_bytes=<b> udp_pkts=<n> udp_errs=<n> disk_bytes=<b> disk_writes=<n>
 *                  disk_errs=<n> nic_tx_bytes=<b> mono_ns=<CLOCK_MONOTONIC ns>
 *            every second (tick and the counters live in guest memory: they go on after a failover).
 *            udp_bytes: what the socket took (a full device queue drops datagrams silently: an unconnected UDP
 *            socket without IP_RECVERR reports no error); nic_tx_bytes: /sys/class/net/IF/statistics/tx_bytes,
 *            frames the device has consumed (virtio-net counts a frame when the device returns its buffer), -1
 *            if unreadable.
 *   Without these options ftwork behaves (and prints) exactly as it did before they existed.
 *
 * Output (stdout, one write() per line):
 *   FTWORK start pages=N stride=S interval_ms=M cpus=C disk=DEV|- dma_pages=P tcp=HOST:PORT|- area=BYTES tcp_chain=0|1
 *   FTWORK seq=<n> sum=<16 hex> ok mono_ns=<CLOCK_MONOTONIC ns> ticks=<cpu0>,<cpu1>,...   (ticks=- without --timers)
 *   FTWORK seq=<n> BAD <what>: <detail>       then exit 1 (memory mismatch, DMA pages stale, disk record
 *                                             mismatch, clock went backwards, TCP error, timer stall)
 *   FTWORK done seq=<K>                       after --count K, exit 0
 * Determinism: seq and sum (a checksum of the whole page region at seq) depend only on seq and the options, so a
 * tick re-done after a restore prints the same seq and sum, writes the same disk record and sends the same
 * bytes on TCP (except with --tcp-chain, whose nonce differs on purpose). mono_ns of a line is strictly greater
 * than the previous line's (else BAD).
 * Exit status: 0 after --count, 1 on BAD, 2 on a usage or setup error.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <linux/fs.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <arpa/inet.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#if defined(__x86_64__) || defined(__i386__)
#include <x86intrin.h>
#endif

#define PAGE 4096u
#define WORDS (PAGE / 8)
#define REC_SIZE 512u
#define REC_MAGIC 0x314345524b575446ull /* the bytes "FTWKREC1" in little-endian order */
#define MAX_CPUS 256

static uint64_t opt_hot_words = WORDS;
static uint64_t opt_pages = 64, opt_stride = 1, opt_interval_ms = 100, opt_count, opt_dma_pages, opt_stall_ms;
static const char *opt_disk, *opt_tcp;
static int opt_timers, opt_tcp_chain;
static const char *opt_flood_udp, *opt_flood_disk, *opt_flood_nic = "eth0";
static uint64_t opt_flood_udp_size = 65507, opt_flood_block = 1u << 20;

static uint64_t seq;       /* the counter: the last completed tick */
static uint8_t *region;    /* opt_pages pages */
static uint64_t *pagesum;  /* per page: the sum of its current contents */
static int disk_fd = -1;
/* The DMA area on disk has DMA_SLOTS slots, tick n uses slot n % DMA_SLOTS: a process killed a few ticks after
 * a live snapshot (it ran on meanwhile) then never overwrote the slot the restored guest reads back next. */
#define DMA_SLOTS 4
static uint64_t dev_size, rec_area, dma_off;
static uint8_t *recbuf, *rdbuf;      /* record write / read-back buffers */
static uint8_t *dma_wbuf, *dma_rbuf; /* DMA area: CPU-written source, device-written destination */
static int tcp_fd = -1;
#define FNV_OFFSET 0xcbf29ce484222325ull
#define FNV_PRIME 0x100000001b3ull
static uint64_t tcp_chain = FNV_OFFSET; /* FNV-1a over every byte sent on tcp_fd so far (--tcp-chain) */
static uint64_t last_mono, last_sum;

static int ncpus;
static int cpu_ids[MAX_CPUS];
static volatile uint64_t timer_ticks[MAX_CPUS];
static uint64_t stall_last[MAX_CPUS], stall_since[MAX_CPUS];

static uint64_t now_mono(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static void out(const char *fmt, ...)
{
	char line[1024];
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(line, sizeof(line) - 1, fmt, ap);
	va_end(ap);
	if (n < 0)
		return;
	if ((size_t)n > sizeof(line) - 2)
		n = sizeof(line) - 2;
	line[n++] = '\n';
	const char *p = line;
	while (n > 0) {
		ssize_t w = write(1, p, (size_t)n);
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			break;
		p += w;
		n -= (int)w;
	}
}

static void bad(const char *what, const char *fmt, ...)
{
	char detail[768];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(detail, sizeof(detail), fmt, ap);
	va_end(ap);
	out("FTWORK seq=%" PRIu64 " BAD %s: %s", seq + 1, what, detail);
	exit(1);
}

static void die(const char *fmt, ...)
{
	char msg[512];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	out("FTWORK error: %s", msg);
	exit(2);
}

/* ---- the deterministic contents ---- */

static inline uint64_t mix64(uint64_t x)
{
	x ^= x >> 30;
	x *= 0xbf58476d1ce4e5b9ull;
	x ^= x >> 27;
	x *= 0x94d049bb133111ebull;
	x ^= x >> 31;
	return x;
}

/* word w of page p when last written at counter c (salt separates the memory, DMA and record domains) */
static inline uint64_t page_base(uint64_t c, uint64_t p, uint64_t salt) { return mix64((c << 24) ^ p ^ salt) | 1; }
static inline uint64_t word_val(uint64_t base, uint64_t w)
{
	uint64_t x = (base ^ (w * 0x9e3779b97f4a7c15ull)) * 0xff51afd7ed558ccdull;
	return x ^ (x >> 29);
}

/* the counter at which page p was last written when the counter is c */
static inline uint64_t last_write(uint64_t p, uint64_t c)
{
	if (opt_stride <= 1)
		return c;
	uint64_t r = (c % opt_stride + opt_stride - p % opt_stride) % opt_stride;
	return c >= r ? c - r : 0;
}

#define SALT_MEM 0x6d656d00ull
#define SALT_DMA 0x646d6100ull

/* word i of a page last written at counter c: of counter c's pattern, or (a memory page's word that --hot-words
 * leaves alone) of counter 0's */
static inline uint64_t word_at(uint64_t p, uint64_t salt, uint64_t i, uint64_t base_c)
{
	if (salt != SALT_MEM || i % (WORDS / opt_hot_words) == 0)
		return word_val(base_c, i);
	return word_val(page_base(0, p, salt), i);
}

static uint64_t fill_page(uint8_t *pg, uint64_t c, uint64_t p, uint64_t salt)
{
	uint64_t *w = (uint64_t *)pg, base = page_base(c, p, salt), s = 0;
	for (uint64_t i = 0; i < WORDS; i++) {
		w[i] = word_at(p, salt, i, base);
		s += w[i] * (2 * i + 1);
	}
	return s;
}

/* 0 if the page holds pattern (c, p); else the number of wrong words */
static unsigned check_page(const uint8_t *pg, uint64_t c, uint64_t p, uint64_t salt)
{
	const uint64_t *w = (const uint64_t *)pg;
	uint64_t base = page_base(c, p, salt);
	unsigned badw = 0;
	for (uint64_t i = 0; i < WORDS; i++)
		badw += w[i] != word_at(p, salt, i, base);
	return badw;
}

/* what a wrong page holds instead: zero, an older counter's pattern, or garbage */
static void diagnose(const uint8_t *pg, uint64_t c, uint64_t p, uint64_t salt, uint64_t step, char *buf, size_t len)
{
	const uint64_t *w = (const uint64_t *)pg;
	int zero = 1;
	for (unsigned i = 0; i < WORDS; i++)
		zero &= w[i] == 0;
	if (zero) {
		snprintf(buf, len, "all zero");
		return;
	}
	for (uint64_t k = 1; k <= 64 && k * step <= c; k++)
		if (!check_page(pg, c - k * step, p, salt)) {
			snprintf(buf, len, "stale: holds the contents of seq %" PRIu64 " (expected %" PRIu64 ")", c - k * step, c);
			return;
		}
	if (!check_page(pg, c + step, p, salt)) {
		snprintf(buf, len, "holds the NEXT seq %" PRIu64 " (expected %" PRIu64 ")", c + step, c);
		return;
	}
	snprintf(buf, len, "garbage (word0=%016" PRIx64 ")", w[0]);
}

static uint64_t region_sum(void)
{
	uint64_t s = 0;
	for (uint64_t p = 0; p < opt_pages; p++)
		s += pagesum[p] * (p + 1);
	return s;
}

static void verify_region(void)
{
	uint64_t nbad = 0, first = 0, words = 0;
	for (uint64_t p = 0; p < opt_pages; p++) {
		unsigned b = check_page(region + p * PAGE, last_write(p, seq), p, SALT_MEM);
		if (b) {
			if (!nbad)
				first = p;
			nbad++;
			words += b;
		}
	}
	if (nbad) {
		char why[160];
		diagnose(region + first * PAGE, last_write(first, seq), first, SALT_MEM, opt_stride, why, sizeof(why));
		bad("mem", "%" PRIu64 " of %" PRIu64 " pages wrong (%" PRIu64 " words) for seq %" PRIu64
			   "; first page %" PRIu64 ": %s",
		    nbad, opt_pages, words, seq, first, why);
	}
}

/* ---- disk ---- */

static uint64_t rec_check(const uint64_t *w)
{
	uint64_t h = 0x7265636f7264ull;
	for (int i = 0; i < 63; i++)
		h = mix64(h ^ w[i]) + (uint64_t)i;
	return h;
}

static void rec_build(uint64_t *w, uint64_t s, uint64_t sum)
{
	memset(w, 0, REC_SIZE);
	w[0] = REC_MAGIC;
	w[1] = s;
	w[2] = sum;
	w[63] = rec_check(w);
}

static uint64_t rec_off(uint64_t s) { return (s * REC_SIZE) % rec_area; }

static void pio(int write, void *buf, size_t len, uint64_t off, const char *what)
{
	size_t done = 0;
	while (done < len) {
		ssize_t n = write ? pwrite(disk_fd, (uint8_t *)buf + done, len - done, (off_t)(off + done))
				  : pread(disk_fd, (uint8_t *)buf + done, len - done, (off_t)(off + done));
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			bad("disk", "%s of %zu bytes at %" PRIu64 " failed: %s", what, len, off,
			    n < 0 ? strerror(errno) : "short");
		done += (size_t)n;
	}
}

/* the record of s, read back from disk, must be intact and carry sum (sum_known) */
static void check_record(uint64_t s, uint64_t sum, int sum_known, const char *when)
{
	pio(0, rdbuf, REC_SIZE, rec_off(s), "record read-back");
	const uint64_t *w = (const uint64_t *)rdbuf;
	if (w[0] != REC_MAGIC || w[1] != s || w[63] != rec_check(w))
		bad("disk", "%s record of seq %" PRIu64 " at offset %" PRIu64 " reads back wrong: magic %016" PRIx64
			    " seq %" PRIu64 " check %s",
		    when, s, rec_off(s), w[0], w[1], w[63] == rec_check(w) ? "ok" : "wrong");
	if (sum_known && w[2] != sum)
		bad("disk", "%s record of seq %" PRIu64 " has sum %016" PRIx64 ", memory says %016" PRIx64, when, s, w[2],
		    sum);
}

static void disk_open(void)
{
	disk_fd = open(opt_disk, O_RDWR | O_DIRECT | O_DSYNC | O_CLOEXEC);
	if (disk_fd < 0 && errno == EINVAL) {
		/* a file system without O_DIRECT (tmpfs): only for trying ftwork outside a guest */
		disk_fd = open(opt_disk, O_RDWR | O_DSYNC | O_CLOEXEC);
		fprintf(stderr, "ftwork: %s: no O_DIRECT here, using buffered O_DSYNC I/O\n", opt_disk);
	}
	if (disk_fd < 0)
		die("--disk %s: %s", opt_disk, strerror(errno));
	struct stat st;
	if (fstat(disk_fd, &st) < 0)
		die("--disk %s: %s", opt_disk, strerror(errno));
	if (S_ISBLK(st.st_mode)) {
		if (ioctl(disk_fd, BLKGETSIZE64, &dev_size) < 0)
			die("--disk %s: BLKGETSIZE64: %s", opt_disk, strerror(errno));
	} else {
		dev_size = (uint64_t)st.st_size;
	}
	uint64_t dma_bytes = opt_dma_pages * PAGE;
	if (dev_size < DMA_SLOTS * dma_bytes + 64 * REC_SIZE)
		die("--disk %s: %" PRIu64 " bytes is too small for %" PRIu64 " DMA pages and 64 records", opt_disk, dev_size,
		    opt_dma_pages);
	dma_off = (dev_size - DMA_SLOTS * dma_bytes) & ~(uint64_t)(PAGE - 1);
	rec_area = (opt_dma_pages ? dma_off : dev_size) & ~(uint64_t)(REC_SIZE - 1);
	if (posix_memalign((void **)&recbuf, PAGE, PAGE) || posix_memalign((void **)&rdbuf, PAGE, PAGE))
		die("out of memory");
	if (opt_dma_pages &&
	    (posix_memalign((void **)&dma_wbuf, PAGE, dma_bytes) || posix_memalign((void **)&dma_rbuf, PAGE, dma_bytes)))
		die("out of memory");
	if (dma_rbuf)
		memset(dma_rbuf, 0, dma_bytes); /* fault the pages in; afterwards only the device writes them */
}

static void dma_verify(uint64_t s, const char *what)
{
	for (uint64_t i = 0; i < opt_dma_pages; i++) {
		if (check_page(dma_rbuf + i * PAGE, s, i, SALT_DMA)) {
			char why[160];
			diagnose(dma_rbuf + i * PAGE, s, i, SALT_DMA, 1, why, sizeof(why));
			bad(what, "DMA buffer page %" PRIu64 " of %" PRIu64 " (read from disk for seq %" PRIu64 "): %s", i,
			    opt_dma_pages, s, why);
		}
	}
}

/* ---- TCP ---- */

static void tcp_connect(void)
{
	char host[64];
	const char *colon = strrchr(opt_tcp, ':');
	if (!colon || (size_t)(colon - opt_tcp) >= sizeof(host))
		die("--tcp %s: want IPV4:PORT", opt_tcp);
	memcpy(host, opt_tcp, (size_t)(colon - opt_tcp));
	host[colon - opt_tcp] = '\0';
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons((uint16_t)atoi(colon + 1)) };
	if (inet_pton(AF_INET, host, &a.sin_addr) != 1 || !a.sin_port)
		die("--tcp %s: want IPV4:PORT", opt_tcp);
	uint64_t deadline = now_mono() + 60000000000ull;
	int err = 0;
	for (;;) {
		tcp_fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
		if (tcp_fd < 0)
			die("socket: %s", strerror(errno));
		if (connect(tcp_fd, (struct sockaddr *)&a, sizeof(a)) == 0)
			break;
		err = errno;
		close(tcp_fd);
		tcp_fd = -1;
		if (now_mono() > deadline)
			die("--tcp %s: cannot connect: %s", opt_tcp, strerror(err));
		usleep(200000);
	}
	int one = 1;
	setsockopt(tcp_fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
}

/* a value that differs each time a tick runs, including a tick re-executed from a checkpoint: the TSC and the
 * clocks have moved on by then (the guest's CRNG alone would not do: its state is restored with memory) */
static uint64_t tcp_nonce(void)
{
	uint64_t r = 0, x;
	struct timespec rt, mo;
	clock_gettime(CLOCK_REALTIME, &rt);
	clock_gettime(CLOCK_MONOTONIC, &mo);
	if (getrandom(&r, sizeof(r), GRND_NONBLOCK) != (ssize_t)sizeof(r))
		r = 0; /* CRNG not ready yet: the clocks do */
#if defined(__x86_64__) || defined(__i386__)
	x = mix64((uint64_t)__rdtsc());
#else
	x = 0;
#endif
	x = mix64(x ^ (uint64_t)rt.tv_sec * 1000000000ull ^ (uint64_t)rt.tv_nsec);
	x = mix64(x ^ (uint64_t)mo.tv_sec * 1000000000ull ^ (uint64_t)mo.tv_nsec);
	return mix64(x ^ r);
}

static void tcp_tick(uint64_t s)
{
	/* anything from the peer: data is ignored, EOF or an error is fatal */
	struct pollfd p = { .fd = tcp_fd, .events = POLLIN };
	while (poll(&p, 1, 0) > 0 && (p.revents & (POLLIN | POLLERR | POLLHUP))) {
		char junk[512];
		ssize_t n = recv(tcp_fd, junk, sizeof(junk), MSG_DONTWAIT);
		if (n == 0)
			bad("tcp", "the peer closed the connection");
		if (n < 0) {
			if (errno == EAGAIN || errno == EINTR)
				break;
			bad("tcp", "receive: %s", strerror(errno));
		}
	}
	char line[80];
	int len = opt_tcp_chain ? snprintf(line, sizeof(line), "%" PRIu64 " %016" PRIx64 " %016" PRIx64 "\n", s,
					   tcp_nonce(), tcp_chain)
				: snprintf(line, sizeof(line), "%" PRIu64 "\n", s);
	int off = 0;
	while (off < len) {
		ssize_t n = send(tcp_fd, line + off, (size_t)(len - off), MSG_NOSIGNAL);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			bad("tcp", "send: %s", n < 0 ? strerror(errno) : "0 bytes");
		off += (int)n;
	}
	/* only once the whole line is in the socket: a restore in the middle of the loop above goes on sending
	 * the same buffer, then hashes it (memory and the socket's send queue come from the same checkpoint) */
	for (int i = 0; i < len; i++)
		tcp_chain = (tcp_chain ^ (uint8_t)line[i]) * FNV_PRIME;
}

/* ---- timers ---- */

static void *timer_thread(void *arg)
{
	int idx = (int)(intptr_t)arg;
	cpu_set_t set;
	CPU_ZERO(&set);
	CPU_SET(cpu_ids[idx], &set);
	if (pthread_setaffinity_np(pthread_self(), sizeof(set), &set))
		fprintf(stderr, "ftwork: cannot pin a timer thread to CPU %d\n", cpu_ids[idx]);
	struct timespec ts = { 0, 10000000 };
	for (;;) {
		while (nanosleep(&ts, NULL) < 0 && errno == EINTR) {
		}
		__atomic_add_fetch(&timer_ticks[idx], 1, __ATOMIC_RELAXED);
	}
	return NULL;
}

static void start_timers(void)
{
	cpu_set_t set;
	if (sched_getaffinity(0, sizeof(set), &set) < 0)
		die("sched_getaffinity: %s", strerror(errno));
	for (int c = 0; c < CPU_SETSIZE && ncpus < MAX_CPUS; c++)
		if (CPU_ISSET(c, &set))
			cpu_ids[ncpus++] = c;
	for (int i = 0; i < ncpus; i++) {
		pthread_t t;
		pthread_attr_t a;
		pthread_attr_init(&a);
		pthread_attr_setstacksize(&a, 64 << 10);
		if (pthread_create(&t, &a, timer_thread, (void *)(intptr_t)i))
			die("pthread_create failed");
		pthread_attr_destroy(&a);
	}
}

/* Before a timer-stall verdict: what the guest kernel says about its clocks and timer interrupts (the
 * clocksource, every CPU's local timer interrupt count, and each CPU's next clock event against "now"),
 * so a stall can be told apart: no interrupts arriving vs an event programmed far ahead (a clock jump). */
static void dump_timer_state(void)
{
	static const char *const files[] = { "/sys/devices/system/clocksource/clocksource0/current_clocksource",
					     "/proc/interrupts", "/proc/timer_list" };
	char line[512];
	for (size_t f = 0; f < sizeof(files) / sizeof(files[0]); f++) {
		FILE *fp = fopen(files[f], "r");
		if (!fp)
			continue;
		while (fgets(line, sizeof(line), fp)) {
			line[strcspn(line, "\n")] = '\0';
			if (f == 0 || (f == 1 && strstr(line, "LOC:")) ||
			    (f == 2 && (strstr(line, "now at") || !strncmp(line, "cpu:", 4) || strstr(line, "next_event") ||
					strstr(line, "expires_next") || strstr(line, "event_handler"))))
				out("FTWORK diag %s: %s", files[f], line);
		}
		fclose(fp);
	}
}

static void check_stalls(uint64_t mono)
{
	for (int i = 0; i < ncpus; i++) {
		uint64_t t = __atomic_load_n(&timer_ticks[i], __ATOMIC_RELAXED);
		if (t != stall_last[i] || !stall_since[i]) {
			stall_last[i] = t;
			stall_since[i] = mono;
		} else if (opt_stall_ms && mono - stall_since[i] > opt_stall_ms * 1000000ull) {
			dump_timer_state();
			bad("timers", "CPU %d's timer count stuck at %" PRIu64 " for %" PRIu64 " ms", cpu_ids[i], t,
			    (mono - stall_since[i]) / 1000000);
		}
	}
}

/* ---- flood (--flood-udp, --flood-disk) ---- */

static volatile uint64_t fl_udp_bytes, fl_udp_pkts, fl_udp_errs, fl_disk_bytes, fl_disk_writes, fl_disk_errs;
static struct sockaddr_in fl_udp_to;
static int fl_udp_fd = -1, fl_disk_fd = -1;
static uint64_t fl_disk_size;
static uint8_t *fl_udp_buf, *fl_disk_buf;

static void fl_pause_ms(long ms)
{
	struct timespec ts = { ms / 1000, (ms % 1000) * 1000000L };
	while (nanosleep(&ts, &ts) < 0 && errno == EINTR) {
	}
}

static void *flood_udp_thread(void *arg)
{
	(void)arg;
	for (uint64_t n = 0;; n++) {
		/* a datagram counter in the first (up to 8) bytes */
		memcpy(fl_udp_buf, &n, opt_flood_udp_size < sizeof(n) ? (size_t)opt_flood_udp_size : sizeof(n));
		ssize_t r = sendto(fl_udp_fd, fl_udp_buf, (size_t)opt_flood_udp_size, 0, (struct sockaddr *)&fl_udp_to,
				   sizeof(fl_udp_to));
		if (r < 0) {
			__atomic_add_fetch(&fl_udp_errs, 1, __ATOMIC_RELAXED);
			if (errno != EINTR)
				fl_pause_ms(1);
			continue;
		}
		__atomic_add_fetch(&fl_udp_bytes, (uint64_t)r, __ATOMIC_RELAXED);
		__atomic_add_fetch(&fl_udp_pkts, 1, __ATOMIC_RELAXED);
	}
	return NULL;
}

static void *flood_disk_thread(void *arg)
{
	(void)arg;
	uint64_t blocks = fl_disk_size / opt_flood_block;
	for (uint64_t pass = 0;; pass++) {
		for (uint64_t b = 0; b < blocks; b++) {
			uint64_t off = b * opt_flood_block, *w = (uint64_t *)fl_disk_buf;
			for (uint64_t i = 0; i < opt_flood_block / 8; i += PAGE / 8) { /* one stamp per 4 KiB */
				w[i] = pass;
				w[i + 1] = off + i * 8;
			}
			ssize_t r = pwrite(fl_disk_fd, fl_disk_buf, (size_t)opt_flood_block, (off_t)off);
			if (r < 0) {
				__atomic_add_fetch(&fl_disk_errs, 1, __ATOMIC_RELAXED);
				if (errno != EINTR)
					fl_pause_ms(10);
				continue;
			}
			__atomic_add_fetch(&fl_disk_bytes, (uint64_t)r, __ATOMIC_RELAXED);
			__atomic_add_fetch(&fl_disk_writes, 1, __ATOMIC_RELAXED);
		}
	}
	return NULL;
}

/* IF's tx_bytes, or -1 */
static long long nic_tx_bytes(void)
{
	char path[128], buf[32];
	snprintf(path, sizeof(path), "/sys/class/net/%s/statistics/tx_bytes", opt_flood_nic);
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -1;
	ssize_t n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (n <= 0)
		return -1;
	buf[n] = '\0';
	return strtoll(buf, NULL, 10);
}

static void *flood_progress_thread(void *arg)
{
	(void)arg;
	uint64_t next = now_mono();
	for (uint64_t tick = 1;; tick++) {
		next += 1000000000ull;
		uint64_t now = now_mono();
		if (next < now)
			next = now; /* paused or starved: no burst of lines */
		struct timespec ts = { (time_t)(next / 1000000000ull), (long)(next % 1000000000ull) };
		while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL) == EINTR) {
		}
		out("FTWORK flood tick=%" PRIu64 " udp_bytes=%" PRIu64 " udp_pkts=%" PRIu64 " udp_errs=%" PRIu64
		    " disk_bytes=%" PRIu64 " disk_writes=%" PRIu64 " disk_errs=%" PRIu64 " nic_tx_bytes=%lld mono_ns=%" PRIu64,
		    tick, __atomic_load_n(&fl_udp_bytes, __ATOMIC_RELAXED), __atomic_load_n(&fl_udp_pkts, __ATOMIC_RELAXED),
		    __atomic_load_n(&fl_udp_errs, __ATOMIC_RELAXED), __atomic_load_n(&fl_disk_bytes, __ATOMIC_RELAXED),
		    __atomic_load_n(&fl_disk_writes, __ATOMIC_RELAXED), __atomic_load_n(&fl_disk_errs, __ATOMIC_RELAXED),
		    nic_tx_bytes(), now_mono());
	}
	return NULL;
}

static void flood_thread(void *(*fn)(void *))
{
	pthread_t t;
	pthread_attr_t a;
	pthread_attr_init(&a);
	pthread_attr_setstacksize(&a, 64 << 10);
	if (pthread_create(&t, &a, fn, NULL))
		die("pthread_create failed");
	pthread_attr_destroy(&a);
}

/* Open what the flood needs (errors are setup errors: exit 2), print its start line, start its threads. */
static void flood_start(void)
{
	if (opt_flood_udp) {
		char host[64];
		const char *colon = strrchr(opt_flood_udp, ':');
		if (!colon || (size_t)(colon - opt_flood_udp) >= sizeof(host))
			die("--flood-udp %s: want IPV4:PORT", opt_flood_udp);
		memcpy(host, opt_flood_udp, (size_t)(colon - opt_flood_udp));
		host[colon - opt_flood_udp] = '\0';
		fl_udp_to = (struct sockaddr_in){ .sin_family = AF_INET, .sin_port = htons((uint16_t)atoi(colon + 1)) };
		if (inet_pton(AF_INET, host, &fl_udp_to.sin_addr) != 1 || !fl_udp_to.sin_port)
			die("--flood-udp %s: want IPV4:PORT", opt_flood_udp);
		fl_udp_fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
		fl_udp_buf = calloc(1, (size_t)opt_flood_udp_size);
		if (fl_udp_fd < 0 || !fl_udp_buf)
			die("--flood-udp: %s", fl_udp_fd < 0 ? strerror(errno) : "out of memory");
		for (uint64_t i = 8; i < opt_flood_udp_size; i++)
			fl_udp_buf[i] = (uint8_t)(i * 131);
	}
	if (opt_flood_disk) {
		fl_disk_fd = open(opt_flood_disk, O_WRONLY | O_DIRECT | O_CLOEXEC);
		if (fl_disk_fd < 0)
			die("--flood-disk %s: %s", opt_flood_disk, strerror(errno));
		struct stat st;
		if (fstat(fl_disk_fd, &st) < 0)
			die("--flood-disk %s: %s", opt_flood_disk, strerror(errno));
		if (S_ISBLK(st.st_mode)) {
			if (ioctl(fl_disk_fd, BLKGETSIZE64, &fl_disk_size) < 0)
				die("--flood-disk %s: BLKGETSIZE64: %s", opt_flood_disk, strerror(errno));
		} else {
			fl_disk_size = (uint64_t)st.st_size;
		}
		if (fl_disk_size < opt_flood_block)
			die("--flood-disk %s: %" PRIu64 " bytes is smaller than one --flood-block", opt_flood_disk,
			    fl_disk_size);
		if (posix_memalign((void **)&fl_disk_buf, PAGE, (size_t)opt_flood_block))
			die("out of memory");
		memset(fl_disk_buf, 0xa5, (size_t)opt_flood_block);
	}
	out("FTWORK flood start udp=%s udp_size=%" PRIu64 " disk=%s disk_size=%" PRIu64 " block=%" PRIu64 " nic=%s",
	    opt_flood_udp ? opt_flood_udp : "-", opt_flood_udp_size, opt_flood_disk ? opt_flood_disk : "-", fl_disk_size,
	    opt_flood_block, opt_flood_nic);
	flood_thread(flood_progress_thread);
	if (opt_flood_udp)
		flood_thread(flood_udp_thread);
	if (opt_flood_disk)
		flood_thread(flood_disk_thread);
}

/* ---- main loop ---- */

static void tick(void)
{
	verify_region();
	if (opt_dma_pages && seq > 0)
		dma_verify(seq, "dma-stale");
	uint64_t n = seq + 1;
	for (uint64_t p = 0; p < opt_pages; p++)
		if (opt_stride <= 1 || p % opt_stride == n % opt_stride)
			pagesum[p] = fill_page(region + p * PAGE, n, p, SALT_MEM);
	uint64_t sum = region_sum();
	if (disk_fd >= 0) {
		rec_build((uint64_t *)recbuf, n, sum);
		pio(1, recbuf, REC_SIZE, rec_off(n), "record write");
		check_record(n, sum, 1, "new");
		if (seq > 0)
			check_record(seq, last_sum, 1, "previous");
		if (opt_dma_pages) {
			for (uint64_t i = 0; i < opt_dma_pages; i++)
				fill_page(dma_wbuf + i * PAGE, n, i, SALT_DMA);
			uint64_t slot = dma_off + (n % DMA_SLOTS) * opt_dma_pages * PAGE;
			pio(1, dma_wbuf, opt_dma_pages * PAGE, slot, "DMA area write");
			pio(0, dma_rbuf, opt_dma_pages * PAGE, slot, "DMA area read");
			dma_verify(n, "dma-read");
		}
	}
	if (tcp_fd >= 0)
		tcp_tick(n);
	uint64_t mono = now_mono();
	if (mono <= last_mono)
		bad("clock", "CLOCK_MONOTONIC went backwards: %" PRIu64 " after %" PRIu64 " (%.3f ms)", mono, last_mono,
		    (double)(last_mono - mono) / 1e6);
	last_mono = mono;
	if (opt_timers)
		check_stalls(mono);
	char ticks[MAX_CPUS * 12] = "-";
	size_t o = 0;
	for (int i = 0; i < ncpus && o + 24 < sizeof(ticks); i++)
		o += (size_t)snprintf(ticks + o, sizeof(ticks) - o, "%s%" PRIu64, i ? "," : "",
				      __atomic_load_n(&timer_ticks[i], __ATOMIC_RELAXED));
	seq = n;
	last_sum = sum;
	out("FTWORK seq=%" PRIu64 " sum=%016" PRIx64 " ok mono_ns=%" PRIu64 " ticks=%s", seq, sum, mono, ticks);
}

static uint64_t num(const char *opt, const char *v)
{
	char *end;
	errno = 0;
	unsigned long long x = v ? strtoull(v, &end, 0) : 0;
	if (!v || errno || end == v || *end)
		die("%s wants a number", opt);
	return x;
}

static void usage(void)
{
	fprintf(stderr, "usage: ftwork [--pages N] [--interval-ms M] [--stride S] [--disk DEV] [--dma-pages P]\n"
			"              [--tcp IPV4:PORT] [--tcp-chain] [--timers] [--timer-stall-ms T] [--count K]\n");
	exit(2);
}

int main(int argc, char **argv)
{
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
		if (!strcmp(a, "--pages"))
			opt_pages = num(a, v), i++;
		else if (!strcmp(a, "--hot-words"))
			opt_hot_words = num(a, v), i++;
		else if (!strcmp(a, "--stride"))
			opt_stride = num(a, v), i++;
		else if (!strcmp(a, "--interval-ms"))
			opt_interval_ms = num(a, v), i++;
		else if (!strcmp(a, "--count"))
			opt_count = num(a, v), i++;
		else if (!strcmp(a, "--dma-pages"))
			opt_dma_pages = num(a, v), i++;
		else if (!strcmp(a, "--timer-stall-ms"))
			opt_stall_ms = num(a, v), i++;
		else if (!strcmp(a, "--disk") && v)
			opt_disk = v, i++;
		else if (!strcmp(a, "--tcp") && v)
			opt_tcp = v, i++;
		else if (!strcmp(a, "--timers"))
			opt_timers = 1;
		else if (!strcmp(a, "--tcp-chain"))
			opt_tcp_chain = 1;
		else if (!strcmp(a, "--flood-udp") && v)
			opt_flood_udp = v, i++;
		else if (!strcmp(a, "--flood-udp-size"))
			opt_flood_udp_size = num(a, v), i++;
		else if (!strcmp(a, "--flood-disk") && v)
			opt_flood_disk = v, i++;
		else if (!strcmp(a, "--flood-block"))
			opt_flood_block = num(a, v), i++;
		else if (!strcmp(a, "--flood-nic") && v)
			opt_flood_nic = v, i++;
		else
			usage();
	}
	if (!opt_pages || opt_pages > (1ull << 22) || !opt_stride || opt_stride > opt_pages)
		die("--pages must be 1..4194304 and --stride 1..pages");
	if (!opt_hot_words || opt_hot_words > WORDS || WORDS % opt_hot_words)
		die("--hot-words must divide 512 (1, 2, 4 ... 512)");
	if (opt_dma_pages && !opt_disk)
		die("--dma-pages needs --disk");
	if (opt_stall_ms && !opt_timers)
		die("--timer-stall-ms needs --timers");
	if (opt_tcp_chain && !opt_tcp)
		die("--tcp-chain needs --tcp");
	if (!opt_flood_udp_size || opt_flood_udp_size > 65507)
		die("--flood-udp-size must be 1..65507");
	if (!opt_flood_block || opt_flood_block % PAGE || opt_flood_block > (64u << 20))
		die("--flood-block must be a multiple of 4096, at most 64 MiB");

	region = mmap(NULL, opt_pages * PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE, -1, 0);
	pagesum = calloc(opt_pages, sizeof(*pagesum));
	if (region == MAP_FAILED || !pagesum)
		die("cannot allocate %" PRIu64 " pages", opt_pages);
	mlockall(MCL_CURRENT | MCL_FUTURE); /* best effort: no swap in the guest anyway */
	for (uint64_t p = 0; p < opt_pages; p++)
		pagesum[p] = fill_page(region + p * PAGE, 0, p, SALT_MEM);
	if (opt_disk)
		disk_open();
	if (opt_tcp)
		tcp_connect();
	if (opt_timers)
		start_timers();
	setvbuf(stdout, NULL, _IONBF, 0);
	out("FTWORK start pages=%" PRIu64 " stride=%" PRIu64 " interval_ms=%" PRIu64 " cpus=%d disk=%s dma_pages=%" PRIu64
	    " tcp=%s area=%" PRIu64 " tcp_chain=%d",
	    opt_pages, opt_stride, opt_interval_ms, ncpus, opt_disk ? opt_disk : "-", opt_dma_pages, opt_tcp ? opt_tcp : "-",
	    rec_area, opt_tcp_chain);
	if (opt_flood_udp || opt_flood_disk)
		flood_start();

	uint64_t next = now_mono();
	for (;;) {
		tick();
		if (opt_count && seq >= opt_count) {
			out("FTWORK done seq=%" PRIu64, seq);
			return 0;
		}
		if (!opt_interval_ms)
			continue;
		next += opt_interval_ms * 1000000ull;
		uint64_t now = now_mono();
		if (next < now)
			next = now; /* fell behind (or the VM was paused): do not burst to catch up */
		struct timespec ts = { (time_t)(next / 1000000000ull), (long)(next % 1000000000ull) };
		while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL) == EINTR) {
		}
	}
}

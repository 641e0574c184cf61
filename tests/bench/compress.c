/* compress.c - CPU cost per MB of packing an epoch's pages (the sender: zero test, compaction, compression) and
 * unpacking them (the backup), per codec, over page contents taken from this host's files plus synthetic heap and
 * random pages. Thread CPU time, so a loaded host stretches the wall clock, not the figures (much).
 *   make build/libftvmm.a && cc -O2 -std=gnu11 -D_GNU_SOURCE -o /tmp/cbench tests/bench/compress.c build/libftvmm.a \
 *     -luring -lfdt -lgnutls -llz4 -lzstd -pthread && nice -n 19 /tmp/cbench [PAGES] [REPS]
 * Prints a markdown table: per content kind and for the mix, the wire bytes per raw byte, and the ms of CPU per
 * MiB of raw pages to pack and to unpack (median of REPS). */
#include "../../ft/compress.h"
#include "../../ft/hash.h"
#include "../../vmm/guest_mem.h"
#include "../../vmm/util.h"

#include <dirent.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

enum kind { ZERO, CODE, TEXT, HEAP, RANDOM, NKINDS };
static const char *const kind_name[NKINDS] = { "zero", "code (.so files)", "text (/usr/share/doc/*/copyright)",
					       "heap (synthetic)", "random" };
/* the mix: a guest with a quarter of its dirty pages cleared, code and page cache, heap, encrypted data */
static const unsigned mix_pct[NKINDS] = { 25, 30, 20, 15, 10 };

static uint64_t rng = 0x2545f4914f6cdd1dull;
static uint64_t rnd(void)
{
	rng ^= rng << 13;
	rng ^= rng >> 7;
	rng ^= rng << 17;
	return rng;
}

/* Pages read from the regular files under dir whose names contain match, skipping all-zero pages. */
static uint64_t pages_from(const char *dir, const char *match, uint8_t *out, uint64_t want, int depth)
{
	DIR *d = opendir(dir);
	uint64_t got = 0;
	if (!d)
		return 0;
	struct dirent *e;
	while (got < want && (e = readdir(d))) {
		if (e->d_name[0] == '.')
			continue;
		char path[4096];
		snprintf(path, sizeof(path), "%s/%s", dir, e->d_name);
		struct stat st;
		if (lstat(path, &st))
			continue;
		if (S_ISDIR(st.st_mode) && depth > 0) {
			got += pages_from(path, match, out + got * PAGE_SIZE, want - got, depth - 1);
			continue;
		}
		if (!S_ISREG(st.st_mode) || !strstr(e->d_name, match))
			continue;
		int fd = open(path, O_RDONLY);
		if (fd < 0)
			continue;
		while (got < want) {
			uint8_t *pg = out + got * PAGE_SIZE;
			ssize_t n = read(fd, pg, PAGE_SIZE);
			if (n <= 0)
				break;
			memset(pg + n, 0, PAGE_SIZE - (size_t)n); /* a file's tail page, as the page cache holds it */
			got += !page_is_zero(pg);
		}
		close(fd);
	}
	closedir(d);
	return got;
}

static void heap_page(uint8_t *pg)
{
	uint64_t *w = (uint64_t *)pg;
	for (size_t i = 0; i < PAGE_SIZE / 8; i++) {
		uint64_t r = rnd() % 10;
		w[i] = r < 4 ? 0 : r < 6 ? 0x00007f0000000000ull | (rnd() & 0xffffffff0ull) : r < 9 ? rnd() % 1000 : rnd();
	}
}

/* n pages of one kind (code and text: as many as the files give, the rest repeated) */
static void fill(enum kind k, uint8_t *p, uint64_t n)
{
	uint64_t got = 0;
	if (k == CODE)
		got = pages_from("/usr/lib/x86_64-linux-gnu", ".so", p, n, 1);
	else if (k == TEXT)
		got = pages_from("/usr/share/doc", "copyright", p, n, 2);
	for (uint64_t i = 0; i < n; i++) {
		uint8_t *pg = p + i * PAGE_SIZE;
		if ((k == CODE || k == TEXT) && got)
			memcpy(pg, p + (i % got) * PAGE_SIZE, PAGE_SIZE);
		else if (k == ZERO || k == CODE || k == TEXT)
			memset(pg, 0, PAGE_SIZE);
		else if (k == HEAP)
			heap_page(pg);
		else
			for (size_t j = 0; j < PAGE_SIZE / 8; j++)
				((uint64_t *)pg)[j] = rnd();
	}
}

static uint64_t cpu_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
	return x < y ? -1 : x > y;
}

struct result {
	double ratio, pack_ms_mib, unpack_ms_mib;
};

/* Pack (a fresh copy each time: packing works in place) and unpack n pages, reps times; medians. */
static struct result run(enum ft_codec c, const uint8_t *pages, uint64_t n, unsigned reps)
{
	uint8_t *stage = malloc(n * PAGE_SIZE), *back = malloc(n * PAGE_SIZE + 1);
	uint64_t *pfns = malloc(n * 8), tp[64], tu[64];
	struct ft_packer pk;
	if (!stage || !back || !pfns || ft_packer_init(&pk, c))
		abort();
	struct ft_pages_hdr ph = { 0 };
	for (unsigned r = 0; r < reps; r++) {
		memcpy(stage, pages, n * PAGE_SIZE);
		for (uint64_t i = 0; i < n; i++)
			pfns[i] = i;
		const uint8_t *payload;
		uint64_t t0 = cpu_ns();
		if (ft_pack_pages(&pk, stage, pfns, n, &ph, &payload))
			abort();
		uint64_t t1 = cpu_ns();
		if (c != FT_CODEC_NONE && ft_unpack_pages(NULL, c, payload, ph.wire_len, back, ph.raw_len))
			abort();
		tp[r] = t1 - t0;
		tu[r] = cpu_ns() - t1;
	}
	qsort(tp, reps, 8, cmp_u64);
	qsort(tu, reps, 8, cmp_u64);
	double mib = (double)(n * PAGE_SIZE) / (1 << 20);
	struct result res = { .ratio = (double)ph.wire_len / (double)(n * PAGE_SIZE),
			      .pack_ms_mib = (double)tp[reps / 2] / 1e6 / mib,
			      .unpack_ms_mib = (double)tu[reps / 2] / 1e6 / mib };
	ft_packer_free(&pk);
	free(stage);
	free(back);
	free(pfns);
	return res;
}

int main(int argc, char **argv)
{
	uint64_t n = argc > 1 ? strtoull(argv[1], NULL, 0) : 8192; /* 32 MiB */
	unsigned reps = argc > 2 ? (unsigned)atoi(argv[2]) : 5;
	if (n < 100 || reps < 1 || reps > 64)
		return 2;
	uint8_t *kinds[NKINDS], *mixed = malloc(n * PAGE_SIZE);
	for (int k = 0; k < NKINDS; k++) {
		kinds[k] = malloc(n * PAGE_SIZE);
		if (!kinds[k] || !mixed)
			abort();
		fill((enum kind)k, kinds[k], n);
	}
	/* the mix: page i of the kind its share says, pages taken in order (shuffled kinds) */
	uint64_t next[NKINDS] = { 0 };
	for (uint64_t i = 0; i < n; i++) {
		unsigned r = (unsigned)(rnd() % 100), k = 0, acc = mix_pct[0];
		while (r >= acc)
			acc += mix_pct[++k];
		memcpy(mixed + i * PAGE_SIZE, kinds[k] + next[k]++ * PAGE_SIZE, PAGE_SIZE);
	}
	printf("%llu pages (%llu MiB) per run, median of %u; CPU ms per MiB of dirty pages (thread CPU time)\n\n",
	       (unsigned long long)n, (unsigned long long)(n * PAGE_SIZE >> 20), reps);
	printf("| content | codec | wire/raw | pack ms/MiB (sender) | unpack ms/MiB (backup) |\n|---|---|---|---|---|\n");
	for (int k = 0; k <= NKINDS; k++) {
		const uint8_t *p = k == NKINDS ? mixed : kinds[k];
		for (unsigned c = 0; c < FT_CODEC_COUNT; c++) {
			struct result r = run(c, p, n, reps);
			printf("| %s | %s | %.3f | %.2f | %.2f |\n",
			       k == NKINDS ? "**mix** 25/30/20/15/10" : kind_name[k], ft_codec_name(c), r.ratio, r.pack_ms_mib,
			       r.unpack_ms_mib);
		}
	}
	for (int k = 0; k < NKINDS; k++)
		free(kinds[k]);
	free(mixed);
	return 0;
}

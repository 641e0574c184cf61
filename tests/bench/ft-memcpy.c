/* ft-memcpy.c - the baseline for tests/bench/ft.sh: how long a plain memcpy of N scattered 4 KiB pages into a staging
 * buffer takes on this host, the same operation the FT engine's copy step does during a checkpoint pause.
 *
 * usage: ft-memcpy [MiB of source, default 256]   prints CSV lines "pages,ns_total,ns_per_page" (best of 5 runs)
 */
#define _GNU_SOURCE
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>

static uint64_t now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

int main(int argc, char **argv)
{
	size_t mib = argc > 1 ? strtoul(argv[1], NULL, 0) : 256;
	size_t npages = mib << 8;
	uint8_t *src = mmap(NULL, npages << 12, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (src == MAP_FAILED)
		return 1;
	for (size_t i = 0; i < npages << 12; i += 64)
		src[i] = (uint8_t)i; /* fault everything in, like a guest's used RAM */
	static const size_t counts[] = { 16, 64, 256, 1024, 4096, 16384 };
	uint64_t *pfn = malloc(sizeof(uint64_t) * 16384);
	uint64_t x = 88172645463325252ull;
	printf("pages,ns_total,ns_per_page\n");
	for (size_t c = 0; c < sizeof(counts) / sizeof(counts[0]); c++) {
		size_t n = counts[c];
		if (n > npages)
			break;
		uint8_t *dst = malloc(n << 12);
		if (!dst)
			return 1;
		memset(dst, 1, n << 12); /* a warm staging buffer: the engine mallocs per epoch, which is worse */
		uint64_t best = UINT64_MAX;
		for (int run = 0; run < 5; run++) {
			for (size_t i = 0; i < n; i++) { /* sorted random pages, as a dirty bitmap walk yields them */
				x ^= x << 13, x ^= x >> 7, x ^= x << 17;
				pfn[i] = x % npages;
			}
			for (size_t i = 1; i < n; i++) /* insertion sort is fine for a benchmark setup step */
				for (size_t j = i; j > 0 && pfn[j - 1] > pfn[j]; j--) {
					uint64_t t = pfn[j];
					pfn[j] = pfn[j - 1];
					pfn[j - 1] = t;
				}
			uint64_t t0 = now();
			for (size_t i = 0; i < n; i++)
				memcpy(dst + (i << 12), src + (pfn[i] << 12), 4096);
			uint64_t t = now() - t0;
			if (t < best)
				best = t;
		}
		printf("%zu,%llu,%.1f\n", n, (unsigned long long)best, (double)best / (double)n);
		free(dst);
	}
	return 0;
}

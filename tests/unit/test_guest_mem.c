/* test_guest_mem.c - guest RAM layout, gpa_ptr() bounds, copy helpers and the VMM dirty bitmap. */
#include "../../vmm/dirty.h"
#include "../../vmm/guest_mem.h"
#include "test.h"

#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <sys/uio.h>

#define MiB (1ull << 20)
#define GiB (1ull << 30)
#define BPL (8 * sizeof(unsigned long))

static bool bit(const unsigned long *b, uint64_t i) { return (b[i / BPL] >> (i % BPL)) & 1; }

static unsigned long *new_bitmap(const struct guest_mem *m)
{
	unsigned long *b = calloc(gmem_bitmap_words(m->npages), sizeof(unsigned long));
	CHECK(b != NULL);
	return b;
}

/* Harvest and check the dirty pages are exactly the listed ones (terminated by UINT64_MAX). */
static void expect_dirty(struct guest_mem *m, const uint64_t *pages)
{
	unsigned long *b = new_bitmap(m);
	gmem_dirty_harvest(m, b);
	uint64_t nexp = 0;
	for (const uint64_t *p = pages; *p != UINT64_MAX; p++) {
		if (!bit(b, *p))
			fprintf(stderr, "page %llu not dirty\n", (unsigned long long)*p);
		CHECK(bit(b, *p));
		nexp++;
	}
	uint64_t n = 0;
	for (size_t i = 0; i < gmem_bitmap_words(m->npages); i++)
		n += (uint64_t)__builtin_popcountl(b[i]);
	if (n != nexp)
		fprintf(stderr, "%llu dirty pages, expected %llu\n", (unsigned long long)n, (unsigned long long)nexp);
	CHECK_EQ(n, nexp);
	free(b);
}

static void expect_clean(struct guest_mem *m)
{
	static const uint64_t none[] = { UINT64_MAX };
	expect_dirty(m, none);
}

static void test_init(void)
{
	struct guest_mem m;
	CHECK_EQ(gmem_init(&m, 0), -EINVAL);
	CHECK_EQ(gmem_init(&m, 1000), -EINVAL);
	CHECK_EQ(gmem_init(&m, 16 * MiB + 1), -EINVAL);
	CHECK_EQ(gmem_init(&m, 16 * MiB), 0);
	CHECK(m.host != NULL);
	CHECK_EQ(m.size, 16 * MiB);
	CHECK_EQ(m.low_size, 16 * MiB);
	CHECK_EQ(m.npages, 4096);
	CHECK(m.owns_mapping);
	CHECK(m.dirty != NULL);
	CHECK_EQ(m.host[0], 0); /* anonymous memory reads as zero */
	CHECK_EQ(m.host[16 * MiB - 1], 0);
	m.host[16 * MiB - 1] = 0x5a; /* writable to the last byte */
	CHECK_EQ(*(uint8_t *)gpa_ptr(&m, 16 * MiB - 1, 1), 0x5a);
	expect_clean(&m); /* a direct store is not tracked, and nothing was dirty at start */
	gmem_free(&m);
	CHECK(m.host == NULL && m.dirty == NULL && m.size == 0);

	/* a wrapped buffer: never freed by gmem_free */
	uint8_t *buf = aligned_alloc(PAGE_SIZE, 8 * PAGE_SIZE);
	CHECK(buf != NULL);
	CHECK_EQ(gmem_init_buffer(&m, NULL, 8 * PAGE_SIZE), -EINVAL);
	CHECK_EQ(gmem_init_buffer(&m, buf, 0), -EINVAL);
	CHECK_EQ(gmem_init_buffer(&m, buf, 8 * PAGE_SIZE - 1), -EINVAL);
	CHECK_EQ(gmem_init_buffer(&m, buf, 8 * PAGE_SIZE), 0);
	CHECK(m.host == buf);
	CHECK(!m.owns_mapping);
	CHECK_EQ(m.npages, 8);
	CHECK_EQ(m.low_size, 8 * PAGE_SIZE);
	gmem_free(&m);
	buf[0] = 1; /* still ours (ASan/valgrind would flag a freed buffer) */
	free(buf);
}

static void test_bounds_low(void)
{
	struct guest_mem m;
	CHECK_EQ(gmem_init(&m, 16 * MiB), 0);
	const uint64_t S = 16 * MiB;
	CHECK(gpa_ptr(&m, 0, 1) == m.host);
	CHECK(gpa_ptr(&m, 0, S) == m.host);
	CHECK(gpa_ptr(&m, 0x1234, 100) == m.host + 0x1234);
	CHECK(gpa_ptr(&m, S - 1, 1) == m.host + S - 1);           /* last byte */
	CHECK(gpa_ptr(&m, S - PAGE_SIZE, PAGE_SIZE) == m.host + S - PAGE_SIZE);
	CHECK(gpa_ptr(&m, S, 1) == NULL);                         /* one past the end */
	CHECK(gpa_ptr(&m, S - 1, 2) == NULL);                     /* runs off the end */
	CHECK(gpa_ptr(&m, S - PAGE_SIZE + 1, PAGE_SIZE) == NULL);
	CHECK(gpa_ptr(&m, 0, S + 1) == NULL);
	CHECK(gpa_ptr(&m, S, 0) == m.host + S);                   /* empty range at the end: valid, not dereferenced */
	CHECK(gpa_ptr(&m, S + 1, 0) == NULL);                     /* empty range past the end */
	CHECK(gpa_ptr(&m, 1, UINT64_MAX) == NULL);                /* gpa + len wraps */
	CHECK(gpa_ptr(&m, UINT64_MAX, 2) == NULL);
	CHECK(gpa_ptr(&m, UINT64_MAX, 1) == NULL);
	CHECK(gpa_ptr(&m, UINT64_MAX - 3, 8) == NULL);
	CHECK(gpa_ptr(&m, 0x1000, UINT64_MAX - 0x800) == NULL);
	CHECK(gpa_ptr(&m, HIGH_RAM_START, 1) == NULL);            /* no high RAM in this layout */
	CHECK(gpa_ptr(&m, MMIO_HOLE_START, 1) == NULL);

	uint64_t off = 77;
	CHECK(gmem_gpa_to_off(&m, 0, &off) && off == 0);
	CHECK(gmem_gpa_to_off(&m, S - 1, &off) && off == S - 1);
	off = 77;
	CHECK(!gmem_gpa_to_off(&m, S, &off));
	CHECK(!gmem_gpa_to_off(&m, HIGH_RAM_START, &off));
	CHECK(!gmem_gpa_to_off(&m, UINT64_MAX, &off));
	CHECK_EQ(off, 77);

	/* read/write round trip; -EFAULT outside RAM, with nothing copied */
	uint8_t pat[10000], back[10000];
	for (unsigned i = 0; i < sizeof(pat); i++)
		pat[i] = (uint8_t)(i * 31 + 7);
	CHECK_EQ(gmem_write(&m, 0x1234, pat, sizeof(pat)), 0);
	CHECK(memcmp(m.host + 0x1234, pat, sizeof(pat)) == 0);
	memset(back, 0, sizeof(back));
	CHECK_EQ(gmem_read(&m, 0x1234, back, sizeof(back)), 0);
	CHECK(memcmp(back, pat, sizeof(pat)) == 0);
	memset(back, 0xee, sizeof(back));
	CHECK_EQ(gmem_read(&m, S - 1, back, 2), -EFAULT);
	CHECK_EQ(gmem_read(&m, S, back, 1), -EFAULT);
	CHECK_EQ(gmem_read(&m, UINT64_MAX, back, 2), -EFAULT);
	CHECK_EQ(back[0], 0xee);
	CHECK_EQ(back[1], 0xee);
	CHECK_EQ(gmem_write(&m, S - 1, pat, 2), -EFAULT);
	CHECK_EQ(gmem_write(&m, S - 4, pat, 8), -EFAULT);
	CHECK_EQ(gmem_write(&m, 8, pat, UINT64_MAX), -EFAULT);
	CHECK_EQ(gmem_write(&m, HIGH_RAM_START, pat, 1), -EFAULT);
	CHECK_EQ(m.host[S - 1], 0);
	CHECK_EQ(m.host[S - 4], 0);
	CHECK_EQ(gmem_write(&m, S - 2, pat, 2), 0); /* the very end is fine */
	CHECK_EQ(m.host[S - 1], pat[1]);
	gmem_free(&m);
}

/* A layout with RAM above the hole. Only address arithmetic: host is never dereferenced. */
static void test_bounds_high(void)
{
	static uint8_t dummy[16];
	struct guest_mem m;
	const uint64_t S = 5 * GiB; /* 3 GiB low, 2 GiB from 4 GiB */
	CHECK_EQ(gmem_init_buffer(&m, dummy, S), 0);
	CHECK_EQ(m.low_size, MMIO_HOLE_START);
	CHECK_EQ(m.npages, S / PAGE_SIZE);
	const uint64_t LOW = MMIO_HOLE_START, HIGH = HIGH_RAM_START, HSZ = S - MMIO_HOLE_START;
#define OFF(p) ((p) ? (int64_t)((const uint8_t *)(p) - m.host) : (int64_t)-1)
	CHECK_EQ(OFF(gpa_ptr(&m, 0, 1)), 0);
	CHECK_EQ(OFF(gpa_ptr(&m, LOW - 1, 1)), LOW - 1);
	CHECK_EQ(OFF(gpa_ptr(&m, 0, LOW)), 0);
	CHECK_EQ(OFF(gpa_ptr(&m, LOW - 1, 2)), -1);            /* into the hole */
	CHECK_EQ(OFF(gpa_ptr(&m, LOW, 1)), -1);                /* the hole */
	CHECK_EQ(OFF(gpa_ptr(&m, 0xd0000000, 4)), -1);
	CHECK_EQ(OFF(gpa_ptr(&m, 0xfec00000, 4)), -1);         /* IOAPIC */
	CHECK_EQ(OFF(gpa_ptr(&m, 0xfee00000, 4)), -1);         /* LAPIC */
	CHECK_EQ(OFF(gpa_ptr(&m, HIGH - 1, 1)), -1);
	CHECK_EQ(OFF(gpa_ptr(&m, HIGH - 1, 2)), -1);           /* hole into high RAM */
	CHECK_EQ(OFF(gpa_ptr(&m, LOW - PAGE_SIZE, HIGH - LOW + 2 * PAGE_SIZE)), -1); /* across the hole */
	CHECK_EQ(OFF(gpa_ptr(&m, 0, S)), -1);                  /* RAM size but not contiguous in gpa */
	CHECK_EQ(OFF(gpa_ptr(&m, HIGH, 1)), LOW);              /* high RAM follows low RAM in the mapping */
	CHECK_EQ(OFF(gpa_ptr(&m, HIGH, HSZ)), LOW);
	CHECK_EQ(OFF(gpa_ptr(&m, HIGH + HSZ - 1, 1)), S - 1);
	CHECK_EQ(OFF(gpa_ptr(&m, HIGH + HSZ - 1, 2)), -1);
	CHECK_EQ(OFF(gpa_ptr(&m, HIGH + HSZ, 1)), -1);
	CHECK_EQ(OFF(gpa_ptr(&m, HIGH, HSZ + 1)), -1);
	CHECK_EQ(OFF(gpa_ptr(&m, HIGH + HSZ, 0)), S);          /* empty range at the very end */
	CHECK_EQ(OFF(gpa_ptr(&m, HIGH + 5, UINT64_MAX)), -1);  /* wraps */
	CHECK_EQ(OFF(gpa_ptr(&m, UINT64_MAX - 1, 4)), -1);
	CHECK_EQ(OFF(gpa_ptr(&m, 2 * GiB, UINT64_MAX - 2 * GiB + 5)), -1);
#undef OFF

	uint64_t off;
	CHECK(gmem_gpa_to_off(&m, LOW - 1, &off) && off == LOW - 1);
	CHECK(!gmem_gpa_to_off(&m, LOW, &off));
	CHECK(!gmem_gpa_to_off(&m, 0xfee00000, &off));
	CHECK(!gmem_gpa_to_off(&m, HIGH - 1, &off));
	CHECK(gmem_gpa_to_off(&m, HIGH, &off) && off == LOW);
	CHECK(gmem_gpa_to_off(&m, HIGH + HSZ - 1, &off) && off == S - 1);
	CHECK(!gmem_gpa_to_off(&m, HIGH + HSZ, &off));
	CHECK(!gmem_gpa_to_off(&m, UINT64_MAX, &off));

	/* copy helpers refuse the hole without touching memory */
	uint8_t b[4] = { 1, 2, 3, 4 };
	CHECK_EQ(gmem_read(&m, LOW, b, 4), -EFAULT);
	CHECK_EQ(gmem_write(&m, 0xfec00000, b, 4), -EFAULT);
	CHECK_EQ(gmem_write(&m, HIGH - 2, b, 4), -EFAULT);

	/* dirty marking by gpa maps high RAM to its RAM offset and ignores the hole */
	gmem_mark_dirty(&m, HIGH, 1);
	gmem_mark_dirty(&m, HIGH + HSZ - 1, 1);
	gmem_mark_dirty(&m, LOW - 1, 1);
	gmem_mark_dirty(&m, LOW, PAGE_SIZE);
	gmem_mark_dirty(&m, 0xfee00000, 4);
	gmem_mark_dirty(&m, HIGH + HSZ, PAGE_SIZE);
	const uint64_t exp[] = { LOW / PAGE_SIZE, S / PAGE_SIZE - 1, LOW / PAGE_SIZE - 1, UINT64_MAX };
	expect_dirty(&m, exp);
	gmem_free(&m);
}

static void test_dirty(void)
{
	/* 16 MiB + 3 pages: the bitmap's last word is partly used */
	const uint64_t S = 16 * MiB + 3 * PAGE_SIZE;
	const uint64_t NP = S / PAGE_SIZE;
	uint8_t *buf = aligned_alloc(PAGE_SIZE, S);
	CHECK(buf != NULL);
	memset(buf, 0, S);
	struct guest_mem m;
	CHECK_EQ(gmem_init_buffer(&m, buf, S), 0);
	CHECK_EQ(m.npages, NP);
	expect_clean(&m);

	uint8_t data[3 * PAGE_SIZE];
	memset(data, 0x77, sizeof(data));
	/* two bytes across a page boundary: both pages */
	CHECK_EQ(gmem_write(&m, PAGE_SIZE - 1, data, 2), 0);
	const uint64_t e1[] = { 0, 1, UINT64_MAX };
	expect_dirty(&m, e1);
	expect_clean(&m); /* harvest cleared them */
	/* one aligned page: just that page */
	CHECK_EQ(gmem_write(&m, 3 * PAGE_SIZE, data, PAGE_SIZE), 0);
	const uint64_t e2[] = { 3, UINT64_MAX };
	expect_dirty(&m, e2);
	/* a zero-length write marks nothing */
	CHECK_EQ(gmem_write(&m, 5 * PAGE_SIZE, data, 0), 0);
	expect_clean(&m);
	/* across a bitmap word boundary */
	CHECK_EQ(gmem_write(&m, 63 * PAGE_SIZE + 100, data, 2 * PAGE_SIZE), 0);
	const uint64_t e3[] = { 63, 64, 65, UINT64_MAX };
	expect_dirty(&m, e3);
	/* the last page */
	CHECK_EQ(gmem_write(&m, S - 1, data, 1), 0);
	const uint64_t e4[] = { NP - 1, UINT64_MAX };
	expect_dirty(&m, e4);
	/* a failed write marks nothing */
	CHECK_EQ(gmem_write(&m, S - 1, data, 2), -EFAULT);
	expect_clean(&m);

	/* gmem_mark_dirty: clamps at the end of RAM, ignores non-RAM and empty ranges */
	gmem_mark_dirty(&m, S - PAGE_SIZE, UINT64_MAX);
	gmem_mark_dirty(&m, S, PAGE_SIZE);
	gmem_mark_dirty(&m, 10 * PAGE_SIZE, 0);
	gmem_mark_dirty(&m, UINT64_MAX, 1);
	gmem_mark_dirty(&m, 7 * PAGE_SIZE + 5, 1);
	const uint64_t e5[] = { NP - 1, 7, UINT64_MAX };
	expect_dirty(&m, e5);

	/* gmem_mark_dirty_host: pointers outside the mapping are ignored */
	uint8_t outside[64];
	gmem_mark_dirty_host(&m, outside, sizeof(outside));
	gmem_mark_dirty_host(&m, buf - 1, 2);
	gmem_mark_dirty_host(&m, buf + S, 1);
	gmem_mark_dirty_host(&m, buf + 9 * PAGE_SIZE, 0);
	expect_clean(&m);
	gmem_mark_dirty_host(&m, buf, 1);
	gmem_mark_dirty_host(&m, buf + S - 1, 100); /* clamped to the last page */
	gmem_mark_dirty_host(&m, buf + 20 * PAGE_SIZE + 1, PAGE_SIZE);
	const uint64_t e6[] = { 0, NP - 1, 20, 21, UINT64_MAX };
	expect_dirty(&m, e6);

	/* gmem_mark_iov: the first `bytes` of the list, segment by segment; zero-length segments and
	 * anything past the list are skipped */
	struct iovec iov[4] = {
		{ .iov_base = buf + 30 * PAGE_SIZE + PAGE_SIZE - 2, .iov_len = 4 }, /* pages 30, 31 */
		{ .iov_base = buf + 40 * PAGE_SIZE, .iov_len = 0 },
		{ .iov_base = buf + 50 * PAGE_SIZE, .iov_len = 3 * PAGE_SIZE },     /* only 2 bytes used */
		{ .iov_base = buf + 60 * PAGE_SIZE, .iov_len = PAGE_SIZE },         /* never reached */
	};
	gmem_mark_iov(&m, iov, 4, 6);
	const uint64_t e7[] = { 30, 31, 50, UINT64_MAX };
	expect_dirty(&m, e7);
	gmem_mark_iov(&m, iov, 2, UINT64_MAX); /* more bytes than the list holds */
	gmem_mark_iov(&m, iov + 3, 1, 0);
	const uint64_t e8[] = { 30, 31, UINT64_MAX };
	expect_dirty(&m, e8);

	/* harvest ORs into what the caller already has */
	unsigned long *out = new_bitmap(&m);
	out[0] = 1ul << 5;
	gmem_mark_dirty(&m, 2 * PAGE_SIZE, 1);
	gmem_dirty_harvest(&m, out);
	CHECK(bit(out, 5));
	CHECK(bit(out, 2));
	CHECK_EQ(__builtin_popcountl(out[0]), 2);
	free(out);

	/* marking everything sets exactly npages bits, none past the end */
	gmem_mark_dirty(&m, 0, S);
	out = new_bitmap(&m);
	gmem_dirty_harvest(&m, out);
	uint64_t n = 0;
	for (size_t i = 0; i < gmem_bitmap_words(NP); i++)
		n += (uint64_t)__builtin_popcountl(out[i]);
	CHECK_EQ(n, NP);
	CHECK_EQ(out[gmem_bitmap_words(NP) - 1] >> (NP % BPL), 0);
	free(out);
	expect_clean(&m);

	gmem_free(&m);
	free(buf);
}

/* Four threads mark interleaved pages while a fifth harvests: no bit may be lost. */
struct marker {
	struct guest_mem *m;
	unsigned id;
};

static int markers_done;

static void *mark_thread(void *arg)
{
	struct marker *mk = arg;
	struct guest_mem *m = mk->m;
	for (int round = 0; round < 4; round++)
		for (uint64_t pg = mk->id; pg < m->npages; pg += 4) {
			if (pg & 4)
				gmem_mark_dirty(m, pg * PAGE_SIZE + (pg % 97), 1);
			else
				gmem_mark_dirty_host(m, m->host + pg * PAGE_SIZE, PAGE_SIZE);
		}
	return NULL;
}

struct harvester {
	struct guest_mem *m;
	unsigned long *acc;
	unsigned long rounds;
};

static void *harvest_thread(void *arg)
{
	struct harvester *h = arg;
	while (!__atomic_load_n(&markers_done, __ATOMIC_ACQUIRE)) {
		gmem_dirty_harvest(h->m, h->acc);
		h->rounds++;
	}
	return NULL;
}

static void test_concurrent(void)
{
	const uint64_t S = 64 * MiB;
	uint8_t *buf = aligned_alloc(PAGE_SIZE, S); /* never dereferenced by marking */
	CHECK(buf != NULL);
	struct guest_mem m;
	CHECK_EQ(gmem_init_buffer(&m, buf, S), 0);
	unsigned long *acc = new_bitmap(&m);
	struct harvester h = { .m = &m, .acc = acc };
	pthread_t ht, mt[4];
	struct marker mk[4];
	__atomic_store_n(&markers_done, 0, __ATOMIC_RELEASE);
	CHECK_EQ(pthread_create(&ht, NULL, harvest_thread, &h), 0);
	for (unsigned i = 0; i < 4; i++) {
		mk[i] = (struct marker){ .m = &m, .id = i };
		CHECK_EQ(pthread_create(&mt[i], NULL, mark_thread, &mk[i]), 0);
	}
	for (unsigned i = 0; i < 4; i++)
		CHECK_EQ(pthread_join(mt[i], NULL), 0);
	__atomic_store_n(&markers_done, 1, __ATOMIC_RELEASE);
	CHECK_EQ(pthread_join(ht, NULL), 0);
	gmem_dirty_harvest(&m, acc); /* what the harvester had not taken yet */
	for (uint64_t pg = 0; pg < m.npages; pg++) {
		if (!bit(acc, pg))
			fprintf(stderr, "page %llu lost\n", (unsigned long long)pg);
		CHECK(bit(acc, pg));
	}
	free(acc);
	expect_clean(&m);
	gmem_free(&m);
	free(buf);
}

static void set_add_fn(void *ctx, uint64_t pg)
{
	dirty_set_add(ctx, pg);
}

/* The epoch's page set: members in arrival order, no duplicates, out-of-range pages ignored, emptied in
 * O(members) to all-zero; the VMM's pages collected through the summary words, in page order, once. */
static void test_dirty_set(void)
{
	struct dirty_set s;
	CHECK_EQ(dirty_set_init(&s, 1000), 0);
	CHECK(dirty_set_add(&s, 5));
	CHECK(!dirty_set_add(&s, 5));
	CHECK(dirty_set_add(&s, 999));
	CHECK(!dirty_set_add(&s, 1000));
	CHECK(!dirty_set_add(&s, UINT64_MAX));
	CHECK(dirty_set_add(&s, 63));
	CHECK(dirty_set_add(&s, 64));
	CHECK_EQ(s.n, 4);
	const uint64_t want[] = { 5, 999, 63, 64 };
	for (unsigned i = 0; i < 4; i++)
		CHECK_EQ(s.pfns[i], want[i]);
	CHECK(bit(s.bm, 999) && bit(s.bm, 63) && !bit(s.bm, 6));
	dirty_set_clear(&s);
	CHECK_EQ(s.n, 0);
	for (size_t i = 0; i < gmem_bitmap_words(1000); i++)
		CHECK_EQ(s.bm[i], 0);
	CHECK(dirty_set_add(&s, 5)); /* a member again after the clear */
	dirty_set_free(&s);

	const uint64_t S = 64 * MiB;
	uint8_t *buf = aligned_alloc(PAGE_SIZE, S);
	CHECK(buf != NULL);
	struct guest_mem m;
	CHECK_EQ(gmem_init_buffer(&m, buf, S), 0);
	CHECK_EQ(dirty_set_init(&s, m.npages), 0);
	gmem_mark_dirty(&m, 4095 * PAGE_SIZE, 1);
	gmem_mark_dirty(&m, 70 * PAGE_SIZE + 5, 1);
	gmem_mark_dirty(&m, 3 * PAGE_SIZE, PAGE_SIZE + 1); /* pages 3 and 4 */
	gmem_mark_dirty(&m, (m.npages - 1) * PAGE_SIZE, 1);
	gmem_dirty_collect(&m, set_add_fn, &s);
	const uint64_t want2[] = { 3, 4, 70, 4095, m.npages - 1 };
	CHECK_EQ(s.n, 5);
	for (unsigned i = 0; i < 5; i++)
		CHECK_EQ(s.pfns[i], want2[i]);
	dirty_set_clear(&s);
	gmem_dirty_collect(&m, set_add_fn, &s); /* taken: nothing the second time */
	CHECK_EQ(s.n, 0);
	expect_clean(&m);
	dirty_set_free(&s);
	gmem_free(&m);
	free(buf);
}

int main(void)
{
	test_init();
	test_dirty_set();
	test_bounds_low();
	test_bounds_high();
	test_dirty();
	test_concurrent();
	TEST_DONE("test_guest_mem");
}

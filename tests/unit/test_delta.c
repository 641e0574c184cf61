/* test_delta.c - page deltas: encode/apply round trips, hostile records refused, the sender's cache, and epochs with deltas through the backup's commit. */
#include "../../ft/backup_int.h"
#include "../../ft/compress.h"
#include "../../ft/delta.h"
#include "../../ft/proto.h"
#include "../../vmm/guest_mem.h"
#include "../../vmm/util.h"
#include "test.h"
#include "epoch_test.h"

#include <errno.h>
#include <libfdt.h>
#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define NPAGES 64
#define MEM_SIZE ((size_t)NPAGES * PAGE_SIZE)

static uint64_t rng = 0x2545f4914f6cdd1dull;

static uint64_t rnd(void)
{
	rng ^= rng << 13;
	rng ^= rng >> 7;
	rng ^= rng << 17;
	return rng;
}

static void fill_random(uint8_t *p, size_t n)
{
	for (size_t i = 0; i < n; i++)
		p[i] = (uint8_t)rnd();
}

/* ---- records ------------------------------------------------------------------------------------- */

/* new_ against old: a record that ft_delta_valid takes and that turns old into new_; its length. */
static int roundtrip(const uint8_t *old, const uint8_t *new_)
{
	uint8_t rec[FT_DELTA_MAX], page[PAGE_SIZE];
	int n = ft_delta_encode(old, new_, rec);
	if (n < 0)
		return n;
	CHECK(n <= (int)FT_DELTA_MAX - 2);
	/* on an exact-size copy: ASan sees a read past the record */
	uint8_t *exact = malloc(n ? (size_t)n : 1);
	CHECK(exact);
	memcpy(exact, rec, (size_t)n);
	CHECK(ft_delta_valid(exact, (size_t)n));
	memcpy(page, old, PAGE_SIZE);
	ft_delta_apply(page, exact, (size_t)n);
	CHECK(memcmp(page, new_, PAGE_SIZE) == 0);
	free(exact);
	return n;
}

static void test_encode(void)
{
	uint8_t old[PAGE_SIZE], new_[PAGE_SIZE];
	fill_random(old, PAGE_SIZE);
	memcpy(new_, old, PAGE_SIZE);
	CHECK_EQ(roundtrip(old, new_), 0); /* unchanged: an empty record */
	/* one byte at the first, the second, the last place */
	const size_t at[] = { 0, 1, 7, 8, 2047, PAGE_SIZE - 1 };
	for (size_t i = 0; i < ARRAY_SIZE(at); i++) {
		memcpy(new_, old, PAGE_SIZE);
		new_[at[i]] ^= 0x5a;
		int n = roundtrip(old, new_);
		CHECK(n >= 3 && n <= 4); /* skip (1-2 bytes), run 1, the byte */
	}
	/* changes one and two bytes apart: one run (a gap of fewer than 3 equal bytes travels inside it) */
	memcpy(new_, old, PAGE_SIZE);
	new_[100] ^= 1;
	new_[102] ^= 1;
	new_[105] ^= 1;
	CHECK_EQ(roundtrip(old, new_), 1 + 1 + 6);
	/* three equal bytes apart: two runs */
	memcpy(new_, old, PAGE_SIZE);
	new_[100] ^= 1;
	new_[104] ^= 1;
	CHECK_EQ(roundtrip(old, new_), (1 + 1 + 1) * 2);
	/* scattered changes, many pages of them */
	for (int t = 0; t < 200; t++) {
		memcpy(new_, old, PAGE_SIZE);
		int k = (int)(rnd() % 120);
		for (int j = 0; j < k; j++)
			new_[rnd() % PAGE_SIZE] = (uint8_t)rnd();
		CHECK(roundtrip(old, new_) >= 0);
	}
	/* a counter in every 64-byte line (a guest's per-line write): 64 runs, fits */
	memcpy(new_, old, PAGE_SIZE);
	for (size_t j = 0; j < PAGE_SIZE; j += 64)
		new_[j + 8] ^= 0xff;
	CHECK(roundtrip(old, new_) > 0);
	/* every byte new: too big for a delta */
	for (size_t j = 0; j < PAGE_SIZE; j++)
		new_[j] = (uint8_t)~old[j];
	CHECK_EQ(roundtrip(old, new_), -1);
	/* just over and just under the limit: one changed run of FT_DELTA_MAX - 2 - 4 bytes fits (2-byte skip
	 * and length), one byte more does not */
	const size_t fit = FT_DELTA_MAX - 2 - 4;
	memcpy(new_, old, PAGE_SIZE);
	for (size_t j = 1000; j < 1000 + fit; j++)
		new_[j] = (uint8_t)~old[j];
	CHECK_EQ(roundtrip(old, new_), (int)FT_DELTA_MAX - 2);
	new_[1000 + fit] = (uint8_t)~old[1000 + fit];
	CHECK_EQ(roundtrip(old, new_), -1);
}

/* Records a peer can send: each must be refused by ft_delta_valid (checked on an exact-size copy). */
static void bad(const uint8_t *rec, size_t len, int line)
{
	uint8_t *exact = malloc(len ? len : 1);
	CHECK(exact);
	memcpy(exact, rec, len);
	if (ft_delta_valid(exact, len))
		fprintf(stderr, "line %d: record taken\n", line);
	CHECK(!ft_delta_valid(exact, len));
	free(exact);
}
#define BAD(...)                                                                                   \
	do {                                                                                       \
		static const uint8_t r_[] = { __VA_ARGS__ };                                       \
		bad(r_, sizeof(r_), __LINE__);                                                     \
	} while (0)

static void test_hostile_records(void)
{
	BAD(0x05);                         /* a skip with no run length */
	BAD(0x05, 0x00);                   /* a run of nothing */
	BAD(0x00, 0x02, 0xaa);             /* a run longer than what follows */
	BAD(0x80);                         /* a number cut in two */
	BAD(0x00, 0x81);                   /* its second byte missing */
	BAD(0x80, 0x80, 0x01, 0x01, 0xaa); /* a three-byte number */
	BAD(0x80, 0x20, 0x01, 0xaa);       /* skip 4096: nothing left of the page */
	BAD(0xff, 0x1f, 0x02, 0xaa, 0xbb); /* skip 4095 + run 2 (skip 4095 + run 1 is fine, below) */
	BAD(0xff, 0x7f, 0x01, 0xaa);       /* the largest two-byte number */
	/* two runs whose sum passes the page's end */
	BAD(0xff, 0x0f, 0x01, 0xaa, 0x80, 0x10, 0x01, 0xbb);
	static const uint8_t ok_last[] = { 0xfe, 0x1f, 0x01, 0xaa }; /* skip 4094, run 1: the page's last byte but one */
	CHECK(ft_delta_valid(ok_last, sizeof(ok_last)));
	static const uint8_t ok_end[] = { 0xff, 0x1f, 0x01, 0xaa }; /* skip 4095, run 1: its last byte */
	CHECK(ft_delta_valid(ok_end, sizeof(ok_end)));
	CHECK(ft_delta_valid(NULL, 0)); /* no change */
	/* random bytes: whatever is taken must apply inside the page (ASan watches an exact-size page) */
	for (int t = 0; t < 20000; t++) {
		uint8_t rec[24];
		size_t len = rnd() % sizeof(rec);
		fill_random(rec, len);
		if (t & 1)
			for (size_t j = 0; j < len; j++)
				rec[j] &= 0x0f; /* small numbers: more of them valid */
		if (ft_delta_valid(rec, len)) {
			uint8_t *page = malloc(PAGE_SIZE);
			CHECK(page);
			ft_delta_apply(page, rec, len);
			free(page);
		}
	}
}

static void test_cache(void)
{
	struct ft_delta_cache c;
	CHECK_EQ(ft_delta_cache_init(&c, PAGE_SIZE - 1), -EINVAL);
	CHECK_EQ(ft_delta_cache_init(&c, 4 * PAGE_SIZE + 100), 0); /* whole pages: 4 slots */
	CHECK_EQ(c.nslots, 4);
	uint8_t a[PAGE_SIZE], b2[PAGE_SIZE];
	fill_random(a, PAGE_SIZE);
	fill_random(b2, PAGE_SIZE);
	CHECK(!ft_delta_cache_get(&c, 0));
	ft_delta_cache_put(&c, 5, a);
	CHECK(ft_delta_cache_get(&c, 5) && memcmp(ft_delta_cache_get(&c, 5), a, PAGE_SIZE) == 0);
	CHECK(!ft_delta_cache_get(&c, 1)); /* same slot, another page */
	ft_delta_cache_put(&c, 9, b2);     /* evicts 5 */
	CHECK(!ft_delta_cache_get(&c, 5));
	CHECK(memcmp(ft_delta_cache_get(&c, 9), b2, PAGE_SIZE) == 0);
	ft_delta_cache_drop(&c, 5); /* not there: 9 stays */
	CHECK(ft_delta_cache_get(&c, 9));
	ft_delta_cache_drop(&c, 9);
	CHECK(!ft_delta_cache_get(&c, 9));
	ft_delta_cache_put(&c, 2, a);
	ft_delta_cache_clear(&c);
	CHECK(!ft_delta_cache_get(&c, 2));
	ft_delta_cache_free(&c);
	CHECK(!ft_delta_cache_get(&c, 2)); /* a freed cache is off */
	ft_delta_cache_put(&c, 2, a);
	ft_delta_cache_free(&c);
}

/* ---- epochs through the backup ------------------------------------------------------------------ */

static struct backup b;
static uint8_t *mem, *mem_before;
static uint8_t *model; /* the primary's guest memory */

static void backup_fresh(enum ft_codec codec, bool delta)
{
	free(b.state);
	gmem_free(&b.mem);
	ft_unpacker_free(&b.unpacker);
	memset(&b, 0, sizeof(b));
	pthread_mutex_init(&b.lock, NULL);
	CHECK_EQ(gmem_init_buffer(&b.mem, mem, MEM_SIZE), 0);
	b.packed = true;
	b.codec = codec;
	b.delta = delta;
	memset(mem, 0xc3, MEM_SIZE);
}

/* Epoch num: the model's pages at pfns (n), packed by pk (as the sender does: in place on a copy). */
static struct buf epoch_of(struct ft_packer *pk, uint64_t num, bool baseline, const uint64_t *pfns, uint64_t n,
			   struct ft_pages_hdr *ph)
{
	uint8_t *stage = malloc(n * PAGE_SIZE + 1);
	uint64_t *pf = malloc(n * 8 + 1);
	CHECK(stage && pf);
	for (uint64_t i = 0; i < n; i++) {
		memcpy(stage + i * PAGE_SIZE, model + pfns[i] * PAGE_SIZE, PAGE_SIZE);
		pf[i] = pfns[i];
	}
	if (baseline)
		ft_packer_forget(pk);
	const uint8_t *payload;
	CHECK_EQ(ft_pack_pages(pk, stage, pf, n, ph, &payload), 0);
	struct ft_epoch_hdr h = { .epoch = num, .npages = n,
				  .flags = FT_EPOCH_PACKED | (baseline ? FT_EPOCH_BASELINE : 0) };
	struct buf o = assemble(h, ph, pf, payload, ph->wire_len);
	free(stage);
	free(pf);
	struct ft_epoch_hdr chk;
	CHECK_EQ(ft_epoch_check(o.p, o.len, true, &chk), 0);
	return o;
}

/* Committed from an exact-size copy: 0 or the error. */
static int commit(uint64_t seq, const struct buf *e)
{
	uint8_t *copy = malloc(e->len);
	CHECK(copy);
	memcpy(copy, e->p, e->len);
	int r = backup_commit_epoch(&b, seq, copy, e->len);
	free(copy);
	return r;
}

/* A guest's writes of an epoch: a few bytes here and there on some pages, one page all new, one zeroed,
 * one zero page written again. The pfns written, in *pfns (at most NPAGES). */
static uint64_t guest_writes(uint64_t *pfns)
{
	uint64_t n = 0;
	for (uint64_t pfn = 0; pfn < NPAGES; pfn++) {
		uint64_t r = rnd() % 8;
		if (r >= 3)
			continue;
		uint8_t *pg = model + pfn * PAGE_SIZE;
		if (r == 0) /* a counter and a few fields */
			for (int j = 0; j < 6; j++)
				pg[rnd() % PAGE_SIZE]++;
		else if (r == 1 && pfn % 7 == 0)
			memset(pg, 0, PAGE_SIZE);
		else if (r == 1)
			fill_random(pg, PAGE_SIZE);
		else
			pg[pfn] ^= 0x40; /* a zero page gets one byte */
		pfns[n++] = pfn;
	}
	return n;
}

/* Epochs with deltas, each codec, a cache of every page and one of 8 slots (pages evicting each other):
 * after every commit the backup's memory is the primary's; deltas were sent and took fewer bytes. */
static void test_epochs(void)
{
	uint64_t *pfns = malloc(NPAGES * 8);
	CHECK(pfns);
	const uint64_t caches[] = { MEM_SIZE, 8 * PAGE_SIZE };
	for (unsigned c = 0; c < FT_CODEC_COUNT; c++)
		for (size_t ci = 0; ci < ARRAY_SIZE(caches); ci++) {
			backup_fresh(c, true);
			struct ft_packer pk;
			CHECK_EQ(ft_packer_init(&pk, c), 0);
			CHECK_EQ(ft_packer_delta(&pk, caches[ci]), 0);
			pk.delta_on = true;
			for (uint64_t i = 0; i < NPAGES; i++) {
				pfns[i] = i;
				if (i % 5)
					fill_random(model + i * PAGE_SIZE, PAGE_SIZE);
				else
					memset(model + i * PAGE_SIZE, 0, PAGE_SIZE);
			}
			struct ft_pages_hdr ph;
			struct buf e = epoch_of(&pk, 1, true, pfns, NPAGES, &ph);
			CHECK_EQ(pk.ndelta, 0);
			CHECK_EQ(commit(1, &e), 0);
			free(e.p);
			CHECK(memcmp(mem, model, MEM_SIZE) == 0);
			uint64_t deltas = 0;
			for (uint64_t num = 2; num < 40; num++) {
				uint64_t n = guest_writes(pfns);
				e = epoch_of(&pk, num, false, pfns, n, &ph);
				deltas += pk.ndelta;
				if (pk.ndelta)
					CHECK(ph.raw_len < (n - ph.nzero) * PAGE_SIZE);
				CHECK_EQ(commit(num, &e), 0);
				free(e.p);
				CHECK(memcmp(mem, model, MEM_SIZE) == 0);
			}
			CHECK(deltas > 0);
			/* a new backup: the baseline forgets the cache, the next epochs' deltas are against it */
			backup_fresh(c, true);
			for (uint64_t i = 0; i < NPAGES; i++)
				pfns[i] = i;
			e = epoch_of(&pk, 1, true, pfns, NPAGES, &ph);
			CHECK_EQ(pk.ndelta, 0);
			CHECK_EQ(commit(1, &e), 0);
			free(e.p);
			uint64_t n = guest_writes(pfns);
			e = epoch_of(&pk, 2, false, pfns, n, &ph);
			CHECK_EQ(commit(2, &e), 0);
			free(e.p);
			CHECK(memcmp(mem, model, MEM_SIZE) == 0);
			ft_packer_free(&pk);
		}
	free(pfns);
}

/* An epoch with deltas that lies, or to a backup that did not ask for them: refused, nothing applied. */
static void refused(uint64_t seq, struct buf *e, int line)
{
	memcpy(mem_before, mem, MEM_SIZE);
	uint64_t committed = b.committed;
	int r = commit(seq, e);
	if (r != -EBADMSG)
		fprintf(stderr, "line %d: want -EBADMSG, got %d\n", line, r);
	CHECK_EQ(r, -EBADMSG);
	CHECK(memcmp(mem, mem_before, MEM_SIZE) == 0);
	CHECK_EQ(b.committed, committed);
}
#define REFUSED(seq, e) refused(seq, e, __LINE__)

#define PH_AT(field) (sizeof(struct ft_epoch_hdr) + offsetof(struct ft_pages_hdr, field))
#define PFN_AT(i) (sizeof(struct ft_epoch_hdr) + sizeof(struct ft_pages_hdr) + (i) * 8)

static void set64(struct buf *e, size_t off, uint64_t v)
{
	memcpy(e->p + off, &v, 8);
}

static void test_hostile_epochs(void)
{
	uint64_t pfns[3] = { 3, 4, 5 };
	/* codec none: the raw payload is on the wire, so its bytes can be changed in place */
	backup_fresh(FT_CODEC_NONE, true);
	struct ft_packer pk;
	CHECK_EQ(ft_packer_init(&pk, FT_CODEC_NONE), 0);
	CHECK_EQ(ft_packer_delta(&pk, MEM_SIZE), 0);
	pk.delta_on = true;
	fill_random(model, MEM_SIZE);
	uint64_t all[NPAGES];
	for (uint64_t i = 0; i < NPAGES; i++)
		all[i] = i;
	struct ft_pages_hdr ph;
	struct buf e = epoch_of(&pk, 1, true, all, NPAGES, &ph);
	CHECK_EQ(commit(1, &e), 0);
	free(e.p);
	model[3 * PAGE_SIZE + 10]++;
	model[4 * PAGE_SIZE + 4000]++;
	fill_random(model + 5 * PAGE_SIZE, PAGE_SIZE);
	e = epoch_of(&pk, 2, false, pfns, 3, &ph);
	CHECK_EQ(pk.ndelta, 2);
	const size_t pay = PFN_AT(3); /* the payload: [len 3 bytes][len 4 bytes][page 5] */
	const uint64_t raw = ph.raw_len;
	CHECK_EQ(raw, 2 + 3 + 2 + 4 + PAGE_SIZE);

	/* a backup that did not offer deltas */
	b.delta = false;
	REFUSED(2, &e);
	b.delta = true;
	/* both flags on one pfn; the delta flag moved to the whole page (sizes no longer add up) */
	set64(&e, PFN_AT(0), 3 | FT_PFN_DELTA | FT_PFN_ZERO);
	REFUSED(2, &e);
	set64(&e, PFN_AT(0), 3 | FT_PFN_DELTA);
	set64(&e, PFN_AT(2), 5 | FT_PFN_DELTA);
	REFUSED(2, &e);
	set64(&e, PFN_AT(2), 5);
	/* a delta flag dropped: a page where a record is */
	set64(&e, PFN_AT(1), 4);
	REFUSED(2, &e);
	set64(&e, PFN_AT(1), 4 | FT_PFN_DELTA);
	/* raw_len (= wire_len here) a byte short or long, more than the pages whole: refused before unpacking */
	const uint64_t lies[] = { raw - 1, raw + 1, 3 * PAGE_SIZE + 1, UINT64_MAX };
	for (size_t i = 0; i < ARRAY_SIZE(lies); i++) {
		set64(&e, PH_AT(raw_len), lies[i]);
		set64(&e, PH_AT(wire_len), lies[i]);
		REFUSED(2, &e);
	}
	set64(&e, PH_AT(raw_len), raw);
	set64(&e, PH_AT(wire_len), raw);
	/* a record's length word: longer than its record (eats the next one), past the limit, past the payload */
	const uint16_t lens[] = { 4, 2, 0, FT_DELTA_MAX - 1, 0xffff };
	for (size_t i = 0; i < ARRAY_SIZE(lens); i++) {
		memcpy(e.p + pay, &lens[i], 2);
		REFUSED(2, &e);
	}
	uint16_t three = 3;
	memcpy(e.p + pay, &three, 2);
	/* the record itself: a run of nothing, a run past the page (skip of the first record made 4095) */
	uint8_t keep[3];
	memcpy(keep, e.p + pay + 2, 3);
	e.p[pay + 3] = 0; /* run length 0 */
	REFUSED(2, &e);
	memcpy(e.p + pay + 2, keep, 3);
	uint8_t far[3] = { 0xff, 0x1f, 0x01 }; /* skip 4095 (two bytes) + run 1 = 3 bytes, no data byte left */
	memcpy(e.p + pay + 2, far, 3);
	REFUSED(2, &e);
	memcpy(e.p + pay + 2, keep, 3);
	/* as sent: taken */
	CHECK_EQ(commit(2, &e), 0);
	CHECK(memcmp(mem, model, MEM_SIZE) == 0);
	free(e.p);
	ft_packer_free(&pk);
}

int main(void)
{
	mem = aligned_alloc(PAGE_SIZE, MEM_SIZE);
	mem_before = malloc(MEM_SIZE);
	model = malloc(MEM_SIZE);
	CHECK(mem && mem_before && model);
	test_encode();
	test_hostile_records();
	test_cache();
	test_epochs();
	test_hostile_epochs();
	free(b.state);
	gmem_free(&b.mem);
	ft_unpacker_free(&b.unpacker);
	free(mem);
	free(mem_before);
	free(model);
	TEST_DONE("test_delta");
}

/* test_snapshot.c - the snapshot file without KVM: snap_hash, page_is_zero, snapshot_open on crafted files (each
 * rejection and an accepted one), snapshot_load_memory into a buffer; the machine description of ft/state.c
 * (state_read_machine, the machine node's disk sizes); and vm_pause, which a checkpoint relies on to stop every
 * vCPU or fail. */
#include "../../ft/hash.h"
#include "../../ft/snapshot.h"
#include "../../ft/state.h"
#include "../../cmd/cli.h"
#include "../../vmm/vcpu.h"
#include "../../vmm/vm.h"
#include "test.h"

#include <errno.h>
#include <fcntl.h>
#include <libfdt.h>
#include <pthread.h>
#include <stdint.h>
#include <sys/stat.h>
#include <unistd.h>

#define BPL (8 * sizeof(unsigned long))
#define ALIGN8(x) (((x) + 7) & ~(uint64_t)7)
#define ALIGNP(x) (((x) + SNAP_ALIGN - 1) & ~(uint64_t)(SNAP_ALIGN - 1))

static uint64_t rng = 0x1234567887654321ull;
static uint64_t rnd(void)
{
	rng ^= rng << 13;
	rng ^= rng >> 7;
	rng ^= rng << 17;
	return rng;
}

static uint64_t hash_once(uint64_t seed, const void *p, size_t len)
{
	struct snap_hash h;
	snap_hash_init(&h, seed);
	snap_hash_update(&h, p, len);
	return snap_hash_final(&h);
}

/* ---- snap_hash ---- */

static void test_hash(void)
{
	enum { N = 4096 + 17 };
	uint8_t *buf = malloc(N);
	CHECK(buf != NULL);
	for (int i = 0; i < N; i++)
		buf[i] = (uint8_t)rnd();
	uint64_t whole = hash_once(7, buf, N);
	CHECK_EQ(hash_once(7, buf, N), whole); /* deterministic */

	/* incremental over splits at multiples of 32 (the last call may have any length) == one shot */
	static const size_t cuts[][3] = { { 32, 64, 4096 }, { 0, 32, 32 }, { 4096, 4096, 4096 }, { 1024, 2048, 3072 },
					  { 0, 0, 4096 + 16 } };
	for (unsigned c = 0; c < sizeof(cuts) / sizeof(cuts[0]); c++) {
		struct snap_hash h;
		snap_hash_init(&h, 7);
		size_t a = cuts[c][0], b = cuts[c][1], d = cuts[c][2];
		snap_hash_update(&h, buf, a);
		snap_hash_update(&h, buf + a, b - a);
		snap_hash_update(&h, buf + b, d - b);
		snap_hash_update(&h, buf + d, N - d);
		CHECK_EQ(snap_hash_final(&h), whole);
		CHECK_EQ(h.len, N);
	}
	/* a page at a time, as the writer and the reader do */
	struct snap_hash h;
	snap_hash_init(&h, 7);
	for (size_t off = 0; off < N; off += 512)
		snap_hash_update(&h, buf + off, off + 512 <= N ? 512 : N - off);
	CHECK_EQ(snap_hash_final(&h), whole);

	/* the seed matters, the length matters (zeros of different lengths, a trailing zero byte) */
	CHECK(hash_once(8, buf, N) != whole);
	uint8_t z[128] = { 0 };
	CHECK(hash_once(0, z, 32) != hash_once(0, z, 64));
	CHECK(hash_once(0, z, 0) != hash_once(0, z, 1));
	CHECK(hash_once(0, z, 31) != hash_once(0, z, 32));
	CHECK(hash_once(0, z, 0) != hash_once(1, z, 0));
	CHECK(hash_once(0, buf, N - 1) != whole);

	/* every single-bit flip (in the 32-byte blocks and in the tail) changes the hash, and no two flips of
	 * the first 100 bytes collide */
	enum { M = 100 };
	uint64_t base = hash_once(3, buf, M), seen[M * 8];
	for (int i = 0; i < M * 8; i++) {
		buf[i / 8] ^= (uint8_t)(1u << (i % 8));
		seen[i] = hash_once(3, buf, M);
		buf[i / 8] ^= (uint8_t)(1u << (i % 8));
		CHECK(seen[i] != base);
		for (int j = 0; j < i; j++)
			CHECK(seen[j] != seen[i]);
	}
	CHECK_EQ(hash_once(3, buf, M), base);
	/* swapping two 8-byte words (same lane or not) changes it too: position matters */
	uint64_t w[8];
	for (int i = 0; i < 8; i++)
		w[i] = rnd();
	uint64_t hw = hash_once(0, w, sizeof(w));
	uint64_t t = w[0];
	w[0] = w[4], w[4] = t; /* same lane, different block */
	CHECK(hash_once(0, w, sizeof(w)) != hw);
	t = w[0], w[0] = w[4], w[4] = t;
	t = w[0], w[0] = w[1], w[1] = t;
	CHECK(hash_once(0, w, sizeof(w)) != hw);
	free(buf);
}

/* ---- page_is_zero ---- */

static void test_page_is_zero(void)
{
	uint8_t *p = aligned_alloc(PAGE_SIZE, PAGE_SIZE);
	CHECK(p != NULL);
	memset(p, 0, PAGE_SIZE);
	CHECK(page_is_zero(p));
	for (unsigned i = 0; i < PAGE_SIZE; i++) {
		p[i] = (uint8_t)(1u << (i % 8));
		if (page_is_zero(p)) {
			fprintf(stderr, "non-zero byte at %u not seen\n", i);
			CHECK(0);
		}
		p[i] = 0;
	}
	CHECK(page_is_zero(p));
	free(p);
}

/* ---- crafted snapshot files ---- */

struct disk_desc {
	const char *path;
	uint64_t size;
	uint32_t ro;
};

/* A finished fdt like state_capture's root, with a machine node (or none), malloc'd. */
static void *make_state(uint64_t mem, uint32_t ncpus, bool machine, const struct disk_desc *disks, unsigned ndisks,
			const char *tap, const uint8_t *mac, int maclen, size_t *len)
{
	size_t size = 8192;
	void *fdt = malloc(size);
	CHECK(fdt != NULL);
	CHECK_EQ(fdt_create(fdt, (int)size), 0);
	CHECK_EQ(fdt_finish_reservemap(fdt), 0);
	CHECK_EQ(fdt_begin_node(fdt, ""), 0);
	CHECK_EQ(fdt_property_u32(fdt, "ftvmm,state-version", 1), 0);
	if (machine) {
		CHECK_EQ(fdt_begin_node(fdt, "machine"), 0);
		CHECK_EQ(fdt_property_u64(fdt, "mem-size", mem), 0);
		CHECK_EQ(fdt_property_u32(fdt, "ncpus", ncpus), 0);
		for (unsigned i = 0; i < ndisks; i++) {
			char name[16];
			snprintf(name, sizeof(name), "disk@%u", i);
			CHECK_EQ(fdt_begin_node(fdt, name), 0);
			if (disks[i].path)
				CHECK_EQ(fdt_property_string(fdt, "path", disks[i].path), 0);
			CHECK_EQ(fdt_property_u64(fdt, "size", disks[i].size), 0);
			CHECK_EQ(fdt_property_u32(fdt, "readonly", disks[i].ro), 0);
			CHECK_EQ(fdt_end_node(fdt), 0);
		}
		if (tap) {
			CHECK_EQ(fdt_begin_node(fdt, "nic@0"), 0);
			CHECK_EQ(fdt_property_string(fdt, "tap", tap), 0);
			CHECK_EQ(fdt_property_u32(fdt, "has-mac", 1), 0);
			CHECK_EQ(fdt_property(fdt, "mac", mac, maclen), 0);
			CHECK_EQ(fdt_end_node(fdt), 0);
		}
		CHECK_EQ(fdt_end_node(fdt), 0);
	}
	CHECK_EQ(fdt_begin_node(fdt, "vcpus"), 0);
	CHECK_EQ(fdt_end_node(fdt), 0);
	CHECK_EQ(fdt_end_node(fdt), 0);
	CHECK_EQ(fdt_finish(fdt), 0);
	*len = fdt_totalsize(fdt);
	return fdt;
}

struct crafted {
	uint8_t *buf;
	size_t len;
};

static struct snap_header *hdr(struct crafted *c) { return (struct snap_header *)c->buf; }

/* The checksum exactly as snapshot.c computes it: seeded with a hash of the header (checksum zeroed), then the
 * state (its 32-byte blocks, then its tail), the bitmap and the stored pages. */
static uint64_t compute_checksum(const struct crafted *c)
{
	const struct snap_header *h = (const struct snap_header *)c->buf;
	struct snap_header z = *h;
	z.checksum = 0;
	struct snap_hash s;
	snap_hash_init(&s, 0x46545653ull);
	snap_hash_update(&s, &z, sizeof(z));
	uint64_t seed = snap_hash_final(&s);
	snap_hash_init(&s, seed);
	const uint8_t *st = c->buf + h->state_off;
	snap_hash_update(&s, st, h->state_len & ~(uint64_t)31);
	snap_hash_update(&s, st + (h->state_len & ~(uint64_t)31), h->state_len % 32);
	snap_hash_update(&s, c->buf + h->bitmap_off, gmem_bitmap_words(h->mem_size >> PAGE_SHIFT) * sizeof(long));
	snap_hash_update(&s, c->buf + h->pages_off, h->npages_stored * PAGE_SIZE);
	return snap_hash_final(&s);
}

static void fix_checksum(struct crafted *c) { hdr(c)->checksum = compute_checksum(c); }

/* the contents of stored page pg */
static void page_fill(uint8_t *p, uint64_t pg)
{
	for (unsigned i = 0; i < PAGE_SIZE / 8; i++)
		((uint64_t *)p)[i] = (pg << 32 | i) * 0x9e3779b97f4a7c15ull + 1;
}

/* A valid snapshot image of npages of RAM where the pages for which stored(pg) holds are non-zero. */
static struct crafted craft(uint64_t npages, bool (*stored)(uint64_t), const void *state, size_t state_len)
{
	struct crafted c;
	size_t bm_bytes = gmem_bitmap_words(npages) * sizeof(long);
	uint64_t n = 0;
	for (uint64_t pg = 0; pg < npages; pg++)
		n += stored(pg);
	struct snap_header h;
	memset(&h, 0, sizeof(h));
	memcpy(h.magic, SNAP_MAGIC, 8);
	h.major = SNAP_MAJOR;
	h.minor = SNAP_MINOR;
	h.state_off = sizeof(h);
	h.state_len = state_len;
	h.bitmap_off = ALIGN8(h.state_off + state_len);
	h.pages_off = ALIGNP(h.bitmap_off + bm_bytes);
	h.mem_size = npages * PAGE_SIZE;
	h.npages_stored = n;
	c.len = h.pages_off + n * PAGE_SIZE;
	c.buf = calloc(1, c.len);
	CHECK(c.buf != NULL);
	memcpy(c.buf, &h, sizeof(h));
	memcpy(c.buf + h.state_off, state, state_len);
	unsigned long *bm = (unsigned long *)(c.buf + h.bitmap_off);
	uint8_t *p = c.buf + h.pages_off;
	for (uint64_t pg = 0; pg < npages; pg++)
		if (stored(pg)) {
			bm[pg / BPL] |= 1ul << (pg % BPL);
			page_fill(p, pg);
			p += PAGE_SIZE;
		}
	fix_checksum(&c);
	return c;
}

static char tmpdir[64];
static int nfile;

static char *write_file(const void *p, size_t len)
{
	char *path = malloc(128);
	CHECK(path != NULL);
	snprintf(path, 128, "%s/snap%d", tmpdir, nfile++);
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	CHECK(fd >= 0);
	CHECK_EQ(write(fd, p, len), (ssize_t)len);
	close(fd);
	return path;
}

/* snapshot_open must refuse the bytes, with an error line containing `want`, and leave nothing open. */
static void expect_reject(const void *p, size_t len, const char *want)
{
	char *path = write_file(p, len);
	struct snapshot s;
	char err[512] = "";
	int r = snapshot_open(path, &s, err, sizeof(err));
	if (r == 0 || !strstr(err, want))
		fprintf(stderr, "expected a rejection with '%s', got %d '%s'\n", want, r, err);
	CHECK(r < 0);
	CHECK(strstr(err, want) != NULL);
	CHECK(strstr(err, path) != NULL); /* the message names the file */
	CHECK(strchr(err, '\n') == NULL); /* one line */
	CHECK(s.fdt == NULL && s.bitmap == NULL && s.fd == -1);
	snapshot_close(&s); /* harmless twice */
	unlink(path);
	free(path);
}

static uint64_t cur_npages;
static bool stored_some(uint64_t pg) { return pg % 3 == 0 || (pg >= 40 && pg < 50) || pg == cur_npages - 1; }
static bool stored_none(uint64_t pg) { (void)pg; return false; }
static bool stored_long_run(uint64_t pg) { return pg >= 100 && pg < 100 + 1500; } /* > the 1024-page read run */

static struct crafted craft_default(void)
{
	size_t sl;
	void *st = make_state(256 * PAGE_SIZE, 2, true, NULL, 0, NULL, NULL, 0, &sl);
	cur_npages = 256;
	struct crafted c = craft(256, stored_some, st, sl);
	free(st);
	return c;
}

static void test_open_rejects(void)
{
	struct crafted c = craft_default();
	struct snap_header *h = hdr(&c);
	struct snap_header saved = *h;
#define RESET() (*h = saved)

	/* not a snapshot: bad magic, empty, shorter than the header */
	memcpy(h->magic, "FTVMSNAQ", 8);
	expect_reject(c.buf, c.len, "bad magic");
	RESET();
	expect_reject(c.buf, 0, "bad magic");
	expect_reject(c.buf, sizeof(*h) - 1, "bad magic");

	/* another major version (bytes 8-9), even with a matching checksum; the message names both versions */
	h->major = SNAP_MAJOR + 1;
	fix_checksum(&c);
	expect_reject(c.buf, c.len, "format version 2.0");
	h->major = 0;
	fix_checksum(&c);
	expect_reject(c.buf, c.len, "not readable");
	RESET();

	/* sizes in the header inconsistent with each other or with the file */
	const char *sz = "sizes in the header";
	expect_reject(c.buf, c.len - PAGE_SIZE, sz); /* truncated by a page */
	expect_reject(c.buf, c.len - 1, sz);
	uint8_t *longer = calloc(1, c.len + 1);
	CHECK(longer != NULL);
	memcpy(longer, c.buf, c.len);
	expect_reject(longer, c.len + 1, sz); /* a byte appended */
	free(longer);
	h->mem_size = 0;
	expect_reject(c.buf, c.len, sz);
	RESET();
	h->mem_size += 100; /* not a page multiple */
	expect_reject(c.buf, c.len, sz);
	RESET();
	h->mem_size = 1024ull << 30 << 10; /* beyond VM_MAX_MEM */
	expect_reject(c.buf, c.len, sz);
	RESET();
	h->state_off = sizeof(*h) + 8;
	expect_reject(c.buf, c.len, sz);
	RESET();
	h->state_len = 10;
	expect_reject(c.buf, c.len, sz);
	RESET();
	h->state_len = 128ull << 20; /* > 64 MiB */
	expect_reject(c.buf, c.len, sz);
	RESET();
	h->bitmap_off = h->state_off + h->state_len - 8; /* overlaps the state */
	expect_reject(c.buf, c.len, sz);
	RESET();
	h->pages_off -= PAGE_SIZE; /* overlaps the bitmap (and no longer adds up to the file size) */
	expect_reject(c.buf, c.len, sz);
	RESET();
	h->npages_stored++; /* more pages than the file holds */
	expect_reject(c.buf, c.len, sz);
	RESET();
	h->npages_stored = 257; /* more than the RAM has */
	expect_reject(c.buf, c.len, sz);
	RESET();
	/* a pages offset that wraps around 2^64 onto the file size (with a bitmap that adds up): still refused
	 * (by the read at the absurd offset), never a crash */
	h->npages_stored = saved.npages_stored + 4;
	h->pages_off = c.len - h->npages_stored * PAGE_SIZE; /* unsigned wrap */
	CHECK(h->pages_off > c.len);
	unsigned long *bm = (unsigned long *)(c.buf + h->bitmap_off);
	CHECK(!(bm[0] & 0x36));
	bm[0] |= 0x36; /* pages 1, 2, 4, 5: not stored so far */
	{
		char *path = write_file(c.buf, c.len);
		struct snapshot s;
		char err[512] = "";
		CHECK(snapshot_open(path, &s, err, sizeof(err)) < 0);
		CHECK(err[0] != '\0');
		CHECK(s.fdt == NULL && s.bitmap == NULL);
		unlink(path);
		free(path);
	}
	bm[0] &= ~0x36ul;
	RESET();

	/* the bitmap's population count must be the stored page count */
	CHECK(!(bm[0] & 2)); /* page 1 not stored */
	bm[0] |= 2;
	expect_reject(c.buf, c.len, "corrupted page bitmap");
	bm[0] &= ~2ul;
	bm[0] &= ~1ul; /* one fewer */
	expect_reject(c.buf, c.len, "corrupted page bitmap");
	bm[0] |= 1;
	/* bits in the bitmap's last word beyond the RAM's pages count too (256 pages: no spare bits; see below) */

	/* the checksum: any byte flipped anywhere, or a header field covered by the seed */
	uint64_t flips[] = { h->state_off + 3, h->state_off + h->state_len - 1, h->pages_off, h->pages_off + 4095,
			     c.len / 2, c.len - 1 };
	for (unsigned i = 0; i < sizeof(flips) / sizeof(flips[0]); i++) {
		c.buf[flips[i]] ^= 0x10;
		expect_reject(c.buf, c.len, "checksum mismatch");
		c.buf[flips[i]] ^= 0x10;
	}
	/* swapping two stored pages (the bitmap still adds up): the hash is position-dependent */
	{
		uint8_t tmp[PAGE_SIZE];
		uint8_t *p0 = c.buf + h->pages_off, *p1 = p0 + PAGE_SIZE;
		memcpy(tmp, p0, PAGE_SIZE);
		memcpy(p0, p1, PAGE_SIZE);
		memcpy(p1, tmp, PAGE_SIZE);
		expect_reject(c.buf, c.len, "checksum mismatch");
		memcpy(p1, p0, PAGE_SIZE);
		memcpy(p0, tmp, PAGE_SIZE);
	}
	h->minor = SNAP_MINOR + 1; /* a newer minor is readable, but the header is under the checksum */
	expect_reject(c.buf, c.len, "checksum mismatch");
	RESET();
	h->flags = 1;
	expect_reject(c.buf, c.len, "checksum mismatch");
	RESET();
	h->reserved[2] = 1;
	expect_reject(c.buf, c.len, "checksum mismatch");
	RESET();

	/* a state blob that is not a device tree, with a correct checksum */
	memset(c.buf + h->state_off, 0x5a, 64);
	fix_checksum(&c);
	expect_reject(c.buf, c.len, "not a valid device tree");
	free(c.buf);

	/* an fdt whose own totalsize claims more than the state length */
	c = craft_default();
	h = hdr(&c);
	struct fdt_header *fh = (struct fdt_header *)(c.buf + h->state_off);
	fh->totalsize = cpu_to_fdt32(fdt32_to_cpu(fh->totalsize) + 4096);
	fix_checksum(&c);
	expect_reject(c.buf, c.len, "not a valid device tree");
	free(c.buf);

	/* spare bitmap bits beyond the last page (RAM not a multiple of 64 pages) are counted too */
	size_t sl;
	void *st = make_state(100 * PAGE_SIZE, 1, true, NULL, 0, NULL, NULL, 0, &sl);
	cur_npages = 100;
	c = craft(100, stored_some, st, sl);
	h = hdr(&c);
	bm = (unsigned long *)(c.buf + h->bitmap_off);
	bm[1] |= 1ul << 63; /* page 127 does not exist */
	expect_reject(c.buf, c.len, "corrupted page bitmap");
	free(c.buf);
	free(st);
#undef RESET

	/* not a file / no file */
	struct snapshot s;
	char err[512] = "";
	CHECK(snapshot_open(tmpdir, &s, err, sizeof(err)) < 0);
	CHECK(strstr(err, "not a regular file") != NULL);
	char missing[128];
	snprintf(missing, sizeof(missing), "%s/no-such-snapshot", tmpdir);
	CHECK_EQ(snapshot_open(missing, &s, err, sizeof(err)), -ENOENT);
	CHECK(strstr(err, "No such file") != NULL);
}

static void test_open_accept_and_load(void)
{
	/* a valid file: 256 pages, some stored */
	struct crafted c = craft_default();
	char *path = write_file(c.buf, c.len);
	struct snapshot s;
	char err[512] = "";
	int r = snapshot_open(path, &s, err, sizeof(err));
	if (r)
		fprintf(stderr, "snapshot_open: %s\n", err);
	CHECK_EQ(r, 0);
	CHECK_EQ(s.file_size, c.len);
	CHECK_EQ(s.hdr.mem_size, 256 * PAGE_SIZE);
	CHECK_EQ(s.hdr.npages_stored, hdr(&c)->npages_stored);
	CHECK_EQ(s.hdr.checksum, hdr(&c)->checksum);
	CHECK(s.fd >= 0 && s.fdt != NULL && s.bitmap != NULL);
	CHECK_EQ(fdt_check_header(s.fdt), 0);
	CHECK(fdt_subnode_offset(s.fdt, 0, "machine") >= 0);

	/* load into a fresh buffer: stored pages land at their offsets, the others stay as they were */
	uint8_t *mem = aligned_alloc(PAGE_SIZE, 256 * PAGE_SIZE);
	CHECK(mem != NULL);
	memset(mem, 0xee, 256 * PAGE_SIZE);
	struct guest_mem m;
	CHECK_EQ(gmem_init_buffer(&m, mem, 256 * PAGE_SIZE), 0);
	CHECK_EQ(snapshot_load_memory(&s, &m, err, sizeof(err)), 0);
	uint8_t *want = aligned_alloc(PAGE_SIZE, PAGE_SIZE);
	CHECK(want != NULL);
	for (uint64_t pg = 0; pg < 256; pg++) {
		if (stored_some(pg)) {
			page_fill(want, pg);
			CHECK(memcmp(mem + pg * PAGE_SIZE, want, PAGE_SIZE) == 0);
		} else {
			CHECK(mem[pg * PAGE_SIZE] == 0xee && mem[pg * PAGE_SIZE + PAGE_SIZE - 1] == 0xee);
		}
	}
	/* nothing marked dirty: a restored image is the baseline */
	unsigned long *dirty = calloc(gmem_bitmap_words(256), sizeof(long));
	CHECK(dirty != NULL);
	gmem_dirty_harvest(&m, dirty);
	for (size_t i = 0; i < gmem_bitmap_words(256); i++)
		CHECK_EQ(dirty[i], 0);
	free(dirty);
	gmem_free(&m);

	/* a memory of another size is refused with the sizes in MiB */
	CHECK_EQ(gmem_init_buffer(&m, mem, 128 * PAGE_SIZE), 0);
	CHECK(snapshot_load_memory(&s, &m, err, sizeof(err)) < 0);
	CHECK(strstr(err, "differs") != NULL);
	gmem_free(&m);
	snapshot_close(&s);
	CHECK(s.fdt == NULL && s.bitmap == NULL);
	unlink(path);
	free(path);
	free(c.buf);
	free(mem);

	/* 2048 pages with a run of 1500 stored pages (longer than one read) and nothing else */
	size_t sl;
	void *st = make_state(2048 * PAGE_SIZE, 1, true, NULL, 0, NULL, NULL, 0, &sl);
	c = craft(2048, stored_long_run, st, sl);
	free(st);
	path = write_file(c.buf, c.len);
	CHECK_EQ(snapshot_open(path, &s, err, sizeof(err)), 0);
	mem = aligned_alloc(PAGE_SIZE, 2048 * PAGE_SIZE);
	CHECK(mem != NULL);
	memset(mem, 0, 2048 * PAGE_SIZE);
	CHECK_EQ(gmem_init_buffer(&m, mem, 2048 * PAGE_SIZE), 0);
	CHECK_EQ(snapshot_load_memory(&s, &m, err, sizeof(err)), 0);
	for (uint64_t pg = 0; pg < 2048; pg++) {
		if (stored_long_run(pg)) {
			page_fill(want, pg);
			CHECK(memcmp(mem + pg * PAGE_SIZE, want, PAGE_SIZE) == 0);
		} else {
			CHECK(page_is_zero(mem + pg * PAGE_SIZE));
		}
	}
	gmem_free(&m);
	snapshot_close(&s);
	unlink(path);
	free(path);
	free(c.buf);
	free(mem);

	/* all-zero memory: no pages at all, the file ends at pages_off */
	st = make_state(64 * PAGE_SIZE, 1, true, NULL, 0, NULL, NULL, 0, &sl);
	c = craft(64, stored_none, st, sl);
	free(st);
	CHECK_EQ(hdr(&c)->npages_stored, 0);
	CHECK_EQ(c.len, hdr(&c)->pages_off);
	path = write_file(c.buf, c.len);
	CHECK_EQ(snapshot_open(path, &s, err, sizeof(err)), 0);
	snapshot_close(&s);
	unlink(path);
	free(path);
	free(c.buf);
	free(want);
}

static void test_machine_config(void)
{
	static const struct disk_desc disks[2] = { { "/images/root.img", 1 << 30, 0 }, { "/images/ro.iso", 4096, 1 } };
	static const uint8_t mac[6] = { 0x52, 0x54, 0x00, 0x12, 0x34, 0x56 };
	size_t sl;
	char err[256] = "";
	struct machine cfg;
	void *st = make_state(512ull << 20, 4, true, disks, 2, "tap-ft0", mac, 6, &sl);
	CHECK_EQ(state_read_machine(st, &cfg, err, sizeof(err)), 0);
	CHECK_EQ(cfg.mem, 512ull << 20);
	CHECK_EQ(cfg.cpus, 4);
	CHECK_EQ(cfg.ndisks, 2);
	CHECK(!strcmp(cfg.disks[0].path, "/images/root.img") && !cfg.disks[0].readonly);
	CHECK(!strcmp(cfg.disks[1].path, "/images/ro.iso") && cfg.disks[1].readonly);
	CHECK_EQ(cfg.disks[0].size, 1 << 30);
	CHECK_EQ(cfg.disks[1].size, 4096);
	CHECK_EQ(cfg.nnics, 1);
	CHECK(!strcmp(cfg.nics[0].tap, "tap-ft0"));
	CHECK(cfg.nics[0].has_mac);
	CHECK(!memcmp(cfg.nics[0].mac, mac, 6));
	free(st);

	/* no devices at all */
	st = make_state(64ull << 20, 1, true, NULL, 0, NULL, NULL, 0, &sl);
	CHECK_EQ(state_read_machine(st, &cfg, err, sizeof(err)), 0);
	CHECK_EQ(cfg.ndisks, 0);
	CHECK_EQ(cfg.nnics, 0);
	CHECK_EQ(cfg.cpus, 1);
	free(st);

	/* malformed descriptions: each refused with a message */
	st = make_state(64ull << 20, 1, false, NULL, 0, NULL, NULL, 0, &sl);
	CHECK(state_read_machine(st, &cfg, err, sizeof(err)) < 0);
	CHECK(strstr(err, "machine description missing") != NULL);
	free(st);
	st = make_state(64ull << 20, 0, true, NULL, 0, NULL, NULL, 0, &sl);
	err[0] = '\0';
	CHECK(state_read_machine(st, &cfg, err, sizeof(err)) < 0);
	CHECK(strstr(err, "machine description missing") != NULL);
	free(st);
	static const struct disk_desc nopath[1] = { { NULL, 4096, 0 } };
	st = make_state(64ull << 20, 1, true, nopath, 1, NULL, NULL, 0, &sl);
	err[0] = '\0';
	CHECK(state_read_machine(st, &cfg, err, sizeof(err)) < 0);
	CHECK(strstr(err, "disk@0 has no path") != NULL);
	free(st);
	st = make_state(64ull << 20, 1, true, NULL, 0, "a-tap-name-longer-than-ifnamsiz", mac, 6, &sl);
	err[0] = '\0';
	CHECK(state_read_machine(st, &cfg, err, sizeof(err)) < 0);
	CHECK(strstr(err, "nic@0 is malformed") != NULL);
	free(st);
	st = make_state(64ull << 20, 1, true, NULL, 0, "tap0", mac, 5, &sl);
	err[0] = '\0';
	CHECK(state_read_machine(st, &cfg, err, sizeof(err)) < 0);
	CHECK(strstr(err, "nic@0 is malformed") != NULL);
	free(st);
	/* more disks than the CLI allows: refused */
	struct disk_desc many[MACHINE_MAX_DISKS + 1];
	for (unsigned i = 0; i <= MACHINE_MAX_DISKS; i++)
		many[i] = (struct disk_desc){ "/d", 4096, 0 };
	st = make_state(64ull << 20, 1, true, many, MACHINE_MAX_DISKS + 1, NULL, NULL, 0, &sl);
	CHECK(state_read_machine(st, &cfg, err, sizeof(err)) < 0);
	free(st);
}

/* ---- the machine node: disk sizes come from the config, not from a stat() in every pause ---- */

static void test_machine_disk_sizes(void)
{
	char path[128];
	snprintf(path, sizeof(path), "%s/disk-size.img", tmpdir);
	int fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0600);
	CHECK(fd >= 0);
	CHECK_EQ(ftruncate(fd, 8192), 0);
	char *argv[] = { "run", "-k", "bz", "--disk", path, NULL };
	struct run_config cfg;
	char err[256] = "";
	CHECK_EQ(cli_parse_run(5, argv, &cfg, err, sizeof(err)), 0);
	/* the size as it was at setup: a later change (or the file's absence) is not looked at */
	CHECK_EQ(ftruncate(fd, 0), 0);
	close(fd);
	struct vm vm;
	memset(&vm, 0, sizeof(vm));
	vm.mem.size = 64ull << 20;
	vm.ncpus = 2;
	size_t size = 4096;
	void *fdt = malloc(size);
	CHECK(fdt != NULL);
	CHECK_EQ(fdt_create(fdt, (int)size), 0);
	CHECK_EQ(fdt_finish_reservemap(fdt), 0);
	CHECK_EQ(fdt_begin_node(fdt, ""), 0);
	CHECK_EQ(state_put_machine(fdt, &vm, &cfg.machine), 0);
	CHECK_EQ(fdt_end_node(fdt), 0);
	CHECK_EQ(fdt_finish(fdt), 0);
	struct machine back;
	CHECK_EQ(state_read_machine(fdt, &back, err, sizeof(err)), 0);
	CHECK_EQ(back.ndisks, 1);
	CHECK(!strcmp(back.disks[0].path, path));
	int node = fdt_path_offset(fdt, "/machine/disk@0");
	CHECK(node >= 0);
	int len;
	const void *sz = fdt_getprop(fdt, node, "size", &len);
	CHECK(sz != NULL && len == 8);
	fdt64_t v;
	memcpy(&v, sz, sizeof(v));
	CHECK_EQ(fdt64_to_cpu(v), 8192);
	/* what restore compares with the image: the recorded size, or nothing for a disk not described */
	uint64_t want = 0;
	CHECK_EQ(state_disk_size(fdt, 0, &want), 0);
	CHECK_EQ(want, 8192);
	CHECK_EQ(state_disk_size(fdt, 1, &want), -ENOENT);
	CHECK_EQ(want, 8192);
	free(fdt);
	unlink(path);
}

/* ---- vm_pause: every vCPU stopped, or an error (never a pause with a vCPU still running) ---- */

/* Stand-ins for vCPU threads, following vcpu.c's protocol: a kicked vCPU either parks (counted in
 * paused_vcpus until the pause ends) or, when the VM is ending, leaves its loop and says so. */
enum fake_mode { FAKE_PARK, FAKE_EXIT };

struct fake_cpu {
	struct vcpu *v;
	enum fake_mode mode;
	pthread_t thread;
};

static bool pause_requested(struct vm *vm)
{
	pthread_mutex_lock(&vm->pause_lock);
	bool r = vm->pause_requested;
	pthread_mutex_unlock(&vm->pause_lock);
	return r;
}

static void *fake_vcpu(void *arg)
{
	struct fake_cpu *f = arg;
	struct vm *vm = f->v->vm;
	while (!pause_requested(vm)) /* KVM_RUN until the kick */
		usleep(1000);
	if (f->mode == FAKE_EXIT) {
		usleep(20000); /* the other one parks first */
		vm_request_exit(vm, VM_EXIT_SIGNAL);
		pthread_mutex_lock(&vm->pause_lock);
		pthread_cond_broadcast(&vm->pause_cond);
		pthread_mutex_unlock(&vm->pause_lock);
		return NULL;
	}
	pthread_mutex_lock(&vm->pause_lock);
	vm->paused_vcpus++;
	pthread_cond_broadcast(&vm->pause_cond);
	while (vm->pause_requested && !__atomic_load_n(&vm->exit_reason, __ATOMIC_ACQUIRE))
		pthread_cond_wait(&vm->pause_cond, &vm->pause_lock);
	vm->paused_vcpus--;
	pthread_mutex_unlock(&vm->pause_lock);
	return NULL;
}

static unsigned quiesced, resumed;
static int count_quiesce(void *o) { (void)o; quiesced++; return 0; }
static void count_resume(void *o) { (void)o; resumed++; }

static void fake_vm_init(struct vm *vm, struct vm_device *dev, unsigned ncpus)
{
	memset(vm, 0, sizeof(*vm));
	vm->kvm_fd = vm->vm_fd = vm->exit_efd = -1;
	pthread_mutex_init(&vm->state_lock, NULL);
	pthread_cond_init(&vm->state_cond, NULL);
	pthread_mutex_init(&vm->pause_lock, NULL);
	pthread_mutex_init(&vm->pause_op_lock, NULL);
	pthread_cond_init(&vm->pause_cond, NULL);
	vm->ncpus = ncpus;
	vm->vcpus = calloc(ncpus, sizeof(*vm->vcpus));
	CHECK(vm->vcpus != NULL);
	for (unsigned i = 0; i < ncpus; i++)
		vm->vcpus[i] = (struct vcpu){ .vm = vm, .id = i, .fd = -1, .started = true }; /* no run page: kicks do nothing */
	*dev = (struct vm_device){ .name = "counter", .quiesce = count_quiesce, .resume = count_resume };
	vm_add_device(vm, dev);
	quiesced = resumed = 0;
}

static void fake_vm_fini(struct vm *vm)
{
	free(vm->vcpus);
	pthread_mutex_destroy(&vm->state_lock);
	pthread_cond_destroy(&vm->state_cond);
	pthread_mutex_destroy(&vm->pause_lock);
	pthread_mutex_destroy(&vm->pause_op_lock);
	pthread_cond_destroy(&vm->pause_cond);
}

/* Nothing half done is left behind by a pause that failed. */
static void check_not_paused(struct vm *vm)
{
	CHECK(!vm->paused);
	CHECK_EQ(vm->pause_depth, 0);
	CHECK(!pause_requested(vm));
	CHECK_EQ(quiesced, resumed);
}

static void test_pause(void)
{
	struct vm vm;
	struct vm_device dev;
	struct fake_cpu f[2];

	/* every vCPU parks: paused, devices quiesced; resume releases them */
	fake_vm_init(&vm, &dev, 2);
	for (unsigned i = 0; i < 2; i++) {
		f[i] = (struct fake_cpu){ .v = &vm.vcpus[i], .mode = FAKE_PARK };
		CHECK_EQ(pthread_create(&f[i].thread, NULL, fake_vcpu, &f[i]), 0);
	}
	CHECK_EQ(vm_pause(&vm), 0);
	CHECK(vm.paused);
	CHECK_EQ(vm.paused_vcpus, 2);
	CHECK_EQ(quiesced, 1);
	vm_resume(&vm);
	for (unsigned i = 0; i < 2; i++)
		pthread_join(f[i].thread, NULL);
	check_not_paused(&vm);
	fake_vm_fini(&vm);

	/* the VM is already ending and its vCPUs never park: the pause fails instead of returning with
	 * them in an unknown state */
	fake_vm_init(&vm, &dev, 2);
	vm_request_exit(&vm, VM_EXIT_SIGNAL);
	CHECK(vm_pause(&vm) < 0);
	check_not_paused(&vm);
	CHECK_EQ(quiesced, 0);
	fake_vm_fini(&vm);

	/* one vCPU parked, the other leaves its loop as the VM ends: fails, and the parked one is let go */
	fake_vm_init(&vm, &dev, 2);
	f[0] = (struct fake_cpu){ .v = &vm.vcpus[0], .mode = FAKE_PARK };
	f[1] = (struct fake_cpu){ .v = &vm.vcpus[1], .mode = FAKE_EXIT };
	for (unsigned i = 0; i < 2; i++)
		CHECK_EQ(pthread_create(&f[i].thread, NULL, fake_vcpu, &f[i]), 0);
	CHECK(vm_pause(&vm) < 0);
	for (unsigned i = 0; i < 2; i++)
		pthread_join(f[i].thread, NULL);
	check_not_paused(&vm);
	CHECK_EQ(vm.paused_vcpus, 0);
	fake_vm_fini(&vm);
}

int main(void)
{
	snprintf(tmpdir, sizeof(tmpdir), "%s/ftvmm-test-snapshot.XXXXXX", getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
	if (strlen(tmpdir) >= sizeof(tmpdir) - 1 || !mkdtemp(tmpdir)) {
		snprintf(tmpdir, sizeof(tmpdir), "/tmp/ftvmm-test-snapshot.XXXXXX");
		CHECK(mkdtemp(tmpdir) != NULL);
	}
	test_hash();
	test_page_is_zero();
	test_open_rejects();
	test_open_accept_and_load();
	test_machine_config();
	test_machine_disk_sizes();
	test_pause();
	rmdir(tmpdir);
	TEST_DONE("test_snapshot");
}

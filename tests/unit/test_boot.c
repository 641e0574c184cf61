/* test_boot.c - bzImage header parsing, e820 map, boot_params, page tables and initrd placement (boot.c). */
#include "../../vmm/boot.h"
#include "../../vmm/guest_mem.h"
#include "../../vmm/util.h"
#include "test.h"

#include <errno.h>
#include <glob.h>
#include <stdint.h>

#define MiB (1ull << 20)
#define GiB (1ull << 30)

/* What a synthetic bzImage looks like. */
struct img_spec {
	uint16_t version;
	uint8_t setup_sects;
	uint8_t loadflags;
	uint16_t xloadflags;
	uint8_t jump; /* byte at 0x201: header end = 0x202 + jump */
	size_t pm_size;
	int64_t syssize; /* < 0: ceil(pm_size / 16) */
	uint32_t init_size;
	uint32_t cmdline_size;
	uint32_t initrd_addr_max;
	size_t len; /* 0: setup + pm_size; otherwise the file is cut (or padded) to this length */
};

static struct img_spec good_spec(void)
{
	return (struct img_spec){
		.version = 0x020f,
		.setup_sects = 4,
		.loadflags = LOADED_HIGH,
		.xloadflags = XLF_KERNEL_64 | XLF_CAN_BE_LOADED_ABOVE_4G,
		.jump = 0x6a,
		.pm_size = 300 * 1024 + 7,
		.syssize = -1,
		.init_size = 4 * MiB,
		.cmdline_size = 2047,
		.initrd_addr_max = 0x7fffffff,
	};
}

static void wr16(uint8_t *p, uint16_t v) { p[0] = (uint8_t)v; p[1] = (uint8_t)(v >> 8); }
static void wr32(uint8_t *p, uint32_t v)
{
	for (int i = 0; i < 4; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}
static uint32_t rd32(const uint8_t *p) { return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24; }

static uint8_t pm_byte(size_t i) { return (uint8_t)(i * 7 + (i >> 9) + 1); }

/* Build the image in a heap buffer of exactly its length, so ASan/valgrind see any over-read. */
static uint8_t *make_image(const struct img_spec *s, size_t *len_out)
{
	size_t setup = ((s->setup_sects ? s->setup_sects : 4) + 1u) * 512u;
	size_t full = setup + s->pm_size;
	size_t len = s->len ? s->len : full;
	size_t build = MAX(full, MAX(len, (size_t)0x400));
	uint8_t *b = calloc(1, build);
	CHECK(b != NULL);
	b[0x1f1] = s->setup_sects;
	uint64_t syssize = s->syssize < 0 ? (s->pm_size + 15) / 16 : (uint64_t)s->syssize;
	wr32(b + 0x1f4, (uint32_t)syssize);
	wr16(b + 0x1fe, 0xAA55);
	b[0x200] = 0xeb;
	b[0x201] = s->jump;
	memcpy(b + 0x202, "HdrS", 4);
	wr16(b + 0x206, s->version);
	b[0x211] = s->loadflags;
	wr32(b + 0x214, 0x100000);  /* code32_start */
	wr32(b + 0x22c, s->initrd_addr_max);
	wr32(b + 0x230, 0x200000);  /* kernel_alignment */
	b[0x234] = 1;               /* relocatable_kernel */
	b[0x235] = 21;              /* min_alignment */
	wr16(b + 0x236, s->xloadflags);
	wr32(b + 0x238, s->cmdline_size);
	wr32(b + 0x258, 0x1000000); /* pref_address (low half) */
	wr32(b + 0x260, s->init_size);
	for (size_t i = 0; i < s->pm_size && setup + i < build; i++)
		b[setup + i] = pm_byte(i);
	uint8_t *img = malloc(len);
	CHECK(img != NULL);
	memcpy(img, b, MIN(len, build));
	free(b);
	*len_out = len;
	return img;
}

static int parse_spec(const struct img_spec *s, struct bzimage_info *bi, char *err, size_t errlen)
{
	size_t len;
	uint8_t *img = make_image(s, &len);
	err[0] = '\0';
	int r = bzimage_parse(img, len, bi, err, errlen);
	free(img);
	return r;
}

/* A rejected image: -EINVAL and an error line containing `needle`. */
static void expect_reject(const struct img_spec *s, const char *needle)
{
	struct bzimage_info bi;
	char err[256];
	int r = parse_spec(s, &bi, err, sizeof(err));
	if (r != -EINVAL || !strstr(err, needle))
		fprintf(stderr, "expected rejection naming '%s', got r=%d err='%s'\n", needle, r, err);
	CHECK_EQ(r, -EINVAL);
	CHECK(strstr(err, needle) != NULL);
}

static void test_parse_good(void)
{
	struct img_spec s = good_spec();
	size_t len;
	uint8_t *img = make_image(&s, &len);
	struct bzimage_info bi;
	char err[256] = "";
	CHECK_EQ(bzimage_parse(img, len, &bi, err, sizeof(err)), 0);
	CHECK_EQ(bi.version, 0x020f);
	CHECK_EQ(bi.setup_size, 5 * 512);
	CHECK(bi.pm == img + 5 * 512);
	CHECK_EQ(bi.pm_size, s.pm_size);
	CHECK_EQ(bi.init_size, 4 * MiB);
	CHECK_EQ(bi.initrd_addr_max, 0x7fffffff);
	CHECK_EQ(bi.cmdline_size, 2047);
	CHECK_EQ(bi.xloadflags, XLF_KERNEL_64 | XLF_CAN_BE_LOADED_ABOVE_4G);
	CHECK_EQ(bi.hdr_end, 0x202 + 0x6a);
	CHECK_EQ(boot_min_mem(&bi), 6 * MiB + 16 * MiB); /* ALIGN_UP(1M + 4M, 2M) + 16M */
	free(img);

	/* setup_sects 0 means 4 (old images) */
	s = good_spec();
	s.setup_sects = 0;
	CHECK_EQ(parse_spec(&s, &bi, err, sizeof(err)), 0);
	CHECK_EQ(bi.setup_size, 5 * 512);
	/* a bigger setup */
	s = good_spec();
	s.setup_sects = 30;
	CHECK_EQ(parse_spec(&s, &bi, err, sizeof(err)), 0);
	CHECK_EQ(bi.setup_size, 31 * 512);
	CHECK_EQ(bi.pm_size, s.pm_size);
	/* init_size smaller than the payload is replaced by a safe guess */
	s = good_spec();
	s.init_size = 4096;
	CHECK_EQ(parse_spec(&s, &bi, err, sizeof(err)), 0);
	CHECK(bi.init_size >= bi.pm_size);
	/* syssize is in 16-byte units, rounded up: one partial unit past the payload is fine */
	s = good_spec();
	s.pm_size = 1024 * 16 + 1;
	s.syssize = 1025;
	CHECK_EQ(parse_spec(&s, &bi, err, sizeof(err)), 0);
	/* a header ending exactly at init_size's end (0x264) is the shortest accepted */
	s = good_spec();
	s.jump = 0x62;
	CHECK_EQ(parse_spec(&s, &bi, err, sizeof(err)), 0);
	CHECK_EQ(bi.hdr_end, 0x264);
}

static void test_parse_reject(void)
{
	struct img_spec s;
	/* too short to hold the header */
	s = good_spec();
	s.len = 0x26f;
	expect_reject(&s, "bzImage");
	s.len = 0x100;
	expect_reject(&s, "bzImage");
	/* no boot flag */
	{
		size_t len;
		s = good_spec();
		uint8_t *img = make_image(&s, &len);
		img[0x1fe] = 0;
		struct bzimage_info bi;
		char err[256] = "";
		CHECK_EQ(bzimage_parse(img, len, &bi, err, sizeof(err)), -EINVAL);
		CHECK(strstr(err, "boot header") != NULL);
		/* no "HdrS" */
		img[0x1fe] = 0x55;
		img[0x203] = 'x';
		err[0] = '\0';
		CHECK_EQ(bzimage_parse(img, len, &bi, err, sizeof(err)), -EINVAL);
		CHECK(strstr(err, "boot header") != NULL);
		free(img);
	}
	/* protocol 2.05 */
	s = good_spec();
	s.version = 0x0205;
	expect_reject(&s, "2.05");
	expect_reject(&s, "too old");
	/* zImage (not LOADED_HIGH) */
	s = good_spec();
	s.loadflags = 0;
	expect_reject(&s, "zImage");
	/* no 64-bit entry: flag clear, or protocol 2.11 which has no xloadflags at all */
	s = good_spec();
	s.xloadflags = XLF_CAN_BE_LOADED_ABOVE_4G;
	expect_reject(&s, "64-bit");
	s = good_spec();
	s.version = 0x020b;
	expect_reject(&s, "64-bit");
	/* setup bigger than the file */
	s = good_spec();
	s.setup_sects = 60;
	s.pm_size = 0;
	s.len = 4096;
	expect_reject(&s, "truncated");
	/* setup exactly the file: no kernel at all */
	s = good_spec();
	s.pm_size = 0;
	s.syssize = 0;
	expect_reject(&s, "truncated");
	/* syssize claims more than the file holds */
	s = good_spec();
	s.syssize = (int64_t)(s.pm_size + 15) / 16 + 2;
	expect_reject(&s, "truncated");
	/* payload cut off after the header was written */
	s = good_spec();
	s.len = 5 * 512 + s.pm_size / 2;
	expect_reject(&s, "truncated");
	/* setup header too short to hold the fields a 2.10+ loader reads */
	s = good_spec();
	s.jump = 0x50;
	expect_reject(&s, "header");
}

/* If the distribution kernel is installed, the real thing must parse. */
static void test_parse_real_kernel(void)
{
	glob_t g;
	if (glob("/boot/vmlinuz-*", 0, NULL, &g) != 0) {
		printf("test_boot: no /boot/vmlinuz-*, real kernel check skipped\n");
		return;
	}
	unsigned parsed = 0;
	for (size_t i = 0; i < g.gl_pathc; i++) {
		uint8_t *img;
		size_t len;
		if (read_file_all(g.gl_pathv[i], &img, &len) != 0)
			continue; /* unreadable (permissions): nothing to learn */
		struct bzimage_info bi;
		char err[256] = "";
		int r = bzimage_parse(img, len, &bi, err, sizeof(err));
		if (r)
			fprintf(stderr, "%s: %s\n", g.gl_pathv[i], err);
		CHECK_EQ(r, 0);
		CHECK(bi.version >= 0x020c);
		CHECK(bi.xloadflags & XLF_KERNEL_64);
		CHECK(bi.pm_size > 0 && bi.pm_size < len);
		CHECK(bi.init_size >= bi.pm_size);
		CHECK(bi.hdr_end >= 0x264 && bi.hdr_end <= bi.setup_size);
		CHECK(bi.cmdline_size >= 255);

		/* and loads: boot_params carries its setup header verbatim */
		uint64_t size = ALIGN_UP(boot_min_mem(&bi) + 8 * MiB, 2 * MiB);
		uint8_t *buf = aligned_alloc(PAGE_SIZE, size);
		CHECK(buf != NULL);
		memset(buf, 0, size);
		struct guest_mem m;
		CHECK_EQ(gmem_init_buffer(&m, buf, size), 0);
		struct boot_entry e;
		static const uint8_t rd[5000] = { 1, 2, 3 };
		r = boot_load_linux(&m, img, len, rd, sizeof(rd), "console=ttyS0", &e, err, sizeof(err));
		if (r)
			fprintf(stderr, "%s: %s\n", g.gl_pathv[i], err);
		CHECK_EQ(r, 0);
		const struct boot_params *bp = (const void *)(buf + BOOT_PARAMS_ADDR);
		CHECK_EQ(bp->hdr.version, bi.version);
		CHECK_EQ(bp->hdr.header, 0x53726448);
		CHECK_EQ(bp->hdr.init_size, rd32(img + 0x260));
		CHECK_EQ(bp->hdr.kernel_alignment, rd32(img + 0x230));
		CHECK(memcmp(buf + KERNEL_LOAD_ADDR, bi.pm, bi.pm_size) == 0);
		CHECK(e.initrd_addr >= KERNEL_LOAD_ADDR + bi.init_size);
		CHECK(e.initrd_addr + sizeof(rd) <= (uint64_t)bi.initrd_addr_max + 1);
		gmem_free(&m);
		free(buf);
		free(img);
		parsed++;
	}
	globfree(&g);
	printf("test_boot: %u real kernel(s) parsed and loaded\n", parsed);
}

static void test_e820(void)
{
	struct boot_e820_entry t[8];
	/* 4 GiB: 3 GiB below the hole, 1 GiB at 4 GiB. Only the layout fields matter to e820_build. */
	struct guest_mem m = { .size = 4 * GiB, .low_size = MMIO_HOLE_START, .npages = (4 * GiB) >> PAGE_SHIFT };
	unsigned n = e820_build(t, 8, &m);
	CHECK_EQ(n, 4);
	CHECK_EQ(t[0].addr, 0);
	CHECK_EQ(t[0].size, 0x9fc00);
	CHECK_EQ(t[0].type, 1);
	CHECK_EQ(t[1].addr, 0x9fc00);
	CHECK_EQ(t[1].size, 0x100000 - 0x9fc00);
	CHECK_EQ(t[1].type, 2);
	CHECK_EQ(t[2].addr, 0x100000);
	CHECK_EQ(t[2].size, MMIO_HOLE_START - 0x100000);
	CHECK_EQ(t[2].type, 1);
	CHECK_EQ(t[3].addr, 4 * GiB);
	CHECK_EQ(t[3].size, 1 * GiB);
	CHECK_EQ(t[3].type, 1);
	/* no RAM entry may touch the MMIO hole; entries are sorted and disjoint */
	for (unsigned i = 0; i < n; i++) {
		if (t[i].type == 1)
			CHECK(t[i].addr + t[i].size <= MMIO_HOLE_START || t[i].addr >= MMIO_HOLE_END);
		if (i)
			CHECK(t[i - 1].addr + t[i - 1].size <= t[i].addr);
	}
	/* RAM totals the guest's memory minus the 384 KiB hole under 1 MiB */
	uint64_t ram = 0;
	for (unsigned i = 0; i < n; i++)
		if (t[i].type == 1)
			ram += t[i].size;
	CHECK_EQ(ram, m.size - (0x100000 - 0x9fc00));

	/* 8 GiB */
	m = (struct guest_mem){ .size = 8 * GiB, .low_size = MMIO_HOLE_START };
	n = e820_build(t, 8, &m);
	CHECK_EQ(n, 4);
	CHECK_EQ(t[3].addr, 4 * GiB);
	CHECK_EQ(t[3].size, 8 * GiB - MMIO_HOLE_START);
	/* exactly up to the hole: no high entry */
	m = (struct guest_mem){ .size = MMIO_HOLE_START, .low_size = MMIO_HOLE_START };
	n = e820_build(t, 8, &m);
	CHECK_EQ(n, 3);
	CHECK_EQ(t[2].addr + t[2].size, MMIO_HOLE_START);
	/* 64 MiB */
	m = (struct guest_mem){ .size = 64 * MiB, .low_size = 64 * MiB };
	memset(t, 0xee, sizeof(t));
	n = e820_build(t, 8, &m);
	CHECK_EQ(n, 3);
	CHECK_EQ(t[2].addr, 0x100000);
	CHECK_EQ(t[2].size, 63 * MiB);
	CHECK_EQ(t[3].addr, 0xeeeeeeeeeeeeeeeeull); /* untouched past the count */
	/* the table size is respected */
	m = (struct guest_mem){ .size = 4 * GiB, .low_size = MMIO_HOLE_START };
	memset(t, 0xee, sizeof(t));
	n = e820_build(t, 2, &m);
	CHECK_EQ(n, 2);
	CHECK_EQ(t[2].addr, 0xeeeeeeeeeeeeeeeeull);
}

struct fake_vm {
	uint8_t *buf;
	struct guest_mem m;
};

static void fake_init(struct fake_vm *v, uint64_t size)
{
	v->buf = aligned_alloc(PAGE_SIZE, size);
	CHECK(v->buf != NULL);
	memset(v->buf, 0, size);
	CHECK_EQ(gmem_init_buffer(&v->m, v->buf, size), 0);
}

static void fake_free(struct fake_vm *v)
{
	gmem_free(&v->m); /* does not free a buffer it did not map */
	free(v->buf);
}

static bool test_bit(const unsigned long *b, uint64_t i) { return (b[i / (8 * sizeof(long))] >> (i % (8 * sizeof(long)))) & 1; }

static bool page_is_zero(const uint8_t *p)
{
	static const uint8_t zero[PAGE_SIZE];
	return memcmp(p, zero, PAGE_SIZE) == 0;
}

static void test_load(void)
{
	struct img_spec s = good_spec();
	s.loadflags = LOADED_HIGH | KEEP_SEGMENTS;
	size_t len;
	uint8_t *img = make_image(&s, &len);
	size_t rd_len = 1 * MiB + 123;
	uint8_t *rd = malloc(rd_len);
	CHECK(rd != NULL);
	for (size_t i = 0; i < rd_len; i++)
		rd[i] = (uint8_t)(i * 13 + 5);
	const char *cmdline = "console=ttyS0 root=/dev/vda rw";

	struct fake_vm v;
	fake_init(&v, 64 * MiB);
	struct boot_entry e;
	memset(&e, 0xaa, sizeof(e));
	char err[256] = "";
	CHECK_EQ(boot_load_linux(&v.m, img, len, rd, rd_len, cmdline, &e, err, sizeof(err)), 0);

	/* entry state */
	CHECK_EQ(e.rip, 0x100200);
	CHECK_EQ(e.rsi, BOOT_PARAMS_ADDR);
	CHECK_EQ(e.cr3, BOOT_PML4_ADDR);
	CHECK_EQ(e.initrd_size, rd_len);

	/* the protected-mode kernel at 1 MiB */
	CHECK(memcmp(v.buf + KERNEL_LOAD_ADDR, img + 5 * 512, s.pm_size) == 0);

	/* boot_params: the image's setup header, then the loader's fields */
	const struct boot_params *bp = (const void *)(v.buf + BOOT_PARAMS_ADDR);
	const struct setup_header *h = &bp->hdr;
	CHECK_EQ(h->boot_flag, 0xAA55);
	CHECK_EQ(h->header, 0x53726448);
	CHECK_EQ(h->version, 0x020f);
	CHECK_EQ(h->setup_sects, 4);
	CHECK_EQ(h->syssize, (s.pm_size + 15) / 16);
	CHECK_EQ(h->kernel_alignment, 0x200000);
	CHECK_EQ(h->relocatable_kernel, 1);
	CHECK_EQ(h->min_alignment, 21);
	CHECK_EQ(h->xloadflags, XLF_KERNEL_64 | XLF_CAN_BE_LOADED_ABOVE_4G);
	CHECK_EQ(h->cmdline_size, 2047);
	CHECK_EQ(h->pref_address, 0x1000000);
	CHECK_EQ(h->init_size, 4 * MiB);
	CHECK_EQ(h->initrd_addr_max, 0x7fffffff);
	CHECK_EQ(h->type_of_loader, 0xff);
	CHECK(h->loadflags & LOADED_HIGH);
	CHECK(h->loadflags & CAN_USE_HEAP);
	CHECK(!(h->loadflags & KEEP_SEGMENTS));
	CHECK_EQ(h->code32_start, KERNEL_LOAD_ADDR);
	/* the rest of the zero page outside the header is clean */
	CHECK_EQ(bp->ext_cmd_line_ptr, 0);
	for (size_t i = 0; i < offsetof(struct boot_params, e820_entries); i++)
		CHECK_EQ(((const uint8_t *)bp)[i], 0);

	/* command line */
	CHECK_EQ(h->cmd_line_ptr, BOOT_CMDLINE_ADDR);
	CHECK(strcmp((const char *)v.buf + h->cmd_line_ptr, cmdline) == 0);

	/* initrd: present, page-aligned, above the kernel's working area, below the limits */
	uint64_t ra = h->ramdisk_image | (uint64_t)bp->ext_ramdisk_image << 32;
	CHECK_EQ(ra, e.initrd_addr);
	CHECK_EQ(h->ramdisk_size, rd_len);
	CHECK_EQ(bp->ext_ramdisk_size, 0);
	CHECK_EQ(ra % PAGE_SIZE, 0);
	CHECK(ra >= KERNEL_LOAD_ADDR + s.init_size);
	CHECK(ra + rd_len <= 64 * MiB);
	CHECK(ra + rd_len <= (uint64_t)s.initrd_addr_max + 1);
	CHECK(memcmp(v.buf + ra, rd, rd_len) == 0);
	/* "as high as possible": no further page fits */
	CHECK(ra + PAGE_SIZE + rd_len > 64 * MiB);

	/* e820 inside boot_params */
	CHECK_EQ(bp->e820_entries, 3);
	CHECK_EQ(bp->e820_table[0].addr, 0);
	CHECK_EQ(bp->e820_table[0].size, 0x9fc00);
	CHECK_EQ(bp->e820_table[0].type, 1);
	CHECK_EQ(bp->e820_table[1].type, 2);
	CHECK_EQ(bp->e820_table[1].addr + bp->e820_table[1].size, 0x100000);
	CHECK_EQ(bp->e820_table[2].addr, 0x100000);
	CHECK_EQ(bp->e820_table[2].size, 63 * MiB);
	CHECK_EQ(bp->e820_table[2].type, 1);

	/* identity page tables: PML4[0] -> PDPT, PDPT[0..3] -> 4 PDs, 2 MiB pages 1:1 over 4 GiB */
	const uint64_t *pml4 = (const void *)(v.buf + BOOT_PML4_ADDR);
	const uint64_t *pdpt = (const void *)(v.buf + BOOT_PDPT_ADDR);
	CHECK_EQ(pml4[0] & ~0xfffull, BOOT_PDPT_ADDR);
	CHECK_EQ(pml4[0] & 3, 3);
	for (unsigned i = 1; i < 512; i++)
		CHECK_EQ(pml4[i], 0);
	for (unsigned i = 0; i < 4; i++) {
		CHECK_EQ(pdpt[i] & ~0xfffull, BOOT_PD_ADDR + i * PAGE_SIZE);
		CHECK_EQ(pdpt[i] & 3, 3);
		CHECK(!(pdpt[i] & 0x80)); /* points at a PD, not a 1 GiB page */
	}
	for (unsigned i = 4; i < 512; i++)
		CHECK_EQ(pdpt[i], 0);
	for (unsigned j = 0; j < 4; j++) {
		const uint64_t *pd = (const void *)(v.buf + (pdpt[j] & ~0xfffull));
		for (uint64_t i = 0; i < 512; i++) {
			uint64_t va = (uint64_t)j * GiB + (i << 21);
			CHECK_EQ(pd[i] & ~0x1fffffull, va); /* identity */
			CHECK_EQ(pd[i] & 0x83, 0x83);       /* present, writable, PS */
		}
	}
	/* GDT: 64-bit code at BOOT_CS, data at BOOT_DS (the TSS at BOOT_TSS: test_gdt_tss below) */
	const uint64_t *gdt = (const void *)(v.buf + BOOT_GDT_ADDR);
	uint64_t cs = gdt[BOOT_CS / 8], ds = gdt[BOOT_DS / 8];
	CHECK((cs >> 47) & 1);         /* present */
	CHECK((cs >> 53) & 1);         /* L: 64-bit */
	CHECK(!((cs >> 54) & 1));      /* D must be 0 with L */
	CHECK_EQ((cs >> 43) & 1, 1);   /* code */
	CHECK((ds >> 47) & 1);
	CHECK_EQ((ds >> 43) & 1, 0);   /* data */
	CHECK((ds >> 41) & 1);         /* writable */

	/* dirty bitmap: every page that now holds data was marked; untouched pages were not */
	unsigned long *bits = calloc(gmem_bitmap_words(v.m.npages), sizeof(unsigned long));
	CHECK(bits != NULL);
	gmem_dirty_harvest(&v.m, bits);
	for (uint64_t pg = 0; pg < v.m.npages; pg++)
		if (!page_is_zero(v.buf + pg * PAGE_SIZE)) {
			if (!test_bit(bits, pg))
				fprintf(stderr, "page %#llx written but not dirty\n", (unsigned long long)pg);
			CHECK(test_bit(bits, pg));
		}
	CHECK(test_bit(bits, BOOT_PARAMS_ADDR >> PAGE_SHIFT));
	CHECK(test_bit(bits, BOOT_PML4_ADDR >> PAGE_SHIFT));
	CHECK(test_bit(bits, BOOT_CMDLINE_ADDR >> PAGE_SHIFT));
	CHECK(test_bit(bits, (ra + rd_len - 1) >> PAGE_SHIFT));
	CHECK(!test_bit(bits, 0x10));
	CHECK(!test_bit(bits, (BOOT_CMDLINE_ADDR >> PAGE_SHIFT) + 1));
	CHECK(!test_bit(bits, ((KERNEL_LOAD_ADDR + s.init_size) >> PAGE_SHIFT) + 1));
	CHECK(!test_bit(bits, (ra >> PAGE_SHIFT) - 1));
	/* harvest moved the bits: a second harvest is empty */
	memset(bits, 0, gmem_bitmap_words(v.m.npages) * sizeof(unsigned long));
	gmem_dirty_harvest(&v.m, bits);
	for (size_t i = 0; i < gmem_bitmap_words(v.m.npages); i++)
		CHECK_EQ(bits[i], 0);
	free(bits);
	fake_free(&v);

	/* no initrd: ramdisk fields are zero */
	fake_init(&v, 64 * MiB);
	CHECK_EQ(boot_load_linux(&v.m, img, len, NULL, 0, "", &e, err, sizeof(err)), 0);
	bp = (const void *)(v.buf + BOOT_PARAMS_ADDR);
	CHECK_EQ(bp->hdr.ramdisk_image, 0);
	CHECK_EQ(bp->hdr.ramdisk_size, 0);
	CHECK_EQ(e.initrd_size, 0);
	CHECK_EQ(v.buf[BOOT_CMDLINE_ADDR], 0);
	fake_free(&v);
	free(rd);
	free(img);
}

static void test_load_initrd_addr_max(void)
{
	/* the kernel caps the initrd lower than the end of RAM */
	struct img_spec s = good_spec();
	s.initrd_addr_max = 48 * MiB - 1;
	size_t len;
	uint8_t *img = make_image(&s, &len);
	static uint8_t rd[3 * 4096 + 1] = { 9, 8, 7 };
	struct fake_vm v;
	fake_init(&v, 64 * MiB);
	struct boot_entry e;
	char err[256] = "";
	CHECK_EQ(boot_load_linux(&v.m, img, len, rd, sizeof(rd), "x", &e, err, sizeof(err)), 0);
	CHECK(e.initrd_addr + sizeof(rd) <= 48 * MiB);
	CHECK(e.initrd_addr + sizeof(rd) + PAGE_SIZE > 48 * MiB);
	CHECK_EQ(e.initrd_addr % PAGE_SIZE, 0);
	CHECK(memcmp(v.buf + e.initrd_addr, rd, sizeof(rd)) == 0);
	fake_free(&v);
	free(img);
}

static void test_load_errors(void)
{
	struct img_spec s = good_spec();
	s.cmdline_size = 255;
	size_t len;
	uint8_t *img = make_image(&s, &len);
	struct fake_vm v;
	struct boot_entry e;
	char err[256];
	char cmd[300];

	/* command line: 255 bytes fit, 256 do not */
	fake_init(&v, 64 * MiB);
	memset(cmd, 'a', 255);
	cmd[255] = '\0';
	err[0] = '\0';
	CHECK_EQ(boot_load_linux(&v.m, img, len, NULL, 0, cmd, &e, err, sizeof(err)), 0);
	CHECK_EQ(strlen((const char *)v.buf + BOOT_CMDLINE_ADDR), 255);
	cmd[255] = 'b';
	cmd[256] = '\0';
	CHECK_EQ(boot_load_linux(&v.m, img, len, NULL, 0, cmd, &e, err, sizeof(err)), -E2BIG);
	CHECK(strstr(err, "command line") != NULL);
	CHECK(strstr(err, "256") != NULL);
	fake_free(&v);

	/* an initrd that does not fit above the kernel */
	fake_init(&v, 64 * MiB);
	size_t big = 60 * MiB;
	uint8_t *rd = calloc(1, big);
	CHECK(rd != NULL);
	err[0] = '\0';
	CHECK_EQ(boot_load_linux(&v.m, img, len, rd, big, "", &e, err, sizeof(err)), -ENOSPC);
	CHECK(strstr(err, "initrd") != NULL);
	/* nor one bigger than all of memory */
	uint8_t *huge = calloc(1, 65 * MiB);
	CHECK(huge != NULL);
	err[0] = '\0';
	CHECK_EQ(boot_load_linux(&v.m, img, len, huge, 65 * MiB, "", &e, err, sizeof(err)), -ENOSPC);
	CHECK(strstr(err, "initrd") != NULL);
	free(huge);
	/* the largest one that does fit: from the page above the kernel's init_size to the top */
	size_t fit = 64 * MiB - (KERNEL_LOAD_ADDR + s.init_size);
	CHECK_EQ(boot_load_linux(&v.m, img, len, rd, fit, "", &e, err, sizeof(err)), 0);
	CHECK_EQ(e.initrd_addr, KERNEL_LOAD_ADDR + s.init_size);
	CHECK_EQ(boot_load_linux(&v.m, img, len, rd, fit + 1, "", &e, err, sizeof(err)), -ENOSPC);
	free(rd);
	fake_free(&v);
	/* initrd_addr_max below the kernel's end leaves no room at all */
	{
		struct img_spec s2 = good_spec();
		s2.initrd_addr_max = 4 * MiB;
		size_t len2;
		uint8_t *img2 = make_image(&s2, &len2);
		static const uint8_t small[16];
		fake_init(&v, 64 * MiB);
		err[0] = '\0';
		CHECK_EQ(boot_load_linux(&v.m, img2, len2, small, sizeof(small), "", &e, err, sizeof(err)), -ENOSPC);
		CHECK(strstr(err, "initrd") != NULL);
		fake_free(&v);
		free(img2);
	}

	/* memory too small for the kernel's init_size: 22 MiB is the minimum for this image */
	struct bzimage_info bi;
	CHECK_EQ(bzimage_parse(img, len, &bi, err, sizeof(err)), 0);
	CHECK_EQ(boot_min_mem(&bi), 22 * MiB);
	fake_init(&v, 20 * MiB);
	err[0] = '\0';
	CHECK_EQ(boot_load_linux(&v.m, img, len, NULL, 0, "", &e, err, sizeof(err)), -ENOSPC);
	CHECK(strstr(err, "memory") != NULL);
	fake_free(&v);
	fake_init(&v, 22 * MiB);
	CHECK_EQ(boot_load_linux(&v.m, img, len, NULL, 0, "", &e, err, sizeof(err)), 0);
	fake_free(&v);

	/* a bad image is refused before memory is touched */
	img[0x1fe] = 0;
	fake_init(&v, 64 * MiB);
	err[0] = '\0';
	CHECK_EQ(boot_load_linux(&v.m, img, len, NULL, 0, "", &e, err, sizeof(err)), -EINVAL);
	CHECK(strstr(err, "bzImage") != NULL);
	unsigned long *bits = calloc(gmem_bitmap_words(v.m.npages), sizeof(unsigned long));
	CHECK(bits != NULL);
	gmem_dirty_harvest(&v.m, bits);
	for (size_t i = 0; i < gmem_bitmap_words(v.m.npages); i++)
		CHECK_EQ(bits[i], 0);
	free(bits);
	fake_free(&v);
	free(img);
}

/* Known bug checks: kept last so every other check above runs first. */
static void test_min_mem_message(void)
{
	/* The "too small" error must state a minimum that actually suffices and is the real minimum:
	 * boot_min_mem() is 22 MiB here and 22 MiB boots (checked above), so the message must say 22. */
	struct img_spec s = good_spec();
	size_t len;
	uint8_t *img = make_image(&s, &len);
	struct fake_vm v;
	struct boot_entry e;
	char err[256] = "";
	fake_init(&v, 20 * MiB);
	CHECK_EQ(boot_load_linux(&v.m, img, len, NULL, 0, "", &e, err, sizeof(err)), -ENOSPC);
	if (!strstr(err, "at least 22 MiB"))
		fprintf(stderr, "error states the wrong minimum: '%s'\n", err);
	fake_free(&v);
	free(img);
	CHECK(strstr(err, "at least 22 MiB") != NULL);
}

static void test_gdt_tss(void)
{
	/* vcpu.c loads GDTR = BOOT_GDT_ADDR/limit 47 (six descriptors, TR = BOOT_TSS), so the IDT must
	 * not sit inside those 48 bytes, and the TSS descriptor must still be there after loading. */
	CHECK(BOOT_IDT_ADDR >= BOOT_GDT_ADDR + 6 * 8 || BOOT_IDT_ADDR + 8 <= BOOT_GDT_ADDR);
	struct img_spec s = good_spec();
	size_t len;
	uint8_t *img = make_image(&s, &len);
	struct fake_vm v;
	struct boot_entry e;
	char err[256] = "";
	fake_init(&v, 64 * MiB);
	CHECK_EQ(boot_load_linux(&v.m, img, len, NULL, 0, "", &e, err, sizeof(err)), 0);
	uint64_t tss;
	memcpy(&tss, v.buf + BOOT_GDT_ADDR + BOOT_TSS, sizeof(tss));
	fake_free(&v);
	free(img);
	CHECK((tss >> 47) & 1);           /* present */
	CHECK_EQ((tss >> 40) & 0xf, 0xb); /* busy 64-bit TSS */
	CHECK_EQ(tss & 0xffff, 0x67);     /* limit */
}

int main(void)
{
	test_parse_good();
	test_parse_reject();
	test_parse_real_kernel();
	test_e820();
	test_load();
	test_load_initrd_addr_max();
	test_load_errors();
	test_gdt_tss();
	test_min_mem_message();
	TEST_DONE("test_boot");
}

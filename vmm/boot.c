/* boot.c - loads a bzImage for the 64-bit boot protocol: header checks, boot_params, e820, page tables. */
#include "boot.h"
#include "util.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

#define HDR_OFF 0x1f1u
#define E820_RAM 1
#define E820_RESERVED 2

static uint16_t rd16(const uint8_t *p) { return (uint16_t)(p[0] | p[1] << 8); }
static uint32_t rd32(const uint8_t *p) { return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24; }

int bzimage_parse(const uint8_t *img, size_t len, struct bzimage_info *bi, char *err, size_t errlen)
{
	memset(bi, 0, sizeof(*bi));
	if (len < 0x270 || rd16(img + 0x1fe) != 0xAA55 || memcmp(img + 0x202, "HdrS", 4) != 0) {
		snprintf(err, errlen, "not a bzImage (no Linux boot header)");
		return -EINVAL;
	}
	bi->version = rd16(img + 0x206);
	if (bi->version < BOOT_MIN_PROTOCOL) {
		snprintf(err, errlen, "kernel boot protocol %u.%02u is too old (need 2.06 or newer)",
			 (unsigned)(bi->version >> 8), (unsigned)(bi->version & 0xff));
		return -EINVAL;
	}
	uint8_t setup_sects = img[0x1f1] ? img[0x1f1] : 4;
	bi->setup_size = (setup_sects + 1u) * 512u;
	uint8_t loadflags = img[0x211];
	if (!(loadflags & LOADED_HIGH)) {
		snprintf(err, errlen, "not a bzImage (zImage loaded low is not supported)");
		return -EINVAL;
	}
	bi->xloadflags = bi->version >= 0x020c ? rd16(img + 0x236) : 0;
	if (!(bi->xloadflags & XLF_KERNEL_64)) {
		snprintf(err, errlen, "kernel has no 64-bit entry point (need an x86-64 bzImage, protocol 2.12+)");
		return -EINVAL;
	}
	if (bi->setup_size >= len) {
		snprintf(err, errlen, "bzImage is truncated (setup of %u bytes, file of %zu)", bi->setup_size, len);
		return -EINVAL;
	}
	bi->hdr_end = 0x202u + img[0x201];
	if (bi->hdr_end > bi->setup_size || bi->hdr_end < 0x264) {
		snprintf(err, errlen, "bzImage setup header is malformed");
		return -EINVAL;
	}
	bi->pm = img + bi->setup_size;
	bi->pm_size = len - bi->setup_size;
	uint32_t syssize = rd32(img + 0x1f4);
	if ((uint64_t)syssize * 16 > bi->pm_size + 16) {
		snprintf(err, errlen, "bzImage is truncated (header says %llu bytes of kernel, file has %zu)",
			 (unsigned long long)syssize * 16, bi->pm_size);
		return -EINVAL;
	}
	bi->initrd_addr_max = rd32(img + 0x22c);
	bi->cmdline_size = rd32(img + 0x238);
	bi->init_size = bi->version >= 0x020a ? rd32(img + 0x260) : 0;
	if (bi->init_size < bi->pm_size)
		bi->init_size = (uint32_t)MIN((uint64_t)bi->pm_size * 4, 0xffffffffull);
	return 0;
}

uint64_t boot_min_mem(const struct bzimage_info *bi)
{
	/* kernel image + its decompression room, plus slack for the early page tables and a little RAM
	 * for the kernel to run in at all */
	return ALIGN_UP(KERNEL_LOAD_ADDR + bi->init_size, 2 * 1024 * 1024) + 16 * 1024 * 1024;
}

unsigned e820_build(struct boot_e820_entry *tbl, unsigned max, const struct guest_mem *m)
{
	unsigned n = 0;
#define ADD(a, s, t)                                                                               \
	do {                                                                                       \
		if (n < max && (s) > 0)                                                            \
			tbl[n++] = (struct boot_e820_entry){ .addr = (a), .size = (s), .type = (t) }; \
	} while (0)
	ADD(0, EBDA_START, E820_RAM);
	ADD(EBDA_START, KERNEL_LOAD_ADDR - EBDA_START, E820_RESERVED);
	if (m->low_size > KERNEL_LOAD_ADDR)
		ADD(KERNEL_LOAD_ADDR, m->low_size - KERNEL_LOAD_ADDR, E820_RAM);
	if (m->size > m->low_size)
		ADD(HIGH_RAM_START, m->size - m->low_size, E820_RAM);
#undef ADD
	return n;
}

static int setup_gdt_and_paging(struct guest_mem *m)
{
	/* GDT: null, null, code64 (BOOT_CS), data (BOOT_DS), TSS (BOOT_TSS, 16 bytes in long mode) */
	uint64_t gdt[6] = { 0, 0, 0x00af9b000000ffffull, 0x00cf93000000ffffull, 0x00008b0000000067ull, 0 };
	if (gmem_write(m, BOOT_GDT_ADDR, gdt, sizeof(gdt)))
		return -EFAULT;
	uint64_t zero = 0;
	if (gmem_write(m, BOOT_IDT_ADDR, &zero, sizeof(zero)))
		return -EFAULT;

	/* Identity map 0-4 GiB with 2 MiB pages: the 64-bit entry needs the kernel, boot_params, the
	 * command line and the initrd mapped; the kernel builds its own tables right away. */
	uint64_t *pml4 = gpa_ptr(m, BOOT_PML4_ADDR, PAGE_SIZE);
	uint64_t *pdpt = gpa_ptr(m, BOOT_PDPT_ADDR, PAGE_SIZE);
	uint64_t *pd = gpa_ptr(m, BOOT_PD_ADDR, 4 * PAGE_SIZE);
	if (!pml4 || !pdpt || !pd)
		return -EFAULT;
	memset(pml4, 0, PAGE_SIZE);
	memset(pdpt, 0, PAGE_SIZE);
	pml4[0] = BOOT_PDPT_ADDR | 0x3; /* present, writable */
	for (unsigned i = 0; i < 4; i++)
		pdpt[i] = (BOOT_PD_ADDR + i * PAGE_SIZE) | 0x3;
	for (uint64_t i = 0; i < 2048; i++)
		pd[i] = (i << 21) | 0x83; /* present, writable, 2 MiB page */
	gmem_mark_dirty(m, BOOT_PML4_ADDR, 6 * PAGE_SIZE);
	return 0;
}

int boot_load_linux(struct guest_mem *m, const uint8_t *img, size_t len, const uint8_t *initrd,
		    size_t initrd_len, const char *cmdline, struct boot_entry *entry, char *err, size_t errlen)
{
	struct bzimage_info bi;
	int r = bzimage_parse(img, len, &bi, err, errlen);
	if (r)
		return r;
	uint64_t kernel_end = KERNEL_LOAD_ADDR + MAX((uint64_t)bi.init_size, (uint64_t)bi.pm_size);
	if (m->low_size < boot_min_mem(&bi)) {
		snprintf(err, errlen, "memory size %llu MiB is too small for this kernel (needs at least %llu MiB)",
			 (unsigned long long)(m->size >> 20), (unsigned long long)(boot_min_mem(&bi) >> 20));
		return -ENOSPC;
	}
	size_t clen = strlen(cmdline);
	uint32_t cmax = MIN(bi.cmdline_size, BOOT_CMDLINE_MAX - 1);
	if (clen > cmax) {
		snprintf(err, errlen, "kernel command line is %zu bytes, this kernel accepts at most %u", clen, cmax);
		return -E2BIG;
	}

	/* initrd: as high as the header allows, below the PCI hole, above the kernel's working area. */
	uint64_t initrd_addr = 0;
	if (initrd_len) {
		/* below the hole even when the kernel could take it above 4 GiB: simpler, and plenty */
		uint64_t limit = MIN(m->low_size, (uint64_t)bi.initrd_addr_max + 1);
		if (initrd_len > limit || ALIGN_DOWN(limit - initrd_len, PAGE_SIZE) < ALIGN_UP(kernel_end, PAGE_SIZE)) {
			snprintf(err, errlen,
				 "initrd of %zu MiB does not fit in guest memory (%llu MiB usable above the kernel)",
				 initrd_len >> 20,
				 (unsigned long long)(limit > kernel_end ? (limit - kernel_end) >> 20 : 0));
			return -ENOSPC;
		}
		initrd_addr = ALIGN_DOWN(limit - initrd_len, PAGE_SIZE);
		if (gmem_write(m, initrd_addr, initrd, initrd_len))
			return -EFAULT;
	}

	if (gmem_write(m, KERNEL_LOAD_ADDR, bi.pm, bi.pm_size) || gmem_write(m, BOOT_CMDLINE_ADDR, cmdline, clen + 1)) {
		snprintf(err, errlen, "kernel does not fit in guest memory");
		return -ENOSPC;
	}

	struct boot_params *bp = gpa_ptr(m, BOOT_PARAMS_ADDR, sizeof(*bp));
	if (!bp)
		return -EFAULT;
	memset(bp, 0, sizeof(*bp));
	/* the setup header is copied verbatim, then the fields a boot loader owns are filled in */
	memcpy((uint8_t *)bp + HDR_OFF, img + HDR_OFF, MIN(bi.hdr_end, sizeof(*bp)) - HDR_OFF);
	bp->hdr.type_of_loader = 0xff;
	bp->hdr.loadflags |= CAN_USE_HEAP;
	bp->hdr.loadflags &= (uint8_t)~KEEP_SEGMENTS;
	bp->hdr.heap_end_ptr = 0xfe00;
	bp->hdr.vid_mode = 0xffff;
	bp->hdr.cmd_line_ptr = (uint32_t)BOOT_CMDLINE_ADDR;
	bp->ext_cmd_line_ptr = 0;
	bp->hdr.ramdisk_image = (uint32_t)initrd_addr;
	bp->hdr.ramdisk_size = (uint32_t)initrd_len;
	bp->ext_ramdisk_image = (uint32_t)(initrd_addr >> 32);
	bp->ext_ramdisk_size = (uint32_t)((uint64_t)initrd_len >> 32);
	bp->hdr.code32_start = (uint32_t)KERNEL_LOAD_ADDR;
	bp->e820_entries = (uint8_t)e820_build(bp->e820_table, E820_MAX_ENTRIES_ZEROPAGE, m);
	gmem_mark_dirty(m, BOOT_PARAMS_ADDR, sizeof(*bp));

	r = setup_gdt_and_paging(m);
	if (r) {
		snprintf(err, errlen, "cannot write boot page tables");
		return r;
	}
	entry->rip = KERNEL_LOAD_ADDR + 0x200; /* startup_64 of the decompressor */
	entry->rsi = BOOT_PARAMS_ADDR;
	entry->cr3 = BOOT_PML4_ADDR;
	entry->initrd_addr = initrd_addr;
	entry->initrd_size = initrd_len;
	return 0;
}

/* boot.h - Linux x86 boot protocol: bzImage parsing, boot_params, e820 and the 64-bit entry layout. */
#ifndef FTVMM_BOOT_H
#define FTVMM_BOOT_H

#include <asm/bootparam.h>
#include <stddef.h>
#include <stdint.h>

#include "guest_mem.h"

/* Where the VMM puts things in low guest memory (all below 1 MiB, away from the real-mode
 * trampoline Linux places under 640K at the highest free spot). */
#define BOOT_GDT_ADDR 0x500ull
#define BOOT_IDT_ADDR 0x530ull /* just past the 6-entry GDT */
#define BOOT_PARAMS_ADDR 0x7000ull
#define BOOT_PML4_ADDR 0x9000ull
#define BOOT_PDPT_ADDR 0xA000ull
#define BOOT_PD_ADDR 0xB000ull /* four pages: identity map of the first 4 GiB with 2 MiB pages */
#define BOOT_CMDLINE_ADDR 0x20000ull
#define BOOT_CMDLINE_MAX 0x10000u
#define EBDA_START 0x9fc00ull
#define BIOS_ROM_START 0xf0000ull /* MP table lives here: Linux scans 0xF0000-0xFFFFF */
#define KERNEL_LOAD_ADDR 0x100000ull
#define BOOT_MIN_PROTOCOL 0x0206

#define BOOT_CS 0x10
#define BOOT_DS 0x18
#define BOOT_TSS 0x20

struct bzimage_info {
	uint16_t version;
	uint32_t setup_size;   /* bytes of real-mode setup, boot sector included */
	const uint8_t *pm;     /* protected-mode kernel inside the image */
	size_t pm_size;
	uint32_t init_size;    /* memory the kernel needs from its load address while decompressing */
	uint32_t initrd_addr_max;
	uint32_t cmdline_size; /* max command line length, without the NUL */
	uint16_t xloadflags;
	size_t hdr_end;        /* end offset of the setup header in the image */
};

/* Validate a bzImage and describe it. On error returns -EINVAL and writes one line to err. */
int bzimage_parse(const uint8_t *img, size_t len, struct bzimage_info *bi, char *err, size_t errlen);

/* Fill tbl with the guest's e820 map for the given RAM layout; returns the number of entries. */
unsigned e820_build(struct boot_e820_entry *tbl, unsigned max, const struct guest_mem *m);

/* Everything the BSP needs to start at the 64-bit entry. */
struct boot_entry {
	uint64_t rip, rsi, cr3;
	uint64_t initrd_addr, initrd_size;
};

/* Load kernel (+ initrd, + cmdline) into guest memory, build boot_params, the GDT and the identity page
 * tables. Returns 0 or -EINVAL/-ENOSPC/-E2BIG with a one-line reason in err. */
int boot_load_linux(struct guest_mem *m, const uint8_t *img, size_t len, const uint8_t *initrd,
		    size_t initrd_len, const char *cmdline, struct boot_entry *entry, char *err, size_t errlen);

/* Smallest guest memory that can hold the kernel while it decompresses (plus boot data). */
uint64_t boot_min_mem(const struct bzimage_info *bi);

#endif

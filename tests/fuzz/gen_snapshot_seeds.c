/* gen_snapshot_seeds.c - writes the seed corpus of fuzz_snapshot: small snapshot files laid out as
 * ft/snapshot.c writes them (header, state fdt with machine, vCPU, VM and device nodes, bitmap,
 * stored pages, checksum), each after fuzz_snapshot's flags byte. No KVM needed. Rebuild:
 *   cc -std=gnu11 -D_GNU_SOURCE -o /tmp/gen tests/fuzz/gen_snapshot_seeds.c ft/hash.c vmm/guest_mem.c \
 *     vmm/util.c -lfdt -pthread   (or link build/libftvmm.a -luring -lfdt -pthread)
 *   /tmp/gen tests/fuzz/corpus-fuzz_snapshot
 */
#include <libfdt.h>
#include <linux/kvm.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../ft/snapshot.h"
#include "../../vmm/guest_mem.h"

#define CK(x)                                                                     \
	do {                                                                      \
		if (x)                                                            \
			abort();                                                  \
	} while (0)

/* A state like state_capture's: machine (mem, vCPUs, a disk, a NIC), one vCPU, vm, devices. */
static size_t make_state(uint8_t *fdt, size_t cap, uint64_t mem)
{
	static const uint8_t mac[6] = { 0x52, 0x54, 0, 0x12, 0x34, 0x56 };
	struct kvm_regs regs = { .rip = 0x100000, .rsp = 0x8000, .rflags = 2 };
	struct kvm_sregs sregs = { .cr0 = 0x80050033, .cr4 = 0x20, .efer = 0x500 };
	sregs.cs.l = 1;
	struct kvm_vcpu_events ev = { 0 };
	struct kvm_msr_entry msrs[2] = { { .index = 0x10, .data = 1234 }, { .index = 0x6e0, .data = 99 } };
	uint8_t xsave[512] = { 0 };
	CK(fdt_create(fdt, (int)cap) || fdt_finish_reservemap(fdt) || fdt_begin_node(fdt, ""));
	CK(fdt_property_u32(fdt, "ftvmm,state-version", 1));
	CK(fdt_begin_node(fdt, "machine") || fdt_property_u64(fdt, "mem-size", mem) || fdt_property_u32(fdt, "ncpus", 1));
	CK(fdt_begin_node(fdt, "disk@0") || fdt_property_string(fdt, "path", "/tmp/disk.img") ||
	   fdt_property_u64(fdt, "size", 1 << 20) || fdt_property_u32(fdt, "readonly", 0) || fdt_end_node(fdt));
	CK(fdt_begin_node(fdt, "nic@0") || fdt_property_string(fdt, "tap", "tap0") || fdt_property_u32(fdt, "has-mac", 1) ||
	   fdt_property(fdt, "mac", mac, 6) || fdt_end_node(fdt));
	CK(fdt_end_node(fdt));
	CK(fdt_begin_node(fdt, "vcpus") || fdt_begin_node(fdt, "vcpu@0") || fdt_property_u32(fdt, "id", 0) ||
	   fdt_property_u32(fdt, "mp-state", 0) || fdt_property_u32(fdt, "tsc-khz", 2000000) ||
	   fdt_property(fdt, "regs", &regs, sizeof(regs)) || fdt_property(fdt, "sregs", &sregs, sizeof(sregs)) ||
	   fdt_property(fdt, "xsave", xsave, sizeof(xsave)) || fdt_property(fdt, "msrs", msrs, sizeof(msrs)) ||
	   fdt_property(fdt, "events", &ev, sizeof(ev)) || fdt_end_node(fdt) || fdt_end_node(fdt));
	struct kvm_clock_data clk = { .clock = 123456789 };
	CK(fdt_begin_node(fdt, "vm") || fdt_property(fdt, "clock", &clk, sizeof(clk)) || fdt_end_node(fdt));
	CK(fdt_begin_node(fdt, "devices") || fdt_begin_node(fdt, "serial") || fdt_property_u32(fdt, "ier", 5) ||
	   fdt_property_string(fdt, "name", "ttyS0") || fdt_end_node(fdt) || fdt_end_node(fdt));
	CK(fdt_end_node(fdt) || fdt_finish(fdt));
	return fdt_totalsize(fdt);
}

/* flags byte + a snapshot of npages where stored(pg) pages hold data; corrupt: a wrong checksum */
static void seed(const char *dir, const char *name, uint8_t flags, uint64_t npages, bool (*stored)(uint64_t),
		 bool corrupt)
{
	uint8_t state[8192];
	size_t state_len = make_state(state, sizeof(state), npages * PAGE_SIZE);
	size_t bm_bytes = gmem_bitmap_words(npages) * sizeof(long);
	uint64_t n = 0;
	for (uint64_t pg = 0; pg < npages; pg++)
		n += stored(pg);
	struct snap_header h = { .major = SNAP_MAJOR, .minor = SNAP_MINOR, .state_off = sizeof(h),
				 .state_len = state_len, .mem_size = npages * PAGE_SIZE, .npages_stored = n };
	memcpy(h.magic, SNAP_MAGIC, 8);
	h.bitmap_off = (h.state_off + state_len + 7) & ~7ull;
	h.pages_off = (h.bitmap_off + bm_bytes + SNAP_ALIGN - 1) & ~(uint64_t)(SNAP_ALIGN - 1);
	size_t len = h.pages_off + n * PAGE_SIZE;
	uint8_t *f = calloc(1, len);
	CK(!f);
	memcpy(f + h.state_off, state, state_len);
	unsigned long *bm = (unsigned long *)(f + h.bitmap_off);
	uint8_t *p = f + h.pages_off;
	for (uint64_t pg = 0; pg < npages; pg++)
		if (stored(pg)) {
			bm[pg / 64] |= 1ul << (pg % 64);
			memset(p, (int)(0x40 + pg), PAGE_SIZE);
			p += PAGE_SIZE;
		}
	/* the checksum as snapshot_write computes it */
	struct snap_hash s;
	snap_hash_init(&s, 0x46545653ull);
	snap_hash_update(&s, &h, sizeof(h)); /* checksum still 0 */
	snap_hash_init(&s, snap_hash_final(&s));
	snap_hash_update(&s, f + h.state_off, state_len & ~(size_t)31);
	snap_hash_update(&s, f + h.state_off + (state_len & ~(size_t)31), state_len % 32);
	snap_hash_update(&s, f + h.bitmap_off, bm_bytes);
	snap_hash_update(&s, f + h.pages_off, n * PAGE_SIZE);
	h.checksum = snap_hash_final(&s) ^ (corrupt ? 1 : 0);
	memcpy(f, &h, sizeof(h));

	char path[4096];
	snprintf(path, sizeof(path), "%s/%s", dir, name);
	FILE *o = fopen(path, "wb");
	CK(!o || fwrite(&flags, 1, 1, o) != 1 || fwrite(f, 1, len, o) != len || fclose(o));
	free(f);
}

static bool some(uint64_t pg) { return pg == 1 || pg == 3; }
static bool none(uint64_t pg) { (void)pg; return false; }

int main(int argc, char **argv)
{
	if (argc != 2) {
		fprintf(stderr, "usage: %s DIR\n", argv[0]);
		return 2;
	}
	seed(argv[1], "two-pages-of-8", 0, 8, some, false);
	seed(argv[1], "no-pages-fix-checksum", 1, 4, none, false);
	seed(argv[1], "bad-checksum", 0, 4, none, true);
	seed(argv[1], "130-pages-none-stored", 1, 130, none, false); /* a bitmap of more than one word */
	return 0;
}

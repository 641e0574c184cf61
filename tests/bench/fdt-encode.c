/* fdt-encode.c - what libfdt's sequential-write mode costs for a tree shaped like one FT epoch's state, by option.
 *
 * Usage: gcc -O2 -Wall tests/bench/fdt-encode.c -lfdt -o /tmp/fdt-encode && /tmp/fdt-encode
 * Builds a synthetic tree of the state's shape (2 vCPUs with their 12 properties and real-size blobs: cpuid, xsave,
 * MSRs...; the VM-wide node; 10 device nodes of 12 small properties over 35 names) 200 times per setting and prints
 * the fastest build: property names de-duplicated (libfdt's default: each property's name is searched in the whole
 * strings block, byte by byte) or not (FDT_CREATE_FLAG_NO_NAME_DEDUP), in a 384 KiB buffer (the old first size for 2
 * vCPUs; fdt_create zeroes all of it) or a 40 KiB one (about the tree plus a quarter, as ft/state.c now sizes it).
 * Native CPU time, not the test bed's: it shows which part is which, the FT stats measure the real capture.
 */
#include <libfdt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static double now_us(void)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return (double)t.tv_sec * 1e6 + (double)t.tv_nsec / 1e3;
}

static char blob[8192];

static int put_vcpu(void *b, int id)
{
	static const char *const u32s[] = { "id", "mp-state", "tsc-khz" };
	static const char *const blobs[] = { "cpuid", "regs", "sregs", "xsave", "xcrs", "debugregs", "lapic", "msrs", "events" };
	static const int sizes[] = { 3000, 144, 312, 4096, 392, 128, 1024, 1552, 64 };
	char name[16];
	snprintf(name, sizeof(name), "vcpu@%d", id);
	int r = fdt_begin_node(b, name);
	for (int i = 0; i < 3; i++)
		r |= fdt_property_u32(b, u32s[i], (uint32_t)id);
	for (int i = 0; i < 9; i++)
		r |= fdt_property(b, blobs[i], blob, sizes[i]);
	return r | fdt_end_node(b);
}

static int put_devices(void *b)
{
	static const char *const names[] = {
		"ier", "lcr", "mcr", "fcr", "scr", "dll", "dlm", "lsr-err", "msr", "thri-pending", "virtio-version",
		"virtio-device-id", "virtio-host-features", "virtio-guest-features", "virtio-status", "virtio-isr",
		"virtio-config-vector", "virtio-config-generation", "virtio-nqueues", "virtio-vq0", "virtio-vq1",
		"blk-version", "blk-capacity", "blk-readonly", "net-version", "net-mac", "vp-state", "pci-config",
		"msix-table", "msix-pba", "rtc-cmos", "rtc-index", "kbd-status", "kbd-mode", "legacy-pic",
	};
	int r = fdt_begin_node(b, "devices");
	for (int d = 0; d < 10; d++) {
		char name[16];
		snprintf(name, sizeof(name), "dev@%d", d);
		r |= fdt_begin_node(b, name);
		for (int i = 0; i < 12; i++)
			r |= fdt_property_u32(b, names[(d * 7 + i) % 35], (uint32_t)i);
		r |= fdt_end_node(b);
	}
	return r | fdt_end_node(b);
}

static int build(void *b, size_t size, int flags)
{
	static const char *const vm[] = { "pit2", "clock", "pic-master", "pic-slave", "ioapic" };
	int r = fdt_create_with_flags(b, (int)size, (uint32_t)flags);
	r |= fdt_finish_reservemap(b);
	r |= fdt_begin_node(b, "");
	r |= fdt_property_u32(b, "ftvmm,state-version", 3);
	r |= fdt_begin_node(b, "machine");
	r |= fdt_property_u64(b, "mem-size", 1);
	r |= fdt_property_u32(b, "ncpus", 2);
	r |= fdt_end_node(b);
	r |= fdt_begin_node(b, "vcpus");
	for (int c = 0; c < 2; c++)
		r |= put_vcpu(b, c);
	r |= fdt_end_node(b);
	r |= fdt_begin_node(b, "vm");
	for (int i = 0; i < 5; i++)
		r |= fdt_property(b, vm[i], blob, 200);
	r |= fdt_end_node(b);
	r |= put_devices(b);
	r |= fdt_end_node(b);
	return r | fdt_finish(b);
}

int main(void)
{
	size_t big = 384u << 10;
	void *b = malloc(big);
	if (!b)
		return 1;
	for (int mode = 0; mode < 4; mode++) {
		int flags = (mode & 1) ? FDT_CREATE_FLAG_NO_NAME_DEDUP : 0;
		size_t size = (mode & 2) ? 40u << 10 : big;
		double best = 1e18;
		int r = 0;
		for (int k = 0; k < 200; k++) {
			double t = now_us();
			r = build(b, size, flags);
			t = now_us() - t;
			best = t < best ? t : best;
		}
		printf("names de-duplicated: %-3s buffer %3zu KiB: %6.1f us (%s, tree %u bytes)\n", flags ? "no" : "yes",
		       size >> 10, best, r ? "FAILED" : "ok", fdt_totalsize(b));
	}
	free(b);
	return 0;
}

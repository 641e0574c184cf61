/* guest_mem.h - guest RAM layout, the one checked accessor (gpa_ptr) and the VMM-side dirty bitmap. */
#ifndef FTVMM_GUEST_MEM_H
#define FTVMM_GUEST_MEM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct iovec;

#define PAGE_SHIFT 12
#define PAGE_SIZE (1ull << PAGE_SHIFT)

/* Guest physical layout: RAM from 0 up to the PCI hole, the rest from 4 GiB up.
 * The hole [MMIO_HOLE_START, 4 GiB) holds PCI BARs, the IOAPIC and the LAPIC. */
#define MMIO_HOLE_START 0xC0000000ull
#define MMIO_HOLE_END 0x100000000ull
#define HIGH_RAM_START MMIO_HOLE_END

struct guest_mem {
	uint8_t *host;     /* one host mapping of all RAM, indexed by RAM offset (not gpa) */
	uint64_t size;     /* bytes of RAM */
	uint64_t low_size; /* bytes of RAM below the hole; RAM offset == gpa there */
	uint64_t npages;   /* size / PAGE_SIZE */
	/* VMM-side dirty bitmap: one bit per RAM page (RAM offset >> PAGE_SHIFT), set by every
	 * write the VMM itself makes into guest memory. KVM's dirty log does not see those. */
	unsigned long *dirty;
	/* one bit per word of dirty, set after a bit of that word: a harvest reads only the words marked
	 * here, so it costs O(RAM / 4096 pages) + O(pages written), not O(RAM / 64 pages) */
	unsigned long *dirty_sum;
	bool owns_mapping; /* mmap'd by gmem_init (false for test buffers) */
};

/* Map `size` bytes of RAM lazily (MAP_NORESERVE: nothing is committed until touched).
 * size must be a multiple of PAGE_SIZE. Returns 0 or -errno. */
int gmem_init(struct guest_mem *m, uint64_t size);
/* Wrap an existing buffer (unit tests, restore into a given mapping). No hole unless size > hole start. */
int gmem_init_buffer(struct guest_mem *m, void *buf, uint64_t size);
void gmem_free(struct guest_mem *m);

/* Translate gpa to a RAM offset; false if gpa is not RAM. */
bool gmem_gpa_to_off(const struct guest_mem *m, uint64_t gpa, uint64_t *off);
/* Host pointer for [gpa, gpa+len), or NULL if any byte lies outside one contiguous RAM region
 * (below or above the hole) or the sum overflows. The ONLY way to turn a guest address into a pointer.
 * A pointer obtained for writing must be followed by gmem_mark_dirty() once written. */
void *gpa_ptr(const struct guest_mem *m, uint64_t gpa, uint64_t len);

/* Copy helpers built on gpa_ptr. gmem_write marks the pages dirty. Return 0 or -EFAULT. */
int gmem_read(const struct guest_mem *m, uint64_t gpa, void *buf, uint64_t len);
int gmem_write(struct guest_mem *m, uint64_t gpa, const void *buf, uint64_t len);

/* Record a VMM write into [gpa, gpa+len) in the dirty bitmap (thread-safe, atomic). Ignores non-RAM. */
void gmem_mark_dirty(struct guest_mem *m, uint64_t gpa, uint64_t len);
/* Same, for a host pointer inside the mapping (what device code holds after gpa_ptr). */
void gmem_mark_dirty_host(struct guest_mem *m, const void *p, uint64_t len);
/* Same, for the first `bytes` bytes of a device-written iovec list (segments from gpa_ptr, in order),
 * e.g. the writable part of a virtqueue chain; bytes past the list's end are ignored. */
void gmem_mark_iov(struct guest_mem *m, const struct iovec *iov, unsigned n, uint64_t bytes);
/* Move the VMM dirty bits into `out` (OR), clearing them. `out` has npages bits. Thread-safe. */
void gmem_dirty_harvest(struct guest_mem *m, unsigned long *out);
/* Same, one call of add(ctx, page) per dirty page (in page order), clearing them. Thread-safe. */
void gmem_dirty_collect(struct guest_mem *m, void (*add)(void *ctx, uint64_t pg), void *ctx);
/* Words in a bitmap of npages bits. */
static inline size_t gmem_bitmap_words(uint64_t npages)
{
	return (size_t)((npages + 8 * sizeof(unsigned long) - 1) / (8 * sizeof(unsigned long)));
}

#endif

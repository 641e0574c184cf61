/* dirty.c - which guest pages were written: KVM's dirty ring, manual-protect or plain bitmaps, and the VMM's own. */
#include "dirty.h"
#include "util.h"
#include "vcpu.h"
#include "vm.h"

#include <errno.h>
#include <linux/kvm.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>

#define BITS_PER_LONG (8 * sizeof(unsigned long))
/* 512 KiB per vCPU. A vCPU that writes more pages than this between two harvests exits to spill its ring
 * (vcpu_dirty_ring_spill): correct, only slower. */
#define RING_ENTRIES 32768u

static const char *const names[] = { "auto", "ring", "clear", "bitmap" };
static enum vm_dirty_track preferred = VM_DIRTY_AUTO;

int vm_dirty_track_parse(const char *s, enum vm_dirty_track *t)
{
	for (unsigned i = 0; i < sizeof(names) / sizeof(names[0]); i++)
		if (!strcmp(s, names[i])) {
			*t = (enum vm_dirty_track)i;
			return 0;
		}
	return -EINVAL;
}

const char *vm_dirty_track_name(enum vm_dirty_track t)
{
	return (unsigned)t < sizeof(names) / sizeof(names[0]) ? names[t] : "?";
}

void vm_dirty_track_prefer(enum vm_dirty_track t)
{
	preferred = t;
}

int dirty_set_init(struct dirty_set *s, uint64_t npages)
{
	memset(s, 0, sizeof(*s));
	s->bm = calloc(gmem_bitmap_words(npages) + 1, sizeof(unsigned long));
	s->pfns = calloc(npages + 1, sizeof(uint64_t)); /* untouched pages of it cost nothing */
	s->npages = npages;
	if (!s->bm || !s->pfns) {
		dirty_set_free(s);
		return -ENOMEM;
	}
	return 0;
}

void dirty_set_free(struct dirty_set *s)
{
	free(s->bm);
	free(s->pfns);
	memset(s, 0, sizeof(*s));
}

void dirty_set_clear(struct dirty_set *s)
{
	for (uint64_t i = 0; i < s->n; i++)
		s->bm[s->pfns[i] / BITS_PER_LONG] = 0; /* a member's whole word: every bit in it is a member */
	s->n = 0;
}

static int enable_cap(int fd, uint32_t cap, uint64_t arg)
{
	struct kvm_enable_cap c = { .cap = cap, .args = { arg } };
	return ioctl(fd, KVM_ENABLE_CAP, &c) < 0 ? -errno : 0;
}

/* The ring (guest memory attached: the spill bitmap covers it), as large as RING_ENTRIES or KVM's limit allows. The acquire/release flavour where KVM has it
 * (the same ring; it only promises the ordering this file relies on, on every architecture). */
static int setup_ring(struct vm *vm)
{
	uint32_t cap = KVM_CAP_DIRTY_LOG_RING_ACQ_REL;
	int max = ioctl(vm->vm_fd, KVM_CHECK_EXTENSION, cap);
	if (max <= 0) {
		cap = KVM_CAP_DIRTY_LOG_RING;
		max = ioctl(vm->vm_fd, KVM_CHECK_EXTENSION, cap);
	}
	if (max <= 0)
		return -EOPNOTSUPP;
	uint64_t bytes = RING_ENTRIES * sizeof(struct kvm_dirty_gfn);
	while (bytes > (uint64_t)max)
		bytes /= 2;
	if (bytes < PAGE_SIZE)
		return -EOPNOTSUPP;
	int r = enable_cap(vm->vm_fd, cap, bytes);
	if (r)
		return r;
	vm->ring_spill = calloc(gmem_bitmap_words(vm->mem.npages) + 1, sizeof(unsigned long));
	if (!vm->ring_spill)
		return -ENOMEM;
	vm->ring_entries = (uint32_t)(bytes / sizeof(struct kvm_dirty_gfn));
	return 0;
}

static int setup_clear(struct vm *vm)
{
	int caps = ioctl(vm->vm_fd, KVM_CHECK_EXTENSION, KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2);
	if (caps <= 0 || !(caps & KVM_DIRTY_LOG_MANUAL_PROTECT_ENABLE))
		return -EOPNOTSUPP;
	/* not INITIALLY_SET: switching logging on then write-protects every page, as the bitmap mode does, so
	 * the first harvest after the initial sync's full copy holds only what was written since */
	return enable_cap(vm->vm_fd, KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2, KVM_DIRTY_LOG_MANUAL_PROTECT_ENABLE);
}

int vm_dirty_setup(struct vm *vm, char *err, size_t errlen)
{
	enum vm_dirty_track want = preferred;
	if (want == VM_DIRTY_AUTO || want == VM_DIRTY_RING) {
		int r = setup_ring(vm);
		if (!r) {
			vm->dirty_track = VM_DIRTY_RING;
			return 0;
		}
		if (want == VM_DIRTY_RING) {
			snprintf(err, errlen, "--dirty-track ring: this KVM has no dirty ring (KVM_CAP_DIRTY_LOG_RING, Linux 5.11+): %s",
				 strerror(-r));
			return r;
		}
	}
	if (want == VM_DIRTY_AUTO || want == VM_DIRTY_CLEAR) {
		int r = setup_clear(vm);
		if (!r) {
			vm->dirty_track = VM_DIRTY_CLEAR;
			return 0;
		}
		if (want == VM_DIRTY_CLEAR) {
			snprintf(err, errlen, "--dirty-track clear: this KVM cannot clear its dirty log by hand "
				 "(KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2, Linux 5.8+): %s", strerror(-r));
			return r;
		}
	}
	vm->dirty_track = VM_DIRTY_BITMAP;
	return 0;
}

int vcpu_dirty_ring_map(struct vcpu *v)
{
	if (!v->vm->ring_entries)
		return 0;
	size_t len = (size_t)v->vm->ring_entries * sizeof(struct kvm_dirty_gfn);
	void *p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED, v->fd, KVM_DIRTY_LOG_PAGE_OFFSET * PAGE_SIZE);
	if (p == MAP_FAILED)
		return -errno;
	v->ring = p;
	v->ring_fetch = 0;
	return 0;
}

void vcpu_dirty_ring_unmap(struct vcpu *v)
{
	if (v->ring)
		munmap(v->ring, (size_t)v->vm->ring_entries * sizeof(struct kvm_dirty_gfn));
	v->ring = NULL;
}

/* A ring entry's (slot, offset) as a RAM page index; false for anything outside our two RAM slots. */
static bool slot_page(const struct guest_mem *m, uint32_t slot, uint64_t off, uint64_t *pg)
{
	uint64_t low = m->low_size >> PAGE_SHIFT;
	if (slot == 0 && off < low) {
		*pg = off;
		return true;
	}
	if (slot == 1 && off < m->npages - low) {
		*pg = low + off;
		return true;
	}
	return false;
}

typedef void (*page_fn)(void *ctx, uint64_t pg);

/* Every entry KVM published in v's ring since the last call, handed to add and back to KVM (flags =
 * RESET, for KVM_RESET_DIRTY_RINGS). Under dirty_lock: the vCPU's own thread or a harvester while it is
 * parked. At most one lap: KVM publishes into an entry only after the reset that follows. */
static void ring_collect(struct vm *vm, struct vcpu *v, page_fn add, void *ctx)
{
	uint32_t mask = vm->ring_entries - 1;
	for (uint32_t i = 0; i < vm->ring_entries; i++) {
		struct kvm_dirty_gfn *e = &v->ring[v->ring_fetch & mask];
		if (!(__atomic_load_n(&e->flags, __ATOMIC_ACQUIRE) & KVM_DIRTY_GFN_F_DIRTY))
			break;
		uint64_t pg;
		if (slot_page(&vm->mem, e->slot, e->offset, &pg))
			add(ctx, pg);
		__atomic_store_n(&e->flags, KVM_DIRTY_GFN_F_RESET, __ATOMIC_RELEASE);
		v->ring_fetch++;
	}
}

static void spill_add(void *ctx, uint64_t pg)
{
	struct vm *vm = ctx;
	vm->ring_spill[pg / BITS_PER_LONG] |= 1ul << (pg % BITS_PER_LONG);
}

static void discard(void *ctx, uint64_t pg)
{
	(void)ctx;
	(void)pg;
}

static int reset_rings(struct vm *vm)
{
	return ioctl(vm->vm_fd, KVM_RESET_DIRTY_RINGS, 0) < 0 ? -errno : 0;
}

int vcpu_dirty_ring_spill(struct vcpu *v)
{
	struct vm *vm = v->vm;
	if (!v->ring)
		return -EINVAL;
	pthread_mutex_lock(&vm->dirty_lock);
	ring_collect(vm, v, spill_add, vm);
	vm->ring_spilled = true;
	int r = reset_rings(vm);
	pthread_mutex_unlock(&vm->dirty_lock);
	return r;
}

void vm_dirty_rings_drain(struct vm *vm)
{
	if (vm->dirty_track != VM_DIRTY_RING)
		return;
	pthread_mutex_lock(&vm->dirty_lock);
	for (unsigned i = 0; i < vm->ncpus; i++)
		if (vm->vcpus[i].ring)
			ring_collect(vm, &vm->vcpus[i], discard, NULL);
	memset(vm->ring_spill, 0, gmem_bitmap_words(vm->mem.npages) * sizeof(unsigned long));
	vm->ring_spilled = false;
	reset_rings(vm);
	pthread_mutex_unlock(&vm->dirty_lock);
}

/* Ring mode: every vCPU's ring, the spill bitmap when a vCPU filled its ring since, then the reset that
 * write-protects those pages again. O(pages written), plus O(RAM / 64) only after a spill. */
static int harvest_rings(struct vm *vm, page_fn add, void *ctx)
{
	pthread_mutex_lock(&vm->dirty_lock);
	for (unsigned i = 0; i < vm->ncpus; i++)
		if (vm->vcpus[i].ring)
			ring_collect(vm, &vm->vcpus[i], add, ctx);
	if (vm->ring_spilled) {
		size_t words = gmem_bitmap_words(vm->mem.npages);
		for (size_t w = 0; w < words; w++) {
			for (unsigned long b = vm->ring_spill[w]; b; b &= b - 1)
				add(ctx, (uint64_t)w * BITS_PER_LONG + (uint64_t)__builtin_ctzl(b));
			vm->ring_spill[w] = 0;
		}
		vm->ring_spilled = false;
	}
	int r = reset_rings(vm);
	pthread_mutex_unlock(&vm->dirty_lock);
	return r;
}

/* Bitmap and clear modes: one slot's log (clear mode: then write-protect just its dirty pages again). */
static int harvest_slot(struct vm *vm, uint32_t slot, uint64_t first_page, uint64_t npages, page_fn add, void *ctx)
{
	size_t words = gmem_bitmap_words(npages);
	unsigned long *bm = calloc(words + 1, sizeof(unsigned long));
	if (!bm)
		return -ENOMEM;
	int r = 0;
	struct kvm_dirty_log log = { .slot = slot, .dirty_bitmap = bm };
	if (ioctl(vm->vm_fd, KVM_GET_DIRTY_LOG, &log) < 0)
		r = -errno;
	if (!r && vm->dirty_track == VM_DIRTY_CLEAR) {
		/* nothing runs in between during a pause; during the initial sync a page written meanwhile is
		 * copied after this anyway */
		struct kvm_clear_dirty_log c = { .slot = slot, .num_pages = (uint32_t)npages, .first_page = 0,
						 .dirty_bitmap = bm };
		if (ioctl(vm->vm_fd, KVM_CLEAR_DIRTY_LOG, &c) < 0)
			r = -errno;
	}
	for (size_t i = 0; !r && i < words; i++)
		for (unsigned long b = bm[i]; b; b &= b - 1)
			add(ctx, first_page + (uint64_t)i * BITS_PER_LONG + (uint64_t)__builtin_ctzl(b));
	free(bm);
	return r;
}

static int harvest_guest(struct vm *vm, page_fn add, void *ctx)
{
	if (vm->dirty_track == VM_DIRTY_RING)
		return harvest_rings(vm, add, ctx);
	uint64_t low = vm->mem.low_size >> PAGE_SHIFT;
	int r = harvest_slot(vm, 0, 0, low, add, ctx);
	if (!r && vm->mem.npages > low)
		r = harvest_slot(vm, 1, low, vm->mem.npages - low, add, ctx);
	return r;
}

static void set_add(void *ctx, uint64_t pg)
{
	dirty_set_add(ctx, pg);
}

int vm_dirty_collect(struct vm *vm, struct dirty_set *s, uint64_t *guest, uint64_t *vmm)
{
	uint64_t n0 = s->n;
	int r = harvest_guest(vm, set_add, s);
	uint64_t n1 = s->n;
	gmem_dirty_collect(&vm->mem, set_add, s); /* taken even when KVM failed: it is cleared as it is read */
	*guest = n1 - n0;
	*vmm = s->n - n1;
	return r;
}

static void bit_add(void *ctx, uint64_t pg)
{
	unsigned long *bm = ctx;
	bm[pg / BITS_PER_LONG] |= 1ul << (pg % BITS_PER_LONG);
}

int vm_dirty_harvest(struct vm *vm, unsigned long *guest, unsigned long *vmm)
{
	size_t bytes = gmem_bitmap_words(vm->mem.npages) * sizeof(long);
	memset(guest, 0, bytes);
	memset(vmm, 0, bytes);
	int r = harvest_guest(vm, bit_add, guest);
	gmem_dirty_harvest(&vm->mem, vmm);
	return r;
}

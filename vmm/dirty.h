/* dirty.h - which guest pages were written: KVM's dirty ring, manual-protect or plain bitmaps, and the VMM's own. */
#ifndef FTVMM_DIRTY_H
#define FTVMM_DIRTY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct vm;
struct vcpu;

/* How KVM reports guest writes (`--dirty-track`). ring: per-vCPU rings of written pages, O(pages written)
 * to harvest (KVM_CAP_DIRTY_LOG_RING, Linux 5.11+); clear: a bitmap per slot, only written pages are
 * write-protected again (KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2, 5.8+); bitmap: KVM_GET_DIRTY_LOG alone, which
 * re-protects the slot under KVM's MMU lock. auto: the first of them this KVM has. */
enum vm_dirty_track { VM_DIRTY_AUTO, VM_DIRTY_RING, VM_DIRTY_CLEAR, VM_DIRTY_BITMAP };
#define VM_DIRTY_TRACK_NAMES "auto, ring, clear or bitmap"

/* 0 and *t, or -EINVAL for a name not in VM_DIRTY_TRACK_NAMES. */
int vm_dirty_track_parse(const char *s, enum vm_dirty_track *t);
const char *vm_dirty_track_name(enum vm_dirty_track t);
/* The mode the next vm_create asks for (one VM per process; the default is auto). */
void vm_dirty_track_prefer(enum vm_dirty_track t);

/* A set of RAM pages: membership bitmap + the members in the order they came, so that filling, walking
 * and emptying it cost O(members), never O(RAM). */
struct dirty_set {
	unsigned long *bm; /* npages bits; all zero when the set is empty */
	uint64_t *pfns;    /* n members (RAM page indexes) */
	uint64_t n, npages;
};
int dirty_set_init(struct dirty_set *s, uint64_t npages);
void dirty_set_free(struct dirty_set *s);
/* Add page pg (< npages; others are ignored): true if it was not a member yet. */
static inline bool dirty_set_add(struct dirty_set *s, uint64_t pg)
{
	const unsigned bits = 8 * sizeof(unsigned long);
	if (pg >= s->npages || (s->bm[pg / bits] & (1ul << (pg % bits))))
		return false;
	s->bm[pg / bits] |= 1ul << (pg % bits);
	s->pfns[s->n++] = pg;
	return true;
}
/* Empty the set (O(members)). */
void dirty_set_clear(struct dirty_set *s);

/* Called by vm_create once guest memory is attached and before any vCPU (KVM's rule for the ring): picks and
 * enables the mode asked for. 0, or -errno with one line in err (a mode asked for by name that this
 * KVM lacks). */
int vm_dirty_setup(struct vm *vm, char *err, size_t errlen);
/* vcpu_create: map the vCPU's ring (ring mode). 0 or -errno. */
int vcpu_dirty_ring_map(struct vcpu *v);
void vcpu_dirty_ring_unmap(struct vcpu *v);
/* KVM_EXIT_DIRTY_RING_FULL, on the vCPU's own thread: move its ring aside (into the VM's spill bitmap,
 * read by the next harvest) and hand the entries back to KVM. 0 or -errno. */
int vcpu_dirty_ring_spill(struct vcpu *v);
/* Logging was just switched on: forget what rings hold from an earlier period. */
void vm_dirty_rings_drain(struct vm *vm);

/* The pages written since the last harvest, added to s: first the guest's (KVM), then the VMM's own
 * (guest_mem's bitmap). *guest and *vmm: how many each added. Both logs are cleared as read. The vCPUs
 * must be paused in ring mode (or the pages they write meanwhile come with the next harvest). 0, or
 * -errno from KVM (the VMM's pages are collected all the same). */
int vm_dirty_collect(struct vm *vm, struct dirty_set *s, uint64_t *guest, uint64_t *vmm);

#endif

/* msix.h - one PCI function's MSI-X: capability, table, PBA, masking, delivery through KVM irqfds. */
#ifndef FTVMM_MSIX_H
#define FTVMM_MSIX_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include "pci.h"

struct vm;

#define MSIX_CAP_LEN 12
#define MSIX_MAX_VECTORS 2048

struct msix_vector {
	int gsi;              /* MSI route, -1 until the vector is first unmasked */
	int efd;              /* irqfd on gsi, -1 if KVM refused one (then KVM_SIGNAL_MSI) */
	uint64_t routed_addr; /* message currently in the route */
	uint32_t routed_data;
	bool route_stale;     /* the route could not be updated: deliver with KVM_SIGNAL_MSI */
};

/* Called for every message delivered (tests, tracing), in addition to the delivery itself. */
typedef void (*msix_observer_fn)(void *opaque, unsigned vector, uint64_t addr, uint32_t data);

struct msix {
	struct vm *vm;
	unsigned nvec;
	unsigned cap;         /* config-space offset of the capability */
	pthread_mutex_t lock; /* everything below */
	uint32_t *table;      /* nvec x { addr_lo, addr_hi, data, ctrl } */
	uint64_t *pba;
	struct msix_vector *vec;
	bool enabled, fmask;
	msix_observer_fn observer;
	void *observer_opaque;
};

static inline uint32_t msix_table_bytes(unsigned nvec)
{
	return nvec * 16u;
}

static inline uint32_t msix_pba_bytes(unsigned nvec)
{
	return (nvec + 63) / 64 * 8u;
}

/* Power-on state: every vector masked, nothing pending, MSI-X disabled. 0 or -errno. */
int msix_init(struct msix *m, struct vm *vm, unsigned nvec);
/* Detach irqfds and free; the GSI routes stay allocated (KVM has no way to give one back to us). */
void msix_destroy(struct msix *m);
/* Append the capability to dev (before pci_bus_add_dev): table and PBA at the given offsets of BAR bir.
 * Returns the capability's config offset or -errno. */
int msix_add_cap(struct msix *m, struct pci_dev *dev, unsigned bir, uint32_t table_off, uint32_t pba_off);

/* BAR accesses, offsets relative to the table / PBA. Only aligned dword and qword accesses do anything,
 * as the PCI spec allows; the rest read zero. The PBA is read-only. */
void msix_table_access(struct msix *m, uint64_t off, uint8_t *data, unsigned len, bool is_write);
void msix_pba_access(struct msix *m, uint64_t off, uint8_t *data, unsigned len, bool is_write);
/* Pick up enable / function mask from dev's config space after a write to it (bus lock held). Fires
 * pending vectors that became deliverable. */
void msix_cfg_update(struct msix *m, const struct pci_dev *dev);

bool msix_enabled(struct msix *m);
/* Raise vector v: delivered now, or its pending bit set while masked; v >= nvec (NO_VECTOR) raises
 * nothing. Returns false, doing nothing, when MSI-X is disabled: the caller uses INTx then. */
bool msix_notify(struct msix *m, unsigned v);

void msix_set_observer(struct msix *m, msix_observer_fn fn, void *opaque);

/* Checkpoint: table and PBA as properties "pci-msix-table" / "pci-msix-pba" of the current node.
 * msix_check_saved validates without changing anything; msix_restore applies (after the function's
 * config space is back, for enable/mask) and re-routes every deliverable vector. */
int msix_save(struct msix *m, void *fdt);
int msix_check_saved(const struct msix *m, const void *fdt, int node);
void msix_restore(struct msix *m, const struct pci_dev *dev, const void *fdt, int node);

#endif

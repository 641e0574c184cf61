/* pvpanic.h - the pvpanic PCI device (1b36:0011): lets a stock guest kernel report its panic to ftvmm. */
#ifndef FTVMM_PVPANIC_H
#define FTVMM_PVPANIC_H

#include "pci.h"

struct vm;

struct pvpanic {
	struct pci_dev pci;
	struct vm *vm;
	uint8_t events; /* what the guest reported, for status/inspect */
	/* called on a reported panic; defaults to ending the VM with VM_EXIT_PANIC */
	void (*on_panic)(void *ctx);
	void *ctx;
};

#define PVPANIC_PANICKED 1
#define PVPANIC_CRASH_LOADED 2

int pvpanic_create(struct pvpanic *p, struct pci_bus *bus, struct vm *vm);

#endif

/* platform.h - assembles the guest's machine: legacy devices, PCI bus, virtio disks and NICs, pvpanic. */
#ifndef FTVMM_PLATFORM_H
#define FTVMM_PLATFORM_H

#include <stddef.h>

#include "../vmm/mptable.h"
#include "../vmm/vm.h"
#include "machine.h"
#include "pci.h"
#include "pvpanic.h"

struct vm;
struct virtio_dev;
struct virtio_pci;

struct platform {
	struct vm *vm;
	void *serial, *i8042, *rtc, *legacy;
	struct pci_bus pci;
	bool pci_ready;
	struct pvpanic pvpanic;
	struct vm_device pci_vmdev; /* checkpoint of the non-virtio PCI functions */
	struct virtio_dev *disks[MACHINE_MAX_DISKS];
	struct virtio_pci *disk_tr[MACHINE_MAX_DISKS];
	unsigned ndisks;
	struct virtio_dev *nics[MACHINE_MAX_NICS];
	struct virtio_pci *nic_tr[MACHINE_MAX_NICS];
	int tap_fds[MACHINE_MAX_NICS];      /* owned by the NIC; kept for FT's released output */
	uint8_t macs[MACHINE_MAX_NICS][6];  /* effective MACs (given or derived) */
	uint64_t disk_sizes[MACHINE_MAX_DISKS];
	unsigned nnics;
	struct mp_pci_irq pci_irqs[32];
	unsigned npci_irqs;
};

/* Create every device of the machine and register it with the VM. 0, or -errno with one line in err. */
int platform_create(struct vm *vm, const struct machine *m, struct platform *p, char *err, size_t errlen);
/* Call after vm_destroy_devices() (the virtio transports unplug from the bus) and before vm_destroy(). */
void platform_destroy(struct platform *p);

#endif

/* pci.h - PCI bus 0: host bridge, configuration mechanism #1, config space, BAR placement and INTx lines. */
#ifndef FTVMM_PCI_H
#define FTVMM_PCI_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include "../vmm/bus.h"

struct vm;
struct pci_bus;
struct pci_dev;

#define PCI_CFG_SIZE 256
#define PCI_NUM_SLOTS 32
#define PCI_NUM_BARS 6
#define PCI_CONF1_PORT 0xcf8 /* address at 0xcf8, data at 0xcfc..0xcff */
#define PCI_CONF1_LEN 8

/* Where the bus places BARs at add time ("firmware" assignment). The guest may move a BAR anywhere above
 * low RAM (and above 1 MiB) up to PCI_BAR_LIMIT: the rest of the hole belongs to the IOAPIC, HPET, LAPIC
 * and KVM's TSS pages. */
#define PCI_MMIO_WINDOW_START 0xc0000000u
#define PCI_MMIO_WINDOW_END 0xd0000000u
#define PCI_BAR_MIN 0x100000u
#define PCI_BAR_LIMIT 0xfec00000u

/* INTx: every device has pin INTA#, wired to IOAPIC input PCI_INTX_GSI_BASE + (slot - 1) % 8. */
#define PCI_INTX_GSI_BASE 16
#define PCI_INTX_GSI_COUNT 8

struct pci_dev_ops {
	/* Before the bus copies cfg[off, off+len) to the guest: refresh bytes that mirror device state. */
	void (*cfg_read)(struct pci_dev *dev, unsigned off, unsigned len);
	/* After a guest write to cfg[off, off+len) was applied through the write masks. */
	void (*cfg_write)(struct pci_dev *dev, unsigned off, unsigned len);
	/* A BAR started (map) or stopped (!map) decoding at addr; called under the bus lock, before the
	 * MMIO region goes away on unmap and after it appears on map (ioeventfds follow the BAR). */
	void (*bar_map)(struct pci_dev *dev, unsigned bar, uint64_t addr, bool map);
};

struct pci_bar {
	uint32_t size;     /* power of two >= 16; 0 = BAR not implemented */
	bus_handler_fn fn; /* called with the offset inside the BAR, bounds already checked */
	void *opaque;
	bool mapped;       /* registered on vm->mmio at addr */
	uint64_t addr;
	struct pci_dev *dev;
};

struct pci_dev {
	struct pci_bus *bus;
	unsigned slot; /* 0 = not on a bus yet */
	const char *name;
	/* Config space and per-byte write masks: bits set in wmask take the guest's value, bits set in
	 * w1cmask are cleared by writing 1; every other bit is read-only. */
	uint8_t cfg[PCI_CFG_SIZE];
	uint8_t wmask[PCI_CFG_SIZE];
	uint8_t w1cmask[PCI_CFG_SIZE];
	uint8_t cap_next; /* where the next capability goes */
	uint8_t cap_last; /* last capability in the chain, 0 = none yet */
	struct pci_bar bars[PCI_NUM_BARS];
	const struct pci_dev_ops *ops;
	void *opaque;
};

struct pci_bus {
	struct vm *vm;
	pthread_mutex_t lock; /* config address latch, every config space, BAR mappings */
	uint32_t cfg_addr;
	struct pci_dev host;  /* 00:00.0 */
	struct pci_dev *devs[PCI_NUM_SLOTS];
	uint32_t mmio_next;
	bool pio_registered;
};

/* (slot, INTA#, gsi) for the MP table's I/O interrupt entries: srcbusirq = slot << 2 | pin. */
struct pci_irq_info {
	uint8_t slot;
	uint8_t pin; /* 0 = INTA# */
	uint8_t gsi;
};

/* Create bus 0 with its host bridge and claim ports 0xcf8-0xcff on vm->pio. 0 or -errno. */
int pci_bus_init(struct pci_bus *bus, struct vm *vm);
/* Unmap every BAR and release the ports. Devices stay owned by whoever added them. */
void pci_bus_destroy(struct pci_bus *bus);

/* Prepare a type-0 header: identity, class (24-bit base/sub/prog-if), INTA#. */
void pci_dev_init(struct pci_dev *dev, const char *name, uint16_t vendor, uint16_t device, uint32_t class_code,
		  uint8_t revision, uint16_t subsys_vendor, uint16_t subsys_id);
/* Declare a 32-bit non-prefetchable memory BAR; size a power of two >= 16. 0 or -EINVAL. */
int pci_dev_add_bar(struct pci_dev *dev, unsigned bar, uint32_t size, bus_handler_fn fn, void *opaque);
/* Append a capability (cap[0] = ID, cap[1] is overwritten with the chain link); wmask may be NULL
 * (read-only). Returns its config offset, or -ENOSPC. */
int pci_dev_add_cap(struct pci_dev *dev, const void *cap, unsigned len, const void *wmask);
/* Put dev in the next free slot (1..31), assign its BARs in the window, enable memory decode and map
 * them. 0, -ENOSPC (no slot or window space) or -errno from the MMIO bus. */
int pci_bus_add_dev(struct pci_bus *bus, struct pci_dev *dev);
/* Unmap dev's BARs and free its slot. */
void pci_bus_remove_dev(struct pci_bus *bus, struct pci_dev *dev);

/* The IOAPIC input of dev's INTA#. */
unsigned pci_dev_irq_gsi(const struct pci_dev *dev);
/* Fill out[] with up to max (slot, pin, gsi) entries, one per device with an interrupt pin (a device
 * that clears cfg[PCI_INTERRUPT_PIN] before pci_bus_add_dev has none; host bridge excluded). Returns how
 * many such devices there are, which may exceed max. */
unsigned pci_bus_irq_list(struct pci_bus *bus, struct pci_irq_info *out, unsigned max);

/* Configuration access as the guest sees it (slot/function on bus 0; len 1, 2 or 4 within one dword).
 * Reads of absent functions return all ones. Takes the bus lock. */
void pci_bus_cfg_access(struct pci_bus *bus, unsigned slot, unsigned fn, unsigned off, uint8_t *data, unsigned len,
			bool is_write);
/* Access BAR `bar` of dev at off as if the guest had (used by the virtio PCI_CFG window); out-of-range
 * accesses read all ones and drop writes. */
void pci_dev_bar_access(struct pci_dev *dev, unsigned bar, uint64_t off, uint8_t *data, unsigned len, bool is_write);

/* Checkpoint: replace the guest-visible config space with a saved copy and re-map BARs to match.
 * Refuses (-EINVAL, nothing changed) a copy whose read-only bits differ from this device's. */
int pci_dev_cfg_restore(struct pci_dev *dev, const uint8_t cfg[PCI_CFG_SIZE]);

#endif

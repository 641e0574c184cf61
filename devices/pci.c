/* pci.c - PCI bus 0: configuration mechanism #1, type-0 config space, BAR placement/relocation, INTx lines. */
#include "pci.h"

#include <errno.h>
#include <linux/pci_regs.h>
#include <string.h>

#include "../vmm/le.h"
#include "../vmm/util.h"
#include "../vmm/vm.h"

#define CONF1_ENABLE 0x80000000u
#define CONF1_RESERVED 0x7f000000u /* AMD extended register bits and reserved: we decode none */
#define CLASS_BRIDGE_HOST 0x060000u

static bool overlaps(unsigned a, unsigned alen, unsigned b, unsigned blen)
{
	return a < b + blen && b < a + alen;
}

void pci_dev_init(struct pci_dev *dev, const char *name, uint16_t vendor, uint16_t device, uint32_t class_code,
		  uint8_t revision, uint16_t subsys_vendor, uint16_t subsys_id)
{
	memset(dev, 0, sizeof(*dev));
	dev->name = name;
	st_le16(dev->cfg + PCI_VENDOR_ID, vendor);
	st_le16(dev->cfg + PCI_DEVICE_ID, device);
	dev->cfg[PCI_REVISION_ID] = revision;
	dev->cfg[PCI_CLASS_PROG] = (uint8_t)class_code;
	st_le16(dev->cfg + PCI_CLASS_DEVICE, (uint16_t)(class_code >> 8));
	dev->cfg[PCI_HEADER_TYPE] = PCI_HEADER_TYPE_NORMAL;
	st_le16(dev->cfg + PCI_SUBSYSTEM_VENDOR_ID, subsys_vendor);
	st_le16(dev->cfg + PCI_SUBSYSTEM_ID, subsys_id);
	dev->cfg[PCI_INTERRUPT_PIN] = 1; /* INTA# */

	/* No I/O BARs, so I/O decode stays read-only zero; INTX_DISABLE is honoured by the device. */
	st_le16(dev->wmask + PCI_COMMAND, PCI_COMMAND_MEMORY | PCI_COMMAND_MASTER | PCI_COMMAND_PARITY |
						   PCI_COMMAND_SERR | PCI_COMMAND_INTX_DISABLE);
	st_le16(dev->w1cmask + PCI_STATUS, PCI_STATUS_PARITY | PCI_STATUS_SIG_TARGET_ABORT | PCI_STATUS_REC_TARGET_ABORT |
						    PCI_STATUS_REC_MASTER_ABORT | PCI_STATUS_SIG_SYSTEM_ERROR |
						    PCI_STATUS_DETECTED_PARITY);
	dev->wmask[PCI_CACHE_LINE_SIZE] = 0xff;
	dev->wmask[PCI_LATENCY_TIMER] = 0xff;
	dev->wmask[PCI_INTERRUPT_LINE] = 0xff;
	dev->cap_next = 0x40;
}

int pci_dev_add_bar(struct pci_dev *dev, unsigned bar, uint32_t size, bus_handler_fn fn, void *opaque)
{
	if (bar >= PCI_NUM_BARS || size < 16 || (size & (size - 1)) || size > 0x80000000u || !fn || dev->slot)
		return -EINVAL;
	struct pci_bar *b = &dev->bars[bar];
	*b = (struct pci_bar){ .size = size, .fn = fn, .opaque = opaque, .dev = dev };
	/* Sizing: the low address bits never take a 1, so all-ones reads back ~(size - 1) | flags. */
	st_le32(dev->wmask + PCI_BASE_ADDRESS_0 + 4 * bar, ~(size - 1) & ~0xfu);
	st_le32(dev->cfg + PCI_BASE_ADDRESS_0 + 4 * bar, PCI_BASE_ADDRESS_SPACE_MEMORY | PCI_BASE_ADDRESS_MEM_TYPE_32);
	return 0;
}

int pci_dev_add_cap(struct pci_dev *dev, const void *cap, unsigned len, const void *wmask)
{
	unsigned off = ALIGN_UP((unsigned)dev->cap_next, 4u);
	if (len < 2 || off + len > PCI_CFG_SIZE)
		return -ENOSPC;
	memcpy(dev->cfg + off, cap, len);
	dev->cfg[off + PCI_CAP_LIST_NEXT] = 0;
	if (wmask) {
		memcpy(dev->wmask + off, wmask, len);
		dev->wmask[off] = dev->wmask[off + PCI_CAP_LIST_NEXT] = 0; /* ID and link stay ours */
	}
	if (dev->cap_last)
		dev->cfg[dev->cap_last + PCI_CAP_LIST_NEXT] = (uint8_t)off;
	else
		dev->cfg[PCI_CAPABILITY_LIST] = (uint8_t)off;
	dev->cfg[PCI_STATUS] |= PCI_STATUS_CAP_LIST;
	dev->cap_last = (uint8_t)off;
	dev->cap_next = (uint8_t)MIN(off + len, 0xffu);
	return (int)off;
}

/* The address a BAR should decode at now, or 0 if it should not decode. A BAR that would cover RAM or the
 * platform devices above PCI_BAR_LIMIT is refused; so is one at the sizing value (all ones). */
static uint64_t bar_target(const struct pci_dev *dev, unsigned i)
{
	const struct pci_bar *b = &dev->bars[i];
	if (!b->size || !(dev->cfg[PCI_COMMAND] & PCI_COMMAND_MEMORY))
		return 0;
	uint64_t addr = ld_le32(dev->cfg + PCI_BASE_ADDRESS_0 + 4 * i) & PCI_BASE_ADDRESS_MEM_MASK;
	uint64_t low_ram = dev->bus && dev->bus->vm ? dev->bus->vm->mem.low_size : 0;
	if (addr < PCI_BAR_MIN || addr < low_ram || addr + b->size > PCI_BAR_LIMIT)
		return 0;
	return addr;
}

static void bar_trampoline(void *opaque, uint64_t off, uint8_t *data, uint32_t len, bool is_write)
{
	struct pci_bar *b = opaque;
	if (!len || len > 8 || off >= b->size || b->size - off < len) {
		if (!is_write)
			memset(data, 0xff, len);
		return;
	}
	b->fn(b->opaque, off, data, len, is_write);
}

void pci_dev_bar_access(struct pci_dev *dev, unsigned bar, uint64_t off, uint8_t *data, unsigned len, bool is_write)
{
	if (bar >= PCI_NUM_BARS || !dev->bars[bar].size) {
		if (!is_write)
			memset(data, 0xff, len);
		return;
	}
	bar_trampoline(&dev->bars[bar], off, data, len, is_write);
}

static void bar_unmap(struct pci_dev *dev, unsigned i)
{
	struct pci_bar *b = &dev->bars[i];
	if (dev->ops && dev->ops->bar_map)
		dev->ops->bar_map(dev, i, b->addr, false);
	bus_unregister(&dev->bus->vm->mmio, b->addr);
	b->mapped = false;
	b->addr = 0;
}

static void bar_map(struct pci_dev *dev, unsigned i, uint64_t addr)
{
	struct pci_bar *b = &dev->bars[i];
	int r = bus_register(&dev->bus->vm->mmio, addr, b->size, bar_trampoline, b, dev->name);
	if (r) {
		/* Overlaps another BAR or device: the guest's mistake. Leave it dark until it moves. */
		debugx("pci %02x: BAR%u at %#llx refused (%d)", dev->slot, i, (unsigned long long)addr, r);
		return;
	}
	b->mapped = true;
	b->addr = addr;
	if (dev->ops && dev->ops->bar_map)
		dev->ops->bar_map(dev, i, addr, true);
}

/* Make every BAR on the bus decode where its registers say. Unmapping everything that moved before
 * mapping anything lets the guest swap two BARs, and lets a BAR refused for overlap appear once the
 * other one moves away. Bus lock held. */
static void bus_update_mappings(struct pci_bus *bus)
{
	for (unsigned s = 1; s < PCI_NUM_SLOTS; s++) {
		struct pci_dev *dev = bus->devs[s];
		for (unsigned i = 0; dev && i < PCI_NUM_BARS; i++)
			if (dev->bars[i].mapped && dev->bars[i].addr != bar_target(dev, i))
				bar_unmap(dev, i);
	}
	for (unsigned s = 1; s < PCI_NUM_SLOTS; s++) {
		struct pci_dev *dev = bus->devs[s];
		for (unsigned i = 0; dev && i < PCI_NUM_BARS; i++) {
			uint64_t t = bar_target(dev, i);
			if (!dev->bars[i].mapped && t)
				bar_map(dev, i, t);
		}
	}
}

static void dev_cfg_read(struct pci_dev *dev, unsigned off, uint8_t *data, unsigned len)
{
	if (dev->ops && dev->ops->cfg_read)
		dev->ops->cfg_read(dev, off, len);
	memcpy(data, dev->cfg + off, len);
}

static void dev_cfg_write(struct pci_dev *dev, unsigned off, const uint8_t *data, unsigned len)
{
	for (unsigned i = 0; i < len; i++) {
		unsigned o = off + i;
		uint8_t v = (uint8_t)((dev->cfg[o] & ~dev->wmask[o]) | (data[i] & dev->wmask[o]));
		dev->cfg[o] = (uint8_t)(v & ~(data[i] & dev->w1cmask[o]));
	}
	if (dev->bus && (overlaps(off, len, PCI_COMMAND, 2) || overlaps(off, len, PCI_BASE_ADDRESS_0, 4 * PCI_NUM_BARS)))
		bus_update_mappings(dev->bus);
	if (dev->ops && dev->ops->cfg_write)
		dev->ops->cfg_write(dev, off, len);
}

void pci_bus_cfg_access(struct pci_bus *bus, unsigned slot, unsigned fn, unsigned off, uint8_t *data, unsigned len,
			bool is_write)
{
	/* One dword at most, never straddling two: what mechanism #1 can express. */
	if (!len || len > 4 || off >= PCI_CFG_SIZE || (off & 3) + len > 4) {
		if (!is_write)
			memset(data, 0xff, len);
		return;
	}
	pthread_mutex_lock(&bus->lock);
	struct pci_dev *dev = NULL;
	if (fn == 0 && slot < PCI_NUM_SLOTS)
		dev = slot == 0 ? &bus->host : bus->devs[slot];
	if (!dev) {
		if (!is_write)
			memset(data, 0xff, len);
	} else if (is_write) {
		dev_cfg_write(dev, off, data, len);
	} else {
		dev_cfg_read(dev, off, data, len);
	}
	pthread_mutex_unlock(&bus->lock);
}

/* Ports 0xcf8..0xcff. Only dword accesses reach the address latch: Linux's type-1 probe pokes a byte
 * at 0xcfb and must not disturb it. */
static void conf1_io(void *opaque, uint64_t off, uint8_t *data, uint32_t len, bool is_write)
{
	struct pci_bus *bus = opaque;
	if (!len || len > 4 || off >= PCI_CONF1_LEN || PCI_CONF1_LEN - off < len) {
		if (!is_write)
			memset(data, 0xff, len);
		return;
	}
	if (off < 4) {
		pthread_mutex_lock(&bus->lock);
		if (off == 0 && len == 4) {
			if (is_write)
				bus->cfg_addr = ld_le32(data) & ~3u;
			else
				st_le32(data, bus->cfg_addr);
		} else if (!is_write) {
			memset(data, 0xff, len);
		}
		pthread_mutex_unlock(&bus->lock);
		return;
	}
	pthread_mutex_lock(&bus->lock);
	uint32_t a = bus->cfg_addr;
	pthread_mutex_unlock(&bus->lock);
	unsigned k = (unsigned)off - 4;
	if (!(a & CONF1_ENABLE) || (a & CONF1_RESERVED) || ((a >> 16) & 0xff) != 0 || k + len > 4) {
		if (!is_write)
			memset(data, 0xff, len);
		return;
	}
	pci_bus_cfg_access(bus, (a >> 11) & 0x1f, (a >> 8) & 7, (a & 0xfc) + k, data, len, is_write);
}

int pci_bus_init(struct pci_bus *bus, struct vm *vm)
{
	memset(bus, 0, sizeof(*bus));
	bus->vm = vm;
	bus->mmio_next = PCI_MMIO_WINDOW_START;
	pthread_mutex_init(&bus->lock, NULL);
	/* i440FX identity: Linux's pci_sanity_check wants a host bridge class or an Intel/Compaq vendor. */
	pci_dev_init(&bus->host, "pci-host", 0x8086, 0x1237, CLASS_BRIDGE_HOST, 0x02, 0x1af4, 0x1100);
	bus->host.bus = bus;
	bus->host.cfg[PCI_INTERRUPT_PIN] = 0;
	bus->host.wmask[PCI_INTERRUPT_LINE] = 0;
	st_le16(bus->host.wmask + PCI_COMMAND, 0);
	st_le16(bus->host.cfg + PCI_COMMAND, PCI_COMMAND_MEMORY | PCI_COMMAND_MASTER);
	int r = bus_register(&vm->pio, PCI_CONF1_PORT, PCI_CONF1_LEN, conf1_io, bus, "pci-conf1");
	if (r) {
		pthread_mutex_destroy(&bus->lock);
		return r;
	}
	bus->pio_registered = true;
	return 0;
}

void pci_bus_destroy(struct pci_bus *bus)
{
	for (unsigned s = 1; s < PCI_NUM_SLOTS; s++)
		if (bus->devs[s])
			pci_bus_remove_dev(bus, bus->devs[s]);
	if (bus->pio_registered)
		bus_unregister(&bus->vm->pio, PCI_CONF1_PORT);
	bus->pio_registered = false;
	pthread_mutex_destroy(&bus->lock);
}

int pci_bus_add_dev(struct pci_bus *bus, struct pci_dev *dev)
{
	pthread_mutex_lock(&bus->lock);
	unsigned slot = 1;
	while (slot < PCI_NUM_SLOTS && bus->devs[slot])
		slot++;
	if (slot == PCI_NUM_SLOTS || dev->slot) {
		pthread_mutex_unlock(&bus->lock);
		return dev->slot ? -EEXIST : -ENOSPC;
	}
	/* Naturally aligned, like firmware would; all or nothing. */
	uint64_t next = bus->mmio_next, addr[PCI_NUM_BARS] = { 0 };
	for (unsigned i = 0; i < PCI_NUM_BARS; i++) {
		if (!dev->bars[i].size)
			continue;
		addr[i] = ALIGN_UP(next, (uint64_t)dev->bars[i].size);
		next = addr[i] + dev->bars[i].size;
		if (next > PCI_MMIO_WINDOW_END) {
			pthread_mutex_unlock(&bus->lock);
			return -ENOSPC;
		}
	}
	bus->mmio_next = (uint32_t)next;
	for (unsigned i = 0; i < PCI_NUM_BARS; i++)
		if (dev->bars[i].size)
			st_le32(dev->cfg + PCI_BASE_ADDRESS_0 + 4 * i,
				 (uint32_t)addr[i] | (ld_le32(dev->cfg + PCI_BASE_ADDRESS_0 + 4 * i) & 0xf));
	dev->bus = bus;
	dev->slot = slot;
	dev->cfg[PCI_INTERRUPT_LINE] = (uint8_t)pci_dev_irq_gsi(dev);
	dev->cfg[PCI_COMMAND] |= PCI_COMMAND_MEMORY;
	bus->devs[slot] = dev;
	bus_update_mappings(bus);
	pthread_mutex_unlock(&bus->lock);
	return 0;
}

void pci_bus_remove_dev(struct pci_bus *bus, struct pci_dev *dev)
{
	if (!dev->slot) /* never added, or the bus went first (pci_bus_destroy unplugs everything) */
		return;
	pthread_mutex_lock(&bus->lock);
	if (dev->slot && dev->slot < PCI_NUM_SLOTS && bus->devs[dev->slot] == dev) {
		for (unsigned i = 0; i < PCI_NUM_BARS; i++)
			if (dev->bars[i].mapped)
				bar_unmap(dev, i);
		bus->devs[dev->slot] = NULL;
		dev->slot = 0;
	}
	pthread_mutex_unlock(&bus->lock);
}

unsigned pci_dev_irq_gsi(const struct pci_dev *dev)
{
	unsigned slot = dev->slot ? dev->slot : 1;
	return PCI_INTX_GSI_BASE + (slot - 1) % PCI_INTX_GSI_COUNT;
}

unsigned pci_bus_irq_list(struct pci_bus *bus, struct pci_irq_info *out, unsigned max)
{
	unsigned n = 0;
	pthread_mutex_lock(&bus->lock);
	for (unsigned s = 1; s < PCI_NUM_SLOTS; s++) {
		if (!bus->devs[s] || !bus->devs[s]->cfg[PCI_INTERRUPT_PIN])
			continue;
		if (n < max)
			out[n] = (struct pci_irq_info){ .slot = (uint8_t)s, .pin = 0,
							.gsi = (uint8_t)pci_dev_irq_gsi(bus->devs[s]) };
		n++;
	}
	pthread_mutex_unlock(&bus->lock);
	return n;
}

int pci_dev_cfg_restore(struct pci_dev *dev, const uint8_t cfg[PCI_CFG_SIZE])
{
	struct pci_bus *bus = dev->bus;
	if (!bus)
		return -EINVAL;
	pthread_mutex_lock(&bus->lock);
	for (unsigned o = 0; o < PCI_CFG_SIZE; o++) {
		uint8_t ro = (uint8_t)~(dev->wmask[o] | dev->w1cmask[o]);
		if (o == PCI_STATUS)
			ro &= (uint8_t)~PCI_STATUS_INTERRUPT; /* mirrors the INTx line, which the device restores */
		if ((cfg[o] ^ dev->cfg[o]) & ro) {
			pthread_mutex_unlock(&bus->lock);
			return -EINVAL;
		}
	}
	memcpy(dev->cfg, cfg, PCI_CFG_SIZE);
	bus_update_mappings(bus);
	pthread_mutex_unlock(&bus->lock);
	return 0;
}

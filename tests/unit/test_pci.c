/* test_pci.c - PCI bus 0 through ports 0xcf8/0xcfc: host bridge, config access edge cases, BARs, caps, INTx, GSI routes. */
#include <errno.h>
#include <linux/kvm.h>
#include <linux/pci_regs.h>
#include <stdint.h>

#include "../../devices/pci.h"
#include "../../vmm/vm.h"
#include "test.h"

int vm_irq_routing_init(struct vm *vm); /* vm.c calls it after KVM_CREATE_IRQCHIP */

static uint8_t ram[1 << 20] __attribute__((aligned(4096)));

static void vm_setup(struct vm *vm)
{
	memset(vm, 0, sizeof(*vm));
	vm->kvm_fd = vm->vm_fd = -1;
	CHECK_EQ(gmem_init_buffer(&vm->mem, ram, sizeof(ram)), 0);
	bus_init(&vm->pio, "pio");
	bus_init(&vm->mmio, "mmio");
	pthread_mutex_init(&vm->irq_lock, NULL);
}

static void vm_teardown(struct vm *vm)
{
	bus_destroy(&vm->pio);
	bus_destroy(&vm->mmio);
	gmem_free(&vm->mem);
	free(vm->gsi_routes);
	pthread_mutex_destroy(&vm->irq_lock);
}

/* ---- port helpers: exactly what a guest does ---- */

static struct vm *g_vm;

static void outl(uint16_t port, uint32_t v)
{
	uint8_t b[4] = { (uint8_t)v, (uint8_t)(v >> 8), (uint8_t)(v >> 16), (uint8_t)(v >> 24) };
	bus_dispatch(&g_vm->pio, port, b, 4, true);
}

static void outn(uint16_t port, uint32_t v, unsigned len)
{
	uint8_t b[4] = { (uint8_t)v, (uint8_t)(v >> 8), (uint8_t)(v >> 16), (uint8_t)(v >> 24) };
	bus_dispatch(&g_vm->pio, port, b, len, true);
}

static uint32_t inn(uint16_t port, unsigned len)
{
	uint8_t b[8];
	memset(b, 0xa5, sizeof(b));
	bus_dispatch(&g_vm->pio, port, b, len, false);
	uint32_t v = 0;
	for (unsigned i = 0; i < len && i < 4; i++)
		v |= (uint32_t)b[i] << (8 * i);
	return v;
}

static uint32_t cfg_addr(unsigned bus, unsigned slot, unsigned fn, unsigned off)
{
	return 0x80000000u | bus << 16 | slot << 11 | fn << 8 | (off & 0xfc);
}

static uint32_t cfg_read(unsigned slot, unsigned off, unsigned len)
{
	outl(0xcf8, cfg_addr(0, slot, 0, off));
	return inn((uint16_t)(0xcfc + (off & 3)), len);
}

static void cfg_write(unsigned slot, unsigned off, uint32_t v, unsigned len)
{
	outl(0xcf8, cfg_addr(0, slot, 0, off));
	outn((uint16_t)(0xcfc + (off & 3)), v, len);
}

/* ---- a fake device with two BARs that records what reaches it ---- */

struct fake {
	struct pci_dev pci;
	unsigned reads, writes;
	uint64_t last_off;
	unsigned maps, unmaps;
	uint64_t last_map_addr;
};

static void fake_bar(void *opaque, uint64_t off, uint8_t *data, uint32_t len, bool is_write)
{
	struct fake *f = opaque;
	CHECK(len >= 1 && len <= 8);
	f->last_off = off;
	if (is_write) {
		f->writes++;
	} else {
		f->reads++;
		memset(data, 0x5a, len);
	}
}

static void fake_bar_map(struct pci_dev *dev, unsigned bar, uint64_t addr, bool map)
{
	struct fake *f = (struct fake *)dev;
	if (bar != 0)
		return;
	if (map) {
		f->maps++;
		f->last_map_addr = addr;
	} else {
		f->unmaps++;
	}
}

static const struct pci_dev_ops fake_ops = { .bar_map = fake_bar_map };

static void fake_init(struct fake *f, uint32_t bar0, uint32_t bar2)
{
	memset(f, 0, sizeof(*f));
	pci_dev_init(&f->pci, "fake", 0x1234, 0x5678, 0x020000, 3, 0xabcd, 0xef01);
	f->pci.ops = &fake_ops;
	if (bar0)
		CHECK_EQ(pci_dev_add_bar(&f->pci, 0, bar0, fake_bar, f), 0);
	if (bar2)
		CHECK_EQ(pci_dev_add_bar(&f->pci, 2, bar2, fake_bar, f), 0);
}

static int mmio_read(uint64_t addr, unsigned len, uint8_t *out)
{
	memset(out, 0, len);
	return bus_dispatch(&g_vm->mmio, addr, out, len, false);
}

/* ---- tests ---- */

static void test_routing(void)
{
	struct vm vm;
	vm_setup(&vm);
	CHECK_EQ(vm_irq_routing_init(&vm), 0);
	struct kvm_irq_routing_entry *e = vm.gsi_routes;
	CHECK_EQ(vm.nr_routes, 24 + 16);
	CHECK_EQ(vm.next_gsi, GSI_FIRST_MSI);
	/* Exactly KVM's default: GSI n -> IOAPIC pin n, and GSIs 0-15 also to the PIC pair. */
	unsigned ioapic[24] = { 0 }, pic[16] = { 0 };
	for (unsigned i = 0; i < vm.nr_routes; i++) {
		CHECK_EQ(e[i].type, KVM_IRQ_ROUTING_IRQCHIP);
		if (e[i].u.irqchip.irqchip == KVM_IRQCHIP_IOAPIC) {
			CHECK(e[i].gsi < 24);
			CHECK_EQ(e[i].u.irqchip.pin, e[i].gsi);
			ioapic[e[i].gsi]++;
		} else {
			CHECK(e[i].gsi < 16);
			CHECK_EQ(e[i].u.irqchip.irqchip, e[i].gsi < 8 ? KVM_IRQCHIP_PIC_MASTER : KVM_IRQCHIP_PIC_SLAVE);
			CHECK_EQ(e[i].u.irqchip.pin, e[i].gsi % 8);
			pic[e[i].gsi]++;
		}
	}
	for (unsigned g = 0; g < 24; g++)
		CHECK_EQ(ioapic[g], 1);
	for (unsigned g = 0; g < 16; g++)
		CHECK_EQ(pic[g], 1);
	/* Idempotent. */
	CHECK_EQ(vm_irq_routing_init(&vm), 0);
	CHECK_EQ(vm.nr_routes, 40);

	int g1 = vm_msi_route_add(&vm, 0xfee00000, 0x41);
	int g2 = vm_msi_route_add(&vm, 0xfee01000, 0x42);
	CHECK_EQ(g1, 24);
	CHECK_EQ(g2, 25);
	CHECK_EQ(vm.nr_routes, 42);
	e = vm.gsi_routes;
	CHECK_EQ(e[40].type, KVM_IRQ_ROUTING_MSI);
	CHECK_EQ(e[40].gsi, 24);
	CHECK_EQ(e[40].u.msi.address_lo, 0xfee00000);
	CHECK_EQ(e[40].u.msi.data, 0x41);
	CHECK_EQ(vm_msi_route_update(&vm, 25, 0x1fee02000ull, 0x99), 0);
	CHECK_EQ(e[41].u.msi.address_lo, 0xfee02000);
	CHECK_EQ(e[41].u.msi.address_hi, 1);
	CHECK_EQ(e[41].u.msi.data, 0x99);
	CHECK_EQ(e[40].u.msi.data, 0x41);
	CHECK_EQ(vm_msi_route_update(&vm, 26, 0, 0), -ENOENT);
	CHECK_EQ(vm_msi_route_update(&vm, 5, 0, 0), -ENOENT); /* an irqchip GSI is not an MSI route */

	/* Without a VM fd the KVM calls fail cleanly. */
	CHECK(vm_irq_line(&vm, 5, 1) < 0);
	CHECK(vm_signal_msi(&vm, 0xfee00000, 0x41) < 0);
	CHECK(vm_irqfd(&vm, -1, 24, true) < 0);
	CHECK(vm_ioeventfd(&vm, -1, 0xc0000000, 2, false, -1, true) < 0);
	vm_teardown(&vm);

	/* An MSI route added before init still comes with the default table. */
	vm_setup(&vm);
	CHECK_EQ(vm_msi_route_add(&vm, 0xfee00000, 1), 24);
	CHECK_EQ(vm.nr_routes, 41);
	CHECK_EQ(vm_irq_routing_init(&vm), 0);
	CHECK_EQ(vm.nr_routes, 41);
	vm.next_gsi = GSI_MAX;
	CHECK_EQ(vm_msi_route_add(&vm, 0xfee00000, 1), -ENOSPC);
	CHECK_EQ(vm.nr_routes, 41);
	vm_teardown(&vm);
}

static void test_conf1(void)
{
	struct vm vm;
	struct pci_bus bus;
	vm_setup(&vm);
	g_vm = &vm;
	CHECK_EQ(pci_bus_init(&bus, &vm), 0);
	CHECK_EQ(pci_bus_init(&(struct pci_bus){ 0 }, &vm), -EEXIST); /* ports already claimed */

	/* Linux's pci_check_type1(): a byte poke at 0xcfb, then the dword latch must read back. */
	outn(0xcfb, 0x01, 1);
	outl(0xcf8, 0x80000000);
	CHECK_EQ(inn(0xcf8, 4), 0x80000000);
	outn(0xcfb, 0x00, 1); /* byte writes never reach the latch */
	outn(0xcf8, 0x00, 1);
	CHECK_EQ(inn(0xcf8, 4), 0x80000000);
	CHECK_EQ(inn(0xcf8, 1), 0xff);
	outl(0xcf8, 0x80000003); /* the two low bits are not part of the register number */
	CHECK_EQ(inn(0xcf8, 4), 0x80000000);

	/* Host bridge at 00:00.0: i440FX identity, class 06/00. */
	CHECK_EQ(cfg_read(0, PCI_VENDOR_ID, 2), 0x8086);
	CHECK_EQ(cfg_read(0, PCI_DEVICE_ID, 2), 0x1237);
	CHECK_EQ(cfg_read(0, PCI_VENDOR_ID, 4), 0x12378086);
	CHECK_EQ(cfg_read(0, PCI_CLASS_DEVICE, 2), 0x0600);
	CHECK_EQ(cfg_read(0, PCI_CLASS_PROG, 1), 0);
	CHECK_EQ(cfg_read(0, PCI_HEADER_TYPE, 1), 0);
	CHECK_EQ(cfg_read(0, PCI_INTERRUPT_PIN, 1), 0);
	cfg_write(0, PCI_VENDOR_ID, 0xffffffff, 4); /* read-only */
	CHECK_EQ(cfg_read(0, PCI_VENDOR_ID, 4), 0x12378086);

	/* Byte and word reads at every lane of the data port. */
	CHECK_EQ(cfg_read(0, 1, 1), 0x80);
	CHECK_EQ(cfg_read(0, 2, 1), 0x37);
	CHECK_EQ(cfg_read(0, 3, 1), 0x12);
	CHECK_EQ(cfg_read(0, 1, 2), 0x3780);
	CHECK_EQ(cfg_read(0, 2, 2), 0x1237);
	CHECK_EQ(cfg_read(0, 0xb, 1), 0x06);
	/* Accesses that straddle the data dword or the port range read all ones and change nothing. */
	outl(0xcf8, cfg_addr(0, 0, 0, 0));
	CHECK_EQ(inn(0xcfd, 4), 0xffffffff);
	CHECK_EQ(inn(0xcff, 2), 0xffff);
	outn(0xcfd, 0, 4);
	CHECK_EQ(cfg_read(0, PCI_VENDOR_ID, 4), 0x12378086);
	CHECK_EQ(inn(0xcfc, 3), 0x378086); /* a 3-byte access within the dword is still one access */

	/* Absent functions: empty slot, function 1, bus 1, enable bit clear, reserved bits set. */
	CHECK_EQ(cfg_read(5, 0, 4), 0xffffffff);
	outl(0xcf8, cfg_addr(0, 0, 1, 0));
	CHECK_EQ(inn(0xcfc, 4), 0xffffffff);
	outl(0xcf8, cfg_addr(1, 0, 0, 0));
	CHECK_EQ(inn(0xcfc, 4), 0xffffffff);
	outl(0xcf8, cfg_addr(0, 0, 0, 0) & ~0x80000000u);
	CHECK_EQ(inn(0xcfc, 4), 0xffffffff);
	outl(0xcf8, cfg_addr(0, 0, 0, 0) | 0x01000000u);
	CHECK_EQ(inn(0xcfc, 4), 0xffffffff);
	outl(0xcf8, cfg_addr(0, 5, 0, 0));
	outn(0xcfc, 0x12345678, 4); /* write to nothing: harmless */
	/* Direct entry point: out-of-range offsets and lengths. */
	uint8_t b[8];
	memset(b, 0, sizeof(b));
	pci_bus_cfg_access(&bus, 0, 0, 256, b, 4, false);
	CHECK_EQ(b[0], 0xff);
	memset(b, 0, sizeof(b));
	pci_bus_cfg_access(&bus, 0, 0, 0, b, 8, false);
	CHECK_EQ(b[7], 0xff);
	memset(b, 0, sizeof(b));
	pci_bus_cfg_access(&bus, 32, 0, 0, b, 4, false);
	CHECK_EQ(b[0], 0xff);
	pci_bus_cfg_access(&bus, 0, 0, 254, b, 4, true);

	pci_bus_destroy(&bus);
	CHECK_EQ(vm.pio.count, 0);
	vm_teardown(&vm);
}

static void test_bars(void)
{
	struct vm vm;
	struct pci_bus bus;
	vm_setup(&vm);
	g_vm = &vm;
	CHECK_EQ(pci_bus_init(&bus, &vm), 0);

	struct fake f;
	fake_init(&f, 0x1000, 0x100);
	CHECK_EQ(pci_dev_add_bar(&f.pci, 6, 4096, fake_bar, &f), -EINVAL);
	CHECK_EQ(pci_dev_add_bar(&f.pci, 1, 3000, fake_bar, &f), -EINVAL);
	CHECK_EQ(pci_dev_add_bar(&f.pci, 1, 8, fake_bar, &f), -EINVAL);
	CHECK_EQ(pci_dev_add_bar(&f.pci, 1, 4096, NULL, &f), -EINVAL);
	CHECK_EQ(pci_bus_add_dev(&bus, &f.pci), 0);
	CHECK_EQ(f.pci.slot, 1);
	CHECK_EQ(pci_bus_add_dev(&bus, &f.pci), -EEXIST);

	CHECK_EQ(cfg_read(1, PCI_VENDOR_ID, 4), 0x56781234);
	CHECK_EQ(cfg_read(1, PCI_REVISION_ID, 4), 0x02000003);
	CHECK_EQ(cfg_read(1, PCI_SUBSYSTEM_VENDOR_ID, 4), 0xef01abcd);
	CHECK_EQ(cfg_read(1, PCI_INTERRUPT_PIN, 1), 1);
	CHECK_EQ(cfg_read(1, PCI_INTERRUPT_LINE, 1), 16);
	CHECK_EQ(pci_dev_irq_gsi(&f.pci), 16);
	CHECK_EQ(cfg_read(1, PCI_COMMAND, 2) & PCI_COMMAND_MEMORY, PCI_COMMAND_MEMORY);
	CHECK_EQ(cfg_read(1, PCI_STATUS, 2) & PCI_STATUS_CAP_LIST, 0); /* no capabilities */
	CHECK_EQ(cfg_read(1, PCI_BASE_ADDRESS_0, 4), 0xc0000000);
	CHECK_EQ(cfg_read(1, PCI_BASE_ADDRESS_2, 4), 0xc0001000);
	CHECK_EQ(cfg_read(1, PCI_BASE_ADDRESS_1, 4), 0);
	CHECK_EQ(f.maps, 1);
	CHECK_EQ(f.last_map_addr, 0xc0000000);

	uint8_t d[8];
	CHECK_EQ(mmio_read(0xc0000010, 4, d), 0);
	CHECK_EQ(f.reads, 1);
	CHECK_EQ(f.last_off, 0x10);
	CHECK_EQ(d[0], 0x5a);
	CHECK_EQ(mmio_read(0xc0001004, 2, d), 0);
	CHECK_EQ(f.last_off, 4);
	/* The last bytes of a BAR: an access running past its end never reaches the device. */
	CHECK_EQ(mmio_read(0xc0000ffe, 4, d), 0);
	CHECK_EQ(f.reads, 2);
	CHECK_EQ(d[0], 0xff);
	CHECK_EQ(mmio_read(0xc0000ffc, 4, d), 0);
	CHECK_EQ(f.reads, 3);

	/* Sizing: all ones reads back the size mask (flags: 32-bit memory, non-prefetchable). */
	cfg_write(1, PCI_BASE_ADDRESS_0, 0xffffffff, 4);
	CHECK_EQ(cfg_read(1, PCI_BASE_ADDRESS_0, 4), 0xfffff000);
	CHECK_EQ(mmio_read(0xc0000000, 4, d), -ENOENT); /* never decodes at the sizing value */
	CHECK_EQ(f.unmaps, 1);
	cfg_write(1, PCI_BASE_ADDRESS_2, 0xffffffff, 4);
	CHECK_EQ(cfg_read(1, PCI_BASE_ADDRESS_2, 4), 0xffffff00);
	cfg_write(1, PCI_BASE_ADDRESS_1, 0xffffffff, 4); /* unimplemented BAR */
	CHECK_EQ(cfg_read(1, PCI_BASE_ADDRESS_1, 4), 0);
	cfg_write(1, PCI_ROM_ADDRESS, 0xffffffff, 4); /* no expansion ROM */
	CHECK_EQ(cfg_read(1, PCI_ROM_ADDRESS, 4), 0);
	cfg_write(1, PCI_BASE_ADDRESS_0, 0xc0000000, 4);
	cfg_write(1, PCI_BASE_ADDRESS_2, 0xc0001000, 4);
	CHECK_EQ(mmio_read(0xc0000000, 4, d), 0);
	CHECK_EQ(f.maps, 2);

	/* Relocation the way Linux does it: decode off, move, decode on. */
	uint32_t cmd = cfg_read(1, PCI_COMMAND, 2);
	cfg_write(1, PCI_COMMAND, cmd & ~PCI_COMMAND_MEMORY, 2);
	CHECK_EQ(mmio_read(0xc0000000, 4, d), -ENOENT);
	CHECK_EQ(mmio_read(0xc0001000, 4, d), -ENOENT);
	cfg_write(1, PCI_BASE_ADDRESS_0, 0xc8000000, 4);
	CHECK_EQ(mmio_read(0xc8000000, 4, d), -ENOENT);
	cfg_write(1, PCI_COMMAND, cmd, 2);
	CHECK_EQ(mmio_read(0xc8000000, 4, d), 0);
	CHECK_EQ(mmio_read(0xc0000000, 4, d), -ENOENT);
	CHECK_EQ(f.last_map_addr, 0xc8000000);
	/* Moving while decoding also works, byte by byte even (each step re-maps or refuses). */
	cfg_write(1, PCI_BASE_ADDRESS_0 + 3, 0xc9, 1);
	CHECK_EQ(cfg_read(1, PCI_BASE_ADDRESS_0, 4), 0xc9000000);
	CHECK_EQ(mmio_read(0xc9000000, 4, d), 0);
	CHECK_EQ(mmio_read(0xc8000000, 4, d), -ENOENT);

	/* Refused: over RAM, over the IOAPIC/LAPIC, over another BAR. */
	cfg_write(1, PCI_BASE_ADDRESS_0, 0x00001000, 4);
	CHECK_EQ(cfg_read(1, PCI_BASE_ADDRESS_0, 4), 0x00001000); /* the register holds it... */
	CHECK_EQ(bus.devs[1]->bars[0].mapped, false);             /* ...but nothing decodes */
	cfg_write(1, PCI_BASE_ADDRESS_0, 0x000ff000, 4); /* RAM is 1 MiB here: straddles its end */
	CHECK_EQ(bus.devs[1]->bars[0].mapped, false);
	cfg_write(1, PCI_BASE_ADDRESS_0, 0xfec00000, 4);
	CHECK_EQ(bus.devs[1]->bars[0].mapped, false);
	cfg_write(1, PCI_BASE_ADDRESS_0, 0xfffff000, 4);
	CHECK_EQ(bus.devs[1]->bars[0].mapped, false);
	cfg_write(1, PCI_BASE_ADDRESS_0, 0x00100000, 4); /* right above RAM, below the window: allowed */
	CHECK_EQ(mmio_read(0x00100000, 4, d), 0);
	cfg_write(1, PCI_BASE_ADDRESS_0, 0xfebff000, 4); /* just below the IOAPIC is fine */
	CHECK_EQ(mmio_read(0xfebff000, 4, d), 0);
	cfg_write(1, PCI_BASE_ADDRESS_0, 0xc0001000, 4); /* on top of BAR2 */
	CHECK_EQ(bus.devs[1]->bars[0].mapped, false);
	CHECK_EQ(mmio_read(0xc0001000, 4, d), 0);
	CHECK_EQ(f.last_off, 0); /* BAR2 still answers there */
	/* When BAR2 moves away, the refused BAR0 appears on its own. */
	cfg_write(1, PCI_BASE_ADDRESS_2, 0xc0002000, 4);
	CHECK_EQ(bus.devs[1]->bars[0].mapped, true);
	CHECK_EQ(bus.devs[1]->bars[0].addr, 0xc0001000);
	CHECK_EQ(bus.devs[1]->bars[2].addr, 0xc0002000);

	/* Command and status masks. */
	cfg_write(1, PCI_COMMAND, 0xffff, 2);
	CHECK_EQ(cfg_read(1, PCI_COMMAND, 2), PCI_COMMAND_MEMORY | PCI_COMMAND_MASTER | PCI_COMMAND_PARITY |
						      PCI_COMMAND_SERR | PCI_COMMAND_INTX_DISABLE);
	cfg_write(1, PCI_STATUS, 0xffff, 2); /* write-1-to-clear bits stay clear, the rest is read-only */
	CHECK_EQ(cfg_read(1, PCI_STATUS, 2), 0);
	cfg_write(1, PCI_INTERRUPT_LINE, 0x0b, 1);
	CHECK_EQ(cfg_read(1, PCI_INTERRUPT_LINE, 1), 0x0b);
	CHECK_EQ(pci_dev_irq_gsi(&f.pci), 16); /* the wiring does not change */
	cfg_write(1, PCI_INTERRUPT_PIN, 4, 1);
	CHECK_EQ(cfg_read(1, PCI_INTERRUPT_PIN, 1), 1);

	/* Restore: read-only bits must match; BARs follow the copy. */
	uint8_t copy[PCI_CFG_SIZE];
	memcpy(copy, f.pci.cfg, sizeof(copy));
	copy[PCI_BASE_ADDRESS_0 + 3] = 0xca;
	copy[PCI_BASE_ADDRESS_0 + 2] = 0;
	copy[PCI_BASE_ADDRESS_0 + 1] = 0;
	CHECK_EQ(pci_dev_cfg_restore(&f.pci, copy), 0);
	CHECK_EQ(mmio_read(0xca000000, 4, d), 0);
	CHECK_EQ(mmio_read(0xc0001000, 4, d), -ENOENT);
	copy[PCI_DEVICE_ID] ^= 1;
	CHECK_EQ(pci_dev_cfg_restore(&f.pci, copy), -EINVAL);
	CHECK_EQ(cfg_read(1, PCI_DEVICE_ID, 2), 0x5678);
	copy[PCI_DEVICE_ID] ^= 1;
	copy[PCI_BASE_ADDRESS_0] |= 0x8; /* prefetchable flag is read-only */
	CHECK_EQ(pci_dev_cfg_restore(&f.pci, copy), -EINVAL);

	pci_bus_remove_dev(&bus, &f.pci);
	CHECK_EQ(f.pci.slot, 0);
	CHECK_EQ(vm.mmio.count, 0);
	CHECK_EQ(cfg_read(1, 0, 4), 0xffffffff);
	pci_bus_remove_dev(&bus, &f.pci); /* twice is harmless */
	pci_bus_destroy(&bus);
	vm_teardown(&vm);
}

static void test_caps_and_slots(void)
{
	struct vm vm;
	struct pci_bus bus;
	vm_setup(&vm);
	g_vm = &vm;
	CHECK_EQ(pci_bus_init(&bus, &vm), 0);

	static struct fake devs[PCI_NUM_SLOTS];
	fake_init(&devs[0], 0x1000, 0);
	uint8_t cap1[8] = { 0x09, 0xee, 8, 1, 2, 3, 4, 5 }, w1[8] = { 0xff, 0xff, 0, 0, 0xff, 0, 0, 0 };
	uint8_t cap2[6] = { 0x05, 0, 0, 0, 0, 0 };
	CHECK_EQ(pci_dev_add_cap(&devs[0].pci, cap1, sizeof(cap1), w1), 0x40);
	CHECK_EQ(pci_dev_add_cap(&devs[0].pci, cap2, sizeof(cap2), NULL), 0x48);
	CHECK_EQ(pci_dev_add_cap(&devs[0].pci, cap1, sizeof(cap1), NULL), 0x50); /* aligned up from 0x4e */
	uint8_t big[200] = { 0x10 };
	CHECK_EQ(pci_dev_add_cap(&devs[0].pci, big, sizeof(big), NULL), -ENOSPC);
	CHECK_EQ(pci_bus_add_dev(&bus, &devs[0].pci), 0);

	CHECK_EQ(cfg_read(1, PCI_STATUS, 2) & PCI_STATUS_CAP_LIST, PCI_STATUS_CAP_LIST);
	unsigned ids[8], offs[8], n = 0;
	for (unsigned p = cfg_read(1, PCI_CAPABILITY_LIST, 1); p && n < 8; p = cfg_read(1, p + 1, 1)) {
		offs[n] = p;
		ids[n++] = cfg_read(1, p, 1);
	}
	CHECK_EQ(n, 3);
	CHECK_EQ(offs[0], 0x40);
	CHECK_EQ(ids[0], 0x09);
	CHECK_EQ(offs[1], 0x48);
	CHECK_EQ(ids[1], 0x05);
	CHECK_EQ(offs[2], 0x50);
	CHECK_EQ(cfg_read(1, 0x42, 2), 0x0108);
	/* The chain link and ID stay read-only even if the device's mask said otherwise. */
	cfg_write(1, 0x40, 0xffff, 2);
	CHECK_EQ(cfg_read(1, 0x40, 2), 0x4809);
	cfg_write(1, 0x44, 0x77, 1);
	CHECK_EQ(cfg_read(1, 0x44, 1), 0x77);
	cfg_write(1, 0x45, 0x77, 1);
	CHECK_EQ(cfg_read(1, 0x45, 1), 3);

	/* Fill the bus: slots 2..31, INTx lines 16..23 in turn; then no room. */
	for (unsigned s = 1; s < PCI_NUM_SLOTS - 1; s++) {
		fake_init(&devs[s], 0x100, 0);
		CHECK_EQ(pci_bus_add_dev(&bus, &devs[s].pci), 0);
		CHECK_EQ(devs[s].pci.slot, s + 1);
		CHECK_EQ(pci_dev_irq_gsi(&devs[s].pci), 16 + s % 8);
	}
	struct fake extra;
	fake_init(&extra, 0x100, 0);
	CHECK_EQ(pci_bus_add_dev(&bus, &extra.pci), -ENOSPC);
	struct pci_irq_info irqs[40];
	CHECK_EQ(pci_bus_irq_list(&bus, irqs, 40), 31);
	for (unsigned i = 0; i < 31; i++) {
		CHECK_EQ(irqs[i].slot, i + 1);
		CHECK_EQ(irqs[i].pin, 0);
		CHECK_EQ(irqs[i].gsi, 16 + i % 8);
		CHECK_EQ(cfg_read(i + 1, PCI_INTERRUPT_LINE, 1), irqs[i].gsi);
	}
	CHECK_EQ(pci_bus_irq_list(&bus, irqs, 2), 31); /* count beyond max, only max written */
	/* A freed slot is reused; the BAR window runs out. */
	pci_bus_remove_dev(&bus, &devs[5].pci);
	CHECK_EQ(pci_bus_irq_list(&bus, irqs, 40), 30);
	fake_init(&extra, 0x10000000, 0); /* 256 MiB: the whole window, already partly used */
	CHECK_EQ(pci_bus_add_dev(&bus, &extra.pci), -ENOSPC);
	CHECK_EQ(extra.pci.slot, 0);
	fake_init(&extra, 0x1000, 0);
	extra.pci.cfg[PCI_INTERRUPT_PIN] = 0; /* no INTx: left out of the MP table */
	CHECK_EQ(pci_bus_add_dev(&bus, &extra.pci), 0);
	CHECK_EQ(extra.pci.slot, 6);
	CHECK_EQ(pci_dev_irq_gsi(&extra.pci), 21);
	CHECK_EQ(pci_bus_irq_list(&bus, irqs, 40), 30);
	CHECK_EQ(irqs[5].slot, 7);

	pci_bus_destroy(&bus);
	CHECK_EQ(vm.mmio.count, 0);
	CHECK_EQ(vm.pio.count, 0);
	vm_teardown(&vm);
}

int main(void)
{
	test_routing();
	test_conf1();
	test_bars();
	test_caps_and_slots();
	TEST_DONE("test_pci");
}

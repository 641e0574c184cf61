/* irq.c - interrupt plumbing to KVM: IRQ lines, the whole GSI routing table (irqchip + MSI), irqfds, ioeventfds. */
#include "vm.h"

#include <errno.h>
#include <linux/kvm.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>

#include "util.h"

#define PIC_PINS 16
#define IOAPIC_PINS_DEFAULT 24

/* KVM_SET_GSI_ROUTING replaces the table whole, so it is always pushed from our copy. With no VM fd
 * (unit tests build a struct vm by hand) the copy is the only table and pushing is a no-op. */
static int routing_push(struct vm *vm)
{
	if (vm->vm_fd < 0)
		return 0;
	size_t n = vm->nr_routes;
	struct kvm_irq_routing *r = calloc(1, sizeof(*r) + n * sizeof(struct kvm_irq_routing_entry));
	if (!r)
		return -ENOMEM;
	r->nr = (uint32_t)n;
	memcpy(r->entries, vm->gsi_routes, n * sizeof(struct kvm_irq_routing_entry));
	int ret = ioctl(vm->vm_fd, KVM_SET_GSI_ROUTING, r) < 0 ? -errno : 0;
	free(r);
	return ret;
}

static int routes_reserve(struct vm *vm, unsigned n)
{
	struct kvm_irq_routing_entry *e = realloc(vm->gsi_routes, n * sizeof(*e));
	if (!e)
		return -ENOMEM;
	vm->gsi_routes = e;
	return 0;
}

static void route_irqchip(struct kvm_irq_routing_entry *e, unsigned gsi, unsigned chip, unsigned pin)
{
	memset(e, 0, sizeof(*e));
	e->gsi = gsi;
	e->type = KVM_IRQ_ROUTING_IRQCHIP;
	e->u.irqchip.irqchip = chip;
	e->u.irqchip.pin = pin;
}

/* KVM's own default table (arch/x86/kvm default_routing): GSI n -> IOAPIC pin n for 0..23, and GSIs 0..15
 * also to the PIC pair (pin n % 8). Replacing the table must change nothing for the ISA devices and the
 * identity ISA entries of the MP table. irq_lock held. */
static int routes_build_default(struct vm *vm)
{
	int r = routes_reserve(vm, IOAPIC_PINS_DEFAULT + PIC_PINS);
	if (r)
		return r;
	struct kvm_irq_routing_entry *e = vm->gsi_routes;
	unsigned n = 0;
	for (unsigned gsi = 0; gsi < IOAPIC_PINS_DEFAULT; gsi++) {
		route_irqchip(&e[n++], gsi, KVM_IRQCHIP_IOAPIC, gsi);
		if (gsi < PIC_PINS)
			route_irqchip(&e[n++], gsi, gsi < 8 ? KVM_IRQCHIP_PIC_MASTER : KVM_IRQCHIP_PIC_SLAVE, gsi % 8);
	}
	vm->nr_routes = n;
	if (vm->next_gsi < GSI_FIRST_MSI)
		vm->next_gsi = GSI_FIRST_MSI;
	return 0;
}

int vm_irq_routing_init(struct vm *vm)
{
	pthread_mutex_lock(&vm->irq_lock);
	int r = vm->nr_routes ? 0 : routes_build_default(vm);
	if (!r)
		r = routing_push(vm);
	pthread_mutex_unlock(&vm->irq_lock);
	return r;
}

int vm_irq_line(struct vm *vm, unsigned gsi, int level)
{
	struct kvm_irq_level l = { .irq = gsi, .level = level ? 1 : 0 };
	return ioctl(vm->vm_fd, KVM_IRQ_LINE, &l) < 0 ? -errno : 0;
}

static void route_msi(struct kvm_irq_routing_entry *e, unsigned gsi, uint64_t addr, uint32_t data)
{
	memset(e, 0, sizeof(*e));
	e->gsi = gsi;
	e->type = KVM_IRQ_ROUTING_MSI;
	e->u.msi.address_lo = (uint32_t)addr;
	e->u.msi.address_hi = (uint32_t)(addr >> 32);
	e->u.msi.data = data;
}

int vm_msi_route_add(struct vm *vm, uint64_t addr, uint32_t data)
{
	pthread_mutex_lock(&vm->irq_lock);
	/* An MSI-only table would drop every ISA line, so the defaults go in first whatever the init order. */
	int r = vm->nr_routes ? 0 : routes_build_default(vm);
	if (r)
		goto out;
	if (vm->next_gsi < GSI_FIRST_MSI)
		vm->next_gsi = GSI_FIRST_MSI;
	if (vm->next_gsi >= GSI_MAX) {
		r = -ENOSPC;
		goto out;
	}
	r = routes_reserve(vm, vm->nr_routes + 1);
	if (r)
		goto out;
	unsigned gsi = vm->next_gsi;
	route_msi(&((struct kvm_irq_routing_entry *)vm->gsi_routes)[vm->nr_routes], gsi, addr, data);
	vm->nr_routes++;
	r = routing_push(vm);
	if (r) {
		vm->nr_routes--;
		goto out;
	}
	vm->next_gsi++;
	r = (int)gsi;
out:
	pthread_mutex_unlock(&vm->irq_lock);
	return r;
}

int vm_msi_route_update(struct vm *vm, unsigned gsi, uint64_t addr, uint32_t data)
{
	int r = -ENOENT;
	pthread_mutex_lock(&vm->irq_lock);
	struct kvm_irq_routing_entry *e = vm->gsi_routes;
	for (unsigned i = 0; i < vm->nr_routes; i++) {
		if (e[i].gsi != gsi || e[i].type != KVM_IRQ_ROUTING_MSI)
			continue;
		struct kvm_irq_routing_entry old = e[i];
		route_msi(&e[i], gsi, addr, data);
		if (!memcmp(&old, &e[i], sizeof(old))) {
			r = 0;
			break;
		}
		r = routing_push(vm);
		if (r)
			e[i] = old;
		break;
	}
	pthread_mutex_unlock(&vm->irq_lock);
	return r;
}

int vm_signal_msi(struct vm *vm, uint64_t addr, uint32_t data)
{
	struct kvm_msi msi = { .address_lo = (uint32_t)addr, .address_hi = (uint32_t)(addr >> 32), .data = data };
	/* 0 means the guest had the interrupt blocked (it is dropped like a real MSI would not be, but
	 * only for a guest with a disabled LAPIC, which cannot be using MSI-X). */
	return ioctl(vm->vm_fd, KVM_SIGNAL_MSI, &msi) < 0 ? -errno : 0;
}

int vm_irqfd(struct vm *vm, int efd, unsigned gsi, bool assign)
{
	if (efd < 0)
		return -EBADF;
	struct kvm_irqfd f = { .fd = (uint32_t)efd, .gsi = gsi, .flags = assign ? 0 : KVM_IRQFD_FLAG_DEASSIGN };
	return ioctl(vm->vm_fd, KVM_IRQFD, &f) < 0 ? -errno : 0;
}

int vm_ioeventfd(struct vm *vm, int efd, uint64_t addr, uint32_t len, bool pio, int64_t datamatch, bool assign)
{
	if (efd < 0)
		return -EBADF;
	struct kvm_ioeventfd io = { .addr = addr, .len = len, .fd = efd };
	if (pio)
		io.flags |= KVM_IOEVENTFD_FLAG_PIO;
	if (datamatch >= 0) {
		io.flags |= KVM_IOEVENTFD_FLAG_DATAMATCH;
		io.datamatch = (uint64_t)datamatch;
	}
	if (!assign)
		io.flags |= KVM_IOEVENTFD_FLAG_DEASSIGN;
	return ioctl(vm->vm_fd, KVM_IOEVENTFD, &io) < 0 ? -errno : 0;
}

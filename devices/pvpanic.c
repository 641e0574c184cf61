/* pvpanic.c - pvpanic-pci: a 16-byte BAR whose write of PVPANIC_PANICKED ends the VM as "guest panicked". */
#include "pvpanic.h"
#include "../vmm/util.h"
#include "../vmm/vm.h"

#include <string.h>

static void pvpanic_default_panic(void *ctx)
{
	vm_request_exit(ctx, VM_EXIT_PANIC);
}

static void pvpanic_bar_access(void *opaque, uint64_t off, uint8_t *data, uint32_t len, bool is_write)
{
	struct pvpanic *p = opaque;
	if (!is_write) {
		memset(data, 0, len);
		if (off == 0)
			data[0] = PVPANIC_PANICKED | PVPANIC_CRASH_LOADED; /* events we understand */
		return;
	}
	if (off != 0 || len < 1)
		return;
	uint8_t ev = data[0];
	__atomic_fetch_or(&p->events, ev, __ATOMIC_RELAXED);
	if (ev & PVPANIC_PANICKED) {
		warnx("guest reported a kernel panic through pvpanic");
		p->on_panic(p->ctx);
	} else if (ev & PVPANIC_CRASH_LOADED) {
		warnx("guest panicked and is running its crash kernel");
	}
}

int pvpanic_create(struct pvpanic *p, struct pci_bus *bus, struct vm *vm)
{
	memset(p, 0, sizeof(*p));
	p->vm = vm;
	p->on_panic = pvpanic_default_panic;
	p->ctx = vm;
	/* Red Hat's vendor ID and the ID QEMU registered for pvpanic-pci; class "other system peripheral" */
	pci_dev_init(&p->pci, "pvpanic", 0x1b36, 0x0011, 0x088000, 1, 0x1af4, 0x1100);
	p->pci.cfg[0x3d] = 0; /* interrupt pin: none, it never interrupts (and needs no MP table entry) */
	int r = pci_dev_add_bar(&p->pci, 0, 16, pvpanic_bar_access, p);
	if (r)
		return r;
	return pci_bus_add_dev(bus, &p->pci);
}

/* platform.c - builds the guest's machine from its description: legacy devices, PCI, virtio, pvpanic. */
#include "platform.h"
#include "../vmm/fdt_prop.h"
#include "../vmm/util.h"
#include "../vmm/vm.h"
#include "i8042.h"
#include "legacy.h"
#include "rtc.h"
#include "serial.h"
#include "tap.h"
#include "virtio_blk.h"
#include "virtio_net.h"
#include "virtio_pci.h"

#include <errno.h>
#include <libfdt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* COM1 only. COM2-4 stay unclaimed: Linux's probe reads 0xff there and moves on quietly, and a
 * silent UART sharing COM1's GSI would drive the line low under it (KVM_IRQ_LINE does not OR). */
static const struct { uint16_t base; unsigned irq; } com_ports[] = {
	{ 0x3f8, IRQ_COM1 },
};

static int add_disks(struct vm *vm, const struct machine *m, struct platform *p, char *err, size_t errlen)
{
	for (unsigned i = 0; i < m->ndisks; i++) {
		char e[256] = "";
		struct virtio_dev *d = virtio_blk_create(&vm->mem, &vm->io, m->disks[i].path, m->disks[i].readonly,
							 e, sizeof(e));
		if (!d) {
			snprintf(err, errlen, "--disk %s: %s", m->disks[i].path, e[0] ? e : "cannot create the disk");
			return -EINVAL;
		}
		struct virtio_pci *vp = virtio_pci_add(&p->pci, d, virtio_blk_destroy);
		if (!vp) {
			virtio_blk_destroy(d);
			snprintf(err, errlen, "--disk %s: no PCI slot left", m->disks[i].path);
			return -ENOSPC;
		}
		p->disks[i] = d;
		p->disk_tr[i] = vp;
		struct stat st;
		p->disk_sizes[i] = stat(m->disks[i].path, &st) == 0 ? (uint64_t)st.st_size : 0;
		p->ndisks++;
		vm_add_device(vm, virtio_pci_vm_device(vp));
	}
	return 0;
}

static int add_nics(struct vm *vm, const struct machine *m, struct platform *p, char *err, size_t errlen)
{
	for (unsigned i = 0; i < m->nnics; i++) {
		const struct machine_nic *n = &m->nics[i];
		char e[256] = "";
		int fd = tap_open(n->tap, e, sizeof(e));
		if (fd < 0) {
			snprintf(err, errlen, "--net tap=%s: %s", n->tap, e[0] ? e : strerror(-fd));
			return fd;
		}
		uint8_t mac[6];
		if (n->has_mac)
			memcpy(mac, n->mac, 6);
		else
			virtio_net_default_mac(mac, n->tap, i); /* stable across restarts and on the backup */
		char name[32];
		snprintf(name, sizeof(name), "virtio-net@%u", i);
		struct virtio_net_opts o = { .name = name };
		struct virtio_dev *d;
		int r = virtio_net_create(&d, &vm->mem, &vm->io, fd, mac, &o);
		if (r) {
			snprintf(err, errlen, "--net tap=%s: cannot create the NIC: %s", n->tap, strerror(-r));
			return r;
		}
		struct virtio_pci *vp = virtio_pci_add(&p->pci, d, virtio_net_destroy);
		if (!vp) {
			virtio_net_destroy(d);
			snprintf(err, errlen, "--net tap=%s: no PCI slot left", n->tap);
			return -ENOSPC;
		}
		p->nics[i] = d;
		p->nic_tr[i] = vp;
		p->tap_fds[i] = fd;
		memcpy(p->macs[i], mac, 6);
		p->nnics++;
		vm_add_device(vm, virtio_pci_vm_device(vp));
	}
	return 0;
}

/* The PCI functions that are not virtio (host bridge, pvpanic) keep their config space in the
 * checkpoint too, so a BAR the guest moved stays where the guest put it. */
static int pci_fixed_save(void *opaque, void *fdt)
{
	struct platform *p = opaque;
	pthread_mutex_lock(&p->pci.lock);
	int r = fdt_property(fdt, "host-cfg", p->pci.host.cfg, PCI_CFG_SIZE);
	if (!r)
		r = fdt_property(fdt, "pvpanic-cfg", p->pvpanic.pci.cfg, PCI_CFG_SIZE);
	pthread_mutex_unlock(&p->pci.lock);
	return r ? -ENOSPC : 0;
}

static int pci_fixed_restore(void *opaque, const void *fdt, int node)
{
	struct platform *p = opaque;
	const uint8_t *host = fdtp_exact(fdt, node, "host-cfg", PCI_CFG_SIZE);
	const uint8_t *pv = fdtp_exact(fdt, node, "pvpanic-cfg", PCI_CFG_SIZE);
	if (!host || !pv)
		return -EINVAL;
	int r = pci_dev_cfg_restore(&p->pci.host, host);
	return r ? r : pci_dev_cfg_restore(&p->pvpanic.pci, pv);
}

int platform_create(struct vm *vm, const struct machine *m, struct platform *p, char *err, size_t errlen)
{
	memset(p, 0, sizeof(*p));
	p->vm = vm;
	int r = 0;
	for (unsigned i = 0; i < ARRAY_SIZE(com_ports) && !r; i++) {
		struct serial *s;
		r = serial_create(vm, com_ports[i].base, com_ports[i].irq, i == 0 ? STDIN_FILENO : -1,
				  i == 0 ? STDOUT_FILENO : -1, &s);
		if (i == 0)
			p->serial = s;
	}
	struct i8042 *kbd;
	struct rtc *rtc;
	struct legacy *lg;
	if (!r)
		r = i8042_create(vm, &kbd);
	if (!r)
		r = rtc_create(vm, &rtc);
	if (!r)
		r = legacy_create(vm, &lg);
	if (r) {
		snprintf(err, errlen, "cannot create the legacy devices: %s", strerror(-r));
		return r;
	}
	r = pci_bus_init(&p->pci, vm);
	if (r) {
		snprintf(err, errlen, "cannot create the PCI bus: %s", strerror(-r));
		return r;
	}
	p->pci_ready = true;
	r = pvpanic_create(&p->pvpanic, &p->pci, vm);
	if (r) {
		snprintf(err, errlen, "cannot create the pvpanic device: %s", strerror(-r));
		return r;
	}
	p->pci_vmdev = (struct vm_device){ .name = "pci-fixed", .opaque = p, .save = pci_fixed_save,
					   .restore = pci_fixed_restore };
	vm_add_device(vm, &p->pci_vmdev);
	r = add_disks(vm, m, p, err, errlen);
	if (!r)
		r = add_nics(vm, m, p, err, errlen);
	if (r)
		return r;
	struct pci_irq_info irqs[ARRAY_SIZE(p->pci_irqs)];
	unsigned n = pci_bus_irq_list(&p->pci, irqs, ARRAY_SIZE(irqs));
	p->npci_irqs = MIN(n, (unsigned)ARRAY_SIZE(irqs));
	for (unsigned i = 0; i < p->npci_irqs; i++)
		p->pci_irqs[i] = (struct mp_pci_irq){ .slot = irqs[i].slot, .pin = irqs[i].pin, .gsi = irqs[i].gsi };
	return 0;
}

void platform_destroy(struct platform *p)
{
	if (p->pci_ready)
		pci_bus_destroy(&p->pci);
	p->pci_ready = false;
}

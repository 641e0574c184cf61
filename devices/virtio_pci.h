/* virtio_pci.h - the virtio 1.x modern PCI transport: one memory BAR, vendor capabilities, MSI-X or INTx. */
#ifndef FTVMM_VIRTIO_PCI_H
#define FTVMM_VIRTIO_PCI_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include "../vmm/vm.h"
#include "msix.h"
#include "pci.h"
#include "virtio.h"

/* BAR 0 layout (each structure on its own page so a guest may map them separately). */
#define VP_COMMON_OFF 0x0000u
#define VP_COMMON_LEN 0x38u /* struct virtio_pci_common_cfg */
#define VP_ISR_OFF 0x1000u
#define VP_DEVICE_OFF 0x2000u
#define VP_DEVICE_MAX 0x1000u
#define VP_NOTIFY_OFF 0x3000u
#define VP_NOTIFY_MULT 4u /* queue i notifies at VP_NOTIFY_OFF + 4 * i */
#define VP_MSIX_TABLE_OFF 0x4000u
#define VP_MAX_QUEUES 1023u /* nqueues + 1 MSI-X vectors; notify area within one page */

#define PCI_VENDOR_ID_REDHAT_QUMRANET 0x1af4
#define VIRTIO_PCI_DEVICE_ID_BASE 0x1040

/* What an interrupt observer sees (unit tests; also handy for tracing). */
struct virtio_pci_irq_event {
	bool msi;        /* true: MSI-X message; false: INTx level change */
	unsigned vector; /* MSI-X vector */
	uint64_t addr;   /* MSI-X message */
	uint32_t data;
	unsigned gsi;    /* INTx line */
	int level;       /* INTx level after the change */
};
typedef void (*virtio_pci_irq_observer_fn)(void *opaque, const struct virtio_pci_irq_event *ev);

struct vp_queue {
	struct virtio_pci *vp;
	unsigned index;
	int efd;               /* kicks: KVM ioeventfd at the notify address, or written by the MMIO path */
	bool ioeventfd;        /* efd attached with vm_ioeventfd at ioevent_addr */
	uint64_t ioevent_addr;
	uint32_t ioevent_len;
	bool pending;          /* kicked while quiesced; replayed on resume */
};

struct virtio_pci {
	struct pci_dev pci;
	struct vm *vm;
	struct virtio_dev *vdev;
	unsigned nqueues;
	uint32_t bar_size, pba_off;
	char name[32];         /* "virtio-pci@<slot>": MMIO region name, vm_device name if d has none */
	void (*dev_destroy)(struct virtio_dev *d);

	/* Common-config selectors: driver-visible registers, under vdev->lock. */
	uint32_t dfselect, gfselect;
	uint16_t qselect;

	/* INTx state, under lock. Lock order: pci bus lock -> vdev->lock -> lock -> msix.lock -> vm->irq_lock. */
	pthread_mutex_t lock;
	bool intx_disabled, intx_level;
	virtio_pci_irq_observer_fn irq_observer;
	void *irq_observer_opaque;
	struct msix msix;

	/* Kick delivery: qlock serialises queue_notify calls with quiesce. */
	pthread_mutex_t qlock;
	bool quiesced;
	struct vp_queue *qs;

	struct vm_device vmdev;
};

/* Wrap virtio device d (already virtio_dev_init'ed) in a PCI function on bus: picks the next free slot,
 * places BAR 0, wires d->notify_queue/notify_config and the queue kicks (eventfds on bus->vm->io).
 * dev_destroy (e.g. virtio_blk_destroy), if given, is how virtio_pci_destroy frees the device after the
 * transport; on failure the caller still owns d. Returns the transport, or NULL with errno set. */
struct virtio_pci *virtio_pci_add(struct pci_bus *bus, struct virtio_dev *d, void (*dev_destroy)(struct virtio_dev *d));
/* Unplug and free the transport, then the device through dev_destroy. Call with the VM's ioloop stopped. */
void virtio_pci_destroy(struct virtio_pci *vp);

/* The device's one vm_device for vm_add_device(), named d->name ("virtio-blk@0"), and the only way a
 * virtio device is checkpointed: quiesce holds queue kicks then calls d->ops->quiesce, resume calls
 * d->ops->resume then replays held kicks, save/restore are virtio_pci_save/restore, destroy is
 * virtio_pci_destroy. */
struct vm_device *virtio_pci_vm_device(struct virtio_pci *vp);

/* Checkpoint the whole device as properties of the current fdt node: the transport (config space incl.
 * BAR and command, MSI-X table/PBA/enable/mask, selectors, notify offsets), then the common virtio state
 * (virtio_dev_save, under d->lock), then the device half (d->ops->save). Save is refused (-EBUSY) unless
 * the vm_device's quiesce ran. Restore holds kicks like quiesce (call resume afterwards), checks the
 * transport part and the device half (d->ops->restore_check) before changing anything, then re-maps the
 * BAR where the snapshot had it, restores the common state, then d->ops->restore (which may read the
 * restored common state), then rebuilds MSI routes, irqfds, ioeventfds and the INTx level (the reasons
 * for this order: virtio_pci_persist.c). 0 or -errno. */
int virtio_pci_save(struct virtio_pci *vp, void *fdt);
int virtio_pci_restore(struct virtio_pci *vp, const void *fdt, int node);

/* Called on every interrupt the transport raises (MSI-X delivery or INTx level change), in addition to
 * delivering it to KVM. Tests use it where there is no KVM. */
void virtio_pci_set_irq_observer(struct virtio_pci *vp, virtio_pci_irq_observer_fn fn, void *opaque);

#endif

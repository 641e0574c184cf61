/* vp_harness.h - unit tests: a virtio device behind virtio-pci on a VM without KVM, checkpointed as production does. */
#ifndef FTVMM_TEST_VP_HARNESS_H
#define FTVMM_TEST_VP_HARNESS_H

/* Production checkpoints a virtio device only through the vm_device devices/platform.c registers,
 * virtio_pci_vm_device(); the device tests quiesce, save, restore and resume through the same one. */

#include <libfdt.h>
#include <pthread.h>

#include "../../devices/pci.h"
#include "../../devices/virtio_pci.h"
#include "test.h"

/* A VM with no KVM behind it: its fds are -1, so IRQ lines, MSI routes, irqfds and ioeventfds fail
 * quietly. Its buses, I/O loop and GSI table are real. */
static inline void vph_vm_init(struct vm *vm, uint8_t *ram, size_t size)
{
	memset(vm, 0, sizeof(*vm));
	vm->kvm_fd = vm->vm_fd = -1;
	CHECK_EQ(gmem_init_buffer(&vm->mem, ram, size), 0);
	bus_init(&vm->pio, "pio");
	bus_init(&vm->mmio, "mmio");
	CHECK_EQ(ioloop_init(&vm->io, "io"), 0);
	pthread_mutex_init(&vm->irq_lock, NULL);
	CHECK_EQ(vm_irq_routing_init(vm), 0);
}

static inline void vph_vm_fini(struct vm *vm)
{
	ioloop_destroy(&vm->io);
	bus_destroy(&vm->pio);
	bus_destroy(&vm->mmio);
	gmem_free(&vm->mem);
	free(vm->gsi_routes);
	pthread_mutex_destroy(&vm->irq_lock);
}

struct vp_harness {
	struct vm vm;
	struct pci_bus bus;
	struct virtio_pci *vp;
};

/*
 * Put d on a PCI bus behind virtio-pci, as the board does; the transport frees it with dev_destroy.
 * ram/size: the RAM the device already uses (the VM's view of it; the transport only reads its layout).
 * The transport's interrupt hooks are then swapped for the test's own (d->transport = ctx), so a test
 * counts every interrupt the device raises: the transport would merge them into one INTx level.
 * What restore does to MSI-X and INTx still runs in the transport.
 */
static inline void vph_attach(struct vp_harness *h, uint8_t *ram, size_t size, struct virtio_dev *d,
			      void (*dev_destroy)(struct virtio_dev *d), void *ctx,
			      void (*notify_queue)(struct virtio_dev *d, struct virtqueue *vq),
			      void (*notify_config)(struct virtio_dev *d))
{
	vph_vm_init(&h->vm, ram, size);
	CHECK_EQ(pci_bus_init(&h->bus, &h->vm), 0);
	h->vp = virtio_pci_add(&h->bus, d, dev_destroy);
	CHECK(h->vp != NULL);
	d->transport = ctx;
	d->notify_queue = notify_queue;
	d->notify_config = notify_config;
}

static inline struct vm_device *vph_vmdev(struct vp_harness *h)
{
	return virtio_pci_vm_device(h->vp);
}

/* The transport, the device (dev_destroy) and the VM. */
static inline void vph_fini(struct vp_harness *h)
{
	virtio_pci_destroy(h->vp);
	pci_bus_destroy(&h->bus);
	vph_vm_fini(&h->vm);
}

/* A checkpoint of one quiesced vm_device: a tree with one node named after it, plus one extra
 * property after the device's own when extra_name is set (tests craft states that way). */
static inline void *vph_save(struct vm_device *vd, size_t size, const char *extra_name, const void *extra,
			     int extra_len)
{
	void *fdt = calloc(1, size);
	CHECK(fdt != NULL);
	CHECK_EQ(fdt_create(fdt, (int)size), 0);
	CHECK_EQ(fdt_finish_reservemap(fdt), 0);
	CHECK_EQ(fdt_begin_node(fdt, ""), 0);
	CHECK_EQ(fdt_begin_node(fdt, vd->name), 0);
	CHECK_EQ(vd->save(vd->opaque, fdt), 0);
	if (extra_name)
		CHECK_EQ(fdt_property(fdt, extra_name, extra, extra_len), 0);
	CHECK_EQ(fdt_end_node(fdt), 0);
	CHECK_EQ(fdt_end_node(fdt), 0);
	CHECK_EQ(fdt_finish(fdt), 0);
	return fdt;
}

#endif

/* fuzz_virtio_pci.c - libFuzzer target: a guest's config-space, BAR and MSI-X table accesses to a virtio-pci function. */
#include <libfdt.h>
#include <linux/pci_regs.h>
#include <linux/virtio_ids.h>
#include <linux/virtio_pci.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "../../devices/virtio_pci.h"
#include "../../vmm/util.h"

int vm_irq_routing_init(struct vm *vm); /* vmm/irq.c: what vm_create would do, without KVM */

/*
 * Input: 12-byte accesses, one after another:
 *   [0]     bits 0-2: size (1, 2, 4, 8, 3, 1, 2, 4), bit 3: write, bits 4-5: 0/1 BAR 0, 2 config
 *           space, 3 the status register (a write of [4]), bit 6: kick the queues afterwards
 *   [1..3]  offset (BAR: mod 32 KiB + 16, so past its end too; config space: mod 264)
 *   [4..11] the value written (or the read buffer's fill)
 * One virtio-pci function with a do-nothing device of 2 queues (max 256) and 3 MSI-X vectors. Checked
 * beyond the sanitizers (ASan: no access outside the BAR's backing, the MSI-X table and PBA):
 *  - a read changes only the access size's bytes of the caller's buffer;
 *  - queue sizes stay powers of two within the max; queue and config MSI-X vectors are below the
 *    vector count or NO_VECTOR; the MSI-X capability still says 3 vectors, the identity is intact;
 *  - DRIVER_OK only after FEATURES_OK, which needs VERSION_1 and only offered features.
 */

#define NQ 2
#define NVEC (NQ + 1)
#define BAR_SIZE 0x8000

static void f_config_read(struct virtio_dev *d, uint32_t off, void *data, uint32_t len)
{
	(void)d;
	memset(data, (int)off, len);
}
static void f_config_write(struct virtio_dev *d, uint32_t off, const void *data, uint32_t len)
{
	(void)d, (void)off, (void)data, (void)len;
}
static void f_queue_notify(struct virtio_dev *d, unsigned q) { (void)d, (void)q; }
static int f_activate(struct virtio_dev *d) { (void)d; return 0; }
static void f_reset(struct virtio_dev *d) { (void)d; }
static const struct virtio_dev_ops ops = { .config_read = f_config_read, .config_write = f_config_write,
					   .queue_notify = f_queue_notify, .activate = f_activate, .reset = f_reset };

static uint8_t ram[1 << 16] __attribute__((aligned(4096)));
static struct vm vm;
static struct pci_bus bus;

static uint32_t cfg_rd(struct virtio_pci *vp, unsigned off, unsigned len)
{
	uint8_t b[4] = { 0 };
	pci_bus_cfg_access(&bus, vp->pci.slot, 0, off, b, len, false);
	return (uint32_t)b[0] | (uint32_t)b[1] << 8 | (uint32_t)b[2] << 16 | (uint32_t)b[3] << 24;
}

static void check(struct virtio_pci *vp, struct virtio_dev *d, unsigned msix_cap)
{
	uint8_t st = __atomic_load_n(&d->status, __ATOMIC_ACQUIRE);
	if ((st & VIRTIO_CONFIG_S_DRIVER_OK) && !(st & VIRTIO_CONFIG_S_FEATURES_OK))
		abort();
	if ((st & VIRTIO_CONFIG_S_FEATURES_OK) &&
	    (!(d->guest_features & 1ull << VIRTIO_F_VERSION_1) ||
	     (d->guest_features & ~(d->host_features | 1ull << VIRTIO_F_VERSION_1))))
		abort();
	uint16_t cv = __atomic_load_n(&d->config_msix_vector, __ATOMIC_RELAXED);
	if (cv >= NVEC && cv != VIRTIO_MSI_NO_VECTOR)
		abort();
	for (unsigned q = 0; q < NQ; q++) {
		const struct virtqueue *vq = &d->vqs[q];
		if (vq->size > vq->max_size || (vq->size & (vq->size - 1)) ||
		    (vq->msix_vector >= NVEC && vq->msix_vector != VIRTIO_MSI_NO_VECTOR))
			abort();
	}
	if (cfg_rd(vp, PCI_VENDOR_ID, 2) != 0x1af4 || cfg_rd(vp, PCI_DEVICE_ID, 2) != 0x1040 + VIRTIO_ID_BLOCK ||
	    (cfg_rd(vp, msix_cap + PCI_MSIX_FLAGS, 2) & PCI_MSIX_FLAGS_QSIZE) != NVEC - 1 || vp->msix.nvec != NVEC)
		abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const unsigned lens[8] = { 1, 2, 4, 8, 3, 1, 2, 4 };
	if (!vm.mem.host) {
		vm.kvm_fd = vm.vm_fd = -1;
		if (gmem_init_buffer(&vm.mem, ram, sizeof(ram)))
			abort();
		bus_init(&vm.pio, "pio");
		bus_init(&vm.mmio, "mmio");
		pthread_mutex_init(&vm.irq_lock, NULL);
		if (ioloop_init(&vm.io, "io") || vm_irq_routing_init(&vm) || pci_bus_init(&bus, &vm))
			abort();
	}
	/* a fresh function each run (the bus keeps slots: a new bus too) */
	struct virtio_dev d;
	if (virtio_dev_init(&d, "virtio-fake@0", VIRTIO_ID_BLOCK, NQ, 256, 8, &vm.mem, &ops, NULL))
		abort();
	d.host_features |= 1ull << 5 | 1ull << 33;
	struct virtio_pci *vp = virtio_pci_add(&bus, &d, NULL);
	if (!vp)
		abort();
	unsigned msix_cap = vp->msix.cap;
	for (; size >= 12; data += 12, size -= 12) {
		unsigned len = lens[data[0] & 7];
		bool wr = data[0] & 8;
		unsigned where = data[0] >> 4 & 3;
		uint32_t off = (uint32_t)data[1] | (uint32_t)data[2] << 8 | (uint32_t)data[3] << 16;
		uint8_t buf[16], orig[16];
		memset(buf, 0xa5, sizeof(buf));
		memcpy(buf, data + 4, 8);
		memcpy(orig, buf, sizeof(buf));
		if (where == 2) {
			len = len > 4 ? 4 : len;
			pci_bus_cfg_access(&bus, vp->pci.slot, 0, off % 264, buf, len, wr);
		} else {
			uint64_t at = where == 3 ? VIRTIO_PCI_COMMON_STATUS : off % (BAR_SIZE + 16);
			if (where == 3)
				len = 1, wr = true;
			bus_dispatch(&vm.mmio, vp->pci.bars[0].addr + at, buf, len, wr);
		}
		/* only the access's bytes may change (a write changes none of the caller's) */
		if (memcmp(buf + len, orig + len, sizeof(buf) - len) || (wr && memcmp(buf, orig, len)))
			abort();
		if (data[0] & 0x40) {
			d.notify_queue(&d, &d.vqs[data[4] % NQ]);
			d.notify_config(&d);
			ioloop_poll_once(&vm.io, 0);
		}
		check(vp, &d, msix_cap);
	}
	virtio_pci_destroy(vp);
	virtio_dev_destroy(&d);
	pci_bus_destroy(&bus);
	if (pci_bus_init(&bus, &vm))
		abort();
	return 0;
}

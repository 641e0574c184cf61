/* virtio_pci.c - virtio 1.x modern PCI transport: BAR 0 registers, capabilities, kicks, MSI-X/INTx, lifecycle. */
#include "virtio_pci.h"
#include "virtio_pci_int.h"

#include <errno.h>
#include <linux/pci_regs.h>
#include <linux/virtio_ids.h>
#include <linux/virtio_pci.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "../vmm/le.h"
#include "../vmm/util.h"
#include "msix.h"

#define ISR_QUEUE 0x1
#define ISR_CONFIG VIRTIO_PCI_ISR_CONFIG

/* ---- interrupts ---- */

static void observe(struct virtio_pci *vp, const struct virtio_pci_irq_event *ev)
{
	if (vp->irq_observer)
		vp->irq_observer(vp->irq_observer_opaque, ev);
}

/* Level-triggered, so the guest sees it until it reads the ISR. */
void vp_intx_update(struct virtio_pci *vp, bool force)
{
	bool want = !msix_enabled(&vp->msix) && !vp->intx_disabled && __atomic_load_n(&vp->vdev->isr, __ATOMIC_ACQUIRE);
	if (want == vp->intx_level && !force)
		return;
	vp->intx_level = want;
	unsigned gsi = pci_dev_irq_gsi(&vp->pci);
	vm_irq_line(vp->vm, gsi, want);
	observe(vp, &(struct virtio_pci_irq_event){ .msi = false, .gsi = gsi, .level = want });
}

/* Raise `isr_bit`'s interrupt: on MSI-X vector `vector` (none for NO_VECTOR), or on INTx. */
static void vp_raise(struct virtio_pci *vp, uint16_t vector, uint8_t isr_bit)
{
	pthread_mutex_lock(&vp->lock);
	if (!msix_notify(&vp->msix, vector)) {
		__atomic_fetch_or(&vp->vdev->isr, isr_bit, __ATOMIC_ACQ_REL);
		vp_intx_update(vp, false);
	}
	pthread_mutex_unlock(&vp->lock);
}

static void vp_notify_queue(struct virtio_dev *d, struct virtqueue *vq)
{
	vp_raise(d->transport, __atomic_load_n(&vq->msix_vector, __ATOMIC_RELAXED), ISR_QUEUE);
}

static void vp_notify_config(struct virtio_dev *d)
{
	vp_raise(d->transport, __atomic_load_n(&d->config_msix_vector, __ATOMIC_RELAXED), ISR_CONFIG);
}

static void msi_observed(void *opaque, unsigned vector, uint64_t addr, uint32_t data)
{
	observe(opaque, &(struct virtio_pci_irq_event){ .msi = true, .vector = vector, .addr = addr, .data = data });
}

void virtio_pci_set_irq_observer(struct virtio_pci *vp, virtio_pci_irq_observer_fn fn, void *opaque)
{
	pthread_mutex_lock(&vp->lock);
	vp->irq_observer = fn;
	vp->irq_observer_opaque = opaque;
	pthread_mutex_unlock(&vp->lock);
	msix_set_observer(&vp->msix, fn ? msi_observed : NULL, vp);
}

/* ---- kicks ---- */

static void queue_kick(struct vp_queue *q)
{
	struct virtio_pci *vp = q->vp;
	pthread_mutex_lock(&vp->qlock);
	if (vp->quiesced)
		q->pending = true;
	else if (vp->vdev->ops->queue_notify)
		vp->vdev->ops->queue_notify(vp->vdev, q->index);
	pthread_mutex_unlock(&vp->qlock);
}

static void queue_event(void *opaque, uint32_t events)
{
	struct vp_queue *q = opaque;
	uint64_t v;
	(void)events;
	if (read(q->efd, &v, sizeof(v)) == sizeof(v))
		queue_kick(q);
}

/* A kick that reached us as an MMIO exit (no ioeventfd, or through the PCI_CFG window): hand it to
 * the I/O thread through the same eventfd, so queue_notify always runs there. */
static void notify_write(struct virtio_pci *vp, uint64_t off)
{
	uint64_t q = off / VP_NOTIFY_MULT;
	if (q >= vp->nqueues)
		return;
	uint64_t one = 1;
	if (vp->qs[q].efd < 0 || write(vp->qs[q].efd, &one, sizeof(one)) != sizeof(one))
		queue_kick(&vp->qs[q]);
}

static void ioevent_attach(struct virtio_pci *vp, struct vp_queue *q, uint64_t bar_addr)
{
	uint64_t addr = bar_addr + VP_NOTIFY_OFF + (uint64_t)q->index * VP_NOTIFY_MULT;
	/* Length 0 matches any access width (KVM_CAP_IOEVENTFD_ANY_LENGTH); older hosts want Linux's 2. */
	uint32_t len = 0;
	int r = vm_ioeventfd(vp->vm, q->efd, addr, len, false, -1, true);
	if (r == -EINVAL) {
		len = 2;
		r = vm_ioeventfd(vp->vm, q->efd, addr, len, false, -1, true);
	}
	q->ioeventfd = r == 0;
	q->ioevent_addr = addr;
	q->ioevent_len = len;
}

static void ioevent_detach(struct virtio_pci *vp, struct vp_queue *q)
{
	if (q->ioeventfd)
		vm_ioeventfd(vp->vm, q->efd, q->ioevent_addr, q->ioevent_len, false, -1, false);
	q->ioeventfd = false;
}

static void vp_bar_map(struct pci_dev *dev, unsigned bar, uint64_t addr, bool map)
{
	struct virtio_pci *vp = dev->opaque;
	if (bar != 0)
		return;
	for (unsigned i = 0; i < vp->nqueues; i++) {
		ioevent_detach(vp, &vp->qs[i]);
		if (map && vp->qs[i].efd >= 0)
			ioevent_attach(vp, &vp->qs[i], addr);
	}
}

/* ---- common configuration ---- */

static struct virtqueue *selected_vq(struct virtio_pci *vp)
{
	return vp->qselect < vp->nqueues ? &vp->vdev->vqs[vp->qselect] : NULL;
}

static uint64_t offered_features(const struct virtio_dev *d)
{
	return d->host_features | 1ull << VIRTIO_F_VERSION_1;
}

/* The register file as the driver reads it. vdev->lock held. */
static void common_image(struct virtio_pci *vp, uint8_t *img)
{
	struct virtio_dev *d = vp->vdev;
	struct virtqueue *vq = selected_vq(vp);
	memset(img, 0, VP_COMMON_LEN);
	st_le32(img + VIRTIO_PCI_COMMON_DFSELECT, vp->dfselect);
	if (vp->dfselect < 2)
		st_le32(img + VIRTIO_PCI_COMMON_DF, (uint32_t)(offered_features(d) >> (32 * vp->dfselect)));
	st_le32(img + VIRTIO_PCI_COMMON_GFSELECT, vp->gfselect);
	if (vp->gfselect < 2)
		st_le32(img + VIRTIO_PCI_COMMON_GF, (uint32_t)(d->guest_features >> (32 * vp->gfselect)));
	st_le16(img + VIRTIO_PCI_COMMON_MSIX, d->config_msix_vector);
	st_le16(img + VIRTIO_PCI_COMMON_NUMQ, (uint16_t)vp->nqueues);
	img[VIRTIO_PCI_COMMON_STATUS] = __atomic_load_n(&d->status, __ATOMIC_ACQUIRE);
	img[VIRTIO_PCI_COMMON_CFGGENERATION] = (uint8_t)d->config_generation;
	st_le16(img + VIRTIO_PCI_COMMON_Q_SELECT, vp->qselect);
	if (!vq) /* an absent queue reads size 0, which is how the driver learns the queue count */
		return;
	st_le16(img + VIRTIO_PCI_COMMON_Q_SIZE, vq->size);
	st_le16(img + VIRTIO_PCI_COMMON_Q_MSIX, vq->msix_vector);
	st_le16(img + VIRTIO_PCI_COMMON_Q_ENABLE, vq->ready);
	st_le16(img + VIRTIO_PCI_COMMON_Q_NOFF, vq->notify_off);
	st_le32(img + VIRTIO_PCI_COMMON_Q_DESCLO, (uint32_t)vq->desc_gpa);
	st_le32(img + VIRTIO_PCI_COMMON_Q_DESCHI, (uint32_t)(vq->desc_gpa >> 32));
	st_le32(img + VIRTIO_PCI_COMMON_Q_AVAILLO, (uint32_t)vq->avail_gpa);
	st_le32(img + VIRTIO_PCI_COMMON_Q_AVAILHI, (uint32_t)(vq->avail_gpa >> 32));
	st_le32(img + VIRTIO_PCI_COMMON_Q_USEDLO, (uint32_t)vq->used_gpa);
	st_le32(img + VIRTIO_PCI_COMMON_Q_USEDHI, (uint32_t)(vq->used_gpa >> 32));
}

static void set_lo(uint64_t *r, uint32_t v)
{
	*r = (*r & ~0xffffffffull) | v;
}

static void set_hi(uint64_t *r, uint32_t v)
{
	*r = (*r & 0xffffffffull) | (uint64_t)v << 32;
}

/* A vector the driver may use, or NO_VECTOR: reading back NO_VECTOR is how it learns of a refusal. */
static uint16_t checked_vector(const struct virtio_pci *vp, uint32_t v)
{
	return v < vp->msix.nvec ? (uint16_t)v : VIRTIO_MSI_NO_VECTOR;
}

static void status_write(struct virtio_pci *vp, uint8_t val)
{
	struct virtio_dev *d = vp->vdev;
	uint8_t old = __atomic_load_n(&d->status, __ATOMIC_ACQUIRE);
	if (val == 0) {
		virtio_dev_reset(d);
		pthread_mutex_lock(&vp->lock);
		vp_intx_update(vp, false); /* the reset cleared the ISR */
		pthread_mutex_unlock(&vp->lock);
		return;
	}
	/* Bits only accumulate until a reset; NEEDS_RESET is the device's to set. */
	uint8_t nv = (uint8_t)((old | val) & ~VIRTIO_CONFIG_S_NEEDS_RESET) | (old & VIRTIO_CONFIG_S_NEEDS_RESET);
	if ((nv & VIRTIO_CONFIG_S_FEATURES_OK) && !(old & VIRTIO_CONFIG_S_FEATURES_OK)) {
		/* A modern-only transport needs VERSION_1; anything never offered is refused. */
		if ((d->guest_features & ~offered_features(d)) || !(d->guest_features & (1ull << VIRTIO_F_VERSION_1)))
			nv &= (uint8_t)~VIRTIO_CONFIG_S_FEATURES_OK;
	}
	bool start = (nv & VIRTIO_CONFIG_S_DRIVER_OK) && !(old & VIRTIO_CONFIG_S_DRIVER_OK);
	if (start && !(nv & VIRTIO_CONFIG_S_FEATURES_OK)) {
		nv &= (uint8_t)~VIRTIO_CONFIG_S_DRIVER_OK; /* skipped negotiation: never start the device */
		start = false;
	}
	__atomic_store_n(&d->status, nv, __ATOMIC_RELEASE);
	if (start && d->ops->activate && d->ops->activate(d) < 0)
		virtio_dev_set_needs_reset(d);
}

static void common_field_write(struct virtio_pci *vp, unsigned off, uint32_t val)
{
	struct virtio_dev *d = vp->vdev;
	struct virtqueue *vq = selected_vq(vp);
	/* Queue registers are frozen once the queue is enabled (until reset). */
	bool qw = vq && !vq->ready;
	switch (off) {
	case VIRTIO_PCI_COMMON_DFSELECT:
		vp->dfselect = val;
		break;
	case VIRTIO_PCI_COMMON_GFSELECT:
		vp->gfselect = val;
		break;
	case VIRTIO_PCI_COMMON_GF:
		if (vp->gfselect < 2 && !(__atomic_load_n(&d->status, __ATOMIC_ACQUIRE) & VIRTIO_CONFIG_S_FEATURES_OK)) {
			if (vp->gfselect == 0)
				d->guest_features = (d->guest_features & ~0xffffffffull) | val;
			else
				d->guest_features = (d->guest_features & 0xffffffffull) | (uint64_t)val << 32;
		}
		break;
	case VIRTIO_PCI_COMMON_MSIX:
		__atomic_store_n(&d->config_msix_vector, checked_vector(vp, val), __ATOMIC_RELAXED);
		break;
	case VIRTIO_PCI_COMMON_STATUS:
		status_write(vp, (uint8_t)val);
		break;
	case VIRTIO_PCI_COMMON_Q_SELECT:
		vp->qselect = (uint16_t)val;
		break;
	case VIRTIO_PCI_COMMON_Q_SIZE:
		if (qw && val && !(val & (val - 1)) && val <= vq->max_size)
			vq->size = (uint16_t)val;
		break;
	case VIRTIO_PCI_COMMON_Q_MSIX:
		if (qw)
			__atomic_store_n(&vq->msix_vector, checked_vector(vp, val), __ATOMIC_RELAXED);
		break;
	case VIRTIO_PCI_COMMON_Q_ENABLE:
		if (qw && val == 1)
			__atomic_store_n(&vq->ready, true, __ATOMIC_RELEASE);
		break;
	case VIRTIO_PCI_COMMON_Q_DESCLO: if (qw) set_lo(&vq->desc_gpa, val); break;
	case VIRTIO_PCI_COMMON_Q_DESCHI: if (qw) set_hi(&vq->desc_gpa, val); break;
	case VIRTIO_PCI_COMMON_Q_AVAILLO: if (qw) set_lo(&vq->avail_gpa, val); break;
	case VIRTIO_PCI_COMMON_Q_AVAILHI: if (qw) set_hi(&vq->avail_gpa, val); break;
	case VIRTIO_PCI_COMMON_Q_USEDLO: if (qw) set_lo(&vq->used_gpa, val); break;
	case VIRTIO_PCI_COMMON_Q_USEDHI: if (qw) set_hi(&vq->used_gpa, val); break;
	default: /* read-only: device_feature, num_queues, config_generation, queue_notify_off */
		break;
	}
}

static const struct { uint8_t off, len; } common_fields[] = {
	{ VIRTIO_PCI_COMMON_DFSELECT, 4 }, { VIRTIO_PCI_COMMON_DF, 4 }, { VIRTIO_PCI_COMMON_GFSELECT, 4 },
	{ VIRTIO_PCI_COMMON_GF, 4 }, { VIRTIO_PCI_COMMON_MSIX, 2 }, { VIRTIO_PCI_COMMON_NUMQ, 2 },
	{ VIRTIO_PCI_COMMON_STATUS, 1 }, { VIRTIO_PCI_COMMON_CFGGENERATION, 1 }, { VIRTIO_PCI_COMMON_Q_SELECT, 2 },
	{ VIRTIO_PCI_COMMON_Q_SIZE, 2 }, { VIRTIO_PCI_COMMON_Q_MSIX, 2 }, { VIRTIO_PCI_COMMON_Q_ENABLE, 2 },
	{ VIRTIO_PCI_COMMON_Q_NOFF, 2 }, { VIRTIO_PCI_COMMON_Q_DESCLO, 4 }, { VIRTIO_PCI_COMMON_Q_DESCHI, 4 },
	{ VIRTIO_PCI_COMMON_Q_AVAILLO, 4 }, { VIRTIO_PCI_COMMON_Q_AVAILHI, 4 }, { VIRTIO_PCI_COMMON_Q_USEDLO, 4 },
	{ VIRTIO_PCI_COMMON_Q_USEDHI, 4 },
};

/* Any width at any offset: reads come from the register image; a write is merged into the image of
 * every field it touches, and each touched field is then written whole, in address order. */
static void common_access(struct virtio_pci *vp, unsigned off, uint8_t *data, unsigned len, bool is_write)
{
	uint8_t img[VP_COMMON_LEN + 8];
	pthread_mutex_lock(&vp->vdev->lock);
	common_image(vp, img);
	if (!is_write) {
		for (unsigned i = 0; i < len; i++)
			data[i] = off + i < VP_COMMON_LEN ? img[off + i] : 0;
	} else {
		for (unsigned f = 0; f < ARRAY_SIZE(common_fields); f++) {
			unsigned fo = common_fields[f].off, fl = common_fields[f].len;
			if (off >= fo + fl || fo >= off + len)
				continue;
			for (unsigned i = 0; i < fl; i++)
				if (fo + i >= off && fo + i < off + len)
					img[fo + i] = data[fo + i - off];
			common_field_write(vp, fo, (uint32_t)ld_le(img + fo, fl));
		}
	}
	pthread_mutex_unlock(&vp->vdev->lock);
}

/* ---- ISR, device config, MSI-X table and PBA ---- */

static void isr_read(struct virtio_pci *vp, uint64_t off, uint8_t *data, unsigned len)
{
	memset(data, 0, len);
	if (off != 0)
		return;
	/* Read-to-clear, and the read is what deasserts INTx. */
	pthread_mutex_lock(&vp->lock);
	data[0] = __atomic_exchange_n(&vp->vdev->isr, 0, __ATOMIC_ACQ_REL);
	vp_intx_update(vp, false);
	pthread_mutex_unlock(&vp->lock);
}

static void device_cfg_access(struct virtio_pci *vp, uint64_t off, uint8_t *data, unsigned len, bool is_write)
{
	struct virtio_dev *d = vp->vdev;
	bool in = off < d->config_len && d->config_len - off >= len;
	if (!is_write)
		memset(data, 0, len);
	if (!in)
		return;
	pthread_mutex_lock(&d->lock);
	if (!is_write && d->ops->config_read)
		d->ops->config_read(d, (uint32_t)off, data, len);
	else if (is_write && d->ops->config_write)
		d->ops->config_write(d, (uint32_t)off, data, len);
	pthread_mutex_unlock(&d->lock);
}

static void vp_bar_access(void *opaque, uint64_t off, uint8_t *data, uint32_t len, bool is_write)
{
	struct virtio_pci *vp = opaque;
	if (off < VP_ISR_OFF) {
		common_access(vp, (unsigned)off, data, len, is_write);
	} else if (off < VP_DEVICE_OFF) {
		if (!is_write)
			isr_read(vp, off - VP_ISR_OFF, data, len);
	} else if (off < VP_NOTIFY_OFF) {
		device_cfg_access(vp, off - VP_DEVICE_OFF, data, len, is_write);
	} else if (off < VP_MSIX_TABLE_OFF) {
		if (is_write)
			notify_write(vp, off - VP_NOTIFY_OFF);
		else
			memset(data, 0, len);
	} else if (off < vp->pba_off) {
		msix_table_access(&vp->msix, off - VP_MSIX_TABLE_OFF, data, len, is_write);
	} else {
		msix_pba_access(&vp->msix, off - vp->pba_off, data, len, is_write);
	}
}

/* ---- PCI config space hooks ---- */

static unsigned cfg_cap_off(struct virtio_pci *vp)
{
	/* The PCI_CFG window is the last capability we add. */
	return vp->pci.cap_last;
}

/* The PCI_CFG window: an access to BAR `bar` at `offset` of `length` bytes, through config space. */
static bool cfg_window(struct virtio_pci *vp, uint32_t *offset, uint32_t *length)
{
	const uint8_t *c = vp->pci.cfg + cfg_cap_off(vp);
	*offset = ld_le32(c + offsetof(struct virtio_pci_cap, offset));
	*length = ld_le32(c + offsetof(struct virtio_pci_cap, length));
	return c[offsetof(struct virtio_pci_cap, bar)] == 0 && (*length == 1 || *length == 2 || *length == 4) &&
	       *offset % *length == 0;
}

static bool touches(unsigned off, unsigned len, unsigned start, unsigned n)
{
	return off < start + n && start < off + len;
}

static void vp_cfg_read(struct pci_dev *dev, unsigned off, unsigned len)
{
	struct virtio_pci *vp = dev->opaque;
	if (touches(off, len, PCI_STATUS, 1)) {
		pthread_mutex_lock(&vp->lock);
		if (vp->intx_level)
			dev->cfg[PCI_STATUS] |= PCI_STATUS_INTERRUPT;
		else
			dev->cfg[PCI_STATUS] &= (uint8_t)~PCI_STATUS_INTERRUPT;
		pthread_mutex_unlock(&vp->lock);
	}
	unsigned data = cfg_cap_off(vp) + offsetof(struct virtio_pci_cfg_cap, pci_cfg_data);
	uint32_t o, l;
	if (touches(off, len, data, 4) && cfg_window(vp, &o, &l))
		pci_dev_bar_access(dev, 0, o, dev->cfg + data, l, false);
}

static void vp_cfg_write(struct pci_dev *dev, unsigned off, unsigned len)
{
	struct virtio_pci *vp = dev->opaque;
	unsigned data = cfg_cap_off(vp) + offsetof(struct virtio_pci_cfg_cap, pci_cfg_data);
	uint32_t o, l;
	if (touches(off, len, data, 4) && cfg_window(vp, &o, &l)) {
		uint8_t buf[4];
		memcpy(buf, dev->cfg + data, l);
		pci_dev_bar_access(dev, 0, o, buf, l, true);
	}
	if (touches(off, len, PCI_COMMAND, 2) || touches(off, len, vp->msix.cap + PCI_MSIX_FLAGS, 2)) {
		pthread_mutex_lock(&vp->lock);
		vp->intx_disabled = dev->cfg[PCI_COMMAND + 1] & (PCI_COMMAND_INTX_DISABLE >> 8);
		msix_cfg_update(&vp->msix, dev);
		vp_intx_update(vp, false);
		pthread_mutex_unlock(&vp->lock);
	}
}

static const struct pci_dev_ops vp_pci_ops = {
	.cfg_read = vp_cfg_read,
	.cfg_write = vp_cfg_write,
	.bar_map = vp_bar_map,
};

static int add_virtio_cap(struct virtio_pci *vp, uint8_t type, uint32_t off, uint32_t len, unsigned caplen,
			  uint32_t extra, const void *wmask)
{
	uint8_t c[sizeof(struct virtio_pci_cfg_cap)] = { 0 };
	c[0] = PCI_CAP_ID_VNDR;
	c[2] = (uint8_t)caplen;
	c[3] = type;
	c[4] = 0; /* BAR 0 */
	st_le32(c + offsetof(struct virtio_pci_cap, offset), off);
	st_le32(c + offsetof(struct virtio_pci_cap, length), len);
	if (caplen > sizeof(struct virtio_pci_cap))
		st_le32(c + sizeof(struct virtio_pci_cap), extra);
	return pci_dev_add_cap(&vp->pci, c, caplen, wmask);
}

static int build_config_space(struct virtio_pci *vp)
{
	struct virtio_dev *d = vp->vdev;
	uint32_t class_code;
	switch (d->device_id) {
	case VIRTIO_ID_BLOCK: class_code = 0x018000; break; /* mass storage, other */
	case VIRTIO_ID_NET: class_code = 0x020000; break;   /* ethernet */
	default: class_code = 0xff0000; break;
	}
	/* Subsystem device = virtio device id, as QEMU does; revision 1 marks a modern-only device. */
	pci_dev_init(&vp->pci, vp->name, PCI_VENDOR_ID_REDHAT_QUMRANET, (uint16_t)(VIRTIO_PCI_DEVICE_ID_BASE + d->device_id),
		     class_code, 1, PCI_VENDOR_ID_REDHAT_QUMRANET, (uint16_t)d->device_id);
	vp->pci.ops = &vp_pci_ops;
	vp->pci.opaque = vp;

	int r = msix_add_cap(&vp->msix, &vp->pci, 0, VP_MSIX_TABLE_OFF, vp->pba_off);
	r = r < 0 ? r : add_virtio_cap(vp, VIRTIO_PCI_CAP_COMMON_CFG, VP_COMMON_OFF, VP_COMMON_LEN, 16, 0, NULL);
	r = r < 0 ? r : add_virtio_cap(vp, VIRTIO_PCI_CAP_ISR_CFG, VP_ISR_OFF, 1, 16, 0, NULL);
	if (d->config_len)
		r = r < 0 ? r : add_virtio_cap(vp, VIRTIO_PCI_CAP_DEVICE_CFG, VP_DEVICE_OFF, d->config_len, 16, 0, NULL);
	r = r < 0 ? r : add_virtio_cap(vp, VIRTIO_PCI_CAP_NOTIFY_CFG, VP_NOTIFY_OFF, vp->nqueues * VP_NOTIFY_MULT,
				       sizeof(struct virtio_pci_notify_cap), VP_NOTIFY_MULT, NULL);
	/* PCI_CFG: bar, offset, length and the data window are the driver's to write. */
	uint8_t w[sizeof(struct virtio_pci_cfg_cap)] = { 0 };
	w[offsetof(struct virtio_pci_cap, bar)] = 0xff;
	memset(w + offsetof(struct virtio_pci_cap, offset), 0xff, 8);
	memset(w + offsetof(struct virtio_pci_cfg_cap, pci_cfg_data), 0xff, 4);
	r = r < 0 ? r : add_virtio_cap(vp, VIRTIO_PCI_CAP_PCI_CFG, 0, 0, sizeof(struct virtio_pci_cfg_cap), 0, w);
	if (r < 0)
		return r;
	return pci_dev_add_bar(&vp->pci, 0, vp->bar_size, vp_bar_access, vp);
}

/* ---- lifecycle ---- */

/* Quiesce and restore: kicks arriving now are marked pending, not handed to the device. */
void vp_hold_kicks(struct virtio_pci *vp)
{
	pthread_mutex_lock(&vp->qlock); /* waits out a queue_notify in progress */
	vp->quiesced = true;
	pthread_mutex_unlock(&vp->qlock);
}

static int vp_quiesce(void *opaque)
{
	struct virtio_pci *vp = opaque;
	vp_hold_kicks(vp);
	return vp->vdev->ops->quiesce ? vp->vdev->ops->quiesce(vp->vdev) : 0;
}

static void vp_resume(void *opaque)
{
	struct virtio_pci *vp = opaque;
	if (vp->vdev->ops->resume)
		vp->vdev->ops->resume(vp->vdev);
	pthread_mutex_lock(&vp->qlock);
	vp->quiesced = false;
	for (unsigned i = 0; i < vp->nqueues; i++) {
		/* Kicks that arrived meanwhile go back through the I/O thread. */
		if (vp->qs[i].pending) {
			vp->qs[i].pending = false;
			uint64_t one = 1;
			if (write(vp->qs[i].efd, &one, sizeof(one)) != sizeof(one))
				warnx("%s: cannot replay a kick of queue %u", vp->name, i);
		}
	}
	pthread_mutex_unlock(&vp->qlock);
}

/* The vm_device's save, restore and destroy hooks: the public functions, with the opaque pointer. */
static int vp_vmdev_save(void *opaque, void *fdt)
{
	return virtio_pci_save(opaque, fdt);
}

static int vp_vmdev_restore(void *opaque, const void *fdt, int node)
{
	return virtio_pci_restore(opaque, fdt, node);
}

static void vp_vmdev_destroy(void *opaque)
{
	virtio_pci_destroy(opaque);
}

struct vm_device *virtio_pci_vm_device(struct virtio_pci *vp)
{
	return &vp->vmdev;
}

static uint32_t pow2_ceil(uint32_t v)
{
	uint32_t p = 1;
	while (p < v)
		p <<= 1;
	return p;
}

struct virtio_pci *virtio_pci_add(struct pci_bus *bus, struct virtio_dev *d, void (*dev_destroy)(struct virtio_dev *d))
{
	if (!d || !d->ops || !d->nqueues || d->nqueues > VP_MAX_QUEUES || d->config_len > VP_DEVICE_MAX) {
		errno = EINVAL;
		return NULL;
	}
	struct virtio_pci *vp = calloc(1, sizeof(*vp));
	if (!vp)
		return NULL;
	vp->vm = bus->vm;
	vp->vdev = d;
	vp->nqueues = d->nqueues;
	unsigned nvec = d->nqueues + 1; /* one per queue plus config changes */
	vp->pba_off = VP_MSIX_TABLE_OFF + ALIGN_UP(msix_table_bytes(nvec), 0x1000u);
	vp->bar_size = pow2_ceil(vp->pba_off + ALIGN_UP(msix_pba_bytes(nvec), 0x1000u));
	pthread_mutex_init(&vp->lock, NULL);
	pthread_mutex_init(&vp->qlock, NULL);
	int r = msix_init(&vp->msix, vp->vm, nvec);
	vp->qs = calloc(vp->nqueues, sizeof(*vp->qs));
	if (r || !vp->qs) {
		r = r ?: -ENOMEM;
		goto fail;
	}
	for (unsigned i = 0; i < vp->nqueues; i++)
		vp->qs[i] = (struct vp_queue){ .vp = vp, .index = i, .efd = -1 };
	for (unsigned i = 0; i < vp->nqueues; i++) {
		struct vp_queue *q = &vp->qs[i];
		q->efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
		if (q->efd < 0) {
			r = -errno;
			goto fail;
		}
		r = ioloop_add(&vp->vm->io, q->efd, EPOLLIN, queue_event, q);
		if (r < 0) {
			close(q->efd);
			q->efd = -1;
			goto fail;
		}
	}
	snprintf(vp->name, sizeof(vp->name), "virtio-pci"); /* the slot is known once on the bus */
	r = build_config_space(vp);
	if (r < 0)
		goto fail;
	d->transport = vp;
	d->notify_queue = vp_notify_queue;
	d->notify_config = vp_notify_config;
	r = pci_bus_add_dev(bus, &vp->pci);
	if (r) {
		d->notify_queue = NULL;
		d->notify_config = NULL;
		d->transport = NULL;
		goto fail;
	}
	snprintf(vp->name, sizeof(vp->name), "virtio-pci@%x", vp->pci.slot);
	vp->dev_destroy = dev_destroy;
	vp->vmdev = (struct vm_device){ .name = d->name ? d->name : vp->name, .opaque = vp, .quiesce = vp_quiesce,
					.resume = vp_resume, .save = vp_vmdev_save,
					.restore = vp_vmdev_restore, .destroy = vp_vmdev_destroy };
	return vp;
fail:
	virtio_pci_destroy(vp);
	errno = -r;
	return NULL;
}

void virtio_pci_destroy(struct virtio_pci *vp)
{
	if (!vp)
		return;
	/* Unplugging detaches the ioeventfds (bar_map hook) before the BAR leaves the MMIO bus. The
	 * device is not touched until dev_destroy. */
	if (vp->pci.bus)
		pci_bus_remove_dev(vp->pci.bus, &vp->pci);
	for (unsigned i = 0; vp->qs && i < vp->nqueues; i++) {
		if (vp->qs[i].efd < 0)
			continue;
		ioevent_detach(vp, &vp->qs[i]);
		ioloop_del(&vp->vm->io, vp->qs[i].efd);
		close(vp->qs[i].efd);
	}
	msix_destroy(&vp->msix);
	free(vp->qs);
	pthread_mutex_destroy(&vp->qlock);
	pthread_mutex_destroy(&vp->lock);
	void (*dev_destroy)(struct virtio_dev *) = vp->dev_destroy;
	struct virtio_dev *d = vp->vdev;
	free(vp);
	if (dev_destroy)
		dev_destroy(d);
}

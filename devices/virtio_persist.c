/* virtio_persist.c - the common virtio state of a checkpoint: features, status, ISR, config vector, queues. */
#include "virtio.h"
#include "virtio_int.h"

#include <errno.h>
#include <libfdt.h>
#include <stdio.h>
#include <stdlib.h>

#include "../vmm/fdt_prop.h"
#include "../vmm/util.h"

/*
 * Transport-neutral: the transport saves these properties beside its own and the device's, and
 * restores them under d->lock once its own part is back (virtio_pci_persist.c has the whole order).
 * Restore is all or nothing: the device-wide fields are checked against this device first (same
 * device type, queue count and offered features; nothing negotiated that was never offered; only
 * status bits the spec defines), then every queue is parsed into a copy, and only then is anything
 * replaced. Queue progress (last_avail, used_idx) comes back exactly; the EVENT_IDX bookkeeping is not
 * saved, so the first notify decision after a restore interrupts unconditionally, which is safe.
 */

#define STATUS_KNOWN                                                                                \
	(VIRTIO_CONFIG_S_ACKNOWLEDGE | VIRTIO_CONFIG_S_DRIVER | VIRTIO_CONFIG_S_DRIVER_OK |        \
	 VIRTIO_CONFIG_S_FEATURES_OK | VIRTIO_CONFIG_S_NEEDS_RESET | VIRTIO_CONFIG_S_FAILED)

#define VIRTIO_STATE_VERSION 1
enum { VQ_SIZE, VQ_READY, VQ_MSIX, VQ_NOTIFY_OFF, VQ_LAST_AVAIL, VQ_USED_IDX, VQ_BROKEN,
       VQ_DESC_HI, VQ_DESC_LO, VQ_AVAIL_HI, VQ_AVAIL_LO, VQ_USED_HI, VQ_USED_LO, VQ_NCELLS };

int virtio_dev_save(struct virtio_dev *d, void *fdt)
{
	int r = 0;
	r = r ?: fdt_property_u32(fdt, "virtio-version", VIRTIO_STATE_VERSION);
	r = r ?: fdt_property_u32(fdt, "virtio-device-id", d->device_id);
	r = r ?: fdt_property_u64(fdt, "virtio-host-features", d->host_features);
	r = r ?: fdt_property_u64(fdt, "virtio-guest-features", d->guest_features);
	r = r ?: fdt_property_u32(fdt, "virtio-status", __atomic_load_n(&d->status, __ATOMIC_RELAXED));
	r = r ?: fdt_property_u32(fdt, "virtio-isr", d->isr);
	r = r ?: fdt_property_u32(fdt, "virtio-config-vector", d->config_msix_vector);
	r = r ?: fdt_property_u32(fdt, "virtio-config-generation", d->config_generation);
	r = r ?: fdt_property_u32(fdt, "virtio-nqueues", d->nqueues);
	for (unsigned i = 0; i < d->nqueues && !r; i++) {
		const struct virtqueue *vq = &d->vqs[i];
		fdt32_t c[VQ_NCELLS] = {
			[VQ_SIZE] = cpu_to_fdt32(vq->size),
			[VQ_READY] = cpu_to_fdt32(vq->ready),
			[VQ_MSIX] = cpu_to_fdt32(vq->msix_vector),
			[VQ_NOTIFY_OFF] = cpu_to_fdt32(vq->notify_off),
			[VQ_LAST_AVAIL] = cpu_to_fdt32(vq->last_avail),
			[VQ_USED_IDX] = cpu_to_fdt32(vq->used_idx),
			[VQ_BROKEN] = cpu_to_fdt32(vq->broken),
			[VQ_DESC_HI] = cpu_to_fdt32(vq->desc_gpa >> 32),
			[VQ_DESC_LO] = cpu_to_fdt32((uint32_t)vq->desc_gpa),
			[VQ_AVAIL_HI] = cpu_to_fdt32(vq->avail_gpa >> 32),
			[VQ_AVAIL_LO] = cpu_to_fdt32((uint32_t)vq->avail_gpa),
			[VQ_USED_HI] = cpu_to_fdt32(vq->used_gpa >> 32),
			[VQ_USED_LO] = cpu_to_fdt32((uint32_t)vq->used_gpa),
		};
		char name[32];
		snprintf(name, sizeof(name), "virtio-vq%u", i);
		r = fdt_property(fdt, name, c, sizeof(c));
	}
	return r ? -EINVAL : 0;
}

static int restore_fail(struct virtio_dev *d, const char *what)
{
	warnx("virtio %s: restore: %s", d->name ? d->name : "?", what);
	return -EINVAL;
}

/* The saved device-wide fields this device takes over. */
struct virtio_saved {
	uint32_t status, isr, cfgvec, cfggen;
	uint64_t guestf;
};

static int parse_common(struct virtio_dev *d, const void *fdt, int node, struct virtio_saved *s)
{
	uint32_t version, devid, nq;
	uint64_t hostf;

	if (fdtp_u32(fdt, node, "virtio-version", &version) || version != VIRTIO_STATE_VERSION)
		return restore_fail(d, "missing or unsupported virtio-version");
	if (fdtp_u32(fdt, node, "virtio-device-id", &devid) || fdtp_u64(fdt, node, "virtio-host-features", &hostf) ||
	    fdtp_u64(fdt, node, "virtio-guest-features", &s->guestf) ||
	    fdtp_u32(fdt, node, "virtio-status", &s->status) || fdtp_u32(fdt, node, "virtio-isr", &s->isr) ||
	    fdtp_u32(fdt, node, "virtio-config-vector", &s->cfgvec) ||
	    fdtp_u32(fdt, node, "virtio-config-generation", &s->cfggen) || fdtp_u32(fdt, node, "virtio-nqueues", &nq))
		return restore_fail(d, "missing or malformed property");
	if (devid != d->device_id || nq != d->nqueues)
		return restore_fail(d, "device type or queue count differs");
	if (hostf != d->host_features)
		return restore_fail(d, "offered features differ from the saved device");
	if (s->guestf & ~hostf)
		return restore_fail(d, "negotiated features were never offered");
	if ((s->status & ~STATUS_KNOWN) || s->isr > 0xff || s->cfgvec > 0xffff)
		return restore_fail(d, "bad status, isr or config vector");
	return 0;
}

/* Queue i from its "virtio-vq<i>" cells into *vq, a copy of d->vqs[i] tied to tmp (the device as it
 * will be: restored features, same memory). */
static int parse_queue(struct virtio_dev *d, struct virtio_dev *tmp, const void *fdt, int node, unsigned i,
		       struct virtqueue *vq)
{
	char name[32];
	fdt32_t c[VQ_NCELLS];
	uint32_t v[VQ_NCELLS];
	snprintf(name, sizeof(name), "virtio-vq%u", i);
	if (fdtp_copy(fdt, node, name, c, sizeof(c)))
		return restore_fail(d, "missing or malformed queue property");
	for (unsigned k = 0; k < VQ_NCELLS; k++)
		v[k] = fdt32_to_cpu(c[k]);
	if (v[VQ_SIZE] > 0xffff || v[VQ_READY] > 1 || v[VQ_MSIX] > 0xffff || v[VQ_NOTIFY_OFF] > 0xffff ||
	    v[VQ_LAST_AVAIL] > 0xffff || v[VQ_USED_IDX] > 0xffff || v[VQ_BROKEN] > 1)
		return restore_fail(d, "queue state out of range");
	*vq = d->vqs[i];
	vq->dev = tmp;
	vq->size = (uint16_t)v[VQ_SIZE];
	vq->ready = v[VQ_READY];
	vq->msix_vector = (uint16_t)v[VQ_MSIX];
	vq->notify_off = (uint16_t)v[VQ_NOTIFY_OFF];
	vq->last_avail = (uint16_t)v[VQ_LAST_AVAIL];
	vq->used_idx = (uint16_t)v[VQ_USED_IDX];
	vq->broken = v[VQ_BROKEN];
	vq->desc_gpa = (uint64_t)v[VQ_DESC_HI] << 32 | v[VQ_DESC_LO];
	vq->avail_gpa = (uint64_t)v[VQ_AVAIL_HI] << 32 | v[VQ_AVAIL_LO];
	vq->used_gpa = (uint64_t)v[VQ_USED_HI] << 32 | v[VQ_USED_LO];
	vq->signalled_used = 0;
	vq->signalled_used_valid = false;
	/* Rings that fail the walker's checks restore as broken, not as an error: a guest may enable a
	 * bogus queue, and that must not make its checkpoints unrestorable. The state is then exactly
	 * what the live device would reach at its next pop. */
	if (vq->ready && !vq->broken && vq_rings_check(vq)) {
		warnx("virtio %s: restore: queue %u rings fail the checks; restored as broken", d->name ? d->name : "?",
		      i);
		vq->broken = true;
	}
	return 0;
}

int virtio_dev_restore(struct virtio_dev *d, const void *fdt, int node)
{
	struct virtio_saved s;
	int r = parse_common(d, fdt, node, &s);
	if (r)
		return r;
	struct virtqueue *qs = calloc(d->nqueues, sizeof(*qs));
	if (!qs)
		return -ENOMEM;
	struct virtio_dev tmp = *d;
	tmp.guest_features = s.guestf;
	for (unsigned i = 0; i < d->nqueues && !r; i++)
		r = parse_queue(d, &tmp, fdt, node, i, &qs[i]);
	if (!r) {
		for (unsigned i = 0; i < d->nqueues; i++) {
			qs[i].dev = d;
			d->vqs[i] = qs[i];
		}
		d->guest_features = s.guestf;
		__atomic_store_n(&d->status, (uint8_t)s.status, __ATOMIC_RELAXED);
		d->isr = (uint8_t)s.isr;
		d->config_msix_vector = (uint16_t)s.cfgvec;
		d->config_generation = s.cfggen;
	}
	free(qs);
	return r;
}

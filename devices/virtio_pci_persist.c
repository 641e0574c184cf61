/* virtio_pci_persist.c - the virtio-pci transport's checkpoint half: config space, selectors, MSI-X, the order. */
#include "virtio_pci_int.h"

#include <errno.h>
#include <libfdt.h>
#include <linux/pci_regs.h>
#include <stdlib.h>
#include <string.h>

#include "../vmm/fdt_prop.h"
#include "../vmm/util.h"

/*
 * One node per device holds three layers, saved in this order: the transport (PCI config space with
 * BAR and command, common-config selectors, notify offsets, MSI-X table and PBA), the common virtio
 * state (virtio_dev_save: features, status, queues) and the device's own properties (d->ops->save).
 *
 * Restore, in the order it runs and why:
 *  1. Hold kicks, as quiesce does: guest memory may not be restored yet, and a kick handed on now
 *     would have the device walk rings that are not there. Resume replays them.
 *  2. Check the transport's properties (present, exact sizes, same version, vector and queue count,
 *     our fixed notify layout, MSI-X sizes), then the device half (d->ops->restore_check), before
 *     anything changes: a refusal changes no state (kicks stay held until resume).
 *  3. Config space: refuses another device's read-only bits, and re-maps BAR 0 (with its ioeventfds,
 *     through the bar_map hook) where the snapshot had it.
 *  4. The common virtio state and the selectors, under d->lock so no register access sees half of
 *     them. The core is all or nothing; if it refuses, config space goes back to what it was.
 *  5. The device half, which may read the restored common state (status, queues).
 *  6. MSI-X table and PBA with their routes and irqfds, then the INTx line: last, because both follow
 *     the restored config space (MSI-X enable and mask, INTX_DISABLE) and may fire at once. The line
 *     is driven whatever we believed, since a fresh VM's line is low.
 */

#define VP_STATE_VERSION 1
enum { R_VERSION, R_DFSELECT, R_GFSELECT, R_QSELECT, R_NVEC, R_NQUEUES, R_NCELLS };

static bool is_quiesced(struct virtio_pci *vp)
{
	pthread_mutex_lock(&vp->qlock);
	bool q = vp->quiesced;
	pthread_mutex_unlock(&vp->qlock);
	return q;
}

int virtio_pci_save(struct virtio_pci *vp, void *fdt)
{
	struct virtio_dev *d = vp->vdev;
	if (!is_quiesced(vp)) {
		/* A running device's queues move under us: the checkpoint would not be a state it was in. */
		warnx("%s: save while not quiesced", vp->name);
		return -EBUSY;
	}
	uint8_t cfg[PCI_CFG_SIZE];
	fdt32_t *cells = malloc((R_NCELLS + vp->nqueues) * sizeof(fdt32_t));
	if (!cells)
		return -ENOMEM;
	if (!vp->pci.bus) {
		free(cells);
		return -EINVAL;
	}
	pthread_mutex_lock(&vp->pci.bus->lock);
	memcpy(cfg, vp->pci.cfg, sizeof(cfg));
	pthread_mutex_unlock(&vp->pci.bus->lock);

	pthread_mutex_lock(&d->lock);
	cells[R_VERSION] = cpu_to_fdt32(VP_STATE_VERSION);
	cells[R_DFSELECT] = cpu_to_fdt32(vp->dfselect);
	cells[R_GFSELECT] = cpu_to_fdt32(vp->gfselect);
	cells[R_QSELECT] = cpu_to_fdt32(vp->qselect);
	cells[R_NVEC] = cpu_to_fdt32(vp->msix.nvec);
	cells[R_NQUEUES] = cpu_to_fdt32(vp->nqueues);
	for (unsigned i = 0; i < vp->nqueues; i++)
		cells[R_NCELLS + i] = cpu_to_fdt32(d->vqs[i].notify_off);
	int r = virtio_dev_save(d, fdt);
	pthread_mutex_unlock(&d->lock);

	r = r ?: fdt_property(fdt, "pci-config", cfg, sizeof(cfg));
	r = r ?: fdt_property(fdt, "virtio-pci-regs", cells, R_NCELLS * sizeof(fdt32_t));
	r = r ?: fdt_property(fdt, "virtio-pci-notify-off", cells + R_NCELLS, (int)(vp->nqueues * sizeof(fdt32_t)));
	free(cells);
	r = r ? -EINVAL : msix_save(&vp->msix, fdt);
	return r ?: d->ops->save ? d->ops->save(d, fdt) : 0;
}

static int restore_fail(struct virtio_pci *vp, const char *why)
{
	warnx("%s: restore: %s", vp->name, why);
	return -EINVAL;
}

/* Step 2, the transport's part: *cfg and *regs point into the tree once they check out. */
static int vp_check_saved(struct virtio_pci *vp, const void *fdt, int node, const uint8_t **cfg,
			  const fdt32_t **regs)
{
	const fdt32_t *noff = fdtp_exact(fdt, node, "virtio-pci-notify-off", vp->nqueues * sizeof(fdt32_t));
	*cfg = fdtp_exact(fdt, node, "pci-config", PCI_CFG_SIZE);
	*regs = fdtp_exact(fdt, node, "virtio-pci-regs", R_NCELLS * sizeof(fdt32_t));
	if (!*cfg || !*regs || !noff || msix_check_saved(&vp->msix, fdt, node))
		return restore_fail(vp, "missing or malformed transport property");
	const fdt32_t *r = *regs;
	if (fdt32_to_cpu(r[R_VERSION]) != VP_STATE_VERSION || fdt32_to_cpu(r[R_NVEC]) != vp->msix.nvec ||
	    fdt32_to_cpu(r[R_NQUEUES]) != vp->nqueues || fdt32_to_cpu(r[R_QSELECT]) > 0xffff)
		return restore_fail(vp, "version, vector or queue count differs");
	/* Our notify layout is fixed: queue i at slot i. Anything else came from another transport. */
	for (unsigned i = 0; i < vp->nqueues; i++)
		if (fdt32_to_cpu(noff[i]) != i)
			return restore_fail(vp, "queue notify offsets differ");
	return 0;
}

/* Step 4: the common state and the selectors, or nothing. */
static int vp_restore_common(struct virtio_pci *vp, const void *fdt, int node, const fdt32_t *regs)
{
	struct virtio_dev *d = vp->vdev;
	pthread_mutex_lock(&d->lock);
	int r = virtio_dev_restore(d, fdt, node);
	if (!r) {
		vp->dfselect = fdt32_to_cpu(regs[R_DFSELECT]);
		vp->gfselect = fdt32_to_cpu(regs[R_GFSELECT]);
		vp->qselect = (uint16_t)fdt32_to_cpu(regs[R_QSELECT]);
		for (unsigned i = 0; i < vp->nqueues; i++)
			d->vqs[i].notify_off = (uint16_t)i;
	}
	pthread_mutex_unlock(&d->lock);
	return r;
}

/* Step 6. */
static void vp_restore_irqs(struct virtio_pci *vp, const void *fdt, int node)
{
	pthread_mutex_lock(&vp->pci.bus->lock);
	pthread_mutex_lock(&vp->lock);
	vp->intx_disabled = vp->pci.cfg[PCI_COMMAND + 1] & (PCI_COMMAND_INTX_DISABLE >> 8);
	msix_restore(&vp->msix, &vp->pci, fdt, node); /* routes and irqfds for the restored messages */
	vp_intx_update(vp, true);
	pthread_mutex_unlock(&vp->lock);
	pthread_mutex_unlock(&vp->pci.bus->lock);
}

int virtio_pci_restore(struct virtio_pci *vp, const void *fdt, int node)
{
	struct virtio_dev *d = vp->vdev;
	const uint8_t *cfg;
	const fdt32_t *regs;
	if (!vp->pci.bus)
		return -EINVAL;
	vp_hold_kicks(vp);
	int r = vp_check_saved(vp, fdt, node, &cfg, &regs);
	if (!r && d->ops->restore_check)
		r = d->ops->restore_check(d, fdt, node); /* it says why itself */
	if (r)
		return r;
	uint8_t old[PCI_CFG_SIZE];
	pthread_mutex_lock(&vp->pci.bus->lock);
	memcpy(old, vp->pci.cfg, sizeof(old));
	pthread_mutex_unlock(&vp->pci.bus->lock);
	if (pci_dev_cfg_restore(&vp->pci, cfg))
		return restore_fail(vp, "config space does not match this device");
	r = vp_restore_common(vp, fdt, node, regs);
	if (r) {
		pci_dev_cfg_restore(&vp->pci, old);
		return r;
	}
	r = d->ops->restore ? d->ops->restore(d, fdt, node) : 0;
	if (r)
		return r;
	vp_restore_irqs(vp, fdt, node);
	return 0;
}

/* virtio_pci_int.h - what the transport's data path (virtio_pci.c) shares with its checkpoint half (_persist.c). */
#ifndef FTVMM_VIRTIO_PCI_INT_H
#define FTVMM_VIRTIO_PCI_INT_H

#include <stdbool.h>

#include "virtio_pci.h"

/* INTx follows the ISR: asserted while any ISR bit is set, MSI-X is off and the guest has not set
 * INTX_DISABLE; force drives the line even where it seems unchanged. vp->lock held. */
void vp_intx_update(struct virtio_pci *vp, bool force);
/* Stop delivering queue kicks to the device (they are kept and replayed on resume); returns once a
 * queue_notify in progress has finished. */
void vp_hold_kicks(struct virtio_pci *vp);

#endif

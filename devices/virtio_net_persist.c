/* virtio_net_persist.c - virtio-net's checkpoint half: MAC, link status, a received packet not yet delivered. */
#include "virtio_net_int.h"

#include <errno.h>
#include <libfdt.h>
#include <string.h>

#include "../vmm/fdt_prop.h"
#include "../vmm/util.h"

/*
 * The transport (virtio_pci_save/restore) saves the common virtio state (features, status, queues)
 * beside these properties and restores it before calling net_restore. No chain is ever held across
 * data-path passes (see virtio_net.c), so the saved queue state is exact and the device adds only what
 * the rings do not hold: the MAC the guest knows, the link status it last saw, and a packet read from
 * the backend but not yet delivered.
 *
 * Restore, in the order it runs and why:
 *  1. net_restore_check (transport, before it changes anything): version, a unicast MAC, known status
 *     bits, a pending packet of a plausible length. A refusal leaves the whole device as it was.
 *  2. (transport) config space, then the common state under d->lock.
 *  3. net_restore, under n->lock: check again (never trust the caller), then take the saved MAC (the
 *     guest's stack knows it, whatever the command line says) and pending packet; active from the
 *     restored status; the link from this host's backend, with a config interrupt owed if it differs
 *     from what the guest saw; both queue interrupts owed (the checkpoint may hold used entries whose
 *     interrupt the captured irqchip never saw; a spurious one is safe); NEEDS_RESET owed for a queue
 *     restored broken; offloads pushed to this host's TAP. Then a kick, unless quiesced.
 *  4. resume (cmd/run.c resumes every device after a restore) kicks again: the first pass raises what
 *     is owed and reads the backend, whose edges before the restore were never seen.
 */

struct net_saved {
	uint8_t mac[6];
	uint32_t status;
	const void *rx_pkt;
	size_t rx_len;
};

int net_save(struct virtio_dev *d, void *fdt)
{
	struct virtio_net *n = to_net(d);
	int r = 0;

	pthread_mutex_lock(&n->lock);
	if (!n->quiesced) {
		pthread_mutex_unlock(&n->lock);
		warnx("virtio-net %s: save while not quiesced", d->name);
		return -EBUSY;
	}
	r = r ?: fdt_property_u32(fdt, "net-version", NET_STATE_VERSION);
	r = r ?: fdt_property(fdt, "net-mac", n->mac, sizeof(n->mac));
	r = r ?: fdt_property_u32(fdt, "net-status", n->status);
	if (n->rx_len)
		r = r ?: fdt_property(fdt, "net-rx-pending", n->rx_buf, (int)n->rx_len);
	pthread_mutex_unlock(&n->lock);
	return r ? -ENOSPC : 0;
}

static int net_parse_saved(struct virtio_net *n, const void *fdt, int node, struct net_saved *s)
{
	const char *why = NULL;
	uint32_t ver;
	if (fdtp_u32(fdt, node, "net-version", &ver) || ver != NET_STATE_VERSION) {
		why = "missing or unsupported net-version";
		goto bad;
	}
	if (fdtp_copy(fdt, node, "net-mac", s->mac, 6) || !mac_ok(s->mac)) {
		why = "missing or invalid net-mac";
		goto bad;
	}
	if (fdtp_u32(fdt, node, "net-status", &s->status) || (s->status & ~NET_STATUS_KNOWN)) {
		why = "missing or invalid net-status";
		goto bad;
	}
	int len; /* optional and of any length up to a frame: absent is not an error */
	s->rx_pkt = fdt_getprop(fdt, node, "net-rx-pending", &len);
	s->rx_len = s->rx_pkt ? (size_t)len : 0;
	if (s->rx_pkt && (len < NET_HDR_LEN || len > NET_MAX_PKT)) {
		why = "bad net-rx-pending length";
		goto bad;
	}
	return 0;
bad:
	warnx("virtio-net %s: restore: %s", n->vdev.name, why);
	return -EINVAL;
}

/* The common part (features, status, queues) is in place already: step 3 reads it. */
static void net_apply_saved(struct virtio_net *n, const struct net_saved *s)
{
	struct virtio_dev *d = &n->vdev;
	uint8_t st = __atomic_load_n(&d->status, __ATOMIC_ACQUIRE);
	bool kick;

	pthread_mutex_lock(&n->lock);
	if (memcmp(n->mac, s->mac, 6) != 0)
		debugx("virtio-net %s: restored MAC differs from the configured one", d->name);
	memcpy(n->mac, s->mac, 6);
	n->rx_len = s->rx_len;
	if (s->rx_len)
		memcpy(n->rx_buf, s->rx_pkt, s->rx_len);
	n->active = st & VIRTIO_CONFIG_S_DRIVER_OK;
	n->tx_blocked = false;
	/* The link is this host's backend, not the saved one's: tell the driver if they differ. */
	n->status = n->dead ? 0 : VIRTIO_NET_S_LINK_UP;
	memset(&n->owed, 0, sizeof(n->owed));
	n->owed.config = n->status != (s->status & VIRTIO_NET_S_LINK_UP);
	/* Interrupts raised after the irqchip was captured are not in the checkpoint: re-raise them
	 * (a spurious one is always safe). */
	n->owed.queue[0] = n->owed.queue[1] = n->active;
	n->owed.needs_reset = (d->vqs[0].broken || d->vqs[1].broken) && !(st & VIRTIO_CONFIG_S_NEEDS_RESET);
	if (n->active)
		net_apply_offload(n);
	kick = !n->quiesced;
	pthread_mutex_unlock(&n->lock);
	if (kick)
		net_kick(n);
}

/* Step 1: nothing changes. */
int net_restore_check(struct virtio_dev *d, const void *fdt, int node)
{
	struct net_saved s;
	return net_parse_saved(to_net(d), fdt, node, &s);
}

/* Step 3, once the transport has restored the common state. */
int net_restore(struct virtio_dev *d, const void *fdt, int node)
{
	struct net_saved s;
	int r = net_parse_saved(to_net(d), fdt, node, &s);
	if (r == 0)
		net_apply_saved(to_net(d), &s);
	return r;
}

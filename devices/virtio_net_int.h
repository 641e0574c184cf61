/* virtio_net_int.h - virtio-net's private state, shared by its data path and its checkpoint half (_persist.c). */
#ifndef FTVMM_VIRTIO_NET_INT_H
#define FTVMM_VIRTIO_NET_INT_H

#include <linux/virtio_net.h>
#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "virtio_net.h"

#define NET_STATE_VERSION 1
#define NET_STATUS_KNOWN (VIRTIO_NET_S_LINK_UP | VIRTIO_NET_S_ANNOUNCE)

/* What a pass leaves for after n->lock is dropped. */
struct net_work {
	bool queue[2];
	bool config;
	bool needs_reset;
	bool rekick;
};

struct virtio_net {
	struct virtio_dev vdev;
	struct guest_mem *mem;
	struct ioloop *io;
	int fd, kickfd;
	uint16_t mtu;
	char name[32]; /* d->name (and so the transport's vm_device name) points here */

	pthread_mutex_t lock;
	uint8_t mac[6];
	uint16_t status;  /* config status: LINK_UP while the backend works */
	bool active;      /* DRIVER_OK and not reset since */
	bool quiesced;
	bool dead;        /* backend failed: unregistered, never read or written again */
	bool tx_blocked;  /* the sink said -EAGAIN: wait for EPOLLOUT or a kick */
	struct net_tx_sink sink;
	struct virtio_net_stats stats;
	uint8_t *rx_buf;  /* NET_MAX_PKT bytes */
	size_t rx_len;    /* a packet read and not yet delivered, or 0 */
	struct vq_req *rx_first, *rx_req, *tx_req;
	struct vq_used *rx_used; /* one per chain of the packet being delivered */
	struct net_work owed;    /* interrupts held back by quiesce */

	pthread_mutex_t notify_lock;
};

static inline struct virtio_net *to_net(struct virtio_dev *d)
{
	return d->priv;
}

/* Unicast and not all zeros: the only MACs a NIC may have. */
static inline bool mac_ok(const uint8_t m[6])
{
	return !(m[0] & 1) && (m[0] | m[1] | m[2] | m[3] | m[4] | m[5]);
}

/* virtio_net.c: rerun the data path on the I/O thread; push the negotiated offloads to the TAP
 * (n->lock held). */
void net_kick(struct virtio_net *n);
void net_apply_offload(struct virtio_net *n);

/* virtio_net_persist.c: the d->ops checkpoint halves. */
int net_save(struct virtio_dev *d, void *fdt);
int net_restore_check(struct virtio_dev *d, const void *fdt, int node);
int net_restore(struct virtio_dev *d, const void *fdt, int node);

#endif

/* virtio_net.h - the virtio-net device model (RX=0, TX=1) on a packet fd, MAC helpers, checkpoint hooks. */
#ifndef FTVMM_VIRTIO_NET_H
#define FTVMM_VIRTIO_NET_H

#include <stdint.h>

#include "../vmm/guest_mem.h"
#include "../vmm/ioloop.h"
#include "../vmm/vm.h"
#include "tap.h"
#include "virtio.h"

#define VIRTIO_NET_RXQ 0
#define VIRTIO_NET_TXQ 1
#define VIRTIO_NET_QUEUE_SIZE 256

struct virtio_net_opts {
	const char *name;    /* d->name and vm_device node name, unique per VM ("virtio-net@0"); copied */
	uint16_t mtu;        /* 0: don't offer VIRTIO_NET_F_MTU, else 68..65535 */
	uint16_t queue_size; /* 0: VIRTIO_NET_QUEUE_SIZE; a power of two <= VQ_MAX_SIZE */
	bool no_offloads;    /* offer no CSUM/TSO features (backends that are not a vnet-hdr TAP) */
};

struct virtio_net_stats {
	uint64_t tx_packets, tx_bytes, tx_dropped; /* bytes exclude the 12-byte header */
	uint64_t rx_packets, rx_bytes, rx_dropped;
};

/* Create the device on `fd`: any fd that delivers one packet (12-byte virtio_net_hdr_mrg_rxbuf +
 * frame) per read and takes one per writev; a TAP from tap_open(), or a SOCK_DGRAM socketpair in
 * tests. The device owns fd from here on (closed by virtio_net_destroy, also on failure) and watches
 * it on `io` edge-triggered; the data path runs on io's thread. mac must be unicast. opts may be NULL.
 * *out is the struct virtio_dev for the transport. Returns 0 or -errno. */
int virtio_net_create(struct virtio_dev **out, struct guest_mem *mem, struct ioloop *io, int fd,
		      const uint8_t mac[6], const struct virtio_net_opts *opts);
/* Call with io's thread stopped (ioloop_stop) or never started: unregisters and closes the fd. */
void virtio_net_destroy(struct virtio_dev *d);

/* Checkpointing goes through the transport's vm_device (virtio_pci_vm_device), which saves the common
 * virtio state and calls the device halves in d->ops: quiesce/resume and save/restore_check/restore of
 * the "net-*" properties. quiesce must be called without d->lock held (it waits for an in-flight
 * interrupt to be raised). */

/* Replace where TX packets go (NULL: back to writev on the fd). Takes effect at the next packet;
 * call while quiesced to switch atomically with respect to an epoch. */
void virtio_net_set_tx_sink(struct virtio_dev *d, const struct net_tx_sink *sink);
/* From any thread: rerun the data path on io's thread, e.g. after a sink that returned -EAGAIN can
 * take packets again. */
void virtio_net_kick(struct virtio_dev *d);
void virtio_net_get_stats(struct virtio_dev *d, struct virtio_net_stats *st);
/* Broadcast one RARP frame from the guest's MAC on the backend, so the network learns where the
 * guest now is (after a failover or restore; QEMU sends 5, 50 ms apart and growing). Bypasses the TX
 * sink. 0, -ENOLINK if the backend failed, or the write's -errno (-EAGAIN: try again later). */
int virtio_net_announce(struct virtio_dev *d);

/* A stable locally-administered unicast MAC 52:54:xx:xx:xx:xx from a hash of seed and index, so a
 * VM restarted (or failed over) with the same command line keeps its address. */
void virtio_net_default_mac(uint8_t mac[6], const char *seed, unsigned index);
/* Parse "xx:xx:xx:xx:xx:xx" (hex, either case). -EINVAL for anything else, for a multicast or
 * broadcast address and for 00:00:00:00:00:00. */
int virtio_net_parse_mac(const char *s, uint8_t mac[6]);
/* "xx:xx:xx:xx:xx:xx" plus NUL. */
void virtio_net_format_mac(const uint8_t mac[6], char out[18]);

#endif

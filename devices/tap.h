/* tap.h - the TAP backend of virtio-net and the packet sink interface (the output-commit hook point). */
#ifndef FTVMM_TAP_H
#define FTVMM_TAP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>

/* Every packet crossing the backend starts with this header (struct virtio_net_hdr_mrg_rxbuf, the
 * virtio 1.x layout), on the TAP (TUNSETVNETHDRSZ) as in the guest's buffers. */
#define NET_HDR_LEN 12
/* Largest packet the TAP hands us: a 64 KiB GSO frame plus Ethernet/VLAN header, plus NET_HDR_LEN. */
#define NET_MAX_PKT (65550 + NET_HDR_LEN)

/* Where the TX path puts guest packets. The default writes to the TAP fd; the FT engine installs one
 * that holds packets per epoch and releases them on the backup's ack, with the device model unchanged.
 * send() gets one whole packet (header + frame; the iovecs point into guest memory and are only valid
 * during the call) and returns:
 *   0        the packet was taken (sent, queued, or dropped on purpose): the chain is completed;
 *   -EAGAIN  not now: the same packet is offered again once the TAP fd turns writable or someone
 *            calls virtio_net_kick();
 *   other    -errno: see tap_error_is_fatal() (fatal: backend stopped; else the packet is dropped). */
struct net_tx_sink {
	int (*send)(void *ctx, const struct iovec *iov, int iovcnt);
	void *ctx;
};

/* Open (or create) TAP device `name` with IFF_TAP|IFF_NO_PI|IFF_VNET_HDR, a 12-byte vnet header,
 * no offloads yet, non-blocking and close-on-exec. If we created the interface we also bring it up
 * (best effort; addresses and bridging stay the user's job). Returns the fd, or -errno with one line
 * for the CLI in err. */
int tap_open(const char *name, char *err, size_t errlen);
/* Tell the TAP which offloads it may hand us, from the driver's negotiated VIRTIO_NET_F_GUEST_*
 * features. 0, or -errno (-ENOTTY on an fd that is not a TAP: test socketpairs). */
int tap_set_offload(int fd, uint64_t guest_features);
/* The default sink: ctx points to the int fd. writev of one packet. */
int tap_sink_send(void *ctx, const struct iovec *iov, int iovcnt);
/* True for errors that mean the backend is gone (device deleted, fd closed, peer hung up) rather
 * than that this one packet was refused (bad GSO header, too big, no memory). */
bool tap_error_is_fatal(int err);

#endif

/* tap.c - opening a TAP device for virtio-net, its offload settings and the default packet sink. */
#include "tap.h"
#include "../vmm/util.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/if_tun.h>
#include <linux/virtio_net.h>
#include <net/if.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

_Static_assert(sizeof(struct virtio_net_hdr_mrg_rxbuf) == NET_HDR_LEN, "virtio 1.x net header is 12 bytes");

static int tap_fail(int fd, int e, char *err, size_t errlen, const char *fmt, const char *name)
{
	if (err && errlen) {
		char what[128];
		snprintf(what, sizeof(what), fmt, name);
		snprintf(err, errlen, "%s: %s", what, strerror(e));
	}
	if (fd >= 0)
		close(fd);
	return -e;
}

/* Only for interfaces we created: one the user made is theirs to configure. */
static void tap_link_up(const char *ifname)
{
	int s = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	if (s < 0)
		return;
	struct ifreq ifr;
	memset(&ifr, 0, sizeof(ifr));
	snprintf(ifr.ifr_name, IFNAMSIZ, "%s", ifname);
	if (ioctl(s, SIOCGIFFLAGS, &ifr) == 0 && !(ifr.ifr_flags & IFF_UP)) {
		ifr.ifr_flags |= IFF_UP;
		if (ioctl(s, SIOCSIFFLAGS, &ifr) < 0)
			debugx("tap %s: cannot bring the link up: %s", ifname, strerror(errno));
	}
	close(s);
}

int tap_open(const char *name, char *err, size_t errlen)
{
	if (err && errlen)
		err[0] = '\0';
	if (!name || !*name || strlen(name) >= IFNAMSIZ || strchr(name, '/') || strchr(name, ' ')) {
		if (err && errlen)
			snprintf(err, errlen, "tap: bad interface name '%s' (1 to %d characters, no '/' or spaces)",
				 name ? name : "", IFNAMSIZ - 1);
		return -EINVAL;
	}
	bool existed = if_nametoindex(name) != 0;

	int fd = open("/dev/net/tun", O_RDWR | O_NONBLOCK | O_CLOEXEC);
	if (fd < 0) {
		int e = errno;
		if (e == ENOENT || e == ENODEV || e == ENXIO)
			return tap_fail(-1, e, err, errlen, "tap %s: no /dev/net/tun (is the tun module loaded?)", name);
		return tap_fail(-1, e, err, errlen, "tap %s: cannot open /dev/net/tun", name);
	}

	unsigned features = 0;
	if (ioctl(fd, TUNGETFEATURES, &features) == 0 && !(features & IFF_VNET_HDR))
		return tap_fail(fd, EOPNOTSUPP, err, errlen, "tap %s: kernel TAP lacks IFF_VNET_HDR", name);

	struct ifreq ifr;
	memset(&ifr, 0, sizeof(ifr));
	snprintf(ifr.ifr_name, IFNAMSIZ, "%s", name);
	ifr.ifr_flags = IFF_TAP | IFF_NO_PI | IFF_VNET_HDR;
	if (ioctl(fd, TUNSETIFF, &ifr) < 0) {
		int e = errno;
		if (e == EPERM || e == EACCES)
			return tap_fail(fd, e, err, errlen,
					existed ? "tap %s: not allowed to attach (owned by another user? "
						  "recreate it with 'ip tuntap add mode tap vnet_hdr user ...')"
						: "tap %s: not allowed to create it (needs CAP_NET_ADMIN, or create it "
						  "first with 'ip tuntap add mode tap vnet_hdr user ...')",
					name);
		if (e == EBUSY)
			return tap_fail(fd, e, err, errlen, "tap %s: busy (already attached by another process?)",
					name);
		if (e == EINVAL)
			return tap_fail(fd, e, err, errlen, "tap %s: exists but is not a TAP device", name);
		return tap_fail(fd, e, err, errlen, "tap %s: TUNSETIFF failed", name);
	}

	int hdrsz = NET_HDR_LEN;
	if (ioctl(fd, TUNSETVNETHDRSZ, &hdrsz) < 0)
		return tap_fail(fd, errno, err, errlen, "tap %s: cannot set the 12-byte vnet header", name);
	/* A persistent TAP keeps the offloads of its last user; start from none until the guest says. */
	int r = tap_set_offload(fd, 0);
	if (r < 0)
		return tap_fail(fd, -r, err, errlen, "tap %s: cannot clear offloads", name);
	if (!existed)
		tap_link_up(ifr.ifr_name);
	return fd;
}

int tap_set_offload(int fd, uint64_t guest_features)
{
	unsigned off = 0;
	if (guest_features & (1ull << VIRTIO_NET_F_GUEST_CSUM)) {
		off |= TUN_F_CSUM;
		/* The TAP refuses TSO without CSUM, and so does the spec for the guest. */
		if (guest_features & (1ull << VIRTIO_NET_F_GUEST_TSO4))
			off |= TUN_F_TSO4;
		if (guest_features & (1ull << VIRTIO_NET_F_GUEST_TSO6))
			off |= TUN_F_TSO6;
		if ((off & (TUN_F_TSO4 | TUN_F_TSO6)) && (guest_features & (1ull << VIRTIO_NET_F_GUEST_ECN)))
			off |= TUN_F_TSO_ECN;
	}
	if (ioctl(fd, TUNSETOFFLOAD, (unsigned long)off) < 0)
		return -errno;
	return 0;
}

int tap_sink_send(void *ctx, const struct iovec *iov, int iovcnt)
{
	int fd = *(const int *)ctx;
	for (;;) {
		ssize_t r = writev(fd, iov, iovcnt);
		if (r >= 0)
			return 0; /* a packet fd takes the whole packet or nothing */
		if (errno != EINTR)
			return errno == EWOULDBLOCK ? -EAGAIN : -errno;
	}
}

bool tap_error_is_fatal(int err)
{
	switch (err < 0 ? -err : err) {
	case ENODEV:
	case ENXIO:
	case EBADFD:   /* tun device deleted while the fd is open */
	case EBADF:
	case EPIPE:    /* test socketpair: peer closed */
	case ECONNREFUSED:
	case ENOTCONN:
	case ECONNRESET:
		return true;
	default:
		return false;
	}
}

/* gen_device_seeds.c - writes the seed corpora of fuzz_virtio_net and fuzz_virtio_pci: what a working
 * driver does (rings with a TX packet and RX buffers; the virtio-pci bring-up sequence with MSI-X),
 * in those targets' input formats. Rebuild the committed seeds after a format change:
 *   cc -std=gnu11 -o /tmp/gen tests/fuzz/gen_device_seeds.c && /tmp/gen tests/fuzz
 */
#include <linux/pci_regs.h>
#include <linux/virtio_pci.h>
#include <linux/virtio_ring.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../devices/virtio_pci.h"

static void save(const char *dir, const char *name, const void *p, size_t len)
{
	char path[4096];
	snprintf(path, sizeof(path), "%s/%s", dir, name);
	FILE *f = fopen(path, "wb");
	if (!f || fwrite(p, 1, len, f) != len || fclose(f))
		abort();
}

/* ---- fuzz_virtio_net: 8-byte header, then guest memory from 0 ---- */

static uint8_t net[8 + 16 * 4096];
#define G(a) (net + 8 + (a))

static void desc(uint64_t table, unsigned i, uint64_t gpa, uint32_t len, uint16_t flags, uint16_t next)
{
	struct vring_desc d = { .addr = gpa, .len = len, .flags = flags, .next = next };
	memcpy(G(table) + 16 * i, &d, sizeof(d));
}

static void avail(uint64_t ring, unsigned n)
{
	for (uint16_t i = 0; i < n; i++)
		memcpy(G(ring) + 4 + 2 * i, &i, 2);
	uint16_t idx = (uint16_t)n;
	memcpy(G(ring) + 2, &idx, 2);
}

/* RX: 4 one-descriptor buffers of 2 KiB; TX: two packets of header + frame. Queue size 16. */
static size_t net_seed(uint8_t flags, uint8_t nrx, bool indirect)
{
	memset(net, 0, sizeof(net));
	net[0] = flags;
	net[1] = 4 ^ 3; /* log2(16) */
	net[2] = nrx;
	net[3] = 5;
	net[4] = 1;
	for (unsigned i = 0; i < 4; i++)
		desc(0x1000, i, 0x8000 + i * 0x800, 0x800, VRING_DESC_F_WRITE, 0);
	avail(0x2000, 4);
	for (unsigned p = 0; p < 2; p++) {
		memset(G(0x7000 + p * 0x400), 0x11 * (p + 1), 0x200);
		if (indirect && p == 1) { /* the second packet through an indirect table at 0x7c00 */
			desc(0x4000, 2 * p, 0x7c00, 32, VRING_DESC_F_INDIRECT, 0);
			desc(0x7c00, 0, 0x7000 + p * 0x400, 12, VRING_DESC_F_NEXT, 1);
			desc(0x7c00, 1, 0x7000 + p * 0x400 + 12, 100, 0, 0);
		} else {
			desc(0x4000, 2 * p, 0x7000 + p * 0x400, 12, VRING_DESC_F_NEXT, (uint16_t)(2 * p + 1));
			desc(0x4000, 2 * p + 1, 0x7000 + p * 0x400 + 12, 100, 0, 0);
		}
	}
	uint16_t heads[2] = { 0, 2 }, idx = 2;
	memcpy(G(0x5000) + 4, heads, 4);
	memcpy(G(0x5000) + 2, &idx, 2);
	return 8 + 0x9000;
}

/* ---- fuzz_virtio_pci: 12-byte accesses ---- */

static uint8_t pci[4096];
static size_t npci;

static void acc(unsigned where, bool wr, unsigned szcode, uint32_t off, uint64_t v)
{
	uint8_t *a = pci + npci;
	a[0] = (uint8_t)(szcode | (wr ? 8 : 0) | where << 4);
	a[1] = (uint8_t)off, a[2] = (uint8_t)(off >> 8), a[3] = (uint8_t)(off >> 16);
	memcpy(a + 4, &v, 8);
	npci += 12;
}
#define W1(off, v) acc(0, true, 0, (off), (v))
#define W2(off, v) acc(0, true, 1, (off), (v))
#define W4(off, v) acc(0, true, 2, (off), (v))
#define W8(off, v) acc(0, true, 3, (off), (v))
#define R4(off) acc(0, false, 2, (off), 0)
#define C(off, v, sz) acc(2, true, (sz), (off), (v))

/* A driver's bring-up: reset, features, both queues with vectors, MSI-X enabled, DRIVER_OK. */
static void pci_bringup(void)
{
	npci = 0;
	C(PCI_COMMAND, PCI_COMMAND_MEMORY | PCI_COMMAND_MASTER, 1);
	W1(VP_COMMON_OFF + VIRTIO_PCI_COMMON_STATUS, 0);
	W1(VP_COMMON_OFF + VIRTIO_PCI_COMMON_STATUS, 1 | 2);
	W4(VP_COMMON_OFF + VIRTIO_PCI_COMMON_DFSELECT, 1);
	R4(VP_COMMON_OFF + VIRTIO_PCI_COMMON_DF);
	W4(VP_COMMON_OFF + VIRTIO_PCI_COMMON_GFSELECT, 1);
	W4(VP_COMMON_OFF + VIRTIO_PCI_COMMON_GF, 1); /* VERSION_1 */
	W1(VP_COMMON_OFF + VIRTIO_PCI_COMMON_STATUS, 1 | 2 | 8);
	W2(VP_COMMON_OFF + VIRTIO_PCI_COMMON_MSIX, 0);
	for (unsigned q = 0; q < 2; q++) {
		W2(VP_COMMON_OFF + VIRTIO_PCI_COMMON_Q_SELECT, q);
		W2(VP_COMMON_OFF + VIRTIO_PCI_COMMON_Q_SIZE, 64);
		W2(VP_COMMON_OFF + VIRTIO_PCI_COMMON_Q_MSIX, q + 1);
		W8(VP_COMMON_OFF + VIRTIO_PCI_COMMON_Q_DESCLO, 0x1000 + q * 0x3000);
		W8(VP_COMMON_OFF + VIRTIO_PCI_COMMON_Q_AVAILLO, 0x2000 + q * 0x3000);
		W8(VP_COMMON_OFF + VIRTIO_PCI_COMMON_Q_USEDLO, 0x3000 + q * 0x3000);
		W2(VP_COMMON_OFF + VIRTIO_PCI_COMMON_Q_ENABLE, 1);
	}
	for (unsigned v = 0; v < 3; v++) { /* MSI-X table entries: address, data, unmasked */
		W4(VP_MSIX_TABLE_OFF + 16 * v, 0xfee00000);
		W4(VP_MSIX_TABLE_OFF + 16 * v + 4, 0);
		W4(VP_MSIX_TABLE_OFF + 16 * v + 8, 0x30 + v);
		W4(VP_MSIX_TABLE_OFF + 16 * v + 12, 0);
	}
	W1(VP_COMMON_OFF + VIRTIO_PCI_COMMON_STATUS, 1 | 2 | 8 | 4);
}

int main(int argc, char **argv)
{
	if (argc != 2) {
		fprintf(stderr, "usage: %s tests/fuzz\n", argv[0]);
		return 2;
	}
	char dir[4096];
	snprintf(dir, sizeof(dir), "%s/corpus-fuzz_virtio_net", argv[1]);
	save(dir, "tx2-rx4", net, net_seed(0, 0, false));
	save(dir, "mrg-rx-packets", net, net_seed(1 | 2, 3, false));
	save(dir, "indirect-tx", net, net_seed(4, 1, true));

	snprintf(dir, sizeof(dir), "%s/corpus-fuzz_virtio_pci", argv[1]);
	pci_bringup();
	save(dir, "bringup", pci, npci);
	pci_bringup();
	acc(2, true, 1, 0, 0); /* then the MSI-X enable bit through config space (found by the cap walk) */
	acc(0, false, 2, VP_MSIX_TABLE_OFF + 0x1000, 0); /* PBA */
	acc(0, true, 0, VP_NOTIFY_OFF, 0x40);              /* a kick */
	save(dir, "bringup-pba-kick", pci, npci);
	return 0;
}

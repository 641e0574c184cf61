/* test_virtio_pci.c - the virtio modern PCI transport against a fake device: caps, common cfg, kicks, MSI-X/INTx,
 * checkpoint, random guest accesses; and virtio-blk's interrupt after a restore. */
#include <errno.h>
#include <fcntl.h>
#include <libfdt.h>
#include <linux/kvm.h>
#include <linux/pci_regs.h>
#include <linux/virtio_ids.h>
#include <linux/virtio_pci.h>
#include <stdint.h>

#include "../../devices/virtio_blk.h"
#include "../../devices/virtio_pci.h"
#include "../../vmm/util.h"
#include "test.h"
#include "vp_harness.h"

#define NQ 2
#define NVEC (NQ + 1)
#define CFG_LEN 8
#define F_LOW (1ull << 5)   /* any device bits: one in each feature word */
#define F_HIGH (1ull << 33)

/* ---- a fake virtio device ---- */

struct fakedev {
	struct virtio_dev d;
	uint8_t cfg[CFG_LEN];
	unsigned notifies[NQ], activates, resets, quiesces, resumes, cfg_writes, saves, restores;
	uint32_t state;
};

static void f_config_read(struct virtio_dev *d, uint32_t off, void *data, uint32_t len)
{
	struct fakedev *f = d->priv;
	CHECK(off + len <= CFG_LEN); /* the transport checked it */
	memcpy(data, f->cfg + off, len);
}

static void f_config_write(struct virtio_dev *d, uint32_t off, const void *data, uint32_t len)
{
	struct fakedev *f = d->priv;
	CHECK(off + len <= CFG_LEN);
	memcpy(f->cfg + off, data, len);
	f->cfg_writes++;
}

static void f_queue_notify(struct virtio_dev *d, unsigned q)
{
	struct fakedev *f = d->priv;
	CHECK(q < NQ);
	f->notifies[q]++;
}

static int f_activate(struct virtio_dev *d)
{
	((struct fakedev *)d->priv)->activates++;
	return 0;
}

static void f_reset(struct virtio_dev *d)
{
	((struct fakedev *)d->priv)->resets++;
}

static int f_quiesce(struct virtio_dev *d)
{
	((struct fakedev *)d->priv)->quiesces++;
	return 0;
}

static void f_resume(struct virtio_dev *d)
{
	((struct fakedev *)d->priv)->resumes++;
}

static int f_save(struct virtio_dev *d, void *fdt)
{
	struct fakedev *f = d->priv;
	f->saves++;
	return fdt_property_u32(fdt, "fake-state", f->state) ? -EINVAL : 0;
}

static int f_restore(struct virtio_dev *d, const void *fdt, int node)
{
	struct fakedev *f = d->priv;
	int len;
	const fdt32_t *p = fdt_getprop(fdt, node, "fake-state", &len);
	if (!p || len != 4)
		return -EINVAL;
	f->state = fdt32_to_cpu(*p);
	f->restores++;
	return 0;
}

static const struct virtio_dev_ops fake_ops = {
	.config_read = f_config_read, .config_write = f_config_write, .queue_notify = f_queue_notify,
	.activate = f_activate, .reset = f_reset, .quiesce = f_quiesce, .resume = f_resume,
	.save = f_save, .restore = f_restore,
};

/* ---- one VM with one virtio-pci function ---- */

struct obs {
	unsigned msi, intx;
	struct virtio_pci_irq_event last;
};

static void observer(void *opaque, const struct virtio_pci_irq_event *ev)
{
	struct obs *o = opaque;
	if (ev->msi)
		o->msi++;
	else
		o->intx++;
	o->last = *ev;
}

struct env {
	struct vm vm;
	struct pci_bus bus;
	struct fakedev f;
	struct virtio_pci *vp;
	struct obs obs;
	uint64_t base;
};

static uint8_t ram1[1 << 20] __attribute__((aligned(4096)));
static uint8_t ram2[1 << 20] __attribute__((aligned(4096)));

static void env_init(struct env *e, uint8_t *ram, size_t size)
{
	memset(e, 0, sizeof(*e));
	vph_vm_init(&e->vm, ram, size);
	CHECK_EQ(pci_bus_init(&e->bus, &e->vm), 0);
	CHECK_EQ(virtio_dev_init(&e->f.d, "virtio-fake@0", VIRTIO_ID_BLOCK, NQ, 256, CFG_LEN, &e->vm.mem, &fake_ops,
				 &e->f), 0);
	e->f.d.host_features |= F_LOW | F_HIGH;
	for (unsigned i = 0; i < CFG_LEN; i++)
		e->f.cfg[i] = (uint8_t)(0x10 + i);
	e->vp = virtio_pci_add(&e->bus, &e->f.d, NULL);
	CHECK(e->vp != NULL);
	virtio_pci_set_irq_observer(e->vp, observer, &e->obs);
	e->base = e->vp->pci.bars[0].addr;
}

static void env_fini(struct env *e)
{
	virtio_pci_destroy(e->vp);
	virtio_dev_destroy(&e->f.d);
	pci_bus_destroy(&e->bus);
	vph_vm_fini(&e->vm);
}

static uint64_t bar_rd(struct env *e, uint64_t off, unsigned len)
{
	uint8_t b[8];
	memset(b, 0xa5, sizeof(b));
	CHECK_EQ(bus_dispatch(&e->vm.mmio, e->base + off, b, len, false), 0);
	uint64_t v = 0;
	for (unsigned i = 0; i < len; i++)
		v |= (uint64_t)b[i] << (8 * i);
	return v;
}

static void bar_wr(struct env *e, uint64_t off, uint64_t v, unsigned len)
{
	uint8_t b[8];
	for (unsigned i = 0; i < 8; i++)
		b[i] = (uint8_t)(v >> (8 * i));
	CHECK_EQ(bus_dispatch(&e->vm.mmio, e->base + off, b, len, true), 0);
}

static uint32_t cfg_rd(struct env *e, unsigned off, unsigned len)
{
	uint8_t b[4] = { 0 };
	pci_bus_cfg_access(&e->bus, e->vp->pci.slot, 0, off, b, len, false);
	return (uint32_t)b[0] | (uint32_t)b[1] << 8 | (uint32_t)b[2] << 16 | (uint32_t)b[3] << 24;
}

static void cfg_wr(struct env *e, unsigned off, uint32_t v, unsigned len)
{
	uint8_t b[4] = { (uint8_t)v, (uint8_t)(v >> 8), (uint8_t)(v >> 16), (uint8_t)(v >> 24) };
	pci_bus_cfg_access(&e->bus, e->vp->pci.slot, 0, off, b, len, true);
}

struct caps {
	unsigned msix, vndr[6]; /* config offsets, by virtio cfg_type */
	unsigned nvndr;
};

static struct caps walk_caps(struct env *e)
{
	struct caps c;
	memset(&c, 0, sizeof(c));
	unsigned n = 0;
	CHECK(cfg_rd(e, PCI_STATUS, 2) & PCI_STATUS_CAP_LIST);
	for (unsigned p = cfg_rd(e, PCI_CAPABILITY_LIST, 1); p; p = cfg_rd(e, p + PCI_CAP_LIST_NEXT, 1)) {
		CHECK(++n < 48);       /* no loop */
		CHECK(p >= 0x40 && p % 4 == 0);
		unsigned id = cfg_rd(e, p, 1);
		if (id == PCI_CAP_ID_MSIX) {
			CHECK_EQ(c.msix, 0);
			c.msix = p;
		} else if (id == PCI_CAP_ID_VNDR) {
			unsigned t = cfg_rd(e, p + 3, 1);
			CHECK(t >= 1 && t <= 5);
			CHECK_EQ(c.vndr[t], 0); /* one of each */
			c.vndr[t] = p;
			c.nvndr++;
		}
	}
	return c;
}

/* Run the I/O thread's work on ours: deliver whatever kicks are pending. */
static void kick(struct env *e)
{
	CHECK(ioloop_poll_once(&e->vm.io, 0) >= 0);
}

/* ---- tests ---- */

static void test_identity_and_caps(void)
{
	struct env e;
	env_init(&e, ram1, sizeof(ram1));
	CHECK_EQ(e.vp->pci.slot, 1);
	CHECK_EQ(cfg_rd(&e, PCI_VENDOR_ID, 2), 0x1af4);
	CHECK_EQ(cfg_rd(&e, PCI_DEVICE_ID, 2), 0x1040 + VIRTIO_ID_BLOCK);
	CHECK_EQ(cfg_rd(&e, PCI_REVISION_ID, 1), 1);
	CHECK_EQ(cfg_rd(&e, PCI_CLASS_REVISION, 4) >> 8, 0x018000);
	CHECK_EQ(cfg_rd(&e, PCI_SUBSYSTEM_VENDOR_ID, 2), 0x1af4);
	CHECK_EQ(cfg_rd(&e, PCI_SUBSYSTEM_ID, 2), VIRTIO_ID_BLOCK);
	CHECK_EQ(cfg_rd(&e, PCI_INTERRUPT_PIN, 1), 1);
	CHECK_EQ(cfg_rd(&e, PCI_INTERRUPT_LINE, 1), 16);
	CHECK_EQ(strcmp(virtio_pci_vm_device(e.vp)->name, "virtio-fake@0"), 0);
	CHECK(e.f.d.notify_queue != NULL && e.f.d.notify_config != NULL && e.f.d.transport == e.vp);

	/* BAR 0: 32-bit memory, sized 32 KiB (common, ISR, device, notify, table, PBA pages). */
	CHECK_EQ(e.base, 0xc0000000);
	cfg_wr(&e, PCI_BASE_ADDRESS_0, 0xffffffff, 4);
	CHECK_EQ(cfg_rd(&e, PCI_BASE_ADDRESS_0, 4), 0xffff8000);
	cfg_wr(&e, PCI_BASE_ADDRESS_0, 0xc0000000, 4);
	for (unsigned b = 1; b < 6; b++)
		CHECK_EQ(cfg_rd(&e, PCI_BASE_ADDRESS_0 + 4 * b, 4), 0);

	struct caps c = walk_caps(&e);
	CHECK_EQ(c.nvndr, 5);
	CHECK(c.msix != 0);
	CHECK_EQ(cfg_rd(&e, c.msix + PCI_MSIX_FLAGS, 2), NVEC - 1); /* table size nqueues + 1, disabled */
	CHECK_EQ(cfg_rd(&e, c.msix + PCI_MSIX_TABLE, 4), 0x4000);  /* BIR 0 */
	CHECK_EQ(cfg_rd(&e, c.msix + PCI_MSIX_PBA, 4), 0x5000);
	static const struct { unsigned type, off, len, caplen; } want[] = {
		{ VIRTIO_PCI_CAP_COMMON_CFG, 0x0000, 0x38, 16 },
		{ VIRTIO_PCI_CAP_NOTIFY_CFG, 0x3000, NQ * 4, 20 },
		{ VIRTIO_PCI_CAP_ISR_CFG, 0x1000, 1, 16 },
		{ VIRTIO_PCI_CAP_DEVICE_CFG, 0x2000, CFG_LEN, 16 },
		{ VIRTIO_PCI_CAP_PCI_CFG, 0, 0, 20 },
	};
	for (unsigned i = 0; i < ARRAY_SIZE(want); i++) {
		unsigned p = c.vndr[want[i].type];
		CHECK(p != 0);
		CHECK_EQ(cfg_rd(&e, p + VIRTIO_PCI_CAP_LEN, 1), want[i].caplen);
		CHECK_EQ(cfg_rd(&e, p + VIRTIO_PCI_CAP_BAR, 1), 0);
		CHECK_EQ(cfg_rd(&e, p + VIRTIO_PCI_CAP_OFFSET, 4), want[i].off);
		CHECK_EQ(cfg_rd(&e, p + VIRTIO_PCI_CAP_LENGTH, 4), want[i].len);
		/* Read-only, except the PCI_CFG window fields. */
		cfg_wr(&e, p + VIRTIO_PCI_CAP_OFFSET, 0x1234, 4);
		CHECK_EQ(cfg_rd(&e, p + VIRTIO_PCI_CAP_OFFSET, 4), want[i].type == VIRTIO_PCI_CAP_PCI_CFG ? 0x1234u : want[i].off);
	}
	CHECK_EQ(cfg_rd(&e, c.vndr[VIRTIO_PCI_CAP_NOTIFY_CFG] + VIRTIO_PCI_NOTIFY_CAP_MULT, 4), 4);
	env_fini(&e);
}

static void test_common_cfg(void)
{
	struct env e;
	env_init(&e, ram1, sizeof(ram1));
	struct fakedev *f = &e.f;

	CHECK_EQ(bar_rd(&e, VIRTIO_PCI_COMMON_NUMQ, 2), NQ);
	/* Feature paging. */
	bar_wr(&e, VIRTIO_PCI_COMMON_DFSELECT, 0, 4);
	CHECK_EQ(bar_rd(&e, VIRTIO_PCI_COMMON_DF, 4), (uint32_t)F_LOW);
	bar_wr(&e, VIRTIO_PCI_COMMON_DFSELECT, 1, 4);
	CHECK_EQ(bar_rd(&e, VIRTIO_PCI_COMMON_DFSELECT, 4), 1);
	CHECK_EQ(bar_rd(&e, VIRTIO_PCI_COMMON_DF, 4), (uint32_t)((F_HIGH | 1ull << VIRTIO_F_VERSION_1) >> 32));
	bar_wr(&e, VIRTIO_PCI_COMMON_DFSELECT, 2, 4);
	CHECK_EQ(bar_rd(&e, VIRTIO_PCI_COMMON_DF, 4), 0);
	bar_wr(&e, VIRTIO_PCI_COMMON_DFSELECT, 0xffffffff, 4);
	CHECK_EQ(bar_rd(&e, VIRTIO_PCI_COMMON_DF, 4), 0);
	bar_wr(&e, VIRTIO_PCI_COMMON_DF, 0xffffffff, 4); /* read-only */
	bar_wr(&e, VIRTIO_PCI_COMMON_DFSELECT, 0, 4);
	CHECK_EQ(bar_rd(&e, VIRTIO_PCI_COMMON_DF, 4), (uint32_t)F_LOW);

	/* Negotiation: an unoffered bit, or no VERSION_1, leaves FEATURES_OK clear. */
	bar_wr(&e, VIRTIO_PCI_COMMON_STATUS, VIRTIO_CONFIG_S_ACKNOWLEDGE | VIRTIO_CONFIG_S_DRIVER, 1);
	bar_wr(&e, VIRTIO_PCI_COMMON_GFSELECT, 0, 4);
	bar_wr(&e, VIRTIO_PCI_COMMON_GF, (uint32_t)F_LOW | 1u << 7, 4);
	bar_wr(&e, VIRTIO_PCI_COMMON_GFSELECT, 1, 4);
	bar_wr(&e, VIRTIO_PCI_COMMON_GF, 1, 4);
	CHECK_EQ(f->d.guest_features, F_LOW | 1ull << 7 | 1ull << 32);
	bar_wr(&e, VIRTIO_PCI_COMMON_GFSELECT, 0, 4);
	CHECK_EQ(bar_rd(&e, VIRTIO_PCI_COMMON_GF, 4), (uint32_t)F_LOW | 1u << 7);
	bar_wr(&e, VIRTIO_PCI_COMMON_STATUS, 0x0b, 1);
	CHECK_EQ(bar_rd(&e, VIRTIO_PCI_COMMON_STATUS, 1), 0x03);
	bar_wr(&e, VIRTIO_PCI_COMMON_GF, (uint32_t)F_LOW, 4);
	bar_wr(&e, VIRTIO_PCI_COMMON_GFSELECT, 1, 4);
	bar_wr(&e, VIRTIO_PCI_COMMON_GF, 0, 4);
	bar_wr(&e, VIRTIO_PCI_COMMON_STATUS, 0x0b, 1);
	CHECK_EQ(bar_rd(&e, VIRTIO_PCI_COMMON_STATUS, 1), 0x03);
	/* DRIVER_OK without FEATURES_OK starts nothing. */
	bar_wr(&e, VIRTIO_PCI_COMMON_STATUS, 0x07, 1);
	CHECK_EQ(f->activates, 0);
	CHECK_EQ(bar_rd(&e, VIRTIO_PCI_COMMON_STATUS, 1), 0x03);
	bar_wr(&e, VIRTIO_PCI_COMMON_GF, (uint32_t)((F_HIGH | 1ull << VIRTIO_F_VERSION_1) >> 32), 4);
	bar_wr(&e, VIRTIO_PCI_COMMON_STATUS, 0x0b, 1);
	CHECK_EQ(bar_rd(&e, VIRTIO_PCI_COMMON_STATUS, 1), 0x0b);
	CHECK_EQ(f->d.guest_features, F_LOW | F_HIGH | 1ull << VIRTIO_F_VERSION_1);
	bar_wr(&e, VIRTIO_PCI_COMMON_GF, 0, 4); /* frozen after FEATURES_OK */
	CHECK_EQ(f->d.guest_features, F_LOW | F_HIGH | 1ull << VIRTIO_F_VERSION_1);

	/* Queue programming. */
	CHECK_EQ(bar_rd(&e, VIRTIO_PCI_COMMON_Q_SELECT, 2), 0);
	CHECK_EQ(bar_rd(&e, VIRTIO_PCI_COMMON_Q_SIZE, 2), 256);
	bar_wr(&e, VIRTIO_PCI_COMMON_Q_SIZE, 128, 2);
	CHECK_EQ(bar_rd(&e, VIRTIO_PCI_COMMON_Q_SIZE, 2), 128);
	bar_wr(&e, VIRTIO_PCI_COMMON_Q_SIZE, 100, 2); /* not a power of two */
	bar_wr(&e, VIRTIO_PCI_COMMON_Q_SIZE, 512, 2); /* above the maximum */
	bar_wr(&e, VIRTIO_PCI_COMMON_Q_SIZE, 0, 2);
	CHECK_EQ(bar_rd(&e, VIRTIO_PCI_COMMON_Q_SIZE, 2), 128);
	CHECK_EQ(bar_rd(&e, VIRTIO_PCI_COMMON_Q_SIZE + 1, 1), 0); /* narrow read of a field's high byte */
	bar_wr(&e, VIRTIO_PCI_COMMON_Q_DESCLO, 0x11000, 4);
	bar_wr(&e, VIRTIO_PCI_COMMON_Q_DESCHI, 0, 4);
	bar_wr(&e, VIRTIO_PCI_COMMON_Q_AVAILLO, 0x12000, 4);
	bar_wr(&e, VIRTIO_PCI_COMMON_Q_USEDLO, 0x13000ull | 0x5ull << 32, 8); /* lo and hi in one qword */
	CHECK_EQ(f->d.vqs[0].desc_gpa, 0x11000);
	CHECK_EQ(f->d.vqs[0].avail_gpa, 0x12000);
	CHECK_EQ(f->d.vqs[0].used_gpa, 0x500013000ull);
	bar_wr(&e, VIRTIO_PCI_COMMON_Q_USEDHI, 0, 4);
	bar_wr(&e, VIRTIO_PCI_COMMON_Q_USEDLO + 1, 0x40, 1); /* byte write merges into the field */
	CHECK_EQ(f->d.vqs[0].used_gpa, 0x14000);
	CHECK_EQ(bar_rd(&e, VIRTIO_PCI_COMMON_Q_USEDLO, 4), 0x14000);
	bar_wr(&e, VIRTIO_PCI_COMMON_Q_MSIX, 1, 2);
	CHECK_EQ(bar_rd(&e, VIRTIO_PCI_COMMON_Q_MSIX, 2), 1);
	bar_wr(&e, VIRTIO_PCI_COMMON_Q_MSIX, NVEC, 2); /* no such vector: refused */
	CHECK_EQ(bar_rd(&e, VIRTIO_PCI_COMMON_Q_MSIX, 2), VIRTIO_MSI_NO_VECTOR);
	bar_wr(&e, VIRTIO_PCI_COMMON_Q_MSIX, 1, 2);
	bar_wr(&e, VIRTIO_PCI_COMMON_MSIX, 0, 2);
	CHECK_EQ(bar_rd(&e, VIRTIO_PCI_COMMON_MSIX, 2), 0);
	bar_wr(&e, VIRTIO_PCI_COMMON_MSIX, 0x1234, 2);
	CHECK_EQ(bar_rd(&e, VIRTIO_PCI_COMMON_MSIX, 2), VIRTIO_MSI_NO_VECTOR);
	CHECK_EQ(bar_rd(&e, VIRTIO_PCI_COMMON_Q_NOFF, 2), 0);
	CHECK_EQ(bar_rd(&e, VIRTIO_PCI_COMMON_Q_ENABLE, 2), 0);
	bar_wr(&e, VIRTIO_PCI_COMMON_Q_ENABLE, 1, 2);
	CHECK_EQ(bar_rd(&e, VIRTIO_PCI_COMMON_Q_ENABLE, 2), 1);
	CHECK(f->d.vqs[0].ready);
	/* Enabled: queue registers are frozen, and enable cannot be cleared. */
	bar_wr(&e, VIRTIO_PCI_COMMON_Q_SIZE, 64, 2);
	bar_wr(&e, VIRTIO_PCI_COMMON_Q_DESCLO, 0x99000, 4);
	bar_wr(&e, VIRTIO_PCI_COMMON_Q_MSIX, 0, 2);
	bar_wr(&e, VIRTIO_PCI_COMMON_Q_ENABLE, 0, 2);
	CHECK_EQ(bar_rd(&e, VIRTIO_PCI_COMMON_Q_SIZE, 2), 128);
	CHECK_EQ(f->d.vqs[0].desc_gpa, 0x11000);
	CHECK_EQ(bar_rd(&e, VIRTIO_PCI_COMMON_Q_MSIX, 2), 1);
	CHECK(f->d.vqs[0].ready);
	/* Queue 1 has its own notify offset; an absent queue reads all zero and ignores writes. */
	bar_wr(&e, VIRTIO_PCI_COMMON_Q_SELECT, 1, 2);
	CHECK_EQ(bar_rd(&e, VIRTIO_PCI_COMMON_Q_NOFF, 2), 1);
	CHECK_EQ(bar_rd(&e, VIRTIO_PCI_COMMON_Q_SIZE, 2), 256);
	CHECK_EQ(bar_rd(&e, VIRTIO_PCI_COMMON_Q_ENABLE, 2), 0);
	for (unsigned sel = NQ; sel < 0x10000; sel += 0x1111) {
		bar_wr(&e, VIRTIO_PCI_COMMON_Q_SELECT, sel, 2);
		CHECK_EQ(bar_rd(&e, VIRTIO_PCI_COMMON_Q_SELECT, 2), sel);
		bar_wr(&e, VIRTIO_PCI_COMMON_Q_SIZE, 16, 2);
		bar_wr(&e, VIRTIO_PCI_COMMON_Q_ENABLE, 1, 2);
		bar_wr(&e, VIRTIO_PCI_COMMON_Q_DESCLO, 0x1000, 4);
		CHECK_EQ(bar_rd(&e, VIRTIO_PCI_COMMON_Q_SIZE, 2), 0);
		CHECK_EQ(bar_rd(&e, VIRTIO_PCI_COMMON_Q_ENABLE, 2), 0);
		CHECK_EQ(bar_rd(&e, VIRTIO_PCI_COMMON_Q_DESCLO, 4), 0);
	}
	/* Past the structure: zeros, no effect. */
	CHECK_EQ(bar_rd(&e, 0x38, 8), 0);
	CHECK_EQ(bar_rd(&e, 0xffc, 4), 0);
	bar_wr(&e, 0x40, 0xffffffff, 4);

	/* Device config: in range goes to the device, past it reads zero and never reaches it. */
	CHECK_EQ(bar_rd(&e, 0x2000, 4), 0x13121110);
	CHECK_EQ(bar_rd(&e, 0x2004, 4), 0x17161514);
	CHECK_EQ(bar_rd(&e, 0x2007, 1), 0x17);
	CHECK_EQ(bar_rd(&e, 0x2006, 4), 0);
	CHECK_EQ(bar_rd(&e, 0x2008, 1), 0);
	bar_wr(&e, 0x2002, 0xbeef, 2);
	CHECK_EQ(f->cfg_writes, 1);
	CHECK_EQ(f->cfg[2], 0xef);
	bar_wr(&e, 0x2007, 0xbeef, 2);
	bar_wr(&e, 0x2fff, 0xff, 1);
	CHECK_EQ(f->cfg_writes, 1);

	/* DRIVER_OK starts the device once; status 0 resets everything the driver set. */
	bar_wr(&e, VIRTIO_PCI_COMMON_STATUS, 0x0f, 1);
	CHECK_EQ(f->activates, 1);
	bar_wr(&e, VIRTIO_PCI_COMMON_STATUS, 0x0f, 1);
	CHECK_EQ(f->activates, 1);
	bar_wr(&e, VIRTIO_PCI_COMMON_STATUS, 0x01, 1); /* clearing bits needs a reset */
	CHECK_EQ(bar_rd(&e, VIRTIO_PCI_COMMON_STATUS, 1), 0x0f);
	bar_wr(&e, VIRTIO_PCI_COMMON_STATUS, 0, 1);
	CHECK_EQ(f->resets, 1);
	CHECK_EQ(bar_rd(&e, VIRTIO_PCI_COMMON_STATUS, 1), 0);
	CHECK_EQ(f->d.guest_features, 0);
	bar_wr(&e, VIRTIO_PCI_COMMON_Q_SELECT, 0, 2);
	CHECK_EQ(bar_rd(&e, VIRTIO_PCI_COMMON_Q_ENABLE, 2), 0);
	CHECK_EQ(bar_rd(&e, VIRTIO_PCI_COMMON_Q_SIZE, 2), 256);
	CHECK_EQ(bar_rd(&e, VIRTIO_PCI_COMMON_Q_MSIX, 2), VIRTIO_MSI_NO_VECTOR);
	/* config_generation is the core's counter. */
	f->d.config_generation = 7;
	CHECK_EQ(bar_rd(&e, VIRTIO_PCI_COMMON_CFGGENERATION, 1), 7);
	env_fini(&e);
}

static void test_kicks(void)
{
	struct env e;
	env_init(&e, ram1, sizeof(ram1));
	struct fakedev *f = &e.f;
	struct vm_device *vd = virtio_pci_vm_device(e.vp);

	/* No KVM: the ioeventfd could not be attached, so the kick is an MMIO exit and reaches the device
	 * on the I/O thread. */
	CHECK(!e.vp->qs[0].ioeventfd);
	bar_wr(&e, 0x3004, 1, 2);
	CHECK_EQ(f->notifies[1], 0); /* not on the vCPU thread */
	kick(&e);
	CHECK_EQ(f->notifies[1], 1);
	CHECK_EQ(f->notifies[0], 0);
	bar_wr(&e, 0x3000, 0, 4);
	bar_wr(&e, 0x3000, 0, 4); /* two kicks before the loop runs coalesce */
	kick(&e);
	CHECK_EQ(f->notifies[0], 1);
	bar_wr(&e, 0x3000 + 4 * NQ, 0, 2); /* no such queue */
	bar_wr(&e, 0x3ffe, 0, 2);
	kick(&e);
	CHECK_EQ(f->notifies[0] + f->notifies[1], 2);
	CHECK_EQ(bar_rd(&e, 0x3000, 4), 0);

	/* Quiesce holds kicks (and forwards); resume replays them. */
	CHECK_EQ(vd->quiesce(vd->opaque), 0);
	CHECK_EQ(f->quiesces, 1);
	bar_wr(&e, 0x3000, 0, 2);
	kick(&e);
	CHECK_EQ(f->notifies[0], 1);
	vd->resume(vd->opaque);
	CHECK_EQ(f->resumes, 1);
	kick(&e);
	CHECK_EQ(f->notifies[0], 2);
	CHECK_EQ(f->notifies[1], 1);

	/* The PCI_CFG window reaches the same registers, kicks included. */
	struct caps c = walk_caps(&e);
	unsigned w = c.vndr[VIRTIO_PCI_CAP_PCI_CFG];
	cfg_wr(&e, w + VIRTIO_PCI_CAP_BAR, 0, 1);
	cfg_wr(&e, w + VIRTIO_PCI_CAP_OFFSET, VIRTIO_PCI_COMMON_NUMQ, 4);
	cfg_wr(&e, w + VIRTIO_PCI_CAP_LENGTH, 2, 4);
	CHECK_EQ(cfg_rd(&e, w + 16, 4) & 0xffff, NQ);
	cfg_wr(&e, w + VIRTIO_PCI_CAP_OFFSET, VIRTIO_PCI_COMMON_STATUS, 4);
	cfg_wr(&e, w + VIRTIO_PCI_CAP_LENGTH, 1, 4);
	cfg_wr(&e, w + 16, VIRTIO_CONFIG_S_ACKNOWLEDGE, 1);
	CHECK_EQ(bar_rd(&e, VIRTIO_PCI_COMMON_STATUS, 1), VIRTIO_CONFIG_S_ACKNOWLEDGE);
	cfg_wr(&e, w + VIRTIO_PCI_CAP_OFFSET, 0x2004, 4);
	cfg_wr(&e, w + VIRTIO_PCI_CAP_LENGTH, 4, 4);
	CHECK_EQ(cfg_rd(&e, w + 16, 4), 0x17161514);
	cfg_wr(&e, w + VIRTIO_PCI_CAP_OFFSET, 0x3004, 4);
	cfg_wr(&e, w + VIRTIO_PCI_CAP_LENGTH, 2, 4);
	cfg_wr(&e, w + 16, 1, 2);
	kick(&e);
	CHECK_EQ(f->notifies[1], 2);
	/* Bad windows do nothing: another BAR, odd length, misaligned, outside the BAR. */
	cfg_wr(&e, w + VIRTIO_PCI_CAP_BAR, 1, 1);
	cfg_wr(&e, w + 16, 0xabcdef01, 4);
	cfg_wr(&e, w + VIRTIO_PCI_CAP_OFFSET, VIRTIO_PCI_COMMON_NUMQ, 4);
	CHECK_EQ(cfg_rd(&e, w + 16, 2), 0xef01);
	cfg_wr(&e, w + VIRTIO_PCI_CAP_BAR, 0, 1);
	cfg_wr(&e, w + VIRTIO_PCI_CAP_LENGTH, 3, 4);
	CHECK_EQ(cfg_rd(&e, w + 16, 2), 0xef01);
	cfg_wr(&e, w + VIRTIO_PCI_CAP_LENGTH, 4, 4);
	cfg_wr(&e, w + VIRTIO_PCI_CAP_OFFSET, VIRTIO_PCI_COMMON_NUMQ, 4); /* 18 is not 4-aligned */
	CHECK_EQ(cfg_rd(&e, w + 16, 2), 0xef01);
	cfg_wr(&e, w + VIRTIO_PCI_CAP_OFFSET, 0x8000, 4);
	CHECK_EQ(cfg_rd(&e, w + 16, 4), 0xffffffff);
	cfg_wr(&e, w + VIRTIO_PCI_CAP_OFFSET, 0xfffffffc, 4);
	cfg_wr(&e, w + 16, 0, 4);
	kick(&e);
	CHECK_EQ(f->notifies[0], 2);
	CHECK_EQ(f->notifies[1], 2);
	env_fini(&e);
}

static void test_intx(void)
{
	struct env e;
	env_init(&e, ram1, sizeof(ram1));
	struct virtio_dev *d = &e.f.d;

	d->notify_queue(d, &d->vqs[0]);
	CHECK_EQ(e.obs.intx, 1);
	CHECK(!e.obs.last.msi);
	CHECK_EQ(e.obs.last.gsi, 16);
	CHECK_EQ(e.obs.last.level, 1);
	CHECK(cfg_rd(&e, PCI_STATUS, 2) & PCI_STATUS_INTERRUPT);
	d->notify_config(d);
	CHECK_EQ(e.obs.intx, 1); /* already asserted */
	CHECK_EQ(bar_rd(&e, 0x1001, 1), 0);                   /* only byte 0 is the ISR */
	CHECK_EQ(bar_rd(&e, 0x1000, 4), 0x3);                  /* queue | config */
	CHECK_EQ(e.obs.intx, 2);
	CHECK_EQ(e.obs.last.level, 0);
	CHECK(!(cfg_rd(&e, PCI_STATUS, 2) & PCI_STATUS_INTERRUPT));
	CHECK_EQ(bar_rd(&e, 0x1000, 1), 0);
	CHECK_EQ(e.obs.intx, 2);
	bar_wr(&e, 0x1000, 0xff, 1); /* ISR is read-only */
	CHECK_EQ(bar_rd(&e, 0x1000, 1), 0);

	/* INTX_DISABLE holds the line low; clearing it lets the pending ISR through. */
	cfg_wr(&e, PCI_COMMAND, cfg_rd(&e, PCI_COMMAND, 2) | PCI_COMMAND_INTX_DISABLE, 2);
	d->notify_queue(d, &d->vqs[1]);
	CHECK_EQ(e.obs.intx, 2);
	cfg_wr(&e, PCI_COMMAND, cfg_rd(&e, PCI_COMMAND, 2) & ~PCI_COMMAND_INTX_DISABLE, 2);
	CHECK_EQ(e.obs.intx, 3);
	CHECK_EQ(e.obs.last.level, 1);
	/* A device reset clears the ISR and drops the line. */
	bar_wr(&e, VIRTIO_PCI_COMMON_STATUS, 0, 1);
	CHECK_EQ(e.obs.intx, 4);
	CHECK_EQ(e.obs.last.level, 0);
	CHECK_EQ(bar_rd(&e, 0x1000, 1), 0);
	env_fini(&e);
}

static uint64_t msi_route_data(struct vm *vm, unsigned gsi)
{
	struct kvm_irq_routing_entry *r = vm->gsi_routes;
	for (unsigned i = 0; i < vm->nr_routes; i++)
		if (r[i].gsi == gsi && r[i].type == KVM_IRQ_ROUTING_MSI)
			return (uint64_t)r[i].u.msi.address_lo << 32 | r[i].u.msi.data;
	return 0;
}

static void msix_entry(struct env *e, unsigned v, uint32_t addr, uint32_t data, uint32_t ctrl)
{
	bar_wr(e, 0x4000 + 16 * v, addr, 4);
	bar_wr(e, 0x4000 + 16 * v + 4, 0, 4);
	bar_wr(e, 0x4000 + 16 * v + 8, data, 4);
	bar_wr(e, 0x4000 + 16 * v + 12, ctrl, 4);
}

static void test_msix(void)
{
	struct env e;
	env_init(&e, ram1, sizeof(ram1));
	struct virtio_dev *d = &e.f.d;
	struct caps c = walk_caps(&e);

	/* Power-on: every entry masked, nothing pending. */
	for (unsigned v = 0; v < NVEC; v++)
		CHECK_EQ(bar_rd(&e, 0x4000 + 16 * v + 12, 4), 1);
	CHECK_EQ(bar_rd(&e, 0x5000, 8), 0);

	msix_entry(&e, 0, 0xfee00000, 0x41, 0);
	msix_entry(&e, 1, 0xfee01000, 0x51, 1);
	CHECK_EQ(bar_rd(&e, 0x4000, 8), 0xfee00000);
	CHECK_EQ(bar_rd(&e, 0x4008, 4), 0x41);
	bar_wr(&e, VIRTIO_PCI_COMMON_Q_SELECT, 0, 2);
	bar_wr(&e, VIRTIO_PCI_COMMON_Q_MSIX, 0, 2);
	bar_wr(&e, VIRTIO_PCI_COMMON_MSIX, 1, 2);
	cfg_wr(&e, c.msix + PCI_MSIX_FLAGS, PCI_MSIX_FLAGS_ENABLE, 2);
	CHECK_EQ(cfg_rd(&e, c.msix + PCI_MSIX_FLAGS, 2), PCI_MSIX_FLAGS_ENABLE | (NVEC - 1));
	cfg_wr(&e, c.msix + PCI_MSIX_FLAGS, PCI_MSIX_FLAGS_ENABLE | 0x7ff, 2); /* table size is read-only */
	CHECK_EQ(cfg_rd(&e, c.msix + PCI_MSIX_FLAGS, 2), PCI_MSIX_FLAGS_ENABLE | (NVEC - 1));
	/* Enabling routed the unmasked vector 0 (no KVM: the table is bookkeeping). */
	CHECK_EQ(e.vp->msix.vec[0].gsi, 24);
	CHECK_EQ(msi_route_data(&e.vm, 24), 0xfee0000000000041ull);
	CHECK_EQ(e.vp->msix.vec[1].gsi, -1); /* masked: not yet */

	d->notify_queue(d, &d->vqs[0]);
	CHECK_EQ(e.obs.msi, 1);
	CHECK_EQ(e.obs.intx, 0); /* never INTx with MSI-X on */
	CHECK_EQ(e.obs.last.vector, 0);
	CHECK_EQ(e.obs.last.addr, 0xfee00000);
	CHECK_EQ(e.obs.last.data, 0x41);
	CHECK_EQ(bar_rd(&e, 0x1000, 1), 0);

	/* Masked vector 1 (config): pending bit, fired on unmask with the message current by then. */
	d->notify_config(d);
	CHECK_EQ(e.obs.msi, 1);
	CHECK_EQ(bar_rd(&e, 0x5000, 8), 2);
	CHECK_EQ(bar_rd(&e, 0x5000, 4), 2);
	CHECK_EQ(bar_rd(&e, 0x5004, 4), 0);
	bar_wr(&e, 0x4000 + 16 + 8, 0x52, 4);
	CHECK_EQ(e.obs.msi, 1);
	bar_wr(&e, 0x4000 + 16 + 12, 0, 4);
	CHECK_EQ(e.obs.msi, 2);
	CHECK_EQ(e.obs.last.vector, 1);
	CHECK_EQ(e.obs.last.data, 0x52);
	CHECK_EQ(bar_rd(&e, 0x5000, 8), 0);
	CHECK_EQ(e.vp->msix.vec[1].gsi, 25);
	CHECK_EQ(msi_route_data(&e.vm, 25), 0xfee0100000000052ull);
	/* Rewriting an unmasked entry re-routes it. */
	bar_wr(&e, 0x4000 + 8, 0x43, 4);
	CHECK_EQ(msi_route_data(&e.vm, 24), 0xfee0000000000043ull);
	CHECK_EQ(e.vm.nr_routes, 42);
	/* Masking an entry with the mask-and-data qword write. */
	bar_wr(&e, 0x4000 + 8, 0x43ull | 1ull << 32, 8);
	d->notify_queue(d, &d->vqs[0]);
	CHECK_EQ(e.obs.msi, 2);
	CHECK_EQ(bar_rd(&e, 0x5000, 4), 1);
	bar_wr(&e, 0x4000 + 12, 0xfffffffe, 4); /* reserved bits read zero: this unmasks */
	CHECK_EQ(bar_rd(&e, 0x4000 + 12, 4), 0);
	CHECK_EQ(e.obs.msi, 3);
	CHECK_EQ(e.obs.last.data, 0x43);

	/* Function mask. */
	cfg_wr(&e, c.msix + PCI_MSIX_FLAGS, PCI_MSIX_FLAGS_ENABLE | PCI_MSIX_FLAGS_MASKALL, 2);
	d->notify_queue(d, &d->vqs[0]);
	d->notify_config(d);
	CHECK_EQ(e.obs.msi, 3);
	CHECK_EQ(bar_rd(&e, 0x5000, 4), 3);
	cfg_wr(&e, c.msix + PCI_MSIX_FLAGS, PCI_MSIX_FLAGS_ENABLE, 2);
	CHECK_EQ(e.obs.msi, 5);
	CHECK_EQ(bar_rd(&e, 0x5000, 4), 0);

	/* No vector: no interrupt at all, and no ISR either. */
	bar_wr(&e, VIRTIO_PCI_COMMON_Q_SELECT, 1, 2);
	CHECK_EQ(bar_rd(&e, VIRTIO_PCI_COMMON_Q_MSIX, 2), VIRTIO_MSI_NO_VECTOR);
	d->notify_queue(d, &d->vqs[1]);
	CHECK_EQ(e.obs.msi, 5);
	CHECK_EQ(e.obs.intx, 0);
	CHECK_EQ(bar_rd(&e, 0x5000, 4), 0);

	/* Bad table accesses: narrow, misaligned, past the last entry, PBA writes. */
	bar_wr(&e, 0x4008, 0x99, 2);
	bar_wr(&e, 0x4009, 0x99, 4);
	bar_wr(&e, 0x4004, 0x99ull, 8);
	CHECK_EQ(bar_rd(&e, 0x4008, 4), 0x43);
	CHECK_EQ(bar_rd(&e, 0x4004, 4), 0);
	CHECK_EQ(bar_rd(&e, 0x4008, 2), 0);
	bar_wr(&e, 0x4000 + 16 * NVEC, 0xffffffff, 4);
	CHECK_EQ(bar_rd(&e, 0x4000 + 16 * NVEC, 4), 0);
	CHECK_EQ(bar_rd(&e, 0x4ffc, 4), 0);
	bar_wr(&e, 0x5000, 0xffffffff, 4);
	CHECK_EQ(bar_rd(&e, 0x5000, 4), 0);
	CHECK_EQ(bar_rd(&e, 0x5008, 8), 0);
	CHECK_EQ(bar_rd(&e, 0x7ff8, 8), 0);

	/* Disabling MSI-X falls back to INTx. */
	cfg_wr(&e, c.msix + PCI_MSIX_FLAGS, 0, 2);
	d->notify_queue(d, &d->vqs[0]);
	CHECK_EQ(e.obs.msi, 5);
	CHECK_EQ(e.obs.intx, 1);
	CHECK_EQ(bar_rd(&e, 0x1000, 1), 1);
	env_fini(&e);
}

/* ---- checkpoint ---- */

static void *save_env(struct env *e)
{
	struct vm_device *vd = virtio_pci_vm_device(e->vp);
	void *unq = calloc(1, 4096);
	CHECK(unq != NULL);
	CHECK_EQ(fdt_create(unq, 4096), 0);
	CHECK_EQ(vd->save(vd->opaque, unq), -EBUSY); /* only a quiesced device has a state worth saving */
	free(unq);
	CHECK_EQ(vd->quiesce(vd->opaque), 0);
	void *fdt = vph_save(vd, 1 << 16, NULL, NULL, 0);
	vd->resume(vd->opaque);
	return fdt;
}

static void same_reads(struct env *a, struct env *b)
{
	for (unsigned off = 0; off < PCI_CFG_SIZE; off += 4)
		CHECK_EQ(cfg_rd(a, off, 4), cfg_rd(b, off, 4));
	CHECK_EQ(a->base, b->base);
	for (unsigned off = 0; off < VP_COMMON_LEN; off += 2)
		CHECK_EQ(bar_rd(a, off, 2), bar_rd(b, off, 2));
	for (unsigned q = 0; q <= NQ; q++) {
		bar_wr(a, VIRTIO_PCI_COMMON_Q_SELECT, q, 2);
		bar_wr(b, VIRTIO_PCI_COMMON_Q_SELECT, q, 2);
		for (unsigned off = 0; off < VP_COMMON_LEN; off += 4)
			CHECK_EQ(bar_rd(a, off, 4), bar_rd(b, off, 4));
	}
	for (unsigned off = 0; off < 16 * NVEC; off += 4)
		CHECK_EQ(bar_rd(a, 0x4000 + off, 4), bar_rd(b, 0x4000 + off, 4));
	CHECK_EQ(bar_rd(a, 0x5000, 8), bar_rd(b, 0x5000, 8));
	for (unsigned off = 0; off < CFG_LEN; off += 4)
		CHECK_EQ(bar_rd(a, 0x2000 + off, 4), bar_rd(b, 0x2000 + off, 4));
}

static void test_save_restore(void)
{
	struct env a, b;
	env_init(&a, ram1, sizeof(ram1));
	struct caps c = walk_caps(&a);
	struct virtio_dev *d = &a.f.d;

	/* A driver mid-flight: BAR moved, features negotiated, queue 0 live, MSI-X with one masked pending
	 * vector, the PCI_CFG window aimed at num_queues. */
	uint32_t cmd = cfg_rd(&a, PCI_COMMAND, 2);
	cfg_wr(&a, PCI_COMMAND, cmd & ~PCI_COMMAND_MEMORY, 2);
	cfg_wr(&a, PCI_BASE_ADDRESS_0, 0xc4000000, 4);
	cfg_wr(&a, PCI_COMMAND, cmd | PCI_COMMAND_MASTER, 2);
	a.base = 0xc4000000;
	bar_wr(&a, VIRTIO_PCI_COMMON_STATUS, 0x03, 1);
	bar_wr(&a, VIRTIO_PCI_COMMON_GFSELECT, 1, 4);
	bar_wr(&a, VIRTIO_PCI_COMMON_GF, 1, 4);
	bar_wr(&a, VIRTIO_PCI_COMMON_STATUS, 0x0b, 1);
	bar_wr(&a, VIRTIO_PCI_COMMON_Q_SIZE, 64, 2);
	bar_wr(&a, VIRTIO_PCI_COMMON_Q_DESCLO, 0x20000, 4);
	bar_wr(&a, VIRTIO_PCI_COMMON_Q_AVAILLO, 0x21000, 4);
	bar_wr(&a, VIRTIO_PCI_COMMON_Q_USEDLO, 0x22000, 4);
	bar_wr(&a, VIRTIO_PCI_COMMON_Q_MSIX, 0, 2);
	bar_wr(&a, VIRTIO_PCI_COMMON_MSIX, 2, 2);
	bar_wr(&a, VIRTIO_PCI_COMMON_Q_ENABLE, 1, 2);
	bar_wr(&a, VIRTIO_PCI_COMMON_STATUS, 0x0f, 1);
	msix_entry(&a, 0, 0xfee00000, 0x61, 0);
	msix_entry(&a, 2, 0xfee02000, 0x62, 1);
	cfg_wr(&a, c.msix + PCI_MSIX_FLAGS, PCI_MSIX_FLAGS_ENABLE, 2);
	d->notify_config(d);
	CHECK_EQ(bar_rd(&a, 0x5000, 4), 4);
	bar_wr(&a, VIRTIO_PCI_COMMON_DFSELECT, 1, 4);
	bar_wr(&a, VIRTIO_PCI_COMMON_Q_SELECT, 1, 2);
	unsigned w = c.vndr[VIRTIO_PCI_CAP_PCI_CFG];
	cfg_wr(&a, w + VIRTIO_PCI_CAP_OFFSET, VIRTIO_PCI_COMMON_NUMQ, 4);
	cfg_wr(&a, w + VIRTIO_PCI_CAP_LENGTH, 2, 4);
	a.f.state = 0xc0ffee;
	a.f.d.vqs[0].last_avail = 5;
	a.f.d.vqs[0].used_idx = 4;

	void *fdt = save_env(&a);
	CHECK_EQ(a.f.saves, 1);
	int node = fdt_path_offset(fdt, "/virtio-fake@0");
	CHECK(node >= 0);

	env_init(&b, ram2, sizeof(ram2));
	CHECK_EQ(b.base, 0xc0000000);
	struct vm_device *vd = virtio_pci_vm_device(b.vp);
	CHECK_EQ(vd->restore(vd->opaque, fdt, node), 0);
	CHECK_EQ(b.f.restores, 1);
	CHECK_EQ(b.f.state, 0xc0ffee);
	b.base = 0xc4000000;
	/* Kicks wait for resume after a restore. */
	bar_wr(&b, 0x3000, 0, 2);
	kick(&b);
	CHECK_EQ(b.f.notifies[0], 0);
	vd->resume(vd->opaque);
	kick(&b);
	CHECK_EQ(b.f.notifies[0], 1);
	CHECK_EQ(b.f.resumes, 1);
	uint8_t tmp[4];
	CHECK_EQ(bus_dispatch(&b.vm.mmio, 0xc0000000, tmp, 4, false), -ENOENT); /* the BAR moved */
	CHECK_EQ(b.f.d.vqs[0].last_avail, 5);
	CHECK_EQ(b.f.d.vqs[0].used_idx, 4);
	/* The unmasked vector was routed in the new VM with the restored message. */
	CHECK(b.vp->msix.vec[0].gsi >= GSI_FIRST_MSI);
	CHECK_EQ(msi_route_data(&b.vm, (unsigned)b.vp->msix.vec[0].gsi), 0xfee0000000000061ull);
	CHECK_EQ(b.obs.msi, 0); /* nothing fired by the restore itself */
	same_reads(&a, &b);
	/* Behaviour carries over too: unmasking vector 2 fires the restored pending bit. */
	bar_wr(&b, 0x4000 + 32 + 12, 0, 4);
	CHECK_EQ(b.obs.msi, 1);
	CHECK_EQ(b.obs.last.data, 0x62);
	env_fini(&b);

	/* Refusals leave the device as it was. */
	env_init(&b, ram2, sizeof(ram2));
	vd = virtio_pci_vm_device(b.vp);
	uint8_t cfg[PCI_CFG_SIZE];
	memcpy(cfg, fdt_getprop(fdt, node, "pci-config", NULL), sizeof(cfg));
	cfg[PCI_DEVICE_ID] ^= 1;
	CHECK_EQ(fdt_setprop_inplace(fdt, node, "pci-config", cfg, sizeof(cfg)), 0);
	CHECK_EQ(vd->restore(vd->opaque, fdt, node), -EINVAL);
	cfg[PCI_DEVICE_ID] ^= 1;
	CHECK_EQ(fdt_setprop_inplace(fdt, node, "pci-config", cfg, sizeof(cfg)), 0);
	fdt32_t noff[NQ] = { cpu_to_fdt32(0), cpu_to_fdt32(7) };
	CHECK_EQ(fdt_setprop_inplace(fdt, node, "virtio-pci-notify-off", noff, sizeof(noff)), 0);
	CHECK_EQ(vd->restore(vd->opaque, fdt, node), -EINVAL);
	noff[1] = cpu_to_fdt32(1);
	CHECK_EQ(fdt_setprop_inplace(fdt, node, "virtio-pci-notify-off", noff, sizeof(noff)), 0);
	fdt32_t bad = cpu_to_fdt32(12345);
	CHECK_EQ(fdt_setprop_inplace(fdt, node, "virtio-nqueues", &bad, sizeof(bad)), 0);
	CHECK_EQ(vd->restore(vd->opaque, fdt, node), -EINVAL); /* the core refuses: config space rolled back */
	CHECK_EQ(b.vp->pci.bars[0].addr, 0xc0000000);
	CHECK_EQ(cfg_rd(&b, c.msix + PCI_MSIX_FLAGS, 2), NVEC - 1);
	CHECK_EQ(b.f.restores, 0);
	CHECK_EQ(b.f.d.status, 0);
	env_fini(&b);
	free(fdt);
	env_fini(&a);

	/* INTx: an asserted line is re-asserted in the new VM. */
	env_init(&a, ram1, sizeof(ram1));
	a.f.d.notify_queue(&a.f.d, &a.f.d.vqs[0]);
	CHECK_EQ(a.obs.last.level, 1);
	CHECK(cfg_rd(&a, PCI_STATUS, 2) & PCI_STATUS_INTERRUPT); /* the saved copy has the bit set */
	fdt = save_env(&a);
	env_init(&b, ram2, sizeof(ram2));
	vd = virtio_pci_vm_device(b.vp);
	CHECK_EQ(vd->restore(vd->opaque, fdt, fdt_path_offset(fdt, "/virtio-fake@0")), 0);
	CHECK_EQ(b.obs.intx, 1);
	CHECK_EQ(b.obs.last.level, 1);
	/* Restoring again over a device that believes the line is already high still drives it: the VM's
	 * irqchip may have been restored to a state with the line low. */
	CHECK_EQ(vd->restore(vd->opaque, fdt, fdt_path_offset(fdt, "/virtio-fake@0")), 0);
	CHECK_EQ(b.obs.intx, 2);
	CHECK_EQ(b.obs.last.level, 1);
	CHECK_EQ(b.obs.last.gsi, 16);
	CHECK(cfg_rd(&b, PCI_STATUS, 2) & PCI_STATUS_INTERRUPT);
	CHECK_EQ(bar_rd(&b, 0x1000, 1), 1);
	CHECK_EQ(b.obs.last.level, 0);
	free(fdt);
	env_fini(&b);
	env_fini(&a);
}

/* What must hold whatever the guest wrote: the device and transport state stays within its ranges and
 * every register reads back something the spec allows. */
static void check_invariants(struct env *e, uint32_t activates_before, uint8_t status_before)
{
	struct virtio_dev *d = &e->f.d;
	uint8_t st = __atomic_load_n(&d->status, __ATOMIC_ACQUIRE);
	/* DRIVER_OK only after a FEATURES_OK the device accepted: VERSION_1 and nothing never offered */
	if (st & VIRTIO_CONFIG_S_DRIVER_OK)
		CHECK(st & VIRTIO_CONFIG_S_FEATURES_OK);
	if (st & VIRTIO_CONFIG_S_FEATURES_OK) {
		CHECK(d->guest_features & (1ull << VIRTIO_F_VERSION_1));
		CHECK_EQ(d->guest_features & ~(d->host_features | 1ull << VIRTIO_F_VERSION_1), 0);
	}
	/* the device is started once per DRIVER_OK the driver set, and only then */
	if (e->f.activates != activates_before) {
		CHECK_EQ(e->f.activates, activates_before + 1);
		CHECK(st & VIRTIO_CONFIG_S_DRIVER_OK);
		CHECK(!(status_before & VIRTIO_CONFIG_S_DRIVER_OK));
	}
	uint16_t cv = __atomic_load_n(&d->config_msix_vector, __ATOMIC_RELAXED);
	CHECK(cv < NVEC || cv == VIRTIO_MSI_NO_VECTOR);
	for (unsigned q = 0; q < NQ; q++) {
		struct virtqueue *vq = &d->vqs[q];
		CHECK(vq->size <= vq->max_size && (vq->size & (vq->size - 1)) == 0);
		CHECK(vq->msix_vector < NVEC || vq->msix_vector == VIRTIO_MSI_NO_VECTOR);
	}
	/* config space: identity and the capability chain cannot be written */
	CHECK_EQ(cfg_rd(e, PCI_VENDOR_ID, 2), 0x1af4);
	CHECK_EQ(cfg_rd(e, PCI_DEVICE_ID, 2), 0x1040 + VIRTIO_ID_BLOCK);
	struct caps c = walk_caps(e);
	CHECK_EQ(c.nvndr, 5);
	CHECK_EQ(cfg_rd(e, c.msix + PCI_MSIX_FLAGS, 2) & PCI_MSIX_FLAGS_QSIZE, NVEC - 1);
	uint32_t bar = cfg_rd(e, PCI_BASE_ADDRESS_0, 4);
	CHECK_EQ(bar & 0x7fff, 0); /* 32-bit memory BAR, 32 KiB aligned */
	CHECK_EQ(e->vp->pci.bars[0].addr & 0x7fff, 0);
	/* the BAR's registers read bounded values where it answers */
	uint8_t b[2];
	uint64_t base = e->vp->pci.bars[0].addr;
	if (bus_dispatch(&e->vm.mmio, base + VIRTIO_PCI_COMMON_NUMQ, b, 2, false) == 0) {
		CHECK_EQ(b[0] | b[1] << 8, NQ);
		CHECK_EQ(bus_dispatch(&e->vm.mmio, base + VIRTIO_PCI_COMMON_STATUS, b, 1, false), 0);
		CHECK_EQ(b[0], __atomic_load_n(&d->status, __ATOMIC_ACQUIRE));
		CHECK_EQ(bus_dispatch(&e->vm.mmio, base + VIRTIO_PCI_COMMON_Q_SIZE, b, 2, false), 0);
		unsigned qsz = b[0] | b[1] << 8;
		CHECK(e->vp->qselect < NQ ? qsz == d->vqs[e->vp->qselect].size : qsz == 0);
	}
}

/* Put BAR 0 back and decode it, so the random accesses keep reaching the device after the guest
 * moved or disabled it. */
static void bar_home(struct env *e)
{
	uint32_t cmd = cfg_rd(e, PCI_COMMAND, 2);
	cfg_wr(e, PCI_COMMAND, cmd & ~PCI_COMMAND_MEMORY, 2);
	cfg_wr(e, PCI_BASE_ADDRESS_0, 0xc0000000, 4);
	cfg_wr(e, PCI_COMMAND, cmd | PCI_COMMAND_MEMORY, 2);
}

/* A driver's proper start (reset, features, FEATURES_OK, DRIVER_OK), so the garbage also lands on a
 * started device. */
static void driver_start(struct env *e)
{
	e->base = e->vp->pci.bars[0].addr;
	bar_wr(e, VIRTIO_PCI_COMMON_STATUS, 0, 1);
	bar_wr(e, VIRTIO_PCI_COMMON_STATUS, VIRTIO_CONFIG_S_ACKNOWLEDGE | VIRTIO_CONFIG_S_DRIVER, 1);
	bar_wr(e, VIRTIO_PCI_COMMON_GFSELECT, 0, 4);
	bar_wr(e, VIRTIO_PCI_COMMON_GF, (uint32_t)F_LOW, 4);
	bar_wr(e, VIRTIO_PCI_COMMON_GFSELECT, 1, 4);
	bar_wr(e, VIRTIO_PCI_COMMON_GF, (uint32_t)((F_HIGH | 1ull << VIRTIO_F_VERSION_1) >> 32), 4);
	bar_wr(e, VIRTIO_PCI_COMMON_STATUS, VIRTIO_CONFIG_S_FEATURES_OK, 1);
	uint32_t act = e->f.activates;
	bar_wr(e, VIRTIO_PCI_COMMON_STATUS, VIRTIO_CONFIG_S_DRIVER_OK, 1);
	CHECK_EQ(e->f.activates, act + 1);
}

/* Whatever the guest does through the BAR or config space (status, command and BAR writes included),
 * nothing breaks and the invariants above hold after every access. */
static void test_garbage(void)
{
	struct env e;
	env_init(&e, ram1, sizeof(ram1));
	uint64_t seed = 0x9e3779b97f4a7c15ull;
	static const unsigned lens[] = { 1, 2, 3, 4, 8 };
	unsigned status_writes = 0, cfg_hits = 0, bar_moves = 0;
	for (unsigned i = 0; i < 40000; i++) {
		seed = seed * 6364136223846793005ull + 1442695040888963407ull;
		unsigned len = lens[(seed >> 20) % ARRAY_SIZE(lens)];
		uint64_t off = (seed >> 24) % (0x8000 + 16);
		uint8_t data[8];
		for (unsigned k = 0; k < 8; k++)
			data[k] = (uint8_t)(seed >> (8 * k));
		bool wr = (seed >> 8) & 1;
		uint32_t act = e.f.activates;
		uint8_t st = e.f.d.status;
		/* every 8th access aims at the status register, so the device goes through its states */
		if (i % 8 == 0) {
			off = VIRTIO_PCI_COMMON_STATUS;
			len = 1;
			wr = true;
			data[0] = (uint8_t)(seed >> 33) & (i % 64 ? 0x0f : 0x7f); /* now and then NEEDS_RESET/FAILED bits too */
			status_writes++;
		}
		bus_dispatch(&e.vm.mmio, e.vp->pci.bars[0].addr + off, data, len, wr);
		check_invariants(&e, act, st);
		if (i % 4 == 0) {
			unsigned coff = (unsigned)(seed >> 40) % 264;
			unsigned clen = lens[(seed >> 52) % ARRAY_SIZE(lens)];
			if (i % 32 == 0) /* the command register and BAR 0, which move or hide the BAR */
				coff = (seed >> 45) & 1 ? PCI_COMMAND : PCI_BASE_ADDRESS_0;
			cfg_hits += coff == PCI_COMMAND || coff == PCI_BASE_ADDRESS_0;
			uint64_t was = e.vp->pci.bars[0].addr;
			pci_bus_cfg_access(&e.bus, e.vp->pci.slot, 0, coff, data, clen, (seed >> 9) & 1);
			bar_moves += e.vp->pci.bars[0].addr != was;
			check_invariants(&e, e.f.activates, e.f.d.status);
		}
		if (i % 64 == 0) {
			e.f.d.notify_queue(&e.f.d, &e.f.d.vqs[seed % NQ]);
			e.f.d.notify_config(&e.f.d);
			kick(&e);
			CHECK(e.obs.intx == 0 || e.obs.last.msi || e.obs.last.gsi == 16); /* INTx only on its line */
		}
		if (i % 256 == 255) {
			bar_home(&e);
			if (i % 512 == 511)
				driver_start(&e);
		}
	}
	/* the loop did reach what it is meant to */
	CHECK(status_writes >= 5000);
	CHECK(cfg_hits >= 300);
	CHECK(bar_moves > 0);
	CHECK(e.f.activates > 0 && e.f.resets > 0);
	env_fini(&e);
}

/* ---- virtio-blk after a restore: its queue interrupt is raised again, as virtio-net's are ---- */

static unsigned blk_irqs;
static void blk_irq(struct virtio_dev *d, struct virtqueue *vq)
{
	(void)d, (void)vq;
	blk_irqs++;
}
static void blk_cfg_irq(struct virtio_dev *d)
{
	(void)d;
}

/* A virtio-blk device behind the transport, its interrupts counted in blk_irqs. */
static struct virtio_dev *blk_new(struct vp_harness *h, struct guest_mem *m, struct ioloop *loop, const char *img)
{
	char err[256] = "";
	struct virtio_dev *d = virtio_blk_create(m, loop, img, false, err, sizeof(err));
	CHECK(d != NULL);
	vph_attach(h, ram2, sizeof(ram2), d, virtio_blk_destroy, NULL, blk_irq, blk_cfg_irq);
	return d;
}

/* Restore into a fresh device and resume it, as cmd/run.c does: how many queue interrupts came out. */
static unsigned blk_irqs_after_restore(struct guest_mem *m, struct ioloop *loop, const char *img, const void *fdt)
{
	struct vp_harness h;
	blk_new(&h, m, loop, img);
	struct vm_device *vd = vph_vmdev(&h);
	blk_irqs = 0;
	int node = fdt_first_subnode(fdt, 0); /* the one node vph_save wrote */
	CHECK(node >= 0);
	CHECK_EQ(vd->restore(vd->opaque, fdt, node), 0);
	CHECK_EQ(blk_irqs, 0); /* not while restoring: the irqchip may not be restored yet */
	vd->resume(vd->opaque);
	unsigned n = blk_irqs;
	vph_fini(&h);
	return n;
}

/* The checkpoint of a device its driver set up, taken the way a pause does: quiesce, save, resume. */
static void *blk_save(struct vm_device *vd)
{
	CHECK_EQ(vd->quiesce(vd->opaque), 0);
	void *fdt = vph_save(vd, 64 << 10, NULL, NULL, 0);
	vd->resume(vd->opaque);
	return fdt;
}

static void test_blk_restore_reraises(void)
{
	char img[] = "/tmp/ftvmm-test-vpci-blk.XXXXXX";
	int fd = mkstemp(img);
	CHECK(fd >= 0);
	CHECK_EQ(ftruncate(fd, 1 << 20), 0);
	close(fd);
	struct guest_mem m;
	CHECK_EQ(gmem_init_buffer(&m, ram2, sizeof(ram2)), 0);
	struct ioloop loop;
	CHECK_EQ(ioloop_init(&loop, "blk"), 0);

	/* a driver that set its device up: DRIVER_OK, queue 0 live (and idle) */
	struct vp_harness ha;
	struct virtio_dev *a = blk_new(&ha, &m, &loop, img);
	a->guest_features = a->host_features;
	a->status = VIRTIO_CONFIG_S_ACKNOWLEDGE | VIRTIO_CONFIG_S_DRIVER | VIRTIO_CONFIG_S_FEATURES_OK;
	struct virtqueue *vq = &a->vqs[0];
	vq->size = 16;
	vq->desc_gpa = 0x1000;
	vq->avail_gpa = 0x2000;
	vq->used_gpa = 0x3000;
	vq->ready = true;
	a->status |= VIRTIO_CONFIG_S_DRIVER_OK;
	CHECK_EQ(a->ops->activate(a), 0);
	void *fdt = blk_save(vph_vmdev(&ha));
	CHECK_EQ(blk_irqs_after_restore(&m, &loop, img, fdt), 1);
	free(fdt);

	/* a device its driver never started owes nothing */
	a->ops->reset(a);
	a->status = 0;
	fdt = blk_save(vph_vmdev(&ha));
	CHECK_EQ(blk_irqs_after_restore(&m, &loop, img, fdt), 0);
	free(fdt);

	vph_fini(&ha);
	ioloop_destroy(&loop);
	gmem_free(&m);
	unlink(img);
}

int main(void)
{
	test_identity_and_caps();
	test_common_cfg();
	test_kicks();
	test_intx();
	test_msix();
	test_save_restore();
	test_garbage();
	test_blk_restore_reraises();
	TEST_DONE("test_virtio_pci");
}

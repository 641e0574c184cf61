/* test_virtqueue.c - the checked split-ring walker against hand-built rings, well-formed and hostile. */
#include <errno.h>
#include <libfdt.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "../../devices/virtio.h"
#include "test.h"

#define MEM_SIZE (64 * PAGE_SIZE)
#define DESC_GPA 0x1000ull
#define AVAIL_GPA 0x2000ull
#define USED_GPA 0x3000ull
#define IND_GPA 0x4000ull  /* indirect tables: up to 0x8000 */
#define DATA_GPA 0x10000ull
#define QSIZE 16

static uint8_t *ram;
static struct guest_mem mem;
static struct virtio_dev dev;
static struct virtqueue *vq;
static struct vq_req req;
static uint16_t avail_idx;
static int config_notifies, reset_calls;

static void on_config(struct virtio_dev *d)
{
	(void)d;
	config_notifies++;
}

static void on_reset(struct virtio_dev *d)
{
	(void)d;
	reset_calls++;
}

static const struct virtio_dev_ops ops = { .reset = on_reset };

/* Fresh memory, device and queue: every case starts from the same state. */
static void setup(uint64_t features)
{
	if (dev.vqs)
		virtio_dev_destroy(&dev);
	memset(ram, 0, MEM_SIZE);
	memset(mem.dirty, 0, gmem_bitmap_words(mem.npages) * sizeof(unsigned long));
	CHECK_EQ(virtio_dev_init(&dev, "vq-test", 1, 2, 64, 0, &mem, &ops, NULL), 0);
	dev.notify_config = on_config;
	dev.host_features |= 1ull << VIRTIO_RING_F_INDIRECT_DESC | 1ull << VIRTIO_RING_F_EVENT_IDX;
	dev.guest_features = features | 1ull << VIRTIO_F_VERSION_1;
	vq = &dev.vqs[0];
	vq->size = QSIZE;
	vq->desc_gpa = DESC_GPA;
	vq->avail_gpa = AVAIL_GPA;
	vq->used_gpa = USED_GPA;
	vq->ready = true;
	avail_idx = 0;
}

static void desc_at(uint64_t table, unsigned i, uint64_t addr, uint32_t len, uint16_t flags, uint16_t next)
{
	struct vring_desc d = { .addr = addr, .len = len, .flags = flags, .next = next };
	memcpy(ram + table + 16 * i, &d, sizeof(d));
}

static void desc(unsigned i, uint64_t addr, uint32_t len, uint16_t flags, uint16_t next)
{
	desc_at(DESC_GPA, i, addr, len, flags, next);
}

static void avail_put(uint16_t head)
{
	memcpy(ram + AVAIL_GPA + 4 + 2 * (avail_idx % QSIZE), &head, 2);
	avail_idx++;
	memcpy(ram + AVAIL_GPA + 2, &avail_idx, 2);
}

static uint16_t used_idx(void)
{
	uint16_t v;
	memcpy(&v, ram + USED_GPA + 2, 2);
	return v;
}

static struct vring_used_elem used_elem(unsigned slot)
{
	struct vring_used_elem e;
	memcpy(&e, ram + USED_GPA + 4 + 8 * (slot % QSIZE), sizeof(e));
	return e;
}

static bool page_dirty(uint64_t gpa)
{
	uint64_t pg = gpa >> PAGE_SHIFT;
	return mem.dirty[pg / (8 * sizeof(long))] & (1ul << (pg % (8 * sizeof(long))));
}

static unsigned dirty_count(void)
{
	unsigned n = 0;
	for (uint64_t g = 0; g < MEM_SIZE; g += PAGE_SIZE)
		n += page_dirty(g);
	return n;
}

/* The chain must be refused, the queue marked broken, and stay refused. */
static void expect_malformed(void)
{
	CHECK_EQ(vq_pop(vq, &req), -EINVAL);
	CHECK(vq->broken);
	CHECK_EQ(vq_pop(vq, &req), -EINVAL);
	CHECK_EQ(vq_pending(vq), 0);
}

static void test_basic(void)
{
	setup(0);
	CHECK_EQ(vq_pop(vq, &req), 0);
	desc(3, DATA_GPA, 100, VRING_DESC_F_NEXT, 5);
	desc(5, DATA_GPA + 0x2000, 200, VRING_DESC_F_WRITE | VRING_DESC_F_NEXT, 6);
	desc(6, DATA_GPA + 0x5000, 10, VRING_DESC_F_WRITE, 0);
	avail_put(3);
	CHECK_EQ(vq_pending(vq), 1);
	CHECK_EQ(vq_pop(vq, &req), 1);
	CHECK_EQ(req.head, 3);
	CHECK_EQ(req.nout, 1);
	CHECK_EQ(req.nin, 2);
	CHECK_EQ(req.out_len, 100);
	CHECK_EQ(req.in_len, 210);
	CHECK(req.iov[0].iov_base == ram + DATA_GPA);
	CHECK(req.iov[1].iov_base == ram + DATA_GPA + 0x2000);
	CHECK(req.iov[2].iov_base == ram + DATA_GPA + 0x5000);
	CHECK_EQ(req.iov[2].iov_len, 10);
	CHECK_EQ(vq_pop(vq, &req), 0);
	CHECK_EQ(vq_pending(vq), 0);
	CHECK_EQ(dirty_count(), 0); /* no event idx: popping writes nothing */

	/* push 150 bytes: only the first writable segment is dirty, plus the used ring */
	CHECK_EQ(vq_push(vq, &req, 150), 0);
	CHECK_EQ(used_idx(), 1);
	CHECK_EQ(used_elem(0).id, 3);
	CHECK_EQ(used_elem(0).len, 150);
	CHECK(page_dirty(USED_GPA));
	CHECK(page_dirty(DATA_GPA + 0x2000));
	CHECK(!page_dirty(DATA_GPA + 0x5000));
	CHECK(!page_dirty(DATA_GPA));
	CHECK_EQ(dirty_count(), 2);

	/* a used ring straddling a page: the element's page is dirty, not just the idx's */
	setup(0);
	vq->used_gpa = 0x3ff8; /* idx at 0x3ffa, ring[0] at 0x3ffc..0x4003, ring[1] at 0x4004 */
	desc(0, DATA_GPA, 8, 0, 0);
	avail_put(0);
	avail_put(0);
	CHECK_EQ(vq_pop(vq, &req), 1);
	CHECK_EQ(vq_push(vq, &req, 0), 0);
	CHECK(page_dirty(0x3000));
	CHECK(page_dirty(0x4000));
	memset(mem.dirty, 0, gmem_bitmap_words(mem.npages) * sizeof(unsigned long));
	CHECK_EQ(vq_pop(vq, &req), 1);
	CHECK_EQ(vq_push(vq, &req, 0), 0);
	CHECK(page_dirty(0x4000)); /* ring[1] */
	CHECK(page_dirty(0x3000)); /* idx */

	/* batch publish: one idx store for all, nothing written if any head is bad */
	setup(0);
	struct vq_used batch[3] = { { 1, 10 }, { 5, 20 }, { 9, 30 } };
	CHECK_EQ(vq_push_used_n(vq, batch, 3), 0);
	CHECK_EQ(used_idx(), 3);
	CHECK_EQ(used_elem(1).id, 5);
	CHECK_EQ(used_elem(2).len, 30);
	batch[1].head = QSIZE;
	CHECK_EQ(vq_push_used_n(vq, batch, 3), -EINVAL);
	CHECK_EQ(used_idx(), 3);
	CHECK_EQ(vq->used_idx, 3);
	CHECK_EQ(vq_push_used_n(vq, batch, QSIZE + 1), -EINVAL);
	CHECK_EQ(vq_push_used_n(vq, batch, 0), 0);

	/* wrap-around of the 16-bit indices */
	setup(0);
	vq->last_avail = vq->used_idx = 0xfffe;
	avail_idx = 0xfffe;
	desc(0, DATA_GPA, 8, VRING_DESC_F_WRITE, 0);
	for (int i = 0; i < 4; i++)
		avail_put(0);
	CHECK_EQ(vq_pending(vq), 4);
	for (int i = 0; i < 4; i++) {
		CHECK_EQ(vq_pop(vq, &req), 1);
		CHECK_EQ(vq_push(vq, &req, 8), 0);
	}
	CHECK_EQ(vq_pop(vq, &req), 0);
	CHECK_EQ(used_idx(), 2);
	CHECK_EQ(vq->last_avail, 2);

	/* a queue that is not ready yields nothing and writes nothing */
	setup(0);
	vq->ready = false;
	avail_put(0);
	CHECK_EQ(vq_pop(vq, &req), 0);
	CHECK_EQ(vq_push(vq, &req, 0), -EFAULT);
	CHECK(!vq_needs_notify(vq));
}

static void test_zero_len_and_indirect(void)
{
	/* zero-length descriptors are legal and produce no iovec */
	setup(0);
	desc(0, DATA_GPA, 0, VRING_DESC_F_NEXT, 1);
	desc(1, 0xdeadbeef000ull, 0, VRING_DESC_F_NEXT, 2); /* address irrelevant: nothing is accessed */
	desc(2, DATA_GPA, 64, VRING_DESC_F_WRITE, 0);
	avail_put(0);
	CHECK_EQ(vq_pop(vq, &req), 1);
	CHECK_EQ(req.nout, 0);
	CHECK_EQ(req.nin, 1);
	CHECK_EQ(req.in_len, 64);

	/* direct descriptors followed by an indirect table */
	setup(1ull << VIRTIO_RING_F_INDIRECT_DESC);
	desc(2, DATA_GPA, 16, VRING_DESC_F_NEXT, 7);
	desc(7, IND_GPA + 8, 48, VRING_DESC_F_INDIRECT | VRING_DESC_F_WRITE, 0); /* WRITE here is ignored */
	desc_at(IND_GPA + 8, 0, DATA_GPA + 0x1000, 32, VRING_DESC_F_NEXT, 2);
	desc_at(IND_GPA + 8, 2, DATA_GPA + 0x2000, 512, VRING_DESC_F_WRITE | VRING_DESC_F_NEXT, 1);
	desc_at(IND_GPA + 8, 1, DATA_GPA + 0x3000, 1, VRING_DESC_F_WRITE, 0);
	avail_put(2);
	CHECK_EQ(vq_pop(vq, &req), 1);
	CHECK_EQ(req.head, 2);
	CHECK_EQ(req.nout, 2);
	CHECK_EQ(req.nin, 2);
	CHECK_EQ(req.out_len, 48);
	CHECK_EQ(req.in_len, 513);
	CHECK(req.iov[3].iov_base == ram + DATA_GPA + 0x3000);

	/* the longest legal flattened chain: 1 direct + 1023 indirect = VQ_MAX_SEGS */
	setup(1ull << VIRTIO_RING_F_INDIRECT_DESC);
	desc(0, DATA_GPA, 1, VRING_DESC_F_NEXT, 1);
	desc(1, IND_GPA, 1023 * 16, VRING_DESC_F_INDIRECT, 0);
	for (unsigned i = 0; i < 1023; i++)
		desc_at(IND_GPA, i, DATA_GPA + i, 1, i < 1022 ? VRING_DESC_F_NEXT : 0, (uint16_t)(i + 1));
	avail_put(0);
	CHECK_EQ(vq_pop(vq, &req), 1);
	CHECK_EQ(req.nout, VQ_MAX_SEGS);

	/* ...and one more segment is too many */
	setup(1ull << VIRTIO_RING_F_INDIRECT_DESC);
	desc(0, DATA_GPA, 1, VRING_DESC_F_NEXT, 1);
	desc(1, DATA_GPA, 1, VRING_DESC_F_NEXT, 2);
	desc(2, IND_GPA, 1023 * 16, VRING_DESC_F_INDIRECT, 0);
	for (unsigned i = 0; i < 1023; i++)
		desc_at(IND_GPA, i, DATA_GPA + i, 1, i < 1022 ? VRING_DESC_F_NEXT : 0, (uint16_t)(i + 1));
	avail_put(0);
	expect_malformed();
}

/* Each case: build a bad ring or chain on a fresh queue and expect a refusal. */
static void test_malformed(void)
{
	static const struct { uint64_t desc, avail, used; uint16_t size; } layouts[] = {
		{ DESC_GPA + 8, AVAIL_GPA, USED_GPA, QSIZE },      /* desc misaligned */
		{ DESC_GPA, AVAIL_GPA + 1, USED_GPA, QSIZE },      /* avail misaligned */
		{ DESC_GPA, AVAIL_GPA, USED_GPA + 2, QSIZE },      /* used misaligned */
		{ DESC_GPA, AVAIL_GPA, USED_GPA, 12 },             /* not a power of two */
		{ DESC_GPA, AVAIL_GPA, USED_GPA, 128 },            /* above max_size (64) */
		{ DESC_GPA, AVAIL_GPA, USED_GPA, 0 },              /* zero */
		{ MEM_SIZE - 16 * 8, AVAIL_GPA, USED_GPA, QSIZE }, /* desc table runs off RAM */
		{ DESC_GPA, MEM_SIZE - 36, USED_GPA, QSIZE },      /* avail event word off RAM */
		{ DESC_GPA, AVAIL_GPA, MEM_SIZE - 132, QSIZE },    /* used event word off RAM */
		{ 0xfffffffffffffff0ull, AVAIL_GPA, USED_GPA, QSIZE }, /* wraps */
		{ DESC_GPA, 0xc0000000ull, USED_GPA, QSIZE },      /* MMIO hole */
	};
	for (size_t i = 0; i < sizeof(layouts) / sizeof(layouts[0]); i++) {
		setup(0);
		vq->desc_gpa = layouts[i].desc;
		vq->avail_gpa = layouts[i].avail;
		vq->used_gpa = layouts[i].used;
		vq->size = layouts[i].size;
		expect_malformed();
		CHECK(!vq_needs_notify(vq));
	}
	/* the exact edge of RAM is fine */
	setup(0);
	vq->used_gpa = MEM_SIZE - (4 + 8 * QSIZE + 2) - 2; /* 4-aligned, ends 2 bytes before the end */
	CHECK_EQ(vq_pop(vq, &req), 0);
	CHECK(!vq->broken);

	/* avail idx ran more than a ring ahead */
	setup(0);
	uint16_t bad = QSIZE + 1;
	memcpy(ram + AVAIL_GPA + 2, &bad, 2);
	expect_malformed();

	/* head out of range */
	setup(0);
	avail_put(QSIZE);
	expect_malformed();

	/* buffer outside RAM, wrapping, straddling the end, in the hole */
	const uint64_t bad_bufs[][2] = { { MEM_SIZE, 1 }, { ~0ull - 10, 100 }, { MEM_SIZE - 10, 11 },
					 { 0xc0000000ull, 4 }, { 0x100000000ull, 8 } };
	for (size_t i = 0; i < 5; i++) {
		setup(0);
		desc(0, DATA_GPA, 16, VRING_DESC_F_NEXT, 1);
		desc(1, bad_bufs[i][0], (uint32_t)bad_bufs[i][1], VRING_DESC_F_WRITE, 0);
		avail_put(0);
		expect_malformed();
	}

	/* next out of range */
	setup(0);
	desc(0, DATA_GPA, 16, VRING_DESC_F_NEXT, QSIZE);
	avail_put(0);
	expect_malformed();

	/* loops: self, and a cycle of three entered from outside */
	setup(0);
	desc(4, DATA_GPA, 16, VRING_DESC_F_NEXT, 4);
	avail_put(4);
	expect_malformed();
	setup(0);
	desc(0, DATA_GPA, 16, VRING_DESC_F_NEXT, 1);
	desc(1, DATA_GPA, 16, VRING_DESC_F_NEXT, 2);
	desc(2, DATA_GPA, 16, VRING_DESC_F_NEXT, 3);
	desc(3, DATA_GPA, 16, VRING_DESC_F_NEXT, 1);
	avail_put(0);
	expect_malformed();
	/* a loop of zero-length descriptors (no iovec is ever produced, the count still stops it) */
	setup(0);
	desc(0, DATA_GPA, 0, VRING_DESC_F_NEXT, 1);
	desc(1, DATA_GPA, 0, VRING_DESC_F_NEXT, 0);
	avail_put(0);
	expect_malformed();

	/* readable after writable */
	setup(0);
	desc(0, DATA_GPA, 16, VRING_DESC_F_WRITE | VRING_DESC_F_NEXT, 1);
	desc(1, DATA_GPA, 16, 0, 0);
	avail_put(0);
	expect_malformed();
}

static void test_malformed_indirect(void)
{
	const uint64_t F = 1ull << VIRTIO_RING_F_INDIRECT_DESC;
	/* not negotiated */
	setup(0);
	desc_at(IND_GPA, 0, DATA_GPA, 16, 0, 0);
	desc(0, IND_GPA, 16, VRING_DESC_F_INDIRECT, 0);
	avail_put(0);
	expect_malformed();

	const uint32_t bad_len[] = { 0, 17, 8, (VQ_MAX_SIZE + 1) * 16 };
	for (size_t i = 0; i < 4; i++) {
		setup(F);
		desc(0, IND_GPA, bad_len[i], VRING_DESC_F_INDIRECT, 0);
		avail_put(0);
		expect_malformed();
	}
	/* table outside RAM / straddling its end */
	setup(F);
	desc(0, MEM_SIZE - 16, 32, VRING_DESC_F_INDIRECT, 0);
	avail_put(0);
	expect_malformed();
	/* INDIRECT together with NEXT */
	setup(F);
	desc_at(IND_GPA, 0, DATA_GPA, 16, 0, 0);
	desc(0, IND_GPA, 16, VRING_DESC_F_INDIRECT | VRING_DESC_F_NEXT, 1);
	desc(1, DATA_GPA, 16, VRING_DESC_F_WRITE, 0);
	avail_put(0);
	expect_malformed();
	/* nested */
	setup(F);
	desc_at(IND_GPA, 0, IND_GPA + 0x100, 16, VRING_DESC_F_INDIRECT, 0);
	desc_at(IND_GPA + 0x100, 0, DATA_GPA, 16, 0, 0);
	desc(0, IND_GPA, 16, VRING_DESC_F_INDIRECT, 0);
	avail_put(0);
	expect_malformed();
	/* NEXT leaving the table (index 2 of a 2-entry table; entry 2 exists in memory) */
	setup(F);
	desc_at(IND_GPA, 0, DATA_GPA, 16, VRING_DESC_F_NEXT, 2);
	desc_at(IND_GPA, 2, DATA_GPA, 16, 0, 0);
	desc(0, IND_GPA, 32, VRING_DESC_F_INDIRECT, 0);
	avail_put(0);
	expect_malformed();
	/* loop inside the table */
	setup(F);
	desc_at(IND_GPA, 0, DATA_GPA, 16, VRING_DESC_F_NEXT, 1);
	desc_at(IND_GPA, 1, DATA_GPA, 16, VRING_DESC_F_NEXT, 0);
	desc(0, IND_GPA, 32, VRING_DESC_F_INDIRECT, 0);
	avail_put(0);
	expect_malformed();
	/* readable after writable inside the table, and across direct -> indirect */
	setup(F);
	desc_at(IND_GPA, 0, DATA_GPA, 16, VRING_DESC_F_WRITE | VRING_DESC_F_NEXT, 1);
	desc_at(IND_GPA, 1, DATA_GPA, 16, 0, 0);
	desc(0, IND_GPA, 32, VRING_DESC_F_INDIRECT, 0);
	avail_put(0);
	expect_malformed();
	setup(F);
	desc_at(IND_GPA, 0, DATA_GPA, 16, 0, 0);
	desc(0, DATA_GPA, 16, VRING_DESC_F_WRITE | VRING_DESC_F_NEXT, 1);
	desc(1, IND_GPA, 16, VRING_DESC_F_INDIRECT, 0);
	avail_put(0);
	expect_malformed();
	/* buffer in the table outside RAM */
	setup(F);
	desc_at(IND_GPA, 0, MEM_SIZE - 4, 8, 0, 0);
	desc(0, IND_GPA, 16, VRING_DESC_F_INDIRECT, 0);
	avail_put(0);
	expect_malformed();

	/* after a reset the queue works again */
	int before = reset_calls;
	virtio_dev_reset(&dev);
	CHECK_EQ(reset_calls, before + 1);
	CHECK(!vq->broken);
	CHECK(!vq->ready);
	CHECK_EQ(vq->size, 64);
	CHECK_EQ(dev.status, 0);
	CHECK_EQ(dev.guest_features, 0);
}

/* vq_chain_at: a chain popped before a checkpoint, rebuilt from its head in restored memory. */
static void chain_at_refused(void)
{
	CHECK_EQ(vq_chain_at(vq, 0, &req), -EINVAL);
	CHECK(vq->broken);
	CHECK_EQ(vq_chain_at(vq, 0, &req), -EINVAL); /* and stays refused */
	CHECK_EQ(vq_pop(vq, &req), -EINVAL);
}

static void test_chain_at(void)
{
	static struct vq_req popped;
	const uint64_t F = 1ull << VIRTIO_RING_F_INDIRECT_DESC | 1ull << VIRTIO_RING_F_EVENT_IDX;

	/* the same request vq_pop built, with nothing consumed or written */
	setup(F);
	desc(3, DATA_GPA, 100, VRING_DESC_F_NEXT, 5);
	desc(5, IND_GPA, 32, VRING_DESC_F_INDIRECT, 0);
	desc_at(IND_GPA, 0, DATA_GPA + 0x2000, 200, VRING_DESC_F_WRITE | VRING_DESC_F_NEXT, 1);
	desc_at(IND_GPA, 1, DATA_GPA + 0x5000, 10, VRING_DESC_F_WRITE, 0);
	avail_put(3);
	CHECK_EQ(vq_pop(vq, &popped), 1);
	memset(mem.dirty, 0, gmem_bitmap_words(mem.npages) * sizeof(unsigned long));
	memset(&req, 0xa5, sizeof(req));
	CHECK_EQ(vq_chain_at(vq, 3, &req), 0);
	CHECK_EQ(req.head, 3);
	CHECK_EQ(req.nout, 1);
	CHECK_EQ(req.nin, 2);
	CHECK_EQ(req.out_len, 100);
	CHECK_EQ(req.in_len, 210);
	CHECK(memcmp(req.iov, popped.iov, 3 * sizeof(req.iov[0])) == 0);
	CHECK_EQ(vq->last_avail, 1);
	CHECK_EQ(dirty_count(), 0); /* no avail_event update: the ring is not consumed */
	CHECK(!vq->broken);
	/* a head never made available is walked all the same: the caller vouches for it */
	desc(9, DATA_GPA, 8, VRING_DESC_F_WRITE, 0);
	CHECK_EQ(vq_chain_at(vq, 9, &req), 0);
	CHECK_EQ(req.nin, 1);
	CHECK_EQ(vq_pending(vq), 0);

	/* every check of the walker applies: head out of range (of the programmed size, too) */
	setup(F);
	CHECK_EQ(vq_chain_at(vq, QSIZE, &req), -EINVAL);
	CHECK(vq->broken);
	setup(F);
	vq->size = 8;
	CHECK_EQ(vq_chain_at(vq, 8, &req), -EINVAL);
	/* a loop */
	setup(F);
	desc(0, DATA_GPA, 16, VRING_DESC_F_NEXT, 1);
	desc(1, DATA_GPA, 16, VRING_DESC_F_NEXT, 0);
	chain_at_refused();
	/* a buffer outside RAM */
	setup(F);
	desc(0, MEM_SIZE - 4, 8, VRING_DESC_F_WRITE, 0);
	chain_at_refused();
	/* indirect: not negotiated, nested, table outside RAM */
	setup(0);
	desc(0, IND_GPA, 16, VRING_DESC_F_INDIRECT, 0);
	desc_at(IND_GPA, 0, DATA_GPA, 8, VRING_DESC_F_WRITE, 0);
	chain_at_refused();
	setup(F);
	desc(0, IND_GPA, 16, VRING_DESC_F_INDIRECT, 0);
	desc_at(IND_GPA, 0, IND_GPA + 0x100, 16, VRING_DESC_F_INDIRECT, 0);
	chain_at_refused();
	setup(F);
	desc(0, MEM_SIZE - 16, 32, VRING_DESC_F_INDIRECT, 0);
	chain_at_refused();
	/* rings the checks refuse, a queue that is not ready (nothing can be in flight on it) */
	setup(F);
	vq->desc_gpa = DESC_GPA + 8;
	chain_at_refused();
	setup(F);
	desc(0, DATA_GPA, 8, VRING_DESC_F_WRITE, 0);
	vq->ready = false;
	chain_at_refused();
}

static void test_notify(void)
{
	const uint64_t EV = 1ull << VIRTIO_RING_F_EVENT_IDX;
	/* no event idx: NO_INTERRUPT suppresses */
	setup(0);
	desc(0, DATA_GPA, 8, VRING_DESC_F_WRITE, 0);
	avail_put(0);
	CHECK_EQ(vq_pop(vq, &req), 1);
	CHECK_EQ(vq_push(vq, &req, 0), 0);
	CHECK(vq_needs_notify(vq));
	uint16_t fl = VRING_AVAIL_F_NO_INTERRUPT;
	memcpy(ram + AVAIL_GPA, &fl, 2);
	CHECK(!vq_needs_notify(vq));

	/* event idx: avail_event follows consumption; used_event decides interrupts */
	setup(EV);
	uint16_t *avail_event = (uint16_t *)(ram + USED_GPA + 4 + 8 * QSIZE);
	uint16_t *used_event = (uint16_t *)(ram + AVAIL_GPA + 4 + 2 * QSIZE);
	desc(0, DATA_GPA, 8, VRING_DESC_F_WRITE, 0);
	*avail_event = 0x5555;
	CHECK_EQ(vq_pop(vq, &req), 0); /* empty: publishes avail_event = last_avail */
	CHECK_EQ(*avail_event, 0);
	CHECK(page_dirty(USED_GPA));
	for (int i = 0; i < 3; i++)
		avail_put(0);
	CHECK_EQ(vq_pop(vq, &req), 1);
	CHECK_EQ(*avail_event, 1);
	*used_event = 0;
	CHECK_EQ(vq_push(vq, &req, 8), 0);
	CHECK(vq_needs_notify(vq)); /* first check after (re)start always notifies */
	CHECK_EQ(vq_pop(vq, &req), 1);
	CHECK_EQ(vq_push(vq, &req, 8), 0); /* used 1 -> 2, driver asked for an interrupt past 0: done */
	CHECK(!vq_needs_notify(vq));
	*used_event = 2;
	CHECK_EQ(vq_pop(vq, &req), 1);
	CHECK_EQ(vq_push(vq, &req, 8), 0); /* used 2 -> 3 crosses used_event 2 */
	CHECK(vq_needs_notify(vq));
	CHECK(!vq_needs_notify(vq)); /* nothing new */
	CHECK_EQ(*avail_event, 3);

	/* needs-reset: flag + one config interrupt, only once the driver is up */
	setup(0);
	config_notifies = 0;
	virtio_dev_set_needs_reset(&dev);
	CHECK(dev.status & VIRTIO_CONFIG_S_NEEDS_RESET);
	CHECK_EQ(config_notifies, 0);
	setup(0);
	dev.status = VIRTIO_CONFIG_S_DRIVER_OK;
	virtio_dev_set_needs_reset(&dev);
	virtio_dev_set_needs_reset(&dev);
	CHECK_EQ(config_notifies, 1);
}

static void test_iov_copy(void)
{
	uint8_t a[5], b[3], c[7], out[15];
	struct iovec iov[3] = { { a, 5 }, { b, 3 }, { c, 7 } };
	uint8_t src[15];
	for (int i = 0; i < 15; i++)
		src[i] = (uint8_t)(i + 1);
	CHECK_EQ(vq_buf_to_iov(iov, 3, 0, src, 15), 15);
	CHECK_EQ(a[4], 5);
	CHECK_EQ(b[0], 6);
	CHECK_EQ(c[6], 15);
	memset(out, 0, sizeof(out));
	CHECK_EQ(vq_iov_to_buf(iov, 3, 4, out, 6), 6);
	CHECK_EQ(out[0], 5);
	CHECK_EQ(out[5], 10);
	CHECK_EQ(vq_iov_to_buf(iov, 3, 13, out, 10), 2); /* short at the end */
	CHECK_EQ(out[1], 15);
	CHECK_EQ(vq_iov_to_buf(iov, 3, 20, out, 10), 0);
	CHECK_EQ(vq_buf_to_iov(iov, 3, 8, src, 100), 7);
	CHECK_EQ(c[0], 1);
}

static void *save_fdt(struct virtio_dev *d)
{
	void *fdt = malloc(16384);
	CHECK_EQ(fdt_create(fdt, 16384), 0);
	CHECK_EQ(fdt_finish_reservemap(fdt), 0);
	CHECK_EQ(fdt_begin_node(fdt, ""), 0);
	CHECK_EQ(fdt_begin_node(fdt, "dev"), 0);
	CHECK_EQ(virtio_dev_save(d, fdt), 0);
	CHECK_EQ(fdt_end_node(fdt), 0);
	CHECK_EQ(fdt_end_node(fdt), 0);
	CHECK_EQ(fdt_finish(fdt), 0);
	return fdt;
}

static void test_save_restore(void)
{
	setup(1ull << VIRTIO_RING_F_EVENT_IDX);
	dev.status = VIRTIO_CONFIG_S_ACKNOWLEDGE | VIRTIO_CONFIG_S_DRIVER | VIRTIO_CONFIG_S_FEATURES_OK |
		     VIRTIO_CONFIG_S_DRIVER_OK;
	dev.config_msix_vector = 3;
	dev.config_generation = 7;
	vq->msix_vector = 1;
	vq->last_avail = 0x1234;
	vq->used_idx = 0x1230;
	dev.vqs[1].size = 32;
	dev.vqs[1].msix_vector = 2;
	void *fdt = save_fdt(&dev);
	int node = fdt_path_offset(fdt, "/dev");
	CHECK(node >= 0);

	struct virtio_dev d2;
	CHECK_EQ(virtio_dev_init(&d2, "vq-test2", 1, 2, 64, 0, &mem, &ops, NULL), 0);
	d2.host_features = dev.host_features;
	CHECK_EQ(virtio_dev_restore(&d2, fdt, node), 0);
	CHECK_EQ(d2.guest_features, dev.guest_features);
	CHECK_EQ(d2.status, dev.status);
	CHECK_EQ(d2.config_msix_vector, 3);
	CHECK_EQ(d2.config_generation, 7);
	for (unsigned i = 0; i < 2; i++) {
		CHECK_EQ(d2.vqs[i].size, dev.vqs[i].size);
		CHECK_EQ(d2.vqs[i].ready, dev.vqs[i].ready);
		CHECK_EQ(d2.vqs[i].desc_gpa, dev.vqs[i].desc_gpa);
		CHECK_EQ(d2.vqs[i].avail_gpa, dev.vqs[i].avail_gpa);
		CHECK_EQ(d2.vqs[i].used_gpa, dev.vqs[i].used_gpa);
		CHECK_EQ(d2.vqs[i].msix_vector, dev.vqs[i].msix_vector);
		CHECK_EQ(d2.vqs[i].last_avail, dev.vqs[i].last_avail);
		CHECK_EQ(d2.vqs[i].used_idx, dev.vqs[i].used_idx);
		CHECK(d2.vqs[i].dev == &d2);
	}

	/* different offered features: refused, device untouched */
	struct virtio_dev d3;
	CHECK_EQ(virtio_dev_init(&d3, "vq-test3", 1, 2, 64, 0, &mem, &ops, NULL), 0);
	CHECK_EQ(virtio_dev_restore(&d3, fdt, node), -EINVAL);
	/* a queue count that differs */
	virtio_dev_destroy(&d3);
	CHECK_EQ(virtio_dev_init(&d3, "vq-test3", 1, 3, 64, 0, &mem, &ops, NULL), 0);
	d3.host_features = dev.host_features;
	CHECK_EQ(virtio_dev_restore(&d3, fdt, node), -EINVAL);
	virtio_dev_destroy(&d3);
	free(fdt);

	/* a ready queue whose rings do not pass the checks restores as broken (the live device would
	 * refuse it at its next pop too); it must not make the checkpoint unrestorable */
	vq->used_gpa = MEM_SIZE - 8;
	dev.vqs[1].size = 12;
	dev.vqs[1].ready = true;
	fdt = save_fdt(&dev);
	node = fdt_path_offset(fdt, "/dev");
	struct virtio_dev d4;
	CHECK_EQ(virtio_dev_init(&d4, "vq-test4", 1, 2, 64, 0, &mem, &ops, NULL), 0);
	d4.host_features = dev.host_features;
	CHECK_EQ(virtio_dev_restore(&d4, fdt, node), 0);
	CHECK(d4.vqs[0].broken);
	CHECK(d4.vqs[1].broken);
	CHECK_EQ(vq_pop(&d4.vqs[0], &req), -EINVAL);
	CHECK_EQ(vq_pop(&d4.vqs[1], &req), -EINVAL);
	CHECK_EQ(vq_pending(&d4.vqs[1]), 0);
	virtio_dev_destroy(&d4);
	free(fdt);

	/* values no live device can hold: refused, nothing applied */
	fdt = malloc(4096);
	CHECK_EQ(fdt_create(fdt, 4096), 0);
	CHECK_EQ(fdt_finish_reservemap(fdt), 0);
	CHECK_EQ(fdt_begin_node(fdt, ""), 0);
	CHECK_EQ(fdt_property_u32(fdt, "virtio-version", 1), 0);
	CHECK_EQ(fdt_property_u32(fdt, "virtio-device-id", 1), 0);
	CHECK_EQ(fdt_property_u64(fdt, "virtio-host-features", dev.host_features), 0);
	CHECK_EQ(fdt_property_u64(fdt, "virtio-guest-features", dev.guest_features), 0);
	CHECK_EQ(fdt_property_u32(fdt, "virtio-status", 0xf), 0);
	CHECK_EQ(fdt_property_u32(fdt, "virtio-isr", 0), 0);
	CHECK_EQ(fdt_property_u32(fdt, "virtio-config-vector", 0xffff), 0);
	CHECK_EQ(fdt_property_u32(fdt, "virtio-config-generation", 0), 0);
	CHECK_EQ(fdt_property_u32(fdt, "virtio-nqueues", 2), 0);
	fdt32_t cells[13] = { cpu_to_fdt32(16), cpu_to_fdt32(1), 0, 0, cpu_to_fdt32(0x10000) };
	CHECK_EQ(fdt_property(fdt, "virtio-vq0", cells, sizeof(cells)), 0);
	CHECK_EQ(fdt_property(fdt, "virtio-vq1", cells, 12), 0);
	CHECK_EQ(fdt_end_node(fdt), 0);
	CHECK_EQ(fdt_finish(fdt), 0);
	CHECK_EQ(virtio_dev_init(&d4, "vq-test4", 1, 2, 64, 0, &mem, &ops, NULL), 0);
	d4.host_features = dev.host_features;
	CHECK_EQ(virtio_dev_restore(&d4, fdt, 0), -EINVAL); /* last_avail 0x10000 */
	cells[4] = 0;
	fdt_setprop_inplace(fdt, 0, "virtio-vq0", cells, sizeof(cells));
	CHECK_EQ(virtio_dev_restore(&d4, fdt, 0), -EINVAL); /* vq1 truncated */
	CHECK_EQ(d4.status, 0);
	CHECK_EQ(d4.guest_features, 0);
	CHECK(!d4.vqs[0].ready);
	virtio_dev_destroy(&d4);
	free(fdt);

	/* wrong version / missing properties */
	fdt = malloc(4096);
	CHECK_EQ(fdt_create(fdt, 4096), 0);
	CHECK_EQ(fdt_finish_reservemap(fdt), 0);
	CHECK_EQ(fdt_begin_node(fdt, ""), 0);
	CHECK_EQ(fdt_property_u32(fdt, "virtio-version", 99), 0);
	CHECK_EQ(fdt_end_node(fdt), 0);
	CHECK_EQ(fdt_finish(fdt), 0);
	CHECK_EQ(virtio_dev_restore(&d2, fdt, 0), -EINVAL);
	CHECK_EQ(d2.vqs[0].last_avail, 0x1234); /* untouched */
	free(fdt);
	virtio_dev_destroy(&d2);
}

int main(void)
{
	ram = aligned_alloc(PAGE_SIZE, MEM_SIZE);
	CHECK(ram);
	memset(ram, 0, MEM_SIZE);
	CHECK_EQ(gmem_init_buffer(&mem, ram, MEM_SIZE), 0);
	/* nothing else may have been dirtied by setup */
	test_basic();
	test_zero_len_and_indirect();
	test_malformed();
	test_malformed_indirect();
	test_chain_at();
	test_notify();
	test_iov_copy();
	test_save_restore();
	virtio_dev_destroy(&dev);
	gmem_free(&mem);
	free(ram);
	TEST_DONE("test_virtqueue");
}

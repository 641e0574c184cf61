/* test_virtio_blk.c - virtio-blk end to end on a temp image: I/O, refusals, dirty pages, quiesce, checkpoint
 * (requests in flight saved and re-submitted), crafted in-flight lists. */
#include <errno.h>
#include <fcntl.h>
#include <libfdt.h>
#include <linux/virtio_blk.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../../devices/virtio_blk.h"
#include "test.h"
#include "vp_harness.h"

#define MEM_SIZE (512 * PAGE_SIZE)
#define DESC_GPA 0x1000ull
#define AVAIL_GPA 0x2000ull
#define USED_GPA 0x3000ull
#define HDR_GPA 0x4000ull /* 32 bytes per slot: header at +0, status at +16 */
#define IND_GPA 0x6000ull /* 64 bytes per slot: a 3-entry indirect table */
#define DATA_GPA 0x10000ull
#define IMG_SIZE (1024 * 1024)
#define QS VIRTIO_BLK_QUEUE_SIZE

struct tctx {
	uint8_t *ram;
	struct guest_mem mem;
	struct virtio_dev *d;
	struct vp_harness h; /* d behind virtio-pci: checkpoints take the production vm_device */
	char img[64];
	uint16_t avail_idx, next_desc, next_slot;
	bool indirect; /* post() puts each chain in an indirect table: one ring slot per request */
	int notifies, config_notifies;
};

static struct ioloop loop;
static char tmpdir[] = "/tmp/ftvmm-blk-XXXXXX";

static void on_notify(struct virtio_dev *d, struct virtqueue *vq)
{
	(void)vq;
	((struct tctx *)d->transport)->notifies++;
}

static void on_config(struct virtio_dev *d)
{
	((struct tctx *)d->transport)->config_notifies++;
}

static uint8_t pattern(uint64_t off)
{
	return (uint8_t)(off * 7 + (off >> 9) * 13 + 1);
}

static void make_image(const char *path, uint64_t size)
{
	int fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0644);
	CHECK(fd >= 0);
	uint8_t *buf = malloc(size);
	for (uint64_t i = 0; i < size; i++)
		buf[i] = pattern(i);
	CHECK_EQ(pwrite(fd, buf, size, 0), (long long)size);
	free(buf);
	close(fd);
}

static void read_image(const char *path, uint64_t off, void *buf, size_t len)
{
	int fd = open(path, O_RDONLY);
	CHECK(fd >= 0);
	CHECK_EQ(pread(fd, buf, len, off), (long long)len);
	close(fd);
}

/* A guest memory with a driver that negotiated everything the device offers. */
static void ctx_init(struct tctx *t, const char *img_name, bool ro)
{
	memset(t, 0, sizeof(*t));
	t->ram = aligned_alloc(PAGE_SIZE, MEM_SIZE);
	CHECK(t->ram);
	memset(t->ram, 0, MEM_SIZE);
	CHECK_EQ(gmem_init_buffer(&t->mem, t->ram, MEM_SIZE), 0);
	snprintf(t->img, sizeof(t->img), "%s/%s", tmpdir, img_name);
	char err[256];
	t->d = virtio_blk_create(&t->mem, &loop, t->img, ro, err, sizeof(err));
	CHECK(t->d);
	vph_attach(&t->h, t->ram, MEM_SIZE, t->d, virtio_blk_destroy, t, on_notify, on_config);
}

/* The device's vm_device, as devices/platform.c registers it: quiesce, resume, save, restore. */
static struct vm_device *vmdev(struct tctx *t)
{
	return vph_vmdev(&t->h);
}

static int dev_quiesce(struct tctx *t)
{
	return vmdev(t)->quiesce(vmdev(t)->opaque);
}

static void dev_resume(struct tctx *t)
{
	vmdev(t)->resume(vmdev(t)->opaque);
}

static int dev_restore(struct tctx *t, const void *fdt, int node)
{
	return vmdev(t)->restore(vmdev(t)->opaque, fdt, node);
}

static void ctx_up(struct tctx *t)
{
	struct virtio_dev *d = t->d;
	d->guest_features = d->host_features;
	d->status = VIRTIO_CONFIG_S_ACKNOWLEDGE | VIRTIO_CONFIG_S_DRIVER | VIRTIO_CONFIG_S_FEATURES_OK;
	struct virtqueue *vq = &d->vqs[0];
	vq->size = QS;
	vq->desc_gpa = DESC_GPA;
	vq->avail_gpa = AVAIL_GPA;
	vq->used_gpa = USED_GPA;
	vq->ready = true;
	d->status |= VIRTIO_CONFIG_S_DRIVER_OK;
	CHECK_EQ(d->ops->activate(d), 0);
}

static void ctx_free(struct tctx *t)
{
	vph_fini(&t->h); /* the transport, then the device */
	gmem_free(&t->mem);
	free(t->ram);
}

static uint16_t add_desc(struct tctx *t, uint64_t gpa, uint32_t len, uint16_t flags)
{
	uint16_t i = t->next_desc++ % QS;
	struct vring_desc d = { .addr = gpa, .len = len, .flags = flags, .next = (uint16_t)((i + 1) % QS) };
	memcpy(t->ram + DESC_GPA + 16 * i, &d, sizeof(d));
	return i;
}

static void publish(struct tctx *t, uint16_t head)
{
	memcpy(t->ram + AVAIL_GPA + 4 + 2 * (t->avail_idx % QS), &head, 2);
	t->avail_idx++;
	__atomic_store_n((uint16_t *)(t->ram + AVAIL_GPA + 2), t->avail_idx, __ATOMIC_RELEASE);
}

/* header, one data buffer (device-writable for reads), status. Returns the slot (status at HDR+32*slot+16). */
static unsigned post(struct tctx *t, uint32_t type, uint64_t sector, uint64_t data_gpa, uint32_t len, bool data_in)
{
	unsigned slot = t->next_slot++ % QS;
	uint64_t hdr = HDR_GPA + 32 * slot;
	struct virtio_blk_outhdr h = { .type = type, .sector = sector };
	memcpy(t->ram + hdr, &h, sizeof(h));
	t->ram[hdr + 16] = 0xee;
	if (t->indirect) {
		uint64_t table = IND_GPA + 64 * slot;
		struct vring_desc d[3] = { { hdr, 16, VRING_DESC_F_NEXT, 1 } };
		unsigned n = 1;
		if (len)
			d[n++] = (struct vring_desc){ data_gpa, len,
						      VRING_DESC_F_NEXT | (data_in ? VRING_DESC_F_WRITE : 0), 2 };
		d[n++] = (struct vring_desc){ hdr + 16, 1, VRING_DESC_F_WRITE, 0 };
		memcpy(t->ram + table, d, sizeof(d));
		publish(t, add_desc(t, table, 16 * n, VRING_DESC_F_INDIRECT));
		return slot;
	}
	uint16_t head = add_desc(t, hdr, 16, VRING_DESC_F_NEXT);
	if (len)
		add_desc(t, data_gpa, len, VRING_DESC_F_NEXT | (data_in ? VRING_DESC_F_WRITE : 0));
	add_desc(t, hdr + 16, 1, VRING_DESC_F_WRITE);
	publish(t, head);
	return slot;
}

static uint8_t status_of(struct tctx *t, unsigned slot)
{
	return t->ram[HDR_GPA + 32 * slot + 16];
}

static uint16_t used_idx(struct tctx *t)
{
	return __atomic_load_n((uint16_t *)(t->ram + USED_GPA + 2), __ATOMIC_ACQUIRE);
}

static struct vring_used_elem used_elem(struct tctx *t, unsigned i)
{
	struct vring_used_elem e;
	memcpy(&e, t->ram + USED_GPA + 4 + 8 * (i % QS), sizeof(e));
	return e;
}

static void kick(struct tctx *t)
{
	t->d->ops->queue_notify(t->d, 0);
}

/* Post one request, run it to completion, return its status. */
static uint8_t run1(struct tctx *t, uint32_t type, uint64_t sector, uint64_t gpa, uint32_t len, bool in)
{
	uint16_t before = used_idx(t);
	unsigned slot = post(t, type, sector, gpa, len, in);
	kick(t);
	CHECK_EQ(virtio_blk_drain(t->d), 0);
	CHECK_EQ(used_idx(t), (uint16_t)(before + 1));
	return status_of(t, slot);
}

static void dirty_clear(struct tctx *t)
{
	unsigned long *scratch = calloc(gmem_bitmap_words(t->mem.npages), sizeof(long));
	gmem_dirty_harvest(&t->mem, scratch);
	free(scratch);
}

static bool page_dirty(struct tctx *t, uint64_t gpa)
{
	uint64_t pg = gpa >> PAGE_SHIFT;
	return t->mem.dirty[pg / (8 * sizeof(long))] & (1ul << (pg % (8 * sizeof(long))));
}

static unsigned dirty_count(struct tctx *t)
{
	unsigned n = 0;
	for (uint64_t g = 0; g < MEM_SIZE; g += PAGE_SIZE)
		n += page_dirty(t, g);
	return n;
}

/* Is any callback of the loop ready? A quiesced device must leave its eventfd cleared, or the I/O
 * thread would spin on it for the whole pause. */
static bool loop_ready(void)
{
	struct epoll_event ev;
	return epoll_wait(loop.epfd, &ev, 1, 0) > 0;
}

/* Run the loop's callbacks here until nothing is ready (a spinning eventfd never gets there). */
static void loop_settle(void)
{
	for (int i = 0; i < 100 && loop_ready(); i++)
		CHECK(ioloop_poll_once(&loop, 20) >= 0);
	CHECK(!loop_ready());
}

/* The FT write hook, checked: never called while `paused` (between quiesce and resume). */
struct hook_rec {
	bool paused;
	unsigned calls;
	uint64_t bytes;
};

static void count_hook(void *ctx, uint64_t off, const struct iovec *iov, unsigned n, uint64_t len, bool zero)
{
	struct hook_rec *h = ctx;
	(void)off, (void)iov, (void)n, (void)zero;
	CHECK(!__atomic_load_n(&h->paused, __ATOMIC_ACQUIRE));
	__atomic_fetch_add(&h->calls, 1, __ATOMIC_RELAXED);
	__atomic_fetch_add(&h->bytes, len, __ATOMIC_RELAXED);
}

static void test_open_errors(void)
{
	char path[128], err[256];
	int fd;
	uint64_t size;

	snprintf(path, sizeof(path), "%s/missing.img", tmpdir);
	CHECK_EQ(virtio_blk_open_image(path, false, &fd, &size, err, sizeof(err)), -ENOENT);
	CHECK(strstr(err, "missing.img") && !strchr(err, '\n'));
	CHECK_EQ(virtio_blk_open_image(tmpdir, true, &fd, &size, err, sizeof(err)), -EISDIR);
	CHECK(strstr(err, "directory"));
	snprintf(path, sizeof(path), "%s/odd.img", tmpdir);
	make_image(path, 1000);
	CHECK_EQ(virtio_blk_open_image(path, false, &fd, &size, err, sizeof(err)), -EINVAL);
	CHECK(strstr(err, "multiple of 512"));
	snprintf(path, sizeof(path), "%s/empty.img", tmpdir);
	close(open(path, O_RDWR | O_CREAT | O_TRUNC, 0644));
	CHECK_EQ(virtio_blk_open_image(path, false, &fd, &size, err, sizeof(err)), -EINVAL);
	snprintf(path, sizeof(path), "%s/fifo", tmpdir);
	CHECK_EQ(mkfifo(path, 0644), 0);
	CHECK_EQ(virtio_blk_open_image(path, true, &fd, &size, err, sizeof(err)), -EINVAL); /* and no hang */
	snprintf(path, sizeof(path), "%s/missing.img", tmpdir);
	struct guest_mem m = { 0 };
	errno = 0;
	CHECK(!virtio_blk_create(&m, &loop, path, false, err, sizeof(err)));
	CHECK_EQ(errno, ENOENT);
	snprintf(path, sizeof(path), "%s/disk.img", tmpdir);
	CHECK_EQ(virtio_blk_open_image(path, false, &fd, &size, err, sizeof(err)), 0);
	CHECK_EQ(size, IMG_SIZE);
	close(fd);
}

static void test_rw_flush_id(void)
{
	struct tctx t;
	ctx_init(&t, "disk.img", false);
	struct virtio_dev *d = t.d;
	CHECK(d->host_features & (1ull << VIRTIO_BLK_F_FLUSH));
	CHECK(d->host_features & (1ull << VIRTIO_RING_F_EVENT_IDX));
	CHECK(d->host_features & (1ull << VIRTIO_RING_F_INDIRECT_DESC));
	CHECK(!(d->host_features & (1ull << VIRTIO_BLK_F_RO)));
	struct virtio_blk_config cfg;
	d->ops->config_read(d, 0, &cfg, sizeof(cfg));
	CHECK_EQ(cfg.capacity, IMG_SIZE / 512);
	CHECK_EQ(cfg.seg_max, VIRTIO_BLK_SEG_MAX);
	CHECK_EQ(cfg.blk_size, 512);
	ctx_up(&t);

	/* read 8 KiB at sector 3 */
	CHECK_EQ(run1(&t, VIRTIO_BLK_T_IN, 3, DATA_GPA, 8192, true), VIRTIO_BLK_S_OK);
	for (unsigned i = 0; i < 8192; i++)
		if (t.ram[DATA_GPA + i] != pattern(3 * 512 + i))
			CHECK(!"read data mismatch");
	CHECK_EQ(used_elem(&t, 0).len, 8193);
	CHECK_EQ(t.notifies, 1);

	/* write 4 KiB at sector 100, check the file, read it back through the device */
	for (unsigned i = 0; i < 4096; i++)
		t.ram[DATA_GPA + 0x4000 + i] = (uint8_t)(i ^ 0x5a);
	CHECK_EQ(run1(&t, VIRTIO_BLK_T_OUT, 100, DATA_GPA + 0x4000, 4096, false), VIRTIO_BLK_S_OK);
	uint8_t buf[4096];
	read_image(t.img, 100 * 512, buf, sizeof(buf));
	CHECK(memcmp(buf, t.ram + DATA_GPA + 0x4000, 4096) == 0);
	CHECK_EQ(run1(&t, VIRTIO_BLK_T_IN, 100, DATA_GPA + 0x8000, 4096, true), VIRTIO_BLK_S_OK);
	CHECK(memcmp(t.ram + DATA_GPA + 0x8000, buf, 4096) == 0);

	CHECK_EQ(run1(&t, VIRTIO_BLK_T_FLUSH, 0, 0, 0, false), VIRTIO_BLK_S_OK);

	memset(t.ram + DATA_GPA, 0x77, 64);
	CHECK_EQ(run1(&t, VIRTIO_BLK_T_GET_ID, 0, DATA_GPA, VIRTIO_BLK_ID_LEN, true), VIRTIO_BLK_S_OK);
	CHECK(memcmp(t.ram + DATA_GPA, "ftvmm-vd", 8) == 0);
	CHECK_EQ(t.ram[DATA_GPA + 19], 0);    /* NUL padded */
	CHECK_EQ(t.ram[DATA_GPA + 20], 0x77); /* and nothing past the 20 bytes */

	/* header and data split over odd-sized descriptors, through an indirect table */
	unsigned slot = t.next_slot++ % QS;
	uint64_t hdr = HDR_GPA + 32 * slot;
	struct virtio_blk_outhdr h = { .type = VIRTIO_BLK_T_IN, .sector = 7 };
	memcpy(t.ram + hdr, &h, 16);
	uint64_t table = DATA_GPA + 0x20000;
	struct vring_desc ind[6] = {
		{ hdr, 5, VRING_DESC_F_NEXT, 1 },
		{ hdr + 5, 11, VRING_DESC_F_NEXT, 2 },
		{ DATA_GPA + 0x10000, 100, VRING_DESC_F_WRITE | VRING_DESC_F_NEXT, 3 },
		{ DATA_GPA + 0x11000, 700, VRING_DESC_F_WRITE | VRING_DESC_F_NEXT, 4 },
		{ DATA_GPA + 0x12000, 224, VRING_DESC_F_WRITE | VRING_DESC_F_NEXT, 5 },
		{ hdr + 16, 1, VRING_DESC_F_WRITE, 0 },
	};
	memcpy(t.ram + table, ind, sizeof(ind));
	uint16_t head = add_desc(&t, table, sizeof(ind), VRING_DESC_F_INDIRECT);
	publish(&t, head);
	kick(&t);
	CHECK_EQ(virtio_blk_drain(d), 0);
	CHECK_EQ(status_of(&t, slot), VIRTIO_BLK_S_OK);
	CHECK_EQ(t.ram[DATA_GPA + 0x10000], pattern(7 * 512));
	CHECK_EQ(t.ram[DATA_GPA + 0x11000 + 699], pattern(7 * 512 + 799));
	CHECK_EQ(t.ram[DATA_GPA + 0x12000 + 223], pattern(7 * 512 + 1023));

	/* refusals that are reported in the status byte */
	CHECK_EQ(run1(&t, VIRTIO_BLK_T_IN, IMG_SIZE / 512 - 1, DATA_GPA, 1024, true), VIRTIO_BLK_S_IOERR);
	CHECK_EQ(run1(&t, VIRTIO_BLK_T_OUT, IMG_SIZE / 512, DATA_GPA, 512, false), VIRTIO_BLK_S_IOERR);
	CHECK_EQ(run1(&t, VIRTIO_BLK_T_IN, ~0ull / 512, DATA_GPA, 512, true), VIRTIO_BLK_S_IOERR);
	CHECK_EQ(run1(&t, VIRTIO_BLK_T_IN, ~0ull, DATA_GPA, 512, true), VIRTIO_BLK_S_IOERR);
	CHECK_EQ(run1(&t, VIRTIO_BLK_T_IN, 0, DATA_GPA, 100, true), VIRTIO_BLK_S_IOERR);
	CHECK_EQ(run1(&t, VIRTIO_BLK_T_OUT, 0, DATA_GPA, 513, false), VIRTIO_BLK_S_IOERR);
	CHECK_EQ(run1(&t, 99, 0, DATA_GPA, 512, true), VIRTIO_BLK_S_UNSUPP);
	CHECK_EQ(run1(&t, VIRTIO_BLK_T_IN, IMG_SIZE / 512 - 2, DATA_GPA, 1024, true), VIRTIO_BLK_S_OK);
	/* a header shorter than 16 bytes */
	slot = t.next_slot++ % QS;
	hdr = HDR_GPA + 32 * slot;
	head = add_desc(&t, hdr, 8, VRING_DESC_F_NEXT);
	add_desc(&t, hdr + 16, 1, VRING_DESC_F_WRITE);
	publish(&t, head);
	kick(&t);
	CHECK_EQ(virtio_blk_drain(d), 0);
	CHECK_EQ(status_of(&t, slot), VIRTIO_BLK_S_IOERR);
	CHECK(!d->vqs[0].broken);

	/* write zeroes and discard */
	memset(t.ram + DATA_GPA, 0xab, 4096);
	CHECK_EQ(run1(&t, VIRTIO_BLK_T_OUT, 200, DATA_GPA, 4096, false), VIRTIO_BLK_S_OK);
	struct virtio_blk_discard_write_zeroes seg = { .sector = 200, .num_sectors = 8 };
	memcpy(t.ram + DATA_GPA + 0x30000, &seg, sizeof(seg));
	CHECK_EQ(run1(&t, VIRTIO_BLK_T_WRITE_ZEROES, 0, DATA_GPA + 0x30000, 16, false), VIRTIO_BLK_S_OK);
	read_image(t.img, 200 * 512, buf, sizeof(buf));
	for (unsigned i = 0; i < 4096; i++)
		if (buf[i])
			CHECK(!"write zeroes left data");
	CHECK_EQ(run1(&t, VIRTIO_BLK_T_DISCARD, 0, DATA_GPA + 0x30000, 16, false), VIRTIO_BLK_S_OK);
	seg.flags = VIRTIO_BLK_WRITE_ZEROES_FLAG_UNMAP;
	memcpy(t.ram + DATA_GPA + 0x30000, &seg, sizeof(seg));
	CHECK_EQ(run1(&t, VIRTIO_BLK_T_DISCARD, 0, DATA_GPA + 0x30000, 16, false), VIRTIO_BLK_S_UNSUPP);
	seg.flags = 0;
	seg.sector = IMG_SIZE / 512 - 4;
	memcpy(t.ram + DATA_GPA + 0x30000, &seg, sizeof(seg));
	CHECK_EQ(run1(&t, VIRTIO_BLK_T_DISCARD, 0, DATA_GPA + 0x30000, 16, false), VIRTIO_BLK_S_IOERR);
	ctx_free(&t);
}

static void test_readonly(void)
{
	struct tctx t;
	ctx_init(&t, "disk.img", true);
	CHECK(t.d->host_features & (1ull << VIRTIO_BLK_F_RO));
	CHECK(!(t.d->host_features & (1ull << VIRTIO_BLK_F_DISCARD)));
	ctx_up(&t);
	uint8_t before[4096], after[4096];
	read_image(t.img, 50 * 512, before, sizeof(before));
	memset(t.ram + DATA_GPA, 0xcd, 4096);
	CHECK_EQ(run1(&t, VIRTIO_BLK_T_OUT, 50, DATA_GPA, 4096, false), VIRTIO_BLK_S_IOERR);
	read_image(t.img, 50 * 512, after, sizeof(after));
	CHECK(memcmp(before, after, sizeof(before)) == 0);
	struct virtio_blk_discard_write_zeroes seg = { .sector = 50, .num_sectors = 8 };
	memcpy(t.ram + DATA_GPA + 0x30000, &seg, sizeof(seg));
	CHECK_EQ(run1(&t, VIRTIO_BLK_T_WRITE_ZEROES, 0, DATA_GPA + 0x30000, 16, false), VIRTIO_BLK_S_UNSUPP);
	read_image(t.img, 50 * 512, after, sizeof(after));
	CHECK(memcmp(before, after, sizeof(before)) == 0);
	CHECK_EQ(run1(&t, VIRTIO_BLK_T_IN, 50, DATA_GPA, 4096, true), VIRTIO_BLK_S_OK);
	CHECK(memcmp(t.ram + DATA_GPA, before, 4096) == 0);
	CHECK_EQ(run1(&t, VIRTIO_BLK_T_FLUSH, 0, 0, 0, false), VIRTIO_BLK_S_OK);
	ctx_free(&t);
}

/* FT admission: a refusal leaves the guest's requests in the ring (nothing popped, nothing completed);
 * the hook sees the data bytes of the writes in flight; once it admits again a kick runs them. */
static bool admit_open;
static uint64_t admit_seen;
static unsigned admit_calls;
static bool test_admit_fn(void *ctx, uint64_t inflight)
{
	(void)ctx;
	admit_calls++;
	admit_seen = inflight;
	return admit_open;
}

static void test_admit(void)
{
	struct tctx t;
	ctx_init(&t, "disk.img", false);
	ctx_up(&t);
	virtio_blk_set_admit(t.d, test_admit_fn, NULL);
	admit_open = false;
	admit_calls = 0;
	uint16_t before = used_idx(&t);
	unsigned slot = post(&t, VIRTIO_BLK_T_OUT, 8, DATA_GPA + 0x50000, 8192, false);
	kick(&t);
	CHECK_EQ(virtio_blk_drain(t.d), 0);
	CHECK(admit_calls >= 1);
	CHECK_EQ(used_idx(&t), before); /* still the guest's, in the ring */
	CHECK_EQ(virtio_blk_inflight(t.d), 0);
	admit_open = true;
	virtio_blk_kick(t.d);
	CHECK_EQ(virtio_blk_drain(t.d), 0);
	CHECK_EQ(used_idx(&t), (uint16_t)(before + 1));
	CHECK_EQ(status_of(&t, slot), VIRTIO_BLK_S_OK);
	CHECK_EQ(admit_seen, 8192); /* asked again before the next pop: the write taken is in flight */
	virtio_blk_set_admit(t.d, NULL, NULL);
	CHECK_EQ(run1(&t, VIRTIO_BLK_T_IN, 8, DATA_GPA + 0x40000, 8192, true), VIRTIO_BLK_S_OK);
	ctx_free(&t);
	make_image(t.img, IMG_SIZE); /* the tests after this one expect the pattern */
}

static void test_dirty(void)
{
	struct tctx t;
	ctx_init(&t, "disk.img", false);
	ctx_up(&t);
	dirty_clear(&t);
	/* a read into two pages (not the ring pages) */
	CHECK_EQ(run1(&t, VIRTIO_BLK_T_IN, 16, DATA_GPA + 0x40000, 8192, true), VIRTIO_BLK_S_OK);
	CHECK(page_dirty(&t, DATA_GPA + 0x40000));
	CHECK(page_dirty(&t, DATA_GPA + 0x41000));
	CHECK(page_dirty(&t, HDR_GPA)); /* status byte */
	CHECK(page_dirty(&t, USED_GPA));
	CHECK_EQ(dirty_count(&t), 4);
	/* a write dirties only the status and the used ring */
	dirty_clear(&t);
	CHECK_EQ(run1(&t, VIRTIO_BLK_T_OUT, 16, DATA_GPA + 0x50000, 4096, false), VIRTIO_BLK_S_OK);
	CHECK(page_dirty(&t, HDR_GPA));
	CHECK(page_dirty(&t, USED_GPA));
	CHECK_EQ(dirty_count(&t), 2);
	/* GET_ID writes guest memory too */
	dirty_clear(&t);
	CHECK_EQ(run1(&t, VIRTIO_BLK_T_GET_ID, 0, DATA_GPA + 0x70000, VIRTIO_BLK_ID_LEN, true), VIRTIO_BLK_S_OK);
	CHECK(page_dirty(&t, DATA_GPA + 0x70000));
	CHECK_EQ(dirty_count(&t), 3);
	/* a read that fails half way (the image shrank under us) still marks what it may have written */
	CHECK_EQ(truncate(t.img, IMG_SIZE / 2), 0);
	dirty_clear(&t);
	CHECK_EQ(run1(&t, VIRTIO_BLK_T_IN, IMG_SIZE / 1024 - 2, DATA_GPA + 0x60000, 8192, true), VIRTIO_BLK_S_IOERR);
	CHECK(page_dirty(&t, DATA_GPA + 0x60000));
	CHECK(page_dirty(&t, DATA_GPA + 0x61000));
	CHECK_EQ(run1(&t, VIRTIO_BLK_T_IN, IMG_SIZE / 512 - 8, DATA_GPA, 4096, true), VIRTIO_BLK_S_IOERR);
	ctx_free(&t);
	make_image(t.img, IMG_SIZE);
}

static void test_malformed_chain(void)
{
	struct tctx t;
	ctx_init(&t, "disk.img", false);
	ctx_up(&t);
	/* no writable byte: no status can be reported */
	unsigned slot = t.next_slot++ % QS;
	struct virtio_blk_outhdr h = { .type = VIRTIO_BLK_T_IN };
	memcpy(t.ram + HDR_GPA + 32 * slot, &h, 16);
	uint16_t head = add_desc(&t, HDR_GPA + 32 * slot, 16, VRING_DESC_F_NEXT);
	add_desc(&t, DATA_GPA, 512, 0);
	publish(&t, head);
	kick(&t);
	CHECK(t.d->vqs[0].broken);
	CHECK(t.d->status & VIRTIO_CONFIG_S_NEEDS_RESET);
	CHECK_EQ(t.config_notifies, 1);
	/* a broken queue is left alone */
	post(&t, VIRTIO_BLK_T_IN, 0, DATA_GPA, 512, true);
	kick(&t);
	CHECK_EQ(virtio_blk_drain(t.d), 0);
	CHECK_EQ(used_idx(&t), 0);

	/* after a reset it works again */
	virtio_dev_reset(t.d);
	CHECK_EQ(t.d->status, 0);
	memset(t.ram, 0, 0x10000);
	t.avail_idx = 0;
	ctx_up(&t);
	CHECK_EQ(run1(&t, VIRTIO_BLK_T_IN, 0, DATA_GPA, 512, true), VIRTIO_BLK_S_OK);

	/* the same head made available twice while the first is in flight */
	uint16_t before = used_idx(&t);
	slot = post(&t, VIRTIO_BLK_T_IN, 1, DATA_GPA, 512, true);
	publish(&t, (uint16_t)((t.next_desc - 3) % QS));
	kick(&t);
	CHECK(t.d->vqs[0].broken);
	CHECK_EQ(virtio_blk_drain(t.d), 0);
	CHECK_EQ(used_idx(&t), (uint16_t)(before + 1)); /* the first one still completes */
	CHECK_EQ(status_of(&t, slot), VIRTIO_BLK_S_OK);
	ctx_free(&t);
}

static void test_many_inflight_and_quiesce(void)
{
	struct tctx t;
	ctx_init(&t, "disk.img", false);
	ctx_up(&t);
	t.indirect = true;
	enum { N = 200 };
	unsigned slots[N];
	for (unsigned i = 0; i < N; i++)
		slots[i] = post(&t, VIRTIO_BLK_T_IN, (uint64_t)i * 8 + 1, DATA_GPA + (uint64_t)i * 4096, 4096, true);
	kick(&t);
	/* nothing is reaped until the completion path runs: all N are in flight at once */
	CHECK_EQ(virtio_blk_inflight(t.d), N);
	CHECK_EQ(t.d->vqs[0].last_avail, N);
	int n0 = t.notifies;
	dirty_clear(&t);
	/* quiesce does not wait for them */
	CHECK_EQ(dev_quiesce(&t), 0);
	CHECK_EQ(virtio_blk_inflight(t.d), N);
	/* The host finishes the reads (the data lands in guest memory), the I/O thread runs: still no
	 * status byte, used entry, dirty page or interrupt while quiesced, and no busy eventfd. */
	unsigned landed = 0;
	for (int spin = 0; spin < 5000 && landed < N; spin++) {
		usleep(1000);
		landed = 0;
		for (unsigned i = 0; i < N; i++)
			landed += t.ram[DATA_GPA + (uint64_t)i * 4096 + 4095] == pattern(((uint64_t)i * 8 + 1) * 512 + 4095);
	}
	CHECK_EQ(landed, N);
	loop_settle();
	CHECK_EQ(virtio_blk_inflight(t.d), N);
	CHECK_EQ(used_idx(&t), 0);
	CHECK_EQ(dirty_count(&t), 0);
	CHECK_EQ(t.notifies, n0);
	for (unsigned i = 0; i < N; i++)
		CHECK_EQ(status_of(&t, slots[i]), 0xee);
	CHECK_EQ(virtio_blk_drain(t.d), -EBUSY); /* nothing completes during a pause, not even on request */
	/* quiesced: kicks are not acted on either */
	unsigned slot = post(&t, VIRTIO_BLK_T_IN, 0, DATA_GPA + N * 4096, 512, true);
	kick(&t);
	CHECK_EQ(virtio_blk_inflight(t.d), N);
	CHECK_EQ(t.d->vqs[0].last_avail, N);
	CHECK_EQ(dirty_count(&t), 0);
	CHECK_EQ(status_of(&t, slot), 0xee);
	/* resume completes what was in flight and picks up what was made available meanwhile, without
	 * another kick */
	dev_resume(&t);
	CHECK_EQ(virtio_blk_drain(t.d), 0);
	CHECK_EQ(used_idx(&t), N + 1);
	CHECK(t.notifies > n0);
	bool seen[QS] = { 0 };
	for (unsigned i = 0; i < N; i++) {
		struct vring_used_elem e = used_elem(&t, i);
		CHECK(e.id < QS && !seen[e.id]);
		seen[e.id] = true;
		CHECK_EQ(status_of(&t, slots[i]), VIRTIO_BLK_S_OK);
		CHECK_EQ(t.ram[DATA_GPA + (uint64_t)i * 4096 + 4095], pattern(((uint64_t)i * 8 + 1) * 512 + 4095));
		CHECK(page_dirty(&t, DATA_GPA + (uint64_t)i * 4096)); /* marked when reaped, after the pause */
	}
	CHECK_EQ(status_of(&t, slot), VIRTIO_BLK_S_OK);

	/* completions delivered by the ioloop (the eventfd path) with an interrupt requested */
	uint16_t want = used_idx(&t) + 8;
	*(uint16_t *)(t.ram + AVAIL_GPA + 4 + 2 * QS) = used_idx(&t); /* used_event */
	n0 = t.notifies;
	for (unsigned i = 0; i < 8; i++)
		post(&t, VIRTIO_BLK_T_IN, i, DATA_GPA + i * 4096, 4096, true);
	kick(&t);
	for (int i = 0; i < 200 && used_idx(&t) != want; i++)
		CHECK(ioloop_poll_once(&loop, 100) >= 0);
	CHECK_EQ(used_idx(&t), want);
	CHECK(t.notifies > n0);

	/* reset with requests in flight: they are waited for and dropped, their pages still marked */
	dirty_clear(&t);
	for (unsigned i = 0; i < 64; i++)
		post(&t, VIRTIO_BLK_T_IN, i, DATA_GPA + 0x100000 + i * 4096, 4096, true);
	kick(&t);
	CHECK_EQ(virtio_blk_inflight(t.d), 64);
	uint16_t u = used_idx(&t);
	virtio_dev_reset(t.d);
	CHECK_EQ(virtio_blk_inflight(t.d), 0);
	CHECK_EQ(used_idx(&t), u);
	CHECK(page_dirty(&t, DATA_GPA + 0x100000 + 63 * 4096));
	while (ioloop_poll_once(&loop, 0) > 0) /* stale eventfd wake-ups find nothing */
		;
	ctx_free(&t);
}

/* A quiesced device's checkpoint, and its node. */
static void *save_dev(struct tctx *t, int *node)
{
	void *fdt = vph_save(vmdev(t), 65536, NULL, NULL, 0);
	*node = fdt_subnode_offset(fdt, 0, vmdev(t)->name);
	CHECK(*node >= 0);
	return fdt;
}

static void copy_file(const char *from, const char *to)
{
	uint8_t *buf = malloc(IMG_SIZE);
	read_image(from, 0, buf, IMG_SIZE);
	int fd = open(to, O_RDWR | O_CREAT | O_TRUNC, 0644);
	CHECK(fd >= 0);
	CHECK_EQ(pwrite(fd, buf, IMG_SIZE, 0), IMG_SIZE);
	close(fd);
	free(buf);
}

static int cmp_elem(const void *x, const void *y)
{
	return memcmp(x, y, 8);
}

/* The same guest-side work on both devices. */
static void workload(struct tctx *t, unsigned round)
{
	for (unsigned i = 0; i < 24; i++) {
		uint64_t data = DATA_GPA + 0x80000 + (uint64_t)(i % 8) * 0x2000;
		uint64_t sector = round * 37 + i * 17; /* no overlap within a batch */
		if (i % 3 == 0) {
			for (unsigned k = 0; k < 8192; k++)
				t->ram[data + k] = (uint8_t)(k + i + round);
			post(t, VIRTIO_BLK_T_OUT, sector, data, 8192, false);
		} else {
			post(t, VIRTIO_BLK_T_IN, sector, data + 0x40000, 8192, true);
		}
		if (i % 4 == 3) {
			kick(t);
			CHECK_EQ(virtio_blk_drain(t->d), 0);
		}
	}
	post(t, VIRTIO_BLK_T_FLUSH, 0, 0, 0, false);
	kick(t);
	CHECK_EQ(virtio_blk_drain(t->d), 0);
}

/* The "blk-inflight" cells of a saved node (NULL if absent), and the node's blk-version. */
static const fdt32_t *saved_list(const void *fdt, int node, int *len, uint32_t *version)
{
	const fdt32_t *v = fdt_getprop(fdt, node, "blk-version", len);
	CHECK(v && *len == 4);
	*version = fdt32_to_cpu(*v);
	return fdt_getprop(fdt, node, "blk-inflight", len);
}

/* A backup as of the checkpoint: guest memory `snap`, the image `img` (already a copy), a fresh
 * device restored from fdt through its vm_device. */
static void backup_restore(struct tctx *b, const char *img, const struct tctx *a, const uint8_t *snap,
			   const void *fdt, int node, uint16_t last_avail)
{
	ctx_init(b, img, false);
	memcpy(b->ram, snap, MEM_SIZE);
	b->avail_idx = a->avail_idx;
	b->next_desc = a->next_desc;
	b->next_slot = a->next_slot;
	CHECK_EQ(dev_restore(b, fdt, node), 0);
	CHECK_EQ(b->d->vqs[0].last_avail, last_avail);
	CHECK_EQ(b->d->guest_features, a->d->guest_features);
	CHECK_EQ(virtio_blk_inflight(b->d), 0); /* re-submitted once it runs, not while restoring */
}

#define CK_N 6          /* in flight at the checkpoint: writes (even) and reads (odd) */
#define CK_DATA (DATA_GPA + 0xc0000)

static void test_checkpoint(void)
{
	struct tctx a, b, c;
	struct hook_rec hook = { 0 };
	char path[128], path2[128];
	ctx_init(&a, "disk.img", false);
	ctx_up(&a);
	virtio_blk_set_write_hook(a.d, count_hook, &hook);
	workload(&a, 0);
	/* The backup's images as of the checkpoint: what completed before it. The writes in flight at
	 * the checkpoint complete after it (their results belong to the next epoch): not in them. */
	snprintf(path, sizeof(path), "%s/backup.img", tmpdir);
	snprintf(path2, sizeof(path2), "%s/backup2.img", tmpdir);
	copy_file(a.img, path);
	copy_file(a.img, path2);
	uint16_t heads[CK_N];
	for (unsigned i = 0; i < CK_N; i++) {
		if (i % 2 == 0)
			memset(a.ram + CK_DATA + i * 4096, 0xa0 + i, 4096);
		heads[i] = a.next_desc % QS;
		post(&a, i % 2 ? VIRTIO_BLK_T_IN : VIRTIO_BLK_T_OUT, 300 + i * 8, CK_DATA + i * 4096, 4096, i % 2);
	}
	kick(&a);
	unsigned calls0 = hook.calls;
	CHECK_EQ(dev_quiesce(&a), 0);
	hook.paused = true;
	CHECK_EQ(virtio_blk_inflight(a.d), CK_N);
	/* plus three made available but not yet acted upon */
	for (unsigned i = 0; i < 3; i++)
		post(&a, VIRTIO_BLK_T_IN, 400 + i * 8, DATA_GPA + 0xd0000 + i * 4096, 4096, true);
	kick(&a);
	int node;
	void *fdt = save_dev(&a, &node);
	/* the heads in flight, in submission order */
	int len;
	uint32_t version;
	const fdt32_t *list = saved_list(fdt, node, &len, &version);
	CHECK(list);
	CHECK_EQ(version, 2);
	CHECK_EQ(len, CK_N * 4);
	for (unsigned i = 0; i < CK_N; i++)
		CHECK_EQ(fdt32_to_cpu(list[i]), heads[i]);
	/* Guest memory as the checkpoint has it: no used entry or status for the six. A read the host
	 * had not finished yet when the pages were copied: the restore must read again. */
	uint16_t u0 = used_idx(&a), la0 = a.d->vqs[0].last_avail;
	uint8_t *snap = malloc(MEM_SIZE);
	CHECK(snap);
	memcpy(snap, a.ram, MEM_SIZE);
	for (unsigned i = 1; i < CK_N; i += 2)
		memset(snap + CK_DATA + i * 4096, 0, 4096);
	CHECK_EQ(hook.calls, calls0); /* nothing reaped during the pause */

	/* the primary resumes: the six complete now, their writes reach the hook (the next epoch's log) */
	__atomic_store_n(&hook.paused, false, __ATOMIC_RELEASE);
	dev_resume(&a);
	CHECK_EQ(virtio_blk_drain(a.d), 0);
	CHECK_EQ(used_idx(&a), (uint16_t)(u0 + CK_N + 3));
	CHECK_EQ(hook.calls, calls0 + CK_N / 2);

	/* one restored copy is resumed, as cmd/run.c does after a restore or a takeover; the other only
	 * gets its I/O thread run (the nudge the restore leaves in its eventfd adopts the state) */
	backup_restore(&b, "backup.img", &a, snap, fdt, node, la0);
	backup_restore(&c, "backup2.img", &a, snap, fdt, node, la0);
	CHECK_EQ(used_idx(&b), u0);
	dev_resume(&c);
	CHECK_EQ(virtio_blk_drain(c.d), 0);
	CHECK_EQ(used_idx(&c), used_idx(&a));
	for (int i = 0; i < 100 && used_idx(&b) != used_idx(&a); i++) {
		CHECK(ioloop_poll_once(&loop, 100) >= 0);
		CHECK_EQ(virtio_blk_drain(b.d), 0);
	}
	CHECK_EQ(used_idx(&b), used_idx(&a));
	/* the re-submitted ones completed with the right results: reads read again, writes on the image */
	for (unsigned i = 0; i < CK_N; i++) {
		CHECK_EQ(b.ram[HDR_GPA + 32 * ((a.next_slot - 3 - CK_N + i) % QS) + 16], VIRTIO_BLK_S_OK);
		CHECK(memcmp(b.ram + CK_DATA + i * 4096, a.ram + CK_DATA + i * 4096, 4096) == 0);
		CHECK(memcmp(c.ram + CK_DATA + i * 4096, a.ram + CK_DATA + i * 4096, 4096) == 0);
		uint8_t buf[4096];
		read_image(path2, (300 + i * 8) * 512, buf, sizeof(buf));
		CHECK(memcmp(buf, a.ram + CK_DATA + i * 4096, 4096) == 0);
	}
	ctx_free(&c);
	for (unsigned round = 1; round < 4; round++) {
		workload(&a, round);
		workload(&b, round);
	}
	CHECK_EQ(used_idx(&a), used_idx(&b));
	CHECK_EQ(b.d->vqs[0].last_avail, b.avail_idx); /* the 3 pending ones were done too */
	/* Completion order is up to the host, so the used ring is compared as a set. */
	CHECK(memcmp(a.ram, b.ram, USED_GPA) == 0);
	CHECK(memcmp(a.ram + USED_GPA + PAGE_SIZE, b.ram + USED_GPA + PAGE_SIZE, MEM_SIZE - USED_GPA - PAGE_SIZE) == 0);
	qsort(a.ram + USED_GPA + 4, QS, 8, cmp_elem);
	qsort(b.ram + USED_GPA + 4, QS, 8, cmp_elem);
	CHECK(memcmp(a.ram + USED_GPA, b.ram + USED_GPA, 4 + 8 * QS + 2) == 0);
	uint8_t *ia = malloc(IMG_SIZE), *ib = malloc(IMG_SIZE);
	read_image(a.img, 0, ia, IMG_SIZE);
	read_image(b.img, 0, ib, IMG_SIZE);
	CHECK(memcmp(ia, ib, IMG_SIZE) == 0);
	free(ia);
	free(ib);

	/* an image whose size differs from the checkpoint is refused */
	snprintf(path, sizeof(path), "%s/small.img", tmpdir);
	make_image(path, IMG_SIZE / 2);
	ctx_init(&c, "small.img", false);
	CHECK_EQ(dev_restore(&c, fdt, node), -EINVAL);
	CHECK_EQ(c.d->status, 0); /* refused before anything changed */
	ctx_free(&c);
	/* so is a read-only device for a read-write checkpoint */
	ctx_init(&c, "backup.img", true);
	CHECK_EQ(dev_restore(&c, fdt, node), -EINVAL);
	CHECK_EQ(c.d->status, 0);
	ctx_free(&c);

	free(snap);
	free(fdt);
	ctx_free(&a);
	ctx_free(&b);
}

/* An idle (quiesced) device's state with a crafted "blk-inflight" (len bytes of list) and version 2. */
static void *save_with_list(struct tctx *t, const void *list, int len, int *node)
{
	void *fdt = vph_save(vmdev(t), 65536, "blk-inflight", list, len);
	*node = fdt_subnode_offset(fdt, 0, vmdev(t)->name);
	CHECK(*node >= 0);
	CHECK_EQ(fdt_setprop_inplace_u32(fdt, *node, "blk-version", 2), 0);
	return fdt;
}

/* Restore a crafted list into a fresh device: the result, and the device untouched on refusal. */
static int restore_list(struct tctx *from, const uint32_t *heads, unsigned n, int bytes)
{
	fdt32_t cells[QS + 1];
	struct tctx u;
	int node;
	CHECK(n <= QS + 1);
	for (unsigned i = 0; i < n; i++)
		cells[i] = cpu_to_fdt32(heads[i]);
	void *fdt = save_with_list(from, cells, bytes, &node);
	ctx_init(&u, "disk.img", false);
	int r = dev_restore(&u, fdt, node);
	if (r)
		CHECK_EQ(u.d->status, 0);
	ctx_free(&u);
	free(fdt);
	return r;
}

static void test_inflight_list(void)
{
	struct tctx t, u;
	ctx_init(&t, "disk.img", false);
	ctx_up(&t);
	CHECK_EQ(dev_quiesce(&t), 0);

	/* nothing in flight: no list, version 1 (what older builds wrote and read); restores idle */
	int node, len;
	void *fdt = save_dev(&t, &node);
	uint32_t version;
	CHECK(!saved_list(fdt, node, &len, &version));
	CHECK_EQ(version, 1);
	ctx_init(&u, "disk.img", false);
	CHECK_EQ(dev_restore(&u, fdt, node), 0);
	dev_resume(&u);
	loop_settle();
	CHECK_EQ(virtio_blk_inflight(u.d), 0);
	CHECK_EQ(used_idx(&u), 0);
	CHECK(!u.d->vqs[0].broken);
	CHECK_EQ(run1(&u, VIRTIO_BLK_T_IN, 2, DATA_GPA, 512, true), VIRTIO_BLK_S_OK);
	ctx_free(&u);
	free(fdt);

	/* crafted lists are refused */
	uint32_t heads[QS + 1];
	for (unsigned i = 0; i <= QS; i++)
		heads[i] = i;
	CHECK_EQ(restore_list(&t, heads, 0, 0), 0);         /* empty: nothing in flight */
	CHECK_EQ(restore_list(&t, heads, 3, 12), 0);        /* 0, 1, 2 */
	CHECK_EQ(restore_list(&t, heads, QS, QS * 4), 0);   /* a whole queue's worth */
	CHECK_EQ(restore_list(&t, heads, QS + 1, (QS + 1) * 4), -EINVAL); /* too many */
	CHECK_EQ(restore_list(&t, heads, 2, 6), -EINVAL);   /* not a whole number of cells */
	CHECK_EQ(restore_list(&t, heads, 1, 3), -EINVAL);
	heads[1] = 0;
	CHECK_EQ(restore_list(&t, heads, 2, 8), -EINVAL);   /* the same head twice */
	heads[1] = QS;
	CHECK_EQ(restore_list(&t, heads, 2, 8), -EINVAL);   /* head out of range */
	heads[1] = 0xffffffffu;
	CHECK_EQ(restore_list(&t, heads, 2, 8), -EINVAL);
	heads[1] = 0x10001u;                                 /* would alias head 1 if truncated */
	CHECK_EQ(restore_list(&t, heads, 2, 8), -EINVAL);

	/* a well-formed list whose chain no longer parses: a malformed chain like any other */
	uint32_t h = 5;
	fdt32_t cell = cpu_to_fdt32(h);
	fdt = save_with_list(&t, &cell, 4, &node);
	ctx_init(&u, "disk.img", false); /* all-zero memory: descriptor 5 has no writable byte */
	CHECK_EQ(dev_restore(&u, fdt, node), 0);
	dev_resume(&u);
	CHECK(u.d->vqs[0].broken);
	CHECK(u.d->status & VIRTIO_CONFIG_S_NEEDS_RESET);
	CHECK_EQ(u.config_notifies, 1);
	CHECK_EQ(used_idx(&u), 0);
	CHECK_EQ(virtio_blk_inflight(u.d), 0);
	ctx_free(&u);
	/* and one restored into a device whose driver is not running is dropped, never run later */
	CHECK_EQ(fdt_setprop_inplace_u32(fdt, node, "virtio-status", 0), 0);
	ctx_init(&u, "disk.img", false);
	CHECK_EQ(dev_restore(&u, fdt, node), 0);
	dev_resume(&u);
	u.d->status = VIRTIO_CONFIG_S_ACKNOWLEDGE | VIRTIO_CONFIG_S_DRIVER | VIRTIO_CONFIG_S_FEATURES_OK |
		      VIRTIO_CONFIG_S_DRIVER_OK;
	CHECK_EQ(u.d->ops->activate(u.d), 0);
	kick(&u);
	CHECK(!u.d->vqs[0].broken);
	CHECK_EQ(u.config_notifies, 0);
	ctx_free(&u);
	free(fdt);

	dev_resume(&t);
	ctx_free(&t);
}

/* Completions on the running ioloop thread while this thread kicks, quiesces and resumes. The write
 * hook is never called between quiesce and resume, and nothing completes in between. */
static void test_threaded(void)
{
	struct tctx t;
	struct hook_rec hook = { 0 };
	ctx_init(&t, "disk.img", false);
	ctx_up(&t);
	t.indirect = true;
	virtio_blk_set_write_hook(t.d, count_hook, &hook);
	CHECK_EQ(ioloop_start(&loop), 0);
	uint16_t want = 0;
	for (unsigned round = 0; round < 40; round++) {
		for (unsigned i = 0; i < 16; i++) {
			uint64_t data = DATA_GPA + (uint64_t)((round % 2) * 16 + i) * 4096;
			post(&t, i % 4 ? VIRTIO_BLK_T_IN : VIRTIO_BLK_T_OUT, (round * 16 + i) % 256 * 8, data, 4096, i % 4);
		}
		want += 16;
		kick(&t);
		if (round % 3 == 0) {
			CHECK_EQ(dev_quiesce(&t), 0);
			__atomic_store_n(&hook.paused, true, __ATOMIC_RELEASE);
			uint16_t u = used_idx(&t);
			usleep(2000); /* the host finishes I/O, the I/O thread sees it */
			CHECK_EQ(used_idx(&t), u);
			__atomic_store_n(&hook.paused, false, __ATOMIC_RELEASE);
			dev_resume(&t);
		}
		for (int spin = 0; spin < 5000 && used_idx(&t) != want; spin++)
			usleep(1000);
		CHECK_EQ(used_idx(&t), want);
	}
	ioloop_stop(&loop);
	for (unsigned i = 0; i < 16; i++)
		CHECK(status_of(&t, (want - 16 + i) % QS) == VIRTIO_BLK_S_OK);
	CHECK_EQ(hook.calls, 40 * 4); /* every write, once: 4 per round */
	CHECK_EQ(hook.bytes, 40 * 4 * 4096);
	ctx_free(&t);
}

int main(void)
{
	CHECK(mkdtemp(tmpdir));
	char path[128];
	snprintf(path, sizeof(path), "%s/disk.img", tmpdir);
	make_image(path, IMG_SIZE);
	CHECK_EQ(ioloop_init(&loop, "test"), 0);

	test_open_errors();
	/* io_uring first, then the synchronous fallback used where io_uring is not allowed */
	for (int pass = 0; pass < 2; pass++) {
		if (pass)
			CHECK_EQ(setenv("FTVMM_BLK_SYNC", "1", 1), 0);
		make_image(path, IMG_SIZE); /* the previous pass wrote to it */
		test_rw_flush_id();
		test_readonly();
		test_dirty();
		test_admit();
		test_malformed_chain();
		test_many_inflight_and_quiesce();
		test_checkpoint();
		test_inflight_list();
		test_threaded();
	}

	ioloop_destroy(&loop);
	char cmd[160];
	snprintf(cmd, sizeof(cmd), "rm -rf %s", tmpdir);
	CHECK_EQ(system(cmd), 0);
	TEST_DONE("test_virtio_blk");
}

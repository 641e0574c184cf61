/* virtio.c - virtio 1.x core: the checked split-virtqueue walker, iov helpers, common device state and reset. */
#include "virtio.h"
#include "virtio_int.h"

#include <endian.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "../vmm/util.h"

/*
 * Threading: the vq_* functions take no lock. One thread at a time drives a given queue (the device
 * serialises its own data path, e.g. with a private lock); the guest runs concurrently on other CPUs,
 * so every guest-owned ring field is read exactly once with an atomic load and then validated from
 * the local copy. Nothing here takes d->lock either: the transport holds it around register accesses
 * (and may call virtio_dev_reset with it held), so taking it from a data path would invite deadlock.
 *
 * Zero-length descriptors are accepted (the spec does not forbid them) but contribute no iovec; they
 * still count for loop detection and still obey the readable-before-writable order.
 */

#define DESC_SIZE 16u
#define RING_HDR 4u /* flags + idx of the avail and used rings */

struct vring_ptrs {
	uint8_t *desc, *avail, *used;
};

static inline uint16_t ld16(const uint8_t *p)
{
	return le16toh(__atomic_load_n((const uint16_t *)p, __ATOMIC_RELAXED));
}

static inline uint16_t ld16_acquire(const uint8_t *p)
{
	return le16toh(__atomic_load_n((const uint16_t *)p, __ATOMIC_ACQUIRE));
}

static inline void st16(uint8_t *p, uint16_t v)
{
	__atomic_store_n((uint16_t *)p, htole16(v), __ATOMIC_RELAXED);
}

static bool is_pow2(uint32_t v)
{
	return v && !(v & (v - 1));
}

static bool vq_feature(const struct virtqueue *vq, unsigned bit)
{
	return vq->dev && virtio_has_feature(vq->dev, bit);
}

/* Host pointers for the three rings, or -EINVAL if the driver programmed something we cannot use.
 * The avail/used extents include the event-idx words: the spec sizes them that way unconditionally. */
static int vq_map(const struct virtqueue *vq, struct vring_ptrs *r)
{
	struct guest_mem *mem = vq->dev ? vq->dev->mem : NULL;
	uint32_t n = vq->size;

	if (!mem || !is_pow2(n) || n > vq->max_size || n > VQ_MAX_SIZE)
		return -EINVAL;
	if ((vq->desc_gpa & 15) || (vq->avail_gpa & 1) || (vq->used_gpa & 3))
		return -EINVAL;
	r->desc = gpa_ptr(mem, vq->desc_gpa, (uint64_t)DESC_SIZE * n);
	r->avail = gpa_ptr(mem, vq->avail_gpa, RING_HDR + 2ull * n + 2);
	r->used = gpa_ptr(mem, vq->used_gpa, RING_HDR + 8ull * n + 2);
	if (!r->desc || !r->avail || !r->used)
		return -EINVAL;
	/* The gpa checks imply these when RAM is page-aligned; test buffers might not be. */
	if (((uintptr_t)r->avail & 1) || ((uintptr_t)r->used & 3))
		return -EINVAL;
	return 0;
}

int vq_rings_check(const struct virtqueue *vq)
{
	struct vring_ptrs r;
	return vq_map(vq, &r);
}

static int vq_break(struct virtqueue *vq, const char *why)
{
	if (!vq->broken)
		debugx("virtio %s: queue %u malformed: %s", vq->dev && vq->dev->name ? vq->dev->name : "?",
		       vq->index, why);
	vq->broken = true;
	return -EINVAL;
}

/* One descriptor, copied out of guest memory once. The barrier stops the compiler from re-reading
 * guest memory in place of the copy (a double fetch the guest could race). memcpy because indirect
 * tables need not be aligned. */
static void desc_fetch(const uint8_t *p, uint64_t *addr, uint32_t *len, uint16_t *flags, uint16_t *next)
{
	struct vring_desc d;
	memcpy(&d, p, sizeof(d));
	__asm__ __volatile__("" ::: "memory");
	*addr = le64toh(d.addr);
	*len = le32toh(d.len);
	*flags = le16toh(d.flags);
	*next = le16toh(d.next);
}

static int vq_walk(struct virtqueue *vq, const struct vring_ptrs *r, uint16_t head, struct vq_req *req,
		   const char **why)
{
	struct guest_mem *mem = vq->dev->mem;
	const uint8_t *table = r->desc;
	uint32_t table_size = vq->size, idx = head, seen = 0;
	bool indirect = false, writable = false;

	req->head = head;
	req->nout = req->nin = 0;
	req->out_len = req->in_len = 0;
	if (head >= vq->size)
		return *why = "head out of range", -EINVAL;

	for (;;) {
		uint64_t addr;
		uint32_t len;
		uint16_t flags, next;

		if (++seen > table_size)
			return *why = "descriptor loop", -EINVAL;
		desc_fetch(table + (size_t)idx * DESC_SIZE, &addr, &len, &flags, &next);

		if (flags & VRING_DESC_F_INDIRECT) {
			if (indirect)
				return *why = "nested indirect", -EINVAL;
			if (!vq_feature(vq, VIRTIO_RING_F_INDIRECT_DESC))
				return *why = "indirect not negotiated", -EINVAL;
			if (flags & VRING_DESC_F_NEXT)
				return *why = "indirect with NEXT", -EINVAL;
			if (len == 0 || len % DESC_SIZE || len / DESC_SIZE > VQ_MAX_SIZE)
				return *why = "bad indirect table length", -EINVAL;
			table = gpa_ptr(mem, addr, len);
			if (!table)
				return *why = "indirect table outside RAM", -EINVAL;
			/* The WRITE flag of the indirect descriptor itself is ignored, as the spec says. */
			table_size = len / DESC_SIZE;
			idx = 0;
			seen = 0;
			indirect = true;
			continue;
		}

		if (flags & VRING_DESC_F_WRITE)
			writable = true;
		else if (writable)
			return *why = "readable after writable", -EINVAL;

		if (len) {
			void *p = gpa_ptr(mem, addr, len);
			unsigned n = req->nout + req->nin;
			if (!p)
				return *why = "buffer outside RAM", -EINVAL;
			if (n >= VQ_MAX_SEGS)
				return *why = "chain too long", -EINVAL;
			req->iov[n].iov_base = p;
			req->iov[n].iov_len = len;
			/* u32 lengths, at most VQ_MAX_SEGS of them: the u64 sums cannot overflow. */
			if (writable) {
				req->nin++;
				req->in_len += len;
			} else {
				req->nout++;
				req->out_len += len;
			}
		}

		if (!(flags & VRING_DESC_F_NEXT))
			return 0;
		idx = next;
		if (idx >= table_size)
			return *why = "next out of range", -EINVAL;
	}
}

/* Tell the driver how far we have consumed (EVENT_IDX): it kicks only when it passes this index. */
static void vq_set_avail_event(struct virtqueue *vq, const struct vring_ptrs *r)
{
	uint8_t *p = r->used + RING_HDR + 8u * vq->size;
	st16(p, vq->last_avail);
	gmem_mark_dirty_host(vq->dev->mem, p, 2);
}

/* What every walk starts with: 1 with the rings mapped into *r, 0 if the queue is not ready, or
 * -EINVAL on a broken queue (now or before). */
static int vq_begin(struct virtqueue *vq, struct vring_ptrs *r)
{
	if (vq->broken)
		return -EINVAL;
	if (!vq->ready)
		return 0;
	if (vq_map(vq, r))
		return vq_break(vq, "bad ring layout");
	return 1;
}

int vq_pop(struct virtqueue *vq, struct vq_req *req)
{
	struct vring_ptrs r;
	const char *why = NULL;

	int s = vq_begin(vq, &r);
	if (s <= 0)
		return s;
	bool event_idx = vq_feature(vq, VIRTIO_RING_F_EVENT_IDX);
	/* Acquire: the ring entry and descriptors the driver wrote before bumping idx are visible. */
	uint16_t avail_idx = ld16_acquire(r.avail + 2);
	if (avail_idx == vq->last_avail) {
		if (!event_idx)
			return 0;
		/* Publish avail_event, then re-check: paired with the driver's "publish idx, then read
		 * avail_event" one of us sees the other's store, so no kick and no buffer is lost. */
		vq_set_avail_event(vq, &r);
		__atomic_thread_fence(__ATOMIC_SEQ_CST);
		avail_idx = ld16_acquire(r.avail + 2);
		if (avail_idx == vq->last_avail)
			return 0;
	}
	if ((uint16_t)(avail_idx - vq->last_avail) > vq->size)
		return vq_break(vq, "avail idx ran ahead of the ring");

	uint16_t head = ld16(r.avail + RING_HDR + 2u * (vq->last_avail & (vq->size - 1)));
	if (vq_walk(vq, &r, head, req, &why))
		return vq_break(vq, why);
	vq->last_avail++;
	if (event_idx)
		vq_set_avail_event(vq, &r);
	return 1;
}

int vq_chain_at(struct virtqueue *vq, uint16_t head, struct vq_req *req)
{
	struct vring_ptrs r;
	const char *why = NULL;

	int s = vq_begin(vq, &r);
	if (s < 0)
		return s;
	/* A chain in flight on a queue that is not running: the state that says so is inconsistent. */
	if (s == 0)
		return vq_break(vq, "chain on a queue that is not ready");
	if (vq_walk(vq, &r, head, req, &why))
		return vq_break(vq, why);
	return 0;
}

int vq_push_used_n(struct virtqueue *vq, const struct vq_used *u, unsigned n)
{
	struct vring_ptrs r;

	if (!vq->ready || vq_map(vq, &r))
		return -EFAULT;
	if (n > vq->size)
		return -EINVAL;
	for (unsigned i = 0; i < n; i++)
		if (u[i].head >= vq->size)
			return -EINVAL;
	for (unsigned i = 0; i < n; i++) {
		uint8_t *e = r.used + RING_HDR + 8u * ((uint16_t)(vq->used_idx + i) & (vq->size - 1));
		struct vring_used_elem elem = { .id = htole32(u[i].head), .len = htole32(u[i].len) };
		memcpy(e, &elem, sizeof(elem));
		gmem_mark_dirty_host(vq->dev->mem, e, sizeof(elem));
	}
	vq->used_idx = (uint16_t)(vq->used_idx + n);
	/* Release: the elements (and the data the device wrote) are visible before the new idx. */
	__atomic_store_n((uint16_t *)(r.used + 2), htole16(vq->used_idx), __ATOMIC_RELEASE);
	gmem_mark_dirty_host(vq->dev->mem, r.used + 2, 2);
	return 0;
}

int vq_push_used(struct virtqueue *vq, uint16_t head, uint32_t len)
{
	struct vq_used u = { .head = head, .len = len };
	return vq_push_used_n(vq, &u, 1);
}

int vq_push(struct virtqueue *vq, const struct vq_req *req, uint32_t written)
{
	gmem_mark_iov(vq->dev->mem, req->iov + req->nout, req->nin, written);
	return vq_push_used(vq, req->head, written);
}

bool vq_needs_notify(struct virtqueue *vq)
{
	struct vring_ptrs r;

	if (!vq->ready || vq_map(vq, &r))
		return false;
	/* Full fence: our used->idx store must be ordered before we read the driver's suppression
	 * fields, mirroring the driver's "update used_event, then re-read used->idx". */
	__atomic_thread_fence(__ATOMIC_SEQ_CST);
	if (vq_feature(vq, VIRTIO_RING_F_EVENT_IDX)) {
		uint16_t old = vq->signalled_used, new_idx = vq->used_idx;
		bool valid = vq->signalled_used_valid;
		vq->signalled_used = new_idx;
		vq->signalled_used_valid = true;
		if (!valid)
			return true;
		uint16_t used_event = ld16(r.avail + RING_HDR + 2u * vq->size);
		return vring_need_event(used_event, new_idx, old);
	}
	return !(ld16(r.avail) & VRING_AVAIL_F_NO_INTERRUPT);
}

unsigned vq_pending(struct virtqueue *vq)
{
	struct vring_ptrs r;

	if (vq->broken || !vq->ready || vq_map(vq, &r))
		return 0;
	uint16_t n = ld16_acquire(r.avail + 2) - vq->last_avail;
	return n > vq->size ? 0 : n;
}

/* Up to len bytes between the iovec bytes from `skip` on and a buffer: into `out` when it is set,
 * else from `in`. Returns bytes copied. */
static size_t iov_copy(const struct iovec *iov, unsigned n, size_t skip, uint8_t *out, const uint8_t *in, size_t len)
{
	size_t done = 0;
	for (unsigned i = 0; i < n && done < len; i++) {
		if (skip >= iov[i].iov_len) {
			skip -= iov[i].iov_len;
			continue;
		}
		size_t c = MIN(iov[i].iov_len - skip, len - done);
		uint8_t *seg = (uint8_t *)iov[i].iov_base + skip;
		if (out)
			memcpy(out + done, seg, c);
		else
			memcpy(seg, in + done, c);
		done += c;
		skip = 0;
	}
	return done;
}

size_t vq_iov_to_buf(const struct iovec *iov, unsigned n, size_t skip, void *buf, size_t len)
{
	return iov_copy(iov, n, skip, buf, NULL, len);
}

/* The caller marks the destination dirty (it knows which guest bytes it wrote). */
size_t vq_buf_to_iov(const struct iovec *iov, unsigned n, size_t skip, const void *buf, size_t len)
{
	return iov_copy(iov, n, skip, NULL, buf, len);
}

bool virtio_has_feature(const struct virtio_dev *d, unsigned bit)
{
	return bit < 64 && (d->guest_features & (1ull << bit));
}

static void vq_reset_one(struct virtqueue *vq)
{
	vq->size = vq->max_size;
	vq->ready = false;
	vq->desc_gpa = vq->avail_gpa = vq->used_gpa = 0;
	vq->msix_vector = VIRTIO_MSI_NO_VECTOR;
	vq->last_avail = vq->used_idx = 0;
	vq->broken = false;
	vq->signalled_used = 0;
	vq->signalled_used_valid = false;
}

int virtio_dev_init(struct virtio_dev *d, const char *name, uint32_t device_id, unsigned nqueues,
		    uint16_t max_queue_size, uint32_t config_len, struct guest_mem *mem,
		    const struct virtio_dev_ops *ops, void *priv)
{
	if (!nqueues || !is_pow2(max_queue_size) || max_queue_size > VQ_MAX_SIZE || !mem || !ops)
		return -EINVAL;
	memset(d, 0, sizeof(*d));
	d->vqs = calloc(nqueues, sizeof(*d->vqs));
	if (!d->vqs)
		return -ENOMEM;
	d->name = name;
	d->device_id = device_id;
	d->host_features = 1ull << VIRTIO_F_VERSION_1;
	d->config_msix_vector = VIRTIO_MSI_NO_VECTOR;
	d->config_len = config_len;
	d->nqueues = nqueues;
	d->mem = mem;
	d->ops = ops;
	d->priv = priv;
	pthread_mutex_init(&d->lock, NULL);
	for (unsigned i = 0; i < nqueues; i++) {
		struct virtqueue *vq = &d->vqs[i];
		vq->dev = d;
		vq->index = i;
		vq->max_size = max_queue_size;
		vq->notify_off = (uint16_t)i;
		vq_reset_one(vq);
	}
	return 0;
}

void virtio_dev_destroy(struct virtio_dev *d)
{
	if (!d->vqs)
		return;
	free(d->vqs);
	d->vqs = NULL;
	pthread_mutex_destroy(&d->lock);
}

void virtio_dev_reset(struct virtio_dev *d)
{
	/* The device drops in-flight work first, so nothing completes into a queue we are clearing. */
	if (d->ops && d->ops->reset)
		d->ops->reset(d);
	__atomic_store_n(&d->status, 0, __ATOMIC_RELAXED);
	d->guest_features = 0;
	d->isr = 0;
	d->config_msix_vector = VIRTIO_MSI_NO_VECTOR;
	for (unsigned i = 0; i < d->nqueues; i++)
		vq_reset_one(&d->vqs[i]);
}

void virtio_dev_set_needs_reset(struct virtio_dev *d)
{
	/* Atomic, not under d->lock: called from device data paths (see the threading note above). */
	uint8_t old = __atomic_fetch_or(&d->status, VIRTIO_CONFIG_S_NEEDS_RESET, __ATOMIC_ACQ_REL);
	if ((old & VIRTIO_CONFIG_S_NEEDS_RESET) || !(old & VIRTIO_CONFIG_S_DRIVER_OK))
		return;
	warnx("virtio %s: driver handed a malformed ring; device needs reset", d->name ? d->name : "?");
	if (d->notify_config)
		d->notify_config(d);
}

void virtio_queue_notify_guest(struct virtio_dev *d, struct virtqueue *vq)
{
	if (vq_needs_notify(vq) && d->notify_queue)
		d->notify_queue(d, vq);
}

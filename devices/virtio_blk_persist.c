/* virtio_blk_persist.c - virtio-blk's checkpoint half: the "blk-*" properties, requests in flight included. */
#include "virtio_blk_int.h"

#include <errno.h>
#include <libfdt.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../vmm/fdt_prop.h"
#include "../vmm/util.h"

/*
 * The transport (virtio_pci_save/restore) saves the common virtio state (features, status, queues)
 * beside these properties and restores it before calling blk_restore. The device's own part is small:
 * the image's size and mode, which must match (a guest's disk cannot change shape under it), and the
 * requests in flight, which are device state since quiesce stops reaping instead of waiting for I/O.
 *
 * Restore, in the order it runs and why:
 *  1. blk_restore_check (transport, before it changes anything): same capacity, same read-only mode,
 *     a well-formed in-flight list. A refusal leaves the whole device as it was.
 *  2. (transport) config space, then the common state: the queues the saved heads index.
 *  3. blk_restore, under b->lock: check again (never trust the caller); drop whatever is in flight
 *     here, which belongs to the queues just replaced; stop the data path (active = false) because
 *     only the restored status may say whether the driver is up; record the saved heads; nudge the
 *     I/O thread through the backend's eventfd.
 *  4. The data path adopts it on resume (cmd/run.c resumes every device after a restore), on a kick or
 *     when the I/O thread runs, whichever is first (blk_adopt_restored): active from the restored
 *     status, the queue interrupt owed (the checkpoint may hold used entries whose interrupt the
 *     captured irqchip never saw), then the saved heads re-submitted before anything new is popped:
 *     the driver popped them before the checkpoint and waits for their used entries.
 */

static int blk_req_cmp_seq(const void *x, const void *y)
{
	const struct blk_req *a = *(struct blk_req *const *)x, *c = *(struct blk_req *const *)y;
	return a->seq < c->seq ? -1 : a->seq > c->seq;
}

/* Lock held: the heads to re-submit after a restore, in submission order. Heads restored but not yet
 * re-submitted come first (in fact alone: they go before anything is popped). Returns the count. */
static unsigned blk_inflight_heads(struct virtio_blk *b, fdt32_t *out)
{
	struct blk_req *reqs[VIRTIO_BLK_QUEUE_SIZE] = { NULL };
	unsigned n = 0, k = 0;
	for (unsigned h = 0; h < VIRTIO_BLK_QUEUE_SIZE; h++)
		if (b->inflight[h])
			reqs[k++] = b->inflight[h];
	qsort(reqs, k, sizeof(reqs[0]), blk_req_cmp_seq);
	for (unsigned i = 0; i < b->nsaved; i++)
		out[n++] = cpu_to_fdt32(b->saved[i]);
	for (unsigned i = 0; i < k && n < VIRTIO_BLK_QUEUE_SIZE; i++)
		out[n++] = cpu_to_fdt32(reqs[i]->head);
	return n;
}

/* Needs a quiesced device (or one restored and not yet running), as the common state saved beside it
 * would otherwise not match. Requests in flight are part of the state. */
int blk_save(struct virtio_dev *d, void *fdt)
{
	struct virtio_blk *b = to_blk(d);
	fdt32_t heads[VIRTIO_BLK_QUEUE_SIZE];
	pthread_mutex_lock(&b->lock);
	unsigned n = blk_inflight_heads(b, heads);
	pthread_mutex_unlock(&b->lock);
	int r = fdt_property_u32(fdt, "blk-version", n ? BLK_STATE_VERSION : BLK_STATE_VERSION_PLAIN);
	r = r ?: fdt_property_u64(fdt, "blk-capacity", b->be.size / SECTOR);
	r = r ?: fdt_property_u32(fdt, "blk-readonly", b->be.ro);
	if (n)
		r = r ?: fdt_property(fdt, "blk-inflight", heads, (int)(n * sizeof(heads[0])));
	return r ? -EINVAL : 0;
}

/* The saved in-flight heads, untrusted (a snapshot file or the FT peer wrote them): a whole number
 * of be32 cells, at most a queue's worth, each a head the queue can have, none twice. Absent: none. */
static int blk_parse_inflight(const struct virtio_blk *b, const void *fdt, int node, uint16_t *heads,
			      unsigned *n)
{
	int len;
	const uint8_t *p = fdt_getprop(fdt, node, "blk-inflight", &len);
	bool seen[VIRTIO_BLK_QUEUE_SIZE] = { false };

	*n = 0;
	if (!p && len == -FDT_ERR_NOTFOUND)
		return 0;
	if (!p || len < 0 || len % sizeof(fdt32_t) || len / sizeof(fdt32_t) > VIRTIO_BLK_QUEUE_SIZE) {
		warnx("%s: restore: in-flight request list of %d bytes: not whole heads, or more than the queue holds",
		      b->name, len);
		return -EINVAL;
	}
	unsigned cnt = (unsigned)len / sizeof(fdt32_t);
	for (unsigned i = 0; i < cnt; i++) {
		fdt32_t c;
		memcpy(&c, p + i * sizeof(c), sizeof(c)); /* fdt properties are only 4-byte aligned */
		uint32_t h = fdt32_to_cpu(c);
		if (h >= VIRTIO_BLK_QUEUE_SIZE || seen[h]) {
			warnx("%s: restore: in-flight request list has a bad or repeated head (%u)", b->name, h);
			return -EINVAL;
		}
		seen[h] = true;
		heads[i] = (uint16_t)h;
	}
	*n = cnt;
	return 0;
}

/* A restore's device-specific list, checked before anything changes. */
struct blk_saved {
	unsigned n;
	uint16_t heads[VIRTIO_BLK_QUEUE_SIZE];
};

/* Device-specific half of restore: check the checkpoint matches this image and parse its in-flight
 * list into *sv; nothing changes yet. */
static int blk_check_saved(struct virtio_blk *b, const void *fdt, int node, struct blk_saved *sv)
{
	uint32_t v = 0, ro;
	uint64_t cap;
	if (fdtp_u32(fdt, node, "blk-version", &v) || (v != BLK_STATE_VERSION && v != BLK_STATE_VERSION_PLAIN)) {
		warnx("%s: restore: missing or unsupported version", b->name);
		return -EINVAL;
	}
	if (fdtp_u64(fdt, node, "blk-capacity", &cap)) {
		warnx("%s: restore: missing capacity", b->name);
		return -EINVAL;
	}
	if (cap != b->be.size / SECTOR) {
		warnx("%s: restore: image has %llu sectors but the checkpoint expects %llu", b->name,
		      (unsigned long long)(b->be.size / SECTOR), (unsigned long long)cap);
		return -EINVAL;
	}
	if (fdtp_u32(fdt, node, "blk-readonly", &ro) || ro != (uint32_t)b->be.ro) {
		warnx("%s: restore: read-only mode differs from the checkpoint", b->name);
		return -EINVAL;
	}
	return blk_parse_inflight(b, fdt, node, sv->heads, &sv->n);
}

/* Lock held: forget in-flight work (its queues are being replaced) and stop consuming until the
 * restored state is adopted. */
static void blk_restore_begin(struct virtio_blk *b)
{
	b->active = false;
	b->restored = false;
	b->owe_irq = false;
	blk_drop_inflight(b);
}

/* Lock held: the common state is in place, sv is its in-flight list. The device adopts both when it
 * is resumed (cmd/run.c resumes every device after a restore), when a kick arrives or when the I/O
 * thread next runs (the nudge waits in the eventfd if the loop is not started yet), whichever comes
 * first; the saved requests are re-submitted before anything new is popped. */
static void blk_restore_end(struct virtio_blk *b, const struct blk_saved *sv)
{
	uint64_t one = 1;
	b->nsaved = sv->n;
	memcpy(b->saved, sv->heads, sv->n * sizeof(sv->heads[0]));
	b->restored = true;
	if (write(b->be.efd, &one, sizeof(one)) != sizeof(one))
		warnx("%s: cannot schedule the restart after restore", b->name);
}

/* Step 1: the checkpoint fits this image and its in-flight list parses; nothing changes. */
int blk_restore_check(struct virtio_dev *d, const void *fdt, int node)
{
	struct blk_saved sv;
	return blk_check_saved(to_blk(d), fdt, node, &sv);
}

/* Step 3, once the transport has restored the common state. */
int blk_restore(struct virtio_dev *d, const void *fdt, int node)
{
	struct virtio_blk *b = to_blk(d);
	struct blk_saved sv;
	int r = blk_check_saved(b, fdt, node, &sv);
	if (r)
		return r;
	pthread_mutex_lock(&b->lock);
	blk_restore_begin(b);
	blk_restore_end(b, &sv);
	pthread_mutex_unlock(&b->lock);
	return 0;
}

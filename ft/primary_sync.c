/* primary_sync.c - the initial sync, while the guest runs: disk logging on, the disks, all memory, pre-copy rounds. */
#include "primary_int.h"
#include "../devices/platform.h"
#include "../devices/virtio_blk.h"
#include "../vmm/util.h"
#include "../vmm/vm.h"
#include "hash.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>
#include <unistd.h>

/*
 * primary_initial_sync, the engine's first step (primary.c), in order: start_logging (disk writes and
 * dirty pages from now on), send_disks, send_pages of all non-zero memory, then up to PRECOPY_ROUNDS
 * rounds of the pages dirtied meanwhile. The baseline checkpoint that follows makes it consistent.
 * Meanwhile the disk log has no epoch to ride in: flush_disklog sends it on its own.
 */

#define PRECOPY_ROUNDS 5

/* The disk log passed its soft limit: cut the epoch short (the engine still honours back-pressure). */
static void disklog_full(void *ctx)
{
	struct ft_primary *p = ctx;
	pthread_mutex_lock(&p->lock);
	p->early = true;
	pthread_cond_broadcast(&p->cond);
	pthread_mutex_unlock(&p->lock);
}

/* Disk write hooks and the dirty log, switched on with the VM paused: a quiesced disk reaps nothing and
 * the hook runs at reap, so a write is either on the image before send_disks reads it or logged. */
static int start_logging(struct ft_primary *p)
{
	int r = vm_pause(p->vm);
	if (r)
		return r;
	p->disklog.full = disklog_full;
	p->disklog.full_ctx = p;
	for (unsigned i = 0; i < p->plat->ndisks; i++) {
		p->hooks[i] = (struct disklog_hook){ .log = &p->disklog, .disk = i };
		virtio_blk_set_write_hook(p->plat->disks[i], disklog_hook_fn, &p->hooks[i]);
		virtio_blk_set_admit(p->plat->disks[i], disklog_hook_admit, &p->hooks[i]);
	}
	r = vm_dirty_log_enable(p->vm, true);
	size_t words = gmem_bitmap_words(p->vm->mem.npages);
	memset(p->dirty, 0, words * sizeof(long));
	gmem_dirty_harvest(&p->vm->mem, p->dirty); /* old VMM writes: covered by the full copy */
	vm_resume(p->vm);
	return r;
}

/* During the initial sync there is no epoch to carry the disk log: once it passes half its soft limit
 * (admission stops the guest's disk at the soft limit), send its records as FT_DISK frames (one record
 * each), after every range already sent, then let the disks take requests again. */
static int flush_disklog(struct ft_primary *p)
{
	if (disklog_bytes(&p->disklog) < DISKLOG_SOFT_BYTES / 2)
		return 0;
	uint8_t *buf;
	size_t len;
	uint64_t writes;
	int r = disklog_take(&p->disklog, &buf, &len, &writes);
	for (size_t off = 0; !r && off < len;) {
		struct ft_disk_rec rec;
		memcpy(&rec, buf + off, sizeof(rec)); /* well-formed: disklog_add wrote it */
		size_t data = rec.kind == FT_DISK_WRITE ? (size_t)rec.len : 0;
		struct iovec iov[2] = { { &rec, sizeof(rec) }, { buf + off + sizeof(rec), data } };
		r = ft_send(&p->data, FT_DISK, 0, iov, 2);
		off += sizeof(rec) + data;
	}
	free(buf);
	for (unsigned i = 0; i < p->plat->ndisks; i++)
		virtio_blk_kick(p->plat->disks[i]);
	return r;
}

/* skip_zero: only for the first full pass; later a page that became zero must be sent too */
static int send_pages(struct ft_primary *p, const unsigned long *bm, bool skip_zero, uint64_t *sent)
{
	struct guest_mem *m = &p->vm->mem;
	enum { BATCH = FT_MEM_BATCH_PAGES };
	uint64_t pfns[BATCH];
	/* The guest runs during the initial sync: copy each page before it is checksummed and sent, or
	 * the checksum would cover bytes that changed on the way. Later writes are in the dirty log. */
	uint8_t *buf = malloc(BATCH * PAGE_SIZE);
	if (!buf)
		return -ENOMEM;
	uint64_t n = 0;
	int r = 0;
	*sent = 0;
	for (uint64_t pg = 0; pg <= m->npages && !r; pg++) {
		if (pg < m->npages && (bm[pg / 64] & (1ul << (pg % 64)))) {
			uint8_t *hp = m->host + (pg << PAGE_SHIFT);
			memcpy(buf + n * PAGE_SIZE, hp, PAGE_SIZE);
			if (!skip_zero || !page_is_zero(buf + n * PAGE_SIZE))
				pfns[n++] = pg;
		}
		if (n == BATCH || (pg == m->npages && n)) {
			struct iovec iov[3] = { { &n, sizeof(n) }, { pfns, n * sizeof(uint64_t) }, { buf, n * PAGE_SIZE } };
			r = ft_send(&p->data, FT_MEM, 0, iov, 3);
			r = r ?: flush_disklog(p);
			*sent += n;
			n = 0;
		}
	}
	free(buf);
	return r;
}

static int send_disks(struct ft_primary *p)
{
	enum { CHUNK = FT_DISK_SYNC_CHUNK };
	uint8_t *buf = malloc(CHUNK);
	if (!buf)
		return -ENOMEM;
	int r = 0;
	for (unsigned d = 0; d < p->plat->ndisks && !r; d++) {
		int fd = open(p->machine->disks[d].path, O_RDONLY | O_CLOEXEC);
		if (fd < 0) {
			r = -errno;
			break;
		}
		for (uint64_t off = 0; off < p->plat->disk_sizes[d] && !r; off += CHUNK) {
			ssize_t n = pread(fd, buf, CHUNK, (off_t)off);
			if (n <= 0) {
				r = n < 0 ? -errno : -EIO;
				break;
			}
			bool zero = true;
			for (ssize_t i = 0; i < n && zero; i += 8)
				zero = *(uint64_t *)(buf + i) == 0;
			struct ft_disk_rec rec = { .disk = d, .kind = zero ? FT_DISK_ZERO : FT_DISK_WRITE, .off = off,
						   .len = (uint64_t)n };
			struct iovec iov[2] = { { &rec, sizeof(rec) }, { buf, zero ? 0 : (size_t)n } };
			r = ft_send(&p->data, FT_DISK, 0, iov, 2);
			r = r ?: flush_disklog(p);
		}
		close(fd);
	}
	free(buf);
	return r;
}

int primary_initial_sync(struct ft_primary *p)
{
	size_t words = gmem_bitmap_words(p->vm->mem.npages);
	uint64_t sent = 0;
	/* Order matters: start logging disk writes and dirty pages first, then copy, so anything that
	 * changes during the copy is sent again afterwards. */
	int r = start_logging(p);
	if (!r) {
		warnx("ft: initial sync to %s: disks (dirty tracking: %s)", p->peer, vm_dirty_track_name(p->vm->dirty_track));
		r = send_disks(p);
	}
	if (!r) {
		memset(p->dirty, 0xff, words * sizeof(long));
		r = send_pages(p, p->dirty, true, &sent);
		warnx("ft: initial sync: memory round 0, %llu non-zero pages", (unsigned long long)sent);
	}
	for (int round = 1; !r && round <= PRECOPY_ROUNDS && !primary_should_quit(p); round++) {
		r = vm_dirty_harvest(p->vm, p->dirty, p->dirty);
		if (!r)
			r = send_pages(p, p->dirty, false, &sent);
		warnx("ft: initial sync: memory round %d, %llu dirty pages", round, (unsigned long long)sent);
		if (sent < 256)
			break;
	}
	return r;
}

/* snapshot.c - writes and verifies snapshot files: header, fdt state, page bitmap, non-zero pages. */
#include "snapshot.h"
#include "../vmm/util.h"
#include "../vmm/vm.h"
#include "state.h"

#include <errno.h>
#include <fcntl.h>
#include <libfdt.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

static uint64_t header_seed(const struct snap_header *h)
{
	struct snap_hash s;
	struct snap_header c = *h;
	c.checksum = 0;
	snap_hash_init(&s, 0x46545653ull);
	snap_hash_update(&s, &c, sizeof(c));
	return snap_hash_final(&s);
}

/* Pages go out in runs of consecutive non-zero pages, up to IOV_MAX iovecs per writev. */
static int write_pages(int fd, struct guest_mem *m, const unsigned long *bitmap, struct snap_hash *h)
{
	struct iovec iov[256];
	int n = 0;
	for (uint64_t pg = 0; pg < m->npages; pg++) {
		if (!(bitmap[pg / (8 * sizeof(long))] & (1ul << (pg % (8 * sizeof(long))))))
			continue;
		uint8_t *p = m->host + (pg << PAGE_SHIFT);
		snap_hash_update(h, p, PAGE_SIZE);
		if (n && (uint8_t *)iov[n - 1].iov_base + iov[n - 1].iov_len == p && iov[n - 1].iov_len < (1u << 30)) {
			iov[n - 1].iov_len += PAGE_SIZE;
			continue;
		}
		if (n == (int)ARRAY_SIZE(iov)) {
			for (int i = 0; i < n; i++) {
				int r = write_all(fd, iov[i].iov_base, iov[i].iov_len);
				if (r)
					return r;
			}
			n = 0;
		}
		iov[n].iov_base = p;
		iov[n].iov_len = PAGE_SIZE;
		n++;
	}
	for (int i = 0; i < n; i++) {
		int r = write_all(fd, iov[i].iov_base, iov[i].iov_len);
		if (r)
			return r;
	}
	return 0;
}

int snapshot_write(struct vm *vm, const struct machine *mach, const char *path, struct snap_stats *st, char *err,
		   size_t errlen)
{
	void *fdt = NULL;
	size_t fdt_len = 0;
	uint64_t t0 = now_ns();
	int r = state_capture(vm, mach, &fdt, &fdt_len);
	uint64_t t1 = now_ns();
	if (r) {
		snprintf(err, errlen, "cannot capture the VM state: %s", strerror(-r));
		return r;
	}
	struct guest_mem *m = &vm->mem;
	size_t bm_words = gmem_bitmap_words(m->npages);
	unsigned long *bitmap = calloc(bm_words ? bm_words : 1, sizeof(unsigned long));
	if (!bitmap) {
		free(fdt);
		return -ENOMEM;
	}
	uint64_t stored = 0;
	for (uint64_t pg = 0; pg < m->npages; pg++)
		if (!page_is_zero(m->host + (pg << PAGE_SHIFT))) {
			bitmap[pg / (8 * sizeof(long))] |= 1ul << (pg % (8 * sizeof(long)));
			stored++;
		}
	uint64_t t2 = now_ns();

	struct snap_header h;
	memset(&h, 0, sizeof(h));
	memcpy(h.magic, SNAP_MAGIC, 8);
	h.major = SNAP_MAJOR;
	h.minor = SNAP_MINOR;
	h.state_off = sizeof(h);
	h.state_len = fdt_len;
	h.bitmap_off = ALIGN_UP(h.state_off + h.state_len, 8);
	h.pages_off = ALIGN_UP(h.bitmap_off + bm_words * sizeof(long), SNAP_ALIGN);
	h.mem_size = m->size;
	h.npages_stored = stored;

	char *tmp = malloc(strlen(path) + 16);
	if (!tmp) {
		free(fdt);
		free(bitmap);
		return -ENOMEM;
	}
	sprintf(tmp, "%s.tmp.XXXXXX", path);
	int fd = mkostemp(tmp, O_CLOEXEC);
	if (fd < 0) {
		r = -errno;
		snprintf(err, errlen, "cannot create %s: %s", tmp, strerror(errno));
		goto out;
	}
	struct snap_hash hs;
	snap_hash_init(&hs, header_seed(&h));
	snap_hash_update(&hs, fdt, ALIGN_DOWN(fdt_len, 32));
	snap_hash_update(&hs, (uint8_t *)fdt + ALIGN_DOWN(fdt_len, 32), fdt_len % 32);
	/* the tail call above is the only non-multiple-of-32 one before the bitmap: restart lanes cleanly */
	snap_hash_update(&hs, bitmap, bm_words * sizeof(long));
	if (lseek(fd, (off_t)h.pages_off, SEEK_SET) < 0) {
		r = -errno;
		goto fail;
	}
	r = write_pages(fd, m, bitmap, &hs);
	if (r)
		goto fail;
	h.checksum = snap_hash_final(&hs);
	if ((r = pwrite_all(fd, &h, sizeof(h), 0)) || (r = pwrite_all(fd, fdt, fdt_len, h.state_off)) ||
	    (r = pwrite_all(fd, bitmap, bm_words * sizeof(long), h.bitmap_off)))
		goto fail;
	if (fsync(fd) < 0) {
		r = -errno;
		goto fail;
	}
	struct stat sb;
	if (st) {
		memset(st, 0, sizeof(*st));
		if (fstat(fd, &sb) == 0)
			st->bytes = (uint64_t)sb.st_size;
		st->pages = stored;
		st->state_ns = t1 - t0;
		st->scan_ns = t2 - t1;
	}
	close(fd);
	if (rename(tmp, path) < 0) {
		r = -errno;
		snprintf(err, errlen, "cannot rename %s to %s: %s", tmp, path, strerror(errno));
		unlink(tmp);
		goto out;
	}
	/* make the rename itself durable */
	char *dcopy = strdup(path);
	if (dcopy) {
		int dfd = open(dirname(dcopy), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
		if (dfd >= 0) {
			fsync(dfd);
			close(dfd);
		}
		free(dcopy);
	}
	if (st)
		st->write_ns = now_ns() - t2;
	r = 0;
	goto out;
fail:
	snprintf(err, errlen, "cannot write snapshot %s: %s", path, strerror(-r));
	if (fd >= 0)
		close(fd);
	unlink(tmp);
out:
	free(tmp);
	free(fdt);
	free(bitmap);
	return r;
}

int snapshot_open(const char *path, struct snapshot *s, char *err, size_t errlen)
{
	memset(s, 0, sizeof(*s));
	s->fd = open(path, O_RDONLY | O_CLOEXEC);
	if (s->fd < 0) {
		snprintf(err, errlen, "snapshot %s: %s", path, strerror(errno));
		return -errno;
	}
	struct stat st;
	if (fstat(s->fd, &st) < 0 || !S_ISREG(st.st_mode)) {
		snprintf(err, errlen, "snapshot %s: not a regular file", path);
		goto bad;
	}
	s->file_size = (uint64_t)st.st_size;
	struct snap_header *h = &s->hdr;
	if (s->file_size < sizeof(*h) || pread_all(s->fd, h, sizeof(*h), 0) || memcmp(h->magic, SNAP_MAGIC, 8) != 0) {
		snprintf(err, errlen, "snapshot %s: not an ftvmm snapshot (bad magic)", path);
		goto bad;
	}
	if (h->major != SNAP_MAJOR) {
		snprintf(err, errlen, "snapshot %s: format version %u.%u is not readable by this ftvmm (reads %u.x)", path,
			 (unsigned)h->major, (unsigned)h->minor, (unsigned)SNAP_MAJOR);
		goto bad;
	}
	uint64_t npages = h->mem_size >> PAGE_SHIFT;
	size_t bm_bytes = gmem_bitmap_words(npages) * sizeof(long);
	if (h->mem_size == 0 || h->mem_size % PAGE_SIZE || h->mem_size > VM_MAX_MEM || h->state_len < 64 ||
	    h->state_len > (64u << 20) || h->state_off != sizeof(*h) || h->bitmap_off < h->state_off + h->state_len ||
	    h->pages_off < h->bitmap_off + bm_bytes || h->npages_stored > npages ||
	    h->pages_off + h->npages_stored * PAGE_SIZE != s->file_size) {
		snprintf(err, errlen, "snapshot %s: truncated or corrupted (sizes in the header do not match the file)", path);
		goto bad;
	}
	s->fdt = malloc(h->state_len);
	s->bitmap = calloc(1, bm_bytes + sizeof(long));
	if (!s->fdt || !s->bitmap || pread_all(s->fd, s->fdt, h->state_len, h->state_off) ||
	    pread_all(s->fd, s->bitmap, bm_bytes, h->bitmap_off)) {
		snprintf(err, errlen, "snapshot %s: cannot read the state", path);
		goto bad;
	}
	uint64_t set = 0;
	for (size_t i = 0; i < bm_bytes / sizeof(long); i++)
		set += (uint64_t)__builtin_popcountl(s->bitmap[i]);
	if (set != h->npages_stored) {
		snprintf(err, errlen, "snapshot %s: corrupted page bitmap", path);
		goto bad;
	}
	/* the checksum covers everything: verify before anything is applied */
	struct snap_hash hs;
	snap_hash_init(&hs, header_seed(h));
	snap_hash_update(&hs, s->fdt, ALIGN_DOWN(h->state_len, 32));
	snap_hash_update(&hs, (uint8_t *)s->fdt + ALIGN_DOWN(h->state_len, 32), h->state_len % 32);
	snap_hash_update(&hs, s->bitmap, bm_bytes);
	size_t chunk = 4u << 20;
	uint8_t *buf = malloc(chunk);
	if (!buf)
		goto bad;
	uint64_t left = h->npages_stored * PAGE_SIZE, off = h->pages_off;
	while (left) {
		size_t n = (size_t)MIN(left, (uint64_t)chunk);
		if (pread_all(s->fd, buf, n, off)) {
			free(buf);
			snprintf(err, errlen, "snapshot %s: read error", path);
			goto bad;
		}
		snap_hash_update(&hs, buf, n);
		left -= n;
		off += n;
	}
	free(buf);
	if (snap_hash_final(&hs) != h->checksum) {
		snprintf(err, errlen, "snapshot %s: checksum mismatch (file corrupted)", path);
		goto bad;
	}
	if (fdt_check_header(s->fdt) || fdt_totalsize(s->fdt) > h->state_len) {
		snprintf(err, errlen, "snapshot %s: state is not a valid device tree", path);
		goto bad;
	}
	return 0;
bad:
	snapshot_close(s);
	return -EINVAL;
}

int snapshot_load_memory(struct snapshot *s, struct guest_mem *m, char *err, size_t errlen)
{
	if (m->size != s->hdr.mem_size) {
		snprintf(err, errlen, "snapshot memory size %llu MiB differs from the VM's %llu MiB",
			 (unsigned long long)(s->hdr.mem_size >> 20), (unsigned long long)(m->size >> 20));
		return -EINVAL;
	}
	uint64_t off = s->hdr.pages_off;
	for (uint64_t pg = 0; pg < m->npages;) {
		if (!(s->bitmap[pg / (8 * sizeof(long))] & (1ul << (pg % (8 * sizeof(long)))))) {
			pg++;
			continue;
		}
		uint64_t run = 1;
		while (pg + run < m->npages && run < 1024 &&
		       (s->bitmap[(pg + run) / (8 * sizeof(long))] & (1ul << ((pg + run) % (8 * sizeof(long))))))
			run++;
		if (pread_all(s->fd, m->host + (pg << PAGE_SHIFT), run * PAGE_SIZE, off)) {
			snprintf(err, errlen, "snapshot: cannot read guest memory");
			return -EIO;
		}
		off += run * PAGE_SIZE;
		pg += run;
	}
	return 0;
}

void snapshot_close(struct snapshot *s)
{
	if (s->fd > 0)
		close(s->fd);
	free(s->fdt);
	free(s->bitmap);
	s->fd = -1;
	s->fdt = NULL;
	s->bitmap = NULL;
}

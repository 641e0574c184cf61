/* snapshot.c - the snapshot file: header, state fdt, page bitmap, non-zero pages; written atomically, read back verified. */
#include "snapshot.h"
#include "../vmm/fdt_prop.h"
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

/*
 * The file, in order: struct snap_header; the state fdt at state_off (ft/state.c's tree as it is); the
 * page bitmap at bitmap_off (8-aligned); the non-zero pages in ascending order at pages_off
 * (SNAP_ALIGN-aligned). The checksum is snap_hash seeded with the header (checksum field zero) over
 * state, bitmap and pages. Writing: snapshot_write -> layout -> write_atomic (write_body, rename,
 * directory fsync). Reading: snapshot_open -> read_header -> read_state -> verify_checksum.
 */

static uint64_t header_seed(const struct snap_header *h)
{
	struct snap_hash s;
	struct snap_header c = *h;
	c.checksum = 0;
	snap_hash_init(&s, 0x46545653ull);
	snap_hash_update(&s, &c, sizeof(c));
	return snap_hash_final(&s);
}

/* Bytes of the page bitmap of a guest of h->mem_size. */
static size_t bitmap_bytes(const struct snap_header *h)
{
	return gmem_bitmap_words(h->mem_size >> PAGE_SHIFT) * sizeof(long);
}

/* The checksum up to the pages, the same for the writer and the reader: seeded with the header, then
 * the state (its tail, the only length not a multiple of 32 before the bitmap, in a call of its own)
 * and the bitmap. */
static void hash_begin(struct snap_hash *hs, const struct snap_header *h, const void *fdt, const void *bitmap)
{
	snap_hash_init(hs, header_seed(h));
	snap_hash_update(hs, fdt, ALIGN_DOWN(h->state_len, 32));
	snap_hash_update(hs, (const uint8_t *)fdt + ALIGN_DOWN(h->state_len, 32), h->state_len % 32);
	snap_hash_update(hs, bitmap, bitmap_bytes(h));
}

/* ---- writing ---------------------------------------------------------------------------------- */

/* A snapshot being written: the captured state, which pages are stored, and the header placing them. */
struct snap_out {
	void *fdt;
	unsigned long *bitmap;
	struct snap_header h;
};

/* The zero-page scan of all RAM into a fresh bitmap, and the header laid out around it. */
static int layout(struct snap_out *o, const struct guest_mem *m, size_t fdt_len)
{
	size_t bm_words = gmem_bitmap_words(m->npages);
	o->bitmap = calloc(bm_words ? bm_words : 1, sizeof(unsigned long));
	if (!o->bitmap)
		return -ENOMEM;
	uint64_t stored = 0;
	for (uint64_t pg = 0; pg < m->npages; pg++)
		if (!page_is_zero(m->host + (pg << PAGE_SHIFT))) {
			o->bitmap[pg / (8 * sizeof(long))] |= 1ul << (pg % (8 * sizeof(long)));
			stored++;
		}
	struct snap_header *h = &o->h;
	memset(h, 0, sizeof(*h));
	memcpy(h->magic, SNAP_MAGIC, 8);
	h->major = SNAP_MAJOR;
	h->minor = SNAP_MINOR;
	h->state_off = sizeof(*h);
	h->state_len = fdt_len;
	h->bitmap_off = ALIGN_UP(h->state_off + h->state_len, 8);
	h->pages_off = ALIGN_UP(h->bitmap_off + bm_words * sizeof(long), SNAP_ALIGN);
	h->mem_size = m->size;
	h->npages_stored = stored;
	return 0;
}

static int write_iovs(int fd, const struct iovec *iov, int n)
{
	for (int i = 0; i < n; i++) {
		int r = write_all(fd, iov[i].iov_base, iov[i].iov_len);
		if (r)
			return r;
	}
	return 0;
}

/* The stored pages at the file offset, hashed on the way, written in runs of consecutive pages. */
static int write_pages(int fd, const struct guest_mem *m, const unsigned long *bitmap, struct snap_hash *h)
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
			int r = write_iovs(fd, iov, n);
			if (r)
				return r;
			n = 0;
		}
		iov[n].iov_base = p;
		iov[n].iov_len = PAGE_SIZE;
		n++;
	}
	return write_iovs(fd, iov, n);
}

/* Everything into the open temp file: the pages first (the checksum is known only after them), then
 * header, state and bitmap, then fsync. 0 or -errno. */
static int write_body(int fd, const struct guest_mem *m, struct snap_out *o)
{
	struct snap_header *h = &o->h;
	struct snap_hash hs;
	hash_begin(&hs, h, o->fdt, o->bitmap);
	if (lseek(fd, (off_t)h->pages_off, SEEK_SET) < 0)
		return -errno;
	int r = write_pages(fd, m, o->bitmap, &hs);
	if (r)
		return r;
	h->checksum = snap_hash_final(&hs);
	if ((r = pwrite_all(fd, h, sizeof(*h), 0)) || (r = pwrite_all(fd, o->fdt, h->state_len, h->state_off)) ||
	    (r = pwrite_all(fd, o->bitmap, bitmap_bytes(h), h->bitmap_off)))
		return r;
	return fsync(fd) < 0 ? -errno : 0;
}

/* Make the rename itself durable (best effort: the file is complete under one name or the other). */
static void sync_dir(const char *path)
{
	char *dcopy = strdup(path);
	if (!dcopy)
		return;
	int dfd = open(dirname(dcopy), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (dfd >= 0) {
		fsync(dfd);
		close(dfd);
	}
	free(dcopy);
}

/* The file under a temp name beside path, renamed over it once complete: whoever opens path gets the
 * old file or the whole new one. *bytes: the file's size. 0, or -errno (with a line in err except for
 * -ENOMEM). */
static int write_atomic(const char *path, const struct guest_mem *m, struct snap_out *o, uint64_t *bytes, char *err,
			size_t errlen)
{
	char *tmp = malloc(strlen(path) + 16);
	if (!tmp)
		return -ENOMEM;
	sprintf(tmp, "%s.tmp.XXXXXX", path);
	int r = 0, fd = mkostemp(tmp, O_CLOEXEC);
	if (fd < 0) {
		r = -errno;
		snprintf(err, errlen, "cannot create %s: %s", tmp, strerror(errno));
		free(tmp);
		return r;
	}
	r = write_body(fd, m, o);
	struct stat sb;
	*bytes = !r && fstat(fd, &sb) == 0 ? (uint64_t)sb.st_size : 0;
	close(fd);
	if (r) {
		snprintf(err, errlen, "cannot write snapshot %s: %s", path, strerror(-r));
		unlink(tmp);
	} else if (rename(tmp, path) < 0) {
		r = -errno;
		snprintf(err, errlen, "cannot rename %s to %s: %s", tmp, path, strerror(errno));
		unlink(tmp);
	} else {
		sync_dir(path);
	}
	free(tmp);
	return r;
}

int snapshot_write(struct vm *vm, const struct machine *mach, const char *path, struct snap_stats *st, char *err,
		   size_t errlen)
{
	struct snap_out o = { 0 };
	size_t fdt_len = 0;
	uint64_t t0 = now_ns();
	int r = state_capture(vm, mach, &o.fdt, &fdt_len);
	uint64_t t1 = now_ns();
	if (r) {
		snprintf(err, errlen, "cannot capture the VM state: %s", strerror(-r));
		return r;
	}
	r = layout(&o, &vm->mem, fdt_len);
	uint64_t t2 = now_ns(), bytes = 0;
	if (!r)
		r = write_atomic(path, &vm->mem, &o, &bytes, err, errlen);
	if (!r && st)
		*st = (struct snap_stats){ .bytes = bytes, .pages = o.h.npages_stored, .state_ns = t1 - t0,
					   .scan_ns = t2 - t1, .write_ns = now_ns() - t2 };
	free(o.fdt);
	free(o.bitmap);
	return r;
}

/* ---- reading ---------------------------------------------------------------------------------- */

/* The header: magic, major version, and sizes that fit each other and the file (sums checked: every
 * field is the file's word). */
static int read_header(struct snapshot *s, const char *path, char *err, size_t errlen)
{
	struct stat st;
	if (fstat(s->fd, &st) < 0 || !S_ISREG(st.st_mode)) {
		snprintf(err, errlen, "snapshot %s: not a regular file", path);
		return -EINVAL;
	}
	s->file_size = (uint64_t)st.st_size;
	struct snap_header *h = &s->hdr;
	if (s->file_size < sizeof(*h) || pread_all(s->fd, h, sizeof(*h), 0) || memcmp(h->magic, SNAP_MAGIC, 8) != 0) {
		snprintf(err, errlen, "snapshot %s: not an ftvmm snapshot (bad magic)", path);
		return -EINVAL;
	}
	if (h->major != SNAP_MAJOR) {
		snprintf(err, errlen, "snapshot %s: format version %u.%u is not readable by this ftvmm (reads %u.x)", path,
			 (unsigned)h->major, (unsigned)h->minor, (unsigned)SNAP_MAJOR);
		return -EINVAL;
	}
	uint64_t npages = h->mem_size >> PAGE_SHIFT, bitmap_end, pages_end;
	if (h->mem_size == 0 || h->mem_size % PAGE_SIZE || h->mem_size > VM_MAX_MEM || h->state_len < 64 ||
	    h->state_len > (64u << 20) || h->state_off != sizeof(*h) || h->bitmap_off < h->state_off + h->state_len ||
	    __builtin_add_overflow(h->bitmap_off, bitmap_bytes(h), &bitmap_end) || h->pages_off < bitmap_end ||
	    h->npages_stored > npages || __builtin_add_overflow(h->pages_off, h->npages_stored * PAGE_SIZE, &pages_end) ||
	    pages_end != s->file_size) {
		snprintf(err, errlen, "snapshot %s: truncated or corrupted (sizes in the header do not match the file)", path);
		return -EINVAL;
	}
	return 0;
}

/* The state blob and the bitmap, whose count must be the header's. */
static int read_state(struct snapshot *s, const char *path, char *err, size_t errlen)
{
	const struct snap_header *h = &s->hdr;
	size_t bm_bytes = bitmap_bytes(h);
	s->fdt = malloc(h->state_len);
	s->bitmap = calloc(1, bm_bytes + sizeof(long));
	if (!s->fdt || !s->bitmap || pread_all(s->fd, s->fdt, h->state_len, h->state_off) ||
	    pread_all(s->fd, s->bitmap, bm_bytes, h->bitmap_off)) {
		snprintf(err, errlen, "snapshot %s: cannot read the state", path);
		return -EINVAL;
	}
	uint64_t set = 0;
	for (size_t i = 0; i < bm_bytes / sizeof(long); i++)
		set += (uint64_t)__builtin_popcountl(s->bitmap[i]);
	if (set != h->npages_stored) {
		snprintf(err, errlen, "snapshot %s: corrupted page bitmap", path);
		return -EINVAL;
	}
	return 0;
}

/* The checksum covers everything: verified (every stored page read once) before anything is applied;
 * then the state must be a device tree. */
static int verify_checksum(struct snapshot *s, const char *path, char *err, size_t errlen)
{
	const struct snap_header *h = &s->hdr;
	struct snap_hash hs;
	hash_begin(&hs, h, s->fdt, s->bitmap);
	size_t chunk = 4u << 20;
	uint8_t *buf = malloc(chunk);
	if (!buf)
		return -ENOMEM;
	uint64_t left = h->npages_stored * PAGE_SIZE, off = h->pages_off;
	while (left) {
		size_t n = (size_t)MIN(left, (uint64_t)chunk);
		if (pread_all(s->fd, buf, n, off)) {
			free(buf);
			snprintf(err, errlen, "snapshot %s: read error", path);
			return -EIO;
		}
		snap_hash_update(&hs, buf, n);
		left -= n;
		off += n;
	}
	free(buf);
	if (snap_hash_final(&hs) != h->checksum) {
		snprintf(err, errlen, "snapshot %s: checksum mismatch (file corrupted)", path);
		return -EINVAL;
	}
	if (!fdtp_whole(s->fdt, h->state_len)) {
		snprintf(err, errlen, "snapshot %s: state is not a valid device tree", path);
		return -EINVAL;
	}
	return 0;
}

int snapshot_open(const char *path, struct snapshot *s, char *err, size_t errlen)
{
	memset(s, 0, sizeof(*s));
	s->fd = open(path, O_RDONLY | O_CLOEXEC);
	if (s->fd < 0) {
		snprintf(err, errlen, "snapshot %s: %s", path, strerror(errno));
		return -errno;
	}
	if (read_header(s, path, err, errlen) || read_state(s, path, err, errlen) ||
	    verify_checksum(s, path, err, errlen)) {
		snapshot_close(s); /* one code for every refusal: the line in err says which */
		return -EINVAL;
	}
	return 0;
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

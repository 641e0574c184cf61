/* guest_mem.c - guest RAM mapping, gpa_ptr() bounds checks and the VMM-side dirty bitmap. */
#include "guest_mem.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/uio.h>

#define BITS_PER_LONG (8 * sizeof(unsigned long))

static int init_common(struct guest_mem *m, uint64_t size)
{
	m->size = size;
	m->low_size = size < MMIO_HOLE_START ? size : MMIO_HOLE_START;
	m->npages = size >> PAGE_SHIFT;
	m->dirty = calloc(gmem_bitmap_words(m->npages) + 1, sizeof(unsigned long));
	return m->dirty ? 0 : -ENOMEM;
}

int gmem_init(struct guest_mem *m, uint64_t size)
{
	memset(m, 0, sizeof(*m));
	if (size == 0 || size % PAGE_SIZE)
		return -EINVAL;
	void *p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	if (p == MAP_FAILED)
		return -errno;
	/* Huge pages cut TLB misses for the guest but make dirty tracking coarser on the host side
	 * only for THP-backed regions; KVM still logs at 4 KiB, so allow them. */
	madvise(p, size, MADV_HUGEPAGE);
	m->host = p;
	m->owns_mapping = true;
	int r = init_common(m, size);
	if (r) {
		munmap(p, size);
		m->host = NULL;
	}
	return r;
}

int gmem_init_buffer(struct guest_mem *m, void *buf, uint64_t size)
{
	memset(m, 0, sizeof(*m));
	if (!buf || size == 0 || size % PAGE_SIZE)
		return -EINVAL;
	m->host = buf;
	return init_common(m, size);
}

void gmem_free(struct guest_mem *m)
{
	if (m->owns_mapping && m->host)
		munmap(m->host, m->size);
	free(m->dirty);
	memset(m, 0, sizeof(*m));
}

bool gmem_gpa_to_off(const struct guest_mem *m, uint64_t gpa, uint64_t *off)
{
	if (gpa < m->low_size) {
		*off = gpa;
		return true;
	}
	if (gpa >= HIGH_RAM_START && gpa - HIGH_RAM_START < m->size - m->low_size) {
		*off = m->low_size + (gpa - HIGH_RAM_START);
		return true;
	}
	return false;
}

void *gpa_ptr(const struct guest_mem *m, uint64_t gpa, uint64_t len)
{
	uint64_t end;
	if (!m->host || __builtin_add_overflow(gpa, len, &end))
		return NULL;
	if (end <= m->low_size)
		return m->host + gpa;
	uint64_t high = m->size - m->low_size;
	if (gpa >= HIGH_RAM_START && end - HIGH_RAM_START <= high)
		return m->host + m->low_size + (gpa - HIGH_RAM_START);
	return NULL;
}

int gmem_read(const struct guest_mem *m, uint64_t gpa, void *buf, uint64_t len)
{
	const void *p = gpa_ptr(m, gpa, len);
	if (!p)
		return -EFAULT;
	memcpy(buf, p, len);
	return 0;
}

int gmem_write(struct guest_mem *m, uint64_t gpa, const void *buf, uint64_t len)
{
	void *p = gpa_ptr(m, gpa, len);
	if (!p)
		return -EFAULT;
	memcpy(p, buf, len);
	gmem_mark_dirty_host(m, p, len);
	return 0;
}

static void mark_range(struct guest_mem *m, uint64_t off, uint64_t len)
{
	if (len == 0 || off >= m->size)
		return;
	if (len > m->size - off)
		len = m->size - off;
	uint64_t first = off >> PAGE_SHIFT, last = (off + len - 1) >> PAGE_SHIFT;
	for (uint64_t pg = first; pg <= last; pg++)
		__atomic_fetch_or(&m->dirty[pg / BITS_PER_LONG], 1ul << (pg % BITS_PER_LONG), __ATOMIC_RELAXED);
}

void gmem_mark_dirty(struct guest_mem *m, uint64_t gpa, uint64_t len)
{
	uint64_t off;
	if (len == 0 || !gmem_gpa_to_off(m, gpa, &off))
		return;
	mark_range(m, off, len);
}

void gmem_mark_dirty_host(struct guest_mem *m, const void *p, uint64_t len)
{
	const uint8_t *b = p;
	if (b < m->host || b >= m->host + m->size)
		return;
	mark_range(m, (uint64_t)(b - m->host), len);
}

void gmem_mark_iov(struct guest_mem *m, const struct iovec *iov, unsigned n, uint64_t bytes)
{
	for (unsigned i = 0; i < n && bytes; i++) {
		uint64_t c = bytes < iov[i].iov_len ? bytes : (uint64_t)iov[i].iov_len;
		gmem_mark_dirty_host(m, iov[i].iov_base, c);
		bytes -= c;
	}
}

void gmem_dirty_harvest(struct guest_mem *m, unsigned long *out)
{
	size_t words = gmem_bitmap_words(m->npages);
	for (size_t i = 0; i < words; i++) {
		if (!__atomic_load_n(&m->dirty[i], __ATOMIC_RELAXED))
			continue;
		out[i] |= __atomic_exchange_n(&m->dirty[i], 0, __ATOMIC_ACQ_REL);
	}
}

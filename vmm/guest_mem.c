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
	size_t words = gmem_bitmap_words(m->npages);
	m->dirty = calloc(words + 1, sizeof(unsigned long));
	m->dirty_sum = calloc(gmem_bitmap_words(words) + 1, sizeof(unsigned long));
	if (!m->dirty || !m->dirty_sum) {
		free(m->dirty);
		free(m->dirty_sum);
		m->dirty = m->dirty_sum = NULL;
		return -ENOMEM;
	}
	return 0;
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
	free(m->dirty_sum);
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
	for (uint64_t pg = first; pg <= last; pg++) {
		uint64_t w = pg / BITS_PER_LONG;
		/* the page's bit first, then its word's summary bit: a harvest that clears the summary bit
		 * before this page's bit lands finds the bit the next time (its summary bit is set again) */
		__atomic_fetch_or(&m->dirty[w], 1ul << (pg % BITS_PER_LONG), __ATOMIC_RELEASE);
		__atomic_fetch_or(&m->dirty_sum[w / BITS_PER_LONG], 1ul << (w % BITS_PER_LONG), __ATOMIC_RELEASE);
	}
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

/* Each word of the VMM's bitmap that the summary marks, taken (cleared) and handed to fn. */
static void take_marked_words(struct guest_mem *m, void (*fn)(void *ctx, size_t word, unsigned long bits), void *ctx)
{
	size_t sum_words = gmem_bitmap_words(gmem_bitmap_words(m->npages));
	for (size_t s = 0; s < sum_words; s++) {
		if (!__atomic_load_n(&m->dirty_sum[s], __ATOMIC_RELAXED))
			continue;
		unsigned long marked = __atomic_exchange_n(&m->dirty_sum[s], 0, __ATOMIC_ACQ_REL);
		while (marked) {
			size_t w = s * BITS_PER_LONG + (size_t)__builtin_ctzl(marked);
			marked &= marked - 1;
			unsigned long bits = __atomic_exchange_n(&m->dirty[w], 0, __ATOMIC_ACQ_REL);
			if (bits)
				fn(ctx, w, bits);
		}
	}
}

static void or_word(void *ctx, size_t word, unsigned long bits)
{
	((unsigned long *)ctx)[word] |= bits;
}

void gmem_dirty_harvest(struct guest_mem *m, unsigned long *out)
{
	take_marked_words(m, or_word, out);
}

struct collect_ctx {
	void (*add)(void *ctx, uint64_t pg);
	void *ctx;
};

static void add_word(void *ctx, size_t word, unsigned long bits)
{
	struct collect_ctx *c = ctx;
	while (bits) {
		c->add(c->ctx, (uint64_t)word * BITS_PER_LONG + (uint64_t)__builtin_ctzl(bits));
		bits &= bits - 1;
	}
}

void gmem_dirty_collect(struct guest_mem *m, void (*add)(void *ctx, uint64_t pg), void *ctx)
{
	struct collect_ctx c = { add, ctx };
	take_marked_words(m, add_word, &c);
}

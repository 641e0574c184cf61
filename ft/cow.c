/* cow.c - copy-on-write epochs: userfaultfd write-protection of an epoch's pages and the copier thread (cow.h). */
#include "cow.h"

#include "../vmm/guest_mem.h"
#include "../vmm/util.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/userfaultfd.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

/* Faults are looked at between runs of at most this many pages: a blocked writer waits for one run's
 * copy at most (a few microseconds on real hardware). */
#define COW_RUN 16

const char *ft_ckpt_name(enum ft_ckpt m)
{
	return m == FT_CKPT_COW ? "cow" : "copy";
}

int ft_ckpt_parse(const char *name, enum ft_ckpt *m)
{
	if (!strcmp(name, "copy"))
		*m = FT_CKPT_COPY;
	else if (!strcmp(name, "cow"))
		*m = FT_CKPT_COW;
	else
		return -EINVAL;
	return 0;
}

static int wp_range(struct ft_cow *c, uint64_t pfn, uint64_t npg, bool protect)
{
	struct uffdio_writeprotect wp = {
		.range = { .start = (uintptr_t)(c->base + pfn * PAGE_SIZE), .len = npg * PAGE_SIZE },
		.mode = protect ? UFFDIO_WRITEPROTECT_MODE_WP : 0, /* lifting it wakes the writers blocked there */
	};
	return ioctl(c->uffd, UFFDIO_WRITEPROTECT, &wp) ? -errno : 0;
}

/* the copier's first failure; cow_wait reads it */
static void latch(struct ft_cow *c, int r)
{
	int none = 0;
	if (r)
		__atomic_compare_exchange_n(&c->err, &none, r, false, __ATOMIC_RELEASE, __ATOMIC_RELAXED);
}

/* Index k of the armed epoch into staging, then writable again. Copy first: until the protection is
 * lifted no one can change the page. Copier thread only; c->lock not held (the job is fixed while busy). */
static void copy_run(struct ft_cow *c, uint64_t k, uint64_t len)
{
	for (uint64_t i = 0; i < len; i++) {
		memcpy(c->dst + (k + i) * PAGE_SIZE, c->base + c->pfns[k + i] * PAGE_SIZE, PAGE_SIZE);
		c->done[k + i] = 1;
	}
	latch(c, wp_range(c, c->pfns[k], len, false));
}

/* Every write fault queued now: its page first if the armed epoch still owes it, then writable. A
 * fault on a page of no epoch (cannot happen: every protected page is in the armed one) is lifted too,
 * so no writer is ever left blocked. */
static void serve_faults(struct ft_cow *c, bool busy)
{
	struct uffd_msg msg[16];
	for (;;) {
		ssize_t got = read(c->uffd, msg, sizeof(msg));
		if (got <= 0) {
			if (got < 0 && errno != EAGAIN && errno != EINTR)
				latch(c, -errno);
			return;
		}
		for (size_t i = 0; i < (size_t)got / sizeof(msg[0]); i++) {
			if (msg[i].event != UFFD_EVENT_PAGEFAULT)
				continue;
			uint64_t addr = msg[i].arg.pagefault.address;
			uint64_t off = addr - (uintptr_t)c->base;
			if (addr < (uintptr_t)c->base || off / PAGE_SIZE >= c->npages)
				continue; /* not ours: cannot happen, the range is all we registered */
			uint64_t pfn = off / PAGE_SIZE, s = busy ? c->slot[pfn] : 0;
			if (s && !c->done[s - 1]) {
				c->faults++;
				copy_run(c, s - 1, 1);
			} else {
				latch(c, wp_range(c, pfn, 1, false));
			}
		}
	}
}

/* The armed epoch, in runs of consecutive pages, faults served between runs. */
static void copy_epoch(struct ft_cow *c)
{
	uint64_t k = 0;
	while (k < c->n) {
		serve_faults(c, true);
		if (c->done[k]) {
			k++;
			continue;
		}
		uint64_t len = 1;
		while (len < COW_RUN && k + len < c->n && !c->done[k + len] && c->pfns[k + len] == c->pfns[k] + len)
			len++;
		copy_run(c, k, len);
		k += len;
	}
	serve_faults(c, true);
	for (uint64_t i = 0; i < c->n; i++)
		c->slot[c->pfns[i]] = 0;
}

static void wake_copier(struct ft_cow *c);

static void *copier_thread(void *arg)
{
	struct ft_cow *c = arg;
	struct pollfd pfd[2] = { { .fd = c->uffd, .events = POLLIN }, { .fd = c->evfd, .events = POLLIN } };
	for (;;) {
		if (poll(pfd, 2, -1) < 0 && errno != EINTR) {
			latch(c, -errno);
			usleep(1000);
		}
		uint64_t v;
		if (read(c->evfd, &v, sizeof(v)) < 0 && errno != EAGAIN)
			latch(c, -errno);
		pthread_mutex_lock(&c->lock);
		bool busy = c->busy, quit = c->quit;
		pthread_mutex_unlock(&c->lock);
		if (!busy) {
			serve_faults(c, false);
			if (quit)
				return NULL;
			continue;
		}
		copy_epoch(c);
		pthread_mutex_lock(&c->lock);
		*c->out_faults = c->faults;
		*c->out_ns = now_ns() - c->t0;
		c->busy = false;
		pthread_cond_broadcast(&c->cond);
		pthread_mutex_unlock(&c->lock);
	}
}

int cow_init(struct ft_cow *c, uint8_t *base, uint64_t npages)
{
	memset(c, 0, sizeof(*c));
	c->uffd = c->evfd = -1;
	c->base = base;
	c->npages = npages;
	int r = 0;
	/* kernel-mode faults too (KVM's, io_uring's): no UFFD_USER_MODE_ONLY, so this needs CAP_SYS_PTRACE
	 * or vm.unprivileged_userfaultfd=1 */
	c->uffd = (int)syscall(SYS_userfaultfd, O_CLOEXEC | O_NONBLOCK);
	if (c->uffd < 0)
		return -errno;
	struct uffdio_api api = { .api = UFFD_API, .features = UFFD_FEATURE_PAGEFAULT_FLAG_WP };
	struct uffdio_register reg = {
		.range = { .start = (uintptr_t)base, .len = npages * PAGE_SIZE },
		.mode = UFFDIO_REGISTER_MODE_WP,
	};
	if (ioctl(c->uffd, UFFDIO_API, &api) || ioctl(c->uffd, UFFDIO_REGISTER, &reg))
		r = errno == EINVAL ? -EOPNOTSUPP : -errno;
	else if (!(reg.ioctls & (1ull << _UFFDIO_WRITEPROTECT)))
		r = -EOPNOTSUPP;
	c->slot = r ? NULL : mmap(NULL, npages * sizeof(uint32_t), PROT_READ | PROT_WRITE,
				  MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	if (!r && c->slot == MAP_FAILED) {
		c->slot = NULL;
		r = -ENOMEM;
	}
	if (!r && (c->evfd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK)) < 0)
		r = -errno;
	pthread_mutex_init(&c->lock, NULL);
	pthread_cond_init(&c->cond, NULL);
	if (!r && (r = -pthread_create(&c->thread, NULL, copier_thread, c)) == 0)
		c->started = true;
	if (r)
		cow_free(c);
	return r;
}

void cow_free(struct ft_cow *c)
{
	if (c->started) {
		cow_wait(c);
		pthread_mutex_lock(&c->lock);
		c->quit = true;
		pthread_mutex_unlock(&c->lock);
		wake_copier(c);
		pthread_join(c->thread, NULL);
		c->started = false;
	}
	if (c->slot)
		munmap(c->slot, c->npages * sizeof(uint32_t));
	c->slot = NULL;
	free(c->done);
	c->done = NULL;
	if (c->evfd >= 0)
		close(c->evfd);
	if (c->uffd >= 0)
		close(c->uffd); /* unregisters the range and wakes any writer still blocked */
	c->uffd = c->evfd = -1;
	pthread_mutex_destroy(&c->lock);
	pthread_cond_destroy(&c->cond);
}

/* Staging indexes and write-protection for pfns[0..n): 0, or -errno with nothing left protected. */
static int arm_protect(struct ft_cow *c, const uint64_t *pfns, uint64_t n)
{
	if (n > UINT32_MAX - 1)
		return -E2BIG;
	if (n > c->done_cap) {
		uint8_t *d = realloc(c->done, n);
		if (!d)
			return -ENOMEM;
		c->done = d;
		c->done_cap = n;
	}
	memset(c->done, 0, n);
	for (uint64_t k = 0; k < n; k++)
		c->slot[pfns[k]] = (uint32_t)k + 1;
	/* runs of consecutive pages with one call each: the harvest lists pages mostly in order */
	uint64_t k = 0;
	int r = 0;
	while (k < n && !r) {
		uint64_t len = 1;
		while (k + len < n && pfns[k + len] == pfns[k] + len)
			len++;
		r = wp_range(c, pfns[k], len, true);
		if (!r)
			k += len;
	}
	if (r) {
		for (uint64_t i = 0; i < n; i++) {
			c->slot[pfns[i]] = 0;
			if (i < k)
				wp_range(c, pfns[i], 1, false);
		}
	}
	return r;
}

/* The job for the copier (c->lock held); it starts once the lock is dropped and it is woken. */
static void arm_publish(struct ft_cow *c, const uint64_t *pfns, uint64_t n, uint8_t *dst, uint64_t *faults,
			uint64_t *ns)
{
	c->pfns = pfns;
	c->dst = dst;
	c->n = n;
	c->out_faults = faults;
	c->out_ns = ns;
	c->faults = 0;
	c->t0 = now_ns();
	c->busy = true;
}

static void wake_copier(struct ft_cow *c)
{
	uint64_t one = 1;
	ssize_t w = write(c->evfd, &one, sizeof(one)); /* cannot fail: the copier reads the counter at every wake */
	(void)w;
}

int cow_arm(struct ft_cow *c, const uint64_t *pfns, uint64_t n, uint8_t *dst, uint64_t *faults, uint64_t *ns)
{
	int r = cow_wait(c);
	if (r)
		return r;
	*faults = *ns = 0;
	if (!n)
		return 0;
	/* under the lock from the first protected page on: a fault on it (a write already under way in the
	 * kernel) must find the job published, or the idle copier would lift the protection without a copy */
	pthread_mutex_lock(&c->lock);
	r = arm_protect(c, pfns, n);
	if (!r)
		arm_publish(c, pfns, n, dst, faults, ns);
	pthread_mutex_unlock(&c->lock);
	if (r)
		return r; /* nothing protected: the caller copies in the pause */
	wake_copier(c);
	return 0;
}

int cow_wait(struct ft_cow *c)
{
	if (!c->started)
		return 0;
	pthread_mutex_lock(&c->lock);
	while (c->busy)
		pthread_cond_wait(&c->cond, &c->lock);
	pthread_mutex_unlock(&c->lock);
	return __atomic_load_n(&c->err, __ATOMIC_ACQUIRE);
}

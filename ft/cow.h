/* cow.h - copy-on-write epochs: an epoch's dirty pages write-protected (userfaultfd) and copied beside the running guest. */
#ifndef FTVMM_COW_H
#define FTVMM_COW_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

/*
 * In the pause, cow_arm write-protects the epoch's pages and returns: the guest resumes at once. A
 * copier thread then copies each page into the epoch's staging buffer and lifts its protection. A
 * write to a page not yet copied (a vCPU through KVM, a device thread, io_uring, KVM itself) blocks in
 * the kernel until the copier, which looks at the faults between every few pages, copies that page
 * first. The copier only reads guest memory and writes staging, so it never faults itself: nothing it
 * waits on can be blocked on a fault. One epoch is armed at a time (cow_wait before the next arm).
 */
/* --checkpoint: how an epoch's pages reach staging. copy: memcpy inside the pause (the pause grows with the
 * pages); cow: write-protected in the pause, copied beside the running guest (cow.c). */
enum ft_ckpt { FT_CKPT_COPY = 0, FT_CKPT_COW };
#define FT_CKPT_NAMES "copy or cow"
const char *ft_ckpt_name(enum ft_ckpt m);
/* 0, or -EINVAL for a name that is none of FT_CKPT_NAMES */
int ft_ckpt_parse(const char *name, enum ft_ckpt *m);

struct ft_cow {
	int uffd;          /* userfaultfd, RAM registered for write-protect faults */
	int evfd;          /* wakes the copier: an epoch armed, or quit */
	uint8_t *base;     /* the guest's RAM mapping, page k at base + k * 4096 */
	uint64_t npages;
	uint32_t *slot;    /* per RAM page: 1 + its index in the armed epoch, 0 when not in it (lazily mapped) */
	uint8_t *done;     /* per index of the armed epoch: copied and unprotected */
	uint64_t done_cap;
	pthread_t thread;
	bool started;
	pthread_mutex_t lock;
	pthread_cond_t cond;
	/* the armed epoch (busy) and what the copier reports of it */
	bool busy, quit;
	int err;              /* first failure of the copier (-errno), latched */
	const uint64_t *pfns; /* the epoch's pages (RAM page indexes) */
	uint8_t *dst;         /* n pages of staging, in pfns' order */
	uint64_t n;
	uint64_t *out_faults, *out_ns; /* where the epoch's fault count and background copy time go */
	uint64_t faults, t0;
};

/* A userfaultfd over [base, base + npages pages) (anonymous private memory) and the copier thread.
 * 0, or -errno (ENOSYS, EPERM, EINVAL: no write-protect faults here) with nothing left behind. */
int cow_init(struct ft_cow *c, uint8_t *base, uint64_t npages);
void cow_free(struct ft_cow *c);
/* In the pause: pages pfns[0..n) (each < npages, distinct) go to dst (n pages) as they are now. The
 * guest may run once this returns 0. -errno: nothing is protected, copy the pages yourself. pfns and
 * dst stay untouched by the caller until cow_wait; *faults and *ns get the epoch's write faults and
 * the copier's time when it is done. */
int cow_arm(struct ft_cow *c, const uint64_t *pfns, uint64_t n, uint8_t *dst, uint64_t *faults, uint64_t *ns);
/* Until no epoch is armed: every page of the last one is in its dst. 0, or the copier's -errno. */
int cow_wait(struct ft_cow *c);

#endif

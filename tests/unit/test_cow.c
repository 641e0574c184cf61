/* test_cow.c - copy-on-write epochs on plain anonymous memory: staging holds each page as it was at the arm while
 * writers (user mode, and the kernel's copy into a read() buffer) race the copier; no write is lost or blocked for
 * good. cow.c is included for its two arm steps, so a fault can be queued before the copier starts (deterministic). */
#include "../../ft/cow.c"
#include "test.h"

#include <stdio.h>
#include <valgrind/valgrind.h>

#define NPG 512

static uint8_t *ram;

static void fill(uint64_t pg, uint8_t gen)
{
	for (size_t i = 0; i < PAGE_SIZE; i += 8) {
		uint64_t v = pg << 16 | (uint64_t)gen << 8 | (i & 0xff);
		memcpy(ram + pg * PAGE_SIZE + i, &v, 8);
	}
}

static bool holds(const uint8_t *page, uint64_t pg, uint8_t gen)
{
	for (size_t i = 0; i < PAGE_SIZE; i += 8) {
		uint64_t v;
		memcpy(&v, page + i, 8);
		if (v != (pg << 16 | (uint64_t)gen << 8 | (i & 0xff)))
			return false;
	}
	return true;
}

/* pages of one epoch: a run, single pages, a run backwards, pages of the end first (the copier's last) */
static uint64_t make_epoch(uint64_t *pfns)
{
	uint64_t n = 0;
	for (uint64_t pg = 10; pg < 74; pg++)
		pfns[n++] = pg;
	for (uint64_t pg = 200; pg > 136; pg--)
		pfns[n++] = pg;
	for (uint64_t pg = 300; pg < 500; pg += 3)
		pfns[n++] = pg;
	return n;
}

struct writer {
	const uint64_t *pfns;
	uint64_t n;
	uint8_t gen;
};

static void *write_epoch(void *arg)
{
	struct writer *w = arg;
	for (uint64_t k = w->n; k-- > 0;) /* from the end: pages the copier reaches last */
		fill(w->pfns[k], w->gen);
	for (uint64_t pg = 0; pg < 8; pg++) /* and pages of no epoch */
		fill(pg, w->gen);
	return NULL;
}

static void check_epoch(uint8_t *dst, const uint64_t *pfns, uint64_t n, uint8_t gen)
{
	for (uint64_t k = 0; k < n; k++)
		CHECK(holds(dst + k * PAGE_SIZE, pfns[k], gen));
}

/* The copier alone: every page staged as it was, all writable afterwards (a write here would block for good). */
static void test_quiet_epoch(struct ft_cow *c, uint8_t *dst, const uint64_t *pfns, uint64_t n)
{
	uint64_t faults = 99, ns = 0;
	CHECK_EQ(cow_arm(c, pfns, n, dst, &faults, &ns), 0);
	CHECK_EQ(cow_wait(c), 0);
	check_epoch(dst, pfns, n, 0);
	CHECK_EQ(faults, 0);
	CHECK(ns > 0);
	for (uint64_t k = 0; k < n; k++)
		fill(pfns[k], 1);
	for (uint64_t k = 0; k < n; k++)
		CHECK(holds(ram + pfns[k] * PAGE_SIZE, pfns[k], 1));
	for (uint64_t pg = 0; pg < NPG; pg++)
		CHECK_EQ(c->slot[pg], 0);
}

/* A writer's fault queued before the copier starts: that page is copied first (a fault counted), then the
 * writer goes on; the staging still holds gen 1 everywhere, RAM gen 2. */
static void test_fault_first(struct ft_cow *c, uint8_t *dst, const uint64_t *pfns, uint64_t n)
{
	uint64_t faults = 0, ns = 0;
	CHECK_EQ(cow_wait(c), 0);
	pthread_mutex_lock(&c->lock); /* the copier may wake on the fault but cannot see the job yet */
	CHECK_EQ(arm_protect(c, pfns, n), 0);
	struct writer w = { pfns, n, 2 };
	pthread_t t;
	CHECK_EQ(pthread_create(&t, NULL, write_epoch, &w), 0);
	struct pollfd pfd = { .fd = c->uffd, .events = POLLIN };
	CHECK_EQ(poll(&pfd, 1, 10000), 1); /* the writer is blocked on the last page of the epoch */
	arm_publish(c, pfns, n, dst, &faults, &ns);
	pthread_mutex_unlock(&c->lock);
	wake_copier(c);
	CHECK_EQ(pthread_join(t, NULL), 0);
	CHECK_EQ(cow_wait(c), 0);
	check_epoch(dst, pfns, n, 1);
	CHECK(faults >= 1);
	for (uint64_t k = 0; k < n; k++)
		CHECK(holds(ram + pfns[k] * PAGE_SIZE, pfns[k], 2));
	printf("fault-first: %llu faults of %llu pages\n", (unsigned long long)faults, (unsigned long long)n);
}

/* The kernel writes too (read() into a protected page, as io_uring or KVM would): it waits in the kernel
 * for the copy, then lands; staging holds the page from before. */
static void test_kernel_write(struct ft_cow *c, uint8_t *dst, const uint64_t *pfns, uint64_t n, uint8_t gen)
{
	uint64_t faults = 0, ns = 0;
	int fd[2];
	CHECK_EQ(pipe(fd), 0);
	static uint8_t page[PAGE_SIZE];
	uint64_t pg = pfns[n - 1];
	memcpy(page, ram + pg * PAGE_SIZE, PAGE_SIZE);
	memset(page, 0xa5, 64);
	CHECK_EQ(write(fd[1], page, 64), 64);
	CHECK_EQ(cow_arm(c, pfns, n, dst, &faults, &ns), 0);
	CHECK_EQ(read(fd[0], ram + pg * PAGE_SIZE, 64), 64);
	CHECK_EQ(cow_wait(c), 0);
	check_epoch(dst, pfns, n, gen);
	CHECK(!memcmp(ram + pg * PAGE_SIZE, page, PAGE_SIZE));
	fill(pg, gen);
	close(fd[0]);
	close(fd[1]);
}

/* Many epochs with a writer racing each: staging is never torn, no write lost. */
static void test_races(struct ft_cow *c, uint8_t *dst, const uint64_t *pfns, uint64_t n)
{
	uint64_t total = 0;
	for (uint8_t gen = 3; gen < 43; gen++) {
		uint64_t faults = 0, ns = 0;
		struct writer w = { pfns, n, gen };
		pthread_t t;
		CHECK_EQ(cow_arm(c, pfns, n, dst, &faults, &ns), 0);
		CHECK_EQ(pthread_create(&t, NULL, write_epoch, &w), 0);
		CHECK_EQ(pthread_join(t, NULL), 0);
		CHECK_EQ(cow_wait(c), 0);
		check_epoch(dst, pfns, n, gen - 1);
		for (uint64_t k = 0; k < n; k++)
			CHECK(holds(ram + pfns[k] * PAGE_SIZE, pfns[k], gen));
		total += faults;
	}
	printf("races: %llu faults in 40 epochs of %llu pages\n", (unsigned long long)total, (unsigned long long)n);
}

int main(void)
{
	ram = mmap(NULL, NPG * PAGE_SIZE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	CHECK(ram != MAP_FAILED);
	for (uint64_t pg = 0; pg < NPG; pg++)
		fill(pg, 0);
	struct ft_cow c;
	int r = cow_init(&c, ram, NPG);
	if (r == -ENOSYS && RUNNING_ON_VALGRIND) {
		/* valgrind 3.19 does not know userfaultfd (syscall 323): the ASan run covers this test */
		printf("test_cow: not run under valgrind (no userfaultfd there)\n");
		munmap(ram, NPG * PAGE_SIZE);
		return 0;
	}
	if (r)
		fprintf(stderr, "cow_init: %s (userfaultfd write-protect needs Linux >= 5.7 and CAP_SYS_PTRACE)\n", strerror(-r));
	CHECK_EQ(r, 0);
	static uint64_t pfns[NPG];
	uint64_t n = make_epoch(pfns);
	uint8_t *dst = malloc(n * PAGE_SIZE);
	CHECK(dst);

	test_quiet_epoch(&c, dst, pfns, n);
	uint64_t f = 1, ns = 1;
	CHECK_EQ(cow_arm(&c, pfns, 0, dst, &f, &ns), 0); /* an empty epoch: nothing to do */
	CHECK_EQ(f + ns, 0);
	CHECK_EQ(cow_wait(&c), 0);
	if (RUNNING_ON_VALGRIND) {
		/* valgrind runs one thread at a time: a thread blocked on a fault outside a syscall holds that turn and
		 * the copier never runs. The kernel's writes (in a syscall) are fine. */
		test_kernel_write(&c, dst, pfns, n, 1);
	} else {
		test_fault_first(&c, dst, pfns, n);
		test_kernel_write(&c, dst, pfns, n, 2);
		test_races(&c, dst, pfns, n);
	}
	cow_free(&c);
	free(dst);
	munmap(ram, NPG * PAGE_SIZE);
	TEST_DONE("test_cow");
}

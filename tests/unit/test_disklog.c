/* test_disklog.c - the disk write log's bound: a guest cannot make one epoch's log grow past
 * DISKLOG_MAX_BYTES, the engine is asked for an early checkpoint first, and the epoch then fails. */
#include "../../ft/disklog.h"
#include "../../ft/proto.h"
#include "test.h"

#include <errno.h>
#include <stdint.h>

static int asked;
static void on_full(void *ctx)
{
	(void)ctx;
	asked++;
}

static void test_cap(void)
{
	struct disklog l;
	disklog_init(&l);
	l.full = on_full;
	const size_t chunk = 1u << 20;
	uint8_t *data = calloc(1, chunk);
	CHECK(data);
	struct iovec iov = { data, chunk };
	unsigned n = 0;
	while (disklog_bytes(&l) + sizeof(struct ft_disk_rec) + chunk <= DISKLOG_MAX_BYTES) {
		disklog_add(&l, 0, (uint64_t)n * chunk, &iov, 1, chunk, false);
		n++;
		CHECK_EQ(asked, disklog_bytes(&l) >= DISKLOG_SOFT_BYTES ? 1 : 0);
	}
	CHECK_EQ(l.error, 0);
	size_t before = disklog_bytes(&l);
	disklog_add(&l, 0, 0, &iov, 1, chunk, false); /* over the cap: not recorded */
	CHECK_EQ(disklog_bytes(&l), before);
	CHECK(l.cap <= DISKLOG_MAX_BYTES);
	disklog_add(&l, 0, 0, NULL, 0, 4096, true); /* nor anything after it this epoch */
	CHECK_EQ(disklog_bytes(&l), before);
	CHECK_EQ(asked, 1);
	uint8_t *buf;
	size_t len;
	uint64_t writes;
	CHECK_EQ(disklog_take(&l, &buf, &len, &writes), -EFBIG);
	CHECK_EQ(writes, n);
	free(buf);
	/* a fresh epoch starts clean, and asks again when it fills again */
	disklog_add(&l, 0, 0, &iov, 1, chunk, false);
	CHECK_EQ(disklog_take(&l, &buf, &len, &writes), 0);
	CHECK_EQ(len, sizeof(struct ft_disk_rec) + chunk);
	free(buf);
	free(data);
	disklog_destroy(&l);
}

/* Admission: a disk may take requests only while the log plus every disk's writes in flight stays under
 * the soft limit; a refusal asks for an early checkpoint once; a fresh epoch admits again. */
static void test_admit(void)
{
	struct disklog l;
	disklog_init(&l);
	l.full = on_full;
	asked = 0;
	const uint64_t mib = 1u << 20;
	CHECK(disklog_admit(&l, 0, 0));
	CHECK(disklog_admit(&l, 0, DISKLOG_SOFT_BYTES - mib));
	CHECK(!disklog_admit(&l, 1, mib)); /* disk 0's writes in flight count for disk 1 too */
	CHECK_EQ(asked, 1);
	CHECK(!disklog_admit(&l, 1, 2 * mib));
	CHECK_EQ(asked, 1); /* asked once per epoch */
	CHECK(disklog_admit(&l, 1, 0)); /* disk 1's writes completed: room for one more request */
	CHECK(disklog_admit(&l, 0, 0)); /* disk 0's writes completed (and were not logged: failed) */
	uint8_t *data = calloc(1, mib);
	CHECK(data);
	struct iovec iov = { data, mib };
	for (uint64_t i = 0; i < DISKLOG_SOFT_BYTES / mib; i++)
		disklog_add(&l, 0, i * mib, &iov, 1, mib, false);
	CHECK(!disklog_admit(&l, 0, 0)); /* the log itself is full */
	CHECK(!disklog_admit(&l, 7, UINT64_MAX)); /* a count from nowhere does not wrap the sum */
	uint8_t *buf;
	size_t len;
	uint64_t writes;
	CHECK_EQ(disklog_take(&l, &buf, &len, &writes), 0);
	free(buf);
	CHECK(!disklog_admit(&l, 1, 0)); /* disk 7's stale count still stands until it reports again */
	CHECK(disklog_admit(&l, 7, 0));
	CHECK(disklog_admit(&l, 99, UINT64_MAX)); /* a disk index past the table is not recorded */
	asked = 0;
	free(data);
	disklog_destroy(&l);
}

/* A length no epoch could hold is refused before its iovecs are looked at (or a sum wraps). */
static void test_huge(void)
{
	struct disklog l;
	disklog_init(&l);
	struct iovec bogus = { NULL, SIZE_MAX };
	disklog_add(&l, 0, 0, &bogus, 1, UINT64_MAX, false);
	disklog_add(&l, 0, 0, &bogus, 1, UINT64_MAX - sizeof(struct ft_disk_rec) + 1, false);
	CHECK_EQ(disklog_bytes(&l), 0);
	uint8_t *buf;
	size_t len;
	uint64_t writes;
	CHECK_EQ(disklog_take(&l, &buf, &len, &writes), -EFBIG);
	CHECK_EQ(len, 0);
	free(buf);
	disklog_destroy(&l);
}

int main(void)
{
	test_admit();
	test_cap();
	test_huge();
	TEST_DONE("test_disklog");
}

/* test_bus.c - the port/MMIO region registry: register, overlap rules, dispatch, unregister. */
#include "../../vmm/bus.h"
#include "test.h"

#include <errno.h>
#include <stdint.h>

struct dev {
	unsigned id;
	unsigned calls;
	uint64_t off;
	uint32_t len;
	bool write;
	uint8_t wdata[8];
};

static void handler(void *opaque, uint64_t offset, uint8_t *data, uint32_t len, bool is_write)
{
	struct dev *d = opaque;
	d->calls++;
	d->off = offset;
	d->len = len;
	d->write = is_write;
	if (is_write)
		memcpy(d->wdata, data, len);
	else
		for (uint32_t i = 0; i < len; i++)
			data[i] = (uint8_t)(d->id + offset + i);
}

static void other_handler(void *opaque, uint64_t offset, uint8_t *data, uint32_t len, bool is_write)
{
	(void)offset;
	struct dev *d = opaque;
	d->calls += 100;
	if (!is_write)
		memset(data, 0x42, len);
}

/* Read `len` bytes at addr and check it went to d at offset `off`. */
static void expect_read(struct bus *b, uint64_t addr, uint32_t len, struct dev *d, uint64_t off)
{
	uint8_t data[8];
	memset(data, 0, sizeof(data));
	unsigned calls = d->calls;
	CHECK_EQ(bus_dispatch(b, addr, data, len, false), 0);
	CHECK_EQ(d->calls, calls + 1);
	CHECK_EQ(d->off, off);
	CHECK_EQ(d->len, len);
	CHECK(!d->write);
	for (uint32_t i = 0; i < len; i++)
		CHECK_EQ(data[i], (uint8_t)(d->id + off + i));
}

static void expect_unclaimed(struct bus *b, uint64_t addr, uint32_t len)
{
	uint8_t data[8];
	memset(data, 0x11, sizeof(data));
	CHECK_EQ(bus_dispatch(b, addr, data, len, false), -ENOENT);
	for (uint32_t i = 0; i < 8; i++)
		CHECK_EQ(data[i], i < len ? 0xff : 0x11); /* all ones, and only len bytes */
	memset(data, 0x11, sizeof(data));
	CHECK_EQ(bus_dispatch(b, addr, data, len, true), -ENOENT);
	for (uint32_t i = 0; i < 8; i++)
		CHECK_EQ(data[i], 0x11); /* a dropped write leaves the buffer alone */
}

static void test_basic(void)
{
	struct bus b;
	bus_init(&b, "pio");
	CHECK(!strcmp(b.name, "pio"));
	CHECK_EQ(b.count, 0);
	expect_unclaimed(&b, 0, 1);
	expect_unclaimed(&b, 0x3f8, 8);

	struct dev com = { .id = 0x30 };
	CHECK_EQ(bus_register(&b, 0x3f8, 8, handler, &com, "com1"), 0);
	CHECK_EQ(b.count, 1);
	expect_read(&b, 0x3f8, 1, &com, 0);
	expect_read(&b, 0x3fa, 1, &com, 2);
	expect_read(&b, 0x3ff, 1, &com, 7);
	expect_read(&b, 0x3f8, 4, &com, 0);
	expect_unclaimed(&b, 0x3f7, 1);
	expect_unclaimed(&b, 0x400, 1);

	uint8_t w[2] = { 0x41, 0x42 };
	CHECK_EQ(bus_dispatch(&b, 0x3f9, w, 2, true), 0);
	CHECK(com.write);
	CHECK_EQ(com.off, 1);
	CHECK_EQ(com.len, 2);
	CHECK_EQ(com.wdata[0], 0x41);
	CHECK_EQ(com.wdata[1], 0x42);

	/* overlaps are refused; adjacency is fine */
	struct dev x = { .id = 0x90 };
	CHECK_EQ(bus_register(&b, 0x3f8, 8, handler, &x, "same"), -EEXIST);
	CHECK_EQ(bus_register(&b, 0x3f8, 1, handler, &x, "same base"), -EEXIST);
	CHECK_EQ(bus_register(&b, 0x3f0, 9, handler, &x, "tail"), -EEXIST);
	CHECK_EQ(bus_register(&b, 0x3ff, 1, handler, &x, "last"), -EEXIST);
	CHECK_EQ(bus_register(&b, 0x3ff, 16, handler, &x, "head"), -EEXIST);
	CHECK_EQ(bus_register(&b, 0x3fa, 2, handler, &x, "inside"), -EEXIST);
	CHECK_EQ(bus_register(&b, 0x300, 0x200, handler, &x, "around"), -EEXIST);
	CHECK_EQ(b.count, 1);
	CHECK_EQ(x.calls, 0);
	struct dev below = { .id = 0x10 }, above = { .id = 0x20 };
	CHECK_EQ(bus_register(&b, 0x3f0, 8, handler, &below, "below"), 0);
	CHECK_EQ(bus_register(&b, 0x400, 8, handler, &above, "above"), 0);
	CHECK_EQ(b.count, 3);
	expect_read(&b, 0x3f7, 1, &below, 7);
	expect_read(&b, 0x3f8, 1, &com, 0);
	expect_read(&b, 0x3ff, 1, &com, 7);
	expect_read(&b, 0x400, 1, &above, 0);
	/* now the gap between two regions is closed on both sides */
	CHECK_EQ(bus_register(&b, 0x3f7, 2, handler, &x, "bridge"), -EEXIST);

	/* bad arguments */
	CHECK_EQ(bus_register(&b, 0x1000, 0, handler, &x, "empty"), -EINVAL);
	CHECK_EQ(bus_register(&b, 0x1000, 4, NULL, &x, "nofn"), -EINVAL);
	CHECK_EQ(bus_register(&b, UINT64_MAX, 2, handler, &x, "wrap"), -EINVAL);
	CHECK_EQ(bus_register(&b, UINT64_MAX - 10, 100, handler, &x, "wrap2"), -EINVAL);
	CHECK_EQ(bus_register(&b, 8, UINT64_MAX, handler, &x, "huge"), -EINVAL);
	CHECK_EQ(b.count, 3);

	/* unregister: only by exact base */
	CHECK_EQ(bus_unregister(&b, 0x3f9), -ENOENT);
	CHECK_EQ(bus_unregister(&b, 0x500), -ENOENT);
	CHECK_EQ(b.count, 3);
	CHECK_EQ(bus_unregister(&b, 0x3f8), 0);
	CHECK_EQ(b.count, 2);
	CHECK_EQ(bus_unregister(&b, 0x3f8), -ENOENT);
	expect_unclaimed(&b, 0x3f8, 1);
	expect_unclaimed(&b, 0x3ff, 1);
	expect_read(&b, 0x3f0, 1, &below, 0);
	expect_read(&b, 0x407, 1, &above, 7);
	/* the freed range can be claimed again, by a different handler */
	CHECK_EQ(bus_register(&b, 0x3f8, 8, other_handler, &x, "again"), 0);
	uint8_t d = 0;
	CHECK_EQ(bus_dispatch(&b, 0x3fc, &d, 1, false), 0);
	CHECK_EQ(d, 0x42);
	CHECK_EQ(x.calls, 100);
	bus_destroy(&b);

	/* regions at the ends of the address space */
	bus_init(&b, "mmio");
	struct dev lo = { .id = 1 }, hi = { .id = 2 };
	CHECK_EQ(bus_register(&b, 0, 1, handler, &lo, "zero"), 0);
	CHECK_EQ(bus_register(&b, UINT64_MAX - 0x1000, 0x1000, handler, &hi, "top"), 0);
	expect_read(&b, 0, 1, &lo, 0);
	expect_read(&b, UINT64_MAX - 1, 1, &hi, 0xfff);
	expect_unclaimed(&b, 1, 1);
	expect_unclaimed(&b, UINT64_MAX, 1);
	bus_destroy(&b);
}

/* Many regions, registered out of order, with gaps: the binary search finds each one. */
#define N 1000
#define BASE(i) (0x10000ull + (uint64_t)(i) * 0x100)
#define LEN(i) (0x10ull + (i) % 7 * 0x10)

static void check_all(struct bus *b, struct dev *devs, const bool *present)
{
	/* sorted, disjoint */
	for (unsigned i = 1; i < b->count; i++)
		CHECK(b->regions[i - 1].base + b->regions[i - 1].len <= b->regions[i].base);
	for (unsigned i = 0; i < N; i++) {
		if (present[i]) {
			expect_read(b, BASE(i), 1, &devs[i], 0);
			expect_read(b, BASE(i) + LEN(i) - 1, 1, &devs[i], LEN(i) - 1);
			expect_read(b, BASE(i) + LEN(i) / 2, 4, &devs[i], LEN(i) / 2);
		} else {
			expect_unclaimed(b, BASE(i), 1);
			expect_unclaimed(b, BASE(i) + LEN(i) - 1, 1);
		}
		expect_unclaimed(b, BASE(i) + LEN(i), 2); /* the gap after each */
		expect_unclaimed(b, BASE(i) - 1, 1);      /* and before */
	}
	expect_unclaimed(b, 0, 1);
	expect_unclaimed(b, BASE(N), 1);
}

static void test_many(void)
{
	struct bus b;
	bus_init(&b, "mmio");
	static struct dev devs[N];
	static bool present[N];
	static unsigned order[N];
	for (unsigned i = 0; i < N; i++) {
		devs[i] = (struct dev){ .id = i * 3 };
		order[i] = i;
	}
	/* a fixed shuffle (LCG) so the run is repeatable */
	uint32_t seed = 12345;
	for (unsigned i = N - 1; i > 0; i--) {
		seed = seed * 1103515245u + 12345u;
		unsigned j = (seed >> 8) % (i + 1);
		unsigned t = order[i];
		order[i] = order[j];
		order[j] = t;
	}
	for (unsigned k = 0; k < N; k++) {
		unsigned i = order[k];
		CHECK_EQ(bus_register(&b, BASE(i), LEN(i), handler, &devs[i], "dev"), 0);
		present[i] = true;
		/* an overlapping duplicate is refused whatever the neighbours */
		CHECK_EQ(bus_register(&b, BASE(i) + 1, 1, handler, &devs[i], "dup"), -EEXIST);
	}
	CHECK_EQ(b.count, N);
	check_all(&b, devs, present);

	/* remove every third, in the shuffled order, then check again */
	for (unsigned k = 0; k < N; k++) {
		unsigned i = order[k];
		if (i % 3 == 0) {
			CHECK_EQ(bus_unregister(&b, BASE(i)), 0);
			present[i] = false;
		}
	}
	CHECK_EQ(b.count, N - (N + 2) / 3);
	check_all(&b, devs, present);
	/* and put them back, filling the holes */
	for (unsigned i = 0; i < N; i += 3) {
		CHECK_EQ(bus_register(&b, BASE(i), LEN(i), handler, &devs[i], "dev"), 0);
		present[i] = true;
	}
	check_all(&b, devs, present);
	/* remove everything */
	for (unsigned i = 0; i < N; i++)
		CHECK_EQ(bus_unregister(&b, BASE(i)), 0);
	CHECK_EQ(b.count, 0);
	expect_unclaimed(&b, BASE(5), 1);
	bus_destroy(&b);
}

int main(void)
{
	test_basic();
	test_many();
	TEST_DONE("test_bus");
}

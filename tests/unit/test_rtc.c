/* test_rtc.c - CMOS clock against host time, BCD/binary/12h encodings, setting the time, NVRAM, checkpoint. */
#include <errno.h>
#include <libfdt.h>
#include <stdint.h>
#include <time.h>

#include "../../devices/rtc.h"
#include "test.h"

static int64_t fake_now;

static int64_t fake_clock(void *ctx)
{
	(void)ctx;
	return fake_now;
}

static uint8_t cmos_rd(struct rtc *r, uint8_t idx)
{
	uint8_t v = idx, d = 0x5a;
	rtc_io(r, 0x70, &v, 1, true);
	rtc_io(r, 0x71, &d, 1, false);
	return d;
}

static void cmos_wr(struct rtc *r, uint8_t idx, uint8_t val)
{
	rtc_io(r, 0x70, &idx, 1, true);
	rtc_io(r, 0x71, &val, 1, true);
}

static unsigned bcd(uint8_t v)
{
	return (v >> 4) * 10u + (v & 15);
}

/* What Linux's mc146818_get_time does: seconds, the rest, seconds again until stable. */
static time_t guest_time(struct rtc *r)
{
	for (;;) {
		CHECK_EQ(cmos_rd(r, 0x0a) & 0x80, 0); /* UIP never set */
		uint8_t s = cmos_rd(r, 0);
		struct tm tm = { 0 };
		tm.tm_min = (int)bcd(cmos_rd(r, 2));
		tm.tm_hour = (int)bcd(cmos_rd(r, 4));
		tm.tm_mday = (int)bcd(cmos_rd(r, 7));
		tm.tm_mon = (int)bcd(cmos_rd(r, 8)) - 1;
		tm.tm_year = (int)(bcd(cmos_rd(r, 0x32)) * 100 + bcd(cmos_rd(r, 9))) - 1900;
		if (s != cmos_rd(r, 0))
			continue;
		tm.tm_sec = (int)bcd(s);
		return timegm(&tm);
	}
}

static void test_host_time(void)
{
	struct rtc *r;
	CHECK_EQ(rtc_new(NULL, NULL, &r), 0);
	CHECK_EQ(cmos_rd(r, 0x0b), 0x02); /* BCD, 24h */
	CHECK_EQ(cmos_rd(r, 0x0d), 0x80); /* valid RAM and time, bit 6 clear */
	CHECK_EQ(cmos_rd(r, 0x0c), 0x00);
	CHECK_EQ(cmos_rd(r, 0x0a), 0x26);
	time_t before = time(NULL);
	time_t t = guest_time(r);
	time_t after = time(NULL);
	CHECK(t >= before && t <= after);
	struct tm tm;
	gmtime_r(&t, &tm);
	CHECK_EQ(bcd(cmos_rd(r, 6)), tm.tm_wday + 1);
	rtc_free(r);
}

static void test_encodings(void)
{
	struct rtc *r;
	CHECK_EQ(rtc_new(fake_clock, NULL, &r), 0);
	fake_now = 1709251198; /* 2024-02-29 23:59:58 UTC, a Thursday */
	CHECK_EQ(cmos_rd(r, 0), 0x58);
	CHECK_EQ(cmos_rd(r, 2), 0x59);
	CHECK_EQ(cmos_rd(r, 4), 0x23);
	CHECK_EQ(cmos_rd(r, 6), 0x05);
	CHECK_EQ(cmos_rd(r, 7), 0x29);
	CHECK_EQ(cmos_rd(r, 8), 0x02);
	CHECK_EQ(cmos_rd(r, 9), 0x24);
	CHECK_EQ(cmos_rd(r, 0x32), 0x20);
	cmos_wr(r, 0x0b, 0x06); /* binary */
	CHECK_EQ(cmos_rd(r, 0), 58);
	CHECK_EQ(cmos_rd(r, 4), 23);
	CHECK_EQ(cmos_rd(r, 9), 24);
	CHECK_EQ(cmos_rd(r, 0x32), 20);
	cmos_wr(r, 0x0b, 0x04); /* binary, 12h: 11 PM */
	CHECK_EQ(cmos_rd(r, 4), 0x80 | 11);
	cmos_wr(r, 0x0b, 0x00); /* BCD, 12h */
	CHECK_EQ(cmos_rd(r, 4), 0x91);
	fake_now -= 23 * 3600; /* 00:59:58: 12 AM */
	CHECK_EQ(cmos_rd(r, 4), 0x12);
	fake_now += 11 * 3600; /* 11:59:58 AM */
	CHECK_EQ(cmos_rd(r, 4), 0x11);
	fake_now += 3600; /* 12:59:58 PM */
	CHECK_EQ(cmos_rd(r, 4), 0x92);
	cmos_wr(r, 0x0b, 0x02);
	/* the clock runs: leap day rolls into March */
	fake_now = 1709251198 + 3;
	CHECK_EQ(cmos_rd(r, 0), 0x01);
	CHECK_EQ(cmos_rd(r, 2), 0x00);
	CHECK_EQ(cmos_rd(r, 4), 0x00);
	CHECK_EQ(cmos_rd(r, 7), 0x01);
	CHECK_EQ(cmos_rd(r, 8), 0x03);
	CHECK_EQ(cmos_rd(r, 6), 0x06);
	rtc_free(r);
}

static void test_set_time(void)
{
	struct rtc *r;
	CHECK_EQ(rtc_new(fake_clock, NULL, &r), 0);
	fake_now = 1700000000;
	/* hwclock --systohc: SET, write the fields, clear SET */
	cmos_wr(r, 0x0b, 0x82 | 0x10);
	CHECK_EQ(cmos_rd(r, 0x0b), 0x82); /* SET clears UIE */
	uint8_t frozen = cmos_rd(r, 0);
	fake_now += 5;
	CHECK_EQ(cmos_rd(r, 0), frozen); /* frozen while SET */
	cmos_wr(r, 0, 0x56);
	cmos_wr(r, 2, 0x34);
	cmos_wr(r, 4, 0x12);
	cmos_wr(r, 7, 0x15);
	cmos_wr(r, 8, 0x06);
	cmos_wr(r, 9, 0x30);
	cmos_wr(r, 0x0b, 0x02);
	CHECK_EQ(guest_time(r), 1907757296); /* 2030-06-15 12:34:56 */
	fake_now += 10;
	CHECK_EQ(guest_time(r), 1907757306);
	/* one field written while running */
	cmos_wr(r, 2, 0x00);
	CHECK_EQ(guest_time(r), 1907755206); /* 12:00:06 */
	/* binary, 12-hour mode: 3 PM */
	cmos_wr(r, 0x0b, 0x84);
	cmos_wr(r, 0, 9);
	cmos_wr(r, 2, 7);
	cmos_wr(r, 4, 0x80 | 3);
	cmos_wr(r, 7, 1);
	cmos_wr(r, 8, 1);
	cmos_wr(r, 9, 25);
	cmos_wr(r, 0x32, 20);
	cmos_wr(r, 0x0b, 0x04);
	cmos_wr(r, 0x0b, 0x02);
	CHECK_EQ(guest_time(r), 1735744029); /* 2025-01-01 15:07:09 */
	/* garbage fields do not crash and give some time */
	cmos_wr(r, 0x0b, 0x86);
	for (uint8_t i = 0; i < 10; i++)
		cmos_wr(r, i, 0xff);
	cmos_wr(r, 0x32, 0xff);
	cmos_wr(r, 0x0b, 0x06);
	cmos_rd(r, 0);
	cmos_rd(r, 9);
	rtc_free(r);
}

static void test_nvram_ports(void)
{
	struct rtc *r;
	CHECK_EQ(rtc_new(fake_clock, NULL, &r), 0);
	cmos_wr(r, 0x40, 0xab);
	CHECK_EQ(cmos_rd(r, 0x40), 0xab);
	cmos_wr(r, 0x80 | 0x41, 0xcd); /* NMI mask bit ignored */
	CHECK_EQ(cmos_rd(r, 0x41), 0xcd);
	cmos_wr(r, 0x0d, 0x00);
	CHECK_EQ(cmos_rd(r, 0x0d), 0x80);
	cmos_wr(r, 0x0c, 0xff);
	CHECK_EQ(cmos_rd(r, 0x0c), 0x00);
	cmos_wr(r, 0x0a, 0xa6);
	CHECK_EQ(cmos_rd(r, 0x0a), 0x26); /* UIP is read-only */
	uint8_t v = 0;
	rtc_io(r, 0x70, &v, 1, false);
	CHECK_EQ(v, 0xff);
	uint8_t w[2] = { 0x41, 0x00 };
	rtc_io(r, 0x70, w, 1, true);
	rtc_io(r, 0x70, w, 2, false); /* index read-only port, then data */
	CHECK_EQ(w[0], 0xff);
	CHECK_EQ(w[1], 0xcd);
	rtc_io(r, 0x72, w, 2, false);
	CHECK_EQ(w[0], 0xff);
	CHECK_EQ(w[1], 0xff);
	rtc_free(r);
}

#define FDT_SIZE 4096

static void *save(struct rtc *r)
{
	void *fdt = calloc(1, FDT_SIZE);
	CHECK_EQ(fdt_create(fdt, FDT_SIZE), 0);
	fdt_finish_reservemap(fdt);
	fdt_begin_node(fdt, "");
	CHECK_EQ(rtc_save(r, fdt), 0);
	fdt_end_node(fdt);
	CHECK_EQ(fdt_finish(fdt), 0);
	return fdt;
}

static void test_checkpoint(void)
{
	struct rtc *a, *b;
	CHECK_EQ(rtc_new(fake_clock, NULL, &a), 0);
	CHECK_EQ(rtc_new(fake_clock, NULL, &b), 0);
	fake_now = 1600000000;
	cmos_wr(a, 0x0b, 0x82);
	cmos_wr(a, 9, 0x99); /* 1999: a guest running in the past */
	cmos_wr(a, 0x32, 0x19);
	cmos_wr(a, 0x0b, 0x02);
	cmos_wr(a, 0x0b, 0x06);
	cmos_wr(a, 0x50, 0x77);
	uint8_t idx = 0x09;
	rtc_io(a, 0x70, &idx, 1, true);

	void *fdt = save(a);
	CHECK_EQ(rtc_restore(b, fdt, 0), 0);
	uint8_t d = 0;
	rtc_io(b, 0x71, &d, 1, false); /* index came along */
	CHECK_EQ(d, 99);
	fake_now += 1000;
	for (uint8_t i = 0; i < 128; i++)
		CHECK_EQ(cmos_rd(a, i), cmos_rd(b, i));

	/* refused: short CMOS, index out of range, absurd offset */
	static const uint8_t shortcmos[10];
	void *f = calloc(1, FDT_SIZE);
	CHECK_EQ(fdt_create(f, FDT_SIZE), 0);
	fdt_finish_reservemap(f);
	fdt_begin_node(f, "");
	fdt_property(f, "cmos", shortcmos, sizeof(shortcmos));
	fdt_property_u32(f, "index", 0);
	fdt_property_u64(f, "offset", 0);
	fdt_end_node(f);
	fdt_finish(f);
	CHECK_EQ(rtc_restore(b, f, 0), -EINVAL);
	free(f);
	f = save(a);
	CHECK_EQ(fdt_setprop_inplace_u32(f, 0, "index", 128), 0);
	CHECK_EQ(rtc_restore(b, f, 0), -EINVAL);
	free(f);
	f = save(a);
	CHECK_EQ(fdt_setprop_inplace_u64(f, 0, "offset", (uint64_t)INT64_MAX), 0);
	CHECK_EQ(rtc_restore(b, f, 0), -EINVAL);
	free(f);
	for (uint8_t i = 0; i < 128; i++)
		CHECK_EQ(cmos_rd(a, i), cmos_rd(b, i));
	free(fdt);
	rtc_free(a);
	rtc_free(b);
}

static void test_fuzz(void)
{
	struct rtc *r;
	CHECK_EQ(rtc_new(fake_clock, NULL, &r), 0);
	uint32_t x = 99;
	for (int i = 0; i < 200000; i++) {
		x = x * 1103515245 + 12345;
		uint8_t buf[4] = { (uint8_t)(x >> 16), (uint8_t)(x >> 8), 0, 0 };
		rtc_io(r, (uint16_t)(0x6f + ((x >> 24) & 3)), buf, 1 + ((x >> 28) & 3), (x >> 4) & 1);
		fake_now += (x >> 5) & 1;
	}
	rtc_free(r);
}

int main(void)
{
	test_host_time();
	test_encodings();
	test_set_time();
	test_nvram_ports();
	test_checkpoint();
	test_fuzz();
	TEST_DONE("test_rtc");
}

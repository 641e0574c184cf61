/* rtc.c - MC146818 RTC/CMOS: time registers derived from host UTC plus a guest offset, status A-D, NVRAM. */
#include "rtc.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "../vmm/fdt_prop.h"
#include "../vmm/util.h"
#include "../vmm/vm.h"

#define REG_SEC 0x00
#define REG_MIN 0x02
#define REG_HOUR 0x04
#define REG_WDAY 0x06
#define REG_MDAY 0x07
#define REG_MON 0x08
#define REG_YEAR 0x09
#define REG_A 0x0a
#define REG_B 0x0b
#define REG_C 0x0c
#define REG_D 0x0d
#define REG_CENTURY 0x32 /* the IBM PC convention, which ACPI's FADT usually points at */

#define A_UIP 0x80
#define B_SET 0x80
#define B_UIE 0x10
#define B_DM_BINARY 0x04
#define B_24H 0x02
#define D_VRT 0x80
#define HOUR_PM 0x80
#define RTC_MAX_OFFSET (1ll << 40) /* seconds, about 35000 years */

static const uint8_t time_regs[] = { REG_SEC, REG_MIN, REG_HOUR, REG_WDAY, REG_MDAY, REG_MON, REG_YEAR, REG_CENTURY };

struct rtc {
	pthread_mutex_t lock;
	uint8_t cmos[RTC_CMOS_SIZE]; /* time registers here are only meaningful while B.SET freezes them */
	uint8_t index;
	int64_t offset; /* guest RTC time minus host UTC, in seconds */
	int64_t (*clock)(void *ctx);
	void *ctx;
	struct vm *vm;
	struct vm_device dev;
};

static bool is_time_reg(uint8_t r)
{
	return memchr(time_regs, r, sizeof(time_regs)) != NULL;
}

static int64_t rtc_host_now(struct rtc *rtc)
{
	return rtc->clock ? rtc->clock(rtc->ctx) : (int64_t)time(NULL);
}

static uint8_t to_bcd(unsigned v)
{
	return (uint8_t)(((v / 10) % 10) << 4 | (v % 10));
}

static unsigned from_bcd(uint8_t v)
{
	return (v >> 4) * 10u + (v & 0x0f);
}

/* Encode one field in the mode register B selects. */
static uint8_t rtc_enc(const struct rtc *rtc, unsigned v)
{
	return (rtc->cmos[REG_B] & B_DM_BINARY) ? (uint8_t)v : to_bcd(v);
}

static unsigned rtc_dec(const struct rtc *rtc, uint8_t v)
{
	return (rtc->cmos[REG_B] & B_DM_BINARY) ? v : from_bcd(v);
}

/* The current guest time, as register r shows it. */
static uint8_t rtc_time_field(struct rtc *rtc, uint8_t r)
{
	time_t t = (time_t)(rtc_host_now(rtc) + rtc->offset);
	struct tm tm;
	if (!gmtime_r(&t, &tm))
		memset(&tm, 0, sizeof(tm)); /* an offset the guest wrote past year 2^31: show zeros, never crash */
	unsigned year = (unsigned)tm.tm_year + 1900;
	switch (r) {
	case REG_SEC:
		return rtc_enc(rtc, (unsigned)tm.tm_sec);
	case REG_MIN:
		return rtc_enc(rtc, (unsigned)tm.tm_min);
	case REG_HOUR:
		if (rtc->cmos[REG_B] & B_24H)
			return rtc_enc(rtc, (unsigned)tm.tm_hour);
		return rtc_enc(rtc, tm.tm_hour % 12 ? (unsigned)tm.tm_hour % 12 : 12) | (tm.tm_hour >= 12 ? HOUR_PM : 0);
	case REG_WDAY:
		return rtc_enc(rtc, (unsigned)tm.tm_wday + 1);
	case REG_MDAY:
		return rtc_enc(rtc, (unsigned)tm.tm_mday);
	case REG_MON:
		return rtc_enc(rtc, (unsigned)tm.tm_mon + 1);
	case REG_YEAR:
		return rtc_enc(rtc, year % 100);
	default: /* REG_CENTURY */
		return rtc_enc(rtc, (year / 100) % 100);
	}
}

/* Latch the running time into the CMOS bytes (B.SET going on). */
static void rtc_freeze(struct rtc *rtc)
{
	for (size_t i = 0; i < sizeof(time_regs); i++)
		rtc->cmos[time_regs[i]] = rtc_time_field(rtc, time_regs[i]);
}

/* Start running again from the CMOS bytes the guest left (B.SET going off). */
static void rtc_thaw(struct rtc *rtc)
{
	struct tm tm = { 0 };
	uint8_t h = rtc->cmos[REG_HOUR];
	tm.tm_sec = (int)rtc_dec(rtc, rtc->cmos[REG_SEC]);
	tm.tm_min = (int)rtc_dec(rtc, rtc->cmos[REG_MIN]);
	if (rtc->cmos[REG_B] & B_24H)
		tm.tm_hour = (int)rtc_dec(rtc, h);
	else
		tm.tm_hour = (int)(rtc_dec(rtc, h & ~HOUR_PM) % 12) + ((h & HOUR_PM) ? 12 : 0);
	tm.tm_mday = (int)rtc_dec(rtc, rtc->cmos[REG_MDAY]);
	tm.tm_mon = (int)rtc_dec(rtc, rtc->cmos[REG_MON]) - 1;
	tm.tm_year = (int)(rtc_dec(rtc, rtc->cmos[REG_CENTURY]) * 100 + rtc_dec(rtc, rtc->cmos[REG_YEAR])) - 1900;
	/* every field is below 256, so timegm normalises garbage instead of overflowing */
	rtc->offset = (int64_t)timegm(&tm) - rtc_host_now(rtc);
}

static uint8_t rtc_read(struct rtc *rtc)
{
	uint8_t r = rtc->index;
	switch (r) {
	case REG_A:
		return rtc->cmos[REG_A] & ~A_UIP; /* never mid-update: every read is consistent */
	case REG_C:
		return 0; /* no interrupt sources are emulated, so no flags */
	case REG_D:
		return D_VRT; /* battery fine; bit 6 must read 0 or rtc_cmos calls the chip inaccessible */
	default:
		if (is_time_reg(r) && !(rtc->cmos[REG_B] & B_SET))
			return rtc_time_field(rtc, r);
		return rtc->cmos[r];
	}
}

static void rtc_write(struct rtc *rtc, uint8_t v)
{
	uint8_t r = rtc->index;
	switch (r) {
	case REG_A:
		rtc->cmos[REG_A] = v & ~A_UIP;
		break;
	case REG_B: {
		uint8_t old = rtc->cmos[REG_B];
		if ((v & B_SET) && !(old & B_SET)) {
			rtc->cmos[REG_B] = v; /* latch in the encoding the guest will now use */
			rtc_freeze(rtc);
			v &= ~B_UIE; /* SET clears UIE on the real chip */
		} else if (!(v & B_SET) && (old & B_SET)) {
			rtc->cmos[REG_B] = v;
			rtc_thaw(rtc);
		}
		rtc->cmos[REG_B] = v;
		break;
	}
	case REG_C:
	case REG_D:
		break; /* read-only */
	default:
		if (is_time_reg(r) && !(rtc->cmos[REG_B] & B_SET)) {
			/* a running clock takes a single field at once */
			rtc_freeze(rtc);
			rtc->cmos[r] = v;
			rtc_thaw(rtc);
		} else {
			rtc->cmos[r] = v;
		}
		break;
	}
}

void rtc_io(struct rtc *rtc, uint16_t port, uint8_t *data, uint32_t len, bool is_write)
{
	pthread_mutex_lock(&rtc->lock);
	for (uint32_t i = 0; i < len; i++) {
		uint32_t p = (uint32_t)port + i;
		if (p == RTC_INDEX_PORT) {
			if (is_write)
				rtc->index = data[i] & 0x7f; /* bit 7 masks NMIs on real boards: ignored */
			else
				data[i] = 0xff; /* write-only */
		} else if (p == RTC_DATA_PORT) {
			if (is_write)
				rtc_write(rtc, data[i]);
			else
				data[i] = rtc_read(rtc);
		} else if (!is_write) {
			data[i] = 0xff;
		}
	}
	pthread_mutex_unlock(&rtc->lock);
}

int rtc_new(int64_t (*clock)(void *ctx), void *ctx, struct rtc **out)
{
	struct rtc *rtc = calloc(1, sizeof(*rtc));
	if (!rtc)
		return -ENOMEM;
	pthread_mutex_init(&rtc->lock, NULL);
	rtc->clock = clock;
	rtc->ctx = ctx;
	rtc->cmos[REG_A] = 0x26; /* 32.768 kHz time base, 1024 Hz rate: the power-on default */
	rtc->cmos[REG_B] = B_24H; /* BCD, 24 hours: Linux's rtc_cmos refuses 12-hour mode */
	rtc->cmos[REG_D] = D_VRT;
	*out = rtc;
	return 0;
}

void rtc_free(struct rtc *rtc)
{
	if (!rtc)
		return;
	pthread_mutex_destroy(&rtc->lock);
	free(rtc);
}

int rtc_save(struct rtc *rtc, void *fdt)
{
	pthread_mutex_lock(&rtc->lock);
	uint8_t cmos[RTC_CMOS_SIZE];
	memcpy(cmos, rtc->cmos, sizeof(cmos));
	uint8_t index = rtc->index;
	int64_t offset = rtc->offset;
	pthread_mutex_unlock(&rtc->lock);
	int r = fdtp_put_blob(fdt, "cmos", cmos, sizeof(cmos));
	if (!r)
		r = fdtp_put_u32(fdt, "index", index);
	if (!r)
		r = fdtp_put_u64(fdt, "offset", (uint64_t)offset);
	return r;
}

int rtc_restore(struct rtc *rtc, const void *fdt, int node)
{
	const uint8_t *cmos;
	uint32_t len, index;
	uint64_t offset;
	int r = fdtp_ref(fdt, node, "cmos", RTC_CMOS_SIZE, &cmos, &len);
	if (!r)
		r = fdtp_u32_max(fdt, node, "index", RTC_CMOS_SIZE - 1, &index);
	if (!r)
		r = fdtp_u64(fdt, node, "offset", &offset);
	if (r)
		return r;
	/* any guest-written date lies within a few ten thousand years; beyond that, time arithmetic
	 * could overflow */
	if (len != RTC_CMOS_SIZE || (int64_t)offset > RTC_MAX_OFFSET || (int64_t)offset < -RTC_MAX_OFFSET)
		return -EINVAL;
	pthread_mutex_lock(&rtc->lock);
	memcpy(rtc->cmos, cmos, RTC_CMOS_SIZE);
	rtc->index = (uint8_t)index;
	rtc->offset = (int64_t)offset;
	pthread_mutex_unlock(&rtc->lock);
	return 0;
}

/* ---- VM glue ---- */

static void rtc_pio(void *opaque, uint64_t off, uint8_t *data, uint32_t len, bool is_write)
{
	rtc_io(opaque, (uint16_t)(RTC_INDEX_PORT + off), data, len, is_write);
}

static int rtc_dev_save(void *opaque, void *fdt)
{
	return rtc_save(opaque, fdt);
}

static int rtc_dev_restore(void *opaque, const void *fdt, int node)
{
	return rtc_restore(opaque, fdt, node);
}

static void rtc_dev_destroy(void *opaque)
{
	struct rtc *rtc = opaque;
	bus_unregister(&rtc->vm->pio, RTC_INDEX_PORT);
	rtc_free(rtc);
}

int rtc_create(struct vm *vm, struct rtc **out)
{
	struct rtc *rtc;
	int r = rtc_new(NULL, NULL, &rtc);
	if (r)
		return r;
	rtc->vm = vm;
	r = bus_register(&vm->pio, RTC_INDEX_PORT, 2, rtc_pio, rtc, "rtc");
	if (r) {
		rtc_free(rtc);
		return r;
	}
	rtc->dev = (struct vm_device){ .name = "rtc", .opaque = rtc, .save = rtc_dev_save,
				       .restore = rtc_dev_restore, .destroy = rtc_dev_destroy };
	vm_add_device(vm, &rtc->dev);
	if (out)
		*out = rtc;
	return 0;
}

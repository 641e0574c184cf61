/* test_i8042.c - keyboard controller as Linux probes it, IRQ edges, reset paths (0x64, 0x92, 0xcf9), checkpoint. */
#include <errno.h>
#include <libfdt.h>
#include <stdint.h>

#include "../../devices/i8042.h"
#include "../../devices/legacy.h"
#include "../../vmm/util.h"
#include "test.h"

#define DATA 0x60
#define CMD 0x64

struct rec {
	int level[13];
	int rises[13];
	int resets;
};

static void fake_irq(void *ctx, unsigned irq, int level)
{
	struct rec *r = ctx;
	CHECK(irq == 1 || irq == 12);
	CHECK(level != r->level[irq]);
	r->level[irq] = level;
	r->rises[irq] += level;
}

static void fake_reset(void *ctx)
{
	((struct rec *)ctx)->resets++;
}

static uint8_t in(struct i8042 *k, uint16_t port)
{
	uint8_t v = 0x5a;
	i8042_io(k, port, &v, 1, false);
	return v;
}

static void out(struct i8042 *k, uint16_t port, uint8_t v)
{
	i8042_io(k, port, &v, 1, true);
}

static struct i8042 *mk(struct rec *r)
{
	memset(r, 0, sizeof(*r));
	struct i8042_config cfg = { .set_irq = fake_irq, .reset = fake_reset, .ctx = r };
	struct i8042 *k = NULL;
	CHECK_EQ(i8042_new(&cfg, &k), 0);
	return k;
}

/* Wait-for-OBF the way i8042_wait_read does, then read. */
static uint8_t reply(struct i8042 *k)
{
	CHECK(in(k, CMD) & 0x01);
	return in(k, DATA);
}

static void expect_empty(struct i8042 *k)
{
	CHECK_EQ(in(k, CMD) & 0x01, 0);
}

static void cmd_arg(struct i8042 *k, uint8_t cmd, uint8_t arg)
{
	CHECK_EQ(in(k, CMD) & 0x02, 0); /* IBF never holds a writer up */
	out(k, CMD, cmd);
	out(k, DATA, arg);
}

/* Linux's i8042 probe: flush, self test, CTR round trip, keylock, AUX loop, MUX probe, IRQ test. */
static void test_linux_probe(void)
{
	struct rec r;
	struct i8042 *k = mk(&r);
	uint8_t st = in(k, CMD);
	CHECK_EQ(st & 0x01, 0);    /* nothing to flush */
	CHECK_EQ(st & 0x10, 0x10); /* keylock off, or Linux warns */
	CHECK_EQ(st & 0xc2, 0);

	out(k, CMD, 0xaa);
	CHECK_EQ(in(k, CMD) & 0x08, 0x08); /* last write was a command */
	CHECK_EQ(reply(k), 0x55);
	expect_empty(k);

	out(k, CMD, 0x20);
	uint8_t ctr = reply(k);
	CHECK_EQ(ctr & 0x40, 0x40); /* translation on, as a BIOS leaves it */
	CHECK_EQ(r.rises[1], 2);    /* KBDINT was on: each reply raised IRQ 1 */
	CHECK_EQ(r.level[1], 0);    /* and reading it dropped the line */
	/* disable kbd interface and interrupt, write back, read again */
	ctr = (ctr | 0x10) & ~0x01;
	cmd_arg(k, 0x60, ctr);
	CHECK_EQ(in(k, CMD) & 0x08, 0);
	out(k, CMD, 0x20);
	CHECK_EQ(reply(k), ctr);
	CHECK_EQ(r.rises[1], 2);

	/* interface tests and port toggles */
	out(k, CMD, 0xab);
	CHECK_EQ(reply(k), 0x00);
	out(k, CMD, 0xa7);
	out(k, CMD, 0x20);
	CHECK_EQ(reply(k) & 0x20, 0x20);
	out(k, CMD, 0xa8);
	out(k, CMD, 0x20);
	CHECK_EQ(reply(k) & 0x20, 0);
	out(k, CMD, 0xad);
	out(k, CMD, 0xae);
	out(k, CMD, 0x20);
	CHECK_EQ(reply(k) & 0x10, 0);

	/* AUX loop: the byte comes back marked as mouse data */
	cmd_arg(k, 0xd3, 0x5a);
	st = in(k, CMD);
	CHECK_EQ(st & 0x21, 0x21);
	CHECK_EQ(in(k, DATA), 0x5a);
	out(k, CMD, 0xa9);
	CHECK_EQ(reply(k), 0x00);
	/* MUX probe: a plain echo of f0 56 a4 means "no multiplexer" */
	static const uint8_t mux[] = { 0xf0, 0x56, 0xa4 };
	for (unsigned i = 0; i < 3; i++) {
		cmd_arg(k, 0xd3, mux[i]);
		CHECK_EQ(reply(k), mux[i]);
	}
	CHECK_EQ(r.rises[12], 0); /* AUXINT off: the loop bytes were polled, not interrupts */
	/* AUX IRQ test: with AUXINT the loop byte raises IRQ 12, not IRQ 1 */
	out(k, CMD, 0x20);
	ctr = reply(k);
	cmd_arg(k, 0x60, (ctr | 0x02) & ~0x20);
	cmd_arg(k, 0xd3, 0xa5);
	CHECK_EQ(r.level[12], 1);
	CHECK_EQ(r.level[1], 0);
	CHECK_EQ(in(k, DATA), 0xa5);
	CHECK_EQ(r.level[12], 0);
	/* nothing behind the AUX port: a transmit timeout, immediately */
	cmd_arg(k, 0xd4, 0xf2);
	st = in(k, CMD);
	CHECK_EQ(st & 0x61, 0x61);
	CHECK_EQ(in(k, DATA), 0xfe);
	CHECK_EQ(in(k, CMD) & 0x61, 0);
	/* output port: reset line high, A20 on */
	out(k, CMD, 0xd0);
	CHECK_EQ(reply(k) & 0x03, 0x03);
	CHECK_EQ(r.resets, 0);
	i8042_free(k);
}

/* The keyboard as atkbd sees it, one rising edge of IRQ 1 per byte. */
static void test_keyboard(void)
{
	struct rec r;
	struct i8042 *k = mk(&r);
	out(k, DATA, 0xf2);
	CHECK_EQ(r.rises[1], 1);
	CHECK_EQ(in(k, DATA), 0xfa);
	CHECK_EQ(r.rises[1], 2);
	CHECK_EQ(in(k, DATA), 0xab);
	CHECK_EQ(r.rises[1], 3);
	CHECK_EQ(in(k, DATA), 0x41); /* translated ID */
	CHECK_EQ(r.rises[1], 3);
	CHECK_EQ(r.level[1], 0);
	expect_empty(k);
	CHECK_EQ(in(k, DATA), 0x41); /* an empty buffer reads its last byte again */

	out(k, DATA, 0xed);
	CHECK_EQ(reply(k), 0xfa);
	out(k, DATA, 0x07);
	CHECK_EQ(reply(k), 0xfa);
	out(k, DATA, 0xf0);
	out(k, DATA, 0x00);
	CHECK_EQ(reply(k), 0xfa); /* the command */
	CHECK_EQ(reply(k), 0xfa); /* its argument */
	CHECK_EQ(reply(k), 0x41); /* set 2, as translation shows it */
	out(k, DATA, 0xf0);
	out(k, DATA, 0x09);
	CHECK_EQ(reply(k), 0xfa);
	CHECK_EQ(reply(k), 0xfe); /* no set 9 */
	out(k, DATA, 0x5a);
	CHECK_EQ(reply(k), 0xfe); /* unknown command: RESEND, so libps2 fails fast */
	out(k, DATA, 0xee);
	CHECK_EQ(reply(k), 0xee);
	out(k, DATA, 0xfe);
	CHECK_EQ(reply(k), 0xee);
	out(k, DATA, 0xff);
	CHECK_EQ(reply(k), 0xfa);
	CHECK_EQ(reply(k), 0xaa);
	out(k, DATA, 0xf4);
	CHECK_EQ(reply(k), 0xfa);
	expect_empty(k);

	/* untranslated: the raw set-2 ID */
	cmd_arg(k, 0x60, 0x05);
	out(k, DATA, 0xf2);
	CHECK_EQ(reply(k), 0xfa);
	CHECK_EQ(reply(k), 0xab);
	CHECK_EQ(reply(k), 0x83);

	/* a guest that never reads cannot grow the buffer */
	for (int i = 0; i < 100; i++)
		out(k, CMD, 0x20);
	int n = 0;
	while (in(k, CMD) & 0x01) {
		in(k, DATA);
		n++;
	}
	CHECK(n > 0 && n <= 16);
	i8042_free(k);
}

static void test_reset(void)
{
	struct rec r;
	struct i8042 *k = mk(&r);
	out(k, CMD, 0xff); /* pulse nothing */
	CHECK_EQ(r.resets, 0);
	out(k, CMD, 0xfe); /* reboot=k */
	CHECK_EQ(r.resets, 1);
	out(k, CMD, 0xf0);
	CHECK_EQ(r.resets, 2);
	cmd_arg(k, 0xd1, 0x03);
	CHECK_EQ(r.resets, 2);
	cmd_arg(k, 0xd1, 0x02); /* output port with the reset line low */
	CHECK_EQ(r.resets, 3);
	uint8_t w[4] = { 0xfe, 0xfe, 0xfe, 0xfe }; /* a wide write reaches 0x64 once */
	i8042_io(k, CMD, w, 4, true);
	CHECK_EQ(r.resets, 4);
	i8042_io(k, 0x61, w, 4, false);
	CHECK_EQ(w[0], 0xff);
	i8042_free(k);

	/* port 0x92 bit 0, 0xcf9 bit 2 */
	struct legacy *lg;
	CHECK_EQ(legacy_new(fake_reset, &r, &lg), 0);
	r.resets = 0;
	uint8_t v = 0;
	legacy_io(lg, 0x92, &v, 1, false);
	CHECK_EQ(v, 0x02);
	v = 0x00;
	legacy_io(lg, 0x92, &v, 1, true);
	legacy_io(lg, 0x92, &v, 1, false);
	CHECK_EQ(v, 0x00);
	CHECK_EQ(r.resets, 0);
	v = 0x03;
	legacy_io(lg, 0x92, &v, 1, true);
	CHECK_EQ(r.resets, 1);
	v = 0x02; /* Linux's cf9 sequence: SYS_RST first, then RST_CPU */
	legacy_rcr_io(lg, &v, 1, true);
	CHECK_EQ(r.resets, 1);
	v = 0x06;
	legacy_rcr_io(lg, &v, 1, true);
	CHECK_EQ(r.resets, 2);
	v = 0x0e;
	legacy_rcr_io(lg, &v, 1, true);
	CHECK_EQ(r.resets, 3);
	legacy_rcr_io(lg, &v, 1, false);
	CHECK_EQ(v, 0x0a);
	v = 0x55;
	legacy_io(lg, 0x80, &v, 1, true);
	legacy_io(lg, 0x80, &v, 1, false);
	CHECK_EQ(v, 0xff);
	CHECK_EQ(r.resets, 3);

	void *fdt = calloc(1, 4096);
	CHECK_EQ(fdt_create(fdt, 4096), 0);
	fdt_finish_reservemap(fdt);
	fdt_begin_node(fdt, "");
	CHECK_EQ(legacy_save(lg, fdt), 0);
	fdt_end_node(fdt);
	fdt_finish(fdt);
	struct legacy *lg2;
	CHECK_EQ(legacy_new(fake_reset, &r, &lg2), 0);
	CHECK_EQ(legacy_restore(lg2, fdt, 0), 0);
	legacy_io(lg2, 0x92, &v, 1, false);
	CHECK_EQ(v, 0x02);
	legacy_rcr_io(lg2, &v, 1, false);
	CHECK_EQ(v, 0x0a);
	CHECK_EQ(fdt_setprop_inplace_u32(fdt, 0, "rcr", 0x04), 0);
	CHECK_EQ(legacy_restore(lg2, fdt, 0), -EINVAL);
	free(fdt);
	legacy_free(lg);
	legacy_free(lg2);
}

#define FDT_SIZE 8192

static void *save(struct i8042 *k)
{
	void *fdt = calloc(1, FDT_SIZE);
	CHECK_EQ(fdt_create(fdt, FDT_SIZE), 0);
	fdt_finish_reservemap(fdt);
	fdt_begin_node(fdt, "");
	CHECK_EQ(i8042_save(k, fdt), 0);
	fdt_end_node(fdt);
	CHECK_EQ(fdt_finish(fdt), 0);
	return fdt;
}

static void trace(struct i8042 *k, uint8_t *t, unsigned n)
{
	for (unsigned i = 0; i < n; i += 2) {
		t[i] = in(k, CMD);
		t[i + 1] = in(k, DATA);
		if (i == n / 2) {
			out(k, DATA, 0x07); /* completes whatever command was pending */
			out(k, CMD, 0x20);
		}
	}
}

static void test_checkpoint(void)
{
	struct rec r;
	struct i8042 *a = mk(&r);
	cmd_arg(a, 0x60, 0x47);
	cmd_arg(a, 0xd3, 0x11);
	cmd_arg(a, 0xd4, 0x22);
	out(a, DATA, 0xf2);
	out(a, DATA, 0xed); /* keyboard waits for its LED byte */
	out(a, CMD, 0x60);  /* controller waits for a CTR byte */
	CHECK_EQ(r.level[12], 1);

	void *fdt = save(a);
	struct rec r2;
	struct i8042 *b = mk(&r2);
	CHECK_EQ(i8042_restore(b, fdt, 0), 0);
	CHECK_EQ(r2.level[12], 1);
	CHECK_EQ(r2.level[1], 0);
	uint8_t ta[64], tb[64];
	trace(a, ta, sizeof(ta));
	trace(b, tb, sizeof(tb));
	CHECK(!memcmp(ta, tb, sizeof(ta)));
	CHECK_EQ(r.level[1], r2.level[1]);
	CHECK_EQ(r.level[12], r2.level[12]);
	/* both applied the pending 0x60 with 0x07, so both now have CTR 0x07 */
	out(b, CMD, 0x20);
	CHECK_EQ(reply(b), 0x07);

	/* refused: a pending command that takes no data, scancode set 0, bad flags in the queue */
	const struct {
		const char *prop;
		uint32_t val;
	} bad[] = { { "pending", 0xaa }, { "kbd-set", 0 }, { "kbd-pending", 0xf2 }, { "last-cmd", 2 } };
	int root = 0;
	for (unsigned i = 0; i < ARRAY_SIZE(bad); i++) {
		void *f = save(a);
		CHECK_EQ(fdt_setprop_inplace_u32(f, root, bad[i].prop, bad[i].val), 0);
		CHECK_EQ(i8042_restore(b, f, root), -EINVAL);
		free(f);
	}
	cmd_arg(a, 0xd3, 0x33);
	void *f = save(a);
	int len;
	const uint8_t *q = fdt_getprop(f, root, "queue", &len);
	CHECK(q && len >= 2);
	uint8_t flag = 0x80;
	CHECK_EQ(fdt_setprop_inplace_namelen_partial(f, root, "queue", 5, 1, &flag, 1), 0);
	CHECK_EQ(i8042_restore(b, f, root), -EINVAL);
	free(f);
	/* b unchanged by the refusals */
	out(b, CMD, 0x20);
	CHECK_EQ(reply(b), 0x07);

	free(fdt);
	i8042_free(a);
	i8042_free(b);
}

/* What holds after any access: the status register has only bits the controller sets, an IRQ line is
 * high only with a byte waiting that is meant for it, and the state saves and restores. */
static void check_status(const struct rec *r, uint8_t st)
{
	CHECK(st & 0x10);       /* keylock off */
	CHECK_EQ(st & 0x82, 0); /* no parity error, input buffer never full */
	if (!(st & 0x01))
		CHECK_EQ(st & 0x60, 0); /* AUX data / timeout describe the byte waiting */
	CHECK(!(r->level[1] && r->level[12]));
	if (r->level[1])
		CHECK((st & 0x21) == 0x01); /* a keyboard byte waits */
	if (r->level[12])
		CHECK((st & 0x21) == 0x21); /* an AUX byte waits */
}

/* A copy restored from a checkpoint of k: accepted (every field in its range) and reading the same. */
static void check_checkpoint(struct i8042 *k, const struct rec *r)
{
	void *fdt = save(k);
	struct rec r2;
	struct i8042 *c = mk(&r2);
	CHECK_EQ(i8042_restore(c, fdt, 0), 0);
	CHECK_EQ(r2.level[1], r->level[1]);
	CHECK_EQ(r2.level[12], r->level[12]);
	CHECK_EQ(in(c, CMD), in(k, CMD));
	free(fdt);
	i8042_free(c);
}

static void test_fuzz(void)
{
	struct rec r;
	struct i8042 *k = mk(&r);
	uint32_t x = 777;
	for (int i = 0; i < 200000; i++) {
		x = x * 1103515245 + 12345;
		/* canaries past the access: the device touches exactly len bytes */
		uint8_t buf[8] = { (uint8_t)(x >> 16), (uint8_t)(x >> 8), 0, 0, 0xc5, 0xc5, 0xc5, 0xc5 };
		uint16_t port = (x >> 24) & 1 ? CMD : DATA;
		if (((x >> 25) & 15) == 0)
			port = (uint16_t)(0x5e + ((x >> 12) & 7));
		uint32_t len = 1 + ((x >> 29) & 3);
		bool wr = (x >> 4) & 1;
		uint8_t before[8];
		memcpy(before, buf, sizeof(buf));
		i8042_io(k, port, buf, len, wr);
		for (unsigned b = len; b < sizeof(buf); b++)
			CHECK_EQ(buf[b], before[b]);
		if (wr) {
			CHECK(!memcmp(buf, before, len)); /* a write leaves the caller's bytes alone */
		} else {
			for (uint32_t b = 0; b < len; b++) /* not our ports: all ones */
				if (port + b != DATA && port + b != CMD)
					CHECK_EQ(buf[b], 0xff);
		}
		check_status(&r, in(k, CMD));
		if (i % 1000 == 0)
			check_checkpoint(k, &r);
	}
	check_checkpoint(k, &r);
	i8042_free(k);
}

int main(void)
{
	test_linux_probe();
	test_keyboard();
	test_reset();
	test_checkpoint();
	test_fuzz();
	TEST_DONE("test_i8042");
}

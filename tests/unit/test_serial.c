/* test_serial.c - 16550A register model, interrupt line, host input backpressure and checkpoint round trip. */
#include <errno.h>
#include <fcntl.h>
#include <libfdt.h>
#include <stdint.h>
#include <sys/epoll.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include "../../devices/serial.h"
#include "../../vmm/ioloop.h"
#include "../../vmm/util.h"
#include "test.h"

enum { RBR, IER, IIR, LCR, MCR, LSR, MSR, SCR };
#define THR RBR
#define FCR IIR

struct irqrec {
	int level;
	int calls;
};

static void fake_irq(void *ctx, unsigned irq, int level)
{
	struct irqrec *r = ctx;
	CHECK_EQ(irq, 4);
	CHECK(level == 0 || level == 1);
	CHECK(level != r->level); /* the device only reports changes */
	r->level = level;
	r->calls++;
}

static uint8_t rd(struct serial *s, unsigned reg)
{
	uint8_t v = 0x5a;
	serial_pio(s, reg, &v, 1, false);
	return v;
}

static void wr(struct serial *s, unsigned reg, uint8_t v)
{
	serial_pio(s, reg, &v, 1, true);
}

static struct serial *mk(struct irqrec *rec, int in_fd, int out_fd, struct ioloop *io)
{
	struct serial_config cfg = { .irq = 4, .in_fd = in_fd, .out_fd = out_fd, .io = io, .set_irq = fake_irq,
				     .ctx = rec };
	struct serial *s = NULL;
	CHECK_EQ(serial_new(&cfg, &s), 0);
	CHECK(s != NULL);
	return s;
}

static size_t pipe_avail(int fd)
{
	int n = 0;
	CHECK_EQ(ioctl(fd, FIONREAD, &n), 0);
	return (size_t)n;
}

/* The reset state and the probe sequence of Linux's 8250 autoconfig, which must end in "16550A". */
static void test_probe(void)
{
	struct irqrec rec = { 0 };
	struct serial *s = mk(&rec, -1, -1, NULL);
	CHECK_EQ(rd(s, LSR), 0x60);
	CHECK_EQ(rd(s, IIR), 0x01);
	CHECK_EQ(rd(s, MSR), 0xb0);
	CHECK_EQ(rd(s, LCR), 0x03);

	/* IER existence test: only the low nibble sticks */
	wr(s, IER, 0);
	CHECK_EQ(rd(s, IER) & 0x0f, 0);
	wr(s, IER, 0x0f);
	CHECK_EQ(rd(s, IER) & 0x0f, 0x0f);
	wr(s, IER, 0xff);
	CHECK_EQ(rd(s, IER), 0x0f);
	wr(s, IER, 0);

	/* loopback test: MCR = LOOP | OUT2 | RTS must show DCD | CTS */
	wr(s, MCR, 0x1a);
	CHECK_EQ(rd(s, MSR) & 0xf0, 0x90);
	wr(s, MCR, 0x00);

	/* scratch */
	wr(s, SCR, 0xa5);
	CHECK_EQ(rd(s, SCR), 0xa5);

	/* FIFO: IIR bits 7:6 == 3 means 16550A; with DLAB set reg 2 still reads IIR, so no EFR is found */
	wr(s, FCR, 0x01);
	CHECK_EQ(rd(s, IIR) >> 6, 3);
	wr(s, LCR, 0xbf);
	CHECK(rd(s, IIR) != 0);
	wr(s, LCR, 0x80);
	CHECK(rd(s, IIR) != 0);
	wr(s, LCR, 0);
	/* the 16750 64-byte FIFO bit must not stick */
	wr(s, FCR, 0x21);
	CHECK_EQ(rd(s, IIR) & 0x20, 0);
	wr(s, LCR, 0x80);
	wr(s, FCR, 0x21);
	CHECK_EQ(rd(s, IIR) & 0x20, 0);
	wr(s, LCR, 0);
	/* FIFO off: IIR bits 7:6 clear */
	wr(s, FCR, 0);
	CHECK_EQ(rd(s, IIR), 0x01);
	CHECK_EQ(rec.calls, 0); /* no OUT2 during probing: the line never moved */
	serial_free(s);
}

static void test_output_and_dlab(void)
{
	int p[2];
	CHECK_EQ(pipe2(p, O_NONBLOCK), 0);
	struct irqrec rec = { 0 };
	struct serial *s = mk(&rec, -1, p[1], NULL);
	const char *msg = "hello, ttyS0\n";
	for (const char *c = msg; *c; c++) {
		CHECK_EQ(rd(s, LSR) & 0x60, 0x60);
		wr(s, THR, (uint8_t)*c);
	}
	char buf[64] = { 0 };
	CHECK_EQ(read(p[0], buf, sizeof(buf)), (ssize_t)strlen(msg));
	CHECK(!strcmp(buf, msg));

	/* divisor latch: 115200 baud = 1, and nothing leaks out or into IER */
	wr(s, IER, 0x05);
	wr(s, LCR, 0x83);
	wr(s, THR, 0x01);
	wr(s, IER, 0x00);
	CHECK_EQ(rd(s, RBR), 0x01);
	CHECK_EQ(rd(s, IER), 0x00);
	wr(s, THR, 0x34);
	wr(s, IER, 0x12);
	CHECK_EQ(rd(s, RBR), 0x34);
	CHECK_EQ(rd(s, IER), 0x12);
	wr(s, LCR, 0x03);
	CHECK_EQ(rd(s, IER), 0x05);
	CHECK_EQ(pipe_avail(p[0]), 0);

	/* a 2-byte access at the last register reads it plus one floating byte */
	uint8_t two[2] = { 0, 0 };
	serial_pio(s, 7, two, 2, false);
	CHECK_EQ(two[1], 0xff);
	serial_pio(s, 1000, two, 2, false);
	CHECK_EQ(two[0], 0xff);
	serial_pio(s, UINT64_MAX, two, 2, true); /* ignored, no wrap-around into register 0 */
	CHECK_EQ(pipe_avail(p[0]), 0);
	serial_free(s);
	close(p[0]);
	close(p[1]);
}

static void test_thre_irq(void)
{
	struct irqrec rec = { 0 };
	struct serial *s = mk(&rec, -1, -1, NULL);
	wr(s, FCR, 0x01);
	/* enabling THRI with THR empty raises it, but not on the wire until OUT2 */
	wr(s, IER, 0x02);
	CHECK_EQ(rd(s, IIR), 0xc2);
	CHECK_EQ(rec.level, 0);
	wr(s, IER, 0);
	wr(s, MCR, 0x0b); /* DTR RTS OUT2 */
	CHECK_EQ(rec.level, 0);
	/* Linux's THRE test: enable, read IIR, disable, enable again: it must be re-asserted */
	wr(s, IER, 0x02);
	CHECK_EQ(rec.level, 1);
	uint8_t iir1 = rd(s, IIR);
	CHECK_EQ(iir1 & 0x0f, 0x02);
	CHECK_EQ(rec.level, 0); /* reading IIR acknowledged THRE */
	CHECK_EQ(rd(s, IIR) & 0x01, 1);
	wr(s, IER, 0);
	wr(s, IER, 0x02);
	CHECK_EQ(rd(s, IIR) & 0x0f, 0x02);
	/* each THR write empties at once and asks for more */
	wr(s, THR, 'x');
	CHECK_EQ(rec.level, 1);
	wr(s, IER, 0);
	CHECK_EQ(rec.level, 0);
	int calls = rec.calls;
	wr(s, IER, 0x02);
	CHECK_EQ(rd(s, IIR) & 0x0f, 0x02);
	wr(s, IER, 0x02); /* rewriting the same value is not a new enable */
	CHECK_EQ(rd(s, IIR) & 0x0f, 0x01);
	CHECK_EQ(rec.calls, calls + 2);
	serial_free(s);
}

/* Loopback, modem status deltas, overrun and the IIR priority order. */
static void test_loopback_priorities(void)
{
	int p[2];
	CHECK_EQ(pipe2(p, O_NONBLOCK), 0);
	struct irqrec rec = { 0 };
	struct serial *s = mk(&rec, -1, p[1], NULL);
	wr(s, FCR, 0x01);
	wr(s, MCR, 0x10);
	CHECK_EQ(rd(s, MSR), 0x0b); /* DCD DSR CTS dropped: three deltas */
	CHECK_EQ(rd(s, MSR), 0x00);
	wr(s, MCR, 0x1f);
	CHECK_EQ(rd(s, MSR), 0xfb);
	wr(s, MCR, 0x1b); /* RI (OUT1) falls: trailing edge */
	CHECK_EQ(rd(s, MSR), 0xb4);
	wr(s, IER, 0x0f);
	CHECK_EQ(rd(s, IIR) & 0x0f, 0x02); /* THRE after enable */
	wr(s, THR, 'a');
	wr(s, THR, 'b');
	CHECK_EQ(pipe_avail(p[0]), 0); /* loopback: nothing reaches the host */
	CHECK_EQ(rd(s, LSR) & 0x01, 1);
	CHECK_EQ(rd(s, IIR) & 0x0f, 0x04);
	CHECK_EQ(rec.level, 0); /* loopback forces OUT2 off the pin */
	CHECK_EQ(rd(s, RBR), 'a');
	CHECK_EQ(rd(s, RBR), 'b');
	CHECK_EQ(rd(s, LSR) & 0x01, 0);
	CHECK_EQ(rd(s, IIR) & 0x0f, 0x02); /* THRE still pending below RX */
	CHECK_EQ(rd(s, IIR) & 0x0f, 0x01);
	/* modem status is the lowest priority */
	wr(s, MCR, 0x1a);
	CHECK_EQ(rd(s, IIR) & 0x0f, 0x00);
	rd(s, MSR);
	CHECK_EQ(rd(s, IIR) & 0x0f, 0x01);
	/* overrun: the receiver holds SERIAL_RX_FIFO_SIZE bytes, the next one is lost and flagged */
	for (unsigned i = 0; i <= SERIAL_RX_FIFO_SIZE; i++)
		wr(s, THR, (uint8_t)i);
	CHECK_EQ(rd(s, IIR) & 0x0f, 0x06);
	CHECK_EQ(rd(s, LSR) & 0x03, 0x03);
	CHECK_EQ(rd(s, LSR) & 0x02, 0); /* read clears OE */
	CHECK_EQ(rd(s, IIR) & 0x0f, 0x04);
	for (unsigned i = 0; i < SERIAL_RX_FIFO_SIZE; i++)
		CHECK_EQ(rd(s, RBR), (uint8_t)i);
	CHECK_EQ(rd(s, LSR) & 0x01, 0);
	/* FCR clears the receiver */
	wr(s, THR, 1);
	wr(s, FCR, 0x03);
	CHECK_EQ(rd(s, LSR) & 0x01, 0);
	/* switching FIFO mode keeps what was received (unlike the chip, on purpose), and then there
	 * is one holding register */
	wr(s, THR, 2);
	wr(s, FCR, 0x00);
	CHECK_EQ(rd(s, LSR) & 0x01, 1);
	CHECK_EQ(rd(s, RBR), 2);
	wr(s, THR, 7);
	wr(s, THR, 8);
	CHECK_EQ(rd(s, LSR) & 0x03, 0x03);
	CHECK_EQ(rd(s, RBR), 7);
	/* leaving loopback: lines back to the always-ready modem, the wire gets the interrupt */
	wr(s, MCR, 0x08);
	CHECK_EQ(rd(s, MSR) & 0xf0, 0xb0);
	CHECK_EQ(rec.level, 1); /* THRE pending again after the THR writes */
	wr(s, THR, 'z');
	char c = 0;
	CHECK_EQ(read(p[0], &c, 1), 1);
	CHECK_EQ(c, 'z');
	serial_free(s);
	close(p[0]);
	close(p[1]);
}

static void drain_loop(struct ioloop *io)
{
	for (int i = 0; i < 8; i++)
		CHECK(ioloop_poll_once(io, 0) >= 0);
}

static int loop_ready(struct ioloop *io)
{
	struct epoll_event ev[4];
	return epoll_wait(io->epfd, ev, 4, 0);
}

/* Host input: gated on RDI, FIFO-sized reads, backpressure without polling, order kept, EOF. */
static void test_input(void)
{
	struct ioloop io;
	CHECK_EQ(ioloop_init(&io, "test"), 0);
	int p[2];
	CHECK_EQ(pipe2(p, O_NONBLOCK), 0);
	struct irqrec rec = { 0 };
	struct serial *s = mk(&rec, p[0], -1, &io);

	enum { N = 3000 };
	static uint8_t data[N];
	for (unsigned i = 0; i < N; i++)
		data[i] = (uint8_t)(i * 7 + i / 256);
	CHECK_EQ(write(p[1], data, N), N);

	/* the guest is not listening yet: input stays in the pipe, and the loop is idle */
	drain_loop(&io);
	CHECK_EQ(loop_ready(&io), 0);
	CHECK_EQ(pipe_avail(p[0]), N);
	CHECK_EQ(rd(s, LSR) & 0x01, 0);

	wr(s, FCR, 0x07);
	wr(s, MCR, 0x0b);
	wr(s, IER, 0x05);
	drain_loop(&io);
	CHECK_EQ(pipe_avail(p[0]), N - SERIAL_RX_FIFO_SIZE);
	CHECK_EQ(rd(s, IIR), 0xc4);
	CHECK_EQ(rec.level, 1);
	/* full: nothing is watched although the pipe has data (no busy polling) */
	CHECK_EQ(loop_ready(&io), 0);

	unsigned got = 0;
	/* draining below half re-arms; order and count are kept across refills */
	while (got < N) {
		CHECK(rd(s, LSR) & 0x01);
		CHECK_EQ(rd(s, RBR), data[got]);
		got++;
		if (got == SERIAL_RX_FIFO_SIZE / 2 - 1)
			CHECK_EQ(loop_ready(&io), 0); /* still above half: not yet watching */
		if (got == SERIAL_RX_FIFO_SIZE / 2)
			CHECK_EQ(loop_ready(&io), 1); /* half empty: watching again */
		drain_loop(&io); /* refills land while the FIFO is half full */
	}
	CHECK_EQ(pipe_avail(p[0]), 0);
	CHECK_EQ(rd(s, LSR) & 0x01, 0);
	CHECK_EQ(rec.level, 0);

	/* quiesce: input is left alone until resume */
	CHECK_EQ(write(p[1], "qr", 2), 2);
	CHECK_EQ(serial_quiesce(s), 0);
	drain_loop(&io);
	CHECK_EQ(pipe_avail(p[0]), 2);
	serial_resume(s);
	drain_loop(&io);
	CHECK_EQ(rd(s, RBR), 'q');
	CHECK_EQ(rd(s, RBR), 'r');

	/* RDI off (a throttled tty) stops input too */
	wr(s, IER, 0x00);
	CHECK_EQ(write(p[1], "t", 1), 1);
	drain_loop(&io);
	CHECK_EQ(pipe_avail(p[0]), 1);
	/* loopback also disconnects the line */
	wr(s, MCR, 0x1b);
	wr(s, IER, 0x01);
	drain_loop(&io);
	CHECK_EQ(pipe_avail(p[0]), 1);
	wr(s, MCR, 0x0b);
	drain_loop(&io);
	CHECK_EQ(rd(s, RBR), 't');

	/* EOF: the writer goes away; the reader stops watching instead of spinning */
	close(p[1]);
	drain_loop(&io);
	CHECK_EQ(loop_ready(&io), 0);
	CHECK_EQ(rd(s, LSR) & 0x01, 0);

	serial_free(s);
	ioloop_destroy(&io);
	close(p[0]);
}

/* Linux opening ttyS0 while input already waits in the host pipe: serial8250_do_startup, then
 * do_set_termios, which enables RDI before it switches the FIFOs on. Not a byte may go missing. */
static void test_linux_open(void)
{
	struct ioloop io;
	CHECK_EQ(ioloop_init(&io, "test"), 0);
	int p[2];
	CHECK_EQ(pipe2(p, O_NONBLOCK), 0);
	struct irqrec rec = { 0 };
	struct serial *s = mk(&rec, p[0], -1, &io);
	CHECK_EQ(write(p[1], "echo hi\n", 8), 8);
	drain_loop(&io);
	/* startup: clear FIFOs, clear interrupts, 8N1, OUT2, THRE test, clear again */
	wr(s, FCR, 0x01);
	wr(s, FCR, 0x07);
	wr(s, FCR, 0x00);
	rd(s, LSR), rd(s, RBR), rd(s, IIR), rd(s, MSR);
	wr(s, LCR, 0x03);
	wr(s, MCR, 0x0b);
	wr(s, IER, 0x02);
	rd(s, IIR);
	wr(s, IER, 0x00);
	wr(s, IER, 0x02);
	rd(s, IIR);
	wr(s, IER, 0x00);
	rd(s, LSR), rd(s, RBR), rd(s, IIR), rd(s, MSR);
	drain_loop(&io);
	CHECK_EQ(pipe_avail(p[0]), 8); /* nobody listens yet */
	/* set_termios: IER with RDI, divisor, LCR, then FIFOs on in two steps */
	wr(s, IER, 0x05);
	drain_loop(&io); /* the I/O thread may well run right here */
	wr(s, LCR, 0x83);
	wr(s, RBR, 0x01);
	wr(s, IER, 0x00);
	wr(s, LCR, 0x03);
	wr(s, FCR, 0x01);
	wr(s, FCR, 0x81);
	drain_loop(&io);
	char got[9] = { 0 };
	for (int i = 0; i < 8; i++) {
		drain_loop(&io);
		CHECK(rd(s, LSR) & 0x01);
		got[i] = (char)rd(s, RBR);
	}
	CHECK(!strcmp(got, "echo hi\n"));
	serial_free(s);
	ioloop_destroy(&io);
	close(p[0]);
	close(p[1]);
}

/* Regular files and /dev/null cannot be polled: they are read on demand. */
static void test_file_input(void)
{
	char path[] = "/tmp/ftvmm-serial-XXXXXX";
	int fd = mkstemp(path);
	CHECK(fd >= 0);
	unlink(path);
	CHECK_EQ(write(fd, "ls\n", 3), 3);
	CHECK_EQ(lseek(fd, 0, SEEK_SET), 0);
	struct ioloop io;
	CHECK_EQ(ioloop_init(&io, "test"), 0);
	struct irqrec rec = { 0 };
	struct serial *s = mk(&rec, fd, -1, &io);
	wr(s, FCR, 0x01);
	CHECK_EQ(rd(s, LSR) & 0x01, 0);
	wr(s, IER, 0x01);
	CHECK_EQ(rd(s, RBR), 'l');
	CHECK_EQ(rd(s, RBR), 's');
	CHECK_EQ(rd(s, RBR), '\n');
	CHECK_EQ(rd(s, LSR) & 0x01, 0);
	serial_free(s);
	close(fd);

	int null = open("/dev/null", O_RDONLY);
	CHECK(null >= 0);
	s = mk(&rec, null, -1, &io);
	wr(s, IER, 0x01);
	CHECK_EQ(rd(s, LSR) & 0x01, 0);
	serial_free(s);
	close(null);
	ioloop_destroy(&io);
}

#define FDT_SIZE 16384

static void *save_serial(struct serial *s, int *node)
{
	void *fdt = calloc(1, FDT_SIZE);
	CHECK_EQ(fdt_create(fdt, FDT_SIZE), 0);
	CHECK_EQ(fdt_finish_reservemap(fdt), 0);
	CHECK_EQ(fdt_begin_node(fdt, ""), 0);
	CHECK_EQ(fdt_begin_node(fdt, "serial@3f8"), 0);
	CHECK_EQ(serial_save(s, fdt), 0);
	CHECK_EQ(fdt_end_node(fdt), 0);
	CHECK_EQ(fdt_end_node(fdt), 0);
	CHECK_EQ(fdt_finish(fdt), 0);
	*node = fdt_path_offset(fdt, "/serial@3f8");
	CHECK(*node >= 0);
	return fdt;
}

/* Read every register the way a driver would; the trace must match between original and restore. */
static void trace(struct serial *s, uint8_t *out, unsigned n)
{
	static const uint8_t regs[] = { IIR, LSR, MSR, IER, LCR, MCR, SCR, RBR, IIR, LSR };
	for (unsigned i = 0; i < n; i++)
		out[i] = rd(s, regs[i % sizeof(regs)]);
}

static void test_checkpoint(void)
{
	int p[2];
	CHECK_EQ(pipe2(p, O_NONBLOCK), 0);
	struct irqrec rec = { 0 };
	struct serial *a = mk(&rec, -1, p[1], NULL);
	wr(a, LCR, 0x80);
	wr(a, THR, 0x03);
	wr(a, IER, 0x00);
	wr(a, LCR, 0x1b);
	wr(a, FCR, 0x81);
	wr(a, SCR, 0x42);
	wr(a, MCR, 0x1b);
	for (unsigned i = 0; i < 40; i++)
		wr(a, THR, (uint8_t)(0x30 + i));
	wr(a, MCR, 0x0b);
	wr(a, IER, 0x0f); /* RX pending, THRE pending, MSR deltas pending */
	CHECK_EQ(rec.level, 1);

	int node;
	void *fdt = save_serial(a, &node);

	struct irqrec rec2 = { 0 };
	struct serial *b = mk(&rec2, -1, p[1], NULL);
	CHECK_EQ(serial_restore(b, fdt, node), 0);
	CHECK_EQ(rec2.level, 1); /* restore drove the line */
	uint8_t ta[300], tb[300];
	trace(a, ta, sizeof(ta));
	trace(b, tb, sizeof(tb));
	CHECK(!memcmp(ta, tb, sizeof(ta)));
	CHECK_EQ(rec.level, rec2.level);
	/* divisor survived too */
	wr(b, LCR, 0x9b);
	CHECK_EQ(rd(b, RBR), 0x03);
	wr(b, LCR, 0x1b);

	/* malformed trees are refused and leave the device as it was */
	void *bad = calloc(1, FDT_SIZE);
	struct {
		const char *prop;
		uint32_t val;
	} cases[] = { { "ier", 0x10 }, { "mcr", 0x20 }, { "fcr", 0x02 }, { "fcr", 0x80 }, { "lsr-err", 0x01 }, { "msr", 0x00 },
		      { "thri-pending", 2 }, { NULL, 0 } };
	static const char *names[] = { "ier", "lcr", "mcr", "fcr", "scr", "dll", "dlm", "lsr-err", "msr", "thri-pending" };
	for (unsigned c = 0; c < ARRAY_SIZE(cases); c++) {
		CHECK_EQ(fdt_create(bad, FDT_SIZE), 0);
		fdt_finish_reservemap(bad);
		fdt_begin_node(bad, "");
		for (unsigned i = 0; i < ARRAY_SIZE(names); i++) {
			const void *v = fdt_getprop(fdt, node, names[i], NULL);
			uint32_t x = fdt32_to_cpu(*(const fdt32_t *)v);
			if (cases[c].prop && !strcmp(cases[c].prop, names[i]))
				x = cases[c].val;
			CHECK_EQ(fdt_property_u32(bad, names[i], x), 0);
		}
		if (cases[c].prop) {
			CHECK_EQ(fdt_property(bad, "rx-fifo", "a", 1), 0);
		} else {
			/* more bytes than the FIFO holds */
			static uint8_t big[SERIAL_RX_FIFO_SIZE + 1];
			CHECK_EQ(fdt_property(bad, "rx-fifo", big, sizeof(big)), 0);
		}
		fdt_end_node(bad);
		fdt_finish(bad);
		int before = rec2.calls;
		CHECK_EQ(serial_restore(b, bad, fdt_path_offset(bad, "/")), -EINVAL);
		CHECK_EQ(rec2.calls, before);
	}
	/* a missing property */
	CHECK_EQ(fdt_create(bad, FDT_SIZE), 0);
	fdt_finish_reservemap(bad);
	fdt_begin_node(bad, "");
	fdt_property_u32(bad, "ier", 0);
	fdt_end_node(bad);
	fdt_finish(bad);
	CHECK_EQ(serial_restore(b, bad, fdt_path_offset(bad, "/")), -EINVAL);
	uint8_t tc[300];
	trace(b, tc, sizeof(tc)); /* b behaves as the state it restored, not the garbage */
	trace(a, ta, sizeof(ta));
	CHECK(!memcmp(ta, tc, sizeof(ta)));

	/* a tree too small for the state says so */
	CHECK_EQ(fdt_create(bad, 256), 0);
	fdt_finish_reservemap(bad);
	fdt_begin_node(bad, "");
	CHECK_EQ(serial_save(a, bad), -ENOSPC);

	free(bad);
	free(fdt);
	serial_free(a);
	serial_free(b);
	close(p[0]);
	close(p[1]);
}

/* Random register traffic must never crash, and the invariants hold throughout. */
static void test_fuzz(void)
{
	int p[2];
	CHECK_EQ(pipe2(p, O_NONBLOCK), 0);
	struct irqrec rec = { 0 };
	struct serial *s = mk(&rec, -1, p[1], NULL);
	uint32_t x = 12345;
	char sink[4096];
	for (int i = 0; i < 200000; i++) {
		x = x * 1103515245 + 12345;
		uint8_t v = (uint8_t)(x >> 16);
		unsigned off = (x >> 8) % 10, len = 1 + (x >> 24) % 4;
		uint8_t buf[4] = { v, v, v, v };
		serial_pio(s, off, buf, len, (x >> 4) & 1);
		if (!(i % 512) && read(p[0], sink, sizeof(sink)) < 0)
			CHECK_EQ(errno, EAGAIN);
		uint8_t lsr = rd(s, LSR);
		CHECK_EQ(lsr & 0x60, 0x60);
	}
	serial_free(s);
	close(p[0]);
	close(p[1]);
}

int main(void)
{
	test_probe();
	test_output_and_dlab();
	test_thre_irq();
	test_loopback_priorities();
	test_input();
	test_linux_open();
	test_file_input();
	test_checkpoint();
	test_fuzz();
	TEST_DONE("test_serial");
}

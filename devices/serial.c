/* serial.c - 16550A UART: registers, host input with FIFO backpressure, the IRQ line, quiesce and resume. */
#include "serial.h"
#include "serial_int.h"

#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <unistd.h>

#include "../vmm/ioloop.h"
#include "../vmm/util.h"
#include "../vmm/vm.h"

static unsigned rx_cap(const struct serial *s)
{
	/* with FIFOs off the chip has a single holding register (bytes received before FIFOs were
	 * switched off stay readable, see UART_FCR) */
	return (s->fcr & FCR_ENABLE) ? SERIAL_RX_FIFO_SIZE : 1;
}

static bool rx_push(struct serial *s, uint8_t b)
{
	if (s->rx_count >= rx_cap(s))
		return false;
	s->rx[(s->rx_head + s->rx_count) % SERIAL_RX_FIFO_SIZE] = b;
	s->rx_count++;
	return true;
}

static uint8_t rx_pop(struct serial *s)
{
	uint8_t b = s->rx[s->rx_head];
	s->rx_head = (s->rx_head + 1) % SERIAL_RX_FIFO_SIZE;
	s->rx_count--;
	return b;
}

static void rx_clear(struct serial *s)
{
	s->rx_head = s->rx_count = 0;
}

static uint8_t serial_iir(const struct serial *s)
{
	uint8_t id = IIR_NO_INT;
	if ((s->ier & IER_RLSI) && (s->lsr_err & LSR_ERRORS))
		id = IIR_RLSI;
	else if ((s->ier & IER_RDI) && s->rx_count)
		id = IIR_RDI;
	else if ((s->ier & IER_THRI) && s->thri_pending)
		id = IIR_THRI;
	else if ((s->ier & IER_MSI) && (s->msr & MSR_DELTAS))
		id = IIR_MSI;
	return id | ((s->fcr & FCR_ENABLE) ? IIR_FIFO_ON : 0);
}

static uint8_t serial_lsr(const struct serial *s)
{
	/* transmission is instantaneous: the holding register and the shifter are always empty */
	return (s->rx_count ? LSR_DR : 0) | s->lsr_err | LSR_THRE | LSR_TEMT;
}

void serial_update_irq(struct serial *s)
{
	/* On a PC the UART's interrupt pin reaches the PIC only through OUT2, and loopback forces OUT2
	 * inactive. Keeping that wiring keeps the line quiet while Linux probes the chip. */
	int level = !(serial_iir(s) & IIR_NO_INT) && (s->mcr & MCR_OUT2) && !(s->mcr & MCR_LOOP);
	if (level == s->irq_level)
		return;
	s->irq_level = level;
	if (s->cfg.set_irq)
		s->cfg.set_irq(s->cfg.ctx, s->cfg.irq, level);
}

uint8_t serial_msr_lines(uint8_t mcr)
{
	if (!(mcr & MCR_LOOP))
		return MSR_DCD | MSR_DSR | MSR_CTS; /* a modem that is always there and ready */
	return ((mcr & MCR_RTS) ? MSR_CTS : 0) | ((mcr & MCR_DTR) ? MSR_DSR : 0) |
	       ((mcr & MCR_OUT1) ? MSR_RI : 0) | ((mcr & MCR_OUT2) ? MSR_DCD : 0);
}

static void serial_set_mcr(struct serial *s, uint8_t mcr)
{
	uint8_t old = s->msr & ~MSR_DELTAS, now = serial_msr_lines(mcr);
	uint8_t delta = s->msr & MSR_DELTAS;
	if ((old ^ now) & MSR_CTS)
		delta |= MSR_DCTS;
	if ((old ^ now) & MSR_DSR)
		delta |= MSR_DDSR;
	if ((old ^ now) & MSR_DCD)
		delta |= MSR_DDCD;
	if ((old & MSR_RI) && !(now & MSR_RI))
		delta |= MSR_TERI;
	s->mcr = mcr;
	s->msr = now | delta;
}

static void serial_stop_input(struct serial *s)
{
	if (s->watching)
		epoll_ctl(s->epfd, EPOLL_CTL_DEL, s->cfg.in_fd, NULL);
	s->watching = false;
	s->in_eof = true;
}

/* One read of at most the free FIFO space; never more, so nothing read is ever dropped. */
static void serial_fill(struct serial *s, uint32_t events)
{
	uint8_t buf[SERIAL_RX_FIFO_SIZE];
	unsigned room = rx_cap(s) - s->rx_count;
	if (!room)
		return;
	ssize_t n = read(s->cfg.in_fd, buf, room);
	if (n > 0) {
		for (ssize_t i = 0; i < n; i++)
			rx_push(s, buf[i]);
	} else if (n == 0) {
		serial_stop_input(s); /* EOF: the other end is gone for good */
	} else if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) {
		if (events & (EPOLLERR | EPOLLHUP))
			serial_stop_input(s);
	} else {
		warnx("serial: console input: %s; ignoring further input", strerror(errno));
		serial_stop_input(s);
	}
}

/* Decide whether host input may flow. It flows only while the guest listens: receive interrupts on
 * and no loopback. Linux clears the FIFOs while it sets a port up and enables RDI only once that is
 * done, so input typed early waits in the host fd instead of being thrown away, and a throttled tty
 * (RDI off) becomes real backpressure. Watching resumes only when the FIFO is half empty, so a full
 * FIFO does not turn every RBR read into two epoll_ctl calls. */
void serial_update_input(struct serial *s)
{
	if (s->cfg.in_fd < 0 || s->in_eof)
		return;
	bool open = !s->quiesced && (s->ier & IER_RDI) && !(s->mcr & MCR_LOOP);
	unsigned cap = rx_cap(s);
	if (!s->pollable) {
		if (open && s->rx_count <= cap / 2)
			serial_fill(s, 0); /* a regular file never blocks */
		return;
	}
	bool want = open && (s->watching ? s->rx_count < cap : s->rx_count <= cap / 2);
	if (want == s->watching)
		return;
	struct epoll_event ev = { .events = EPOLLIN, .data.fd = s->cfg.in_fd };
	if (epoll_ctl(s->epfd, want ? EPOLL_CTL_ADD : EPOLL_CTL_DEL, s->cfg.in_fd, &ev) < 0) {
		warnx("serial: cannot %s console input: %s", want ? "watch" : "unwatch", strerror(errno));
		serial_stop_input(s);
		return;
	}
	s->watching = want;
}

/* I/O loop: the private epoll set is readable. */
static void serial_input_ready(void *opaque, uint32_t events)
{
	struct serial *s = opaque;
	(void)events;
	pthread_mutex_lock(&s->lock);
	struct epoll_event ev;
	/* re-check in_fd itself, under the lock, so that read() cannot block on a stale wakeup */
	if (s->watching && !s->in_eof && epoll_wait(s->epfd, &ev, 1, 0) == 1)
		serial_fill(s, ev.events);
	serial_update_input(s);
	serial_update_irq(s);
	pthread_mutex_unlock(&s->lock);
}

static void serial_tx(struct serial *s, uint8_t b)
{
	if (s->cfg.out_fd < 0 || s->out_dead)
		return;
	for (;;) {
		ssize_t n = write(s->cfg.out_fd, &b, 1);
		if (n == 1)
			return;
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
			/* console output is never dropped: wait for the reader */
			struct pollfd p = { .fd = s->cfg.out_fd, .events = POLLOUT };
			poll(&p, 1, -1);
			continue;
		}
		warnx("serial: console output: %s; discarding further output", n < 0 ? strerror(errno) : "short write");
		s->out_dead = true;
		return;
	}
}

static uint8_t serial_read(struct serial *s, unsigned reg)
{
	uint8_t v = 0;
	switch (reg) {
	case UART_RX:
		if (s->lcr & LCR_DLAB)
			v = s->dll;
		else if (s->rx_count)
			v = rx_pop(s);
		break;
	case UART_IER:
		v = (s->lcr & LCR_DLAB) ? s->dlm : s->ier;
		break;
	case UART_IIR:
		v = serial_iir(s);
		if ((v & IIR_ID_MASK) == IIR_THRI)
			s->thri_pending = false; /* reading IIR acknowledges THRE, and only THRE */
		break;
	case UART_LCR:
		v = s->lcr;
		break;
	case UART_MCR:
		v = s->mcr;
		break;
	case UART_LSR:
		v = serial_lsr(s);
		s->lsr_err = 0;
		break;
	case UART_MSR:
		v = s->msr;
		s->msr &= ~MSR_DELTAS;
		break;
	case UART_SCR:
		v = s->scr;
		break;
	}
	return v;
}

static void serial_write(struct serial *s, unsigned reg, uint8_t v)
{
	switch (reg) {
	case UART_TX:
		if (s->lcr & LCR_DLAB) {
			s->dll = v;
			break;
		}
		if (s->mcr & MCR_LOOP) {
			if (!rx_push(s, v))
				s->lsr_err |= LSR_OE;
		} else {
			serial_tx(s, v);
		}
		s->thri_pending = true; /* gone out already: THR is empty again */
		break;
	case UART_IER:
		if (s->lcr & LCR_DLAB) {
			s->dlm = v;
			break;
		}
		/* A 16550A raises THRE again when its interrupt is enabled while THR is empty. Linux's
		 * startup test and its start_tx path both depend on this. */
		if ((v & IER_THRI) && !(s->ier & IER_THRI))
			s->thri_pending = true;
		s->ier = v & IER_MASK;
		break;
	case UART_FCR:
		/* A real chip also empties its FIFOs when FIFO mode is switched. Not here: Linux enables
		 * RDI while the FIFOs are still off and switches them on right after, and host input is
		 * usually already waiting, so a byte would be lost at every port open. */
		if (v & FCR_CLEAR_RX)
			rx_clear(s);
		s->fcr = (v & FCR_ENABLE) ? (v & FCR_KEPT) : 0;
		break;
	case UART_LCR:
		s->lcr = v;
		break;
	case UART_MCR:
		serial_set_mcr(s, v & MCR_MASK);
		break;
	case UART_SCR:
		s->scr = v;
		break;
	default:
		break; /* LSR and MSR writes are factory test modes */
	}
}

void serial_pio(void *opaque, uint64_t offset, uint8_t *data, uint32_t len, bool is_write)
{
	struct serial *s = opaque;
	pthread_mutex_lock(&s->lock);
	/* the chip is 8 bits wide: a wider access is a run of byte accesses, past the end float high */
	for (uint32_t i = 0; i < len; i++) {
		if (offset >= SERIAL_NR_PORTS || i >= SERIAL_NR_PORTS - offset) {
			if (!is_write)
				data[i] = 0xff;
			continue;
		}
		if (is_write)
			serial_write(s, (unsigned)offset + i, data[i]);
		else
			data[i] = serial_read(s, (unsigned)offset + i);
	}
	serial_update_input(s);
	serial_update_irq(s);
	pthread_mutex_unlock(&s->lock);
}

int serial_new(const struct serial_config *cfg, struct serial **out)
{
	struct serial *s = calloc(1, sizeof(*s));
	if (!s)
		return -ENOMEM;
	s->cfg = *cfg;
	s->epfd = -1;
	s->irq_level = 0; /* lines start low */
	s->dll = 12;      /* 9600 baud, as firmware would leave it */
	s->lcr = 0x03;    /* 8N1 */
	s->msr = serial_msr_lines(0);
	pthread_mutex_init(&s->lock, NULL);
	if (cfg->in_fd >= 0) {
		s->epfd = epoll_create1(EPOLL_CLOEXEC);
		if (s->epfd < 0)
			goto fail_errno;
		struct epoll_event ev = { .events = EPOLLIN, .data.fd = cfg->in_fd };
		if (epoll_ctl(s->epfd, EPOLL_CTL_ADD, cfg->in_fd, &ev) == 0) {
			/* pollable; start unwatched until the guest enables receive interrupts */
			epoll_ctl(s->epfd, EPOLL_CTL_DEL, cfg->in_fd, NULL);
			s->pollable = true;
			if (!cfg->io) {
				s->in_eof = true;
			} else {
				int r = ioloop_add(cfg->io, s->epfd, EPOLLIN, serial_input_ready, s);
				if (r) {
					errno = -r;
					goto fail_errno;
				}
			}
		} else if (errno == EPERM) {
			close(s->epfd);
			s->epfd = -1;
		} else {
			goto fail_errno;
		}
	}
	*out = s;
	return 0;

fail_errno:;
	int e = -errno;
	if (s->epfd >= 0)
		close(s->epfd);
	pthread_mutex_destroy(&s->lock);
	free(s);
	return e;
}

void serial_free(struct serial *s)
{
	if (!s)
		return;
	if (s->epfd >= 0) {
		if (s->pollable && s->cfg.io)
			ioloop_del(s->cfg.io, s->epfd);
		close(s->epfd);
	}
	pthread_mutex_destroy(&s->lock);
	free(s);
}

int serial_quiesce(struct serial *s)
{
	pthread_mutex_lock(&s->lock);
	s->quiesced = true;
	serial_update_input(s);
	pthread_mutex_unlock(&s->lock);
	return 0;
}

void serial_resume(struct serial *s)
{
	pthread_mutex_lock(&s->lock);
	s->quiesced = false;
	serial_update_input(s);
	serial_update_irq(s);
	pthread_mutex_unlock(&s->lock);
}

/* ---- VM glue ---- */

static void serial_vm_irq(void *ctx, unsigned irq, int level)
{
	int r = vm_irq_line(ctx, irq, level);
	if (r)
		debugx("serial: irq %u level %d: %s", irq, level, strerror(-r));
}

static int serial_dev_quiesce(void *opaque)
{
	return serial_quiesce(opaque);
}

static void serial_dev_resume(void *opaque)
{
	serial_resume(opaque);
}

static int serial_dev_save(void *opaque, void *fdt)
{
	return serial_save(opaque, fdt);
}

static int serial_dev_restore(void *opaque, const void *fdt, int node)
{
	return serial_restore(opaque, fdt, node);
}

static void serial_dev_destroy(void *opaque)
{
	struct serial *s = opaque;
	bus_unregister(&s->vm->pio, s->base);
	serial_free(s);
}

int serial_create(struct vm *vm, uint16_t base, unsigned irq, int in_fd, int out_fd, struct serial **out)
{
	struct serial_config cfg = { .irq = irq, .in_fd = in_fd, .out_fd = out_fd, .io = &vm->io,
				     .set_irq = serial_vm_irq, .ctx = vm };
	struct serial *s;
	int r = serial_new(&cfg, &s);
	if (r)
		return r;
	s->vm = vm;
	s->base = base;
	snprintf(s->name, sizeof(s->name), "serial@%x", base);
	r = bus_register(&vm->pio, base, SERIAL_NR_PORTS, serial_pio, s, s->name);
	if (r) {
		serial_free(s);
		return r;
	}
	s->dev = (struct vm_device){ .name = s->name, .opaque = s, .quiesce = serial_dev_quiesce,
				     .resume = serial_dev_resume, .save = serial_dev_save,
				     .restore = serial_dev_restore, .destroy = serial_dev_destroy };
	vm_add_device(vm, &s->dev);
	if (out)
		*out = s;
	return 0;
}

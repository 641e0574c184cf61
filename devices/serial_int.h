/* serial_int.h - the 16550A register model, shared by the UART and its checkpoint half (_persist.c). */
#ifndef FTVMM_SERIAL_INT_H
#define FTVMM_SERIAL_INT_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include "../vmm/vm.h"
#include "serial.h"

enum { UART_RX, UART_IER, UART_IIR, UART_LCR, UART_MCR, UART_LSR, UART_MSR, UART_SCR };
#define UART_TX UART_RX
#define UART_FCR UART_IIR

#define IER_RDI 0x01
#define IER_THRI 0x02
#define IER_RLSI 0x04
#define IER_MSI 0x08
#define IER_MASK 0x0f

#define IIR_NO_INT 0x01
#define IIR_MSI 0x00
#define IIR_THRI 0x02
#define IIR_RDI 0x04
#define IIR_RLSI 0x06
#define IIR_ID_MASK 0x0f
#define IIR_FIFO_ON 0xc0

#define FCR_ENABLE 0x01
#define FCR_CLEAR_RX 0x02
#define FCR_DMA 0x08
#define FCR_TRIGGER 0xc0
#define FCR_KEPT (FCR_ENABLE | FCR_DMA | FCR_TRIGGER)

#define LCR_DLAB 0x80

#define MCR_DTR 0x01
#define MCR_RTS 0x02
#define MCR_OUT1 0x04
#define MCR_OUT2 0x08
#define MCR_LOOP 0x10
#define MCR_MASK 0x1f

#define LSR_DR 0x01
#define LSR_OE 0x02
#define LSR_ERRORS 0x1e /* OE, PE, FE, BI: latched until LSR is read */
#define LSR_THRE 0x20
#define LSR_TEMT 0x40

#define MSR_DCTS 0x01
#define MSR_DDSR 0x02
#define MSR_TERI 0x04
#define MSR_DDCD 0x08
#define MSR_DELTAS 0x0f
#define MSR_CTS 0x10
#define MSR_DSR 0x20
#define MSR_RI 0x40
#define MSR_DCD 0x80

struct serial {
	pthread_mutex_t lock; /* registers are touched by vCPU threads, the FIFO also by the I/O loop */
	struct serial_config cfg;

	/* guest-visible state: exactly what save/restore carries */
	uint8_t ier, lcr, mcr, fcr, scr, dll, dlm;
	uint8_t lsr_err;
	uint8_t msr; /* line status bits 4..7 plus the delta bits 0..3 */
	bool thri_pending;
	uint8_t rx[SERIAL_RX_FIFO_SIZE];
	unsigned rx_head, rx_count;

	/* host side. in_fd sits in a private epoll set that the loop watches: adding and removing in_fd
	 * there gates input without re-registering with the loop (which keeps a node per registration). */
	int epfd;
	bool pollable; /* false for regular files and /dev/null, which epoll refuses: read on demand */
	bool watching, in_eof, out_dead, quiesced;
	int irq_level; /* the level last driven */

	/* VM glue */
	struct vm *vm;
	uint16_t base;
	char name[16];
	struct vm_device dev;
};

/* serial.c. The modem status lines the chip shows for an MCR value (loopback wires them to MCR). */
uint8_t serial_msr_lines(uint8_t mcr);
/* Lock held: drive the IRQ line to what the registers call for (only a change is driven); start or
 * stop watching host input. */
void serial_update_irq(struct serial *s);
void serial_update_input(struct serial *s);

#endif

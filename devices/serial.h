/* serial.h - 8250/16550A UART: register model, host console input/output and checkpoint state. */
#ifndef FTVMM_SERIAL_H
#define FTVMM_SERIAL_H

#include <stdbool.h>
#include <stdint.h>

struct vm;
struct ioloop;
struct serial;

#define SERIAL_COM1_BASE 0x3f8
#define SERIAL_NR_PORTS 8
/* Receive FIFO as the guest sees it. Bigger than a real 16550A's 16 bytes so that pasted input does not
 * cost one interrupt per 16 bytes; host input beyond it stays in the host fd (backpressure). */
#define SERIAL_RX_FIFO_SIZE 1024

struct serial_config {
	unsigned irq;  /* passed back to set_irq */
	int in_fd;     /* host input, -1 for none; watched on `io` (regular files are read on demand) */
	int out_fd;    /* host output, -1 discards; every THR byte is written at once */
	struct ioloop *io; /* where in_fd is watched; NULL: no host input */
	/* Drive the interrupt line: level 1 while an enabled interrupt is pending (and OUT2 is set),
	 * 0 otherwise. Called only on a change, with the UART lock held, from vCPU or I/O threads. */
	void (*set_irq)(void *ctx, unsigned irq, int level);
	void *ctx;
};

/* Device core, no VM. The fds stay owned by the caller. 0 or -errno. */
int serial_new(const struct serial_config *cfg, struct serial **out);
/* Stop watching in_fd and free. The I/O loop must not be running a callback for it (stopped, or
 * serial_quiesce done first). */
void serial_free(struct serial *s);
/* Bus handler for the 8 registers; offset 0..7 from the base, wider accesses split into bytes. */
void serial_pio(void *opaque, uint64_t offset, uint8_t *data, uint32_t len, bool is_write);

/* Checkpoint halves. quiesce stops consuming host input (bytes already in the FIFO are state). */
int serial_quiesce(struct serial *s);
void serial_resume(struct serial *s);
int serial_save(struct serial *s, void *fdt);
/* All or nothing: on error the device is unchanged. Moves the line to the restored level. */
int serial_restore(struct serial *s, const void *fdt, int node);

/* Glue: a UART at `base` on vm->pio raising GSI `irq` via vm_irq_line, input watched on vm->io,
 * registered as vm_device "serial@<base hex>" (destroyed by vm_destroy, after vm_run_until_exit
 * has stopped the I/O loop). 0 or -errno. */
int serial_create(struct vm *vm, uint16_t base, unsigned irq, int in_fd, int out_fd, struct serial **out);

#endif

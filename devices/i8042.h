/* i8042.h - PS/2 keyboard controller (ports 0x60/0x64) with a keyboard and an empty mouse port. */
#ifndef FTVMM_I8042_H
#define FTVMM_I8042_H

#include <stdbool.h>
#include <stdint.h>

struct vm;
struct i8042;

#define I8042_DATA_PORT 0x60
#define I8042_CMD_PORT 0x64 /* status on read */
#define I8042_KBD_IRQ 1
#define I8042_AUX_IRQ 12

struct i8042_config {
	/* Drive IRQ 1 or 12. Called only on a change, with the controller lock held. */
	void (*set_irq)(void *ctx, unsigned irq, int level);
	/* The guest pulsed the reset line (command 0xFE, or output port bit 0 cleared). Called without
	 * the lock, maybe several times (Linux's reboot=k sends 0xFE ten times). */
	void (*reset)(void *ctx);
	void *ctx;
};

/* Device core, no VM. 0 or -errno. */
int i8042_new(const struct i8042_config *cfg, struct i8042 **out);
void i8042_free(struct i8042 *k);
/* One access at an absolute port (0x60 or 0x64); other ports read as all ones. */
void i8042_io(struct i8042 *k, uint16_t port, uint8_t *data, uint32_t len, bool is_write);
/* Checkpoint halves; restore is all or nothing and moves IRQ 1/12 to the restored levels. */
int i8042_save(struct i8042 *k, void *fdt);
int i8042_restore(struct i8042 *k, const void *fdt, int node);

/* Glue: ports 0x60 and 0x64 on vm->pio, IRQs via vm_irq_line, reset => vm_request_exit(VM_EXIT_REBOOT),
 * vm_device "i8042" (destroyed by vm_destroy). 0 or -errno. */
int i8042_create(struct vm *vm, struct i8042 **out);

#endif

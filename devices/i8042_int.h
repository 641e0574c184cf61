/* i8042_int.h - the 8042's register model, shared by the controller and its checkpoint half (_persist.c). */
#ifndef FTVMM_I8042_INT_H
#define FTVMM_I8042_INT_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include "../vmm/vm.h"
#include "i8042.h"

#define STR_OBF 0x01
#define STR_SYS 0x04
#define STR_CMD 0x08 /* last write went to the command port */
#define STR_KEYLOCK 0x10 /* set = keyboard not inhibited; Linux warns "Keylock active" when clear */
#define STR_AUXDATA 0x20
#define STR_TIMEOUT 0x40

#define CTR_KBDINT 0x01
#define CTR_AUXINT 0x02
#define CTR_SYS 0x04
#define CTR_KBDDIS 0x10
#define CTR_AUXDIS 0x20
#define CTR_XLATE 0x40

#define OUT_RESET 0x01 /* active low */
#define OUT_A20 0x02
#define OUT_KBD_OBF 0x10
#define OUT_AUX_OBF 0x20

#define Q_AUX 0x01
#define Q_TIMEOUT 0x02
#define Q_FLAGS (Q_AUX | Q_TIMEOUT)
#define I8042_QUEUE 16
#define I8042_RAM 32

#define KBD_ACK 0xfa
#define KBD_RESEND 0xfe
#define KBD_BAT_OK 0xaa
#define KBD_SETLEDS 0xed
#define KBD_SCANSET 0xf0
#define KBD_SETREP 0xf3

struct i8042 {
	pthread_mutex_t lock;
	struct i8042_config cfg;

	uint8_t ram[I8042_RAM]; /* ram[0] is the command byte (CTR) */
	uint8_t outport;
	uint8_t pending;  /* controller command waiting for its data byte, 0 = none */
	bool last_cmd;
	uint8_t last_out; /* what the data port reads when nothing is buffered */
	/* The output buffer and what queues behind it. Controller replies and device bytes share it, as
	 * they share the one buffer on the chip; a real device waits while the buffer is full. */
	uint8_t q_data[I8042_QUEUE], q_flags[I8042_QUEUE];
	unsigned q_head, q_count;

	/* the keyboard on the first port; nothing is plugged into the second (mouse) port */
	uint8_t kbd_pending; /* command waiting for its parameter */
	uint8_t kbd_set, kbd_leds, kbd_last;
	bool kbd_scan;

	int irq_level[2]; /* kbd, aux: the levels last driven */

	struct vm *vm;
	struct vm_device dev;
};

/* i8042.c. Lock held: drive IRQ 1 and 12 to what the output buffer and the command byte call for
 * (edge: drop them first, for the next byte's rising edge). */
void i8042_update_irq(struct i8042 *k, bool edge);
/* Whether a controller command waits for a data byte. */
bool i8042_takes_data(uint8_t cmd);

#endif

/* i8042.c - 8042 keyboard controller: commands, output buffer, a minimal keyboard, reset line. */
#include "i8042.h"
#include "i8042_int.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "../vmm/util.h"
#include "../vmm/vm.h"

static void q_put(struct i8042 *k, uint8_t v, uint8_t flags)
{
	if (k->q_count == I8042_QUEUE)
		return; /* only a guest that never reads can fill it; the device would stall, we drop */
	unsigned i = (k->q_head + k->q_count) % I8042_QUEUE;
	k->q_data[i] = v;
	k->q_flags[i] = flags;
	k->q_count++;
}

/* A byte sent by the keyboard itself (remembered for its RESEND command). */
static void kbd_put(struct i8042 *k, uint8_t v)
{
	q_put(k, v, 0);
	k->kbd_last = v;
}

static uint8_t i8042_status(const struct i8042 *k)
{
	uint8_t st = STR_KEYLOCK | (k->last_cmd ? STR_CMD : 0) | ((k->ram[0] & CTR_SYS) ? STR_SYS : 0);
	if (k->q_count) {
		uint8_t f = k->q_flags[k->q_head];
		st |= STR_OBF | ((f & Q_AUX) ? STR_AUXDATA : 0) | ((f & Q_TIMEOUT) ? STR_TIMEOUT : 0);
	}
	return st;
}

static void set_line(struct i8042 *k, int which, int level)
{
	if (k->irq_level[which] == level)
		return;
	k->irq_level[which] = level;
	if (k->cfg.set_irq)
		k->cfg.set_irq(k->cfg.ctx, which ? I8042_AUX_IRQ : I8042_KBD_IRQ, level);
}

/* IRQ 1 and 12 are edge-triggered ISA lines: each byte needs its own rising edge, so when a read
 * uncovers the next byte the line first drops (`edge`), as the chip's OBF pin does. */
void i8042_update_irq(struct i8042 *k, bool edge)
{
	int kbd = 0, aux = 0;
	if (k->q_count) {
		if (k->q_flags[k->q_head] & Q_AUX)
			aux = !!(k->ram[0] & CTR_AUXINT);
		else
			kbd = !!(k->ram[0] & CTR_KBDINT);
	}
	if (edge) {
		set_line(k, 0, 0);
		set_line(k, 1, 0);
	}
	set_line(k, 0, kbd);
	set_line(k, 1, aux);
}

static void kbd_defaults(struct i8042 *k)
{
	k->kbd_set = 2;
	k->kbd_leds = 0;
	k->kbd_pending = 0;
}

/* A byte from the host to the keyboard: just enough for atkbd to find an "AT Translated Set 2
 * keyboard". Unknown commands get RESEND, which libps2 turns into a fast failure, not a timeout. */
static void kbd_write(struct i8042 *k, uint8_t v)
{
	uint8_t cmd = k->kbd_pending;
	if (cmd) {
		k->kbd_pending = 0;
		if (cmd == KBD_SETLEDS) {
			k->kbd_leds = v & 7;
			kbd_put(k, KBD_ACK);
		} else if (cmd == KBD_SETREP) {
			kbd_put(k, KBD_ACK);
		} else if (v == 0) { /* KBD_SCANSET: report the current set */
			static const uint8_t xlated[4] = { 0, 0x43, 0x41, 0x3f };
			kbd_put(k, KBD_ACK);
			kbd_put(k, (k->ram[0] & CTR_XLATE) ? xlated[k->kbd_set] : k->kbd_set);
		} else if (v <= 3) {
			k->kbd_set = v;
			kbd_put(k, KBD_ACK);
		} else {
			kbd_put(k, KBD_RESEND);
		}
		return;
	}
	switch (v) {
	case KBD_SETLEDS:
	case KBD_SETREP:
	case KBD_SCANSET:
		k->kbd_pending = v;
		kbd_put(k, KBD_ACK);
		break;
	case 0xee: /* echo */
		kbd_put(k, 0xee);
		break;
	case 0xf2: /* get ID: MF2 keyboard, second byte as the controller's translation shows it */
		kbd_put(k, KBD_ACK);
		kbd_put(k, 0xab);
		kbd_put(k, (k->ram[0] & CTR_XLATE) ? 0x41 : 0x83);
		break;
	case 0xf4:
		k->kbd_scan = true;
		kbd_put(k, KBD_ACK);
		break;
	case 0xf5:
		kbd_defaults(k);
		k->kbd_scan = false;
		kbd_put(k, KBD_ACK);
		break;
	case 0xf6:
		kbd_defaults(k);
		kbd_put(k, KBD_ACK);
		break;
	case 0xf7: case 0xf8: case 0xf9: case 0xfa: case 0xfb: case 0xfc: case 0xfd:
		kbd_put(k, KBD_ACK); /* set-3 key type commands: accepted, nothing to do without keys */
		break;
	case 0xfe: /* resend */
		kbd_put(k, k->kbd_last);
		break;
	case 0xff:
		kbd_defaults(k);
		k->kbd_scan = true;
		kbd_put(k, KBD_ACK);
		kbd_put(k, KBD_BAT_OK);
		break;
	default:
		kbd_put(k, KBD_RESEND);
		break;
	}
}

bool i8042_takes_data(uint8_t cmd)
{
	return (cmd >= 0x60 && cmd <= 0x7f) || (cmd >= 0xd1 && cmd <= 0xd4);
}

/* Returns true when the guest pulsed the reset line. */
static bool i8042_command(struct i8042 *k, uint8_t cmd)
{
	k->pending = 0;
	if (cmd >= 0x20 && cmd <= 0x3f) {
		q_put(k, k->ram[cmd & 0x1f], 0);
		return false;
	}
	if (i8042_takes_data(cmd)) {
		k->pending = cmd;
		return false;
	}
	switch (cmd) {
	case 0xa4: /* password installed? no */
		q_put(k, 0xf1, 0);
		break;
	case 0xa7:
		k->ram[0] |= CTR_AUXDIS;
		break;
	case 0xa8:
		k->ram[0] &= ~CTR_AUXDIS;
		break;
	case 0xa9: /* aux interface test: lines fine */
	case 0xab: /* keyboard interface test */
		q_put(k, 0x00, 0);
		break;
	case 0xaa: /* self test */
		k->ram[0] |= CTR_SYS;
		q_put(k, 0x55, 0);
		break;
	case 0xad:
		k->ram[0] |= CTR_KBDDIS;
		break;
	case 0xae:
		k->ram[0] &= ~CTR_KBDDIS;
		break;
	case 0xc0: /* input port: keyboard not inhibited */
		q_put(k, 0x80, 0);
		break;
	case 0xd0: {
		uint8_t out = k->outport & ~(OUT_KBD_OBF | OUT_AUX_OBF);
		if (k->q_count)
			out |= (k->q_flags[k->q_head] & Q_AUX) ? OUT_AUX_OBF : OUT_KBD_OBF;
		q_put(k, out, 0);
		break;
	}
	case 0xdd:
		k->outport &= ~OUT_A20;
		break;
	case 0xdf:
		k->outport |= OUT_A20;
		break;
	case 0xe0: /* test inputs */
		q_put(k, 0x00, 0);
		break;
	default:
		/* 0xf0..0xff pulse output lines whose mask bit is 0; bit 0 is the CPU reset line */
		if (cmd >= 0xf0 && !(cmd & 1))
			return true;
		break; /* anything else is a command this chip does not have: ignored, as on many clones */
	}
	return false;
}

static bool i8042_data(struct i8042 *k, uint8_t v)
{
	uint8_t cmd = k->pending;
	k->pending = 0;
	if (cmd >= 0x60 && cmd <= 0x7f) {
		k->ram[cmd & 0x1f] = v;
		return false;
	}
	switch (cmd) {
	case 0xd1:
		k->outport = v;
		return !(v & OUT_RESET);
	case 0xd2:
		q_put(k, v, 0);
		break;
	case 0xd3:
		q_put(k, v, Q_AUX);
		break;
	case 0xd4:
		/* no mouse: the controller reports a transmit timeout, which makes psmouse give up at once */
		q_put(k, 0xfe, Q_AUX | Q_TIMEOUT);
		break;
	default:
		kbd_write(k, v);
		break;
	}
	return false;
}

void i8042_io(struct i8042 *k, uint16_t port, uint8_t *data, uint32_t len, bool is_write)
{
	bool reset = false, edge = false;
	pthread_mutex_lock(&k->lock);
	for (uint32_t i = 0; i < len; i++) {
		/* byte-wide ports: the rest of a wider access hits neighbours that are not ours */
		uint32_t p = (uint32_t)port + i;
		if (p == I8042_DATA_PORT) {
			if (is_write) {
				k->last_cmd = false;
				reset |= i8042_data(k, data[i]);
			} else {
				if (k->q_count) {
					k->last_out = k->q_data[k->q_head];
					k->q_head = (k->q_head + 1) % I8042_QUEUE;
					k->q_count--;
					edge = true;
				}
				data[i] = k->last_out;
			}
		} else if (p == I8042_CMD_PORT) {
			if (is_write) {
				k->last_cmd = true;
				reset |= i8042_command(k, data[i]);
			} else {
				data[i] = i8042_status(k);
			}
		} else if (!is_write) {
			data[i] = 0xff;
		}
	}
	i8042_update_irq(k, edge);
	pthread_mutex_unlock(&k->lock);
	if (reset && k->cfg.reset)
		k->cfg.reset(k->cfg.ctx);
}

int i8042_new(const struct i8042_config *cfg, struct i8042 **out)
{
	struct i8042 *k = calloc(1, sizeof(*k));
	if (!k)
		return -ENOMEM;
	pthread_mutex_init(&k->lock, NULL);
	k->cfg = *cfg;
	/* what a BIOS leaves: keyboard interrupt on, POST passed, scancode translation on (so Linux keeps
	 * translating, like on any PC), mouse port disabled */
	k->ram[0] = CTR_KBDINT | CTR_SYS | CTR_XLATE | CTR_AUXDIS;
	k->outport = OUT_RESET | OUT_A20;
	kbd_defaults(k);
	k->kbd_scan = true;
	k->kbd_last = KBD_ACK;
	*out = k;
	return 0;
}

void i8042_free(struct i8042 *k)
{
	if (!k)
		return;
	pthread_mutex_destroy(&k->lock);
	free(k);
}

/* ---- VM glue ---- */

static void i8042_vm_irq(void *ctx, unsigned irq, int level)
{
	int r = vm_irq_line(ctx, irq, level);
	if (r)
		debugx("i8042: irq %u level %d: %s", irq, level, strerror(-r));
}

static void i8042_vm_reset(void *ctx)
{
	vm_request_exit(ctx, VM_EXIT_REBOOT);
}

static void i8042_pio_data(void *opaque, uint64_t off, uint8_t *data, uint32_t len, bool is_write)
{
	i8042_io(opaque, (uint16_t)(I8042_DATA_PORT + off), data, len, is_write);
}

static void i8042_pio_cmd(void *opaque, uint64_t off, uint8_t *data, uint32_t len, bool is_write)
{
	i8042_io(opaque, (uint16_t)(I8042_CMD_PORT + off), data, len, is_write);
}

static int i8042_dev_save(void *opaque, void *fdt)
{
	return i8042_save(opaque, fdt);
}

static int i8042_dev_restore(void *opaque, const void *fdt, int node)
{
	return i8042_restore(opaque, fdt, node);
}

static void i8042_dev_destroy(void *opaque)
{
	struct i8042 *k = opaque;
	bus_unregister(&k->vm->pio, I8042_DATA_PORT);
	bus_unregister(&k->vm->pio, I8042_CMD_PORT);
	i8042_free(k);
}

int i8042_create(struct vm *vm, struct i8042 **out)
{
	struct i8042_config cfg = { .set_irq = i8042_vm_irq, .reset = i8042_vm_reset, .ctx = vm };
	struct i8042 *k;
	int r = i8042_new(&cfg, &k);
	if (r)
		return r;
	k->vm = vm;
	r = bus_register(&vm->pio, I8042_DATA_PORT, 1, i8042_pio_data, k, "i8042-data");
	if (r) {
		i8042_free(k);
		return r;
	}
	r = bus_register(&vm->pio, I8042_CMD_PORT, 1, i8042_pio_cmd, k, "i8042-cmd");
	if (r) {
		bus_unregister(&vm->pio, I8042_DATA_PORT);
		i8042_free(k);
		return r;
	}
	k->dev = (struct vm_device){ .name = "i8042", .opaque = k, .save = i8042_dev_save,
				     .restore = i8042_dev_restore, .destroy = i8042_dev_destroy };
	vm_add_device(vm, &k->dev);
	if (out)
		*out = k;
	return 0;
}

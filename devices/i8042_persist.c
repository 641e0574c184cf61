/* i8042_persist.c - the 8042's checkpoint half: controller RAM, output queue, ports, the keyboard's state. */
#include "i8042_int.h"

#include <errno.h>
#include <string.h>

#include "../vmm/fdt_prop.h"
#include "../vmm/util.h"

/*
 * Saved: the controller RAM (command byte first), the output buffer with what queues behind it (byte
 * and source flags, oldest first), the output port, a command waiting for its data byte, and the
 * keyboard's own state (a command waiting for its parameter, scancode set, LEDs, last byte, scanning).
 *
 * Restore, in the order it runs and why:
 *  1. Parse every property within its range and refuse states the controller cannot reach (a pending
 *     command that takes no data, a keyboard command that takes no parameter, scancode set 0, queue
 *     flags it never sets): all before the lock, so a refusal leaves the device unchanged.
 *  2. Under the lock, take it all (the queue re-based at index 0).
 *  3. Drive IRQ 1 and 12: the cached levels are what KVM holds for our source (KVM_SET_IRQCHIP does
 *     not touch per-source line levels), so moving only the lines that differ keeps both in agreement.
 */

int i8042_save(struct i8042 *k, void *fdt)
{
	pthread_mutex_lock(&k->lock);
	uint8_t ram[I8042_RAM], q[2 * I8042_QUEUE];
	memcpy(ram, k->ram, sizeof(ram));
	unsigned n = k->q_count;
	for (unsigned i = 0; i < n; i++) {
		unsigned j = (k->q_head + i) % I8042_QUEUE;
		q[2 * i] = k->q_data[j];
		q[2 * i + 1] = k->q_flags[j];
	}
	const struct {
		const char *name;
		uint32_t v;
	} regs[] = {
		{ "outport", k->outport }, { "pending", k->pending }, { "last-cmd", k->last_cmd },
		{ "last-out", k->last_out }, { "kbd-pending", k->kbd_pending }, { "kbd-set", k->kbd_set },
		{ "kbd-leds", k->kbd_leds }, { "kbd-last", k->kbd_last }, { "kbd-scan", k->kbd_scan },
	};
	pthread_mutex_unlock(&k->lock);

	int r = fdtp_put_blob(fdt, "ram", ram, sizeof(ram));
	if (!r)
		r = fdtp_put_blob(fdt, "queue", q, 2 * n);
	for (size_t i = 0; i < ARRAY_SIZE(regs) && !r; i++)
		r = fdtp_put_u32(fdt, regs[i].name, regs[i].v);
	return r;
}

int i8042_restore(struct i8042 *k, const void *fdt, int node)
{
	const uint8_t *ram, *q;
	uint32_t ramlen, qlen, outport, pending, last_cmd, last_out, kpend, kset, kleds, klast, kscan;
	int r = fdtp_ref(fdt, node, "ram", I8042_RAM, &ram, &ramlen);
	if (!r)
		r = fdtp_ref(fdt, node, "queue", 2 * I8042_QUEUE, &q, &qlen);
	const struct fdtp_field regs[] = {
		{ "outport", 0xff, &outport },   { "pending", 0xff, &pending }, { "last-cmd", 1, &last_cmd },
		{ "last-out", 0xff, &last_out }, { "kbd-pending", 0xff, &kpend }, { "kbd-set", 3, &kset },
		{ "kbd-leds", 7, &kleds },       { "kbd-last", 0xff, &klast },  { "kbd-scan", 1, &kscan },
	};
	if (!r)
		r = fdtp_u32_fields(fdt, node, regs, ARRAY_SIZE(regs));
	if (r)
		return r;
	if (ramlen != I8042_RAM || (qlen & 1) || (pending && !i8042_takes_data((uint8_t)pending)) || kset < 1 ||
	    (kpend && kpend != KBD_SETLEDS && kpend != KBD_SETREP && kpend != KBD_SCANSET))
		return -EINVAL;
	for (uint32_t i = 1; i < qlen; i += 2)
		if (q[i] & ~Q_FLAGS)
			return -EINVAL;

	pthread_mutex_lock(&k->lock);
	memcpy(k->ram, ram, I8042_RAM);
	k->q_head = 0;
	k->q_count = qlen / 2;
	for (unsigned i = 0; i < k->q_count; i++) {
		k->q_data[i] = q[2 * i];
		k->q_flags[i] = q[2 * i + 1];
	}
	k->outport = (uint8_t)outport;
	k->pending = (uint8_t)pending;
	k->last_cmd = last_cmd;
	k->last_out = (uint8_t)last_out;
	k->kbd_pending = (uint8_t)kpend;
	k->kbd_set = (uint8_t)kset;
	k->kbd_leds = (uint8_t)kleds;
	k->kbd_last = (uint8_t)klast;
	k->kbd_scan = kscan;
	i8042_update_irq(k, false); /* step 3 */
	pthread_mutex_unlock(&k->lock);
	return 0;
}

/* serial_persist.c - the UART's checkpoint half: registers and received bytes not yet read by the guest. */
#include "serial_int.h"

#include <errno.h>
#include <string.h>

#include "../vmm/fdt_prop.h"
#include "../vmm/util.h"

/*
 * Saved: every guest-visible register and the receive FIFO (oldest byte first). Not saved: the host
 * side (which fd, whether it is watched, EOF seen), which belongs to this process, not the guest.
 *
 * Restore, in the order it runs and why:
 *  1. Parse every property, each within its register's range, and refuse states the register model
 *     cannot reach (error bits outside LSR's, FCR bits the chip does not keep, MSR lines that do not
 *     follow MCR): all before the lock, so a refusal leaves the device unchanged.
 *  2. Under the lock, take the registers and the FIFO (re-based at index 0).
 *  3. Re-decide host input (the restored IER and MCR say whether the guest listens), then drive the IRQ
 *     line: irq_level is what KVM holds for our source (KVM_SET_IRQCHIP leaves per-source line levels
 *     alone), so driving only a difference keeps the two in agreement.
 */

int serial_save(struct serial *s, void *fdt)
{
	pthread_mutex_lock(&s->lock);
	const struct {
		const char *name;
		uint32_t v;
	} regs[] = {
		{ "ier", s->ier }, { "lcr", s->lcr }, { "mcr", s->mcr }, { "fcr", s->fcr },
		{ "scr", s->scr }, { "dll", s->dll }, { "dlm", s->dlm }, { "lsr-err", s->lsr_err },
		{ "msr", s->msr }, { "thri-pending", s->thri_pending },
	};
	uint8_t fifo[SERIAL_RX_FIFO_SIZE];
	unsigned n = s->rx_count;
	for (unsigned i = 0; i < n; i++)
		fifo[i] = s->rx[(s->rx_head + i) % SERIAL_RX_FIFO_SIZE];
	pthread_mutex_unlock(&s->lock);

	int r = 0;
	for (size_t i = 0; i < ARRAY_SIZE(regs) && !r; i++)
		r = fdtp_put_u32(fdt, regs[i].name, regs[i].v);
	if (!r)
		r = fdtp_put_blob(fdt, "rx-fifo", fifo, n);
	return r;
}

int serial_restore(struct serial *s, const void *fdt, int node)
{
	uint32_t ier, lcr, mcr, fcr, scr, dll, dlm, lsr_err, msr, thri, n;
	const uint8_t *fifo;
	const struct fdtp_field regs[] = {
		{ "ier", IER_MASK, &ier }, { "lcr", 0xff, &lcr }, { "mcr", MCR_MASK, &mcr },
		{ "fcr", 0xff, &fcr },     { "scr", 0xff, &scr }, { "dll", 0xff, &dll },
		{ "dlm", 0xff, &dlm },     { "lsr-err", LSR_ERRORS, &lsr_err }, { "msr", 0xff, &msr },
		{ "thri-pending", 1, &thri },
	};
	int r = fdtp_u32_fields(fdt, node, regs, ARRAY_SIZE(regs));
	if (!r)
		r = fdtp_ref(fdt, node, "rx-fifo", SERIAL_RX_FIFO_SIZE, &fifo, &n);
	if (r)
		return r;
	/* reject states the register model cannot reach */
	if ((lsr_err & ~LSR_ERRORS) || (fcr & ~FCR_KEPT) || (!(fcr & FCR_ENABLE) && fcr) ||
	    (msr & ~MSR_DELTAS) != serial_msr_lines((uint8_t)mcr))
		return -EINVAL;

	pthread_mutex_lock(&s->lock);
	s->ier = (uint8_t)ier;
	s->lcr = (uint8_t)lcr;
	s->mcr = (uint8_t)mcr;
	s->fcr = (uint8_t)fcr;
	s->scr = (uint8_t)scr;
	s->dll = (uint8_t)dll;
	s->dlm = (uint8_t)dlm;
	s->lsr_err = (uint8_t)lsr_err;
	s->msr = (uint8_t)msr;
	s->thri_pending = thri;
	memcpy(s->rx, fifo, n);
	s->rx_head = 0;
	s->rx_count = n;
	serial_update_input(s); /* step 3 */
	serial_update_irq(s);
	pthread_mutex_unlock(&s->lock);
	return 0;
}

/* legacy.c - POST port 0x80, system control port A (0x92), reset control 0xCF9. */
#include "legacy.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "../vmm/fdt_prop.h"
#include "../vmm/util.h"
#include "../vmm/vm.h"

/* Port 0x61 (system control port B: PIT channel 2 gate, speaker, refresh toggle) is not here on purpose:
 * vm.c creates the PIT with KVM_PIT_SPEAKER_DUMMY, so KVM answers 0x61 in the kernel from the real
 * channel 2 state, which Linux's PIT-based TSC calibration polls; a userspace copy could only guess. */

#define P92_RESET 0x01
#define P92_A20 0x02
#define RCR_SYS_RST 0x02
#define RCR_RST_CPU 0x04
#define RCR_FULL_RST 0x08

struct legacy {
	pthread_mutex_t lock;
	uint8_t port92; /* only the A20 bit is remembered: the reset bit is a one-shot */
	uint8_t rcr;    /* SYS_RST and FULL_RST select the kind of reset; RST_CPU fires it */
	void (*reset)(void *ctx);
	void *ctx;
	struct vm *vm;
	struct vm_device dev;
};

int legacy_new(void (*reset)(void *ctx), void *ctx, struct legacy **out)
{
	struct legacy *lg = calloc(1, sizeof(*lg));
	if (!lg)
		return -ENOMEM;
	pthread_mutex_init(&lg->lock, NULL);
	lg->port92 = P92_A20; /* A20 is on: the guest is already in long mode when it first runs */
	lg->reset = reset;
	lg->ctx = ctx;
	*out = lg;
	return 0;
}

void legacy_free(struct legacy *lg)
{
	if (!lg)
		return;
	pthread_mutex_destroy(&lg->lock);
	free(lg);
}

/* Returns true if the write asks for a reset; the callback runs after the lock is dropped. */
static bool legacy_byte(struct legacy *lg, uint16_t port, uint8_t *v, bool is_write)
{
	bool reset = false;
	switch (port) {
	case LEGACY_POST_PORT:
		/* POST codes and Linux's io_delay land here: nothing to show, nothing to keep */
		if (!is_write)
			*v = 0xff;
		break;
	case LEGACY_PORT92:
		if (is_write) {
			lg->port92 = *v & P92_A20;
			reset = *v & P92_RESET;
		} else {
			*v = lg->port92;
		}
		break;
	case LEGACY_RCR_PORT:
		if (is_write) {
			lg->rcr = *v & (RCR_SYS_RST | RCR_FULL_RST);
			reset = *v & RCR_RST_CPU;
		} else {
			*v = lg->rcr;
		}
		break;
	default:
		if (!is_write)
			*v = 0xff;
		break;
	}
	return reset;
}

void legacy_io(struct legacy *lg, uint16_t port, uint8_t *data, uint32_t len, bool is_write)
{
	bool reset = false;
	pthread_mutex_lock(&lg->lock);
	/* an ISA port is 8 bits wide: a wider access covers the next ports, which are not ours */
	for (uint32_t i = 0; i < len; i++) {
		if (i == 0)
			reset |= legacy_byte(lg, port, &data[0], is_write);
		else if (!is_write)
			data[i] = 0xff;
	}
	pthread_mutex_unlock(&lg->lock);
	if (reset && lg->reset)
		lg->reset(lg->ctx);
}

void legacy_rcr_io(struct legacy *lg, uint8_t *data, uint32_t len, bool is_write)
{
	legacy_io(lg, LEGACY_RCR_PORT, data, len, is_write);
}

int legacy_save(struct legacy *lg, void *fdt)
{
	pthread_mutex_lock(&lg->lock);
	uint8_t p92 = lg->port92, rcr = lg->rcr;
	pthread_mutex_unlock(&lg->lock);
	int r = fdtp_put_u32(fdt, "port92", p92);
	if (!r)
		r = fdtp_put_u32(fdt, "rcr", rcr);
	return r;
}

int legacy_restore(struct legacy *lg, const void *fdt, int node)
{
	uint32_t p92, rcr;
	int r = fdtp_u32_max(fdt, node, "port92", P92_A20, &p92);
	if (!r)
		r = fdtp_u32_max(fdt, node, "rcr", 0xff, &rcr);
	if (r)
		return r;
	if (rcr & ~(uint32_t)(RCR_SYS_RST | RCR_FULL_RST))
		return -EINVAL;
	pthread_mutex_lock(&lg->lock);
	lg->port92 = (uint8_t)p92;
	lg->rcr = (uint8_t)rcr;
	pthread_mutex_unlock(&lg->lock);
	return 0;
}

/* ---- VM glue ---- */

static void legacy_vm_reset(void *ctx)
{
	vm_request_exit(ctx, VM_EXIT_REBOOT);
}

static void legacy_pio80(void *opaque, uint64_t off, uint8_t *data, uint32_t len, bool is_write)
{
	legacy_io(opaque, (uint16_t)(LEGACY_POST_PORT + off), data, len, is_write);
}

static void legacy_pio92(void *opaque, uint64_t off, uint8_t *data, uint32_t len, bool is_write)
{
	legacy_io(opaque, (uint16_t)(LEGACY_PORT92 + off), data, len, is_write);
}

static int legacy_dev_save(void *opaque, void *fdt)
{
	return legacy_save(opaque, fdt);
}

static int legacy_dev_restore(void *opaque, const void *fdt, int node)
{
	return legacy_restore(opaque, fdt, node);
}

static void legacy_dev_destroy(void *opaque)
{
	struct legacy *lg = opaque;
	bus_unregister(&lg->vm->pio, LEGACY_POST_PORT);
	bus_unregister(&lg->vm->pio, LEGACY_PORT92);
	legacy_free(lg);
}

int legacy_create(struct vm *vm, struct legacy **out)
{
	struct legacy *lg;
	int r = legacy_new(legacy_vm_reset, vm, &lg);
	if (r)
		return r;
	lg->vm = vm;
	r = bus_register(&vm->pio, LEGACY_POST_PORT, 1, legacy_pio80, lg, "post");
	if (r) {
		legacy_free(lg);
		return r;
	}
	r = bus_register(&vm->pio, LEGACY_PORT92, 1, legacy_pio92, lg, "port92");
	if (r) {
		bus_unregister(&vm->pio, LEGACY_POST_PORT);
		legacy_free(lg);
		return r;
	}
	lg->dev = (struct vm_device){ .name = "legacy", .opaque = lg, .save = legacy_dev_save,
				      .restore = legacy_dev_restore, .destroy = legacy_dev_destroy };
	vm_add_device(vm, &lg->dev);
	if (out)
		*out = lg;
	return 0;
}

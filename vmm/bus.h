/* bus.h - the port-I/O and MMIO dispatch registry that every device plugs into. */
#ifndef FTVMM_BUS_H
#define FTVMM_BUS_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

/* Called on a vCPU thread for an access of `len` (1..8) bytes at `offset` from the region base.
 * offset + len may run past the region's end (an access straddling it): handlers check.
 * For a read the handler fills data[0..len); for a write it consumes it. Handlers that share
 * state with other threads lock for themselves. */
typedef void (*bus_handler_fn)(void *opaque, uint64_t offset, uint8_t *data, uint32_t len, bool is_write);

struct bus_region {
	uint64_t base, len;
	bus_handler_fn fn;
	void *opaque;
	const char *name;
};

struct bus {
	pthread_rwlock_t lock; /* regions change rarely (BAR moves); every access reads */
	struct bus_region *regions; /* sorted by base, never overlapping */
	unsigned count, cap;
	const char *name;
};

void bus_init(struct bus *bus, const char *name);
void bus_destroy(struct bus *bus);
/* Returns 0, -EEXIST if [base, base+len) overlaps a registered region, -EINVAL, -ENOMEM. */
int bus_register(struct bus *bus, uint64_t base, uint64_t len, bus_handler_fn fn, void *opaque, const char *name);
/* Remove the region registered at exactly `base`. Returns 0 or -ENOENT. */
int bus_unregister(struct bus *bus, uint64_t base);
/* Dispatch one access. Returns 0 if a region took it, -ENOENT if none did
 * (reads of unclaimed addresses then see all ones, as on real hardware). */
int bus_dispatch(struct bus *bus, uint64_t addr, uint8_t *data, uint32_t len, bool is_write);

#endif

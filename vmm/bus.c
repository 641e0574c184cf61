/* bus.c - sorted-array registry of port/MMIO regions with binary-search dispatch. */
#include "bus.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

void bus_init(struct bus *bus, const char *name)
{
	memset(bus, 0, sizeof(*bus));
	pthread_rwlock_init(&bus->lock, NULL);
	bus->name = name;
}

void bus_destroy(struct bus *bus)
{
	free(bus->regions);
	pthread_rwlock_destroy(&bus->lock);
	bus->regions = NULL;
	bus->count = bus->cap = 0;
}

/* Index of the first region whose end is above addr. */
static unsigned lower_bound(const struct bus *bus, uint64_t addr)
{
	unsigned lo = 0, hi = bus->count;
	while (lo < hi) {
		unsigned mid = (lo + hi) / 2;
		const struct bus_region *r = &bus->regions[mid];
		if (r->base + r->len <= addr)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo;
}

int bus_register(struct bus *bus, uint64_t base, uint64_t len, bus_handler_fn fn, void *opaque, const char *name)
{
	uint64_t end;
	if (!len || !fn || __builtin_add_overflow(base, len, &end))
		return -EINVAL;
	pthread_rwlock_wrlock(&bus->lock);
	unsigned i = lower_bound(bus, base);
	if (i < bus->count && bus->regions[i].base < end) {
		pthread_rwlock_unlock(&bus->lock);
		return -EEXIST;
	}
	if (bus->count == bus->cap) {
		unsigned ncap = bus->cap ? bus->cap * 2 : 16;
		struct bus_region *n = realloc(bus->regions, ncap * sizeof(*n));
		if (!n) {
			pthread_rwlock_unlock(&bus->lock);
			return -ENOMEM;
		}
		bus->regions = n;
		bus->cap = ncap;
	}
	memmove(&bus->regions[i + 1], &bus->regions[i], (bus->count - i) * sizeof(*bus->regions));
	bus->regions[i] = (struct bus_region){ .base = base, .len = len, .fn = fn, .opaque = opaque, .name = name };
	bus->count++;
	pthread_rwlock_unlock(&bus->lock);
	return 0;
}

int bus_unregister(struct bus *bus, uint64_t base)
{
	pthread_rwlock_wrlock(&bus->lock);
	unsigned i = lower_bound(bus, base);
	if (i >= bus->count || bus->regions[i].base != base) {
		pthread_rwlock_unlock(&bus->lock);
		return -ENOENT;
	}
	memmove(&bus->regions[i], &bus->regions[i + 1], (bus->count - i - 1) * sizeof(*bus->regions));
	bus->count--;
	pthread_rwlock_unlock(&bus->lock);
	return 0;
}

int bus_dispatch(struct bus *bus, uint64_t addr, uint8_t *data, uint32_t len, bool is_write)
{
	pthread_rwlock_rdlock(&bus->lock);
	unsigned i = lower_bound(bus, addr);
	if (i < bus->count && bus->regions[i].base <= addr) {
		struct bus_region r = bus->regions[i];
		pthread_rwlock_unlock(&bus->lock);
		r.fn(r.opaque, addr - r.base, data, len, is_write);
		return 0;
	}
	pthread_rwlock_unlock(&bus->lock);
	if (!is_write)
		memset(data, 0xff, len);
	return -ENOENT;
}

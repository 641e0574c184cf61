/* state.c - the machine state of a paused VM as one fdt: its description, vCPUs (vmstate.c) and devices; captured and applied. */
#include "state.h"
#include "../devices/machine.h"
#include "../vmm/fdt_prop.h"
#include "../vmm/util.h"
#include "../vmm/vm.h"
#include "vmstate.h"

#include <errno.h>
#include <libfdt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

int state_put_machine(void *fdt, const struct vm *vm, const struct machine *mach)
{
	int r = 0;
	r |= fdt_begin_node(fdt, "machine");
	r |= fdt_property_u64(fdt, "mem-size", vm->mem.size);
	r |= fdt_property_u32(fdt, "ncpus", vm->ncpus);
	for (unsigned i = 0; mach && i < mach->ndisks; i++) {
		char name[16];
		snprintf(name, sizeof(name), "disk@%u", i);
		r |= fdt_begin_node(fdt, name);
		r |= fdt_property_string(fdt, "path", mach->disks[i].path);
		r |= fdt_property_u64(fdt, "size", mach->disks[i].size); /* no stat() inside the pause */
		r |= fdt_property_u32(fdt, "readonly", mach->disks[i].readonly);
		r |= fdt_end_node(fdt);
	}
	for (unsigned i = 0; mach && i < mach->nnics; i++) {
		char name[16];
		snprintf(name, sizeof(name), "nic@%u", i);
		r |= fdt_begin_node(fdt, name);
		r |= fdt_property_string(fdt, "tap", mach->nics[i].tap);
		r |= fdt_property_u32(fdt, "has-mac", mach->nics[i].has_mac);
		r |= fdt_property(fdt, "mac", mach->nics[i].mac, 6);
		r |= fdt_end_node(fdt);
	}
	r |= fdt_end_node(fdt);
	return r ? -ENOSPC : 0;
}

/* The whole tree into a buffer of size bytes: 0, -ENOSPC when it does not fit, or another -errno. */
static int capture_into(void *fdt, size_t size, struct vm *vm, const struct machine *mach, struct state_times *t)
{
	int r = fdt_create(fdt, (int)size);
	r = r ? r : fdt_finish_reservemap(fdt);
	r = r ? r : fdt_begin_node(fdt, "");
	r = r ? r : fdt_property_u32(fdt, "ftvmm,state-version", VMSTATE_VERSION);
	r = r ? -ENOSPC : state_put_machine(fdt, vm, mach);
	uint64_t t0 = now_ns();
	r = r ? r : vmstate_save_cpus(vm, fdt);
	uint64_t t1 = now_ns();
	r = r ? r : vmstate_save_devices(vm, fdt);
	uint64_t t2 = now_ns();
	t->cpus_ns = t1 - t0;
	t->devices_ns = t2 - t1;
	r = r ? r : (fdt_end_node(fdt) ? -ENOSPC : 0);
	r = r ? r : (fdt_finish(fdt) ? -ENOSPC : 0);
	t->finish_ns = now_ns() - t2;
	return r;
}

int state_capture(struct vm *vm, const struct machine *mach, void **fdt_out, size_t *len_out)
{
	struct state_times t;
	return state_capture_timed(vm, mach, fdt_out, len_out, &t);
}

int state_capture_timed(struct vm *vm, const struct machine *mach, void **fdt_out, size_t *len_out,
			struct state_times *t)
{
	/* 256 KiB + 64 KiB per vCPU, doubled while it does not fit (ft/proto.h's FT_MAX_STATE bounds the
	 * largest, 6 attempts, for a state that comes from the wire) */
	size_t size = (256u << 10) + vm->ncpus * (64u << 10);
	struct rusage u0, u1;
	getrusage(RUSAGE_THREAD, &u0);
	for (int attempt = 0; attempt < 6; attempt++, size *= 2) {
		void *fdt = malloc(size);
		if (!fdt)
			return -ENOMEM;
		int r = capture_into(fdt, size, vm, mach, t);
		getrusage(RUSAGE_THREAD, &u1);
		t->faults = (uint64_t)(u1.ru_minflt - u0.ru_minflt);
		if (!r) {
			*fdt_out = fdt;
			*len_out = fdt_totalsize(fdt);
			return 0;
		}
		free(fdt);
		if (r != -ENOSPC)
			return r;
	}
	return -E2BIG;
}

static int read_disk(const void *fdt, int node, const char *name, struct machine *mach, char *err, size_t errlen)
{
	if (mach->ndisks >= MACHINE_MAX_DISKS)
		return -EINVAL;
	struct machine_disk *d = &mach->disks[mach->ndisks++];
	uint32_t ro = 0;
	d->path = fdt_getprop(fdt, node, "path", NULL);
	fdtp_u32(fdt, node, "readonly", &ro);
	d->readonly = ro;
	fdtp_u64(fdt, node, "size", &d->size); /* restore checks the image still has it */
	if (!d->path) {
		snprintf(err, errlen, "snapshot: %s has no path", name);
		return -EINVAL;
	}
	return 0;
}

static int read_nic(const void *fdt, int node, const char *name, struct machine *mach, char *err, size_t errlen)
{
	if (mach->nnics >= MACHINE_MAX_NICS)
		return -EINVAL;
	struct machine_nic *n = &mach->nics[mach->nnics++];
	const char *tap = fdt_getprop(fdt, node, "tap", NULL);
	uint32_t has = 0;
	fdtp_u32(fdt, node, "has-mac", &has);
	if (!tap || strlen(tap) >= sizeof(n->tap) || fdtp_copy(fdt, node, "mac", n->mac, 6)) {
		snprintf(err, errlen, "snapshot: %s is malformed", name);
		return -EINVAL;
	}
	memcpy(n->tap, tap, strlen(tap) + 1);
	n->has_mac = has;
	return 0;
}

int state_read_machine(const void *fdt, struct machine *mach, char *err, size_t errlen)
{
	memset(mach, 0, sizeof(*mach));
	int node = fdt_subnode_offset(fdt, 0, "machine");
	uint32_t ncpus;
	if (node < 0 || fdtp_u64(fdt, node, "mem-size", &mach->mem) || fdtp_u32(fdt, node, "ncpus", &ncpus) ||
	    ncpus == 0) {
		snprintf(err, errlen, "snapshot: machine description missing");
		return -EINVAL;
	}
	mach->cpus = ncpus;
	for (int child = fdt_first_subnode(fdt, node); child >= 0; child = fdt_next_subnode(fdt, child)) {
		const char *name = fdt_get_name(fdt, child, NULL);
		int r = 0;
		if (name && !strncmp(name, "disk@", 5))
			r = read_disk(fdt, child, name, mach, err, errlen);
		else if (name && !strncmp(name, "nic@", 4))
			r = read_nic(fdt, child, name, mach, err, errlen);
		if (r)
			return r;
	}
	return 0;
}

int state_disk_size(const void *fdt, unsigned i, uint64_t *size)
{
	int node = fdt_path_offset(fdt, "/machine");
	char name[16];
	snprintf(name, sizeof(name), "disk@%u", i);
	int dn = node >= 0 ? fdt_subnode_offset(fdt, node, name) : -1;
	return dn >= 0 && fdtp_u64(fdt, dn, "size", size) == 0 ? 0 : -ENOENT;
}

int state_apply(struct vm *vm, const void *fdt, char *err, size_t errlen)
{
	int r = vmstate_restore_devices(vm, fdt, err, errlen);
	r = r ? r : vmstate_restore_cpus(vm, fdt, err, errlen);
	if (r)
		return r;
	/* restored devices come back quiesced: let them run (and pick up work the guest queued before the
	 * checkpoint) before the vCPUs do */
	for (struct vm_device *d = vm->devices; d; d = d->next)
		if (d->resume)
			d->resume(d->opaque);
	return 0;
}

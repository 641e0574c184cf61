/* state.c - the machine state of a paused VM as one fdt: its description, vCPUs (vmstate.c) and devices; captured and applied. */
#include "state.h"
#include "../devices/machine.h"
#include "../vmm/fdt_prop.h"
#include "../vmm/util.h"
#include "../vmm/vm.h"
#include "proto.h"
#include "vmstate.h"

#include <errno.h>
#include <libfdt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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

/* The whole tree into a buffer of size bytes: 0, -ENOSPC when it does not fit, or another -errno. Property names
 * are not de-duplicated: libfdt's de-duplication searches the whole strings block byte by byte for every property
 * written, a cost that grows with the tree (a few hundred properties a capture) for a strings block of a few KiB. */
static int capture_into(void *fdt, size_t size, struct vm *vm, const struct machine *mach, struct state_times *t)
{
	uint64_t tb = now_ns();
	int r = fdt_create_with_flags(fdt, (int)size, FDT_CREATE_FLAG_NO_NAME_DEDUP); /* zeroes all size bytes */
	t->buf_ns += now_ns() - tb;
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
	return state_capture_timed(vm, mach, 0, fdt_out, len_out, &t);
}

/* The first buffer to try: a little more than the last capture's tree (states of one VM differ by a few in-flight
 * lists), else 256 KiB + 64 KiB per vCPU. fdt_create zeroes the whole buffer, and it runs inside every pause. */
static size_t first_size(const struct vm *vm, size_t last_len, size_t max)
{
	size_t size = (256u << 10) + vm->ncpus * (64u << 10);
	if (last_len)
		size = ALIGN_UP(last_len + last_len / 4 + 4096, 4096);
	return size < max ? size : max;
}

int state_capture_timed(struct vm *vm, const struct machine *mach, size_t last_len, void **fdt_out, size_t *len_out,
			struct state_times *t)
{
	/* doubled while it does not fit, up to ft/proto.h's bound on a state that comes from the wire */
	const size_t max = FT_MAX_STATE(vm->ncpus);
	*t = (struct state_times){ 0 };
	for (size_t size = first_size(vm, last_len, max);; size = size < max / 2 ? size * 2 : max) {
		uint64_t tb = now_ns();
		void *fdt = malloc(size);
		t->buf_ns += now_ns() - tb;
		if (!fdt)
			return -ENOMEM;
		t->tries++;
		int r = capture_into(fdt, size, vm, mach, t);
		if (!r) {
			*fdt_out = fdt;
			*len_out = fdt_totalsize(fdt);
			return 0;
		}
		free(fdt);
		if (r != -ENOSPC)
			return r;
		if (size == max)
			return -E2BIG;
	}
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

/* state.h - a paused VM's machine state as one fdt: captured inside every pause, applied on a restore or a takeover. */
#ifndef FTVMM_STATE_H
#define FTVMM_STATE_H

#include <stddef.h>
#include <stdint.h>

struct vm;
struct machine;

/*
 * The tree: "ftvmm,state-version", the /machine node (memory size, vCPUs, disks with their sizes,
 * NICs: what a restore must rebuild), then every vCPU and the VM-wide KVM devices ("vcpus", "vm":
 * ft/vmstate.c) and every registered device ("devices"). The snapshot file and the FT epoch carry it
 * as it is.
 */

/* Capture the state of a paused VM as a finished fdt (malloc'd). mach may be NULL (no disks or NICs
 * described). Asks the filesystem nothing: it runs inside every FT pause. 0 or -errno. */
int state_capture(struct vm *vm, const struct machine *mach, void **fdt_out, size_t *len_out);
/* Where a capture's time went (the FT stats report it per epoch): the buffer (malloc, and fdt_create zeroing it), the
 * vCPUs with the VM-wide KVM devices, the devices, the tree's finishing pass; the rest is the header and the /machine
 * node. tries: buffers tried (more than 1: the tree outgrew the first and was captured again). */
struct state_times {
	uint64_t buf_ns, cpus_ns, devices_ns;
	uint64_t finish_ns; /* fdt_finish: the strings moved, every property's name offset fixed */
	unsigned tries;
};
/* state_capture, and its times into *t. last_len: the size of this VM's last captured tree (0: none), which
 * sizes the first buffer tried. */
int state_capture_timed(struct vm *vm, const struct machine *mach, size_t last_len, void **fdt_out, size_t *len_out,
			struct state_times *t);
/* The /machine node of a state being written. 0 or -ENOSPC. Exposed for tests. */
int state_put_machine(void *fdt, const struct vm *vm, const struct machine *mach);

/* The machine description stored in a state: fill mach (mem, cpus, disks, nics) from it. String
 * fields point into fdt. 0, or -EINVAL with one line in err. */
int state_read_machine(const void *fdt, struct machine *mach, char *err, size_t errlen);
/* The size disk i had when the state was captured: 0, or -ENOENT when the state does not say. */
int state_disk_size(const void *fdt, unsigned i, uint64_t *size);

/* Apply a state to a VM created from its machine description (memory already loaded, vCPUs not yet
 * started): devices, then vCPUs and the VM-wide KVM devices, then the devices run again. 0, or
 * -errno with one line in err. */
int state_apply(struct vm *vm, const void *fdt, char *err, size_t errlen);

#endif

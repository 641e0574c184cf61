/* vmstate.h - capture and restore of the complete KVM state of a paused VM (vCPUs, irqchip, PIT, clock, devices). */
#ifndef FTVMM_VMSTATE_H
#define FTVMM_VMSTATE_H

#include <stddef.h>
#include <stdint.h>

#include "../vmm/fdt_prop.h"

struct vm;
struct vcpu;

#define VMSTATE_VERSION 1

/* Write the state of every vCPU and of the VM-wide KVM devices as nodes of an fdt being built in
 * sequential-write mode ("vcpus" and "vm" nodes). The VM must be paused. 0 or -errno. */
int vmstate_save_cpus(struct vm *vm, void *fdt);
/* Write every registered device's state under a "devices" node (each device in a node of its name). */
int vmstate_save_devices(struct vm *vm, void *fdt);
/* Restore from a finished fdt blob, in the order the KVM API requires. VM created, not yet started. */
int vmstate_restore_cpus(struct vm *vm, const void *fdt, char *err, size_t errlen);
int vmstate_restore_devices(struct vm *vm, const void *fdt, char *err, size_t errlen);

/* Transitional: the old names of vmm/fdt_prop.h's readers, which wear libfdt's fdt_ prefix. Kept only for
 * the callers outside this file (cmd/inspect.c, cmd/run.c, ft/snapshot.c, ft/backup.c); delete once they
 * call fdtp_u32 / fdtp_u64 / fdtp_copy directly. */
static inline int fdt_get_u32(const void *fdt, int node, const char *name, uint32_t *v)
{
	return fdtp_u32(fdt, node, name, v);
}

static inline int fdt_get_u64(const void *fdt, int node, const char *name, uint64_t *v)
{
	return fdtp_u64(fdt, node, name, v);
}

static inline int fdt_get_blob(const void *fdt, int node, const char *name, void *out, size_t len)
{
	return fdtp_copy(fdt, node, name, out, len);
}

#endif

/* vmstate.h - capture and restore of the complete KVM state of a paused VM (vCPUs, irqchip, PIT, clock, devices). */
#ifndef FTVMM_VMSTATE_H
#define FTVMM_VMSTATE_H

#include <stddef.h>
#include <stdint.h>

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

#endif

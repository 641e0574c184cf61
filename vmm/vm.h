/* vm.h - the KVM virtual machine: fds, memory, vCPUs, buses, interrupts and the device list. */
#ifndef FTVMM_VM_H
#define FTVMM_VM_H

#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "bus.h"
#include "dirty.h"
#include "guest_mem.h"
#include "ioloop.h"

struct vcpu;
struct fdt_writer;

/* Fixed interrupt lines (GSIs) of the ISA devices; PCI INTx and MSI routes are allocated above 24. */
#define IRQ_COM1 4
#define IRQ_RTC 8
#define IRQ_I8042_KBD 1
#define IRQ_I8042_AUX 12
#define GSI_FIRST_MSI 24
#define GSI_MAX 1024

/* What a device exposes to the VM lifecycle and to checkpointing (ft/). Every callback is optional.
 * quiesce: stop touching guest memory, raising interrupts and consuming backend I/O; complete or record
 *          in-flight requests. resume: undo quiesce. save/restore: plain-data state as properties of the
 *          current node of a libfdt tree (fdt_property_* in sequential-write mode / fdt_getprop on restore). */
struct vm_device {
	const char *name; /* unique node name, e.g. "serial@3f8", "virtio-blk@0" */
	void *opaque;
	int (*quiesce)(void *opaque);
	void (*resume)(void *opaque);
	int (*save)(void *opaque, void *fdt);
	int (*restore)(void *opaque, const void *fdt, int node);
	void (*destroy)(void *opaque);
	struct vm_device *next;
};

enum vm_exit_reason {
	VM_RUNNING = 0,
	VM_EXIT_REBOOT,   /* guest asked for reset/reboot: ftvmm exits 0 */
	VM_EXIT_POWEROFF, /* guest powered off: exits 0 */
	VM_EXIT_SHUTDOWN, /* triple fault: exits non-zero with a register dump */
	VM_EXIT_ERROR,    /* internal error / unhandled exit: non-zero */
	VM_EXIT_SIGNAL,   /* SIGINT/SIGTERM: clean stop */
	VM_EXIT_PANIC,    /* guest kernel reported a panic (pvpanic): non-zero */
};

struct vm {
	int kvm_fd, vm_fd;
	int vcpu_mmap_size;
	struct guest_mem mem;
	unsigned ncpus;
	struct vcpu *vcpus;
	struct bus pio, mmio;
	struct ioloop io; /* device data paths */

	struct kvm_cpuid2 *supported_cpuid;

	/* GSI routing table kept here because KVM_SET_GSI_ROUTING replaces it whole. */
	pthread_mutex_t irq_lock;
	void *gsi_routes; /* struct kvm_irq_routing_entry[] */
	unsigned nr_routes;
	unsigned next_gsi;

	struct vm_device *devices;

	/* Lifecycle: the first vCPU (or signal) to decide the VM's fate sets exit_reason and kicks all. */
	pthread_mutex_t state_lock;
	pthread_cond_t state_cond;
	enum vm_exit_reason exit_reason;
	int exit_efd; /* written once exit_reason is set: wakes the main thread */

	/* Pause: vCPUs park outside KVM_RUN (after KVM has completed any in-flight PIO/MMIO, so their
	 * state is consistent), counted under pause_lock. */
	pthread_mutex_t pause_lock;
	pthread_cond_t pause_cond;
	bool pause_requested;
	unsigned paused_vcpus;
	bool paused; /* vCPUs parked and devices quiesced */
	unsigned pause_depth;
	pthread_mutex_t pause_op_lock;
	bool dirty_logging;
	/* dirty tracking (dirty.c): the mode in force; ring mode: entries per vCPU ring, the pages of rings a
	 * vCPU filled between harvests, under dirty_lock */
	enum vm_dirty_track dirty_track;
	uint32_t ring_entries;
	pthread_mutex_t dirty_lock;
	unsigned long *ring_spill;
	bool ring_spilled;
	unsigned max_vcpus;
};

#define VM_MAX_MEM (512ull << 30)

/* Open KVM (path from $FTVMM_KVM_DEVICE, default /dev/kvm), create the VM, its irqchip and PIT, map
 * mem_size bytes of RAM and create ncpus vCPUs. Returns 0, or -errno with one line in err. */
int vm_create(struct vm *vm, uint64_t mem_size, unsigned ncpus, char *err, size_t errlen);
/* Like vm_create, but adopt an existing guest memory (the FT backup's committed image, used in place
 * without a copy). *mem is moved into the VM. */
int vm_create_with_mem(struct vm *vm, struct guest_mem *mem, unsigned ncpus, char *err, size_t errlen);
/* Turn KVM's dirty page logging on or off for all of guest RAM. */
/* Every vCPU's TSC at khz (a booted VM, before it runs): 0, or -errno with one line in err. KVM
 * without TSC scaling emulates only a rate above the host's (by catching up at each entry). */
int vm_set_tsc_khz(struct vm *vm, uint32_t khz, char *err, size_t errlen);
int vm_dirty_log_enable(struct vm *vm, bool on);
/* The pages written since the last harvest, one bit per RAM page: by the guest (KVM's dirty log) into
 * guest, by the VMM itself (guest_mem's bitmap: used rings, RX buffers, disk reads) into vmm. Both
 * are cleared first and may be the same bitmap (then it holds both). Both logs are cleared as they
 * are read. 0, or -errno from KVM (the VMM's bitmap is harvested all the same). */
int vm_dirty_harvest(struct vm *vm, unsigned long *guest, unsigned long *vmm);
/* Start the I/O loop and every vCPU thread. */
int vm_start(struct vm *vm);
/* Wait until the VM ends (guest reboot, triple fault, error, signal), stop every thread. */
enum vm_exit_reason vm_run_until_exit(struct vm *vm);
void vm_destroy(struct vm *vm);
/* Free every registered device (vm_destroy does it too; call first when a bus must outlive them). */
void vm_destroy_devices(struct vm *vm);

/* Register a device for lifecycle/checkpoint callbacks (kept in registration order). */
void vm_add_device(struct vm *vm, struct vm_device *dev);
struct vm_device *vm_find_device(struct vm *vm, const char *name);

/* Install KVM's default GSI table (0-23 to the IOAPIC, 0-15 also to the PICs) as our own copy, so
 * MSI routes can be added to it later (KVM_SET_GSI_ROUTING replaces the whole table). */
int vm_irq_routing_init(struct vm *vm);
/* Level-triggered ISA/IOAPIC line. */
int vm_irq_line(struct vm *vm, unsigned gsi, int level);

/* MSI: allocate a GSI routed to an MSI message; returns gsi >= GSI_FIRST_MSI or -errno. */
int vm_msi_route_add(struct vm *vm, uint64_t addr, uint32_t data);
/* Change the message of an allocated MSI GSI (MSI-X table writes). masked routes keep their GSI. */
int vm_msi_route_update(struct vm *vm, unsigned gsi, uint64_t addr, uint32_t data);
/* Deliver an MSI directly (KVM_SIGNAL_MSI), for paths without an irqfd. */
int vm_signal_msi(struct vm *vm, uint64_t addr, uint32_t data);
/* Attach/detach an eventfd that injects `gsi` when written (KVM_IRQFD). */
int vm_irqfd(struct vm *vm, int efd, unsigned gsi, bool assign);
/* Attach/detach an eventfd signalled by guest writes to [addr, addr+len) (KVM_IOEVENTFD).
 * pio selects port space; datamatch < 0 means any value. */
int vm_ioeventfd(struct vm *vm, int efd, uint64_t addr, uint32_t len, bool pio, int64_t datamatch, bool assign);

/* Stop every vCPU (signal + immediate_exit, wait until all are parked) and quiesce every device:
 * afterwards nothing writes guest memory or raises interrupts. 0 or -errno (then nothing is paused):
 * -ECANCELED when the VM started ending before every vCPU parked. */
int vm_pause(struct vm *vm);
/* Undo vm_pause: resume devices, release vCPUs. */
void vm_resume(struct vm *vm);
/* Only the vCPU half (used by vm_pause and by tests that need device state live): 0 with every started
 * vCPU parked, or -ECANCELED with none held (the VM is ending). */
int vm_pause_vcpus(struct vm *vm);
void vm_resume_vcpus(struct vm *vm);

/* Ask every vCPU to stop and end the VM with `reason` (first caller wins). Thread- and signal-safe
 * enough for the SIGINT path (it only sets flags and sends signals). */
void vm_request_exit(struct vm *vm, enum vm_exit_reason reason);

#endif

/* vm.c - creates the KVM VM (irqchip, PIT, memory slots, vCPUs), runs it and tears it down. */
#include "vm.h"
#include "cpuid.h"
#include "dirty.h"
#include "mptable.h"
#include "util.h"
#include "vcpu.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/kvm.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <unistd.h>

/* Both live in the 4 GiB hole, above the PCI window and below the IOAPIC, as KVM on Intel requires. */
#define KVM_TSS_ADDR 0xfffbd000ull
#define KVM_IDENTITY_MAP_ADDR 0xfffbc000ull

static int open_kvm(struct vm *vm, char *err, size_t errlen)
{
	const char *path = getenv("FTVMM_KVM_DEVICE");
	if (!path || !*path)
		path = "/dev/kvm";
	vm->kvm_fd = open(path, O_RDWR | O_CLOEXEC);
	if (vm->kvm_fd < 0) {
		int e = errno;
		if (e == ENOENT || e == ENODEV || e == ENXIO)
			snprintf(err, errlen, "%s not found: KVM is not available here (use the nested test bed: "
				 "tests/testbed/run.sh, see README)", path);
		else if (e == EACCES || e == EPERM)
			snprintf(err, errlen, "%s: permission denied (run as root or join the kvm group)", path);
		else
			snprintf(err, errlen, "cannot open %s: %s", path, strerror(e));
		return -e;
	}
	int api = ioctl(vm->kvm_fd, KVM_GET_API_VERSION, 0);
	if (api != KVM_API_VERSION) {
		snprintf(err, errlen, "%s: unsupported KVM API version %d (need %d)", path, api, KVM_API_VERSION);
		return -EINVAL;
	}
	int maxv = ioctl(vm->kvm_fd, KVM_CHECK_EXTENSION, KVM_CAP_MAX_VCPUS);
	if (maxv <= 0)
		maxv = ioctl(vm->kvm_fd, KVM_CHECK_EXTENSION, KVM_CAP_NR_VCPUS);
	if (maxv <= 0)
		maxv = 4;
	vm->max_vcpus = MIN((unsigned)maxv, MPTABLE_MAX_CPUS);
	return 0;
}

static int set_memslot(struct vm *vm, uint32_t slot, uint64_t gpa, uint64_t size, void *host)
{
	struct kvm_userspace_memory_region r = {
		.slot = slot, .flags = vm->dirty_logging ? KVM_MEM_LOG_DIRTY_PAGES : 0, .guest_phys_addr = gpa, .memory_size = size,
		.userspace_addr = (uint64_t)(uintptr_t)host,
	};
	return ioctl(vm->vm_fd, KVM_SET_USER_MEMORY_REGION, &r) < 0 ? -errno : 0;
}

static int set_memslots(struct vm *vm)
{
	int r = set_memslot(vm, 0, 0, vm->mem.low_size, vm->mem.host);
	if (!r && vm->mem.size > vm->mem.low_size)
		r = set_memslot(vm, 1, HIGH_RAM_START, vm->mem.size - vm->mem.low_size, vm->mem.host + vm->mem.low_size);
	return r;
}

int vm_dirty_log_enable(struct vm *vm, bool on)
{
	if (on)
		vm_dirty_rings_drain(vm); /* entries of an earlier logging period are no news */
	vm->dirty_logging = on;
	int r = set_memslots(vm);
	if (r)
		vm->dirty_logging = !on;
	return r;
}

/* Nothing open yet: every fd -1, so a failed create can always be vm_destroy'ed. */
static void init_fields(struct vm *vm)
{
	memset(vm, 0, sizeof(*vm));
	vm->kvm_fd = vm->vm_fd = vm->exit_efd = -1;
	pthread_mutex_init(&vm->irq_lock, NULL);
	pthread_mutex_init(&vm->state_lock, NULL);
	pthread_cond_init(&vm->state_cond, NULL);
	pthread_mutex_init(&vm->pause_lock, NULL);
	pthread_mutex_init(&vm->pause_op_lock, NULL);
	pthread_mutex_init(&vm->dirty_lock, NULL);
	pthread_cond_init(&vm->pause_cond, NULL);
	bus_init(&vm->pio, "pio");
	bus_init(&vm->mmio, "mmio");
	vm->next_gsi = GSI_FIRST_MSI;
}

/* The KVM VM with its in-kernel LAPIC/IOAPIC/PIC and PIT, and the interrupt routes. */
static int create_kvm_vm(struct vm *vm, unsigned ncpus, char *err, size_t errlen)
{
	int r = open_kvm(vm, err, errlen);
	if (r)
		return r;
	if (ncpus > vm->max_vcpus) {
		snprintf(err, errlen, "--cpus %u is above the limit of %u vCPUs", ncpus, vm->max_vcpus);
		return -EINVAL;
	}
	vm->ncpus = ncpus;
	vm->vcpu_mmap_size = ioctl(vm->kvm_fd, KVM_GET_VCPU_MMAP_SIZE, 0);
	if (vm->vcpu_mmap_size <= 0) {
		snprintf(err, errlen, "KVM_GET_VCPU_MMAP_SIZE failed");
		return -EINVAL;
	}
	do
		vm->vm_fd = ioctl(vm->kvm_fd, KVM_CREATE_VM, 0);
	while (vm->vm_fd < 0 && errno == EINTR);
	if (vm->vm_fd < 0) {
		r = -errno;
		snprintf(err, errlen, "KVM_CREATE_VM failed: %s", strerror(errno));
		return r;
	}
	if (ioctl(vm->vm_fd, KVM_SET_TSS_ADDR, KVM_TSS_ADDR) < 0 ||
	    ioctl(vm->vm_fd, KVM_SET_IDENTITY_MAP_ADDR, &(uint64_t){ KVM_IDENTITY_MAP_ADDR }) < 0) {
		r = -errno;
		snprintf(err, errlen, "cannot place the KVM TSS: %s", strerror(errno));
		return r;
	}
	if (ioctl(vm->vm_fd, KVM_CREATE_IRQCHIP, 0) < 0) {
		r = -errno;
		snprintf(err, errlen, "KVM_CREATE_IRQCHIP failed: %s", strerror(errno));
		return r;
	}
	struct kvm_pit_config pit = { .flags = KVM_PIT_SPEAKER_DUMMY };
	if (ioctl(vm->vm_fd, KVM_CREATE_PIT2, &pit) < 0) {
		r = -errno;
		snprintf(err, errlen, "KVM_CREATE_PIT2 failed: %s", strerror(errno));
		return r;
	}
	r = vm_irq_routing_init(vm);
	if (r)
		snprintf(err, errlen, "cannot set up interrupt routing: %s", strerror(-r));
	return r;
}

/* Guest RAM, fresh or adopted as it is (a takeover's last commit), in KVM's memory slots. */
static int attach_memory(struct vm *vm, uint64_t mem_size, struct guest_mem *adopt, char *err, size_t errlen)
{
	int r = 0;
	if (adopt) {
		vm->mem = *adopt;
		memset(adopt, 0, sizeof(*adopt));
	} else {
		r = gmem_init(&vm->mem, mem_size);
	}
	if (r) {
		snprintf(err, errlen, "cannot map %llu MiB of guest memory: %s", (unsigned long long)(mem_size >> 20),
			 strerror(-r));
		return r;
	}
	r = set_memslots(vm);
	if (r)
		snprintf(err, errlen, "KVM_SET_USER_MEMORY_REGION failed: %s", strerror(-r));
	return r;
}

static int create_vcpus(struct vm *vm, unsigned ncpus, char *err, size_t errlen)
{
	vm->supported_cpuid = cpuid_get_supported(vm->kvm_fd);
	if (!vm->supported_cpuid) {
		int r = -errno;
		snprintf(err, errlen, "KVM_GET_SUPPORTED_CPUID failed: %s", strerror(errno));
		return r;
	}
	vm->vcpus = calloc(ncpus, sizeof(*vm->vcpus));
	if (!vm->vcpus)
		return -ENOMEM;
	for (unsigned i = 0; i < ncpus; i++)
		vm->vcpus[i].fd = -1;
	for (unsigned i = 0; i < ncpus; i++) {
		int r = vcpu_create(vm, i, &vm->vcpus[i]);
		if (r) {
			snprintf(err, errlen, "cannot create vCPU %u: %s", i, strerror(-r));
			return r;
		}
	}
	return 0;
}

int vm_set_tsc_khz(struct vm *vm, uint32_t khz, char *err, size_t errlen)
{
	for (unsigned i = 0; i < vm->ncpus; i++) {
		/* read first: KVM keeps the rate it was asked for even when it refuses it */
		int here = vcpu_tsc_khz(&vm->vcpus[i]);
		int r = vcpu_set_tsc_khz(&vm->vcpus[i], khz);
		if (r) {
			snprintf(err, errlen, "--tsc-khz %u: KVM cannot run the guest's TSC at that rate (this host's: %d kHz; "
				 "without TSC scaling only a faster one): %s", khz, here, strerror(-r));
			return r;
		}
	}
	return 0;
}

static int vm_create_common(struct vm *vm, uint64_t mem_size, struct guest_mem *adopt, unsigned ncpus, char *err,
			    size_t errlen)
{
	init_fields(vm);
	int r = create_kvm_vm(vm, ncpus, err, errlen);
	r = r ? r : attach_memory(vm, mem_size, adopt, err, errlen);
	r = r ? r : vm_dirty_setup(vm, err, errlen);
	r = r ? r : create_vcpus(vm, ncpus, err, errlen);
	if (r)
		return r;
	r = ioloop_init(&vm->io, "io");
	if (r) {
		snprintf(err, errlen, "cannot create the I/O loop: %s", strerror(-r));
		return r;
	}
	vm->exit_efd = eventfd(0, EFD_CLOEXEC);
	if (vm->exit_efd < 0)
		return -errno;
	return 0;
}

int vm_create(struct vm *vm, uint64_t mem_size, unsigned ncpus, char *err, size_t errlen)
{
	return vm_create_common(vm, mem_size, NULL, ncpus, err, errlen);
}

int vm_create_with_mem(struct vm *vm, struct guest_mem *mem, unsigned ncpus, char *err, size_t errlen)
{
	return vm_create_common(vm, mem->size, mem, ncpus, err, errlen);
}

void vm_add_device(struct vm *vm, struct vm_device *dev)
{
	struct vm_device **p = &vm->devices;
	while (*p)
		p = &(*p)->next;
	dev->next = NULL;
	*p = dev;
}

struct vm_device *vm_find_device(struct vm *vm, const char *name)
{
	for (struct vm_device *d = vm->devices; d; d = d->next)
		if (!strcmp(d->name, name))
			return d;
	return NULL;
}

void vm_request_exit(struct vm *vm, enum vm_exit_reason reason)
{
	enum vm_exit_reason expected = VM_RUNNING;
	/* first reason wins: a reboot racing a signal keeps whichever came first */
	if (__atomic_compare_exchange_n(&vm->exit_reason, &expected, reason, false, __ATOMIC_ACQ_REL,
					__ATOMIC_ACQUIRE)) {
		uint64_t one = 1;
		if (vm->exit_efd >= 0 && write(vm->exit_efd, &one, sizeof(one)) < 0) {
			/* the main thread also polls exit_reason; nothing else to do in a signal context */
		}
	}
}

static void kick_handler(int sig)
{
	(void)sig;
}

int vm_start(struct vm *vm)
{
	struct sigaction sa;
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = kick_handler; /* no SA_RESTART: KVM_RUN must return EINTR */
	sigemptyset(&sa.sa_mask);
	if (sigaction(VCPU_KICK_SIGNAL, &sa, NULL) < 0)
		return -errno;
	int r = ioloop_start(&vm->io);
	if (r)
		return r;
	for (unsigned i = 0; i < vm->ncpus; i++) {
		r = vcpu_start(&vm->vcpus[i]);
		if (r) {
			vm_request_exit(vm, VM_EXIT_ERROR);
			return r;
		}
	}
	return 0;
}

static unsigned started_vcpus(const struct vm *vm)
{
	unsigned n = 0;
	for (unsigned i = 0; i < vm->ncpus; i++)
		n += vm->vcpus[i].started;
	return n;
}

/* Only a parked vCPU is known to be stopped at a consistent point (KVM completed its last exit).
 * One that leaves its loop because the VM is ending may have stopped right after an exit KVM has
 * not completed, and then never parks: waiting for it would hang, taking the pause without it
 * would pair memory with registers from another moment. So the pause fails instead (-ECANCELED)
 * and lets the parked ones go. */
int vm_pause_vcpus(struct vm *vm)
{
	pthread_mutex_lock(&vm->pause_lock);
	vm->pause_requested = true;
	pthread_mutex_unlock(&vm->pause_lock);
	for (unsigned i = 0; i < vm->ncpus; i++)
		vcpu_kick(&vm->vcpus[i]);
	int r = 0;
	pthread_mutex_lock(&vm->pause_lock);
	/* woken by each vCPU that parks or leaves its loop, and by vm_run_until_exit */
	while (vm->paused_vcpus < started_vcpus(vm)) {
		if (__atomic_load_n(&vm->exit_reason, __ATOMIC_ACQUIRE) != VM_RUNNING) {
			r = -ECANCELED;
			vm->pause_requested = false;
			pthread_cond_broadcast(&vm->pause_cond);
			break;
		}
		pthread_cond_wait(&vm->pause_cond, &vm->pause_lock);
	}
	pthread_mutex_unlock(&vm->pause_lock);
	return r;
}

void vm_resume_vcpus(struct vm *vm)
{
	pthread_mutex_lock(&vm->pause_lock);
	vm->pause_requested = false;
	pthread_cond_broadcast(&vm->pause_cond);
	pthread_mutex_unlock(&vm->pause_lock);
}

/* Pauses nest (a user's `ctl pause` and the FT engine's checkpoints may overlap): the VM runs again
 * only when every pause has been matched by a resume. pause_op_lock serialises the transitions. */
int vm_pause(struct vm *vm)
{
	pthread_mutex_lock(&vm->pause_op_lock);
	if (vm->pause_depth++ > 0) {
		pthread_mutex_unlock(&vm->pause_op_lock);
		return 0;
	}
	int pr = vm_pause_vcpus(vm);
	if (pr) {
		vm->pause_depth--;
		pthread_mutex_unlock(&vm->pause_op_lock);
		return pr;
	}
	/* devices after vCPUs: a vCPU could otherwise kick a queue of a device already quiesced */
	for (struct vm_device *d = vm->devices; d; d = d->next) {
		if (!d->quiesce)
			continue;
		int r = d->quiesce(d->opaque);
		if (r) {
			warnx("device %s cannot quiesce: %s", d->name, strerror(-r));
			for (struct vm_device *u = vm->devices; u != d; u = u->next)
				if (u->resume)
					u->resume(u->opaque);
			vm_resume_vcpus(vm);
			vm->pause_depth--;
			pthread_mutex_unlock(&vm->pause_op_lock);
			return r;
		}
	}
	vm->paused = true;
	pthread_mutex_unlock(&vm->pause_op_lock);
	return 0;
}

void vm_resume(struct vm *vm)
{
	pthread_mutex_lock(&vm->pause_op_lock);
	if (vm->pause_depth == 0 || --vm->pause_depth > 0) {
		pthread_mutex_unlock(&vm->pause_op_lock);
		return;
	}
	for (struct vm_device *d = vm->devices; d; d = d->next)
		if (d->resume)
			d->resume(d->opaque);
	vm->paused = false;
	vm_resume_vcpus(vm);
	pthread_mutex_unlock(&vm->pause_op_lock);
}

enum vm_exit_reason vm_run_until_exit(struct vm *vm)
{
	while (__atomic_load_n(&vm->exit_reason, __ATOMIC_ACQUIRE) == VM_RUNNING) {
		uint64_t v;
		ssize_t n = read(vm->exit_efd, &v, sizeof(v));
		if (n < 0 && errno != EINTR)
			break;
	}
	/* release parked vCPUs so they can see the exit */
	pthread_mutex_lock(&vm->pause_lock);
	vm->pause_requested = false;
	pthread_cond_broadcast(&vm->pause_cond);
	pthread_mutex_unlock(&vm->pause_lock);
	for (unsigned i = 0; i < vm->ncpus; i++)
		vcpu_kick(&vm->vcpus[i]);
	for (unsigned i = 0; i < vm->ncpus; i++) {
		if (vm->vcpus[i].started) {
			pthread_join(vm->vcpus[i].thread, NULL);
			vm->vcpus[i].started = false;
		}
	}
	ioloop_stop(&vm->io);
	return vm->exit_reason;
}

void vm_destroy_devices(struct vm *vm)
{
	for (struct vm_device *d = vm->devices; d;) {
		struct vm_device *next = d->next;
		if (d->destroy)
			d->destroy(d->opaque);
		d = next;
	}
	vm->devices = NULL;
}

void vm_destroy(struct vm *vm)
{
	vm_destroy_devices(vm);
	if (vm->vcpus)
		for (unsigned i = 0; i < vm->ncpus; i++)
			vcpu_destroy(&vm->vcpus[i]);
	free(vm->vcpus);
	vm->vcpus = NULL;
	if (vm->io.epfd > 0)
		ioloop_destroy(&vm->io);
	free(vm->supported_cpuid);
	free(vm->gsi_routes);
	free(vm->ring_spill);
	gmem_free(&vm->mem);
	bus_destroy(&vm->pio);
	bus_destroy(&vm->mmio);
	if (vm->exit_efd >= 0)
		close(vm->exit_efd);
	if (vm->vm_fd >= 0)
		close(vm->vm_fd);
	if (vm->kvm_fd >= 0)
		close(vm->kvm_fd);
	vm->exit_efd = vm->vm_fd = vm->kvm_fd = -1;
}

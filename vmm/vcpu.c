/* vcpu.c - vCPU creation, register/MSR/LAPIC setup for the boot protocol, and the KVM_RUN loop. */
#include "vcpu.h"
#include "boot.h"
#include "cpuid.h"
#include "util.h"
#include "vm.h"

#include <asm/kvm_para.h>
#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <unistd.h>

#define MSR_IA32_SYSENTER_CS 0x174
#define MSR_IA32_SYSENTER_ESP 0x175
#define MSR_IA32_SYSENTER_EIP 0x176
#define MSR_IA32_MISC_ENABLE 0x1a0
#define MSR_MTRR_DEF_TYPE 0x2ff
#define MSR_STAR 0xc0000081
#define MSR_LSTAR 0xc0000082
#define MSR_CSTAR 0xc0000083
#define MSR_SYSCALL_MASK 0xc0000084
#define MSR_KERNEL_GS_BASE 0xc0000102

#define APIC_LVT0 0x350
#define APIC_LVT1 0x360
#define APIC_MODE_NMI 0x4
#define APIC_MODE_EXTINT 0x7

static int set_msrs(struct vcpu *v)
{
	static const struct { uint32_t index; uint64_t data; } init[] = {
		{ MSR_IA32_SYSENTER_CS, 0 }, { MSR_IA32_SYSENTER_ESP, 0 }, { MSR_IA32_SYSENTER_EIP, 0 },
		{ MSR_STAR, 0 }, { MSR_CSTAR, 0 }, { MSR_KERNEL_GS_BASE, 0 }, { MSR_SYSCALL_MASK, 0 },
		{ MSR_LSTAR, 0 },
		{ MSR_IA32_MISC_ENABLE, 1 },                    /* fast string operations */
		{ MSR_MTRR_DEF_TYPE, (1u << 11) | 6 },          /* MTRRs on, default write-back */
	};
	struct {
		struct kvm_msrs hdr;
		struct kvm_msr_entry e[ARRAY_SIZE(init)];
	} m;
	memset(&m, 0, sizeof(m));
	m.hdr.nmsrs = ARRAY_SIZE(init);
	for (unsigned i = 0; i < ARRAY_SIZE(init); i++) {
		m.e[i].index = init[i].index;
		m.e[i].data = init[i].data;
	}
	int r = ioctl(v->fd, KVM_SET_MSRS, &m);
	if (r < 0)
		return -errno;
	/* KVM_SET_MSRS returns how many it set and stops at the first it refuses */
	if ((unsigned)r != ARRAY_SIZE(init)) {
		warnx("vcpu %u: KVM refused MSR 0x%x", v->id, init[r].index);
		return -EINVAL;
	}
	return 0;
}

static uint32_t lvt_mode(uint32_t reg, uint32_t mode)
{
	return (reg & ~0x700u) | (mode << 8);
}

static int setup_lapic(struct vcpu *v)
{
	struct kvm_lapic_state la;
	if (ioctl(v->fd, KVM_GET_LAPIC, &la) < 0)
		return -errno;
	uint32_t *lvt0 = (uint32_t *)&la.regs[APIC_LVT0];
	uint32_t *lvt1 = (uint32_t *)&la.regs[APIC_LVT1];
	/* virtual wire: the PIC reaches the CPU through LINT0, NMIs through LINT1 */
	*lvt0 = lvt_mode(*lvt0, APIC_MODE_EXTINT);
	*lvt1 = lvt_mode(*lvt1, APIC_MODE_NMI);
	if (ioctl(v->fd, KVM_SET_LAPIC, &la) < 0)
		return -errno;
	return 0;
}

int vcpu_create(struct vm *vm, unsigned id, struct vcpu *v)
{
	memset(v, 0, sizeof(*v));
	v->vm = vm;
	v->id = id;
	v->fd = ioctl(vm->vm_fd, KVM_CREATE_VCPU, (unsigned long)id);
	if (v->fd < 0)
		return -errno;
	v->run = mmap(NULL, (size_t)vm->vcpu_mmap_size, PROT_READ | PROT_WRITE, MAP_SHARED, v->fd, 0);
	if (v->run == MAP_FAILED) {
		v->run = NULL;
		return -errno;
	}
	int r = vcpu_dirty_ring_map(v);
	if (r)
		return r;
	v->cpuid = cpuid_dup(vm->supported_cpuid);
	if (!v->cpuid)
		return -ENOMEM;
	cpuid_configure(v->cpuid, id, vm->ncpus);
	if (ioctl(v->fd, KVM_SET_CPUID2, v->cpuid) < 0)
		return -errno;
	r = set_msrs(v);
	if (r)
		return r;
	struct kvm_fpu fpu = { .fcw = 0x37f, .mxcsr = 0x1f80 };
	if (ioctl(v->fd, KVM_SET_FPU, &fpu) < 0)
		return -errno;
	return setup_lapic(v);
}

int vcpu_set_tsc_khz(struct vcpu *v, uint32_t khz)
{
	return ioctl(v->fd, KVM_SET_TSC_KHZ, (unsigned long)khz) < 0 ? -errno : 0;
}

int vcpu_tsc_khz(struct vcpu *v)
{
	int khz = ioctl(v->fd, KVM_GET_TSC_KHZ, 0);
	return khz < 0 ? -errno : khz;
}

static void seg_flat(struct kvm_segment *s, uint16_t sel, uint8_t type, bool code)
{
	*s = (struct kvm_segment){ .base = 0, .limit = 0xffffffff, .selector = sel, .type = type,
				   .present = 1, .dpl = 0, .db = code ? 0 : 1, .s = 1, .l = code ? 1 : 0, .g = 1 };
}

int vcpu_setup_boot(struct vcpu *v, const struct boot_entry *entry)
{
	struct kvm_sregs s;
	if (ioctl(v->fd, KVM_GET_SREGS, &s) < 0)
		return -errno;
	seg_flat(&s.cs, BOOT_CS, 0xb, true);
	seg_flat(&s.ds, BOOT_DS, 0x3, false);
	s.es = s.fs = s.gs = s.ss = s.ds;
	s.tr = (struct kvm_segment){ .base = 0, .limit = 0x67, .selector = BOOT_TSS, .type = 0xb, .present = 1 };
	s.gdt.base = BOOT_GDT_ADDR;
	s.gdt.limit = 6 * 8 - 1;
	s.idt.base = BOOT_IDT_ADDR;
	s.idt.limit = 0;
	s.cr3 = entry->cr3;
	s.cr4 = 0x20;                      /* PAE */
	s.cr0 = 0x80000000u | 0x20 | 0x10 | 0x1; /* PG, NE, ET, PE: caches on */
	s.efer = 0x500;                    /* LME | LMA */
	if (ioctl(v->fd, KVM_SET_SREGS, &s) < 0)
		return -errno;
	struct kvm_regs r = { .rip = entry->rip, .rsi = entry->rsi, .rflags = 2 };
	if (ioctl(v->fd, KVM_SET_REGS, &r) < 0)
		return -errno;
	return 0;
}

void vcpu_dump(struct vcpu *v, FILE *f)
{
	struct kvm_regs r;
	struct kvm_sregs s;
	if (ioctl(v->fd, KVM_GET_REGS, &r) < 0 || ioctl(v->fd, KVM_GET_SREGS, &s) < 0) {
		fprintf(f, "ftvmm: vcpu %u: cannot read registers: %s\n", v->id, strerror(errno));
		return;
	}
	fprintf(f, "ftvmm: vcpu %u registers:\n", v->id);
	fprintf(f, " RIP %016llx RSP %016llx RFLAGS %08llx\n", r.rip, r.rsp, r.rflags);
	fprintf(f, " RAX %016llx RBX %016llx RCX %016llx RDX %016llx\n", r.rax, r.rbx, r.rcx, r.rdx);
	fprintf(f, " RSI %016llx RDI %016llx RBP %016llx\n", r.rsi, r.rdi, r.rbp);
	fprintf(f, " R8  %016llx R9  %016llx R10 %016llx R11 %016llx\n", r.r8, r.r9, r.r10, r.r11);
	fprintf(f, " R12 %016llx R13 %016llx R14 %016llx R15 %016llx\n", r.r12, r.r13, r.r14, r.r15);
	fprintf(f, " CS %04x base %llx  SS %04x  CR0 %llx CR2 %llx CR3 %llx CR4 %llx EFER %llx\n", s.cs.selector,
		s.cs.base, s.ss.selector, s.cr0, s.cr2, s.cr3, s.cr4, s.efer);
	fprintf(f, " GDT %llx/%x IDT %llx/%x APIC_BASE %llx\n", s.gdt.base, s.gdt.limit, s.idt.base, s.idt.limit,
		s.apic_base);
}

static void handle_io(struct vcpu *v)
{
	struct kvm_run *run = v->run;
	uint8_t *data = (uint8_t *)run + run->io.data_offset;
	bool wr = run->io.direction == KVM_EXIT_IO_OUT;
	for (uint32_t i = 0; i < run->io.count; i++) {
		if (bus_dispatch(&v->vm->pio, run->io.port, data, run->io.size, wr) < 0)
			debugx("unhandled %s port 0x%x size %u", wr ? "out" : "in", run->io.port, run->io.size);
		data += run->io.size;
	}
}

static void handle_mmio(struct vcpu *v)
{
	struct kvm_run *run = v->run;
	uint32_t len = run->mmio.len > 8 ? 8 : run->mmio.len;
	if (bus_dispatch(&v->vm->mmio, run->mmio.phys_addr, run->mmio.data, len, run->mmio.is_write) < 0)
		debugx("unhandled mmio %s 0x%llx len %u", run->mmio.is_write ? "write" : "read",
		       (unsigned long long)run->mmio.phys_addr, len);
}

static bool vm_exiting(struct vm *vm)
{
	return __atomic_load_n(&vm->exit_reason, __ATOMIC_ACQUIRE) != VM_RUNNING;
}

/* Park here while a pause is requested. Only called right after KVM_RUN returned EINTR with
 * immediate_exit set, i.e. once KVM has completed any PIO/MMIO the last exit left in flight: the
 * register state a checkpoint reads is then exact. */
static void vcpu_park(struct vcpu *v)
{
	struct vm *vm = v->vm;
	pthread_mutex_lock(&vm->pause_lock);
	if (vm->pause_requested) {
		vm->paused_vcpus++;
		pthread_cond_broadcast(&vm->pause_cond);
		while (vm->pause_requested && !vm_exiting(vm))
			pthread_cond_wait(&vm->pause_cond, &vm->pause_lock);
		vm->paused_vcpus--;
	}
	pthread_mutex_unlock(&vm->pause_lock);
}

static void *vcpu_thread(void *arg)
{
	struct vcpu *v = arg;
	struct vm *vm = v->vm;
	char name[16];
	snprintf(name, sizeof(name), "vcpu%u", v->id);
	pthread_setname_np(pthread_self(), name);
	/* the kick signal must interrupt KVM_RUN here, and only here */
	sigset_t set;
	sigemptyset(&set);
	sigaddset(&set, VCPU_KICK_SIGNAL);
	pthread_sigmask(SIG_UNBLOCK, &set, NULL);

	while (!vm_exiting(vm)) {
		int r = ioctl(v->fd, KVM_RUN, 0);
		if (r < 0) {
			if (errno == EINTR || errno == EAGAIN) {
				__atomic_store_n(&v->run->immediate_exit, 0, __ATOMIC_RELEASE);
				vcpu_park(v);
				continue;
			}
			warnx("vcpu %u: KVM_RUN failed: %s", v->id, strerror(errno));
			vm_request_exit(vm, VM_EXIT_ERROR);
			break;
		}
		switch (v->run->exit_reason) {
		case KVM_EXIT_IO:
			handle_io(v);
			break;
		case KVM_EXIT_MMIO:
			handle_mmio(v);
			break;
		case KVM_EXIT_HLT:
		case KVM_EXIT_INTR:
			break;
		case KVM_EXIT_DIRTY_RING_FULL:
			r = vcpu_dirty_ring_spill(v);
			if (r) {
				warnx("vcpu %u: cannot empty its full dirty ring: %s", v->id, strerror(-r));
				vm_request_exit(vm, VM_EXIT_ERROR);
			}
			break;
		case KVM_EXIT_SHUTDOWN:
			warnx("vcpu %u: guest triple fault (KVM_EXIT_SHUTDOWN)", v->id);
			vcpu_dump(v, stderr);
			vm_request_exit(vm, VM_EXIT_SHUTDOWN);
			break;
		case KVM_EXIT_SYSTEM_EVENT:
			switch (v->run->system_event.type) {
			case KVM_SYSTEM_EVENT_RESET:
				vm_request_exit(vm, VM_EXIT_REBOOT);
				break;
			case KVM_SYSTEM_EVENT_SHUTDOWN:
				vm_request_exit(vm, VM_EXIT_POWEROFF);
				break;
			default:
				warnx("vcpu %u: guest system event %u", v->id, v->run->system_event.type);
				vm_request_exit(vm, VM_EXIT_ERROR);
			}
			break;
		case KVM_EXIT_FAIL_ENTRY:
			warnx("vcpu %u: VM entry failed (hardware reason 0x%llx)", v->id,
			      (unsigned long long)v->run->fail_entry.hardware_entry_failure_reason);
			vcpu_dump(v, stderr);
			vm_request_exit(vm, VM_EXIT_ERROR);
			break;
		case KVM_EXIT_INTERNAL_ERROR:
			warnx("vcpu %u: KVM internal error (suberror %u)", v->id, v->run->internal.suberror);
			vcpu_dump(v, stderr);
			vm_request_exit(vm, VM_EXIT_ERROR);
			break;
		default:
			warnx("vcpu %u: unhandled exit reason %u", v->id, v->run->exit_reason);
			vcpu_dump(v, stderr);
			vm_request_exit(vm, VM_EXIT_ERROR);
		}
	}
	/* a pause waiting for this vCPU to park must learn that it never will */
	pthread_mutex_lock(&vm->pause_lock);
	pthread_cond_broadcast(&vm->pause_cond);
	pthread_mutex_unlock(&vm->pause_lock);
	return NULL;
}

int vcpu_start(struct vcpu *v)
{
	int r = pthread_create(&v->thread, NULL, vcpu_thread, v);
	if (r)
		return -r;
	v->started = true;
	return 0;
}

void vcpu_kick(struct vcpu *v)
{
	if (!v->run)
		return;
	__atomic_store_n(&v->run->immediate_exit, 1, __ATOMIC_RELEASE);
	if (v->started)
		pthread_kill(v->thread, VCPU_KICK_SIGNAL);
}

bool vcpu_has_pv_unhalt(const struct vcpu *v)
{
	for (uint32_t i = 0; v->cpuid && i < v->cpuid->nent; i++) {
		const struct kvm_cpuid_entry2 *e = &v->cpuid->entries[i];
		if (e->function == KVM_CPUID_FEATURES)
			return e->eax & (1u << KVM_FEATURE_PV_UNHALT);
	}
	return false;
}

/* KVM_HC_KICK_CPU is, inside KVM, an interrupt of delivery mode 3 (APIC_DM_REMRD) to the target's APIC ID,
 * which sets that vCPU's pv_unhalted flag; an MSI whose data carries delivery mode 3 takes the same path
 * (kvm_set_msi_irq copies the MSI's 3-bit mode), so it is the one way userspace can set the flag. Physical
 * destination mode, APIC ID = vCPU id (cpuid.c; at most 254 vCPUs, so it fits the MSI's 8 bits). */
int vcpu_pv_unhalt(struct vcpu *v)
{
	struct kvm_msi msi = { .address_lo = 0xfee00000u | (v->id << 12), .data = 3u << 8 };
	int r = ioctl(v->vm->vm_fd, KVM_SIGNAL_MSI, &msi);
	return r < 0 ? -errno : r;
}

void vcpu_destroy(struct vcpu *v)
{
	vcpu_dirty_ring_unmap(v);
	if (v->run)
		munmap(v->run, (size_t)v->vm->vcpu_mmap_size);
	if (v->fd >= 0)
		close(v->fd);
	free(v->cpuid);
	v->run = NULL;
	v->fd = -1;
	v->cpuid = NULL;
}

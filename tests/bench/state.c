/* state.c - what one epoch's state capture costs, step by step: each vCPU ioctl, the VM-wide ones, and state_capture whole.
 * A VM of NCPUS vCPUs (64 MiB, no devices) runs a real-mode loop writing 64 pages; every ~10 ms it is paused as an FT
 * epoch pauses it, and while paused: each of the ioctls save_vcpu (ft/vmstate.c) makes, once per vCPU, timed one by
 * one; the VM-wide ones (PIT, clock, 3 irqchips); then state_capture() as the primary calls it (ioctls + FDT
 * encoding). Per step: the median over ROUNDS pauses, in us, and its share of state_capture's median.
 *   usage: state NCPUS ROUNDS   (needs /dev/kvm; tests/bench/state.sh runs it in the test bed)
 * The ioctl list here follows save_vcpu's; keep them in step. */
#include "../../devices/machine.h"
#include "../../ft/state.h"
#include "../../vmm/util.h"
#include "../../vmm/vcpu.h"
#include "../../vmm/vm.h"
#include "bare_vm.h"

#include <linux/kvm.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <time.h>

enum { S_MP, S_REGS, S_SREGS, S_XSAVE, S_XCRS, S_DEBUG, S_LAPIC, S_TSCKHZ, S_MSRS, S_EVENTS, S_XSAVE_SIZE,
       S_PIT, S_CLOCK, S_IRQCHIP, S_CAPTURE, NSTEPS };
static const char *const step_name[NSTEPS] = {
	"KVM_GET_MP_STATE", "KVM_GET_REGS", "KVM_GET_SREGS", "KVM_GET_XSAVE(2)", "KVM_GET_XCRS", "KVM_GET_DEBUGREGS",
	"KVM_GET_LAPIC", "KVM_GET_TSC_KHZ", "KVM_GET_MSRS (all saved)", "KVM_GET_VCPU_EVENTS",
	"KVM_CHECK_EXTENSION(XSAVE2) (per vCPU per epoch before 2b0ef2f)", "KVM_GET_PIT2", "KVM_GET_CLOCK", "KVM_GET_IRQCHIP x3",
	"state_capture() whole",
};

/* MSR indexes as save_vcpu reads them: KVM's list (an upper bound is enough for the cost) */
static struct kvm_msrs *msr_request(struct vm *vm)
{
	struct kvm_msr_list *l = calloc(1, sizeof(*l) + 512 * sizeof(uint32_t));
	if (!l)
		return NULL;
	l->nmsrs = 512;
	if (ioctl(vm->kvm_fd, KVM_GET_MSR_INDEX_LIST, l) < 0) {
		free(l);
		return NULL;
	}
	struct kvm_msrs *m = calloc(1, sizeof(*m) + l->nmsrs * sizeof(struct kvm_msr_entry));
	unsigned n = 0;
	for (unsigned i = 0; m && i < l->nmsrs; i++) {
		/* only those this vCPU can read, as probe_msrs keeps */
		struct { struct kvm_msrs h; struct kvm_msr_entry e; } one = { .h.nmsrs = 1, .e.index = l->indices[i] };
		if (ioctl(vm->vcpus[0].fd, KVM_GET_MSRS, &one) == 1)
			m->entries[n++].index = l->indices[i];
	}
	if (m)
		m->nmsrs = n;
	free(l);
	return m;
}

#define T(step, expr)                                   \
	do {                                            \
		uint64_t t0_ = now_ns();                \
		if ((expr) < 0)                         \
			fail = 1;                       \
		t[step][i] += (now_ns() - t0_) / 1000;  \
	} while (0)

int main(int argc, char **argv)
{
	unsigned ncpus = argc == 3 ? (unsigned)strtoul(argv[1], NULL, 10) : 0;
	unsigned rounds = argc == 3 ? (unsigned)strtoul(argv[2], NULL, 10) : 0;
	if (ncpus < 1 || ncpus > 8 || rounds < 1 || rounds > 10000) {
		fprintf(stderr, "usage: %s NCPUS(1-8) ROUNDS(1-10000)\n", argv[0]);
		return 2;
	}
	static struct vm vm;
	char err[256] = "";
	if (vm_create(&vm, 64ull << 20, ncpus, err, sizeof(err))) {
		fprintf(stderr, "state: %s\n", err);
		return 1;
	}
	int fail = bare_vm_load(&vm);
	struct kvm_msrs *msrs = fail ? NULL : msr_request(&vm);
	int xsz = ioctl(vm.kvm_fd, KVM_CHECK_EXTENSION, KVM_CAP_XSAVE2);
	if (xsz < (int)sizeof(struct kvm_xsave))
		xsz = sizeof(struct kvm_xsave);
	struct kvm_xsave *xs = calloc(1, (size_t)xsz);
	uint64_t *t[NSTEPS];
	for (int s = 0; s < NSTEPS; s++)
		t[s] = calloc(rounds, sizeof(uint64_t));
	if (fail || !msrs || !xs || vm_start(&vm)) {
		fprintf(stderr, "state: cannot set up the VM\n");
		return 1;
	}
	struct machine mach = { .mem = 64ull << 20, .cpus = ncpus };
	for (unsigned i = 0; i < rounds && !fail; i++) {
		nanosleep(&(struct timespec){ .tv_nsec = 10 * 1000 * 1000 }, NULL);
		if (vm_pause(&vm)) {
			fail = 1;
			break;
		}
		for (unsigned c = 0; c < ncpus; c++) {
			int fd = vm.vcpus[c].fd;
			struct kvm_mp_state mp;
			struct kvm_regs regs;
			struct kvm_sregs sregs;
			struct kvm_xcrs xcrs;
			struct kvm_debugregs dbg;
			struct kvm_lapic_state lapic;
			struct kvm_vcpu_events ev;
			T(S_XSAVE_SIZE, ioctl(vm.kvm_fd, KVM_CHECK_EXTENSION, KVM_CAP_XSAVE2));
			T(S_MP, ioctl(fd, KVM_GET_MP_STATE, &mp));
			T(S_REGS, ioctl(fd, KVM_GET_REGS, &regs));
			T(S_SREGS, ioctl(fd, KVM_GET_SREGS, &sregs));
			T(S_XSAVE, ioctl(fd, xsz > (int)sizeof(struct kvm_xsave) ? KVM_GET_XSAVE2 : KVM_GET_XSAVE, xs));
			T(S_XCRS, ioctl(fd, KVM_GET_XCRS, &xcrs));
			T(S_DEBUG, ioctl(fd, KVM_GET_DEBUGREGS, &dbg));
			T(S_LAPIC, ioctl(fd, KVM_GET_LAPIC, &lapic));
			T(S_TSCKHZ, ioctl(fd, KVM_GET_TSC_KHZ, 0));
			T(S_MSRS, ioctl(fd, KVM_GET_MSRS, msrs));
			T(S_EVENTS, ioctl(fd, KVM_GET_VCPU_EVENTS, &ev));
		}
		struct kvm_pit_state2 pit;
		struct kvm_clock_data clk = { 0 };
		T(S_PIT, ioctl(vm.vm_fd, KVM_GET_PIT2, &pit));
		T(S_CLOCK, ioctl(vm.vm_fd, KVM_GET_CLOCK, &clk));
		for (int chip = 0; chip < 3; chip++) {
			struct kvm_irqchip ic = { .chip_id = (uint32_t)chip };
			T(S_IRQCHIP, ioctl(vm.vm_fd, KVM_GET_IRQCHIP, &ic));
		}
		void *fdt = NULL;
		size_t len = 0;
		T(S_CAPTURE, state_capture(&vm, &mach, &fdt, &len));
		free(fdt);
		vm_resume(&vm);
	}
	vm_request_exit(&vm, VM_EXIT_SIGNAL);
	vm_run_until_exit(&vm);
	if (fail) {
		fprintf(stderr, "state: a step failed\n");
		return 1;
	}
	for (int s = 0; s < NSTEPS; s++)
		qsort(t[s], rounds, sizeof(uint64_t), bare_cmp_u64);
	uint64_t whole = t[S_CAPTURE][rounds / 2];
	printf("# %u vCPUs, %u MSRs per vCPU, %u pauses: median us per epoch (all vCPUs), share of state_capture\n", ncpus,
	       msrs->nmsrs, rounds);
	for (int s = 0; s < NSTEPS; s++)
		printf("%-48s %6llu  %5.1f%%\n", step_name[s], (unsigned long long)t[s][rounds / 2],
		       whole ? 100.0 * (double)t[s][rounds / 2] / (double)whole : 0.0);
	vm_destroy(&vm);
	return 0;
}

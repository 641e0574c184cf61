/* pvkick.c - a paravirtual kick a vCPU got before its state was captured must still wake it after a restore. */
/*
 * Usage: pvkick   (needs a working /dev/kvm: t_snapshot.sh runs it in the test bed). Exit 0 when every check
 * passed; one line per check on stdout.
 *
 * What a Linux guest does (its PV spinlock): a waiter, interrupts off, halts; the lock's holder kicks it with
 * KVM_HC_KICK_CPU. KVM keeps that kick as a flag the waiter's next HLT consumes, and nothing in KVM's state
 * API shows the flag while the waiter is still runnable. Here, in real mode with no kernel:
 *   vCPU 0 (the waiter): cli is implied (IF=0), then "hlt; out 0x10" - it reaches port 0x10 only if woken;
 *   vCPU 1 (the holder): "KVM_HC_KICK_CPU(apic 0) by vmmcall; out 0x11".
 * vCPU 1 runs first, so vCPU 0 holds a kick it has not consumed; the VM's state is captured (ft/state.c, as in
 * every FT epoch) and applied to a second VM, whose vCPU 0 must then reach port 0x10. Two controls show the
 * checks can fail: the captured VM's own vCPU 0 wakes (the kick is real), and a vCPU that halts with IF=0 and
 * no kick stays halted (so "reached port 0x10" really means "was woken").
 */
#include "../../ft/state.h"
#include "../../vmm/guest_mem.h"
#include "kvmtest.h"

#include <stdlib.h>
#include <sys/resource.h>
#include <time.h>

#define MEM (16ull << 20)
#define WAITER_GPA 0x1000
#define KICKER_GPA 0x1100
#define PORT_WOKEN 0x10
#define PORT_KICKED 0x11

/* hlt; mov al,1; out 0x10,al; jmp $ */
static const uint8_t waiter_code[] = { 0xf4, 0xb0, 0x01, 0xe6, PORT_WOKEN, 0xeb, 0xfe };
/* mov eax,5 (KVM_HC_KICK_CPU); xor ebx,ebx (flags); xor ecx,ecx (APIC ID 0); vmmcall; mov al,2; out 0x11,al; jmp $ */
static const uint8_t kicker_code[] = { 0x66, 0xb8, 0x05, 0x00, 0x00, 0x00, 0x66, 0x31, 0xdb, 0x66, 0x31, 0xc9,
				       0x0f, 0x01, 0xd9, 0xb0, 0x02, 0xe6, PORT_KICKED, 0xeb, 0xfe };

static int new_vm(struct vm *vm, unsigned ncpus)
{
	char err[256] = "";
	if (vm_create(vm, MEM, ncpus, err, sizeof(err))) {
		fprintf(stderr, "pvkick: %s\n", err);
		return -1;
	}
	if (gmem_write(&vm->mem, WAITER_GPA, waiter_code, sizeof(waiter_code)) ||
	    gmem_write(&vm->mem, KICKER_GPA, kicker_code, sizeof(kicker_code))) {
		fprintf(stderr, "pvkick: cannot write the guest code\n");
		return -1;
	}
	return 0;
}

int main(void)
{
	kt_setup_alarm();
	static struct vm a, b, c;

	/* control: a vCPU that halts with IF=0 and no kick stays halted */
	if (new_vm(&c, 1) || kt_place(&c.vcpus[0], WAITER_GPA))
		return 2;
	kt_check(kt_run_until_io(&c.vcpus[0], 500) == -1, "without a kick, a vCPU halted with IF=0 stays halted (0.5 s)");
	kt_check(vcpu_has_pv_unhalt(&c.vcpus[0]), "the vCPU's CPUID offers KVM_FEATURE_PV_UNHALT");

	/* the holder kicks the waiter, which has not yet reached its HLT */
	if (new_vm(&a, 2) || kt_place(&a.vcpus[0], WAITER_GPA) || kt_place(&a.vcpus[1], KICKER_GPA))
		return 2;
	kt_check(kt_run_until_io(&a.vcpus[1], 5000) == PORT_KICKED, "vCPU 1 made its KVM_HC_KICK_CPU hypercall");
	struct kvm_mp_state mp;
	if (ioctl(a.vcpus[0].fd, KVM_GET_MP_STATE, &mp) == 0)
		printf("note: vCPU 0's mp-state after the kick: %s (the kick itself is not in KVM's state API)\n",
		       mp.mp_state == KVM_MP_STATE_RUNNABLE ? "runnable" : "other");

	void *fdt = NULL;
	size_t len = 0;
	int r = state_capture(&a, NULL, &fdt, &len);
	kt_check(r == 0, "state captured with the kick pending");
	if (r)
		return 1;
	kt_check(kt_run_until_io(&a.vcpus[0], 5000) == PORT_WOKEN, "control: on the captured VM, the kick wakes vCPU 0");

	/* the restore, as a takeover does it: memory first, then the state */
	char err[256] = "";
	if (new_vm(&b, 2))
		return 2;
	r = state_apply(&b, fdt, err, sizeof(err));
	kt_check(r == 0, "state applied to a second VM");
	if (r)
		fprintf(stderr, "pvkick: %s\n", err);
	else
		kt_check(kt_run_until_io(&b.vcpus[0], 5000) == PORT_WOKEN,
		      "the restored vCPU 0 is woken: the kick given before the capture was not lost");
	free(fdt);
	fdt = NULL;

	/* an AP the guest has not started (waiting for INIT/SIPI) gets no kick: KVM would spin on it */
	static struct vm d, e;
	if (new_vm(&d, 2) || kt_place(&d.vcpus[0], WAITER_GPA))
		return 2;
	struct kvm_mp_state ap;
	r = ioctl(d.vcpus[1].fd, KVM_GET_MP_STATE, &ap) < 0 || ap.mp_state != KVM_MP_STATE_UNINITIALIZED ||
	    state_capture(&d, NULL, &fdt, &len) || new_vm(&e, 2) || state_apply(&e, fdt, err, sizeof(err));
	kt_check(r == 0, "a VM with an AP waiting for its SIPI captured and applied");
	if (r == 0) {
		struct rusage u0, u1;
		struct timespec w0, w1;
		getrusage(RUSAGE_THREAD, &u0);
		clock_gettime(CLOCK_MONOTONIC, &w0);
		int ran = kt_run_until_io(&e.vcpus[1], 1000);
		clock_gettime(CLOCK_MONOTONIC, &w1);
		getrusage(RUSAGE_THREAD, &u1);
		double wall = (double)(w1.tv_sec - w0.tv_sec) + (double)(w1.tv_nsec - w0.tv_nsec) / 1e9;
		double cpu = (double)(u1.ru_utime.tv_sec - u0.ru_utime.tv_sec + u1.ru_stime.tv_sec - u0.ru_stime.tv_sec) +
			     (double)(u1.ru_utime.tv_usec - u0.ru_utime.tv_usec + u1.ru_stime.tv_usec - u0.ru_stime.tv_usec) / 1e6;
		char line[160];
		/* sleeping: in KVM_RUN until the alarm, using no CPU; spinning: the CPU time of the wall time, or out early */
		snprintf(line, sizeof(line), "the restored AP sleeps in KVM_RUN until its SIPI (%.2f s in KVM_RUN, %.2f s of "
			 "CPU)", wall, cpu);
		kt_check(ran == -1 && wall > 0.9 && cpu < 0.5 * wall, line);
	}
	free(fdt);
	printf("pvkick: %s\n", kt_failures ? "FAIL" : "PASS");
	return kt_failures ? 1 : 0;
}

/* kvmtest.h - helpers of the KVM-level restore checks (pvkick.c, pitedge.c): real-mode vCPUs run by hand. */
#ifndef FTVMM_TESTS_KVMTEST_H
#define FTVMM_TESTS_KVMTEST_H

#include "../../vmm/vcpu.h"
#include "../../vmm/vm.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/time.h>

static int kt_failures;

static inline void kt_check(int ok, const char *what)
{
	printf("%s %s\n", ok ? "ok:" : "FAILED:", what);
	if (!ok)
		kt_failures++;
}

static inline void kt_on_alarm(int sig)
{
	(void)sig;
}

/* SIGALRM interrupts KVM_RUN (no SA_RESTART): how a run is bounded. */
static inline void kt_setup_alarm(void)
{
	struct sigaction sa;
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = kt_on_alarm;
	sigaction(SIGALRM, &sa, NULL);
}

static inline void kt_arm(int ms)
{
	struct itimerval it = { .it_value = { .tv_sec = ms / 1000, .tv_usec = (ms % 1000) * 1000 } };
	setitimer(ITIMER_REAL, &it, NULL);
}

/* One KVM_RUN, interrupted by an armed alarm: the port of a port-I/O exit, -1 when the alarm came first (the
 * vCPU still in the guest, e.g. halted), -2 on any other exit. */
static inline int kt_run_once(struct vcpu *v)
{
	int r = ioctl(v->fd, KVM_RUN, 0);
	if (r < 0)
		return errno == EINTR ? -1 : -2;
	return v->run->exit_reason == KVM_EXIT_IO ? v->run->io.port : -2;
}

/* KVM_RUN until a port-I/O exit or `ms` pass: as kt_run_once. */
static inline int kt_run_until_io(struct vcpu *v, int ms)
{
	kt_arm(ms);
	int r = kt_run_once(v);
	kt_arm(0);
	return r;
}

/* vCPU `v` in real mode at 0:gpa, interrupts off, runnable (KVM leaves an AP waiting for a SIPI). 0 or -1. */
static inline int kt_place(struct vcpu *v, uint64_t gpa)
{
	struct kvm_sregs sregs;
	if (ioctl(v->fd, KVM_GET_SREGS, &sregs) < 0)
		return -1;
	sregs.cs.base = 0;
	sregs.cs.selector = 0;
	struct kvm_regs regs = { .rip = gpa, .rflags = 0x2 };
	struct kvm_mp_state mp = { .mp_state = KVM_MP_STATE_RUNNABLE };
	if (ioctl(v->fd, KVM_SET_SREGS, &sregs) < 0 || ioctl(v->fd, KVM_SET_REGS, &regs) < 0 ||
	    ioctl(v->fd, KVM_SET_MP_STATE, &mp) < 0)
		return -1;
	return 0;
}

#endif

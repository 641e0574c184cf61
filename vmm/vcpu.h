/* vcpu.h - one KVM vCPU: its fd, kvm_run page, thread, CPUID and the run loop. */
#ifndef FTVMM_VCPU_H
#define FTVMM_VCPU_H

#include <linux/kvm.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

struct vm;
struct boot_entry;

struct vcpu {
	struct vm *vm;
	unsigned id;
	int fd;
	struct kvm_run *run;
	pthread_t thread;
	bool started;
	struct kvm_cpuid2 *cpuid; /* what we set: part of the saved state */
	struct kvm_dirty_gfn *ring; /* dirty ring mode: KVM's ring of pages this vCPU wrote (dirty.c) */
	uint32_t ring_fetch;        /* next entry to read, under vm->dirty_lock */
};

/* Create vCPU `id` with its CPUID, MSRs, FPU and LAPIC LINT setup. 0 or -errno. */
int vcpu_create(struct vm *vm, unsigned id, struct vcpu *v);
/* Put the BSP at the kernel's 64-bit entry: long mode, flat segments, identity paging. */
int vcpu_setup_boot(struct vcpu *v, const struct boot_entry *entry);
/* KVM_SET_TSC_KHZ, and KVM_GET_TSC_KHZ: the rate in force (-errno on failure). */
int vcpu_set_tsc_khz(struct vcpu *v, uint32_t khz);
int vcpu_tsc_khz(struct vcpu *v);
int vcpu_start(struct vcpu *v);
/* Make the vCPU leave KVM_RUN soon (immediate_exit + signal). */
void vcpu_kick(struct vcpu *v);
void vcpu_destroy(struct vcpu *v);
/* Does the vCPU's CPUID offer KVM_FEATURE_PV_UNHALT (the guest may halt, interrupts off, until another vCPU's
 * KVM_HC_KICK_CPU)? */
bool vcpu_has_pv_unhalt(const struct vcpu *v);
/* Give the vCPU the kick that KVM_HC_KICK_CPU gives: its next HLT returns at once. 1 delivered, 0 not
 * (no such APIC), or -errno. */
int vcpu_pv_unhalt(struct vcpu *v);
/* Registers and segment state, for crash reports. */
void vcpu_dump(struct vcpu *v, FILE *f);
/* The signal used to kick vCPU threads out of KVM_RUN. */
#define VCPU_KICK_SIGNAL SIGUSR1

#endif

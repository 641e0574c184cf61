/* cpuid.h - per-vCPU CPUID: KVM's supported table with APIC IDs, topology and the hypervisor bit set. */
#ifndef FTVMM_CPUID_H
#define FTVMM_CPUID_H

#include <linux/kvm.h>
#include <stdbool.h>
#include <stdint.h>

/* Fetch KVM_GET_SUPPORTED_CPUID (malloc'd; caller frees). Returns NULL with errno on failure. */
struct kvm_cpuid2 *cpuid_get_supported(int kvm_fd);
/* What KVM emulates in software but KVM_GET_SUPPORTED_CPUID leaves out (QEMU adds the same): the TSC-deadline
 * LAPIC timer (CPUID.1:ECX[24]) when KVM_CAP_TSC_DEADLINE_TIMER says so (the ioctl reports it itself only since
 * Linux 6.14, KVM commit 9be4ec35d668; Debian 12's 6.1 does not). With it Linux arms its tick as a TSC
 * deadline and never calibrates the LAPIC timer against the PIT; without it, a guest whose calibration failed
 * on a slow host (the nested test bed) was left ticking on the PIT alone, and some such guests slept for good
 * after a takeover (2026-12-07, README: the test bed). */
void cpuid_add_emulated(struct kvm_cpuid2 *c, bool tsc_deadline);
/* Copy of `src` (malloc'd). */
struct kvm_cpuid2 *cpuid_dup(const struct kvm_cpuid2 *src);
/* Rewrite `c` in place for vCPU `cpu` (APIC ID == cpu) of `ncpus` cores in one package, one
 * thread per core. Pure function: unit-tested without KVM. */
void cpuid_configure(struct kvm_cpuid2 *c, unsigned cpu, unsigned ncpus);
/* Find an entry; NULL if absent. */
struct kvm_cpuid_entry2 *cpuid_find(struct kvm_cpuid2 *c, uint32_t function, uint32_t index);
/* Bits needed to number ncpus (ceil(log2(ncpus))). */
unsigned cpuid_id_bits(unsigned ncpus);

#endif

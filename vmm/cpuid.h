/* cpuid.h - per-vCPU CPUID: KVM's supported table with APIC IDs, topology and the hypervisor bit set. */
#ifndef FTVMM_CPUID_H
#define FTVMM_CPUID_H

#include <linux/kvm.h>
#include <stdint.h>

/* Fetch KVM_GET_SUPPORTED_CPUID (malloc'd; caller frees). Returns NULL with errno on failure. */
struct kvm_cpuid2 *cpuid_get_supported(int kvm_fd);
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

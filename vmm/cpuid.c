/* cpuid.c - builds each vCPU's CPUID from KVM's supported set: APIC IDs, core topology, paravirt leaves. */
#include "cpuid.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>

#define MAX_CPUID_ENTRIES 256

struct kvm_cpuid2 *cpuid_get_supported(int kvm_fd)
{
	for (unsigned n = MAX_CPUID_ENTRIES; n <= 4096; n *= 2) {
		struct kvm_cpuid2 *c = calloc(1, sizeof(*c) + n * sizeof(c->entries[0]));
		if (!c)
			return NULL;
		c->nent = n;
		if (ioctl(kvm_fd, KVM_GET_SUPPORTED_CPUID, c) == 0)
			return c;
		int e = errno;
		free(c);
		if (e != E2BIG) {
			errno = e;
			return NULL;
		}
	}
	errno = E2BIG;
	return NULL;
}

struct kvm_cpuid2 *cpuid_dup(const struct kvm_cpuid2 *src)
{
	size_t sz = sizeof(*src) + src->nent * sizeof(src->entries[0]);
	struct kvm_cpuid2 *c = malloc(sz);
	if (c)
		memcpy(c, src, sz);
	return c;
}

struct kvm_cpuid_entry2 *cpuid_find(struct kvm_cpuid2 *c, uint32_t function, uint32_t index)
{
	for (uint32_t i = 0; i < c->nent; i++) {
		struct kvm_cpuid_entry2 *e = &c->entries[i];
		if (e->function != function)
			continue;
		if ((e->flags & KVM_CPUID_FLAG_SIGNIFCANT_INDEX) && e->index != index)
			continue;
		return e;
	}
	return NULL;
}

unsigned cpuid_id_bits(unsigned ncpus)
{
	unsigned bits = 0;
	while ((1u << bits) < ncpus)
		bits++;
	return bits;
}

#define CPUID1_ECX_HYPERVISOR (1u << 31)
#define CPUID1_EDX_HTT (1u << 28)
#define CPUID80000001_ECX_TOPOEXT (1u << 22)
#define CPUIDD1_EAX_XSAVES (1u << 3)

void cpuid_configure(struct kvm_cpuid2 *c, unsigned cpu, unsigned ncpus)
{
	unsigned core_bits = cpuid_id_bits(ncpus);
	for (uint32_t i = 0; i < c->nent; i++) {
		struct kvm_cpuid_entry2 *e = &c->entries[i];
		switch (e->function) {
		case 1:
			/* initial APIC ID and the count of logical processors in the package */
			e->ebx = (e->ebx & 0x0000ffffu) | (cpu << 24) | ((ncpus > 255 ? 255 : ncpus) << 16);
			if (ncpus > 1)
				e->edx |= CPUID1_EDX_HTT;
			else
				e->edx &= ~CPUID1_EDX_HTT;
			e->ecx |= CPUID1_ECX_HYPERVISOR;
			break;
		case 4: {
			/* deterministic cache parameters: cores per package - 1 in EAX[31:26] */
			unsigned cores = ncpus > 64 ? 64 : ncpus;
			e->eax = (e->eax & 0x03ffffffu) | ((cores - 1) << 26);
			break;
		}
		case 0xb:
		case 0x1f:
			/* extended topology: level 0 = SMT (one thread per core), level 1 = core */
			if (e->index == 0) {
				e->eax = 0;
				e->ebx = 1;
				e->ecx = (1u << 8) | 0;
			} else if (e->index == 1) {
				e->eax = core_bits;
				e->ebx = ncpus;
				e->ecx = (2u << 8) | 1;
			} else {
				e->eax = 0;
				e->ebx = 0;
				e->ecx = e->index;
			}
			e->edx = cpu;
			break;
		case 0xd:
			/* No XSAVES: KVM sizes the compacted area (0xD.1 EBX) from XCR0|XSS, and on nested hosts
			 * (the test bed) that disagrees with the guest's own sum, so Linux warns and drops XSAVE
			 * altogether. Standard-format XSAVE keeps AVX and friends. */
			if (e->index == 1)
				e->eax &= ~CPUIDD1_EAX_XSAVES;
			break;
		case 0x80000001:
			/* without TOPOEXT Linux takes AMD topology from 0x80000008, which we control */
			e->ecx &= ~CPUID80000001_ECX_TOPOEXT;
			break;
		case 0x80000008:
			e->ecx = (e->ecx & ~0xf0ffu) | (core_bits << 12) | ((ncpus - 1) & 0xff);
			break;
		default:
			break;
		}
	}
}

/* mptable.h - Intel MultiProcessor Specification 1.4 table: how the guest finds its CPUs and IOAPIC. */
#ifndef FTVMM_MPTABLE_H
#define FTVMM_MPTABLE_H

#include <stddef.h>
#include <stdint.h>

#define IOAPIC_ADDR 0xfec00000u
#define LAPIC_ADDR 0xfee00000u
#define IOAPIC_PINS 24
#define MPTABLE_MAX_CPUS 254 /* APIC IDs are 8 bits and one ID goes to the IOAPIC */

struct mp_pci_irq {
	uint8_t slot; /* PCI device number on bus 0 */
	uint8_t pin;  /* 0 = INTA# */
	uint8_t gsi;  /* IOAPIC input */
};

/* Bytes mptable_build needs. */
size_t mptable_size(unsigned ncpus, unsigned npci);
/* Build the floating pointer and the configuration table into buf, which will be placed at guest
 * physical address gpa. cpu_signature/cpu_features come from CPUID leaf 1 (EAX, EDX).
 * Returns the size written, or 0 if buflen is too small or ncpus is out of range. */
size_t mptable_build(void *buf, size_t buflen, uint32_t gpa, unsigned ncpus, uint32_t cpu_signature,
		     uint32_t cpu_features, const struct mp_pci_irq *pci, unsigned npci);
/* 8-bit checksum as the spec defines it: the bytes of a valid structure sum to 0. */
uint8_t mptable_checksum(const void *p, size_t len);

#endif

/* mptable.c - builds the MP floating pointer and configuration table (CPUs, buses, IOAPIC, IRQ routes). */
#include "mptable.h"

#include <string.h>

struct __attribute__((packed)) mpf_intel {
	char signature[4]; /* "_MP_" */
	uint32_t physptr;
	uint8_t length; /* in 16-byte units */
	uint8_t specification;
	uint8_t checksum;
	uint8_t feature[5];
};

struct __attribute__((packed)) mpc_table {
	char signature[4]; /* "PCMP" */
	uint16_t length;
	uint8_t spec;
	uint8_t checksum;
	char oem[8];
	char productid[12];
	uint32_t oemptr;
	uint16_t oemsize;
	uint16_t oemcount;
	uint32_t lapic;
	uint16_t ext_length;
	uint8_t ext_checksum;
	uint8_t reserved;
};

struct __attribute__((packed)) mpc_cpu {
	uint8_t type, apicid, apicver, cpuflag;
	uint32_t cpufeature, featureflag, reserved[2];
};

struct __attribute__((packed)) mpc_bus {
	uint8_t type, busid;
	char bustype[6];
};

struct __attribute__((packed)) mpc_ioapic {
	uint8_t type, apicid, apicver, flags;
	uint32_t apicaddr;
};

struct __attribute__((packed)) mpc_intsrc {
	uint8_t type, irqtype;
	uint16_t irqflag;
	uint8_t srcbus, srcbusirq, dstapic, dstirq;
};

enum { MP_PROCESSOR = 0, MP_BUS = 1, MP_IOAPIC = 2, MP_INTSRC = 3, MP_LINTSRC = 4 };
enum { MP_INT = 0, MP_NMI = 1, MP_EXTINT = 3 };
#define CPU_ENABLED 1
#define CPU_BSP 2
#define BUS_PCI 0
#define BUS_ISA 1
#define APIC_VERSION 0x14
#define IOAPIC_VERSION 0x11
#define ISA_IRQS 16

uint8_t mptable_checksum(const void *p, size_t len)
{
	const uint8_t *b = p;
	uint8_t sum = 0;
	for (size_t i = 0; i < len; i++)
		sum = (uint8_t)(sum + b[i]);
	return (uint8_t)(0 - sum);
}

static size_t config_size(unsigned ncpus, unsigned npci)
{
	return sizeof(struct mpc_table) + ncpus * sizeof(struct mpc_cpu) + 2 * sizeof(struct mpc_bus) +
	       sizeof(struct mpc_ioapic) + (ISA_IRQS + npci + 2) * sizeof(struct mpc_intsrc);
}

size_t mptable_size(unsigned ncpus, unsigned npci)
{
	return sizeof(struct mpf_intel) + config_size(ncpus, npci);
}

size_t mptable_build(void *buf, size_t buflen, uint32_t gpa, unsigned ncpus, uint32_t cpu_signature,
		     uint32_t cpu_features, const struct mp_pci_irq *pci, unsigned npci)
{
	size_t total = mptable_size(ncpus, npci);
	if (ncpus == 0 || ncpus > MPTABLE_MAX_CPUS || total > buflen || total > 0xffff)
		return 0;
	memset(buf, 0, total);
	uint8_t *p = buf;
	struct mpf_intel *mpf = (struct mpf_intel *)p;
	struct mpc_table *mpc = (struct mpc_table *)(p + sizeof(*mpf));
	uint8_t *e = (uint8_t *)(mpc + 1);
	uint8_t ioapic_id = (uint8_t)ncpus;
	uint16_t count = 0;

	for (unsigned i = 0; i < ncpus; i++, count++) {
		struct mpc_cpu *c = (struct mpc_cpu *)e;
		c->type = MP_PROCESSOR;
		c->apicid = (uint8_t)i;
		c->apicver = APIC_VERSION;
		c->cpuflag = CPU_ENABLED | (i == 0 ? CPU_BSP : 0);
		c->cpufeature = cpu_signature;
		c->featureflag = cpu_features;
		e += sizeof(*c);
	}
	static const char *const bus_names[2] = { "PCI   ", "ISA   " };
	for (uint8_t b = 0; b < 2; b++, count++) {
		struct mpc_bus *bus = (struct mpc_bus *)e;
		bus->type = MP_BUS;
		bus->busid = b;
		memcpy(bus->bustype, bus_names[b], 6);
		e += sizeof(*bus);
	}
	struct mpc_ioapic *io = (struct mpc_ioapic *)e;
	io->type = MP_IOAPIC;
	io->apicid = ioapic_id;
	io->apicver = IOAPIC_VERSION;
	io->flags = 1;
	io->apicaddr = IOAPIC_ADDR;
	e += sizeof(*io);
	count++;

	/* ISA IRQ n arrives on IOAPIC pin n: that is KVM's default GSI routing, which the in-kernel PIT
	 * and our ISA devices use (KVM_IRQ_LINE on GSI n). */
	for (uint8_t irq = 0; irq < ISA_IRQS; irq++, count++) {
		struct mpc_intsrc *s = (struct mpc_intsrc *)e;
		*s = (struct mpc_intsrc){ .type = MP_INTSRC, .irqtype = MP_INT, .irqflag = 0, .srcbus = BUS_ISA,
					  .srcbusirq = irq, .dstapic = ioapic_id, .dstirq = irq };
		e += sizeof(*s);
	}
	/* PCI INTx: source IRQ encodes (device << 2 | pin); flags 0 = bus default, i.e. level/active-low. */
	for (unsigned i = 0; i < npci; i++, count++) {
		struct mpc_intsrc *s = (struct mpc_intsrc *)e;
		*s = (struct mpc_intsrc){ .type = MP_INTSRC, .irqtype = MP_INT, .irqflag = 0, .srcbus = BUS_PCI,
					  .srcbusirq = (uint8_t)((pci[i].slot << 2) | (pci[i].pin & 3)),
					  .dstapic = ioapic_id, .dstirq = pci[i].gsi };
		e += sizeof(*s);
	}
	/* Virtual-wire: LINT0 takes the PIC's ExtINT, LINT1 the NMI, on every local APIC (0xff). */
	struct mpc_intsrc *l0 = (struct mpc_intsrc *)e;
	*l0 = (struct mpc_intsrc){ .type = MP_LINTSRC, .irqtype = MP_EXTINT, .srcbus = BUS_ISA, .dstapic = 0xff, .dstirq = 0 };
	e += sizeof(*l0);
	struct mpc_intsrc *l1 = (struct mpc_intsrc *)e;
	*l1 = (struct mpc_intsrc){ .type = MP_LINTSRC, .irqtype = MP_NMI, .srcbus = BUS_ISA, .dstapic = 0xff, .dstirq = 1 };
	count += 2;

	memcpy(mpc->signature, "PCMP", 4);
	mpc->length = (uint16_t)config_size(ncpus, npci);
	mpc->spec = 4;
	memcpy(mpc->oem, "FTVMM   ", 8);
	memcpy(mpc->productid, "FTVMM-0.1   ", 12);
	mpc->oemcount = count;
	mpc->lapic = LAPIC_ADDR;
	mpc->checksum = mptable_checksum(mpc, mpc->length);

	memcpy(mpf->signature, "_MP_", 4);
	mpf->physptr = gpa + (uint32_t)sizeof(*mpf);
	mpf->length = 1;
	mpf->specification = 4;
	mpf->checksum = mptable_checksum(mpf, sizeof(*mpf));
	return total;
}

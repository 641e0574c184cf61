/* test_mptable.c - the Intel MP floating pointer and configuration table built by mptable.c. */
#include "../../vmm/mptable.h"
#include "test.h"

#include <stdbool.h>
#include <stdint.h>

#define GPA 0xf0000u

/* The spec's layouts, written out independently of mptable.c. */
struct __attribute__((packed)) t_mpf {
	char sig[4];
	uint32_t physptr;
	uint8_t length, spec, checksum, feature[5];
};
struct __attribute__((packed)) t_mpc {
	char sig[4];
	uint16_t length;
	uint8_t spec, checksum;
	char oem[8], product[12];
	uint32_t oemptr;
	uint16_t oemsize, count;
	uint32_t lapic;
	uint16_t ext_length;
	uint8_t ext_checksum, reserved;
};
struct __attribute__((packed)) t_cpu {
	uint8_t type, apicid, apicver, flags;
	uint32_t signature, features, reserved[2];
};
struct __attribute__((packed)) t_bus {
	uint8_t type, id;
	char name[6];
};
struct __attribute__((packed)) t_ioapic {
	uint8_t type, id, ver, flags;
	uint32_t addr;
};
struct __attribute__((packed)) t_int {
	uint8_t type, irqtype;
	uint16_t flags;
	uint8_t srcbus, srcirq, dstapic, dstirq;
};

_Static_assert(sizeof(struct t_mpf) == 16, "mpf");
_Static_assert(sizeof(struct t_mpc) == 44, "mpc");
_Static_assert(sizeof(struct t_cpu) == 20, "cpu");
_Static_assert(sizeof(struct t_bus) == 8, "bus");

static unsigned bytesum(const void *p, size_t len)
{
	const uint8_t *b = p;
	unsigned s = 0;
	for (size_t i = 0; i < len; i++)
		s += b[i];
	return s & 0xff;
}

static void check_table(unsigned ncpus, const struct mp_pci_irq *pci, unsigned npci)
{
	const uint32_t sig = 0x000806f8, feat = 0x178bfbff;
	size_t size = mptable_size(ncpus, npci);
	CHECK(size > sizeof(struct t_mpf) + sizeof(struct t_mpc));
	size_t cap = size + 64;
	uint8_t *buf = malloc(cap);
	CHECK(buf != NULL);
	memset(buf, 0xcc, cap);
	CHECK_EQ(mptable_build(buf, cap, GPA, ncpus, sig, feat, pci, npci), size);
	for (size_t i = size; i < cap; i++)
		CHECK_EQ(buf[i], 0xcc); /* nothing written past the reported size */

	/* the floating pointer: 16-byte aligned "_MP_" somewhere in the buffer (the guest scans for it) */
	struct t_mpf *mpf = NULL;
	for (size_t off = 0; off + 16 <= size; off += 16)
		if (!memcmp(buf + off, "_MP_", 4)) {
			CHECK(mpf == NULL); /* exactly one */
			mpf = (struct t_mpf *)(buf + off);
		}
	CHECK(mpf != NULL);
	CHECK_EQ(bytesum(mpf, 16), 0);
	CHECK_EQ(mpf->length, 1);
	CHECK_EQ(mpf->spec, 4);
	CHECK_EQ(mpf->feature[0], 0); /* 0: a configuration table is present */
	CHECK(mpf->physptr >= GPA && mpf->physptr - GPA + sizeof(struct t_mpc) <= size);
	CHECK_EQ(mpf->physptr % 4, 0);

	struct t_mpc *mpc = (struct t_mpc *)(buf + (mpf->physptr - GPA));
	CHECK(!memcmp(mpc->sig, "PCMP", 4));
	CHECK_EQ(mpc->spec, 4);
	CHECK(mpc->length <= size - (mpf->physptr - GPA));
	CHECK_EQ(bytesum(mpc, mpc->length), 0);
	CHECK_EQ(mpc->lapic, LAPIC_ADDR);
	CHECK_EQ(mpc->ext_length, 0);
	CHECK_EQ(mpc->oemptr, 0);

	/* walk the entries */
	uint8_t *e = (uint8_t *)(mpc + 1), *end = (uint8_t *)mpc + mpc->length;
	unsigned count = 0, ncpu = 0, nbsp = 0, nioapic = 0, nlint = 0, npci_seen = 0;
	bool seen_cpu[256] = { 0 };
	unsigned isa_routes[16] = { 0 };
	int pci_bus = -1, isa_bus = -1, ioapic_id = -1;
	bool seen_pci[64] = { 0 };
	while (e < end) {
		count++;
		switch (e[0]) {
		case 0: {
			struct t_cpu *c = (struct t_cpu *)e;
			CHECK(e + sizeof(*c) <= end);
			CHECK(c->apicid < ncpus);
			CHECK(!seen_cpu[c->apicid]);
			seen_cpu[c->apicid] = true;
			CHECK(c->flags & 1); /* enabled */
			if (c->flags & 2) {
				nbsp++;
				CHECK_EQ(c->apicid, 0);
			}
			CHECK_EQ(c->signature, sig);
			CHECK_EQ(c->features, feat);
			CHECK(c->apicver >= 0x10); /* an integrated (x)APIC */
			/* processors come in APIC ID order */
			CHECK_EQ(c->apicid, ncpu);
			ncpu++;
			e += sizeof(*c);
			break;
		}
		case 1: {
			struct t_bus *b = (struct t_bus *)e;
			if (!memcmp(b->name, "PCI   ", 6)) {
				CHECK_EQ(pci_bus, -1);
				pci_bus = b->id;
			} else if (!memcmp(b->name, "ISA   ", 6)) {
				CHECK_EQ(isa_bus, -1);
				isa_bus = b->id;
			} else {
				CHECK(!"unexpected bus type");
			}
			e += sizeof(*b);
			break;
		}
		case 2: {
			struct t_ioapic *io = (struct t_ioapic *)e;
			nioapic++;
			ioapic_id = io->id;
			CHECK_EQ(io->id, ncpus);
			CHECK_EQ(io->flags & 1, 1);
			CHECK_EQ(io->addr, IOAPIC_ADDR);
			CHECK_EQ(io->addr, 0xFEC00000u);
			e += sizeof(*io);
			break;
		}
		case 3: {
			struct t_int *s = (struct t_int *)e;
			CHECK_EQ(s->irqtype, 0); /* INT */
			CHECK(ioapic_id >= 0);   /* the IOAPIC is declared before routes that name it */
			CHECK_EQ(s->dstapic, ioapic_id);
			CHECK(s->dstirq < IOAPIC_PINS);
			if (s->srcbus == isa_bus && isa_bus >= 0) {
				CHECK(s->srcirq < 16);
				CHECK_EQ(s->dstirq, s->srcirq); /* identity */
				CHECK_EQ(s->flags, 0);          /* ISA default: edge, active high */
				isa_routes[s->srcirq]++;
			} else {
				CHECK(pci_bus >= 0);
				CHECK_EQ(s->srcbus, pci_bus);
				/* source IRQ = device << 2 | pin: find the one it came from */
				bool found = false;
				for (unsigned i = 0; i < npci; i++)
					if (s->srcirq == ((pci[i].slot << 2) | pci[i].pin) && s->dstirq == pci[i].gsi) {
						CHECK(!seen_pci[i]);
						seen_pci[i] = found = true;
					}
				CHECK(found);
				npci_seen++;
			}
			e += sizeof(*s);
			break;
		}
		case 4: {
			struct t_int *s = (struct t_int *)e;
			CHECK_EQ(s->dstapic, 0xff); /* all local APICs */
			if (s->dstirq == 0)
				CHECK_EQ(s->irqtype, 3); /* LINT0: ExtINT */
			else
				CHECK(s->dstirq == 1 && s->irqtype == 1); /* LINT1: NMI */
			nlint++;
			e += sizeof(*s);
			break;
		}
		default:
			fprintf(stderr, "unknown MP entry type %u\n", e[0]);
			CHECK(0);
		}
	}
	CHECK(e == end); /* length matches the entries exactly */
	CHECK_EQ(count, mpc->count);
	CHECK_EQ(ncpu, ncpus);
	CHECK_EQ(nbsp, 1);
	CHECK(seen_cpu[0]);
	CHECK_EQ(nioapic, 1);
	CHECK(ioapic_id >= 0 && !seen_cpu[ioapic_id]); /* no APIC ID clash */
	CHECK(pci_bus >= 0 && isa_bus >= 0 && pci_bus != isa_bus);
	for (unsigned i = 0; i < 16; i++)
		CHECK_EQ(isa_routes[i], 1);
	CHECK_EQ(npci_seen, npci);
	CHECK_EQ(nlint, 2);
	free(buf);
}

int main(void)
{
	/* the checksum helper itself */
	const uint8_t three[3] = { 1, 2, 3 };
	CHECK_EQ(mptable_checksum(three, 3), 250);
	CHECK_EQ(mptable_checksum(three, 0), 0);
	uint8_t wrap[4] = { 0xff, 0xff, 0x02, 0 };
	wrap[3] = mptable_checksum(wrap, 3);
	CHECK_EQ(bytesum(wrap, 4), 0);

	static const struct mp_pci_irq pci[] = {
		{ .slot = 1, .pin = 0, .gsi = 16 }, { .slot = 2, .pin = 0, .gsi = 17 },
		{ .slot = 3, .pin = 1, .gsi = 18 }, { .slot = 31, .pin = 3, .gsi = 23 },
	};
	const unsigned counts[] = { 1, 2, 3, 8, 64, 253, 254 };
	for (unsigned i = 0; i < sizeof(counts) / sizeof(counts[0]); i++) {
		check_table(counts[i], pci, 4);
		check_table(counts[i], NULL, 0);
	}
	check_table(2, pci, 1);

	/* the size grows by one processor entry per CPU and one route per PCI line */
	CHECK_EQ(mptable_size(2, 0) - mptable_size(1, 0), 20);
	CHECK_EQ(mptable_size(1, 1) - mptable_size(1, 0), 8);

	/* rejections: return 0 and leave the buffer alone */
	size_t size = mptable_size(4, 4);
	uint8_t *buf = malloc(size + 16);
	CHECK(buf != NULL);
	memset(buf, 0xcc, size + 16);
	CHECK_EQ(mptable_build(buf, size + 16, GPA, 0, 0, 0, pci, 4), 0);
	CHECK_EQ(mptable_build(buf, size + 16, GPA, 255, 0, 0, pci, 4), 0);
	CHECK_EQ(mptable_build(buf, size + 16, GPA, 1000, 0, 0, pci, 4), 0);
	CHECK_EQ(mptable_build(buf, size - 1, GPA, 4, 0, 0, pci, 4), 0);
	CHECK_EQ(mptable_build(buf, 0, GPA, 4, 0, 0, pci, 4), 0);
	for (size_t i = 0; i < size + 16; i++)
		CHECK_EQ(buf[i], 0xcc);
	/* exactly enough room is enough */
	CHECK_EQ(mptable_build(buf, size, GPA, 4, 0, 0, pci, 4), size);
	free(buf);

	TEST_DONE("test_mptable");
}

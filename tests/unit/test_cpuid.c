/* test_cpuid.c - per-vCPU CPUID rewriting (APIC IDs, topology leaves, hypervisor bit) and cpuid_find. */
#include "../../vmm/cpuid.h"
#include "test.h"

#include <stdint.h>

#define SIG KVM_CPUID_FLAG_SIGNIFCANT_INDEX

static const struct kvm_cpuid_entry2 template[] = {
	{ .function = 0, .eax = 0x1f, .ebx = 0x756e6547, .ecx = 0x6c65746e, .edx = 0x49656e69 },
	/* leaf 1: stale APIC ID 0xab and count 0x10 in EBX, HTT set, hypervisor bit clear */
	{ .function = 1, .eax = 0x000806f8, .ebx = 0xab100800, .ecx = 0x76fa3223, .edx = 0x1f8bfbff },
	/* leaf 4: caches with the host's core count (EAX[31:26] = 63) and sharing fields below */
	{ .function = 4, .index = 0, .flags = SIG, .eax = 0xfc004121, .ebx = 0x02c0003f, .ecx = 0x3f, .edx = 0 },
	{ .function = 4, .index = 1, .flags = SIG, .eax = 0xfc004122, .ebx = 0x01c0003f, .ecx = 0x3f, .edx = 0 },
	{ .function = 4, .index = 2, .flags = SIG, .eax = 0xfc004143, .ebx = 0x03c0003f, .ecx = 0x3ff, .edx = 0 },
	{ .function = 4, .index = 3, .flags = SIG, .eax = 0xfc07c163, .ebx = 0x03c0003f, .ecx = 0xbfff, .edx = 6 },
	{ .function = 0xb, .index = 0, .flags = SIG, .eax = 1, .ebx = 2, .ecx = 0x100, .edx = 0x55 },
	{ .function = 0xb, .index = 1, .flags = SIG, .eax = 7, .ebx = 96, .ecx = 0x201, .edx = 0x55 },
	{ .function = 0xb, .index = 2, .flags = SIG, .eax = 0, .ebx = 0, .ecx = 2, .edx = 0x55 },
	{ .function = 0x1f, .index = 0, .flags = SIG, .eax = 1, .ebx = 2, .ecx = 0x100, .edx = 0x55 },
	{ .function = 0x1f, .index = 1, .flags = SIG, .eax = 7, .ebx = 96, .ecx = 0x201, .edx = 0x55 },
	{ .function = 0x1f, .index = 2, .flags = SIG, .eax = 0, .ebx = 0, .ecx = 2, .edx = 0x55 },
	{ .function = 0x80000000, .eax = 0x80000008 },
	/* TOPOEXT (ECX bit 22) set along with LAHF (bit 0) and others */
	{ .function = 0x80000001, .ecx = 0x00400121, .edx = 0x2c100800 },
	/* ECX: PerfTscSize [17:16] = 3, ApicIdSize [15:12] = 7, [11:8] = 0xa, NC = 0x3f */
	{ .function = 0x80000008, .eax = 0x3030, .ebx = 0x1234, .ecx = 0x00037a3f, .edx = 0 },
};
#define NENT (sizeof(template) / sizeof(template[0]))

static struct kvm_cpuid2 *make_table(void)
{
	struct kvm_cpuid2 *c = calloc(1, sizeof(*c) + NENT * sizeof(c->entries[0]));
	CHECK(c != NULL);
	c->nent = NENT;
	memcpy(c->entries, template, sizeof(template));
	return c;
}

static const struct kvm_cpuid_entry2 *orig(uint32_t fn, uint32_t idx)
{
	for (unsigned i = 0; i < NENT; i++)
		if (template[i].function == fn && template[i].index == idx)
			return &template[i];
	return NULL;
}

static unsigned ceil_log2(unsigned n)
{
	unsigned b = 0;
	while ((1ull << b) < n)
		b++;
	return b;
}

static void check_topology_leaf(struct kvm_cpuid2 *c, uint32_t fn, unsigned cpu, unsigned n)
{
	struct kvm_cpuid_entry2 *l0 = cpuid_find(c, fn, 0), *l1 = cpuid_find(c, fn, 1), *l2 = cpuid_find(c, fn, 2);
	CHECK(l0 && l1 && l2);
	/* SMT level: one thread per core */
	CHECK_EQ(l0->eax & 0x1f, 0);
	CHECK_EQ(l0->ebx & 0xffff, 1);
	CHECK_EQ((l0->ecx >> 8) & 0xff, 1); /* type SMT */
	CHECK_EQ(l0->ecx & 0xff, 0);
	/* core level: shift past every core ID, n logical processors */
	CHECK_EQ(l1->eax & 0x1f, ceil_log2(n));
	CHECK_EQ(l1->ebx & 0xffff, n);
	CHECK_EQ((l1->ecx >> 8) & 0xff, 2); /* type Core */
	CHECK_EQ(l1->ecx & 0xff, 1);
	CHECK_EQ(((n - 1) >> (l1->eax & 0x1f)), 0); /* all CPUs in package 0 */
	/* the level after the last is invalid */
	CHECK_EQ((l2->ecx >> 8) & 0xff, 0);
	CHECK_EQ(l2->ecx & 0xff, 2);
	CHECK_EQ(l2->ebx & 0xffff, 0);
	/* x2APIC ID in EDX on every subleaf */
	CHECK_EQ(l0->edx, cpu);
	CHECK_EQ(l1->edx, cpu);
	CHECK_EQ(l2->edx, cpu);
}

static void check_vcpu(unsigned cpu, unsigned n)
{
	struct kvm_cpuid2 *src = make_table();
	struct kvm_cpuid2 *c = cpuid_dup(src);
	CHECK(c != NULL);
	CHECK(c != src);
	CHECK_EQ(c->nent, NENT);
	cpuid_configure(c, cpu, n);
	/* configure works on its argument only */
	CHECK(memcmp(src->entries, template, sizeof(template)) == 0);

	const struct kvm_cpuid_entry2 *o1 = orig(1, 0);
	struct kvm_cpuid_entry2 *l1 = cpuid_find(c, 1, 0);
	CHECK(l1 != NULL);
	CHECK_EQ(l1->ebx >> 24, cpu);             /* initial APIC ID */
	CHECK_EQ((l1->ebx >> 16) & 0xff, n > 255 ? 255 : n); /* logical processors per package */
	CHECK_EQ(l1->ebx & 0xffff, o1->ebx & 0xffff); /* brand index and CLFLUSH size kept */
	CHECK_EQ(!!(l1->edx & (1u << 28)), n > 1);   /* HTT iff more than one logical CPU */
	CHECK_EQ(l1->edx & ~(1u << 28), o1->edx & ~(1u << 28));
	CHECK(l1->ecx & (1u << 31));                 /* hypervisor present */
	CHECK_EQ(l1->ecx & ~(1u << 31), o1->ecx);
	CHECK_EQ(l1->eax, o1->eax);

	/* leaf 4: cores per package - 1 in EAX[31:26], the rest kept */
	for (uint32_t i = 0; i < 4; i++) {
		struct kvm_cpuid_entry2 *e = cpuid_find(c, 4, i);
		const struct kvm_cpuid_entry2 *o = orig(4, i);
		CHECK(e != NULL);
		CHECK_EQ(e->index, i);
		CHECK_EQ(e->eax >> 26, (n > 64 ? 64 : n) - 1);
		CHECK_EQ(e->eax & 0x03ffffff, o->eax & 0x03ffffff);
		CHECK_EQ(e->ebx, o->ebx);
		CHECK_EQ(e->ecx, o->ecx);
	}

	check_topology_leaf(c, 0xb, cpu, n);
	check_topology_leaf(c, 0x1f, cpu, n);
	/* the APIC ID agrees between leaf 1 and the x2APIC leaves */
	CHECK_EQ(l1->ebx >> 24, cpuid_find(c, 0xb, 0)->edx);

	struct kvm_cpuid_entry2 *e = cpuid_find(c, 0x80000001, 0);
	CHECK(e != NULL);
	CHECK_EQ(e->ecx & (1u << 22), 0); /* TOPOEXT off */
	CHECK_EQ(e->ecx, orig(0x80000001, 0)->ecx & ~(1u << 22));
	CHECK_EQ(e->edx, orig(0x80000001, 0)->edx);

	e = cpuid_find(c, 0x80000008, 0);
	CHECK(e != NULL);
	CHECK_EQ(e->ecx & 0xff, n - 1);                  /* NC */
	CHECK_EQ((e->ecx >> 12) & 0xf, ceil_log2(n));    /* ApicIdSize */
	CHECK_EQ(e->ecx & ~0xf0ffu, orig(0x80000008, 0)->ecx & ~0xf0ffu);
	CHECK_EQ(e->eax, orig(0x80000008, 0)->eax);
	CHECK_EQ(e->ebx, orig(0x80000008, 0)->ebx);

	/* leaves the rewrite has no business with are untouched */
	CHECK(memcmp(cpuid_find(c, 0, 0), orig(0, 0), sizeof(template[0])) == 0);
	CHECK(memcmp(cpuid_find(c, 0x80000000, 0), orig(0x80000000, 0), sizeof(template[0])) == 0);

	free(c);
	free(src);
}

static void test_find(void)
{
	struct kvm_cpuid2 *c = make_table();
	/* with SIGNIFCANT_INDEX the subleaf must match */
	for (uint32_t i = 0; i < 4; i++) {
		struct kvm_cpuid_entry2 *e = cpuid_find(c, 4, i);
		CHECK(e != NULL);
		CHECK_EQ(e->function, 4);
		CHECK_EQ(e->index, i);
		CHECK(e == &c->entries[2 + i]);
	}
	CHECK(cpuid_find(c, 4, 4) == NULL);
	CHECK(cpuid_find(c, 0xb, 3) == NULL);
	CHECK(cpuid_find(c, 0x1f, 2) == &c->entries[11]);
	/* without it the index is ignored */
	CHECK(cpuid_find(c, 1, 0) == &c->entries[1]);
	CHECK(cpuid_find(c, 1, 7) == &c->entries[1]);
	CHECK(cpuid_find(c, 0x80000008, 0xffffffff) == &c->entries[NENT - 1]);
	/* absent leaves */
	CHECK(cpuid_find(c, 2, 0) == NULL);
	CHECK(cpuid_find(c, 0x40000000, 0) == NULL);
	/* an empty table */
	c->nent = 0;
	CHECK(cpuid_find(c, 1, 0) == NULL);
	free(c);
}

int main(void)
{
	CHECK_EQ(cpuid_id_bits(1), 0);
	CHECK_EQ(cpuid_id_bits(2), 1);
	CHECK_EQ(cpuid_id_bits(3), 2);
	CHECK_EQ(cpuid_id_bits(4), 2);
	CHECK_EQ(cpuid_id_bits(5), 3);
	CHECK_EQ(cpuid_id_bits(8), 3);
	CHECK_EQ(cpuid_id_bits(9), 4);
	CHECK_EQ(cpuid_id_bits(64), 6);
	CHECK_EQ(cpuid_id_bits(65), 7);
	CHECK_EQ(cpuid_id_bits(254), 8);
	CHECK_EQ(cpuid_id_bits(256), 8);
	CHECK_EQ(cpuid_id_bits(257), 9);

	test_find();

	const unsigned counts[] = { 1, 2, 3, 4, 5, 8, 63, 64, 65, 128, 200, 254 };
	for (unsigned i = 0; i < sizeof(counts) / sizeof(counts[0]); i++) {
		unsigned n = counts[i];
		check_vcpu(0, n);
		check_vcpu(n - 1, n);
		check_vcpu(n / 2, n);
	}

	/* a table without the topology leaves is fine (nothing to rewrite, nothing broken) */
	struct kvm_cpuid2 *c = calloc(1, sizeof(*c) + sizeof(c->entries[0]));
	CHECK(c != NULL);
	c->nent = 1;
	c->entries[0] = template[0];
	cpuid_configure(c, 3, 4);
	CHECK(memcmp(&c->entries[0], &template[0], sizeof(template[0])) == 0);
	free(c);

	/* configuring twice (e.g. on restore) gives the same result as once */
	struct kvm_cpuid2 *a = make_table(), *b = make_table();
	cpuid_configure(a, 5, 6);
	cpuid_configure(b, 1, 2);
	cpuid_configure(b, 5, 6);
	CHECK(memcmp(a->entries, b->entries, NENT * sizeof(a->entries[0])) == 0);
	free(a);
	free(b);

	TEST_DONE("test_cpuid");
}

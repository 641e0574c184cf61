/* inspect.c - prints a snapshot readably: header, machine, vCPU registers, VM devices, device nodes, memory map. */
#include "inspect.h"
#include "../vmm/fdt_prop.h"
#include "../vmm/util.h"
#include "../ft/snapshot.h"

#include <libfdt.h>
#include <linux/kvm.h>
#include <stdio.h>
#include <string.h>

static uint32_t lapic_reg(const struct kvm_lapic_state *l, unsigned off)
{
	uint32_t v;
	memcpy(&v, l->regs + off, sizeof(v));
	return v;
}

/* Vectors set in one of the 256-bit LAPIC vector registers (ISR at 0x100, IRR at 0x200), as a list. */
static void print_vectors(const struct kvm_lapic_state *l, unsigned base, const char *name)
{
	printf(" %s", name);
	int n = 0;
	for (unsigned vec = 0; vec < 256; vec++)
		if (lapic_reg(l, base + (vec / 32) * 0x10) & (1u << (vec % 32)))
			printf("%s%#x", n++ ? "," : "=", vec);
	if (!n)
		printf("=none");
}

/* The timer half of the LAPIC and the vectors in service or requested: what a guest whose timer stopped
 * needs looking at (an ISR bit nobody will EOI, a masked LVTT, an expired count no interrupt followed). */
static void print_lapic(const void *fdt, int node)
{
	static const char *const modes[] = { "one-shot", "periodic", "tsc-deadline", "reserved" };
	struct kvm_lapic_state l;
	if (fdtp_copy(fdt, node, "lapic", &l, sizeof(l)))
		return;
	uint32_t lvtt = lapic_reg(&l, 0x320);
	printf("    LAPIC: SVR %#x, LVTT %#x (vector %#x, %s%s), TMICT %u, TMCCT %u, TDCR %#x, TPR %#x\n\t  ",
	       lapic_reg(&l, 0xf0), lvtt, lvtt & 0xff, modes[(lvtt >> 17) & 3], lvtt & (1u << 16) ? ", masked" : "",
	       lapic_reg(&l, 0x380), lapic_reg(&l, 0x390), lapic_reg(&l, 0x3e0), lapic_reg(&l, 0x80));
	print_vectors(&l, 0x100, "ISR");
	print_vectors(&l, 0x200, "IRR");
	int len;
	const uint8_t *p = fdt_getprop(fdt, node, "msrs", &len);
	for (int i = 0; p && len > 0 && i < len / (int)sizeof(struct kvm_msr_entry); i++) {
		struct kvm_msr_entry e; /* copied: an fdt property is only 4-byte aligned */
		memcpy(&e, p + (size_t)i * sizeof(e), sizeof(e));
		if (e.index == 0x6e0 || e.index == 0x10)
			printf(" %s=%llu", e.index == 0x10 ? "TSC" : "TSC_DEADLINE", (unsigned long long)e.data);
	}
	printf("\n");
}

static void print_vcpu(const void *fdt, int node)
{
	uint32_t id = 0, mp = 0, khz = 0;
	fdtp_u32(fdt, node, "id", &id);
	fdtp_u32(fdt, node, "mp-state", &mp);
	fdtp_u32(fdt, node, "tsc-khz", &khz);
	static const char *const mps[] = { "runnable", "uninitialized", "init-received", "halted", "sipi-received" };
	printf("  vcpu %u: mp-state %s, TSC %u kHz\n", id, mp < 5 ? mps[mp] : "?", khz);
	struct kvm_regs r;
	struct kvm_sregs s;
	if (!fdtp_copy(fdt, node, "regs", &r, sizeof(r))) {
		printf("    RIP %016llx RSP %016llx RFLAGS %08llx\n", r.rip, r.rsp, r.rflags);
		printf("    RAX %016llx RBX %016llx RCX %016llx RDX %016llx\n", r.rax, r.rbx, r.rcx, r.rdx);
		printf("    RSI %016llx RDI %016llx RBP %016llx\n", r.rsi, r.rdi, r.rbp);
	}
	if (!fdtp_copy(fdt, node, "sregs", &s, sizeof(s))) {
		printf("    CR0 %llx CR3 %llx CR4 %llx EFER %llx APIC_BASE %llx CS %04x (%s)\n", s.cr0, s.cr3, s.cr4, s.efer,
		       s.apic_base, s.cs.selector, s.cs.l ? "64-bit" : s.cs.db ? "32-bit" : "16-bit");
		int pending = 0;
		for (unsigned i = 0; i < ARRAY_SIZE(s.interrupt_bitmap); i++)
			pending += __builtin_popcountll(s.interrupt_bitmap[i]);
		printf("    pending interrupts in sregs: %d\n", pending);
	}
	int len;
	if (fdt_getprop(fdt, node, "msrs", &len))
		printf("    MSRs saved: %d\n", len / (int)sizeof(struct kvm_msr_entry));
	if (fdt_getprop(fdt, node, "xsave", &len))
		printf("    XSAVE area: %d bytes\n", len);
	struct kvm_vcpu_events ev;
	if (!fdtp_copy(fdt, node, "events", &ev, sizeof(ev)))
		printf("    events: exception %s, interrupt %s (vector %#x), NMI %s, interrupt shadow %u\n",
		       ev.exception.injected ? "injected" : "none", ev.interrupt.injected ? "injected" : "none",
		       ev.interrupt.nr, ev.nmi.pending ? "pending" : "none", ev.interrupt.shadow);
	print_lapic(fdt, node);
}

static bool prop_is_string(const uint8_t *v, int len)
{
	if (len < 2 || v[len - 1] != '\0')
		return false;
	for (int i = 0; i < len - 1; i++)
		if (v[i] < 0x20 || v[i] > 0x7e)
			return false;
	return true;
}

static void print_props(const void *fdt, int node, int depth)
{
	for (int prop = fdt_first_property_offset(fdt, node); prop >= 0; prop = fdt_next_property_offset(fdt, prop)) {
		const char *name;
		int len;
		const uint8_t *v = fdt_getprop_by_offset(fdt, prop, &name, &len);
		if (!v)
			continue;
		printf("%*s%s = ", depth * 2, "", name);
		/* strings first: an 8-byte name such as "ftsnap0\0" must not print as a u64 */
		if (prop_is_string(v, len))
			printf("\"%s\"\n", (const char *)v);
		else if (len == 4)
			printf("%u\n", fdt32_to_cpu(*(const fdt32_t *)v));
		else if (len == 8) {
			fdt64_t x;
			memcpy(&x, v, 8);
			printf("%llu (0x%llx)\n", (unsigned long long)fdt64_to_cpu(x), (unsigned long long)fdt64_to_cpu(x));
		} else {
			printf("[%d bytes]", len);
			for (int i = 0; i < len && i < 16; i++)
				printf(" %02x", v[i]);
			printf(len > 16 ? " ...\n" : "\n");
		}
	}
	for (int child = fdt_first_subnode(fdt, node); child >= 0; child = fdt_next_subnode(fdt, child)) {
		printf("%*s%s:\n", depth * 2, "", fdt_get_name(fdt, child, NULL));
		print_props(fdt, child, depth + 1);
	}
}

/* The guest's other timers and the interrupt path of the PIT (IRQ 0, GSI 2): a guest whose LAPIC timer is
 * stopped in idle waits for the PIT's broadcast tick (seen after takeovers, 2026-12-07). */
static void print_timers(const void *fdt, int vmn)
{
	struct kvm_pit_state2 pit;
	if (!fdtp_copy(fdt, vmn, "pit2", &pit, sizeof(pit))) {
		const struct kvm_pit_channel_state *c = &pit.channels[0];
		printf("PIT channel 0: mode %u, count %u, gate %u, latched %u, status-latched %u, read/write state %u/%u, "
		       "count-load-time %lld ns, flags 0x%x\n", c->mode, c->count, c->gate, c->count_latched,
		       c->status_latched, c->read_state, c->write_state, (long long)c->count_load_time, pit.flags);
	}
	struct kvm_irqchip chip;
	if (!fdtp_copy(fdt, vmn, "ioapic", &chip, sizeof(chip))) {
		const struct kvm_ioapic_state *io = &chip.chip.ioapic;
		printf("IOAPIC: irr 0x%x", io->irr);
		for (int pin = 0; pin < 3; pin++) {
			uint64_t e = io->redirtbl[pin].bits;
			printf(", pin %d: vector 0x%02x%s%s%s dest %u", pin, (unsigned)(e & 0xff), (e >> 16) & 1 ? " masked" : "",
			       (e >> 15) & 1 ? " level" : " edge", (e >> 14) & 1 ? " remote-irr" : "", (unsigned)(e >> 56));
		}
		printf("\n");
	}
	if (!fdtp_copy(fdt, vmn, "pic-master", &chip, sizeof(chip))) {
		const struct kvm_pic_state *p = &chip.chip.pic;
		printf("PIC master: irr 0x%02x imr 0x%02x isr 0x%02x\n", p->irr, p->imr, p->isr);
	}
}

int cmd_inspect(int argc, char **argv)
{
	if (argc != 2 || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")) {
		if (argc == 2) {
			printf("usage: ftvmm inspect SNAPSHOT\n\nPrint a snapshot's header, machine, vCPU registers,\n"
			       "device state and memory map.\n");
			return 0;
		}
		warnx("usage: ftvmm inspect SNAPSHOT");
		return 2;
	}
	struct snapshot s;
	char err[512];
	if (snapshot_open(argv[1], &s, err, sizeof(err))) {
		warnx("%s", err);
		return 1;
	}
	const struct snap_header *h = &s.hdr;
	const void *fdt = s.fdt;
	printf("snapshot %s: format %u.%u, %llu bytes, checksum %016llx (verified)\n", argv[1], h->major, h->minor,
	       (unsigned long long)s.file_size, (unsigned long long)h->checksum);
	uint64_t npages = h->mem_size >> PAGE_SHIFT;
	printf("memory: %llu MiB, %llu of %llu pages stored (%.1f%%; zero pages omitted), state %llu bytes\n",
	       (unsigned long long)(h->mem_size >> 20), (unsigned long long)h->npages_stored, (unsigned long long)npages,
	       npages ? 100.0 * (double)h->npages_stored / (double)npages : 0.0, (unsigned long long)h->state_len);
	/* the memory map: runs of stored pages, coarsely */
	printf("memory map (stored runs, first 16):\n");
	int shown = 0;
	for (uint64_t pg = 0; pg < npages && shown < 16;) {
		bool set = s.bitmap[pg / 64] & (1ul << (pg % 64));
		uint64_t run = 1;
		while (pg + run < npages && (bool)(s.bitmap[(pg + run) / 64] & (1ul << ((pg + run) % 64))) == set)
			run++;
		if (set) {
			printf("  ram offset %#011llx - %#011llx  (%llu pages)\n", (unsigned long long)pg << PAGE_SHIFT,
			       (unsigned long long)(pg + run) << PAGE_SHIFT, (unsigned long long)run);
			shown++;
		}
		pg += run;
	}
	int m = fdt_subnode_offset(fdt, 0, "machine");
	if (m >= 0) {
		printf("machine:\n");
		print_props(fdt, m, 1);
	}
	int vc = fdt_subnode_offset(fdt, 0, "vcpus");
	if (vc >= 0) {
		printf("vcpus:\n");
		for (int n = fdt_first_subnode(fdt, vc); n >= 0; n = fdt_next_subnode(fdt, n))
			print_vcpu(fdt, n);
	}
	int vmn = fdt_subnode_offset(fdt, 0, "vm");
	if (vmn >= 0) {
		struct kvm_clock_data clk;
		if (!fdtp_copy(fdt, vmn, "clock", &clk, sizeof(clk)))
			printf("kvmclock: %.6f s\n", (double)clk.clock / 1e9);
		print_timers(fdt, vmn);
	}
	int dv = fdt_subnode_offset(fdt, 0, "devices");
	if (dv >= 0) {
		printf("devices:\n");
		print_props(fdt, dv, 1);
	}
	snapshot_close(&s);
	return 0;
}

/* pitedge.c - a PIT pulse caught half-way by a capture must not stop the restored guest's PIT for good. */
/*
 * Usage: pitedge   (needs a working /dev/kvm: t_snapshot.sh runs it in the test bed). Exit 0 when every check
 * passed; one line per check on stdout.
 *
 * KVM's PIT pulses its line: level 1 then level 0, two calls its own thread makes while the vCPUs may be paused.
 * An IOAPIC read between them (KVM_GET_IRQCHIP inside an FT pause) holds the pin's irr bit set. KVM_SET_IRQCHIP
 * replays that bit as an interrupt and leaves it set, with no source left to lower it; for an edge-triggered pin
 * a set bit means "an edge not delivered yet", so the PIT's next rising edge is coalesced away, its EOI never
 * comes, and KVM's PIT (reinject mode) injects nothing more until that EOI: the guest's timer is gone.
 *
 * Here: one real-mode vCPU in x2APIC mode (so EOI is a WRMSR), the PIT on IOAPIC pin 0 at vector 0x30 every
 * 10 ms, a handler that leaves through port 0x13 (a tick) and EOIs. Its state is captured (ft/state.c) during a
 * tick, the IOAPIC's irr bit 0 is set in the captured tree as that window leaves it, and the tree is applied
 * (ftvmm's restore) to a second VM, whose PIT must tick on. Control: a third VM restored the same way, then
 * given the IOAPIC with the level kept and the PIT again (what a restore without the fix did) stops ticking.
 */
#include "../../ft/state.h"
#include "../../vmm/fdt_prop.h"
#include "../../vmm/guest_mem.h"
#include "kvmtest.h"

#include <libfdt.h>
#include <stdlib.h>

#define MEM (16ull << 20)
#define MAIN_GPA 0x1000
#define HANDLER_GPA 0x1100
#define VECTOR 0x30
#define PORT_TICK 0x13
#define PIT_10MS 11932 /* 1.193182 MHz */

/* sti; hlt; jmp back to sti */
static const uint8_t main_code[] = { 0xfb, 0xf4, 0xeb, 0xfc };
/* out 0x13,al; xor eax,eax; xor edx,edx; mov ecx,0x80b (x2APIC EOI); wrmsr; iret */
static const uint8_t handler_code[] = { 0xe6, PORT_TICK, 0x66, 0x31, 0xc0, 0x66, 0x31, 0xd2, 0x66, 0xb9,
					0x0b, 0x08, 0x00, 0x00, 0x0f, 0x30, 0xcf };

static void lapic_set(struct kvm_lapic_state *l, unsigned reg, uint32_t v)
{
	memcpy(&l->regs[reg], &v, sizeof(v));
}

/* Guest code, the IVT entry, then the machine: x2APIC on, LAPIC enabled with LINT0 masked (no PIC path), IOAPIC
 * pin 0 -> vector 0x30 edge to APIC 0, PIT channel 0 periodic at 10 ms. 0 or -1. */
static int setup(struct vm *vm)
{
	const uint16_t ivt[2] = { HANDLER_GPA, 0 }; /* offset, segment */
	if (gmem_write(&vm->mem, MAIN_GPA, main_code, sizeof(main_code)) ||
	    gmem_write(&vm->mem, HANDLER_GPA, handler_code, sizeof(handler_code)) ||
	    gmem_write(&vm->mem, VECTOR * 4, ivt, sizeof(ivt)))
		return -1;
	struct vcpu *v = &vm->vcpus[0];
	struct kvm_sregs sregs;
	if (kt_place(v, MAIN_GPA) || ioctl(v->fd, KVM_GET_SREGS, &sregs) < 0)
		return -1;
	sregs.apic_base = 0xfee00000u | (1u << 11) | (1u << 10) | (1u << 8); /* enabled, x2APIC, BSP */
	struct kvm_regs regs = { .rip = MAIN_GPA, .rsp = 0x8000, .rflags = 0x2 };
	struct kvm_lapic_state l;
	if (ioctl(v->fd, KVM_SET_SREGS, &sregs) < 0 || ioctl(v->fd, KVM_SET_REGS, &regs) < 0 ||
	    ioctl(v->fd, KVM_GET_LAPIC, &l) < 0)
		return -1;
	lapic_set(&l, 0xf0, 0x1ff);    /* SVR: enabled */
	lapic_set(&l, 0x80, 0);        /* TPR */
	lapic_set(&l, 0x320, 0x10000); /* LVTT masked */
	lapic_set(&l, 0x350, 0x10000); /* LINT0 masked: the PIT reaches the vCPU through the IOAPIC only */
	lapic_set(&l, 0x360, 0x10000); /* LINT1 masked */
	struct kvm_irqchip io = { .chip_id = KVM_IRQCHIP_IOAPIC };
	if (ioctl(v->fd, KVM_SET_LAPIC, &l) < 0 || ioctl(vm->vm_fd, KVM_GET_IRQCHIP, &io) < 0)
		return -1;
	io.chip.ioapic.redirtbl[0].bits = 0;
	io.chip.ioapic.redirtbl[0].fields.vector = VECTOR; /* fixed, physical, edge, unmasked, APIC 0 */
	struct kvm_pit_state2 pit;
	if (ioctl(vm->vm_fd, KVM_SET_IRQCHIP, &io) < 0 || ioctl(vm->vm_fd, KVM_GET_PIT2, &pit) < 0)
		return -1;
	pit.channels[0].count = PIT_10MS;
	pit.channels[0].mode = 2; /* rate generator: periodic */
	pit.channels[0].rw_mode = pit.channels[0].read_state = pit.channels[0].write_state = 3;
	pit.channels[0].gate = 1;
	pit.channels[0].bcd = 0;
	pit.flags = 0;
	return ioctl(vm->vm_fd, KVM_SET_PIT2, &pit) < 0 ? -1 : 0;
}

/* Run until `want` ticks or `ms` pass: the ticks seen (-1 on an exit that is not a tick). */
static int ticks(struct vcpu *v, int want, int ms)
{
	int n = 0;
	kt_arm(ms);
	while (n < want) {
		int r = kt_run_once(v);
		if (r == -1)
			break;
		if (r != PORT_TICK) {
			n = -1;
			break;
		}
		n++;
	}
	kt_arm(0);
	return n;
}

static int new_vm(struct vm *vm)
{
	char err[256] = "";
	if (vm_create(vm, MEM, 1, err, sizeof(err))) {
		fprintf(stderr, "pitedge: %s\n", err);
		return -1;
	}
	return 0;
}

int main(void)
{
	kt_setup_alarm();
	static struct vm a, b, c;
	char line[160];
	if (new_vm(&a) || setup(&a)) {
		fprintf(stderr, "pitedge: cannot set up the first VM: %s\n", strerror(errno));
		return 2;
	}
	int n = ticks(&a.vcpus[0], 5, 5000);
	snprintf(line, sizeof(line), "the PIT ticks through IOAPIC pin 0 (%d of 5 ticks in 5 s)", n);
	kt_check(n == 5, line);

	/* inside a tick, as an FT pause can be: the captured tree, with the pulse's irr bit set in it */
	void *fdt = NULL;
	size_t len = 0;
	int r = state_capture(&a, NULL, &fdt, &len);
	int node = r ? -1 : fdt_subnode_offset(fdt, 0, "vm");
	int plen = 0;
	struct kvm_irqchip *io = node < 0 ? NULL : fdt_getprop_w(fdt, node, "ioapic", &plen);
	kt_check(io && plen == (int)sizeof(*io), "state captured, its IOAPIC found");
	if (!io || plen != (int)sizeof(*io))
		return 1;
	io->chip.ioapic.irr |= 1;
	uint8_t low[0x10000];
	memcpy(low, a.mem.host, sizeof(low)); /* IVT, code, stack (the tick's frame) as captured */

	/* ftvmm's restore of the same tree into a second VM */
	char err[256] = "";
	if (new_vm(&b) || gmem_write(&b.mem, 0, low, sizeof(low)))
		return 2;
	r = state_apply(&b, fdt, err, sizeof(err));
	kt_check(r == 0, "state applied to a second VM");
	if (r) {
		fprintf(stderr, "pitedge: %s\n", err);
	} else {
		n = ticks(&b.vcpus[0], 5, 5000);
		snprintf(line, sizeof(line), "the restored VM's PIT ticks on (%d of 5 ticks in 5 s)", n);
		kt_check(n == 5, line);
	}

	/* control: the same restore, then the IOAPIC and the PIT set again bare, in the restore's order, as a restore
	 * that kept the edge pin's level leaves them: the PIT must stop (else this KVM no longer loses the edge, and
	 * the check above proves nothing) */
	struct kvm_pit_state2 pit;
	int ok = new_vm(&c) == 0 && gmem_write(&c.mem, 0, low, sizeof(low)) == 0 &&
		 state_apply(&c, fdt, err, sizeof(err)) == 0 && fdtp_copy(fdt, node, "pit2", &pit, sizeof(pit)) == 0 &&
		 ioctl(c.vm_fd, KVM_SET_IRQCHIP, io) == 0 && ioctl(c.vm_fd, KVM_SET_PIT2, &pit) == 0;
	n = ok ? ticks(&c.vcpus[0], 5, 2000) : -1;
	snprintf(line, sizeof(line), "control: with the pin's level kept, the PIT stops (%d ticks in 2 s, at most 3 "
		 "expected)", n);
	kt_check(ok && n >= 0 && n <= 3, line);
	free(fdt);
	printf("pitedge: %s\n", kt_failures ? "FAIL" : "PASS");
	return kt_failures ? 1 : 0;
}

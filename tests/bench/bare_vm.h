/* bare_vm.h - the benches' guest without a kernel: every vCPU in real mode running a loop that writes 64 pages. */
#ifndef FTVMM_BENCH_BARE_VM_H
#define FTVMM_BENCH_BARE_VM_H

#include "../../vmm/guest_mem.h"
#include "../../vmm/vcpu.h"
#include "../../vmm/vm.h"

#include <linux/kvm.h>
#include <stdint.h>
#include <sys/ioctl.h>

/* mov cx,64; mov bx,0x1000; l: mov es,bx; inc word [es:0]; add bx,0x100; dec cx; jnz l; jmp 0
 * (one word in each page of 0x10000..0x4ffff, without end) */
static const uint8_t bare_loop_code[] = { 0xb9, 0x40, 0x00, 0xbb, 0x00, 0x10, 0x8e, 0xc3, 0x26, 0xff, 0x06,
					  0x00, 0x00, 0x81, 0xc3, 0x00, 0x01, 0x49, 0x75, 0xf2, 0xeb, 0xea };
#define BARE_CODE_GPA 0x1000

static inline int bare_cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
	return x < y ? -1 : x > y;
}

/* The loop into guest memory and every vCPU at 0:BARE_CODE_GPA in real mode, interrupts off (the loop never
 * exits to us). 0 or -1. */
static inline int bare_vm_load(struct vm *vm)
{
	if (gmem_write(&vm->mem, BARE_CODE_GPA, bare_loop_code, sizeof(bare_loop_code)))
		return -1;
	for (unsigned i = 0; i < vm->ncpus; i++) {
		struct vcpu *v = &vm->vcpus[i];
		struct kvm_sregs sregs;
		if (ioctl(v->fd, KVM_GET_SREGS, &sregs) < 0)
			return -1;
		sregs.cs.base = 0;
		sregs.cs.selector = 0;
		if (ioctl(v->fd, KVM_SET_SREGS, &sregs) < 0)
			return -1;
		struct kvm_regs regs = { .rip = BARE_CODE_GPA, .rflags = 0x2 };
		if (ioctl(v->fd, KVM_SET_REGS, &regs) < 0)
			return -1;
	}
	return 0;
}

#endif

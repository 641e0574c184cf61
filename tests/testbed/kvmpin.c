/* kvmpin.c - the test bed's init keeps one idle VM (in-kernel irqchip, one vCPU that never runs) for its lifetime. */
/*
 * Why: every VM created or destroyed flips static keys in the test bed's kernel (preempt_notifier_key at
 * KVM_CREATE_VM and at the VM's destruction, apic_sw_disabled when a vCPU's LAPIC is created and when its guest
 * enables or disables it), and each flip rewrites kernel code on the running CPUs (text_poke_bp: int3, IPIs,
 * then the new bytes). Under qemu's multi-threaded TCG another emulated CPU has been seen executing such a site
 * after the patch ended (`Oops: int3`, `exc_int3` beside a CPU spinning on a lock no one holds). A key whose
 * count never returns to 0 is never patched again: this VM holds both counts at >= 1, so the VMs the tests
 * create and destroy only move the counters. Usage: kvmpin [DEVICE] (detaches; prints one line).
 */
#include <fcntl.h>
#include <linux/kvm.h>
#include <stdio.h>
#include <string.h>
#include <errno.h>
#include <sys/ioctl.h>
#include <unistd.h>

int main(int argc, char **argv)
{
	const char *dev = argc > 1 ? argv[1] : "/dev/kvm";
	int kvm = open(dev, O_RDWR | O_CLOEXEC);
	int vm = kvm < 0 ? -1 : ioctl(kvm, KVM_CREATE_VM, 0);
	if (vm < 0 || ioctl(vm, KVM_CREATE_IRQCHIP, 0) < 0 || ioctl(vm, KVM_CREATE_VCPU, 0) < 0) {
		printf("kvmpin: %s: no pinned VM: %s\n", dev, strerror(errno));
		return 1;
	}
	printf("kvmpin: holding an idle VM (static keys stay enabled)\n");
	fflush(stdout);
	if (daemon(0, 0) < 0)
		return 1;
	for (;;)
		pause();
}

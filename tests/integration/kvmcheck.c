/* kvmcheck.c - tests/integration's probe: does /dev/kvm really work here (API 12, create VM+vCPU, run a HLT)? */
/* Usage: kvmcheck [DEVICE]   (default $FTVMM_KVM_DEVICE or /dev/kvm). Exit 0 if KVM can run a guest; prints one line. */
#include <errno.h>
#include <fcntl.h>
#include <linux/kvm.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <unistd.h>

static int fail(const char *dev, const char *what)
{
	printf("kvmcheck: %s: %s: %s\n", dev, what, strerror(errno));
	return 1;
}

int main(int argc, char **argv)
{
	const char *dev = argc > 1 ? argv[1] : getenv("FTVMM_KVM_DEVICE");
	if (!dev || !*dev)
		dev = "/dev/kvm";

	int kvm = open(dev, O_RDWR | O_CLOEXEC);
	if (kvm < 0)
		return fail(dev, "open");
	int api = ioctl(kvm, KVM_GET_API_VERSION, 0);
	if (api != KVM_API_VERSION) {
		printf("kvmcheck: %s: KVM_GET_API_VERSION returned %d, want %d\n", dev, api, KVM_API_VERSION);
		return 1;
	}
	int vm = ioctl(kvm, KVM_CREATE_VM, 0);
	if (vm < 0)
		return fail(dev, "KVM_CREATE_VM");

	/* One page of guest RAM at gpa 0x1000 holding "hlt"; the vCPU starts in real mode at 0:0x1000. */
	uint8_t *mem = mmap(NULL, 0x1000, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (mem == MAP_FAILED)
		return fail(dev, "mmap");
	mem[0] = 0xf4; /* hlt */
	struct kvm_userspace_memory_region region = {
		.slot = 0, .guest_phys_addr = 0x1000, .memory_size = 0x1000, .userspace_addr = (uintptr_t)mem,
	};
	if (ioctl(vm, KVM_SET_USER_MEMORY_REGION, &region) < 0)
		return fail(dev, "KVM_SET_USER_MEMORY_REGION");
	int vcpu = ioctl(vm, KVM_CREATE_VCPU, 0);
	if (vcpu < 0)
		return fail(dev, "KVM_CREATE_VCPU");
	int run_size = ioctl(kvm, KVM_GET_VCPU_MMAP_SIZE, 0);
	if (run_size <= 0)
		return fail(dev, "KVM_GET_VCPU_MMAP_SIZE");
	struct kvm_run *run = mmap(NULL, (size_t)run_size, PROT_READ | PROT_WRITE, MAP_SHARED, vcpu, 0);
	if (run == MAP_FAILED)
		return fail(dev, "mmap kvm_run");

	struct kvm_sregs sregs;
	if (ioctl(vcpu, KVM_GET_SREGS, &sregs) < 0)
		return fail(dev, "KVM_GET_SREGS");
	sregs.cs.base = 0;
	sregs.cs.selector = 0;
	if (ioctl(vcpu, KVM_SET_SREGS, &sregs) < 0)
		return fail(dev, "KVM_SET_SREGS");
	struct kvm_regs regs = { .rip = 0x1000, .rflags = 0x2 };
	if (ioctl(vcpu, KVM_SET_REGS, &regs) < 0)
		return fail(dev, "KVM_SET_REGS");

	for (int i = 0; i < 16; i++) {
		if (ioctl(vcpu, KVM_RUN, 0) < 0) {
			if (errno == EINTR || errno == EAGAIN)
				continue;
			return fail(dev, "KVM_RUN");
		}
		if (run->exit_reason == KVM_EXIT_HLT) {
			printf("kvmcheck: %s OK: API %d, VM + vCPU created, guest ran to HLT\n", dev, api);
			return 0;
		}
		if (run->exit_reason != KVM_EXIT_INTR)
			break;
	}
	printf("kvmcheck: %s: guest did not reach HLT (exit reason %u)\n", dev, run->exit_reason);
	return 1;
}

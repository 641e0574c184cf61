/* harvest.c - the cost of one epoch's dirty-page harvest per tracking mode and guest RAM size, same small dirty set.
 * A 1-vCPU VM of SIZE bytes (mapped lazily: only the pages the guest writes are ever touched) runs a real-mode loop
 * that increments one word in each of 64 pages (0x10000..0x4ffff) without end. Every ~20 ms the VM is paused the
 * way an FT epoch pauses it, the pages written since the last harvest are collected (vm_dirty_collect, what the
 * primary calls in its pause), and the collect's wall time is recorded; then the VM resumes.
 *   usage: harvest MODE SIZE_MIB ROUNDS   (MODE: ring, clear or bitmap; needs /dev/kvm)
 * Prints one line: mode size_mib rounds median_us min_us max_us median_pages. tests/bench/harvest.sh runs it
 * over the modes and sizes, interleaved, and writes the table. */
#include "../../vmm/dirty.h"
#include "../../vmm/util.h"
#include "../../vmm/vcpu.h"
#include "../../vmm/vm.h"
#include "bare_vm.h"

#include <linux/kvm.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <time.h>

int main(int argc, char **argv)
{
	enum vm_dirty_track mode;
	if (argc != 4 || vm_dirty_track_parse(argv[1], &mode) || mode == VM_DIRTY_AUTO) {
		fprintf(stderr, "usage: %s ring|clear|bitmap SIZE_MIB ROUNDS\n", argv[0]);
		return 2;
	}
	uint64_t mib = strtoull(argv[2], NULL, 10);
	unsigned rounds = (unsigned)strtoul(argv[3], NULL, 10);
	if (mib < 2 || mib > 65536 || rounds < 1 || rounds > 100000) {
		fprintf(stderr, "harvest: SIZE_MIB 2..65536, ROUNDS 1..100000\n");
		return 2;
	}
	static struct vm vm;
	char err[256] = "";
	vm_dirty_track_prefer(mode);
	if (vm_create(&vm, mib << 20, 1, err, sizeof(err))) {
		fprintf(stderr, "harvest: %s\n", err);
		return 1;
	}
	if (bare_vm_load(&vm) ||
	    vm_dirty_log_enable(&vm, true) || vm_start(&vm)) {
		fprintf(stderr, "harvest: cannot set up the VM\n");
		return 1;
	}
	struct dirty_set set;
	uint64_t *us = calloc(rounds, sizeof(uint64_t)), *pages = calloc(rounds, sizeof(uint64_t));
	if (!us || !pages || dirty_set_init(&set, vm.mem.npages))
		return 1;
	int rc = 0;
	for (unsigned i = 0; i <= rounds && !rc; i++) {
		nanosleep(&(struct timespec){ .tv_nsec = 20 * 1000 * 1000 }, NULL);
		if (vm_pause(&vm)) {
			rc = 1;
			break;
		}
		uint64_t g, d;
		dirty_set_clear(&set);
		uint64_t t0 = now_ns();
		if (vm_dirty_collect(&vm, &set, &g, &d))
			rc = 1;
		uint64_t t1 = now_ns();
		vm_resume(&vm);
		if (i > 0) { /* the first harvest holds the code page and setup writes */
			us[i - 1] = (t1 - t0) / 1000;
			pages[i - 1] = set.n;
		}
	}
	vm_request_exit(&vm, VM_EXIT_SIGNAL);
	vm_run_until_exit(&vm);
	if (rc) {
		fprintf(stderr, "harvest: pause or collect failed\n");
		return 1;
	}
	qsort(us, rounds, sizeof(uint64_t), bare_cmp_u64);
	qsort(pages, rounds, sizeof(uint64_t), bare_cmp_u64);
	printf("%s %llu %u %llu %llu %llu %llu\n", vm_dirty_track_name(vm.dirty_track), (unsigned long long)mib, rounds,
	       (unsigned long long)us[rounds / 2], (unsigned long long)us[0], (unsigned long long)us[rounds - 1],
	       (unsigned long long)pages[rounds / 2]);
	vm_destroy(&vm);
	return 0;
}

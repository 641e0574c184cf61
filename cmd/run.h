/* run.h - the `ftvmm run` command: build a VM from a run_config, boot it, wait for its end. */
#ifndef FTVMM_RUN_H
#define FTVMM_RUN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct run_config;
struct snapshot;
struct guest_mem;
struct ft_fence;

/* Where a VM's contents come from: a kernel to boot, or saved state (a snapshot file, or the FT
 * backup's last committed epoch with its memory used in place). */
struct run_source {
	const uint8_t *kernel, *initrd;
	size_t kernel_len, initrd_len;
	const char *cmdline;
	struct snapshot *snap;      /* restore from a snapshot file */
	const void *state;          /* restore from this state fdt... */
	struct guest_mem *mem;      /* ...with this memory (adopted) */
	bool announce;              /* after a failover: tell the network where the guest's MACs are now */
	const char *role;           /* for `ctl status` */
	uint64_t t0_ns;             /* when the restore began (now_ns), for the "running again after" line */
	struct ft_fence *fence;     /* a backup that took over: its arbiter, holding the generation it won */
};

/* Build the VM, boot or restore it, serve --control and --backup, wait for its end; returns the
 * process exit code. Takes ownership of src->kernel and src->initrd (malloc'd): they are freed as
 * soon as they are copied into guest memory, so they do not count against the VMM's footprint. */
int run_vm(const struct run_config *cfg, struct run_source *src);
int cmd_run(int argc, char **argv);
int cmd_restore(int argc, char **argv);

#endif

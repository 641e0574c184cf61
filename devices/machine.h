/* machine.h - what a guest machine is made of (memory, vCPUs, disks, NICs): the board is built from it, a snapshot records it. */
#ifndef FTVMM_MACHINE_H
#define FTVMM_MACHINE_H

#include <stdbool.h>
#include <stdint.h>

#define MACHINE_MAX_DISKS 16
#define MACHINE_MAX_NICS 8

struct machine_disk {
	const char *path;
	bool readonly;
	/* bytes (stat's st_size, 0 where unknown), taken once at setup: every checkpoint records it,
	 * and a checkpoint is taken with the guest paused */
	uint64_t size;
};

struct machine_nic {
	char tap[16];
	bool has_mac;
	uint8_t mac[6];
};

/* Kept apart from the command line's run_config (which embeds it) so that the board, the snapshot
 * file and the FT engine need nothing from the command layer. */
struct machine {
	uint64_t mem;
	unsigned cpus;
	struct machine_disk disks[MACHINE_MAX_DISKS];
	unsigned ndisks;
	struct machine_nic nics[MACHINE_MAX_NICS];
	unsigned nnics;
};

#endif

/* backup.h - the FT backup: pair with a primary, mirror it epoch by epoch, and on its death hand the last commit to the caller. */
#ifndef FTVMM_BACKUP_H
#define FTVMM_BACKUP_H

#include "../devices/machine.h"
#include "../vmm/guest_mem.h"
#include "compress.h"
#include "proto.h"

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct ft_fence;

struct backup {
	const char *listen;     /* where the primary connects */
	struct machine machine; /* disks, NICs: what the guest gets here on takeover; memory, vCPUs and MACs
				 * are the primary's (backup_check_shape) */
	unsigned epoch_ms;      /* the primary's checkpoint interval (0: it sent none valid), for a later `protect` */
	unsigned timeout_ms;
	int disk_fds[MACHINE_MAX_DISKS];
	uint64_t disk_sizes[MACHINE_MAX_DISKS];
	struct ft_link data, hb; /* TLS sessions on both when tls is set */
	const struct ft_tls_creds *tls; /* server credentials: a peer must authenticate before its first frame
					 * is read (NULL: plain links, loopback or --ft-insecure) */
	struct ft_fence *fence; /* the arbiter (ft/fence.h; inert without --arbiter): takeover only after a win */
	uint64_t gen;           /* the generation the primary paired under (its HELLO): every epoch carries it */
	bool packed;            /* its HELLO named a codec: every epoch is packed (FT_EPOCH_PACKED) in that codec;
				 * else (an older primary) every page travels whole */
	enum ft_codec codec;    /* that codec (none when not packed), kept for a `protect` after a takeover */
	bool delta;             /* its HELLO offered page deltas ("delta-cache", packed only) and we said yes */
	uint64_t delta_cache;   /* its delta cache in bytes (at most guest RAM), kept for a `protect` after a takeover */
	struct ft_unpacker unpacker; /* the receive loop's zstd context, kept from epoch to epoch (freed when
				      * backup_mirror returns) */
	char peer[64];          /* the paired primary's address (under lock), for status and events */
	struct guest_mem mem;
	void *state; /* last committed epoch's state fdt */
	uint64_t committed;
	bool have_baseline;
	/* heartbeat watchdog */
	pthread_t hb_thread;
	pthread_mutex_t lock;
	bool done;
	uint64_t done_ns; /* when the first failure was seen: the failover clock starts here */
	bool primary_alive; /* it said (BYE on the heartbeat link) it runs on without us: never take over */
	bool hb_closed;     /* the heartbeat link ended (EOF/error): the data link says next whether with a BYE */
	char why[160];
	char link_why[160]; /* why the data link ended, when it did first */
};

/* A blank backup: the default --ft-timeout, no links yet. The caller then sets listen and machine. */
void backup_init(struct backup *b);
/* Open this host's copy of each disk for writing and take its size. 0, or -1 after one line on stderr. */
int backup_open_disks(struct backup *b);
/* Pair with the primary on the listening socket lfd (closed here), then mirror it until a link ends:
 * -1 when no primary was paired (said on stderr), 0 when the primary's guest ended (BYE), 1 when the
 * primary is gone. Once paired, the links and the disk copies are closed on return. */
int backup_mirror(struct backup *b, int lfd);

/* What a backup that takes over hands to its caller: the last committed epoch, to run as the guest
 * from now on (the backup itself never runs a VM). */
struct backup_takeover {
	void *state;           /* its state fdt (malloc'd: the caller frees it once the VM has ended) */
	struct guest_mem *mem; /* its memory, for the VM to adopt as it is (no copy) */
	uint64_t t0_ns;        /* when the primary's failure was seen: the failover clock starts here */
};
#define BACKUP_TAKE_OVER (-1)
/* After backup_mirror returned gone (0 or 1): says on stderr how mirroring ended and returns the exit
 * status when there is nothing to take over (memory freed), or BACKUP_TAKE_OVER with *to filled. */
int backup_outcome(struct backup *b, int gone, struct backup_takeover *to);

/* One-line status for `ftvmm ctl status` while mirroring (ctx: the struct backup). */
void backup_status(void *ctx, char *buf, size_t len);
/* The same as fields (`ctl status --json`). */
struct backup_info {
	const char *state; /* "waiting-for-primary", "initial-sync", "mirroring", "ended" (deciding, or exiting) */
	bool protected_;   /* a baseline is committed and the primary is still there */
	bool link_up;
	char peer[64];     /* the primary's address ("" before it paired) */
	uint64_t last_commit;
	char reason[160];  /* why mirroring ended ("" while it runs) */
	uint64_t generation; /* the primary's (0: no arbiter) */
};
void backup_info(struct backup *b, struct backup_info *i);

#endif

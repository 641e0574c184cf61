/* backup_int.h - the backup's state, and what its unit tests and fuzz target drive: pairing, shape, initial sync, all-or-nothing commit. */
#ifndef FTVMM_BACKUP_INT_H
#define FTVMM_BACKUP_INT_H

#include "../cmd/cli.h"
#include "../cmd/control.h"
#include "../vmm/guest_mem.h"

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct backup {
	const char *listen;
	struct run_config cfg; /* disks, nics, control: what the guest gets here on takeover */
	unsigned timeout_ms;
	int disk_fds[MACHINE_MAX_DISKS];
	uint64_t disk_sizes[MACHINE_MAX_DISKS];
	int data_fd, hb_fd;
	struct guest_mem mem;
	void *state; /* last committed epoch's state fdt */
	uint64_t committed;
	bool have_baseline;
	struct control ctl; /* status while mirroring; run_vm serves the socket after a takeover */
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

/* Compare the primary's shape (handshake fdt) with what this backup was given: 0, or -EINVAL with one
 * line in why. On success the guest's memory size, vCPUs, MACs and epoch are taken from it. */
int backup_check_shape(struct backup *b, const void *fdt, size_t len, char *why, size_t wl);

/* Apply one checksum-verified FT_EPOCH payload: everything is checked (sizes, page numbers, the state
 * fdt, every disk record's range, the epoch number) before a byte is applied; -EBADMSG/-ERANGE leave
 * the last commit untouched. A disk write that fails after that is fatal (the memory is applied). */
int backup_commit_epoch(struct backup *b, uint64_t seq, void *payload, size_t len);

/* Apply one initial-sync FT_MEM payload (u64 n, pfn[n], n pages): 0 or -EBADMSG, nothing applied. */
int backup_sync_mem(struct backup *b, const void *p, size_t len);
/* Apply one initial-sync FT_DISK payload (one disk record, then its data): 0, or an error with
 * nothing written. */
int backup_sync_disk(struct backup *b, const void *p, size_t len);
/* One checksum-verified frame of the data link after the handshake (FT_MEM, FT_DISK, FT_EPOCH), as
 * the receive loop applies it: 0, or the error that ends the link with nothing of it applied.
 * Another type is -ENOMSG. */
struct ft_frame;
int backup_apply_frame(struct backup *b, const struct ft_frame *f, void *p);

/* Pair with the primary on the listening socket lfd: its data and heartbeat connections (HELLO and
 * HB_HELLO of one session), its shape checked, guest memory mapped, HELLO_OK sent. Sets data_fd and
 * hb_fd. 0, or -errno (the shape refused: -EINVAL, HELLO_ERR sent). */
int backup_accept(struct backup *b, int lfd);

#endif

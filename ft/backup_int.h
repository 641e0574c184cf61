/* backup_int.h - what the backup's unit tests and fuzz target drive: pairing, shape, initial sync, all-or-nothing commit. */
#ifndef FTVMM_BACKUP_INT_H
#define FTVMM_BACKUP_INT_H

#include "backup.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Compare the primary's shape (handshake fdt) with what this backup was given (backup_pair.c): 0, or
 * -EINVAL with one line in why. On success the guest's memory size, vCPUs, MACs and epoch are taken
 * from it. */
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

/* Pair with the primary on the listening socket lfd (backup_pair.c): its data and heartbeat
 * connections (HELLO and HB_HELLO of one session), its shape checked, guest memory mapped, HELLO_OK
 * sent. Sets data and hb. 0, or -errno (the shape refused: -EINVAL, HELLO_ERR sent). */
int backup_accept(struct backup *b, int lfd);

#endif

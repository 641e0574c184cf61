/* backup.h - `ftvmm backup`: mirror a primary epoch by epoch, take over the guest when the primary dies. */
#ifndef FTVMM_BACKUP_H
#define FTVMM_BACKUP_H

int cmd_backup(int argc, char **argv);

#endif

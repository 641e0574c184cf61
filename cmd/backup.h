/* backup.h - the `ftvmm backup` command: drives the FT backup (ft/backup.h) and runs the guest it takes over. */
#ifndef FTVMM_CMD_BACKUP_H
#define FTVMM_CMD_BACKUP_H

struct backup;
struct run_config;

int cmd_backup(int argc, char **argv);
/* The run_config of a guest this backup took over: its machine (this host's disks and TAPs, the
 * primary's memory, vCPUs and MACs), the primary's epoch when it sent a valid one, this backup's
 * --ft-timeout; the rest (--control, --control-group) stays as parsed. */
void backup_run_config(const struct backup *b, struct run_config *cfg);

#endif

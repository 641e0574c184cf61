/* run.h - the `ftvmm run` command: build a VM from a run_config, boot it, wait for its end. */
#ifndef FTVMM_RUN_H
#define FTVMM_RUN_H

int cmd_run(int argc, char **argv);
int cmd_restore(int argc, char **argv);

#endif

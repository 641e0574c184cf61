/* main.c - ftvmm's entry point: dispatches the subcommands. */
#include "cli.h"
#include "control.h"
#include "backup.h"
#include "inspect.h"
#include "run.h"
#include "../vmm/util.h"

#include <stdio.h>
#include <signal.h>
#include <string.h>

#define FTVMM_VERSION "0.1.0"

int main(int argc, char **argv)
{
	/* every write to a socket, pipe or TAP handles EPIPE itself */
	signal(SIGPIPE, SIG_IGN);
	if (argc < 2) {
		warnx("missing command (see ftvmm --help)");
		return 2;
	}
	const char *cmd = argv[1];
	if (!strcmp(cmd, "-h") || !strcmp(cmd, "--help") || !strcmp(cmd, "help")) {
		cli_usage(stdout);
		return 0;
	}
	if (!strcmp(cmd, "-V") || !strcmp(cmd, "--version") || !strcmp(cmd, "version")) {
		printf("ftvmm %s\n", FTVMM_VERSION);
		return 0;
	}
	if (!strcmp(cmd, "run"))
		return cmd_run(argc - 1, argv + 1);
	if (!strcmp(cmd, "restore"))
		return cmd_restore(argc - 1, argv + 1);
	if (!strcmp(cmd, "ctl"))
		return cmd_ctl(argc - 1, argv + 1);
	if (!strcmp(cmd, "backup"))
		return cmd_backup(argc - 1, argv + 1);
	if (!strcmp(cmd, "inspect"))
		return cmd_inspect(argc - 1, argv + 1);
	warnx("unknown command '%s' (see ftvmm --help)", cmd);
	return 2;
}

/* backup.c - `ftvmm backup`: its options, its control socket while mirroring, and running the guest it took over. */
#include "backup.h"
#include "../ft/backup.h"
#include "../ft/fence.h"
#include "../ft/proto.h"
#include "../ft/tls.h"
#include "../vmm/util.h"
#include "cli.h"
#include "control.h"
#include "run.h"
#include "status.h"

#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void backup_usage(FILE *f)
{
	fprintf(f,
		"usage: ftvmm backup --listen HOST:PORT [--disk PATH]... [--net tap=NAME]... [--control PATH]\n"
		"                    [--control-group GROUP] [--ft-timeout MS] [--stats FILE]\n"
		"                    [--tls-creds DIR [--tls-peer NAME] | --tls-psk FILE] [--ft-insecure]\n"
		"                    [--arbiter etcd://HOST:PORT[,...] --name NAME] [--dirty-track MODE]\n"
		"                    [--checkpoint MODE]\n"
		"\n"
		"Wait for a primary (`ftvmm run ... --backup HOST:PORT`), mirror its guest epoch by epoch, and\n"
		"when the primary dies resume the guest from the last committed epoch: this process then runs\n"
		"it as an ordinary VM (console on stdout, control socket, exit code on guest reboot). A later\n"
		"`protect` keeps the primary's --epoch, --compress and --delta-cache (a codec this build does not know is\n"
		"refused when the primary pairs).\n"
		"\n"
		"  --listen HOST:PORT  where the primary connects\n"
		"  --disk PATH         this host's copy of each primary disk, in order; same size. It is made\n"
		"                      identical to the primary's during the initial sync (overwritten)\n"
		"  --net tap=NAME      TAP for each NIC, attached only at takeover (the guest keeps its MAC)\n"
		"  --control PATH      control socket (status [--json] and events before and after\n"
		"                      takeover; it restarts at the takeover), mode 0600\n"
		"  --control-group GROUP  also let members of GROUP (name or number) use it (0660)\n"
		"  --ft-timeout MS     heartbeat silence that counts as the primary's death (default 2000)\n"
		"  --stats FILE        one JSON line of telemetry per committed epoch (as ftvmm run --stats),\n"
		"                      once this backup took over and `protect` paired the guest with a new\n"
		"                      backup: FILE is created (truncated) only then; checked writable at start\n"
		"  --tls-creds DIR     TLS 1.3 on the FT links, x509: DIR holds ca-cert.pem, server-cert.pem\n"
		"                      and server-key.pem (QEMU's layout); the primary must present a\n"
		"                      certificate of that CA (client-cert.pem in its DIR) before a byte of\n"
		"                      its stream is read. After a takeover, `protect` uses client-cert.pem\n"
		"                      and client-key.pem from the same DIR\n"
		"  --tls-peer NAME     also require that name in the primary's certificate\n"
		"  --tls-psk FILE      TLS 1.3 with a pre-shared key instead (psktool's IDENTITY:HEX-KEY line,\n"
		"                      mode 0600 or stricter)\n"
		"  --ft-insecure       listen on an address other hosts can reach without credentials:\n"
		"                      anyone who can reach the port can then feed this backup a guest\n"
		"  --arbiter etcd://HOST:PORT[,HOST:PORT...]\n"
		"                      take over only after winning the VM's next generation there (one\n"
		"                      compare-and-swap): if the primary is alive behind a partition, one of\n"
		"                      the two runs the guest, never both. The primary must use it too\n"
		"  --name NAME         the VM's name in the arbiter (the primary's --name)\n"
		"  --dirty-track MODE  for the VM run after a takeover: as ftvmm run --dirty-track\n"
		"  --checkpoint MODE   for a later `protect` of the VM run after a takeover: as ftvmm run\n"
		"                      --checkpoint (copy or cow)\n");
}

/* The --disk and --net options, kept for run's parser (cli_parse_run), which knows their syntax:
 * "backup", a pair per disk and NIC at most, "--kernel unused". */
struct sub_argv {
	char *v[1 + 2 * (MACHINE_MAX_DISKS + MACHINE_MAX_NICS) + 2];
	int n;
};

/* One option into b, cfg or sub: 0, or -EINVAL with one line in err. --help exits. */
static int parse_option(int c, char **argv, struct backup *b, struct run_config *cfg, struct sub_argv *sub, char *err,
			size_t errlen)
{
	switch (c) {
	case 'l': b->listen = optarg; return 0;
	case 'X': cfg->tls.x509_dir = optarg; return 0;
	case 'P': cfg->tls.psk_file = optarg; return 0;
	case 'N': cfg->tls.peer = optarg; return 0;
	case 'I': cfg->ft_insecure = true; return 0;
	case 'A': cfg->arbiter = optarg; return 0;
	case 'M': cfg->vm_name = optarg; return 0;
	case 'S': cfg->stats = optarg; return 0; /* used by `protect` after a takeover (run.c) */
	case 'C': cfg->control = optarg; return 0;
	case 'G': /* checked now, as run does: bad input is refused before the listener or socket exist */
		if (cli_check_group(optarg, err, errlen))
			return -EINVAL;
		cfg->control_group = optarg;
		return 0;
	case 'T': {
		char *end;
		unsigned long v = strtoul(optarg, &end, 10);
		if (*end || v < 100 || v > 600000) {
			snprintf(err, errlen, "--ft-timeout '%s': want milliseconds between 100 and 600000", optarg);
			return -EINVAL;
		}
		b->timeout_ms = (unsigned)v;
		return 0;
	}
	case 'd':
	case 'n':
	case 'D':
	case 'W':
		if (sub->n + 2 > (int)ARRAY_SIZE(sub->v) - 2) {
			snprintf(err, errlen, "too many --disk/--net");
			return -EINVAL;
		}
		sub->v[sub->n++] = c == 'd' ? "--disk" : c == 'n' ? "--net" : c == 'D' ? "--dirty-track" : "--checkpoint";
		sub->v[sub->n++] = optarg;
		return 0;
	case 'h': backup_usage(stdout); exit(0);
	case ':': snprintf(err, errlen, "option '%s' needs a value (see ftvmm backup --help)", argv[optind - 1]); return -EINVAL;
	default: snprintf(err, errlen, "unknown option '%s' (see ftvmm backup --help)", argv[optind - 1]); return -EINVAL;
	}
}

/* The disks and NICs through run's parser: cli_parse_run starts from a blank config, so what only
 * backup parsed (the socket and its group, which control_start and, after a takeover, run_vm use; the
 * FT link's credentials and --stats, for a `protect` after a takeover) is kept across it. */
static int parse_machine(struct sub_argv *sub, struct backup *b, struct run_config *cfg, char *err, size_t errlen)
{
	sub->v[sub->n++] = "--kernel";
	sub->v[sub->n++] = "unused";
	const char *control = cfg->control, *group = cfg->control_group, *arbiter = cfg->arbiter, *name = cfg->vm_name;
	const char *stats = cfg->stats;
	struct ft_tls_opts tls = cfg->tls;
	bool insecure = cfg->ft_insecure;
	if (cli_parse_run(sub->n, sub->v, cfg, err, errlen))
		return -EINVAL;
	cfg->control = control;
	cfg->control_group = group;
	cfg->arbiter = arbiter;
	cfg->vm_name = name;
	cfg->stats = stats;
	cfg->tls = tls;
	cfg->ft_insecure = insecure;
	cfg->kernel = NULL;
	b->machine = cfg->machine;
	return 0;
}

/* Options into b (listen, timeout, machine) and cfg (the control socket, and the VM run on takeover). */
static int parse(int argc, char **argv, struct backup *b, struct run_config *cfg, char *err, size_t errlen)
{
	static const struct option opts[] = {
		{ "listen", required_argument, NULL, 'l' }, { "disk", required_argument, NULL, 'd' },
		{ "net", required_argument, NULL, 'n' },    { "control", required_argument, NULL, 'C' },
		{ "ft-timeout", required_argument, NULL, 'T' }, { "help", no_argument, NULL, 'h' },
		{ "control-group", required_argument, NULL, 'G' }, { "tls-creds", required_argument, NULL, 'X' },
		{ "tls-psk", required_argument, NULL, 'P' },      { "tls-peer", required_argument, NULL, 'N' },
		{ "ft-insecure", no_argument, NULL, 'I' },         { "arbiter", required_argument, NULL, 'A' },
		{ "name", required_argument, NULL, 'M' },         { "stats", required_argument, NULL, 'S' },
		{ "dirty-track", required_argument, NULL, 'D' }, { "checkpoint", required_argument, NULL, 'W' },
		{ NULL, 0, NULL, 0 },
	};
	optind = 0;
	opterr = 0;
	struct sub_argv sub = { .v = { "backup" }, .n = 1 };
	int c;
	while ((c = getopt_long(argc, argv, ":h", opts, NULL)) != -1)
		if (parse_option(c, argv, b, cfg, &sub, err, errlen))
			return -EINVAL;
	if (optind < argc) {
		snprintf(err, errlen, "unexpected argument '%s' (see ftvmm backup --help)", argv[optind]);
		return -EINVAL;
	}
	if (cfg->control_group && !cfg->control) {
		snprintf(err, errlen, "--control-group needs --control PATH (see ftvmm backup --help)");
		return -EINVAL;
	}
	if (!b->listen) {
		snprintf(err, errlen, "missing --listen HOST:PORT (see ftvmm backup --help)");
		return -EINVAL;
	}
	if (cli_check_ft_link("--listen", b->listen, &cfg->tls, cfg->ft_insecure, err, errlen) ||
	    cli_check_arbiter(cfg->arbiter, cfg->vm_name, err, errlen) ||
	    (cfg->stats && cli_check_stats(cfg->stats, err, errlen)))
		return -EINVAL;
	return parse_machine(&sub, b, cfg, err, errlen);
}

void backup_run_config(const struct backup *b, struct run_config *cfg)
{
	cfg->machine = b->machine;
	if (b->epoch_ms) /* after a takeover, `protect` keeps the protection this guest had */
		cfg->epoch_ms = b->epoch_ms;
	cfg->compress = b->codec; /* the primary's (none from one that named no codec) */
	cfg->delta_cache = b->delta_cache; /* its --delta-cache (0: none, or an older primary) */
	cfg->ft_timeout_ms = b->timeout_ms;
}

/* `ctl status --json` while mirroring (ctx: the struct backup). */
static void status_json(void *ctx, struct ft_json *j)
{
	struct backup *b = ctx;
	struct backup_info bi;
	struct ft_fence_info fi;
	backup_info(b, &bi);
	fence_info(b->fence, &fi);
	status_json_backup(j, &bi, &fi);
}

/* The primary is gone: its last committed epoch becomes the guest, run here as an ordinary VM. */
static int take_over(struct run_config *cfg, const struct backup *b, const struct backup_takeover *to)
{
	backup_run_config(b, cfg);
	/* the committed memory becomes the VM's memory as it is: no copy */
	struct run_source src = { .state = to->state, .mem = to->mem, .announce = true, .role = "backup (took over)",
				  .t0_ns = to->t0_ns, .fence = b->fence };
	int rc = run_vm(cfg, &src);
	free(to->state);
	return rc;
}

/* The server credentials (none without --tls-*), and the listening socket: loopback only without them,
 * unless --ft-insecure. The socket, or -1 after one line on stderr. */
static int listen_for_primary(struct backup *b, const struct run_config *cfg, struct ft_tls_creds **tls)
{
	char err[512] = "";
	*tls = NULL;
	if (ft_tls_opts_given(&cfg->tls) && ft_tls_creds_load(&cfg->tls, FT_TLS_SERVER, tls, err, sizeof(err))) {
		warnx("%s", err);
		return -1;
	}
	cli_warn_insecure(&cfg->tls, cfg->ft_insecure);
	b->tls = *tls;
	int lfd = ft_listen(b->listen, !*tls && !cfg->ft_insecure, err, sizeof(err));
	if (lfd < 0) {
		warnx("%s", err);
		ft_tls_creds_free(*tls);
		*tls = NULL;
		b->tls = NULL;
	}
	return lfd;
}

int cmd_backup(int argc, char **argv)
{
	static struct backup b;
	static struct control ctl;
	static struct run_config cfg;
	char err[512] = "";
	backup_init(&b);
	memset(&ctl, 0, sizeof(ctl));
	memset(&cfg, 0, sizeof(cfg));
	if (parse(argc, argv, &b, &cfg, err, sizeof(err))) {
		warnx("%s", err);
		return 2;
	}
	static struct ft_fence fence;
	if (fence_open(&fence, cfg.arbiter, cfg.vm_name, err, sizeof(err))) {
		warnx("%s", err);
		return 1;
	}
	b.fence = &fence;
	if (backup_open_disks(&b))
		return 1;
	struct ft_tls_creds *tls;
	int lfd = listen_for_primary(&b, &cfg, &tls);
	if (lfd < 0)
		return 1;
	if (cfg.control) {
		if (control_start(&ctl, NULL, &cfg, cfg.control, err, sizeof(err))) {
			warnx("%s", err);
			return 1;
		}
		ctl.role = "backup";
		ctl.status_ext = backup_status;
		ctl.status_json = status_json;
		ctl.ext_ctx = &b;
	}
	/* without an arbiter, said on the same line: a refusal that follows stays the one line of bad input */
	warnx("backup: listening on %s%s", b.listen,
	      cfg.arbiter ? "" : " (no --arbiter: if the primary is alive behind a partition, both may run the guest)");
	int gone = backup_mirror(&b, lfd);
	b.tls = NULL;
	ft_tls_creds_free(tls); /* the links are closed; a VM taken over loads its own for `protect` */
	struct backup_takeover to;
	/* the socket serves on while the takeover is decided (a claim waits for the arbiter as long as it
	 * must: status says so), and its followers get the outcome's event before it closes */
	int rc = gone < 0 ? 1 : backup_outcome(&b, gone, &to);
	control_stop(&ctl); /* the socket path is free again for the VM's own control server */
	rc = rc == BACKUP_TAKE_OVER ? take_over(&cfg, &b, &to) : rc;
	fence_close(&fence);
	return rc;
}

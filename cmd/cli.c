/* cli.c - `ftvmm run` option parsing and the help texts. */
#include "cli.h"
#include "control.h"
#include "../ft/proto.h"
#include "../vmm/util.h"
#include "../vmm/vm.h"

#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

void cli_usage(FILE *f)
{
	fprintf(f,
		"usage: ftvmm COMMAND [OPTIONS]\n"
		"\n"
		"A minimal KVM virtual machine monitor with native fault tolerance.\n"
		"\n"
		"commands:\n"
		"  run       boot a Linux bzImage on /dev/kvm (see: ftvmm run --help)\n"
		"  restore   resume a snapshot in a new process (see: ftvmm restore --help)\n"
		"  inspect   print a snapshot's saved state readably\n"
		"  ctl       send a command to a running VM's control socket\n"
		"  backup    mirror a protected VM and take over when its primary dies\n"
		"            (see: ftvmm backup --help)\n"
		"  help      show this text\n"
		"  version   print the version\n"
		"\n"
		"options:\n"
		"  -h, --help     show this text\n"
		"  -V, --version  print the version\n"
		"\n"
		"environment:\n"
		"  FTVMM_KVM_DEVICE  KVM device node (default /dev/kvm)\n"
		"  FTVMM_DEBUG       print debug lines (unhandled port and MMIO accesses)\n");
}

void cli_run_usage(FILE *f)
{
	fprintf(f,
		"usage: ftvmm run --kernel PATH [OPTIONS]\n"
		"\n"
		"Boot an unmodified x86-64 Linux kernel (bzImage, boot protocol 2.06+). The guest's serial\n"
		"console (ttyS0) is ftvmm's stdout and stdin; a terminal is put in raw mode (Ctrl-C still\n"
		"stops the VM) and restored on exit. ftvmm exits 0 when the guest reboots, non-zero on a\n"
		"triple fault, a guest kernel panic (with the guest's pvpanic driver) or an internal error.\n"
		"\n"
		"options:\n"
		"  -k, --kernel PATH      bzImage to boot (required)\n"
		"  -i, --initrd PATH      initial ramdisk, placed as high as the kernel allows\n"
		"  -c, --cmdline STR      appended to the default command line:\n"
		"                         \"" DEFAULT_CMDLINE "\"\n"
		"  -m, --mem SIZE         guest RAM, K/M/G/T suffixes (default 512M, at most 512G);\n"
		"                         mapped lazily: untouched memory costs nothing\n"
		"  -p, --cpus N           number of vCPUs (default 1, at most KVM's limit and 254)\n"
		"  --tsc-khz KHZ          the guest's TSC rate (default: this host's); a snapshot or an\n"
		"                         FT backup keeps it. Without TSC scaling in the CPU, KVM can only\n"
		"                         run a guest's TSC faster than the host's\n"
		"  -d, --disk PATH[,ro]   raw disk image as /dev/vda, /dev/vdb, ... (repeatable)\n"
		"  -n, --net tap=NAME[,mac=XX:XX:XX:XX:XX:XX]\n"
		"                         virtio-net NIC on TAP device NAME (repeatable); the MAC is\n"
		"                         derived from the NIC's position and TAP name when not given\n"
		"  --control PATH         Unix control socket: ftvmm ctl PATH status [--json]|events|\n"
		"                         pause|resume|snapshot FILE|stop|protect HOST:PORT. Mode 0600:\n"
		"                         only root and this process's user may use it\n"
		"  --control-group GROUP  also let members of GROUP (name or number) use it (0660)\n"
		"\n"
		"fault tolerance (see also: ftvmm backup --help):\n"
		"  --backup HOST:PORT     protect the guest by continuous checkpointing to a backup VMM\n"
		"  --epoch MS             checkpoint interval, 5..1000 ms (default 50)\n"
		"  --ft-timeout MS        heartbeat silence that counts as the backup's death (default 2000)\n"
		"  --stats FILE           one JSON line of telemetry per committed epoch\n"
		"  --dirty-track MODE     how KVM reports the guest's writes: ring (per-vCPU rings, a\n"
		"                         harvest costs what was written, not the guest's RAM), clear\n"
		"                         (bitmaps, only written pages write-protected again), bitmap,\n"
		"                         or auto (default: the first of them this KVM has)\n"
		"  --checkpoint MODE      copy (default): each epoch's dirty pages are copied inside\n"
		"                         the pause; cow: write-protected in the pause and copied while\n"
		"                         the guest runs (userfaultfd; a write to a page not yet copied\n"
		"                         waits for that page's copy), so the pause does not grow\n"
		"                         with the pages\n"
		"  --compress CODEC       none (default), lz4 or zstd: how each epoch's dirty pages\n"
		"                         travel (zero pages always go as a flag, without their bytes);\n"
		"                         the sender compresses while the guest runs, never in the pause\n"
		"  --delta-cache SIZE     keep up to SIZE (K/M/G; at most the guest's RAM) of the pages\n"
		"                         sent, and send a page whose new content differs little as a\n"
		"                         delta against the last one (XBZRLE-style; default 0: off)\n"
		"  --tls-creds DIR        TLS 1.3 on the FT links, x509: DIR holds ca-cert.pem,\n"
		"                         client-cert.pem and client-key.pem (QEMU's layout); the\n"
		"                         backup's certificate must chain to the CA and name the\n"
		"                         backup (--tls-peer, else the HOST of --backup / protect)\n"
		"  --tls-peer NAME        the name the backup's certificate must carry\n"
		"  --tls-psk FILE         TLS 1.3 with a pre-shared key instead: psktool's\n"
		"                         IDENTITY:HEX-KEY line, in a file of mode 0600 or stricter\n"
		"  --ft-insecure          allow a backup that is not on this host without credentials:\n"
		"                         anyone on the path can then read the guest and forge acks\n"
		"  (protect HOST:PORT on the control socket uses the same credentials)\n"
		"  --arbiter etcd://HOST:PORT[,HOST:PORT...]\n"
		"                         decide who runs the guest after a failure with one\n"
		"                         compare-and-swap in etcd: a partition never runs two copies.\n"
		"                         The backup must use the same arbiter and --name\n"
		"  --name NAME            the VM's name there (1..64 of [A-Za-z0-9._-])\n"
		"  -h, --help             show this text\n");
}

void cli_restore_usage(FILE *f)
{
	fprintf(f,
		"usage: ftvmm restore FILE [--disk PATH[,ro]]... [--net tap=NAME]... [--control PATH]\n"
		"                     [--control-group GROUP]\n"
		"\n"
		"Resume a snapshot taken with `ftvmm ctl SOCKET snapshot FILE` in this new process, exactly\n"
		"where it stopped: same memory size, vCPUs and devices. Disks and NICs default to the saved\n"
		"host paths and TAP names; given here, they replace them in order (same count; each disk\n"
		"must have the size it had when the snapshot was taken; MACs stay the saved ones).\n"
		"--control and --control-group are as for ftvmm run (see: ftvmm run --help), and so are\n"
		"--tls-creds, --tls-psk, --tls-peer, --ft-insecure, --compress, --delta-cache, --dirty-track and --checkpoint,\n"
		"for a later "
		"`protect`.\n");
}

static int parse_mac(const char *s, uint8_t mac[6])
{
	unsigned v[6];
	char tail;
	if (sscanf(s, "%2x:%2x:%2x:%2x:%2x:%2x%c", &v[0], &v[1], &v[2], &v[3], &v[4], &v[5], &tail) != 6)
		return -EINVAL;
	for (int i = 0; i < 6; i++)
		mac[i] = (uint8_t)v[i];
	if (mac[0] & 1) /* multicast bit: not a NIC address */
		return -EINVAL;
	return 0;
}

static int parse_net(const char *arg, struct machine_nic *nic, char *err, size_t errlen)
{
	memset(nic, 0, sizeof(*nic));
	char *copy = strdup(arg);
	if (!copy)
		return -ENOMEM;
	int r = 0;
	char *save = NULL;
	for (char *tok = strtok_r(copy, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
		if (!strncmp(tok, "tap=", 4)) {
			size_t n = strlen(tok + 4);
			if (n == 0 || n >= sizeof(nic->tap)) {
				snprintf(err, errlen, "--net: TAP name '%s' must be 1 to 15 characters", tok + 4);
				r = -EINVAL;
				break;
			}
			memcpy(nic->tap, tok + 4, n + 1);
		} else if (!strncmp(tok, "mac=", 4)) {
			if (parse_mac(tok + 4, nic->mac)) {
				snprintf(err, errlen, "--net: bad MAC address '%s' (want XX:XX:XX:XX:XX:XX, unicast)", tok + 4);
				r = -EINVAL;
				break;
			}
			nic->has_mac = true;
		} else {
			snprintf(err, errlen, "--net: unknown setting '%s' (want tap=NAME[,mac=...])", tok);
			r = -EINVAL;
			break;
		}
	}
	if (!r && !nic->tap[0]) {
		snprintf(err, errlen, "--net needs tap=NAME");
		r = -EINVAL;
	}
	free(copy);
	return r;
}

static int parse_disk(const char *arg, struct machine_disk *d, char *err, size_t errlen)
{
	size_t n = strlen(arg);
	d->readonly = false;
	d->path = arg;
	if (n == 0) {
		snprintf(err, errlen, "--disk needs a path");
		return -EINVAL;
	}
	if (n > 3 && !strcmp(arg + n - 3, ",ro")) {
		/* keep the path without the suffix: argv strings are ours to cut */
		((char *)arg)[n - 3] = '\0';
		d->readonly = true;
	} else if (n > 3 && !strcmp(arg + n - 3, ",rw")) {
		((char *)arg)[n - 3] = '\0';
	}
	/* a missing image is reported when it is opened; its size is only recorded here */
	struct stat st;
	d->size = stat(d->path, &st) == 0 ? (uint64_t)st.st_size : 0;
	return 0;
}

int cli_check_group(const char *name, char *err, size_t errlen)
{
	gid_t gid;
	int r = *name ? control_group_lookup(name, &gid) : -ENOENT;
	if (r)
		snprintf(err, errlen, "--control-group '%s': %s", name, r == -ENOENT ? "no such group" : strerror(-r));
	return r;
}

/* --disk and --net append to the machine, up to its limits. */
static int add_disk(struct machine *m, const char *arg, char *err, size_t errlen)
{
	if (m->ndisks >= MACHINE_MAX_DISKS) {
		snprintf(err, errlen, "--disk: at most %d disks", MACHINE_MAX_DISKS);
		return -EINVAL;
	}
	if (parse_disk(arg, &m->disks[m->ndisks], err, errlen))
		return -EINVAL;
	m->ndisks++;
	return 0;
}

static int add_net(struct machine *m, const char *arg, char *err, size_t errlen)
{
	if (m->nnics >= MACHINE_MAX_NICS) {
		snprintf(err, errlen, "--net: at most %d NICs", MACHINE_MAX_NICS);
		return -EINVAL;
	}
	if (parse_net(arg, &m->nics[m->nnics], err, errlen))
		return -EINVAL;
	m->nnics++;
	return 0;
}

/* --epoch (c 'E', 5..1000) or --ft-timeout ('T', 100..600000), in milliseconds. */
static int parse_ms(int c, const char *opt, const char *arg, struct run_config *cfg, char *err, size_t errlen)
{
	char *end;
	errno = 0;
	unsigned long v = strtoul(arg, &end, 10);
	unsigned long lo = c == 'E' ? 5 : 100, hi = c == 'E' ? 1000 : 600000;
	if (errno || *end || end == arg || arg[0] == '-' || v < lo || v > hi) {
		snprintf(err, errlen, "%s '%s': want milliseconds between %lu and %lu", opt, arg, lo, hi);
		return -EINVAL;
	}
	if (c == 'E')
		cfg->epoch_ms = (unsigned)v;
	else
		cfg->ft_timeout_ms = (unsigned)v;
	return 0;
}

static int parse_compress(const char *arg, struct run_config *cfg, char *err, size_t errlen)
{
	if (ft_codec_parse(arg, &cfg->compress)) {
		snprintf(err, errlen, "--compress '%s': want %s", arg, FT_CODEC_NAMES);
		return -EINVAL;
	}
	return 0;
}

static int parse_delta_cache(const char *arg, struct run_config *cfg, char *err, size_t errlen)
{
	if (parse_size(arg, &cfg->delta_cache) || (cfg->delta_cache && cfg->delta_cache < PAGE_SIZE)) {
		snprintf(err, errlen, "--delta-cache: bad size '%s' (want 0 or at least 4K, e.g. 64M)", arg);
		return -EINVAL;
	}
	if (cfg->delta_cache > VM_MAX_MEM) {
		snprintf(err, errlen, "--delta-cache %s: above the largest guest, %lluG", arg, VM_MAX_MEM >> 30);
		return -EINVAL;
	}
	return 0;
}

static int parse_checkpoint(const char *arg, struct run_config *cfg, char *err, size_t errlen)
{
	if (ft_ckpt_parse(arg, &cfg->checkpoint)) {
		snprintf(err, errlen, "--checkpoint '%s': want %s", arg, FT_CKPT_NAMES);
		return -EINVAL;
	}
	return 0;
}

static int parse_dirty_track(const char *arg, struct run_config *cfg, char *err, size_t errlen)
{
	if (vm_dirty_track_parse(arg, &cfg->dirty_track)) {
		snprintf(err, errlen, "--dirty-track '%s': want %s", arg, VM_DIRTY_TRACK_NAMES);
		return -EINVAL;
	}
	return 0;
}

/* --tsc-khz: 1 MHz .. 10 GHz; whether KVM can give it is known only when the vCPUs exist */
static int parse_tsc_khz(const char *arg, struct run_config *cfg, char *err, size_t errlen)
{
	char *end;
	errno = 0;
	unsigned long v = strtoul(arg, &end, 10);
	if (errno || *end || end == arg || arg[0] == '-' || v < 1000 || v > 10000000) {
		snprintf(err, errlen, "--tsc-khz '%s': want a TSC rate in kHz between 1000 and 10000000", arg);
		return -EINVAL;
	}
	cfg->tsc_khz = (uint32_t)v;
	return 0;
}

static int parse_mem(const char *arg, struct run_config *cfg, char *err, size_t errlen)
{
	if (parse_size(arg, &cfg->machine.mem)) {
		snprintf(err, errlen, "--mem: bad memory size '%s' (want e.g. 512M or 4G)", arg);
		return -EINVAL;
	}
	if (cfg->machine.mem > VM_MAX_MEM) {
		snprintf(err, errlen, "--mem %s: memory size is above the maximum of %lluG", arg, VM_MAX_MEM >> 30);
		return -EINVAL;
	}
	return 0;
}

static int parse_cpus(const char *arg, struct run_config *cfg, char *err, size_t errlen)
{
	char *end;
	errno = 0;
	unsigned long v = strtoul(arg, &end, 10);
	if (errno || *end || end == arg || arg[0] == '-' || v == 0 || v > 100000000ul) {
		snprintf(err, errlen, "--cpus '%s': the number of vCPUs must be 1 or more", arg);
		return -EINVAL;
	}
	cfg->machine.cpus = (unsigned)v;
	return 0;
}

/* getopt's answer c about argv[optind - 1] into cfg: 0, 1 for --help (stop there), or -EINVAL with
 * one line in err. */
static int parse_option(int c, char **argv, struct run_config *cfg, char *err, size_t errlen)
{
	const char *opt = argv[optind - 1];
	switch (c) {
	case 'C': cfg->control = optarg; return 0;
	case 'G':
		if (cli_check_group(optarg, err, errlen))
			return -EINVAL;
		cfg->control_group = optarg;
		return 0;
	case 'B': cfg->backup = optarg; return 0;
	case 'X': cfg->tls.x509_dir = optarg; return 0;
	case 'P': cfg->tls.psk_file = optarg; return 0;
	case 'N': cfg->tls.peer = optarg; return 0;
	case 'I': cfg->ft_insecure = true; return 0;
	case 'A': cfg->arbiter = optarg; return 0;
	case 'M': cfg->vm_name = optarg; return 0;
	case 'S': cfg->stats = optarg; return 0;
	case 'Z': return parse_compress(optarg, cfg, err, errlen);
	case 'D': return parse_dirty_track(optarg, cfg, err, errlen);
	case 'W': return parse_checkpoint(optarg, cfg, err, errlen);
	case 'Y': return parse_delta_cache(optarg, cfg, err, errlen);
	case 'E':
	case 'T': return parse_ms(c, opt, optarg, cfg, err, errlen);
	case 'k': cfg->kernel = optarg; return 0;
	case 'i': cfg->initrd = optarg; return 0;
	case 'c': cfg->cmdline = optarg; return 0;
	case 'm': return parse_mem(optarg, cfg, err, errlen);
	case 'p': return parse_cpus(optarg, cfg, err, errlen);
	case 'K': return parse_tsc_khz(optarg, cfg, err, errlen);
	case 'd': return add_disk(&cfg->machine, optarg, err, errlen);
	case 'n': return add_net(&cfg->machine, optarg, err, errlen);
	case 'h':
		cfg->help = true;
		return 1;
	case ':':
		snprintf(err, errlen, "option '%s' needs a value (see ftvmm run --help)", opt);
		return -EINVAL;
	default:
		/* inside a group like -zk glibc does not advance optind: name the letter itself */
		if (optopt && strncmp(opt, "--", 2) != 0)
			snprintf(err, errlen, "unknown option '-%c' (see ftvmm run --help)", optopt);
		else
			snprintf(err, errlen, "unknown option '%s' (see ftvmm run --help)", opt);
		return -EINVAL;
	}
}

/* What follows the options: restore's snapshot FILE, nothing else; and what must have been given. */
static int parse_rest(int argc, char **argv, struct run_config *cfg, bool restore, char *err, size_t errlen)
{
	if (restore) {
		if (optind >= argc) {
			snprintf(err, errlen, "missing snapshot FILE (see ftvmm restore --help)");
			return -EINVAL;
		}
		cfg->snapshot = argv[optind++];
	}
	if (cfg->control_group && !cfg->control) {
		snprintf(err, errlen, "--control-group needs --control PATH (see ftvmm %s --help)", restore ? "restore" : "run");
		return -EINVAL;
	}
	if (optind < argc) {
		snprintf(err, errlen, "unexpected argument '%s' (see ftvmm %s --help)", argv[optind], restore ? "restore" : "run");
		return -EINVAL;
	}
	if (!restore && !cfg->kernel) {
		snprintf(err, errlen, "missing --kernel PATH (see ftvmm run --help)");
		return -EINVAL;
	}
	if (cli_check_arbiter(cfg->arbiter, cfg->vm_name, err, errlen))
		return -EINVAL;
	return cli_check_ft_link("--backup", cfg->backup, &cfg->tls, cfg->ft_insecure, err, errlen);
}

int cli_check_arbiter(const char *arbiter, const char *name, char *err, size_t errlen)
{
	if (!arbiter != !name) {
		snprintf(err, errlen, "%s", arbiter ? "--arbiter needs --name NAME (the VM's key in the arbiter)"
						    : "--name needs --arbiter etcd://HOST:PORT (it names the VM there)");
		return -EINVAL;
	}
	if (!name)
		return 0;
	size_t n = strlen(name);
	if (n == 0 || n > 64 || strspn(name, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._-") != n) {
		snprintf(err, errlen, "--name '%s': want 1 to 64 letters, digits, '.', '_' or '-'", name);
		return -EINVAL;
	}
	if (strncmp(arbiter, "etcd://", 7) != 0) {
		snprintf(err, errlen, "--arbiter '%s': want etcd://HOST:PORT[,HOST:PORT...]", arbiter);
		return -EINVAL;
	}
	return 0;
}

int cli_check_stats(const char *path, char *err, size_t errlen)
{
	if (!*path) {
		snprintf(err, errlen, "--stats needs a file path");
		return -EINVAL;
	}
	struct stat st;
	int e = 0;
	if (stat(path, &st) == 0) {
		if (S_ISDIR(st.st_mode))
			e = EISDIR;
		else if (access(path, W_OK))
			e = errno;
	} else if (errno != ENOENT) {
		e = errno;
	} else {
		/* not there yet: it is created in its directory, which must exist and take a new file */
		char buf[4096];
		const char *dir = ".", *slash = strrchr(path, '/');
		size_t n = slash ? (size_t)(slash - path) : 0;
		if (slash && n == 0) {
			dir = "/";
		} else if (slash && n < sizeof(buf)) {
			memcpy(buf, path, n);
			buf[n] = '\0';
			dir = buf;
		}
		if (n >= sizeof(buf))
			e = ENAMETOOLONG;
		else if (access(dir, W_OK | X_OK))
			e = errno;
	}
	if (e) {
		/* the words fopen's refusal would give when the file is opened */
		snprintf(err, errlen, "--stats %s: %s", path, strerror(e));
		return -EINVAL;
	}
	return 0;
}

void cli_warn_no_arbiter(const char *arbiter)
{
	if (!arbiter)
		warnx("warning: no --arbiter: if the link between primary and backup breaks while both hosts run, both "
		      "may run the guest (a partition makes two copies); see README, the arbiter");
}

int cli_check_ft_link(const char *opt, const char *addr, const struct ft_tls_opts *tls, bool insecure, char *err,
		      size_t errlen)
{
	if (tls->x509_dir && tls->psk_file) {
		snprintf(err, errlen, "give either --tls-creds DIR or --tls-psk FILE, not both");
		return -EINVAL;
	}
	if (tls->peer && !tls->x509_dir) {
		snprintf(err, errlen, "--tls-peer names the peer's certificate: it needs --tls-creds DIR");
		return -EINVAL;
	}
	/* checked again where the link is made (ft_connect, ft_listen): this is the early, clear refusal.
	 * Something that is not HOST:PORT is left to them, which say so. */
	char host[256], port[16];
	bool hostport = addr && !ft_parse_hostport(addr, host, sizeof(host), port, sizeof(port));
	if (hostport && !ft_tls_opts_given(tls) && !insecure && !ft_addr_is_loopback(addr)) {
		snprintf(err, errlen,
			 "%s %s: not a loopback address, and without --tls-creds DIR or --tls-psk FILE the FT link "
			 "is neither authenticated nor encrypted (give credentials, or --ft-insecure to allow it)",
			 opt, addr);
		return -EINVAL;
	}
	return 0;
}

void cli_warn_insecure(const struct ft_tls_opts *tls, bool insecure)
{
	if (insecure && !ft_tls_opts_given(tls))
		warnx("warning: --ft-insecure: the FT links are not authenticated or encrypted: anyone who can reach "
		      "the port can read the guest, feed a backup a guest of its own, or forge a backup's acks and "
		      "heartbeats (releasing held output)");
}

static int parse_common(int argc, char **argv, struct run_config *cfg, bool restore, char *err, size_t errlen)
{
	static const struct option opts[] = {
		{ "kernel", required_argument, NULL, 'k' }, { "initrd", required_argument, NULL, 'i' },
		{ "cmdline", required_argument, NULL, 'c' }, { "mem", required_argument, NULL, 'm' },
		{ "cpus", required_argument, NULL, 'p' },   { "disk", required_argument, NULL, 'd' },
		{ "net", required_argument, NULL, 'n' },    { "help", no_argument, NULL, 'h' },
		{ "control", required_argument, NULL, 'C' }, { "backup", required_argument, NULL, 'B' },
		{ "epoch", required_argument, NULL, 'E' },   { "stats", required_argument, NULL, 'S' },
		{ "ft-timeout", required_argument, NULL, 'T' }, { "control-group", required_argument, NULL, 'G' },
		{ "tsc-khz", required_argument, NULL, 'K' },  { "tls-creds", required_argument, NULL, 'X' },
		{ "tls-psk", required_argument, NULL, 'P' },  { "tls-peer", required_argument, NULL, 'N' },
		{ "ft-insecure", no_argument, NULL, 'I' },  { "arbiter", required_argument, NULL, 'A' },
		{ "name", required_argument, NULL, 'M' },    { "compress", required_argument, NULL, 'Z' },
		{ "dirty-track", required_argument, NULL, 'D' }, { "checkpoint", required_argument, NULL, 'W' },
		{ "delta-cache", required_argument, NULL, 'Y' },
		{ NULL, 0, NULL, 0 },
	};
	memset(cfg, 0, sizeof(*cfg));
	cfg->machine.mem = DEFAULT_MEM;
	cfg->machine.cpus = 1;
	optind = 0; /* 0, not 1: also forgets glibc's position inside a group of short options */
	opterr = 0;
	int c;
	int li = -1;
	while ((c = getopt_long(argc, argv, ":k:i:c:m:p:d:n:h", opts, &li)) != -1) {
		if (restore && strchr("kicmpBESTK", c)) {
			/* named as given: argv[optind - 1] is the value when it came as a separate word */
			if (li >= 0)
				snprintf(err, errlen, "option '--%s' is not accepted by restore: the snapshot fixes the VM's shape",
					 opts[li].name);
			else
				snprintf(err, errlen, "option '-%c' is not accepted by restore: the snapshot fixes the VM's shape", c);
			return -EINVAL;
		}
		li = -1;
		int r = parse_option(c, argv, cfg, err, errlen);
		if (r)
			return r < 0 ? r : 0;
	}
	return parse_rest(argc, argv, cfg, restore, err, errlen);
}

int cli_parse_run(int argc, char **argv, struct run_config *cfg, char *err, size_t errlen)
{
	return parse_common(argc, argv, cfg, false, err, errlen);
}

int cli_parse_restore(int argc, char **argv, struct run_config *cfg, char *err, size_t errlen)
{
	return parse_common(argc, argv, cfg, true, err, errlen);
}

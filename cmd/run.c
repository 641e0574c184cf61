/* run.c - `ftvmm run`: validates inputs, builds the VM and its devices, boots Linux, maps the VM's end to an exit code. */
#include "run.h"
#include "../vmm/boot.h"
#include "cli.h"
#include "control.h"
#include "status.h"
#include "../ft/events.h"
#include "../ft/snapshot.h"
#include "../ft/state.h"
#include "../ft/fence.h"
#include "../ft/primary.h"
#include "../ft/tls.h"
#include "../devices/platform.h"
#include "../devices/virtio_net.h"
#include "../vmm/cpuid.h"
#include "../vmm/mptable.h"
#include "../vmm/util.h"
#include "../vmm/vcpu.h"
#include "../vmm/vm.h"

#include <errno.h>
#include <sys/stat.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <termios.h>
#include <unistd.h>

static struct vm *signal_vm;
static struct termios saved_tio;
static bool tio_saved;

static void restore_terminal(void)
{
	if (tio_saved) {
		tcsetattr(STDIN_FILENO, TCSANOW, &saved_tio);
		tio_saved = false;
	}
}

/* Raw mode so the guest sees every key; ISIG stays on so Ctrl-C still stops the VM. */
static void terminal_raw(void)
{
	if (!isatty(STDIN_FILENO) || tcgetattr(STDIN_FILENO, &saved_tio) < 0)
		return;
	struct termios t = saved_tio;
	t.c_iflag &= ~(unsigned)(IGNBRK | BRKINT | PARMRK | ISTRIP | INLCR | IGNCR | ICRNL | IXON);
	t.c_oflag &= ~(unsigned)OPOST;
	t.c_lflag &= ~(unsigned)(ECHO | ECHONL | ICANON | IEXTEN);
	t.c_cflag &= ~(unsigned)(CSIZE | PARENB);
	t.c_cflag |= CS8;
	t.c_cc[VMIN] = 1;
	t.c_cc[VTIME] = 0;
	if (tcsetattr(STDIN_FILENO, TCSANOW, &t) == 0) {
		tio_saved = true;
		atexit(restore_terminal);
	}
}

static void stop_handler(int sig)
{
	(void)sig;
	if (signal_vm)
		vm_request_exit(signal_vm, VM_EXIT_SIGNAL);
}

static int load_input(const char *what, const char *path, uint8_t **buf, size_t *len)
{
	int r = read_file_all(path, buf, len);
	if (r == -ENOENT)
		warnx("%s %s: no such file", what, path);
	else if (r == -EISDIR)
		warnx("%s %s: is a directory, not a file", what, path);
	else if (r == -EACCES || r == -EPERM)
		warnx("%s %s: permission denied", what, path);
	else if (r)
		warnx("%s %s: cannot read: %s", what, path, strerror(-r));
	return r;
}

static char *build_cmdline(const char *extra)
{
	size_t n = strlen(DEFAULT_CMDLINE) + (extra ? strlen(extra) + 1 : 0) + 1;
	char *s = malloc(n);
	if (s)
		snprintf(s, n, "%s%s%s", DEFAULT_CMDLINE, extra ? " " : "", extra ? extra : "");
	return s;
}

static int write_mptable(struct vm *vm, const struct mp_pci_irq *pci, unsigned npci)
{
	struct kvm_cpuid_entry2 *leaf1 = cpuid_find(vm->vcpus[0].cpuid, 1, 0);
	size_t size = mptable_size(vm->ncpus, npci);
	void *p = gpa_ptr(&vm->mem, BIOS_ROM_START, size);
	if (!p || !leaf1)
		return -EINVAL;
	if (!mptable_build(p, size, (uint32_t)BIOS_ROM_START, vm->ncpus, leaf1->eax, leaf1->edx, pci, npci))
		return -EINVAL;
	gmem_mark_dirty(&vm->mem, BIOS_ROM_START, size);
	return 0;
}

static int exit_code_for(enum vm_exit_reason r)
{
	switch (r) {
	case VM_EXIT_REBOOT:
	case VM_EXIT_POWEROFF:
	case VM_EXIT_SIGNAL:
		return 0;
	case VM_EXIT_SHUTDOWN:
		return 2;
	case VM_EXIT_PANIC:
		return 3;
	default:
		return 1;
	}
}

static struct ft_primary ft;
static bool ft_started;
static struct platform plat;
static const struct run_config *cur_cfg;
static struct ft_tls_creds *client_tls; /* --tls-creds / --tls-psk as the primary's: loaded once */
static struct ft_fence own_fence;
static struct ft_fence *fence; /* the arbiter: a taken-over backup's (with the generation it won), else own_fence */

/* The FT client credentials cfg names, loaded on first use: 0 (also when none are named), or -errno
 * with one line in err. A backup that took over loads them only when `protect` needs them, so creds
 * for its own role alone never stop it from running the guest. */
static int client_creds(const struct run_config *cfg, char *err, size_t errlen)
{
	if (client_tls || !ft_tls_opts_given(&cfg->tls))
		return 0;
	return ft_tls_creds_load(&cfg->tls, FT_TLS_CLIENT, &client_tls, err, errlen);
}

/* `ctl protect HOST:PORT`: pair a running, unprotected VM with a (new) backup. */
static int control_protect(void *ctx, int argc, char **argv, char *reply, size_t len)
{
	struct vm *vm = ctx;
	if (strcmp(argv[0], "protect") != 0)
		return -ENOSYS;
	if (argc != 2) {
		snprintf(reply, len, "error: usage: protect HOST:PORT");
		return 0;
	}
	if (ft_started && ft_primary_active(&ft)) {
		snprintf(reply, len, "error: already protected by %s", ft.peer);
		return 0;
	}
	char err[512] = "";
	/* the credentials this VM was started with, and without them the loopback rule */
	if (cli_check_ft_link("protect", argv[1], &cur_cfg->tls, cur_cfg->ft_insecure, err, sizeof(err)) ||
	    client_creds(cur_cfg, err, sizeof(err))) {
		snprintf(reply, len, "error: %s", err);
		return 0;
	}
	if (ft_started)
		ft_primary_stop(&ft, FT_STOP_QUIT);
	ft_started = false;
	unsigned epoch = cur_cfg->epoch_ms ? cur_cfg->epoch_ms : FT_DEFAULT_EPOCH_MS;
	unsigned tmo = cur_cfg->ft_timeout_ms ? cur_cfg->ft_timeout_ms : FT_DEFAULT_TIMEOUT_MS;
	if (ft_primary_start(&ft, vm, &plat, &cur_cfg->machine, argv[1], client_tls, cur_cfg->ft_insecure, epoch,
			     cur_cfg->compress, cur_cfg->delta_cache, cur_cfg->checkpoint, tmo, cur_cfg->stats, fence, err, sizeof(err)) ||
	    ft_primary_go(&ft)) {
		ft_primary_stop(&ft, FT_STOP_QUIT);
		snprintf(reply, len, "error: %s", err[0] ? err : "cannot start the fault-tolerance threads");
		return 0;
	}
	ft_started = true;
	cli_warn_no_arbiter(cur_cfg->arbiter);
	snprintf(reply, len, "ok protecting with %s (initial sync running)", argv[1]);
	return 0;
}

static void status_ext(void *ctx, char *buf, size_t len)
{
	(void)ctx;
	if (ft_started) {
		ft_primary_status(&ft, buf, len);
		return;
	}
	int n = snprintf(buf, len, "protected=no");
	if (n > 0 && (size_t)n < len)
		fence_status(fence, buf + n, len - (size_t)n);
}

static void status_json(void *ctx, struct ft_json *j)
{
	(void)ctx;
	struct ft_fence_info fi;
	fence_info(fence, &fi);
	if (!ft_started) {
		status_json_unprotected(j, &fi);
		return;
	}
	struct ft_primary_info pi;
	ft_primary_info(&ft, &pi);
	status_json_primary(j, &pi, &fi);
}

/* Timestamps of a restore, for its "guest running ... after" line. */
struct run_times {
	uint64_t begin, created, restored;
};

/* A fresh guest: the MP table, and the boot vCPU at the kernel's entry. 0, or -1 after one line on stderr. */
static int boot_guest(struct vm *vm, const struct boot_entry *entry)
{
	if (write_mptable(vm, plat.pci_irqs, plat.npci_irqs)) {
		warnx("cannot build the MP table");
		return -1;
	}
	if (vcpu_setup_boot(&vm->vcpus[0], entry)) {
		warnx("cannot set up the boot vCPU: %s", strerror(errno));
		return -1;
	}
	return 0;
}

/* A saved guest: a snapshot file's memory (a takeover's is in place already), then its state. */
static int restore_guest(struct vm *vm, const struct run_source *src, struct run_times *t)
{
	char err[512] = "";
	const void *state = src->snap ? src->snap->fdt : src->state;
	if ((src->snap && snapshot_load_memory(src->snap, &vm->mem, err, sizeof(err))) ||
	    state_apply(vm, state, err, sizeof(err))) {
		warnx("restore: %s", err);
		return -1;
	}
	t->restored = now_ns();
	return 0;
}

/* The VM, its board, and the guest in it, booted or restored. 0, or -1 after one line on stderr. */
static int build_vm(struct vm *vm, const struct run_config *cfg, struct run_source *src, struct run_times *t)
{
	char err[512] = "";
	bool restoring = src->snap || src->state;
	vm_dirty_track_prefer(cfg->dirty_track);
	int cr = src->mem ? vm_create_with_mem(vm, src->mem, cfg->machine.cpus, err, sizeof(err))
			  : vm_create(vm, ALIGN_UP(cfg->machine.mem, 2ull << 20), cfg->machine.cpus, err, sizeof(err));
	if (cr) {
		warnx("%s", err);
		return -1;
	}
	if (!restoring && cfg->tsc_khz && vm_set_tsc_khz(vm, cfg->tsc_khz, err, sizeof(err))) {
		warnx("%s", err);
		return -1;
	}
	struct boot_entry entry;
	if (!restoring && boot_load_linux(&vm->mem, src->kernel, src->kernel_len, src->initrd, src->initrd_len,
					  src->cmdline, &entry, err, sizeof(err))) {
		warnx("%s", err);
		return -1;
	}
	free((void *)src->kernel);
	free((void *)src->initrd);
	src->kernel = src->initrd = NULL;
	if (platform_create(vm, &cfg->machine, &plat, err, sizeof(err))) {
		warnx("%s", err);
		return -1;
	}
	t->created = now_ns();
	return restoring ? restore_guest(vm, src, t) : boot_guest(vm, &entry);
}

/* --control: the socket, with `protect` and the FT status as this command's extensions. */
static int open_control(struct control *ctl, struct vm *vm, const struct run_config *cfg, const struct run_source *src)
{
	char err[512] = "";
	if (!cfg->control)
		return 0;
	if (control_start(ctl, vm, cfg, cfg->control, err, sizeof(err))) {
		warnx("%s", err);
		return -1;
	}
	ctl->role = src->role ? src->role : cfg->backup ? "primary" : "standalone";
	ctl->status_ext = status_ext;
	ctl->status_json = status_json;
	ctl->ext = control_protect;
	ctl->ext_ctx = vm;
	return 0;
}

/* --backup: pair with the backup before the guest runs: a backup we cannot use is bad input, not a
 * runtime failure. The engine itself starts once the vCPUs run (run_guest). */
static int start_protection(struct vm *vm, const struct run_config *cfg)
{
	char err[512] = "";
	if (!cfg->backup)
		return 0;
	unsigned epoch = cfg->epoch_ms ? cfg->epoch_ms : FT_DEFAULT_EPOCH_MS;
	unsigned tmo = cfg->ft_timeout_ms ? cfg->ft_timeout_ms : FT_DEFAULT_TIMEOUT_MS;
	if (client_creds(cfg, err, sizeof(err)) ||
	    ft_primary_start(&ft, vm, &plat, &cfg->machine, cfg->backup, client_tls, cfg->ft_insecure, epoch,
			     cfg->compress, cfg->delta_cache, cfg->checkpoint, tmo, cfg->stats, fence, err, sizeof(err))) {
		warnx("%s", err);
		ft_primary_stop(&ft, FT_STOP_QUIT);
		return -1;
	}
	ft_started = true;
	cli_warn_no_arbiter(cfg->arbiter);
	return 0;
}

/* SIGINT/SIGTERM/SIGHUP stop the VM (a protected primary's planned failover), SIGPIPE is an error
 * return instead; the console goes raw. */
static void take_signals(struct vm *vm)
{
	signal_vm = vm;
	struct sigaction sa;
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = stop_handler;
	sigemptyset(&sa.sa_mask);
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGHUP, &sa, NULL);
	signal(SIGPIPE, SIG_IGN);
	terminal_raw();
}

/* After a takeover the guest's MACs live behind this host's TAPs: tell the switches (RARP, as QEMU does). */
static void announce_nics(void)
{
	for (int round = 0; round < 3; round++) {
		for (unsigned i = 0; i < plat.nnics; i++)
			virtio_net_announce(plat.nics[i]);
		usleep(50000u << round);
	}
}

/* The guest_ended event: how this copy of the guest ends. A stop request on a protected primary is a
 * planned failover instead (its own event follows); after an error a protected guest's backup takes over. */
static void say_ended(enum vm_exit_reason why, const char *role)
{
	static const char *const names[] = { [VM_EXIT_REBOOT] = "reboot", [VM_EXIT_POWEROFF] = "poweroff",
					     [VM_EXIT_PANIC] = "panic", [VM_EXIT_SHUTDOWN] = "triple-fault",
					     [VM_EXIT_SIGNAL] = "stopped", [VM_EXIT_ERROR] = "error" };
	struct ft_primary_info pi = { .protected_ = false };
	if (ft_started)
		ft_primary_info(&ft, &pi);
	if (pi.protected_ && why == VM_EXIT_SIGNAL)
		return;
	const char *name = (size_t)why < ARRAY_SIZE(names) && names[why] ? names[why] : "error";
	ft_event_emit("guest_ended", "\"role\":%s,\"reason\":\"%s\",\"protected\":%s",
		      FT_JSON_STR(ft_started ? "primary" : role), name, pi.protected_ ? "true" : "false");
}

/* Start the vCPUs (and the FT engine), wait for the VM's end, end the protection as that end says. */
static enum vm_exit_reason run_guest(struct vm *vm, const struct run_source *src, const struct run_times *t)
{
	int r = vm_start(vm);
	if (r) {
		warnx("cannot start the VM: %s", strerror(-r));
		vm_request_exit(vm, VM_EXIT_ERROR);
	} else if (src->snap || src->state) {
		uint64_t now = now_ns();
		warnx("restore: guest running %.1f ms after the restore began (VM and devices built %.1f ms, "
		      "memory and state loaded %.1f ms, start %.1f ms)", (double)(now - t->begin) / 1e6,
		      (double)(t->created - t->begin) / 1e6, (double)(t->restored - t->created) / 1e6,
		      (double)(now - t->restored) / 1e6);
	}
	if (src->announce)
		announce_nics();
	if (!r && ft_started && ft_primary_go(&ft)) {
		warnx("cannot start the fault-tolerance threads");
		vm_request_exit(vm, VM_EXIT_ERROR);
	}
	enum vm_exit_reason why = vm_run_until_exit(vm);
	say_ended(why, src->role ? src->role : "standalone");
	if (ft_started) {
		bool guest_ended = why == VM_EXIT_REBOOT || why == VM_EXIT_POWEROFF || why == VM_EXIT_PANIC ||
				   why == VM_EXIT_SHUTDOWN;
		/* a stop request on a protected primary is a planned failover: last epoch acked first */
		ft_primary_stop(&ft, guest_ended ? FT_STOP_GUEST_ENDED : why == VM_EXIT_SIGNAL ? FT_STOP_HANDOVER : FT_STOP_QUIT);
		ft_started = false;
	}
	return why;
}

/* The console back, one line on how the VM ended, and the exit code for it. */
static int report_end(struct vm *vm, enum vm_exit_reason why)
{
	restore_terminal();
	switch (why) {
	case VM_EXIT_SIGNAL:
		warnx("VM stopped by request");
		if (getenv("FTVMM_DEBUG"))
			for (unsigned i = 0; i < vm->ncpus; i++)
				vcpu_dump(&vm->vcpus[i], stderr);
		break;
	case VM_EXIT_PANIC:
		warnx("guest kernel panicked (pvpanic)");
		break;
	case VM_EXIT_SHUTDOWN:
		warnx("VM ended: guest triple fault");
		break;
	case VM_EXIT_ERROR:
		warnx("VM ended on an internal error");
		break;
	default:
		break;
	}
	return exit_code_for(why);
}

/* Everything after the inputs are validated: build, (boot | restore), run, tear down. */
/* The arbiter: a backup that took over brings its own (it holds the generation it won); else --arbiter's,
 * opened here so a bad one is refused before the guest runs. 0, or -1 after one line on stderr. */
static int open_fence(const struct run_config *cfg, const struct run_source *src)
{
	char err[512] = "";
	fence = src->fence ? src->fence : &own_fence;
	if (src->fence)
		return 0;
	if (fence_open(&own_fence, cfg->arbiter, cfg->vm_name, err, sizeof(err))) {
		warnx("%s", err);
		return -1;
	}
	return 0;
}

int run_vm(const struct run_config *cfg, struct run_source *src)
{
	static struct vm vm;
	static struct control ctl;
	int rc = 1;
	struct run_times t = { .begin = src->t0_ns ? src->t0_ns : now_ns() };
	cur_cfg = cfg;
	if (open_fence(cfg, src))
		return 1;
	if (!build_vm(&vm, cfg, src, &t) && !open_control(&ctl, &vm, cfg, src) && !start_protection(&vm, cfg)) {
		take_signals(&vm);
		rc = report_end(&vm, run_guest(&vm, src, &t));
	}
	if (ft_started) { /* failed before the vCPUs ran */
		ft_primary_stop(&ft, FT_STOP_QUIT);
		ft_started = false;
	}
	free((void *)src->kernel);
	free((void *)src->initrd);
	src->kernel = src->initrd = NULL;
	control_stop(&ctl);
	ft_tls_creds_free(client_tls); /* no FT link is left to use them */
	client_tls = NULL;
	signal_vm = NULL;
	vm_destroy_devices(&vm);
	platform_destroy(&plat);
	vm_destroy(&vm);
	fence_close(&own_fence);
	return rc;
}

/* A command's options into cfg: -1 to go on, else the exit code (2 after one line on stderr for bad
 * input, 0 after the help text). */
static int parse_args(int (*parse)(int, char **, struct run_config *, char *, size_t), void (*usage)(FILE *),
		      int argc, char **argv, struct run_config *cfg)
{
	char err[512] = "";
	if (parse(argc, argv, cfg, err, sizeof(err))) {
		warnx("%s", err);
		return 2;
	}
	if (cfg->help) {
		usage(stdout);
		return 0;
	}
	return -1;
}

/* Credentials given to run or restore are bad input when they do not load: said before the guest
 * starts, not at the first `protect`. --ft-insecure says what it allows. 0, or -1 after one line. */
static int check_tls(const struct run_config *cfg)
{
	char err[512] = "";
	if (client_creds(cfg, err, sizeof(err))) {
		warnx("%s", err);
		return -1;
	}
	cli_warn_insecure(&cfg->tls, cfg->ft_insecure);
	return 0;
}

int cmd_run(int argc, char **argv)
{
	struct run_config cfg;
	char err[512] = "";
	int pr = parse_args(cli_parse_run, cli_run_usage, argc, argv, &cfg);
	if (pr >= 0)
		return pr;
	if (check_tls(&cfg))
		return 1;

	uint8_t *kernel = NULL, *initrd = NULL;
	size_t kernel_len = 0, initrd_len = 0;
	if (load_input("kernel", cfg.kernel, &kernel, &kernel_len))
		return 1;
	struct bzimage_info bi;
	if (bzimage_parse(kernel, kernel_len, &bi, err, sizeof(err))) {
		warnx("kernel %s: %s", cfg.kernel, err);
		free(kernel);
		return 1;
	}
	if (cfg.initrd && load_input("initrd", cfg.initrd, &initrd, &initrd_len)) {
		free(kernel);
		return 1;
	}
	if (ALIGN_UP(cfg.machine.mem, 2ull << 20) < boot_min_mem(&bi)) {
		warnx("--mem: memory size %llu KiB is too small for this kernel (needs at least %llu MiB)",
		      (unsigned long long)(cfg.machine.mem >> 10), (unsigned long long)(boot_min_mem(&bi) >> 20));
		free(kernel);
		free(initrd);
		return 1;
	}
	char *cmdline = build_cmdline(cfg.cmdline);
	struct run_source src = { .kernel = kernel, .kernel_len = kernel_len, .initrd = initrd, .initrd_len = initrd_len,
				  .cmdline = cmdline };
	int rc = 1;
	if (cmdline) {
		rc = run_vm(&cfg, &src); /* frees kernel and initrd */
	} else {
		free(kernel);
		free(initrd);
	}
	free(cmdline);
	return rc;
}

/* Host resources given to restore replace the saved ones, in order, and must fit what was saved.
 * 0, or -1 after one line on stderr. */
static int merge_given(struct machine *m, const struct machine *g)
{
	if (g->ndisks && g->ndisks != m->ndisks) {
		warnx("restore: %u --disk given, the snapshot has %u disks", g->ndisks, m->ndisks);
		return -1;
	}
	for (unsigned i = 0; i < g->ndisks; i++) {
		m->disks[i].path = g->disks[i].path;
		if (g->disks[i].readonly != m->disks[i].readonly) {
			warnx("restore: --disk %s: read-only setting differs from the snapshot's", g->disks[i].path);
			return -1;
		}
	}
	if (g->nnics && g->nnics != m->nnics) {
		warnx("restore: %u --net given, the snapshot has %u NICs", g->nnics, m->nnics);
		return -1;
	}
	for (unsigned i = 0; i < g->nnics; i++) {
		if (g->nics[i].has_mac && memcmp(g->nics[i].mac, m->nics[i].mac, 6) != 0) {
			warnx("restore: --net tap=%s: MAC differs from the snapshot's", g->nics[i].tap);
			return -1;
		}
		memcpy(m->nics[i].tap, g->nics[i].tap, sizeof(m->nics[i].tap));
	}
	return 0;
}

/* What this host must have for the snapshot: each disk at the size it was saved with, each TAP. */
static int check_host(const void *state, const struct machine *m)
{
	for (unsigned i = 0; i < m->ndisks; i++) {
		uint64_t want = 0;
		struct stat st;
		if (state_disk_size(state, i, &want) == 0 && stat(m->disks[i].path, &st) == 0) {
			uint64_t have = (uint64_t)st.st_size;
			if (have != want) {
				warnx("restore: disk %s is %llu bytes, the snapshot expects %llu", m->disks[i].path,
				      (unsigned long long)have, (unsigned long long)want);
				return -1;
			}
		}
	}
	for (unsigned i = 0; i < m->nnics; i++) {
		/* the snapshot expects this host network to exist: a restore does not invent one */
		char sys[64];
		snprintf(sys, sizeof(sys), "/sys/class/net/%s", m->nics[i].tap);
		if (access(sys, F_OK) != 0) {
			warnx("restore: TAP %s does not exist on this host (create it, or name another with --net tap=NAME)",
			      m->nics[i].tap);
			return -1;
		}
	}
	return 0;
}

int cmd_restore(int argc, char **argv)
{
	struct run_config given, cfg;
	char err[512] = "";
	int pr = parse_args(cli_parse_restore, cli_restore_usage, argc, argv, &given);
	if (pr >= 0)
		return pr;
	if (check_tls(&given))
		return 1;
	struct snapshot snap;
	if (snapshot_open(given.snapshot, &snap, err, sizeof(err))) {
		warnx("%s", err);
		return 1;
	}
	int rc = 1;
	memset(&cfg, 0, sizeof(cfg)); /* the snapshot gives the machine; the rest is this command's */
	if (state_read_machine(snap.fdt, &cfg.machine, err, sizeof(err))) {
		warnx("%s", err);
	} else if (!merge_given(&cfg.machine, &given.machine) && !check_host(snap.fdt, &cfg.machine)) {
		cfg.control = given.control;
		cfg.control_group = given.control_group;
		cfg.tls = given.tls;
		cfg.ft_insecure = given.ft_insecure;
		struct run_source src = { .snap = &snap, .announce = cfg.machine.nnics > 0 };
		rc = run_vm(&cfg, &src);
	}
	snapshot_close(&snap);
	return rc;
}

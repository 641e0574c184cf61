/* run.c - `ftvmm run`: validates inputs, builds the VM and its devices, boots Linux, maps the VM's end to an exit code. */
#include "run.h"
#include "boot.h"
#include "cli.h"
#include "cpuid.h"
#include "mptable.h"
#include "platform.h"
#include "util.h"
#include "vcpu.h"
#include "vm.h"

#include <errno.h>
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

int cmd_run(int argc, char **argv)
{
	struct run_config cfg;
	char err[512] = "";
	if (cli_parse_run(argc, argv, &cfg, err, sizeof(err))) {
		warnx("%s", err);
		return 2;
	}
	if (cfg.help) {
		cli_run_usage(stdout);
		return 0;
	}

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
	uint64_t mem = ALIGN_UP(cfg.mem, 2ull << 20);
	if (mem < boot_min_mem(&bi)) {
		warnx("--mem: memory size %llu KiB is too small for this kernel (needs at least %llu MiB)",
		      (unsigned long long)(cfg.mem >> 10), (unsigned long long)(boot_min_mem(&bi) >> 20));
		free(kernel);
		free(initrd);
		return 1;
	}
	char *cmdline = build_cmdline(cfg.cmdline);

	static struct vm vm;
	static struct platform plat;
	int rc = 1;
	if (vm_create(&vm, mem, cfg.cpus, err, sizeof(err))) {
		warnx("%s", err);
		goto out;
	}
	struct boot_entry entry;
	if (boot_load_linux(&vm.mem, kernel, kernel_len, initrd, initrd_len, cmdline, &entry, err, sizeof(err))) {
		warnx("%s", err);
		goto out;
	}
	if (platform_create(&vm, &cfg, &plat, err, sizeof(err))) {
		warnx("%s", err);
		goto out;
	}
	if (write_mptable(&vm, plat.pci_irqs, plat.npci_irqs)) {
		warnx("cannot build the MP table");
		goto out;
	}
	if (vcpu_setup_boot(&vm.vcpus[0], &entry)) {
		warnx("cannot set up the boot vCPU: %s", strerror(errno));
		goto out;
	}
	free(kernel);
	free(initrd);
	kernel = initrd = NULL;

	signal_vm = &vm;
	struct sigaction sa;
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = stop_handler;
	sigemptyset(&sa.sa_mask);
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGHUP, &sa, NULL);
	signal(SIGPIPE, SIG_IGN);
	terminal_raw();

	int r = vm_start(&vm);
	if (r) {
		warnx("cannot start the VM: %s", strerror(-r));
		vm_request_exit(&vm, VM_EXIT_ERROR);
	}
	enum vm_exit_reason why = vm_run_until_exit(&vm);
	restore_terminal();
	switch (why) {
	case VM_EXIT_SIGNAL:
		warnx("VM stopped by signal");
		if (getenv("FTVMM_DEBUG"))
			for (unsigned i = 0; i < vm.ncpus; i++)
				vcpu_dump(&vm.vcpus[i], stderr);
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
	rc = exit_code_for(why);
out:
	signal_vm = NULL;
	vm_destroy_devices(&vm);
	platform_destroy(&plat);
	vm_destroy(&vm);
	free(cmdline);
	free(kernel);
	free(initrd);
	return rc;
}

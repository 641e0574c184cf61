/* cli.h - parsing of `ftvmm run` options into a plain config, separate from acting on them. */
#ifndef FTVMM_CLI_H
#define FTVMM_CLI_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "../devices/machine.h"
#include "../ft/compress.h"
#include "../ft/cow.h"
#include "../vmm/dirty.h"
#include "../ft/tls.h"

struct run_config {
	const char *kernel;
	const char *initrd;
	const char *cmdline; /* appended to the defaults */
	struct machine machine; /* --mem, --cpus, --disk, --net */
	const char *control;  /* --control PATH */
	const char *control_group; /* --control-group GROUP: members may use the control socket too */
	const char *backup;   /* --backup HOST:PORT: run protected by an FT backup */
	unsigned epoch_ms;    /* --epoch MS */
	unsigned ft_timeout_ms; /* --ft-timeout MS: heartbeat silence that counts as a failure */
	const char *stats;    /* --stats FILE: one JSON line per epoch */
	enum ft_codec compress; /* --compress none|lz4|zstd: the epochs' page payload (also for a later protect) */
	uint64_t delta_cache;   /* --delta-cache SIZE: bytes of sent pages kept for page deltas (0: none) */
	struct ft_tls_opts tls; /* --tls-creds DIR | --tls-psk FILE, --tls-peer NAME: the FT links' TLS */
	bool ft_insecure;     /* --ft-insecure: FT links without credentials may leave this host */
	const char *arbiter;  /* --arbiter etcd://HOST:PORT[,...]: who runs after a failure is decided there */
	const char *vm_name;  /* --name NAME: the VM's key in the arbiter */
	const char *snapshot; /* restore: the snapshot file */
	uint32_t tsc_khz;     /* --tsc-khz KHZ: the guest's TSC rate (0: this host's) */
	enum vm_dirty_track dirty_track; /* --dirty-track auto|ring|clear|bitmap: how KVM reports guest writes */
	enum ft_ckpt checkpoint; /* --checkpoint copy|cow: epoch pages copied in the pause, or copy-on-write */
	bool help;
};

#define DEFAULT_MEM (512ull << 20)
/* acpi=off: there are no ACPI tables (the MP table describes the machine); saying so spares the
 * guest a probe and an error line on a slow serial console */
#define DEFAULT_CMDLINE "console=ttyS0 reboot=k panic=-1 acpi=off"

/* Parse argv (after "run"); also records each --disk's current size. Returns 0, or -EINVAL with one
 * line in err. */
int cli_parse_run(int argc, char **argv, struct run_config *cfg, char *err, size_t errlen);
/* Parse `ftvmm restore FILE [--disk ...] [--net ...] [--control PATH]`: the VM's shape comes from
 * the snapshot; disks and NICs given here replace the saved host paths/TAPs (counts must match). */
int cli_parse_restore(int argc, char **argv, struct run_config *cfg, char *err, size_t errlen);
/* --control-group GROUP must name a group: bad input, so refused before anything starts rather than
 * when the socket is made. 0, or -errno with one line in err. */
int cli_check_group(const char *name, char *err, size_t errlen);
/* The FT link options of run, restore and backup: --tls-creds and --tls-psk exclusive, --tls-peer only
 * with --tls-creds, and addr (opt's value: --backup or --listen, may be NULL) a loopback address
 * unless credentials or --ft-insecure were given. 0, or -EINVAL with one line in err. */
int cli_check_ft_link(const char *opt, const char *addr, const struct ft_tls_opts *tls, bool insecure, char *err,
		      size_t errlen);
/* --arbiter and --name come together (NAME: 1..64 of [A-Za-z0-9._-]). 0, or -EINVAL with one line in err. */
int cli_check_arbiter(const char *arbiter, const char *name, char *err, size_t errlen);
/* --stats FILE, checked before anything starts where the file is opened only later (backup: at a
 * `protect` after its takeover): FILE writable, or absent in a directory where it can be created.
 * Nothing is created or truncated here. 0, or -EINVAL with one line in err. */
int cli_check_stats(const char *path, char *err, size_t errlen);
/* FT without an arbiter: one line on stderr saying a partition can run two copies. */
void cli_warn_no_arbiter(const char *arbiter);
/* --ft-insecure without credentials: one line on stderr saying what that lets others do. */
void cli_warn_insecure(const struct ft_tls_opts *tls, bool insecure);
void cli_usage(FILE *f);
void cli_restore_usage(FILE *f);
void cli_run_usage(FILE *f);

#endif

/* control.h - the Unix control socket of a running VM (pause, resume, snapshot, status, events) and its client. */
#ifndef FTVMM_CONTROL_H
#define FTVMM_CONTROL_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

struct vm;
struct run_config;
struct ft_json;

/* Extra commands (the FT engine adds "protect"); returns 0 and fills reply, or -errno. */
typedef int (*control_ext_fn)(void *ctx, int argc, char **argv, char *reply, size_t len);

/* The longest line the server takes, its newline included, plus the NUL it keeps. */
#define CTL_LINE_MAX 1024
/* The longest reply line (`status --json` with long peer names and reasons), its newline included. */
#define CTL_REPLY_MAX 4096

struct control {
	struct vm *vm;
	const struct run_config *cfg;
	const char *path;
	int listen_fd;
	int wake[2];
	pthread_t thread;
	bool running;
	uint64_t started_ns;
	/* status text from the FT engine, appended to `status` */
	void (*status_ext)(void *ctx, char *buf, size_t len);
	/* the same as members of `status --json`'s object (cmd/status.h) */
	void (*status_json)(void *ctx, struct ft_json *j);
	control_ext_fn ext;
	void *ext_ctx;
	const char *role; /* "standalone", "primary", "backup" */
	bool user_paused; /* a `pause` from a client, undone by `resume` */
	bool has_group;   /* --control-group: its members may connect too */
	gid_t group;
};

/* Bind path (replacing a stale socket; refusing a live one and anything that is not a socket), mode 0600,
 * or 0660 with cfg->control_group as its group, and serve on a thread; a client must be root, our own
 * uid or (with a group) a member of it. 0 or -errno + err. */
int control_start(struct control *c, struct vm *vm, const struct run_config *cfg, const char *path, char *err,
		  size_t errlen);
void control_stop(struct control *c);
/* A group name or number (--control-group) to its gid. 0, -ENOENT, or another -errno. */
int control_group_lookup(const char *name, gid_t *gid);
/* Whether a peer (SO_PEERCRED's uid and gid, and its supplementary groups) may use the socket: root,
 * this process's own uid, or a member of the --control-group. */
bool control_peer_allowed(const struct control *c, uid_t uid, gid_t gid, const gid_t *groups, size_t ngroups);
/* Execute one command line; exposed for tests. Reply is "ok ...", "error: ...", or for `status --json` one
 * JSON object. `events` turns a connection into a stream of event lines (ft/events.h): the server's loop
 * does that, here it is an error. */
void control_execute(struct control *c, char *line, char *reply, size_t len);

/* `ftvmm ctl PATH COMMAND...`: send one command, print the reply; exit 0 iff it starts with "ok" or is
 * JSON. `events`: print event lines as they come, until the VM's side closes. */
int cmd_ctl(int argc, char **argv);

#endif

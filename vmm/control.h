/* control.h - the Unix control socket of a running VM (pause, resume, snapshot, status) and its client. */
#ifndef FTVMM_CONTROL_H
#define FTVMM_CONTROL_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct vm;
struct run_config;

/* Extra commands (the FT engine adds "protect"); returns 0 and fills reply, or -errno. */
typedef int (*control_ext_fn)(void *ctx, int argc, char **argv, char *reply, size_t len);

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
	control_ext_fn ext;
	void *ext_ctx;
	const char *role; /* "standalone", "primary", "backup" */
	bool user_paused; /* a `pause` from a client, undone by `resume` */
};

/* Bind path (replacing a stale socket, refusing a live one) and serve on a thread. 0 or -errno + err. */
int control_start(struct control *c, struct vm *vm, const struct run_config *cfg, const char *path, char *err,
		  size_t errlen);
void control_stop(struct control *c);
/* Execute one command line; exposed for tests. Reply is "ok ..." or "error: ...". */
void control_execute(struct control *c, char *line, char *reply, size_t len);

/* `ftvmm ctl PATH COMMAND...`: send one command, print the reply; exit 0 iff it starts with "ok". */
int cmd_ctl(int argc, char **argv);

#endif

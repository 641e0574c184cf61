/* control.c - line protocol on a Unix socket: pause, resume, snapshot FILE, status; served off the vCPU and I/O threads. */
#include "control.h"
#include "../ft/snapshot.h"
#include "cli.h"
#include "../vmm/util.h"
#include "../vmm/vm.h"

#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#define MAX_ARGS 8

static int split(char *line, char **argv)
{
	int n = 0;
	char *save = NULL;
	for (char *t = strtok_r(line, " \t\r\n", &save); t && n < MAX_ARGS; t = strtok_r(NULL, " \t\r\n", &save))
		argv[n++] = t;
	return n;
}

/* "cannot pause: ..." with the one failure a user can meet on a healthy VM said plainly. */
static void pause_error(int r, char *reply, size_t len)
{
	snprintf(reply, len, "error: cannot pause: %s", r == -ECANCELED ? "the VM is stopping" : strerror(-r));
}

static void do_snapshot(struct control *c, const char *file, char *reply, size_t len)
{
	uint64_t t0 = now_ns();
	int r = vm_pause(c->vm);
	if (r) {
		pause_error(r, reply, len);
		return;
	}
	uint64_t t1 = now_ns();
	char err[256] = "";
	struct snap_stats st;
	r = snapshot_write(c->vm, c->cfg ? &c->cfg->machine : NULL, file, &st, err, sizeof(err));
	uint64_t t2 = now_ns();
	vm_resume(c->vm); /* undoes this pause only: a user's `pause` still holds */
	if (r)
		snprintf(reply, len, "error: %s", err);
	else
		snprintf(reply, len,
			 "ok snapshot %s bytes=%llu pages=%llu pause_us=%llu state_us=%.1f scan_ms=%.1f mem_write_ms=%.1f "
			 "total_ms=%.1f",
			 file, (unsigned long long)st.bytes, (unsigned long long)st.pages,
			 (unsigned long long)((t1 - t0) / 1000), (double)st.state_ns / 1e3, (double)st.scan_ns / 1e6,
			 (double)st.write_ns / 1e6, (double)(t2 - t0) / 1e6);
}

void control_execute(struct control *c, char *line, char *reply, size_t len)
{
	char *argv[MAX_ARGS];
	int argc = split(line, argv);
	if (argc == 0) {
		snprintf(reply, len, "error: empty command");
		return;
	}
	if (!c->vm) { /* a backup before takeover: only its own status */
		char ext[512] = "";
		if (c->status_ext)
			c->status_ext(c->ext_ctx, ext, sizeof(ext));
		if (!strcmp(argv[0], "status"))
			snprintf(reply, len, "ok role=%s %s", c->role ? c->role : "backup", ext);
		else
			snprintf(reply, len, "error: '%s': no VM runs here yet (this is a backup mirroring its primary)", argv[0]);
		return;
	}
	if (!strcmp(argv[0], "status")) {
		char ext[512] = "";
		if (c->status_ext)
			c->status_ext(c->ext_ctx, ext, sizeof(ext));
		snprintf(reply, len, "ok role=%s state=%s vcpus=%u mem_mb=%llu uptime_s=%.1f%s%s", c->role ? c->role : "standalone",
			 c->vm->paused ? "paused" : "running", c->vm->ncpus, (unsigned long long)(c->vm->mem.size >> 20),
			 (double)(now_ns() - c->started_ns) / 1e9, ext[0] ? " " : "", ext);
	} else if (!strcmp(argv[0], "pause")) {
		if (c->user_paused) {
			snprintf(reply, len, "ok paused");
			return;
		}
		uint64_t t0 = now_ns();
		int r = vm_pause(c->vm);
		if (!r)
			c->user_paused = true;
		if (r)
			pause_error(r, reply, len);
		else
			snprintf(reply, len, "ok paused pause_us=%llu", (unsigned long long)((now_ns() - t0) / 1000));
	} else if (!strcmp(argv[0], "resume")) {
		if (c->user_paused)
			vm_resume(c->vm);
		c->user_paused = false;
		snprintf(reply, len, "ok running");
	} else if (!strcmp(argv[0], "snapshot")) {
		if (argc != 2)
			snprintf(reply, len, "error: usage: snapshot FILE");
		else
			do_snapshot(c, argv[1], reply, len);
	} else if (!strcmp(argv[0], "stop")) {
		vm_request_exit(c->vm, VM_EXIT_SIGNAL);
		snprintf(reply, len, "ok stopping");
	} else if (c->ext && c->ext(c->ext_ctx, argc, argv, reply, len) != -ENOSYS) {
		/* handled by the extension */
	} else {
		snprintf(reply, len, "error: unknown command '%s' (status, pause, resume, snapshot FILE, stop)", argv[0]);
	}
}

/* Clients are served together from one poll loop, so a client that keeps its connection open (a
 * monitor, a test's pause loop) never blocks another one, nor control_stop (a backup calls that right
 * before it takes over). */
#define CTL_MAX_CLIENTS 8

struct ctl_client {
	int fd;
	size_t used;
	char buf[CTL_LINE_MAX];
};

/* Read what the client sent and answer every complete line. false: drop the client. */
static bool serve_client(struct control *c, struct ctl_client *cl)
{
	ssize_t n = read(cl->fd, cl->buf + cl->used, sizeof(cl->buf) - 1 - cl->used);
	if (n < 0 && (errno == EINTR || errno == EAGAIN))
		return true;
	if (n <= 0)
		return false;
	cl->used += (size_t)n;
	cl->buf[cl->used] = '\0';
	char *nl;
	while ((nl = strchr(cl->buf, '\n'))) {
		*nl = '\0';
		char reply[1024];
		control_execute(c, cl->buf, reply, sizeof(reply));
		size_t rl = strlen(reply);
		reply[rl++] = '\n';
		/* a reply fits the socket buffer of a client that reads its answers; one that does not is dropped */
		if (send(cl->fd, reply, rl, MSG_DONTWAIT | MSG_NOSIGNAL) != (ssize_t)rl)
			return false;
		size_t rest = cl->used - (size_t)(nl + 1 - cl->buf);
		memmove(cl->buf, nl + 1, rest);
		cl->used = rest;
		cl->buf[cl->used] = '\0';
	}
	return cl->used < sizeof(cl->buf) - 1; /* a line too long: drop the client */
}

bool control_peer_allowed(const struct control *c, uid_t uid, gid_t gid, const gid_t *groups, size_t ngroups)
{
	if (uid == 0 || uid == geteuid())
		return true;
	if (!c->has_group)
		return false;
	if (gid == c->group)
		return true;
	for (size_t i = 0; i < ngroups; i++)
		if (groups[i] == c->group)
			return true;
	return false;
}

/* The peer's supplementary groups (SO_PEERGROUPS, Linux 4.13+); none where the kernel cannot say. */
static size_t peer_groups(int fd, gid_t *groups, size_t max)
{
#ifdef SO_PEERGROUPS
	socklen_t len = (socklen_t)(max * sizeof(gid_t));
	if (getsockopt(fd, SOL_SOCKET, SO_PEERGROUPS, groups, &len) == 0)
		return len / sizeof(gid_t);
#else
	(void)fd, (void)groups, (void)max;
#endif
	return 0;
}

/* The socket file's mode is the first gate; this one also holds where the file was made looser or
 * the socket was reached another way. A refused client gets one line saying why. */
static bool admit_peer(struct control *c, int fd)
{
	struct ucred cred;
	socklen_t len = sizeof(cred);
	if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) < 0)
		return false;
	gid_t groups[256];
	size_t ng = c->has_group ? peer_groups(fd, groups, ARRAY_SIZE(groups)) : 0;
	if (control_peer_allowed(c, cred.uid, cred.gid, groups, ng))
		return true;
	char msg[128];
	int n = snprintf(msg, sizeof(msg), "error: permission denied: uid %u may not use this control socket\n",
			 (unsigned)cred.uid);
	if (send(fd, msg, (size_t)n, MSG_DONTWAIT | MSG_NOSIGNAL) < 0) {
		/* the refusal stands whether or not the client reads why */
	}
	return false;
}

static void *control_thread(void *arg)
{
	struct control *c = arg;
	struct ctl_client cl[CTL_MAX_CLIENTS] = { 0 };
	unsigned ncl = 0;
	for (;;) {
		/* wake pipe, the clients, then the listening socket, unless at the client limit (new clients
		 * then wait in the backlog) */
		struct pollfd p[2 + CTL_MAX_CLIENTS];
		p[0] = (struct pollfd){ .fd = c->wake[0], .events = POLLIN };
		for (unsigned i = 0; i < ncl; i++)
			p[1 + i] = (struct pollfd){ .fd = cl[i].fd, .events = POLLIN };
		bool accepting = ncl < CTL_MAX_CLIENTS;
		p[1 + ncl] = (struct pollfd){ .fd = c->listen_fd, .events = POLLIN };
		if (poll(p, 1 + ncl + accepting, -1) < 0) {
			if (errno == EINTR)
				continue;
			break;
		}
		if (p[0].revents)
			break;
		bool incoming = accepting && (p[1 + ncl].revents & POLLIN);
		for (unsigned i = ncl; i-- > 0;) {
			if (!p[1 + i].revents || serve_client(c, &cl[i]))
				continue;
			close(cl[i].fd);
			cl[i] = cl[--ncl];
		}
		if (incoming && ncl < CTL_MAX_CLIENTS) {
			int fd = accept4(c->listen_fd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);
			if (fd >= 0 && !admit_peer(c, fd)) {
				close(fd);
			} else if (fd >= 0) {
				cl[ncl].fd = fd;
				cl[ncl].used = 0;
				ncl++;
			}
		}
	}
	for (unsigned i = 0; i < ncl; i++)
		close(cl[i].fd);
	return NULL;
}

int control_group_lookup(const char *name, gid_t *gid)
{
	char *end;
	errno = 0;
	unsigned long v = strtoul(name, &end, 10);
	if (*name && !*end && !errno && name[0] != '-' && v < (gid_t)-1) {
		*gid = (gid_t)v;
		return 0;
	}
	struct group gr, *res = NULL;
	char buf[4096];
	int r = getgrnam_r(name, &gr, buf, sizeof(buf), &res);
	if (r)
		return -r;
	if (!res)
		return -ENOENT;
	*gid = gr.gr_gid;
	return 0;
}

/* bind() found something at the path. A socket whose server is gone is stale and replaced; a live
 * one, or anything that is not a socket (a file the path was mistyped onto), is left alone. */
static int replace_stale(int fd, const struct sockaddr_un *a, const char *path, char *err, size_t errlen)
{
	struct stat st;
	if (lstat(path, &st) == 0 && !S_ISSOCK(st.st_mode)) {
		snprintf(err, errlen, "--control %s: exists and is not a socket (not replacing it)", path);
		return -EEXIST;
	}
	int probe = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	bool live = probe >= 0 && connect(probe, (const struct sockaddr *)a, sizeof(*a)) == 0;
	if (probe >= 0)
		close(probe);
	if (live) {
		snprintf(err, errlen, "--control %s: another ftvmm is already listening there", path);
		return -EADDRINUSE;
	}
	unlink(path);
	if (bind(fd, (const struct sockaddr *)a, sizeof(*a)) < 0) {
		int e = errno;
		snprintf(err, errlen, "--control %s: cannot bind: %s", path, strerror(e));
		return -e;
	}
	return 0;
}

/* Done before listen(), when nobody can connect yet, so the socket is never reachable with the
 * umask's mode. Owner only (the socket pauses the guest, writes files as us and streams its memory
 * and disks to any host), or owner and --control-group. */
static int restrict_socket(const struct control *c, const char *path, char *err, size_t errlen)
{
	if (c->has_group && lchown(path, (uid_t)-1, c->group) < 0) {
		int e = errno;
		snprintf(err, errlen, "--control-group: cannot give %s to group %u: %s", path, (unsigned)c->group,
			 strerror(e));
		return -e;
	}
	if (chmod(path, c->has_group ? 0660 : 0600) < 0) {
		int e = errno;
		snprintf(err, errlen, "--control %s: cannot set its permissions: %s", path, strerror(e));
		return -e;
	}
	return 0;
}

/* The listening socket at path, or -errno with err. */
static int bind_socket(const struct control *c, const char *path, char *err, size_t errlen)
{
	struct sockaddr_un a = { .sun_family = AF_UNIX };
	if (strlen(path) >= sizeof(a.sun_path)) {
		snprintf(err, errlen, "--control %s: path too long for a Unix socket", path);
		return -ENAMETOOLONG;
	}
	memcpy(a.sun_path, path, strlen(path) + 1);
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0) {
		int e = errno;
		snprintf(err, errlen, "--control %s: %s", path, strerror(e));
		return -e;
	}
	int r = 0;
	if (bind(fd, (struct sockaddr *)&a, sizeof(a)) < 0) {
		r = -errno;
		if (r == -EADDRINUSE)
			r = replace_stale(fd, &a, path, err, errlen);
		else
			snprintf(err, errlen, "--control %s: cannot bind: %s", path, strerror(-r));
		if (r) {
			close(fd);
			return r;
		}
	}
	r = restrict_socket(c, path, err, errlen);
	if (!r && listen(fd, 16) < 0) {
		r = -errno;
		snprintf(err, errlen, "--control %s: %s", path, strerror(-r));
	}
	if (r) {
		unlink(path); /* ours: bound just now */
		close(fd);
		return r;
	}
	return fd;
}

int control_start(struct control *c, struct vm *vm, const struct run_config *cfg, const char *path, char *err,
		  size_t errlen)
{
	memset(c, 0, sizeof(*c));
	c->vm = vm;
	c->cfg = cfg;
	c->path = path;
	c->started_ns = now_ns();
	c->listen_fd = -1;
	if (cfg && cfg->control_group) {
		int r = control_group_lookup(cfg->control_group, &c->group);
		if (r) {
			snprintf(err, errlen, "--control-group %s: %s", cfg->control_group,
				 r == -ENOENT ? "no such group" : strerror(-r));
			return r;
		}
		c->has_group = true;
	}
	int fd = bind_socket(c, path, err, errlen);
	if (fd < 0)
		return fd;
	if (pipe2(c->wake, O_CLOEXEC) < 0) {
		int e = errno;
		snprintf(err, errlen, "--control %s: %s", path, strerror(e));
		unlink(path);
		close(fd);
		return -e;
	}
	c->listen_fd = fd;
	int r = pthread_create(&c->thread, NULL, control_thread, c);
	if (r) {
		snprintf(err, errlen, "--control %s: cannot start its thread: %s", path, strerror(r));
		close(c->wake[0]);
		close(c->wake[1]);
		unlink(path);
		close(fd);
		return -r;
	}
	c->running = true;
	return 0;
}

void control_stop(struct control *c)
{
	if (!c->running)
		return;
	if (write(c->wake[1], "x", 1) < 0) {
	}
	pthread_join(c->thread, NULL);
	close(c->wake[0]);
	close(c->wake[1]);
	close(c->listen_fd);
	unlink(c->path);
	c->running = false;
}

/* args joined by spaces plus a newline: one line the server takes whole (it drops a client whose
 * line does not fit its buffer). Returns the length, or -1 when it would not fit. */
static int build_line(char *line, size_t size, int argc, char **argv)
{
	size_t n = 0;
	for (int i = 0; i < argc; i++) {
		size_t l = strlen(argv[i]);
		if (l + (i > 0) > size - 2 - n) /* room for the newline and the NUL the server keeps */
			return -1;
		if (i > 0)
			line[n++] = ' ';
		memcpy(line + n, argv[i], l);
		n += l;
	}
	line[n++] = '\n';
	return (int)n;
}

int cmd_ctl(int argc, char **argv)
{
	if (argc < 3 || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")) {
		if (argc >= 2 && (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h"))) {
			printf("usage: ftvmm ctl SOCKET COMMAND [ARGS]\n\ncommands: status, pause, resume, snapshot FILE, stop,\n"
			       "          protect HOST:PORT (fault tolerance, with the --tls-* credentials the VM\n"
			       "          was started with; without any, loopback only unless --ft-insecure)\n");
			return 0;
		}
		warnx("usage: ftvmm ctl SOCKET COMMAND [ARGS] (see ftvmm ctl --help)");
		return 2;
	}
	struct sockaddr_un a = { .sun_family = AF_UNIX };
	if (strlen(argv[1]) >= sizeof(a.sun_path)) {
		warnx("ctl: socket path too long: %s", argv[1]);
		return 2;
	}
	char line[CTL_LINE_MAX];
	int n = build_line(line, sizeof(line), argc - 2, argv + 2);
	if (n < 0) {
		warnx("ctl: command too long (at most %d bytes)", CTL_LINE_MAX - 2);
		return 2;
	}
	memcpy(a.sun_path, argv[1], strlen(argv[1]) + 1);
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0 || connect(fd, (struct sockaddr *)&a, sizeof(a)) < 0) {
		warnx("ctl: cannot connect to %s: %s (is ftvmm running with --control?)", argv[1], strerror(errno));
		return 1;
	}
	if (write(fd, line, (size_t)n) < 0) {
		warnx("ctl: write: %s", strerror(errno));
		close(fd);
		return 1;
	}
	char reply[1024];
	size_t got = 0;
	while (got < sizeof(reply) - 1) {
		ssize_t r = read(fd, reply + got, sizeof(reply) - 1 - got);
		if (r <= 0)
			break;
		got += (size_t)r;
		if (memchr(reply, '\n', got))
			break;
	}
	close(fd);
	reply[got] = '\0';
	if (!got) {
		warnx("ctl: no reply from %s", argv[1]);
		return 1;
	}
	fputs(reply, stdout);
	return strncmp(reply, "ok", 2) == 0 ? 0 : 1;
}

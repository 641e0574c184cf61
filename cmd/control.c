/* control.c - line protocol on a Unix socket: pause, resume, snapshot FILE, status, events; served off the vCPU and I/O threads. */
#include "control.h"
#include "../ft/events.h"
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

/* `status --json`: one object, for programs. The VM's members (a backup before takeover has none), then
 * the FT engine's (cmd/status.c). Strings are escaped and bounded, so it fits CTL_REPLY_MAX. */
static void status_json(struct control *c, char *reply, size_t len)
{
	struct ft_json j;
	ft_json_init(&j, reply, len);
	ft_json_open(&j, NULL);
	ft_json_str(&j, "role", c->role ? c->role : c->vm ? "standalone" : "backup");
	if (c->vm) {
		ft_json_str(&j, "state", c->vm->paused ? "paused" : "running");
		ft_json_u64(&j, "vcpus", c->vm->ncpus);
		ft_json_u64(&j, "mem_mb", c->vm->mem.size >> 20);
		ft_json_key(&j, "uptime_s");
		ft_json_raw(&j, "%.1f", (double)(now_ns() - c->started_ns) / 1e9);
	}
	if (c->status_json)
		c->status_json(c->ext_ctx, &j);
	ft_json_close(&j);
	if (j.over)
		snprintf(reply, len, "{\"error\":\"the status does not fit %zu bytes\"}", len);
}

void control_execute(struct control *c, char *line, char *reply, size_t len)
{
	char *argv[MAX_ARGS];
	int argc = split(line, argv);
	if (argc == 0) {
		snprintf(reply, len, "error: empty command");
		return;
	}
	if (!strcmp(argv[0], "status") && argc > 1 && !strcmp(argv[1], "--json")) {
		status_json(c, reply, len);
		return;
	}
	if (!strcmp(argv[0], "events")) { /* the server's loop takes it before it gets here */
		snprintf(reply, len, "error: 'events' streams on a connection of its own");
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
		snprintf(reply, len, "error: unknown command '%s' (status [--json], events, pause, resume, snapshot FILE, stop)",
			 argv[0]);
	}
}

/* Clients are served together from one poll loop, so a client that keeps its connection open (a
 * monitor, a test's pause loop, an `events` follower) never blocks another one, nor control_stop (a
 * backup calls that right before it takes over). */
#define CTL_MAX_CLIENTS 8

struct ctl_client {
	int fd;
	bool rd_closed; /* a follower shut its sending side (`echo events | nc -U`): only a close ends it */
	size_t used;
	char buf[CTL_LINE_MAX];
	/* `events`: from then on the client only gets event lines, from its own bounded queue, so a follower
	 * that does not read loses events (and is told how many) but never stalls the bus or this loop */
	struct ft_event_sub *sub;
	size_t out_off, out_len; /* the line under way: out_len - out_off bytes a full socket did not take */
	char out[CTL_REPLY_MAX];
};

static bool is_events(const char *line)
{
	char copy[CTL_LINE_MAX], *argv[MAX_ARGS];
	snprintf(copy, sizeof(copy), "%s", line);
	return split(copy, argv) > 0 && !strcmp(argv[0], "events");
}

/* Send a follower what waits without blocking: the line under way, then queued events, a queue's worth
 * at most per call (a busy bus must not hold the loop). false: drop the client. */
static bool pump_events(struct ctl_client *cl)
{
	for (unsigned i = 0; i <= FT_EVENT_QUEUE; i++) {
		if (cl->out_off == cl->out_len) {
			cl->out_off = 0;
			cl->out_len = ft_events_next(cl->sub, cl->out, sizeof(cl->out));
			if (!cl->out_len)
				return true;
		}
		ssize_t n = send(cl->fd, cl->out + cl->out_off, cl->out_len - cl->out_off, MSG_DONTWAIT | MSG_NOSIGNAL);
		if (n < 0)
			return errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR;
		cl->out_off += (size_t)n;
	}
	return true;
}

/* `events`: subscribe, then a first line with the status as it is now, read after subscribing so that
 * nothing falls between the two. What the client sends from now on is ignored. false: drop it. */
static bool start_events(struct control *c, struct ctl_client *cl)
{
	cl->used = 0;
	cl->sub = ft_events_subscribe();
	if (!cl->sub) {
		char msg[128];
		int n = snprintf(msg, sizeof(msg), "error: %d clients follow events already, the most at once\n",
				 FT_EVENT_SUBS);
		return send(cl->fd, msg, (size_t)n, MSG_DONTWAIT | MSG_NOSIGNAL) == n;
	}
	/* sized so that neither can be cut: the status fits its buffer or says it does not */
	char st[CTL_REPLY_MAX - 256], fields[CTL_REPLY_MAX - 128];
	status_json(c, st, sizeof(st));
	snprintf(fields, sizeof(fields), "\"status\":%s", st);
	cl->out_off = 0;
	cl->out_len = ft_event_line(cl->out, sizeof(cl->out), "subscribed", fields);
	return pump_events(cl);
}

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
		if (is_events(cl->buf))
			return start_events(c, cl);
		char reply[CTL_REPLY_MAX];
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

/* A follower's socket or queue is ready: its input read and ignored, then what waits sent. false: drop
 * it (it closed, or its socket failed). */
static bool follow(struct ctl_client *cl, short revents)
{
	if (revents & (POLLHUP | POLLERR))
		return false;
	if (revents & POLLIN) {
		char sink[256];
		ssize_t n = read(cl->fd, sink, sizeof(sink));
		if (n == 0)
			cl->rd_closed = true; /* it may still read: stop polling for input, not for a close */
		else if (n < 0 && errno != EAGAIN && errno != EINTR)
			return false;
	}
	return pump_events(cl);
}

/* A client's two poll entries: its socket, and a follower's queue while no line waits for room (then
 * the socket's POLLOUT is what matters; the queue would wake the loop for nothing). */
static void poll_client(const struct ctl_client *cl, struct pollfd *p)
{
	bool sending = cl->sub && cl->out_off < cl->out_len;
	short ev = (short)((cl->rd_closed ? 0 : POLLIN) | (sending ? POLLOUT : 0));
	p[0] = (struct pollfd){ .fd = cl->fd, .events = ev };
	p[1] = (struct pollfd){ .fd = cl->sub && !sending ? ft_events_fd(cl->sub) : -1, .events = POLLIN };
}

static void new_client(struct ctl_client *cl, int fd)
{
	cl->fd = fd;
	cl->used = 0;
	cl->sub = NULL;
	cl->rd_closed = false;
	cl->out_off = cl->out_len = 0;
}

static void drop_client(struct ctl_client *cl)
{
	close(cl->fd);
	ft_events_unsubscribe(cl->sub);
	cl->sub = NULL;
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
	struct ctl_client cl[CTL_MAX_CLIENTS];
	unsigned ncl = 0;
	for (;;) {
		/* wake pipe, two per client, then the listening socket, unless at the client limit (new clients
		 * then wait in the backlog) */
		struct pollfd p[2 + 2 * CTL_MAX_CLIENTS];
		p[0] = (struct pollfd){ .fd = c->wake[0], .events = POLLIN };
		for (unsigned i = 0; i < ncl; i++)
			poll_client(&cl[i], &p[1 + 2 * i]);
		bool accepting = ncl < CTL_MAX_CLIENTS;
		p[1 + 2 * ncl] = (struct pollfd){ .fd = c->listen_fd, .events = POLLIN };
		if (poll(p, 1 + 2 * ncl + accepting, -1) < 0) {
			if (errno == EINTR)
				continue;
			break;
		}
		if (p[0].revents)
			break;
		bool incoming = accepting && (p[1 + 2 * ncl].revents & POLLIN);
		for (unsigned i = ncl; i-- > 0;) {
			const struct pollfd *q = &p[1 + 2 * i];
			if (!q[0].revents && !q[1].revents)
				continue;
			if (cl[i].sub ? follow(&cl[i], q[0].revents) : serve_client(c, &cl[i]))
				continue;
			drop_client(&cl[i]);
			cl[i] = cl[--ncl];
		}
		if (incoming && ncl < CTL_MAX_CLIENTS) {
			int fd = accept4(c->listen_fd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);
			if (fd >= 0 && !admit_peer(c, fd))
				close(fd);
			else if (fd >= 0)
				new_client(&cl[ncl++], fd);
		}
	}
	for (unsigned i = 0; i < ncl; i++) {
		if (cl[i].sub) /* the last events (a guest that ended, a takeover) go out if the socket takes them */
			pump_events(&cl[i]);
		drop_client(&cl[i]);
	}
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

/* `events`: print what the server sends as it comes, until it closes (the VM ended, or a backup took
 * over and its socket restarts) or a signal ends us. 0 when it streamed, 1 when it refused. */
static int ctl_follow(int fd, const char *path)
{
	char buf[CTL_REPLY_MAX];
	int first = -1;
	for (;;) {
		ssize_t n = read(fd, buf, sizeof(buf));
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
		if (first < 0)
			first = (unsigned char)buf[0];
		/* each line as it arrives, also into a pipe: a script acts on it now, not at a buffer's end */
		if (fwrite(buf, 1, (size_t)n, stdout) != (size_t)n || fflush(stdout))
			break;
	}
	close(fd);
	if (first < 0)
		warnx("ctl: no reply from %s", path);
	return first == '{' ? 0 : 1;
}

static void ctl_usage(void)
{
	printf("usage: ftvmm ctl SOCKET COMMAND [ARGS]\n\n"
	       "commands: status [--json], pause, resume, snapshot FILE, stop,\n"
	       "          protect HOST:PORT (fault tolerance, with the --tls-* credentials the VM\n"
	       "          was started with; without any, loopback only unless --ft-insecure),\n"
	       "          events (one JSON line per event until the VM's side closes: the first says\n"
	       "          \"subscribed\" with the status; then protected, unprotected, takeover_won,\n"
	       "          takeover_lost, arbiter_unreachable, arbiter_back, link_authenticated,\n"
	       "          link_refused, planned_failover, guest_ended)\n"
	       "status --json prints one JSON object: role, state, protected, peer, epoch, last_commit,\n"
	       "link, reason, held_packets, held_bytes, generation, arbiter (see README, Usage)\n");
}

int cmd_ctl(int argc, char **argv)
{
	if (argc < 3 || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")) {
		if (argc >= 2 && (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h"))) {
			ctl_usage();
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
	if (!strcmp(argv[2], "events"))
		return ctl_follow(fd, argv[1]);
	char reply[CTL_REPLY_MAX];
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
	bool json = reply[0] == '{' && strncmp(reply, "{\"error\"", 8) != 0;
	return strncmp(reply, "ok", 2) == 0 || json ? 0 : 1;
}

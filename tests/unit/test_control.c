/* test_control.c - the control socket: several clients at once, an idle client never blocks another or control_stop;
 * who may connect (mode 0600, --control-group, SO_PEERCRED), what is never replaced, the ctl client's line;
 * `status --json` (strict JSON, whatever the strings hold) and `events` followers (in order, a follower that
 * never reads blocks nobody and learns what it lost, one that leaves frees its place, `ctl events`). */
#include "../../cmd/cli.h"
#include "../../cmd/control.h"
#include "../../cmd/status.h"
#include "../../ft/backup.h"
#include "../../ft/events.h"
#include "../../ft/fence.h"
#include "../../ft/primary.h"
#include "../../vmm/util.h"
#include "../../vmm/vm.h"
#include "json_test.h"
#include "test.h"

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
#include <sys/wait.h>
#include <unistd.h>

#define NOBODY 65534

static char sock_path[108];

static int try_connect(void)
{
	int fd = socket(AF_UNIX, SOCK_STREAM, 0);
	CHECK(fd >= 0);
	struct sockaddr_un a = { .sun_family = AF_UNIX };
	snprintf(a.sun_path, sizeof(a.sun_path), "%s", sock_path);
	if (connect(fd, (struct sockaddr *)&a, sizeof(a)) < 0) {
		close(fd);
		return -1;
	}
	return fd;
}

static int client(void)
{
	int fd = try_connect();
	CHECK(fd >= 0);
	return fd;
}

/* Send one line, read one reply line (bounded wait: a blocked server fails the test, it does not hang it). */
static void ask(int fd, const char *line, char *reply, size_t len)
{
	CHECK_EQ(write(fd, line, strlen(line)), (ssize_t)strlen(line));
	size_t used = 0;
	while (used < len - 1) {
		struct pollfd p = { .fd = fd, .events = POLLIN };
		CHECK_EQ(poll(&p, 1, 5000), 1);
		ssize_t n = read(fd, reply + used, 1);
		CHECK_EQ(n, 1);
		if (reply[used] == '\n')
			break;
		used++;
	}
	reply[used] = '\0';
}

static void status_ext(void *ctx, char *buf, size_t len)
{
	snprintf(buf, len, "state=%s", (const char *)ctx);
}

static void start_backup_like(struct control *c, const struct run_config *cfg)
{
	char err[256] = "";
	/* vm == NULL: what a backup serves before it takes over */
	CHECK_EQ(control_start(c, NULL, cfg, sock_path, err, sizeof(err)), 0);
	c->role = "backup";
	c->status_ext = status_ext;
	c->ext_ctx = "waiting-for-primary";
}

static void test_clients(void)
{
	struct control c;
	char err[256] = "";
	start_backup_like(&c, NULL);

	/* a second server on a live socket is refused */
	struct control c2;
	CHECK_EQ(control_start(&c2, NULL, NULL, sock_path, err, sizeof(err)), -EADDRINUSE);
	CHECK(strstr(err, "already listening"));

	char r[256];
	int idle = client(); /* connects and says nothing */
	int half = client(); /* sends half a line and stops */
	CHECK_EQ(write(half, "sta", 3), 3);
	int a = client();
	ask(a, "status\n", r, sizeof(r));
	CHECK(!strcmp(r, "ok role=backup state=waiting-for-primary"));
	/* two commands in one write: two replies, in order */
	CHECK_EQ(write(a, "status\npause\n", 13), 13);
	ask(a, "", r, sizeof(r));
	CHECK(!strncmp(r, "ok role=backup", 14));
	ask(a, "", r, sizeof(r));
	CHECK(!strncmp(r, "error: 'pause': no VM runs here yet", 35));
	/* the half line completes later */
	ask(half, "tus\n", r, sizeof(r));
	CHECK(!strncmp(r, "ok role=backup", 14));

	/* more clients than the server serves at once (8): the extra ones wait in the backlog, then get served */
	int many[10];
	for (int i = 0; i < 10; i++)
		many[i] = client();
	/* 3 + many[0..4] are being served, many[5..9] wait; closing those makes room */
	close(idle);
	close(half);
	close(a);
	for (int i = 0; i < 5; i++)
		close(many[i]);
	for (int i = 5; i < 10; i++) {
		ask(many[i], "status\n", r, sizeof(r));
		CHECK(!strncmp(r, "ok role=backup", 14));
		ask(many[i], "nonsense\n", r, sizeof(r));
		CHECK(!strncmp(r, "error: 'nonsense'", 17));
	}

	/* a line longer than the buffer: that client is dropped, others are not */
	int big = client();
	char line[2048];
	memset(line, 'x', sizeof(line));
	CHECK_EQ(write(big, line, sizeof(line)), (ssize_t)sizeof(line));
	struct pollfd p = { .fd = big, .events = POLLIN };
	CHECK_EQ(poll(&p, 1, 5000), 1);
	ssize_t n = read(big, r, sizeof(r)); /* closed by the server (a reset: our excess bytes were unread) */
	CHECK(n == 0 || (n < 0 && errno == ECONNRESET));
	close(big);
	ask(many[5], "status\n", r, sizeof(r));
	CHECK(!strncmp(r, "ok role=backup", 14));

	/* stopping with clients still connected (one of them idle) returns and removes the socket */
	control_stop(&c);
	CHECK(access(sock_path, F_OK) != 0);
	for (int i = 5; i < 10; i++)
		close(many[i]);
}

/* In a child with the given identity: connect and ask `status`. Exit 0: answered ok; 1: refused by the
 * server (an error line or a closed connection); 2: connect failed (file permissions). */
static int status_as(uid_t uid, gid_t gid)
{
	pid_t pid = fork();
	CHECK(pid >= 0);
	if (pid == 0) {
		if (setgroups(0, NULL) || setgid(gid) || setuid(uid))
			_exit(3);
		int fd = try_connect();
		if (fd < 0)
			_exit(2);
		char r[256] = "";
		if (send(fd, "status\n", 7, MSG_NOSIGNAL) != 7) /* the server may have closed already */
			_exit(1);
		ssize_t n = read(fd, r, sizeof(r) - 1);
		_exit(n > 2 && !strncmp(r, "ok", 2) ? 0 : 1);
	}
	int st = 0;
	CHECK_EQ(waitpid(pid, &st, 0), pid);
	CHECK(WIFEXITED(st));
	return WEXITSTATUS(st);
}

static void test_permissions(void)
{
	struct stat st;
	struct control c;
	start_backup_like(&c, NULL);
	/* owner only, whatever the umask says */
	CHECK_EQ(lstat(sock_path, &st), 0);
	CHECK(S_ISSOCK(st.st_mode));
	CHECK_EQ(st.st_mode & 07777, 0600);
	if (geteuid() == 0) {
		CHECK_EQ(status_as(0, 0), 0);
		CHECK_EQ(status_as(NOBODY, NOBODY), 2); /* the file mode keeps others out */
		/* the peer check holds even where the file mode was loosened */
		CHECK_EQ(chmod(sock_path, 0666), 0);
		CHECK_EQ(status_as(NOBODY, NOBODY), 1);
	}
	control_stop(&c);

	/* --control-group: 0660 with that group, and its members are let in */
	struct run_config cfg;
	memset(&cfg, 0, sizeof(cfg));
	cfg.control_group = "1";
	start_backup_like(&c, &cfg);
	CHECK_EQ(lstat(sock_path, &st), 0);
	CHECK_EQ(st.st_mode & 07777, 0660);
	CHECK_EQ(st.st_gid, 1);
	if (geteuid() == 0) {
		CHECK_EQ(status_as(NOBODY, 1), 0);
		CHECK_EQ(chmod(sock_path, 0666), 0);
		CHECK_EQ(status_as(NOBODY, NOBODY), 1);
	}
	control_stop(&c);

	char err[256] = "";
	cfg.control_group = "no-such-group-ftvmm";
	CHECK(control_start(&c, NULL, &cfg, sock_path, err, sizeof(err)) < 0);
	CHECK(strstr(err, "no-such-group-ftvmm") != NULL);
	CHECK(access(sock_path, F_OK) != 0);

	/* the decision itself: root, our own uid, the group (primary or supplementary), nobody else */
	memset(&c, 0, sizeof(c));
	gid_t sup[2] = { 7, 1 };
	CHECK(control_peer_allowed(&c, 0, 1234, NULL, 0));
	CHECK(control_peer_allowed(&c, geteuid(), 1234, NULL, 0));
	CHECK(geteuid() == 4321 || !control_peer_allowed(&c, 4321, 1, sup, 2));
	c.has_group = true;
	c.group = 1;
	CHECK(control_peer_allowed(&c, 4321, 1, NULL, 0));
	CHECK(control_peer_allowed(&c, 4321, 5, sup, 2));
	CHECK(geteuid() == 4321 || !control_peer_allowed(&c, 4321, 5, sup, 1));
}

/* Whatever is at the path and is not a socket stays as it is: the start fails with one line. */
static void test_never_replaces(void)
{
	struct control c;
	char err[256] = "";
	int fd = open(sock_path, O_WRONLY | O_CREAT | O_EXCL, 0644);
	CHECK(fd >= 0);
	CHECK_EQ(write(fd, "precious\n", 9), 9);
	close(fd);
	CHECK(control_start(&c, NULL, NULL, sock_path, err, sizeof(err)) < 0);
	CHECK(strstr(err, "not a socket") != NULL);
	CHECK(strchr(err, '\n') == NULL);
	struct stat st;
	CHECK_EQ(lstat(sock_path, &st), 0);
	CHECK(S_ISREG(st.st_mode));
	CHECK_EQ(st.st_size, 9);
	CHECK_EQ(unlink(sock_path), 0);

	/* a stale socket (its server is gone) is replaced */
	int s = socket(AF_UNIX, SOCK_STREAM, 0);
	struct sockaddr_un a = { .sun_family = AF_UNIX };
	snprintf(a.sun_path, sizeof(a.sun_path), "%s", sock_path);
	CHECK_EQ(bind(s, (struct sockaddr *)&a, sizeof(a)), 0);
	close(s);
	start_backup_like(&c, NULL);
	char r[256];
	int cl = client();
	ask(cl, "status\n", r, sizeof(r));
	CHECK(!strncmp(r, "ok role=backup", 14));
	close(cl);
	control_stop(&c);
}

/* `ftvmm ctl` refuses a command longer than the server's line instead of overrunning its own buffer. */
static void test_ctl_long_command(void)
{
	struct control c;
	start_backup_like(&c, NULL);
	char *big = malloc(2048);
	CHECK(big != NULL);
	memset(big, 'a', 2047);
	big[2047] = '\0';
	char *argv[] = { "ctl", sock_path, "snapshot", big, NULL };
	CHECK_EQ(cmd_ctl(4, argv), 2);
	big[600] = '\0';
	char *three[] = { "ctl", sock_path, "snapshot", big, big, big, NULL };
	CHECK_EQ(cmd_ctl(6, three), 2);
	big[600] = 'a';
	char *ok[] = { "ctl", sock_path, "status", NULL };
	CHECK_EQ(cmd_ctl(3, ok), 0);
	/* the longest line that fits still goes through (and gets its error reply: no VM here) */
	big[CTL_LINE_MAX - 1 - strlen("snapshot ") - 1] = '\0';
	char *edge[] = { "ctl", sock_path, "snapshot", big, NULL };
	CHECK_EQ(cmd_ctl(4, edge), 1);
	big[strlen(big)] = 'a';
	CHECK_EQ(cmd_ctl(4, edge), 2);
	free(big);
	control_stop(&c);
}

static struct backup_info test_bi;
static struct ft_primary_info test_pi;
static struct ft_fence_info test_fi;

static void json_backup(void *ctx, struct ft_json *j)
{
	(void)ctx;
	status_json_backup(j, &test_bi, &test_fi);
}

static void json_primary(void *ctx, struct ft_json *j)
{
	(void)ctx;
	status_json_primary(j, &test_pi, &test_fi);
}

/* Strings as hostile as they come: quotes, backslashes, newlines, a control byte, bytes that are not UTF-8. */
#define NASTY_REASON "epoch 5 rejected (\"bad\" C:\\sum)\nsecond line\t\x01 \xff end"
#define NASTY_PEER "host\"name\\:7000"

static struct json_object *ask_json(int fd, const char *line)
{
	char r[CTL_REPLY_MAX];
	ask(fd, line, r, sizeof(r));
	struct json_object *o = json_check(r);
	CHECK(o != NULL);
	return o;
}

static void test_status_json_backup(void)
{
	struct control c;
	start_backup_like(&c, NULL);
	c.status_json = json_backup;
	test_bi = (struct backup_info){ .state = "mirroring", .protected_ = true, .link_up = true, .last_commit = 41,
					.generation = 6 };
	snprintf(test_bi.peer, sizeof(test_bi.peer), "%s", NASTY_PEER);
	test_fi = (struct ft_fence_info){ .on = true, .gen = 0, .reach = "unreachable" };
	snprintf(test_fi.state, sizeof(test_fi.state), "unreachable (\"Connection refused\"): claiming generation 7");
	int fd = client();
	char r[CTL_REPLY_MAX];
	ask(fd, "status\n", r, sizeof(r)); /* the plain form as it was */
	CHECK(!strcmp(r, "ok role=backup state=waiting-for-primary"));
	struct json_object *o = ask_json(fd, "status --json\n");
	CHECK(!strcmp(json_get_str(o, "role"), "backup"));
	CHECK(!strcmp(json_get_str(o, "state"), "mirroring"));
	CHECK(!strcmp(json_get_str(o, "peer"), NASTY_PEER));
	CHECK(!strcmp(json_get_str(o, "link"), "up"));
	CHECK(json_has(o, "reason") && json_get_str(o, "reason") == NULL);
	CHECK_EQ(json_get_int(o, "last_commit"), 41);
	CHECK_EQ(json_get_int(o, "generation"), 6);
	struct json_object *arb;
	CHECK(json_object_object_get_ex(o, "arbiter", &arb));
	CHECK(!strcmp(json_get_str(arb, "state"), "unreachable"));
	CHECK(!strcmp(json_get_str(arb, "detail"), test_fi.state));
	json_object_put(o);
	/* mirroring ended, the reason as hostile as it gets; no arbiter */
	test_bi.link_up = test_bi.protected_ = false;
	test_bi.state = "ended";
	test_bi.generation = 0; /* no arbiter: the primary paired under none */
	snprintf(test_bi.reason, sizeof(test_bi.reason), "%s", NASTY_REASON);
	test_fi = (struct ft_fence_info){ .on = false };
	o = ask_json(fd, "status --json\n");
	const char *reason = json_get_str(o, "reason");
	CHECK(reason && !strncmp(reason, NASTY_REASON, strlen(NASTY_REASON) - 5)); /* all but the \xff, now U+FFFD */
	CHECK(strstr(reason, "\xef\xbf\xbd end"));
	CHECK(json_object_object_get_ex(o, "arbiter", &arb) && arb == NULL);
	CHECK_EQ(json_get_int(o, "generation"), 0);
	json_object_put(o);
	close(fd);
	char *argv[] = { "ctl", sock_path, "status", "--json", NULL };
	CHECK_EQ(cmd_ctl(4, argv), 0);
	control_stop(&c);
}

/* A VM's members with a primary's: no KVM needed, the server only reads these fields. */
static void test_status_json_primary(void)
{
	static struct vm vm;
	vm.ncpus = 2;
	vm.mem.size = 64ull << 20;
	struct control c;
	char err[256] = "";
	CHECK_EQ(control_start(&c, &vm, NULL, sock_path, err, sizeof(err)), 0);
	c.role = "primary";
	c.status_json = json_primary;
	test_pi = (struct ft_primary_info){ .started = true, .lost = true, .epoch = 123, .last_commit = 120,
					    .last_commit_ms_ago = -1, .held_packets = 3, .held_bytes = 4567, .generation = 3 };
	snprintf(test_pi.peer, sizeof(test_pi.peer), "10.77.0.2:7000");
	snprintf(test_pi.reason, sizeof(test_pi.reason), "%s", NASTY_REASON);
	test_fi = (struct ft_fence_info){ .on = true, .gen = 4, .reach = "reachable" };
	snprintf(test_fi.state, sizeof(test_fi.state), "held");
	int fd = client();
	struct json_object *o = ask_json(fd, "status --json\n");
	CHECK(!strcmp(json_get_str(o, "role"), "primary"));
	CHECK(!strcmp(json_get_str(o, "state"), "running"));
	CHECK_EQ(json_get_int(o, "vcpus"), 2);
	CHECK_EQ(json_get_int(o, "mem_mb"), 64);
	struct json_object *v;
	CHECK(json_object_object_get_ex(o, "protected", &v) && !json_object_get_boolean(v));
	CHECK(json_object_object_get_ex(o, "last_commit_ms_ago", &v) && v == NULL);
	CHECK(!strcmp(json_get_str(o, "link"), "down"));
	CHECK(!strncmp(json_get_str(o, "reason"), NASTY_REASON, strlen(NASTY_REASON) - 5));
	CHECK_EQ(json_get_int(o, "epoch"), 123);
	CHECK_EQ(json_get_int(o, "last_commit"), 120);
	CHECK_EQ(json_get_int(o, "held_packets"), 3);
	CHECK_EQ(json_get_int(o, "held_bytes"), 4567);
	CHECK_EQ(json_get_int(o, "generation"), 4); /* the one held now, won after losing the backup */
	json_object_put(o);
	/* protected, nothing lost */
	test_pi = (struct ft_primary_info){ .started = true, .protected_ = true, .last_commit_ms_ago = 12 };
	o = ask_json(fd, "status --json\n");
	CHECK(json_object_object_get_ex(o, "protected", &v) && json_object_get_boolean(v));
	CHECK_EQ(json_get_int(o, "last_commit_ms_ago"), 12);
	CHECK(!strcmp(json_get_str(o, "link"), "up"));
	CHECK(json_has(o, "reason") && json_get_str(o, "reason") == NULL);
	json_object_put(o);
	/* never protected */
	test_pi = (struct ft_primary_info){ .started = false };
	test_fi = (struct ft_fence_info){ .on = false };
	o = ask_json(fd, "status --json\n");
	CHECK(json_object_object_get_ex(o, "protected", &v) && !json_object_get_boolean(v));
	CHECK(json_has(o, "peer") && json_get_str(o, "peer") == NULL && !json_has(o, "link"));
	json_object_put(o);
	char r[CTL_REPLY_MAX];
	ask(fd, "status\n", r, sizeof(r));
	CHECK(!strncmp(r, "ok role=primary state=running vcpus=2 mem_mb=64 uptime_s=", 57));
	ask(fd, "events now\n", r, sizeof(r)); /* not a command with others on one line: it takes the connection */
	CHECK(!strncmp(r, "{\"ts\":", 6));
	close(fd);
	control_stop(&c);
}

/* Lines off a socket, each parsed: a follower's view. */
struct reader {
	int fd;
	size_t used;
	char buf[1 << 16];
};

/* The next line within ms (its newline dropped), or NULL at a timeout or the end of the stream. */
static char *read_line(struct reader *r, int ms)
{
	static char line[sizeof(r->buf)];
	for (;;) {
		char *nl = memchr(r->buf, '\n', r->used);
		if (nl) {
			size_t n = (size_t)(nl - r->buf);
			memcpy(line, r->buf, n);
			line[n] = 0;
			memmove(r->buf, nl + 1, r->used - n - 1);
			r->used -= n + 1;
			return line;
		}
		CHECK(r->used < sizeof(r->buf));
		struct pollfd p = { .fd = r->fd, .events = POLLIN };
		if (poll(&p, 1, ms) != 1)
			return NULL;
		ssize_t n = read(r->fd, r->buf + r->used, sizeof(r->buf) - r->used);
		if (n <= 0)
			return NULL;
		r->used += (size_t)n;
	}
}

/* The next line as JSON (a missing line fails), with its "event" in *type. json-c alone: python3 for
 * each of thousands of lines would take minutes (the status lines get both). */
static struct json_object *read_event(struct reader *r, const char **type)
{
	char *l = read_line(r, 5000);
	CHECK(l != NULL);
	struct json_object *o = json_strict(l);
	if (!o)
		fprintf(stderr, "not JSON: %s\n", l);
	CHECK(o != NULL);
	*type = json_get_str(o, "event");
	CHECK(*type != NULL);
	return o;
}

/* Connect and say `events`: the first line is "subscribed" with the status. */
static void follow(struct reader *r)
{
	r->fd = client();
	r->used = 0;
	CHECK_EQ(write(r->fd, "events\n", 7), 7);
	const char *type;
	struct json_object *o = read_event(r, &type), *st;
	CHECK(json_python(json_object_to_json_string(o)) != 0);
	CHECK(!strcmp(type, "subscribed"));
	CHECK(json_object_object_get_ex(o, "status", &st));
	CHECK(!strcmp(json_get_str(st, "role"), "backup") && !strcmp(json_get_str(st, "state"), "mirroring"));
	json_object_put(o);
}

static int try_follow(void)
{
	int fd = client();
	char r[256];
	ask(fd, "events\n", r, sizeof(r));
	if (r[0] == '{')
		return fd;
	CHECK(strstr(r, "error: 4 clients follow events already"));
	close(fd);
	return -1;
}

/* Followers: every event in order for those who read; one that never reads fills its socket and its
 * queue, blocks neither emit nor the server, and is told exactly how many it lost; places are freed. */
static void test_events_socket(void)
{
	struct control c;
	start_backup_like(&c, NULL);
	c.status_json = json_backup;
	test_bi = (struct backup_info){ .state = "mirroring", .protected_ = true, .link_up = true };
	test_fi = (struct ft_fence_info){ .on = false };
	static struct reader a, b, slow;
	follow(&a);
	follow(&b);
	follow(&slow);
	static char pad[1001];
	memset(pad, 'p', sizeof(pad) - 1);
	enum { N = 1500 };
	for (int i = 0; i < N; i++) {
		ft_event_emit("tick", "\"seq\":%d,\"pad\":\"%s\"", i, pad);
		struct reader *rs[2] = { &a, &b };
		for (int k = 0; k < 2; k++) {
			const char *type;
			struct json_object *o = read_event(rs[k], &type);
			CHECK(!strcmp(type, "tick"));
			CHECK_EQ(json_get_int(o, "seq"), i);
			CHECK(!json_has(o, "dropped"));
			json_object_put(o);
		}
	}
	int plain = client(); /* the server answers others meanwhile */
	char r[256];
	ask(plain, "status\n", r, sizeof(r));
	CHECK(!strcmp(r, "ok role=backup state=waiting-for-primary"));
	/* the slow one: what it got plus what it was told it lost is every event, in order */
	long long got = 0, lost = 0, last = -1;
	char *l;
	while ((l = read_line(&slow, 1000))) {
		struct json_object *o = json_strict(l);
		CHECK(o != NULL);
		lost += json_has(o, "dropped") ? json_get_int(o, "dropped") : 0;
		if (!strcmp(json_get_str(o, "event"), "tick")) {
			CHECK(json_get_int(o, "seq") > last);
			last = json_get_int(o, "seq");
			got++;
		}
		json_object_put(o);
	}
	CHECK(lost > 0 && got > 0);
	CHECK_EQ(got + lost, N);
	/* at most FT_EVENT_SUBS follow: a fifth is refused, and a place is free again once one leaves */
	int d = try_follow();
	CHECK(d >= 0);
	CHECK_EQ(try_follow(), -1);
	close(slow.fd);
	int e = -1;
	for (int i = 0; i < 200 && e < 0; i++) { /* the server sees the close at its next poll */
		e = try_follow();
		if (e < 0)
			usleep(10000);
	}
	CHECK(e >= 0);
	/* one that shut its sending side (`echo events | nc -U`) still gets events */
	CHECK_EQ(shutdown(d, SHUT_WR), 0);
	usleep(50000);
	ft_event_emit("after_shutdown", NULL);
	struct reader dr = { .fd = d };
	const char *type;
	struct json_object *o = read_event(&dr, &type);
	CHECK(!strcmp(type, "after_shutdown"));
	json_object_put(o);
	close(plain);
	close(a.fd);
	close(b.fd);
	close(d);
	close(e);
	control_stop(&c); /* every subscription freed (the leak checkers look) */
}

/* `ftvmm ctl SOCK events` prints each line as it comes; the last events before the server stops still
 * reach it; it exits 0 at the end of the stream. */
static void test_ctl_events(void)
{
	struct control c;
	start_backup_like(&c, NULL);
	int out[2];
	CHECK_EQ(pipe(out), 0);
	fflush(stdout); /* what earlier ctl calls printed must not reach the child's pipe */
	pid_t pid = fork();
	CHECK(pid >= 0);
	if (pid == 0) {
		close(out[0]);
		dup2(out[1], STDOUT_FILENO);
		char *argv[] = { "ctl", sock_path, "events", NULL };
		_exit(cmd_ctl(3, argv));
	}
	close(out[1]);
	static struct reader r;
	r.fd = out[0];
	const char *type;
	struct json_object *o = read_event(&r, &type);
	CHECK(!strcmp(type, "subscribed"));
	json_object_put(o);
	ft_event_emit("protected", "\"role\":\"backup\",\"peer\":%s,\"generation\":0,\"epoch\":0",
		      FT_JSON_STR("127.0.0.1:40000"));
	o = read_event(&r, &type);
	CHECK(!strcmp(type, "protected") && !strcmp(json_get_str(o, "peer"), "127.0.0.1:40000"));
	json_object_put(o);
	ft_event_emit("guest_ended", "\"role\":\"backup\"");
	control_stop(&c);
	o = read_event(&r, &type);
	CHECK(!strcmp(type, "guest_ended"));
	json_object_put(o);
	CHECK(read_line(&r, 5000) == NULL); /* the end of the stream */
	int st = 0;
	CHECK_EQ(waitpid(pid, &st, 0), pid);
	CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0);
	close(out[0]);
}

int main(void)
{
	snprintf(sock_path, sizeof(sock_path), "/tmp/ftvmm-test-control.%d.sock", (int)getpid());
	unlink(sock_path);
	test_clients();
	test_permissions();
	test_never_replaces();
	test_ctl_long_command();
	test_status_json_backup();
	test_status_json_primary();
	test_events_socket();
	test_ctl_events();
	unlink(sock_path);
	TEST_DONE("test_control");
}

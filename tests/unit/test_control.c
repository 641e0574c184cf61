/* test_control.c - the control socket: several clients at once, an idle client never blocks another or control_stop;
 * who may connect (mode 0600, --control-group, SO_PEERCRED), what is never replaced, and the ctl client's line. */
#include "../../cmd/cli.h"
#include "../../cmd/control.h"
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

int main(void)
{
	snprintf(sock_path, sizeof(sock_path), "/tmp/ftvmm-test-control.%d.sock", (int)getpid());
	unlink(sock_path);
	test_clients();
	test_permissions();
	test_never_replaces();
	test_ctl_long_command();
	unlink(sock_path);
	TEST_DONE("test_control");
}

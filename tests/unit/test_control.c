/* test_control.c - the control socket: several clients at once, an idle client never blocks another or control_stop. */
#include "../../vmm/control.h"
#include "test.h"

#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

static char sock_path[108];

static int client(void)
{
	int fd = socket(AF_UNIX, SOCK_STREAM, 0);
	CHECK(fd >= 0);
	struct sockaddr_un a = { .sun_family = AF_UNIX };
	snprintf(a.sun_path, sizeof(a.sun_path), "%s", sock_path);
	CHECK_EQ(connect(fd, (struct sockaddr *)&a, sizeof(a)), 0);
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

int main(void)
{
	snprintf(sock_path, sizeof(sock_path), "/tmp/ftvmm-test-control.%d.sock", (int)getpid());
	unlink(sock_path);
	struct control c;
	char err[256] = "";
	/* vm == NULL: what a backup serves before it takes over */
	CHECK_EQ(control_start(&c, NULL, NULL, sock_path, err, sizeof(err)), 0);
	c.role = "backup";
	c.status_ext = status_ext;
	c.ext_ctx = "waiting-for-primary";

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
	TEST_DONE("test_control");
}

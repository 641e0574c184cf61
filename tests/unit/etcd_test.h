/* etcd_test.h - the unit tests' real etcd: started on free ports in a fresh /tmp directory, frozen, thawed,
 * written behind the arbiter's back, and killed also when the test dies. Each test binary gets its own copy. */
#ifndef FTVMM_ETCD_TEST_H
#define FTVMM_ETCD_TEST_H

#include "../../ft/arbiter.h"
#include "../../ft/arbiter_int.h"
#include "../../vmm/util.h"
#include "test.h"

#include <arpa/inet.h>
#include <curl/curl.h>
#include <fcntl.h>
#include <ftw.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

/*
 * etcd_installed()   etcd in PATH (else the caller prints a SKIP line and tests what it can without one)
 * etcd_start()       etcd on free ports (etcd_port) in a fresh directory, answering; etcd_stop() at exit too
 * etcd_freeze()      SIGSTOP, and wait until it is really stopped (all its threads); etcd_thaw(): SIGCONT.
 *                    Frozen, it still accepts connections (the kernel does) and never answers.
 * etcd_put()         raw bytes as a key's value, as another client could write them
 * free_port()        a port nothing listens on (kept bound, refusing connects, with keep)
 */

#define ETCD_TEST_MS 5000 /* etcd_put's bound: generous, valgrind runs the tests too */

static pid_t etcd_pid;
static int etcd_port;
static char etcd_dir[64];

static inline int etcd_rm_one(const char *p, const struct stat *st, int type, struct FTW *ftw)
{
	(void)st, (void)type, (void)ftw;
	remove(p);
	return 0;
}

static inline void etcd_stop(void)
{
	if (etcd_pid > 0) {
		kill(etcd_pid, SIGKILL); /* also when SIGSTOPped */
		waitpid(etcd_pid, NULL, 0);
		etcd_pid = 0;
	}
	if (etcd_dir[0])
		nftw(etcd_dir, etcd_rm_one, 16, FTW_DEPTH | FTW_PHYS);
	etcd_dir[0] = 0;
}

static inline bool etcd_installed(void)
{
	const char *path = getenv("PATH");
	char buf[4096], p[4200];
	snprintf(buf, sizeof(buf), "%s", path ? path : "/usr/bin:/bin");
	for (char *save = NULL, *d = strtok_r(buf, ":", &save); d; d = strtok_r(NULL, ":", &save)) {
		snprintf(p, sizeof(p), "%s/etcd", d);
		if (access(p, X_OK) == 0)
			return true;
	}
	return false;
}

/* Why the tests against a real etcd are skipped, or NULL to run them. */
static inline const char *etcd_skip_reason(void)
{
	if (getenv("FTVMM_TEST_NO_ETCD"))
		return "FTVMM_TEST_NO_ETCD is set (make test-valgrind: they run whole under ASan in make test-unit)";
	if (!etcd_installed())
		return "no etcd in PATH (Debian: apt-get install etcd-server; tests/deps.sh installs it)";
	return NULL;
}

/* A port nothing listens on now. With keep, the socket stays bound (and not listening): a closed port
 * for as long as the test runs, where a connect is refused. */
static inline int free_port(int *keep)
{
	struct sockaddr_in sa = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	socklen_t len = sizeof(sa);
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	CHECK(fd >= 0);
	CHECK_EQ(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	CHECK_EQ(getsockname(fd, (struct sockaddr *)&sa, &len), 0);
	if (keep)
		*keep = fd;
	else
		close(fd);
	return ntohs(sa.sin_port);
}

static inline void etcd_exec(int port, int peer)
{
	char url[64], purl[64], cluster[80], data[128], log[128];
	snprintf(url, sizeof(url), "http://127.0.0.1:%d", port);
	snprintf(purl, sizeof(purl), "http://127.0.0.1:%d", peer);
	snprintf(cluster, sizeof(cluster), "t=%s", purl);
	snprintf(data, sizeof(data), "%s/data", etcd_dir);
	snprintf(log, sizeof(log), "%s/log", etcd_dir);
	int fd = open(log, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	if (fd < 0 || dup2(fd, 1) < 0 || dup2(fd, 2) < 0)
		_exit(126);
	prctl(PR_SET_PDEATHSIG, SIGKILL); /* a test that dies (a sanitizer's abort) takes etcd with it */
	execlp("etcd", "etcd", "--name", "t", "--data-dir", data, "--listen-client-urls", url, "--advertise-client-urls", url,
	       "--listen-peer-urls", purl, "--initial-advertise-peer-urls", purl, "--initial-cluster", cluster, (char *)NULL);
	_exit(127);
}

/* Start etcd on free ports in a fresh directory; wait until it answers a read (at most 30 s). */
static inline void etcd_start(void)
{
	snprintf(etcd_dir, sizeof(etcd_dir), "/tmp/ftvmm-arbiter-XXXXXX");
	CHECK(mkdtemp(etcd_dir));
	etcd_port = free_port(NULL);
	int peer = free_port(NULL);
	atexit(etcd_stop);
	fflush(NULL);
	etcd_pid = fork();
	CHECK(etcd_pid >= 0);
	if (etcd_pid == 0)
		etcd_exec(etcd_port, peer);
	char spec[64], err[256];
	struct arbiter *a;
	snprintf(spec, sizeof(spec), "etcd://127.0.0.1:%d", etcd_port);
	CHECK_EQ(arbiter_open(spec, "probe", &a, err, sizeof(err)), 0);
	uint64_t g, t0 = now_ns();
	char o[8];
	while (arbiter_read(a, &g, o, sizeof(o), 1000) < 0) {
		if (waitpid(etcd_pid, NULL, WNOHANG) == etcd_pid || now_ns() - t0 > 30000000000ull) {
			fprintf(stderr, "etcd did not start: see %s/log\n", etcd_dir);
			etcd_pid = 0;
			etcd_dir[0] = 0; /* keep its log */
			CHECK(0);
		}
		usleep(100000);
	}
	arbiter_close(a);
}

static inline size_t etcd_sink(char *p, size_t size, size_t n, void *ctx)
{
	(void)p, (void)ctx;
	return size * n;
}

/* Write raw bytes as the key's value through the gateway's put, as another client could. */
static inline void etcd_put(const char *key, const char *val, size_t len)
{
	char k64[200], v64[400], body[700], url[80];
	arbiter_b64_encode((const uint8_t *)key, strlen(key), k64);
	arbiter_b64_encode((const uint8_t *)val, len, v64);
	snprintf(body, sizeof(body), "{\"key\":\"%s\",\"value\":\"%s\"}", k64, v64);
	snprintf(url, sizeof(url), "http://127.0.0.1:%d/v3/kv/put", etcd_port);
	CURL *c = curl_easy_init();
	long status = 0;
	CHECK(c);
	CHECK(curl_easy_setopt(c, CURLOPT_URL, url) == CURLE_OK && curl_easy_setopt(c, CURLOPT_POSTFIELDS, body) == CURLE_OK &&
	      curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, etcd_sink) == CURLE_OK && curl_easy_setopt(c, CURLOPT_PROXY, "") == CURLE_OK &&
	      curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, (long)ETCD_TEST_MS) == CURLE_OK);
	CHECK_EQ(curl_easy_perform(c), CURLE_OK);
	CHECK_EQ(curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status), CURLE_OK);
	CHECK_EQ(status, 200);
	curl_easy_cleanup(c);
}

static inline void etcd_freeze(void)
{
	int st;
	CHECK(etcd_pid > 0);
	CHECK_EQ(kill(etcd_pid, SIGSTOP), 0);
	CHECK_EQ(waitpid(etcd_pid, &st, WUNTRACED), etcd_pid); /* stopped, all its threads, not just signalled */
	CHECK(WIFSTOPPED(st));
}

static inline void etcd_thaw(void)
{
	CHECK(etcd_pid > 0);
	CHECK_EQ(kill(etcd_pid, SIGCONT), 0);
}

#endif

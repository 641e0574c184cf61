/* arbiter.c - the FT arbiter on etcd: --arbiter's endpoints, and the generation key's read and compare-and-swap over libcurl. */
#include "arbiter.h"
#include "arbiter_int.h"
#include "../vmm/util.h"

#include <arpa/inet.h>
#include <curl/curl.h>
#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define SPEC_PREFIX "etcd://"
#define HOST_MAX 253
#define KEY_FMT "/ftvmm/%s/generation"
#define KEY_MAX (sizeof(KEY_FMT) - 3 + ARBITER_NAME_MAX)
#define B64_LEN(n) (((n) + 2) / 3 * 4)
#define REQ_MAX 1024
#define TRY_MIN_MS 100    /* a shorter try cannot even connect on a busy host: rather fewer, whole tries */
#define ROUND_PAUSE_MS 50 /* every endpoint refused at once: this between rounds, not a busy loop */

struct endpoint {
	char hostport[HOST_MAX + sizeof(":65535")];
};

struct arbiter {
	CURL *curl;
	struct curl_slist *headers;
	struct endpoint ep[ARBITER_ENDPOINTS_MAX];
	unsigned n, cur; /* endpoints; the one that answered last (tried first) */
	char key[KEY_MAX + 1];
	size_t keylen;
	char key64[B64_LEN(KEY_MAX) + 1];
	char *resp; /* the answer being received: ARBITER_RESP_MAX bytes */
	size_t resp_len;
	bool resp_over; /* it outgrew resp and the transfer was aborted */
	char curl_err[CURL_ERROR_SIZE];
	char err[256];
};

static void set_err(struct arbiter *a, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void set_err(struct arbiter *a, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(a->err, sizeof(a->err), fmt, ap);
	va_end(ap);
}

/* ---- --arbiter and --name ------------------------------------------------------------------------- */

/* An IPv4 address (all digits and dots: inet_pton must take it) or a host name (RFC 1123 labels). */
static bool host_ok(const char *h, size_t len)
{
	char buf[HOST_MAX + 1];
	struct in_addr in;
	if (len < 1 || len > HOST_MAX)
		return false;
	memcpy(buf, h, len);
	buf[len] = 0;
	if (strspn(buf, "0123456789.") == len)
		return inet_pton(AF_INET, buf, &in) == 1;
	for (const char *l = buf; *l;) {
		size_t n = strspn(l, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-");
		if (n < 1 || n > 63 || l[0] == '-' || l[n - 1] == '-' || (l[n] && l[n] != '.') || (l[n] == '.' && !l[n + 1]))
			return false;
		l += l[n] ? n + 1 : n;
	}
	return true;
}

/* One line about the endpoint s (len bytes, echoed up to 64 of them). */
static int bad_endpoint(const char *why, const char *s, size_t len, char *err, size_t errlen)
{
	snprintf(err, errlen, "--arbiter: %s: '%.*s%s'", why, (int)MIN(len, 64u), s, len > 64 ? "..." : "");
	return -EINVAL;
}

static int parse_endpoint(const char *s, size_t len, struct endpoint *ep, char *err, size_t errlen)
{
	const char *colon = memrchr(s, ':', len);
	size_t hlen = colon ? (size_t)(colon - s) : len, plen = colon ? len - hlen - 1 : 0;
	unsigned port = 0;
	if (!colon || plen < 1 || plen > 5 || strspn(colon + 1, "0123456789") < plen)
		return bad_endpoint("endpoint not HOST:PORT", s, len, err, errlen);
	for (size_t i = 0; i < plen; i++)
		port = port * 10 + (unsigned)(colon[1 + i] - '0');
	if (port < 1 || port > 65535)
		return bad_endpoint("port not 1..65535", s, len, err, errlen);
	if (!host_ok(s, hlen))
		return bad_endpoint("host neither an IPv4 address nor a host name", s, len, err, errlen);
	snprintf(ep->hostport, sizeof(ep->hostport), "%.*s:%u", (int)hlen, s, port);
	return 0;
}

static int parse_spec(struct arbiter *a, const char *spec, char *err, size_t errlen)
{
	const size_t pre = sizeof(SPEC_PREFIX) - 1;
	if (strncmp(spec, SPEC_PREFIX, pre) != 0) {
		snprintf(err, errlen, "--arbiter '%s': must be etcd://HOST:PORT[,HOST:PORT...]", spec);
		return -EINVAL;
	}
	for (const char *s = spec + pre;; s++) {
		size_t len = strcspn(s, ",");
		if (a->n == ARBITER_ENDPOINTS_MAX) {
			snprintf(err, errlen, "--arbiter '%s': more than %d endpoints", spec, ARBITER_ENDPOINTS_MAX);
			return -EINVAL;
		}
		int r = parse_endpoint(s, len, &a->ep[a->n], err, errlen);
		if (r)
			return r;
		a->n++;
		s += len;
		if (!*s)
			return 0;
	}
}

/* ---- libcurl ----------------------------------------------------------------------------------------- */

static pthread_once_t curl_once = PTHREAD_ONCE_INIT;
static CURLcode curl_init_rc;

/* curl_global_init is not safe against a concurrent first use: once per process, never undone. */
static void curl_init(void)
{
	curl_init_rc = curl_global_init(CURL_GLOBAL_DEFAULT);
}

/* The answer into a->resp; beyond ARBITER_RESP_MAX the transfer is aborted: no answer of etcd's to our
 * requests is a tenth of that, so more is not etcd, and we do not keep reading it. */
static size_t on_data(char *p, size_t size, size_t n, void *ctx)
{
	struct arbiter *a = ctx;
	if (size != 1 || n > ARBITER_RESP_MAX - a->resp_len) {
		a->resp_over = true;
		return 0;
	}
	memcpy(a->resp + a->resp_len, p, n);
	a->resp_len += n;
	return n;
}

static int curl_setup(struct arbiter *a)
{
	pthread_once(&curl_once, curl_init);
	if (curl_init_rc != CURLE_OK)
		return -ENOMEM;
	a->curl = curl_easy_init();
	a->headers = curl_slist_append(NULL, "Content-Type: application/json");
	struct curl_slist *h = a->headers ? curl_slist_append(a->headers, "Expect:") : NULL; /* no 100-continue wait */
	if (!a->curl || !h)
		return -ENOMEM;
	a->headers = h;
	CURL *c = a->curl;
	/* NOSIGNAL: libcurl must not touch signals in a threaded VMM (its resolver is threaded, so DNS still
	 * times out). PROXY "": the arbiter is reached directly, whatever http_proxy says. Plain HTTP only,
	 * no redirects, no compressed bodies (the size bound is on what we parse). */
	if (curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L) || curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http") ||
	    curl_easy_setopt(c, CURLOPT_PROXY, "") || curl_easy_setopt(c, CURLOPT_FOLLOWLOCATION, 0L) ||
	    curl_easy_setopt(c, CURLOPT_HTTPHEADER, a->headers) || curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_data) ||
	    curl_easy_setopt(c, CURLOPT_WRITEDATA, a) || curl_easy_setopt(c, CURLOPT_ERRORBUFFER, a->curl_err) ||
	    curl_easy_setopt(c, CURLOPT_MAXFILESIZE_LARGE, (curl_off_t)ARBITER_RESP_MAX))
		return -ENOMEM;
	return 0;
}

int arbiter_open(const char *spec, const char *name, struct arbiter **out, char *err, size_t errlen)
{
	*out = NULL;
	if (!name || !arbiter_word_ok(name, strlen(name), ARBITER_NAME_MAX)) {
		snprintf(err, errlen, "--name '%s': 1 to %d of A-Z a-z 0-9 . _ - (the VM's key in the arbiter)",
			 name ? name : "", ARBITER_NAME_MAX);
		return -EINVAL;
	}
	struct arbiter *a = calloc(1, sizeof(*a));
	if (!a) {
		snprintf(err, errlen, "arbiter: out of memory");
		return -ENOMEM;
	}
	int r = parse_spec(a, spec ? spec : "", err, errlen);
	if (!r && (!(a->resp = malloc(ARBITER_RESP_MAX)) || curl_setup(a))) {
		snprintf(err, errlen, "arbiter: cannot set up libcurl (out of memory)");
		r = -ENOMEM;
	}
	if (r) {
		arbiter_close(a);
		return r;
	}
	a->keylen = (size_t)snprintf(a->key, sizeof(a->key), KEY_FMT, name);
	arbiter_b64_encode((const uint8_t *)a->key, a->keylen, a->key64);
	*out = a;
	return 0;
}

void arbiter_close(struct arbiter *a)
{
	if (!a)
		return;
	if (a->curl)
		curl_easy_cleanup(a->curl);
	curl_slist_free_all(a->headers);
	free(a->resp);
	free(a);
}

const char *arbiter_endpoint(const struct arbiter *a)
{
	return a ? a->ep[a->cur].hostport : "";
}

const char *arbiter_error(const struct arbiter *a)
{
	return a ? a->err : "";
}

/* ---- one request, endpoints in turn ------------------------------------------------------------------ */

static int curl_failed(struct arbiter *a, unsigned i, CURLcode c)
{
	long os = 0;
	int e = EIO;
	if (c == CURLE_OPERATION_TIMEDOUT)
		e = ETIMEDOUT;
	else if (c == CURLE_COULDNT_RESOLVE_HOST)
		e = EHOSTUNREACH;
	else if (c == CURLE_COULDNT_CONNECT)
		e = curl_easy_getinfo(a->curl, CURLINFO_OS_ERRNO, &os) == CURLE_OK && os > 0 ? (int)os : ECONNREFUSED;
	if (a->resp_over || c == CURLE_FILESIZE_EXCEEDED) { /* our bound, or the length it announced */
		set_err(a, "arbiter %s: an answer over %u bytes (not etcd's): dropped", a->ep[i].hostport, ARBITER_RESP_MAX);
		return -EPROTO;
	}
	set_err(a, "arbiter %s: %s", a->ep[i].hostport, a->curl_err[0] ? a->curl_err : curl_easy_strerror(c));
	return -e;
}

/* POST req to endpoint i, the whole try bounded by ms: 0 with a 200's body in a->resp, or -errno. */
static int try_one(struct arbiter *a, unsigned i, const char *path, const char *req, long ms)
{
	char url[sizeof("http://") + sizeof(a->ep[i].hostport) + 16];
	snprintf(url, sizeof(url), "http://%s%s", a->ep[i].hostport, path);
	a->resp_len = 0;
	a->resp_over = false;
	a->curl_err[0] = 0;
	CURLcode c = curl_easy_setopt(a->curl, CURLOPT_URL, url);
	if (!c)
		c = curl_easy_setopt(a->curl, CURLOPT_POSTFIELDS, req);
	if (!c)
		c = curl_easy_setopt(a->curl, CURLOPT_TIMEOUT_MS, ms);
	if (!c)
		c = curl_easy_setopt(a->curl, CURLOPT_CONNECTTIMEOUT_MS, ms);
	if (!c)
		c = curl_easy_perform(a->curl);
	if (c)
		return curl_failed(a, i, c);
	long status = 0;
	curl_easy_getinfo(a->curl, CURLINFO_RESPONSE_CODE, &status);
	if (status != 200) {
		struct arbiter_reply r;
		int rc = arbiter_parse_reply(a->resp, a->resp_len, ARBITER_RANGE, a->key, a->keylen, &r);
		set_err(a, "arbiter %s: HTTP %ld%s%s", a->ep[i].hostport, status, rc == -EIO ? ": " : "", rc == -EIO ? r.msg : "");
		return -EIO;
	}
	return 0;
}

/* The try's share of what is left: an equal part for each endpoint not yet tried in this round. */
static long try_ms(uint64_t deadline, unsigned untried)
{
	uint64_t now = now_ns();
	long left = now < deadline ? (long)((deadline - now) / 1000000) : 0;
	long share = left / (long)untried;
	return share >= TRY_MIN_MS ? share : MIN(left, TRY_MIN_MS);
}

/* How telling a try's failure is: an endpoint that answered wrong (a misconfiguration to fix) over one that
 * refused or had no route, over a timeout (which the deadline itself may have caused). */
static int telling(int e)
{
	return e == -EIO || e == -EPROTO ? 2 : e == -ETIMEDOUT ? 0 : 1;
}

static int call_failed(struct arbiter *a, int failure, const char *why)
{
	if (!failure) {
		set_err(a, "arbiter: no time left to ask");
		return -ETIMEDOUT;
	}
	memcpy(a->err, why, sizeof(a->err));
	return failure;
}

/* Send req for op, endpoints in turn from the one that answered last, in rounds until one gives an answer
 * we can read or the deadline passes. 0 or -EBADMSG with r filled (an answer), else the most telling of
 * the tries' errors (the latest of equals), its line in a->err. */
static int call(struct arbiter *a, enum arbiter_op op, const char *req, uint64_t deadline, struct arbiter_reply *r)
{
	const char *path = op == ARBITER_RANGE ? "/v3/kv/range" : "/v3/kv/txn";
	char why[sizeof(a->err)];
	int failure = 0; /* the most telling so far, its line in why */
	for (;;) {
		uint64_t round_end = now_ns() + ROUND_PAUSE_MS * 1000000ull;
		unsigned first = a->cur;
		for (unsigned t = 0; t < a->n; t++) {
			unsigned i = (first + t) % a->n;
			long ms = try_ms(deadline, a->n - t);
			if (ms <= 0)
				return call_failed(a, failure, why);
			int rc = try_one(a, i, path, req, ms);
			if (!rc) {
				rc = arbiter_parse_reply(a->resp, a->resp_len, op, a->key, a->keylen, r);
				if (rc == -ENOMEM)
					return rc;
				if (rc == 0 || rc == -EBADMSG) {
					a->cur = i;
					return rc;
				}
				set_err(a, "arbiter %s: %s", a->ep[i].hostport,
					rc == -EIO ? r->msg : "an answer that is not etcd's (v3 JSON gateway)");
			}
			if (!failure || telling(rc) >= telling(failure)) {
				failure = rc;
				memcpy(why, a->err, sizeof(why));
			}
		}
		struct timespec ts = { 0 };
		uint64_t until = MIN(round_end, deadline);
		ts.tv_sec = (time_t)(until / 1000000000u);
		ts.tv_nsec = (long)(until % 1000000000u);
		while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL) == EINTR)
			;
	}
}

/* ---- the generation key -------------------------------------------------------------------------------- */

static uint64_t deadline_after(int timeout_ms)
{
	return now_ns() + (uint64_t)timeout_ms * 1000000u;
}

static void copy_owner(char *dst, size_t cap, const struct arbiter_kv *kv)
{
	if (cap)
		snprintf(dst, cap, "%s", kv->present ? kv->owner : "");
}

static void bad_value(struct arbiter *a)
{
	set_err(a, "arbiter %s: %s holds a value that is not \"GENERATION OWNER\"", arbiter_endpoint(a), a->key);
}

int arbiter_read(struct arbiter *a, uint64_t *gen, char *owner, size_t owner_len, int timeout_ms)
{
	struct arbiter_reply r;
	char req[REQ_MAX];
	*gen = 0;
	if (owner_len)
		owner[0] = 0;
	if (timeout_ms <= 0)
		return -EINVAL;
	a->err[0] = 0;
	snprintf(req, sizeof(req), "{\"key\":\"%s\"}", a->key64);
	int rc = call(a, ARBITER_RANGE, req, deadline_after(timeout_ms), &r);
	if (rc == -EBADMSG)
		bad_value(a);
	if (rc < 0)
		return rc;
	*gen = r.kv.present ? r.kv.gen : 0;
	copy_owner(owner, owner_len, &r.kv);
	return r.kv.present;
}

/* The txn: put value only if the key's mod_revision is still rev (0: the key is still absent); else
 * return the key as it is now, so a loser learns the winner in the same round trip. */
static void txn_req(const struct arbiter *a, int64_t rev, const char *value64, char *req, size_t cap)
{
	snprintf(req, cap,
		 "{\"compare\":[{\"key\":\"%s\",\"target\":\"MOD\",\"result\":\"EQUAL\",\"mod_revision\":\"%lld\"}],"
		 "\"success\":[{\"request_put\":{\"key\":\"%s\",\"value\":\"%s\"}}],"
		 "\"failure\":[{\"request_range\":{\"key\":\"%s\"}}]}",
		 a->key64, (long long)rev, a->key64, value64, a->key64);
}

static bool holds(const struct arbiter_kv *kv, uint64_t gen, const char *owner)
{
	return kv->present && kv->gen == gen && strcmp(kv->owner, owner) == 0;
}

int arbiter_cas(struct arbiter *a, uint64_t expect, uint64_t new_gen, const char *owner, int timeout_ms,
		uint64_t *cur_gen, char *cur_owner, size_t cur_len)
{
	char value[ARBITER_VALUE_MAX + 1], value64[B64_LEN(ARBITER_VALUE_MAX) + 1], req[REQ_MAX];
	struct arbiter_reply r;
	*cur_gen = 0;
	if (cur_len)
		cur_owner[0] = 0;
	if (timeout_ms <= 0 || new_gen <= expect || !owner || !arbiter_word_ok(owner, strlen(owner), ARBITER_OWNER_MAX))
		return -EINVAL;
	a->err[0] = 0;
	int vlen = snprintf(value, sizeof(value), "%llu %s", (unsigned long long)new_gen, owner);
	arbiter_b64_encode((const uint8_t *)value, (size_t)vlen, value64);
	snprintf(req, sizeof(req), "{\"key\":\"%s\"}", a->key64);
	uint64_t deadline = deadline_after(timeout_ms);
	int rc = call(a, ARBITER_RANGE, req, deadline, &r);
	while (rc == 0) {
		uint64_t g = r.kv.present ? r.kv.gen : 0;
		if (holds(&r.kv, new_gen, owner))
			return 1;
		if (g != expect) {
			*cur_gen = g;
			copy_owner(cur_owner, cur_len, &r.kv);
			return 0;
		}
		/* Put on the revision just seen. A txn that fails returns the key as it is now: lost, won (our
		 * own put whose answer was lost, then resent), or, if the key changed and still holds expect
		 * (deleted and written again), another txn on its new revision, all inside the same bound. */
		txn_req(a, r.kv.present ? r.kv.mod_rev : 0, value64, req, sizeof(req));
		rc = call(a, ARBITER_TXN, req, deadline, &r);
		if (rc == 0 && r.succeeded)
			return 1;
	}
	if (rc == -EBADMSG)
		bad_value(a);
	return rc;
}

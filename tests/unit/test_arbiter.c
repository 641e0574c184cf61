/* test_arbiter.c - the etcd arbiter: --arbiter/--name parsing, etcd's answers as untrusted bytes, and the CAS against a real etcd it starts. */
#include "../../ft/arbiter.h"
#include "../../ft/arbiter_int.h"
#include "../../vmm/util.h"
#include "etcd_test.h"
#include "test.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <sys/socket.h>
#include <unistd.h>

#define KEY "/ftvmm/vm/generation"
#define LIVE_MS 5000 /* a call to a live etcd: generous, valgrind runs this too */
#define DEAD_MS 600  /* a call that must fail: its bound, checked to within 3x */

/* ---- --arbiter and --name --------------------------------------------------------------------------- */

static void open_ok(const char *spec, const char *name, const char *first)
{
	struct arbiter *a = NULL;
	char err[256] = "";
	CHECK_EQ(arbiter_open(spec, name, &a, err, sizeof(err)), 0);
	CHECK(a && !err[0]);
	CHECK(strcmp(arbiter_endpoint(a), first) == 0);
	arbiter_close(a);
}

static void open_bad(const char *spec, const char *name, const char *says)
{
	struct arbiter *a = (struct arbiter *)1;
	char err[256] = "";
	CHECK_EQ(arbiter_open(spec, name, &a, err, sizeof(err)), -EINVAL);
	CHECK(a == NULL);
	if (!strstr(err, says) || strchr(err, '\n')) {
		fprintf(stderr, "spec '%s' name '%s': error line '%s' lacks '%s'\n", spec ? spec : "(null)", name ? name : "(null)",
			err, says);
		CHECK(0);
	}
}

static void test_spec(void)
{
	char label64[80], name64[70], name65[70], host254[300];
	memset(label64, 'a', 64);
	snprintf(label64 + 64, sizeof(label64) - 64, ":1");
	memset(name64, 'n', 64);
	name64[64] = 0;
	memset(name65, 'n', 65);
	name65[65] = 0;
	memset(host254, 'h', sizeof(host254));
	for (int i = 50; i < 254; i += 50)
		host254[i] = '.';
	snprintf(host254 + 254, sizeof(host254) - 254, ":1");

	open_ok("etcd://127.0.0.1:2379", "vm", "127.0.0.1:2379");
	open_ok("etcd://localhost:1,b.example.com:65535,10.0.0.1:2,h-1:3,x:4", "a.b_c-D9", "localhost:1");
	open_ok("etcd://Etcd-1.Example.COM:02379", name64, "Etcd-1.Example.COM:2379");
	open_bad(NULL, "vm", "--arbiter");
	open_bad("", "vm", "etcd://HOST:PORT");
	open_bad("http://127.0.0.1:2379", "vm", "etcd://HOST:PORT");
	open_bad("ETCD://h:1", "vm", "etcd://HOST:PORT");
	open_bad("etcd://", "vm", "not HOST:PORT");
	open_bad("etcd://127.0.0.1", "vm", "not HOST:PORT");
	open_bad("etcd://127.0.0.1:", "vm", "not HOST:PORT");
	open_bad("etcd://h:1x", "vm", "not HOST:PORT");
	open_bad("etcd://h:+1", "vm", "not HOST:PORT");
	open_bad("etcd://h:1/", "vm", "not HOST:PORT");
	open_bad("etcd://h:123456", "vm", "not HOST:PORT");
	open_bad("etcd://127.0.0.1:0", "vm", "1..65535");
	open_bad("etcd://127.0.0.1:65536", "vm", "1..65535");
	open_bad("etcd://h:1,", "vm", "not HOST:PORT");
	open_bad("etcd://,h:1", "vm", "not HOST:PORT");
	open_bad("etcd://a:1,b:2,c:3,d:4,e:5,f:6", "vm", "more than 5");
	open_bad("etcd://1.2.3.256:1", "vm", "neither");
	open_bad("etcd://1.2.3:1", "vm", "neither");
	open_bad("etcd://[::1]:2379", "vm", "neither");
	open_bad("etcd://-a:1", "vm", "neither");
	open_bad("etcd://a-:1", "vm", "neither");
	open_bad("etcd://a..b:1", "vm", "neither");
	open_bad("etcd://a.:1", "vm", "neither");
	open_bad("etcd://h_x:1", "vm", "neither");
	open_bad("etcd://user@h:1", "vm", "neither");
	char spec[400];
	snprintf(spec, sizeof(spec), "etcd://%s", label64);
	open_bad(spec, "vm", "neither");
	snprintf(spec, sizeof(spec), "etcd://%s", host254);
	open_bad(spec, "vm", "neither");
	open_bad("etcd://h:1", NULL, "--name");
	open_bad("etcd://h:1", "", "--name");
	open_bad("etcd://h:1", name65, "--name");
	open_bad("etcd://h:1", "a/b", "--name");
	open_bad("etcd://h:1", "a b", "--name");
	open_bad("etcd://h:1", "caf\xc3\xa9", "--name");
}

/* ---- the value, base64 ----------------------------------------------------------------------------------- */

static int value(const char *s, uint64_t *gen, char *owner)
{
	return arbiter_parse_value((const uint8_t *)s, strlen(s), gen, owner);
}

static void test_value(void)
{
	uint64_t g = 7;
	char o[ARBITER_OWNER_MAX + 1], long_owner[200];
	CHECK_EQ(value("1 hostA", &g, o), 0);
	CHECK(g == 1 && strcmp(o, "hostA") == 0);
	CHECK_EQ(value("0 x", &g, o), 0);
	CHECK_EQ(g, 0);
	CHECK_EQ(value("18446744073709551615 h-1.b_c", &g, o), 0);
	CHECK(g == UINT64_MAX && strcmp(o, "h-1.b_c") == 0);
	const char *bad[] = { "", "1", "1 ", " x", "x 1", "01 x", "00 x", "-1 x", "+1 x", "1  x", "1 x ", "1 x\n", "1 a/b",
			      "1 a\"b", "0x1 x", "18446744073709551616 x", "99999999999999999999 x", "123456789012345678901 x",
			      "1\tx" };
	for (size_t i = 0; i < ARRAY_SIZE(bad); i++)
		CHECK_EQ(value(bad[i], &g, o), -EBADMSG);
	memset(long_owner, 'o', sizeof(long_owner));
	long_owner[0] = '5';
	long_owner[1] = ' ';
	CHECK_EQ(arbiter_parse_value((uint8_t *)long_owner, 2 + ARBITER_OWNER_MAX, &g, o), 0);
	CHECK_EQ(strlen(o), ARBITER_OWNER_MAX);
	CHECK_EQ(arbiter_parse_value((uint8_t *)long_owner, 3 + ARBITER_OWNER_MAX, &g, o), -EBADMSG);
	CHECK_EQ(arbiter_parse_value((const uint8_t *)"1 a\0b", 5, &g, o), -EBADMSG);
}

static void test_b64(void)
{
	uint8_t in[16], out[16];
	char enc[32];
	for (size_t len = 0; len <= sizeof(in); len++) {
		for (size_t i = 0; i < len; i++)
			in[i] = (uint8_t)(i * 77 + len);
		arbiter_b64_encode(in, len, enc);
		CHECK_EQ(strlen(enc), (len + 2) / 3 * 4);
		CHECK_EQ(arbiter_b64_decode(enc, strlen(enc), out, sizeof(out)), (long)len);
		CHECK(memcmp(in, out, len) == 0);
		if (len)
			CHECK_EQ(arbiter_b64_decode(enc, strlen(enc), out, len - 1), -1); /* more than cap */
	}
	arbiter_b64_encode((const uint8_t *)"1 hostA", 7, enc);
	CHECK(strcmp(enc, "MSBob3N0QQ==") == 0);
	const char *bad[] = { "QQ", "QQ=", "QR==", "QUJ=", "Q===", "====", "=QQQ", "QQ=A", "QUJD\n", "QU-D", "QU_D", "QUJDQQ==QUJD" };
	for (size_t i = 0; i < ARRAY_SIZE(bad); i++)
		CHECK_EQ(arbiter_b64_decode(bad[i], strlen(bad[i]), out, sizeof(out)), -1);
	CHECK_EQ(arbiter_b64_decode("QU\0D", 4, out, sizeof(out)), -1);
}

/* ---- etcd's answers ---------------------------------------------------------------------------------------- */

/* Captured from etcd 3.4.23's gateway (key /ftvmm/vm/generation, and /ftvmm/e/generation with an empty value). */
#define HDR "\"header\":{\"cluster_id\":\"15118495548433857066\",\"member_id\":\"13668033151171901709\",\"revision\":\"4\",\"raft_term\":\"2\"}"
#define KEY64 "L2Z0dm1tL3ZtL2dlbmVyYXRpb24="
static const char r_absent[] = "{" HDR "}";
static const char r_present[] = "{" HDR ",\"kvs\":[{\"key\":\"" KEY64 "\",\"create_revision\":\"2\",\"mod_revision\":\"4\","
				"\"version\":\"2\",\"value\":\"MiBob3N0Qg==\"}],\"count\":\"1\"}";
static const char r_empty[] = "{" HDR ",\"kvs\":[{\"key\":\"L2Z0dm1tL2UvZ2VuZXJhdGlvbg==\",\"create_revision\":\"3\","
			      "\"mod_revision\":\"3\",\"version\":\"1\"}],\"count\":\"1\"}";
static const char t_won[] = "{" HDR ",\"succeeded\":true,\"responses\":[{\"response_put\":{\"header\":{\"revision\":\"5\"}}}]}";
static const char t_lost[] = "{" HDR ",\"responses\":[{\"response_range\":{\"header\":{\"revision\":\"5\"},\"kvs\":[{\"key\":\"" KEY64
			     "\",\"create_revision\":\"2\",\"mod_revision\":\"5\",\"version\":\"3\",\"value\":\"MyBob3N0QQ==\"}],\"count\":\"1\"}}]}";
static const char r_error[] = "{\"error\":\"illegal base64 data at input byte 0\",\"message\":\"illegal base64 data at input byte 0\",\"code\":3}";

static int parse_as(const char *body, size_t len, enum arbiter_op op, const char *key, struct arbiter_reply *r)
{
	return arbiter_parse_reply(body, len, op, key, strlen(key), r);
}

static int parse(const char *body, enum arbiter_op op, struct arbiter_reply *r)
{
	return parse_as(body, strlen(body), op, KEY, r);
}

/* A range answer with one kvs entry made of the given fields. */
static int parse_entry(const char *fields, struct arbiter_reply *r)
{
	char body[1024];
	snprintf(body, sizeof(body), "{" HDR ",\"kvs\":[{%s}],\"count\":\"1\"}", fields);
	return parse(body, ARBITER_RANGE, r);
}

static void test_replies_real(void)
{
	struct arbiter_reply r;
	CHECK_EQ(parse(r_absent, ARBITER_RANGE, &r), 0);
	CHECK(!r.kv.present && r.kv.mod_rev == 0);
	CHECK_EQ(parse(r_present, ARBITER_RANGE, &r), 0);
	CHECK(r.kv.present && r.kv.mod_rev == 4 && r.kv.gen == 2 && strcmp(r.kv.owner, "hostB") == 0);
	CHECK_EQ(parse_as(r_empty, strlen(r_empty), ARBITER_RANGE, "/ftvmm/e/generation", &r), -EBADMSG);
	CHECK(r.kv.present && r.kv.mod_rev == 3);
	CHECK_EQ(parse(r_empty, ARBITER_RANGE, &r), -EPROTO); /* someone else's key */
	CHECK_EQ(parse(t_won, ARBITER_TXN, &r), 0);
	CHECK(r.succeeded && !r.kv.present);
	CHECK_EQ(parse(t_lost, ARBITER_TXN, &r), 0);
	CHECK(!r.succeeded && r.kv.present && r.kv.gen == 3 && r.kv.mod_rev == 5 && strcmp(r.kv.owner, "hostA") == 0);
	CHECK_EQ(parse(r_error, ARBITER_RANGE, &r), -EIO);
	CHECK(strstr(r.msg, "illegal base64"));
	CHECK_EQ(parse(r_present, ARBITER_TXN, &r), -EPROTO); /* a range is not a txn's answer */
	CHECK_EQ(parse(t_lost, ARBITER_RANGE, &r), 0);        /* ...a txn's is a range's without kvs: absent */
	CHECK(!r.kv.present);
	char body[2048];
	snprintf(body, sizeof(body), "%s \r\n\t", r_present);
	CHECK_EQ(parse(body, ARBITER_RANGE, &r), 0);
	CHECK_EQ(r.kv.gen, 2);
}

static void test_replies_bad(void)
{
	struct arbiter_reply r;
	const char *bad[] = { "", " ", "{", "[]", "null", "1", "\"x\"", "{}", "{\"header\":null}", "{\"header\":[]}",
			      "{" HDR "}x", "{" HDR "}{}", "{" HDR ",}", "{" HDR ",\"kvs\":{}}",
			      "{" HDR ",\"kvs\":null}", "{" HDR ",\"kvs\":[1]}", "{" HDR ",\"kvs\":[{}]}", "{" HDR ",\"kvs\":[null]}",
			      "/*c*/{" HDR "}" };
	for (size_t i = 0; i < ARRAY_SIZE(bad); i++) {
		if (parse(bad[i], ARBITER_RANGE, &r) != -EPROTO) {
			fprintf(stderr, "accepted: %s\n", bad[i]);
			CHECK(0);
		}
	}
	CHECK_EQ(parse_as(r_absent, strlen(r_absent) + 1, ARBITER_RANGE, KEY, &r), -EPROTO); /* a NUL after it */
	/* two entries for one key: not etcd, even if both are well formed */
	char body[4096];
	const char *e = strstr(r_present, "{\"key\"");
	snprintf(body, sizeof(body), "{" HDR ",\"kvs\":[%.*s,%.*s]}", (int)(strstr(e, "}") + 1 - e), e,
		 (int)(strstr(e, "}") + 1 - e), e);
	CHECK_EQ(parse(body, ARBITER_RANGE, &r), -EPROTO);
	/* nesting: the tokenizer's depth limit, not our stack */
	char deep[400] = "{" HDR ",\"x\":";
	size_t n = strlen(deep);
	for (int i = 0; i < 100; i++)
		deep[n++] = '[';
	deep[n] = 0;
	CHECK_EQ(parse(deep, ARBITER_RANGE, &r), -EPROTO);
	char *huge = calloc(1, ARBITER_RESP_MAX + 2);
	CHECK(huge);
	memset(huge, ' ', ARBITER_RESP_MAX + 1);
	memcpy(huge, r_absent, sizeof(r_absent) - 1); /* spaces after it, no NUL */
	CHECK_EQ(parse_as(huge, ARBITER_RESP_MAX, ARBITER_RANGE, KEY, &r), 0);
	CHECK_EQ(parse_as(huge, ARBITER_RESP_MAX + 1, ARBITER_RANGE, KEY, &r), -EPROTO);
	free(huge);
}

static void test_entries(void)
{
	struct arbiter_reply r;
	const char *proto[] = {
		"\"mod_revision\":\"4\",\"value\":\"MiBob3N0Qg==\"",                        /* no key */
		"\"key\":\"" KEY64 "\",\"value\":\"MiBob3N0Qg==\"",                          /* no mod_revision */
		"\"key\":1,\"mod_revision\":\"4\",\"value\":\"MiBob3N0Qg==\"",               /* key not a string */
		"\"key\":\"L2Z0dm1tL3ZtL2dlbmVyYXRpb24\",\"mod_revision\":\"4\"",            /* key not base64 */
		"\"key\":\"L2Z0dm1tL3ZtL2dlbmVyYXRpb25z\",\"mod_revision\":\"4\"",           /* another key */
		"\"key\":\"" KEY64 "\",\"mod_revision\":4,\"value\":\"MiBob3N0Qg==\"",       /* int64 not as a string */
		"\"key\":\"" KEY64 "\",\"mod_revision\":\"0\",\"value\":\"MiBob3N0Qg==\"",
		"\"key\":\"" KEY64 "\",\"mod_revision\":\"-4\",\"value\":\"MiBob3N0Qg==\"",
		"\"key\":\"" KEY64 "\",\"mod_revision\":\"04\",\"value\":\"MiBob3N0Qg==\"",
		"\"key\":\"" KEY64 "\",\"mod_revision\":\"4x\",\"value\":\"MiBob3N0Qg==\"",
		"\"key\":\"" KEY64 "\",\"mod_revision\":\"9223372036854775808\",\"value\":\"MiBob3N0Qg==\"",
		"\"key\":\"" KEY64 "\",\"mod_revision\":\"4\",\"value\":7",                  /* value not a string */
		"\"key\":\"" KEY64 "\",\"mod_revision\":\"4\",\"value\":null",
	};
	for (size_t i = 0; i < ARRAY_SIZE(proto); i++)
		CHECK_EQ(parse_entry(proto[i], &r), -EPROTO);
	CHECK_EQ(parse_entry("\"key\":\"" KEY64 "\",\"mod_revision\":\"9223372036854775807\",\"value\":\"MiBob3N0Qg==\"", &r), 0);
	CHECK(r.kv.mod_rev == INT64_MAX && r.kv.gen == 2);
	/* well formed, but not "G OWNER": the value is bad, the answer is not */
	char f[600], v[ARBITER_VALUE_MAX + 2], v64[300];
	const char *values[] = { "garbage", "1", "1  x", "01 x", "18446744073709551616 x" };
	for (size_t i = 0; i < ARRAY_SIZE(values); i++) {
		arbiter_b64_encode((const uint8_t *)values[i], strlen(values[i]), v64);
		snprintf(f, sizeof(f), "\"key\":\"" KEY64 "\",\"mod_revision\":\"9\",\"value\":\"%s\"", v64);
		CHECK_EQ(parse_entry(f, &r), -EBADMSG);
		CHECK(r.kv.present && r.kv.mod_rev == 9);
	}
	snprintf(f, sizeof(f), "\"key\":\"" KEY64 "\",\"mod_revision\":\"9\",\"value\":\"not base64!\"");
	CHECK_EQ(parse_entry(f, &r), -EBADMSG);
	memset(v, 'o', sizeof(v)); /* one byte longer than any "G OWNER" */
	static const char top[] = "18446744073709551615 ";
	memcpy(v, top, sizeof(top) - 1); /* bytes, not a string */
	arbiter_b64_encode((const uint8_t *)v, sizeof(v) - 1, v64);
	snprintf(f, sizeof(f), "\"key\":\"" KEY64 "\",\"mod_revision\":\"9\",\"value\":\"%s\"", v64);
	CHECK_EQ(parse_entry(f, &r), -EBADMSG);
	arbiter_b64_encode((const uint8_t *)v, sizeof(v) - 2, v64); /* the longest there is */
	snprintf(f, sizeof(f), "\"key\":\"" KEY64 "\",\"mod_revision\":\"9\",\"value\":\"%s\"", v64);
	CHECK_EQ(parse_entry(f, &r), 0);
	CHECK(r.kv.gen == UINT64_MAX && strlen(r.kv.owner) == ARBITER_OWNER_MAX);
}

static void test_txn_bad(void)
{
	struct arbiter_reply r;
	const char *bad[] = {
		"{" HDR ",\"succeeded\":\"true\",\"responses\":[{\"response_put\":{}}]}",
		"{" HDR ",\"succeeded\":1,\"responses\":[{\"response_put\":{}}]}",
		"{" HDR ",\"succeeded\":true}",
		"{" HDR ",\"succeeded\":true,\"responses\":[]}",
		"{" HDR ",\"succeeded\":true,\"responses\":[{\"response_put\":{}},{\"response_put\":{}}]}",
		"{" HDR ",\"succeeded\":true,\"responses\":[{\"response_range\":{}}]}",
		"{" HDR ",\"succeeded\":true,\"responses\":[{\"response_put\":[]}]}",
		"{" HDR ",\"succeeded\":true,\"responses\":[[]]}",
		"{" HDR ",\"responses\":[{\"response_put\":{}}]}",
		"{" HDR ",\"succeeded\":false,\"responses\":[{\"response_range\":{\"kvs\":[{}]}}]}",
		"{" HDR ",\"succeeded\":null,\"responses\":[{\"response_range\":{}}]}",
	};
	for (size_t i = 0; i < ARRAY_SIZE(bad); i++) {
		if (parse(bad[i], ARBITER_TXN, &r) != -EPROTO) {
			fprintf(stderr, "accepted: %s\n", bad[i]);
			CHECK(0);
		}
	}
	CHECK_EQ(parse("{" HDR ",\"succeeded\":false,\"responses\":[{\"response_range\":{}}]}", ARBITER_TXN, &r), 0);
	CHECK(!r.succeeded && !r.kv.present);
	CHECK_EQ(parse("{\"code\":14}", ARBITER_TXN, &r), -EIO);
	CHECK(r.msg[0]);
	CHECK_EQ(parse("{\"error\":\"x\",\"message\":\"a\\nb\\u0000c\",\"code\":2}", ARBITER_TXN, &r), -EIO);
	CHECK(strcmp(r.msg, "a?b?c") == 0);
}

/* ---- a real etcd (etcd_test.h) --------------------------------------------------------------------------------- */

static struct arbiter *arb(const char *fmt, int p1, int p2, const char *name)
{
	char spec[128], err[256];
	struct arbiter *a = NULL;
	snprintf(spec, sizeof(spec), fmt, p1, p2);
	CHECK_EQ(arbiter_open(spec, name, &a, err, sizeof(err)), 0);
	return a;
}

static void read_is(struct arbiter *a, int want, uint64_t gen, const char *owner)
{
	uint64_t g = 99;
	char o[ARBITER_OWNER_MAX + 1] = "junk";
	CHECK_EQ(arbiter_read(a, &g, o, sizeof(o), LIVE_MS), want);
	CHECK_EQ(g, gen);
	CHECK(strcmp(o, owner) == 0);
}

static void cas_is(struct arbiter *a, uint64_t expect, const char *owner, int want, uint64_t cur, const char *cur_owner)
{
	uint64_t g = 99;
	char o[ARBITER_OWNER_MAX + 1] = "junk";
	int r = arbiter_cas(a, expect, expect + 1, owner, LIVE_MS, &g, o, sizeof(o));
	if (r != want)
		fprintf(stderr, "cas %llu by %s: %d (%s)\n", (unsigned long long)expect, owner, r, arbiter_error(a));
	CHECK_EQ(r, want);
	CHECK_EQ(g, cur);
	CHECK(strcmp(o, cur_owner) == 0);
}

static void test_cas(void)
{
	struct arbiter *a = arb("etcd://127.0.0.1:%d", etcd_port, 0, "vm");
	uint64_t g;
	char o[8];
	read_is(a, 0, 0, "");
	cas_is(a, 0, "hostA", 1, 0, "");
	read_is(a, 1, 1, "hostA");
	cas_is(a, 0, "hostB", 0, 1, "hostA"); /* the second 0 -> 1 loses, and learns who won */
	cas_is(a, 1, "hostB", 1, 0, "");
	read_is(a, 1, 2, "hostB");
	cas_is(a, 1, "hostB", 1, 0, "");      /* the same CAS again (its answer was lost): still won */
	cas_is(a, 1, "hostA", 0, 2, "hostB"); /* but not for anyone else */
	cas_is(a, 5, "hostA", 0, 2, "hostB"); /* nor from a generation it never had */
	CHECK_EQ(arbiter_read(a, &g, o, sizeof(o), LIVE_MS), 1); /* the owner cut to the caller's buffer */
	CHECK(g == 2 && strcmp(o, "hostB") == 0);
	CHECK_EQ(arbiter_read(a, &g, o, 3, LIVE_MS), 1);
	CHECK(strcmp(o, "ho") == 0);
	CHECK_EQ(arbiter_cas(a, 2, 2, "hostA", LIVE_MS, &g, o, sizeof(o)), -EINVAL);
	CHECK_EQ(arbiter_cas(a, 2, 3, "host A", LIVE_MS, &g, o, sizeof(o)), -EINVAL);
	CHECK_EQ(arbiter_cas(a, 2, 3, "", LIVE_MS, &g, o, sizeof(o)), -EINVAL);
	CHECK_EQ(arbiter_read(a, &g, o, sizeof(o), 0), -EINVAL);
	read_is(a, 1, 2, "hostB");
	CHECK(!arbiter_error(a)[0]);
	arbiter_close(a);
	/* another VM's key is another key */
	a = arb("etcd://127.0.0.1:%d", etcd_port, 0, "vm.2");
	read_is(a, 0, 0, "");
	arbiter_close(a);
}

struct racer {
	struct arbiter *a;
	const char *owner;
	pthread_barrier_t *go;
	uint64_t expect, cur;
	char cur_owner[16];
	int r;
};

static void *race_thread(void *arg)
{
	struct racer *x = arg;
	pthread_barrier_wait(x->go);
	x->r = arbiter_cas(x->a, x->expect, x->expect + 1, x->owner, LIVE_MS, &x->cur, x->cur_owner, sizeof(x->cur_owner));
	return NULL;
}

/* Two callers, each with its own arbiter, CAS(G -> G+1) at once: exactly one wins, the other learns it. */
static void test_race(void)
{
	pthread_barrier_t go;
	struct racer x[2] = { { .owner = "racerA" }, { .owner = "racerB" } };
	int wins[2] = { 0, 0 };
	CHECK_EQ(pthread_barrier_init(&go, NULL, 2), 0);
	for (int i = 0; i < 2; i++)
		x[i].a = arb("etcd://127.0.0.1:%d", etcd_port, 0, "race");
	for (uint64_t g = 0; g < 20; g++) {
		pthread_t t;
		for (int i = 0; i < 2; i++)
			x[i] = (struct racer){ .a = x[i].a, .owner = x[i].owner, .go = &go, .expect = g };
		CHECK_EQ(pthread_create(&t, NULL, race_thread, &x[1]), 0);
		race_thread(&x[0]);
		CHECK_EQ(pthread_join(t, NULL), 0);
		CHECK_EQ(x[0].r + x[1].r, 1);
		int w = x[0].r == 1 ? 0 : 1, l = 1 - w;
		wins[w]++;
		CHECK_EQ(x[l].r, 0);
		CHECK_EQ(x[l].cur, g + 1);
		CHECK(strcmp(x[l].cur_owner, x[w].owner) == 0);
		read_is(x[l].a, 1, g + 1, x[w].owner);
	}
	printf("race: racerA won %d, racerB %d of 20\n", wins[0], wins[1]);
	for (int i = 0; i < 2; i++)
		arbiter_close(x[i].a);
	pthread_barrier_destroy(&go);
}

static uint64_t ms_since(uint64_t t0)
{
	return (now_ns() - t0) / 1000000u;
}

/* A call that must fail: < 0, and back within its bound (3x, for a loaded host and valgrind). */
static void fails_in_time(struct arbiter *a, const char *what)
{
	uint64_t g, t0 = now_ns();
	char o[16];
	int r = arbiter_read(a, &g, o, sizeof(o), DEAD_MS);
	uint64_t ms = ms_since(t0);
	printf("%s: read %d (%s) in %llu ms: %s\n", what, r, strerror(-r), (unsigned long long)ms, arbiter_error(a));
	CHECK(r < 0 && r != -EBADMSG && r != -EINVAL);
	CHECK(ms < 3 * DEAD_MS);
	CHECK(arbiter_error(a)[0]);
	t0 = now_ns();
	r = arbiter_cas(a, 0, 1, "nobody", DEAD_MS, &g, o, sizeof(o));
	ms = ms_since(t0);
	CHECK(r < 0 && r != -EBADMSG && r != -EINVAL);
	CHECK(ms < 3 * DEAD_MS);
}

static void test_endpoints(void)
{
	int closed1, closed2;
	int p1 = free_port(&closed1), p2 = free_port(&closed2);
	struct arbiter *a = arb("etcd://127.0.0.1:%d,127.0.0.1:%d", p1, etcd_port, "vm");
	read_is(a, 1, 2, "hostB"); /* the first is dead: the second answers */
	CHECK(strstr(arbiter_endpoint(a), "127.0.0.1:") && atoi(strchr(arbiter_endpoint(a), ':') + 1) == etcd_port);
	cas_is(a, 2, "hostA", 1, 0, "");
	cas_is(a, 2, "hostB", 0, 3, "hostA");
	arbiter_close(a);

	a = arb("etcd://127.0.0.1:%d,127.0.0.1:%d", p1, p2, "vm");
	fails_in_time(a, "all endpoints refuse");
	arbiter_close(a);
	a = arb("etcd://192.0.2.1:%d,127.0.0.1:%d", 2379, p1, "vm"); /* TEST-NET-1: no route, or SYNs unanswered */
	fails_in_time(a, "no route");
	arbiter_close(a);
	close(closed1);
	close(closed2);
}

/* etcd frozen: it still accepts connections (the kernel does), and never answers. */
static void test_frozen(void)
{
	int closed;
	int p = free_port(&closed);
	struct arbiter *a = arb("etcd://127.0.0.1:%d", etcd_port, 0, "vm");
	struct arbiter *b = arb("etcd://127.0.0.1:%d,127.0.0.1:%d", etcd_port, p, "vm");
	read_is(a, 1, 3, "hostA"); /* a has a kept-alive connection now */
	etcd_freeze();
	fails_in_time(a, "etcd frozen");
	fails_in_time(b, "etcd frozen, the other refuses");
	etcd_thaw();
	read_is(a, 1, 3, "hostA");
	read_is(b, 1, 3, "hostA");
	arbiter_close(a);
	arbiter_close(b);
	close(closed);
}

/* Someone else wrote the key: anything but "G OWNER" is an error, never a generation. */
static void test_garbage(void)
{
	static const struct {
		const char *v;
		size_t len;
	} bad[] = { { "garbage", 7 }, { "", 0 }, { "7", 1 }, { "7 ", 2 }, { "07 x", 4 }, { "-1 x", 4 }, { "7  x", 4 },
		    { "7 x\n", 4 }, { "7 a/b", 5 }, { "18446744073709551616 x", 22 }, { "7 x\0y", 5 }, { "{\"gen\":7}", 9 } };
	const char *key = "/ftvmm/junk/generation";
	struct arbiter *a = arb("etcd://127.0.0.1:%d", etcd_port, 0, "junk");
	uint64_t g;
	char o[16];
	for (size_t i = 0; i < ARRAY_SIZE(bad); i++) {
		etcd_put(key, bad[i].v, bad[i].len);
		CHECK_EQ(arbiter_read(a, &g, o, sizeof(o), LIVE_MS), -EBADMSG);
		CHECK(g == 0 && !o[0]);
		CHECK(strstr(arbiter_error(a), "not \"GENERATION OWNER\""));
		CHECK_EQ(arbiter_cas(a, 0, 1, "hostA", LIVE_MS, &g, o, sizeof(o)), -EBADMSG);
		CHECK(g == 0 && !o[0]);
	}
	etcd_put(key, "18446744073709551615 top", 24); /* the largest generation: read, never grown */
	read_is(a, 1, UINT64_MAX, "top");
	CHECK_EQ(arbiter_cas(a, UINT64_MAX, UINT64_MAX, "hostA", LIVE_MS, &g, o, sizeof(o)), -EINVAL);
	etcd_put(key, "0 explicit", 10); /* "0 OWNER" is generation 0, like an absent key */
	cas_is(a, 0, "hostA", 1, 0, "");
	read_is(a, 1, 1, "hostA");
	arbiter_close(a);
}

/* ---- something else at an endpoint: a server that answers what etcd never would ---------------------------- */

enum fake_mode { FAKE_HUGE, FAKE_HUGE_LEN, FAKE_NOT_ETCD, FAKE_NO_LEADER, FAKE_SILENT };
static enum fake_mode fake_mode;
static int fake_fd = -1;
static int fake_conns; /* connections accepted */

/* The request, all of it (headers, then Content-Length bytes), so closing does not reset the answer away. */
static void fake_read_request(int c)
{
	char buf[8192];
	size_t got = 0;
	ssize_t n;
	while (got < sizeof(buf) - 1 && (n = recv(c, buf + got, sizeof(buf) - 1 - got, 0)) > 0) {
		got += (size_t)n;
		buf[got] = 0;
		const char *end = strstr(buf, "\r\n\r\n"), *cl = strcasestr(buf, "content-length:");
		if (end && got >= (size_t)(end + 4 - buf) + (cl ? (size_t)atol(cl + 15) : 0))
			return;
	}
}

static void fake_answer(int c)
{
	static const char no_leader[] = "{\"error\":\"etcdserver: no leader\",\"message\":\"etcdserver: no leader\",\"code\":14}";
	static const char not_etcd[] = "{\"header\":{},\"kvs\":[{},{}]}";
	char head[256], pad[4096];
	size_t huge = 4 * ARBITER_RESP_MAX;
	const char *body = fake_mode == FAKE_NO_LEADER ? no_leader : not_etcd;
	if (fake_mode == FAKE_HUGE || fake_mode == FAKE_HUGE_LEN)
		snprintf(head, sizeof(head), "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nConnection: close\r\n%s\r\n{",
			 fake_mode == FAKE_HUGE_LEN ? "Content-Length: 262144\r\n" : "");
	else
		snprintf(head, sizeof(head), "HTTP/1.1 %s\r\nContent-Type: application/json\r\nConnection: close\r\n"
			 "Content-Length: %zu\r\n\r\n%s", fake_mode == FAKE_NO_LEADER ? "503 Service Unavailable" : "200 OK",
			 strlen(body), body);
	if (send(c, head, strlen(head), MSG_NOSIGNAL) < 0 || (fake_mode != FAKE_HUGE && fake_mode != FAKE_HUGE_LEN))
		return;
	memset(pad, ' ', sizeof(pad));
	for (size_t sent = 0; sent < huge; sent += sizeof(pad)) /* until it hangs up on us */
		if (send(c, pad, sizeof(pad), MSG_NOSIGNAL) < 0)
			return;
}

static void *fake_thread(void *arg)
{
	(void)arg;
	int c;
	while ((c = accept4(fake_fd, NULL, NULL, SOCK_CLOEXEC)) >= 0) {
		struct timeval tv = { .tv_sec = 2 };
		setsockopt(c, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
		__atomic_add_fetch(&fake_conns, 1, __ATOMIC_SEQ_CST);
		fake_read_request(c);
		if (fake_mode == FAKE_SILENT) /* like a frozen etcd: hold the connection, never answer */
			tv.tv_sec = 30;
		setsockopt(c, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
		if (fake_mode != FAKE_SILENT) {
			fake_answer(c);
			shutdown(c, SHUT_WR);
		}
		char sink_buf[256];
		while (recv(c, sink_buf, sizeof(sink_buf), 0) > 0)
			;
		close(c);
	}
	return NULL;
}

static void fake_is(int port, enum fake_mode m, int want, const char *says)
{
	struct arbiter *a = arb("etcd://127.0.0.1:%d", port, 0, "vm");
	uint64_t g;
	char o[16];
	fake_mode = m;
	int r = arbiter_read(a, &g, o, sizeof(o), DEAD_MS); /* tried again and again, until the bound */
	if (r != want || !strstr(arbiter_error(a), says))
		fprintf(stderr, "fake mode %d: %d (%s)\n", m, r, arbiter_error(a));
	CHECK_EQ(r, want);
	CHECK(strstr(arbiter_error(a), says));
	arbiter_close(a);
	/* ...and with etcd after it, etcd answers */
	a = arb("etcd://127.0.0.1:%d,127.0.0.1:%d", port, etcd_port, "vm");
	read_is(a, 1, 3, "hostA");
	arbiter_close(a);
}

/* A silent first endpoint (it never answers) costs its share of the bound, not all of it; the next call
 * starts with the endpoint that answered and does not touch the silent one. */
static void test_silent_first(int port)
{
	struct arbiter *a = arb("etcd://127.0.0.1:%d,127.0.0.1:%d", port, etcd_port, "vm");
	uint64_t g;
	char o[16];
	fake_mode = FAKE_SILENT;
	fake_conns = 0;
	CHECK_EQ(arbiter_read(a, &g, o, sizeof(o), 2 * DEAD_MS), 1);
	CHECK_EQ(g, 3);
	CHECK_EQ(__atomic_load_n(&fake_conns, __ATOMIC_SEQ_CST), 1);
	CHECK_EQ(atoi(strchr(arbiter_endpoint(a), ':') + 1), etcd_port);
	CHECK_EQ(arbiter_cas(a, 3, 4, "hostB", 2 * DEAD_MS, &g, o, sizeof(o)), 1);
	read_is(a, 1, 4, "hostB");
	CHECK_EQ(__atomic_load_n(&fake_conns, __ATOMIC_SEQ_CST), 1);
	arbiter_close(a);
}

static void test_not_etcd(void)
{
	struct sockaddr_in sa = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	socklen_t len = sizeof(sa);
	pthread_t t;
	fake_fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	CHECK(fake_fd >= 0);
	CHECK_EQ(bind(fake_fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	CHECK_EQ(listen(fake_fd, 8), 0);
	CHECK_EQ(getsockname(fake_fd, (struct sockaddr *)&sa, &len), 0);
	CHECK_EQ(pthread_create(&t, NULL, fake_thread, NULL), 0);
	int port = ntohs(sa.sin_port);
	fake_is(port, FAKE_HUGE, -EPROTO, "an answer over 65536 bytes");
	fake_is(port, FAKE_HUGE_LEN, -EPROTO, "an answer over 65536 bytes");
	fake_is(port, FAKE_NOT_ETCD, -EPROTO, "not etcd's");
	fake_is(port, FAKE_NO_LEADER, -EIO, "HTTP 503: etcdserver: no leader");
	test_silent_first(port);
	shutdown(fake_fd, SHUT_RDWR); /* ends the accept */
	CHECK_EQ(pthread_join(t, NULL), 0);
	close(fake_fd);
}

int main(void)
{
	test_spec();
	test_value();
	test_b64();
	test_replies_real();
	test_replies_bad();
	test_entries();
	test_txn_bad();
	if (etcd_skip_reason()) {
		fprintf(stderr, "test_arbiter: SKIP the tests against a real etcd: %s\n", etcd_skip_reason());
		TEST_DONE("test_arbiter (parsing only)");
	}
	etcd_start();
	test_cas();
	test_race();
	test_endpoints();
	test_frozen();
	test_garbage();
	test_not_etcd();
	etcd_stop();
	TEST_DONE("test_arbiter");
}

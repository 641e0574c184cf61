/* test_fence.c - the FT fence: the generation a primary pairs under, and the claim that lets one copy run on,
 * against a real etcd it starts (frozen, thawed, raced, and written with garbage behind its back). */
#include "../../ft/arbiter.h"
#include "../../ft/fence.h"
#include "../../vmm/util.h"
#include "etcd_test.h"
#include "test.h"

#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <string.h>
#include <unistd.h>

#define LIVE_MS 5000   /* the checker's calls to a live etcd: generous, valgrind runs this too */
#define FROZEN_MS 3000 /* how long etcd stays frozen under a claim that must win after all */
#define STOP_MS 1500   /* when the stop callback of a claim against a frozen etcd turns true */
#define SLACK_MS 4000  /* a claim ends within one arbiter call, a retry pause and this (valgrind) of its cue */

static uint64_t ms_since(uint64_t t0)
{
	return (now_ns() - t0) / 1000000u;
}

static void one_line(const char *what, const char *s)
{
	if (strchr(s, '\n')) {
		fprintf(stderr, "%s is not one line: '%s'\n", what, s);
		CHECK(0);
	}
}

static void fence_at(struct ft_fence *f, const char *name)
{
	char spec[64], err[256] = "";
	snprintf(spec, sizeof(spec), "etcd://127.0.0.1:%d", etcd_port);
	CHECK_EQ(fence_open(f, spec, name, err, sizeof(err)), 0);
	CHECK(fence_on(f) && !err[0]);
	CHECK(f->owner[0] && !strchr(f->owner, ' ') && strlen(f->owner) <= ARBITER_OWNER_MAX);
}

/* What etcd records for the VM, read by a third party. */
static void key_is(const char *name, uint64_t gen, const char *owner)
{
	char spec[64], err[256], o[ARBITER_OWNER_MAX + 1] = "junk";
	struct arbiter *a = NULL;
	uint64_t g = 99;
	snprintf(spec, sizeof(spec), "etcd://127.0.0.1:%d", etcd_port);
	CHECK_EQ(arbiter_open(spec, name, &a, err, sizeof(err)), 0);
	int r = arbiter_read(a, &g, o, sizeof(o), LIVE_MS);
	if (r != 1 || g != gen || strcmp(o, owner) != 0)
		fprintf(stderr, "key of %s: %d \"%llu %s\" (%s), want \"%llu %s\"\n", name, r, (unsigned long long)g, o,
			arbiter_error(a), (unsigned long long)gen, owner);
	CHECK_EQ(r, 1);
	CHECK_EQ(g, gen);
	CHECK(strcmp(o, owner) == 0);
	arbiter_close(a);
}

/* The key holds something that is not "G OWNER". */
static void key_is_garbage(const char *name)
{
	char spec[64], err[256], o[ARBITER_OWNER_MAX + 1];
	struct arbiter *a = NULL;
	uint64_t g;
	snprintf(spec, sizeof(spec), "etcd://127.0.0.1:%d", etcd_port);
	CHECK_EQ(arbiter_open(spec, name, &a, err, sizeof(err)), 0);
	CHECK_EQ(arbiter_read(a, &g, o, sizeof(o), LIVE_MS), -EBADMSG);
	arbiter_close(a);
}

static void status_of(struct ft_fence *f, char *st, size_t len)
{
	fence_status(f, st, len);
	one_line("status", st);
}

static void status_has(struct ft_fence *f, const char *want)
{
	char st[512];
	status_of(f, st, sizeof(st));
	if (!strstr(st, want)) {
		fprintf(stderr, "status '%s' lacks '%s'\n", st, want);
		CHECK(0);
	}
}

static void pair_is(struct ft_fence *f, uint64_t want)
{
	uint64_t g = 99;
	char err[512] = "";
	int r = fence_pair(f, &g, err, sizeof(err));
	if (r)
		fprintf(stderr, "fence_pair: %d: %s\n", r, err);
	CHECK_EQ(r, 0);
	CHECK_EQ(g, want);
	CHECK_EQ(f->gen, want);
}

/* fence_pair refused: -errno, generation 0, one line naming says. */
static void pair_fails(struct ft_fence *f, int want, const char *says)
{
	uint64_t g = 99;
	char err[512] = "";
	int r = fence_pair(f, &g, err, sizeof(err));
	printf("fence_pair refused: %d: %s\n", r, err);
	if (want)
		CHECK_EQ(r, want);
	CHECK(r < 0);
	CHECK_EQ(g, 0);
	one_line("fence_pair's error", err);
	CHECK(err[0] && strstr(err, says));
}

/* stop() turns true at a deadline; counts its calls. */
struct stopper {
	uint64_t at_ns;
	int calls;
};

static bool stop_at(void *ctx)
{
	struct stopper *s = ctx;
	s->calls++;
	return now_ns() >= s->at_ns;
}

static struct stopper stop_in(unsigned ms)
{
	return (struct stopper){ .at_ns = now_ns() + (uint64_t)ms * 1000000u };
}

/* ---- no --arbiter ---------------------------------------------------------------------------------------------- */

static bool stop_now(void *ctx)
{
	(void)ctx;
	return true;
}

static void test_inert(void)
{
	struct ft_fence f;
	char err[256] = "junk", who[64] = "junk", st[64] = "junk";
	uint64_t g = 99;
	CHECK_EQ(fence_open(&f, NULL, "vm", err, sizeof(err)), 0);
	CHECK(!fence_on(&f) && !fence_on(NULL));
	CHECK_EQ(fence_pair(&f, &g, err, sizeof(err)), 0);
	CHECK_EQ(g, 0);
	CHECK_EQ(fence_claim(&f, 7, NULL, NULL, who, sizeof(who)), FENCE_WON);
	CHECK(!who[0]);
	snprintf(who, sizeof(who), "junk");
	CHECK_EQ(fence_claim(&f, 0, stop_now, NULL, who, sizeof(who)), FENCE_WON); /* at once, stop never asked */
	CHECK(!who[0]);
	fence_status(&f, st, sizeof(st));
	CHECK(!st[0]);
	fence_close(&f);
	fence_close(&f);
	CHECK(!fence_on(&f));

	/* a bad --arbiter or --name: one line, and nothing open */
	static const struct {
		const char *spec, *name, *says;
	} bad[] = { { "http://127.0.0.1:2379", "vm", "etcd://HOST:PORT" }, { "etcd://127.0.0.1:0", "vm", "1..65535" },
		    { "etcd://127.0.0.1:2379", "a/b", "--name" }, { "etcd://127.0.0.1:2379", "", "--name" } };
	for (size_t i = 0; i < ARRAY_SIZE(bad); i++) {
		err[0] = 0;
		CHECK_EQ(fence_open(&f, bad[i].spec, bad[i].name, err, sizeof(err)), -EINVAL);
		CHECK(!fence_on(&f));
		one_line("fence_open's error", err);
		CHECK(strstr(err, bad[i].says));
		fence_close(&f);
	}
}

/* ---- a primary pairs, a backup takes over ------------------------------------------------------------------- */

static void test_pair(void)
{
	struct ft_fence a, b;
	char who[256] = "junk", st[512];
	fence_at(&a, "pair");
	fence_at(&b, "pair");
	CHECK(strcmp(a.owner, b.owner) != 0);
	status_of(&a, st, sizeof(st));
	printf("status after open: '%s'\n", st);
	CHECK(strncmp(st, " generation=0 arbiter=", 22) == 0);

	pair_is(&a, 1); /* nobody holds it: 0 -> 1 */
	key_is("pair", 1, a.owner);
	status_has(&a, " generation=1 arbiter=reachable arbiter_state=\"held\"");
	pair_is(&a, 1); /* held, and etcd still says so: kept */
	key_is("pair", 1, a.owner);
	pair_is(&b, 2); /* b holds none: the next one */
	key_is("pair", 2, b.owner);
	pair_fails(&a, -EPERM, b.owner); /* a's 1 is gone to b */
	key_is("pair", 2, b.owner);

	/* a lost its peer under 1: b moved on, a must stop */
	CHECK_EQ(fence_claim(&a, 1, NULL, NULL, who, sizeof(who)), FENCE_LOST);
	printf("a lost to: %s\n", who);
	one_line("who", who);
	CHECK(strstr(who, "generation 2") && strstr(who, b.owner));
	CHECK_EQ(a.gen, 1);
	status_has(&a, "arbiter=reachable");
	status_has(&a, b.owner);
	key_is("pair", 2, b.owner);

	/* b lost its peer under 2: it wins 3 */
	snprintf(who, sizeof(who), "junk");
	CHECK_EQ(fence_claim(&b, 2, NULL, NULL, who, sizeof(who)), FENCE_WON);
	CHECK(!who[0]);
	CHECK_EQ(b.gen, 3);
	key_is("pair", 3, b.owner);
	status_has(&b, " generation=3 ");
	status_has(&b, "arbiter=reachable");
	status_of(&b, st, sizeof(st));
	printf("b after winning: '%s'\n", st);
	pair_is(&b, 3); /* pairs a new backup under the generation it won */
	key_is("pair", 3, b.owner);

	/* ...and a lost claim is final: claiming 2 again from 1 still loses, to the holder now */
	CHECK_EQ(fence_claim(&a, 1, NULL, NULL, who, sizeof(who)), FENCE_LOST);
	CHECK(strstr(who, "generation 3") && strstr(who, b.owner));
	fence_close(&a);
	fence_close(&b);
}

/* The largest generation: it is never grown, by a pairing or a claim. */
static void test_top(void)
{
	struct ft_fence f;
	char who[256] = "";
	etcd_put("/ftvmm/top/generation", "18446744073709551615 topper", 27);
	fence_at(&f, "top");
	pair_fails(&f, -EOVERFLOW, "top");
	CHECK_EQ(fence_claim(&f, UINT64_MAX, NULL, NULL, who, sizeof(who)), FENCE_LOST);
	CHECK(who[0]);
	one_line("who", who);
	key_is("top", UINT64_MAX, "topper");
	fence_close(&f);
}

/* A stop() that is true before the first call: given up, etcd untouched. */
static void test_stop_first(void)
{
	struct ft_fence a, b;
	char who[64] = "junk";
	fence_at(&a, "early");
	fence_at(&b, "early");
	pair_is(&a, 1);
	CHECK_EQ(fence_claim(&b, 1, stop_now, NULL, who, sizeof(who)), FENCE_GAVE_UP);
	CHECK(!who[0]);
	CHECK_EQ(b.gen, 0);
	key_is("early", 1, a.owner);
	fence_close(&a);
	fence_close(&b);
}

/* A primary pairs while etcd is frozen: refused (unreachable, status says so); thawed, it pairs on under the
 * generation it holds, and status says etcd answers again. Fails with fence.c as first committed: fence_pair's
 * keep path (held, and etcd still says so) returns 0 without refreshing reachable/state, so status goes on
 * saying arbiter=unreachable arbiter_state="unreachable: Connection timed out" after a successful pairing. */
static void test_pair_frozen(void)
{
	struct ft_fence p;
	char st[512];
	fence_at(&p, "pairfrozen");
	pair_is(&p, 1);
	etcd_freeze();
	uint64_t t0 = now_ns();
	pair_fails(&p, 0, "pairfrozen");
	CHECK(ms_since(t0) < p.try_ms + SLACK_MS);
	status_has(&p, "arbiter=unreachable");
	etcd_thaw();
	pair_is(&p, 1);
	key_is("pairfrozen", 1, p.owner);
	status_of(&p, st, sizeof(st));
	printf("status after pairing again: '%s'\n", st);
	status_has(&p, " generation=1 arbiter=reachable arbiter_state=\"held\"");
	fence_close(&p);
}

/* ---- etcd frozen: it accepts connections and never answers ------------------------------------------------------ */

struct claimer {
	struct ft_fence *f;
	uint64_t expect;
	bool (*stop)(void *);
	void *ctx;
	pthread_barrier_t *go; /* NULL: start at once */
	enum fence_result r;
	int done;
	char who[256];
};

static void *claim_thread(void *arg)
{
	struct claimer *c = arg;
	if (c->go)
		pthread_barrier_wait(c->go);
	c->r = fence_claim(c->f, c->expect, c->stop, c->ctx, c->who, sizeof(c->who));
	__atomic_store_n(&c->done, 1, __ATOMIC_SEQ_CST);
	return NULL;
}

/* The backup claims while etcd is frozen: it keeps trying (status: unreachable), and wins once etcd thaws. */
static void test_frozen_claim(void)
{
	struct ft_fence p, k;
	char st[512] = "";
	pthread_t t;
	fence_at(&p, "frozen");
	fence_at(&k, "frozen");
	pair_is(&p, 1);
	etcd_freeze();
	struct claimer c = { .f = &k, .expect = 1 };
	uint64_t t0 = now_ns();
	CHECK_EQ(pthread_create(&t, NULL, claim_thread, &c), 0);
	bool unreachable = false;
	while (ms_since(t0) < FROZEN_MS) {
		status_of(&k, st, sizeof(st));
		if (strstr(st, " generation=0 arbiter=unreachable arbiter_state=\"unreachable") && strstr(st, "claiming generation 2"))
			unreachable = true;
		CHECK(!__atomic_load_n(&c.done, __ATOMIC_SEQ_CST)); /* nothing ends a claim but an answer */
		usleep(50000);
	}
	printf("status while frozen: '%s'\n", st);
	CHECK(unreachable);
	etcd_thaw();
	uint64_t t1 = now_ns();
	CHECK_EQ(pthread_join(t, NULL), 0);
	printf("claim won %llu ms after the thaw\n", (unsigned long long)ms_since(t1));
	CHECK_EQ(c.r, FENCE_WON);
	CHECK(!c.who[0]);
	CHECK(ms_since(t1) < k.try_ms + 200 + SLACK_MS);
	CHECK_EQ(k.gen, 2);
	key_is("frozen", 2, k.owner);
	status_has(&k, " generation=2 arbiter=reachable arbiter_state=\"held\"");
	fence_close(&p);
	fence_close(&k);
}

/* The claim gives up (stop() turned true) while etcd is frozen: nothing changed in etcd after the thaw. */
static void test_frozen_gave_up(void)
{
	struct ft_fence p, k;
	char who[64] = "junk";
	fence_at(&p, "gaveup");
	fence_at(&k, "gaveup");
	pair_is(&p, 1);
	etcd_freeze();
	struct stopper s = stop_in(STOP_MS);
	uint64_t t0 = now_ns();
	enum fence_result r = fence_claim(&k, 1, stop_at, &s, who, sizeof(who));
	uint64_t ms = ms_since(t0);
	char st[512];
	status_of(&k, st, sizeof(st));
	printf("gave up after %llu ms, %d stop() calls: '%s'\n", (unsigned long long)ms, s.calls, st);
	CHECK_EQ(r, FENCE_GAVE_UP);
	CHECK(!who[0]);
	CHECK(ms >= STOP_MS && ms < STOP_MS + k.try_ms + 200 + SLACK_MS);
	CHECK(s.calls >= 2);
	CHECK_EQ(k.gen, 0);
	CHECK(strstr(st, "arbiter=unreachable") && strstr(st, "gave up"));
	etcd_thaw();
	key_is("gaveup", 1, p.owner);
	usleep(300000); /* a request etcd took in while frozen would be answered by now */
	key_is("gaveup", 1, p.owner);
	pair_is(&p, 1); /* the primary pairs on under it */
	fence_close(&p);
	fence_close(&k);
}

/* ---- both copies claim the same generation at once --------------------------------------------------------------- */

static void test_race(void)
{
	struct ft_fence f[2];
	pthread_barrier_t go;
	int wins[2] = { 0, 0 };
	fence_at(&f[0], "race");
	fence_at(&f[1], "race");
	CHECK_EQ(pthread_barrier_init(&go, NULL, 2), 0);
	for (uint64_t g = 0; g < 10; g++) {
		struct claimer c[2];
		pthread_t t;
		for (int i = 0; i < 2; i++)
			c[i] = (struct claimer){ .f = &f[i], .expect = g, .go = &go };
		CHECK_EQ(pthread_create(&t, NULL, claim_thread, &c[1]), 0);
		claim_thread(&c[0]);
		CHECK_EQ(pthread_join(t, NULL), 0);
		if (!((c[0].r == FENCE_WON && c[1].r == FENCE_LOST) || (c[0].r == FENCE_LOST && c[1].r == FENCE_WON)))
			fprintf(stderr, "race from %llu: %d (%s), %d (%s)\n", (unsigned long long)g, c[0].r, c[0].who, c[1].r,
				c[1].who);
		CHECK((c[0].r == FENCE_WON && c[1].r == FENCE_LOST) || (c[0].r == FENCE_LOST && c[1].r == FENCE_WON));
		int w = c[0].r == FENCE_WON ? 0 : 1, l = 1 - w;
		wins[w]++;
		char said[64];
		snprintf(said, sizeof(said), "generation %llu", (unsigned long long)g + 1);
		one_line("who", c[l].who);
		CHECK(!c[w].who[0]);
		CHECK(strstr(c[l].who, said) && strstr(c[l].who, f[w].owner));
		CHECK_EQ(f[w].gen, g + 1);
		CHECK(f[l].gen != g + 1);
		key_is("race", g + 1, f[w].owner);
	}
	printf("race: A won %d, B %d of 10\n", wins[0], wins[1]);
	pthread_barrier_destroy(&go);
	fence_close(&f[0]);
	fence_close(&f[1]);
}

/* ---- someone else wrote the key ---------------------------------------------------------------------------------- */

static void test_garbage(void)
{
	static const struct {
		const char *v;
		size_t len;
	} bad[] = { { "garbage", 7 }, { "3 two words", 11 }, { "", 0 } };
	for (size_t i = 0; i < ARRAY_SIZE(bad); i++) {
		struct ft_fence f;
		char who[64] = "junk", st[512];
		etcd_put("/ftvmm/junk/generation", bad[i].v, bad[i].len);
		fence_at(&f, "junk");
		pair_fails(&f, 0, "junk");
		CHECK_EQ(f.gen, 0);
		struct stopper s = stop_in(1000);
		uint64_t t0 = now_ns();
		enum fence_result r = fence_claim(&f, i, stop_at, &s, who, sizeof(who));
		uint64_t ms = ms_since(t0);
		status_of(&f, st, sizeof(st));
		printf("claim over '%.*s': %d after %llu ms, %d stop() calls: '%s'\n", (int)bad[i].len, bad[i].v, r,
		       (unsigned long long)ms, s.calls, st);
		CHECK_EQ(r, FENCE_GAVE_UP); /* never won over a value it cannot read */
		CHECK(!who[0]);
		CHECK(ms >= 1000 && ms < 1000 + f.try_ms + 200 + SLACK_MS);
		CHECK(s.calls >= 2);
		CHECK_EQ(f.gen, 0);
		key_is_garbage("junk");
		fence_close(&f);
	}
}

int main(void)
{
	test_inert();
	if (etcd_skip_reason()) {
		fprintf(stderr, "test_fence: SKIP the tests against a real etcd: %s\n", etcd_skip_reason());
		TEST_DONE("test_fence (no arbiter only)");
	}
	etcd_start();
	test_pair();
	test_top();
	test_stop_first();
	test_frozen_claim();
	test_frozen_gave_up();
	test_race();
	test_garbage();
	test_pair_frozen(); /* last: fails with fence.c as of this commit (status stays "unreachable" after pairing) */
	etcd_stop();
	TEST_DONE("test_fence");
}

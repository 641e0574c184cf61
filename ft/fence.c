/* fence.c - who may run the guest: the generation this process holds in the arbiter, and winning the next one. */
#include "fence.h"
#include "arbiter.h"
#include "events.h"
#include "../vmm/util.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#define FENCE_TRY_MS 1000u   /* one arbiter call, all endpoints: a takeover waits at least this on a dead one */
#define FENCE_RETRY_MS 200u  /* between calls while the arbiter does not answer */
#define FENCE_SAY_EVERY 25u  /* ...and a reminder on stderr every this many failed calls */

static void set_state(struct ft_fence *f, int reach, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void set_state(struct ft_fence *f, int reach, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	pthread_mutex_lock(&f->lock);
	vsnprintf(f->state, sizeof(f->state), fmt, ap);
	f->reach = reach;
	pthread_mutex_unlock(&f->lock);
	va_end(ap);
}

/* An arbiter call's failure, for status and stderr: etcd answering with a value that is not a generation
 * is not an outage (nobody can win until an operator repairs the key). */
static const char *failure(int r)
{
	static __thread char buf[96];
	if (r == -EBADMSG)
		return "the key holds something that is not \"GENERATION OWNER\" (repair it)";
	snprintf(buf, sizeof(buf), "unreachable (%s)", strerror(-r));
	return buf;
}

int fence_open(struct ft_fence *f, const char *spec, const char *name, char *err, size_t errlen)
{
	memset(f, 0, sizeof(*f));
	pthread_mutex_init(&f->lock, NULL);
	if (!spec)
		return 0;
	int r = arbiter_open(spec, name, &f->arb, err, errlen);
	if (r)
		return r;
	snprintf(f->name, sizeof(f->name), "%s", name);
	char host[48] = "host";
	gethostname(host, sizeof(host) - 1);
	host[strcspn(host, " \t\n")] = 0; /* the record is "G OWNER": one word */
	uint32_t rnd = 0;
	if (getrandom(&rnd, sizeof(rnd), 0) != sizeof(rnd))
		rnd = (uint32_t)now_ns();
	snprintf(f->owner, sizeof(f->owner), "%s-%d-%08x", host, (int)getpid(), rnd);
	f->try_ms = FENCE_TRY_MS;
	f->reach = f->heard = -1;
	snprintf(f->state, sizeof(f->state), "no generation yet");
	return 0;
}

void fence_close(struct ft_fence *f)
{
	if (f->arb)
		arbiter_close(f->arb);
	f->arb = NULL;
}

/* An arbiter call's outcome: the arbiter_unreachable and arbiter_back events, once per change (a claim
 * retries every FENCE_RETRY_MS while the arbiter does not answer). A key that is not a generation is an
 * answer. */
static void heard(struct ft_fence *f, int r)
{
	int now = r >= 0 || r == -EBADMSG;
	pthread_mutex_lock(&f->lock);
	int was = f->heard;
	f->heard = now;
	pthread_mutex_unlock(&f->lock);
	if (was != 0 && !now)
		ft_event_emit("arbiter_unreachable", "\"endpoint\":%s,\"vm\":%s,\"detail\":%s",
			      FT_JSON_STR(arbiter_endpoint(f->arb)), FT_JSON_STR(f->name), FT_JSON_STR(failure(r)));
	else if (was == 0 && now)
		ft_event_emit("arbiter_back", "\"endpoint\":%s,\"vm\":%s", FT_JSON_STR(arbiter_endpoint(f->arb)),
			      FT_JSON_STR(f->name));
}

/* A claim decided: gen is held by owner (this process when it won). */
static void decided(struct ft_fence *f, uint64_t gen, const char *owner)
{
	pthread_mutex_lock(&f->lock);
	f->winner_gen = gen;
	snprintf(f->winner, sizeof(f->winner), "%s", owner);
	pthread_mutex_unlock(&f->lock);
}

static uint64_t held(struct ft_fence *f)
{
	pthread_mutex_lock(&f->lock);
	uint64_t g = f->gen;
	pthread_mutex_unlock(&f->lock);
	return g;
}

static void hold(struct ft_fence *f, uint64_t gen)
{
	pthread_mutex_lock(&f->lock);
	f->gen = gen;
	snprintf(f->state, sizeof(f->state), "held");
	f->reach = 1;
	pthread_mutex_unlock(&f->lock);
}

int fence_pair(struct ft_fence *f, uint64_t *gen, char *err, size_t errlen)
{
	*gen = 0;
	if (!fence_on(f))
		return 0;
	uint64_t cur = 0;
	char who[128] = "";
	int r = arbiter_read(f->arb, &cur, who, sizeof(who), (int)f->try_ms);
	heard(f, r);
	if (r < 0) {
		set_state(f, r == -EBADMSG, "%s", failure(r));
		snprintf(err, errlen, "arbiter %s: cannot read the generation of %s: %s", arbiter_endpoint(f->arb), f->name,
			 failure(r));
		return r;
	}
	uint64_t mine = held(f);
	if (mine) {
		/* a takeover (or an earlier pairing) won it: pair under it while the arbiter still says so */
		if (cur == mine && strcmp(who, f->owner) == 0) {
			hold(f, mine);
			*gen = mine;
			return 0;
		}
		set_state(f, 1, "superseded: generation %llu of %s", (unsigned long long)cur, who[0] ? who : "nobody");
		snprintf(err, errlen, "arbiter: %s is at generation %llu of %s, not our %llu: another copy runs this guest",
			 f->name, (unsigned long long)cur, who[0] ? who : "nobody", (unsigned long long)mine);
		return -EPERM;
	}
	if (cur == UINT64_MAX) {
		snprintf(err, errlen, "arbiter: the generation of %s cannot grow", f->name);
		return -EOVERFLOW;
	}
	uint64_t now_gen = 0;
	r = arbiter_cas(f->arb, cur, cur + 1, f->owner, (int)f->try_ms, &now_gen, who, sizeof(who));
	heard(f, r);
	if (r < 0) {
		set_state(f, r == -EBADMSG, "%s", failure(r));
		snprintf(err, errlen, "arbiter %s: cannot claim a generation for %s: %s", arbiter_endpoint(f->arb), f->name,
			 failure(r));
		return r;
	}
	if (r == 0) {
		set_state(f, 1, "claim lost: generation %llu of %s", (unsigned long long)now_gen, who[0] ? who : "nobody");
		snprintf(err, errlen, "arbiter: %s moved to generation %llu of %s while this primary claimed one",
			 f->name, (unsigned long long)now_gen, who[0] ? who : "nobody");
		return -EBUSY;
	}
	hold(f, cur + 1);
	*gen = cur + 1;
	return 0;
}

enum fence_result fence_claim(struct ft_fence *f, uint64_t expect, bool (*stop)(void *), void *ctx, char *who,
			      size_t wholen)
{
	if (wholen)
		who[0] = 0;
	if (!fence_on(f))
		return FENCE_WON;
	if (expect == UINT64_MAX) {
		snprintf(who, wholen, "(the generation cannot grow)");
		return FENCE_LOST;
	}
	set_state(f, 1, "claiming generation %llu", (unsigned long long)expect + 1);
	for (unsigned fails = 0;; fails++) {
		if (stop && stop(ctx)) {
			set_state(f, fails == 0, "gave up claiming generation %llu", (unsigned long long)expect + 1);
			return FENCE_GAVE_UP;
		}
		uint64_t cur = 0;
		char owner[128] = "";
		int r = arbiter_cas(f->arb, expect, expect + 1, f->owner, (int)f->try_ms, &cur, owner, sizeof(owner));
		heard(f, r);
		if (r == 1) {
			if (fails)
				warnx("ft: arbiter %s answers again", arbiter_endpoint(f->arb));
			hold(f, expect + 1);
			decided(f, expect + 1, f->owner);
			return FENCE_WON;
		}
		if (r == 0) {
			snprintf(who, wholen, "generation %llu of %s", (unsigned long long)cur, owner[0] ? owner : "nobody");
			set_state(f, 1, "lost: %s", who);
			decided(f, cur, owner);
			return FENCE_LOST;
		}
		set_state(f, r == -EBADMSG, "%s: claiming generation %llu", failure(r), (unsigned long long)expect + 1);
		if (fails % FENCE_SAY_EVERY == 0)
			warnx("ft: arbiter %s: %s: claiming generation %llu of %s, nothing runs on until it can be won",
			      arbiter_endpoint(f->arb), failure(r), (unsigned long long)expect + 1, f->name);
		usleep(FENCE_RETRY_MS * 1000u);
	}
}

void fence_status(struct ft_fence *f, char *buf, size_t len)
{
	if (!len)
		return;
	buf[0] = 0;
	if (!fence_on(f))
		return;
	pthread_mutex_lock(&f->lock);
	snprintf(buf, len, " generation=%llu arbiter=%s arbiter_state=\"%s\"", (unsigned long long)f->gen,
		 f->reach < 0 ? "not-asked" : f->reach ? "reachable" : "unreachable", f->state);
	pthread_mutex_unlock(&f->lock);
}

void fence_info(struct ft_fence *f, struct ft_fence_info *i)
{
	memset(i, 0, sizeof(*i));
	if (!fence_on(f))
		return;
	pthread_mutex_lock(&f->lock);
	i->on = true;
	i->gen = f->gen;
	i->reach = f->reach < 0 ? "not-asked" : f->reach ? "reachable" : "unreachable";
	snprintf(i->state, sizeof(i->state), "%s", f->state);
	i->winner_gen = f->winner_gen;
	snprintf(i->winner, sizeof(i->winner), "%s", f->winner);
	pthread_mutex_unlock(&f->lock);
}

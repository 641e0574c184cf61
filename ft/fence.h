/* fence.h - who may run the guest: the generation this process holds in the arbiter, and winning the next one. */
#ifndef FTVMM_FENCE_H
#define FTVMM_FENCE_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct arbiter;

/* The rule (README: fault tolerance, the arbiter): the arbiter's key for the VM holds "G OWNER". A primary
 * pairs under a generation G it holds; the backup learns G in the handshake and every epoch carries it. Whoever
 * loses its peer (the backup: the primary; the primary: the backup) may run the guest on only after winning
 * CAS(G -> G+1, owner = itself); the loser stops its copy. One compare-and-swap, so two copies never both run.
 * Without an arbiter the struct is inert (arb NULL) and a partition can run two copies. */
struct ft_fence {
	struct arbiter *arb; /* NULL: no --arbiter */
	char name[72];       /* --name: the VM's key in the arbiter */
	char owner[96];      /* this process, as the arbiter records it: HOST-PID-RANDOM */
	unsigned try_ms;     /* bound on one arbiter call (all its endpoints) */
	pthread_mutex_t lock; /* the fields below: status readers vs the thread that claims */
	uint64_t gen;        /* the generation this process holds (0: none yet) */
	char state[200];     /* for status: "held", "claiming: <why>", "lost to ..." */
	int reach;           /* the last arbiter call: 1 answered, 0 did not, -1 none made yet */
	int heard;           /* the same, counting only calls made: its changes are the arbiter_* events */
	uint64_t winner_gen; /* the last claim's outcome: the generation it was about and who holds it */
	char winner[128];
};

/* Open the arbiter named by spec ("etcd://HOST:PORT[,...]") for the VM called name. spec NULL: an inert
 * fence (always 0). 0, or -errno with one line in err. */
int fence_open(struct ft_fence *f, const char *spec, const char *name, char *err, size_t errlen);
void fence_close(struct ft_fence *f);
static inline bool fence_on(const struct ft_fence *f) { return f && f->arb; }

/* A primary about to pair: the generation to pair under. One held already (won by a takeover or an earlier
 * pairing) is kept if the arbiter still records it as ours; else this process claims the next one. 0 with
 * *gen set (0 without an arbiter), or -errno with one line in err (unreachable, or someone else holds it). */
int fence_pair(struct ft_fence *f, uint64_t *gen, char *err, size_t errlen);

enum fence_result {
	FENCE_WON,     /* this process holds expect+1: it alone may run the guest */
	FENCE_LOST,    /* someone else moved the generation: this copy must stop (winner in `who`) */
	FENCE_GAVE_UP, /* stop() turned true before the arbiter answered */
};
/* After losing the peer paired under generation expect: CAS(expect -> expect+1) until it is won or lost.
 * While the arbiter is unreachable it retries forever (one line on stderr when that starts and ends,
 * status says so) unless stop(ctx) (stop may be NULL) turns true. Without an arbiter: FENCE_WON at once. */
enum fence_result fence_claim(struct ft_fence *f, uint64_t expect, bool (*stop)(void *), void *ctx, char *who,
			      size_t wholen);
/* ", generation=G arbiter=STATE" for status lines (empty without an arbiter). */
void fence_status(struct ft_fence *f, char *buf, size_t len);

/* What fence_status says, as fields (`ctl status --json`); all zero and on=false without an arbiter. */
struct ft_fence_info {
	bool on;
	uint64_t gen;        /* held (0: none) */
	const char *reach;   /* "not-asked", "reachable", "unreachable" */
	char state[200];     /* as in status: "held", "claiming generation 4", "lost: generation 4 of ..." */
	uint64_t winner_gen; /* the last claim's outcome (0: no claim decided yet) */
	char winner[128];
};
void fence_info(struct ft_fence *f, struct ft_fence_info *i);

#endif

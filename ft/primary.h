/* primary.h - the FT epoch engine on the primary: initial sync, checkpoints, streaming, acks, output commit. */
#ifndef FTVMM_PRIMARY_H
#define FTVMM_PRIMARY_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "../vmm/dirty.h"
#include "compress.h"
#include "cow.h"
#include "disklog.h"
#include "outbuf.h"
#include "proto.h"

struct vm;
struct platform;
struct machine;
struct ft_staged;
struct ft_fence;

#define FT_DEFAULT_EPOCH_MS 50
#define FT_DEFAULT_TIMEOUT_MS 2000
#define MAX_INFLIGHT_EPOCHS 3 /* staged but unacked: beyond this, checkpoints wait (the guest does not) */
/* Staging buffers in all, idle in the pool or in use. A staged epoch holds one until it is streamed,
 * and every checkpoint, a planned failover's last one too, is taken only while fewer than
 * MAX_INFLIGHT_EPOCHS epochs are unacked: so at most that many are in use at once, and a pool of as
 * many keeps each for reuse. (Was MAX_INFLIGHT_EPOCHS + 1: a slot only the failover's checkpoint,
 * taken without waiting, could fill, and no epoch came after it to reuse it.) */
#define FT_POOL MAX_INFLIGHT_EPOCHS

struct ft_primary {
	struct vm *vm;
	struct platform *plat;
	const struct machine *machine;
	char peer[256];
	unsigned epoch_ms, timeout_ms;
	enum ft_codec codec;                /* the epochs' page payload (--compress), named in the HELLO */
	struct ft_packer packer;            /* the sender's: zero pages flagged, the rest compressed */
	bool whole_pages;                   /* the backup is an older ftvmm (its HELLO_OK names no codec) and codec is
					     * none: epochs carry their pages whole, without FT_EPOCH_PACKED */
	FILE *stats;
	struct ft_link data, hb;            /* TLS sessions on both when tls is set */
	const struct ft_tls_creds *tls;     /* client credentials (NULL: plain links, loopback or --ft-insecure) */
	struct ft_fence *fence;             /* the arbiter (ft/fence.h; inert without --arbiter), kept by the caller */
	uint64_t gen;                       /* the generation paired under (0: no arbiter) */
	pthread_t engine, sender, receiver, heartbeat;
	bool threads_started;

	uint64_t hb_sent_ns, frozen_at_ns; /* heartbeat thread: its last heartbeat out, and when it saw this process
					    * frozen (no heartbeat out for the timeout) */
	uint64_t took_over_from;           /* the backup's FT_TAKEOVER said it takes over (its last commit + 1; 0: not) */
	bool hb_ended;                     /* the heartbeat thread read what was left on its link and ended */
	pthread_mutex_t hb_send_lock; /* the heartbeat thread and mark_lost both send on hb */
	pthread_mutex_t lock;
	pthread_cond_t cond;
	bool stop;          /* the guest ended or ftvmm is shutting down: no more periodic checkpoints */
	bool closing;       /* ...and the links go too (after a planned failover's last epoch) */
	bool link_down;     /* a link failed, also while stopping (when it no longer makes us `lost`) */
	bool early;         /* the disk log is filling: take the next checkpoint now */
	bool pausing;       /* a checkpoint's pause is on: the sender waits (sender_gate) */
	bool sinks_on;      /* the NICs' TX goes to p->out (installed with the baseline, removed unprotected) */
	bool lost;          /* the backup is gone: run unprotected */
	bool frozen_fence;  /* ...after this process was frozen past the timeout (or the backup said it takes over,
			     * when it said so before the loss was marked): stop the guest instead (primary_fenced) */
	bool protected_;    /* baseline committed on the backup */
	char lost_reason[160];
	uint64_t epoch;     /* last checkpoint taken */
	size_t state_len_last; /* its state's size: sizes the next capture's buffer */
	uint64_t acked;     /* last epoch the backup committed */
	uint64_t sent_hi;   /* highest epoch handed to the data link (set before its send: acks may overtake) */
	bool sent_any;
	uint64_t started_ns, last_commit_ns;
	struct ft_staged *sendq, *sendq_tail; unsigned sendq_len;
	struct ft_staged *ackq, *ackq_tail;   /* sent, waiting for their ack */

	unsigned long *dirty;                 /* the initial sync's page bitmap */
	struct dirty_set dset;                /* an epoch's dirty pages, harvested in the pause (O(dirty)) */
	enum ft_ckpt ckpt;                    /* --checkpoint: pages copied in the pause, or copy-on-write */
	struct ft_cow cow;                    /* cow mode's userfaultfd and copier (initialised only then) */
	bool cow_warned;                      /* said once that protecting failed and the pause copied instead */
	/* staging buffers for the pages of epochs in flight, reused: a fresh multi-MiB malloc is an mmap
	 * whose every page faults on first touch, inside the pause */
	struct ft_pagebuf { uint8_t *p; size_t cap; } pool[FT_POOL];
	unsigned npool;
	struct disklog disklog;
	struct disklog_hook hooks[16];
	struct outbuf out[8];
	unsigned nouts;
};

/* Connect and shake hands (bounded by timeout_ms); ft_primary_go then starts the engine. The guest
 * keeps running during the initial sync. codec: how the sender packs each epoch's pages (the HELLO names
 * it; a backup that does not know it refuses; one that predates packed epochs gets whole pages with codec
 * none, and is refused with lz4 or zstd). delta_cache (bytes, 0: off; at most guest RAM is used): the sender
 * keeps the pages it sent and sends a page as a delta against its last content where that is small, to a
 * backup that says it applies them (ft/delta.h). With tls (client credentials, kept by the caller until
 * ft_primary_stop) both links are TLS and the backup must authenticate; without, peer must be a
 * loopback address unless insecure. 0 or -errno with one line in err (unreachable peer, failed
 * authentication, another protocol or version, refused shape...). With an arbiter (fence on) it first
 * takes the generation to pair under (fence_pair), and the backup must use the same arbiter. */
int ft_primary_start(struct ft_primary *p, struct vm *vm, struct platform *plat, const struct machine *machine,
		     const char *peer, const struct ft_tls_creds *tls, bool insecure, unsigned epoch_ms,
		     enum ft_codec codec, uint64_t delta_cache, enum ft_ckpt ckpt, unsigned timeout_ms, const char *stats_path, struct ft_fence *fence, char *err,
		     size_t errlen);
/* Start the engine threads once the vCPUs run (initial sync, then epochs). 0 or -errno. */
int ft_primary_go(struct ft_primary *p);
/* Why the protected run ends. Output of epochs the backup never acked is dropped in every case: only
 * going on as the one running copy (backup lost, engine goes unprotected) releases it. */
enum ft_stop {
	FT_STOP_QUIT = 0,    /* an error, a fence, a failed start, a re-protect: the backup (if any) takes over */
	FT_STOP_GUEST_ENDED, /* poweroff/reboot/panic: BYE, the guest ends on the backup too */
	FT_STOP_HANDOVER,    /* SIGTERM / ctl stop: planned failover. Call after the vCPUs stopped: one last
			      * checkpoint (once fewer than MAX_INFLIGHT_EPOCHS are unacked), its ack
			      * awaited, both within the ft timeout, so its output may go out; then the
			      * links close and the backup takes over */
};
/* End protection as `why` says and join every thread. */
void ft_primary_stop(struct ft_primary *p, enum ft_stop why);
/* One-line status for `ftvmm ctl status`. */
void ft_primary_status(void *ctx, char *buf, size_t len);
/* The same as fields, and the output held right now (`ctl status --json`). */
struct ft_primary_info {
	bool started;               /* protection was started (else only protected=false applies) */
	bool protected_;            /* the backup committed the baseline and is not lost */
	bool lost;                  /* the backup is gone (reason says why): the link is down */
	char peer[256];
	uint64_t epoch, last_commit;
	int64_t last_commit_ms_ago; /* -1: nothing committed yet */
	char reason[160];
	uint64_t held_packets, held_bytes; /* guest output waiting for an ack, all NICs */
	uint64_t generation;        /* paired under (0: no arbiter) */
};
void ft_primary_info(struct ft_primary *p, struct ft_primary_info *i);
bool ft_primary_active(struct ft_primary *p);

#endif

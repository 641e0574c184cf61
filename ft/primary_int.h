/* primary_int.h - what the primary's three files share: the staged epoch, the link threads, the initial sync. */
#ifndef FTVMM_PRIMARY_INT_H
#define FTVMM_PRIMARY_INT_H

#include "primary.h"
#include "proto.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* One checkpoint, from its pause until its ack: what the sender streams, then its telemetry. */
struct ft_staged {
	struct ft_staged *next;
	struct ft_epoch_hdr hdr;
	uint8_t *pages;   /* from the pool: npages pages, then their npages pfns */
	uint64_t *pfns;   /* inside pages */
	size_t pages_cap; /* bytes of that pool buffer */
	void *state;
	uint8_t *disk;
	uint64_t disk_writes;
	/* telemetry */
	uint64_t t_start_ns, stop_ns, harvest_ns, copy_ns, state_ns, resume_ns, pause_ns;
	uint64_t state_buf_ns, state_cpus_ns, state_devices_ns, state_finish_ns; /* parts of state_ns */
	unsigned state_tries;                                                   /* buffers the capture tried */
	uint64_t sent_ns, bytes; /* bytes: the FT_EPOCH payload as sent */
	uint64_t delta_pages; /* the sender's packing: pages sent as deltas */
	uint64_t zero_pages, wire_bytes, compress_ns; /* the sender's packing: pages flagged zero, the page payload
						       * on the wire, its thread's CPU time packing */
	uint64_t pkts_held;
	uint64_t cow_faults, cow_ns; /* cow mode: writes that waited for their page's copy, and the copier's time
				      * from the arm to the last page (filled in when the copy ends) */
};

/* primary.c: the staging buffers. release gives the epoch's buffers back (the pages to the pool) and
 * keeps s for its telemetry; free does that and frees s (NULL is fine). */
void primary_staged_release(struct ft_primary *p, struct ft_staged *s);
void primary_staged_free(struct ft_primary *p, struct ft_staged *s);

/* primary.c: the data link's gate (ft_link.gate): returns once no checkpoint pause is on. */
void primary_sender_gate(void *ctx);

/* primary.c: ts = CLOCK_MONOTONIC (p->cond's clock) + ns, for pthread_cond_timedwait. */
void primary_deadline_in(struct timespec *ts, uint64_t ns);
/* When the next checkpoint starts: the last one's start (next) plus the interval, but never sooner than the last
 * pause's length after now (the guest runs at least as long as it was paused). */
uint64_t primary_next_epoch(uint64_t next, uint64_t epoch_ns, uint64_t now, uint64_t pause_ns);

/* primary_sync.c: the initial sync while the guest runs (disk logging on, disks, memory, pre-copy
 * rounds). 0 or -errno. */
int primary_initial_sync(struct ft_primary *p);

/* primary_link.c: connect to peer (only to its loopback addresses if loopback_only), authenticate
 * with p->tls if set, and shake hands (each step bounded by p->timeout_ms). 0, or -errno with one line
 * in err. */
int primary_connect(struct ft_primary *p, const char *peer, bool loopback_only, char *err, size_t errlen);
/* The link threads (arg: the struct ft_primary). */
void *primary_sender_thread(void *arg);
void *primary_receiver_thread(void *arg);
void *primary_heartbeat_thread(void *arg);
/* The backup is lost: first failure wins, every thread blocked on a socket is woken. fmt has one %s. */
void primary_mark_lost(struct ft_primary *p, const char *fmt, const char *detail);
/* No more periodic checkpoints: stopping, or the backup is lost. */
bool primary_should_quit(struct ft_primary *p);

#endif

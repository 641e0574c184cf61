/* primary.c - the FT epoch engine: per epoch pause -> harvest -> copy -> capture state -> resume; the guest runs while it streams. */
#include "primary.h"
#include "primary_int.h"
#include "../devices/virtio_blk.h"
#include "../devices/virtio_net.h"
#include "../devices/platform.h"
#include "../vmm/util.h"
#include "../vmm/vcpu.h"
#include "../vmm/vm.h"
#include "events.h"
#include "fence.h"
#include "state.h"

#include <errno.h>
#include <linux/kvm.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

/*
 * This file reads in the order the engine runs:
 *   engine_thread      the loop. primary_initial_sync (primary_sync.c), hold_output from the
 *                      baseline on, then each epoch: wait_for_room -> checkpoint -> enqueue (to the
 *                      sender, primary_link.c) -> wait_next_epoch. engine_end when it stops.
 *   checkpoint         one epoch, inside one pause:
 *                      vm_pause -> harvest -> copy_pages -> state_capture -> seal_epoch -> vm_resume
 *   the staging pool   the buffers copy_pages fills (cow mode: the copier) and the sender gives back
 *   start / go / stop  pairing (primary_connect), the four threads, and the end of protection
 *                      (a planned failover's last epoch, held output released or dropped)
 */


static void hold_output(struct ft_primary *p);
static bool wait_for_room(struct ft_primary *p);
static struct ft_staged *checkpoint(struct ft_primary *p, uint64_t epoch, bool baseline, int *err);
static void enqueue(struct ft_primary *p, struct ft_staged *s);
static void wait_next_epoch(struct ft_primary *p, uint64_t *next, uint64_t pause_ns);
static void engine_end(struct ft_primary *p, int r);
static void go_unprotected(struct ft_primary *p);
static void claim_or_stop(struct ft_primary *p);

/* ---- the loop -------------------------------------------------------------------------------- */

static void *engine_thread(void *arg)
{
	struct ft_primary *p = arg;
	int r = primary_initial_sync(p);
	if (!r && !primary_should_quit(p))
		hold_output(p);
	uint64_t next = now_ns();
	for (uint64_t epoch = 0; !r && !primary_should_quit(p); epoch++) {
		if (!wait_for_room(p))
			break;
		struct ft_staged *s = checkpoint(p, epoch, epoch == 0, &r);
		if (!s)
			break;
		uint64_t pause_ns = s->pause_ns; /* (s is the sender's once enqueued) */
		enqueue(p, s); /* sendq_len counts epochs not yet acked: the receiver lowers it */
		wait_next_epoch(p, &next, pause_ns);
	}
	engine_end(p, r);
	return NULL;
}

static void nic_wake(void *nic)
{
	virtio_net_kick(nic);
}

/* From the baseline on, guest output waits for the backup's ack: each NIC's TX goes to its outbuf. */
static void hold_output(struct ft_primary *p)
{
	if (vm_pause(p->vm))
		return;
	unsigned n = p->plat->nnics;
	for (unsigned i = 0; i < n; i++) {
		outbuf_init(&p->out[i], p->plat->tap_fds[i], 0);
		outbuf_set_wake(&p->out[i], nic_wake, p->plat->nics[i]);
		struct net_tx_sink sink = { .send = outbuf_sink_send, .ctx = &p->out[i] };
		virtio_net_set_tx_sink(p->plat->nics[i], &sink);
	}
	pthread_mutex_lock(&p->lock);
	p->nouts = n; /* status reads the outbufs from here on (ft_primary_info) */
	pthread_mutex_unlock(&p->lock);
	p->sinks_on = true;
	vm_resume(p->vm);
}

/* Back-pressure: at most MAX_INFLIGHT_EPOCHS unacked. false when the engine must stop instead. */
static bool wait_for_room(struct ft_primary *p)
{
	pthread_mutex_lock(&p->lock);
	while (!p->stop && !p->lost && p->sendq_len >= MAX_INFLIGHT_EPOCHS)
		pthread_cond_wait(&p->cond, &p->lock);
	pthread_mutex_unlock(&p->lock);
	if (primary_should_quit(p))
		return false;
	pthread_mutex_lock(&p->lock);
	p->early = false;
	pthread_mutex_unlock(&p->lock);
	return true;
}

/* ---- one checkpoint --------------------------------------------------------------------------- */

static int harvest(struct ft_primary *p, struct ft_epoch_hdr *h);
static int copy_pages(struct ft_primary *p, struct ft_staged *s);
static int seal_epoch(struct ft_primary *p, struct ft_staged *s, uint64_t epoch);
static uint8_t *pool_get(struct ft_primary *p, size_t bytes, size_t *cap);

/* The sender encrypts and copies into the socket beside the guest; during a pause (2 CPUs in the test
 * bed) that work competed with the copy step and made it cost 2-4x per page with TLS
 * (tests/bench/results/ft-20261207-075454): it now waits between chunks while the pause lasts. */
static void set_pausing(struct ft_primary *p, bool on)
{
	pthread_mutex_lock(&p->lock);
	p->pausing = on;
	if (!on)
		pthread_cond_broadcast(&p->cond);
	pthread_mutex_unlock(&p->lock);
}

void primary_sender_gate(void *ctx)
{
	struct ft_primary *p = ctx;
	pthread_mutex_lock(&p->lock);
	while (p->pausing && !p->lost && !p->closing)
		pthread_cond_wait(&p->cond, &p->lock);
	pthread_mutex_unlock(&p->lock);
}

/* Everything of epoch `epoch` taken inside one pause, so the guest may run on while it streams: the
 * pages it dirtied, copied; the machine state; its disk writes; its held output sealed. NULL with
 * *err when the pause or a step failed (then nothing is staged, the guest runs). */
static struct ft_staged *checkpoint(struct ft_primary *p, uint64_t epoch, bool baseline, int *err)
{
	struct ft_staged *s = calloc(1, sizeof(*s));
	if (!s) {
		*err = -ENOMEM;
		return NULL;
	}
	uint64_t t[6];
	/* the last epoch's copy-on-write copy ends before this pause begins, never inside it */
	int cr = p->ckpt == FT_CKPT_COW ? cow_wait(&p->cow) : 0;
	if (cr) {
		free(s);
		*err = cr;
		return NULL;
	}
	set_pausing(p, true);
	t[0] = s->t_start_ns = now_ns();
	int r = vm_pause(p->vm);
	t[1] = now_ns();
	if (r) {
		set_pausing(p, false);
		free(s);
		*err = r;
		return NULL;
	}
	r = harvest(p, &s->hdr);
	t[2] = now_ns();
	r = r ? r : copy_pages(p, s);
	t[3] = now_ns();
	size_t state_len = 0;
	struct state_times st = { 0 };
	r = r ? r : state_capture_timed(p->vm, p->machine, p->state_len_last, &s->state, &state_len, &st);
	t[4] = now_ns();
	int sr = seal_epoch(p, s, epoch); /* after a failed step too, as every pause always has */
	r = r ? r : sr;
	vm_resume(p->vm);
	t[5] = now_ns();
	set_pausing(p, false);
	if (r) {
		primary_staged_free(p, s);
		*err = r;
		return NULL;
	}
	s->hdr.epoch = epoch;
	s->hdr.state_len = state_len;
	s->hdr.flags = baseline ? FT_EPOCH_BASELINE : 0;
	s->hdr.generation = p->gen;
	s->stop_ns = t[1] - t[0];
	s->harvest_ns = t[2] - t[1];
	s->copy_ns = t[3] - t[2];
	s->state_ns = t[4] - t[3];
	s->state_cpus_ns = st.cpus_ns;
	s->state_devices_ns = st.devices_ns;
	s->state_finish_ns = st.finish_ns;
	s->state_buf_ns = st.buf_ns;
	s->state_tries = st.tries;
	p->state_len_last = state_len;
	s->resume_ns = t[5] - t[4];
	s->pause_ns = t[5] - t[0];
	return s; /* its pages are packed (zero pages, compression) by the sender, never in the pause */
}

/* The pages written since the last checkpoint: KVM's log of guest writes, then the VMM's own (used rings,
 * RX buffers, disk reads) not among them, into p->dset, counted for the header (npages, guest_dirty,
 * device_dirty). With the dirty ring this costs O(pages written), whatever the guest's RAM. */
static int harvest(struct ft_primary *p, struct ft_epoch_hdr *h)
{
	dirty_set_clear(&p->dset);
	int r = vm_dirty_collect(p->vm, &p->dset, &h->guest_dirty, &h->device_dirty);
	h->npages = p->dset.n;
	return r;
}

/* The dirty pages into staging so the guest may run on while the epoch streams. Pages and pfns share
 * one pooled buffer, which the sender gives back, so the pause reuses memory already faulted in. In cow
 * mode the pages are only write-protected here and the copier fills the buffer while the guest runs
 * (ft/cow.c; the sender waits for it, cow_wait); if protecting fails, they are copied here after all. */
static int copy_pages(struct ft_primary *p, struct ft_staged *s)
{
	uint64_t n = s->hdr.npages;
	if (!n)
		return 0;
	s->pages = pool_get(p, n * (PAGE_SIZE + sizeof(uint64_t)), &s->pages_cap);
	if (!s->pages)
		return -ENOMEM;
	s->pfns = (uint64_t *)(s->pages + n * PAGE_SIZE);
	memcpy(s->pfns, p->dset.pfns, n * sizeof(uint64_t));
	if (p->ckpt == FT_CKPT_COW) {
		int r = cow_arm(&p->cow, s->pfns, n, s->pages, &s->cow_faults, &s->cow_ns);
		if (!r)
			return 0;
		if (!p->cow_warned)
			warnx("ft: copy-on-write of epoch pages failed (%s): copied in the pause", strerror(-r));
		p->cow_warned = true;
	}
	const struct guest_mem *m = &p->vm->mem;
	for (uint64_t k = 0; k < n; k++)
		memcpy(s->pages + k * PAGE_SIZE, m->host + (s->pfns[k] << PAGE_SHIFT), PAGE_SIZE);
	return 0;
}

/* The epoch's disk writes (disklog, drained always) and the output it held (sealed: released on its
 * ack). Its packets held so far count for the telemetry. */
static int seal_epoch(struct ft_primary *p, struct ft_staged *s, uint64_t epoch)
{
	size_t disk_len = 0;
	int r = disklog_take(&p->disklog, &s->disk, &disk_len, &s->disk_writes);
	s->hdr.disk_len = disk_len;
	for (unsigned i = 0; i < p->nouts; i++) {
		s->pkts_held += outbuf_pending(&p->out[i]);
		outbuf_seal(&p->out[i], epoch);
	}
	return r;
}

static void enqueue(struct ft_primary *p, struct ft_staged *s)
{
	pthread_mutex_lock(&p->lock);
	if (p->sendq_tail)
		p->sendq_tail->next = s;
	else
		p->sendq = s;
	p->sendq_tail = s;
	p->sendq_len++;
	p->epoch = s->hdr.epoch;
	pthread_cond_broadcast(&p->cond);
	pthread_mutex_unlock(&p->lock);
}

/* CLOCK_MONOTONIC (p->cond's clock) ns from now. */
void primary_deadline_in(struct timespec *ts, uint64_t ns)
{
	clock_gettime(CLOCK_MONOTONIC, ts);
	ts->tv_sec += (time_t)(ns / 1000000000ull);
	ts->tv_nsec += (long)(ns % 1000000000ull);
	if (ts->tv_nsec >= 1000000000L) {
		ts->tv_sec++;
		ts->tv_nsec -= 1000000000L;
	}
}

uint64_t primary_next_epoch(uint64_t next, uint64_t epoch_ns, uint64_t now, uint64_t pause_ns)
{
	next += epoch_ns;
	/* Fell behind (a pause as long as the interval, a slow host): do not burst, and leave the guest at least
	 * as long to run as the last pause took. Without that, a pause that outgrows the interval is followed by
	 * the next one at once and the guest starves: seen in the test bed with a 25 ms epoch on a loaded host, a
	 * 1-vCPU guest protected from boot printed nothing in 130 s. FT then costs at most half the guest's time. */
	if (next < now + pause_ns)
		next = now + pause_ns;
	return next;
}

/* Until the next epoch is due, or sooner: stopping, the backup lost, or the disk log filling (early). */
static void wait_next_epoch(struct ft_primary *p, uint64_t *next, uint64_t pause_ns)
{
	uint64_t now = now_ns();
	*next = primary_next_epoch(*next, p->epoch_ms * 1000000ull, now, pause_ns);
	pthread_mutex_lock(&p->lock);
	struct timespec ts;
	primary_deadline_in(&ts, *next - now);
	while (!p->stop && !p->lost && !p->early && pthread_cond_timedwait(&p->cond, &p->lock, &ts) != ETIMEDOUT)
		;
	pthread_mutex_unlock(&p->lock);
}

/* Must this copy stop rather than run on alone once the backup is lost? It was frozen past the timeout when the
 * loss was marked, or the backup said it took over: that notice may be read after another thread marked the loss,
 * so the answer is derived here, never stored. Call with p->lock held. */
static bool primary_fenced(struct ft_primary *p)
{
	return p->frozen_fence || __atomic_load_n(&p->took_over_from, __ATOMIC_ACQUIRE);
}

/* The engine stopped: a replication failure loses the backup; a lost backup leaves the guest running
 * unprotected, unless this process was frozen past the timeout or the backup said it took over (primary_fenced:
 * then it stops its copy). */
static void engine_end(struct ft_primary *p, int r)
{
	/* A pause refused because the VM is ending (the guest powered off, a stop request): not a replication
	 * failure. ft_primary_stop, called once the vCPUs are gone, tells the backup what happened (a BYE for a
	 * guest that ended, a last epoch for a planned failover); going unprotected here would tell it that the
	 * primary runs on, and the backup of a guest that shut down would exit 1 instead of 0. */
	if (r == -ECANCELED)
		r = 0;
	if (r && !primary_should_quit(p))
		primary_mark_lost(p, "replication failed: %s", r == -EFBIG ? "the guest wrote more to disk in one epoch than "
				  "the disk log holds" : strerror(-r));
	pthread_mutex_lock(&p->lock);
	/* Before deciding between running on alone and stopping: the heartbeat thread reads what the backup left
	 * on its link (an FT_TAKEOVER behind the heartbeats a freeze left unread, after another thread saw the
	 * data link close). It ends at once, the links being down; the deadline is only a bound. */
	struct timespec ts;
	primary_deadline_in(&ts, 2000 * 1000000ull);
	while (p->lost && !fence_on(p->fence) && !p->hb_ended &&
	       pthread_cond_timedwait(&p->cond, &p->lock, &ts) != ETIMEDOUT)
		;
	bool lost = p->lost, fence = primary_fenced(p), was = p->protected_;
	pthread_mutex_unlock(&p->lock);
	uint64_t took_over = __atomic_load_n(&p->took_over_from, __ATOMIC_ACQUIRE);
	if (lost) /* the lost_reason is final once lost is set */
		ft_event_emit("unprotected", "\"role\":\"primary\",\"peer\":%s,\"reason\":%s,\"was_protected\":%s,"
			      "\"action\":\"%s\"", FT_JSON_STR(p->peer), FT_JSON_STR(p->lost_reason), was ? "true" : "false",
			      fence_on(p->fence) ? "claim" : fence ? "stop" : "run-on");
	if (lost && fence_on(p->fence)) {
		claim_or_stop(p);
	} else if (lost && fence && took_over) {
		warnx("ft: the backup heard nothing from this primary for the %u ms timeout and took over (its last commit "
		      "then: epoch %llu): stopping this copy of the guest", p->timeout_ms, (unsigned long long)(took_over - 1));
		vm_request_exit(p->vm, VM_EXIT_ERROR);
	} else if (lost && fence) {
		/* Frozen past the timeout, then the backup is gone: it saw a dead primary and most likely
		 * runs the guest now. Running on here would make two copies: this one stops (fencing). */
		warnx("ft: this primary was frozen longer than the %u ms timeout and then lost its backup (%s): the "
		      "backup has most likely taken over; stopping this copy of the guest", p->timeout_ms, p->lost_reason);
		vm_request_exit(p->vm, VM_EXIT_ERROR);
	} else if (lost) {
		warnx("ft: backup lost (%s): guest continues UNPROTECTED", p->lost_reason);
		go_unprotected(p);
	}
}

static bool stopping(void *ctx)
{
	struct ft_primary *p = ctx;
	pthread_mutex_lock(&p->lock);
	bool s = p->stop;
	pthread_mutex_unlock(&p->lock);
	return s;
}

/* With an arbiter, losing the backup decides nothing by itself: the backup may be alive and claiming too.
 * Output stays held (the guest runs; its clients wait) until this copy wins the next generation; if the
 * backup won it, it runs the guest from its last commit and this copy stops, its held output dropped. */
static void claim_or_stop(struct ft_primary *p)
{
	warnx("ft: backup lost (%s): output held until the arbiter decides who runs the guest", p->lost_reason);
	char who[192];
	enum fence_result r = fence_claim(p->fence, p->gen, stopping, p, who, sizeof(who));
	struct ft_fence_info fi;
	fence_info(p->fence, &fi);
	if (r != FENCE_GAVE_UP)
		ft_event_emit(r == FENCE_WON ? "takeover_won" : "takeover_lost",
			      "\"role\":\"primary\",\"generation\":%llu,\"winner\":%s", (unsigned long long)fi.winner_gen,
			      FT_JSON_STR(fi.winner));
	switch (r) {
	case FENCE_WON:
		warnx("ft: won generation %llu from the arbiter: guest continues UNPROTECTED",
		      (unsigned long long)p->gen + 1);
		go_unprotected(p);
		break;
	case FENCE_LOST:
		warnx("ft: the arbiter is at %s: the backup runs the guest now; stopping this copy, its held output "
		      "dropped", who);
		vm_request_exit(p->vm, VM_EXIT_ERROR);
		break;
	case FENCE_GAVE_UP:
		break; /* stopping: nothing held goes out (ft_primary_stop drops unacked output) */
	}
}

/* Back to running unprotected: stop holding output (release it all: there is no backup whose
 * state it must wait for), stop logging disk writes and dirty pages. Done with the VM paused so the
 * switch is atomic with respect to the guest. */
static void go_unprotected(struct ft_primary *p)
{
	if (vm_pause(p->vm) == 0) {
		for (unsigned i = 0; i < p->plat->nnics; i++)
			virtio_net_set_tx_sink(p->plat->nics[i], NULL);
		p->sinks_on = false;
		for (unsigned i = 0; i < p->plat->ndisks; i++) {
			virtio_blk_set_write_hook(p->plat->disks[i], NULL, NULL);
			virtio_blk_set_admit(p->plat->disks[i], NULL, NULL);
		}
		for (unsigned i = 0; i < p->nouts; i++)
			outbuf_release(&p->out[i], UINT64_MAX);
		vm_dirty_log_enable(p->vm, false);
		vm_resume(p->vm);
	}
}

/* ---- the staging pool -------------------------------------------------------------------------- */

/* The pool's smallest buffer (npool > 0). */
static unsigned pool_smallest(const struct ft_primary *p)
{
	unsigned small = 0;
	for (unsigned i = 1; i < p->npool; i++)
		if (p->pool[i].cap < p->pool[small].cap)
			small = i;
	return small;
}

/* A staging buffer of at least `bytes` (lock held by no one; takes p->lock). The smallest that fits;
 * when none does, a new one replaces the smallest idle one, and only with none idle is one added to
 * those in use. So the buffers idle and in use never number more than the most ever in use at once,
 * MAX_INFLIGHT_EPOCHS (wait_for_room, handover_room) = FT_POOL: a growing dirty set cannot pile up
 * outgrown buffers. */
static uint8_t *pool_get(struct ft_primary *p, size_t bytes, size_t *cap)
{
	pthread_mutex_lock(&p->lock);
	int best = -1;
	for (unsigned i = 0; i < p->npool; i++)
		if (p->pool[i].cap >= bytes && (best < 0 || p->pool[i].cap < p->pool[best].cap))
			best = (int)i;
	uint8_t *b = NULL, *outgrown = NULL;
	if (best >= 0) {
		b = p->pool[best].p;
		*cap = p->pool[best].cap;
		p->pool[best] = p->pool[--p->npool];
	} else if (p->npool) {
		unsigned small = pool_smallest(p);
		outgrown = p->pool[small].p;
		p->pool[small] = p->pool[--p->npool];
	}
	pthread_mutex_unlock(&p->lock);
	free(outgrown);
	if (!b) {
		*cap = bytes;
		b = malloc(bytes);
	}
	return b;
}

/* Keep a buffer for the next epochs; when the pool is full, the smallest goes. */
static void pool_put(struct ft_primary *p, uint8_t *b, size_t cap)
{
	if (!b)
		return;
	pthread_mutex_lock(&p->lock);
	if (p->npool < FT_POOL) {
		p->pool[p->npool++] = (struct ft_pagebuf){ b, cap };
		b = NULL;
	} else { /* only if more than FT_POOL were ever in use at once: a checkpoint that did not wait for room */
		unsigned small = pool_smallest(p);
		if (p->pool[small].cap < cap) {
			uint8_t *old = p->pool[small].p;
			p->pool[small] = (struct ft_pagebuf){ b, cap };
			b = old;
		}
	}
	pthread_mutex_unlock(&p->lock);
	free(b);
}

static void pool_drain(struct ft_primary *p)
{
	for (unsigned i = 0; i < p->npool; i++)
		free(p->pool[i].p);
	p->npool = 0;
}

void primary_staged_release(struct ft_primary *p, struct ft_staged *s)
{
	if (p->ckpt == FT_CKPT_COW && s->pages)
		cow_wait(&p->cow); /* the copier may still be filling these pages */
	pool_put(p, s->pages, s->pages_cap);
	free(s->state);
	free(s->disk);
	s->pages = NULL;
	s->pfns = NULL;
	s->state = NULL;
	s->disk = NULL;
}

void primary_staged_free(struct ft_primary *p, struct ft_staged *s)
{
	if (!s)
		return;
	primary_staged_release(p, s);
	free(s);
}

/* ---- start, and the end of protection ----------------------------------------------------------- */

int ft_primary_start(struct ft_primary *p, struct vm *vm, struct platform *plat, const struct machine *machine,
		     const char *peer, const struct ft_tls_creds *tls, bool insecure, unsigned epoch_ms,
		     enum ft_codec codec, uint64_t delta_cache, enum ft_ckpt ckpt, unsigned timeout_ms, const char *stats_path, struct ft_fence *fence, char *err,
		     size_t errlen)
{
	memset(p, 0, sizeof(*p));
	p->fence = fence;
	p->vm = vm;
	p->plat = plat;
	p->machine = machine;
	p->epoch_ms = epoch_ms;
	p->timeout_ms = timeout_ms;
	p->codec = codec;
	p->ckpt = FT_CKPT_COPY; /* (cow once its userfaultfd exists, below: the teardown frees it then) */
	p->data = p->hb = (struct ft_link){ .fd = -1 };
	p->data.gate = primary_sender_gate;
	p->data.gate_ctx = p;
	p->tls = tls;
	snprintf(p->peer, sizeof(p->peer), "%s", peer);
	pthread_mutex_init(&p->lock, NULL);
	pthread_mutex_init(&p->hb_send_lock, NULL);
	pthread_condattr_t ca;
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&p->cond, &ca);
	pthread_condattr_destroy(&ca);
	disklog_init(&p->disklog);
	p->started_ns = now_ns();
	if (stats_path) {
		p->stats = fopen(stats_path, "w");
		if (!p->stats) {
			snprintf(err, errlen, "--stats %s: %s", stats_path, strerror(errno));
			return -errno;
		}
	}
	size_t words = gmem_bitmap_words(vm->mem.npages);
	p->dirty = calloc(words + 1, sizeof(unsigned long));
	if (!p->dirty || dirty_set_init(&p->dset, vm->mem.npages) || ft_packer_init(&p->packer, codec))
		return -ENOMEM;
	/* the delta cache: at most the guest's RAM (every page has a slot then) */
	if (delta_cache && ft_packer_delta(&p->packer, MIN(delta_cache, vm->mem.size))) {
		snprintf(err, errlen, "--delta-cache: cannot allocate %llu MiB", (unsigned long long)(delta_cache >> 20));
		return -ENOMEM;
	}
	if (ckpt == FT_CKPT_COW) {
		int cr = cow_init(&p->cow, vm->mem.host, vm->mem.npages);
		if (cr) {
			snprintf(err, errlen, "--checkpoint cow: userfaultfd write-protection of guest RAM: %s (needs Linux >= 5.7 and root)",
				 strerror(-cr));
			return cr;
		}
		p->ckpt = FT_CKPT_COW;
	}
	int r = fence_pair(fence, &p->gen, err, errlen);
	return r ? r : primary_connect(p, peer, !tls && !insecure, err, errlen);
}

int ft_primary_go(struct ft_primary *p)
{
	if (pthread_create(&p->receiver, NULL, primary_receiver_thread, p) ||
	    pthread_create(&p->sender, NULL, primary_sender_thread, p) ||
	    pthread_create(&p->heartbeat, NULL, primary_heartbeat_thread, p) ||
	    pthread_create(&p->engine, NULL, engine_thread, p))
		return -EAGAIN;
	p->threads_started = true;
	return 0;
}

/* A vCPU that left its loop right after an I/O exit has that I/O half done inside KVM (an IN's
 * value not yet in RAX, RIP not past it). One KVM_RUN with immediate_exit set completes it without
 * entering the guest, so the state a last checkpoint reads is exact. vCPU threads are joined. */
static void settle_vcpus(struct vm *vm)
{
	for (unsigned i = 0; i < vm->ncpus; i++) {
		struct vcpu *v = &vm->vcpus[i];
		if (v->fd < 0 || !v->run || v->started)
			continue;
		__atomic_store_n(&v->run->immediate_exit, 1, __ATOMIC_RELEASE);
		if (ioctl(v->fd, KVM_RUN, 0) == 0 || errno != EINTR)
			debugx("ft: vcpu %u: completing its last exit: %s", i, strerror(errno));
	}
}

/* The last checkpoint waits, as the engine's do (wait_for_room), until fewer than MAX_INFLIGHT_EPOCHS
 * epochs are unacked, so it never takes a staging buffer beyond FT_POOL. Waiting costs no commit: the
 * backup acks in order, so an ack of the last epoch cannot come before the room. false: no room by the
 * deadline, or the link is down. */
static bool handover_room(struct ft_primary *p, const struct timespec *deadline)
{
	pthread_mutex_lock(&p->lock);
	while (p->sendq_len >= MAX_INFLIGHT_EPOCHS && !p->link_down &&
	       pthread_cond_timedwait(&p->cond, &p->lock, deadline) != ETIMEDOUT)
		;
	bool room = p->sendq_len < MAX_INFLIGHT_EPOCHS && !p->link_down;
	pthread_mutex_unlock(&p->lock);
	return room;
}

/* How long a planned failover waits for room and for its last epoch's ack: the ft timeout, and never less than
 * this. The heartbeats go on meanwhile, so a backup that is alive does not take over under the wait, and one that
 * dies ends it (link_down) after the timeout: the wait only grows for a backup that is alive and slow. With a short
 * --ft-timeout (300 ms) under the test bed's load, the ack of the last of up to MAX_INFLIGHT_EPOCHS epochs came
 * later than the timeout (soak-20261207-225749, row 5) and its output was dropped though the backup would commit it. */
#define FT_HANDOVER_MIN_MS 2000

/* Planned failover: one last checkpoint of the stopped guest, and its ack awaited (room and ack within
 * the handover wait above), so the output held for it may go out before the backup takes over. Nothing is
 * lost either way: an unacked epoch's output is dropped, the backup resumes from its last commit. */
static void handover(struct ft_primary *p)
{
	pthread_mutex_lock(&p->lock);
	bool ok = p->protected_ && !p->lost && !p->link_down;
	uint64_t last = p->epoch + 1;
	pthread_mutex_unlock(&p->lock);
	if (!ok)
		return;
	settle_vcpus(p->vm);
	struct timespec ts;
	unsigned wait_ms = p->timeout_ms > FT_HANDOVER_MIN_MS ? p->timeout_ms : FT_HANDOVER_MIN_MS;
	primary_deadline_in(&ts, wait_ms * 1000000ull);
	if (handover_room(p, &ts)) { /* else not taken: reported below as not acked in time */
		int r = 0;
		struct ft_staged *s = checkpoint(p, last, false, &r);
		if (!s) {
			warnx("ft: planned failover: last checkpoint failed (%s); the backup resumes from its last commit",
			      strerror(-r));
			return;
		}
		enqueue(p, s);
	}
	pthread_mutex_lock(&p->lock);
	while (p->acked < last && !p->link_down && pthread_cond_timedwait(&p->cond, &p->lock, &ts) != ETIMEDOUT)
		;
	bool acked = p->acked >= last;
	pthread_mutex_unlock(&p->lock);
	warnx("ft: planned failover: last epoch %llu %s; the backup takes over", (unsigned long long)last,
	      acked ? "committed" : "not acked in time, its output is dropped");
	ft_event_emit("planned_failover", "\"role\":\"primary\",\"peer\":%s,\"epoch\":%llu,\"committed\":%s",
		      FT_JSON_STR(p->peer), (unsigned long long)last, acked ? "true" : "false");
}

static int refuse_send(void *ctx, const struct iovec *iov, int iovcnt)
{
	(void)ctx, (void)iov, (void)iovcnt;
	return -EAGAIN;
}

/* Output at the end: what the backup acked may leave (the receiver has released it already, this
 * only makes sure), the rest never does. The NICs still pointing at p->out are given a sink that
 * takes nothing, so no TX pass can reach the freed buffers nor send a later packet unheld. */
static void finish_output(struct ft_primary *p)
{
	uint64_t dropped = 0;
	pthread_mutex_lock(&p->lock);
	unsigned n = p->nouts;
	p->nouts = 0; /* status stops reading the outbufs before they go */
	pthread_mutex_unlock(&p->lock);
	for (unsigned i = 0; i < n; i++) {
		if (p->sinks_on) {
			struct net_tx_sink hold = { .send = refuse_send, .ctx = NULL };
			virtio_net_set_tx_sink(p->plat->nics[i], &hold);
		}
		if (p->protected_)
			outbuf_release(&p->out[i], p->acked);
		dropped += outbuf_discard(&p->out[i]);
		outbuf_destroy(&p->out[i]);
	}
	if (dropped)
		warnx("ft: %llu packets of unacknowledged epochs dropped", (unsigned long long)dropped);
	p->sinks_on = false;
}

static void free_queues(struct ft_primary *p)
{
	while (p->sendq) {
		struct ft_staged *s = p->sendq;
		p->sendq = s->next;
		primary_staged_free(p, s);
	}
	p->sendq_tail = NULL;
	while (p->ackq) {
		struct ft_staged *s = p->ackq;
		p->ackq = s->next;
		primary_staged_free(p, s);
	}
	p->ackq_tail = NULL;
	pool_drain(p);
}

void ft_primary_stop(struct ft_primary *p, enum ft_stop why)
{
	if (!p->threads_started)
		goto close_fds;
	pthread_mutex_lock(&p->lock);
	bool was_lost = p->lost;
	p->stop = true;
	pthread_cond_broadcast(&p->cond);
	pthread_mutex_unlock(&p->lock);
	pthread_join(p->engine, NULL);
	if (why == FT_STOP_HANDOVER)
		handover(p);
	pthread_mutex_lock(&p->lock);
	p->closing = true;
	pthread_cond_broadcast(&p->cond);
	pthread_mutex_unlock(&p->lock);
	pthread_join(p->sender, NULL);
	/* tell the backup the guest is gone so it does not take over; then close */
	if (!was_lost && why == FT_STOP_GUEST_ENDED && p->data.fd >= 0)
		ft_send_buf(&p->data, FT_BYE, 0, NULL, 0);
	ft_link_shutdown(&p->data);
	ft_link_shutdown(&p->hb);
	pthread_join(p->receiver, NULL);
	pthread_join(p->heartbeat, NULL);
	p->threads_started = false;
	finish_output(p);
	free_queues(p);
close_fds:
	ft_link_close(&p->data); /* and their TLS sessions, once no thread uses them */
	ft_link_close(&p->hb);
	if (p->stats)
		fclose(p->stats);
	p->stats = NULL;
	free(p->dirty);
	p->dirty = NULL;
	dirty_set_free(&p->dset);
	ft_packer_free(&p->packer); /* the sender, its only user, is joined */
	if (p->ckpt == FT_CKPT_COW)
		cow_free(&p->cow); /* every staged epoch is freed: no copy is owed; lifts any protection left */
	p->ckpt = FT_CKPT_COPY;
	disklog_destroy(&p->disklog);
}

bool ft_primary_active(struct ft_primary *p)
{
	pthread_mutex_lock(&p->lock);
	bool a = p->threads_started && !p->lost && !p->stop;
	pthread_mutex_unlock(&p->lock);
	return a;
}

void ft_primary_status(void *ctx, char *buf, size_t len)
{
	struct ft_primary *p = ctx;
	if (!p->threads_started && !p->lost) {
		snprintf(buf, len, "protected=no");
		return;
	}
	pthread_mutex_lock(&p->lock);
	double since = p->last_commit_ns ? (double)(now_ns() - p->last_commit_ns) / 1e6 : -1;
	int n = snprintf(buf, len, "protected=%s backup=%s epoch=%llu last_commit=%llu last_commit_ms_ago=%.0f link=%s%s%s",
			 p->protected_ && !p->lost ? "yes" : "no", p->peer, (unsigned long long)p->epoch,
			 (unsigned long long)p->acked, since, p->lost ? "down" : "up", p->lost ? " reason=" : "",
			 p->lost ? p->lost_reason : "");
	pthread_mutex_unlock(&p->lock);
	if (n > 0 && (size_t)n < len)
		fence_status(p->fence, buf + n, len - (size_t)n);
}

void ft_primary_info(struct ft_primary *p, struct ft_primary_info *i)
{
	memset(i, 0, sizeof(*i));
	pthread_mutex_lock(&p->lock);
	i->started = p->threads_started || p->lost;
	i->protected_ = p->protected_ && !p->lost;
	i->lost = p->lost;
	snprintf(i->peer, sizeof(i->peer), "%s", p->peer);
	i->epoch = p->epoch;
	i->last_commit = p->acked;
	i->last_commit_ms_ago = p->last_commit_ns ? (int64_t)((now_ns() - p->last_commit_ns) / 1000000) : -1;
	snprintf(i->reason, sizeof(i->reason), "%s", p->lost ? p->lost_reason : "");
	i->generation = p->gen;
	for (unsigned k = 0; k < p->nouts; k++) { /* under p->lock: finish_output waits to free them */
		uint64_t n, b;
		outbuf_held(&p->out[k], &n, &b);
		i->held_packets += n;
		i->held_bytes += b;
	}
	pthread_mutex_unlock(&p->lock);
}

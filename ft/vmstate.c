/* vmstate.c - the vCPU and VM-wide KVM state of a checkpoint, saved and restored in the orders the KVM API needs. */
#include "vmstate.h"
#include "../vmm/fdt_prop.h"
#include "../vmm/mptable.h"
#include "../vmm/util.h"
#include "../vmm/vcpu.h"
#include "../vmm/vm.h"

#include <errno.h>
#include <libfdt.h>
#include <linux/kvm.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>

#define MSR_IA32_TSC_DEADLINE 0x6e0
#define MAX_MSRS 512

/* MSRs worth saving: KVM's list, minus the ones this vCPU refuses to read (they depend on CPUID).
 * Probed once per process: a checkpoint every few ms must not re-probe. */
static uint32_t msr_list[MAX_MSRS];
static unsigned msr_count;
static int xsave_bytes; /* KVM's XSAVE area size, asked once with the MSRs */
static pthread_mutex_t msr_lock = PTHREAD_MUTEX_INITIALIZER;

static int probe_msrs(struct vm *vm)
{
	pthread_mutex_lock(&msr_lock);
	if (msr_count) {
		pthread_mutex_unlock(&msr_lock);
		return 0;
	}
	struct kvm_msr_list *l = calloc(1, sizeof(*l) + MAX_MSRS * sizeof(uint32_t));
	if (!l) {
		pthread_mutex_unlock(&msr_lock);
		return -ENOMEM;
	}
	l->nmsrs = MAX_MSRS;
	if (ioctl(vm->kvm_fd, KVM_GET_MSR_INDEX_LIST, l) < 0) {
		int e = -errno;
		free(l);
		pthread_mutex_unlock(&msr_lock);
		return e;
	}
	unsigned n = 0, deadline = 0;
	for (unsigned i = 0; i < l->nmsrs; i++) {
		struct {
			struct kvm_msrs h;
			struct kvm_msr_entry e;
		} one = { .h.nmsrs = 1, .e.index = l->indices[i] };
		if (ioctl(vm->vcpus[0].fd, KVM_GET_MSRS, &one) != 1)
			continue;
		if (l->indices[i] == MSR_IA32_TSC_DEADLINE) {
			deadline = 1;
			continue;
		}
		msr_list[n++] = l->indices[i];
	}
	/* TSC_DEADLINE last: it only restores once the TSC and the LAPIC are in place */
	if (deadline)
		msr_list[n++] = MSR_IA32_TSC_DEADLINE;
	msr_count = n;
	int sz = ioctl(vm->kvm_fd, KVM_CHECK_EXTENSION, KVM_CAP_XSAVE2);
	__atomic_store_n(&xsave_bytes, sz >= (int)sizeof(struct kvm_xsave) ? sz : (int)sizeof(struct kvm_xsave),
			 __ATOMIC_RELEASE);
	free(l);
	pthread_mutex_unlock(&msr_lock);
	return 0;
}

/* Saves use the size probed with the MSRs (probe_msrs runs first): no KVM_CHECK_EXTENSION per vCPU per epoch.
 * A restore may come before any save in this process: then KVM is asked. */
static int xsave_size(struct vm *vm)
{
	if (__atomic_load_n(&xsave_bytes, __ATOMIC_ACQUIRE))
		return xsave_bytes;
	int sz = ioctl(vm->kvm_fd, KVM_CHECK_EXTENSION, KVM_CAP_XSAVE2);
	return sz >= (int)sizeof(struct kvm_xsave) ? sz : (int)sizeof(struct kvm_xsave);
}

#define GET(req, what, ptr)                                                                        \
	do {                                                                                       \
		if (ioctl(v->fd, req, ptr) < 0) {                                                  \
			int e_ = errno;                                                            \
			warnx("vcpu %u: %s failed: %s", v->id, what, strerror(e_));                \
			return -e_;                                                                \
		}                                                                                  \
	} while (0)

/* One vCPU's state as KVM gives it, before it is encoded. */
struct vcpu_capture {
	struct kvm_mp_state mp;
	struct kvm_regs regs;
	struct kvm_sregs sregs;
	struct kvm_xcrs xcrs;
	struct kvm_debugregs dbg;
	struct kvm_lapic_state lapic;
	struct kvm_vcpu_events ev;
	int khz;
	int xsz;
	struct kvm_xsave *xs; /* xsz bytes */
	struct {
		struct kvm_msrs h;
		struct kvm_msr_entry e[MAX_MSRS];
	} msrs;
};

/* Read order (Firecracker's, with reasons): MP_STATE first because reading it can update the
 * in-kernel LAPIC; SREGS carries the interrupt bitmap of an acked-but-not-injected IRQ; VCPU_EVENTS
 * last (pending exception/NMI/SIPI) once everything else is read. Reading is apart from encoding so the
 * vCPUs could be read at once, each on its own parked thread: tried, and in the test bed the hand-off
 * cost more than it saved (state capture of 2 vCPUs 1076 us against 950 us read in turn,
 * tests/bench/results/state-20261207-112210.md), so they are read in turn here. */
static int capture_vcpu(struct vcpu *v, struct vcpu_capture *c)
{
	GET(KVM_GET_MP_STATE, "KVM_GET_MP_STATE", &c->mp);
	GET(KVM_GET_REGS, "KVM_GET_REGS", &c->regs);
	GET(KVM_GET_SREGS, "KVM_GET_SREGS", &c->sregs);
	GET(c->xsz > (int)sizeof(struct kvm_xsave) ? KVM_GET_XSAVE2 : KVM_GET_XSAVE, "KVM_GET_XSAVE", c->xs);
	GET(KVM_GET_XCRS, "KVM_GET_XCRS", &c->xcrs);
	GET(KVM_GET_DEBUGREGS, "KVM_GET_DEBUGREGS", &c->dbg);
	GET(KVM_GET_LAPIC, "KVM_GET_LAPIC", &c->lapic);
	c->khz = ioctl(v->fd, KVM_GET_TSC_KHZ, 0);
	c->msrs.h.nmsrs = msr_count;
	for (unsigned i = 0; i < msr_count; i++)
		c->msrs.e[i].index = msr_list[i];
	int got = ioctl(v->fd, KVM_GET_MSRS, &c->msrs);
	if (got != (int)msr_count) {
		warnx("vcpu %u: KVM_GET_MSRS read %d of %u MSRs", v->id, got, msr_count);
		return -EIO;
	}
	GET(KVM_GET_VCPU_EVENTS, "KVM_GET_VCPU_EVENTS", &c->ev);
	return 0;
}
#undef GET

static int put_vcpu(void *fdt, const struct vcpu *v, const struct vcpu_capture *c)
{
	char name[24];
	snprintf(name, sizeof(name), "vcpu@%u", v->id);
	size_t cpuid_len = sizeof(*v->cpuid) + v->cpuid->nent * sizeof(v->cpuid->entries[0]);
	int r;
	if ((r = fdt_begin_node(fdt, name)) || (r = fdt_property_u32(fdt, "id", v->id)) ||
	    (r = fdt_property(fdt, "cpuid", v->cpuid, (int)cpuid_len)) ||
	    (r = fdt_property_u32(fdt, "mp-state", c->mp.mp_state)) ||
	    (r = fdt_property(fdt, "regs", &c->regs, sizeof(c->regs))) ||
	    (r = fdt_property(fdt, "sregs", &c->sregs, sizeof(c->sregs))) ||
	    (r = fdt_property(fdt, "xsave", c->xs, c->xsz)) ||
	    (r = fdt_property(fdt, "xcrs", &c->xcrs, sizeof(c->xcrs))) ||
	    (r = fdt_property(fdt, "debugregs", &c->dbg, sizeof(c->dbg))) ||
	    (r = fdt_property(fdt, "lapic", &c->lapic, sizeof(c->lapic))) ||
	    (r = fdt_property_u32(fdt, "tsc-khz", c->khz > 0 ? (uint32_t)c->khz : 0)) ||
	    (r = fdt_property(fdt, "msrs", c->msrs.e, (int)(msr_count * sizeof(c->msrs.e[0])))) ||
	    (r = fdt_property(fdt, "events", &c->ev, sizeof(c->ev))) || (r = fdt_end_node(fdt)))
		return r == -FDT_ERR_NOSPACE ? -ENOSPC : -EINVAL;
	return 0;
}

static int save_vm_wide(struct vm *vm, void *fdt)
{
	struct kvm_pit_state2 pit;
	struct kvm_clock_data clk;
	struct kvm_irqchip chips[3] = { { .chip_id = KVM_IRQCHIP_PIC_MASTER }, { .chip_id = KVM_IRQCHIP_PIC_SLAVE },
					{ .chip_id = KVM_IRQCHIP_IOAPIC } };
	memset(&clk, 0, sizeof(clk));
	if (ioctl(vm->vm_fd, KVM_GET_PIT2, &pit) < 0 || ioctl(vm->vm_fd, KVM_GET_CLOCK, &clk) < 0)
		return -errno;
	for (int i = 0; i < 3; i++)
		if (ioctl(vm->vm_fd, KVM_GET_IRQCHIP, &chips[i]) < 0)
			return -errno;
	int r;
	if ((r = fdt_begin_node(fdt, "vm")) || (r = fdt_property(fdt, "pit2", &pit, sizeof(pit))) ||
	    (r = fdt_property(fdt, "clock", &clk, sizeof(clk))) ||
	    (r = fdt_property(fdt, "pic-master", &chips[0], sizeof(chips[0]))) ||
	    (r = fdt_property(fdt, "pic-slave", &chips[1], sizeof(chips[1]))) ||
	    (r = fdt_property(fdt, "ioapic", &chips[2], sizeof(chips[2]))) || (r = fdt_end_node(fdt)))
		return r == -FDT_ERR_NOSPACE ? -ENOSPC : -EINVAL;
	return 0;
}

static void free_captures(struct vcpu_capture *caps, unsigned n)
{
	for (unsigned i = 0; caps && i < n; i++)
		free(caps[i].xs);
	free(caps);
}

int vmstate_save_cpus(struct vm *vm, void *fdt)
{
	int r = probe_msrs(vm);
	if (r)
		return r;
	struct vcpu_capture *caps = calloc(vm->ncpus, sizeof(*caps));
	for (unsigned i = 0; caps && i < vm->ncpus; i++) {
		caps[i].xsz = xsave_size(vm);
		caps[i].xs = calloc(1, (size_t)caps[i].xsz);
		if (!caps[i].xs)
			r = -ENOMEM;
	}
	if (!caps || r) {
		free_captures(caps, caps ? vm->ncpus : 0);
		return -ENOMEM;
	}
	for (unsigned i = 0; !r && i < vm->ncpus; i++)
		r = capture_vcpu(&vm->vcpus[i], &caps[i]);
	if (!r && fdt_begin_node(fdt, "vcpus"))
		r = -ENOSPC;
	for (unsigned i = 0; !r && i < vm->ncpus; i++)
		r = put_vcpu(fdt, &vm->vcpus[i], &caps[i]);
	free_captures(caps, vm->ncpus);
	if (!r && fdt_end_node(fdt))
		r = -ENOSPC;
	return r ? r : save_vm_wide(vm, fdt);
}

int vmstate_save_devices(struct vm *vm, void *fdt)
{
	if (fdt_begin_node(fdt, "devices"))
		return -ENOSPC;
	for (struct vm_device *d = vm->devices; d; d = d->next) {
		if (!d->save)
			continue;
		if (fdt_begin_node(fdt, d->name))
			return -ENOSPC;
		int r = d->save(d->opaque, fdt);
		if (r) {
			warnx("device %s: save failed: %s", d->name, strerror(r < 0 ? -r : r));
			return r < 0 ? r : -EINVAL;
		}
		if (fdt_end_node(fdt))
			return -ENOSPC;
	}
	return fdt_end_node(fdt) ? -ENOSPC : 0;
}

#define SET(req, what, ptr)                                                                        \
	do {                                                                                       \
		if (ioctl(v->fd, req, ptr) < 0) {                                                  \
			snprintf(err, errlen, "vcpu %u: %s failed: %s", v->id, what, strerror(errno)); \
			return -errno;                                                             \
		}                                                                                  \
	} while (0)

#define PROP(name, var)                                                                            \
	do {                                                                                       \
		if (fdtp_copy(fdt, node, name, &(var), sizeof(var))) {                          \
			snprintf(err, errlen, "snapshot: vcpu %u: '%s' missing or of the wrong size", v->id, name); \
			return -EINVAL;                                                            \
		}                                                                                  \
	} while (0)

/* The guest calibrated its clocks (tsc_khz, delay loops) against the saved TSC rate: a vCPU on a host whose
 * TSC runs at another rate gets the saved one back through KVM's TSC scaling, as Firecracker does. KVM
 * refuses where the host cannot scale to it (no scaling support, a ratio out of range); the guest then
 * runs at this host's rate, as every restore did before this existed, so it is said once and not fatal.
 * Returns false on such a refusal. */
static bool restore_tsc_khz(struct vcpu *v, const void *fdt, int node, bool quiet)
{
	uint32_t saved;
	if (fdtp_u32(fdt, node, "tsc-khz", &saved) || saved == 0) /* not known when it was saved */
		return true;
	int here = vcpu_tsc_khz(v);
	if (here > 0 && (uint32_t)here == saved)
		return true;
	int r = vcpu_set_tsc_khz(v, saved);
	if (r == 0)
		return true;
	/* KVM keeps the refused rate as the vCPU's own (its catch-up arithmetic reads it): put this host's back */
	if (here > 0)
		vcpu_set_tsc_khz(v, (uint32_t)here);
	if (!quiet)
		warnx("restore: cannot set the saved TSC frequency of %u kHz (this host: %d kHz): %s; the guest's clock "
		      "runs at this host's rate", saved, here, strerror(-r));
	return false;
}

/* CPUID first after the TSC rate: KVM checks everything else against it. */
static int restore_cpuid(struct vcpu *v, const void *fdt, int node, char *err, size_t errlen)
{
	int len;
	const struct kvm_cpuid2 *cpuid = fdt_getprop(fdt, node, "cpuid", &len);
	if (!cpuid || len < (int)sizeof(*cpuid) ||
	    (size_t)len != sizeof(*cpuid) + cpuid->nent * sizeof(cpuid->entries[0])) {
		snprintf(err, errlen, "snapshot: vcpu %u: bad cpuid", v->id);
		return -EINVAL;
	}
	struct kvm_cpuid2 *c = malloc((size_t)len);
	if (!c)
		return -ENOMEM;
	memcpy(c, cpuid, (size_t)len);
	if (ioctl(v->fd, KVM_SET_CPUID2, c) < 0) {
		snprintf(err, errlen, "vcpu %u: KVM_SET_CPUID2 refused the saved CPUID (different host CPU?): %s", v->id,
			 strerror(errno));
		free(c);
		return -EINVAL;
	}
	free(v->cpuid);
	v->cpuid = c;
	return 0;
}

/* One vCPU's saved state, every property checked before the first KVM_SET. xsave and msrs point
 * into the tree. */
struct vcpu_saved {
	uint32_t mp_state;
	struct kvm_regs regs;
	struct kvm_sregs sregs;
	struct kvm_xcrs xcrs;
	struct kvm_debugregs dbg;
	struct kvm_lapic_state lapic;
	struct kvm_vcpu_events ev;
	const void *xsave;
	int xlen;
	const struct kvm_msr_entry *msrs;
	unsigned nmsrs;
};

static int parse_vcpu(struct vm *vm, struct vcpu *v, const void *fdt, int node, struct vcpu_saved *s, char *err,
		      size_t errlen)
{
	if (fdtp_u32(fdt, node, "mp-state", &s->mp_state)) {
		snprintf(err, errlen, "snapshot: vcpu %u: mp-state missing", v->id);
		return -EINVAL;
	}
	PROP("regs", s->regs);
	PROP("sregs", s->sregs);
	PROP("xcrs", s->xcrs);
	PROP("debugregs", s->dbg);
	PROP("lapic", s->lapic);
	PROP("events", s->ev);
	s->xsave = fdt_getprop(fdt, node, "xsave", &s->xlen);
	if (!s->xsave || s->xlen < (int)sizeof(struct kvm_xsave) || s->xlen > xsave_size(vm)) {
		snprintf(err, errlen, "snapshot: vcpu %u: xsave area missing or larger than this host supports", v->id);
		return -EINVAL;
	}
	int mlen;
	s->msrs = fdt_getprop(fdt, node, "msrs", &mlen);
	if (!s->msrs || mlen % (int)sizeof(struct kvm_msr_entry) || mlen / (int)sizeof(struct kvm_msr_entry) > MAX_MSRS) {
		snprintf(err, errlen, "snapshot: vcpu %u: bad msrs", v->id);
		return -EINVAL;
	}
	s->nmsrs = (unsigned)mlen / sizeof(struct kvm_msr_entry);
	return 0;
}

/* The saved area may be shorter than this host's (an older or smaller XSAVE layout): zero-padded. */
static int set_xsave(struct vm *vm, struct vcpu *v, const struct vcpu_saved *s, char *err, size_t errlen)
{
	struct kvm_xsave *xbuf = calloc(1, (size_t)xsave_size(vm));
	if (!xbuf)
		return -ENOMEM;
	memcpy(xbuf, s->xsave, (size_t)s->xlen);
	int xr = ioctl(v->fd, KVM_SET_XSAVE, xbuf);
	int xerr = errno;
	free(xbuf);
	if (xr < 0) {
		snprintf(err, errlen, "vcpu %u: KVM_SET_XSAVE failed: %s", v->id, strerror(xerr));
		return -xerr;
	}
	return 0;
}

static int set_msrs(struct vcpu *v, const struct vcpu_saved *s, char *err, size_t errlen)
{
	struct {
		struct kvm_msrs h;
		struct kvm_msr_entry e[MAX_MSRS];
	} *msrs = calloc(1, sizeof(*msrs));
	if (!msrs)
		return -ENOMEM;
	msrs->h.nmsrs = s->nmsrs;
	memcpy(msrs->e, s->msrs, s->nmsrs * sizeof(struct kvm_msr_entry));
	int set = ioctl(v->fd, KVM_SET_MSRS, msrs);
	uint32_t bad = set >= 0 && (unsigned)set < s->nmsrs ? msrs->e[set].index : 0;
	free(msrs);
	/* KVM_SET_MSRS returns how many it set: a short count is a failure, not a success */
	if (set != (int)s->nmsrs) {
		snprintf(err, errlen, "vcpu %u: KVM_SET_MSRS set %d of %u MSRs (refused MSR 0x%x)", v->id, set, s->nmsrs,
			 bad);
		return -EINVAL;
	}
	return 0;
}

/* Restore order and why: TSC frequency first (KVM writes the TSC MSR below as an offset at the
 * scaling ratio in force, so the ratio must already be the saved one); CPUID next (everything else
 * is checked against it); REGS before VCPU_EVENTS because SET_REGS clears pending exceptions; SREGS
 * before LAPIC because SREGS sets the APIC base MSR; LAPIC before MSRS because TSC_DEADLINE only
 * sticks with the LAPIC configured (and it is last in the MSR list, after the TSC); VCPU_EVENTS last;
 * then tell kvmclock we were paused. */
static int restore_vcpu(struct vm *vm, struct vcpu *v, const void *fdt, int node, char *err, size_t errlen,
			bool *tsc_warned, uint32_t *mp_state)
{
	struct vcpu_saved s;
	if (!restore_tsc_khz(v, fdt, node, *tsc_warned))
		*tsc_warned = true; /* one line for the VM, not one per vCPU */
	int r = restore_cpuid(v, fdt, node, err, errlen);
	r = r ?: parse_vcpu(vm, v, fdt, node, &s, err, errlen);
	if (r)
		return r;
	struct kvm_mp_state mp = { .mp_state = s.mp_state };
	SET(KVM_SET_MP_STATE, "KVM_SET_MP_STATE", &mp);
	*mp_state = s.mp_state;
	SET(KVM_SET_REGS, "KVM_SET_REGS", &s.regs);
	SET(KVM_SET_SREGS, "KVM_SET_SREGS", &s.sregs);
	r = set_xsave(vm, v, &s, err, errlen);
	if (r)
		return r;
	SET(KVM_SET_XCRS, "KVM_SET_XCRS", &s.xcrs);
	SET(KVM_SET_DEBUGREGS, "KVM_SET_DEBUGREGS", &s.dbg);
	SET(KVM_SET_LAPIC, "KVM_SET_LAPIC", &s.lapic);
	r = set_msrs(v, &s, err, errlen);
	if (r)
		return r;
	SET(KVM_SET_VCPU_EVENTS, "KVM_SET_VCPU_EVENTS", &s.ev);
	/* tells the guest's watchdogs the vCPU was stopped on purpose; EINVAL when kvmclock is unused */
	if (ioctl(v->fd, KVM_KVMCLOCK_CTRL, 0) < 0 && errno != EINVAL)
		debugx("vcpu %u: KVM_KVMCLOCK_CTRL: %s", v->id, strerror(errno));
	return 0;
}
#undef SET
#undef PROP

/* The VM-wide state, read and checked before anything is set. */
struct vm_wide {
	struct kvm_pit_state2 pit;
	struct kvm_clock_data clk;
	struct kvm_irqchip chips[3];
};
static const char *const chip_names[3] = { "pic-master", "pic-slave", "ioapic" };

static int read_vm_wide(const void *fdt, struct vm_wide *w, char *err, size_t errlen)
{
	int node = fdt_subnode_offset(fdt, 0, "vm");
	if (node < 0 || fdtp_copy(fdt, node, "pit2", &w->pit, sizeof(w->pit)) ||
	    fdtp_copy(fdt, node, "clock", &w->clk, sizeof(w->clk))) {
		snprintf(err, errlen, "snapshot: VM-wide state (PIT, clock) missing");
		return -EINVAL;
	}
	for (int i = 0; i < 3; i++)
		if (fdtp_copy(fdt, node, chip_names[i], &w->chips[i], sizeof(w->chips[i])) ||
		    w->chips[i].chip_id != (uint32_t)i) { /* the ids are 0, 1, 2 in chip_names' order */
			snprintf(err, errlen, "snapshot: %s state missing or not a %s", chip_names[i], chip_names[i]);
			return -EINVAL;
		}
	return 0;
}

/* Restore order of the VM-wide state, and why (the vCPUs' own order is restore_vcpu's):
 * 1. the clock, first: the vCPUs' TSC writes below are taken against it.
 * 2. every vCPU, its LAPIC included.
 * 3. the PIC and IOAPIC, after the LAPICs: a level the IOAPIC still holds (its irr) is delivered into a
 *    LAPIC as it is restored, and KVM_SET_LAPIC afterwards would wipe it from that LAPIC's IRR. Edge pins'
 *    levels are dropped first (drop_edge_levels).
 * 4. the PIT, last: KVM_SET_PIT2 re-arms channel 0 from now, and its next interrupt must meet the restored
 *    IOAPIC and LAPICs. Set first (as before 2026-12-07), a short one-shot count fired into the reset
 *    IOAPIC (pins masked) or into a LAPIC about to be overwritten; KVM's PIT (reinject mode) then waits for
 *    the EOI of that lost interrupt before it injects another, for ever. A guest whose LAPIC timer failed
 *    its boot calibration ticks on the PIT alone (the LAPIC a dummy, the PIT the broadcast device), so it
 *    slept for good after such a takeover: r23, r24 and a delta run on 2026-12-07, each after a slow restore
 *    (0.2-0.5 s between the two ioctls), their stuck LAPIC timer still in its calibration setting. */
static int restore_clock(struct vm *vm, struct vm_wide *w, char *err, size_t errlen)
{
	/* KVM refuses TSC_STABLE on SET; without REALTIME the guest clock resumes at the saved instant */
	w->clk.flags = 0;
	w->clk.realtime = w->clk.host_tsc = 0;
	if (ioctl(vm->vm_fd, KVM_SET_CLOCK, &w->clk) < 0) {
		snprintf(err, errlen, "KVM_SET_CLOCK failed: %s", strerror(errno));
		return -errno;
	}
	return 0;
}

/* An edge-triggered pin's saved line level is a pulse caught half-way, never a request still owed: KVM's PIT
 * pulses its line (level 1, then 0) from its own thread, so a capture inside an FT pause can read the IOAPIC
 * between the two, with the pin's irr bit set and the edge already delivered into a LAPIC (saved with it).
 * KVM_SET_IRQCHIP replays a set bit as an interrupt and leaves it set with no source to lower it; the PIT's next
 * rising edge is then taken for one not yet delivered and coalesced away, its EOI never comes, and KVM's PIT
 * (reinject mode) injects nothing until that EOI: the restored guest's timer is gone for good. That is how a guest
 * ticking on the PIT stopped one tick after a takeover (r10, r23, r24; tests/integration/pitedge.c makes it
 * happen). So the levels of edge pins are dropped, as the line is a moment later on the source: the IOAPIC's irr
 * bits and the PIC's last_irr bits of edge pins (elcr clear). The PIC's irr (requests latched, not yet taken) and
 * level-triggered pins are kept: those are owed. */
static void drop_edge_levels(struct kvm_irqchip *c)
{
	if (c->chip_id == KVM_IRQCHIP_IOAPIC) {
		for (unsigned pin = 0; pin < KVM_IOAPIC_NUM_PINS; pin++)
			if (c->chip.ioapic.redirtbl[pin].fields.trig_mode == 0)
				c->chip.ioapic.irr &= ~(1u << pin);
	} else {
		c->chip.pic.last_irr &= c->chip.pic.elcr;
	}
}

static int restore_irqchips_pit(struct vm *vm, struct vm_wide *w, char *err, size_t errlen)
{
	for (int i = 0; i < 3; i++)
		drop_edge_levels(&w->chips[i]);
	for (int i = 0; i < 3; i++)
		if (ioctl(vm->vm_fd, KVM_SET_IRQCHIP, &w->chips[i]) < 0) {
			snprintf(err, errlen, "KVM_SET_IRQCHIP (%s) failed: %s", chip_names[i], strerror(errno));
			return -errno;
		}
	if (ioctl(vm->vm_fd, KVM_SET_PIT2, &w->pit) < 0) {
		snprintf(err, errlen, "KVM_SET_PIT2 failed: %s", strerror(errno));
		return -errno;
	}
	return 0;
}

/* 5. a paravirtual kick for every vCPU whose guest may wait for one. A Linux guest's PV spinlock waiter halts
 *    with interrupts off until the lock's holder kicks it (KVM_HC_KICK_CPU). KVM keeps that kick as a flag
 *    (pv_unhalted) that the vCPU's next HLT consumes, and no KVM_GET_* reads it while the vCPU is runnable
 *    (KVM_GET_MP_STATE shows it only on a halted one). So a capture that lands between the kick and the
 *    waiter's HLT loses it, and the restored waiter halts for good: r26 and a CI run on 2026-12-07, a vCPU
 *    halted with IF=0 inside an interrupt handler, the other one idle. A kick nobody sent is harmless (a HLT
 *    may always return early: the spinlock and idle loops look again), a lost one is not, so every vCPU
 *    that runs or halts gets one. Not fatal when refused: the guest runs, as it did before this step existed. */
static void restore_pv_unhalts(struct vm *vm, const uint32_t *mp_state)
{
	for (unsigned i = 0; i < vm->ncpus; i++) {
		struct vcpu *v = &vm->vcpus[i];
		/* only a vCPU that runs or halts: for one still waiting for its INIT/SIPI (an AP the guest has not
		 * started) KVM's run loop would find the flag set and no halt to end, and spin on it (older kernels:
		 * return EINTR again and again) until the SIPI, for ever under a guest that never starts that AP */
		if (!vcpu_has_pv_unhalt(v) ||
		    (mp_state[i] != KVM_MP_STATE_RUNNABLE && mp_state[i] != KVM_MP_STATE_HALTED))
			continue;
		int r = vcpu_pv_unhalt(v);
		if (r != 1)
			warnx("vcpu %u: cannot re-deliver a paravirtual unhalt (%s): a spinlock waiter may sleep", v->id,
			      r < 0 ? strerror(-r) : "not delivered");
	}
}

int vmstate_restore_cpus(struct vm *vm, const void *fdt, char *err, size_t errlen)
{
	int vcpus = fdt_subnode_offset(fdt, 0, "vcpus");
	if (vcpus < 0) {
		snprintf(err, errlen, "snapshot: no vcpus node");
		return -EINVAL;
	}
	if (vm->ncpus > MPTABLE_MAX_CPUS) {
		snprintf(err, errlen, "snapshot: %u vCPUs, above %u", vm->ncpus, (unsigned)MPTABLE_MAX_CPUS);
		return -EINVAL;
	}
	struct vm_wide w;
	int r = read_vm_wide(fdt, &w, err, errlen);
	r = r ? r : restore_clock(vm, &w, err, errlen);
	if (r)
		return r;
	bool tsc_warned = false;
	uint32_t mp_state[MPTABLE_MAX_CPUS] = { 0 }; /* vm_create keeps ncpus at or below it */
	for (unsigned i = 0; i < vm->ncpus; i++) {
		char name[24];
		snprintf(name, sizeof(name), "vcpu@%u", i);
		int node = fdt_subnode_offset(fdt, vcpus, name);
		if (node < 0) {
			snprintf(err, errlen, "snapshot: %s missing", name);
			return -EINVAL;
		}
		r = restore_vcpu(vm, &vm->vcpus[i], fdt, node, err, errlen, &tsc_warned, &mp_state[i]);
		if (r)
			return r;
	}
	r = restore_irqchips_pit(vm, &w, err, errlen);
	if (!r)
		restore_pv_unhalts(vm, mp_state);
	return r;
}

int vmstate_restore_devices(struct vm *vm, const void *fdt, char *err, size_t errlen)
{
	int devs = fdt_subnode_offset(fdt, 0, "devices");
	if (devs < 0) {
		snprintf(err, errlen, "snapshot: no devices node");
		return -EINVAL;
	}
	for (struct vm_device *d = vm->devices; d; d = d->next) {
		if (!d->restore)
			continue;
		int node = fdt_subnode_offset(fdt, devs, d->name);
		if (node < 0) {
			snprintf(err, errlen, "snapshot has no state for device %s (different machine shape)", d->name);
			return -EINVAL;
		}
		int r = d->restore(d->opaque, fdt, node);
		if (r) {
			snprintf(err, errlen, "device %s: cannot restore its saved state: %s", d->name,
				 strerror(r < 0 ? -r : r));
			return r < 0 ? r : -EINVAL;
		}
	}
	return 0;
}

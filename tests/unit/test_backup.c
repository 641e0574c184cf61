/* test_backup.c - the backup's handshake shape check and its all-or-nothing epoch commit (memory, state, disk). */
#include "../../cmd/backup.h"
#include "../../cmd/cli.h"
#include "../../cmd/control.h"
#include "../../ft/backup.h"
#include "../../ft/backup_int.h"
#include "../../ft/fence.h"
#include "../../ft/proto.h"
#include "../../vmm/util.h"
#include "epoch_test.h"
#include "test.h"
#include "tls_test.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <libfdt.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define NPAGES 16
#define DISK_SIZE 65536

static uint8_t shape_buf[4096];

/* The handshake fdt as a primary sends it. */
static size_t shape(uint64_t mem, uint32_t cpus, uint32_t ndisks, const uint64_t *sizes, uint32_t nnics,
		    uint32_t epoch_ms)
{
	static const uint8_t macs[2][6] = { { 0x52, 0x54, 0, 0x12, 0x34, 0x56 }, { 0x52, 0x54, 0, 0x12, 0x34, 0x57 } };
	int r = fdt_create(shape_buf, sizeof(shape_buf));
	r |= fdt_finish_reservemap(shape_buf);
	r |= fdt_begin_node(shape_buf, "");
	r |= fdt_property_u64(shape_buf, "mem-size", mem);
	r |= fdt_property_u32(shape_buf, "ncpus", cpus);
	r |= fdt_property_u32(shape_buf, "ndisks", ndisks);
	r |= fdt_property_u32(shape_buf, "nnics", nnics);
	r |= fdt_property_u32(shape_buf, "epoch-ms", epoch_ms);
	if (ndisks) /* host byte order, as ft/primary.c sends them */
		r |= fdt_property(shape_buf, "disk-sizes", sizes, (int)(ndisks * sizeof(uint64_t)));
	if (nnics)
		r |= fdt_property(shape_buf, "macs", macs, (int)(nnics * 6));
	r |= fdt_end_node(shape_buf);
	r |= fdt_finish(shape_buf);
	CHECK_EQ(r, 0);
	return fdt_totalsize(shape_buf);
}

/* A backup with one disk of DISK_SIZE ("b.img"), everything else zero: what the pairing checks compare against. */
static void one_disk_backup(struct backup *b)
{
	memset(b, 0, sizeof(*b));
	b->machine.ndisks = 1;
	b->machine.disks[0].path = "b.img";
	b->disk_sizes[0] = DISK_SIZE;
}

static void test_shape(void)
{
	struct backup b;
	one_disk_backup(&b);
	b.timeout_ms = 1234;
	char why[256];
	uint64_t sz = DISK_SIZE;
	size_t n = shape(64 << 20, 2, 1, &sz, 0, 25);
	CHECK_EQ(backup_check_shape(&b, shape_buf, n, why, sizeof(why)), 0);
	CHECK_EQ(b.machine.mem, 64 << 20);
	CHECK_EQ(b.machine.cpus, 2);
	CHECK_EQ(b.epoch_ms, 25);
	/* the VM run on takeover */
	struct run_config cfg;
	memset(&cfg, 0, sizeof(cfg));
	cfg.control = "ctl.sock";
	backup_run_config(&b, &cfg);
	CHECK_EQ(cfg.machine.mem, 64 << 20);
	CHECK_EQ(cfg.machine.cpus, 2);
	CHECK(cfg.machine.ndisks == 1 && !strcmp(cfg.machine.disks[0].path, "b.img"));
	CHECK_EQ(cfg.epoch_ms, 25);        /* kept for a later `protect` */
	CHECK_EQ(cfg.ft_timeout_ms, 1234); /* ours */
	CHECK(!strcmp(cfg.control, "ctl.sock"));
	/* a disk of another size: one line naming both */
	uint64_t other = DISK_SIZE * 2;
	n = shape(64 << 20, 2, 1, &other, 0, 25);
	CHECK_EQ(backup_check_shape(&b, shape_buf, n, why, sizeof(why)), -EINVAL);
	CHECK(strstr(why, "disk 0") && strstr(why, "b.img") && !strchr(why, '\n'));
	/* disk and NIC counts */
	n = shape(64 << 20, 2, 0, NULL, 0, 25);
	CHECK_EQ(backup_check_shape(&b, shape_buf, n, why, sizeof(why)), -EINVAL);
	CHECK(strstr(why, "0 disks") != NULL);
	n = shape(64 << 20, 2, 1, &sz, 1, 25);
	CHECK_EQ(backup_check_shape(&b, shape_buf, n, why, sizeof(why)), -EINVAL);
	CHECK(strstr(why, "NICs") != NULL);
	/* with the NIC given, the guest's MAC is adopted */
	b.machine.nnics = 1;
	CHECK_EQ(backup_check_shape(&b, shape_buf, n, why, sizeof(why)), 0);
	CHECK(b.machine.nics[0].has_mac && b.machine.nics[0].mac[5] == 0x56);
	b.machine.nnics = 0;
	/* malformed: no memory, unaligned memory, no vCPU, not an fdt, truncated, an absurd epoch */
	n = shape(0, 2, 1, &sz, 0, 25);
	CHECK_EQ(backup_check_shape(&b, shape_buf, n, why, sizeof(why)), -EINVAL);
	CHECK(strstr(why, "malformed") != NULL);
	n = shape((64 << 20) + 100, 2, 1, &sz, 0, 25);
	CHECK_EQ(backup_check_shape(&b, shape_buf, n, why, sizeof(why)), -EINVAL);
	n = shape(64 << 20, 0, 1, &sz, 0, 25);
	CHECK_EQ(backup_check_shape(&b, shape_buf, n, why, sizeof(why)), -EINVAL);
	uint8_t junk[256];
	memset(junk, 0x5a, sizeof(junk));
	CHECK_EQ(backup_check_shape(&b, junk, sizeof(junk), why, sizeof(why)), -EINVAL);
	n = shape(64 << 20, 2, 1, &sz, 0, 25);
	CHECK_EQ(backup_check_shape(&b, shape_buf, n / 2, why, sizeof(why)), -EINVAL);
	b.epoch_ms = 0;
	n = shape(64 << 20, 2, 1, &sz, 0, 1);
	CHECK_EQ(backup_check_shape(&b, shape_buf, n, why, sizeof(why)), 0);
	CHECK_EQ(b.epoch_ms, 0); /* 1 ms is outside 5..1000: the default applies later */
	cfg.epoch_ms = 0;
	backup_run_config(&b, &cfg);
	CHECK_EQ(cfg.epoch_ms, 0);
}

/* A primary's shape with the arbiter's fields (generation 0: none; name NULL: none). */
static size_t shape_gen(uint64_t gen, const char *name)
{
	uint64_t sz = DISK_SIZE;
	size_t n = shape(64 << 20, 2, 1, &sz, 0, 25);
	CHECK_EQ(fdt_open_into(shape_buf, shape_buf, sizeof(shape_buf)), 0);
	if (gen)
		CHECK_EQ(fdt_setprop_u64(shape_buf, 0, "generation", gen), 0);
	if (name)
		CHECK_EQ(fdt_setprop_string(shape_buf, 0, "vm-name", name), 0);
	CHECK_EQ(fdt_pack(shape_buf), 0);
	(void)n;
	return fdt_totalsize(shape_buf);
}

/* Both sides use the arbiter, under the same VM name, or neither: else the pairing is refused. */
static void test_shape_generation(void)
{
	struct backup b;
	one_disk_backup(&b);
	char why[256];
	/* no arbiter here: a primary with one is refused, one without pairs */
	CHECK_EQ(backup_check_shape(&b, shape_buf, shape_gen(4, "vm1"), why, sizeof(why)), -EINVAL);
	CHECK(strstr(why, "without --arbiter") != NULL);
	CHECK_EQ(backup_check_shape(&b, shape_buf, shape_gen(0, NULL), why, sizeof(why)), 0);
	CHECK_EQ(b.gen, 0);
	/* an arbiter here (opening one contacts nothing) */
	struct ft_fence f;
	char err[256];
	CHECK_EQ(fence_open(&f, "etcd://127.0.0.1:1", "vm1", err, sizeof(err)), 0);
	b.fence = &f;
	CHECK_EQ(backup_check_shape(&b, shape_buf, shape_gen(0, NULL), why, sizeof(why)), -EINVAL);
	CHECK(strstr(why, "--arbiter") && strstr(why, "vm1"));
	CHECK_EQ(backup_check_shape(&b, shape_buf, shape_gen(4, "vm2"), why, sizeof(why)), -EINVAL);
	CHECK(strstr(why, "--name") != NULL);
	CHECK_EQ(backup_check_shape(&b, shape_buf, shape_gen(4, NULL), why, sizeof(why)), -EINVAL);
	CHECK_EQ(b.gen, 0);
	CHECK_EQ(backup_check_shape(&b, shape_buf, shape_gen(4, "vm1"), why, sizeof(why)), 0);
	CHECK_EQ(b.gen, 4);
	fence_close(&f);
}

/* A primary's shape naming a codec (NULL: none, an older primary), or len raw bytes as the property. */
static size_t shape_codec(const char *codec, const void *raw, int len)
{
	uint64_t sz = DISK_SIZE;
	shape(64 << 20, 2, 1, &sz, 0, 25);
	CHECK_EQ(fdt_open_into(shape_buf, shape_buf, sizeof(shape_buf)), 0);
	if (codec)
		CHECK_EQ(fdt_setprop_string(shape_buf, 0, "compress", codec), 0);
	if (raw)
		CHECK_EQ(fdt_setprop(shape_buf, 0, "compress", raw, len), 0);
	CHECK_EQ(fdt_pack(shape_buf), 0);
	return fdt_totalsize(shape_buf);
}

/* shape_codec's shape with a "delta-cache" property: bytes as a u64, or (raw) len raw bytes. */
static size_t shape_delta(const char *codec, uint64_t bytes, const void *raw, int len)
{
	shape_codec(codec, NULL, 0);
	CHECK_EQ(fdt_open_into(shape_buf, shape_buf, sizeof(shape_buf)), 0);
	if (raw)
		CHECK_EQ(fdt_setprop(shape_buf, 0, "delta-cache", raw, len), 0);
	else
		CHECK_EQ(fdt_setprop_u64(shape_buf, 0, "delta-cache", bytes), 0);
	CHECK_EQ(fdt_pack(shape_buf), 0);
	return fdt_totalsize(shape_buf);
}

/* Page deltas offered in the HELLO: taken with packed epochs, the cache's size kept for a `protect` after a
 * takeover; a size that is not whole pages of at most the guest's RAM, or deltas without packed epochs, is
 * refused (the size bounds what this host allocates as a primary later). */
static void test_shape_delta(void)
{
	struct backup b;
	one_disk_backup(&b);
	char why[256];
	struct run_config cfg;
	CHECK_EQ(backup_check_shape(&b, shape_buf, shape_delta("lz4", 16 * PAGE_SIZE, NULL, 0), why, sizeof(why)), 0);
	CHECK(b.packed && b.delta && b.delta_cache == 16 * PAGE_SIZE);
	memset(&cfg, 0, sizeof(cfg));
	backup_run_config(&b, &cfg);
	CHECK_EQ(cfg.delta_cache, 16 * PAGE_SIZE);
	CHECK_EQ(backup_check_shape(&b, shape_buf, shape_delta("none", 64 << 20, NULL, 0), why, sizeof(why)), 0);
	CHECK(b.delta && b.delta_cache == 64 << 20); /* all of the guest's RAM */
	CHECK_EQ(backup_check_shape(&b, shape_buf, shape_codec("zstd", NULL, 0), why, sizeof(why)), 0);
	CHECK(!b.delta && b.delta_cache == 0);
	memset(&cfg, 0, sizeof(cfg));
	backup_run_config(&b, &cfg);
	CHECK_EQ(cfg.delta_cache, 0);
	const uint64_t bad[] = { 0, PAGE_SIZE - 1, PAGE_SIZE + 1, (64 << 20) + PAGE_SIZE, UINT64_MAX };
	for (size_t i = 0; i < ARRAY_SIZE(bad); i++) {
		CHECK_EQ(backup_check_shape(&b, shape_buf, shape_delta("lz4", bad[i], NULL, 0), why, sizeof(why)), -EINVAL);
		CHECK(strstr(why, "malformed delta-cache") != NULL);
	}
	CHECK_EQ(backup_check_shape(&b, shape_buf, shape_delta("lz4", 0, "\0\0\x10\0", 4), why, sizeof(why)), -EINVAL);
	/* an older primary (no codec named: whole pages) cannot send deltas */
	CHECK_EQ(backup_check_shape(&b, shape_buf, shape_delta(NULL, 16 * PAGE_SIZE, NULL, 0), why, sizeof(why)), -EINVAL);
	CHECK(strstr(why, "malformed delta-cache") != NULL);
}

/* The codec in the HELLO: known ones give packed epochs in that codec (kept for a `protect` after a
 * takeover), none named is an older primary (pages whole), an unknown or malformed one is refused with
 * one line that names it (when printable). */
static void test_shape_codec(void)
{
	struct backup b;
	one_disk_backup(&b);
	char why[256];
	struct run_config cfg;
	static const char *const known[] = { "none", "lz4", "zstd" };
	for (unsigned i = 0; i < 3; i++) {
		b.packed = false;
		CHECK_EQ(backup_check_shape(&b, shape_buf, shape_codec(known[i], NULL, 0), why, sizeof(why)), 0);
		CHECK(b.packed);
		CHECK_EQ(b.codec, i);
		memset(&cfg, 0, sizeof(cfg));
		backup_run_config(&b, &cfg);
		CHECK_EQ(cfg.compress, i);
	}
	CHECK_EQ(backup_check_shape(&b, shape_buf, shape_codec(NULL, NULL, 0), why, sizeof(why)), 0);
	CHECK(!b.packed && b.codec == FT_CODEC_NONE);
	CHECK_EQ(backup_check_shape(&b, shape_buf, shape_codec("xz", NULL, 0), why, sizeof(why)), -EINVAL);
	CHECK(strstr(why, "'xz'") && strstr(why, "does not know") && strstr(why, "lz4") && !strchr(why, '\n'));
	CHECK_EQ(backup_check_shape(&b, shape_buf, shape_codec("LZ4", NULL, 0), why, sizeof(why)), -EINVAL);
	CHECK(strstr(why, "'LZ4'") != NULL);
	/* bytes that are no short printable string are not echoed */
	static const char *const junk[] = { "", "lz4\nforged line", "a b", "\x1b[31mred",
					    "0123456789012345678901234567890123456789" };
	for (unsigned i = 0; i < 5; i++) {
		CHECK_EQ(backup_check_shape(&b, shape_buf, shape_codec(junk[i], NULL, 0), why, sizeof(why)), -EINVAL);
		CHECK(strstr(why, "malformed compress") && !strchr(why, '\n') && !strchr(why, 0x1b));
	}
	static const char unterminated[3] = { 'l', 'z', '4' }, inner[6] = { 'l', 'z', '4', 0, 'x', 0 };
	CHECK_EQ(backup_check_shape(&b, shape_buf, shape_codec(NULL, unterminated, 3), why, sizeof(why)), -EINVAL);
	CHECK(strstr(why, "malformed compress") != NULL);
	CHECK_EQ(backup_check_shape(&b, shape_buf, shape_codec(NULL, inner, 6), why, sizeof(why)), -EINVAL);
	CHECK_EQ(backup_check_shape(&b, shape_buf, shape_codec(NULL, "", 0), why, sizeof(why)), -EINVAL);
}

/* ---- epochs ---- */

struct rec {
	uint32_t disk, kind;
	uint64_t off, len;
	uint8_t fill;
};

/* An FT_EPOCH payload: header, pfns, pages (page i filled with tag + i), a small state fdt (or junk), disk records. */
static void *epoch(uint64_t num, uint64_t flags, const uint64_t *pfns, unsigned n, uint8_t tag, bool good_state,
		   const struct rec *recs, unsigned nrecs, size_t *len)
{
	uint8_t state[256];
	if (good_state) {
		state_fdt_into(state, sizeof(state), num);
	} else {
		memset(state, 0xee, sizeof(state));
	}
	size_t disk_len = 0;
	for (unsigned i = 0; i < nrecs; i++)
		disk_len += sizeof(struct ft_disk_rec) + (recs[i].kind == FT_DISK_WRITE ? recs[i].len : 0);
	struct ft_epoch_hdr h = { .epoch = num, .npages = n, .state_len = sizeof(state), .disk_len = disk_len,
				  .flags = flags };
	*len = sizeof(h) + n * (8 + PAGE_SIZE) + sizeof(state) + disk_len;
	uint8_t *p = calloc(1, *len), *q = p;
	CHECK(p != NULL);
	memcpy(q, &h, sizeof(h));
	q += sizeof(h);
	memcpy(q, pfns, n * 8);
	q += n * 8;
	for (unsigned i = 0; i < n; i++, q += PAGE_SIZE)
		memset(q, (uint8_t)(tag + i), PAGE_SIZE);
	memcpy(q, state, sizeof(state));
	q += sizeof(state);
	for (unsigned i = 0; i < nrecs; i++) {
		struct ft_disk_rec r = { .disk = recs[i].disk, .kind = recs[i].kind, .off = recs[i].off, .len = recs[i].len };
		memcpy(q, &r, sizeof(r));
		q += sizeof(r);
		if (r.kind == FT_DISK_WRITE) {
			memset(q, recs[i].fill, r.len);
			q += r.len;
		}
	}
	struct ft_epoch_hdr chk;
	CHECK_EQ(ft_epoch_check(p, *len, false, &chk), 0); /* what the receive path checks before commit */
	return p;
}

static uint8_t mem_buf[NPAGES * PAGE_SIZE];
static uint8_t mem_before[NPAGES * PAGE_SIZE];
static uint8_t disk_before[DISK_SIZE];

static void snap(int fd)
{
	memcpy(mem_before, mem_buf, sizeof(mem_buf));
	CHECK_EQ(pread(fd, disk_before, DISK_SIZE, 0), DISK_SIZE);
}

/* The backup's one disk copy: an unlinked DISK_SIZE file of zeros. Its fd (the caller closes it). */
static int scratch_disk(struct backup *b)
{
	char path[] = "/tmp/ftvmm-test-backup.XXXXXX";
	int fd = mkstemp(path);
	CHECK(fd >= 0);
	unlink(path);
	CHECK_EQ(ftruncate(fd, DISK_SIZE), 0);
	b->machine.ndisks = 1;
	b->disk_fds[0] = fd;
	b->disk_sizes[0] = DISK_SIZE;
	return fd;
}

/* nothing of a refused epoch may be applied */
static void unchanged(struct backup *b, int fd, uint64_t committed, const void *state)
{
	uint8_t d[DISK_SIZE];
	CHECK(memcmp(mem_buf, mem_before, sizeof(mem_buf)) == 0);
	CHECK_EQ(pread(fd, d, DISK_SIZE, 0), DISK_SIZE);
	CHECK(memcmp(d, disk_before, DISK_SIZE) == 0);
	CHECK_EQ(b->committed, committed);
	CHECK(b->state == state);
}

static void test_commit(void)
{
	struct backup b;
	memset(&b, 0, sizeof(b));
	pthread_mutex_init(&b.lock, NULL);
	memset(mem_buf, 0, sizeof(mem_buf));
	CHECK_EQ(gmem_init_buffer(&b.mem, mem_buf, sizeof(mem_buf)), 0);
	int fd = scratch_disk(&b);
	size_t len;
	void *p;
	uint64_t pf[3] = { 1, 5, 15 };
	struct rec w1 = { 0, FT_DISK_WRITE, 4096, 512, 0xa1 };

	/* the first epoch must be the baseline */
	snap(fd);
	p = epoch(7, 0, pf, 3, 0x10, true, &w1, 1, &len);
	CHECK_EQ(backup_commit_epoch(&b, 7, p, len), -EBADMSG);
	unchanged(&b, fd, 0, NULL);
	free(p);
	p = epoch(7, FT_EPOCH_BASELINE, pf, 3, 0x10, true, &w1, 1, &len);
	CHECK_EQ(backup_commit_epoch(&b, 7, p, len), 0);
	free(p);
	CHECK(b.have_baseline && b.committed == 7 && b.state != NULL);
	CHECK(mem_buf[1 * PAGE_SIZE] == 0x10 && mem_buf[5 * PAGE_SIZE + 100] == 0x11 && mem_buf[16 * PAGE_SIZE - 1] == 0x12);
	CHECK(mem_buf[0] == 0 && mem_buf[2 * PAGE_SIZE] == 0);
	uint8_t d[512];
	CHECK_EQ(pread(fd, d, 512, 4096), 512);
	CHECK(d[0] == 0xa1 && d[511] == 0xa1);
	const void *state7 = b.state;
	CHECK(fdt_check_header(b.state) == 0);

	/* refused, each leaving commit 7 exactly as it was */
	snap(fd);
	uint64_t pf_bad[2] = { 2, NPAGES }; /* the second page is past the end of guest RAM */
	p = epoch(8, 0, pf_bad, 2, 0x20, true, NULL, 0, &len);
	CHECK_EQ(backup_commit_epoch(&b, 8, p, len), -EBADMSG);
	unchanged(&b, fd, 7, state7);
	free(p);
	struct rec past_end[2] = { { 0, FT_DISK_WRITE, 0, 512, 0xb2 }, { 0, FT_DISK_WRITE, DISK_SIZE - 256, 512, 0xb3 } };
	p = epoch(8, 0, pf, 3, 0x20, true, past_end, 2, &len);
	CHECK_EQ(backup_commit_epoch(&b, 8, p, len), -ERANGE); /* the good record before it is not applied either */
	unchanged(&b, fd, 7, state7);
	free(p);
	struct rec no_disk = { 1, FT_DISK_ZERO, 0, 4096, 0 };
	p = epoch(8, 0, pf, 3, 0x20, true, &no_disk, 1, &len);
	CHECK_EQ(backup_commit_epoch(&b, 8, p, len), -ERANGE);
	unchanged(&b, fd, 7, state7);
	free(p);
	p = epoch(8, 0, pf, 3, 0x20, false, NULL, 0, &len); /* state is not an fdt */
	CHECK_EQ(backup_commit_epoch(&b, 8, p, len), -EBADMSG);
	unchanged(&b, fd, 7, state7);
	free(p);
	/* the fencing token: an epoch of another generation than the one paired with (here 0) */
	p = epoch(8, 0, pf, 3, 0x20, true, NULL, 0, &len);
	((struct ft_epoch_hdr *)p)->generation = 3;
	CHECK_EQ(backup_commit_epoch(&b, 8, p, len), -EBADMSG);
	unchanged(&b, fd, 7, state7);
	free(p);
	uint64_t pf_many[NPAGES + 1] = { 0 }; /* more pages than the guest has: only by repeating one */
	p = epoch(8, 0, pf_many, NPAGES + 1, 0x20, true, NULL, 0, &len);
	CHECK_EQ(backup_commit_epoch(&b, 8, p, len), -EBADMSG);
	unchanged(&b, fd, 7, state7);
	free(p);
	p = epoch(9, 0, pf, 3, 0x20, true, NULL, 0, &len); /* skips epoch 8 */
	CHECK_EQ(backup_commit_epoch(&b, 9, p, len), -EBADMSG);
	unchanged(&b, fd, 7, state7);
	free(p);
	p = epoch(8, 0, pf, 3, 0x20, true, NULL, 0, &len); /* the frame's seq and the header disagree */
	CHECK_EQ(backup_commit_epoch(&b, 9, p, len), -EBADMSG);
	unchanged(&b, fd, 7, state7);
	CHECK_EQ(backup_commit_epoch(&b, 8, p, len - 1), -EBADMSG); /* one byte short */
	unchanged(&b, fd, 7, state7);
	free(p);

	/* the next good epoch: pages, a zeroed range and the new state */
	struct rec z = { 0, FT_DISK_ZERO, 4096, 4096, 0 };
	uint64_t pf8[1] = { 2 };
	p = epoch(8, 0, pf8, 1, 0x30, true, &z, 1, &len);
	CHECK_EQ(backup_commit_epoch(&b, 8, p, len), 0);
	free(p);
	CHECK_EQ(b.committed, 8);
	CHECK(mem_buf[2 * PAGE_SIZE] == 0x30 && mem_buf[1 * PAGE_SIZE] == 0x10);
	CHECK_EQ(pread(fd, d, 512, 4096), 512);
	CHECK(d[0] == 0 && d[511] == 0);
	uint64_t e;
	const fdt64_t *ep = fdt_getprop(b.state, 0, "epoch", NULL);
	CHECK(ep != NULL);
	memcpy(&e, ep, 8);
	CHECK_EQ(fdt64_to_cpu(e), 8);

	free(b.state);
	close(fd);
	gmem_free(&b.mem);
	pthread_mutex_destroy(&b.lock);
}

/* ---- initial sync ---- */

/* A payload of *len = hlen + rest bytes (exactly: ASan sees any read past it), starting with head;
 * the rest is the caller's to fill. */
static uint8_t *payload(const void *head, size_t hlen, size_t rest, size_t *len)
{
	*len = hlen + rest;
	uint8_t *p = malloc(*len ? *len : 1);
	CHECK(p != NULL);
	memcpy(p, head, hlen);
	return p;
}

/* An FT_MEM payload as the primary sends it: u64 count (claimed, may lie), pfns, pages (page i filled
 * with tag + i); exactly as long as `have` pages make it, so ASan sees any read past it. */
static void *mem_frame(uint64_t claimed, const uint64_t *pfns, unsigned have, uint8_t tag, size_t *len)
{
	uint8_t *p = payload(&claimed, 8, have * (8 + PAGE_SIZE), len);
	if (have)
		memcpy(p + 8, pfns, have * 8);
	for (unsigned i = 0; i < have; i++)
		memset(p + 8 + have * 8 + i * PAGE_SIZE, (uint8_t)(tag + i), PAGE_SIZE);
	return p;
}

static void test_sync_mem(void)
{
	struct backup b;
	memset(&b, 0, sizeof(b));
	memset(mem_buf, 0, sizeof(mem_buf));
	CHECK_EQ(gmem_init_buffer(&b.mem, mem_buf, sizeof(mem_buf)), 0);
	size_t len;
	void *p;
	uint64_t pf[2] = { 3, 4 };
	p = mem_frame(2, pf, 2, 0x40, &len);
	CHECK_EQ(backup_sync_mem(&b, p, len), 0);
	free(p);
	CHECK(mem_buf[3 * PAGE_SIZE] == 0x40 && mem_buf[5 * PAGE_SIZE - 1] == 0x41 && mem_buf[5 * PAGE_SIZE] == 0);
	memcpy(mem_before, mem_buf, sizeof(mem_buf));
	/* a count whose size wraps: 8 + (1 + 2^61) * (8 + 4096) == 8 + 1 * (8 + 4096) modulo 2^64; the zero
	 * page that follows reads as more valid pfns, so only the length check stops a read past the frame */
	uint64_t one[1] = { 0 };
	p = mem_frame(1 + (1ull << 61), one, 1, 0, &len);
	CHECK_EQ(backup_sync_mem(&b, p, len), -EBADMSG);
	free(p);
	/* other wrapping counts: each size term alone overflows */
	const uint64_t huge[] = { UINT64_MAX, 1ull << 63, (UINT64_MAX / (8 + PAGE_SIZE)) + 1, 1ull << 52 };
	for (size_t i = 0; i < ARRAY_SIZE(huge); i++) {
		p = mem_frame(huge[i], one, 1, 0x50, &len);
		CHECK_EQ(backup_sync_mem(&b, p, len), -EBADMSG);
		free(p);
	}
	/* a count over the guest's page count, even with a matching length and valid pfns */
	uint64_t many[NPAGES + 1] = { 0 };
	p = mem_frame(NPAGES + 1, many, NPAGES + 1, 0x60, &len);
	CHECK_EQ(backup_sync_mem(&b, p, len), -EBADMSG);
	free(p);
	/* a pfn past guest RAM; one byte short; shorter than the count itself */
	uint64_t past[2] = { 1, NPAGES };
	p = mem_frame(2, past, 2, 0x70, &len);
	CHECK_EQ(backup_sync_mem(&b, p, len), -EBADMSG);
	CHECK_EQ(backup_sync_mem(&b, p, len - 1), -EBADMSG);
	CHECK_EQ(backup_sync_mem(&b, p, 7), -EBADMSG);
	free(p);
	CHECK(memcmp(mem_buf, mem_before, sizeof(mem_buf)) == 0);
	/* an empty batch is well-formed; after the baseline no initial-sync frame is taken */
	p = mem_frame(0, NULL, 0, 0, &len);
	CHECK_EQ(backup_sync_mem(&b, p, len), 0);
	b.have_baseline = true;
	CHECK_EQ(backup_sync_mem(&b, p, len), -EBADMSG);
	free(p);
	p = mem_frame(2, pf, 2, 0x80, &len);
	CHECK_EQ(backup_sync_mem(&b, p, len), -EBADMSG);
	free(p);
	CHECK(memcmp(mem_buf, mem_before, sizeof(mem_buf)) == 0);
	gmem_free(&b.mem);
}

/* An FT_DISK payload: one record, then len bytes of fill for a write (data_len overrides when not ~0). */
static void *disk_frame(uint32_t disk, uint32_t kind, uint64_t off, uint64_t len, uint8_t fill, size_t *flen)
{
	struct ft_disk_rec r = { .disk = disk, .kind = kind, .off = off, .len = len };
	size_t data = kind == FT_DISK_WRITE ? (size_t)len : 0;
	uint8_t *p = payload(&r, sizeof(r), data, flen);
	memset(p + sizeof(r), fill, data);
	return p;
}

static void test_sync_disk(void)
{
	struct backup b;
	memset(&b, 0, sizeof(b));
	int fd = scratch_disk(&b);
	size_t len;
	uint8_t *p = disk_frame(0, FT_DISK_WRITE, 512, 1024, 0xc1, &len);
	CHECK_EQ(backup_sync_disk(&b, p, len), 0);
	CHECK_EQ(pread(fd, disk_before, DISK_SIZE, 0), DISK_SIZE);
	CHECK(disk_before[511] == 0 && disk_before[512] == 0xc1 && disk_before[1535] == 0xc1 && disk_before[1536] == 0);
	/* the data one byte short or long; shorter than a record */
	CHECK_EQ(backup_sync_disk(&b, p, len - 1), -EBADMSG);
	free(p);
	p = disk_frame(0, FT_DISK_WRITE, 0, 100, 0xc2, &len);
	uint8_t *q = malloc(len + 1);
	CHECK(q != NULL);
	memcpy(q, p, len);
	q[len] = 0xc2;
	CHECK(backup_sync_disk(&b, q, len + 1) != 0);
	free(q);
	CHECK(backup_sync_disk(&b, p, sizeof(struct ft_disk_rec) - 1) != 0);
	free(p);
	/* a length that wraps the frame size; past the disk's end; another disk; an unknown kind */
	p = disk_frame(0, FT_DISK_WRITE, 0, 0, 0, &len);
	struct ft_disk_rec r;
	memcpy(&r, p, sizeof(r));
	r.len = UINT64_MAX - sizeof(r) + 1;
	memcpy(p, &r, sizeof(r));
	CHECK(backup_sync_disk(&b, p, len) != 0);
	free(p);
	p = disk_frame(0, FT_DISK_ZERO, DISK_SIZE - 512, 1024, 0, &len);
	CHECK(backup_sync_disk(&b, p, len) != 0);
	free(p);
	p = disk_frame(1, FT_DISK_ZERO, 0, 512, 0, &len);
	CHECK(backup_sync_disk(&b, p, len) != 0);
	free(p);
	p = disk_frame(0, 7, 512, 512, 0, &len); /* not a write, not a zero: refused, not taken as a zero */
	CHECK(backup_sync_disk(&b, p, len) != 0);
	free(p);
	uint8_t d[DISK_SIZE];
	CHECK_EQ(pread(fd, d, DISK_SIZE, 0), DISK_SIZE);
	CHECK(memcmp(d, disk_before, DISK_SIZE) == 0);
	/* a zeroed range; none after the baseline */
	p = disk_frame(0, FT_DISK_ZERO, 1024, 512, 0, &len);
	CHECK_EQ(backup_sync_disk(&b, p, len), 0);
	CHECK_EQ(pread(fd, d, DISK_SIZE, 0), DISK_SIZE);
	CHECK(d[1023] == 0xc1 && d[1024] == 0 && d[1535] == 0);
	b.have_baseline = true;
	CHECK(backup_sync_disk(&b, p, len) != 0);
	free(p);
	close(fd);
}

/* ---- fdts shorter than their header ---- */

/* len bytes (exactly: ASan sees a read past them) starting with an fdt header's magic */
static void *fdt_stub(size_t len)
{
	uint8_t *p = malloc(len ? len : 1);
	CHECK(p != NULL);
	memcpy(p, shape_buf, len); /* a real header's first len bytes */
	return p;
}

static void test_short_shape(void)
{
	struct backup b;
	memset(&b, 0, sizeof(b));
	char why[256];
	size_t n = shape(64 << 20, 2, 0, NULL, 0, 25);
	CHECK_EQ(backup_check_shape(&b, shape_buf, n, why, sizeof(why)), 0);
	const size_t lens[] = { 0, 4, 8, 39, 40, 56 };
	for (size_t i = 0; i < ARRAY_SIZE(lens); i++) {
		void *p = fdt_stub(lens[i]);
		CHECK_EQ(backup_check_shape(&b, p, lens[i], why, sizeof(why)), -EINVAL);
		free(p);
	}
	/* a whole header but a structure block that is not one: refused, not walked */
	uint8_t bad[4096];
	memcpy(bad, shape_buf, n);
	uint32_t off = fdt_off_dt_struct(bad);
	memset(bad + off, 0xff, 8);
	CHECK_EQ(backup_check_shape(&b, bad, n, why, sizeof(why)), -EINVAL);
}

/* An FT_EPOCH payload with no pages and no disk, its state the first slen bytes of `state` */
static void *state_epoch(uint64_t num, const void *state, size_t slen, size_t *len)
{
	struct ft_epoch_hdr h = { .epoch = num, .state_len = slen, .flags = FT_EPOCH_BASELINE };
	uint8_t *p = payload(&h, sizeof(h), slen, len);
	memcpy(p + sizeof(h), state, slen);
	return p;
}

static void test_short_state(void)
{
	struct backup b;
	memset(&b, 0, sizeof(b));
	pthread_mutex_init(&b.lock, NULL);
	memset(mem_buf, 0, sizeof(mem_buf));
	CHECK_EQ(gmem_init_buffer(&b.mem, mem_buf, sizeof(mem_buf)), 0);
	size_t n = shape(64 << 20, 2, 0, NULL, 0, 25), len;
	const size_t lens[] = { 0, 4, 8, 39, 40, 56, n - 1 };
	for (size_t i = 0; i < ARRAY_SIZE(lens); i++) {
		void *p = state_epoch(3, shape_buf, lens[i], &len);
		CHECK_EQ(backup_commit_epoch(&b, 3, p, len), -EBADMSG);
		CHECK(!b.have_baseline && b.state == NULL);
		free(p);
	}
	uint8_t bad[4096];
	memcpy(bad, shape_buf, n);
	memset(bad + fdt_off_dt_struct(bad), 0xff, 8);
	void *p = state_epoch(3, bad, n, &len);
	CHECK_EQ(backup_commit_epoch(&b, 3, p, len), -EBADMSG);
	free(p);
	p = state_epoch(3, shape_buf, n, &len); /* the whole fdt: taken */
	CHECK_EQ(backup_commit_epoch(&b, 3, p, len), 0);
	free(p);
	CHECK(b.have_baseline && b.committed == 3);
	free(b.state);
	gmem_free(&b.mem);
	pthread_mutex_destroy(&b.lock);
}

/* ---- pairing with the primary ---- */

static struct sockaddr_in hs_addr;

static int hs_listen(void)
{
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	CHECK(fd >= 0);
	memset(&hs_addr, 0, sizeof(hs_addr));
	hs_addr.sin_family = AF_INET;
	hs_addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	socklen_t al = sizeof(hs_addr);
	CHECK_EQ(bind(fd, (struct sockaddr *)&hs_addr, sizeof(hs_addr)), 0);
	CHECK_EQ(listen(fd, 16), 0);
	CHECK_EQ(getsockname(fd, (struct sockaddr *)&hs_addr, &al), 0);
	return fd;
}

/* A client whose reads give up after 5 s: a backup that never answers fails the test, never hangs it. */
static int hs_connect(void)
{
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	CHECK(fd >= 0);
	CHECK_EQ(connect(fd, (struct sockaddr *)&hs_addr, sizeof(hs_addr)), 0);
	struct timeval tv = { 5, 0 };
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	return fd;
}

static void hs_send(int fd, const void *p, size_t n)
{
	CHECK_EQ(write(fd, p, n), (ssize_t)n);
}

/* The backup closed this connection (EOF, or a reset when it left bytes unread), rather than keeping
 * it or leaving it hanging (the read times out). */
static void hs_dropped(int fd)
{
	char c;
	ssize_t n;
	while ((n = read(fd, &c, 1)) > 0)
		; /* a HELLO_ERR it may have sent first */
	CHECK(n == 0 || errno == ECONNRESET);
	close(fd);
}

/* Same TCP connection: the backup's end's peer is the client's end. */
static bool same_conn(int backup_fd, int client_fd)
{
	struct sockaddr_in a, c;
	socklen_t al = sizeof(a), cl = sizeof(c);
	CHECK_EQ(getpeername(backup_fd, (struct sockaddr *)&a, &al), 0);
	CHECK_EQ(getsockname(client_fd, (struct sockaddr *)&c, &cl), 0);
	return a.sin_port == c.sin_port;
}

struct hs_job {
	struct backup *b;
	int lfd, rc;
};

static void *hs_thread(void *arg)
{
	struct hs_job *j = arg;
	j->rc = backup_accept(j->b, j->lfd);
	return NULL;
}

/* A frame header as a peer would send it (no payload follows unless the caller writes one). */
static struct ft_frame hs_hdr(uint16_t type, uint64_t len, uint64_t seq)
{
	struct ft_frame f = { .magic = FT_MAGIC, .version = FT_VERSION, .type = type, .len = len, .seq = seq };
	return f;
}

/* Peers that connect first and never identify themselves, or not as a primary, must not keep the
 * real primary from pairing: they are dropped (a timeout, a few KiB at most) and the backup goes on. */
static void test_handshake(void)
{
	struct backup b;
	memset(&b, 0, sizeof(b));
	pthread_mutex_init(&b.lock, NULL);
	b.timeout_ms = 200;
	int lfd = hs_listen();
	struct hs_job job = { &b, lfd, -1 };
	pthread_t t;
	CHECK_EQ(pthread_create(&t, NULL, hs_thread, &job), 0);

	/* a silent peer alone: dropped after the hello timeout (1 s here), the backup listens on */
	int slow = hs_connect();
	uint64_t t0 = now_ns();
	hs_dropped(slow);
	CHECK(now_ns() - t0 >= 900000000ull && now_ns() - t0 < 4000000000ull);
	/* another ftvmm version is told so */
	int other = hs_connect();
	struct ft_frame f = hs_hdr(FT_HELLO, 0, 9);
	f.version = FT_VERSION + 1;
	hs_send(other, &f, sizeof(f));
	void *reply = NULL;
	CHECK_EQ(ft_recv(FT_PLAIN(other), &f, &reply), 0);
	CHECK_EQ(f.type, FT_HELLO_ERR);
	free(reply);
	hs_dropped(other);

	int idle = hs_connect(); /* says nothing at all */
	int partial = hs_connect();
	f = hs_hdr(FT_HELLO, 100, 9);
	hs_send(partial, &f, 10); /* half a header, then silence */
	int big = hs_connect();
	f = hs_hdr(FT_HELLO, 64 << 10, 9); /* a "shape" of 64 KiB: more than a handshake needs */
	hs_send(big, &f, sizeof(f));
	int http = hs_connect();
	static const char get[] = "GET / HTTP/1.1\r\nHost: backup\r\nUser-Agent: probe\r\n\r\n";
	hs_send(http, get, sizeof(get) - 1);
	int stale = hs_connect(); /* a heartbeat link of an earlier attempt, session 1 */
	CHECK_EQ(ft_send_buf(FT_PLAIN(stale), FT_HB_HELLO, 1, NULL, 0), 0);
	int ack = hs_connect(); /* well-formed, but not a hello */
	CHECK_EQ(ft_send_buf(FT_PLAIN(ack), FT_ACK, 1, NULL, 0), 0);
	int tls = hs_connect(); /* a primary with credentials: the start of a ClientHello */
	static const uint8_t client_hello[40] = { 0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01, 0xfc, 0x03, 0x03 };
	hs_send(tls, client_hello, sizeof(client_hello));

	/* the primary, session 2 */
	int data = hs_connect(), hb = hs_connect();
	size_t n = shape(16 * PAGE_SIZE, 1, 0, NULL, 0, 25);
	CHECK_EQ(ft_send_buf(FT_PLAIN(data), FT_HELLO, 2, shape_buf, n), 0);
	CHECK_EQ(ft_send_buf(FT_PLAIN(hb), FT_HB_HELLO, 2, NULL, 0), 0);
	CHECK_EQ(ft_recv(FT_PLAIN(data), &f, &reply), 0); /* fails after 5 s if the backup is stuck on a peer */
	free(reply);
	CHECK_EQ(f.type, FT_HELLO_OK);
	CHECK_EQ(pthread_join(t, NULL), 0);
	CHECK_EQ(job.rc, 0);
	CHECK(same_conn(b.data.fd, data) && same_conn(b.hb.fd, hb));
	CHECK_EQ(b.machine.mem, 16 * PAGE_SIZE);
	/* every other peer was dropped */
	hs_dropped(idle);
	hs_dropped(partial);
	hs_dropped(big);
	hs_dropped(http);
	hs_dropped(stale);
	hs_dropped(ack);
	hs_dropped(tls);
	close(data);
	close(hb);
	ft_link_close(&b.data);
	ft_link_close(&b.hb);
	close(lfd);
	gmem_free(&b.mem);
	pthread_mutex_destroy(&b.lock);
}

/* The HELLO_OK of a backup that reads packed epochs names the primary's codec back (a primary that hears
 * none is talking to an older backup); one it does not know gets a HELLO_ERR saying so. */
static void hello_codec_case(const char *codec, uint64_t delta, uint16_t want_type, const char *want_text)
{
	struct backup b;
	one_disk_backup(&b);
	pthread_mutex_init(&b.lock, NULL);
	b.timeout_ms = 200;
	int lfd = hs_listen();
	struct hs_job job = { &b, lfd, -1 };
	pthread_t t;
	CHECK_EQ(pthread_create(&t, NULL, hs_thread, &job), 0);
	int data = hs_connect(), hb = hs_connect();
	size_t n = delta ? shape_delta(codec, delta, NULL, 0) : shape_codec(codec, NULL, 0);
	CHECK_EQ(ft_send_buf(FT_PLAIN(data), FT_HELLO, 2, shape_buf, n), 0);
	CHECK_EQ(ft_send_buf(FT_PLAIN(hb), FT_HB_HELLO, 2, NULL, 0), 0);
	struct ft_frame f;
	void *reply;
	CHECK_EQ(ft_recv(FT_PLAIN(data), &f, &reply), 0);
	CHECK_EQ(f.type, want_type);
	CHECK(f.len == strlen(want_text) && !memcmp(reply, want_text, f.len));
	free(reply);
	CHECK_EQ(pthread_join(t, NULL), 0);
	CHECK_EQ(job.rc, want_type == FT_HELLO_OK ? 0 : -EINVAL);
	close(data);
	close(hb);
	ft_link_close(&b.data);
	ft_link_close(&b.hb);
	close(lfd);
	gmem_free(&b.mem);
	pthread_mutex_destroy(&b.lock);
}

static void test_handshake_codec(void)
{
	hello_codec_case("zstd", 0, FT_HELLO_OK, "codec zstd");
	hello_codec_case("none", 0, FT_HELLO_OK, "codec none");
	hello_codec_case(NULL, 0, FT_HELLO_OK, ""); /* an older primary: the HELLO_OK it knows */
	hello_codec_case("lz4", 8 * PAGE_SIZE, FT_HELLO_OK, "codec lz4 delta"); /* deltas offered: taken */
	hello_codec_case("brotli", 0, FT_HELLO_ERR, "the primary compresses its epochs with 'brotli', which this backup "
			 "does not know (it knows " FT_CODEC_NAMES ")");
}

/* ---- pairing over TLS ---- */

static struct tls_fixture fx;

/* A primary's connection to the backup's listening socket, TLS with creds c (checking host); the
 * client's side of the handshake must finish (TLS 1.3: before the backup has checked our certificate). */
static struct ft_link tls_connect(struct ft_tls_creds *c, const char *host)
{
	struct ft_link l = { .fd = hs_connect() };
	CHECK_EQ(ft_tls_new(c, l.fd, host, &l.tls), 0);
	int r = ft_tls_handshake(l.tls, 5000);
	if (r)
		fprintf(stderr, "client handshake: %s\n", ft_tls_error(l.tls));
	CHECK_EQ(r, 0);
	return l;
}

/* With credentials, a peer must authenticate before the backup reads one frame from it: a stranger's
 * certificate that claims the real primary's session, a primary without TLS, and a peer that stops
 * halfway through its handshake never pair nor hold up the real primary, which pairs long before
 * the dawdler's deadline; the paired links carry frames through their sessions. */
static void test_tls_pairing(void)
{
	struct backup b;
	memset(&b, 0, sizeof(b));
	pthread_mutex_init(&b.lock, NULL);
	b.timeout_ms = 10000; /* the dawdler's deadline: far above what pairing takes, under valgrind on a busy host too */
	struct ft_tls_creds *sc = tls_creds(FT_TLS_SERVER, fx.good, NULL, NULL);
	struct ft_tls_creds *good = tls_creds(FT_TLS_CLIENT, fx.good, NULL, NULL);
	struct ft_tls_creds *mixed = tls_creds(FT_TLS_CLIENT, fx.mixed, NULL, NULL);
	b.tls = sc;
	int lfd = hs_listen();
	struct hs_job job = { &b, lfd, -1 };
	pthread_t t;
	uint64_t t0 = now_ns();
	CHECK_EQ(pthread_create(&t, NULL, hs_thread, &job), 0);

	int dawdler = hs_connect(); /* the first bytes of a ClientHello, then silence */
	hs_send(dawdler, "\x16\x03\x01", 3);
	int plain = hs_connect(); /* an ftvmm primary without credentials */
	CHECK_EQ(ft_send_buf(FT_PLAIN(plain), FT_HB_HELLO, 2, NULL, 0), 0);
	struct ft_link data = tls_connect(good, "127.0.0.1");
	size_t n = shape(16 * PAGE_SIZE, 1, 0, NULL, 0, 25);
	CHECK_EQ(ft_send_buf(&data, FT_HELLO, 2, shape_buf, n), 0);
	/* a stranger (its certificate from another CA) sends the heartbeat hello of the real session */
	struct ft_link rogue = tls_connect(mixed, "127.0.0.1");
	(void)ft_send_buf(&rogue, FT_HB_HELLO, 2, NULL, 0);
	struct ft_frame f;
	void *reply = (void *)1;
	CHECK_EQ(ft_recv(&rogue, &f, &reply), -EACCES); /* the backup's alert: refused */
	CHECK(reply == NULL);
	CHECK(strstr(ft_tls_error(rogue.tls), "refused us") != NULL);
	hs_dropped(plain);
	/* only now the real heartbeat link */
	struct ft_link hb = tls_connect(good, "127.0.0.1");
	CHECK_EQ(ft_send_buf(&hb, FT_HB_HELLO, 2, NULL, 0), 0);
	CHECK_EQ(ft_recv(&data, &f, &reply), 0);
	CHECK_EQ(f.type, FT_HELLO_OK);
	free(reply);
	CHECK_EQ(pthread_join(t, NULL), 0);
	CHECK_EQ(job.rc, 0);
	CHECK(now_ns() - t0 < 8000000000ull); /* the dawdler's deadline (10 s) did not hold the pairing up */
	CHECK(same_conn(b.data.fd, data.fd) && same_conn(b.hb.fd, hb.fd));
	CHECK(b.data.tls && b.hb.tls);
	hs_dropped(dawdler);
	/* frames both ways through the authenticated sessions, the links blocking again */
	CHECK_EQ(ft_send_buf(&data, FT_BYE, 5, NULL, 0), 0);
	CHECK_EQ(ft_recv(&b.data, &f, &reply), 0);
	CHECK(f.type == FT_BYE && f.seq == 5);
	free(reply);
	CHECK_EQ(ft_send_buf(&b.hb, FT_HEARTBEAT, 6, NULL, 0), 0);
	CHECK_EQ(ft_recv(&hb, &f, &reply), 0);
	CHECK(f.type == FT_HEARTBEAT && f.seq == 6);
	free(reply);
	ft_link_close(&data);
	ft_link_close(&hb);
	ft_link_close(&rogue);
	ft_link_close(&b.data);
	ft_link_close(&b.hb);
	close(lfd);
	gmem_free(&b.mem);
	pthread_mutex_destroy(&b.lock);
	ft_tls_creds_free(sc);
	ft_tls_creds_free(good);
	ft_tls_creds_free(mixed);
}

struct mirror_job {
	struct backup *b;
	int lfd, gone;
};

static void *mirror_thread(void *arg)
{
	struct mirror_job *j = arg;
	j->gone = backup_mirror(j->b, j->lfd);
	return NULL;
}

/* A fake primary pairs with a real backup_mirror: its HELLO (a 1-vCPU guest of NPAGES) and HB_HELLO, then the
 * backup's HELLO_OK. */
static void pair_as_primary(struct ft_link *data, struct ft_link *hb)
{
	size_t n = shape(NPAGES * PAGE_SIZE, 1, 0, NULL, 0, 25);
	CHECK_EQ(ft_send_buf(data, FT_HELLO, 3, shape_buf, n), 0);
	CHECK_EQ(ft_send_buf(hb, FT_HB_HELLO, 3, NULL, 0), 0);
	struct ft_frame f;
	void *reply;
	CHECK_EQ(ft_recv(data, &f, &reply), 0);
	CHECK_EQ(f.type, FT_HELLO_OK);
	free(reply);
}

/* ...and its baseline, epoch num (page pfn full of tag), committed and acked. */
static void send_baseline_acked(struct ft_link *data, uint64_t num, uint64_t pfn, uint8_t tag)
{
	size_t len;
	void *e0 = epoch(num, FT_EPOCH_BASELINE, &pfn, 1, tag, true, NULL, 0, &len);
	CHECK_EQ(ft_send_buf(data, FT_EPOCH, num, e0, len), 0);
	free(e0);
	struct ft_frame f;
	void *reply;
	CHECK_EQ(ft_recv(data, &f, &reply), 0);
	CHECK(f.type == FT_ACK && f.seq == num);
	free(reply);
}

/* A primary (PSK) mirrored by a real backup_mirror: the baseline commits and is acked; the next epoch
 * gets one byte flipped on the wire. The backup refuses it (the TLS record's MAC), applies nothing of
 * it, ends the data link, and keeps the baseline; the primary then goes away. */
static void test_tls_flipped_epoch(void)
{
	static struct backup b;
	backup_init(&b);
	b.timeout_ms = 3000;
	struct ft_tls_creds *sc = tls_creds(FT_TLS_SERVER, NULL, NULL, fx.psk);
	struct ft_tls_creds *cc = tls_creds(FT_TLS_CLIENT, NULL, NULL, fx.psk);
	b.tls = sc;
	int lfd = hs_listen();
	struct mirror_job job = { &b, lfd, -9 };
	pthread_t t;
	CHECK_EQ(pthread_create(&t, NULL, mirror_thread, &job), 0);
	/* the data link through a relay that can flip a byte */
	struct relay r;
	int s[2];
	CHECK_EQ(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, s), 0);
	relay_start(&r, s[1], hs_connect());
	struct ft_link data = { .fd = s[0] };
	CHECK_EQ(ft_tls_new(cc, data.fd, "127.0.0.1", &data.tls), 0);
	CHECK_EQ(ft_tls_handshake(data.tls, 5000), 0);
	struct ft_link hb = tls_connect(cc, "127.0.0.1");
	pair_as_primary(&data, &hb);
	uint64_t pfn = 3;
	send_baseline_acked(&data, 0, pfn, 0x11);
	CHECK_EQ(ft_send_buf(&hb, FT_HEARTBEAT, 1, NULL, 0), 0);
	size_t len;
	struct ft_frame f;
	void *reply;
	relay_flip(&r, 0, 2000); /* inside the next epoch's first record */
	void *e1 = epoch(1, 0, &pfn, 1, 0x22, true, NULL, 0, &len);
	CHECK_EQ(ft_send_buf(&data, FT_EPOCH, 1, e1, len), 0);
	free(e1);
	CHECK(ft_recv(&data, &f, &reply) < 0); /* no ack: the backup ended the data link */
	ft_link_close(&hb); /* and the primary is gone */
	CHECK_EQ(pthread_join(t, NULL), 0);
	CHECK_EQ(job.gone, 1);
	CHECK(b.have_baseline && b.committed == 0);
	CHECK(!strcmp(b.link_why, "corrupted stream"));
	for (size_t i = 0; i < PAGE_SIZE; i++)
		CHECK_EQ(b.mem.host[pfn * PAGE_SIZE + i], 0x11); /* the baseline's page, not a byte of epoch 1 */
	ft_link_close(&data);
	relay_stop(&r);
	free(b.state);
	gmem_free(&b.mem);
	pthread_mutex_destroy(&b.lock);
	ft_tls_creds_free(sc);
	ft_tls_creds_free(cc);
}

/* A primary that goes silent on both links (frozen: its sockets stay open) after the baseline: the backup, before
 * it takes over, writes FT_TAKEOVER (seq: its last commit) behind its heartbeats, where a thawed primary reads it and
 * stops. Silent before any baseline: no notice (nothing to take over, the primary must run on). */
static void takeover_notice_case(bool baseline)
{
	static struct backup b;
	backup_init(&b);
	b.timeout_ms = 300;
	int lfd = hs_listen();
	struct mirror_job job = { &b, lfd, -9 };
	pthread_t t;
	CHECK_EQ(pthread_create(&t, NULL, mirror_thread, &job), 0);
	struct ft_link data = { .fd = hs_connect() }, hb = { .fd = hs_connect() };
	pair_as_primary(&data, &hb);
	if (baseline)
		send_baseline_acked(&data, 4, 3, 0x11);
	CHECK_EQ(pthread_join(t, NULL), 0); /* silence: mirroring ends */
	struct ft_frame f;
	void *reply;
	CHECK_EQ(job.gone, 1); /* the primary is gone (silent) */
	unsigned beats = 0, notices = 0;
	uint64_t from = 0;
	while (ft_recv(&hb, &f, &reply) == 0) {
		free(reply);
		if (f.type == FT_HEARTBEAT) {
			CHECK_EQ(notices, 0); /* the notice is the last frame */
			beats++;
		} else {
			CHECK_EQ(f.type, FT_TAKEOVER);
			from = f.seq;
			notices++;
		}
	}
	CHECK(beats > 0);
	CHECK_EQ(notices, baseline ? 1 : 0);
	CHECK_EQ(from, baseline ? 4 : 0);
	ft_link_close(&data);
	ft_link_close(&hb);
	free(b.state);
	gmem_free(&b.mem);
	pthread_mutex_destroy(&b.lock);
}

static void test_takeover_notice(void)
{
	takeover_notice_case(true);
	takeover_notice_case(false);
}

/* ---- ftvmm backup's options ---- */

/* cmd_backup(argv) in a child, its stderr (and stdout) into out: the exit status, or -1 for a child
 * still running after wait_ms (then *pid is left to the caller to stop; with wait_ms 0 its output
 * goes nowhere). */
static int run_backup(const char *const *args, char *out, size_t outlen, pid_t *pid, unsigned wait_ms)
{
	int pfd[2];
	CHECK(pipe2(pfd, O_CLOEXEC) == 0);
	fflush(NULL);
	pid_t c = fork();
	CHECK(c >= 0);
	if (c == 0) {
		/* a child left running must not die of SIGPIPE on its next line once we stop reading */
		int o = wait_ms ? pfd[1] : open("/dev/null", O_WRONLY | O_CLOEXEC);
		dup2(o, 1);
		dup2(o, 2);
		char *argv[64];
		int n = 0;
		for (; args[n] && n < 63; n++)
			argv[n] = (char *)args[n];
		argv[n] = NULL;
		_exit(cmd_backup(n, argv));
	}
	close(pfd[1]);
	*pid = c;
	int st;
	for (unsigned t = 0; t < wait_ms; t += 10) {
		if (waitpid(c, &st, WNOHANG) == c) {
			ssize_t n = read(pfd[0], out, outlen - 1);
			out[n > 0 ? n : 0] = '\0';
			close(pfd[0]);
			return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
		}
		usleep(10000);
	}
	close(pfd[0]);
	out[0] = '\0';
	return -1;
}

/* As many disks and NICs as a machine holds: every one reaches run's parser (through an argv built
 * for it, which must hold them all: ASan watches this build), then the first missing disk is
 * refused. One more is too many. */
static void test_many_devices(void)
{
	const char *args[64];
	int n = 0;
	args[n++] = "backup";
	args[n++] = "--listen";
	args[n++] = "127.0.0.1:1";
	for (int i = 0; i < MACHINE_MAX_DISKS; i++) {
		args[n++] = "--disk";
		args[n++] = "/nonexistent/ftvmm-disk.img";
	}
	for (int i = 0; i < MACHINE_MAX_NICS; i++) {
		args[n++] = "--net";
		args[n++] = "tap=ftvmm0";
	}
	args[n] = NULL;
	char out[512];
	pid_t pid;
	CHECK_EQ(run_backup(args, out, sizeof(out), &pid, 10000), 1);
	CHECK(strstr(out, "/nonexistent/ftvmm-disk.img: no such file") != NULL);
	args[n++] = "--net";
	args[n++] = "tap=ftvmm0";
	args[n] = NULL;
	CHECK_EQ(run_backup(args, out, sizeof(out), &pid, 10000), 2);
	CHECK(strstr(out, "too many --disk/--net") != NULL);
}

/* "127.0.0.1:PORT" of a port free right now (ftvmm refuses port 0). */
static void free_loopback(char *out, size_t len)
{
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	struct sockaddr_in sa = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	socklen_t sl = sizeof(sa);
	CHECK(fd >= 0 && bind(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0 &&
	      getsockname(fd, (struct sockaddr *)&sa, &sl) == 0);
	close(fd);
	snprintf(out, len, "127.0.0.1:%u", ntohs(sa.sin_port));
}

static int lines(const char *s)
{
	int n = 0;
	for (; *s; s++)
		n += *s == '\n';
	return n;
}

/* backup's FT link options: credentials checked before it listens (a PSK file others may read is
 * refused in one line), and without them only loopback unless --ft-insecure, which says what it allows. */
static void test_tls_options(void)
{
	char out[4096], at[32];
	pid_t pid;
	free_loopback(at, sizeof(at));
	const char *open_psk[] = { "backup", "--listen", at, "--tls-psk", fx.psk_open, NULL };
	CHECK_EQ(run_backup(open_psk, out, sizeof(out), &pid, 10000), 1);
	CHECK(strstr(out, "0644") && strstr(out, "0600") && lines(out) == 1);
	const char *remote[] = { "backup", "--listen", "192.0.2.1:7000", NULL };
	CHECK_EQ(run_backup(remote, out, sizeof(out), &pid, 10000), 2);
	CHECK(strstr(out, "--listen 192.0.2.1:7000: not a loopback address") && strstr(out, "--ft-insecure") &&
	      lines(out) == 1);
	const char *all[] = { "backup", "--listen", "0.0.0.0:7000", NULL };
	CHECK_EQ(run_backup(all, out, sizeof(out), &pid, 10000), 2);
	/* --ft-insecure: past the rule (this host has no 192.0.2.1 to listen on), with one line saying what it allows */
	const char *insecure[] = { "backup", "--listen", "192.0.2.1:7000", "--ft-insecure", NULL };
	CHECK_EQ(run_backup(insecure, out, sizeof(out), &pid, 10000), 1);
	CHECK(strstr(out, "warning: --ft-insecure") && strstr(out, "anyone who can reach the port") &&
	      strstr(out, "cannot listen on 192.0.2.1:7000"));
	/* credentials allow another address; a stricter mode is fine */
	const char *psk[] = { "backup", "--listen", "192.0.2.1:7000", "--tls-psk", fx.psk, NULL };
	CHECK_EQ(run_backup(psk, out, sizeof(out), &pid, 10000), 1);
	CHECK(strstr(out, "cannot listen on 192.0.2.1:7000") && !strstr(out, "--ft-insecure"));
	const char *both[] = { "backup", "--listen", at, "--tls-psk", fx.psk, "--tls-creds", fx.good, NULL };
	CHECK_EQ(run_backup(both, out, sizeof(out), &pid, 10000), 2);
	CHECK(strstr(out, "not both") != NULL);
	const char *peer[] = { "backup", "--listen", at, "--tls-peer", "primary.test", NULL };
	CHECK_EQ(run_backup(peer, out, sizeof(out), &pid, 10000), 2);
	const char *nokey[] = { "backup", "--listen", at, "--tls-creds", fx.root, NULL };
	CHECK_EQ(run_backup(nokey, out, sizeof(out), &pid, 10000), 1);
	CHECK(strstr(out, "ca-cert.pem") && lines(out) == 1);
	const char *help[] = { "backup", "--help", NULL };
	CHECK_EQ(run_backup(help, out, sizeof(out), &pid, 10000), 0);
	CHECK(strstr(out, "--tls-creds DIR") && strstr(out, "--tls-psk FILE") && strstr(out, "--ft-insecure"));
}

/* True once a Unix socket at path accepts connections. */
static bool connects(const char *path)
{
	struct sockaddr_un a = { .sun_family = AF_UNIX };
	if (strlen(path) >= sizeof(a.sun_path))
		return false;
	memcpy(a.sun_path, path, strlen(path) + 1);
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	bool ok = fd >= 0 && connect(fd, (struct sockaddr *)&a, sizeof(a)) == 0;
	if (fd >= 0)
		close(fd);
	return ok;
}

/* --control-group GROUP as run/restore take it: checked while parsing, needs --control, and kept past
 * the --disk/--net parse so the socket the backup serves is 0660 with that group. */
static void test_control_group(void)
{
	char out[4096], dir[] = "/tmp/ftvmm-test-backup-ctl.XXXXXX", sock[128];
	pid_t pid;
	CHECK(mkdtemp(dir) != NULL);
	snprintf(sock, sizeof(sock), "%s/ctl", dir);

	const char *help[] = { "backup", "--help", NULL };
	CHECK_EQ(run_backup(help, out, sizeof(out), &pid, 10000), 0);
	CHECK(strstr(out, "--control-group GROUP") != NULL);

	const char *nogroup[] = { "backup", "--listen", "127.0.0.1:0", "--control", sock, "--control-group",
				  "no-such-group-ftvmm", NULL };
	CHECK_EQ(run_backup(nogroup, out, sizeof(out), &pid, 10000), 2);
	CHECK(strstr(out, "--control-group 'no-such-group-ftvmm': no such group") != NULL);
	const char *nocontrol[] = { "backup", "--listen", "127.0.0.1:0", "--control-group", "0", NULL };
	CHECK_EQ(run_backup(nocontrol, out, sizeof(out), &pid, 10000), 2);
	CHECK(strstr(out, "--control-group needs --control") != NULL);

	/* as root a group we are not in shows the option reached the socket; otherwise our own group */
	char group[32];
	gid_t want = getegid();
	if (geteuid() == 0 && control_group_lookup("daemon", &want) == 0)
		snprintf(group, sizeof(group), "daemon");
	else
		snprintf(group, sizeof(group), "%u", (unsigned)want);
	/* a free port (ftvmm refuses port 0): the kernel's pick, released for the child to take */
	int tfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	struct sockaddr_in sa = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	socklen_t sl = sizeof(sa);
	CHECK(tfd >= 0 && bind(tfd, (struct sockaddr *)&sa, sizeof(sa)) == 0 &&
	      getsockname(tfd, (struct sockaddr *)&sa, &sl) == 0);
	close(tfd);
	char listen_at[32];
	snprintf(listen_at, sizeof(listen_at), "127.0.0.1:%u", ntohs(sa.sin_port));
	const char *ok[] = { "backup", "--listen", listen_at, "--control", sock, "--control-group", group, NULL };
	/* it waits for a primary: look at its socket meanwhile */
	CHECK_EQ(run_backup(ok, out, sizeof(out), &pid, 0), -1);
	/* the socket exists from bind() on, but gets its mode and group just before listen(): wait until it
	 * takes connections, or this would race the child's chmod */
	struct stat st;
	bool listening = false;
	for (int i = 0; i < 1000 && !listening; i++) {
		listening = connects(sock);
		if (!listening)
			usleep(10000);
	}
	CHECK(listening);
	CHECK_EQ(stat(sock, &st), 0);
	CHECK(S_ISSOCK(st.st_mode));
	CHECK_EQ(st.st_mode & 0777, 0660u);
	CHECK_EQ(st.st_gid, want);
	CHECK_EQ(kill(pid, SIGKILL), 0);
	int ws;
	CHECK_EQ(waitpid(pid, &ws, 0), pid);
	unlink(sock);
	rmdir(dir);
}

/* --stats FILE (used by a `protect` after a takeover): in the help, a missing value or a FILE that
 * could never be written refused in one line before it listens (exit 2), and an accepted one neither
 * created nor truncated while it waits for a primary. */
static void test_stats_option(void)
{
	char out[4096], at[32], dir[] = "/tmp/ftvmm-test-backup-stats.XXXXXX", fresh[128], old[128], bad[160];
	pid_t pid;
	int ws;
	CHECK(mkdtemp(dir) != NULL);
	snprintf(fresh, sizeof(fresh), "%s/new.json", dir);
	snprintf(old, sizeof(old), "%s/old.json", dir);
	snprintf(bad, sizeof(bad), "%s/no-such-dir/stats.json", dir);

	const char *help[] = { "backup", "--help", NULL };
	CHECK_EQ(run_backup(help, out, sizeof(out), &pid, 10000), 0);
	CHECK(strstr(out, "[--stats FILE]") && strstr(out, "--stats FILE        one JSON line of telemetry"));

	free_loopback(at, sizeof(at));
	const char *novalue[] = { "backup", "--listen", at, "--stats", NULL };
	CHECK_EQ(run_backup(novalue, out, sizeof(out), &pid, 10000), 2);
	CHECK(strstr(out, "option '--stats' needs a value") && lines(out) == 1);
	const char *nodir[] = { "backup", "--listen", at, "--stats", bad, NULL };
	CHECK_EQ(run_backup(nodir, out, sizeof(out), &pid, 10000), 2);
	CHECK(strstr(out, bad) && strstr(out, "No such file or directory") && lines(out) == 1);
	const char *isdir[] = { "backup", "--listen", at, "--stats", dir, NULL };
	CHECK_EQ(run_backup(isdir, out, sizeof(out), &pid, 10000), 2);
	CHECK(strstr(out, "Is a directory") && lines(out) == 1);
	const char *empty[] = { "backup", "--listen", at, "--stats", "", NULL };
	CHECK_EQ(run_backup(empty, out, sizeof(out), &pid, 10000), 2);
	CHECK(strstr(out, "--stats needs a file path") && lines(out) == 1);

	/* accepted: still waiting for a primary after a second, the new file not made, the old one intact */
	const char *ok_new[] = { "backup", "--listen", at, "--stats", fresh, NULL };
	CHECK_EQ(run_backup(ok_new, out, sizeof(out), &pid, 1000), -1);
	CHECK_EQ(kill(pid, SIGKILL), 0);
	CHECK_EQ(waitpid(pid, &ws, 0), pid);
	CHECK(access(fresh, F_OK) != 0 && errno == ENOENT);
	FILE *f = fopen(old, "w");
	CHECK(f && fputs("kept\n", f) >= 0 && fclose(f) == 0);
	free_loopback(at, sizeof(at));
	const char *ok_old[] = { "backup", "--listen", at, "--stats", old, NULL };
	CHECK_EQ(run_backup(ok_old, out, sizeof(out), &pid, 1000), -1);
	CHECK_EQ(kill(pid, SIGKILL), 0);
	CHECK_EQ(waitpid(pid, &ws, 0), pid);
	struct stat st;
	CHECK(stat(old, &st) == 0 && st.st_size == 5);
	unlink(old);
	rmdir(dir);
}

int main(void)
{
	test_shape();
	test_shape_generation();
	test_shape_codec();
	test_shape_delta();
	test_commit();
	test_sync_mem();
	test_sync_disk();
	test_short_shape();
	test_short_state();
	test_handshake();
	test_handshake_codec();
	test_control_group();
	test_many_devices();
	test_stats_option();
	tls_fixture_make(&fx);
	test_tls_pairing();
	test_tls_flipped_epoch();
	test_takeover_notice();
	test_tls_options();
	tls_fixture_free(&fx);
	TEST_DONE("test_backup");
}

/* fuzz_backup_stream.c - libFuzzer target: a byte stream as the backup's data link after the handshake. */
#include <libfdt.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "../../ft/backup_int.h"
#include "../../ft/proto.h"

/*
 * Input: one byte saying what the HELLO announced (mode % 4: 0 an older primary whose epochs carry whole
 * pages; 1, 2, 3 packed epochs, zero pages as flags, the rest as they are, lz4 or zstd chunks: ft/compress.h;
 * with packed epochs, mode & 4: page deltas offered and taken, ft/delta.h),
 * then frames as on the wire (struct ft_frame, then len payload bytes), one after another, into
 * backup_apply_frame: initial-sync pages and disk ranges, epochs committed all or nothing. The
 * checksum is not checked (ft_recv_data does that, and a fuzzer cannot forge it): every byte of a
 * frame reaches the parsers. A header ft_recv_data would refuse (its per-type bound included), or a
 * payload longer than what is left, ends the stream as it ends the link. Each payload is its own
 * exact-size allocation (ASan sees any read past it). Checks beyond the sanitizers, as the receive loop relies on them: a refused frame
 * leaves the mirror memory, both disk copies, the commit and its state exactly as they were; a
 * taken epoch is the next one and leaves a valid state fdt; nothing of the initial sync is taken
 * after the baseline.
 */

#define NPAGES 16
#define MEM_SIZE (NPAGES * PAGE_SIZE)
static const uint64_t disk_size[2] = { 16384, 32768 };

static struct backup b;
static uint8_t *ram, *ram_before;
static uint8_t *disk_before[2], *disk_now[2];

static void setup_once(void)
{
	ram = aligned_alloc(PAGE_SIZE, MEM_SIZE);
	ram_before = malloc(MEM_SIZE);
	if (!ram || !ram_before || gmem_init_buffer(&b.mem, ram, MEM_SIZE))
		abort();
	pthread_mutex_init(&b.lock, NULL);
	b.machine.ndisks = 2;
	for (int i = 0; i < 2; i++) {
		b.disk_fds[i] = memfd_create("fuzz-disk", MFD_CLOEXEC); /* punch-hole capable, never full */
		b.disk_sizes[i] = disk_size[i];
		disk_before[i] = malloc(disk_size[i]);
		disk_now[i] = malloc(disk_size[i]);
		if (b.disk_fds[i] < 0 || !disk_before[i] || !disk_now[i])
			abort();
	}
	b.data = b.hb = (struct ft_link){ .fd = -1 };
}

/* A fresh backup right after the handshake (whose HELLO announced mode): zero memory and disks, no commit. */
static void reset(uint8_t mode)
{
	b.packed = mode % 4 != 0;
	b.codec = b.packed ? (enum ft_codec)(mode % 4 - 1) : FT_CODEC_NONE;
	b.delta = b.packed && (mode & 4);
	memset(ram, 0, MEM_SIZE);
	for (int i = 0; i < 2; i++)
		if (ftruncate(b.disk_fds[i], 0) || ftruncate(b.disk_fds[i], (off_t)disk_size[i]))
			abort();
	free(b.state);
	b.state = NULL;
	b.committed = 0;
	b.have_baseline = false;
}

static void read_disk(int i, uint8_t *out)
{
	if (pread(b.disk_fds[i], out, disk_size[i], 0) != (ssize_t)disk_size[i])
		abort();
}

static void snapshot(void)
{
	memcpy(ram_before, ram, MEM_SIZE);
	for (int i = 0; i < 2; i++)
		read_disk(i, disk_before[i]);
}

/* A refused frame: not one byte of it anywhere. */
static void check_untouched(uint64_t committed, const void *state, bool baseline)
{
	if (memcmp(ram, ram_before, MEM_SIZE) || b.committed != committed || b.state != state ||
	    b.have_baseline != baseline)
		abort();
	for (int i = 0; i < 2; i++) {
		read_disk(i, disk_now[i]);
		if (memcmp(disk_now[i], disk_before[i], disk_size[i]))
			abort();
	}
}

static void check_taken(const struct ft_frame *f, uint64_t committed, bool baseline)
{
	if (f->type == FT_EPOCH) {
		if (!b.have_baseline || b.committed != f->seq || (baseline && f->seq != committed + 1))
			abort();
		if (fdt_check_header(b.state))
			abort();
	} else if (baseline) { /* initial-sync frames only before the baseline */
		abort();
	}
}

/* One frame; false when the link would end here. */
static bool one_frame(const struct ft_frame *f, const uint8_t *data)
{
	void *p = malloc(f->len ? f->len : 1);
	if (!p)
		abort();
	memcpy(p, data, f->len);
	uint64_t committed = b.committed;
	const void *state = b.state;
	bool baseline = b.have_baseline;
	snapshot();
	int r = backup_apply_frame(&b, f, p);
	free(p);
	if (r)
		check_untouched(committed, state, baseline);
	else
		check_taken(f, committed, baseline);
	return r == 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (!ram)
		setup_once();
	if (size < 1)
		return 0;
	reset(data[0]);
	data++;
	size--;
	while (size >= sizeof(struct ft_frame)) {
		struct ft_frame f;
		memcpy(&f, data, sizeof(f));
		data += sizeof(f);
		size -= sizeof(f);
		/* the bounds the receive loop applies (ft_recv_data) for this 16-page, 1-vCPU guest */
		uint64_t max = ft_data_frame_max(f.type, NPAGES, 1);
		if (ft_frame_check(&f, size < max ? size : max) || !one_frame(&f, data))
			break;
		data += f.len;
		size -= f.len;
	}
	return 0;
}

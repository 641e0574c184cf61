/* proto.h - the replication stream between primary and backup: framing, checksums, message layouts. */
#ifndef FTVMM_PROTO_H
#define FTVMM_PROTO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#define FT_MAGIC 0x50565446u /* "FTVP" little-endian */
#define FT_VERSION 1
#define FT_MAX_FRAME (16ull << 30)
#define FT_MAX_SMALL_FRAME (1u << 20) /* hello (the shape), acks, heartbeats, bye */
#define FT_MAX_HELLO_FRAME 4096u      /* anything before the handshake: a shape is a few hundred bytes */

enum ft_type {
	FT_HELLO = 1,  /* primary -> backup, data connection: shape (fdt) */
	FT_HB_HELLO,   /* primary -> backup, heartbeat connection: session id */
	FT_HELLO_OK,   /* backup -> primary */
	FT_HELLO_ERR,  /* backup -> primary: one line of text */
	FT_MEM,        /* initial sync: pages applied directly (before the baseline) */
	FT_DISK,       /* initial sync: a range of a disk applied directly */
	FT_EPOCH,      /* a complete checkpoint, staged then committed all or nothing */
	FT_ACK,        /* backup -> primary: epoch committed */
	FT_HEARTBEAT,  /* both ways on the heartbeat connection */
	FT_BYE,        /* primary -> backup, data connection: the guest ended normally, do not take over;
			* heartbeat connection: the primary lost this backup and runs on unprotected */
	FT_TAKEOVER,   /* backup -> primary, heartbeat connection, seq = its last commit: it heard nothing for the
			* timeout and takes over. A primary that was only frozen reads it from its socket when it
			* thaws and stops its copy. (An older primary refuses the type: it loses the link, as it
			* would have at the close that follows.) */
	FT_TYPE_MAX,
};

/* Every frame: this header, then `len` bytes of payload whose snap_hash is `checksum`. */
struct ft_frame {
	uint32_t magic;
	uint16_t version;
	uint16_t type;
	uint64_t len;
	uint64_t seq;      /* epoch number for EPOCH/ACK, session id for HELLOs */
	uint64_t checksum; /* of the payload, seeded with type and seq */
};

/* FT_EPOCH payload: this header, pfn[npages] (u64 RAM page numbers), the pages, the state fdt,
 * then disk records. A packed epoch (FT_EPOCH_PACKED, what every primary that names a codec in its
 * HELLO sends) has a struct ft_pages_hdr right after this header, and its page area is that header's
 * wire_len bytes (ft/compress.h) and zero bytes up to FT_PAGES_PAD_TO(wire_len): header, ft_pages_hdr,
 * pfn[npages], page payload, padding, state, disk records. */
struct ft_epoch_hdr {
	uint64_t epoch;
	uint64_t npages;
	uint64_t state_len;
	uint64_t disk_len;
	uint64_t flags; /* FT_EPOCH_BASELINE on the first */
	uint64_t guest_dirty, device_dirty;
	uint64_t generation; /* the arbiter's generation the primary paired under (0: no arbiter): a fencing
			     * token, the backup refuses an epoch of any other */
};
#define FT_EPOCH_BASELINE 1
#define FT_EPOCH_PACKED 2
#define FT_EPOCH_FLAGS (FT_EPOCH_BASELINE | FT_EPOCH_PACKED) /* every flag this build knows: another is refused */

/* A packed epoch's page area. A pfn with FT_PFN_ZERO set is a page that is all zeroes: it has no bytes
 * in the payload. The other pages, in pfn order, are the raw payload: each page whole, or (FT_PFN_DELTA) a
 * u16 length and a delta record. It travels as it is (FT_CODEC_NONE, wire_len == raw_len), or in chunks of
 * FT_CHUNK_PAGES pages' bytes (the last one shorter), each a u32 length word then that many bytes, one lz4
 * block or one zstd frame that decompresses to exactly the chunk's bytes, or (length word with
 * FT_CHUNK_STORED) the chunk's bytes as they are, when compressing did not make them smaller. */
struct ft_pages_hdr {
	uint32_t codec;    /* enum ft_codec: the one named in the HELLO */
	uint32_t reserved; /* 0 */
	uint64_t nzero;    /* pfns with FT_PFN_ZERO */
	uint64_t raw_len;  /* the payload's size once decompressed: (npages - nzero) * PAGE_SIZE without deltas */
	uint64_t wire_len; /* the payload's size on the wire */
};
#define FT_PFN_ZERO (1ull << 63)
/* A packed epoch's page sent as a delta against the backup's copy (ft/delta.h): a 2-byte length and the record
 * in the payload instead of the page. Only to a backup whose HELLO_OK said "delta". */
#define FT_PFN_DELTA (1ull << 62)
/* The state fdt after the page payload starts 8-byte aligned, as libfdt wants it (every part before it is a
 * multiple of 8 but the payload, which zero bytes pad). */
#define FT_PAGES_PAD_TO(wire_len) (((wire_len) + 7) & ~7ull)
#define FT_CHUNK_PAGES 256u
#define FT_CHUNK_STORED (1u << 31)

/* One disk write of an epoch (or an initial-sync range): header then len bytes (none for ZERO). */
struct ft_disk_rec {
	uint32_t disk;
	uint32_t kind; /* FT_DISK_WRITE, FT_DISK_ZERO */
	uint64_t off;
	uint64_t len;
};
#define FT_DISK_WRITE 0
#define FT_DISK_ZERO 1

uint64_t ft_payload_hash(uint16_t type, uint64_t seq, const void *p, size_t len);

/* One FT connection: its socket and, when the link is authenticated, its TLS session (ft/tls.h), which
 * every byte then goes through. The framing below is the same either way. */
struct ft_tls;
struct ft_link {
	int fd;
	struct ft_tls *tls; /* NULL: plain TCP (loopback, or --ft-insecure) */
	/* optional: called before each FT_SEND_CHUNK of a frame; it may wait (the primary's sender waits out an
	 * epoch's pause there, so encryption and socket copies do not compete with the pause for the CPU) */
	void (*gate)(void *ctx);
	void *gate_ctx;
};
#define FT_SEND_CHUNK (256u << 10)
/* A plain link on fd, for a call's argument. */
#define FT_PLAIN(fd_) (&(struct ft_link){ .fd = (fd_), .tls = NULL })

/* Send a frame: header + payload pieces (iovecs), all or an error. 0 or -errno. */
struct iovec;
int ft_send(const struct ft_link *l, uint16_t type, uint64_t seq, const struct iovec *iov, int iovcnt);
int ft_send_buf(const struct ft_link *l, uint16_t type, uint64_t seq, const void *p, size_t len);
/* Receive one frame into a malloc'd buffer (*payload, freed by caller). Checks magic, version,
 * type, length bound and checksum: -EPROTO (other protocol), -EPROTONOSUPPORT (version), -EBADMSG
 * (checksum; on a TLS link also a record that fails its MAC), -EMSGSIZE, -ECONNRESET on EOF. */
int ft_recv(const struct ft_link *l, struct ft_frame *f, void **payload);
/* ft_recv with a tighter bound on the length (for a peer that has not identified itself yet):
 * a larger frame is -EMSGSIZE from its header alone, before any allocation. */
int ft_recv_max(const struct ft_link *l, struct ft_frame *f, void **payload, uint64_t max_len);
/* One frame of the heartbeat link, either way: every frame there (HEARTBEAT, BYE, TAKEOVER) is empty, so a header
 * longer than FT_MAX_HB_FRAME is not our peer's and is refused before any allocation; the payload is dropped. */
int ft_recv_hb(const struct ft_link *l, struct ft_frame *f);
/* Up to len bytes as they come (a non-blocking fd's reader): > 0, 0 at EOF, or -errno (-EAGAIN: none yet). */
ssize_t ft_link_read(const struct ft_link *l, void *p, size_t len);
/* Is there something to read within timeout_ms? Decrypted bytes a TLS session already holds count,
 * which poll(2) on the fd alone would miss. > 0 yes, 0 no, -errno. */
int ft_link_wait_in(const struct ft_link *l, int timeout_ms);
/* Bytes read from the fd and held by the TLS session (0 for a plain link). */
size_t ft_link_pending(const struct ft_link *l);
/* Reads and writes that wait (the default) or answer -EAGAIN at once (the backup's pairing loop). */
void ft_link_set_blocking(const struct ft_link *l, bool blocking);
/* shutdown(2) both ways (wakes every thread blocked on it); close frees the session too. */
void ft_link_shutdown(const struct ft_link *l);
void ft_link_close(struct ft_link *l);
/* After the handshake the backup knows the guest, so every data-link frame has a legitimate maximum
 * far below FT_MAX_FRAME: ft_recv_data refuses a larger one from its header (-EMSGSIZE), before its
 * payload is allocated, so a peer cannot make the backup allocate gigabytes for a frame whose
 * checksum is only seen after it arrived. The bounds follow what the primary sends (primary_sync.c
 * sends its initial sync in these units): */
#define FT_MEM_BATCH_PAGES 256u         /* pages in one initial-sync FT_MEM frame */
#define FT_DISK_SYNC_CHUNK (1u << 20)   /* bytes of one initial-sync disk range */
/* The largest state fdt of an ncpus guest: state_capture (ft/state.c) starts at 256 KiB + 64 KiB per vCPU
 * and doubles it 5 times at most (6 attempts). */
#define FT_MAX_STATE(ncpus) (((256ull << 10) + (uint64_t)(ncpus) * (64ull << 10)) << 5)
/* The heartbeat link carries heartbeats and a BYE, all empty: a larger frame is not from a primary. */
#define FT_MAX_HB_FRAME 64u
/* The largest payload a primary sends in a data-link frame of this type to a guest of guest_pages
 * pages and ncpus vCPUs (saturating, never above FT_MAX_FRAME): FT_MEM one batch, FT_DISK one range
 * or disk-log record (DISKLOG_MAX_BYTES), FT_EPOCH every page + the largest state + a full disk log
 * (packed: + its ft_pages_hdr, a length word per chunk, every chunk stored, and the padding); other types FT_MAX_HB_FRAME. */
uint64_t ft_data_frame_max(uint16_t type, uint64_t guest_pages, unsigned ncpus);
/* ft_recv on the data link after the handshake: each type bounded by ft_data_frame_max. */
int ft_recv_data(const struct ft_link *l, struct ft_frame *f, void **payload, uint64_t guest_pages, unsigned ncpus);
/* The header checks of ft_recv, length at most max_len (and the per-type bounds): 0 or its error. */
int ft_frame_check(const struct ft_frame *f, uint64_t max_len);
/* Validate an FT_EPOCH payload's internal sizes in the layout the HELLO announced (packed: a packed epoch's,
 * its wire_len read from its ft_pages_hdr; else pages whole): its flags must be known ones and say that
 * layout. 0 or -EBADMSG. */
int ft_epoch_check(const void *payload, size_t len, bool packed, struct ft_epoch_hdr *hdr);

/* Heartbeats go both ways every FT_HEARTBEAT_MS on their own connection. */
#define FT_HEARTBEAT_MS 100
/* Heartbeat silence that ends a pairing still in its initial sync: --ft-timeout, and never less than this. Until the
 * baseline commits the backup has nothing to take over and the primary holds output only from the baseline's pause
 * to its ack, so a longer silence costs nothing but a slower notice of a dead peer; the sync's stream (all of RAM,
 * TLS) starved the heartbeats past a 300 ms timeout under the test bed's load (soak-20261207-225749, row 8). */
#define FT_SYNC_TIMEOUT_MIN_MS 2000

/* The heartbeat loops' clock, called after every wait (now = now_ns()). A gap above two of the loop's
 * period means this process was frozen (SIGSTOP, a stalled host): that time is not the peer's
 * silence, so last_rx moves forward by it (never past now). Returns the gap in ns. */
uint64_t ft_hb_clock(uint64_t now, uint64_t *prev, uint64_t *last_rx);

/* "host:port" -> connected TCP socket (TCP_NODELAY) / listening socket. -errno + err line.
 * loopback_only: use only loopback addresses of what the name resolves to (an FT link without TLS). */
int ft_connect(const char *hostport, bool loopback_only, char *err, size_t errlen);
int ft_listen(const char *hostport, bool loopback_only, char *err, size_t errlen);
/* Whether hostport resolves, and to loopback addresses only (127/8, ::1): where an FT link may go
 * without credentials. */
bool ft_addr_is_loopback(const char *hostport);
/* accept4 + the same socket tuning as ft_connect. */
int ft_accept_tuned(int lfd);
int ft_parse_hostport(const char *s, char *host, size_t hostlen, char *port, size_t portlen);
const char *ft_type_name(unsigned t);

#endif

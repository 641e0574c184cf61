/* arbiter.h - the FT arbiter: one compare-and-swap generation key per VM in etcd (v3 JSON gateway, libcurl). */
#ifndef FTVMM_ARBITER_H
#define FTVMM_ARBITER_H

#include <stddef.h>
#include <stdint.h>

/*
 * The key /ftvmm/NAME/generation holds "G OWNER": G in decimal (no sign, no leading zero, fits 64 bits),
 * one space, OWNER ([A-Za-z0-9._-]{1,127}). Whoever must run the guest alone wins CAS(G -> G+1, itself);
 * the loser stops. The arbiter is an etcd cluster (3.4 or newer) reached over plain HTTP through its
 * gRPC-JSON gateway (/v3/kv/range, /v3/kv/txn); reads are linearizable (etcd's default).
 *
 * Time: every call is bounded by its timeout_ms in total, across all endpoints and retries. The
 * endpoints are tried in turn, starting with the last one that answered; each try gets an equal share
 * of what is left for the endpoints not yet tried in this round, so a frozen endpoint (one that accepts
 * connections and never answers) costs its share, not the whole call.
 *
 * Errors (negative errno): -ETIMEDOUT (the bound passed), -ECONNREFUSED, -EHOSTUNREACH and the like (the
 * connect's errno; -EHOSTUNREACH also for a name that does not resolve), -EIO (an endpoint answered with an
 * HTTP or etcd error, e.g. 503 "no leader"), -EPROTO (an answer that is not what etcd sends, or one over
 * 64 KiB), all of them "unreachable": the caller retries. Of several tries' failures a call returns the
 * most telling (-EIO/-EPROTO over a connect's error over -ETIMEDOUT). -EBADMSG: the key holds a value that is
 * not "G OWNER" (someone else wrote it): an answer, the same from every endpoint. -EINVAL: bad arguments.
 * arbiter_error() has the last failure's line.
 *
 * Threads: an arbiter is one libcurl handle and its buffers: one thread at a time per arbiter (callers
 * that share one serialize around it); separate arbiters may be used concurrently. libcurl's global
 * init runs once, in the first arbiter_open, and is never undone. Nothing is printed.
 *
 * JSON: json-c (libjson-c-dev), over cJSON and a parser of our own: a strict mode (no comments, trailing
 * commas or trailing bytes), a nesting-depth limit we set, typed accessors, string lengths that survive
 * NUL bytes, and Debian's cryptsetup trusts it with LUKS2 metadata read from disks. Strict still takes a
 * few things RFC 8259 does not (single-quoted member names, NaN, raw control bytes in strings); none
 * reaches what we use: every field read is checked for type and content by us (arbiter_parse.c), and
 * its strings are base64 or decimal. Our own parser would be a few hundred more lines to fuzz.
 */

#define ARBITER_NAME_MAX 64   /* --name: [A-Za-z0-9._-]{1,64} */
#define ARBITER_OWNER_MAX 127 /* an owner in the value: [A-Za-z0-9._-]{1,127} */
#define ARBITER_ENDPOINTS_MAX 5

struct arbiter;

/* Parse spec "etcd://HOST:PORT[,HOST:PORT...]" (1..5 endpoints; HOST an IPv4 address or a host name,
 * PORT 1..65535) and name. Contacts nothing. 0, or -EINVAL/-ENOMEM with one line in err. */
int arbiter_open(const char *spec, const char *name, struct arbiter **out, char *err, size_t errlen);

/* Read the key: 1 with *gen and owner (truncated to owner_len - 1) when present, 0 with *gen = 0 and
 * owner "" when absent, or a negative errno (above). */
int arbiter_read(struct arbiter *a, uint64_t *gen, char *owner, size_t owner_len, int timeout_ms);

/* Atomically: if the key holds generation expect (absent counts as 0), set it to "new_gen owner" and
 * return 1 (won); if it holds another generation, return 0 (lost) with *cur_gen and cur_owner (""
 * when absent); or a negative errno. new_gen must be greater than expect, owner a valid owner.
 * One read, then one etcd txn that puts only if the key's mod_revision is still the one read, so of
 * two racing callers exactly one wins. A key already holding "new_gen owner" counts as won: the
 * retry of a CAS whose answer was lost (on this or an earlier call) must not make the winner stop. */
int arbiter_cas(struct arbiter *a, uint64_t expect, uint64_t new_gen, const char *owner, int timeout_ms,
		uint64_t *cur_gen, char *cur_owner, size_t cur_len);

/* "HOST:PORT" of the endpoint that answered last (the first one before any answer), for status lines. */
const char *arbiter_endpoint(const struct arbiter *a);
/* The last failure, one line ("" after a success). */
const char *arbiter_error(const struct arbiter *a);
void arbiter_close(struct arbiter *a);

#endif

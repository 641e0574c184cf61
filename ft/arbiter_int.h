/* arbiter_int.h - inside the arbiter: reading etcd's answers (untrusted bytes), for arbiter.c, its unit test and fuzzer. */
#ifndef FTVMM_ARBITER_INT_H
#define FTVMM_ARBITER_INT_H

#include "arbiter.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define ARBITER_RESP_MAX (64u << 10) /* bytes of one answer; a transfer beyond is aborted */
#define ARBITER_JSON_DEPTH 16        /* nesting: our deepest field (a txn's value) is 6 levels down */
#define ARBITER_GEN_DIGITS 20        /* UINT64_MAX */
#define ARBITER_VALUE_MAX (ARBITER_GEN_DIGITS + 1 + ARBITER_OWNER_MAX)
#define ARBITER_MSG_MAX 128          /* etcd's error message, cut and made printable */

enum arbiter_op { ARBITER_RANGE, ARBITER_TXN };

/* The key as one answer reported it. */
struct arbiter_kv {
	bool present;     /* the key exists */
	int64_t mod_rev;  /* its mod_revision (> 0), 0 when absent */
	uint64_t gen;     /* "G OWNER", when present and well formed */
	char owner[ARBITER_OWNER_MAX + 1];
};

struct arbiter_reply {
	bool succeeded;        /* txn: its compare held (the put was done) */
	struct arbiter_kv kv;  /* range; txn: the failure branch's range */
	char msg[ARBITER_MSG_MAX]; /* etcd's error message, for -EIO */
};

/* Read one answer of etcd's gateway to op (range or txn, as arbiter.c sends them) about key (raw bytes).
 * 0 with r filled; -EIO: an etcd error object (message in r->msg); -EPROTO: anything etcd does not send
 * (bad JSON, a field of the wrong type, a second key, another key, a value longer than a "G OWNER" can
 * be ...); -EBADMSG: well formed, but the key's value is not "G OWNER" (r->kv.present, mod_rev set);
 * -ENOMEM. Every field used is checked; counts the answer states ("count") are not read. */
int arbiter_parse_reply(const char *body, size_t len, enum arbiter_op op, const char *key, size_t keylen,
			struct arbiter_reply *r);

/* "G OWNER" (len bytes, not NUL-terminated): 0 with *gen and owner (ARBITER_OWNER_MAX + 1 bytes), or -EBADMSG. */
int arbiter_parse_value(const uint8_t *v, size_t len, uint64_t *gen, char *owner);
/* [A-Za-z0-9._-]{1,max} */
bool arbiter_word_ok(const char *s, size_t len, size_t max);

/* Standard base64 with padding. encode: writes 4 * ceil(len / 3) chars and a NUL (out must hold them).
 * decode: the decoded length (at most cap), or -1 for anything but canonical base64 or more than cap bytes. */
void arbiter_b64_encode(const uint8_t *in, size_t len, char *out);
long arbiter_b64_decode(const char *in, size_t len, uint8_t *out, size_t cap);

#endif

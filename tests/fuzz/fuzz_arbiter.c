/* fuzz_arbiter.c - libFuzzer target: arbitrary bytes as etcd's answer to the arbiter's range or txn, and as base64 and a "G OWNER" value. */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../ft/arbiter_int.h"

/*
 * Input: one byte (bit 0: the answer to a txn, else to a range), then the body as the network gave it.
 * The seeds (corpus-fuzz_arbiter/) are etcd 3.4.23's own answers about /ftvmm/vm/generation.
 * Checked beyond the sanitizers:
 *  - arbiter_parse_reply says 0, -EIO, -EPROTO or -EBADMSG, nothing else;
 *  - 0: a present key has a revision > 0 and a well-formed owner, and "G OWNER" written back parses to the
 *    same; a txn that succeeded reports no key; -EIO has a printable message; -EPROTO leaves no key;
 *  - the body as a value: accepted only as "G OWNER", and then it is exactly what it parsed to;
 *  - the body as base64: accepted only when canonical (encoding the result gives the input back).
 */

#define KEY "/ftvmm/vm/generation"

static void check_reply(const char *body, size_t len, enum arbiter_op op)
{
	struct arbiter_reply r;
	char back[ARBITER_VALUE_MAX + 1];
	int rc = arbiter_parse_reply(body, len, op, KEY, strlen(KEY), &r);
	if (rc != 0 && rc != -EIO && rc != -EPROTO && rc != -EBADMSG)
		abort();
	if (rc == 0 && r.kv.present) {
		uint64_t g;
		char o[ARBITER_OWNER_MAX + 1];
		int n = snprintf(back, sizeof(back), "%llu %s", (unsigned long long)r.kv.gen, r.kv.owner);
		if (r.kv.mod_rev <= 0 || n < 0 || (size_t)n >= sizeof(back) ||
		    arbiter_parse_value((const uint8_t *)back, (size_t)n, &g, o) || g != r.kv.gen || strcmp(o, r.kv.owner) != 0)
			abort();
	}
	if (rc == 0 && r.succeeded && (op != ARBITER_TXN || r.kv.present))
		abort();
	if (rc == -EIO && !r.msg[0])
		abort();
	for (size_t i = 0; rc == -EIO && r.msg[i]; i++)
		if (r.msg[i] < 0x20 || r.msg[i] > 0x7e)
			abort();
	if (rc == -EPROTO && (r.kv.present || r.succeeded))
		abort();
}

static void check_value(const uint8_t *v, size_t len)
{
	uint64_t g;
	char o[ARBITER_OWNER_MAX + 1], back[ARBITER_VALUE_MAX + 2];
	if (arbiter_parse_value(v, len, &g, o))
		return;
	int n = snprintf(back, sizeof(back), "%llu %s", (unsigned long long)g, o);
	if (n < 0 || (size_t)n != len || memcmp(back, v, len) != 0) /* one spelling per generation and owner */
		abort();
}

static void check_b64(const char *in, size_t len)
{
	static uint8_t out[ARBITER_RESP_MAX];
	static char again[ARBITER_RESP_MAX * 2];
	long n = arbiter_b64_decode(in, len, out, sizeof(out));
	if (n < 0)
		return;
	arbiter_b64_encode(out, (size_t)n, again);
	if (strlen(again) != len || memcmp(again, in, len) != 0)
		abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 1)
		return 0;
	size_t len = size - 1;
	char *body = malloc(len ? len : 1); /* exactly the body: ASan sees any read past it */
	if (!body)
		return 0;
	memcpy(body, data + 1, len);
	check_reply(body, len, data[0] & 1 ? ARBITER_TXN : ARBITER_RANGE);
	check_value((const uint8_t *)body, len);
	check_b64(body, len);
	free(body);
	return 0;
}

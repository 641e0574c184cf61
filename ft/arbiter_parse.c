/* arbiter_parse.c - etcd's gateway answers, base64 and the "G OWNER" value: bytes from the network, every field checked. */
#include "arbiter_int.h"

#include <errno.h>
#include <json-c/json.h>
#include <stdio.h>
#include <string.h>

/* ---- base64 -------------------------------------------------------------------------------------- */

static const char b64_chars[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

void arbiter_b64_encode(const uint8_t *in, size_t len, char *out)
{
	size_t o = 0;
	for (size_t i = 0; i < len; i += 3) {
		uint32_t w = (uint32_t)in[i] << 16;
		if (i + 1 < len)
			w |= (uint32_t)in[i + 1] << 8;
		if (i + 2 < len)
			w |= in[i + 2];
		out[o++] = b64_chars[w >> 18];
		out[o++] = b64_chars[(w >> 12) & 63];
		out[o++] = i + 1 < len ? b64_chars[(w >> 6) & 63] : '=';
		out[o++] = i + 2 < len ? b64_chars[w & 63] : '=';
	}
	out[o] = 0;
}

static int b64_val(char c)
{
	const char *p = c ? strchr(b64_chars, c) : NULL;
	return p ? (int)(p - b64_chars) : -1;
}

/* One group of 4 chars into 1-3 bytes; pads is how many '=' end it (only the last group may have any). */
static int b64_group(const char *in, int pads, uint8_t *out)
{
	uint32_t w = 0;
	for (int i = 0; i < 4; i++) {
		int v = i < 4 - pads ? b64_val(in[i]) : 0;
		if (v < 0)
			return -1;
		w = w << 6 | (uint32_t)v;
	}
	/* canonical: the bits a pad leaves over are zero (etcd, Go's encoder, never sets them) */
	if ((pads == 1 && (w & 0xff)) || (pads == 2 && (w & 0xffff)))
		return -1;
	out[0] = (uint8_t)(w >> 16);
	out[1] = (uint8_t)(w >> 8);
	out[2] = (uint8_t)w;
	return 3 - pads;
}

long arbiter_b64_decode(const char *in, size_t len, uint8_t *out, size_t cap)
{
	if (len % 4)
		return -1;
	size_t o = 0;
	for (size_t i = 0; i < len; i += 4) {
		int pads = 0;
		if (i + 4 == len)
			pads = in[i + 3] != '=' ? 0 : in[i + 2] != '=' ? 1 : 2;
		uint8_t b[3];
		int n = b64_group(in + i, pads, b);
		if (n < 0 || (size_t)n > cap - o)
			return -1;
		memcpy(out + o, b, (size_t)n);
		o += (size_t)n;
	}
	return (long)o;
}

/* ---- the value ----------------------------------------------------------------------------------- */

bool arbiter_word_ok(const char *s, size_t len, size_t max)
{
	if (len < 1 || len > max)
		return false;
	for (size_t i = 0; i < len; i++) {
		char c = s[i];
		if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '.' || c == '_' ||
		      c == '-'))
			return false;
	}
	return true;
}

int arbiter_parse_value(const uint8_t *v, size_t len, uint64_t *gen, char *owner)
{
	const uint8_t *sp = memchr(v, ' ', len);
	if (!sp)
		return -EBADMSG;
	size_t digits = (size_t)(sp - v), olen = len - digits - 1;
	/* decimal, no sign, no leading zero: one generation has one spelling */
	if (digits < 1 || digits > ARBITER_GEN_DIGITS || (digits > 1 && v[0] == '0'))
		return -EBADMSG;
	uint64_t g = 0;
	for (size_t i = 0; i < digits; i++) {
		if (v[i] < '0' || v[i] > '9')
			return -EBADMSG;
		unsigned d = v[i] - '0';
		if (g > (UINT64_MAX - d) / 10)
			return -EBADMSG;
		g = g * 10 + d;
	}
	if (!arbiter_word_ok((const char *)sp + 1, olen, ARBITER_OWNER_MAX))
		return -EBADMSG;
	*gen = g;
	memcpy(owner, sp + 1, olen);
	owner[olen] = 0;
	return 0;
}

/* ---- the JSON answers ---------------------------------------------------------------------------- */

/* o's member k: 1 with *v when present with type t, 0 when absent (proto3 JSON leaves out zero values),
 * -EPROTO with any other type, null included (the gateway never sends null). */
static int field(struct json_object *o, const char *k, enum json_type t, struct json_object **v)
{
	*v = NULL;
	if (!json_object_object_get_ex(o, k, v))
		return 0;
	return json_object_is_type(*v, t) ? 1 : -EPROTO;
}

/* An int64 as proto3 JSON writes it: a string of decimal digits. Revisions are > 0. */
static int parse_rev(struct json_object *s, int64_t *rev)
{
	const char *p = json_object_get_string(s);
	size_t len = (size_t)json_object_get_string_len(s);
	if (len < 1 || len > 19 || p[0] == '0')
		return -EPROTO;
	int64_t r = 0;
	for (size_t i = 0; i < len; i++) {
		if (p[i] < '0' || p[i] > '9' || r > (INT64_MAX - (p[i] - '0')) / 10)
			return -EPROTO;
		r = r * 10 + (p[i] - '0');
	}
	*rev = r;
	return 0;
}

/* One entry of kvs: it must be our key; its value is read as "G OWNER". */
static int parse_kv(struct json_object *e, const char *key, size_t keylen, struct arbiter_kv *kv)
{
	struct json_object *k, *rev, *val;
	uint8_t buf[ARBITER_VALUE_MAX + 1] = { 0 }; /* the key is shorter than any value we accept */
	if (field(e, "key", json_type_string, &k) != 1 || field(e, "mod_revision", json_type_string, &rev) != 1)
		return -EPROTO;
	long n = arbiter_b64_decode(json_object_get_string(k), (size_t)json_object_get_string_len(k), buf, sizeof(buf));
	if (n < 0 || (size_t)n != keylen || memcmp(buf, key, keylen) != 0)
		return -EPROTO;
	if (parse_rev(rev, &kv->mod_rev))
		return -EPROTO;
	kv->present = true;
	int r = field(e, "value", json_type_string, &val);
	if (r < 0)
		return r;
	if (r == 0) /* an empty value: left out */
		return -EBADMSG;
	n = arbiter_b64_decode(json_object_get_string(val), (size_t)json_object_get_string_len(val), buf,
			       ARBITER_VALUE_MAX);
	if (n < 0) /* too long for "G OWNER", or not base64 */
		return -EBADMSG;
	return arbiter_parse_value(buf, (size_t)n, &kv->gen, kv->owner);
}

/* A range answer's body (the reply itself, or a txn's response_range): no kvs or an empty one is an
 * absent key, one entry is the key; we asked for one key, so more is not etcd. */
static int parse_range(struct json_object *o, const char *key, size_t keylen, struct arbiter_kv *kv)
{
	struct json_object *kvs;
	int r = field(o, "kvs", json_type_array, &kvs);
	if (r <= 0)
		return r;
	size_t n = json_object_array_length(kvs);
	if (n == 0)
		return 0;
	struct json_object *e = json_object_array_get_idx(kvs, 0);
	if (n > 1 || !json_object_is_type(e, json_type_object))
		return -EPROTO;
	return parse_kv(e, key, keylen, kv);
}

/* A txn answer: succeeded (absent when false) and one response, the put's or the failure branch's range. */
static int parse_txn(struct json_object *o, const char *key, size_t keylen, struct arbiter_reply *r)
{
	struct json_object *ok, *resps, *one, *body;
	int rc = field(o, "succeeded", json_type_boolean, &ok);
	if (rc < 0 || field(o, "responses", json_type_array, &resps) != 1 || json_object_array_length(resps) != 1)
		return -EPROTO;
	r->succeeded = rc == 1 && json_object_get_boolean(ok);
	one = json_object_array_get_idx(resps, 0);
	if (!json_object_is_type(one, json_type_object))
		return -EPROTO;
	if (r->succeeded)
		return field(one, "response_put", json_type_object, &body) == 1 ? 0 : -EPROTO;
	if (field(one, "response_range", json_type_object, &body) != 1)
		return -EPROTO;
	return parse_range(body, key, keylen, &r->kv);
}

/* etcd's error object ({"error", "message", "code"}): its message, printable, for the error line. */
static int parse_error(struct json_object *o, struct arbiter_reply *r)
{
	struct json_object *m;
	if (field(o, "message", json_type_string, &m) == 1) {
		const char *p = json_object_get_string(m);
		size_t len = (size_t)json_object_get_string_len(m), i;
		for (i = 0; i < len && i < sizeof(r->msg) - 1; i++)
			r->msg[i] = p[i] >= 0x20 && p[i] < 0x7f ? p[i] : '?';
		r->msg[i] = 0;
	}
	if (!r->msg[0])
		snprintf(r->msg, sizeof(r->msg), "an error without a message");
	return -EIO;
}

static int parse_root(struct json_object *o, enum arbiter_op op, const char *key, size_t keylen,
		      struct arbiter_reply *r)
{
	struct json_object *x;
	if (json_object_object_get_ex(o, "error", &x) || json_object_object_get_ex(o, "code", &x))
		return parse_error(o, r);
	if (field(o, "header", json_type_object, &x) != 1) /* every answer of etcd's has one */
		return -EPROTO;
	return op == ARBITER_RANGE ? parse_range(o, key, keylen, &r->kv) : parse_txn(o, key, keylen, r);
}

int arbiter_parse_reply(const char *body, size_t len, enum arbiter_op op, const char *key, size_t keylen,
			struct arbiter_reply *r)
{
	memset(r, 0, sizeof(*r));
	if (len > ARBITER_RESP_MAX)
		return -EPROTO;
	struct json_tokener *tok = json_tokener_new_ex(ARBITER_JSON_DEPTH);
	if (!tok)
		return -ENOMEM;
	json_tokener_set_flags(tok, JSON_TOKENER_STRICT);
	struct json_object *o = json_tokener_parse_ex(tok, body, (int)len);
	size_t end = json_tokener_get_parse_end(tok);
	while (end < len && body[end] && strchr(" \t\r\n", body[end]))
		end++;
	int rc = -EPROTO;
	if (o && json_tokener_get_error(tok) == json_tokener_success && end == len &&
	    json_object_is_type(o, json_type_object))
		rc = parse_root(o, op, key, keylen, r);
	json_object_put(o);
	json_tokener_free(tok);
	if (rc < 0 && rc != -EBADMSG) { /* the caller sees nothing of a refused answer but why */
		memset(&r->kv, 0, sizeof(r->kv));
		r->succeeded = false;
	}
	return rc;
}

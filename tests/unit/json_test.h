/* json_test.h - the unit tests' JSON checks: json-c in strict mode (UTF-8 validated), and python3's json when there is one. */
#ifndef FTVMM_JSON_TEST_H
#define FTVMM_JSON_TEST_H

#include <json-c/json.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>

/* text (one JSON value, a trailing newline allowed) parsed strictly, or NULL. Free with json_object_put.
 * json-c takes a raw control character inside a string, which JSON forbids: ftvmm writes no whitespace
 * between tokens, so any byte under 0x20 is refused here. */
static struct json_object *json_strict(const char *text)
{
	size_t n = strlen(text);
	if (n && text[n - 1] == '\n')
		n--;
	for (size_t i = 0; i < n; i++)
		if ((unsigned char)text[i] < 0x20)
			return NULL;
	struct json_tokener *tok = json_tokener_new();
	json_tokener_set_flags(tok, JSON_TOKENER_STRICT | JSON_TOKENER_VALIDATE_UTF8);
	struct json_object *o = json_tokener_parse_ex(tok, text, (int)n);
	bool whole = o && json_tokener_get_error(tok) == json_tokener_success && tok->char_offset == (int)n;
	json_tokener_free(tok);
	if (!whole) {
		json_object_put(o);
		return NULL;
	}
	return o;
}

/* A second parser: python3's json (strict UTF-8 too). 1 parsed, 0 refused, -1 no python3 here. */
static int json_python(const char *text)
{
	FILE *f = popen("python3 -c 'import json,sys; json.loads(sys.stdin.buffer.read().decode(\"utf-8\"))' "
			"2>/dev/null", "w");
	if (!f)
		return -1;
	fputs(text, f);
	int st = pclose(f);
	if (!WIFEXITED(st) || WEXITSTATUS(st) == 127)
		return -1;
	return WEXITSTATUS(st) == 0;
}

/* Parsed by both (python3 only where it exists); NULL if either refuses it. */
static struct json_object *json_check(const char *text)
{
	struct json_object *o = json_strict(text);
	if (o && json_python(text) == 0) {
		json_object_put(o);
		return NULL;
	}
	return o;
}

/* The member key of object o as a string, or NULL (also when it is JSON null). */
static const char *json_get_str(struct json_object *o, const char *key)
{
	struct json_object *v;
	if (!json_object_object_get_ex(o, key, &v) || !json_object_is_type(v, json_type_string))
		return NULL;
	return json_object_get_string(v);
}

static long long json_get_int(struct json_object *o, const char *key)
{
	struct json_object *v;
	return json_object_object_get_ex(o, key, &v) ? (long long)json_object_get_int64(v) : -12345;
}

/* Whether member key is there (JSON null counts) . */
static bool json_has(struct json_object *o, const char *key)
{
	return json_object_object_get_ex(o, key, NULL);
}

#endif

/* events.c - the event bus (one JSON line per event, a bounded queue per subscriber) and JSON text helpers. */
#include "events.h"

#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

/* ---- JSON text ------------------------------------------------------------------------------ */

/* The length of the valid UTF-8 sequence at p (RFC 3629: no overlong forms, no surrogates, nothing
 * past U+10FFFF), or 0: a strict parser refuses the whole text over one bad byte, and peer names and
 * reasons come from outside. */
static size_t utf8_len(const unsigned char *p)
{
	unsigned char c = p[0];
	size_t n = c < 0x80 ? 1 : c >= 0xc2 && c <= 0xdf ? 2 : c >= 0xe0 && c <= 0xef ? 3 : c >= 0xf0 && c <= 0xf4 ? 4 : 0;
	if (n < 2)
		return n;
	unsigned char lo = c == 0xe0 ? 0xa0 : c == 0xf0 ? 0x90 : 0x80;
	unsigned char hi = c == 0xed ? 0x9f : c == 0xf4 ? 0x8f : 0xbf;
	if (p[1] < lo || p[1] > hi)
		return 0;
	for (size_t i = 2; i < n; i++) /* stops at the NUL: it is no continuation byte */
		if (p[i] < 0x80 || p[i] > 0xbf)
			return 0;
	return n;
}

/* How the character at p is written inside a JSON string, into esc; its length in the input in *in. */
static size_t json_char(const unsigned char *p, char esc[8], size_t *in)
{
	static const char named[] = { ['"'] = '"', ['\\'] = '\\', ['\b'] = 'b', ['\f'] = 'f',
				      ['\n'] = 'n', ['\r'] = 'r', ['\t'] = 't' };
	*in = 1;
	if (*p < sizeof(named) && named[*p]) {
		esc[0] = '\\';
		esc[1] = named[*p];
		return 2;
	}
	if (*p < 0x20 || *p == 0x7f)
		return (size_t)snprintf(esc, 8, "\\u%04x", *p);
	size_t n = utf8_len(p);
	if (!n) /* not UTF-8: the replacement character, as a decoder would show it */
		return (size_t)snprintf(esc, 8, "\\ufffd");
	memcpy(esc, p, n);
	*in = n;
	return n;
}

const char *ft_json_quote(char *buf, size_t len, const char *s)
{
	if (len < 5) {
		if (len)
			buf[0] = 0;
		return buf;
	}
	if (!s) {
		memcpy(buf, "null", 5);
		return buf;
	}
	size_t o = 0;
	buf[o++] = '"';
	for (const unsigned char *p = (const unsigned char *)s; *p;) {
		char esc[8];
		size_t in, n = json_char(p, esc, &in);
		if (o + n + 2 > len) /* the closing quote and the NUL always fit */
			break;
		memcpy(buf + o, esc, n);
		o += n;
		p += in;
	}
	buf[o++] = '"';
	buf[o] = 0;
	return buf;
}

void ft_json_init(struct ft_json *j, char *buf, size_t len)
{
	*j = (struct ft_json){ .buf = buf, .len = len, .over = len == 0 };
	if (len)
		buf[0] = 0;
}

void ft_json_raw(struct ft_json *j, const char *fmt, ...)
{
	if (j->over)
		return;
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(j->buf + j->used, j->len - j->used, fmt, ap);
	va_end(ap);
	if (n < 0 || (size_t)n >= j->len - j->used) {
		j->over = true;
		j->buf[j->used] = 0;
		return;
	}
	j->used += (size_t)n;
}

void ft_json_key(struct ft_json *j, const char *key)
{
	bool comma = j->used && j->buf[j->used - 1] != '{';
	ft_json_raw(j, "%s%s:", comma ? "," : "", FT_JSON_STR(key));
}

void ft_json_str(struct ft_json *j, const char *key, const char *val)
{
	ft_json_key(j, key);
	ft_json_raw(j, "%s", FT_JSON_STR(val));
}

void ft_json_u64(struct ft_json *j, const char *key, uint64_t v)
{
	ft_json_key(j, key);
	ft_json_raw(j, "%llu", (unsigned long long)v);
}

void ft_json_bool(struct ft_json *j, const char *key, bool v)
{
	ft_json_key(j, key);
	ft_json_raw(j, "%s", v ? "true" : "false");
}

void ft_json_open(struct ft_json *j, const char *key)
{
	if (key)
		ft_json_key(j, key);
	ft_json_raw(j, "{");
}

void ft_json_close(struct ft_json *j)
{
	ft_json_raw(j, "}");
}

/* ---- the bus -------------------------------------------------------------------------------- */

struct ft_event_sub {
	int efd;          /* eventfd: non-zero while a line (or a drop count) waits */
	unsigned head, count;
	uint64_t dropped; /* events lost since the last line queued: said on the next one */
	uint16_t lens[FT_EVENT_QUEUE];
	char lines[FT_EVENT_QUEUE][FT_EVENT_LINE];
};

static struct {
	pthread_mutex_t lock; /* subs and every queue: one order for all subscribers */
	struct ft_event_sub *subs[FT_EVENT_SUBS];
} bus = { .lock = PTHREAD_MUTEX_INITIALIZER };

/* {"ts":<now>,"event":"type" (no closing brace) into head. */
static void line_head(char *head, size_t len, const char *type)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	snprintf(head, len, "{\"ts\":%lld.%06ld,\"event\":%s", (long long)ts.tv_sec, ts.tv_nsec / 1000,
		 FT_JSON_STR(type));
}

/* head, the drop count if any, fields, closing brace and newline: the length, 0 if over len. */
static size_t line_join(char *buf, size_t len, const char *head, uint64_t dropped, const char *fields)
{
	char drop[40] = "";
	if (dropped)
		snprintf(drop, sizeof(drop), ",\"dropped\":%llu", (unsigned long long)dropped);
	int n = snprintf(buf, len, "%s%s%s%s}\n", head, drop, fields[0] ? "," : "", fields);
	return n < 0 || (size_t)n >= len ? 0 : (size_t)n;
}

size_t ft_event_line(char *buf, size_t len, const char *type, const char *fields)
{
	char head[FT_JSON_STR_MAX + 64];
	line_head(head, sizeof(head), type);
	return line_join(buf, len, head, 0, fields ? fields : "");
}

/* Queue one line for s (bus.lock held): a full queue drops it and counts. */
static void sub_put(struct ft_event_sub *s, const char *head, const char *fields)
{
	if (s->count == FT_EVENT_QUEUE) {
		s->dropped++;
		return;
	}
	unsigned slot = (s->head + s->count) % FT_EVENT_QUEUE;
	size_t n = line_join(s->lines[slot], FT_EVENT_LINE, head, s->dropped, fields);
	if (!n) /* fields too long beside the head: the event still counts, its details do not fit */
		n = line_join(s->lines[slot], FT_EVENT_LINE, head, s->dropped, "\"truncated\":true");
	s->lens[slot] = (uint16_t)n;
	s->count++;
	s->dropped = 0;
	eventfd_write(s->efd, 1);
}

void ft_event_emit(const char *type, const char *fmt, ...)
{
	char fields[FT_EVENT_LINE] = "";
	if (fmt) {
		va_list ap;
		va_start(ap, fmt);
		int n = vsnprintf(fields, sizeof(fields), fmt, ap);
		va_end(ap);
		if (n < 0 || (size_t)n >= sizeof(fields)) /* never a line cut mid-string */
			snprintf(fields, sizeof(fields), "\"truncated\":true");
	}
	char head[FT_JSON_STR_MAX + 64];
	line_head(head, sizeof(head), type);
	pthread_mutex_lock(&bus.lock);
	for (unsigned i = 0; i < FT_EVENT_SUBS; i++)
		if (bus.subs[i])
			sub_put(bus.subs[i], head, fields);
	pthread_mutex_unlock(&bus.lock);
}

struct ft_event_sub *ft_events_subscribe(void)
{
	struct ft_event_sub *s = calloc(1, sizeof(*s));
	if (!s)
		return NULL;
	s->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	if (s->efd < 0) {
		free(s);
		return NULL;
	}
	pthread_mutex_lock(&bus.lock);
	unsigned i = 0;
	while (i < FT_EVENT_SUBS && bus.subs[i])
		i++;
	if (i < FT_EVENT_SUBS)
		bus.subs[i] = s;
	pthread_mutex_unlock(&bus.lock);
	if (i == FT_EVENT_SUBS) {
		close(s->efd);
		free(s);
		return NULL;
	}
	return s;
}

int ft_events_fd(const struct ft_event_sub *s)
{
	return s->efd;
}

size_t ft_events_next(struct ft_event_sub *s, char *buf, size_t len)
{
	size_t n = 0;
	pthread_mutex_lock(&bus.lock);
	if (s->count) {
		n = s->lens[s->head];
		if (n <= len) {
			memcpy(buf, s->lines[s->head], n);
		} else { /* a caller's buffer under FT_EVENT_LINE: the line is lost, and said to be */
			s->dropped++;
			n = 0;
		}
		s->head = (s->head + 1) % FT_EVENT_QUEUE;
		s->count--;
	}
	if (!n && !s->count && s->dropped) { /* events lost after the last line queued: say so now */
		char head[FT_JSON_STR_MAX + 64];
		line_head(head, sizeof(head), "events_dropped");
		n = line_join(buf, len, head, s->dropped, "");
		s->dropped = n ? 0 : s->dropped;
	}
	eventfd_t v;
	if (!s->count && !s->dropped)
		eventfd_read(s->efd, &v); /* nothing waits: poll stops reporting it */
	pthread_mutex_unlock(&bus.lock);
	return n;
}

void ft_events_unsubscribe(struct ft_event_sub *s)
{
	if (!s)
		return;
	pthread_mutex_lock(&bus.lock);
	for (unsigned i = 0; i < FT_EVENT_SUBS; i++)
		if (bus.subs[i] == s)
			bus.subs[i] = NULL;
	pthread_mutex_unlock(&bus.lock);
	close(s->efd);
	free(s);
}

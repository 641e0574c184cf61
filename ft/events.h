/* events.h - what happened to the guest's protection, as JSON lines for subscribers (`ftvmm ctl SOCK events`), and the JSON text helpers. */
#ifndef FTVMM_EVENTS_H
#define FTVMM_EVENTS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/*
 * One process-wide bus. Any thread emits; each event becomes one line
 *   {"ts":<unix seconds, float>,"event":"<type>"[,"dropped":N],<fields>}\n
 * queued for every subscriber in the same order. Emitting never waits for a reader: a subscriber's
 * queue holds FT_EVENT_QUEUE lines, later events are dropped for it alone and counted, and the next
 * line it gets says how many ("dropped":N, on the next event, or on an "events_dropped" line once its
 * queue is empty). Types (README, Usage): protected, unprotected, takeover_won, takeover_lost,
 * arbiter_unreachable, arbiter_back, link_authenticated, link_refused, planned_failover, guest_ended.
 */

#define FT_EVENT_SUBS 4     /* subscribers at once: a cluster manager, a script, an operator's terminal */
#define FT_EVENT_QUEUE 64   /* lines queued per subscriber */
#define FT_EVENT_LINE 2048  /* one line at most, its newline included */
#define FT_JSON_STR_MAX 512 /* a quoted string at most (FT_JSON_STR, ft_json_str): longer ones are cut */

/* fields: a JSON object's members without braces ("\"peer\":\"a:1\",\"generation\":3"), empty or NULL
 * for none, built with printf's fmt; strings must go through FT_JSON_STR. Callable from any thread. */
void ft_event_emit(const char *type, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

struct ft_event_sub;
/* A new subscriber, seeing every event from now on; NULL when FT_EVENT_SUBS are taken (or no memory). */
struct ft_event_sub *ft_events_subscribe(void);
/* Readable (poll) while a line waits. */
int ft_events_fd(const struct ft_event_sub *s);
/* The oldest waiting line, its newline included, into buf (at least FT_EVENT_LINE): its length, or 0
 * when none waits. */
size_t ft_events_next(struct ft_event_sub *s, char *buf, size_t len);
void ft_events_unsubscribe(struct ft_event_sub *s);

/* One event line as the bus writes it ({"ts":...,"event":type,fields}\n): its length, or 0 when it
 * does not fit len. For a line that is not on the bus (the control socket's "subscribed"). */
size_t ft_event_line(char *buf, size_t len, const char *type, const char *fields);

/* s as a JSON string, quotes included, or null for NULL; escaped (quote, backslash, control
 * characters), cut at a character boundary to fit len (at least 3; then always a valid string). */
const char *ft_json_quote(char *buf, size_t len, const char *s);
/* A quoted string for a printf argument, in a buffer that lives until the end of the caller's block. */
#define FT_JSON_STR(s) ft_json_quote((char[FT_JSON_STR_MAX]){ 0 }, FT_JSON_STR_MAX, (s))

/* A JSON text built in a fixed buffer: members are added with a comma where one is due; what does not
 * fit sets `over` (and the text must not be used). */
struct ft_json {
	char *buf;
	size_t len, used;
	bool over;
};
void ft_json_init(struct ft_json *j, char *buf, size_t len);
void ft_json_raw(struct ft_json *j, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* "key": then the value; key NULL for an array element. */
void ft_json_key(struct ft_json *j, const char *key);
void ft_json_str(struct ft_json *j, const char *key, const char *val); /* null for NULL */
void ft_json_u64(struct ft_json *j, const char *key, uint64_t v);
void ft_json_bool(struct ft_json *j, const char *key, bool v);
void ft_json_open(struct ft_json *j, const char *key); /* "key":{ */
void ft_json_close(struct ft_json *j);                 /* } */

#endif

/* ioloop.h - an epoll thread that runs device data paths (ioeventfds, TAP, io_uring, stdin) off the vCPUs. */
#ifndef FTVMM_IOLOOP_H
#define FTVMM_IOLOOP_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

/* Called on the loop thread with the epoll events that fired. */
typedef void (*ioloop_fn)(void *opaque, uint32_t events);

struct ioloop_node;

struct ioloop {
	int epfd;
	struct ioloop_node *nodes; /* every registration, freed at destroy */
	pthread_mutex_t lock;
	int wakefd; /* eventfd used to stop the loop */
	pthread_t thread;
	bool running;
	const char *name;
};

int ioloop_init(struct ioloop *l, const char *name);
/* Watch fd for `events` (EPOLLIN...). The callback pointer must stay valid until ioloop_del. */
int ioloop_add(struct ioloop *l, int fd, uint32_t events, ioloop_fn fn, void *opaque);
int ioloop_del(struct ioloop *l, int fd);
int ioloop_start(struct ioloop *l);
/* Stop the thread and wait for it; callbacks are not running once this returns. */
void ioloop_stop(struct ioloop *l);
void ioloop_destroy(struct ioloop *l);
/* Run one round of ready callbacks on the caller's thread (tests). timeout_ms as for epoll_wait. */
int ioloop_poll_once(struct ioloop *l, int timeout_ms);

#endif

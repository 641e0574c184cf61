/* ioloop.c - epoll-driven device I/O thread. */
#include "ioloop.h"
#include "util.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <unistd.h>

struct ioloop_node {
	ioloop_fn fn;
	void *opaque;
	int fd; /* -1 once deleted: a callback may still be in flight, so the node lives until destroy */
	struct ioloop_node *next;
};

int ioloop_init(struct ioloop *l, const char *name)
{
	memset(l, 0, sizeof(*l));
	l->name = name;
	l->epfd = epoll_create1(EPOLL_CLOEXEC);
	if (l->epfd < 0)
		return -errno;
	l->wakefd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (l->wakefd < 0) {
		int e = -errno;
		close(l->epfd);
		return e;
	}
	pthread_mutex_init(&l->lock, NULL);
	struct epoll_event ev = { .events = EPOLLIN, .data.ptr = NULL };
	if (epoll_ctl(l->epfd, EPOLL_CTL_ADD, l->wakefd, &ev) < 0)
		return -errno;
	return 0;
}

int ioloop_add(struct ioloop *l, int fd, uint32_t events, ioloop_fn fn, void *opaque)
{
	struct ioloop_node *n = calloc(1, sizeof(*n));
	if (!n)
		return -ENOMEM;
	n->fn = fn;
	n->opaque = opaque;
	n->fd = fd;
	struct epoll_event ev = { .events = events, .data.ptr = n };
	if (epoll_ctl(l->epfd, EPOLL_CTL_ADD, fd, &ev) < 0) {
		int e = -errno;
		free(n);
		return e;
	}
	pthread_mutex_lock(&l->lock);
	n->next = l->nodes;
	l->nodes = n;
	pthread_mutex_unlock(&l->lock);
	return 0;
}

int ioloop_del(struct ioloop *l, int fd)
{
	epoll_ctl(l->epfd, EPOLL_CTL_DEL, fd, NULL);
	pthread_mutex_lock(&l->lock);
	for (struct ioloop_node *n = l->nodes; n; n = n->next)
		if (n->fd == fd)
			__atomic_store_n(&n->fd, -1, __ATOMIC_RELEASE);
	pthread_mutex_unlock(&l->lock);
	return 0;
}

int ioloop_poll_once(struct ioloop *l, int timeout_ms)
{
	struct epoll_event evs[32];
	int n = epoll_wait(l->epfd, evs, 32, timeout_ms);
	if (n < 0)
		return errno == EINTR ? 0 : -errno;
	int stop = 0;
	for (int i = 0; i < n; i++) {
		struct ioloop_node *e = evs[i].data.ptr;
		if (!e) {
			uint64_t v;
			if (read(l->wakefd, &v, sizeof(v)) < 0) {
				/* nothing to drain */
			}
			stop = 1;
			continue;
		}
		if (__atomic_load_n(&e->fd, __ATOMIC_ACQUIRE) >= 0)
			e->fn(e->opaque, evs[i].events);
	}
	return stop ? 1 : 0;
}

static void *loop_thread(void *arg)
{
	struct ioloop *l = arg;
	for (;;) {
		int r = ioloop_poll_once(l, -1);
		if (r == 1 || r < 0)
			break;
	}
	return NULL;
}

int ioloop_start(struct ioloop *l)
{
	int r = pthread_create(&l->thread, NULL, loop_thread, l);
	if (r)
		return -r;
	l->running = true;
	return 0;
}

void ioloop_stop(struct ioloop *l)
{
	if (!l->running)
		return;
	uint64_t one = 1;
	if (write(l->wakefd, &one, sizeof(one)) < 0)
		warnx("ioloop %s: cannot wake", l->name);
	pthread_join(l->thread, NULL);
	l->running = false;
}

void ioloop_destroy(struct ioloop *l)
{
	ioloop_stop(l);
	struct ioloop_node *n = l->nodes;
	while (n) {
		struct ioloop_node *next = n->next;
		free(n);
		n = next;
	}
	l->nodes = NULL;
	pthread_mutex_destroy(&l->lock);
	close(l->wakefd);
	close(l->epfd);
}

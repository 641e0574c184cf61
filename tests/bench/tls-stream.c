/* tls-stream.c - the FT link's framing (ft_send/ft_recv) over a socketpair, plain and TLS 1.3 (PSK): MiB/s. */
#include "../unit/tls_test.h"

#include <sys/uio.h>

/* One run: MIB frames of 1 MiB (an epoch's pages arrive as large iovecs) from a sender to a receiver
 * thread; prints "MODE MIB SECONDS". The TLS session is made and shaken hands before the clock starts. */
#define FRAME (1u << 20)

static struct ft_link tx, rx;
static unsigned nframes;

static void *receiver(void *arg)
{
	(void)arg;
	for (unsigned i = 0; i < nframes; i++) {
		struct ft_frame f;
		void *p;
		CHECK(ft_recv(&rx, &f, &p) == 0);
		free(p);
	}
	return NULL;
}

static void *handshake(void *arg)
{
	CHECK(ft_tls_handshake(((struct ft_link *)arg)->tls, 10000) == 0);
	return NULL;
}

static double now_s(void)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

int main(int argc, char **argv)
{
	CHECK(argc == 3);
	bool tls = !strcmp(argv[1], "tls");
	nframes = (unsigned)atoi(argv[2]);
	int sv[2];
	CHECK(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) == 0);
	tx = (struct ft_link){ .fd = sv[0] };
	rx = (struct ft_link){ .fd = sv[1] };
	struct tls_fixture fx;
	struct ft_tls_creds *cc = NULL, *sc = NULL;
	if (tls) {
		tls_fixture_make(&fx);
		cc = tls_creds(FT_TLS_CLIENT, NULL, NULL, fx.psk);
		sc = tls_creds(FT_TLS_SERVER, NULL, NULL, fx.psk);
		CHECK(ft_tls_new(cc, sv[0], "127.0.0.1", &tx.tls) == 0);
		CHECK(ft_tls_new(sc, sv[1], NULL, &rx.tls) == 0);
		pthread_t t;
		CHECK(pthread_create(&t, NULL, handshake, &rx) == 0);
		handshake(&tx);
		pthread_join(t, NULL);
	}
	uint8_t *buf = malloc(FRAME);
	CHECK(buf);
	for (unsigned i = 0; i < FRAME; i++)
		buf[i] = (uint8_t)(i * 2654435761u >> 24);
	pthread_t t;
	CHECK(pthread_create(&t, NULL, receiver, NULL) == 0);
	double t0 = now_s();
	for (unsigned i = 0; i < nframes; i++) {
		struct iovec iov = { buf, FRAME };
		CHECK(ft_send(&tx, FT_EPOCH, i, &iov, 1) == 0);
	}
	pthread_join(t, NULL);
	printf("%s %u %.6f\n", tls ? "tls" : "plain", nframes, now_s() - t0);
	free(buf);
	ft_link_close(&tx);
	ft_link_close(&rx);
	if (tls) {
		ft_tls_creds_free(cc);
		ft_tls_creds_free(sc);
		tls_fixture_free(&fx);
	}
	return 0;
}

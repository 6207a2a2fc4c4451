/*
 * unsupported LOG KIND
 *
 * A ticking process that holds one thing stasis cannot checkpoint yet, so
 * that the test can check the dump refuses it and leaves the process alone:
 *   thread  - a second thread, sleeping
 *   pipe    - both ends of a pipe, with unread data in it
 *   socket  - a connected AF_UNIX socketpair, with unread data in it
 *
 * Log: "start pid <pid> kind <kind>", then "tick <n>".
 */
#include "common.h"

#include <pthread.h>
#include <sys/socket.h>

static void *sleeper(void *arg)
{
	(void)arg;
	for (;;)
		sleep_ms(1000);
	return NULL;
}

int main(int argc, char **argv)
{
	if (argc != 3)
		return 1;
	workload_start(argv[1]);
	const char *kind = argv[2];
	int fds[2];
	if (!strcmp(kind, "thread")) {
		pthread_t t;
		if (pthread_create(&t, NULL, sleeper, NULL)) {
			errno = EAGAIN;
			die("pthread_create");
		}
	} else if (!strcmp(kind, "pipe")) {
		if (pipe(fds))
			die("pipe");
		write_all(fds[1], "queued", 6);
	} else if (!strcmp(kind, "socket")) {
		if (socketpair(AF_UNIX, SOCK_STREAM, 0, fds))
			die("socketpair");
		write_all(fds[1], "queued", 6);
	} else {
		errno = EINVAL;
		die("KIND");
	}
	log_line("start pid %d kind %s", getpid(), kind);
	for (unsigned long long n = 1;; n++) {
		log_line("tick %llu", n);
		sleep_ms(10);
	}
}

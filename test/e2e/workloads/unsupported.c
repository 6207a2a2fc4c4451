/*
 * unsupported LOG KIND
 *
 * A ticking process that holds one thing stasis cannot checkpoint yet, so
 * that the test can check the dump refuses it and leaves the process alone:
 *   thread  - a second thread, sleeping
 *   perf    - a perf_event counter descriptor
 *   socket  - a listening TCP socket on the loopback
 *
 * Log: "start pid <pid> kind <kind>", then "tick <n>".
 */
#include "common.h"

#include <linux/perf_event.h>
#include <netinet/in.h>
#include <pthread.h>
#include <linux/netlink.h>
#include <sys/socket.h>
#include <sys/syscall.h>

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
	} else if (!strcmp(kind, "perf")) {
		struct perf_event_attr attr = {
			.type = PERF_TYPE_SOFTWARE,
			.size = sizeof attr,
			.config = PERF_COUNT_SW_TASK_CLOCK,
		};
		fds[0] = (int)syscall(SYS_perf_event_open, &attr, 0, -1, -1, 0);
		if (fds[0] < 0)
			die("perf_event_open");
	} else if (!strcmp(kind, "socket")) {
		/* A netlink socket: TCP, UDP and unix sockets are supported now. */
		fds[0] = socket(AF_NETLINK, SOCK_RAW, NETLINK_ROUTE);
		if (fds[0] < 0)
			die("netlink socket");
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

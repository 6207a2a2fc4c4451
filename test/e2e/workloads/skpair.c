/*
 * skpair LOG
 *
 * A parent and its child talk over unix socketpairs each holds one end of:
 * every tick n the parent sends record n on a stream pair and a datagram
 * pair; the child receives each record LAG ticks late (so LAG records wait
 * in its queues at any instant), checks it is exactly the next one, and
 * answers "ack <m>" on both pairs, which the parent reads 2 * LAG ticks
 * after sending the record. The child exits when the parent's end closes.
 *
 * Log: "start pid <pid>", then from the parent "tick <n> stream ok dgram ok"
 * and from the child "child <m> stream ok dgram ok" (FAIL for a missing or
 * wrong record).
 */
#include "common.h"

#include <sys/socket.h>

#define LAG 5

static const char *recv_line(int fd, int stream, const char *want)
{
	char got[64];
	size_t len = strlen(want);
	ssize_t r;
	if (stream) {
		size_t have = 0;
		while (have < len) {
			r = recv(fd, got + have, len - have, MSG_DONTWAIT);
			if (r == 0)
				return "eof";
			if (r < 0)
				return errno == EAGAIN ? "missing" : "error";
			have += (size_t)r;
		}
	} else {
		r = recv(fd, got, sizeof got, MSG_DONTWAIT);
		if (r == 0)
			return "eof";
		if (r < 0)
			return errno == EAGAIN ? "missing" : "error";
		if ((size_t)r != len)
			return "wrong-length";
	}
	return memcmp(got, want, len) ? "wrong" : NULL;
}

static void send_line(int fd, const char *s)
{
	if (send(fd, s, strlen(s), MSG_NOSIGNAL) != (ssize_t)strlen(s))
		_exit(0); /* the other side is gone */
}

int main(int argc, char **argv)
{
	if (argc != 2)
		return 1;
	workload_start(argv[1]);
	int st[2], dg[2];
	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, st) ||
	    socketpair(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0, dg))
		die("socketpair");
	pid_t child = fork();
	if (child < 0)
		die("fork");
	int mine = child ? 0 : 1;
	close(st[!mine]);
	close(dg[!mine]);
	int s = st[mine], d = dg[mine];
	if (child)
		log_line("start pid %d", getpid());
	char buf[64];
	for (unsigned long long n = 0;; n++) {
		if (child) {
			snprintf(buf, sizeof buf, "rec %08llu\n", n);
			send_line(s, buf);
			send_line(d, buf);
		}
		/* The child reads records LAG ticks late; the parent reads the
		 * acks 2 * LAG ticks late, LAG ticks after the child sent them. */
		unsigned long long lag = child ? 2 * LAG : LAG;
		if (n >= lag) {
			unsigned long long m = n - lag;
			snprintf(buf, sizeof buf, "%s %08llu\n", child ? "ack" : "rec", m);
			const char *a = recv_line(s, 1, buf), *b = recv_line(d, 0, buf);
			if ((a && !strcmp(a, "eof")) || (b && !strcmp(b, "eof")))
				_exit(0);
			if (child) {
				log_line("tick %llu stream %s dgram %s", n, a ? "FAIL" : "ok",
					 b ? "FAIL" : "ok");
			} else {
				snprintf(buf, sizeof buf, "ack %08llu\n", m);
				send_line(s, buf);
				send_line(d, buf);
				log_line("child %llu stream %s dgram %s", m, a ? "FAIL" : "ok",
					 b ? "FAIL" : "ok");
			}
		} else if (child) {
			log_line("tick %llu stream - dgram -", n);
		}
		sleep_ms(10);
	}
}

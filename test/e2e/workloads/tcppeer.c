/*
 * tcppeer LOG client PORT | tcppeer LOG server
 *
 * One end of a TCP counter protocol on 127.0.0.1 whose other end is the test:
 * the test sends a number N (8 bytes, little-endian) and this process answers
 * N + 1 after a short pause (so that the test's next number usually waits in
 * this process's receive queue when it is frozen); the next number must be
 * N + 2. A lost, repeated or reordered byte breaks the sequence at once.
 *
 *   client - connects to 127.0.0.1:PORT; also holds a listener of its own on
 *            127.0.0.1 (an ephemeral port);
 *   server - listens on 127.0.0.1 (an ephemeral port, logged) and accepts the
 *            test's connection; the listener stays open.
 *
 * Both also hold a UDP socket bound to 127.0.0.1 and a second UDP socket
 * connected to it. The listener answers any later connection with "hello"
 * and closes it.
 *
 * Held without traffic until SIGUSR1, then checked once:
 *   udp    - the connected UDP socket sends "ping" and the bound one gets it;
 *   listen - the listener still has its port.
 *
 * Log: "start pid <pid>", "listen <port>", "tick <k> got <N>" per round, and
 * after SIGUSR1 "usr1 udp ok listen ok" (FAIL <why> in place of a failing ok).
 */
#include "common.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <sys/socket.h>

static volatile sig_atomic_t usr1;

static void on_usr1(int sig)
{
	(void)sig;
	usr1 = 1;
}

static struct sockaddr_in loopback(int port)
{
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port) };
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	return a;
}

static int port_of(int fd)
{
	struct sockaddr_in a;
	socklen_t len = sizeof a;
	if (getsockname(fd, (struct sockaddr *)&a, &len) < 0)
		die("getsockname");
	return ntohs(a.sin_port);
}

static int listener(void)
{
	int one = 1;
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	struct sockaddr_in a = loopback(0);
	if (fd < 0 || setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) < 0 ||
	    bind(fd, (struct sockaddr *)&a, sizeof a) < 0 || listen(fd, 8) < 0)
		die("listener");
	return fd;
}

/* Reads exactly len bytes; 0 at end-of-file, -1 on error. */
static int read_full(int fd, void *buf, size_t len)
{
	char *p = buf;
	while (len > 0) {
		ssize_t n = read(fd, p, len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return (int)n;
		p += n;
		len -= (size_t)n;
	}
	return 1;
}

static void check_usr1(int udp_rx, int udp_tx, int lfd, int lport)
{
	char buf[16] = { 0 };
	const char *udp = "ok", *lis = "ok";
	struct pollfd p = { .fd = udp_rx, .events = POLLIN };
	if (send(udp_tx, "ping", 4, 0) != 4)
		udp = "FAIL-send";
	else if (poll(&p, 1, 2000) != 1)
		udp = "FAIL-nothing-received";
	else if (recv(udp_rx, buf, sizeof buf, MSG_DONTWAIT) != 4 || memcmp(buf, "ping", 4))
		udp = "FAIL-wrong-datagram";
	if (port_of(lfd) != lport)
		lis = "FAIL-port-changed";
	log_line("usr1 udp %s listen %s", udp, lis);
}

int main(int argc, char **argv)
{
	if (argc < 3)
		return 1;
	workload_start(argv[1]);
	int server = strcmp(argv[2], "server") == 0;
	signal(SIGPIPE, SIG_IGN);
	struct sigaction sa = { .sa_handler = on_usr1 };
	sigaction(SIGUSR1, &sa, NULL);

	int lfd = listener();
	int lport = port_of(lfd);
	int udp_rx = socket(AF_INET, SOCK_DGRAM, 0);
	int udp_tx = socket(AF_INET, SOCK_DGRAM, 0);
	struct sockaddr_in ua = loopback(0);
	if (udp_rx < 0 || udp_tx < 0 || bind(udp_rx, (struct sockaddr *)&ua, sizeof ua) < 0)
		die("udp");
	ua = loopback(port_of(udp_rx));
	if (connect(udp_tx, (struct sockaddr *)&ua, sizeof ua) < 0)
		die("udp connect");

	log_line("start pid %d", getpid());
	log_line("listen %d", lport);
	int c;
	if (server) {
		c = accept(lfd, NULL, NULL);
		if (c < 0)
			die("accept");
	} else {
		struct sockaddr_in a = loopback(atoi(argv[3]));
		c = socket(AF_INET, SOCK_STREAM, 0);
		if (c < 0 || connect(c, (struct sockaddr *)&a, sizeof a) < 0)
			die("connect");
	}
	int one = 1;
	setsockopt(c, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);

	uint64_t expect = 0;
	unsigned long long round = 0;
	for (;;) {
		if (usr1) {
			usr1 = 0;
			check_usr1(udp_rx, udp_tx, lfd, lport);
		}
		struct pollfd p[2] = { { .fd = c, .events = POLLIN }, { .fd = lfd, .events = POLLIN } };
		int n = poll(p, 2, 100);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			die("poll");
		if (p[1].revents & POLLIN) {
			int x = accept(lfd, NULL, NULL);
			if (x >= 0) {
				write_all(x, "hello", 5);
				close(x);
			}
		}
		if (!(p[0].revents & (POLLIN | POLLHUP | POLLERR)))
			continue;
		uint64_t got;
		int r = read_full(c, &got, sizeof got);
		if (r == 0) {
			log_line("FAIL the test closed the connection");
			return 1;
		}
		if (r < 0)
			die("read");
		if (round > 0 && got != expect) {
			log_line("tick %llu FAIL got %llu expected %llu", round,
				 (unsigned long long)got, (unsigned long long)expect);
			return 1;
		}
		usleep(30000);
		uint64_t reply = got + 1;
		write_all(c, (const char *)&reply, sizeof reply);
		log_line("tick %llu got %llu", round, (unsigned long long)got);
		expect = got + 2;
		round++;
	}
}

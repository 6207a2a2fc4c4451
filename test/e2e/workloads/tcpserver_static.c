/* PID 1 of a container started by nsinit: a TCP echo server for one client.
 *
 *   tcpserver PORT [LOG]
 *
 * Listens on 0.0.0.0:PORT (the listener stays open), accepts one client and then
 * echoes the client's byte stream transformed by its position: the byte at offset i
 * of the stream comes back as in[i] ^ mask(i). The client sends stream(i) at offset i
 * and expects stream(i) ^ mask(i) back at offset i, so a byte lost, repeated or
 * reordered in either direction, or a server whose offset in memory went wrong,
 * breaks the comparison from that byte on. The server checks what it receives too
 * and logs the first offset that differs.
 *
 * stream(i) and mask(i) are the same functions as the test's (tests/container_tcp.rs).
 *
 * Log (LOG, by default /data/server.log; one line per write): "listen PORT", "accepted ADDR:PORT",
 * "BAD at N got X want Y" (once), "eof after N" or "FAIL what: why". stdio goes to
 * /dev/null. Linked statically: the container's root has no shared libraries. */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

static int log_fd = -1;

static void log_text(const char *buf, int n)
{
	if (log_fd >= 0 && n > 0)
		(void)!write(log_fd, buf, (size_t)n);
}

static void fail(const char *what)
{
	char buf[256];
	int n = snprintf(buf, sizeof buf, "FAIL %s: %s\n", what, strerror(errno));
	log_text(buf, n);
	_exit(2);
}

/* The client's byte at stream offset i: the top byte of a multiplicative hash, so no
 * short shift of the stream compares equal. */
static unsigned char stream_byte(uint64_t i)
{
	uint64_t x = (i + 1) * 0x9E3779B97F4A7C15ull;
	x ^= x >> 29;
	return (unsigned char)(x >> 56);
}

/* What the server XORs into the byte at offset i before echoing it. */
static unsigned char mask_byte(uint64_t i)
{
	return (unsigned char)(i % 251 + 1);
}

static void send_all(int fd, const unsigned char *p, size_t len)
{
	while (len > 0) {
		ssize_t n = write(fd, p, len);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			fail("write to the client");
		}
		p += n;
		len -= (size_t)n;
	}
}

int main(int argc, char **argv)
{
	if (argc < 2)
		return 2;
	int port = atoi(argv[1]);
	int null = open("/dev/null", O_RDWR);
	if (null >= 0) {
		dup2(null, 0);
		dup2(null, 1);
		dup2(null, 2);
		if (null > 2)
			close(null);
	}
	const char *log = argc > 2 ? argv[2] : "/data/server.log";
	log_fd = open(log, O_WRONLY | O_CREAT | O_TRUNC | O_APPEND, 0644);
	if (log_fd < 0)
		return 10;

	int one = 1;
	int ls = socket(AF_INET, SOCK_STREAM, 0);
	if (ls < 0)
		fail("socket");
	if (setsockopt(ls, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) < 0)
		fail("SO_REUSEADDR");
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port) };
	a.sin_addr.s_addr = htonl(INADDR_ANY);
	if (bind(ls, (struct sockaddr *)&a, sizeof a) < 0)
		fail("bind");
	if (listen(ls, 4) < 0)
		fail("listen");
	char line[256];
	int n = snprintf(line, sizeof line, "listen %d\n", port);
	log_text(line, n);

	struct sockaddr_in peer;
	socklen_t plen = sizeof peer;
	int c;
	do
		c = accept(ls, (struct sockaddr *)&peer, &plen);
	while (c < 0 && errno == EINTR);
	if (c < 0)
		fail("accept");
	char addr[INET_ADDRSTRLEN] = "?";
	inet_ntop(AF_INET, &peer.sin_addr, addr, sizeof addr);
	n = snprintf(line, sizeof line, "accepted %s:%d\n", addr, ntohs(peer.sin_port));
	log_text(line, n);

	static unsigned char buf[1 << 16];
	uint64_t off = 0;
	int bad = 0;
	for (;;) {
		ssize_t got = read(c, buf, sizeof buf);
		if (got < 0) {
			if (errno == EINTR)
				continue;
			fail("read from the client");
		}
		if (got == 0)
			break;
		for (ssize_t k = 0; k < got; k++) {
			uint64_t i = off + (uint64_t)k;
			if (!bad && buf[k] != stream_byte(i)) {
				bad = 1;
				n = snprintf(line, sizeof line, "BAD at %llu got %u want %u\n",
					     (unsigned long long)i, buf[k], stream_byte(i));
				log_text(line, n);
			}
			buf[k] ^= mask_byte(i);
		}
		send_all(c, buf, (size_t)got);
		off += (uint64_t)got;
	}
	n = snprintf(line, sizeof line, "eof after %llu\n", (unsigned long long)off);
	log_text(line, n);
	return 0;
}

/*
 * unixsk LOG DIR
 *
 * Streams numbered records through unix sockets that always hold LAG unread
 * records: every tick n sends record n on each channel and receives record
 * n - LAG at its other end, which must be exactly the next one expected (for
 * datagrams: with its own length, 8 + n % 13 bytes, so boundaries count).
 * Receivers are O_NONBLOCK: a missing record is reported, never waited for.
 *
 *   stream    - a SOCK_STREAM socketpair, records both ways;
 *   dgram     - a SOCK_DGRAM socketpair, both ways;
 *   seqpacket - a SOCK_SEQPACKET socketpair, both ways;
 *   accepted  - a client connected to the listener DIR/listen.sock and the
 *               socket accepted from it, both ways;
 *   bound     - a datagram socket bound to DIR/dgram.sock, receiving from a
 *               client connect()ed to it (even records) and from an unbound
 *               socket using sendto() (odd records);
 *   abstract  - a datagram socket bound to an abstract name, receiving from a
 *               client connect()ed to it.
 *
 * Held without traffic until SIGUSR1, then checked once:
 *   pending   - a second client of the listener, never accepted before the
 *               signal: accepted then, it exchanges one message each way;
 *   shutdown  - a stream pair whose one end sent "final" and shut down its
 *               writing side: the other end reads "final" then end-of-file,
 *               and can still send the other way;
 *   orphan    - a stream pair whose one end sent "orphan-data" and closed:
 *               the other end reads "orphan-data" then end-of-file;
 *   names     - the accepted socket's own name and the client's peer name
 *               are DIR/listen.sock.
 *
 * Log: "start pid <pid>", then "tick <n> stream ok dgram ok seqpacket ok
 * accepted ok bound ok abstract ok", and after SIGUSR1 "usr1 pending ok
 * shutdown ok orphan ok names ok" (FAIL <why> in place of a failing ok).
 */
#include "common.h"

#include <signal.h>
#include <stddef.h>
#include <sys/socket.h>
#include <sys/un.h>

#define LAG 5
#define REC_LEN 13

static volatile sig_atomic_t usr1;

static void on_usr1(int sig)
{
	(void)sig;
	usr1 = 1;
}

static size_t record(char *buf, int stream, unsigned long long n)
{
	size_t len = stream ? REC_LEN : 8 + n % 13;
	char tmp[32];
	memset(buf, '.', len);
	int k = snprintf(tmp, sizeof tmp, "%llu:", n);
	memcpy(buf, tmp, (size_t)k < len ? (size_t)k : len);
	buf[len - 1] = '\n';
	return len;
}

static void nonblock(int fd)
{
	if (fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK))
		die("O_NONBLOCK");
}

static void send_rec(int fd, int stream, unsigned long long n)
{
	char buf[32];
	size_t len = record(buf, stream, n);
	if (send(fd, buf, len, MSG_NOSIGNAL) != (ssize_t)len)
		die("send");
}

static void sendto_rec(int fd, const struct sockaddr_un *to, unsigned long long n)
{
	char buf[32];
	size_t len = record(buf, 0, n);
	if (sendto(fd, buf, len, 0, (const struct sockaddr *)to, sizeof *to) != (ssize_t)len)
		die("sendto");
}

/* Receives record n from rx; returns why it is not there, or NULL. */
static const char *recv_rec(int rx, int stream, unsigned long long n)
{
	char want[32], got[64];
	size_t len = record(want, stream, n);
	ssize_t r;
	if (stream) {
		size_t have = 0;
		while (have < len) {
			r = recv(rx, got + have, len - have, MSG_DONTWAIT);
			if (r < 0 && errno == EINTR)
				continue;
			if (r < 0)
				return errno == EAGAIN ? "missing" : "error";
			if (r == 0)
				return "eof";
			have += (size_t)r;
		}
	} else {
		do
			r = recv(rx, got, sizeof got, MSG_DONTWAIT);
		while (r < 0 && errno == EINTR);
		if (r < 0)
			return errno == EAGAIN ? "missing" : "error";
		if ((size_t)r != len)
			return "wrong-length";
	}
	return memcmp(want, got, len) ? "wrong-record" : NULL;
}

static struct sockaddr_un path_addr(const char *dir, const char *name)
{
	struct sockaddr_un a = { .sun_family = AF_UNIX };
	snprintf(a.sun_path, sizeof a.sun_path, "%s/%s", dir, name);
	return a;
}

static int bound_socket(int type, const struct sockaddr_un *a, socklen_t len)
{
	int fd = socket(AF_UNIX, type | SOCK_CLOEXEC, 0);
	if (fd < 0 || bind(fd, (const struct sockaddr *)a, len))
		die("bind");
	return fd;
}

static int connected_socket(int type, const struct sockaddr_un *a, socklen_t len)
{
	int fd = socket(AF_UNIX, type | SOCK_CLOEXEC, 0);
	if (fd < 0 || connect(fd, (const struct sockaddr *)a, len))
		die("connect");
	return fd;
}

static int pair(int type, int sv[2])
{
	if (socketpair(AF_UNIX, type | SOCK_CLOEXEC, 0, sv))
		die("socketpair");
	nonblock(sv[0]);
	nonblock(sv[1]);
	return 0;
}

/* Reads exactly `want` and then end-of-file from fd. */
static const char *drain_then_eof(int fd, const char *want)
{
	char got[64];
	size_t len = strlen(want), have = 0;
	while (have < len) {
		ssize_t r = recv(fd, got + have, len - have, MSG_DONTWAIT);
		if (r <= 0)
			return r == 0 ? "early-eof" : "missing";
		have += (size_t)r;
	}
	if (memcmp(got, want, len))
		return "wrong-data";
	return recv(fd, got, 1, MSG_DONTWAIT) == 0 ? NULL : "no-eof";
}

int main(int argc, char **argv)
{
	if (argc != 3)
		return 1;
	workload_start(argv[1]);
	signal(SIGUSR1, on_usr1);
	const char *dir = argv[2];

	int st[2], dg[2], sq[2];
	pair(SOCK_STREAM, st);
	pair(SOCK_DGRAM, dg);
	pair(SOCK_SEQPACKET, sq);

	struct sockaddr_un la = path_addr(dir, "listen.sock");
	unlink(la.sun_path);
	int lsn = bound_socket(SOCK_STREAM, &la, sizeof la);
	if (listen(lsn, 8))
		die("listen");
	int cli = connected_socket(SOCK_STREAM, &la, sizeof la);
	int acc = accept4(lsn, NULL, NULL, SOCK_CLOEXEC);
	if (acc < 0)
		die("accept");
	nonblock(cli);
	nonblock(acc);
	int pending = connected_socket(SOCK_STREAM, &la, sizeof la);

	struct sockaddr_un ba = path_addr(dir, "dgram.sock");
	unlink(ba.sun_path);
	int bsrv = bound_socket(SOCK_DGRAM, &ba, sizeof ba);
	nonblock(bsrv);
	int bcli = connected_socket(SOCK_DGRAM, &ba, sizeof ba);
	int bany = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	if (bany < 0)
		die("socket");

	struct sockaddr_un aa = { .sun_family = AF_UNIX };
	int alen = snprintf(aa.sun_path + 1, sizeof aa.sun_path - 1, "stasis-e2e-%d", getpid());
	socklen_t aalen = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + 1 + (size_t)alen);
	int asrv = bound_socket(SOCK_DGRAM, &aa, aalen);
	nonblock(asrv);
	int acli = connected_socket(SOCK_DGRAM, &aa, aalen);

	int sh[2], orph[2];
	pair(SOCK_STREAM, sh);
	write_all(sh[0], "final", 5);
	if (shutdown(sh[0], SHUT_WR))
		die("shutdown");
	pair(SOCK_STREAM, orph);
	write_all(orph[0], "orphan-data", 11);
	close(orph[0]);

	log_line("start pid %d", getpid());
	for (unsigned long long n = 0;; n++) {
		send_rec(st[0], 1, n);
		send_rec(st[1], 1, n);
		send_rec(dg[0], 0, n);
		send_rec(dg[1], 0, n);
		send_rec(sq[0], 0, n);
		send_rec(sq[1], 0, n);
		send_rec(cli, 1, n);
		send_rec(acc, 1, n);
		if (n % 2)
			sendto_rec(bany, &ba, n);
		else
			send_rec(bcli, 0, n);
		send_rec(acli, 0, n);
		const char *w[6] = { 0 };
		if (n >= LAG) {
			unsigned long long m = n - LAG;
			const char *a, *b;
			a = recv_rec(st[1], 1, m), b = recv_rec(st[0], 1, m);
			w[0] = a ? a : b;
			a = recv_rec(dg[1], 0, m), b = recv_rec(dg[0], 0, m);
			w[1] = a ? a : b;
			a = recv_rec(sq[1], 0, m), b = recv_rec(sq[0], 0, m);
			w[2] = a ? a : b;
			a = recv_rec(acc, 1, m), b = recv_rec(cli, 1, m);
			w[3] = a ? a : b;
			w[4] = recv_rec(bsrv, 0, m);
			w[5] = recv_rec(asrv, 0, m);
		}
#define R(i) (w[i] ? "FAIL" : "ok")
		log_line("tick %llu stream %s dgram %s seqpacket %s accepted %s bound %s abstract %s",
			 n, R(0), R(1), R(2), R(3), R(4), R(5));
		for (int i = 0; i < 6; i++)
			if (w[i])
				log_line("why channel %d %s", i, w[i]);
		if (usr1) {
			usr1 = 0;
			const char *pend = NULL, *shut, *orphan, *names = NULL;
			int p = accept4(lsn, NULL, NULL, SOCK_CLOEXEC);
			char buf[16];
			if (p < 0)
				pend = "no-pending-connection";
			else if (write(pending, "ping", 4) != 4 || read(p, buf, 4) != 4 ||
				 memcmp(buf, "ping", 4) || write(p, "pong", 4) != 4 ||
				 read(pending, buf, 4) != 4 || memcmp(buf, "pong", 4))
				pend = "exchange";
			shut = drain_then_eof(sh[1], "final");
			if (!shut && (write(sh[1], "back", 4) != 4 || recv(sh[0], buf, 4, 0) != 4 ||
				      memcmp(buf, "back", 4)))
				shut = "other-way";
			orphan = drain_then_eof(orph[1], "orphan-data");
			struct sockaddr_un got;
			socklen_t gl = sizeof got;
			if (getsockname(acc, (struct sockaddr *)&got, &gl) ||
			    strcmp(got.sun_path, la.sun_path))
				names = "accepted-name";
			gl = sizeof got;
			if (!names && (getpeername(cli, (struct sockaddr *)&got, &gl) ||
				       strcmp(got.sun_path, la.sun_path)))
				names = "peer-name";
			log_line("usr1 pending %s shutdown %s orphan %s names %s",
				 pend ? pend : "ok", shut ? shut : "ok", orphan ? orphan : "ok",
				 names ? names : "ok");
		}
		sleep_ms(10);
	}
}

/*
 * stasis-bench ring workload: a tree of 1 + N processes passing a token around a ring
 * of pipes (the protocol of test/e2e/workloads/ring.c).
 *
 *   bench-ring LOG N
 *
 * The root calls setsid(), closes every inherited fd beyond stdio, opens LOG, creates
 * N+1 pipes and forks N children; every pipe is thus shared by two processes. Process i
 * reads the token (a counter) from pipe i and writes token+1 to pipe (i+1) % (N+1). The
 * root starts the token at 0, and on every lap L appends "lap L token T\n" to LOG in
 * one write(2), with T = L * (N+1) - 1, then sleeps 10 ms. After a restore the bench
 * expects the laps to go on consecutively with that token: a lost, repeated or
 * reordered token shows. Stdio is /dev/null (the bench arranges it).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

#define MAX_CHILDREN 63

static int log_fd = -1;

static void write_all(int fd, const char *buf, size_t len)
{
	while (len > 0) {
		ssize_t n = write(fd, buf, len);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			_exit(3);
		}
		buf += n;
		len -= (size_t)n;
	}
}

static void fail(const char *what)
{
	char buf[128];
	int n = snprintf(buf, sizeof(buf), "FAIL %s: errno %d\n", what, errno);
	if (log_fd >= 0 && n > 0)
		write_all(log_fd, buf, (size_t)n);
	_exit(2);
}

/* Sleeps 10 ms; a signal (or a restore that interrupts the sleep) only shortens the wait. */
static void sleep_tick(void)
{
	struct timespec req = { .tv_sec = 0, .tv_nsec = 10 * 1000 * 1000 };
	struct timespec rem;

	while (nanosleep(&req, &rem) == -1 && errno == EINTR)
		req = rem;
}

static void pass_on(int in, int out, int root)
{
	uint64_t token, lap = 0;

	for (;;) {
		ssize_t n = read(in, &token, sizeof(token));
		if (n < 0 && errno == EINTR)
			continue;
		if (n != (ssize_t)sizeof(token))
			fail("read token");
		if (root) {
			char line[64];
			lap++;
			int len = snprintf(line, sizeof(line), "lap %llu token %llu\n",
					   (unsigned long long)lap, (unsigned long long)token);
			write_all(log_fd, line, (size_t)len);
			sleep_tick();
		}
		token++;
		while (write(out, &token, sizeof(token)) < 0)
			if (errno != EINTR)
				fail("write token");
	}
}

/* Keeps only this process's two ends of the ring. */
static void keep_only(int fds[][2], int n, int in, int out)
{
	for (int j = 0; j <= n; j++) {
		if (fds[j][0] != in)
			close(fds[j][0]);
		if (fds[j][1] != out)
			close(fds[j][1]);
	}
}

int main(int argc, char **argv)
{
	if (argc != 3) {
		fprintf(stderr, "usage: %s LOG N\n", argv[0]);
		return 2;
	}
	setsid();
	close_range(3, ~0U, 0);
	log_fd = open(argv[1], O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
	if (log_fd < 0)
		return 1;
	int n = atoi(argv[2]);
	int fds[MAX_CHILDREN + 1][2];
	if (n < 1 || n > MAX_CHILDREN)
		fail("N out of range");
	for (int i = 0; i <= n; i++)
		if (pipe(fds[i]) < 0)
			fail("pipe");
	for (int i = 1; i <= n; i++) {
		pid_t c = fork();
		if (c < 0)
			fail("fork");
		if (c == 0) {
			int in = fds[i][0], out = fds[(i + 1) % (n + 1)][1];
			keep_only(fds, n, in, out);
			pass_on(in, out, 0);
		}
	}
	int in = fds[0][0], out = fds[1][1];
	keep_only(fds, n, in, out);
	uint64_t token = 0;
	if (write(out, &token, sizeof(token)) != (ssize_t)sizeof(token))
		fail("first token");
	pass_on(in, out, 1);
	return 0;
}

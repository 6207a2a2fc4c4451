/*
 * Shared helpers for the e2e workloads.
 *
 * Every workload talks to the test only through regular files: a log file
 * given on its command line, one line per write(2) so that a line is either
 * wholly in the file or not at all, whatever instant the process is frozen.
 * No stdio buffering anywhere: a buffered line written before the dump but
 * flushed after the restore would blur what the log proves.
 */
#ifndef STASIS_E2E_COMMON_H
#define STASIS_E2E_COMMON_H

#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static int log_fd = -1;

static inline void die(const char *what)
{
	char buf[256];
	int n = snprintf(buf, sizeof buf, "FAIL %s: %s\n", what, strerror(errno));
	if (log_fd >= 0 && n > 0)
		(void)!write(log_fd, buf, (size_t)n);
	_exit(2);
}

/* Writes the whole buffer, retrying on EINTR and short writes. */
static inline void write_all(int fd, const char *buf, size_t len)
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

__attribute__((format(printf, 1, 2)))
static inline void log_line(const char *fmt, ...)
{
	char buf[512];
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(buf, sizeof buf - 1, fmt, ap);
	va_end(ap);
	if (n < 0)
		_exit(4);
	if ((size_t)n > sizeof buf - 2)
		n = (int)sizeof buf - 2;
	buf[n++] = '\n';
	write_all(log_fd, buf, (size_t)n);
}

/*
 * Common start: become a session leader (stasis restores a session leader
 * without --shell-job), close every fd the harness may have leaked beyond
 * stdio (only regular files and /dev/null are supported by the engine), and
 * open the log.
 */
static inline void workload_start(const char *log_path)
{
	if (setsid() < 0 && errno != EPERM)
		_exit(5);
	close_range(3, ~0U, 0);
	log_fd = open(log_path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
	if (log_fd < 0)
		_exit(6);
}

/*
 * Sleeps for ms milliseconds. A signal handler (or a restore that turned an
 * interrupted nanosleep into EINTR) only shortens the wait: sleep on with the
 * remaining time.
 */
static inline void sleep_ms(long ms)
{
	struct timespec req = { ms / 1000, (ms % 1000) * 1000000L }, rem;
	while (nanosleep(&req, &rem) < 0) {
		if (errno != EINTR)
			die("nanosleep");
		req = rem;
	}
}

static inline unsigned long long parse_u64(const char *s, const char *what)
{
	char *end;
	errno = 0;
	unsigned long long v = strtoull(s, &end, 0);
	if (errno || *end || end == s) {
		errno = EINVAL;
		die(what);
	}
	return v;
}

#endif

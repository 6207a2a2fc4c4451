/* PID 1 of a runc container with a terminal (process.terminal: true): its stdio is the
 * slave of a pty whose master runc sent to the console socket, and that pty is its
 * controlling terminal. It keeps state where a checkpoint of such a container must
 * bring it back, and checks all of it on every tick:
 *
 *  - a counter in its memory, one line per tick on the terminal and in /data/ticks;
 *  - the terminal's settings it made at start: window size 33x97 and echo off;
 *  - its terminal is still /dev/pts/N of the same N, still its controlling terminal
 *    (/dev/tty opens), with its own group in the foreground, and it leads its session.
 *
 * Each tick writes "tick N ok" or "tick N BAD <what>". A line "ping X" typed on the
 * terminal is answered "pong X" (so the new master, after a restore, reaches it).
 * Linked statically: the container's root has no shared libraries. */
#define _GNU_SOURCE
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

static const char *check(const char *name0) {
	struct winsize ws;
	struct termios t;
	char name[64];
	if (!isatty(0))
		return "not-a-tty";
	if (ttyname_r(0, name, sizeof(name)) != 0 || strcmp(name, name0) != 0)
		return "tty-name";
	if (getsid(0) != getpid())
		return "session";
	if (tcgetpgrp(0) != getpgrp())
		return "foreground";
	int tty = open("/dev/tty", O_RDWR | O_NOCTTY);
	if (tty < 0)
		return "no-ctty";
	close(tty);
	if (ioctl(0, TIOCGWINSZ, &ws) < 0 || ws.ws_row != 33 || ws.ws_col != 97)
		return "winsize";
	if (tcgetattr(0, &t) < 0 || (t.c_lflag & ECHO))
		return "termios";
	return NULL;
}

int main(void) {
	struct winsize ws = {.ws_row = 33, .ws_col = 97};
	struct termios t;
	char name0[64];
	if (ioctl(0, TIOCSWINSZ, &ws) < 0 || tcgetattr(0, &t) < 0)
		return 10;
	t.c_lflag &= ~ECHO;
	if (tcsetattr(0, TCSANOW, &t) < 0)
		return 11;
	if (ttyname_r(0, name0, sizeof(name0)) != 0)
		return 12;
	int log = open("/data/ticks", O_WRONLY | O_CREAT | O_TRUNC | O_APPEND, 0644);
	if (log < 0)
		return 13;
	char in[256];
	size_t have = 0;
	for (unsigned long n = 1;; n++) {
		const char *bad = check(name0);
		char line[128];
		int len = snprintf(line, sizeof(line), "tick %lu %s%s\n", n, bad ? "BAD " : "ok", bad ? bad : "");
		if (write(log, line, len) != len)
			return 14;
		/* The terminal may be full while nobody reads it (during a checkpoint): a
		 * short or failed write there is not the workload's failure. */
		if (write(1, line, len) < 0) {
		}
		struct pollfd p = {.fd = 0, .events = POLLIN};
		if (poll(&p, 1, 100) > 0 && (p.revents & POLLIN)) {
			ssize_t r = read(0, in + have, sizeof(in) - 1 - have);
			if (r > 0)
				have += (size_t)r;
			char *nl;
			while ((nl = memchr(in, '\n', have)) != NULL) {
				*nl = 0;
				if (strncmp(in, "ping ", 5) == 0) {
					int m = snprintf(line, sizeof(line), "pong %s\n", in + 5);
					if (write(1, line, m) < 0) {
					}
				}
				size_t used = (size_t)(nl - in) + 1;
				memmove(in, nl + 1, have - used);
				have -= used;
			}
			if (have == sizeof(in) - 1)
				have = 0;
		}
	}
}

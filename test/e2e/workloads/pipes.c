/*
 * pipes LOG FIFO
 *
 * Streams numbered records through channels that always hold LAG unread
 * records: every tick n writes record n into each channel and reads back
 * record n - LAG, which must be exactly the next one expected. So at any
 * instant a dump sees LAG (or LAG + 1) records buffered; after a restore the
 * reads go on in sequence only if each buffered byte came back exactly once.
 *
 *   pipe   - both ends of a pipe(2); the read end is O_NONBLOCK, and dup()ed:
 *            even ticks read through the fd, odd ticks through its dup;
 *   big    - a pipe grown to 256 KiB holding LAG records of 20000 bytes each
 *            (more than the default 64 KiB capacity);
 *   fifo   - the FIFO at FIFO (made by the workload), opened O_RDONLY |
 *            O_NONBLOCK and then O_WRONLY.
 *
 * A read that finds nothing (EAGAIN) or the wrong record logs FAIL.
 * On SIGUSR1 the workload closes the write end of `pipe` and checks that the
 * read end yields the LAG buffered records and then end-of-file: "eof ok".
 *
 * Log: "start pid <pid>", then "tick <n> pipe ok big ok fifo ok".
 */
#include "common.h"

#include <signal.h>
#include <sys/stat.h>

#define LAG 5
#define REC_LEN 13 /* "rec %08llu\n" */
#define BIG_LEN 20000

static volatile sig_atomic_t usr1;

static void on_usr1(int sig)
{
	(void)sig;
	usr1 = 1;
}

static void record(char *buf, size_t len, unsigned long long n)
{
	memset(buf, 'a' + (int)(n % 26), len);
	snprintf(buf, len, "rec %08llu", n);
	buf[len - 1] = '\n';
}

/* Reads exactly len bytes without blocking; returns a reason on failure. */
static const char *read_exact(int fd, char *buf, size_t len)
{
	size_t got = 0;
	while (got < len) {
		ssize_t n = read(fd, buf + got, len - got);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && errno == EAGAIN)
			return "missing";
		if (n <= 0)
			return "eof";
		got += (size_t)n;
	}
	return NULL;
}

static const char *check(int rfd, size_t len, unsigned long long n, char *want, char *got)
{
	record(want, len, n);
	const char *why = read_exact(rfd, got, len);
	if (why)
		return why;
	return memcmp(want, got, len) ? "wrong-record" : NULL;
}

int main(int argc, char **argv)
{
	if (argc != 3)
		return 1;
	workload_start(argv[1]);
	signal(SIGUSR1, on_usr1);

	int p[2], big[2];
	if (pipe2(p, O_CLOEXEC) || pipe(big))
		die("pipe");
	if (fcntl(p[0], F_SETFL, O_NONBLOCK) || fcntl(big[0], F_SETFL, O_NONBLOCK))
		die("F_SETFL");
	if (fcntl(big[1], F_SETPIPE_SZ, 256 * 1024) < 0)
		die("F_SETPIPE_SZ");
	int pdup = dup(p[0]);
	if (pdup < 0)
		die("dup");
	unlink(argv[2]);
	if (mkfifo(argv[2], 0600))
		die("mkfifo");
	int fr = open(argv[2], O_RDONLY | O_NONBLOCK | O_CLOEXEC);
	int fw = open(argv[2], O_WRONLY | O_CLOEXEC);
	if (fr < 0 || fw < 0)
		die("open FIFO");

	static char want[BIG_LEN], got[BIG_LEN];
	log_line("start pid %d", getpid());
	for (unsigned long long n = 0;; n++) {
		char rec[BIG_LEN];
		record(rec, REC_LEN, n);
		write_all(p[1], rec, REC_LEN);
		write_all(fw, rec, REC_LEN);
		record(rec, BIG_LEN, n);
		write_all(big[1], rec, BIG_LEN);
		const char *pw = NULL, *bw = NULL, *fwhy = NULL;
		if (n >= LAG) {
			pw = check(n % 2 ? pdup : p[0], REC_LEN, n - LAG, want, got);
			bw = check(big[0], BIG_LEN, n - LAG, want, got);
			fwhy = check(fr, REC_LEN, n - LAG, want, got);
		}
		log_line("tick %llu pipe %s big %s fifo %s", n, pw ? "FAIL" : "ok",
			 bw ? "FAIL" : "ok", fwhy ? "FAIL" : "ok");
		if (pw || bw || fwhy)
			log_line("why pipe %s big %s fifo %s", pw ? pw : "-", bw ? bw : "-",
				 fwhy ? fwhy : "-");
		if (usr1) {
			usr1 = 0;
			close(p[1]);
			const char *why = NULL;
			unsigned long long first = n + 1 >= LAG ? n + 1 - LAG : 0;
			for (unsigned long long k = first; k <= n && !why; k++)
				why = check(p[0], REC_LEN, k, want, got);
			if (!why) {
				ssize_t r = read(p[0], got, 1);
				why = r == 0 ? NULL : "no-eof";
			}
			log_line("eof %s %s", why ? "FAIL" : "ok", why ? why : "-");
			for (;;)
				sleep_ms(1000);
		}
		sleep_ms(10);
	}
}

/*
 * ghost LOG DIR
 *
 * Works on files it deleted while keeping them open:
 *
 *   small - DIR/small (100 records of "rec %08u\n", 1300 bytes) opened
 *           O_RDONLY and dup()ed, then deleted: each tick reads the next record
 *           at the shared offset (even ticks through the fd, odd through the
 *           dup), starting over at the end;
 *   big   - DIR/big, 1 MiB of hole then 8 KiB of pattern (sparse, 1056768
 *           bytes), opened O_RDWR twice (two descriptions of one inode), then
 *           deleted: each tick writes a record through one description into the
 *           pattern area and reads it back through the other.
 *
 * On SIGUSR1 it checks that the big file still has its size, no links, its
 * hole (zeros in the first MiB), and that both big descriptions are one
 * inode: "usr1 deleted ok|FAIL <why>".
 *
 * Log: "start pid <pid>", then "tick <n> small ok big ok".
 */
#include "common.h"

#include <signal.h>
#include <sys/stat.h>

#define REC_LEN 13
#define NREC 100
#define HOLE (1 << 20)
#define DATA 8192

static volatile sig_atomic_t usr1;

static void on_usr1(int sig)
{
	(void)sig;
	usr1 = 1;
}

static char pattern(size_t i)
{
	return (char)('A' + i % 23);
}

static const char *check_big(int fd, int other)
{
	struct stat a, b;
	if (fstat(fd, &a) || fstat(other, &b))
		return "fstat";
	if (a.st_size != HOLE + DATA)
		return "size";
	if (a.st_nlink != 0)
		return "linked";
	if (a.st_ino != b.st_ino || a.st_dev != b.st_dev)
		return "two-inodes";
	static char buf[HOLE];
	if (pread(fd, buf, HOLE, 0) != HOLE)
		return "read-hole";
	for (size_t i = 0; i < HOLE; i++)
		if (buf[i])
			return "hole-not-zero";
	return NULL;
}

int main(int argc, char **argv)
{
	if (argc != 3)
		return 1;
	workload_start(argv[1]);
	signal(SIGUSR1, on_usr1);
	char small_path[512], big_path[512];
	snprintf(small_path, sizeof small_path, "%s/small", argv[2]);
	snprintf(big_path, sizeof big_path, "%s/big", argv[2]);

	int w = open(small_path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0640);
	if (w < 0)
		die("create small");
	for (unsigned i = 0; i < NREC; i++) {
		char rec[REC_LEN + 1];
		snprintf(rec, sizeof rec, "rec %08u\n", i);
		write_all(w, rec, REC_LEN);
	}
	close(w);
	int small = open(small_path, O_RDONLY | O_CLOEXEC);
	int small_dup = dup(small);
	if (small < 0 || small_dup < 0)
		die("open small");

	int big = open(big_path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (big < 0)
		die("create big");
	char data[DATA];
	for (size_t i = 0; i < DATA; i++)
		data[i] = pattern(i);
	if (pwrite(big, data, DATA, HOLE) != DATA)
		die("write big");
	int big2 = open(big_path, O_RDWR | O_CLOEXEC);
	if (big2 < 0)
		die("open big again");
	if (unlink(small_path) || unlink(big_path))
		die("unlink");

	log_line("start pid %d", getpid());
	for (unsigned long long n = 0;; n++) {
		char want[REC_LEN + 1], got[REC_LEN];
		snprintf(want, sizeof want, "rec %08llu\n", n % NREC);
		int fd = n % 2 ? small_dup : small;
		if (n % NREC == 0 && lseek(fd, 0, SEEK_SET) != 0)
			die("lseek");
		const char *s = read(fd, got, REC_LEN) == REC_LEN && !memcmp(got, want, REC_LEN)
					? "ok"
					: "FAIL";

		char rec[REC_LEN + 1];
		snprintf(rec, sizeof rec, "big %08llu\n", n);
		off_t at = HOLE + (off_t)((n * REC_LEN) % (DATA - REC_LEN));
		const char *b = "ok";
		if (pwrite(n % 2 ? big2 : big, rec, REC_LEN, at) != REC_LEN ||
		    pread(n % 2 ? big : big2, got, REC_LEN, at) != REC_LEN ||
		    memcmp(got, rec, REC_LEN))
			b = "FAIL";
		log_line("tick %llu small %s big %s", n, s, b);
		if (usr1) {
			usr1 = 0;
			const char *why = check_big(big, big2);
			log_line("usr1 deleted %s %s", why ? "FAIL" : "ok", why ? why : "-");
		}
		sleep_ms(10);
	}
}

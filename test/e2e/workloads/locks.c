/*
 * locks LOG DIR
 *
 * Holds file locks of the three kinds on files it creates in DIR:
 *   DIR/flock - an exclusive flock(), through an fd and its dup;
 *   DIR/posix - POSIX (fcntl) locks: write on bytes 10..29, read from 100 to EOF;
 *   DIR/ofd   - an open-file-description read lock on bytes 0..4.
 *
 * Log: "start pid <pid>", then "tick <n>".
 */
#include "common.h"

#include <sys/file.h>

static int create(const char *dir, const char *name)
{
	char p[512];
	snprintf(p, sizeof p, "%s/%s", dir, name);
	int fd = open(p, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (fd < 0)
		die("create");
	return fd;
}

static void range(int fd, int cmd, short type, off_t start, off_t len)
{
	struct flock l = { .l_type = type, .l_whence = SEEK_SET, .l_start = start, .l_len = len };
	if (fcntl(fd, cmd, &l))
		die("fcntl lock");
}

int main(int argc, char **argv)
{
	if (argc != 3)
		return 1;
	workload_start(argv[1]);
	int fl = create(argv[2], "flock");
	if (dup(fl) < 0 || flock(fl, LOCK_EX | LOCK_NB))
		die("flock");
	int px = create(argv[2], "posix");
	range(px, F_SETLK, F_WRLCK, 10, 20);
	range(px, F_SETLK, F_RDLCK, 100, 0);
	int ofd = create(argv[2], "ofd");
	range(ofd, F_OFD_SETLK, F_RDLCK, 0, 5);

	log_line("start pid %d", getpid());
	for (unsigned long long n = 0;; n++) {
		log_line("tick %llu", n);
		sleep_ms(10);
	}
}

/* PID 1 of a container started by nsinit. It keeps state in every place a container
 * restore must bring back, and checks all of it on every tick:
 *
 *  - a counter in its memory, one line per tick appended to /data/ticks through a
 *    descriptor kept open (so its offset matters);
 *  - a SysV shared memory segment (key 0x57a515, 3 pages and 77 bytes) that stays
 *    attached; each tick changes one byte of it and of a private model copy, and the
 *    two must stay equal;
 *  - a file on its tmpfs /tmp, written once at start;
 *  - its host name and its PID (1);
 *  - with a second argument N, the ticks file held at every descriptor up to N.
 *
 * Each tick appends "tick N ok" or "tick N BAD <what>". Linked statically: the
 * container's root has no shared libraries. */
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ipc.h>
#include <sys/shm.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define SHM_KEY 0x57a515
#define SHM_SIZE (3 * 4096 + 77)
static const char NOTE[] = "kept on tmpfs across the checkpoint\n";

static int check_note(void) {
	char buf[128] = {0};
	int fd = open("/tmp/note", O_RDONLY);
	if (fd < 0)
		return 0;
	ssize_t n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	return n == (ssize_t)strlen(NOTE) && strcmp(buf, NOTE) == 0;
}

int main(int argc, char **argv) {
	const char *want_host = argc > 1 ? argv[1] : "";
	int null = open("/dev/null", O_RDWR);
	if (null >= 0) {
		dup2(null, 0);
		dup2(null, 1);
		dup2(null, 2);
		if (null > 2)
			close(null);
	}
	int log = open("/data/ticks", O_WRONLY | O_CREAT | O_TRUNC | O_APPEND, 0644);
	if (log < 0)
		return 10;
	int id = shmget(SHM_KEY, SHM_SIZE, IPC_CREAT | 0640);
	if (id < 0)
		return 11;
	unsigned char *shm = shmat(id, NULL, 0);
	if (shm == (void *)-1)
		return 12;
	static unsigned char model[SHM_SIZE];
	for (int i = 0; i < SHM_SIZE; i++)
		model[i] = shm[i] = (unsigned char)(i * 7 + 3);
	int fd = open("/tmp/note", O_WRONLY | O_CREAT | O_TRUNC, 0600);
	if (fd < 0 || write(fd, NOTE, strlen(NOTE)) != (ssize_t)strlen(NOTE))
		return 13;
	close(fd);
	/* Optionally, hold the ticks file at every number up to argv[2] too: a tree that
	 * uses many descriptor numbers. Each tick checks they all still name that file. */
	int hold = argc > 2 ? atoi(argv[2]) : -1;
	struct stat ticks_st;
	if (fstat(log, &ticks_st) < 0)
		return 15;
	for (int h = log + 1; h <= hold; h++)
		if (dup2(log, h) != h)
			return 16;

	for (unsigned long n = 1;; n++) {
		size_t at = (n * 4099) % SHM_SIZE;
		model[at] = shm[at] = (unsigned char)(model[at] + n);
		char host[65] = {0};
		gethostname(host, sizeof(host) - 1);
		const char *bad = NULL;
		if (getpid() != 1)
			bad = "pid";
		else if (memcmp(shm, model, SHM_SIZE) != 0)
			bad = "shm";
		else if (!check_note())
			bad = "tmpfs";
		else if (strcmp(host, want_host) != 0)
			bad = "hostname";
		for (int h = log + 1; !bad && h <= hold; h++) {
			struct stat st;
			if (fstat(h, &st) < 0 || st.st_ino != ticks_st.st_ino || st.st_dev != ticks_st.st_dev)
				bad = "held descriptor";
		}
		char line[128];
		int len = snprintf(line, sizeof(line), "tick %lu %s%s\n", n, bad ? "BAD " : "ok", bad ? bad : "");
		if (write(log, line, len) != len)
			return 14;
		struct timespec ts = {0, 50 * 1000 * 1000};
		nanosleep(&ts, NULL);
	}
}

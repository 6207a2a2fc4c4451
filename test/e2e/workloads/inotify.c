/*
 * inotify LOG DIR
 *
 * Holds one inotify instance (O_NONBLOCK) with three watches whose
 * descriptors have a gap, as after an application removed one:
 *   wd 1 - DIR/watched   IN_CREATE | IN_DELETE
 *   wd 2 - DIR/file      IN_MODIFY
 *   (wd 3 was DIR/gone: added, removed, its IN_IGNORED read off)
 *   wd 4 - DIR/watched2  IN_CREATE | IN_DELETE | IN_ONLYDIR
 *
 * Each SIGUSR1 runs one round r: create and delete DIR/watched/r<r>, write to
 * DIR/file, create and delete DIR/watched2/s<r>, then read the events and
 * compare them, in order, with exactly the five expected (wd, mask, name):
 * "round <r> ok", or "round <r> FAIL <what was read>". Between rounds nothing
 * is queued, so a dump never sees unread events.
 *
 * Log: "start pid <pid>", "tick <n>", "round <r> ok".
 */
#include "common.h"

#include <poll.h>
#include <signal.h>
#include <sys/inotify.h>
#include <sys/stat.h>

static volatile sig_atomic_t usr1;

static void on_usr1(int sig)
{
	(void)sig;
	usr1 = 1;
}

static int watch(int in, const char *dir, const char *name, uint32_t mask)
{
	char p[512];
	snprintf(p, sizeof p, "%s/%s", dir, name);
	int wd = inotify_add_watch(in, p, mask);
	if (wd < 0)
		die("inotify_add_watch");
	return wd;
}

static void touch_and_remove(const char *dir, const char *sub, const char *name)
{
	char p[512];
	snprintf(p, sizeof p, "%s/%s/%s", dir, sub, name);
	int fd = open(p, O_WRONLY | O_CREAT | O_CLOEXEC, 0600);
	if (fd < 0)
		die("create");
	close(fd);
	if (unlink(p))
		die("unlink");
}

/* Reads events for up to 200 ms, appending "wd:mask:name" words to out. */
static int read_events(int in, char *out, size_t len)
{
	char buf[4096] __attribute__((aligned(__alignof__(struct inotify_event))));
	int count = 0;
	size_t used = 0;
	out[0] = 0;
	for (;;) {
		struct pollfd p = { .fd = in, .events = POLLIN };
		if (poll(&p, 1, count < 5 ? 200 : 20) <= 0)
			return count;
		ssize_t n = read(in, buf, sizeof buf);
		if (n <= 0)
			return count;
		for (char *c = buf; c < buf + n;) {
			struct inotify_event *e = (struct inotify_event *)c;
			int k = snprintf(out + used, len - used, "%s%d:%x:%s", used ? "," : "", e->wd,
					 e->mask, e->len ? e->name : "");
			if (k > 0 && (size_t)k < len - used)
				used += (size_t)k;
			count++;
			c += sizeof *e + e->len;
		}
	}
}

int main(int argc, char **argv)
{
	if (argc != 3)
		return 1;
	workload_start(argv[1]);
	signal(SIGUSR1, on_usr1);
	const char *dir = argv[2];
	char p[512];
	const char *subs[] = { "watched", "gone", "watched2" };
	for (int i = 0; i < 3; i++) {
		snprintf(p, sizeof p, "%s/%s", dir, subs[i]);
		if (mkdir(p, 0700) && errno != EEXIST)
			die("mkdir");
	}
	snprintf(p, sizeof p, "%s/file", dir);
	int file = open(p, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (file < 0)
		die("create file");

	int in = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
	if (in < 0)
		die("inotify_init1");
	int w1 = watch(in, dir, "watched", IN_CREATE | IN_DELETE);
	int w2 = watch(in, dir, "file", IN_MODIFY);
	int w3 = watch(in, dir, "gone", IN_CREATE);
	if (inotify_rm_watch(in, w3))
		die("inotify_rm_watch");
	char scratch[512];
	read_events(in, scratch, sizeof scratch); /* the IN_IGNORED of wd 3 */
	int w4 = watch(in, dir, "watched2", IN_CREATE | IN_DELETE | IN_ONLYDIR);
	if (w1 != 1 || w2 != 2 || w4 != 4) {
		errno = EINVAL;
		die("unexpected watch descriptors");
	}

	log_line("start pid %d", getpid());
	for (unsigned long long n = 0, r = 0;; n++) {
		log_line("tick %llu", n);
		if (usr1) {
			usr1 = 0;
			r++;
			char name1[32], name2[32], want[256], got[1024];
			snprintf(name1, sizeof name1, "r%llu", r);
			snprintf(name2, sizeof name2, "s%llu", r);
			touch_and_remove(dir, "watched", name1);
			write_all(file, "x", 1);
			touch_and_remove(dir, "watched2", name2);
			snprintf(want, sizeof want, "1:%x:%s,1:%x:%s,2:%x:,4:%x:%s,4:%x:%s", IN_CREATE,
				 name1, IN_DELETE, name1, IN_MODIFY, IN_CREATE, name2, IN_DELETE, name2);
			read_events(in, got, sizeof got);
			if (strcmp(got, want))
				log_line("round %llu FAIL got %s want %s", r, got, want);
			else
				log_line("round %llu ok", r);
		}
		sleep_ms(10);
	}
}

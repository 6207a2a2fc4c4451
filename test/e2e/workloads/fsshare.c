/*
 * fsshare LOG fs|files: processes sharing cwd, root and umask (clone with CLONE_FS), or
 * their descriptor table (CLONE_FILES), as some servers' workers are made. The parent
 * makes directories "a" and "b", moves into "a", then clones "sharer" with the flag
 * and forks "other" the ordinary way. On SIGUSR1, sharer moves to "../b", sets umask
 * 027 and opens "late" at descriptor 100: its parent, sharing its fs state or its
 * table, sees the change; other does not. Every process logs, every ~20 ms,
 *   "tick <name> <counter> cwd <last path component> umask <octal> fd100 <0|1>".
 */
#include "common.h"
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>

static volatile sig_atomic_t move_now;

static void on_usr1(int sig)
{
	(void)sig;
	move_now = 1;
}

static void tick_forever(const char *name)
{
	unsigned long long n = 0;
	for (;;) {
		if (move_now) {
			move_now = 0;
			if (chdir("../b") < 0)
				die("chdir ../b");
			umask(027);
			int fd = open("late", O_CREAT | O_WRONLY | O_CLOEXEC, 0644);
			if (fd < 0 || dup2(fd, 100) != 100)
				die("late at 100");
			close(fd);
		}
		char cwd[4096];
		if (!getcwd(cwd, sizeof cwd))
			die("getcwd");
		const char *base = strrchr(cwd, '/');
		mode_t m = umask(0);
		umask(m);
		n++;
		log_line("tick %s %llu cwd %s umask %03o fd100 %d", name, n, base ? base + 1 : cwd, (unsigned)m,
			 fcntl(100, F_GETFD) >= 0);
		sleep_ms(20);
	}
}

int main(int argc, char **argv)
{
	if (argc != 3)
		_exit(1);
	unsigned long flag = strcmp(argv[2], "files") == 0 ? CLONE_FILES : CLONE_FS;
	workload_start(argv[1]);
	log_line("start pid %d", getpid());
	umask(022);
	if ((mkdir("a", 0755) < 0 && errno != EEXIST) || (mkdir("b", 0755) < 0 && errno != EEXIST))
		die("mkdir");
	if (chdir("a") < 0)
		die("chdir a");
	long c = syscall(SYS_clone, flag | SIGCHLD, 0, 0, 0, 0);
	if (c < 0)
		die("clone");
	if (c == 0) {
		signal(SIGUSR1, on_usr1);
		tick_forever("sharer");
	}
	log_line("sharer %ld", c);
	pid_t o = fork();
	if (o < 0)
		die("fork");
	if (o == 0)
		tick_forever("other");
	log_line("other %d", o);
	tick_forever("parent");
	return 0;
}

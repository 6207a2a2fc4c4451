/*
 * tree LOG: a process tree. The root forks three children; child 1 leads its own
 * process group, child 2 joins that group (as a shell puts a pipeline in one group) and
 * forks a grandchild; a fourth child exits at once with status 7
 * and stays a zombie until the root gets SIGUSR1, when the root reaps it and logs
 * "reaped <pid> status <code>". Every live process logs, every ~20 ms,
 *   "tick <name> <counter> pid <pid> ppid <ppid> pgid <pgid> sid <sid>"
 * so that a restore proves each one continued from its own counter with the same
 * pid, parent, group and session.
 */
#include "common.h"
#include <signal.h>
#include <sys/wait.h>

static volatile sig_atomic_t reap_now;

static void on_usr1(int sig)
{
	(void)sig;
	reap_now = 1;
}

static void tick_forever(const char *name, pid_t zombie)
{
	unsigned long long n = 0;
	for (;;) {
		n++;
		log_line("tick %s %llu pid %d ppid %d pgid %d sid %d", name, n, getpid(), getppid(), getpgid(0),
			 getsid(0));
		if (zombie > 0 && reap_now) {
			int status;
			pid_t got = waitpid(zombie, &status, WNOHANG);
			if (got == zombie)
				log_line("reaped %d status %d", got, WIFEXITED(status) ? WEXITSTATUS(status) : -1);
			else
				log_line("FAIL reaping zombie %d: %d", zombie, got);
			zombie = 0;
		}
		sleep_ms(20);
	}
}

int main(int argc, char **argv)
{
	if (argc != 2)
		_exit(1);
	workload_start(argv[1]);
	signal(SIGUSR1, on_usr1);
	log_line("start pid %d", getpid());
	pid_t leader = 0;
	for (int i = 0; i < 3; i++) {
		pid_t c = fork();
		if (c < 0)
			die("fork");
		if (c == 0) {
			char name[16];
			snprintf(name, sizeof name, "child%d", i);
			if (i == 1 && setpgid(0, 0) < 0)
				die("setpgid");
			if (i == 2 && setpgid(0, leader) < 0)
				die("setpgid to child1's group");
			if (i == 2) {
				pid_t g = fork();
				if (g < 0)
					die("fork");
				if (g == 0)
					tick_forever("grandchild", 0);
			}
			tick_forever(name, 0);
		}
		if (i == 1) {
			/* The group exists before child 2 is forked to join it. */
			leader = c;
			if (setpgid(c, c) < 0 && errno != EACCES)
				die("setpgid child1");
		}
	}
	pid_t z = fork();
	if (z < 0)
		die("fork");
	if (z == 0)
		_exit(7);
	log_line("zombie %d", z);
	tick_forever("root", z);
	return 0;
}

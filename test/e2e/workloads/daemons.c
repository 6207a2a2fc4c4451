/*
 * daemons LOG: processes whose session or process-group leader is gone, as daemons
 * leave them. The root makes itself a child subreaper, then three times forks an
 * intermediate that exits once its work is done, so its child is adopted by the root:
 *   - "daemon": its parent called setsid() and exited: its session and group lead by
 *     a PID that no longer exists;
 *   - "grouped": its parent made a new process group in the root's session and exited;
 *   - "deep": its grandparent called setsid(), its parent made a group in that session,
 *     and both exited: session and group are both lost leaders.
 * The root reaps every intermediate and logs "gone <pid>" for each, then "ready".
 * Every live process logs, every ~20 ms,
 *   "tick <name> <counter> pid <pid> ppid <ppid> pgid <pgid> sid <sid>".
 */
#include "common.h"
#include <sys/prctl.h>
#include <sys/wait.h>

static void tick_forever(const char *name)
{
	unsigned long long n = 0;
	for (;;) {
		n++;
		log_line("tick %s %llu pid %d ppid %d pgid %d sid %d", name, n, getpid(), getppid(), getpgid(0),
			 getsid(0));
		sleep_ms(20);
	}
}

/* Forks, through intermediates that exit, a process that ticks as `name`: one that
 * starts a session (or a group), and with depth 2 a second that starts a group in it. */
/* Forks a child that ticks forever under `name`, and exits: the child is orphaned. */
__attribute__((noreturn)) static void fork_ticker_and_exit(const char *name)
{
	pid_t d = fork();
	if (d < 0)
		die("fork");
	if (d == 0)
		tick_forever(name);
	_exit(0);
}

static void lost_leader(const char *name, int new_session, int depth)
{
	pid_t c = fork();
	if (c < 0)
		die("fork");
	if (c > 0) {
		int status;
		if (waitpid(c, &status, 0) != c || !WIFEXITED(status) || WEXITSTATUS(status) != 0)
			die("intermediate");
		log_line("gone %d", c);
		return;
	}
	/* The intermediate. */
	if (new_session ? setsid() < 0 : setpgid(0, 0) < 0)
		die("leading");
	if (depth > 1) {
		/* One more level: a group inside the new session, gone too. */
		pid_t g = fork();
		if (g < 0)
			die("fork");
		if (g == 0) {
			if (setpgid(0, 0) < 0)
				die("setpgid");
			fork_ticker_and_exit(name);
		}
		int status;
		if (waitpid(g, &status, 0) != g || !WIFEXITED(status) || WEXITSTATUS(status) != 0)
			_exit(1);
		log_line("gone %d", g);
		_exit(0);
	}
	fork_ticker_and_exit(name);
}

int main(int argc, char **argv)
{
	if (argc != 2)
		_exit(1);
	workload_start(argv[1]);
	log_line("start pid %d", getpid());
	if (prctl(PR_SET_CHILD_SUBREAPER, 1) < 0)
		die("PR_SET_CHILD_SUBREAPER");
	lost_leader("daemon", 1, 1);
	lost_leader("grouped", 0, 1);
	lost_leader("deep", 1, 2);
	log_line("ready");
	tick_forever("root");
	return 0;
}

/*
 * stoptree LOG: a parent and the one child it watches, for job-control stops (the test
 * stops the child with SIGSTOP and later continues it with SIGCONT). Both count on their
 * own, every ~10 ms, and log
 *   "tick <name> <counter> pid <pid> ppid <ppid>"      (name: parent or child)
 * On each tick the parent also asks waitpid(child, WNOHANG | WUNTRACED | WCONTINUED)
 * about its child and logs what the kernel reports:
 *   "child <pid> stopped <signal>"  or  "child <pid> continued";
 * a child that exited or was killed, or a waitpid error, is logged as a FAIL line and
 * the parent stops asking.
 *
 * Log: "start pid <pid>", "child <pid>", then the ticks and the reports.
 */
#include "common.h"
#include <signal.h>
#include <sys/wait.h>

static void count_forever(const char *name, pid_t child)
{
	unsigned long long n = 0;
	for (;;) {
		n++;
		log_line("tick %s %llu pid %d ppid %d", name, n, getpid(), getppid());
		if (child > 0) {
			int status;
			pid_t got = waitpid(child, &status, WNOHANG | WUNTRACED | WCONTINUED);
			if (got == child && WIFSTOPPED(status)) {
				log_line("child %d stopped %d", child, WSTOPSIG(status));
			} else if (got == child && WIFCONTINUED(status)) {
				log_line("child %d continued", child);
			} else if (got == child) {
				log_line("FAIL child %d ended with wait status %#x", child, status);
				child = 0;
			} else if (got < 0) {
				log_line("FAIL waitpid(%d): %s", child, strerror(errno));
				child = 0;
			}
		}
		sleep_ms(10);
	}
}

int main(int argc, char **argv)
{
	if (argc != 2)
		_exit(1);
	workload_start(argv[1]);
	log_line("start pid %d", getpid());
	pid_t c = fork();
	if (c < 0)
		die("fork");
	if (c == 0)
		count_forever("child", 0);
	log_line("child %d", c);
	count_forever("parent", c);
	return 0;
}

/*
 * signals LOG
 *
 * Signal state that a restore must carry over:
 * - SIGUSR1: SA_SIGINFO|SA_ONSTACK handler on a sigaltstack; it checks that
 *   it runs on the alternate stack and that siginfo says SIGUSR1.
 * - SIGUSR2: SA_SIGINFO handler, blocked from the start; the test sends it
 *   before the dump so that it is pending at dump time. When LOG.unblock
 *   appears, the workload unblocks it; the handler records si_pid.
 * - SIGALRM: counted by a plain handler, driven by a 20 ms ITIMER_REAL.
 * - SIGHUP: ignored (SIG_IGN): sending it must not kill the process.
 * - umask 027 and RLIMIT_NOFILE soft limit lowered to 200.
 *
 * Log:
 *   "start pid <pid>"
 *   "tick <n> alarms <a> usr1 <c> usr2 <d> pending_usr2 <0|1> blocked_usr2 <0|1>
 *        umask <ooo> nofile_soft <s> nofile_hard <h> altstack <0|1>"   (one line)
 *   "usr1 <count> onstack <0|1> siginfo <0|1>"  when a SIGUSR1 was handled
 *   "unblocked"                                  when LOG.unblock was seen
 *   "usr2 <count> from <si_pid>"                 when a SIGUSR2 was handled
 */
#include "common.h"

#include <signal.h>
#include <stdint.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/time.h>

#define NOFILE_SOFT 200
#define ALT_SIZE (64 * 1024)

static char *alt_stack;
static volatile sig_atomic_t alarms;
static volatile sig_atomic_t usr1_count, usr1_onstack_ok = 1, usr1_siginfo_ok = 1;
static volatile sig_atomic_t usr2_count, usr2_from;

static void on_usr1(int sig, siginfo_t *si, void *uc)
{
	(void)uc;
	char here;
	uintptr_t p = (uintptr_t)&here, lo = (uintptr_t)alt_stack;
	stack_t cur;
	int on = p >= lo && p < lo + ALT_SIZE;
	if (sigaltstack(NULL, &cur) || !(cur.ss_flags & SS_ONSTACK))
		on = 0;
	if (!on)
		usr1_onstack_ok = 0;
	if (sig != SIGUSR1 || si->si_signo != SIGUSR1)
		usr1_siginfo_ok = 0;
	usr1_count++;
}

static void on_usr2(int sig, siginfo_t *si, void *uc)
{
	(void)sig;
	(void)uc;
	usr2_from = si->si_pid;
	usr2_count++;
}

static void on_alrm(int sig)
{
	(void)sig;
	alarms++;
}

static void install(int sig, struct sigaction *sa)
{
	sigemptyset(&sa->sa_mask);
	if (sigaction(sig, sa, NULL))
		die("sigaction");
}

int main(int argc, char **argv)
{
	if (argc != 2)
		return 1;
	workload_start(argv[1]);

	char unblock_path[4096];
	snprintf(unblock_path, sizeof unblock_path, "%s.unblock", argv[1]);

	umask(027);
	struct rlimit rl;
	if (getrlimit(RLIMIT_NOFILE, &rl))
		die("getrlimit");
	rl.rlim_cur = NOFILE_SOFT;
	if (setrlimit(RLIMIT_NOFILE, &rl))
		die("setrlimit");

	alt_stack = malloc(ALT_SIZE);
	if (!alt_stack)
		die("malloc");
	stack_t ss = { .ss_sp = alt_stack, .ss_size = ALT_SIZE, .ss_flags = 0 };
	if (sigaltstack(&ss, NULL))
		die("sigaltstack");

	struct sigaction sa = { 0 };
	sa.sa_sigaction = on_usr1;
	sa.sa_flags = SA_SIGINFO | SA_ONSTACK | SA_RESTART;
	install(SIGUSR1, &sa);

	sa = (struct sigaction){ 0 };
	sa.sa_sigaction = on_usr2;
	sa.sa_flags = SA_SIGINFO | SA_RESTART;
	install(SIGUSR2, &sa);

	sa = (struct sigaction){ 0 };
	sa.sa_handler = on_alrm;
	sa.sa_flags = SA_RESTART;
	install(SIGALRM, &sa);

	sa = (struct sigaction){ 0 };
	sa.sa_handler = SIG_IGN;
	install(SIGHUP, &sa);

	sigset_t usr2;
	sigemptyset(&usr2);
	sigaddset(&usr2, SIGUSR2);
	if (sigprocmask(SIG_BLOCK, &usr2, NULL))
		die("sigprocmask");

	struct itimerval it = { { 0, 20000 }, { 0, 20000 } };
	if (setitimer(ITIMER_REAL, &it, NULL))
		die("setitimer");

	log_line("start pid %d", getpid());
	int unblocked = 0;
	sig_atomic_t seen_usr1 = 0, seen_usr2 = 0;
	for (unsigned long long n = 1;; n++) {
		if (usr1_count != seen_usr1) {
			seen_usr1 = usr1_count;
			log_line("usr1 %d onstack %d siginfo %d", (int)seen_usr1,
				 (int)usr1_onstack_ok, (int)usr1_siginfo_ok);
		}
		if (!unblocked && access(unblock_path, F_OK) == 0) {
			unblocked = 1;
			log_line("unblocked");
			if (sigprocmask(SIG_UNBLOCK, &usr2, NULL))
				die("sigprocmask");
		}
		if (usr2_count != seen_usr2) {
			seen_usr2 = usr2_count;
			log_line("usr2 %d from %d", (int)seen_usr2, (int)usr2_from);
		}

		sigset_t pending, blocked;
		if (sigpending(&pending) || sigprocmask(SIG_BLOCK, NULL, &blocked))
			die("sigpending");
		mode_t mask = umask(0);
		umask(mask);
		if (getrlimit(RLIMIT_NOFILE, &rl))
			die("getrlimit");
		stack_t cur;
		if (sigaltstack(NULL, &cur))
			die("sigaltstack");
		int alt_ok = cur.ss_sp == alt_stack && cur.ss_size == ALT_SIZE &&
			     !(cur.ss_flags & SS_DISABLE);
		log_line("tick %llu alarms %d usr1 %d usr2 %d pending_usr2 %d blocked_usr2 %d "
			 "umask %03o nofile_soft %llu nofile_hard %llu altstack %d",
			 n, (int)alarms, (int)usr1_count, (int)usr2_count,
			 sigismember(&pending, SIGUSR2), sigismember(&blocked, SIGUSR2),
			 (unsigned)mask, (unsigned long long)rl.rlim_cur,
			 (unsigned long long)rl.rlim_max, alt_ok);
		sleep_ms(10);
	}
}

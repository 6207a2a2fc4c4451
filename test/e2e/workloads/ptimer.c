/*
 * ptimer LOG: two POSIX timers. A fires every 10 ms with a real-time signal whose
 * handler counts; B is a one-shot 60 s timer without notification. Every ~20 ms the
 * process logs
 *   "tick <n> fired <count> left_ms <B's remaining time> ids <A> <B>"
 * so a restore proves both timers are back with their ids, A still fires, and B kept
 * counting down from where it was (neither reset nor lost).
 */
#include "common.h"
#include <signal.h>

static volatile sig_atomic_t fired;

static void on_tick(int sig)
{
	(void)sig;
	fired++;
}

int main(int argc, char **argv)
{
	if (argc != 2)
		_exit(1);
	workload_start(argv[1]);
	signal(SIGRTMIN + 1, on_tick);
	struct sigevent ev = { .sigev_notify = SIGEV_SIGNAL, .sigev_signo = SIGRTMIN + 1 };
	timer_t a, b;
	if (timer_create(CLOCK_MONOTONIC, &ev, &a) < 0)
		die("timer_create A");
	struct sigevent none = { .sigev_notify = SIGEV_NONE };
	if (timer_create(CLOCK_MONOTONIC, &none, &b) < 0)
		die("timer_create B");
	struct itimerspec every = { { 0, 10000000 }, { 0, 10000000 } };
	struct itimerspec once = { { 0, 0 }, { 60, 0 } };
	if (timer_settime(a, 0, &every, NULL) < 0 || timer_settime(b, 0, &once, NULL) < 0)
		die("timer_settime");
	log_line("start pid %d", getpid());
	for (unsigned long long n = 1;; n++) {
		struct itimerspec left;
		if (timer_gettime(b, &left) < 0)
			die("timer_gettime");
		log_line("tick %llu fired %d left_ms %lld ids %ld %ld", n, (int)fired,
			 (long long)left.it_value.tv_sec * 1000 + left.it_value.tv_nsec / 1000000, (long)a, (long)b);
		sleep_ms(20);
	}
}

/*
 * churn LOG: a process that never stops making threads and processes, to prove a dump
 * freezes it consistently. Two spawner threads each start short-lived threads in a
 * loop (a started thread bumps a counter and exits); the main thread forks children
 * that each fork a grandchild and exit at once (the grandchild exits too), reaping
 * whatever it can. Every ~20 ms the main thread logs
 *   "tick <counter> threads <started> forks <forked>"
 * with both totals growing. Exits 3 on any failure it cannot retry.
 */
#include "common.h"
#include <pthread.h>
#include <stdatomic.h>
#include <sys/wait.h>

static atomic_ulong started;

static void *brief(void *arg)
{
	(void)arg;
	atomic_fetch_add(&started, 1);
	return NULL;
}

static void *spawner(void *arg)
{
	(void)arg;
	for (;;) {
		pthread_t t;
		if (pthread_create(&t, NULL, brief, NULL) == 0)
			pthread_join(t, NULL);
	}
	return NULL;
}

int main(int argc, char **argv)
{
	if (argc != 2)
		_exit(1);
	workload_start(argv[1]);
	log_line("start pid %d", getpid());
	pthread_t s[2];
	for (int i = 0; i < 2; i++)
		if (pthread_create(&s[i], NULL, spawner, NULL) != 0)
			die("pthread_create");
	unsigned long long n = 0, forked = 0;
	struct timespec last;
	clock_gettime(CLOCK_MONOTONIC, &last);
	for (;;) {
		pid_t c = fork();
		if (c == 0) {
			if (fork() == 0)
				_exit(0);
			_exit(0);
		}
		if (c > 0)
			forked++;
		while (waitpid(-1, NULL, WNOHANG) > 0)
			;
		struct timespec now;
		clock_gettime(CLOCK_MONOTONIC, &now);
		if ((now.tv_sec - last.tv_sec) * 1000000000L + (now.tv_nsec - last.tv_nsec) >= 20000000L) {
			last = now;
			log_line("tick %llu threads %lu forks %llu", ++n, atomic_load(&started), forked);
		}
	}
	return 0;
}

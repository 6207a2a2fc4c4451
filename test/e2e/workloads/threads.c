/*
 * threads LOG NTHREADS: NTHREADS threads (the main one included), each with its own
 * thread-local counter and name. Every ~20 ms each thread logs
 *   "tick t<i> <counter> tid <tid> name <name>"
 * so that a restore proves every thread continued from its own value, kept its TID
 * (the kernel's gettid, not a cached one) and its name.
 */
#include "common.h"
#include <pthread.h>
#include <sys/prctl.h>
#include <sys/syscall.h>

static __thread unsigned long long counter;
static pthread_mutex_t log_lock = PTHREAD_MUTEX_INITIALIZER;

static void *run(void *arg)
{
	long id = (long)arg;
	char name[16];
	snprintf(name, sizeof name, "worker-%ld", id);
	prctl(PR_SET_NAME, name);
	for (;;) {
		counter++;
		char now[16] = { 0 };
		prctl(PR_GET_NAME, now);
		long tid = syscall(SYS_gettid);
		pthread_mutex_lock(&log_lock);
		log_line("tick t%ld %llu tid %ld name %s", id, counter, tid, now);
		pthread_mutex_unlock(&log_lock);
		sleep_ms(20 + id);
	}
	return NULL;
}

int main(int argc, char **argv)
{
	if (argc != 3)
		_exit(1);
	workload_start(argv[1]);
	long n = (long)parse_u64(argv[2], "NTHREADS");
	log_line("start pid %d", getpid());
	for (long i = 1; i < n; i++) {
		pthread_t t;
		if (pthread_create(&t, NULL, run, (void *)i))
			die("pthread_create");
	}
	run((void *)0);
	return 0;
}

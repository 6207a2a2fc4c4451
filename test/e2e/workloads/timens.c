/*
 * timens LOG
 *
 * Logs every ~10 ms "tick <n> <CLOCK_MONOTONIC ns> <CLOCK_BOOTTIME ns>", as seen in
 * its time namespace (the test starts it in one with offsets), and
 * "clock FAIL ..." if either clock went backwards.
 *
 * Log: "start pid <pid>", then ticks.
 */
#include "common.h"

static long long now(clockid_t c)
{
	struct timespec ts;
	if (clock_gettime(c, &ts) < 0)
		die("clock_gettime");
	return ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

int main(int argc, char **argv)
{
	if (argc != 2)
		return 1;
	workload_start(argv[1]);
	log_line("start pid %d", getpid());
	long long pm = 0, pb = 0;
	for (unsigned long n = 1;; n++) {
		long long m = now(CLOCK_MONOTONIC), b = now(CLOCK_BOOTTIME);
		if (m < pm || b < pb)
			log_line("clock FAIL %lld %lld %lld %lld", pm, m, pb, b);
		pm = m;
		pb = b;
		log_line("tick %lu %lld %lld", n, m, b);
		sleep_ms(10);
	}
}

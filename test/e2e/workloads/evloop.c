/*
 * evloop LOG
 *
 * An event loop on one epoll instance, the way servers are written:
 *
 *   tick    - a periodic CLOCK_MONOTONIC timerfd (10 ms) registered with data 1;
 *             each wakeup is a tick;
 *   counter - an O_NONBLOCK eventfd registered with data 2 (edge-triggered):
 *             every tick n adds n to it, every 5th tick the loop reads it back
 *             and checks the sum of the adds since the last read, so at any
 *             instant the counter holds a partial sum that must survive;
 *   usr1    - a signalfd for SIGUSR1 (blocked) registered with data 3: each
 *             signal is read from it and logged;
 *   once    - a one-shot CLOCK_MONOTONIC timerfd armed for 1.5 s at start, data 4;
 *   abs     - a one-shot CLOCK_REALTIME timerfd armed with TFD_TIMER_ABSTIME for
 *             start + 1.5 s, data 5.
 *
 * A wakeup with data the loop never registered, a counter that does not hold
 * exactly the expected sum, or an expected event that is missing logs FAIL.
 *
 * Log: "start pid <pid>", "tick <n> counter ok|FAIL|-", "usr1 <count>",
 * "once fired after <ms> ms", "abs fired late <ms> ms".
 */
#include "common.h"

#include <signal.h>
#include <stdint.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/signalfd.h>
#include <sys/timerfd.h>

static long long now_ms(clockid_t c)
{
	struct timespec t;
	clock_gettime(c, &t);
	return (long long)t.tv_sec * 1000 + t.tv_nsec / 1000000;
}

static void add(int ep, int fd, uint32_t events, uint64_t data)
{
	struct epoll_event ev = { .events = events, .data.u64 = data };
	if (epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev))
		die("epoll_ctl");
}

static uint64_t read_u64(int fd)
{
	uint64_t v = 0;
	if (read(fd, &v, sizeof v) != sizeof v)
		return 0;
	return v;
}

int main(int argc, char **argv)
{
	if (argc != 2)
		return 1;
	workload_start(argv[1]);
	sigset_t usr1;
	sigemptyset(&usr1);
	sigaddset(&usr1, SIGUSR1);
	if (sigprocmask(SIG_BLOCK, &usr1, NULL))
		die("sigprocmask");

	int ep = epoll_create1(EPOLL_CLOEXEC);
	int tick = timerfd_create(CLOCK_MONOTONIC, TFD_CLOEXEC | TFD_NONBLOCK);
	int counter = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	int sig = signalfd(-1, &usr1, SFD_CLOEXEC | SFD_NONBLOCK);
	int once = timerfd_create(CLOCK_MONOTONIC, TFD_CLOEXEC);
	int abs = timerfd_create(CLOCK_REALTIME, TFD_CLOEXEC);
	if (ep < 0 || tick < 0 || counter < 0 || sig < 0 || once < 0 || abs < 0)
		die("create");
	struct itimerspec period = { { 0, 10000000 }, { 0, 10000000 } };
	struct itimerspec later = { { 0, 0 }, { 1, 500000000 } };
	long long start_mono = now_ms(CLOCK_MONOTONIC);
	struct timespec rt;
	clock_gettime(CLOCK_REALTIME, &rt);
	long long abs_at = (long long)rt.tv_sec * 1000 + rt.tv_nsec / 1000000 + 1500;
	struct itimerspec at = { { 0, 0 }, { abs_at / 1000, (abs_at % 1000) * 1000000 } };
	if (timerfd_settime(tick, 0, &period, NULL) || timerfd_settime(once, 0, &later, NULL) ||
	    timerfd_settime(abs, TFD_TIMER_ABSTIME, &at, NULL))
		die("timerfd_settime");
	add(ep, tick, EPOLLIN, 1);
	add(ep, counter, EPOLLIN | EPOLLET, 2);
	add(ep, sig, EPOLLIN, 3);
	add(ep, once, EPOLLIN, 4);
	add(ep, abs, EPOLLIN, 5);

	log_line("start pid %d", getpid());
	unsigned long long n = 0, expect = 0, usr1s = 0;
	int want = 0, have = 0;
	uint64_t got = 0;
	for (;;) {
		struct epoll_event evs[8];
		int k = epoll_wait(ep, evs, 8, 2000);
		if (k < 0 && errno == EINTR)
			continue;
		if (k < 0)
			die("epoll_wait");
		if (k == 0) {
			log_line("idle FAIL no event in 2 s");
			continue;
		}
		int ticked = 0;
		for (int i = 0; i < k; i++) {
			switch (evs[i].data.u64) {
			case 1:
				ticked = read_u64(tick) > 0;
				break;
			case 2:
				/* Edge-triggered: each add wakes the loop once; the
				 * counter is only read when a check is due. */
				if (want && !have) {
					got = read_u64(counter);
					have = 1;
				}
				break;
			case 3: {
				struct signalfd_siginfo si;
				while (read(sig, &si, sizeof si) == sizeof si)
					log_line("usr1 %llu signo %u", ++usr1s, si.ssi_signo);
				break;
			}
			case 4:
				read_u64(once);
				log_line("once fired after %lld ms",
					 now_ms(CLOCK_MONOTONIC) - start_mono);
				break;
			case 5:
				read_u64(abs);
				clock_gettime(CLOCK_REALTIME, &rt);
				log_line("abs fired late %lld ms",
					 (long long)rt.tv_sec * 1000 + rt.tv_nsec / 1000000 - abs_at);
				break;
			default:
				log_line("event FAIL unknown data %llu",
					 (unsigned long long)evs[i].data.u64);
			}
		}
		if (!ticked)
			continue;
		const char *c = "-";
		if (want) {
			c = have && got == expect ? "ok" : "FAIL";
			if (!have)
				log_line("counter FAIL no wakeup for %llu", expect);
			else if (got != expect)
				log_line("counter FAIL got %llu want %llu", (unsigned long long)got, expect);
			want = have = 0;
			expect = 0;
		}
		log_line("tick %llu counter %s", n, c);
		n++;
		uint64_t v = n;
		if (write(counter, &v, sizeof v) != sizeof v)
			die("eventfd write");
		expect += n;
		/* Every 5th tick the sum is checked at the next tick. */
		want = n % 5 == 0;
	}
}

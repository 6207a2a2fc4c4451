/*
 * counter LOG MEM_MB SEED
 *
 * Fills three regions with xorshift64 sequences derived from SEED:
 *   "mmap":  MEM_MB MiB from malloc (glibc serves it with mmap),
 *   "heap":  96 KiB from malloc (below the mmap threshold: the brk heap),
 *   "stack": 32 KiB array in main's frame.
 * Then every ~10 ms increments a counter and logs "tick <n>"; each tick also
 * reads CLOCK_MONOTONIC through glibc (served by the vDSO, so a vDSO not
 * where the process expects it crashes it) and logs "clock FAIL <prev> <now>"
 * if the clock went backwards. On SIGUSR1
 * (the handler sets a flag; the main loop acts) it re-derives the sequences,
 * compares every 8-byte word and logs
 *   "verify ok <n> <checksum> rseq <state>"   or   "verify FAIL <region> <offset>"
 * where checksum is an FNV-1a over all regions as they are, and rseq is what
 * a second registration of glibc's rseq area answers: "busy" (the kernel has
 * it registered, as it must), "free" (nobody had registered it: a restore
 * lost the registration), "off" (glibc did not register one), or an errno name.
 *
 * Log: "start pid <pid> mem_mb <m> seed <s>", "filled <checksum>", ticks, verifies.
 */
#include "common.h"

#include <signal.h>
#include <stdint.h>
#include <sys/rseq.h>
#include <sys/syscall.h>

#define HEAP_WORDS (96 * 1024 / 8)
#define STACK_WORDS (32 * 1024 / 8)

static volatile sig_atomic_t verify_requested;

static void on_usr1(int sig)
{
	(void)sig;
	verify_requested = 1;
}

static inline uint64_t xorshift64(uint64_t *s)
{
	uint64_t x = *s;
	x ^= x << 13;
	x ^= x >> 7;
	x ^= x << 17;
	*s = x;
	return x;
}

struct region {
	const char *name;
	uint64_t *words;
	size_t len;
	uint64_t seed;
};

static uint64_t seed_state(uint64_t seed)
{
	/* xorshift64 must not start at zero. */
	return seed ? seed : 0x9e3779b97f4a7c15ULL;
}

static void fill(const struct region *r)
{
	uint64_t s = seed_state(r->seed);
	for (size_t i = 0; i < r->len; i++)
		r->words[i] = xorshift64(&s);
}

/* Index of the first word that differs, or r->len. */
static size_t check(const struct region *r)
{
	uint64_t s = seed_state(r->seed);
	for (size_t i = 0; i < r->len; i++)
		if (r->words[i] != xorshift64(&s))
			return i;
	return r->len;
}

static uint64_t checksum(const struct region *rs, int n)
{
	uint64_t h = 0xcbf29ce484222325ULL;
	for (int k = 0; k < n; k++)
		for (size_t i = 0; i < rs[k].len; i++)
			h = (h ^ rs[k].words[i]) * 0x100000001b3ULL;
	return h;
}

static const char *rseq_state(void)
{
	if (__rseq_size == 0)
		return "off";
	void *area = (char *)__builtin_thread_pointer() + __rseq_offset;
	long rc = syscall(SYS_rseq, area, (uint32_t)sizeof(struct rseq), 0, RSEQ_SIG);
	if (rc == 0) {
		/* It was not registered: undo our registration, report the loss. */
		syscall(SYS_rseq, area, (uint32_t)sizeof(struct rseq), RSEQ_FLAG_UNREGISTER, RSEQ_SIG);
		return "free";
	}
	switch (errno) {
	case EBUSY:
		return "busy";
	case EINVAL:
		return "EINVAL";
	case EPERM:
		return "EPERM";
	default:
		return "error";
	}
}

int main(int argc, char **argv)
{
	if (argc != 4)
		return 1;
	workload_start(argv[1]);
	uint64_t mem_mb = parse_u64(argv[2], "MEM_MB");
	uint64_t seed = parse_u64(argv[3], "SEED");

	struct sigaction sa = { .sa_handler = on_usr1 };
	sigemptyset(&sa.sa_mask);
	sa.sa_flags = SA_RESTART;
	if (sigaction(SIGUSR1, &sa, NULL))
		die("sigaction");

	log_line("start pid %d mem_mb %llu seed %llu", getpid(),
		 (unsigned long long)mem_mb, (unsigned long long)seed);

	uint64_t stack_words[STACK_WORDS];
	struct region regions[3] = {
		{ "mmap", malloc((size_t)(mem_mb << 20) + 8), (size_t)(mem_mb << 20) / 8, seed },
		{ "heap", malloc(HEAP_WORDS * 8), HEAP_WORDS, seed ^ 0x5555 },
		{ "stack", stack_words, STACK_WORDS, seed ^ 0xaaaa },
	};
	for (int k = 0; k < 3; k++) {
		if (!regions[k].words)
			die("malloc");
		fill(&regions[k]);
	}
	log_line("filled %016llx", (unsigned long long)checksum(regions, 3));

	unsigned long long n = 0;
	struct timespec prev = { 0, 0 };
	for (;;) {
		struct timespec now;
		if (clock_gettime(CLOCK_MONOTONIC, &now))
			die("clock_gettime");
		if (now.tv_sec < prev.tv_sec || (now.tv_sec == prev.tv_sec && now.tv_nsec < prev.tv_nsec))
			log_line("clock FAIL %lld.%09ld %lld.%09ld", (long long)prev.tv_sec,
				 prev.tv_nsec, (long long)now.tv_sec, now.tv_nsec);
		prev = now;
		if (verify_requested) {
			verify_requested = 0;
			int bad = -1;
			size_t at = 0;
			for (int k = 0; k < 3 && bad < 0; k++) {
				at = check(&regions[k]);
				if (at != regions[k].len)
					bad = k;
			}
			if (bad < 0)
				log_line("verify ok %llu %016llx rseq %s", n,
					 (unsigned long long)checksum(regions, 3), rseq_state());
			else
				log_line("verify FAIL %s %zu", regions[bad].name, at * 8);
		}
		n++;
		log_line("tick %llu", n);
		sleep_ms(10);
	}
}

/*
 * counter LOG MEM_MB SEED
 *
 * Fills MEM_MB MiB of heap memory (malloc, so mmap'd anonymous memory for any
 * useful size) with an xorshift64 sequence seeded by SEED, then every ~10 ms
 * increments a counter and logs "tick <n>". On SIGUSR1 it re-derives the
 * sequence, compares every 8-byte word and logs "verify ok <n> <checksum>"
 * (checksum over the memory as it is) or "verify FAIL <offset>".
 *
 * Log protocol: "start pid <pid> mem_mb <m> seed <s>", "filled <checksum>",
 * then ticks and verify lines.
 */
#include "common.h"

#include <signal.h>
#include <stdint.h>

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

static uint64_t seed_state(uint64_t seed)
{
	/* xorshift64 must not start at zero. */
	return seed ? seed : 0x9e3779b97f4a7c15ULL;
}

static uint64_t checksum(const uint64_t *mem, size_t words)
{
	uint64_t h = 0xcbf29ce484222325ULL;
	for (size_t i = 0; i < words; i++)
		h = (h ^ mem[i]) * 0x100000001b3ULL;
	return h;
}

int main(int argc, char **argv)
{
	if (argc != 4)
		return 1;
	workload_start(argv[1]);
	uint64_t mem_mb = parse_u64(argv[2], "MEM_MB");
	uint64_t seed = parse_u64(argv[3], "SEED");
	size_t words = (size_t)(mem_mb << 20) / sizeof(uint64_t);

	struct sigaction sa = { .sa_handler = on_usr1 };
	sigemptyset(&sa.sa_mask);
	sa.sa_flags = SA_RESTART;
	if (sigaction(SIGUSR1, &sa, NULL))
		die("sigaction");

	log_line("start pid %d mem_mb %llu seed %llu", getpid(),
		 (unsigned long long)mem_mb, (unsigned long long)seed);

	uint64_t *mem = malloc(words * sizeof(uint64_t) + 1);
	if (!mem)
		die("malloc");
	uint64_t s = seed_state(seed);
	for (size_t i = 0; i < words; i++)
		mem[i] = xorshift64(&s);
	log_line("filled %016llx", (unsigned long long)checksum(mem, words));

	unsigned long long n = 0;
	for (;;) {
		if (verify_requested) {
			verify_requested = 0;
			uint64_t t = seed_state(seed);
			size_t bad = words;
			for (size_t i = 0; i < words; i++) {
				if (mem[i] != xorshift64(&t)) {
					bad = i;
					break;
				}
			}
			if (bad == words)
				log_line("verify ok %llu %016llx", n,
					 (unsigned long long)checksum(mem, words));
			else
				log_line("verify FAIL %zu", bad * sizeof(uint64_t));
		}
		n++;
		log_line("tick %llu", n);
		sleep_ms(10);
	}
}

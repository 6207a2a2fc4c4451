/*
 * cow LOG: a parent and child that still share private memory copy-on-write. The parent
 * maps 32 MiB of private anonymous memory, fills every 8-byte word i with a pattern of
 * (i, seed 1), logs "region <addr> <bytes>" and forks "child". The child then rewrites
 * its first 1 MiB with seed 2; the parent rewrites its last 1 MiB with seed 3. Everything
 * between is never written again by either: those pages stay shared. Each process logs,
 * every ~20 ms, "tick <name> <counter> ok", or "... BAD <word>" when any word of its
 * region is not what it wrote.
 */
#include "common.h"
#include <stdint.h>
#include <sys/mman.h>

#define SIZE (32UL << 20)
#define EDGE (1UL << 20)

static uint64_t word(uint64_t i, uint64_t seed)
{
	return (i * 0x9E3779B97F4A7C15ull) ^ (seed * 0xC2B2AE3D27D4EB4Full) ^ 1;
}

static void fill(uint64_t *w, size_t from, size_t to, uint64_t seed)
{
	for (size_t i = from; i < to; i++)
		w[i] = word(i, seed);
}

static long check(const uint64_t *w, uint64_t head, uint64_t tail)
{
	size_t n = SIZE / 8, edge = EDGE / 8;
	for (size_t i = 0; i < n; i++) {
		uint64_t seed = i < edge ? head : i >= n - edge ? tail : 1;
		if (w[i] != word(i, seed))
			return (long)i;
	}
	return -1;
}

static void tick_forever(const char *name, const uint64_t *w, uint64_t head, uint64_t tail)
{
	unsigned long long n = 0;
	for (;;) {
		n++;
		long bad = check(w, head, tail);
		if (bad < 0)
			log_line("tick %s %llu ok", name, n);
		else
			log_line("tick %s %llu BAD %ld", name, n, bad);
		sleep_ms(20);
	}
}

int main(int argc, char **argv)
{
	if (argc != 2)
		_exit(1);
	workload_start(argv[1]);
	log_line("start pid %d", getpid());
	uint64_t *w = mmap(NULL, SIZE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (w == MAP_FAILED)
		die("mmap");
	fill(w, 0, SIZE / 8, 1);
	log_line("region %p %lu", (void *)w, SIZE);
	pid_t c = fork();
	if (c < 0)
		die("fork");
	if (c == 0) {
		fill(w, 0, EDGE / 8, 2);
		tick_forever("child", w, 2, 1);
	}
	log_line("child %d", c);
	fill(w, (SIZE - EDGE) / 8, SIZE / 8, 3);
	tick_forever("parent", w, 1, 3);
	return 0;
}

/*
 * stasis-bench workload: a process worth checkpointing.
 *
 *   bench-workload MIB LOG SEED
 *
 * Calls setsid(), maps MIB MiB of private anonymous memory and fills every 8-byte
 * word i with ((i * 0x9E3779B97F4A7C15 + SEED) | 1), so every page is present and
 * non-zero (the bench re-derives the pattern to check a restored copy). Then appends
 * "ready 0x<addr> <bytes>\n" to LOG and, every 10 ms, the next counter value "N\n".
 * The bench reads LOG to know the process is ready and that a restored copy went on
 * counting from where the dump froze it. Stdio is /dev/null (the bench arranges it);
 * every other inherited fd is closed first, so the dumped fd table is exactly stdio
 * and the log, whatever the shell that started the bench left open.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

static uint64_t pattern_word(uint64_t seed, uint64_t i)
{
	return (i * 0x9E3779B97F4A7C15ull + seed) | 1;
}

static void write_all(int fd, const char *buf, size_t len)
{
	while (len > 0) {
		ssize_t n = write(fd, buf, len);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			_exit(3);
		}
		buf += n;
		len -= (size_t)n;
	}
}

/* Sleeps 10 ms; a signal (or a restore that interrupts the sleep) only shortens the wait. */
static void sleep_tick(void)
{
	struct timespec req = { .tv_sec = 0, .tv_nsec = 10 * 1000 * 1000 };
	struct timespec rem;

	while (nanosleep(&req, &rem) == -1 && errno == EINTR)
		req = rem;
}

int main(int argc, char **argv)
{
	if (argc != 4) {
		fprintf(stderr, "usage: %s MIB LOG SEED\n", argv[0]);
		return 2;
	}
	setsid();
	close_range(3, ~0U, 0);

	size_t len = (size_t)strtoull(argv[1], NULL, 10) << 20;
	uint64_t seed = strtoull(argv[3], NULL, 0);
	uint64_t *mem = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (len == 0 || mem == MAP_FAILED)
		return 1;
	for (size_t i = 0; i < len / sizeof(uint64_t); i++)
		mem[i] = pattern_word(seed, i);

	int fd = open(argv[2], O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
	if (fd < 0)
		return 1;

	char line[96];
	int n = snprintf(line, sizeof(line), "ready 0x%lx %zu\n", (unsigned long)mem, len);
	write_all(fd, line, (size_t)n);

	for (uint64_t counter = 1;; counter++) {
		sleep_tick();
		n = snprintf(line, sizeof(line), "%llu\n", (unsigned long long)counter);
		write_all(fd, line, (size_t)n);
	}
}

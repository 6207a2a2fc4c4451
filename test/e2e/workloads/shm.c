/*
 * shm LOG: a parent and a child share an anonymous MAP_SHARED region: a counter page the
 * child increments and a 1 MiB patterned block. The parent logs every ~20 ms
 *   "tick <n> seen <child counter> pattern ok|FAIL"
 * so a restore proves the region is one object again (the parent sees the child's
 * increments) and that its contents came back (the counter goes on from its value,
 * the pattern checks out).
 */
#include "common.h"
#include <stdint.h>
#include <sys/mman.h>

#define BLOCK (1 << 20)

int main(int argc, char **argv)
{
	if (argc != 2)
		_exit(1);
	workload_start(argv[1]);
	volatile uint64_t *shared = mmap(NULL, 4096 + BLOCK, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (shared == MAP_FAILED)
		die("mmap");
	uint8_t *block = (uint8_t *)shared + 4096;
	for (size_t i = 0; i < BLOCK; i++)
		block[i] = (uint8_t)(i * 13 + 5);
	log_line("start pid %d", getpid());
	pid_t c = fork();
	if (c < 0)
		die("fork");
	if (c == 0) {
		for (;;) {
			__atomic_add_fetch(&shared[0], 1, __ATOMIC_SEQ_CST);
			sleep_ms(5);
		}
	}
	log_line("child %d", c);
	for (unsigned long long n = 1;; n++) {
		int ok = 1;
		for (size_t i = 0; i < BLOCK; i += 4096)
			ok &= block[i] == (uint8_t)(i * 13 + 5);
		log_line("tick %llu seen %llu pattern %s", n,
			 (unsigned long long)__atomic_load_n(&shared[0], __ATOMIC_SEQ_CST), ok ? "ok" : "FAIL");
		sleep_ms(20);
	}
}

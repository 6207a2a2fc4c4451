/*
 * ring LOG N: the root and N children pass a token around a ring of pipes. Process i
 * reads the token (a counter) from pipe i and writes token+1 to pipe (i+1) % (N+1); the
 * root logs every lap as "lap <lap> token <token>" and checks token == lap * (N+1), so
 * a lost, repeated or reordered token after a restore shows up as a FAIL line. Every
 * pipe is created by the root before the forks: each is shared between two processes.
 */
#include "common.h"
#include <stdint.h>

static void pass_on(int in, int out, int root)
{
	uint64_t token, lap = 0;
	for (;;) {
		ssize_t n = read(in, &token, sizeof token);
		if (n < 0 && errno == EINTR)
			continue;
		if (n != (ssize_t)sizeof token)
			die("read token");
		if (root) {
			lap++;
			log_line("lap %llu token %llu", (unsigned long long)lap, (unsigned long long)token);
			sleep_ms(10);
		}
		token++;
		while (write(out, &token, sizeof token) < 0)
			if (errno != EINTR)
				die("write token");
	}
}

int main(int argc, char **argv)
{
	if (argc != 3)
		_exit(1);
	workload_start(argv[1]);
	int n = (int)parse_u64(argv[2], "N");
	int fds[64][2];
	if (n < 1 || n > 63)
		_exit(1);
	for (int i = 0; i <= n; i++)
		if (pipe(fds[i]) < 0)
			die("pipe");
	log_line("start pid %d", getpid());
	for (int i = 1; i <= n; i++) {
		pid_t c = fork();
		if (c < 0)
			die("fork");
		if (c == 0) {
			int in = fds[i][0], out = fds[(i + 1) % (n + 1)][1];
			for (int j = 0; j <= n; j++) {
				if (fds[j][0] != in)
					close(fds[j][0]);
				if (fds[j][1] != out)
					close(fds[j][1]);
			}
			pass_on(in, out, 0);
		}
	}
	int in = fds[0][0], out = fds[1 % (n + 1)][1];
	for (int j = 0; j <= n; j++) {
		if (fds[j][0] != in)
			close(fds[j][0]);
		if (fds[j][1] != out)
			close(fds[j][1]);
	}
	uint64_t token = 0;
	if (write(out, &token, sizeof token) != (ssize_t)sizeof token)
		die("first token");
	pass_on(in, out, 1);
	return 0;
}

/*
 * seccomp LOG
 *
 * Installs two seccomp filters (no_new_privs first, as an unprivileged program
 * must): the first makes getpriority(2) fail with ENOMSG, the second
 * sethostname(2) fail with EROFS; then forks a child that
 * inherits both and adds a third of its own (setdomainname fails with EXDEV).
 * Each process logs every ~10 ms
 *   "tick <n> <who> <errno of getpriority> <errno of sethostname> <errno of setdomainname>"
 * so a restore that lost or mixed up a filter shows in the very next line.
 *
 * Log: "start pid <pid>", "child pid <pid>", then ticks from "parent" and "child".
 */
#include "common.h"

#include <linux/filter.h>
#include <linux/seccomp.h>
#include <stddef.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/syscall.h>

/* A filter failing one system call with an errno, allowing the rest. */
static void deny(int nr, int err)
{
	struct sock_filter f[] = {
		BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
		BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, (unsigned)nr, 0, 1),
		BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | (unsigned)err),
		BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
	};
	struct sock_fprog prog = { .len = sizeof f / sizeof f[0], .filter = f };
	if (syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, 0, &prog) < 0)
		die("seccomp");
}

static int err_of(long r)
{
	return r < 0 ? errno : 0;
}

static void loop(const char *who)
{
	for (unsigned long n = 1;; n++) {
		int a = err_of(syscall(SYS_getpriority, PRIO_PROCESS, 0));
		int b = err_of(syscall(SYS_sethostname, "x", 1));
		int c = err_of(syscall(SYS_setdomainname, "x", 1));
		log_line("tick %lu %s %d %d %d", n, who, a, b, c);
		sleep_ms(10);
	}
}

int main(int argc, char **argv)
{
	if (argc != 2)
		return 1;
	workload_start(argv[1]);
	log_line("start pid %d", getpid());
	if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0)
		die("no_new_privs");
	deny(SYS_getpriority, ENOMSG);
	deny(SYS_sethostname, EROFS);
	pid_t child = fork();
	if (child < 0)
		die("fork");
	if (child == 0) {
		deny(SYS_setdomainname, EXDEV);
		log_line("child pid %d", getpid());
		loop("child");
	}
	loop("parent");
}

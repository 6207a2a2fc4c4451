/* A minimal container launcher: starts a program as PID 1 of new pid, mount, uts,
 * ipc and network namespaces, inside ROOTFS (pivot_root), with /proc, a tmpfs /tmp,
 * a tmpfs /dev holding a bind of the host's /dev/null (an external mount), a devpts,
 * an mqueue, and /proc/timer_list masked by a bind of that /dev/null.
 *
 *   nsinit ROOTFS HOSTNAME PROGRAM [ARGS...]
 *
 * Prints the container init's host PID on stdout and exits at once: the init is
 * reparented to the nearest subreaper (the test).
 *
 * With NSINIT_NETNS=PATH the container joins that network namespace (one its
 * runtime owns, as `ip netns add` makes) instead of getting a new one.
 *
 * With NSINIT_USERNS=HOSTID the container also gets a user namespace of its own, which
 * maps its ids 0..65535 to the host's HOSTID..HOSTID+65535, and its init runs as the
 * namespace's root (the root filesystem should belong to HOSTID).
 *
 * With NSINIT_ROOT_SLAVE=1 the container's mounts are slaves of the host's (as runc's
 * default `rslave` root propagation makes them) instead of private: a host mount
 * under ROOTFS, if ROOTFS is a shared mount, shows up inside. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

static char **args;
/* The user namespace case: the init waits on this pipe until its maps are written. */
static int mapped[2] = {-1, -1};

static void die(const char *what) {
	fprintf(stderr, "nsinit: %s: %s\n", what, strerror(errno));
	_exit(111);
}

static void mnt(const char *src, const char *dst, const char *type, unsigned long flags, const char *data) {
	if (mount(src, dst, type, flags, data) < 0) {
		fprintf(stderr, "nsinit: mount %s on %s: %s\n", src ? src : "none", dst, strerror(errno));
		_exit(111);
	}
}

static int init(void *unused) {
	(void)unused;
	const char *root = args[1];
	if (mapped[0] >= 0) {
		char c;
		close(mapped[1]);
		if (read(mapped[0], &c, 1) != 1)
			die("wait for the id maps");
		close(mapped[0]);
		if (setresgid(0, 0, 0) < 0 || setresuid(0, 0, 0) < 0)
			die("become the user namespace's root");
	}
	const char *slave = getenv("NSINIT_ROOT_SLAVE");
	mnt(NULL, "/", NULL, MS_REC | (slave && *slave == '1' ? MS_SLAVE : MS_PRIVATE), NULL);
	mnt(root, root, NULL, MS_BIND, NULL);
	if (chdir(root) < 0)
		die("chdir rootfs");
	mkdir("proc", 0555);
	mkdir("tmp", 01777);
	mkdir("dev", 0755);
	mkdir("data", 0755);
	mnt("proc", "proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL);
	mnt("tmpfs", "tmp", "tmpfs", MS_NOSUID | MS_NODEV, "size=8m,mode=1777");
	mnt("tmpfs", "dev", "tmpfs", MS_NOSUID | MS_STRICTATIME, "mode=755,size=1m");
	int fd = open("dev/null", O_CREAT | O_WRONLY, 0666);
	if (fd < 0)
		die("create dev/null");
	close(fd);
	mnt("/dev/null", "dev/null", NULL, MS_BIND, NULL);
	mkdir("dev/pts", 0755);
	mnt("devpts", "dev/pts", "devpts", MS_NOSUID | MS_NOEXEC, "newinstance,ptmxmode=0666,mode=0620");
	mkdir("dev/mqueue", 0755);
	mnt("mqueue", "dev/mqueue", "mqueue", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL);
	mnt("dev/null", "proc/timer_list", NULL, MS_BIND, NULL);
	if (setsid() < 0)
		die("setsid");
	if (sethostname(args[2], strlen(args[2])) < 0)
		die("sethostname");
	if (syscall(SYS_pivot_root, ".", ".") < 0)
		die("pivot_root");
	if (umount2(".", MNT_DETACH) < 0)
		die("umount old root");
	if (chdir("/") < 0)
		die("chdir /");
	/* Like a runtime, nothing but stdio crosses into the container: the init's
	 * descriptor numbers do not depend on what the test's environment leaked. */
	if (syscall(SYS_close_range, 3, ~0U, 0) < 0)
		die("close_range");
	execv(args[3], &args[3]);
	die("exec");
	return 111;
}

int main(int argc, char **argv) {
	if (argc < 4) {
		fprintf(stderr, "usage: nsinit ROOTFS HOSTNAME PROGRAM [ARGS...]\n");
		return 2;
	}
	args = argv;
	static char stack[1 << 16];
	int flags = CLONE_NEWPID | CLONE_NEWNS | CLONE_NEWUTS | CLONE_NEWIPC | CLONE_NEWNET | SIGCHLD;
	const char *netns = getenv("NSINIT_NETNS");
	if (netns && *netns) {
		int fd = open(netns, O_RDONLY | O_CLOEXEC);
		if (fd < 0 || setns(fd, CLONE_NEWNET) < 0)
			die("join NSINIT_NETNS");
		close(fd);
		flags &= ~CLONE_NEWNET;
	}
	const char *userns = getenv("NSINIT_USERNS");
	if (userns && *userns) {
		if (pipe(mapped) < 0)
			die("pipe");
		flags |= CLONE_NEWUSER;
	}
	pid_t pid = clone(init, stack + sizeof(stack), flags, NULL);
	if (pid < 0)
		die("clone");
	if (mapped[1] >= 0) {
		char path[64], map[64];
		int len = snprintf(map, sizeof(map), "0 %s 65536\n", userns);
		for (int i = 0; i < 2; i++) {
			snprintf(path, sizeof(path), "/proc/%d/%s", pid, i ? "gid_map" : "uid_map");
			int fd = open(path, O_WRONLY);
			if (fd < 0 || write(fd, map, len) != len)
				die(path);
			close(fd);
		}
		if (write(mapped[1], "m", 1) != 1)
			die("signal the init");
	}
	printf("%d\n", pid);
	fflush(stdout);
	return 0;
}

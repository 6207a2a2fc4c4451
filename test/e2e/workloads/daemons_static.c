/* daemons.c, linked statically to run as PID 1 of a container (a busybox rootfs). Its
 * stdio, nsinit's pipe to the test, goes to /dev/null first: the test reads to the end. */
#include "daemons.c"

__attribute__((constructor)) static void quiet_stdio(void)
{
	int fd = open("/dev/null", O_RDWR);
	if (fd < 0)
		return;
	dup2(fd, 0);
	dup2(fd, 1);
	dup2(fd, 2);
	if (fd > 2)
		close(fd);
}

/*
 * memfd LOG [map]
 *
 *   data   - memfd "stasis-data" (sealable, sealed against shrinking and
 *            growing): 3 pages of pattern, a hole, one page at 64 KiB, size
 *            64 KiB + 100. Opened a second time through /proc/self/fd (its own
 *            offset): each tick n writes "mem %08llu\n" at the second
 *            description's offset and reads it back through the first at the
 *            same position, both offsets moving on (wrapping at 12 KiB);
 *   sealed - memfd "sealed" holding "frozen", sealed against writing, shrinking,
 *            growing and further seals;
 *   plain  - memfd "plain" created without MFD_ALLOW_SEALING.
 *
 * On SIGUSR1 it checks names, seals, sizes, the hole and the sealed contents:
 * "usr1 names ok seals ok size ok data ok" (FAIL in place of a failing ok).
 *
 * With "map", the data memfd is also mapped shared (which stasis refuses).
 *
 * Log: "start pid <pid>", then "tick <n> rw ok|FAIL".
 */
#include "common.h"

#include <signal.h>
#include <sys/mman.h>
#include <sys/stat.h>

#define REC_LEN 13
#define AREA (3 * 4096)
#define FAR (64 * 1024)

static volatile sig_atomic_t usr1;

static void on_usr1(int sig)
{
	(void)sig;
	usr1 = 1;
}

static int named(int fd, const char *name)
{
	char link[64], got[256], want[256];
	snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
	ssize_t n = readlink(link, got, sizeof got - 1);
	if (n < 0)
		return 0;
	got[n] = 0;
	snprintf(want, sizeof want, "/memfd:%s (deleted)", name);
	return !strcmp(got, want);
}

int main(int argc, char **argv)
{
	if (argc != 2 && argc != 3)
		return 1;
	workload_start(argv[1]);
	signal(SIGUSR1, on_usr1);

	int data = memfd_create("stasis-data", MFD_ALLOW_SEALING | MFD_CLOEXEC);
	int sealed = memfd_create("sealed", MFD_ALLOW_SEALING | MFD_CLOEXEC);
	int plain = memfd_create("plain", MFD_CLOEXEC);
	if (data < 0 || sealed < 0 || plain < 0)
		die("memfd_create");
	char page[4096];
	for (int i = 0; i < 3; i++) {
		memset(page, 'a' + i, sizeof page);
		write_all(data, page, sizeof page);
	}
	memset(page, 'z', sizeof page);
	if (pwrite(data, page, sizeof page, FAR) != (ssize_t)sizeof page || ftruncate(data, FAR + 100))
		die("fill data");
	if (fcntl(data, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW))
		die("seal data");
	char path[64];
	snprintf(path, sizeof path, "/proc/self/fd/%d", data);
	int data2 = open(path, O_RDWR | O_CLOEXEC);
	if (data2 < 0)
		die("reopen data");
	if (lseek(data, 0, SEEK_SET) || lseek(data2, 0, SEEK_SET))
		die("lseek");
	if (argc == 3 && mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, data, 0) == MAP_FAILED)
		die("mmap data");
	write_all(sealed, "frozen", 6);
	if (fcntl(sealed, F_ADD_SEALS, F_SEAL_WRITE | F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL))
		die("seal sealed");

	log_line("start pid %d", getpid());
	for (unsigned long long n = 0;; n++) {
		char rec[REC_LEN + 1], got[REC_LEN];
		snprintf(rec, sizeof rec, "mem %08llu\n", n);
		off_t at = lseek(data2, 0, SEEK_CUR);
		if (at + REC_LEN > AREA) {
			lseek(data2, 0, SEEK_SET);
			lseek(data, 0, SEEK_SET);
			at = 0;
		}
		write_all(data2, rec, REC_LEN);
		const char *rw = lseek(data, 0, SEEK_CUR) == at && read(data, got, REC_LEN) == REC_LEN &&
					 !memcmp(got, rec, REC_LEN)
				 ? "ok"
				 : "FAIL";
		log_line("tick %llu rw %s", n, rw);
		if (usr1) {
			usr1 = 0;
			int names = named(data, "stasis-data") && named(data2, "stasis-data") &&
				    named(sealed, "sealed") && named(plain, "plain");
			int seals = fcntl(data, F_GET_SEALS) == (F_SEAL_SHRINK | F_SEAL_GROW) &&
				    fcntl(sealed, F_GET_SEALS) ==
					    (F_SEAL_WRITE | F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL) &&
				    fcntl(plain, F_GET_SEALS) == F_SEAL_SEAL &&
				    pwrite(sealed, "x", 1, 0) < 0 && errno == EPERM;
			struct stat st;
			int size = !fstat(data, &st) && st.st_size == FAR + 100 && !fstat(sealed, &st) &&
				   st.st_size == 6;
			char buf[4096], zero[4096] = { 0 };
			int ok = pread(data, buf, sizeof buf, 5 * 4096) == sizeof buf &&
				 !memcmp(buf, zero, sizeof buf);
			memset(zero, 'z', 100);
			ok = ok && pread(data, buf, 200, FAR) == 100 && !memcmp(buf, zero, 100);
			ok = ok && pread(sealed, buf, 6, 0) == 6 && !memcmp(buf, "frozen", 6);
#define OK(x) ((x) ? "ok" : "FAIL")
			log_line("usr1 names %s seals %s size %s data %s", OK(names), OK(seals),
				 OK(size), OK(ok));
		}
		sleep_ms(10);
	}
}

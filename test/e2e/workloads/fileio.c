/*
 * fileio LOG DATAFILE MAPFILE [SHAREDFILE]
 *
 * - DATAFILE is opened O_WRONLY|O_CREAT|O_TRUNC (not O_APPEND) and dup()ed:
 *   each tick writes the fixed-width record "rec %08llu\n", on even ticks
 *   through the fd, on odd ticks through its dup, so record n lands at
 *   n * REC_LEN only if the offset survived and the two fds still share one
 *   open file description; the offset read back with lseek is logged, and
 *   "dup ok" if both fds report it.
 * - DATAFILE is also opened a second time O_RDONLY: an independent file
 *   description with its own offset. Each tick read(2)s the record just
 *   written through it: "read ok" if it is the expected record.
 * - MAPFILE (made by the test, at least 3 pages) is mapped MAP_PRIVATE
 *   read-write; the workload writes MAP_MARK at MAP_MARK_OFF (page 1) and
 *   leaves pages 0 and 2 untouched. Each tick it checks that the mapping
 *   still holds the mark, that the untouched bytes equal the file, and that
 *   the file on disk does not hold the mark (a private mapping never writes
 *   back).
 * - SHAREDFILE (optional, made by the test, one page) is mapped MAP_SHARED;
 *   each tick writes "shared <n>\n" padded to SHARED_LEN at its start, so
 *   the test can read the file and see the restored mapping is still shared.
 *
 * Log: "start pid <pid>", then
 *   "tick <n> off <offset> dup ok|FAIL read ok|FAIL map ok|FAIL <why>".
 */
#include "common.h"

#include <sys/mman.h>
#include <sys/stat.h>

#define REC_LEN 13 /* "rec %08llu\n" */
#define MAP_MARK "MODIFIED-IN-PRIVATE-MAPPING"
#define MAP_MARK_OFF (4096 + 100)
#define SHARED_LEN 32

static size_t map_len;
static char *map;
static char *file_copy;

static const char *check_map(int mapfile_fd)
{
	if (memcmp(map + MAP_MARK_OFF, MAP_MARK, sizeof MAP_MARK - 1))
		return "mark-lost";
	size_t done = 0;
	while (done < map_len) {
		ssize_t n = pread(mapfile_fd, file_copy + done, map_len - done, (off_t)done);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return "file-read";
		done += (size_t)n;
	}
	if (!memcmp(file_copy + MAP_MARK_OFF, MAP_MARK, sizeof MAP_MARK - 1))
		return "file-modified";
	if (memcmp(map, file_copy, MAP_MARK_OFF))
		return "head-differs";
	size_t tail = MAP_MARK_OFF + sizeof MAP_MARK - 1;
	if (memcmp(map + tail, file_copy + tail, map_len - tail))
		return "tail-differs";
	return NULL;
}

int main(int argc, char **argv)
{
	if (argc != 4 && argc != 5)
		return 1;
	workload_start(argv[1]);

	int data_fd = open(argv[2], O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (data_fd < 0)
		die("open DATAFILE");
	int data_dup = dup(data_fd);
	if (data_dup < 0)
		die("dup DATAFILE");
	int reader_fd = open(argv[2], O_RDONLY | O_CLOEXEC);
	if (reader_fd < 0)
		die("open DATAFILE for reading");

	/* Kept open: the check re-reads the file through it every tick. */
	int mapfile_fd = open(argv[3], O_RDONLY | O_CLOEXEC);
	if (mapfile_fd < 0)
		die("open MAPFILE");
	struct stat st;
	if (fstat(mapfile_fd, &st))
		die("fstat MAPFILE");
	if (st.st_size < 3 * 4096) {
		errno = EINVAL;
		die("MAPFILE shorter than 3 pages");
	}
	map_len = (size_t)st.st_size;
	map = mmap(NULL, map_len, PROT_READ | PROT_WRITE, MAP_PRIVATE, mapfile_fd, 0);
	if (map == MAP_FAILED)
		die("mmap MAPFILE");
	file_copy = malloc(map_len);
	if (!file_copy)
		die("malloc");
	memcpy(map + MAP_MARK_OFF, MAP_MARK, sizeof MAP_MARK - 1);

	char *shared = NULL;
	if (argc == 5) {
		int fd = open(argv[4], O_RDWR | O_CLOEXEC);
		if (fd < 0)
			die("open SHAREDFILE");
		shared = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
		if (shared == MAP_FAILED)
			die("mmap SHAREDFILE");
		close(fd); /* the mapping alone keeps it */
	}

	log_line("start pid %d", getpid());
	for (unsigned long long n = 0;; n++) {
		char rec[REC_LEN + 1];
		snprintf(rec, sizeof rec, "rec %08llu\n", n);
		write_all(n % 2 ? data_dup : data_fd, rec, REC_LEN);
		off_t off = lseek(data_fd, 0, SEEK_CUR);
		const char *dup_ok = lseek(data_dup, 0, SEEK_CUR) == off ? "ok" : "FAIL";
		char back[REC_LEN];
		ssize_t got;
		do
			got = read(reader_fd, back, REC_LEN);
		while (got < 0 && errno == EINTR);
		const char *read_ok = got == REC_LEN && !memcmp(back, rec, REC_LEN) ? "ok" : "FAIL";
		if (shared) {
			char line[SHARED_LEN + 1];
			int len = snprintf(line, sizeof line, "shared %llu", n);
			memset(line + len, ' ', SHARED_LEN - (size_t)len);
			line[SHARED_LEN - 1] = '\n';
			memcpy(shared, line, SHARED_LEN);
		}
		const char *why = check_map(mapfile_fd);
		if (why)
			log_line("tick %llu off %lld dup %s read %s map FAIL %s", n, (long long)off,
				 dup_ok, read_ok, why);
		else
			log_line("tick %llu off %lld dup %s read %s map ok", n, (long long)off,
				 dup_ok, read_ok);
		sleep_ms(10);
	}
}

// firstcall: makes a bpf(2) command that carries a path, a key or a value
// the first call of a new process or of a new thread, with its bytes in
// memory the caller never touched, for the sensor's tests.
//
//   firstcall fork|thread get-path PATH
//   firstcall fork|thread pin MAP_ID PATH
//   firstcall fork|thread update MAP_ID KEY VALUE
//   firstcall fork|thread delete MAP_ID KEY
//   firstcall fork|thread update-batch MAP_ID KEY VALUE
//
// The path, key (u32) and value (u64) are written to a temporary file with
// write(2) and mapped shared: no page of the mapping is present until the
// kernel touches it, as with a string literal in a binary's .rodata after
// fork (the child has no page table entries for file mappings). The map's
// fd (pin, update, delete) is got by id first, in the parent or the main
// thread: the command is then the new process's or thread's first call.
// With FIRSTCALL_HEAP set, the bytes are on the heap instead, written by
// the process itself. Prints "result=R" (a negative errno on failure); exits 0 when the
// command was made.
#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

enum {
	CMD_UPDATE = 2,
	CMD_DELETE = 3,
	CMD_OBJ_PIN = 6,
	CMD_OBJ_GET = 7,
	CMD_GET_FD_BY_ID = 14,
	CMD_UPDATE_BATCH = 26,
};

struct data {
	char path[256];
	uint32_t key;
	uint32_t _pad;
	uint64_t value;
};

static const struct data *d; /* in the untouched mapping */
static const char *what;
static long map_fd = -1;
static long result;

static long bpf(int cmd, void *attr, unsigned size)
{
	long r = syscall(SYS_bpf, cmd, attr, size);

	return r < 0 ? -errno : r;
}

static void *call(void *unused)
{
	uint64_t attr[16];

	(void)unused;
	memset(attr, 0, sizeof(attr));
	if (strcmp(what, "get-path") == 0) {
		attr[0] = (uintptr_t)d->path; /* pathname */
		result = bpf(CMD_OBJ_GET, attr, sizeof(attr));
	} else if (strcmp(what, "pin") == 0) {
		attr[0] = (uintptr_t)d->path;
		attr[1] = (uint32_t)map_fd; /* bpf_fd */
		result = bpf(CMD_OBJ_PIN, attr, sizeof(attr));
	} else if (strcmp(what, "update") == 0 || strcmp(what, "delete") == 0) {
		attr[0] = (uint32_t)map_fd; /* map_fd, then key, value, flags */
		attr[1] = (uintptr_t)&d->key;
		if (what[0] == 'u')
			attr[2] = (uintptr_t)&d->value; /* delete: must be zero */
		result = bpf(what[0] == 'u' ? CMD_UPDATE : CMD_DELETE, attr, sizeof(attr));
	} else if (strcmp(what, "update-batch") == 0) {
		/* in_batch, out_batch, keys, values, count, map_fd */
		attr[2] = (uintptr_t)&d->key;
		attr[3] = (uintptr_t)&d->value;
		attr[4] = 1 | ((uint64_t)(uint32_t)map_fd << 32);
		result = bpf(CMD_UPDATE_BATCH, attr, sizeof(attr));
	}
	return NULL;
}

static int usage(void)
{
	fprintf(stderr, "usage: firstcall fork|thread get-path|pin|update|delete|update-batch [MAP_ID] [PATH|KEY [VALUE]]\n");
	return 2;
}

int main(int argc, char **argv)
{
	struct data src;
	char tmpl[] = "/tmp/firstcall.XXXXXX";
	int fd, i = 3;

	if (argc < 4)
		return usage();
	what = argv[2];
	memset(&src, 0, sizeof(src));
	if (strcmp(what, "get-path") != 0) {
		uint32_t attr[4] = {(uint32_t)strtoul(argv[i++], NULL, 10)};

		map_fd = bpf(CMD_GET_FD_BY_ID, attr, sizeof(attr));
		if (map_fd < 0) {
			fprintf(stderr, "firstcall: map_get_fd_by_id: %ld\n", map_fd);
			return 1;
		}
	}
	if (strcmp(what, "get-path") == 0 || strcmp(what, "pin") == 0) {
		if (i >= argc)
			return usage();
		snprintf(src.path, sizeof(src.path), "%s", argv[i]);
	} else {
		if (i >= argc)
			return usage();
		src.key = (uint32_t)strtoul(argv[i++], NULL, 10);
		if (i < argc)
			src.value = strtoull(argv[i], NULL, 10);
	}

	if (getenv("FIRSTCALL_HEAP")) {
		/* Written by this process: present (copied on fork). */
		struct data *h = malloc(sizeof(*h));

		*h = src;
		d = h;
		goto run;
	}
	fd = mkstemp(tmpl);
	if (fd < 0 || write(fd, &src, sizeof(src)) != sizeof(src)) {
		perror("firstcall: temporary file");
		return 1;
	}
	unlink(tmpl);
	d = mmap(NULL, sizeof(src), PROT_READ, MAP_SHARED, fd, 0);
	if (d == MAP_FAILED) {
		perror("firstcall: mmap");
		return 1;
	}
	/* Not touched from here on but by the kernel. */
run:

	if (strcmp(argv[1], "fork") == 0) {
		int st;
		pid_t pid = fork();

		if (pid < 0) {
			perror("firstcall: fork");
			return 1;
		}
		if (pid == 0) {
			call(NULL);
			printf("result=%ld\n", result);
			fflush(stdout);
			_exit(0);
		}
		if (waitpid(pid, &st, 0) < 0 || !WIFEXITED(st))
			return 1;
		return WEXITSTATUS(st);
	}
	if (strcmp(argv[1], "thread") == 0) {
		pthread_t th;

		if (pthread_create(&th, NULL, call, NULL) != 0 || pthread_join(th, NULL) != 0) {
			fprintf(stderr, "firstcall: thread failed\n");
			return 1;
		}
		printf("result=%ld\n", result);
		return 0;
	}
	return usage();
}

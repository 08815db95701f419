// writer: the bpfmon benchmark's map writer.
//
//   writer array|hash VALUE_SIZE COUNT
//
// Creates a BPF map through raw bpf(2) (u32 key, 1024 entries, VALUE_SIZE-byte
// values), prints "map_id=N pid=P" and flushes, then makes COUNT
// BPF_MAP_UPDATE_ELEM calls in a tight loop (key i%1024, value bytes changing
// with i), timed with CLOCK_MONOTONIC, and prints
// "ns_per_op=X.X count=N errors=E".
#define _GNU_SOURCE
#include <errno.h>
#include <linux/bpf.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

// As libbpf does, pass the attr only up to the last field the command uses.
#define UPDATE_ATTR_SIZE (offsetof(union bpf_attr, flags) + sizeof(((union bpf_attr *)0)->flags))

static long sys_bpf(int cmd, union bpf_attr *attr, unsigned int size)
{
	return syscall(SYS_bpf, cmd, attr, size);
}

static double now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec * 1e9 + (double)ts.tv_nsec;
}

int main(int argc, char **argv)
{
	if (argc != 4) {
		fprintf(stderr, "usage: writer array|hash VALUE_SIZE COUNT\n");
		return 2;
	}
	uint32_t type;
	if (strcmp(argv[1], "array") == 0)
		type = BPF_MAP_TYPE_ARRAY;
	else if (strcmp(argv[1], "hash") == 0)
		type = BPF_MAP_TYPE_HASH;
	else {
		fprintf(stderr, "writer: unknown map type %s\n", argv[1]);
		return 2;
	}
	long vsize = strtol(argv[2], NULL, 10);
	long long count = strtoll(argv[3], NULL, 10);
	if (vsize < 1 || vsize > 65536 || count < 1) {
		fprintf(stderr, "writer: bad VALUE_SIZE or COUNT\n");
		return 2;
	}

	union bpf_attr attr;
	memset(&attr, 0, sizeof(attr));
	attr.map_type = type;
	attr.key_size = 4;
	attr.value_size = (uint32_t)vsize;
	attr.max_entries = 1024;
	strncpy(attr.map_name, "bpfmon_bench", sizeof(attr.map_name) - 1);
	int fd = (int)sys_bpf(BPF_MAP_CREATE, &attr, sizeof(attr));
	if (fd < 0) {
		fprintf(stderr, "writer: BPF_MAP_CREATE: %s\n", strerror(errno));
		return 1;
	}

	struct bpf_map_info info;
	memset(&info, 0, sizeof(info));
	memset(&attr, 0, sizeof(attr));
	attr.info.bpf_fd = (uint32_t)fd;
	attr.info.info_len = sizeof(info);
	attr.info.info = (uint64_t)(uintptr_t)&info;
	if (sys_bpf(BPF_OBJ_GET_INFO_BY_FD, &attr, sizeof(attr)) < 0) {
		fprintf(stderr, "writer: BPF_OBJ_GET_INFO_BY_FD: %s\n", strerror(errno));
		return 1;
	}
	printf("map_id=%u pid=%d\n", info.id, (int)getpid());
	fflush(stdout);

	unsigned char *value = calloc(1, (size_t)vsize);
	if (!value) {
		fprintf(stderr, "writer: out of memory\n");
		return 1;
	}
	for (long j = 0; j < vsize; j++)
		value[j] = (unsigned char)(j * 7);
	uint32_t key;
	long long errors = 0;
	int first_errno = 0;

	double start = now_ns();
	for (long long i = 0; i < count; i++) {
		key = (uint32_t)(i % 1024);
		uint64_t v = (uint64_t)i;
		memcpy(value, &v, vsize < 8 ? (size_t)vsize : 8);
		value[vsize - 1] = (unsigned char)i;
		memset(&attr, 0, UPDATE_ATTR_SIZE);
		attr.map_fd = (uint32_t)fd;
		attr.key = (uint64_t)(uintptr_t)&key;
		attr.value = (uint64_t)(uintptr_t)value;
		attr.flags = BPF_ANY;
		if (sys_bpf(BPF_MAP_UPDATE_ELEM, &attr, UPDATE_ATTR_SIZE) < 0) {
			if (!errors)
				first_errno = errno;
			errors++;
		}
	}
	double elapsed = now_ns() - start;

	printf("ns_per_op=%.1f count=%lld errors=%lld\n", elapsed / (double)count, count, errors);
	if (errors)
		fprintf(stderr, "writer: %lld updates failed, first: %s\n", errors, strerror(first_errno));
	fflush(stdout);
	return 0;
}

// writer: the bpfmon benchmark's map writer.
//
//   writer array|hash|array-btf|hash-btf VALUE_SIZE COUNT
//
// Creates a BPF map through raw bpf(2) (u32 key, 1024 entries, VALUE_SIZE-byte
// values; the -btf kinds with BTF: u32 keys, values a struct cfg { u32 pid;
// bool enabled; }, VALUE_SIZE 8 only), prints "map_id=N pid=P" and flushes, then makes COUNT
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

// btf_load loads the BTF of the -btf kinds: [1] u32, [2] struct cfg
// { u32 pid; bool enabled; } (8 bytes), [3] bool. Returns its fd.
static int btf_load(void)
{
	static const char strs[] = "\0u32\0cfg\0pid\0enabled\0bool";
	// name offsets in strs
	enum { S_U32 = 1, S_CFG = 5, S_PID = 9, S_ENABLED = 13, S_BOOL = 21 };
	uint32_t types[] = {
		// [1] INT u32: name, info (kind 1), size, encoding/offset/bits
		S_U32, 1u << 24, 4, 32,
		// [2] STRUCT cfg, 2 members, 8 bytes; members: name, type, bit offset
		S_CFG, (4u << 24) | 2, 8,
		S_PID, 1, 0,
		S_ENABLED, 3, 32,
		// [3] INT bool, encoding BOOL (4 << 24), 8 bits
		S_BOOL, 1u << 24, 1, (4u << 24) | 8,
	};
	struct {
		uint16_t magic;
		uint8_t version, flags;
		uint32_t hdr_len, type_off, type_len, str_off, str_len;
	} hdr = {0xeB9F, 1, 0, 24, 0, sizeof(types), sizeof(types), sizeof(strs)};
	static unsigned char blob[24 + sizeof(types) + sizeof(strs)];
	memcpy(blob, &hdr, 24);
	memcpy(blob + 24, types, sizeof(types));
	memcpy(blob + 24 + sizeof(types), strs, sizeof(strs));

	union bpf_attr attr;
	memset(&attr, 0, sizeof(attr));
	attr.btf = (uint64_t)(uintptr_t)blob;
	attr.btf_size = sizeof(blob);
	return (int)sys_bpf(BPF_BTF_LOAD, &attr, sizeof(attr));
}

int main(int argc, char **argv)
{
	if (argc != 4) {
		fprintf(stderr, "usage: writer array|hash VALUE_SIZE COUNT\n");
		return 2;
	}
	uint32_t type;
	int with_btf = 0;
	if (strcmp(argv[1], "array") == 0)
		type = BPF_MAP_TYPE_ARRAY;
	else if (strcmp(argv[1], "hash") == 0)
		type = BPF_MAP_TYPE_HASH;
	else if (strcmp(argv[1], "array-btf") == 0)
		type = BPF_MAP_TYPE_ARRAY, with_btf = 1;
	else if (strcmp(argv[1], "hash-btf") == 0)
		type = BPF_MAP_TYPE_HASH, with_btf = 1;
	else {
		fprintf(stderr, "writer: unknown map type %s\n", argv[1]);
		return 2;
	}
	long vsize = strtol(argv[2], NULL, 10);
	long long count = strtoll(argv[3], NULL, 10);
	if (vsize < 1 || vsize > 65536 || count < 1 || (with_btf && vsize != 8)) {
		fprintf(stderr, "writer: bad VALUE_SIZE or COUNT\n");
		return 2;
	}
	int btf_fd = -1;
	if (with_btf && (btf_fd = btf_load()) < 0) {
		fprintf(stderr, "writer: BPF_BTF_LOAD: %s\n", strerror(errno));
		return 1;
	}

	union bpf_attr attr;
	memset(&attr, 0, sizeof(attr));
	attr.map_type = type;
	attr.key_size = 4;
	attr.value_size = (uint32_t)vsize;
	attr.max_entries = 1024;
	strncpy(attr.map_name, "bpfmon_bench", sizeof(attr.map_name) - 1);
	if (with_btf) {
		attr.btf_fd = (uint32_t)btf_fd;
		attr.btf_key_type_id = 1;
		attr.btf_value_type_id = 2;
	}
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

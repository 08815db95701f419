/* A stand-in for a security agent, for the owner-impersonation tests
 * (impersonation_test.go): dynamically linked, as agents are, so that the
 * loader honours LD_PRELOAD; in testdata/dynamic, which the kernel test
 * matrix does not prebuild statically.
 *
 *   victim create NAME   create a hash map NAME (u32 -> u64), print its id,
 *                        then for each line "update K" on stdin write K = K
 *                        and print "ok", until EOF
 *   victim update ID K   write K = K into map ID and exit
 */
#include <linux/bpf.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

static long bpf(int cmd, union bpf_attr *attr)
{
	return syscall(__NR_bpf, cmd, attr, sizeof(*attr));
}

static int update(int fd, unsigned int k)
{
	unsigned long long v = k;
	union bpf_attr a;

	memset(&a, 0, sizeof(a));
	a.map_fd = fd;
	a.key = (unsigned long)&k;
	a.value = (unsigned long)&v;
	return bpf(BPF_MAP_UPDATE_ELEM, &a) < 0 ? -1 : 0;
}

int main(int argc, char **argv)
{
	union bpf_attr a;
	char line[64];
	int fd;

	memset(&a, 0, sizeof(a));
	if (argc == 3 && !strcmp(argv[1], "create")) {
		a.map_type = BPF_MAP_TYPE_HASH;
		a.key_size = 4;
		a.value_size = 8;
		a.max_entries = 8;
		strncpy(a.map_name, argv[2], sizeof(a.map_name) - 1);
		fd = bpf(BPF_MAP_CREATE, &a);
		if (fd < 0) {
			perror("map create");
			return 1;
		}
		struct bpf_map_info info;
		memset(&a, 0, sizeof(a));
		memset(&info, 0, sizeof(info));
		a.info.bpf_fd = fd;
		a.info.info_len = sizeof(info);
		a.info.info = (unsigned long)&info;
		if (bpf(BPF_OBJ_GET_INFO_BY_FD, &a) < 0) {
			perror("map info");
			return 1;
		}
		printf("%u\n", info.id);
		fflush(stdout);
		while (fgets(line, sizeof(line), stdin)) {
			unsigned int k;

			if (sscanf(line, "update %u", &k) != 1)
				continue;
			printf(update(fd, k) ? "failed\n" : "ok\n");
			fflush(stdout);
		}
		return 0;
	}
	if (argc == 4 && !strcmp(argv[1], "update")) {
		a.map_id = atoi(argv[2]);
		fd = bpf(BPF_MAP_GET_FD_BY_ID, &a);
		if (fd < 0 || update(fd, atoi(argv[3]))) {
			perror("update");
			return 1;
		}
		return 0;
	}
	fprintf(stderr, "usage: victim create NAME | victim update ID K\n");
	return 2;
}

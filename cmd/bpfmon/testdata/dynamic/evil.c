/* Injected code for the owner-impersonation tests (impersonation_test.go): a
 * constructor that, in whatever process loads it (LD_PRELOAD), opens map
 * $EVIL_MAP_ID by id and deletes its key 1, before main runs. */
#include <linux/bpf.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

__attribute__((constructor)) static void evil(void)
{
	const char *id = getenv("EVIL_MAP_ID");
	unsigned int k = 1;
	union bpf_attr a;
	int fd;

	if (!id)
		return;
	memset(&a, 0, sizeof(a));
	a.map_id = atoi(id);
	fd = syscall(__NR_bpf, BPF_MAP_GET_FD_BY_ID, &a, sizeof(a));
	if (fd < 0)
		return;
	memset(&a, 0, sizeof(a));
	a.map_fd = fd;
	a.key = (unsigned long)&k;
	syscall(__NR_bpf, BPF_MAP_DELETE_ELEM, &a, sizeof(a));
}

// bpfcall: calls bpf(2) through a chosen syscall ABI, for the sensor's tests.
//
//   bpfcall MODE MAP_ID KEY VALUE
//
// MODE is "libc" (the build's native entry: 357 when built with -m32 for
// x86, 386 when built for AArch32), "int80" (a 64-bit x86 process entering
// the compat table through int $0x80) or "nrcompat" (a 64-bit process
// calling the compat ABI's number for bpf natively, where it is no
// syscall: 357 on x86-64, 386 on arm64).
// It gets an fd for MAP_ID (MAP_GET_FD_BY_ID), updates KEY (u32) with VALUE
// (u64), then updates with an invalid key pointer, and prints the results:
//   fd=N update=R badkey=R
// Results are negative errno values on failure. The map must be an array or
// hash with 4-byte keys and 8-byte values.
#define _GNU_SOURCE
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

enum { CMD_UPDATE = 2, CMD_GET_FD_BY_ID = 14 };
enum { MODE_LIBC, MODE_INT80, MODE_NRCOMPAT };

#if defined(__x86_64__)
#define NR_BPF_COMPAT 357
#elif defined(__aarch64__)
#define NR_BPF_COMPAT 386
#endif

struct buf {
	uint8_t attr[128];
	uint32_t key;
	uint64_t value;
};

static int mode;

static long call(int cmd, void *attr, unsigned size)
{
	long r;

	switch (mode) {
#ifdef __x86_64__
	case MODE_INT80:
		__asm__ volatile("int $0x80"
				 : "=a"(r)
				 : "a"(357), "b"(cmd), "c"(attr), "d"(size)
				 : "memory", "r8", "r9", "r10", "r11");
		return (int)r;
#endif
#ifdef NR_BPF_COMPAT
	case MODE_NRCOMPAT:
		r = syscall(NR_BPF_COMPAT, cmd, attr, size);
		break;
#endif
	default:
		r = syscall(SYS_bpf, cmd, attr, size);
	}
	return r < 0 ? -errno : r;
}

int main(int argc, char **argv)
{
	struct buf *b;
	long fd, upd, bad;
	uint64_t p;

	if (argc != 5) {
		fprintf(stderr, "usage: bpfcall libc|int80|nrcompat MAP_ID KEY VALUE\n");
		return 2;
	}
	if (!strcmp(argv[1], "int80"))
		mode = MODE_INT80;
	else if (!strcmp(argv[1], "nrcompat"))
		mode = MODE_NRCOMPAT;
	else
		mode = MODE_LIBC;

	/* int $0x80 passes 32-bit pointers: keep every buffer below 4 GiB. */
	b = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS
#ifdef MAP_32BIT
		 | MAP_32BIT
#endif
		 , -1, 0);
	if (b == MAP_FAILED) {
		perror("mmap");
		return 1;
	}
	memset(b, 0, sizeof(*b));
	*(uint32_t *)b->attr = strtoul(argv[2], NULL, 0);
	fd = call(CMD_GET_FD_BY_ID, b->attr, 128);

	memset(b->attr, 0, sizeof(b->attr));
	b->key = strtoul(argv[3], NULL, 0);
	b->value = strtoull(argv[4], NULL, 0);
	*(uint32_t *)b->attr = (uint32_t)fd;
	p = (uintptr_t)&b->key;
	memcpy(b->attr + 8, &p, 8);
	p = (uintptr_t)&b->value;
	memcpy(b->attr + 16, &p, 8);
	upd = call(CMD_UPDATE, b->attr, 32);

	p = 1; /* an address no process can read */
	memcpy(b->attr + 8, &p, 8);
	bad = call(CMD_UPDATE, b->attr, 32);

	printf("fd=%ld update=%ld badkey=%ld\n", fd, upd, bad);
	return 0;
}

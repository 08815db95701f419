// mmapmap: maps a BPF map into memory through a chosen syscall, for the
// sensor's tests of map_mmap on every ABI.
//
//   mmapmap MODE MAP_ID
//
// MODE is "libc" (mmap(2) as the build's C library issues it: mmap on
// 64-bit builds, mmap2 on 32-bit ones, x86 or AArch32), "old" (old_mmap,
// number 90, taking a struct; 32-bit x86 builds only) or "int80" (a 64-bit
// x86 process calling mmap2 through int $0x80). It gets an fd for MAP_ID (MAP_GET_FD_BY_ID), maps one
// page of it shared and writable, and prints
//   fd=N addr=A
// where A is the address returned, or a negative errno. MAP_ID "fd3" maps
// the inherited fd 3 instead, without any bpf(2) call.
#define _GNU_SOURCE
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

enum { CMD_GET_FD_BY_ID = 14 };

int main(int argc, char **argv)
{
	uint8_t attr[128];
	long fd;
	long long addr; /* an address above 2 GiB is positive on 32-bit builds too */

	if (argc != 3) {
		fprintf(stderr, "usage: mmapmap libc|old|int80 MAP_ID\n");
		return 2;
	}
	memset(attr, 0, sizeof(attr));
	*(uint32_t *)attr = strtoul(argv[2], NULL, 0);
	if (!strcmp(argv[2], "fd3"))
		fd = 3; /* inherited: the process makes no bpf(2) call at all */
	else
		fd = syscall(SYS_bpf, CMD_GET_FD_BY_ID, attr, sizeof(attr));
	if (fd < 0) {
		printf("fd=%d addr=0\n", -errno);
		return 0;
	}
	if (!strcmp(argv[1], "old")) {
#ifdef __i386__
		uint32_t args[6] = {0, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, (uint32_t)fd, 0};

		long r = syscall(90, args);

		addr = r == -1 ? -errno : (long long)(uint32_t)r;
#else
		fprintf(stderr, "old_mmap needs a -m32 build\n");
		return 2;
#endif
	} else if (!strcmp(argv[1], "int80")) {
#ifdef __x86_64__
		long r;

		/* mmap2(addr, len, prot, flags, fd, pgoff): ebx, ecx, edx, esi, edi, ebp */
		__asm__ volatile("push %%rbp\n\t"
				 "xor %%ebp, %%ebp\n\t"
				 "int $0x80\n\t"
				 "pop %%rbp"
				 : "=a"(r)
				 : "a"(192), "b"(0), "c"(4096), "d"(PROT_READ | PROT_WRITE), "S"(MAP_SHARED), "D"(fd)
				 : "memory", "r8", "r9", "r10", "r11");
		addr = (int)r < 0 && (int)r > -4096 ? (int)r : (long long)(uint32_t)r;
#else
		fprintf(stderr, "int80 is for 64-bit builds\n");
		return 2;
#endif
	} else {
		void *p = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);

		addr = p == MAP_FAILED ? -errno : (long long)(uintptr_t)p;
	}
	printf("fd=%ld addr=%lld\n", fd, addr);
	return 0;
}

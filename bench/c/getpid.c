// getpid: the bpfmon benchmark's "other syscalls" load.
//
//   getpid COUNT
//
// Makes COUNT getpid(2) calls through syscall(2) (no libc caching), timed
// with CLOCK_MONOTONIC, and prints "ns_per_op=X.X".
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

int main(int argc, char **argv)
{
	if (argc != 2) {
		fprintf(stderr, "usage: getpid COUNT\n");
		return 2;
	}
	long long count = strtoll(argv[1], NULL, 10);
	if (count < 1) {
		fprintf(stderr, "getpid: bad COUNT\n");
		return 2;
	}
	struct timespec a, b;
	clock_gettime(CLOCK_MONOTONIC, &a);
	for (long long i = 0; i < count; i++)
		syscall(SYS_getpid);
	clock_gettime(CLOCK_MONOTONIC, &b);
	double ns = (double)(b.tv_sec - a.tv_sec) * 1e9 + (double)(b.tv_nsec - a.tv_nsec);
	printf("ns_per_op=%.1f\n", ns / (double)count);
	return 0;
}

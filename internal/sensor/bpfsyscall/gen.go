package bpfsyscall

// Two builds of bpf/syscall.c: bpfbtf (tp_btf programs with direct BTF loads,
// Linux 5.11+) and bpf (raw tracepoints with probe reads, the fallback).
//go:generate go tool bpf2go -cc clang -cflags "-O2 -g -Wall -Werror" -target amd64,arm64 bpf ../../../bpf/syscall.c -- -I../../../bpf/include
//go:generate go tool bpf2go -cc clang -cflags "-O2 -g -Wall -Werror -DBPFMON_BTF" -target amd64,arm64 bpfbtf ../../../bpf/syscall.c -- -I../../../bpf/include

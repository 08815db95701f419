package bpfsyscall

//go:generate go tool bpf2go -cc clang -cflags "-O2 -g -Wall -Werror" -target amd64 -type event -type map_info bpf ../../../bpf/syscall.c -- -I../../../bpf/include

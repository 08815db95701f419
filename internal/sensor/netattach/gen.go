package netattach

//go:generate go tool bpf2go -cc clang -cflags "-O2 -g -Wall -Werror" -target amd64,arm64 netattach ../../../bpf/netattach.c -- -I../../../bpf/include

package lsm

//go:generate go tool bpf2go -cc clang -cflags "-O2 -g -Wall -Werror" -target amd64 lsm ../../../bpf/lsm.c -- -I../../../bpf/include

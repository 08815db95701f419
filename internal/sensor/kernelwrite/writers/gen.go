package writers

//go:generate go tool bpf2go -cc clang -cflags "-O2 -g -Wall -Werror" -target amd64,arm64 writers ../../../../bpf/writers.c -- -I../../../../bpf/include

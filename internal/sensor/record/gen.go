package record

// The protocol's types and the ring buffer's definition, from bpf/record.c.
//go:generate go tool bpf2go -cc clang -cflags "-O2 -g -Wall -Werror" -target amd64,arm64 record ../../../bpf/record.c -- -I../../../bpf/include

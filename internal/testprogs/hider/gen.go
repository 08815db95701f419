// Package hider holds a BPF program that hides its own map from bpf(2)'s
// listing the way public eBPF rootkits do (bpf_probe_write_user on the
// bpf_attr of GET_NEXT_ID and GET_FD_BY_ID, from a tracepoint on the bpf
// syscall), for the tests of the cross-view check.
package hider

//go:generate go tool bpf2go -cc clang -cflags "-O2 -g -Wall -Werror" -target amd64,arm64 hider ../../../bpf/hider.c -- -I../../../bpf/include

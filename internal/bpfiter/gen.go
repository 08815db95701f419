// Package bpfiter lists every BPF map and program through the kernel's
// bpf_map and bpf_prog iterators (Linux 5.8+ and 5.9+), which walk the
// kernel's own idr. It exists for the inventory's cross-view check: a
// rootkit that hides its objects by rewriting the bpf_attr of
// BPF_{MAP,PROG}_GET_NEXT_ID and failing GET_FD_BY_ID does not reach this
// walk, which uses neither command.
package bpfiter

//go:generate go tool bpf2go -cc clang -cflags "-O2 -g -Wall -Werror" -target amd64,arm64 iterids ../../bpf/iterids.c -- -I../../bpf/include

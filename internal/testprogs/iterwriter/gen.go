// Package iterwriter holds a BPF iterator program that rewrites every value
// of the map it is attached to, for the tests of the iterator write path.
package iterwriter

//go:generate go tool bpf2go -cc clang -cflags "-O2 -g -Wall -Werror" -target amd64,arm64 iterwriter ../../../bpf/iterwriter.c -- -I../../../bpf/include

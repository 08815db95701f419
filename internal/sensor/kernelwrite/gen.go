package kernelwrite

// One object holds both kinds of hook (fexit and kprobe); the loader picks
// per kernel and per function which programs to load.
//go:generate go tool bpf2go -cc clang -cflags "-O2 -g -Wall -Werror" -target amd64,arm64 kw ../../../bpf/kernelwrite.c -- -I../../../bpf/include

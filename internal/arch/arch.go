// Package arch names what differs per architecture on the Go side: the
// syscall ABIs the syscall sensor tells apart, and the kernel option that
// provides the 32-bit one. The BPF side's registers and syscall numbers
// are bpf/include/arch.h's; the constants live in build-tagged files, as
// the BPF objects bpf2go emits per target do.
package arch

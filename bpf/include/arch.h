/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * What differs between the architectures bpfmon's BPF programs are built
 * for, in one place: the registers (struct pt_regs, for CO-RE), which of
 * them carry a syscall's number and arguments and a function's arguments,
 * the syscall numbers of both syscall ABIs (native and 32-bit compat), and
 * how a task is told to be in a compat syscall.
 *
 * bpf2go defines __TARGET_ARCH_x86 or __TARGET_ARCH_arm64 for each object it
 * builds (see the -target of every gen.go). Included by kernel.h; the macros
 * that read (COMPAT_SYSCALL) use KREAD from common.h, expanded where used.
 *
 * Register macros name a field of struct pt_regs, to be read with KREAD or
 * BPF_CORE_READ (KREAD(regs, SYS_ARG1)) or through a typed pointer
 * (regs->SYS_NR). SYS_ARGn are the native syscall ABI's arguments,
 * COMPAT_ARGn the 32-bit ABI's, FN_ARGn a kernel function's (at a kprobe).
 */
#ifndef BPFMON_ARCH_H
#define BPFMON_ARCH_H

#if defined(__TARGET_ARCH_x86)

/* x86-64 pt_regs: the syscall arguments are read from here. */
struct pt_regs {
	unsigned long di;
	unsigned long si;
	unsigned long dx;
	unsigned long cx;
	unsigned long r8;
	unsigned long r10;
	unsigned long bx;
	unsigned long orig_ax;
	unsigned long sp;
} __attribute__((preserve_access_index));

/* thread_info.status carries TS_COMPAT while a 32-bit syscall is active. */
struct thread_info {
	__u32 status;
} __attribute__((preserve_access_index));

#define SYS_NR orig_ax
#define SYS_ARG1 di
#define SYS_ARG2 si
#define SYS_ARG3 dx
#define SYS_ARG4 r10
#define SYS_ARG5 r8
/* int $0x80, sysenter: ebx, ecx, edx, esi, edi */
#define COMPAT_ARG1 bx
#define COMPAT_ARG2 cx
#define COMPAT_ARG3 dx
#define COMPAT_ARG4 si
#define COMPAT_ARG5 di
#define FN_ARG1 di
#define FN_ARG2 si
#define FN_ARG3 dx
#define FN_ARG4 cx
#define FN_SP sp
/* A kprobe at a function's entry: the return address is on the stack
 * (at sp), which the stack walk reads; no register holds it. */
#define FN_CALLER(ctx) 0

/* arch/x86/entry/syscalls/syscall_64.tbl and syscall_32.tbl */
#define NR_BPF_NATIVE 321 /* x86-64 */
#define NR_BPF_COMPAT 357 /* i386 / IA32 emulation */
#define NR_MMAP_NATIVE 9
#define NR_MMAP2_COMPAT 192   /* mmap2(addr, len, prot, flags, fd, pgoff) */
#define NR_OLD_MMAP_COMPAT 90 /* old_mmap(struct mmap_arg_struct *) */
#define NR_PROCESS_VM_WRITEV_NATIVE 311
#define NR_PROCESS_VM_WRITEV_COMPAT 348

/* The ABI of the syscall task t is in, whatever the task's own: a 64-bit
 * task entering through int $0x80 is in a compat syscall. x86 keeps it in
 * thread_info.status (TS_COMPAT, arch/x86/include/asm/thread_info.h),
 * which the entry code sets per syscall; regs is not read. */
#define TS_COMPAT 0x0002
#define COMPAT_SYSCALL(t, regs) (KREAD(t, thread_info.status) & TS_COMPAT)

/* fx_caller (kernelwrite.c): where an fexit trampoline keeps the hooked
 * function's return address, in bytes from its ctx: after the nargs
 * arguments, the return value, the trampoline's saved frame pointer and
 * its own return address (arch/x86/net/bpf_jit_comp.c). */
#define TRAMP_CALLER_OFF(nargs) (8 * ((nargs) + 3))

#elif defined(__TARGET_ARCH_arm64)

/* arm64 pt_regs (arch/arm64/include/asm/ptrace.h): the user registers
 * (struct user_pt_regs, uapi) first, then the syscall's first argument
 * (x0 is overwritten by the return value) and its number. Declared with
 * the kernel's anonymous union, which CO-RE matches member by member. */
struct user_pt_regs {
	__u64 regs[31];
	__u64 sp;
	__u64 pc;
	__u64 pstate;
} __attribute__((preserve_access_index));

struct pt_regs {
	union {
		struct user_pt_regs user_regs;
		struct {
			__u64 regs[31];
			__u64 sp;
			__u64 pc;
			__u64 pstate;
		};
	};
	__u64 orig_x0;
	__s32 syscallno;
} __attribute__((preserve_access_index));

/* Not read on arm64 (see COMPAT_SYSCALL); task_struct embeds it. */
struct thread_info {
	unsigned long flags;
} __attribute__((preserve_access_index));

/* Both ABIs pass arguments in x0-x5 (AArch32: r0-r5, which the kernel
 * keeps in regs[0..5]) and the number in x8 (r7), kept in syscallno. */
#define SYS_NR syscallno
#define SYS_ARG1 orig_x0
#define SYS_ARG2 regs[1]
#define SYS_ARG3 regs[2]
#define SYS_ARG4 regs[3]
#define SYS_ARG5 regs[4]
#define COMPAT_ARG1 orig_x0
#define COMPAT_ARG2 regs[1]
#define COMPAT_ARG3 regs[2]
#define COMPAT_ARG4 regs[3]
#define COMPAT_ARG5 regs[4]
#define FN_ARG1 regs[0]
#define FN_ARG2 regs[1]
#define FN_ARG3 regs[2]
#define FN_ARG4 regs[3]
#define FN_SP sp
/* A kprobe at a function's entry: the return address is still in the link
 * register (x30); the function saves it in its frame record only after,
 * so the kernel's stack walk from these registers skips the caller. */
#define FN_CALLER(ctx) ((ctx)->regs[30])
#define CALLER_NOT_ON_STACK

/* Native: include/uapi/asm-generic/unistd.h. Compat (AArch32, the ARM
 * EABI): arch/arm64/include/asm/unistd32.h, which follows
 * arch/arm/tools/syscall.tbl. The EABI has no old_mmap (number 90 is the
 * OABI's only), so NR_OLD_MMAP_COMPAT is left undefined. */
#define NR_BPF_NATIVE 280
#define NR_BPF_COMPAT 386
#define NR_MMAP_NATIVE 222
#define NR_MMAP2_COMPAT 192 /* mmap2(addr, len, prot, flags, fd, pgoff) */
#define NR_PROCESS_VM_WRITEV_NATIVE 271
#define NR_PROCESS_VM_WRITEV_COMPAT 377

/* A compat syscall on arm64 is one made from AArch32: the kernel takes the
 * compat syscall table exactly when the saved PSTATE says the task ran
 * in AArch32 (PSR_MODE32_BIT, arch/arm64/include/uapi/asm/ptrace.h: part
 * of the architecture and the uapi). The task's TIF_32BIT flag would say
 * the same, but its bit is no ABI (22 up to at least 6.12, renumbered by
 * the generic TIF bits), so regs, the task's user registers, is read. */
#define PSR_MODE32_BIT 0x00000010
#define COMPAT_SYSCALL(t, regs) (KREAD(regs, pstate) & PSR_MODE32_BIT)

/* TRAMP_CALLER_OFF is left undefined: arm64's trampoline frame
 * (arch/arm64/net/bpf_jit_comp.c) has callee-saved registers and padding
 * between the arguments and the return addresses, and fx_caller reports
 * no caller, which costs a stack walk per write of the bpf(2) command
 * code instead of the shortcut. */

#else
#error "bpfmon's BPF programs are built for x86 (-target amd64) or arm64 (-target arm64): bpf/include/arch.h"
#endif

#endif /* BPFMON_ARCH_H */

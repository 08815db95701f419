// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * bpfmon lineage sensor: how processes came to be, for the owner line.
 *
 * An owner is an executable in a cgroup; a process that merely runs that
 * executable in that cgroup may not be the owner's work. These programs
 * record, at the moment the kernel does it, each way a process can become
 * an owner's look-alike without being one:
 *   cgroup_attach_task  a process moved into a cgroup by anyone but the
 *                       service manager (the host's pid 1);
 *   sched_process_fork  a child born in another cgroup than its parent
 *                       (clone3 CLONE_INTO_CGROUP), again but by pid 1;
 *   sched_process_exec  an exec whose environment asks the dynamic loader
 *                       to load code (LD_PRELOAD, LD_AUDIT,
 *                       LD_LIBRARY_PATH), or too large to inspect;
 *   ptrace              a successful PTRACE_ATTACH, PTRACE_SEIZE (every
 *                       tracee the caller now traces) or PTRACE_TRACEME;
 *   process_vm_writev   a successful write into another process's memory;
 *   openat(2)           /proc/PID/mem (or /proc/PID/task/TID/mem) opened
 *                       for writing.
 * Each marks the process tainted in the tainted map, and everything it
 * starts after (fork), until it exits; each writes a struct lineage_rec.
 * So do a tainted process's forks, execs and exit, so that user space
 * (internal/alert) knows at every bpf(2) call whether the caller is
 * tainted, in ring order. The targets of process_vm_writev and /proc/PID/mem
 * are pids as the caller passed them: the record says whether the caller
 * is in the host's pid namespace, where they are the kernel's.
 *
 * All plain tracepoints and raw tracepoints, which every supported kernel
 * has; the syscall tracepoints fire for 64-bit callers only (see the
 * limits in docs/limits.md).
 */
#include "kernel.h"
#include "bpf_helpers.h"
#include "bpf_core_read.h"
#include "common.h"
#include "record.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

/* lineage_rec.lkind: what happened. */
enum lineage_kind {
	LIN_JOIN = 1,       /* target was moved into cgroup dst_cgroup by the actor */
	LIN_CLONE_INTO = 2, /* target was born into another cgroup than its parent, the actor */
	LIN_LOADER = 3,     /* the actor exec'd with loader variables (detail: LOADER_* bits) */
	LIN_TRACEME = 4,    /* the actor asked its parent to trace it */
	LIN_PTRACE = 5,     /* the actor attached to target (detail: the request) */
	LIN_VM_WRITE = 6,   /* the actor wrote target's memory (process_vm_writev) */
	LIN_MEM_OPEN = 7,   /* the actor opened target's /proc/PID/mem for writing */
	LIN_FORK = 8,       /* a tainted actor started target */
	LIN_EXEC = 9,       /* a tainted actor exec'd */
	LIN_EXIT = 10,      /* a tainted actor's process exited */
};

/* lineage_rec.detail for LIN_LOADER. */
enum loader_var {
	LOADER_PRELOAD = 1,
	LOADER_AUDIT = 2,
	LOADER_LIBRARY_PATH = 4,
	LOADER_UNINSPECTED = 8, /* the environment was too large to read whole */
};

/* lineage_rec.flags */
enum lineage_flag {
	LFLAG_TARGET_PID_ONLY = 1, /* target holds only a pid, as passed */
	LFLAG_HOST_PIDNS = 2,      /* the actor is in the host's pid namespace */
};

enum lineage_stat {
	LINSTAT_LOST = 0,    /* records the ring buffer could not take */
	LINSTAT_UNTAINT = 1, /* taints not kept: the tainted map was full */
	LINSTAT_MAX = 2,
};

/* The process a record is about, when it is not the actor. */
struct lineage_target {
	__u32 pid; /* thread group id, or with LFLAG_TARGET_PID_ONLY the pid passed */
	__u32 ppid;
	__u32 uid;
	__u32 gid;
	__u64 start_time;
	__u64 exe_ino;
	__u64 exe_dev;
	__u64 cgroup_id;
	char comm[16];
};

/* REC_LINEAGE */
struct lineage_rec {
	struct rec_hdr hdr;
	struct task_info task; /* the actor: the task that did it */
	__u32 lkind;           /* enum lineage_kind */
	__u32 detail;
	__u32 flags; /* enum lineage_flag */
	__u32 _pad;
	__u64 dst_cgroup; /* LIN_JOIN, LIN_CLONE_INTO: the cgroup entered */
	struct lineage_target target;
};

/* A tainted process: the process's start time (a pid is reused), and the
 * first reason. */
struct taint {
	__u64 start_time;
	__u32 lkind;
	__u32 _pad;
};

volatile const __u32 self_tgid = 0;
volatile const struct lineage_rec lineage_rec_layout = {};
volatile const enum lineage_kind lineage_kind_layout = 0;
volatile const enum loader_var loader_var_layout = 0;
volatile const enum lineage_flag lineage_flag_layout = 0;
volatile const enum lineage_stat lineage_stat_layout = 0;

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1 << 16);
	__type(key, __u32); /* tgid */
	__type(value, struct taint);
} tainted SEC(".maps");

/* Arguments of the syscalls whose result decides, by thread. */
struct pending_call {
	__u32 kind; /* LIN_PTRACE, LIN_TRACEME, LIN_VM_WRITE, LIN_MEM_OPEN */
	__u32 detail;
	__u32 pid;
	__u32 _pad;
};

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 4096);
	__type(key, __u32); /* tid */
	__type(value, struct pending_call);
} pending SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, LINSTAT_MAX);
	__type(key, __u32);
	__type(value, __u64);
} linstats SEC(".maps");

#define ENV_BUF 4096
#define ENV_READS 256

/* The environment scan's state, in map memory rather than registers: the
 * verifier then sees the same state at the end of every path through an
 * iteration, and walks the loop once per iteration instead of once per
 * combination of findings. */
struct env_scan {
	char buf[ENV_BUF];
	__u32 vars;
	__u32 at_start;
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct env_scan);
} envbuf SEC(".maps");

#define PTRACE_TRACEME 0
#define PTRACE_ATTACH 16
#define PTRACE_SEIZE 0x4206
#define O_ACCMODE 3

static __always_inline __u64 leader_start(struct task_struct *t)
{
	return BPF_CORE_READ(t, group_leader, start_time);
}

static __always_inline void fill_target(struct lineage_target *tg, struct task_struct *t)
{
	tg->pid = BPF_CORE_READ(t, tgid);
	tg->ppid = BPF_CORE_READ(t, real_parent, tgid);
	tg->uid = BPF_CORE_READ(t, cred, uid.val);
	tg->gid = BPF_CORE_READ(t, cred, gid.val);
	tg->start_time = leader_start(t);
	tg->exe_ino = exe_ino(t);
	tg->exe_dev = exe_dev(t);
	tg->cgroup_id = BPF_CORE_READ(t, cgroups, dfl_cgrp, kn, id);
	BPF_CORE_READ_INTO(&tg->comm, t, group_leader, comm);
}

/* taint marks t's process tainted; false when it already was. */
static __always_inline bool taint(struct task_struct *t, __u32 kind)
{
	__u32 tgid = BPF_CORE_READ(t, tgid);
	__u64 start = leader_start(t);
	struct taint *old = bpf_map_lookup_elem(&tainted, &tgid);
	struct taint v = {.start_time = start, .lkind = kind};

	if (old && old->start_time == start)
		return false;
	if (bpf_map_update_elem(&tainted, &tgid, &v, BPF_ANY) < 0)
		count_inc(&linstats, LINSTAT_UNTAINT);
	return true;
}

/* is_tainted reports whether t's process is tainted. */
static __always_inline bool is_tainted(struct task_struct *t)
{
	__u32 tgid = BPF_CORE_READ(t, tgid);
	struct taint *v = bpf_map_lookup_elem(&tainted, &tgid);

	/* Start time 0: marked by user space, which knew only the pid
	 * (process_vm_writev, /proc/PID/mem), whichever process has it. */
	return v && (v->start_time == 0 || v->start_time == leader_start(t));
}

/* send writes a record of kind about the current task, the actor. */
static __always_inline struct lineage_rec *reserve(__u32 kind)
{
	struct lineage_rec *r = bpf_ringbuf_reserve(&events, sizeof(*r), 0);
	struct task_struct *cur = current_task();
	__u64 pid_tgid = bpf_get_current_pid_tgid();

	if (!r) {
		count_inc(&linstats, LINSTAT_LOST);
		return 0;
	}
	__builtin_memset(r, 0, sizeof(*r));
	r->hdr.kind = REC_LINEAGE;
	r->hdr.ktime = bpf_ktime_get_boot_ns();
	fill_task(&r->hdr, &r->task, cur, pid_tgid);
	r->lkind = kind;
	if (BPF_CORE_READ(cur, thread_pid, level) == 0)
		r->flags |= LFLAG_HOST_PIDNS;
	return r;
}

static __always_inline bool is_self(void)
{
	return (bpf_get_current_pid_tgid() >> 32) == self_tgid;
}

SEC("raw_tracepoint/cgroup_attach_task")
int lineage_cgroup_attach(struct bpf_raw_tracepoint_args *ctx)
{
	struct cgroup *dst = (struct cgroup *)ctx->args[0];
	struct task_struct *t = (struct task_struct *)ctx->args[2];
	struct lineage_rec *r;

	if ((bpf_get_current_pid_tgid() >> 32) == 1 || is_self())
		return 0; /* the service manager starts services so */
	if (!taint(t, LIN_JOIN))
		return 0; /* one record per process, not per thread moved */
	r = reserve(LIN_JOIN);
	if (!r)
		return 0;
	r->dst_cgroup = BPF_CORE_READ(dst, kn, id);
	fill_target(&r->target, t);
	bpf_ringbuf_submit(r, rec_flags());
	return 0;
}

SEC("raw_tracepoint/sched_process_fork")
int lineage_fork(struct bpf_raw_tracepoint_args *ctx)
{
	struct task_struct *parent = (struct task_struct *)ctx->args[0];
	struct task_struct *child = (struct task_struct *)ctx->args[1];
	__u64 pcg, ccg;
	__u32 kind;
	struct lineage_rec *r;

	if (BPF_CORE_READ(child, pid) != BPF_CORE_READ(child, tgid))
		return 0; /* a thread: its process is the parent's */
	pcg = BPF_CORE_READ(parent, cgroups, dfl_cgrp, kn, id);
	ccg = BPF_CORE_READ(child, cgroups, dfl_cgrp, kn, id);
	if (is_tainted(parent))
		kind = LIN_FORK;
	else if (pcg != ccg && BPF_CORE_READ(parent, tgid) != 1 && !is_self())
		kind = LIN_CLONE_INTO;
	else
		return 0;
	taint(child, kind);
	r = reserve(kind);
	if (!r)
		return 0;
	r->dst_cgroup = ccg;
	fill_target(&r->target, child);
	/* The child's group_leader is itself; its start time is its own. */
	r->target.start_time = BPF_CORE_READ(child, start_time);
	bpf_ringbuf_submit(r, rec_flags());
	return 0;
}

/* Loader variables as the first 8 and next 8 bytes of an environment
 * string, little-endian, with masks for the bytes that count. */
#define W(a, b, c, d, e, f, g, h) \
	((__u64)(a) | (__u64)(b) << 8 | (__u64)(c) << 16 | (__u64)(d) << 24 | (__u64)(e) << 32 | (__u64)(f) << 40 | (__u64)(g) << 48 | (__u64)(h) << 56)

/* classify returns the LOADER_* bit of the environment string in buf (n
 * bytes read, NUL included) when it sets a loader variable to a value. */
static __always_inline __u32 classify(const char *buf, long n)
{
	__u64 w0 = *(const __u64 *)buf;
	__u64 w1 = *(const __u64 *)(buf + 8);
	__u64 w2 = *(const __u64 *)(buf + 16);

	if (w0 == W('L', 'D', '_', 'P', 'R', 'E', 'L', 'O') && (w1 & 0xffffff) == W('A', 'D', '=', 0, 0, 0, 0, 0) && n > 12)
		return LOADER_PRELOAD;
	if (w0 == W('L', 'D', '_', 'A', 'U', 'D', 'I', 'T') && (w1 & 0xff) == '=' && n > 10)
		return LOADER_AUDIT;
	if (w0 == W('L', 'D', '_', 'L', 'I', 'B', 'R', 'A') && w1 == W('R', 'Y', '_', 'P', 'A', 'T', 'H', '=') && (w2 & 0xff) != 0)
		return LOADER_LIBRARY_PATH;
	return 0;
}

/* loader_vars returns the LOADER_* bits of the loader variables with a
 * value in the current task's new environment. */
static __always_inline __u32 loader_vars(struct task_struct *t)
{
	__u32 zero = 0;
	struct env_scan *sc = bpf_map_lookup_elem(&envbuf, &zero);
	unsigned long p = BPF_CORE_READ(t, mm, env_start);
	unsigned long end = BPF_CORE_READ(t, mm, env_end);

	if (!sc)
		return LOADER_UNINSPECTED;
	sc->vars = 0;
	sc->at_start = 1;
	for (int i = 0; i < ENV_READS; i++) {
		long n;

		if (p >= end)
			return sc->vars;
		n = bpf_probe_read_user_str(sc->buf, ENV_BUF, (void *)p);
		if (n <= 0)
			return sc->vars | LOADER_UNINSPECTED;
		if (sc->at_start)
			sc->vars |= classify(sc->buf, n);
		/* n counts the NUL; a string longer than the buffer is read
		 * on from where the read stopped. */
		sc->at_start = n < ENV_BUF;
		p += n < ENV_BUF ? n : n - 1;
	}
	return p >= end ? sc->vars : sc->vars | LOADER_UNINSPECTED;
}

SEC("raw_tracepoint/sched_process_exec")
int lineage_exec(struct bpf_raw_tracepoint_args *ctx)
{
	struct task_struct *t = current_task();
	__u32 vars, kind;
	struct lineage_rec *r;

	if (is_self())
		return 0;
	vars = loader_vars(t);
	if (vars) {
		kind = LIN_LOADER;
		taint(t, kind);
	} else if (is_tainted(t)) {
		kind = LIN_EXEC;
	} else {
		return 0;
	}
	r = reserve(kind);
	if (!r)
		return 0;
	r->detail = vars;
	bpf_ringbuf_submit(r, rec_flags());
	return 0;
}

SEC("raw_tracepoint/sched_process_exit")
int lineage_exit(struct bpf_raw_tracepoint_args *ctx)
{
	struct task_struct *t = current_task();
	__u32 tgid = BPF_CORE_READ(t, tgid);
	struct lineage_rec *r;

	if (BPF_CORE_READ(t, pid) != tgid || !is_tainted(t))
		return 0;
	bpf_map_delete_elem(&tainted, &tgid);
	r = reserve(LIN_EXIT);
	if (r)
		bpf_ringbuf_submit(r, rec_flags());
	return 0;
}

/* The syscall tracepoints' contexts (the format files of
 * syscalls:sys_enter_* and sys_exit_*). */
struct sys_enter_ctx {
	__u64 common;
	__s32 nr;
	__u32 _pad;
	__u64 args[6];
};

struct sys_exit_ctx {
	__u64 common;
	__s32 nr;
	__u32 _pad;
	__s64 ret;
};

static __always_inline void stash(__u32 kind, __u32 detail, __u32 pid)
{
	__u32 tid = (__u32)bpf_get_current_pid_tgid();
	struct pending_call c = {.kind = kind, .detail = detail, .pid = pid};

	bpf_map_update_elem(&pending, &tid, &c, BPF_ANY);
}

static __always_inline struct pending_call *unstash(void)
{
	__u32 tid = (__u32)bpf_get_current_pid_tgid();

	return bpf_map_lookup_elem(&pending, &tid);
}

static __always_inline void forget(void)
{
	__u32 tid = (__u32)bpf_get_current_pid_tgid();

	bpf_map_delete_elem(&pending, &tid);
}

SEC("tracepoint/syscalls/sys_enter_ptrace")
int lineage_ptrace_enter(struct sys_enter_ctx *ctx)
{
	long req = ctx->args[0];

	if (is_self())
		return 0;
	if (req == PTRACE_ATTACH || req == PTRACE_SEIZE)
		stash(LIN_PTRACE, req, ctx->args[1]);
	else if (req == PTRACE_TRACEME)
		stash(LIN_TRACEME, req, 0);
	return 0;
}

#define MAX_TRACEES 8

/* ptrace_done handles a ptrace(2) call of request req that returned
 * ret. */
static __always_inline int ptrace_done(long req, long ret)
{
	struct task_struct *cur = current_task();
	struct list_head *head, *pos;
	struct lineage_rec *r;

	if (ret != 0 || (req != PTRACE_TRACEME && req != PTRACE_ATTACH && req != PTRACE_SEIZE))
		return 0;
	if (req == PTRACE_TRACEME) {
		taint(cur, LIN_TRACEME);
		r = reserve(LIN_TRACEME);
		if (r)
			bpf_ringbuf_submit(r, rec_flags());
		return 0;
	}
	/* Every task the caller traces now: the one just attached is among
	 * them, named by the kernel rather than by the pid passed. */
	head = (struct list_head *)((void *)cur + bpf_core_field_offset(struct task_struct, ptraced));
	pos = BPF_CORE_READ(cur, ptraced.next);
	for (int i = 0; i < MAX_TRACEES && pos && pos != head; i++) {
		struct task_struct *t = (void *)pos - bpf_core_field_offset(struct task_struct, ptrace_entry);

		if (taint(t, LIN_PTRACE)) {
			r = reserve(LIN_PTRACE);
			if (r) {
				r->detail = req;
				fill_target(&r->target, t);
				bpf_ringbuf_submit(r, rec_flags());
			}
		}
		bpf_probe_read_kernel(&pos, sizeof(pos), &pos->next);
	}
	return 0;
}

SEC("tracepoint/syscalls/sys_exit_ptrace")
int lineage_ptrace_exit(struct sys_exit_ctx *ctx)
{
	struct pending_call *c = unstash();
	__u32 req;

	if (!c)
		return 0;
	req = c->detail;
	forget();
	return ptrace_done(req, ctx->ret);
}

SEC("tracepoint/syscalls/sys_enter_process_vm_writev")
int lineage_vm_write_enter(struct sys_enter_ctx *ctx)
{
	if (!is_self())
		stash(LIN_VM_WRITE, 0, ctx->args[0]);
	return 0;
}

/* vm_write_done writes the record of a process_vm_writev into pid (as
 * passed) that returned ret. */
static __always_inline void vm_write_done(__u32 pid, long ret)
{
	__u32 kind = LIN_VM_WRITE;
	struct lineage_rec *r;

	if (ret <= 0)
		return;
	r = reserve(kind);
	if (!r)
		return;
	r->flags |= LFLAG_TARGET_PID_ONLY;
	r->target.pid = pid;
	if (r->flags & LFLAG_HOST_PIDNS) {
		/* The host's pid: mark its process from now on (start time
		 * 0: whichever has it; user space adds the process when the
		 * pid is one of its threads). */
		struct taint v = {.lkind = kind};

		bpf_map_update_elem(&tainted, &pid, &v, BPF_NOEXIST);
	}
	bpf_ringbuf_submit(r, rec_flags());
}

SEC("tracepoint/syscalls/sys_exit_process_vm_writev")
int lineage_vm_write_exit(struct sys_exit_ctx *ctx)
{
	struct pending_call *c = unstash();
	__u32 pid;

	if (!c)
		return 0;
	pid = c->pid;
	forget();
	vm_write_done(pid, ctx->ret);
	return 0;
}

/* proc_mem_pid returns the pid in path "/proc/PID/mem" or
 * "/proc/PID/task/TID/mem" (the process's), 0 for any other path. */
static __always_inline __u32 proc_mem_pid(const char *upath)
{
	char b[64] = {};
	__u32 pid = 0;
	int i, j;

	if (bpf_probe_read_user_str(b, 40, upath) < 10)
		return 0;
	if (b[0] != '/' || b[1] != 'p' || b[2] != 'r' || b[3] != 'o' || b[4] != 'c' || b[5] != '/')
		return 0;
	for (i = 6; i < 16; i++) {
		char ch = b[i];

		if (ch < '0' || ch > '9')
			break;
		pid = pid * 10 + (ch - '0');
	}
	if (i == 6 || i >= 16 || b[i] != '/')
		return 0;
	i++; /* below 17 */
	if (b[i & 31] == 'm' && b[(i + 1) & 31] == 'e' && b[(i + 2) & 31] == 'm' && b[(i + 3) & 31] == 0)
		return pid;
	if (b[i & 31] != 't' || b[(i + 1) & 31] != 'a' || b[(i + 2) & 31] != 's' || b[(i + 3) & 31] != 'k' || b[(i + 4) & 31] != '/')
		return 0;
	for (j = i + 5; j < i + 15; j++) {
		char ch = b[j & 31];

		if (ch < '0' || ch > '9')
			break;
	}
	j &= 31;
	if (b[j] == '/' && b[(j + 1) & 63] == 'm' && b[(j + 2) & 63] == 'e' && b[(j + 3) & 63] == 'm' && b[(j + 4) & 63] == 0)
		return pid;
	return 0;
}

SEC("tracepoint/syscalls/sys_enter_openat")
int lineage_openat_enter(struct sys_enter_ctx *ctx)
{
	__u32 pid;

	if ((ctx->args[2] & O_ACCMODE) == 0 || is_self())
		return 0; /* read-only: the common case, at the cost of a test */
	pid = proc_mem_pid((const char *)ctx->args[1]);
	if (pid)
		stash(LIN_MEM_OPEN, 0, pid);
	return 0;
}

/* mem_opened writes the record of /proc/PID/mem opened for writing as
 * file f (pid: the pid in the path, 0 when not known). */
static __always_inline int mem_opened(struct file *f, __u32 pid)
{
	struct task_struct *t = 0;
	struct mm_struct *mm;
	struct lineage_rec *r;

	/* The file of /proc/PID/mem holds the target's mm, and the mm
	 * its task (CONFIG_MEMCG): the kernel's answer, not the pid. */
	mm = f ? BPF_CORE_READ(f, private_data) : 0;
	if (mm && bpf_core_field_exists(mm->owner))
		t = BPF_CORE_READ(mm, owner);
	r = reserve(LIN_MEM_OPEN);
	if (!r)
		return 0;
	if (t) {
		taint(t, LIN_MEM_OPEN);
		fill_target(&r->target, t);
	} else {
		r->flags |= LFLAG_TARGET_PID_ONLY;
		r->target.pid = pid;
	}
	bpf_ringbuf_submit(r, rec_flags());
	return 0;
}

SEC("tracepoint/syscalls/sys_exit_openat")
int lineage_openat_exit(struct sys_exit_ctx *ctx)
{
	struct pending_call *c = unstash();
	__u32 pid;

	if (!c)
		return 0;
	pid = c->pid;
	forget();
	if (ctx->ret < 0)
		return 0;
	return mem_opened(fd_file(current_task(), ctx->ret), pid);
}

/*
 * The trampoline build of the syscall hooks, where the kernel allows
 * fexit: syscall tracepoints turn on the slow syscall path for every task
 * on the host (TIF_SYSCALL_TRACEPOINT), which the syscall sensor's fentry
 * build exists to avoid. An fexit program sees the call's arguments and
 * its result at once, so nothing is stashed. The targets are the
 * functions behind the syscalls rather than their entry points: every
 * syscall ABI (native, 32-bit compat) goes through them, and a kernel's
 * BTF can hold an entry point twice (Debian's 6.1 has two
 * __x64_sys_process_vm_writev), which cannot be attached to by name, and
 * their names differ per architecture.
 *   ptrace_attach, ptrace_traceme: PTRACE_ATTACH and PTRACE_SEIZE with
 *     the task attached to, and PTRACE_TRACEME;
 *   mm_access: the check of process_vm_writev (and others: told apart by
 *     the access mode and the syscall's number) with the task written
 *     to; process_vm_rw itself has seven arguments, which trampolines
 *     before Linux 6.4 cannot take;
 *   mem_open: the open operation of /proc/PID/mem (and task/TID/mem),
 *     whatever syscall or path opened it, with the file.
 */
#define FMODE_WRITE 0x2

SEC("fexit/ptrace_attach")
int lineage_fx_ptrace_attach(__u64 *ctx)
{
	/* (struct task_struct *task, long request, unsigned long addr,
	 *  unsigned long flags) = int */
	struct task_struct *t = (struct task_struct *)ctx[0];
	long req = (long)ctx[1];
	struct lineage_rec *r;

	if ((int)ctx[4] != 0 || is_self() || !taint(t, LIN_PTRACE))
		return 0;
	r = reserve(LIN_PTRACE);
	if (r) {
		r->detail = req;
		fill_target(&r->target, t);
		bpf_ringbuf_submit(r, rec_flags());
	}
	return 0;
}

SEC("fexit/ptrace_traceme")
int lineage_fx_traceme(__u64 *ctx)
{
	if ((int)ctx[0] != 0 || is_self())
		return 0;
	return ptrace_done(PTRACE_TRACEME, 0);
}

/* mm_access's mode from process_vm_readv and process_vm_writev.
 * process_vm_writev's numbers, native and 32-bit ABI, are arch.h's. */
#define PTRACE_MODE_ATTACH_REALCREDS 0x12 /* PTRACE_MODE_ATTACH | PTRACE_MODE_REALCREDS */
#define MAX_ERRNO 4095

SEC("fexit/mm_access")
int lineage_fx_vm_write(__u64 *ctx)
{
	/* (struct task_struct *task, unsigned int mode) = struct mm_struct *:
	 * the memory process_vm_writev is about to write, granted. The mark
	 * is set when the kernel grants the access, before the bytes are
	 * copied. */
	struct task_struct *t = (struct task_struct *)ctx[0];
	unsigned long mm = ctx[2];
	struct lineage_rec *r;
	long nr;

	if ((__u32)ctx[1] != PTRACE_MODE_ATTACH_REALCREDS || !mm || mm >= (unsigned long)-MAX_ERRNO)
		return 0;
	nr = BPF_CORE_READ((struct pt_regs *)bpf_task_pt_regs(bpf_get_current_task_btf()), SYS_NR);
	if ((nr != NR_PROCESS_VM_WRITEV_NATIVE && nr != NR_PROCESS_VM_WRITEV_COMPAT) || is_self())
		return 0;
	if (!taint(t, LIN_VM_WRITE))
		return 0;
	r = reserve(LIN_VM_WRITE);
	if (r) {
		fill_target(&r->target, t);
		bpf_ringbuf_submit(r, rec_flags());
	}
	return 0;
}

SEC("fexit/mem_open")
int lineage_fx_mem_open(__u64 *ctx)
{
	struct file *f = (struct file *)ctx[1];
	int ret = (int)ctx[2];

	if (ret != 0 || is_self() || !(BPF_CORE_READ(f, f_mode) & FMODE_WRITE))
		return 0;
	return mem_opened(f, 0);
}

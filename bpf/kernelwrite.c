// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * bpfmon kernel-side sensor: writes to maps made inside the kernel, above all
 * by BPF programs through the map helpers, which make no system call and so
 * escape every syscall hook.
 *
 * Hooks: the map types' own operations (array_map_update_elem,
 * htab_map_update_elem, trie_delete_elem, queue_stack_map_push_elem, ...).
 * The verifier turns a program's bpf_map_update_elem() on a known map into a
 * direct call of map->ops->map_update_elem, so the generic helper is often
 * not called at all: the operations are the one place every write passes.
 * bpf(2) updates pass there too (on non-per-CPU maps), which lets the
 * syscall sensor's event carry the kernel's own copy of key and value.
 * Local-storage maps are written by their get/delete helpers, hooked too.
 *
 * Each function is hooked by fexit where the kernel has BPF trampolines
 * (then the operation's result is known), else by a kprobe; the loader
 * chooses per kernel and per function, so this file holds both kinds.
 *
 * Who wrote: a record carries the return addresses on the kernel stack.
 * User space resolves them against the JIT'd images of loaded programs,
 * which it learns from bpf_prog_info at start and afterwards from the hooks
 * on bpf_prog_kallsyms_add and bpf_prog_kallsyms_del_all below, in order
 * with the write records in the same ring buffer: the first frame inside a
 * program is the writer. No frame in a program means bpf(2) or the kernel.
 *
 * What is itemized and what is counted (selection, decided here before
 * anything is captured): a write to a selected map (kw_select: protected or
 * chosen with --map-id, filled by user space), a bpf(2) command's own write,
 * a write with no program frame, and the first write of each (map, writer)
 * pair become a full record as above. Every later write of a known pair to
 * an unselected map is only counted, per CPU, in kw_counts, which user
 * space drains into summaries. The writer is the hooked function's return
 * address where it lies outside the core kernel (a program's JIT'd call
 * site, for the direct calls the verifier makes of a known map's
 * operations): no stack walk. Otherwise (a helper between, or arm64's
 * fexit, whose trampoline frame is not read) the stack is walked and the
 * writer is the first frame above the hooked function outside the core
 * kernel. itemize_all restores one record per write (--kernel-writes all).
 */
#include "kernel.h"
#include "bpf_helpers.h"
#include "bpf_core_read.h"
#include "common.h"
#include "record.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

/* Limits (MAX_CAPTURE, the bytes of a key or value, is record.h's). */
enum kw_limits {
	/* Return addresses kept from the kernel stack, innermost first. A
	 * tracing program's task-storage write on arm64 needs 7: bpfmon's
	 * program (listed twice there), its trampoline, the hooked function,
	 * __bpf_task_storage_get, the helper, then the writer. */
	KW_FRAMES = 8,
	PROG_FUNCS = 8,  /* functions of a program whose images a REC_PROG carries */
	SYS_CALLERS = 8, /* code ranges of the bpf(2) command code (sys_caller_lo/hi) */
	RECENT_LOADS = 16, /* program images loaded last, kept to retire known pairs (kw_gen) */
	KW_CACHE_SLOTS = 64, /* slots of each CPU's cache of counts (kw_cache) */
};

/* kwrite_rec.op: what the hooked map operation does. */
enum kw_op {
	KOP_UPDATE = 1, /* map_update_elem (key, value) */
	KOP_DELETE = 2, /* map_delete_elem (key) */
	KOP_PUSH = 3,   /* map_push_elem: queue, stack, bloom filter (value) */
	KOP_POP = 4,    /* map_pop_elem: queue, stack (value removed) */
};

/* kwrite_rec.flags */
enum kw_flag {
	KF_RESULT = 1 << 0,      /* result holds the operation's return (fexit) */
	KF_IRQ = 1 << 1,         /* ran outside process context: no task */
	KF_KEY_TRUNC = 1 << 2,   /* key longer than the capture limit */
	KF_VALUE_TRUNC = 1 << 3, /* value longer than the capture limit */
	KF_KEY_FAULT = 1 << 4,   /* key unreadable */
	KF_VALUE_FAULT = 1 << 5, /* value unreadable */
	KF_ALL_CPUS = 1 << 6,    /* value holds every CPU's value (bpf(2) on a per-CPU map) */
	KF_OWNER_KEY = 1 << 7,   /* local storage: the key is the owner's id, not map key bytes */
	KF_SYSCALL = 1 << 8,     /* called by the bpf(2) command code: no stack walked */
};

/* on_write's kf: the program nests into itself when inserting into
 * kw_known (NEST_HTAB) or kw_counts (NEST_PCPU); not record flags. */
#define NEST_HTAB (1U << 30)
#define NEST_PCPU (1U << 31)
#define NEST_KPROBE (1U << 29) /* the program is a kprobe */
#define NEST_MASK (NEST_HTAB | NEST_PCPU | NEST_KPROBE)

/* Counters in the kstats map. */
enum kw_stat {
	KSTAT_LOST = 0,      /* writes not reported: the ring buffer was full */
	KSTAT_PROG_LOST = 1, /* program load/free records lost: attribution must verify */
	KSTAT_SYSCALL = 2,   /* writes told from the caller's address to be bpf(2)'s own */
	KSTAT_COUNT_LOST = 3, /* counted writes whose count could not be kept: kw_counts full */
	KSTAT_UNUSED = 4,
	KSTAT_KNOWN_FULL = 5, /* first sightings not remembered (kw_known full): itemized again */
	KSTAT_WALKED = 6,     /* counted writes whose writer took a stack walk to find */
	/* bpfmon's own inserts that its running fexit program missed: the
	 * program on htab_map_update_elem inserting into kw_known (a hash),
	 * the one on htab_percpu_map_update_elem into kw_counts. The kernel
	 * counts each as a recursion miss, which is no write lost: user
	 * space subtracts them. */
	KSTAT_NESTED = 7,
	/* The same from a kprobe, whose inserts a kprobe on
	 * htab_map_update_elem (kw_known) or htab_percpu_map_update_elem
	 * (kw_counts) misses: subtracted where those are kprobes. */
	KSTAT_NESTED_KP_HTAB = 8,
	KSTAT_NESTED_KP_PCPU = 9,
	KSTAT_MAX = 10,
};

/* REC_KWRITE: one write seen by a kernel hook. */
struct kwrite_rec {
	struct rec_hdr hdr;
	struct task_info task; /* zero with KF_IRQ */
	__u32 op;              /* enum kw_op */
	__u32 flags;           /* enum kw_flag */
	__s64 result;          /* with KF_RESULT */
	__u64 elem_flags;      /* update/push flags as passed */
	__u32 key_len;         /* bytes of key in data[] */
	__u32 value_len;       /* bytes of value after the key */
	__u32 key_total;
	__u32 value_total;
	__u32 nframes;
	__u32 _pad;
	__u64 frames[KW_FRAMES];
	struct map_info map;
	/* followed by data: key, then value */
};

/* REC_PROG, REC_PROG_GONE: a program loaded or being freed, with the
 * images of its functions; a program with more than PROG_FUNCS is
 * completed from its bpf_prog_info. */
struct kprog_rec {
	struct rec_hdr hdr; /* no thread */
	__u32 id;
	__u32 type;     /* enum bpf_prog_type */
	__u32 nfuncs;   /* images below: the main function first */
	__u32 func_cnt; /* the kernel's count of functions (0: just the main one) */
	__u8 tag[8];
	char name[16];
	__u64 start[PROG_FUNCS];
	__u32 len[PROG_FUNCS];
};

/* Configuration, set by the loader; .rodata is frozen at load. */
volatile const __u32 capture_limit = 4096;
volatile const __u32 possible_cpus = 1;
/* Where the functions of the bpf(2) command code lie that call a map's
 * operations themselves (bpf_map_update_value, map_delete_elem, the
 * generic batch functions, ...), from kallsyms; empty ranges match
 * nothing. */
volatile const __u64 sys_caller_lo[SYS_CALLERS] = {};
volatile const __u64 sys_caller_hi[SYS_CALLERS] = {};
/* --kernel-writes all: itemize every write, count none. */
volatile const __u32 itemize_all = 0;
/* The slots of kw_cache in use, less one (a power of two less one, at
 * most KW_CACHE_SLOTS - 1; the tests make it 0: every pair shares one). */
volatile const __u32 cache_mask = KW_CACHE_SLOTS - 1;
/* The core kernel's text (_stext, _etext): a return address there is no
 * program's. Zero: unknown, every writer is found by a stack walk. */
volatile const __u64 core_lo = 0;
volatile const __u64 core_hi = 0;

/* A known (map, writer) pair: its writer's first write was itemized. */
struct kw_pair_key {
	__u32 map_id;
	__u32 _pad;
	__u64 writer; /* a return address in the writer's code */
};

struct kw_pair {
	__u32 gen;   /* the load generation it was last confirmed at */
	__u32 birth; /* the load generation it was first seen (or seen anew) at */
	__u32 sel;   /* the selection generation its map was last found unselected at */
	__u32 _pad;
};

/* A count of writes: per map, writer, process (tgid, 0 in interrupts),
 * operation and epoch (kw_gens.epoch's parity). User space drains the
 * entries of the epoch not written now. */
struct kw_count_key {
	__u32 map_id;
	__u32 tgid;
	__u64 writer;
	__u32 birth;
	__u8 op;
	__u8 epoch;
	__u16 _pad;
};

struct kw_count {
	__u64 count;
	__u64 first; /* CLOCK_BOOTTIME ns, this CPU's first and last */
	__u64 last;
};

/* A program function's image, loaded at generation gen. */
struct kw_load {
	__u64 start;
	__u64 end;
	__u64 gen;
};

/* Not read by the programs: put the records into the object's BTF, for
 * bpf2go. */
volatile const struct kwrite_rec kwrite_rec_layout = {};
volatile const struct kprog_rec kprog_rec_layout = {};
volatile const enum kw_limits kw_limits_layout = 0;
volatile const enum kw_op kw_op_layout = 0;
volatile const enum kw_flag kw_flag_layout = 0;
volatile const enum kw_stat kw_stat_layout = 0;
volatile const struct kw_count_key kw_count_key_layout = {};
volatile const struct kw_count kw_count_layout = {};
volatile const struct kw_pair_key kw_pair_key_layout = {};
volatile const struct kw_pair kw_pair_layout = {};

struct kscratch {
	struct kwrite_rec w;
	__u8 buf[2 * MAX_CAPTURE];
};

/* One scratch record per CPU, indexed by CPU number (the loader sizes it):
 * too large for a per-CPU array. The programs run with migration disabled,
 * and a program interrupted on its CPU by another program of this file is
 * not re-entered (the kernel skips and counts that as a miss). */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct kscratch);
} kscratch SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, KSTAT_MAX);
	__type(key, __u32);
	__type(value, __u64);
} kstats SEC(".maps");

#define kstat_inc(idx) count_inc(&kstats, idx)

/* kw_select's values: bpfmon's own maps, which its programs write all the
 * time, are never reported (filled by the loader before any hook runs);
 * selected maps (protected, or chosen with --map-id) are itemized (added
 * by user space through kw_ctl_select as the selection changes). One
 * lookup tells both. */
enum kw_sel {
	SEL_ITEMIZE = 1,
	SEL_SELF = 2,
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 4096);
	__type(key, __u32);
	__type(value, __u8);
} kw_select SEC(".maps");

volatile const enum kw_sel kw_sel_layout = 0; /* for bpf2go */

/* Known pairs. Full, a first sighting is not remembered and the pair's
 * writes are itemized: more detail, nothing lost. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 16384);
	__type(key, struct kw_pair_key);
	__type(value, struct kw_pair);
} kw_known SEC(".maps");

/* Counts; the loader sizes it (--kernel-writes counts). */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_HASH);
	__uint(max_entries, 4096);
	__type(key, struct kw_count_key);
	__type(value, struct kw_count);
} kw_counts SEC(".maps");


/* The current load generation and the last RECENT_LOADS program images
 * loaded, by generation modulo RECENT_LOADS. An array of one: its lookup
 * is inlined by the verifier, no helper call on a counted write. (Not
 * global data: the library memory-maps that, and a mapped map cannot be
 * frozen.) */
struct kw_gens {
	__u64 now;
	/* The selection generation: kw_ctl_select moves it after each
	 * change of kw_select, which sends every known pair through the
	 * selection check once more before it is counted again. */
	__u64 sel;
	/* The epoch the counts go to (its parity): moved by user space
	 * (kw_ctl_epoch) once per summary interval, before it drains the
	 * other one. No clock on the counted path. */
	__u64 epoch;
	struct kw_load recent[RECENT_LOADS];
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct kw_gens);
} kw_gen SEC(".maps");

/* Each CPU's cache of counts: a direct-mapped table of the pairs counted
 * last, each slot tagged by (map, writer, process, operation, epoch) and
 * by the load and selection generations its pair was confirmed at. A
 * counted write whose slot holds its tag adds one there: no hash lookup,
 * no clock (the time of the last write is kept in jiffies, an inlined
 * load). A write whose slot holds another tag flushes that slot's count
 * into kw_counts (with its epoch) and takes the slot; user space flushes
 * the slots of the epoch it drains (kw_ctl_flush, run on each CPU). An
 * array of one: the verifier inlines its lookup (6.10 on). */
struct kw_slot {
	__u64 writer;
	__u32 map_id; /* 0: an empty slot (no map has id 0) */
	__u32 tgid;
	__u32 gen;    /* the load generation its pair was confirmed at */
	__u32 sel;    /* the selection generation likewise */
	__u32 birth;
	__u8 op;
	__u8 epoch;   /* kw_gens.epoch's low byte at the fill */
	__u16 _pad;
	__u64 count;
	__u64 first;   /* CLOCK_BOOTTIME ns at the fill */
	__u64 first_j; /* jiffies at the fill */
	__u64 last_j;  /* jiffies at the last write */
};

/* busy counts the programs on this CPU inside the cache's critical
 * section (atomic add and subtract). Only one that finds itself alone
 * there (busy 1) touches the slots: another (a program interrupting it
 * in softirq, hardirq or NMI, or a task preempted in it on a preemptible
 * kernel) counts straight into kw_counts, and user space's flush, which
 * interrupts this CPU, finds it busy and is tried again. Every write to
 * kw_counts and every read of the epoch happen inside, which is what
 * lets user space drain an epoch once every CPU's flush has run. */
struct kw_cache {
	__u64 busy;
	struct kw_slot slot[KW_CACHE_SLOTS];
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct kw_cache);
} kw_cache SEC(".maps");

/* THREAD_SIZE on x86-64 and arm64 (4 KiB pages) without KASAN, for kernels
 * without VMAP_STACK. The vmap'd stack's size is counted in 4 KiB pages: an
 * arm64 kernel with 16 or 64 KiB pages is not provided for yet. */
#define THREAD_SIZE_DEFAULT 16384

/* in_task_stack tells whether sp lies on t's own kernel stack. Interrupts
 * and softirqs (packet processing: XDP, tc, socket filters on receive) run
 * on the CPU's IRQ stack on x86-64 and arm64, where current is merely the task they
 * interrupted: such a write has no process, and naming that task would
 * name an innocent. Softirqs run by ksoftirqd are on its stack, and
 * ksoftirqd is then rightly the process. */
static __always_inline bool in_task_stack(struct task_struct *t, __u64 sp)
{
	__u64 base = (__u64)BPF_CORE_READ(t, stack);
	__u64 size = THREAD_SIZE_DEFAULT;

	/* Within the smallest stack: no further read (the counted path). */
	if (sp - base < THREAD_SIZE_DEFAULT)
		return true;
	if (bpf_core_field_exists(t->stack_vm_area)) {
		struct vm_struct *vm = BPF_CORE_READ(t, stack_vm_area);

		if (vm)
			size = (__u64)BPF_CORE_READ(vm, nr_pages) * 4096;
	}
	return sp - base < size;
}

/* addr_of returns pointer p as a number. The verifier forbids arithmetic on
 * a context pointer (an fexit program's ctx, which lies on the stack of the
 * hooked function's trampoline); read through a helper, the value is a plain
 * scalar. */
static __always_inline __u64 addr_of(void *p)
{
	__u64 v = 0;

	bpf_probe_read_kernel(&v, sizeof(v), &p);
	return v;
}

static __always_inline bool is_err(__u64 p)
{
	return p >= (__u64)-4095;
}

/* After capture_limit, which capture_bytes reads. */
#include "capture.h"

/* capture copies up to the capture limit of total bytes from kernel
 * address src into buf at off, and returns the number copied
 * (capture_bytes). */
static __always_inline __u32 capture(__u8 *buf, __u32 off, void *src, __u32 total, __u32 *flags,
				     __u32 fault, __u32 trunc)
{
	return capture_bytes(buf, off, (__u64)src, total, false, flags, fault, trunc);
}

/* owner_id names the owner of a local-storage element: the task's thread
 * id, the socket's inode number, the inode's number, the cgroup's id. */
static __always_inline __u64 owner_id(__u32 map_type, void *owner)
{
	switch (map_type) {
	case BPF_MAP_TYPE_TASK_STORAGE:
		return BPF_CORE_READ((struct task_struct *)owner, pid);
	case BPF_MAP_TYPE_SK_STORAGE:
		return BPF_CORE_READ((struct sock *)owner, sk_socket, file, f_inode, i_ino);
	case BPF_MAP_TYPE_INODE_STORAGE:
		return BPF_CORE_READ((struct inode *)owner, i_ino);
	case BPF_MAP_TYPE_CGRP_STORAGE:
		return BPF_CORE_READ((struct cgroup *)owner, kn, id);
	}
	return 0;
}

/* from_syscall tells whether caller, the return address of the hooked
 * function, lies in the bpf(2) command code. Then the write is that
 * command's own: a BPF program writes through a helper, never by calling
 * these functions, so what else is on the stack cannot matter, and the
 * stack walk (bpf_get_stack, two thirds of this sensor's cost per write)
 * is left out. Only fexit programs see such writes: the bpf(2) command
 * code runs map operations with bpf_prog_active raised, which keeps
 * kprobe programs from running there (their caller is passed as 0). A program that makes bpf(2) commands itself (a syscall
 * program's bpf_sys_bpf) is not named then; user space reports such a
 * write, which no reported call explains, as by an unknown program. */
static __always_inline bool from_syscall(__u64 caller)
{
#pragma unroll
	for (int i = 0; i < SYS_CALLERS; i++)
		if (caller - sys_caller_lo[i] < sys_caller_hi[i] - sys_caller_lo[i])
			return true;
	return false;
}

/* fx_caller returns the hooked function's return address in an fexit
 * program: on x86-64 the trampoline keeps the return value in the slot
 * after the nargs arguments (ctx[nargs], at its frame pointer - 8), then
 * its saved frame pointer, its own return address (into the hooked
 * function), and the hooked function's return address into its caller
 * (arch.h's TRAMP_CALLER_OFF). One probe read takes all three: the saved
 * frame pointer, in *fp, is the caller's; where the caller is a program's
 * JIT'd code, which always keeps a frame pointer, it is an address on
 * the stack the program runs on (the counted path's process test). Where
 * arch.h knows no such offset (arm64) it returns 0, no caller: the stack
 * is walked instead. The verifier allows a constant offset from ctx, and
 * passing it to the helper (bpfmon runs with CAP_PERFMON). */
static __always_inline __u64 fx_caller(void *ctx, __u32 nargs, __u64 *fp)
{
#ifdef TRAMP_CALLER_OFF
	__u64 v[3] = {};

	bpf_probe_read_kernel(v, sizeof(v), (char *)ctx + TRAMP_CALLER_OFF(nargs) - 16);
	*fp = v[0];
	return v[2];
#else
	*fp = 0;
	return 0;
#endif
}

/* FX_ON_WRITE calls on_write from an fexit program: the caller and its
 * frame pointer from the trampoline's frame. */
#define FX_ON_WRITE(nargs, ...)                                              \
	({                                                                   \
		__u64 _fp;                                                   \
		__u64 _c = fx_caller(ctx, nargs, &_fp);                      \
		on_write(ctx, _fp, _c, __VA_ARGS__);                         \
	})

/* A map's id: MAP_ID_BTF where the hooked function's parameter is typed
 * (struct bpf_map *, or a struct starting with one) for fexit, whose
 * arguments are BTF pointers: a plain load the verifier guards, no helper
 * call; MAP_ID_READ elsewhere (kprobes, and the BPF_CALL helpers whose
 * parameters are u64). */
#define MAP_ID_BTF(m) (((struct bpf_map *)(m))->id)
#define MAP_ID_READ(m) BPF_CORE_READ((struct bpf_map *)(m), id)

static __always_inline bool in_core(__u64 a)
{
	return a - core_lo < core_hi - core_lo;
}

/* reloaded tells whether a program image holding writer was loaded after
 * generation since (now is the current one): the address then belongs to
 * a new program. Past RECENT_LOADS loads it cannot tell, and says so. */
static __always_inline bool reloaded(struct kw_gens *g, __u64 writer, __u64 since, __u64 now)
{
	if (now - since > RECENT_LOADS)
		return true;
#pragma unroll
	for (__u32 i = 0; i < RECENT_LOADS; i++) {
		struct kw_load *l = &g->recent[i];

		if (l->gen > since && writer - l->start < l->end - l->start)
			return true;
	}
	return false;
}

/* pair_known tells whether (map_id, writer) is a known pair, with the
 * generation it was first seen at in *birth; a pair not known is known
 * from now on (its caller itemizes this write). A program loaded at the
 * writer's address since the pair was confirmed makes it a new pair. */
static __always_inline bool pair_known(struct kw_gens *g, __u32 sel, __u32 map_id, __u64 writer, __u32 *birth,
				       __u32 *confirmed, __u32 kf)
{
	struct kw_pair_key k = {.map_id = map_id, .writer = writer};
	__u64 gen = g ? g->now : 0;
	struct kw_pair *p = bpf_map_lookup_elem(&kw_known, &k);
	struct kw_pair np = {.gen = (__u32)gen, .birth = (__u32)gen, .sel = sel};

	*confirmed = (__u32)gen;
	if (p) {
		/* The caller found the map unselected at generation sel. */
		p->sel = sel;
		if (p->gen == (__u32)gen) {
			*birth = p->birth;
			return true;
		}
		if (g && !reloaded(g, writer, p->gen, gen)) {
			p->gen = (__u32)gen;
			*birth = p->birth;
			return true;
		}
		p->gen = (__u32)gen;
		p->birth = (__u32)gen;
		return false;
	}
	if (bpf_map_update_elem(&kw_known, &k, &np, BPF_NOEXIST) < 0)
		kstat_inc(KSTAT_KNOWN_FULL);
	if (kf & NEST_HTAB)
		kstat_inc(KSTAT_NESTED);
	if (kf & NEST_KPROBE)
		kstat_inc(KSTAT_NESTED_KP_HTAB);
	return false;
}

/* kstat_add adds n to counter idx (atomically: a nested program may add
 * to it meanwhile). */
static __always_inline void kstat_add(__u32 idx, __u64 n)
{
	__u64 *v = bpf_map_lookup_elem(&kstats, &idx);

	if (v)
		__sync_fetch_and_add(v, n);
}

/* add_count adds n writes, made from first to last, to count k in
 * kw_counts. A count that cannot be kept (kw_counts full) is counted as
 * lost, all n of it, never dropped. */
static __always_inline void add_count(struct kw_count_key *k, __u64 n, __u64 first, __u64 last, __u32 kf)
{
	struct kw_count *c = bpf_map_lookup_elem(&kw_counts, k);

	if (!c) {
		struct kw_count nc = {.count = n, .first = first, .last = last};
		long err = bpf_map_update_elem(&kw_counts, k, &nc, BPF_NOEXIST);

		if (kf & NEST_PCPU)
			kstat_inc(KSTAT_NESTED);
		if (kf & NEST_KPROBE)
			kstat_inc(KSTAT_NESTED_KP_PCPU);
		if (err == 0)
			return;
		/* Another CPU made it meanwhile: this CPU's value is zero. */
		c = bpf_map_lookup_elem(&kw_counts, k);
		if (!c) {
			kstat_add(KSTAT_COUNT_LOST, n);
			return;
		}
	}
	if (c->count == 0 || first < c->first)
		c->first = first;
	if (last > c->last)
		c->last = last;
	/* Atomic: a program nested on this CPU may add to it meanwhile. */
	__sync_fetch_and_add(&c->count, n);
}

/* cache_enter enters this CPU's cache's critical section, and tells
 * whether the caller is alone there (may touch the slots); cache_leave
 * leaves it. See struct kw_cache. */
static __always_inline bool cache_enter(struct kw_cache *c)
{
	__sync_fetch_and_add(&c->busy, 1);
	barrier();
	return *(volatile __u64 *)&c->busy == 1;
}

static __always_inline void cache_leave(struct kw_cache *c)
{
	barrier();
	__sync_fetch_and_add(&c->busy, -1);
}

/* slot_of returns the cache slot of (map, writer, process, operation). */
static __always_inline struct kw_slot *slot_of(struct kw_cache *c, __u32 map_id, __u64 writer, __u32 tgid, __u32 op)
{
	__u64 h = (writer ^ ((__u64)map_id << 32) ^ ((__u64)op << 24) ^ tgid) * 0x9E3779B97F4A7C15ULL;

	return &c->slot[(h >> 58) & cache_mask];
}

/* flush_slot moves a slot's count into kw_counts, under the slot's own
 * epoch, and empties the slot. The last write's time is interpolated from
 * its jiffies between the fill's stamps and now (within a jiffy). */
static __always_inline void flush_slot(struct kw_slot *s, __u32 kf)
{
	struct kw_count_key k = {.map_id = s->map_id, .tgid = s->tgid, .writer = s->writer, .birth = s->birth, .op = s->op,
				 .epoch = s->epoch & 1};
	__u64 now = bpf_ktime_get_boot_ns(), nj = bpf_jiffies64(), last = s->first;

	if (nj > s->first_j && s->last_j > s->first_j)
		last += (s->last_j - s->first_j) * ((now - s->first) / (nj - s->first_j));
	if (last > now)
		last = now;
	if (s->count)
		add_count(&k, s->count, s->first, last, kf);
	s->map_id = 0;
	s->count = 0;
}

/* cache_hit counts a write of (map_id, writer, tgid, op) in this CPU's
 * cache if its slot holds that pair, confirmed at the current load and
 * selection generations, in the current epoch: the common case of a
 * counted write, no helper call beyond what found the writer. */
static __always_inline bool cache_hit(struct kw_cache *c, struct kw_gens *g, __u32 map_id, __u64 writer, __u32 tgid,
				      __u32 op)
{
	struct kw_slot *s = slot_of(c, map_id, writer, tgid, op);
	bool hit = false;

	if (cache_enter(c) && s->map_id == map_id && s->writer == writer && s->tgid == tgid && s->op == op &&
	    s->epoch == (__u8)g->epoch && s->gen == (__u32)g->now && s->sel == (__u32)g->sel) {
		s->count++;
		s->last_j = bpf_jiffies64();
		hit = true;
	}
	cache_leave(c);
	return hit;
}

/* count_write counts one write of a known pair, confirmed at load
 * generation gen and selection generation sel: in this CPU's cache, whose
 * slot it takes (flushing what the slot held), or, where the cache is
 * busy (a nested program), straight into kw_counts. */
static __always_inline void count_write(struct kw_cache *c, struct kw_gens *g, __u32 gen, __u32 sel, __u32 map_id,
					__u64 writer, __u32 birth, __u32 op, __u32 tgid, __u32 kf)
{
	struct kw_count_key k = {.map_id = map_id, .tgid = tgid, .writer = writer, .birth = birth, .op = op};
	struct kw_slot *s;
	__u64 now;

	if (!c || !g) {
		now = bpf_ktime_get_boot_ns();
		add_count(&k, 1, now, now, kf);
		return;
	}
	s = slot_of(c, map_id, writer, tgid, op);
	if (cache_enter(c)) {
		if (s->map_id)
			flush_slot(s, kf);
		s->writer = writer;
		s->map_id = map_id;
		s->tgid = tgid;
		s->gen = gen;
		s->sel = sel;
		s->birth = birth;
		s->op = op;
		s->epoch = (__u8)g->epoch;
		s->count = 1;
		s->first = bpf_ktime_get_boot_ns();
		s->first_j = bpf_jiffies64();
		s->last_j = s->first_j;
	} else {
		now = bpf_ktime_get_boot_ns();
		k.epoch = g->epoch & 1;
		add_count(&k, 1, now, now, kf);
	}
	cache_leave(c);
}

/* frame_writer returns the writer among frames walked: the first return
 * address outside the core kernel above the first inside it (the hooked
 * function, under bpfmon's own program and trampoline), or 0. */
static __always_inline __u64 frame_writer(__u64 *frames, __u32 n)
{
	bool core = false;

#pragma unroll
	for (__u32 i = 0; i < KW_FRAMES; i++) {
		if (i >= n)
			break;
		if (in_core(frames[i]))
			core = true;
		else if (core)
			return frames[i];
	}
	return 0;
}

/* The running kernel's helper ids, for bpf_core_enum_value_exists: a
 * helper it lacks is in a branch the verifier never takes (the value is
 * the uapi's, unused: the relocation decides). */
enum bpf_func_id {
	BPF_FUNC_get_current_task_btf = 158,
};

/* tgid_of returns the writing process, 0 in interrupt context. From Linux
 * 5.11 the task is a BTF pointer: its stack and tgid are plain loads, one
 * helper call in all where the stack pointer lies within the smallest
 * stack (the counted path). */
static __always_inline __u32 tgid_of(__u64 sp)
{
	if (bpf_core_enum_value_exists(enum bpf_func_id, BPF_FUNC_get_current_task_btf)) {
		struct task_struct *t = bpf_get_current_task_btf();

		if (sp - (__u64)t->stack < THREAD_SIZE_DEFAULT)
			return t->tgid;
	}
	if (!in_task_stack(current_task(), sp))
		return 0;
	return bpf_get_current_pid_tgid() >> 32;
}

/* on_write reports one operation on map, or counts it. ctx is the
 * program's context (for the stack walk), sp a stack address of the hooked
 * function's (to tell process from interrupt context), caller the hooked
 * function's return address where known without a walk (0: not known).
 * key, value: kernel pointers, either may be NULL; kf: KF_* flags known
 * from the hook. With KF_OWNER_KEY, key is the local-storage owner. */
static __always_inline int on_write(void *ctx, __u64 fp, __u64 caller, __u32 op, struct bpf_map *map, __u32 map_id,
				    void *key, void *value, __u64 elem_flags, __s64 ret, __u32 kf)
{
	__u32 zero = 0, cpu, klen = 0, vlen = 0, birth = 0, gsel = 0, gen = 0;
	/* Arrays of one: the verifier inlines their lookups. */
	struct kw_gens *g = bpf_map_lookup_elem(&kw_gen, &zero);
	struct kw_cache *kc = bpf_map_lookup_elem(&kw_cache, &zero);
	bool direct = caller && core_hi && !in_core(caller);
	struct kscratch *s;
	struct task_struct *t;
	struct kwrite_rec *w;
	bool sys, counting = false;
	__u64 sp, size, writer = 0;
	__u8 *sel;
	long n;

	/* Read before kw_select is: a selection made meanwhile moves it, and
	 * the pair goes through the check again on its next write. */
	if (g)
		gsel = (__u32)g->sel;
	/* The counted path: a direct call from the writer's code (the
	 * hooked function's caller lies outside the core kernel), a known
	 * pair, confirmed since the last load and the last selection: in
	 * the common case a hit in this CPU's cache; else one hash lookup,
	 * then the count takes the cache's slot. */
	if (direct && !itemize_all && g) {
		__u32 tgid = tgid_of(fp);
		struct kw_pair_key k = {.map_id = map_id, .writer = caller};
		struct kw_pair *p;

		if (kc && cache_hit(kc, g, map_id, caller, tgid, op))
			return 0;
		p = bpf_map_lookup_elem(&kw_known, &k);
		if (p && p->gen == (__u32)g->now && p->sel == gsel) {
			count_write(kc, g, p->gen, gsel, map_id, caller, p->birth, op, tgid, kf);
			return 0;
		}
	}

	/* A kprobe's fp is its stack pointer; an fexit program's ctx lies
	 * on the trampoline's stack, on the hooked function's task or
	 * interrupt stack. */
	sp = (kf & NEST_KPROBE) ? fp : addr_of(ctx);
	sys = from_syscall(caller);
	sel = bpf_map_lookup_elem(&kw_select, &map_id);
	/* Kept apart from the tests below: clang would OR the pointer into
	 * them, which the verifier refuses. */
	if (sel) {
		if (*sel == SEL_SELF)
			return 0;
	} else if (!sys && !itemize_all) {
		counting = true;
		if (direct) {
			writer = caller;
			if (pair_known(g, gsel, map_id, writer, &birth, &gen, kf)) {
				count_write(kc, g, gen, gsel, map_id, writer, birth, op, tgid_of(sp), kf);
				return 0;
			}
			counting = false; /* a first sighting: itemized */
		}
	}

	cpu = bpf_get_smp_processor_id();
	s = bpf_map_lookup_elem(&kscratch, &cpu);
	if (!s)
		return 0;
	w = &s->w;
	__builtin_memset(w, 0, sizeof(*w));
	w->flags = kf & ~NEST_MASK;

	if (sys) {
		w->flags |= KF_SYSCALL;
		kstat_inc(KSTAT_SYSCALL);
	} else {
#ifdef CALLER_NOT_ON_STACK
		/* The walk starts at the hooked function (the probed pc)
		 * and goes on from its caller's frame record: the caller
		 * itself (a program's JIT'd code, for a helper's write) goes
		 * in between, where the frames are read innermost first. */
		if (caller) {
			n = bpf_get_stack(ctx, &w->frames[1], sizeof(w->frames) - sizeof(w->frames[0]), 0);
			if (n > 0) {
				w->frames[0] = w->frames[1];
				w->frames[1] = caller;
				w->nframes = (__u64)n / 8 + 1;
			} else {
				w->frames[0] = caller;
				w->nframes = 1;
			}
		} else
#endif
		{
			n = bpf_get_stack(ctx, w->frames, sizeof(w->frames), 0);
			w->nframes = n > 0 ? (__u64)n / 8 : 0;
		}
		if (counting && core_hi) {
			/* The writer behind a helper, or where the caller is
			 * not known without a walk (arm64's fexit). */
			writer = frame_writer(w->frames, w->nframes);
			if (writer && pair_known(g, gsel, map_id, writer, &birth, &gen, kf)) {
				count_write(kc, g, gen, gsel, map_id, writer, birth, op, tgid_of(sp), kf);
				kstat_inc(KSTAT_WALKED);
				return 0;
			}
		}
	}

	read_map(map, &w->map);
	w->hdr.kind = REC_KWRITE;
	w->hdr.ktime = bpf_ktime_get_boot_ns();
	w->op = op;
	w->result = ret;
	w->elem_flags = elem_flags;

	t = current_task();
	if (in_task_stack(t, sp))
		fill_task(&w->hdr, &w->task, t, bpf_get_current_pid_tgid());
	else
		w->flags |= KF_IRQ;

	if (kf & KF_OWNER_KEY) {
		__u64 id = owner_id(w->map.type, key);

		__builtin_memcpy(s->buf, &id, sizeof(id));
		klen = sizeof(id);
		w->key_total = sizeof(id);
	} else if (op == KOP_UPDATE || op == KOP_DELETE) {
		w->key_total = w->map.key_size;
		klen = capture(s->buf, 0, key, w->key_total, &w->flags, KF_KEY_FAULT, KF_KEY_TRUNC);
	}
	if (op != KOP_DELETE && value) {
		w->value_total = w->map.value_size;
		if (kf & KF_ALL_CPUS)
			w->value_total = ((w->map.value_size + 7) & ~7U) * possible_cpus;
		vlen = capture(s->buf, klen, value, w->value_total, &w->flags, KF_VALUE_FAULT, KF_VALUE_TRUNC);
	}
	w->key_len = klen;
	w->value_len = vlen;

	CLAMP(klen, MAX_CAPTURE);
	CLAMP(vlen, MAX_CAPTURE);
	size = sizeof(struct kwrite_rec) + klen + vlen;
	if (bpf_ringbuf_output(&events, s, size, rec_flags()) < 0)
		kstat_inc(KSTAT_LOST);
	return 0;
}

/* KP_CALLER is a kprobe's caller: on x86-64 the return address at the
 * probed function's stack pointer, on arm64 the link register. */
#ifdef CALLER_NOT_ON_STACK
#define KP_CALLER(ctx) FN_CALLER(ctx)
#else
#define KP_CALLER(ctx) stack_caller((ctx)->FN_SP)
static __always_inline __u64 stack_caller(__u64 sp)
{
	__u64 v = 0;

	bpf_probe_read_kernel(&v, sizeof(v), (void *)sp);
	return v;
}
#endif

/* Program hooks: FX_* are fexit programs (ctx: the arguments, then the
 * return value), KP_* kprobes (ctx: the registers at entry, whose
 * arguments are arch.h's FN_ARGn: x86-64's di, si, dx, cx, arm64's x0-x3). */
#define ARG(i) ((void *)ctx[i])

#define FX_UPDATE(name, fn, kf)                                                                      \
	SEC("fexit/" #fn)                                                                            \
	int name(__u64 *ctx)                                                                         \
	{                                                                                            \
		return FX_ON_WRITE(4, KOP_UPDATE, ARG(0), MAP_ID_BTF(ARG(0)), ARG(1), ARG(2), ctx[3], ctx[4], \
				KF_RESULT | (kf));                                                   \
	}
#define KP_UPDATE(name, fn, kf)                                                                               \
	SEC("kprobe/" #fn)                                                                                    \
	int name(struct pt_regs *ctx)                                                                         \
	{                                                                                                     \
		return on_write(ctx, ctx->FN_SP, KP_CALLER(ctx), KOP_UPDATE, (void *)ctx->FN_ARG1, MAP_ID_READ(ctx->FN_ARG1), (void *)ctx->FN_ARG2, (void *)ctx->FN_ARG3, \
				ctx->FN_ARG4, 0, NEST_KPROBE | (kf));                                                            \
	}
#define FX_DELETE(name, fn)                                                                        \
	SEC("fexit/" #fn)                                                                          \
	int name(__u64 *ctx)                                                                       \
	{                                                                                          \
		return FX_ON_WRITE(2, KOP_DELETE, ARG(0), MAP_ID_BTF(ARG(0)), ARG(1), 0, 0, ctx[2], KF_RESULT); \
	}
#define KP_DELETE(name, fn)                                                                          \
	SEC("kprobe/" #fn)                                                                           \
	int name(struct pt_regs *ctx)                                                                \
	{                                                                                            \
		return on_write(ctx, ctx->FN_SP, KP_CALLER(ctx), KOP_DELETE, (void *)ctx->FN_ARG1, MAP_ID_READ(ctx->FN_ARG1), (void *)ctx->FN_ARG2, 0, 0, 0, NEST_KPROBE); \
	}

FX_UPDATE(fx_array_upd, array_map_update_elem, 0)
KP_UPDATE(kp_array_upd, array_map_update_elem, 0)
FX_UPDATE(fx_htab_upd, htab_map_update_elem, NEST_HTAB)
KP_UPDATE(kp_htab_upd, htab_map_update_elem, 0)
FX_DELETE(fx_htab_del, htab_map_delete_elem)
KP_DELETE(kp_htab_del, htab_map_delete_elem)
FX_UPDATE(fx_lru_upd, htab_lru_map_update_elem, 0)
KP_UPDATE(kp_lru_upd, htab_lru_map_update_elem, 0)
FX_DELETE(fx_lru_del, htab_lru_map_delete_elem)
KP_DELETE(kp_lru_del, htab_lru_map_delete_elem)
FX_UPDATE(fx_pcpu_upd, htab_percpu_map_update_elem, NEST_PCPU)
KP_UPDATE(kp_pcpu_upd, htab_percpu_map_update_elem, 0)
FX_UPDATE(fx_lrupcpu_upd, htab_lru_percpu_map_update_elem, 0)
KP_UPDATE(kp_lrupcpu_upd, htab_lru_percpu_map_update_elem, 0)
FX_UPDATE(fx_trie_upd, trie_update_elem, 0)
KP_UPDATE(kp_trie_upd, trie_update_elem, 0)
FX_DELETE(fx_trie_del, trie_delete_elem)
KP_DELETE(kp_trie_del, trie_delete_elem)
/* bpf(2) updates of per-CPU maps carry every CPU's value and go through
 * these instead of the map's operation. Programs never call them. */
FX_UPDATE(fx_pcpuarr_sys, bpf_percpu_array_update, KF_ALL_CPUS)
KP_UPDATE(kp_pcpuarr_sys, bpf_percpu_array_update, KF_ALL_CPUS)
FX_UPDATE(fx_pcpuhash_sys, bpf_percpu_hash_update, KF_ALL_CPUS)
KP_UPDATE(kp_pcpuhash_sys, bpf_percpu_hash_update, KF_ALL_CPUS)

/* push(map, value, flags) and pop(map, value): no key. */
#define FX_PUSH(name, fn)                                                                            \
	SEC("fexit/" #fn)                                                                            \
	int name(__u64 *ctx)                                                                         \
	{                                                                                            \
		return FX_ON_WRITE(3, KOP_PUSH, ARG(0), MAP_ID_BTF(ARG(0)), 0, ARG(1), ctx[2], ctx[3], KF_RESULT); \
	}
#define KP_PUSH(name, fn)                                                                                    \
	SEC("kprobe/" #fn)                                                                                   \
	int name(struct pt_regs *ctx)                                                                        \
	{                                                                                                    \
		return on_write(ctx, ctx->FN_SP, KP_CALLER(ctx), KOP_PUSH, (void *)ctx->FN_ARG1, MAP_ID_READ(ctx->FN_ARG1), 0, (void *)ctx->FN_ARG2, ctx->FN_ARG3, 0, NEST_KPROBE); \
	}
/* At fexit the popped value is in the buffer; a kprobe runs before it is. */
#define FX_POP(name, fn)                                                                                \
	SEC("fexit/" #fn)                                                                               \
	int name(__u64 *ctx)                                                                            \
	{                                                                                               \
		return FX_ON_WRITE(2, KOP_POP, ARG(0), MAP_ID_BTF(ARG(0)), 0, ctx[2] == 0 ? ARG(1) : 0, 0, ctx[2], \
				KF_RESULT);                                                             \
	}
#define KP_POP(name, fn)                                                               \
	SEC("kprobe/" #fn)                                                             \
	int name(struct pt_regs *ctx)                                                  \
	{                                                                              \
		return on_write(ctx, ctx->FN_SP, KP_CALLER(ctx), KOP_POP, (void *)ctx->FN_ARG1, MAP_ID_READ(ctx->FN_ARG1), 0, 0, 0, 0, NEST_KPROBE); \
	}

FX_PUSH(fx_qs_push, queue_stack_map_push_elem)
KP_PUSH(kp_qs_push, queue_stack_map_push_elem)
FX_POP(fx_queue_pop, queue_map_pop_elem)
KP_POP(kp_queue_pop, queue_map_pop_elem)
FX_POP(fx_stack_pop, stack_map_pop_elem)
KP_POP(kp_stack_pop, stack_map_pop_elem)
FX_PUSH(fx_bloom_push, bloom_map_push_elem)
KP_PUSH(kp_bloom_push, bloom_map_push_elem)

/* Local storage (task, socket, inode, cgroup): an element is created by the
 * get helpers with BPF_LOCAL_STORAGE_GET_F_CREATE, or by bpf(2), through
 * bpf_local_storage_update(owner, smap, value, flags, gfp), and deleted by
 * the delete helpers (map, owner). smap begins with its struct bpf_map. The
 * update returns the element or an ERR_PTR. */
SEC("fexit/bpf_local_storage_update")
int fx_lstor_upd(__u64 *ctx)
{
	__s64 ret = is_err(ctx[5]) ? (__s64)ctx[5] : 0;

	return FX_ON_WRITE(5, KOP_UPDATE, ARG(1), MAP_ID_BTF(ARG(1)), ARG(0), ARG(2), ctx[3], ret,
			KF_RESULT | KF_OWNER_KEY);
}

/* Since Linux 6.13 the update takes a sixth parameter (swap_uptrs) before
 * gfp_flags, which moves the return value's slot. */
SEC("fexit/bpf_local_storage_update")
int fx_lstor_upd6(__u64 *ctx)
{
	__s64 ret = is_err(ctx[6]) ? (__s64)ctx[6] : 0;

	return FX_ON_WRITE(6, KOP_UPDATE, ARG(1), MAP_ID_BTF(ARG(1)), ARG(0), ARG(2), ctx[3], ret,
			KF_RESULT | KF_OWNER_KEY);
}

SEC("kprobe/bpf_local_storage_update")
int kp_lstor_upd(struct pt_regs *ctx)
{
	return on_write(ctx, ctx->FN_SP, KP_CALLER(ctx), KOP_UPDATE, (void *)ctx->FN_ARG2, MAP_ID_READ(ctx->FN_ARG2), (void *)ctx->FN_ARG1, (void *)ctx->FN_ARG3,
			ctx->FN_ARG4, 0, NEST_KPROBE | KF_OWNER_KEY);
}

/* The delete helpers are BPF_CALL_2(map, owner): five u64 parameters. */
#define FX_LSTOR_DEL(name, fn)                                                                             \
	SEC("fexit/" #fn)                                                                                  \
	int name(__u64 *ctx)                                                                               \
	{                                                                                                  \
		return FX_ON_WRITE(5, KOP_DELETE, ARG(0), MAP_ID_READ(ARG(0)), ARG(1), 0, 0, ctx[5], \
				KF_RESULT | KF_OWNER_KEY);                                                 \
	}
#define KP_LSTOR_DEL(name, fn)                                                                            \
	SEC("kprobe/" #fn)                                                                                \
	int name(struct pt_regs *ctx)                                                                     \
	{                                                                                                 \
		return on_write(ctx, ctx->FN_SP, KP_CALLER(ctx), KOP_DELETE, (void *)ctx->FN_ARG1, MAP_ID_READ(ctx->FN_ARG1), (void *)ctx->FN_ARG2, 0, 0, 0, NEST_KPROBE | KF_OWNER_KEY); \
	}

FX_LSTOR_DEL(fx_task_del, bpf_task_storage_delete)
KP_LSTOR_DEL(kp_task_del, bpf_task_storage_delete)
FX_LSTOR_DEL(fx_task_del_r, bpf_task_storage_delete_recur)
KP_LSTOR_DEL(kp_task_del_r, bpf_task_storage_delete_recur)
FX_LSTOR_DEL(fx_sk_del, bpf_sk_storage_delete)
KP_LSTOR_DEL(kp_sk_del, bpf_sk_storage_delete)
FX_LSTOR_DEL(fx_inode_del, bpf_inode_storage_delete)
KP_LSTOR_DEL(kp_inode_del, bpf_inode_storage_delete)
FX_LSTOR_DEL(fx_cgrp_del, bpf_cgrp_storage_delete)
KP_LSTOR_DEL(kp_cgrp_del, bpf_cgrp_storage_delete)

/* note_load keeps a loaded program's images in kw_gen, each with a new
 * generation, before the program can run: a known pair whose writer lies
 * in one is a new pair (pair_known). */
static __always_inline void note_load(struct kprog_rec *r)
{
	__u32 zero = 0;
	struct kw_gens *g = bpf_map_lookup_elem(&kw_gen, &zero);

	if (!g)
		return;
#pragma unroll
	for (__u32 i = 0; i < PROG_FUNCS; i++) {
		struct kw_load *l;
		__u64 gen;

		if (i >= r->nfuncs)
			break;
		/* No fetching atomics before Linux 5.12: two programs loaded
		 * at once on two CPUs may share a slot, and the one overwritten
		 * no longer retires pairs at its address. */
		__sync_fetch_and_add(&g->now, 1);
		gen = g->now;
		l = &g->recent[gen % RECENT_LOADS];
		l->start = r->start[i];
		l->end = r->start[i] + r->len[i];
		l->gen = gen;
	}
}

/* Control programs, run by bpfmon with BPF_PROG_TEST_RUN: the sensor's
 * maps are frozen against bpf(2) (no process may blind the selection or
 * scribble on the counts), so bpfmon changes them through programs. The
 * packet holds the argument after the Ethernet header the test run
 * strips. */
SEC("socket")
int kw_ctl_select(void *skb)
{
	__u32 id, zero = 0;
	__u8 v = SEL_ITEMIZE;
	struct kw_gens *g = bpf_map_lookup_elem(&kw_gen, &zero);
	int err = 0;

	if (bpf_skb_load_bytes(skb, 0, &id, sizeof(id)) < 0)
		return 1;
	/* Selected already, or bpfmon's own: nothing to add. */
	if (!bpf_map_lookup_elem(&kw_select, &id))
		err = bpf_map_update_elem(&kw_select, &id, &v, BPF_NOEXIST) ? 2 : 0;
	/* After the change: known pairs check the selection again. Moved on
	 * every call, so that each refresh of the protected set (which
	 * selects them all again) also heals a pair whose check raced a
	 * selection on a weakly ordered CPU. */
	if (g)
		__sync_fetch_and_add(&g->sel, 1);
	return err;
}

/* kw_ctl_epoch moves the epoch the counts go to: user space then flushes
 * every CPU's cache (kw_ctl_flush) and drains the epoch left. */
SEC("socket")
int kw_ctl_epoch(void *skb)
{
	__u32 zero = 0;
	struct kw_gens *g = bpf_map_lookup_elem(&kw_gen, &zero);

	if (!g)
		return 1;
	__sync_fetch_and_add(&g->epoch, 1);
	return 0;
}

/* kw_ctl_flush, run by user space on each CPU (BPF_F_TEST_RUN_ON_CPU),
 * flushes that CPU's cache into kw_counts: the slots of epochs other than
 * the current one, or all of them with args[0] 1 (at stop, and before
 * the content scanner reads the counts). It returns 1 where the cache is
 * busy (the interrupt came inside a program's critical section): user
 * space tries again. */
SEC("raw_tp")
int kw_ctl_flush(struct bpf_raw_tracepoint_args *ctx)
{
	__u32 zero = 0;
	struct kw_gens *g = bpf_map_lookup_elem(&kw_gen, &zero);
	struct kw_cache *c = bpf_map_lookup_elem(&kw_cache, &zero);
	__u64 all = ctx->args[0];
	int ret = 0;

	if (!g || !c)
		return 0;
	if (cache_enter(c)) {
		__u8 e = (__u8)g->epoch;

		for (__u32 i = 0; i < KW_CACHE_SLOTS; i++) {
			struct kw_slot *s = &c->slot[i];

			if (s->map_id && (all || s->epoch != e))
				flush_slot(s, 0);
		}
	} else
		ret = 1;
	cache_leave(c);
	return ret;
}

/* kw_ctl_forget deletes a count user space has read. */
SEC("socket")
int kw_ctl_forget(void *skb)
{
	struct kw_count_key k;

	if (bpf_skb_load_bytes(skb, 0, &k, sizeof(k)) < 0)
		return 1;
	bpf_map_delete_elem(&kw_counts, &k);
	return 0;
}

/* on_prog reports a program being loaded (REC_PROG) or freed
 * (REC_PROG_GONE): its id, tag, name and the images of its functions. */
static __always_inline int on_prog(struct bpf_prog *fp, __u32 kind)
{
	struct bpf_prog_aux *aux = BPF_CORE_READ(fp, aux);
	struct bpf_prog **funcs;
	struct kprog_rec r = {};
	__u32 i;

	r.id = BPF_CORE_READ(aux, id);
	if (r.id == 0)
		return 0; /* a subprogram's own registration: its program follows */
	r.hdr.kind = kind;
	r.hdr.ktime = bpf_ktime_get_boot_ns();
	r.type = BPF_CORE_READ(fp, type);
	BPF_CORE_READ_INTO(&r.tag, fp, tag);
	BPF_CORE_READ_INTO(&r.name, aux, name);
	r.func_cnt = BPF_CORE_READ(aux, func_cnt);
	funcs = BPF_CORE_READ(aux, func);
	if (r.func_cnt == 0 || !funcs) {
		r.start[0] = (__u64)BPF_CORE_READ(fp, bpf_func);
		r.len[0] = BPF_CORE_READ(fp, jited_len);
		r.nfuncs = 1;
	} else {
		for (i = 0; i < PROG_FUNCS && i < r.func_cnt; i++) {
			struct bpf_prog *f = 0;

			bpf_probe_read_kernel(&f, sizeof(f), &funcs[i]);
			if (!f)
				break;
			r.start[i] = (__u64)BPF_CORE_READ(f, bpf_func);
			r.len[i] = BPF_CORE_READ(f, jited_len);
			r.nfuncs = i + 1;
		}
	}
	if (kind == REC_PROG)
		note_load(&r);
	if (bpf_ringbuf_output(&events, &r, sizeof(r), rec_flags()) < 0)
		kstat_inc(KSTAT_PROG_LOST);
	return 0;
}

SEC("fentry/bpf_prog_kallsyms_add")
int fe_prog_add(__u64 *ctx)
{
	return on_prog(ARG(0), REC_PROG);
}

SEC("kprobe/bpf_prog_kallsyms_add")
int kp_prog_add(struct pt_regs *ctx)
{
	return on_prog((void *)ctx->FN_ARG1, REC_PROG);
}

SEC("fentry/bpf_prog_kallsyms_del_all")
int fe_prog_del(__u64 *ctx)
{
	return on_prog(ARG(0), REC_PROG_GONE);
}

SEC("kprobe/bpf_prog_kallsyms_del_all")
int kp_prog_del(struct pt_regs *ctx)
{
	return on_prog((void *)ctx->FN_ARG1, REC_PROG_GONE);
}

// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * bpfmon syscall sensor: every bpf(2) call that changes a map or obtains a
 * handle to one, from either syscall ABI.
 *
 * Hooks: raw tracepoints raw_syscalls:sys_enter and sys_exit. The per-syscall
 * tracepoints syscalls:sys_enter_bpf/sys_exit_bpf would be cheaper for other
 * syscalls but do not fire for 32-bit (compat) tasks on x86 or arm64, which
 * would let any process evade the monitor with int $0x80 (or an AArch32
 * binary). The raw tracepoint hands us pt_regs and the syscall number; we
 * read the arguments from the registers of the ABI actually in use
 * (COMPAT_SYSCALL, arch.h), so a 64-bit task issuing number 357 is not
 * mistaken for a compat bpf() call, and a 64-bit task entering through
 * int $0x80 is.
 *
 * The map behind an fd is resolved here, from the calling task's own fd table
 * at the time of the call, so every way of obtaining the handle (own fd, by
 * id, pinned path, fork, dup, SCM_RIGHTS) yields the map's global id.
 */
#include "kernel.h"
#include "bpf_helpers.h"
#include "bpf_core_read.h"
#include "common.h"
#include "record.h"
#include "link.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

/* Limits (MAX_CAPTURE, the bytes of a key or value, is record.h's). */
enum call_limits {
	MAX_PATH = 4096,
	PROG_MAPS = 64, /* maps of a loaded program listed in struct prog_loaded */
};

/* call_rec.flags */
enum call_flag {
	CF_COMPAT = 1 << 0,        /* called through the 32-bit compat entry */
	CF_MAP = 1 << 1,           /* map holds a resolved kernel map */
	CF_MAP_REQUESTED = 1 << 2, /* map holds map_create's requested attributes */
	CF_KEY_FAULT = 1 << 3,     /* key pointer could not be read */
	CF_VALUE_FAULT = 1 << 4,   /* value pointer could not be read */
	CF_KEY_TRUNC = 1 << 5,     /* key longer than the capture limit */
	CF_VALUE_TRUNC = 1 << 6,   /* value longer than the capture limit */
	CF_PATH_TRUNC = 1 << 7,    /* path longer than MAX_PATH or unreadable */
	CF_NOT_MAP = 1 << 8,       /* the fd refers to a BPF object that is not a map */
	CF_UNVERIFIED = 1 << 9,    /* file type not yet verified (calibration pending) */
	CF_PATH_FD = 1 << 10,      /* path is relative to path_fd (BPF_F_PATH_FD) */
	CF_BAD_FD = 1 << 11,       /* fd not open in the caller's table */
	CF_PROG = 1 << 12,         /* BPF_PROG_LOAD exit: data holds a struct prog_loaded */
	CF_REREAD = 1 << 13,       /* key, value or path not readable at entry (its page not
				    * yet present: a new process's or thread's first touch);
				    * the exit record carries what the kernel faulted in */
};

/* call_rec.cmd of an mmap(2) of a map fd: outside enum bpf_cmd. The entry
 * record carries the map, fd, prot (in req_id) and flags (in elem_flags);
 * the exit the address or -errno. */
enum call_cmd {
	CMD_MMAP = 4096,
};

/* The program a BPF_PROG_LOAD returned, read in the kernel at syscall
 * exit from the new fd: the maps it uses (first PROG_MAPS of map_cnt). */
struct prog_loaded {
	__u32 id;
	__u32 type; /* enum bpf_prog_type */
	__u8 tag[8];
	char name[16];
	__u32 map_cnt; /* maps the program uses */
	__u32 nmaps;   /* of which listed in map_ids */
	__u32 map_ids[PROG_MAPS];
};

/* Every bpf(2) call of interest produces a REC_ENTER record at syscall
 * entry (who, which map, the key and value bytes the caller passed) and an
 * exit record at syscall exit: REC_EXIT, with the same layout, when the
 * exit carries data (the map behind a newly returned fd, bytes the kernel
 * wrote back), else a struct call_exit. User space pairs them by thread. */
struct call_rec {
	struct rec_hdr hdr;   /* REC_ENTER or REC_EXIT */
	struct task_info task; /* REC_ENTER only */
	__u32 cmd;            /* enum bpf_cmd, or CMD_MMAP */
	__u32 flags;          /* enum call_flag */
	__s64 result;         /* REC_EXIT: syscall return value */
	__u64 elem_flags;     /* update/batch flags as passed */
	__s32 fd;             /* map fd (bpf_fd for obj_pin) */
	__u32 count;          /* batch: ENTER elements asked, EXIT elements processed */
	__u32 req_id;         /* map_get_fd_by_id: requested id; prog_load: prog type; mmap: prot */
	__s32 path_fd;
	__u32 key_len;        /* bytes of key captured in data[] */
	__u32 value_len;      /* bytes of value captured after the key */
	__u64 key_total;      /* bytes of key the call carried */
	__u64 value_total;
	__u32 path_len;       /* obj_pin/obj_get: path bytes in data[], no NUL */
	__u32 _pad;
	struct map_info map;
	/* followed by data: key, then value; or path; or a struct prog_loaded */
};

/* The exit record of calls whose exit carries no data: most of them. */
struct call_exit {
	struct rec_hdr hdr; /* REC_EXIT_SHORT; no ktime */
	__u32 cmd;
	__u32 flags; /* CF_COMPAT */
	__s64 result;
	__u32 count; /* batch: elements processed */
	__u32 _pad;
};

/*
 * This file is built twice (see internal/sensor/bpfsyscall/gen.go):
 *
 * - with BPFMON_BTF: tp_btf programs (Linux 5.11+, bpf_get_current_task_btf).
 *   Fields of the task and of pt_regs are plain loads through BTF-typed
 *   pointers, which the verifier turns into guarded memory accesses: no
 *   helper call per field. This is the fast path.
 * - without: raw_tracepoint programs for older kernels, where every kernel
 *   field is read with bpf_probe_read_kernel.
 *
 * Pointers the verifier cannot type (a file from the fd array, the map
 * behind private_data) are read with bpf_probe_read_kernel in both builds.
 */
#ifdef BPFMON_BTF
#define SEC_ENTER "tp_btf/sys_enter"
#define SEC_EXIT "tp_btf/sys_exit"
#else
#define SEC_ENTER "raw_tracepoint/sys_enter"
#define SEC_EXIT "raw_tracepoint/sys_exit"
#endif

/* The syscall numbers (NR_*), registers and compat test are arch.h's.
 * is_old_mmap, not_old_mmap: x86's ia32 old_mmap, which arm64's compat ABI
 * lacks (not_old_mmap keeps x86's object as it was: clang lays out
 * !(a == b) differently from a != b). */
#ifdef NR_OLD_MMAP_COMPAT
#define is_old_mmap(nr) ((nr) == NR_OLD_MMAP_COMPAT)
#define not_old_mmap(nr) ((nr) != NR_OLD_MMAP_COMPAT)
#else
#define is_old_mmap(nr) false
#define not_old_mmap(nr) true
#endif

/* enum bpf_cmd (uapi, stable) */
#define BPF_MAP_CREATE 0
#define BPF_MAP_UPDATE_ELEM 2
#define BPF_MAP_DELETE_ELEM 3
#define BPF_PROG_LOAD 5
#define BPF_OBJ_PIN 6
#define BPF_OBJ_GET 7
#define BPF_MAP_GET_FD_BY_ID 14
#define BPF_MAP_LOOKUP_AND_DELETE_ELEM 21
#define BPF_MAP_FREEZE 22
#define BPF_MAP_LOOKUP_AND_DELETE_BATCH 25
#define BPF_MAP_UPDATE_BATCH 26
#define BPF_MAP_DELETE_BATCH 27
#define BPF_LINK_CREATE 28
#define BPF_LINK_UPDATE 29
#define BPF_LINK_DETACH 34
#define BPF_PROG_ATTACH 8
#define BPF_PROG_DETACH 9
#define BPF_F_REPLACE 4 /* attach_flags of BPF_PROG_ATTACH */

#define BPF_TRACE_ITER 28 /* enum bpf_attach_type */
#define ITER_TARGET 32    /* bytes of an iterator's target name kept */

#define BPF_F_PATH_FD (1U << 14)

/* Configuration, set by the loader before load. It lives in .rodata, which the
 * loader freezes: no process can change it afterwards. */
volatile const __u32 self_tgid = 0;  /* never reported; 0: none */
volatile const __u32 loader_tgid = 0; /* its BPF_MAP_FREEZE calls calibrate */
volatile const __u32 capture_limit = 4096;
volatile const __u32 possible_cpus = 1;
volatile const __u64 cmd_mask = 0; /* bit n set: report bpf_cmd n */
volatile const __u32 watch_mmap = 0; /* report mmap(2) of map fds */
/* Not read by the programs: put the records into the object's BTF, for
 * bpf2go. */
volatile const struct call_rec call_rec_layout = {};
volatile const struct call_exit call_exit_layout = {};
volatile const struct prog_loaded prog_loaded_layout = {};
volatile const enum call_flag call_flag_layout = 0;
volatile const enum call_cmd call_cmd_layout = 0;
volatile const enum call_limits call_limits_layout = 0;

/* Counters in the stats map. */
enum call_stat {
	STAT_LOST = 0,      /* calls lost: their entry record did not fit */
	STAT_INFLIGHT = 1,  /* calls whose exit could not be tracked */
	STAT_LOST_EXIT = 2, /* calls reported without result: exit record lost */
	STAT_PROC_LOST = 3, /* executable paths not sent (user space falls back to /proc) */
	STAT_MAX = 4,
};
volatile const enum call_stat call_stat_layout = 0;

struct scratch {
	struct call_rec ev;
	__u8 buf[2 * MAX_CAPTURE + MAX_PATH]; /* ev.data: key then value, or path */
};

struct inflight {
	__u32 cmd;
	__u32 flags;
	__u64 attr;       /* user pointer to union bpf_attr */
	__u64 out_ptr;    /* lookup_and_delete: value buffer; batch: keys */
	__u64 out_ptr2;   /* batch: values */
	__u32 key_size;
	__u32 value_bytes; /* per element, per-CPU values expanded */
	struct map_info map;
};

/* One scratch record per CPU; too large for a per-CPU array (32 KiB limit),
 * so an array indexed by CPU number, sized by the loader. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct scratch);
} scratch SEC(".maps");

/* The REC_EXE record being built, per CPU: the call's record is built in
 * scratch meanwhile. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct exe_rec);
} exe_scratch SEC(".maps");

/* The executable whose path was last sent (REC_EXE) for a process or
 * thread. A process that exec'd (new inode) or a reused pid (new start time)
 * is sent again. */
struct exe_seen {
	__u64 start_time;
	__u64 ino;
};

#ifdef BPFMON_BTF
/* Per-thread state in task-local storage: no hashing, no locks, no delete,
 * and it goes away with the thread. */
struct task_state {
	struct inflight in;
	__u64 active; /* in holds a call between sys_enter and sys_exit */
	struct exe_seen exe;
};

struct {
	__uint(type, BPF_MAP_TYPE_TASK_STORAGE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, int);
	__type(value, struct task_state);
} task_state SEC(".maps");

static __always_inline struct task_state *state_of(struct task_struct *t, bool create)
{
	return bpf_task_storage_get(&task_state, t, 0, create ? BPF_LOCAL_STORAGE_GET_F_CREATE : 0);
}

static __always_inline int inflight_put(struct task_struct *t, __u64 pid_tgid, struct inflight *in)
{
	struct task_state *st = state_of(t, true);

	bool replaced;

	if (!st)
		return -1;
	/* An entry still active lost its exit (the hook was attached while
	 * that call ran): replace it without counting it twice. */
	replaced = st->active;
	st->in = *in;
	st->active = 1;
	return replaced;
}

static __always_inline int inflight_take(struct task_struct *t, __u64 pid_tgid, struct inflight *out)
{
	struct task_state *st = state_of(t, false);

	if (!st || !st->active)
		return -1;
	*out = st->in;
	st->active = 0;
	return 0;
}

/* exe_sent_before reports whether seen was already sent, and records it. */
static __always_inline bool exe_sent_before(__u32 tgid, struct exe_seen *seen, bool mark)
{
	struct task_state *st = state_of(bpf_get_current_task_btf(), true);

	if (!st)
		return false;
	if (mark) {
		st->exe = *seen;
		return true;
	}
	return st->exe.start_time == seen->start_time && st->exe.ino == seen->ino;
}
#else
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 16384);
	__type(key, __u64);
	__type(value, struct inflight);
} inflight SEC(".maps");

/* By tgid. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 16384);
	__type(key, __u32);
	__type(value, struct exe_seen);
} exe_sent SEC(".maps");

static __always_inline int inflight_put(struct task_struct *t, __u64 pid_tgid, struct inflight *in)
{
	return bpf_map_update_elem(&inflight, &pid_tgid, in, BPF_ANY);
}

static __always_inline int inflight_take(struct task_struct *t, __u64 pid_tgid, struct inflight *out)
{
	struct inflight *ip = bpf_map_lookup_elem(&inflight, &pid_tgid);

	if (!ip)
		return -1;
	*out = *ip;
	return bpf_map_delete_elem(&inflight, &pid_tgid);
}

static __always_inline bool exe_sent_before(__u32 tgid, struct exe_seen *seen, bool mark)
{
	struct exe_seen *old;

	if (mark) {
		bpf_map_update_elem(&exe_sent, &tgid, seen, BPF_ANY);
		return true;
	}
	old = bpf_map_lookup_elem(&exe_sent, &tgid);
	return old && old->start_time == seen->start_time && old->ino == seen->ino;
}
#endif

/* Number of entries in inflight: lets sys_exit return at once for the
 * vast majority of syscalls, which are not bpf(2). */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __s64);
} inflight_count SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, STAT_MAX);
	__type(key, __u32);
	__type(value, __u64);
} stats SEC(".maps");

/* The kernel address of bpf_map_fops, learnt from bpfmon's own
 * BPF_MAP_FREEZE calls on its own maps at start. kallsyms does not list data
 * symbols on kernels without CONFIG_KALLSYMS_ALL, so it cannot come from
 * there; comparing f_op is how the kernel itself tells a map fd apart. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} calib SEC(".maps");

#define stat_inc(idx) count_inc(&stats, idx)

#define FILE_OFF(field) (bpf_core_field_offset(struct file, field) - bpf_core_field_offset(struct file, f_op))
#define FILE_WINDOW 32

/* resolve_map fills mi from the map behind fd in t's fd table and returns
 * the CF_* flags describing the outcome. */
static __always_inline __u32 resolve_map(struct task_struct *t, int fd, struct map_info *mi)
{
	struct file *f = fd_file(t, fd);
	struct bpf_map *m;
	const void *fop;
	__u32 zero = 0, fl = 0;
	__u64 *known;

	if (!f)
		return CF_BAD_FD;
	/* f_op and private_data, in one read when they are close, as they are
	 * on every kernel so far. */
	if (FILE_OFF(private_data) < FILE_WINDOW - sizeof(void *)) {
		__u8 w[FILE_WINDOW];

		if (bpf_probe_read_kernel(w, sizeof(w), (void *)f + bpf_core_field_offset(struct file, f_op)) < 0)
			return CF_BAD_FD;
		fop = *(void **)w;
		m = *(void **)(w + (FILE_OFF(private_data) & (FILE_WINDOW - 1)));
	} else {
		fop = BPF_CORE_READ(f, f_op);
		m = BPF_CORE_READ(f, private_data);
	}
	known = bpf_map_lookup_elem(&calib, &zero);
	if (!known || *known == 0)
		fl |= CF_UNVERIFIED;
	else if (*known != (__u64)fop)
		return CF_NOT_MAP;
	if (!m)
		return fl | CF_NOT_MAP;
	read_map(m, mi);
	return fl | CF_MAP;
}

/* value_bytes: what one element's value occupies in a user buffer. */
static __always_inline __u32 value_bytes(struct map_info *mi)
{
	if (percpu_type(mi->type))
		return ((mi->value_size + 7) & ~7U) * possible_cpus;
	return mi->value_size;
}

/* After capture_limit, which capture_bytes reads. */
#include "capture.h"

/* copy_user copies up to the capture limit of total bytes from user address
 * src into buf at off and returns the number captured (capture_bytes). */
static __always_inline __u32 copy_user(__u8 *buf, __u32 off, __u64 src, __u64 total, __u32 *flags,
				       __u32 fault, __u32 trunc)
{
	return capture_bytes(buf, off, src, total, true, flags, fault, trunc);
}

static __always_inline struct scratch *scratch_get(void)
{
	__u32 cpu = bpf_get_smp_processor_id();
	struct scratch *s = bpf_map_lookup_elem(&scratch, &cpu);

	if (s)
		__builtin_memset(&s->ev, 0, sizeof(s->ev));
	return s;
}



static __always_inline int emit(struct scratch *s, __u32 lost_stat)
{
	__u64 size = sizeof(struct call_rec);
	__u32 k = s->ev.key_len, v = s->ev.value_len, p = s->ev.path_len;

	CLAMP(k, MAX_CAPTURE);
	CLAMP(v, MAX_CAPTURE);
	CLAMP(p, MAX_PATH);
	size += k + v + p;
	if (bpf_ringbuf_output(&events, s, size, rec_flags()) < 0) {
		stat_inc(lost_stat);
		return -1;
	}
	return 0;
}

/* send_exe emits a REC_EXE record with the path of the caller's
 * executable, once per process. The path is read here, in the kernel, so a
 * process that exits right after its call is still named by its binary.
 * Like d_path, it walks dentries up to each mount's root and crosses to the
 * parent mount, stopping at the root of the caller's mount tree.
 * A global (not inlined) function: the verifier checks it once, on its own,
 * instead of once per path through sys_enter, which its loop would multiply
 * beyond the verifier's budget. Returns 0. */
__attribute__((noinline)) int send_exe(__u64 pid_tgid, __u64 ktime, __u64 start_time, __u64 ino)
{
	struct task_struct *t = current_task();
	__u32 tgid = pid_tgid >> 32, zero = 0;
	struct exe_seen seen = {};
	struct exe_rec *e;
	struct file *exe;
	struct dentry *d, *parent, *root;
	struct mount *mnt, *mparent;
	struct vfsmount *vm;
	__u32 i;

	if (!ino)
		return 0; /* no executable: a kernel thread */
	seen.start_time = start_time;
	seen.ino = ino;
	if (exe_sent_before(tgid, &seen, false))
		return 0;
	exe = BPF_CORE_READ(t, mm, exe_file);
	if (!exe)
		return 0;

	e = bpf_map_lookup_elem(&exe_scratch, &zero);
	if (!e)
		return 0;
	__builtin_memset(&e->hdr, 0, sizeof(e->hdr) + sizeof(e->task));
	e->hdr.kind = REC_EXE;
	e->hdr.ktime = ktime;
	fill_task(&e->hdr, &e->task, t, pid_tgid);

	/* Each iteration fills slot i: a component, or nothing when it crosses
	 * into the parent mount. Keeping i the only loop-carried counter lets
	 * the verifier prune the two branches' states at every iteration. */
	d = BPF_CORE_READ(exe, f_path.dentry);
	vm = BPF_CORE_READ(exe, f_path.mnt);
	mnt = (void *)vm - bpf_core_field_offset(struct mount, mnt);
	e->truncated = 1;
	for (i = 0; i < EXE_SLOTS; i++) {
		root = BPF_CORE_READ(vm, mnt_root);
		parent = BPF_CORE_READ(d, d_parent);
		if (d == root || d == parent) {
			mparent = BPF_CORE_READ(mnt, mnt_parent);
			if (d != root || mparent == mnt) {
				e->truncated = 0; /* the root of the tree */
				break;
			}
			e->slots[i][0] = 0;
			d = BPF_CORE_READ(mnt, mnt_mountpoint);
			mnt = mparent;
			vm = (void *)mnt + bpf_core_field_offset(struct mount, mnt);
			continue;
		}
		bpf_probe_read_kernel_str(e->slots[i], EXE_SLOT, BPF_CORE_READ(d, d_name.name));
		d = parent;
	}
	e->count = i;
	if (bpf_ringbuf_output(&events, e, sizeof(*e), rec_flags()) < 0) {
		stat_inc(STAT_PROC_LOST);
		return 0;
	}
	exe_sent_before(tgid, &seen, true);
	return 0;
}

static __always_inline void calibrate(struct task_struct *t, __u64 attr)
{
	__u32 fd = 0, zero = 0;
	struct file *f;
	__u64 *known = bpf_map_lookup_elem(&calib, &zero);

	if (!known || *known != 0)
		return;
	if (bpf_probe_read_user(&fd, sizeof(fd), (void *)attr) < 0)
		return;
	f = fd_file(t, fd);
	if (f)
		*known = (__u64)BPF_CORE_READ(f, f_op);
}

/* The parts of union bpf_attr read here, by command (uapi offsets). */
struct attr_elem {
	__u32 map_fd;
	__u32 _pad;
	__u64 key;
	__u64 value;
	__u64 flags;
};

struct attr_batch {
	__u64 in_batch;
	__u64 out_batch;
	__u64 keys;
	__u64 values;
	__u32 count;
	__u32 map_fd;
	__u64 elem_flags;
	__u64 flags;
};

struct attr_create {
	__u32 map_type;
	__u32 key_size;
	__u32 value_size;
	__u32 max_entries;
	__u32 map_flags;
	__u32 inner_map_fd;
	__u32 numa_node;
	char map_name[16];
};

struct attr_obj {
	__u64 pathname;
	__u32 bpf_fd;
	__u32 file_flags;
	__s32 path_fd;
};

/* BPF_LINK_CREATE, as far as an iterator's link needs it. */
struct attr_link {
	__u32 prog_fd;
	__u32 target_fd;
	__u32 attach_type;
	__u32 flags;
	__u64 iter_info;     /* union bpf_iter_link_info *: map.map_fd first */
	__u32 iter_info_len;
};

/* BPF_LINK_UPDATE (link_fd, new_prog_fd, flags, old_prog_fd) and
 * BPF_LINK_DETACH (link_fd). */
struct attr_linkop {
	__u32 link_fd;
	__u32 new_prog_fd;
	__u32 flags;
	__u32 old_prog_fd;
};

/* A link's type, for its pin: CO-RE matches an enum field only with an
 * enum. */
enum bpf_link_type___pin { BPF_LINK_TYPE_UNSPEC___pin };
struct bpf_link___pin {
	enum bpf_link_type___pin type;
} __attribute__((preserve_access_index));

/* BPF_PROG_ATTACH and BPF_PROG_DETACH: target_fd is target_ifindex for
 * tcx and netkit. */
struct attr_progattach {
	__u32 target_fd;
	__u32 attach_bpf_fd;
	__u32 attach_type;
	__u32 attach_flags;
	__u32 replace_bpf_fd;
};

struct attr_getid {
	__u32 map_id;
	__u32 next_id;
	__u32 open_flags;
};

#define ATTR_READ 64

/* read_prog fills p from the program behind fd, which BPF_PROG_LOAD has
 * just returned, and reports whether it is one. Another thread could have
 * closed the fd and opened some other file in its place before this runs:
 * the program's aux pointing back to it tells a program from any other
 * file's private_data. */
/* prog_target returns the attach target's name of the program at fd (read
 * by read_prog just before), or NULL. */
static __always_inline const char *prog_target(struct task_struct *t, int fd)
{
	struct file *f = fd_file(t, fd);
	struct bpf_prog *prog;

	if (!f)
		return 0;
	prog = BPF_CORE_READ(f, private_data);
	if (!prog)
		return 0;
	return BPF_CORE_READ(prog, aux, attach_func_name);
}

static __always_inline bool read_prog(struct task_struct *t, int fd, struct prog_loaded *p, bool with_maps)
{
	struct file *f = fd_file(t, fd);
	struct bpf_prog *prog;
	struct bpf_prog_aux *aux;
	struct bpf_map **maps;
	__u32 i;

	if (!f)
		return false;
	prog = BPF_CORE_READ(f, private_data);
	if (!prog)
		return false;
	aux = BPF_CORE_READ(prog, aux);
	if (!aux || BPF_CORE_READ(aux, prog) != prog)
		return false;
	p->id = BPF_CORE_READ(aux, id);
	p->type = BPF_CORE_READ(prog, type);
	BPF_CORE_READ_INTO(&p->tag, prog, tag);
	BPF_CORE_READ_INTO(&p->name, aux, name);
	p->map_cnt = 0;
	p->nmaps = 0;
	if (!with_maps)
		return true;
	p->map_cnt = BPF_CORE_READ(aux, used_map_cnt);
	maps = BPF_CORE_READ(aux, used_maps);
	for (i = 0; i < PROG_MAPS && i < p->map_cnt && maps; i++) {
		struct bpf_map *m = used_map(maps, i);

		p->map_ids[i] = m ? BPF_CORE_READ(m, id) : 0;
		p->nmaps = i + 1;
	}
	return true;
}

/* read_link fills p (without maps) from the program behind the link at
 * fd and returns the link's id, or 0 when fd is not a link (link_aux). */
static __always_inline __u32 read_link(struct task_struct *t, int fd, struct prog_loaded *p)
{
	struct bpf_link___bpfmon *l;
	struct bpf_prog *prog;
	struct bpf_prog_aux *aux;

	aux = link_aux(fd_file(t, fd), &l, &prog);
	if (!aux)
		return 0;
	p->id = BPF_CORE_READ(aux, id);
	p->type = BPF_CORE_READ(prog, type);
	BPF_CORE_READ_INTO(&p->tag, prog, tag);
	BPF_CORE_READ_INTO(&p->name, aux, name);
	p->map_cnt = 0;
	p->nmaps = 0;
	return BPF_CORE_READ(l, id);
}

/* The arguments of an mmap(2) that bpfmon reads. */
struct mmap_args {
	int fd;
	__u32 prot;
	__u32 flags;
};

/* The parts of union bpf_attr read at entry. */
union attr_read {
	__u8 raw[ATTR_READ];
	struct attr_elem elem;
	struct attr_batch batch;
	struct attr_create create;
	struct attr_obj obj;
	struct attr_getid getid;
	struct attr_link link;
	struct attr_linkop linkop;
	struct attr_progattach progattach;
};

/* mmap_args_of reads an mmap(2)'s arguments from the caller's registers:
 * mmap (native), mmap2 (compat; old is false) or old_mmap (x86's ia32,
 * whose arguments are a struct in user memory). buf is scratch space of 20
 * bytes. It reports false when they cannot be read. */
static __always_inline bool mmap_args_of(struct pt_regs *regs, bool compat, bool old, struct mmap_args *a, __u32 *buf)
{
	if (old) {
		/* struct mmap_arg_struct { addr, len, prot, flags, fd, offset }, 32-bit each */
		if (bpf_probe_read_user(buf, 5 * sizeof(__u32), (void *)(__u64)(__u32)KREAD(regs, COMPAT_ARG1)) < 0)
			return false;
		a->prot = buf[2];
		a->flags = buf[3];
		a->fd = buf[4];
	} else if (compat) {
		a->prot = KREAD(regs, COMPAT_ARG3);
		a->flags = KREAD(regs, COMPAT_ARG4);
		a->fd = KREAD(regs, COMPAT_ARG5);
	} else {
		a->prot = KREAD(regs, SYS_ARG3);
		a->flags = KREAD(regs, SYS_ARG4);
		a->fd = KREAD(regs, SYS_ARG5);
	}
	return true;
}

/* mmap_map returns the map an mmap(2) maps, or NULL for every other mmap
 * (anonymous memory, files), which costs one fd-table read. Until the map
 * file type is known (calibration at start) it returns NULL: an unverified
 * fd could be any file. */
static __always_inline struct bpf_map *mmap_map(struct pt_regs *regs, struct task_struct *t, bool compat, bool old,
						struct mmap_args *a, __u32 *buf)
{
	__u32 zero = 0;

	if (!mmap_args_of(regs, compat, old, a, buf) || a->fd < 0)
		return 0;
	return map_of_file(fd_file(t, a->fd), bpf_map_lookup_elem(&calib, &zero));
}

/* inflight_add adds n to the number of calls between their entry and exit
 * records, which Detach waits for. */
static __always_inline void inflight_add(__s64 n)
{
	__u32 zero = 0;
	__s64 *c = bpf_map_lookup_elem(&inflight_count, &zero);

	if (c)
		__sync_fetch_and_add(c, n);
}

/* report_enter writes a call's entry record: who, which map, the key and
 * value bytes, the path. With track, it keeps what the exit needs in the
 * in-flight table (the raw_syscalls builds: their exit program sees only
 * the result); without, the exit program finds it in the call's own
 * arguments (the trampoline build). */
static __always_inline int report_enter(struct task_struct *t, __u64 pid_tgid, bool compat, __u32 cmd, __u64 attr_ptr,
					 union attr_read *attr, struct mmap_args *margs, struct bpf_map *mapped, bool track)
{
	struct inflight in;
	struct scratch *s;
	struct call_rec *e;
	int ret;

	s = scratch_get();
	if (!s)
		return 0;
	e = &s->ev;
	e->hdr.kind = REC_ENTER;
	e->hdr.ktime = bpf_ktime_get_boot_ns();
	fill_task(&e->hdr, &e->task, t, pid_tgid);
	e->cmd = cmd;
	e->flags = compat ? CF_COMPAT : 0;
	send_exe(pid_tgid, e->hdr.ktime, e->task.start_time, e->task.exe_ino);

	__builtin_memset(&in, 0, sizeof(in));
	switch (cmd) {
	case BPF_MAP_UPDATE_ELEM:
	case BPF_MAP_DELETE_ELEM:
	case BPF_MAP_LOOKUP_AND_DELETE_ELEM: {
		__u32 klen;

		e->fd = attr->elem.map_fd;
		e->elem_flags = attr->elem.flags;
		e->flags |= resolve_map(t, e->fd, &e->map);
		if (!(e->flags & CF_MAP))
			break;
		e->key_total = e->map.key_size;
		klen = copy_user(s->buf, 0, attr->elem.key, e->key_total, &e->flags, CF_KEY_FAULT,
				 CF_KEY_TRUNC);
		e->key_len = klen;
		if ((e->flags & CF_KEY_FAULT) && attr->elem.key)
			e->flags |= CF_REREAD;
		if (cmd == BPF_MAP_UPDATE_ELEM) {
			e->value_total = value_bytes(&e->map);
			e->value_len = copy_user(s->buf, klen, attr->elem.value, e->value_total,
						 &e->flags, CF_VALUE_FAULT, CF_VALUE_TRUNC);
			if ((e->flags & CF_VALUE_FAULT) && attr->elem.value)
				e->flags |= CF_REREAD;
		} else if (cmd == BPF_MAP_LOOKUP_AND_DELETE_ELEM) {
			in.out_ptr = attr->elem.value;
			in.value_bytes = value_bytes(&e->map);
		}
		break;
	}
	case BPF_MAP_UPDATE_BATCH:
	case BPF_MAP_DELETE_BATCH:
	case BPF_MAP_LOOKUP_AND_DELETE_BATCH: {
		__u32 klen;

		e->fd = attr->batch.map_fd;
		e->count = attr->batch.count;
		e->elem_flags = attr->batch.elem_flags;
		e->flags |= resolve_map(t, e->fd, &e->map);
		if (!(e->flags & CF_MAP))
			break;
		if (cmd == BPF_MAP_LOOKUP_AND_DELETE_BATCH) {
			in.out_ptr = attr->batch.keys;
			in.out_ptr2 = attr->batch.values;
			in.key_size = e->map.key_size;
			in.value_bytes = value_bytes(&e->map);
			break;
		}
		e->key_total = (__u64)e->count * e->map.key_size;
		klen = copy_user(s->buf, 0, attr->batch.keys, e->key_total, &e->flags, CF_KEY_FAULT,
				 CF_KEY_TRUNC);
		e->key_len = klen;
		if ((e->flags & CF_KEY_FAULT) && attr->batch.keys)
			e->flags |= CF_REREAD;
		if (cmd == BPF_MAP_UPDATE_BATCH) {
			e->value_total = (__u64)e->count * value_bytes(&e->map);
			e->value_len = copy_user(s->buf, klen, attr->batch.values, e->value_total,
						 &e->flags, CF_VALUE_FAULT, CF_VALUE_TRUNC);
			if ((e->flags & CF_VALUE_FAULT) && attr->batch.values)
				e->flags |= CF_REREAD;
		}
		break;
	}
	case BPF_MAP_FREEZE:
		e->fd = attr->elem.map_fd;
		e->flags |= resolve_map(t, e->fd, &e->map);
		break;
	case BPF_MAP_GET_FD_BY_ID:
		e->req_id = attr->getid.map_id;
		e->elem_flags = attr->getid.open_flags;
		break;
	case BPF_OBJ_PIN:
	case BPF_OBJ_GET: {
		struct bpf_link___pin *l;
		struct file *f;
		__u32 off = 0;
		long n;

		e->elem_flags = attr->obj.file_flags;
		if (attr->obj.file_flags & BPF_F_PATH_FD) {
			e->flags |= CF_PATH_FD;
			e->path_fd = attr->obj.path_fd;
		}
		if (cmd == BPF_OBJ_PIN) {
			e->fd = attr->obj.bpf_fd;
			e->flags |= resolve_map(t, e->fd, &e->map);
			if (e->flags & CF_NOT_MAP) {
				/* A link's pin: its id in req_id, its type in count,
				 * its program as the value, the path after it. A
				 * program's pin is not reported. */
				e->req_id = read_link(t, e->fd, (struct prog_loaded *)s->buf);
				if (!e->req_id)
					return 0;
				f = fd_file(t, e->fd);
				l = BPF_CORE_READ(f, private_data);
				e->count = BPF_CORE_READ(l, type);
				e->flags |= CF_PROG;
				e->value_len = e->value_total = sizeof(struct prog_loaded);
				off = sizeof(struct prog_loaded);
			}
		}
		n = bpf_probe_read_user_str(s->buf + off, MAX_PATH, (void *)attr->obj.pathname);
		if (n > 0)
			e->path_len = n - 1;
		if (n <= 0 || n == MAX_PATH)
			e->flags |= CF_PATH_TRUNC;
		if (n < 0 && attr->obj.pathname)
			e->flags |= CF_REREAD;
		break;
	}
	case BPF_PROG_LOAD:
		e->req_id = *(__u32 *)attr->raw; /* prog_type */
		break;
	case BPF_LINK_CREATE: {
		/* An iterator's link on a map: its program gets a writable
		 * pointer to every value. The data: the program (a struct
		 * prog_loaded without maps), then its target's name, by which
		 * user space tells a map-element iterator from one whose
		 * iter_info starts with something else (a task's tid). */
		__u32 map_fd = 0;
		long n;

		if (attr->link.attach_type != BPF_TRACE_ITER || attr->link.iter_info_len < sizeof(map_fd))
			return 0;
		if (bpf_probe_read_user(&map_fd, sizeof(map_fd), (void *)attr->link.iter_info) < 0)
			return 0;
		e->fd = map_fd;
		e->flags |= resolve_map(t, map_fd, &e->map);
		if (!(e->flags & CF_MAP))
			return 0;
		if (read_prog(t, attr->link.prog_fd, (struct prog_loaded *)s->buf, false)) {
			e->flags |= CF_PROG;
			e->value_len = sizeof(struct prog_loaded);
			n = bpf_probe_read_kernel_str(s->buf + sizeof(struct prog_loaded), ITER_TARGET,
						      prog_target(t, attr->link.prog_fd));
			if (n > 1)
				e->path_len = n - 1;
		}
		break;
	}
	case BPF_LINK_DETACH:
	case BPF_LINK_UPDATE:
		/* The link and its program; for an update, the program put in
		 * its place after it: data holds one or two struct prog_loaded. */
		e->fd = attr->linkop.link_fd;
		e->req_id = read_link(t, e->fd, (struct prog_loaded *)s->buf);
		if (!e->req_id)
			return 0;
		e->flags |= CF_PROG;
		e->value_len = sizeof(struct prog_loaded);
		if (cmd == BPF_LINK_UPDATE) {
			e->elem_flags = attr->linkop.flags;
			if (read_prog(t, attr->linkop.new_prog_fd, (struct prog_loaded *)(s->buf + sizeof(struct prog_loaded)), false))
				e->value_len = 2 * sizeof(struct prog_loaded);
		}
		break;
	case BPF_PROG_ATTACH:
	case BPF_PROG_DETACH: {
		/* The attach point: the target fd, the attach type in req_id,
		 * the flags, and as the key the inode of the target's file (a
		 * cgroup's id, a netns's inode). The value: the program attached
		 * or detached, then for BPF_F_REPLACE the one replaced; id 0
		 * where the fd names no program (a legacy cgroup detach). */
		struct prog_loaded *p = (struct prog_loaded *)(s->buf + sizeof(__u64));
		struct file *f;
		__u64 ino = 0;

		e->fd = attr->progattach.target_fd;
		e->req_id = attr->progattach.attach_type;
		e->elem_flags = attr->progattach.attach_flags;
		f = fd_file(t, e->fd);
		if (f)
			ino = BPF_CORE_READ(f, f_inode, i_ino);
		__builtin_memcpy(s->buf, &ino, sizeof(ino));
		e->key_len = e->key_total = sizeof(ino);
		if (!read_prog(t, attr->progattach.attach_bpf_fd, p, false))
			p->id = 0;
		e->flags |= CF_PROG;
		e->value_len = e->value_total = sizeof(struct prog_loaded);
		if (cmd == BPF_PROG_ATTACH && (attr->progattach.attach_flags & BPF_F_REPLACE) &&
		    read_prog(t, attr->progattach.replace_bpf_fd, p + 1, false))
			e->value_len = e->value_total = 2 * sizeof(struct prog_loaded);
		break;
	}
	case CMD_MMAP:
		e->fd = margs->fd;
		e->req_id = margs->prot;
		e->elem_flags = margs->flags;
		e->flags |= CF_MAP;
		read_map(mapped, &e->map);
		break;
	case BPF_MAP_CREATE:
		e->flags |= CF_MAP_REQUESTED;
		e->map.type = attr->create.map_type;
		e->map.key_size = attr->create.key_size;
		e->map.value_size = attr->create.value_size;
		e->map.max_entries = attr->create.max_entries;
		e->map.flags = attr->create.map_flags;
		__builtin_memcpy(e->map.name, attr->create.map_name, sizeof(e->map.name));
		break;
	default:
		return 0;
	}

	if (emit(s, STAT_LOST) < 0)
		return 0; /* counted as lost; no exit record without its entry */
	/* The trampoline build's exit finds what it needs in the call's
	 * arguments, but for what must be read again. */
	if (!track && !(e->flags & CF_REREAD))
		return 0;

	in.cmd = cmd;
	in.flags = e->flags;
	in.attr = attr_ptr;
	in.map = e->map;
	ret = inflight_put(t, pid_tgid, &in);
	if (ret < 0) {
		stat_inc(STAT_INFLIGHT);
		return 0;
	}
	if (ret == 0 && track)
		inflight_add(1);
	return 0;
}

/* bpf_entry handles a bpf(int cmd, union bpf_attr *attr, unsigned int
 * size) call entering the kernel. The kernel truncates cmd and size to 32
 * bits, and so must the caller. */
static __always_inline int bpf_entry(struct task_struct *t, bool compat, __u32 cmd, __u64 attr_ptr, __u32 size, bool track)
{
	__u64 pid_tgid = bpf_get_current_pid_tgid();
	union attr_read attr;

	if (cmd == BPF_MAP_FREEZE && (__u32)(pid_tgid >> 32) == loader_tgid)
		calibrate(t, attr_ptr);
	if ((__u32)(pid_tgid >> 32) == self_tgid)
		return 0;
	if (cmd >= 64 || !(cmd_mask & (1ULL << cmd)))
		return 0;
	if (!track)
		inflight_add(1); /* the exit program takes it off, whatever happens here */

	/* Read no more than the caller passed: the kernel treats the rest as
	 * zero, and so must we. */
	CLAMP(size, ATTR_READ);
	__builtin_memset(&attr, 0, sizeof(attr));
	bpf_probe_read_user(&attr, size, (void *)attr_ptr);
	return report_enter(t, pid_tgid, compat, cmd, attr_ptr, &attr, 0, 0, track);
}

SEC(SEC_ENTER)
int sys_enter(struct bpf_raw_tracepoint_args *ctx)
{
	long id = ctx->args[1];
	struct task_struct *t;
	struct pt_regs *regs;
	/* Not initialised here: clang would zero them before the syscall
	 * number check, on every syscall of every process. */
	struct mmap_args margs;
	struct bpf_map *mapped;
	__u32 buf[5];
	__u64 pid_tgid;
	bool compat;

	if (id != NR_BPF_NATIVE && id != NR_BPF_COMPAT) {
		if ((id != NR_MMAP_NATIVE && id != NR_MMAP2_COMPAT && not_old_mmap(id)) || !watch_mmap)
			return 0;
		t = current_task();
		compat = COMPAT_SYSCALL(t, (struct pt_regs *)ctx->args[0]);
		if (compat ? id == NR_MMAP_NATIVE : id != NR_MMAP_NATIVE)
			return 0; /* the other ABI's syscall of that number */
		pid_tgid = bpf_get_current_pid_tgid();
		if ((__u32)(pid_tgid >> 32) == self_tgid)
			return 0;
		mapped = mmap_map((struct pt_regs *)ctx->args[0], t, compat, is_old_mmap(id), &margs, buf);
		if (!mapped)
			return 0;
		return report_enter(t, pid_tgid, compat, CMD_MMAP, 0, 0, &margs, mapped, true);
	}
	t = current_task();
	compat = COMPAT_SYSCALL(t, (struct pt_regs *)ctx->args[0]);
	if (id != (compat ? NR_BPF_COMPAT : NR_BPF_NATIVE))
		return 0;
	regs = (struct pt_regs *)ctx->args[0];
	if (compat)
		return bpf_entry(t, true, (__u32)KREAD(regs, COMPAT_ARG1), (__u32)KREAD(regs, COMPAT_ARG2),
				 (__u32)KREAD(regs, COMPAT_ARG3), true);
	return bpf_entry(t, false, (__u32)KREAD(regs, SYS_ARG1), KREAD(regs, SYS_ARG2), (__u32)KREAD(regs, SYS_ARG3),
			 true);
}

/* reread fills exit record s with what the entry could not read (CF_REREAD):
 * the key and value, or the path, from the same user memory, which the
 * kernel has faulted in while it copied them. A batch's keys and values are
 * those of the elements the kernel processed (its count, written back). */
static __always_inline void reread(struct scratch *s, struct inflight *in)
{
	struct call_rec *e = &s->ev;
	union attr_read attr;
	__u32 klen;
	long n;

	__u32 size = sizeof(attr.elem);

	/* No more of the attributes than the command has: the caller's
	 * memory may end there. */
	if (in->cmd == BPF_MAP_UPDATE_BATCH || in->cmd == BPF_MAP_DELETE_BATCH)
		size = sizeof(attr.batch);
	else if (in->cmd == BPF_OBJ_PIN || in->cmd == BPF_OBJ_GET)
		size = sizeof(attr.obj);
	__builtin_memset(&attr, 0, sizeof(attr));
	CLAMP(size, ATTR_READ);
	if (bpf_probe_read_user(&attr, size, (void *)in->attr) < 0)
		return;
	e->flags |= CF_REREAD;
	switch (in->cmd) {
	case BPF_MAP_UPDATE_ELEM:
	case BPF_MAP_DELETE_ELEM:
	case BPF_MAP_LOOKUP_AND_DELETE_ELEM:
		e->key_total = in->map.key_size;
		klen = copy_user(s->buf, 0, attr.elem.key, e->key_total, &e->flags, CF_KEY_FAULT, CF_KEY_TRUNC);
		e->key_len = klen;
		if (in->cmd == BPF_MAP_UPDATE_ELEM) {
			e->value_total = value_bytes(&in->map);
			e->value_len = copy_user(s->buf, klen, attr.elem.value, e->value_total, &e->flags,
						 CF_VALUE_FAULT, CF_VALUE_TRUNC);
		}
		break;
	case BPF_MAP_UPDATE_BATCH:
	case BPF_MAP_DELETE_BATCH:
		e->count = attr.batch.count;
		e->key_total = (__u64)e->count * in->map.key_size;
		klen = copy_user(s->buf, 0, attr.batch.keys, e->key_total, &e->flags, CF_KEY_FAULT, CF_KEY_TRUNC);
		e->key_len = klen;
		if (in->cmd == BPF_MAP_UPDATE_BATCH) {
			e->value_total = (__u64)e->count * value_bytes(&in->map);
			e->value_len = copy_user(s->buf, klen, attr.batch.values, e->value_total, &e->flags,
						 CF_VALUE_FAULT, CF_VALUE_TRUNC);
		}
		break;
	case BPF_OBJ_PIN:
	case BPF_OBJ_GET:
		n = bpf_probe_read_user_str(s->buf, MAX_PATH, (void *)attr.obj.pathname);
		if (n > 0)
			e->path_len = n - 1;
		if (n <= 0 || n == MAX_PATH)
			e->flags |= CF_PATH_TRUNC;
		break;
	}
}

/* report_exit writes a call's exit record: its result, and what the kernel
 * handed back. */
static __always_inline int report_exit(struct task_struct *t, __u64 pid_tgid, struct inflight *in, __s64 ret)
{
	struct scratch *s;
	struct call_rec *e;

	/* Compat tasks see a 32-bit return. mmap2's is an address, or an
	 * errno: arm64's tracepoints give it sign-extended (its
	 * syscall_get_return_value), x86's as the 64-bit value. */
	if ((in->flags & CF_COMPAT) && in->cmd == CMD_MMAP && !(ret < 0 && ret >= -4095))
		ret = (__u32)ret;
	else if (in->flags & CF_COMPAT)
		ret = (__s32)ret;

	if (!(in->flags & CF_REREAD))
	switch (in->cmd) {
	case CMD_MMAP:
	case BPF_MAP_UPDATE_ELEM:
	case BPF_MAP_DELETE_ELEM:
	case BPF_MAP_FREEZE:
	case BPF_OBJ_PIN:
	case BPF_LINK_CREATE:
	case BPF_LINK_DETACH:
	case BPF_LINK_UPDATE:
	case BPF_PROG_ATTACH:
	case BPF_PROG_DETACH:
	case BPF_MAP_UPDATE_BATCH:
	case BPF_MAP_DELETE_BATCH: {
		/* Nothing but the result (and a batch count): a compact record
		 * reserved in place, without the scratch copy. */
		struct call_exit *x = bpf_ringbuf_reserve(&events, sizeof(*x), 0);

		if (!x) {
			stat_inc(STAT_LOST_EXIT);
			return 0;
		}
		x->hdr.kind = REC_EXIT_SHORT;
		x->hdr.tid = (__u32)pid_tgid;
		x->hdr.ktime = 0;
		x->cmd = in->cmd;
		x->flags = in->flags & CF_COMPAT;
		x->result = ret;
		x->count = 0;
		x->_pad = 0;
		if (in->cmd == BPF_MAP_UPDATE_BATCH || in->cmd == BPF_MAP_DELETE_BATCH)
			bpf_probe_read_user(&x->count, sizeof(x->count),
					    (void *)(in->attr + __builtin_offsetof(struct attr_batch, count)));
		bpf_ringbuf_submit(x, rec_flags());
		return 0;
	}
	}

	s = scratch_get();
	if (!s)
		return 0;
	e = &s->ev;
	e->hdr.kind = REC_EXIT;
	e->hdr.tid = (__u32)pid_tgid;
	e->cmd = in->cmd;
	e->result = ret;
	e->flags = in->flags & CF_COMPAT;
	if (in->flags & CF_REREAD) {
		reread(s, in);
		if (in->cmd != BPF_MAP_LOOKUP_AND_DELETE_ELEM && in->cmd != BPF_OBJ_GET) {
			emit(s, STAT_LOST_EXIT);
			return 0;
		}
	}

	switch (in->cmd) {
	case BPF_MAP_CREATE:
	case BPF_MAP_GET_FD_BY_ID:
	case BPF_OBJ_GET:
		if (ret >= 0) {
			e->fd = ret;
			e->flags |= resolve_map(t, ret, &e->map);
		}
		break;
	case BPF_PROG_LOAD:
		if (ret >= 0) {
			e->fd = ret;
			if (read_prog(t, ret, (struct prog_loaded *)s->buf, true)) {
				e->flags |= CF_PROG;
				e->value_len = sizeof(struct prog_loaded);
			}
		}
		break;
	case BPF_MAP_LOOKUP_AND_DELETE_ELEM:
		if (ret == 0) {
			/* After the key when it was read again. */
			__u32 off = e->key_len;

			CLAMP(off, MAX_CAPTURE);
			e->value_total = in->value_bytes;
			e->value_len = copy_user(s->buf, off, in->out_ptr, e->value_total, &e->flags,
						 CF_VALUE_FAULT, CF_VALUE_TRUNC);
		}
		break;
	case BPF_MAP_UPDATE_BATCH:
	case BPF_MAP_DELETE_BATCH:
	case BPF_MAP_LOOKUP_AND_DELETE_BATCH: {
		__u32 count = 0, klen;

		/* The kernel writes the number of elements processed back into
		 * attr->batch.count, also on error. */
		bpf_probe_read_user(&count, sizeof(count),
				    (void *)(in->attr + __builtin_offsetof(struct attr_batch, count)));
		e->count = count;
		if (in->cmd != BPF_MAP_LOOKUP_AND_DELETE_BATCH)
			break;
		e->key_total = (__u64)count * in->key_size;
		klen = copy_user(s->buf, 0, in->out_ptr, e->key_total, &e->flags, CF_KEY_FAULT,
				 CF_KEY_TRUNC);
		e->key_len = klen;
		e->value_total = (__u64)count * in->value_bytes;
		e->value_len = copy_user(s->buf, klen, in->out_ptr2, e->value_total, &e->flags,
					 CF_VALUE_FAULT, CF_VALUE_TRUNC);
		break;
	}
	default:
		break;
	}
	emit(s, STAT_LOST_EXIT);
	return 0;
}

SEC(SEC_EXIT)
int sys_exit(struct bpf_raw_tracepoint_args *ctx)
{
	struct inflight in;
	__u64 pid_tgid;
	__u32 zero = 0;
	__s64 *n;

	n = bpf_map_lookup_elem(&inflight_count, &zero);
	if (!n || *n <= 0)
		return 0;
	pid_tgid = bpf_get_current_pid_tgid();
	if (inflight_take(current_task(), pid_tgid, &in) < 0)
		return 0;
	__sync_fetch_and_add(n, -1);
	return report_exit(current_task(), pid_tgid, &in, (__s64)ctx->args[1]);
}

#ifdef BPFMON_BTF
/*
 * The trampoline build: fentry and fexit programs on the bpf syscall's own
 * body, and an fexit program on the map files' mmap operation. Processes
 * that never call bpf(2) nor map a map run no bpfmon code at all, where the
 * raw_syscalls programs above run on every syscall of every process. The
 * loader chooses it where the kernel allows BPF trampolines, and then loads
 * these programs instead of sys_enter and sys_exit.
 *
 * The hook is __sys_bpf(enum bpf_cmd cmd, bpfptr_t uattr, unsigned int
 * size), which the syscall entries of both ABIs call: the per-ABI entries
 * (__x64_sys_bpf, __ia32_sys_bpf; __arm64_sys_bpf) are declared twice in
 * some kernels' BTF (the weak stub of kernel/sys_ni.c beside the real one),
 * and a loader cannot tell which to trust. The ABI is arch.h's
 * COMPAT_SYSCALL, as in the raw_syscalls builds (on arm64 it reads the
 * task's user registers, hence bpf_task_pt_regs there). uattr is a struct passed by value, in two slots
 * (the user or kernel pointer, then is_kernel); calls from BPF syscall
 * programs (bpf_sys_bpf, kernel attributes) are not bpf(2) calls and are
 * left out, as the raw_syscalls builds never see them.
 */
#define SYS_BPF_CMD(ctx) ((__u32)(ctx)[0])
#define SYS_BPF_ATTR(ctx) ((ctx)[1])
#define SYS_BPF_KERNEL(ctx) ((ctx)[2] & 1)
#define SYS_BPF_SIZE(ctx) ((__u32)(ctx)[3])
#define SYS_BPF_RET(ctx) ((__s64)(__s32)(ctx)[4])

SEC("fentry/__sys_bpf")
int fe_bpf(__u64 *ctx)
{
	struct task_struct *t = bpf_get_current_task_btf();

	if (SYS_BPF_KERNEL(ctx))
		return 0;
	return bpf_entry(t, COMPAT_SYSCALL(t, (struct pt_regs *)bpf_task_pt_regs(t)), SYS_BPF_CMD(ctx), SYS_BPF_ATTR(ctx),
			 SYS_BPF_SIZE(ctx), false);
}

/* bpf_exit handles a bpf(2) call's return in the trampoline build. What
 * its exit record needs comes from the call's own arguments, which the
 * fexit program sees, instead of an in-flight table: only lookup-and-delete
 * reads its attributes and map again, for where the kernel wrote back. */
static __always_inline int bpf_exit(bool compat, __u32 cmd, __u64 attr_ptr, __u32 size, __s64 ret)
{
	struct task_struct *t = bpf_get_current_task_btf();
	__u64 pid_tgid = bpf_get_current_pid_tgid();
	struct inflight in;

	if ((__u32)(pid_tgid >> 32) == self_tgid)
		return 0;
	if (cmd >= 64 || !(cmd_mask & (1ULL << cmd)))
		return 0;
	inflight_add(-1);
	__builtin_memset(&in, 0, sizeof(in));
	in.cmd = cmd;
	in.flags = compat ? CF_COMPAT : 0;
	in.attr = attr_ptr;
	switch (cmd) {
	case BPF_MAP_UPDATE_ELEM:
	case BPF_MAP_DELETE_ELEM:
	case BPF_MAP_LOOKUP_AND_DELETE_ELEM:
	case BPF_MAP_UPDATE_BATCH:
	case BPF_MAP_DELETE_BATCH:
	case BPF_OBJ_PIN:
	case BPF_OBJ_GET: {
		/* The entry left its state only for what must be read again. */
		struct inflight saved;

		if (inflight_take(t, pid_tgid, &saved) == 0 && saved.cmd == cmd && saved.attr == attr_ptr)
			return report_exit(t, pid_tgid, &saved, ret);
	}
	}
	if (cmd == BPF_MAP_LOOKUP_AND_DELETE_ELEM || cmd == BPF_MAP_LOOKUP_AND_DELETE_BATCH) {
		union attr_read attr;
		struct map_info mi;
		int fd;

		__builtin_memset(&attr, 0, sizeof(attr));
		__builtin_memset(&mi, 0, sizeof(mi));
		CLAMP(size, ATTR_READ);
		bpf_probe_read_user(&attr, size, (void *)attr_ptr);
		fd = cmd == BPF_MAP_LOOKUP_AND_DELETE_ELEM ? attr.elem.map_fd : attr.batch.map_fd;
		if (resolve_map(t, fd, &mi) & CF_MAP) {
			in.key_size = mi.key_size;
			in.value_bytes = value_bytes(&mi);
		}
		if (cmd == BPF_MAP_LOOKUP_AND_DELETE_ELEM) {
			in.out_ptr = attr.elem.value;
		} else {
			in.out_ptr = attr.batch.keys;
			in.out_ptr2 = attr.batch.values;
		}
	}
	return report_exit(t, pid_tgid, &in, ret);
}

SEC("fexit/__sys_bpf")
int fx_bpf(__u64 *ctx)
{
	struct task_struct *t = bpf_get_current_task_btf();

	if (SYS_BPF_KERNEL(ctx))
		return 0;
	return bpf_exit(COMPAT_SYSCALL(t, (struct pt_regs *)bpf_task_pt_regs(t)), SYS_BPF_CMD(ctx), SYS_BPF_ATTR(ctx),
			SYS_BPF_SIZE(ctx), SYS_BPF_RET(ctx));
}

/* bpf_map_mmap(struct file *filp, struct vm_area_struct *vma) is the map
 * files' mmap operation: every mapping of a map passes here, whatever the
 * syscall or ABI, with the file itself, so no fd can be swapped under the
 * check. The mmap(2)'s arguments (fd, prot, flags) are read from the
 * task's registers when the call is one of the mmap syscalls; the address
 * is the new mapping's start. A mapping refused before the map's mmap
 * operation is reached (an fd opened without write access, an LSM) is not
 * seen here. */
SEC("fexit/bpf_map_mmap")
int fx_map_mmap(__u64 *ctx)
{
	struct file *f = (struct file *)ctx[0];
	struct vm_area_struct *vma = (struct vm_area_struct *)ctx[1];
	int ret = (int)ctx[2];
	struct task_struct *t;
	struct pt_regs *regs;
	struct mmap_args margs;
	struct inflight in;
	__u64 pid_tgid, nr;
	__u32 buf[5];
	bool compat;

	if (!watch_mmap)
		return 0;
	pid_tgid = bpf_get_current_pid_tgid();
	if ((__u32)(pid_tgid >> 32) == self_tgid)
		return 0;
	t = bpf_get_current_task_btf();
	compat = COMPAT_SYSCALL(t, (struct pt_regs *)bpf_task_pt_regs(t));
	__builtin_memset(&margs, 0, sizeof(margs));
	margs.fd = -1;
	regs = (struct pt_regs *)bpf_task_pt_regs(t);
	nr = regs->SYS_NR;
	if (compat ? (nr == NR_MMAP2_COMPAT || is_old_mmap(nr)) : nr == NR_MMAP_NATIVE)
		mmap_args_of(regs, compat, is_old_mmap(nr), &margs, buf);
	report_enter(t, pid_tgid, compat, CMD_MMAP, 0, 0, &margs, f->private_data, false);
	__builtin_memset(&in, 0, sizeof(in));
	in.cmd = CMD_MMAP;
	in.flags = compat ? CF_COMPAT : 0;
	return report_exit(t, pid_tgid, &in, ret == 0 ? (__s64)vma->vm_start : ret);
}
#endif

// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * bpfmon BPF LSM sensor (--enforce): refuses write access to protected maps
 * to every process that does not own them, and reports each refusal.
 *
 * A process writes a map through a writable fd, so the hooks close every way
 * to get one and every way to use one:
 *   bpf          a bpf(2) command that changes a map (update, delete,
 *                lookup-and-delete, their batch forms, freeze), by map fd;
 *   bpf_map      a new fd with write access (BPF_MAP_GET_FD_BY_ID,
 *                BPF_OBJ_GET of a pin);
 *   file_receive a writable map fd passed in (SCM_RIGHTS, pidfd_getfd);
 *   mmap_file    a shared writable mapping of a BPF_F_MMAPABLE map.
 * Without the bpf_map and file_receive hooks, the bpf hook alone would be
 * racy: it resolves the fd before the command does, and another thread
 * could dup2 a protected map's fd over it in between. With them, a
 * non-owner never holds a writable fd to a protected map in the first place.
 *
 * Who owns a map is decided by user space (internal/alert) and written into
 * the owners map: an executable (inode) in a cgroup (id), per map or for
 * every map. Refusals are written, as struct deny_rec, into bpfmon's ring
 * buffer, where they are read in order with the call they refused. bpfmon itself (self_tgid) is always allowed. Writes by BPF
 * programs through helpers have no LSM hook and are not refused.
 *
 * Each program honours an earlier program's refusal: the return value of
 * the previous one is the slot after the hook's arguments.
 *
 * Two sets of programs run the same checks: BPF LSM programs (the bpf-lsm
 * build, where bpf is an active LSM) and fmod_ret programs on the kernel's
 * security_* functions (the fmod_ret build, where it is not); the loader
 * keeps one set.
 */
/* Two builds: BTF-typed reads of the task (Linux 5.11+), and, with
 * BPFMON_LSM_PROBE_READ, probe reads for kernels whose LSM programs lack
 * bpf_get_current_task_btf (5.7 to 5.10). */
#ifndef BPFMON_LSM_PROBE_READ
#define BPFMON_BTF
#endif
#include "kernel.h"
#include "bpf_helpers.h"
#include "bpf_core_read.h"
#include "common.h"
#include "record.h"
#include "link.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

/* deny_rec.hook: where an access was refused. */
enum lsm_hook {
	HOOK_BPF = 1,          /* security_bpf: a bpf(2) command on a map fd */
	HOOK_BPF_MAP = 2,      /* security_bpf_map: a new writable fd to a map */
	HOOK_FILE_RECEIVE = 3, /* security_file_receive: SCM_RIGHTS, pidfd_getfd */
	HOOK_MMAP_FILE = 4,    /* security_mmap_file: a shared writable mapping */
};

/* Counters in the lstats map. */
enum lsm_stat {
	LSTAT_LOST = 0, /* refusals not reported: the ring buffer was full */
	LSTAT_DENIED = 1,
	LSTAT_MAX = 2,
};

/* REC_DENY: an access refused. */
struct deny_rec {
	struct rec_hdr hdr;
	struct task_info task;
	__u32 hook; /* enum lsm_hook */
	__u32 cmd;  /* HOOK_BPF: enum bpf_cmd */
	__u32 mode; /* HOOK_BPF_MAP, HOOK_FILE_RECEIVE: fmode; HOOK_MMAP_FILE: prot */
	__u32 _pad;
	struct map_info map;
};

volatile const __u32 self_tgid = 0;
/* Not read by the programs: put the records into the object's BTF, for
 * bpf2go. */
volatile const struct deny_rec deny_rec_layout = {};
volatile const enum lsm_hook lsm_hook_layout = 0;
volatile const enum lsm_stat lsm_stat_layout = 0;

#define EPERM 1
#define FMODE_WRITE 0x2
#define PROT_WRITE 0x2
#define MAP_SHARED 0x01
#define MAP_SHARED_VALIDATE 0x03

/* enum bpf_cmd */
#define BPF_MAP_UPDATE_ELEM 2
#define BPF_MAP_DELETE_ELEM 3
#define BPF_MAP_LOOKUP_AND_DELETE_ELEM 21
#define BPF_MAP_FREEZE 22
#define BPF_MAP_LOOKUP_AND_DELETE_BATCH 25
#define BPF_MAP_UPDATE_BATCH 26
#define BPF_MAP_DELETE_BATCH 27
#define BPF_LINK_UPDATE 29
#define BPF_LINK_DETACH 34
#define BPF_PROG_ATTACH 8
#define BPF_PROG_DETACH 9
#define BPF_F_REPLACE 4 /* attach_flags of BPF_PROG_ATTACH */
#define LINK_PROG_MAPS 16 /* maps of a link's program looked up */
/* union bpf_attr: map_fd of the element commands and of the batch ones */
#define ATTR_ELEM_MAP_FD 0
#define ATTR_BATCH_MAP_FD 36


struct owner_key {
	__u32 map_id;  /* 0: every protected map */
	__u32 exe_dev; /* the kernel's dev_t of the executable's filesystem; 0: any */
	__u64 exe_ino;
	__u64 cgroup_id; /* 0: any cgroup */
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 65536);
	__type(key, __u32);
	__type(value, __u8);
} protected SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 65536);
	__type(key, struct owner_key);
	__type(value, __u8);
} owners SEC(".maps");

/* bpf_map_fops, as the syscall sensor learnt it (the loader replaces this
 * map with the sensor's): a file is a map's when its f_op is that. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} calib SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, LSTAT_MAX);
	__type(key, __u32);
	__type(value, __u64);
} lstats SEC(".maps");

/* BPF_PROG_ATTACH and BPF_PROG_DETACH, as far as the hook reads them. */
struct attr_progattach {
	__u32 target_fd;
	__u32 attach_bpf_fd;
	__u32 attach_type;
	__u32 attach_flags;
	__u32 replace_bpf_fd;
};

/* prog_map returns the first protected map (of the first LINK_PROG_MAPS)
 * that prog uses, NULL when there is none or prog is not a program: its
 * aux pointing back to it tells a program from another file's
 * private_data. */
static __always_inline struct bpf_map *prog_map(struct bpf_prog *prog)
{
	struct bpf_prog_aux *aux;
	struct bpf_map **maps;
	__u32 i, n;

	if (!prog)
		return 0;
	aux = BPF_CORE_READ(prog, aux);
	if (!aux || BPF_CORE_READ(aux, prog) != prog)
		return 0;
	n = BPF_CORE_READ(aux, used_map_cnt);
	maps = BPF_CORE_READ(aux, used_maps);
	for (i = 0; i < LINK_PROG_MAPS && i < n && maps; i++) {
		struct bpf_map *m = used_map(maps, i);
		__u32 id;

		if (!m)
			continue;
		id = BPF_CORE_READ(m, id);
		if (bpf_map_lookup_elem(&protected, &id))
			return m;
	}
	return 0;
}

/* link_map returns the first protected map that the program behind link
 * file f uses, NULL when there is none or f is not a link's. Detaching
 * the link, or putting another program behind it, switches that program
 * off. */
static __always_inline struct bpf_map *link_map(struct file *f)
{
	struct bpf_link___bpfmon *l;

	if (!f)
		return 0;
	l = BPF_CORE_READ(f, private_data);
	if (!l)
		return 0;
	return prog_map(BPF_CORE_READ(l, prog));
}

/* prog_file_map returns the first protected map that the program at file
 * f uses, NULL when there is none or f is not a program's. */
static __always_inline struct bpf_map *prog_file_map(struct file *f)
{
	if (!f)
		return 0;
	return prog_map(BPF_CORE_READ(f, private_data));
}

/* prog_attach_map: the first protected map of the program a
 * BPF_PROG_DETACH detaches (attach_bpf_fd) or a BPF_PROG_ATTACH with
 * BPF_F_REPLACE replaces (replace_bpf_fd). attr is the kernel's copy. */
static __always_inline struct bpf_map *prog_attach_map(int cmd, void *attr)
{
	struct attr_progattach a = {};
	__u32 fd;

	if (bpf_probe_read_kernel(&a, sizeof(a), attr) < 0)
		return 0;
	if (cmd == BPF_PROG_DETACH)
		fd = a.attach_bpf_fd;
	else if (a.attach_flags & BPF_F_REPLACE)
		fd = a.replace_bpf_fd;
	else
		return 0;
	return prog_file_map(fd_file(current_task(), fd));
}

/* map_of returns the map behind file f, NULL when f is not a map's. */
static __always_inline struct bpf_map *map_of(struct file *f)
{
	__u32 zero = 0;

	return map_of_file(f, bpf_map_lookup_elem(&calib, &zero));
}

/* owned_as looks k up as an owner of map_id, of every map, in its cgroup
 * and in any. */
static __always_inline bool owned_as(struct owner_key *k, __u32 map_id)
{
	k->cgroup_id = bpf_get_current_cgroup_id();
	k->map_id = map_id;
	if (bpf_map_lookup_elem(&owners, k))
		return true;
	k->map_id = 0;
	if (bpf_map_lookup_elem(&owners, k))
		return true;
	k->cgroup_id = 0;
	if (bpf_map_lookup_elem(&owners, k))
		return true;
	k->map_id = map_id;
	return bpf_map_lookup_elem(&owners, k) != 0;
}

static __always_inline bool owned(__u32 map_id)
{
	struct task_struct *t = current_task();
	struct owner_key k = {};

	k.exe_ino = exe_ino(t);
	if (!k.exe_ino)
		return false;
	k.exe_dev = exe_dev(t);
	if (owned_as(&k, map_id))
		return true;
	/* An owner whose device was not known (a state saved by an older
	 * bpfmon) is keyed with 0. */
	k.exe_dev = 0;
	return owned_as(&k, map_id);
}

/* check refuses the current task access to m if m is protected and the
 * task does not own it, and reports the refusal. */
static __always_inline int check(struct bpf_map *m, __u32 hook, __u32 cmd, __u32 mode)
{
	struct task_struct *t = current_task();
	__u64 pid_tgid = bpf_get_current_pid_tgid();
	struct deny_rec *d;
	__u32 id;

	if (!m || (__u32)(pid_tgid >> 32) == self_tgid)
		return 0;
	id = BPF_CORE_READ(m, id);
	if (!bpf_map_lookup_elem(&protected, &id) || owned(id))
		return 0;
	count_inc(&lstats, LSTAT_DENIED);
	d = bpf_ringbuf_reserve(&events, sizeof(*d), 0);
	if (!d) {
		count_inc(&lstats, LSTAT_LOST);
		return -EPERM;
	}
	__builtin_memset(d, 0, sizeof(*d));
	d->hdr.kind = REC_DENY;
	d->hdr.ktime = bpf_ktime_get_boot_ns();
	fill_task(&d->hdr, &d->task, t, pid_tgid);
	d->hook = hook;
	d->cmd = cmd;
	d->mode = mode;
	read_map(m, &d->map);
	bpf_ringbuf_submit(d, 0);
	return -EPERM;
}

static __always_inline int on_bpf(int cmd, void *attr)
{
	__u32 off, fd = 0;

	switch (cmd) {
	case BPF_MAP_UPDATE_ELEM:
	case BPF_MAP_DELETE_ELEM:
	case BPF_MAP_LOOKUP_AND_DELETE_ELEM:
	case BPF_MAP_FREEZE:
		off = ATTR_ELEM_MAP_FD;
		break;
	case BPF_MAP_LOOKUP_AND_DELETE_BATCH:
	case BPF_MAP_UPDATE_BATCH:
	case BPF_MAP_DELETE_BATCH:
		off = ATTR_BATCH_MAP_FD;
		break;
	case BPF_LINK_UPDATE:
	case BPF_LINK_DETACH:
		/* link_fd first: refused when the link's program uses a
		 * protected map the caller does not own. */
		if (bpf_probe_read_kernel(&fd, sizeof(fd), attr) < 0)
			return 0;
		return check(link_map(fd_file(current_task(), fd)), HOOK_BPF, cmd, 0);
	case BPF_PROG_ATTACH:
	case BPF_PROG_DETACH:
		/* Refused when the program detached or replaced uses a
		 * protected map the caller does not own. */
		return check(prog_attach_map(cmd, attr), HOOK_BPF, cmd, 0);
	default:
		return 0;
	}
	/* attr is the kernel's copy of the caller's union bpf_attr. */
	if (bpf_probe_read_kernel(&fd, sizeof(fd), attr + off) < 0)
		return 0;
	return check(map_of(fd_file(current_task(), fd)), HOOK_BPF, cmd, 0);
}

/* security_bpf(int cmd, union bpf_attr *attr, unsigned int size) */
static __always_inline int hook_bpf(__u64 *ctx, int nargs)
{
	if ((int)ctx[nargs])
		return (int)ctx[nargs];
	return on_bpf((int)ctx[0], (void *)ctx[1]);
}

/* security_bpf_map(struct bpf_map *map, fmode_t fmode) */
static __always_inline int hook_bpf_map(__u64 *ctx)
{
	if ((int)ctx[2])
		return (int)ctx[2];
	if (!((__u32)ctx[1] & FMODE_WRITE))
		return 0;
	return check((struct bpf_map *)ctx[0], HOOK_BPF_MAP, 0, (__u32)ctx[1]);
}

/* security_file_receive(struct file *file) */
static __always_inline int hook_file_receive(__u64 *ctx)
{
	struct file *f = (struct file *)ctx[0];
	__u32 mode;

	if ((int)ctx[1])
		return (int)ctx[1];
	mode = BPF_CORE_READ(f, f_mode);
	if (!(mode & FMODE_WRITE))
		return 0;
	return check(map_of(f), HOOK_FILE_RECEIVE, 0, mode);
}

/* mmap: the file, the protection and the flags are arguments file, prot
 * and flags of the context; the result so far follows nargs of them. */
static __always_inline int hook_mmap(__u64 *ctx, int prot, int flags, int nargs)
{
	__u32 type;

	if ((int)ctx[nargs])
		return (int)ctx[nargs];
	type = ctx[flags] & MAP_SHARED_VALIDATE;
	if (!(ctx[prot] & PROT_WRITE) || (type != MAP_SHARED && type != MAP_SHARED_VALIDATE))
		return 0;
	return check(map_of((struct file *)ctx[0]), HOOK_MMAP_FILE, 0, (__u32)ctx[prot]);
}

/* The bpf-lsm build: BPF LSM programs on the hooks (bpf_lsm_*), which
 * need bpf among the active LSMs. */

SEC("lsm/bpf")
int lsm_bpf(__u64 *ctx) { return hook_bpf(ctx, 3); }

/* Newer kernels add a fourth parameter (bool kernel: the call comes from a
 * BPF program), which moves the previous result's slot. */
SEC("lsm/bpf")
int lsm_bpf4(__u64 *ctx) { return hook_bpf(ctx, 4); }

SEC("lsm/bpf_map")
int lsm_bpf_map(__u64 *ctx) { return hook_bpf_map(ctx); }

SEC("lsm/file_receive")
int lsm_file_receive(__u64 *ctx) { return hook_file_receive(ctx); }

/* mmap_file(struct file *file, unsigned long reqprot, unsigned long prot,
 *           unsigned long flags) */
SEC("lsm/mmap_file")
int lsm_mmap_file(__u64 *ctx) { return hook_mmap(ctx, 2, 3, 4); }

/* The fmod_ret build: BPF_MODIFY_RETURN programs on the kernel's
 * security_* functions, which the verifier allows whatever the LSM list
 * says (check_attach_modify_return), for kernels that build BPF LSM
 * without activating it, or do not build it. A program runs before the
 * function; a non-zero result skips the function (so every LSM) and is
 * returned to the caller. The slot after the arguments holds the result
 * of the fmod_ret programs before this one, 0 at first; the trampolines
 * (x86-64, arm64) stop at the first one that is not 0, so an earlier
 * refusal is kept before these run, and they keep one they are handed
 * all the same. A refusal by another LSM comes later, in the function,
 * which runs when this program allows. */

SEC("fmod_ret/security_bpf")
int fmod_bpf(__u64 *ctx) { return hook_bpf(ctx, 3); }

SEC("fmod_ret/security_bpf")
int fmod_bpf4(__u64 *ctx) { return hook_bpf(ctx, 4); }

SEC("fmod_ret/security_bpf_map")
int fmod_bpf_map(__u64 *ctx) { return hook_bpf_map(ctx); }

SEC("fmod_ret/security_file_receive")
int fmod_file_receive(__u64 *ctx) { return hook_file_receive(ctx); }

/* security_mmap_file(struct file *file, unsigned long prot,
 *                    unsigned long flags): the LSM hook's reqprot is
 * computed inside. */
SEC("fmod_ret/security_mmap_file")
int fmod_mmap_file(__u64 *ctx) { return hook_mmap(ctx, 1, 2, 3); }

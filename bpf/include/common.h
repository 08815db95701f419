/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * Code shared by bpfmon's BPF programs: reading a struct bpf_map and the
 * calling task. Included after kernel.h, bpf_helpers.h, bpf_core_read.h and
 * event.h.
 */
#ifndef BPFMON_COMMON_H
#define BPFMON_COMMON_H

/* Built with BPFMON_BTF, programs read the task and pt_regs through
 * BTF-typed pointers (tp_btf, Linux 5.11+): plain loads that the verifier
 * guards, no helper call per field. Without, every field is read with
 * bpf_probe_read_kernel. */
#ifdef BPFMON_BTF
#define current_task() bpf_get_current_task_btf()
/* KREAD(p, chain): a kernel field through a BTF pointer chain. */
#define KREAD(p, chain) ((p)->chain)
#else
#define current_task() ((struct task_struct *)bpf_get_current_task())
#define KREAD(p, chain) BPF_CORE_READ(p, chain)
#endif

/* CLAMP(v, max) bounds v in the very register the next helper call uses.
 * A C comparison is not enough: clang may pass an earlier, unclamped copy of
 * the variable, which the verifier then rejects as unbounded. */
#define CLAMP(v, max) asm volatile("if %0 <= %1 goto +1\n\t%0 = %1" : "+r"(v) : "i"(max))

/* Offset of a struct bpf_map field relative to map_type, as relocated for the
 * running kernel. */
#define MAP_OFF(field) (bpf_core_field_offset(struct bpf_map, field) - \
			bpf_core_field_offset(struct bpf_map, map_type))
#define MAP_WINDOW 128

/* read_map copies the map's attributes with two reads instead of one per
 * field: the attributes sit together in struct bpf_map on every kernel
 * since 5.8 (map_type .. id), so one window starting at map_type covers
 * them, whatever their exact offsets; a field outside the window on some
 * future kernel falls back to its own read. */
static __always_inline void read_map(struct bpf_map *m, struct map_info *mi)
{
	__u8 w[MAP_WINDOW];

	if (bpf_probe_read_kernel(w, sizeof(w), (void *)m + bpf_core_field_offset(struct bpf_map, map_type)) < 0)
		return;
#define MAP_FIELD(dst, field, type)                                                   \
	if (MAP_OFF(field) + sizeof(type) <= MAP_WINDOW)                              \
		dst = *(type *)(w + (MAP_OFF(field) & (MAP_WINDOW - 1)));               \
	else                                                                          \
		dst = BPF_CORE_READ(m, field);
	MAP_FIELD(mi->type, map_type, __u32);
	MAP_FIELD(mi->key_size, key_size, __u32);
	MAP_FIELD(mi->value_size, value_size, __u32);
	MAP_FIELD(mi->max_entries, max_entries, __u32);
	MAP_FIELD(mi->flags, map_flags, __u32);
	MAP_FIELD(mi->id, id, __u32);
#undef MAP_FIELD
	if (MAP_OFF(name) + sizeof(mi->name) <= MAP_WINDOW)
		__builtin_memcpy(mi->name, w + (MAP_OFF(name) & (MAP_WINDOW - 1)), sizeof(mi->name));
	else
		BPF_CORE_READ_INTO(&mi->name, m, name);
	mi->frozen = BPF_CORE_READ(m, frozen);
}

static __always_inline bool percpu_type(__u32 type)
{
	return type == BPF_MAP_TYPE_PERCPU_HASH || type == BPF_MAP_TYPE_PERCPU_ARRAY ||
	       type == BPF_MAP_TYPE_LRU_PERCPU_HASH || type == BPF_MAP_TYPE_PERCPU_CGROUP_STORAGE;
}

#ifdef BPFMON_BTF
#define TASK_PPID(t) ((t)->real_parent->tgid)
#else
#define TASK_PPID(t) BPF_CORE_READ(t, real_parent, tgid)
#endif

/* FILL_TASK fills the process fields that struct event and struct kwrite
 * share (pid, tid, ppid, uid, gid, cgroup_id, comm) for the current task t. */
#define FILL_TASK(e, t, pid_tgid)                                   \
	do {                                                        \
		__u64 uid_gid;                                      \
		(e)->pid = (pid_tgid) >> 32;                        \
		(e)->tid = (__u32)(pid_tgid);                       \
		uid_gid = bpf_get_current_uid_gid();                \
		(e)->uid = (__u32)uid_gid;                          \
		(e)->gid = uid_gid >> 32;                           \
		(e)->cgroup_id = bpf_get_current_cgroup_id();       \
		bpf_get_current_comm((e)->comm, sizeof((e)->comm)); \
		(e)->ppid = TASK_PPID(t);                           \
	} while (0)

/* exe_ino is the inode number of the task's executable, 0 for none. */
static __always_inline __u64 exe_ino(struct task_struct *t)
{
#ifdef BPFMON_BTF
	struct mm_struct *mm = t->mm;
	struct file *exe;

	if (!mm)
		return 0;
	exe = mm->exe_file;
	return exe ? exe->f_inode->i_ino : 0;
#else
	return BPF_CORE_READ(t, mm, exe_file, f_inode, i_ino);
#endif
}

/* fd_file returns the file behind fd in task t's fd table, NULL if none. */
static __always_inline struct file *fd_file(struct task_struct *t, int fd)
{
	struct file **fds;
	struct file *f = 0;
	unsigned int max;

	struct fdtable *fdt;

	if (fd < 0)
		return 0;
#ifdef BPFMON_BTF
	fdt = t->files->fdt;
	max = fdt->max_fds;
	fds = fdt->fd;
#else
	fdt = BPF_CORE_READ(t, files, fdt);
	max = BPF_CORE_READ(fdt, max_fds);
	fds = BPF_CORE_READ(fdt, fd);
#endif
	if ((unsigned int)fd >= max)
		return 0;
	bpf_probe_read_kernel(&f, sizeof(f), &fds[fd]);
	return f;
}

/* map_of_file returns the map behind file f, or NULL when f is not a
 * map's: its f_op must be bpf_map_fops, whose address *fops holds (learnt
 * at start; until then, 0, and no file is taken for a map's). */
static __always_inline struct bpf_map *map_of_file(struct file *f, __u64 *fops)
{
	if (!f || !fops || *fops == 0 || (__u64)BPF_CORE_READ(f, f_op) != *fops)
		return 0;
	return BPF_CORE_READ(f, private_data);
}

/* count_inc adds one to counter idx of a per-CPU array of counters. */
static __always_inline void count_inc(void *counters, __u32 idx)
{
	__u64 *v = bpf_map_lookup_elem(counters, &idx);

	if (v)
		*v += 1;
}

/* ring_flags is the flag for writing a record into ring: wake the reader
 * only once wakeup bytes are waiting. It also polls on a short timer; a
 * wakeup per record would cost the writing task a context switch. */
static __always_inline __u64 ring_flags(void *ring, __u64 wakeup)
{
	return bpf_ringbuf_query(ring, BPF_RB_AVAIL_DATA) >= wakeup ? BPF_RB_FORCE_WAKEUP : BPF_RB_NO_WAKEUP;
}

#endif /* BPFMON_COMMON_H */

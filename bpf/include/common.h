/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * Code shared by bpfmon's BPF programs: reading the calling task, its fd
 * table and map files, counters, ring buffer flags. Included after
 * kernel.h, bpf_helpers.h and bpf_core_read.h; record.h follows it.
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

/* exe_dev is the device (the kernel's dev_t) of the filesystem holding
 * the task's executable, 0 for none: with exe_ino, which file it is. */
static __always_inline __u64 exe_dev(struct task_struct *t)
{
#ifdef BPFMON_BTF
	struct mm_struct *mm = t->mm;
	struct file *exe;

	if (!mm)
		return 0;
	exe = mm->exe_file;
	return exe ? exe->f_inode->i_sb->s_dev : 0;
#else
	return BPF_CORE_READ(t, mm, exe_file, f_inode, i_sb, s_dev);
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

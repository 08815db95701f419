/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * Minimal kernel type definitions for bpfmon's BPF programs.
 *
 * Why not a generated vmlinux.h: these few structs declare only the fields
 * bpfmon reads, marked preserve_access_index, so clang emits CO-RE
 * relocations and the loader (cilium/ebpf) fixes every offset against the
 * running kernel's BTF. The object is therefore identical whatever kernel the
 * developer generated it on (CI checks that regeneration changes nothing), the
 * header is reviewable, and a field that moved or vanished fails loudly at
 * load time instead of silently reading the wrong bytes.
 */
#ifndef BPFMON_KERNEL_H
#define BPFMON_KERNEL_H

typedef unsigned char __u8;
typedef signed char __s8;
typedef unsigned short __u16;
typedef short __s16;
typedef unsigned int __u32;
typedef int __s32;
typedef unsigned long long __u64;
typedef long long __s64;
typedef __u16 __be16;
typedef __u32 __be32;
typedef __u32 __wsum;
typedef _Bool bool;
#define true 1
#define false 0

/* enum bpf_map_type values used here (uapi, stable). */
#define BPF_MAP_TYPE_HASH 1
#define BPF_MAP_TYPE_ARRAY 2
#define BPF_MAP_TYPE_PERCPU_HASH 5
#define BPF_MAP_TYPE_PERCPU_ARRAY 6
#define BPF_MAP_TYPE_LRU_HASH 9
#define BPF_MAP_TYPE_LRU_PERCPU_HASH 10
#define BPF_MAP_TYPE_PERCPU_CGROUP_STORAGE 21
#define BPF_MAP_TYPE_SK_STORAGE 24
#define BPF_MAP_TYPE_RINGBUF 27
#define BPF_MAP_TYPE_INODE_STORAGE 28
#define BPF_MAP_TYPE_CGRP_STORAGE 32

#define BPF_ANY 0
#define BPF_NOEXIST 1
#define BPF_MAP_TYPE_TASK_STORAGE 29
#define BPF_F_NO_PREALLOC (1U << 0)
#define BPF_LOCAL_STORAGE_GET_F_CREATE (1ULL << 0)

/* bpf_ringbuf_output flags and bpf_ringbuf_query flags */
#define BPF_RB_NO_WAKEUP 1
#define BPF_RB_FORCE_WAKEUP 2
#define BPF_RB_AVAIL_DATA 0

/* struct pt_regs, struct thread_info and what else differs per
 * architecture. */
#include "arch.h"

struct qstr {
	const unsigned char *name;
} __attribute__((preserve_access_index));

struct dentry {
	struct dentry *d_parent;
	struct qstr d_name;
} __attribute__((preserve_access_index));

struct vfsmount {
	struct dentry *mnt_root;
} __attribute__((preserve_access_index));

/* struct mount embeds the vfsmount that a struct path points to. */
struct mount {
	struct mount *mnt_parent;
	struct dentry *mnt_mountpoint;
	struct vfsmount mnt;
} __attribute__((preserve_access_index));

struct path {
	struct vfsmount *mnt;
	struct dentry *dentry;
} __attribute__((preserve_access_index));

struct super_block {
	unsigned int s_dev; /* dev_t */
} __attribute__((preserve_access_index));

struct inode {
	unsigned long i_ino;
	struct super_block *i_sb;
} __attribute__((preserve_access_index));

struct file {
	struct path f_path;
	struct inode *f_inode;
	const void *f_op;
	unsigned int f_mode; /* fmode_t: FMODE_READ 0x1, FMODE_WRITE 0x2 */
	void *private_data;
} __attribute__((preserve_access_index));

struct fdtable {
	unsigned int max_fds;
	struct file **fd;
} __attribute__((preserve_access_index));

struct files_struct {
	struct fdtable *fdt;
} __attribute__((preserve_access_index));

struct task_struct;

struct mm_struct {
	struct file *exe_file;
	unsigned long env_start;
	unsigned long env_end;
	struct task_struct *owner; /* CONFIG_MEMCG: the task the mm is of */
} __attribute__((preserve_access_index));

/* Who a task is: its credentials and cgroups, read directly by the BTF
 * builds instead of through the helpers. */
typedef struct {
	unsigned int val;
} kuid_t;
typedef struct {
	unsigned int val;
} kgid_t;

struct cred {
	kuid_t uid;
	kgid_t gid;
} __attribute__((preserve_access_index));

struct kernfs_node;

struct cgroup;

struct css_set {
	struct cgroup *dfl_cgrp;
} __attribute__((preserve_access_index));

/* A mapping: where it starts (the address mmap(2) returns). */
struct vm_area_struct {
	unsigned long vm_start;
} __attribute__((preserve_access_index));

/* The task's kernel stack: its base, and with CONFIG_VMAP_STACK its size. */
struct vm_struct {
	unsigned int nr_pages;
} __attribute__((preserve_access_index));

struct list_head {
	struct list_head *next;
	struct list_head *prev;
};

/* Which pid namespace level a task's pids live at: 0 is the host's. */
struct pid {
	unsigned int level;
} __attribute__((preserve_access_index));

struct task_struct {
	struct thread_info thread_info;
	void *stack;
	struct vm_struct *stack_vm_area;
	int pid;
	int tgid;
	__u64 start_time;
	struct task_struct *real_parent;
	struct files_struct *files;
	struct mm_struct *mm;
	const struct cred *cred;
	struct css_set *cgroups;
	char comm[16];
	/* lineage.c: the process a thread belongs to, the tasks it traces
	 * (linked through their ptrace_entry), its pid's namespace level. */
	struct task_struct *group_leader;
	struct list_head ptraced;
	struct list_head ptrace_entry;
	struct pid *thread_pid;
} __attribute__((preserve_access_index));

/* Declared as an enum, as in the kernel: CO-RE refuses to relocate a field
 * whose kind (enum vs int) differs. Values are the BPF_MAP_TYPE_* above. */
enum bpf_map_type { __BPF_MAP_TYPE_UNSPEC = 0 };

struct bpf_map {
	enum bpf_map_type map_type;
	__u32 key_size;
	__u32 value_size;
	__u32 max_entries;
	__u32 map_flags;
	__u32 id;
	char name[16];
	bool frozen;
} __attribute__((preserve_access_index));

/* A loaded program: its id, tag, name and JIT'd image, from which the
 * kernel-side sensor tells which program made a write. */
enum bpf_prog_type { __BPF_PROG_TYPE_UNSPEC = 0 };

struct bpf_prog;

struct bpf_prog_aux {
	__u32 id;
	__u32 func_cnt;
	__u32 used_map_cnt;
	struct bpf_map **used_maps;
	struct bpf_prog **func;
	struct bpf_prog *prog; /* back to the program: tells a program from other files' private_data */
	char name[16];
	const char *attach_func_name; /* an iterator's target: "bpf_map_elem", ... */
} __attribute__((preserve_access_index));

struct bpf_prog {
	__u32 jited_len;
	__u8 tag[8];
	enum bpf_prog_type type;
	struct bpf_prog_aux *aux;
	void *bpf_func;
} __attribute__((preserve_access_index));

/* Owners of local-storage elements, by which the kernel-side sensor names
 * the element it reports (there is no other key). */
struct socket {
	struct file *file;
} __attribute__((preserve_access_index));

struct sock {
	struct socket *sk_socket;
} __attribute__((preserve_access_index));

struct kernfs_node {
	__u64 id;
} __attribute__((preserve_access_index));

struct cgroup {
	struct kernfs_node *kn;
} __attribute__((preserve_access_index));

struct bpf_raw_tracepoint_args {
	__u64 args[0];
};

#endif /* BPFMON_KERNEL_H */

// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * bpfmon netattach sensor: who changed a device's XDP program or deleted a
 * tc filter over netlink, the paths that take a program off a packet path
 * without a single bpf(2) call (`ip link set dev X xdpgeneric off`, `tc
 * filter del dev X ingress`).
 *
 *   dev_change_xdp_fd  rtnetlink's IFLA_XDP (every XDP attach, replace
 *                      and detach made over netlink, since 5.9 through
 *                      dev_xdp_attach): the device, the fd and flags
 *                      asked for, the result, and the program of each
 *                      mode (skb, drv, hw) after the call;
 *   tc_del_tfilter     RTM_DELTFILTER (in the core, cls_api.c, whatever
 *                      classifier module holds the filter): the device,
 *                      parent, priority and handle asked for, and the
 *                      result;
 *   bpf_link_release   the release of a bpf_link's file (fentry, else a
 *                      kprobe: no result needed), in the task closing
 *                      its last fd: when the file holds the link's last
 *                      reference, the link, its type and its program.
 *
 * Each writes a struct netattach_rec naming the caller, with the network
 * namespace the request was made in. Which program was taken off is not
 * read here for tc (the filter's private data is the classifier module's):
 * user space (internal/alert) names it from the attachments of the last
 * inventory, which it compares with the request's device and priority.
 *
 * Two builds: fexit (the arguments and the result at once), else a kprobe
 * at entry that keeps the arguments by thread and a kretprobe that reads
 * the result. Both hooks fire only when a process changes a device's XDP
 * program or deletes a filter: nothing on any packet or other syscall.
 */
#include "kernel.h"
#include "bpf_helpers.h"
#include "bpf_core_read.h"
#include "common.h"
#include "record.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

/* netattach_rec.nkind */
enum netattach_kind {
	NA_XDP = 1,    /* dev_change_xdp_fd */
	NA_TC_DEL = 2, /* tc_del_tfilter */
	NA_LINK_REL = 3, /* bpf_link_release, the last reference */
};

enum netattach_stat {
	NASTAT_LOST = 0, /* records the ring buffer could not take */
	NASTAT_MAX = 1,
};

#define XDP_MODES 3 /* enum bpf_xdp_mode: XDP_MODE_SKB, XDP_MODE_DRV, XDP_MODE_HW */

/* REC_NETATTACH */
struct netattach_rec {
	struct rec_hdr hdr;
	struct task_info task; /* the caller */
	__u32 nkind;           /* enum netattach_kind */
	__s32 ret;             /* the function's result: 0 or a negative errno */
	__u32 ifindex;         /* the device (tc: tcm_ifindex as asked) */
	__u32 netns;           /* the inode of its network namespace (tc: the caller's socket's) */
	__u32 flags;           /* NA_XDP: XDP_FLAGS_* asked for */
	__s32 fd;              /* NA_XDP: the program's fd asked for, -1 to detach */
	__u32 parent;          /* NA_TC_DEL: tcm_parent */
	__u32 info;            /* NA_TC_DEL: tcm_info, priority << 16 | protocol */
	__u32 handle;          /* NA_TC_DEL: tcm_handle */
	__u32 progs[XDP_MODES]; /* NA_XDP: the program id of each mode after the call, 0 for none */
	__u32 link_id;         /* NA_LINK_REL: the link's id */
	__u32 link_type;       /* NA_LINK_REL: enum bpf_link_type */
	__u32 link_prog;       /* NA_LINK_REL: its program's id */
	__u32 pad;
};

volatile const __u32 self_tgid = 0;
volatile const struct netattach_rec netattach_rec_layout = {};
volatile const enum netattach_kind netattach_kind_layout = 0;
volatile const enum netattach_stat netattach_stat_layout = 0;

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, NASTAT_MAX);
	__type(key, __u32);
	__type(value, __u64);
} nastats SEC(".maps");

/* The kernel's types read here, by CO-RE (the ___na flavour keeps them
 * apart from kernel.h's partial definitions of the same structs). */
struct ns_common___na {
	unsigned int inum;
} __attribute__((preserve_access_index));

struct net___na {
	struct ns_common___na ns;
} __attribute__((preserve_access_index));

typedef struct {
	struct net___na *net;
} possible_net_t___na;

struct bpf_xdp_entity___na {
	struct bpf_prog *prog;
} __attribute__((preserve_access_index));

struct net_device___na {
	int ifindex;
	possible_net_t___na nd_net;
	struct bpf_xdp_entity___na xdp_state[XDP_MODES];
} __attribute__((preserve_access_index));

struct sock_common___na {
	possible_net_t___na skc_net;
} __attribute__((preserve_access_index));

struct sock___na {
	struct sock_common___na __sk_common;
} __attribute__((preserve_access_index));

struct sk_buff___na {
	struct sock___na *sk;
} __attribute__((preserve_access_index));

struct bpf_prog_aux___na {
	__u32 id;
} __attribute__((preserve_access_index));

struct bpf_prog___na {
	struct bpf_prog_aux___na *aux;
} __attribute__((preserve_access_index));

enum bpf_link_type___na {
	BPF_LINK_TYPE_UNSPEC___na = 0,
};

struct bpf_link___na {
	struct {
		__s64 counter;
	} refcnt;
	__u32 id;
	enum bpf_link_type___na type; /* an int would not match the kernel's enum (CO-RE) */
	struct bpf_prog___na *prog;
} __attribute__((preserve_access_index));

struct file___na {
	void *private_data;
} __attribute__((preserve_access_index));

/* struct tcmsg (uapi), right after the 16-byte struct nlmsghdr. */
struct tcmsg_na {
	__u8 family;
	__u8 pad1;
	__u16 pad2;
	__s32 ifindex;
	__u32 handle;
	__u32 parent;
	__u32 info;
};
#define NLMSG_HDRLEN 16

static __always_inline bool is_self(void)
{
	return (bpf_get_current_pid_tgid() >> 32) == self_tgid;
}

static __always_inline struct netattach_rec *reserve(__u32 kind, long ret)
{
	struct netattach_rec *r = bpf_ringbuf_reserve(&events, sizeof(*r), 0);

	if (!r) {
		count_inc(&nastats, NASTAT_LOST);
		return 0;
	}
	__builtin_memset(r, 0, sizeof(*r));
	r->hdr.kind = REC_NETATTACH;
	r->hdr.ktime = bpf_ktime_get_boot_ns();
	fill_task(&r->hdr, &r->task, (struct task_struct *)bpf_get_current_task(), bpf_get_current_pid_tgid());
	r->nkind = kind;
	r->ret = (__s32)ret;
	return r;
}

/* xdp_done writes dev's change: the request, its result, and the program
 * of each mode now. */
static __always_inline int xdp_done(struct net_device___na *dev, int fd, __u32 flags, long ret)
{
	struct netattach_rec *r;

	if (is_self())
		return 0;
	r = reserve(NA_XDP, ret);
	if (!r)
		return 0;
	r->ifindex = BPF_CORE_READ(dev, ifindex);
	r->netns = BPF_CORE_READ(dev, nd_net.net, ns.inum);
	r->fd = fd;
	r->flags = flags;
	for (int i = 0; i < XDP_MODES; i++) {
		struct bpf_prog *p = BPF_CORE_READ(dev, xdp_state[i].prog);

		if (p)
			r->progs[i] = BPF_CORE_READ(p, aux, id);
	}
	bpf_ringbuf_submit(r, rec_flags());
	return 0;
}

/* tc_done writes a filter delete: the request read from the message, the
 * namespace of the socket it came on, and its result. */
static __always_inline int tc_done(struct sk_buff___na *skb, void *nlh, long ret)
{
	struct netattach_rec *r;
	struct tcmsg_na t = {};

	if (is_self())
		return 0;
	r = reserve(NA_TC_DEL, ret);
	if (!r)
		return 0;
	bpf_probe_read_kernel(&t, sizeof(t), nlh + NLMSG_HDRLEN);
	r->ifindex = t.ifindex;
	r->parent = t.parent;
	r->info = t.info;
	r->handle = t.handle;
	r->netns = BPF_CORE_READ(skb, sk, __sk_common.skc_net.net, ns.inum);
	bpf_ringbuf_submit(r, rec_flags());
	return 0;
}

/* link_released writes the release of a link's file (its last fd
 * closed, in the closing task) when that file held the link's last
 * reference: a pin, or another file, still holding it leaves the program
 * attached, and nothing is written. */
static __always_inline int link_released(struct file___na *filp)
{
	struct bpf_link___na *l = BPF_CORE_READ(filp, private_data);
	struct netattach_rec *r;

	if (!l || is_self() || BPF_CORE_READ(l, refcnt.counter) != 1)
		return 0;
	r = reserve(NA_LINK_REL, 0);
	if (!r)
		return 0;
	r->link_id = BPF_CORE_READ(l, id);
	r->link_type = (__u32)BPF_CORE_READ(l, type);
	r->link_prog = BPF_CORE_READ(l, prog, aux, id);
	bpf_ringbuf_submit(r, rec_flags());
	return 0;
}

/* The fexit build. */

SEC("fexit/dev_change_xdp_fd")
int na_fx_xdp(__u64 *ctx)
{
	/* (struct net_device *dev, struct netlink_ext_ack *extack, int fd,
	 *  int expected_fd, u32 flags) = int */
	return xdp_done((struct net_device___na *)ctx[0], (int)ctx[2], (__u32)ctx[4], (long)(int)ctx[5]);
}

SEC("fexit/tc_del_tfilter")
int na_fx_tc_del(__u64 *ctx)
{
	/* (struct sk_buff *skb, struct nlmsghdr *n, struct netlink_ext_ack
	 *  *extack) = int */
	return tc_done((struct sk_buff___na *)ctx[0], (void *)ctx[1], (long)(int)ctx[3]);
}

SEC("fentry/bpf_link_release")
int na_fe_link_rel(__u64 *ctx)
{
	/* (struct inode *inode, struct file *filp) */
	return link_released((struct file___na *)ctx[1]);
}

/* The kprobe build: the arguments kept by thread from entry to return. */

struct pending_call {
	__u64 obj; /* the device, or the skb */
	__u64 nlh; /* NA_TC_DEL: the message */
	__s32 fd;
	__u32 flags;
};

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 1024);
	__type(key, __u32); /* tid */
	__type(value, struct pending_call);
} pending SEC(".maps");

#if defined(__TARGET_ARCH_x86)
#define NA_ARG5 r8
#define NA_RC ax
struct pt_regs___na {
	unsigned long r8;
	unsigned long ax;
} __attribute__((preserve_access_index));
#else
#define NA_ARG5 regs[4]
#define NA_RC regs[0]
struct pt_regs___na {
	unsigned long regs[31];
} __attribute__((preserve_access_index));
#endif

static __always_inline int remember(struct pending_call *c)
{
	__u32 tid = (__u32)bpf_get_current_pid_tgid();

	if (!is_self())
		bpf_map_update_elem(&pending, &tid, c, BPF_ANY);
	return 0;
}

static __always_inline struct pending_call *recall(struct pending_call *out)
{
	__u32 tid = (__u32)bpf_get_current_pid_tgid();
	struct pending_call *c = bpf_map_lookup_elem(&pending, &tid);

	if (!c)
		return 0;
	*out = *c;
	bpf_map_delete_elem(&pending, &tid);
	return out;
}

SEC("kprobe/dev_change_xdp_fd")
int na_kp_xdp(struct pt_regs *ctx)
{
	struct pending_call c = {.obj = BPF_CORE_READ(ctx, FN_ARG1), .fd = (__s32)BPF_CORE_READ(ctx, FN_ARG3),
				 .flags = (__u32)BPF_CORE_READ((struct pt_regs___na *)ctx, NA_ARG5)};

	return remember(&c);
}

SEC("kretprobe/dev_change_xdp_fd")
int na_kr_xdp(struct pt_regs *ctx)
{
	struct pending_call c;

	if (!recall(&c))
		return 0;
	return xdp_done((struct net_device___na *)c.obj, c.fd, c.flags, (long)(int)BPF_CORE_READ((struct pt_regs___na *)ctx, NA_RC));
}

SEC("kprobe/tc_del_tfilter")
int na_kp_tc_del(struct pt_regs *ctx)
{
	struct pending_call c = {.obj = BPF_CORE_READ(ctx, FN_ARG1), .nlh = BPF_CORE_READ(ctx, FN_ARG2)};

	return remember(&c);
}

SEC("kretprobe/tc_del_tfilter")
int na_kr_tc_del(struct pt_regs *ctx)
{
	struct pending_call c;

	if (!recall(&c))
		return 0;
	return tc_done((struct sk_buff___na *)c.obj, (void *)c.nlh, (long)(int)BPF_CORE_READ((struct pt_regs___na *)ctx, NA_RC));
}

SEC("kprobe/bpf_link_release")
int na_kp_link_rel(struct pt_regs *ctx)
{
	return link_released((struct file___na *)BPF_CORE_READ(ctx, FN_ARG2));
}

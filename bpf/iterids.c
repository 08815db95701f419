// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * Two BPF iterators that list every map and every program the kernel holds
 * (internal/bpfiter), for the inventory's cross-view check. They walk the
 * kernel's own map and program idr (bpf_map_get_curr_or_next,
 * bpf_prog_get_curr_or_next) without BPF_{MAP,PROG}_GET_NEXT_ID or
 * GET_FD_BY_ID: a rootkit's hook that rewrites those commands' bpf_attr
 * does not reach them. Each object is one fixed-size record written to the
 * iterator's seq_file; user space reads the records with read(2).
 */
#include "kernel.h"
#include "bpf_helpers.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

struct bpf_iter_meta {
	void *seq;
	__u64 session_id;
	__u64 seq_num;
} __attribute__((preserve_access_index));

struct bpf_iter__bpf_map {
	struct bpf_iter_meta *meta;
	struct bpf_map *map;
} __attribute__((preserve_access_index));

struct bpf_iter__bpf_prog {
	struct bpf_iter_meta *meta;
	struct bpf_prog *prog;
} __attribute__((preserve_access_index));

/* What user space reads per map: the fields bpf_map_info also gives. */
struct iter_map {
	__u32 id;
	__u32 type;
	__u32 key_size;
	__u32 value_size;
	__u32 max_entries;
	__u32 map_flags;
	char name[16];
};

/* What user space reads per program. */
struct iter_prog {
	__u32 id;
	__u32 type;
	char name[16];
};

SEC("iter/bpf_map")
int list_maps(struct bpf_iter__bpf_map *ctx)
{
	struct bpf_map *m = ctx->map;
	struct iter_map r = {};

	if (!m) /* the end of the walk */
		return 0;
	r.id = m->id;
	r.type = m->map_type;
	r.key_size = m->key_size;
	r.value_size = m->value_size;
	r.max_entries = m->max_entries;
	r.map_flags = m->map_flags;
	__builtin_memcpy(r.name, m->name, sizeof(r.name));
	bpf_seq_write(ctx->meta->seq, &r, sizeof(r));
	return 0;
}

SEC("iter/bpf_prog")
int list_progs(struct bpf_iter__bpf_prog *ctx)
{
	struct bpf_prog *p = ctx->prog;
	struct iter_prog r = {};

	if (!p)
		return 0;
	r.id = p->aux->id;
	r.type = p->type;
	__builtin_memcpy(r.name, p->aux->name, sizeof(r.name));
	bpf_seq_write(ctx->meta->seq, &r, sizeof(r));
	return 0;
}

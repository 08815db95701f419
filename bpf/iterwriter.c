// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * An iterator over a map's elements that rewrites every value, for testing
 * the iterator write path (internal/testprogs/iterwriter): a program can
 * change a whole map through the writable value pointer the iterator hands
 * it, with no update helper and no bpf(2) write.
 */
#include "kernel.h"
#include "bpf_helpers.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

struct bpf_iter_meta {
	void *seq;
	__u64 session_id;
	__u64 seq_num;
} __attribute__((preserve_access_index));

struct bpf_iter__bpf_map_elem {
	struct bpf_iter_meta *meta;
	struct bpf_map *map;
	void *key;
	void *value;
} __attribute__((preserve_access_index));

SEC("iter/bpf_map_elem")
int rewrite(struct bpf_iter__bpf_map_elem *ctx)
{
	__u64 *v = ctx->value;

	if (v)
		*v = 0xbadbadbad;
	return 0;
}

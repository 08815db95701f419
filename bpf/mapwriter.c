// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * bpfmon mapwriter demo: a socket filter program that writes a map from
 * inside the kernel with the bpf_map_update_elem helper.
 *
 * User space runs it with BPF_PROG_TEST_RUN; no socket is ever attached.
 * Such writes make no bpf(2) call, so syscall hooks cannot see them: the demo
 * shows both kinds of write side by side.
 */
#include "kernel.h"
#include "bpf_helpers.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

/* Key 0: written by user space (bpf(2) BPF_MAP_UPDATE_ELEM).
 * Key 1: written by the program below, counting its runs. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__type(key, __u32);
	__type(value, __u64);
	__uint(max_entries, 4);
} bpfmon_demo SEC(".maps");

SEC("socket")
int bpfmon_demo_wr(void *skb)
{
	__u32 key = 1;
	__u64 val = 1;
	__u64 *old = bpf_map_lookup_elem(&bpfmon_demo, &key);

	if (old)
		val = *old + 1;
	bpf_map_update_elem(&bpfmon_demo, &key, &val, BPF_ANY);
	return 0;
}

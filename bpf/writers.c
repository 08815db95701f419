// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * Programs that write maps from inside the kernel, through the helpers, for
 * testing the kernel-side sensor (internal/sensor/kernelwrite/writers).
 *
 * Each socket filter writes one kind of map. Run with BPF_PROG_TEST_RUN, it
 * takes its key (4 bytes) and value (8 bytes) from the packet, after the
 * Ethernet header that the test run strips; attached to a socket, it runs on
 * packets received, in softirq context.
 */
#include "kernel.h"
#include "bpf_helpers.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

#define BPF_MAP_TYPE_LPM_TRIE 11
#define BPF_MAP_TYPE_QUEUE 22
#define BPF_MAP_TYPE_STACK 23
#define BPF_F_NO_PREALLOC (1U << 0)

#define MAP(name, t, k, v, n)          \
	struct {                       \
		__uint(type, t);       \
		__uint(max_entries, n); \
		__type(key, k);        \
		__type(value, v);      \
	} name SEC(".maps")

MAP(w_array, BPF_MAP_TYPE_ARRAY, __u32, __u64, 16);
MAP(w_pcpu_array, BPF_MAP_TYPE_PERCPU_ARRAY, __u32, __u64, 16);
MAP(w_hash, BPF_MAP_TYPE_HASH, __u32, __u64, 16);
MAP(w_pcpu_hash, BPF_MAP_TYPE_PERCPU_HASH, __u32, __u64, 16);
MAP(w_lru, BPF_MAP_TYPE_LRU_HASH, __u32, __u64, 16);
MAP(w_lru_pcpu, BPF_MAP_TYPE_LRU_PERCPU_HASH, __u32, __u64, 16);

struct lpm_key {
	__u32 prefixlen;
	__u32 addr;
};

struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(max_entries, 16);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct lpm_key);
	__type(value, __u64);
} w_lpm SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_QUEUE);
	__uint(max_entries, 16);
	__type(value, __u64);
} w_queue SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_STACK);
	__uint(max_entries, 16);
	__type(value, __u64);
} w_stack SEC(".maps");

struct kv {
	__u32 key;
	__u64 value;
} __attribute__((packed));

/* load reads key and value from the packet. */
static __always_inline int load(void *skb, struct kv *kv)
{
	return bpf_skb_load_bytes(skb, 0, kv, sizeof(*kv));
}

#define UPDATER(name, map)                                                 \
	SEC("socket")                                                      \
	int name(void *skb)                                                \
	{                                                                  \
		struct kv kv;                                              \
		__u32 key;                                                 \
		__u64 value;                                               \
                                                                           \
		if (load(skb, &kv) < 0)                                    \
			return 1;                                          \
		key = kv.key;                                              \
		value = kv.value;                                          \
		return bpf_map_update_elem(&map, &key, &value, BPF_ANY) ? 2 : 0; \
	}

UPDATER(update_array, w_array)
UPDATER(update_pcpu_array, w_pcpu_array)
UPDATER(update_hash, w_hash)
UPDATER(update_pcpu_hash, w_pcpu_hash)
UPDATER(update_lru, w_lru)
UPDATER(update_lru_pcpu, w_lru_pcpu)

SEC("socket")
int update_lpm(void *skb)
{
	struct kv kv;
	struct lpm_key key = {.prefixlen = 32};
	__u64 value;

	if (load(skb, &kv) < 0)
		return 1;
	key.addr = kv.key;
	value = kv.value;
	return bpf_map_update_elem(&w_lpm, &key, &value, BPF_ANY) ? 2 : 0;
}

/* delete_hash deletes the key from w_hash, and from w_lpm. */
SEC("socket")
int delete_hash(void *skb)
{
	struct kv kv;
	struct lpm_key lkey = {.prefixlen = 32};
	__u32 key;

	if (load(skb, &kv) < 0)
		return 1;
	key = kv.key;
	lkey.addr = kv.key;
	bpf_map_delete_elem(&w_lpm, &lkey);
	return bpf_map_delete_elem(&w_hash, &key) ? 2 : 0;
}

/* push_pop pushes the value onto w_queue and w_stack, then pops both. */
SEC("socket")
int push_pop(void *skb)
{
	struct kv kv;
	__u64 value, out = 0;

	if (load(skb, &kv) < 0)
		return 1;
	value = kv.value;
	if (bpf_map_push_elem(&w_queue, &value, 0) || bpf_map_push_elem(&w_stack, &value, 0))
		return 2;
	if (bpf_map_pop_elem(&w_queue, &out) || bpf_map_pop_elem(&w_stack, &out))
		return 3;
	return 0;
}

/* A subprogram called with two different maps: the verifier cannot turn
 * its helper call into a direct call of one map's operation, so the write
 * goes through the generic bpf_map_update_elem helper, one frame deeper. */
static __attribute__((noinline)) int write_any(void *map, __u32 key, __u64 value)
{
	return bpf_map_update_elem(map, &key, &value, BPF_ANY);
}

SEC("socket")
int update_generic(void *skb)
{
	struct kv kv;

	if (load(skb, &kv) < 0)
		return 1;
	if (write_any(&w_hash, kv.key, kv.value) || write_any(&w_array, kv.key, kv.value))
		return 2;
	return 0;
}

/* Task storage, written by a tracing program on its target's next system
 * call: created with the value (and deleted again when delete_too is set). */
struct {
	__uint(type, BPF_MAP_TYPE_TASK_STORAGE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, int);
	__type(value, __u64);
} w_task SEC(".maps");

volatile __u32 target_tid = 0;
volatile __u64 task_value = 0;
volatile __u32 delete_too = 0;
volatile __u32 done = 0;

SEC("tp_btf/sys_enter")
int task_storage(void *ctx)
{
	struct task_struct *t = bpf_get_current_task_btf();
	__u64 value = task_value;

	if (target_tid == 0 || (__u32)bpf_get_current_pid_tgid() != target_tid || done)
		return 0;
	done = 1;
	if (!bpf_task_storage_get(&w_task, t, &value, BPF_LOCAL_STORAGE_GET_F_CREATE))
		return 0;
	if (delete_too)
		bpf_task_storage_delete(&w_task, t);
	return 0;
}

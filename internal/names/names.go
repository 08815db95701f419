// Package names spells the kernel's numbers the way people read them: map
// and program types as bpftool names them, map flags, mmap protections and
// errno values. It is a leaf: the writers, the inventory and the scanner
// all name the same numbers, and must name them alike.
package names

import "strconv"

// mapTypeNames are bpftool's names of map types (enum bpf_map_type),
// indexed by number.
var mapTypeNames = [...]string{
	0:  "unspec",
	1:  "hash",
	2:  "array",
	3:  "prog_array",
	4:  "perf_event_array",
	5:  "percpu_hash",
	6:  "percpu_array",
	7:  "stack_trace",
	8:  "cgroup_array",
	9:  "lru_hash",
	10: "lru_percpu_hash",
	11: "lpm_trie",
	12: "array_of_maps",
	13: "hash_of_maps",
	14: "devmap",
	15: "sockmap",
	16: "cpumap",
	17: "xskmap",
	18: "sockhash",
	19: "cgroup_storage",
	20: "reuseport_sockarray",
	21: "percpu_cgroup_storage",
	22: "queue",
	23: "stack",
	24: "sk_storage",
	25: "devmap_hash",
	26: "struct_ops",
	27: "ringbuf",
	28: "inode_storage",
	29: "task_storage",
	30: "bloom_filter",
	31: "user_ringbuf",
	32: "cgrp_storage",
	33: "arena",
	34: "insn_array",
}

// MapType returns bpftool's name for map type t ("hash", "array",
// "ringbuf", ...), or "unknown(N)" for a number it does not know.
func MapType(t uint32) string {
	if int(t) < len(mapTypeNames) {
		return mapTypeNames[t]
	}
	return string(AppendMapType(nil, t))
}

// appendMapType appends MapType(t) to dst without allocating.
func AppendMapType(dst []byte, t uint32) []byte {
	if int(t) < len(mapTypeNames) {
		return append(dst, mapTypeNames[t]...)
	}
	dst = append(dst, "unknown("...)
	dst = strconv.AppendUint(dst, uint64(t), 10)
	return append(dst, ')')
}

// progTypeNames are bpftool's (libbpf's) names of enum bpf_prog_type.
var progTypeNames = [...]string{
	"unspec",
	"socket_filter",
	"kprobe",
	"sched_cls",
	"sched_act",
	"tracepoint",
	"xdp",
	"perf_event",
	"cgroup_skb",
	"cgroup_sock",
	"lwt_in",
	"lwt_out",
	"lwt_xmit",
	"sock_ops",
	"sk_skb",
	"cgroup_device",
	"sk_msg",
	"raw_tracepoint",
	"cgroup_sock_addr",
	"lwt_seg6local",
	"lirc_mode2",
	"sk_reuseport",
	"flow_dissector",
	"cgroup_sysctl",
	"raw_tracepoint_writable",
	"cgroup_sockopt",
	"tracing",
	"struct_ops",
	"ext",
	"lsm",
	"sk_lookup",
	"syscall",
	"netfilter",
}

// ProgType returns bpftool's name for program type t ("socket_filter",
// "xdp", ...), or "unknown(N)" for a number it does not know.
func ProgType(t uint32) string {
	return string(AppendProgType(nil, t))
}

// appendProgType appends ProgType(t) to dst without allocating.
func AppendProgType(dst []byte, t uint32) []byte {
	if int(t) < len(progTypeNames) {
		return append(dst, progTypeNames[t]...)
	}
	dst = append(dst, "unknown("...)
	dst = strconv.AppendUint(dst, uint64(t), 10)
	return append(dst, ')')
}

// Prot names the PROT_* bits of an mmap: read, write, exec, and
// hex for bits that have no name.
func Prot(prot uint32) []string {
	names := make([]string, 0, 3)
	for _, p := range [...]struct {
		bit  uint32
		name string
	}{{1, "read"}, {2, "write"}, {4, "exec"}} {
		if prot&p.bit != 0 {
			names = append(names, p.name)
			prot &^= p.bit
		}
	}
	if prot != 0 {
		names = append(names, "0x"+strconv.FormatUint(uint64(prot), 16))
	}
	return names
}

// mapFlagNames names the BPF_F_* bits of map_flags (include/uapi/linux/bpf.h),
// lowercased without the BPF_F_ prefix. Bit i is mapFlagNames[i].
var mapFlagNames = [...]string{
	"no_prealloc",      // 1 << 0
	"no_common_lru",    // 1 << 1
	"numa_node",        // 1 << 2
	"rdonly",           // 1 << 3
	"wronly",           // 1 << 4
	"stack_build_id",   // 1 << 5
	"zero_seed",        // 1 << 6
	"rdonly_prog",      // 1 << 7
	"wronly_prog",      // 1 << 8
	"clone",            // 1 << 9
	"mmapable",         // 1 << 10
	"preserve_elems",   // 1 << 11
	"inner_map",        // 1 << 12
	"link",             // 1 << 13
	"path_fd",          // 1 << 14
	"vtype_btf_obj_fd", // 1 << 15
	"token_fd",         // 1 << 16
	"segv_on_fault",    // 1 << 17
	"no_user_conv",     // 1 << 18
}

// MapFlags returns the names of the bits set in flags, lowest first, an
// unknown bit as "0x...". It never returns nil.
func MapFlags(flags uint32, frozen bool) []string {
	names := []string{}
	for i := 0; i < 32; i++ {
		bit := uint32(1) << i
		if flags&bit == 0 {
			continue
		}
		if i < len(mapFlagNames) {
			names = append(names, mapFlagNames[i])
		} else {
			names = append(names, "0x"+strconv.FormatUint(uint64(bit), 16))
		}
	}
	if frozen {
		names = append(names, "frozen")
	}
	return names
}

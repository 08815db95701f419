package inventory

import "strconv"

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

const (
	flagMmapable = 1 << 10
)

// flagNames returns the names of the bits set in flags, lowest first, an
// unknown bit as "0x...". It never returns nil.
func flagNames(flags uint32, frozen bool) []string {
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

// writability says whether user space can write the map now, and why.
// BPF_F_RDONLY and BPF_F_WRONLY at creation only restrict the creator's fd
// (the kernel does not even keep them in map_flags): anyone opening the map
// by id or pin gets a read-write fd, so they do not make a map read-only.
func writability(flags uint32, frozen bool) (bool, string) {
	switch {
	case frozen:
		return false, "frozen: bpf(2) writes and writable mappings are refused (only BPF programs can write it, unless it is rdonly_prog)"
	case flags&flagMmapable != 0:
		return true, "not frozen: any process with CAP_BPF can open it by id and write; mmapable: a writable mapping writes it without any bpf(2) call, and an existing one keeps working"
	default:
		return true, "not frozen: any process with CAP_BPF can open it by id and write"
	}
}

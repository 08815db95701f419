package inventory

const flagMmapable = 1 << 10 // BPF_F_MMAPABLE

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

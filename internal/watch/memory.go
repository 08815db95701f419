package watch

import (
	"fmt"
	"os"
	"runtime/debug"
	"slices"
	"strconv"
	"strings"
)

// bpfmon's memory, from its flags (docs/memory.md). Everything that grows
// with the host is bounded by bpfmon: the content scanner's snapshots and
// comparisons by --scan-memory, the rest by the fixed bounds that
// docs/memory.md lists, which FixedHeap sums with room for the collector.
const (
	// FixedHeap is the Go memory bpfmon may hold apart from the
	// scanner's: the map context, the inventory, the reported-keys table,
	// the BTF cache, the alert engine's and the lineage sensor's tables,
	// the output queue, buffers, and room for the collector to work.
	FixedHeap = 192 << 20
	// NonHeap is what the cgroup counts beyond Go's memory and the ring
	// buffer: bpfmon's own BPF maps and programs, page tables, the
	// binary's pages and the kernel's objects for its fds.
	NonHeap = 96 << 20
)

// GoMemoryLimit is the soft limit of Go's memory for a watch with this
// --scan-memory: the collector works harder near it, before the cgroup
// would kill.
func GoMemoryLimit(scanMemory int64) int64 { return scanMemory + FixedHeap }

// MemoryPeak is the most a watch with these flags holds, as its cgroup
// counts it: Go's memory at its limit, the ring buffer (kernel memory
// charged to bpfmon's cgroup) and NonHeap. A memory limit (the
// DaemonSet's, the unit's MemoryMax) must be at least this.
func MemoryPeak(scanMemory, ringBytes int64) int64 {
	return GoMemoryLimit(scanMemory) + ringBytes + NonHeap
}

// SetMemoryLimit sets Go's memory limit from the flags unless GOMEMLIMIT
// is set, which takes precedence. It returns the limit in force and a
// warning when the cgroup's memory.max is below MemoryPeak, "" if none.
func SetMemoryLimit(scanMemory, ringBytes int64) (limit int64, warning string) {
	if os.Getenv("GOMEMLIMIT") == "" {
		debug.SetMemoryLimit(GoMemoryLimit(scanMemory))
	}
	limit = debug.SetMemoryLimit(-1)
	if max, ok := cgroupMemoryMax(); ok && max < MemoryPeak(scanMemory, ringBytes) {
		warning = fmt.Sprintf("the cgroup's memory.max (%d MiB) is below what --scan-memory and --ring-buffer let bpfmon hold (%d MiB, docs/memory.md): lower --scan-memory or raise the limit, or the kernel may kill bpfmon",
			max>>20, MemoryPeak(scanMemory, ringBytes)>>20)
	}
	return limit, warning
}

// cgroupMemoryMax is the memory limit of this process's cgroup: v2's
// memory.max, or where the memory controller is on v1 (a hybrid host),
// memory.limit_in_bytes. False when there is none or it is unreadable.
func cgroupMemoryMax() (int64, bool) {
	b, err := os.ReadFile("/proc/self/cgroup")
	if err != nil {
		return 0, false
	}
	v1, v2 := "", ""
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.SplitN(line, ":", 3)
		if len(f) != 3 {
			continue
		}
		switch {
		case f[0] == "0" && f[1] == "":
			v2 = "/sys/fs/cgroup" + f[2] + "/memory.max"
		case slices.Contains(strings.Split(f[1], ","), "memory"):
			v1 = "/sys/fs/cgroup/memory" + f[2] + "/memory.limit_in_bytes"
		}
	}
	for _, path := range []string{v1, v2} {
		if path == "" {
			continue
		}
		v, err := os.ReadFile(path)
		if err != nil {
			continue
		}
		n, err := strconv.ParseInt(strings.TrimSpace(string(v)), 10, 64)
		if err != nil || n >= 1<<62 {
			return 0, false // "max", or v1's page-rounded largest value
		}
		return n, true
	}
	return 0, false
}

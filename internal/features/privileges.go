// Package features tells what this kernel and this process allow bpfmon to
// do, and when something is missing, exactly what and how to fix it.
package features

import (
	"bufio"
	"fmt"
	"os"
	"strconv"
	"strings"
)

// Capability numbers (linux/capability.h).
const (
	capSysAdmin = 21
	capPerfmon  = 38
	capBPF      = 39
)

// effectiveCaps reads the effective capability set of this process.
func effectiveCaps() (uint64, error) {
	f, err := os.Open("/proc/self/status")
	if err != nil {
		return 0, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "CapEff:"); ok {
			return strconv.ParseUint(strings.TrimSpace(v), 16, 64)
		}
	}
	return 0, fmt.Errorf("no CapEff line in /proc/self/status")
}

// CheckTracing reports whether this process may load and attach the
// tracing programs bpfmon needs: CAP_BPF and CAP_PERFMON (Linux 5.8+), or
// CAP_SYS_ADMIN. The error names what is missing.
func CheckTracing() error {
	caps, err := effectiveCaps()
	if err != nil {
		return nil // cannot tell; the load itself will say
	}
	has := func(c uint) bool { return caps&(1<<c) != 0 }
	if has(capSysAdmin) || (has(capBPF) && has(capPerfmon)) {
		return nil
	}
	var missing []string
	if !has(capBPF) {
		missing = append(missing, "CAP_BPF")
	}
	if !has(capPerfmon) {
		missing = append(missing, "CAP_PERFMON")
	}
	return fmt.Errorf("missing %s: bpfmon loads tracing BPF programs, which needs CAP_BPF and CAP_PERFMON (or CAP_SYS_ADMIN); run it as root, or grant them with e.g. setcap cap_bpf,cap_perfmon+ep ./bpfmon", strings.Join(missing, " and "))
}

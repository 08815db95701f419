// Package tracefs makes sure the kernel's tracing file system is mounted.
// Syscall tracepoints are attached by name, and cilium/ebpf (like bpftrace)
// reads their ids from tracefs: on a host that never mounted it (a minimal
// VM, a container without the mount, a machine without systemd, which
// mounts it at boot) a sensor on syscall tracepoints would not start.
package tracefs

import (
	"errors"
	"fmt"

	"golang.org/x/sys/unix"
)

// Dir is where tracefs is mounted when it is not mounted anywhere.
const Dir = "/sys/kernel/tracing"

// legacyDir is tracefs as debugfs shows it, which cilium/ebpf also reads.
const legacyDir = "/sys/kernel/debug/tracing"

// Mount returns nil when tracefs is mounted at Dir, or reachable through
// debugfs, and otherwise mounts it at Dir. The error says why it could not.
func Mount() error {
	if mounted(Dir) || mounted(legacyDir) {
		return nil
	}
	if err := unix.Mount("tracefs", Dir, "tracefs", unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, ""); err != nil {
		if errors.Is(err, unix.ENOENT) || errors.Is(err, unix.ENODEV) {
			return fmt.Errorf("tracefs is not mounted and %s cannot hold it (%w): is CONFIG_TRACING set, and is /sys the host's?", Dir, err)
		}
		return fmt.Errorf("tracefs is not mounted and mounting it on %s failed (%w): mount it with `mount -t tracefs tracefs %s`, or give a container that mount", Dir, err, Dir)
	}
	return nil
}

func mounted(dir string) bool {
	var st unix.Statfs_t
	return unix.Statfs(dir, &st) == nil && st.Type == unix.TRACEFS_MAGIC
}

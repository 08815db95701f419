package tracefs

import (
	"os"
	"testing"
)

// TestMount: after Mount, tracefs is where cilium/ebpf looks for it, with
// the syscall tracepoints the lineage sensor attaches to. On a machine
// that never mounted it (CI's), this is the mount itself.
func TestMount(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("mounting tracefs needs root")
	}
	was := mounted(Dir) || mounted(legacyDir)
	if err := Mount(); err != nil {
		t.Fatal(err)
	}
	if !mounted(Dir) && !mounted(legacyDir) {
		t.Fatalf("Mount returned nil and tracefs is not mounted (it was before: %v)", was)
	}
	if err := Mount(); err != nil {
		t.Fatalf("a second Mount: %v", err)
	}
	dir := Dir
	if !mounted(Dir) {
		dir = legacyDir
	}
	if _, err := os.Stat(dir + "/events/syscalls/sys_enter_ptrace/id"); err != nil {
		t.Errorf("no syscall tracepoint in %s: %v", dir, err)
	}
	t.Logf("tracefs mounted before: %v", was)
}

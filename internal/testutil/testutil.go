// Package testutil holds what bpfmon's live tests share: privilege and
// kernel checks that skip with a printed reason (and fail instead in CI,
// where everything this machine supports must run), and bpffs setup.
package testutil

import (
	"errors"
	"os"
	"os/exec"
	"testing"

	"golang.org/x/sys/unix"
)

// InCI reports whether the tests run in CI (the CI environment variable is
// set), where a missing prerequisite is a failure, not a skip.
func InCI() bool { return os.Getenv("CI") != "" }

// SkipOrFail skips the test with reason, or fails it in CI.
func SkipOrFail(t testing.TB, reason string) {
	t.Helper()
	if InCI() {
		t.Fatalf("prerequisite missing in CI: %s", reason)
	}
	t.Skip(reason)
}

// RequireRoot skips (or fails in CI) unless the test runs as root: the live
// tests load real programs into the real kernel.
func RequireRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		SkipOrFail(t, "needs root to load BPF programs")
	}
}

// BPFFSPath returns the bpffs mount point, mounting it if needed.
func BPFFSPath(t testing.TB) string {
	t.Helper()
	const dir = "/sys/fs/bpf"
	var st unix.Statfs_t
	if err := unix.Statfs(dir, &st); err == nil && st.Type == unix.BPF_FS_MAGIC {
		return dir
	}
	if err := unix.Mount("bpf", dir, "bpf", 0, ""); err != nil {
		SkipOrFail(t, "bpffs is not mounted at /sys/fs/bpf and mounting it failed: "+err.Error())
	}
	return dir
}

// CC compiles a C file with gcc and extra flags into a temporary binary.
// It skips (or fails in CI) when gcc or the wanted target is unavailable.
func CC(t testing.TB, src string, flags ...string) string {
	t.Helper()
	gcc, err := exec.LookPath("gcc")
	if err != nil {
		SkipOrFail(t, "gcc not found")
	}
	out := t.TempDir() + "/a.out"
	args := append(append([]string{"-O2", "-Wall", "-o", out}, flags...), src)
	if msg, err := exec.Command(gcc, args...).CombinedOutput(); err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			SkipOrFail(t, "gcc "+joinArgs(flags)+" failed (for -m32, apt-get install gcc-multilib): "+string(msg))
		}
		t.Fatalf("running gcc: %v", err)
	}
	return out
}

func joinArgs(a []string) string {
	s := ""
	for i, x := range a {
		if i > 0 {
			s += " "
		}
		s += x
	}
	return s
}

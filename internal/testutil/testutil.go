// Package testutil holds what bpfmon's live tests share: privilege and
// kernel checks that skip with a printed reason (and fail instead in CI,
// where everything this machine supports must run), and bpffs setup.
package testutil

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/rlimit"
	"golang.org/x/sys/unix"

	"github.com/bpfmon/bpfmon/internal/tracefs"
)

// InCI reports whether the tests run in CI (the CI environment variable is
// set), where a missing prerequisite is a failure, not a skip.
func InCI() bool { return os.Getenv("CI") != "" }

// VMEnv is set by the kernel test matrix (vmtest) inside its VMs.
const VMEnv = "BPFMON_VM"

// InVM reports whether the tests run in one of vmtest's VMs, whose
// minimal image lacks some user-space tools the host has.
func InVM() bool { return os.Getenv(VMEnv) != "" }

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
	// Before 5.11 the test's own maps count against RLIMIT_MEMLOCK.
	_ = rlimit.RemoveMemlock()
}

// RequireTracefs mounts tracefs at /sys/kernel/tracing if it is not:
// tools that attach to tracepoints by name (bpftrace) need it.
func RequireTracefs(t testing.TB) {
	t.Helper()
	if err := tracefs.Mount(); err != nil {
		SkipOrFail(t, err.Error())
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
// CompatFlag among them builds for the 32-bit compat ABI (gcc -m32 on
// x86-64, clang for AArch32 on arm64), and the test needs Compat.
// It skips (or fails in CI) when the compiler or the wanted target is
// unavailable. Where BPFMON_PREBUILT names a directory (the VM test
// matrix, whose machines have no compiler), the binary is taken from there
// instead, built beforehand under the name PrebuiltName gives.
func CC(t testing.TB, src string, flags ...string) string {
	t.Helper()
	out := compile(t, src, flags)
	if slices.Contains(flags, CompatFlag) {
		NeedCompat(t, out, "the caller is a 32-bit program ("+compatTarget[runtime.GOARCH]+")")
	}
	return out
}

func compile(t testing.TB, src string, flags []string) string {
	t.Helper()
	if dir := os.Getenv("BPFMON_PREBUILT"); dir != "" {
		code, err := os.ReadFile(src)
		if err != nil {
			t.Fatal(err)
		}
		bin := filepath.Join(dir, PrebuiltName(code, flags))
		if _, err := os.Stat(bin); err != nil {
			SkipOrFail(t, "no prebuilt binary of "+src+" "+joinArgs(flags)+" in "+dir)
		}
		return bin
	}
	cc, hint := "gcc", "for -m32, apt-get install gcc-multilib"
	args := append([]string{"-O2", "-Wall"}, flags...)
	if runtime.GOARCH == "arm64" && slices.Contains(flags, CompatFlag) {
		cc, hint = "clang", "apt-get install clang libc6-dev-armhf-cross libgcc-12-dev-armhf-cross binutils-arm-linux-gnueabihf"
		args = append([]string{"--target=" + AArch32Target, "-static"}, slices.DeleteFunc(args, func(f string) bool { return f == CompatFlag })...)
	}
	path, err := exec.LookPath(cc)
	if err != nil {
		SkipOrFail(t, cc+" not found")
	}
	out := t.TempDir() + "/a.out"
	args = append(args, "-o", out, src)
	if msg, err := exec.Command(path, args...).CombinedOutput(); err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			SkipOrFail(t, cc+" "+joinArgs(args)+" failed ("+hint+"): "+string(msg))
		}
		t.Fatalf("running %s: %v", cc, err)
	}
	return out
}

// AArch32Target is the clang target that builds CompatFlag's programs
// for arm64 machines: Debian's armhf cross C library provides their libc.
const AArch32Target = "arm-linux-gnueabihf"

// PrebuiltName names the prebuilt binary of C source code compiled with
// flags (see CC).
func PrebuiltName(code []byte, flags []string) string {
	h := sha256.New()
	h.Write(code)
	for _, f := range flags {
		h.Write([]byte{0})
		h.Write([]byte(f))
	}
	return hex.EncodeToString(h.Sum(nil))[:16]
}

// Timeout scales a test's time limit by BPFMON_TIME_SCALE (default 1): the
// VM test matrix runs under software emulation, many times slower than
// this machine. Limits only: what a test measures is not scaled.
func Timeout(d time.Duration) time.Duration {
	if f, err := strconv.ParseFloat(os.Getenv("BPFMON_TIME_SCALE"), 64); err == nil && f > 1 {
		return time.Duration(float64(d) * f)
	}
	return d
}

// Binary returns the bpfmon binary the end-to-end tests should run:
// BPFMON_BIN when set (the VM test matrix builds it beforehand), else "".
func Binary() string { return os.Getenv("BPFMON_BIN") }

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

// ForeignExecutable copies the running test binary to a new file called
// name and returns its path. The copy has its own inode: run as a child, it
// is another executable, so it owns none of the maps this process owns.
func ForeignExecutable(t testing.TB, name string) string {
	t.Helper()
	src, err := os.ReadFile(os.Args[0])
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	os.Chmod(dir, 0o755) // a test may run it as nobody
	path := filepath.Join(dir, name)
	if err := os.WriteFile(path, src, 0o755); err != nil {
		t.Fatal(err)
	}
	return path
}

// DupFile returns an *os.File that owns a duplicate of fd (to pass to a
// child in ExtraFiles), closed when the test ends. Wrapping fd itself in
// os.NewFile would give it two owners: when the *os.File is collected, its
// finalizer closes the number, by then perhaps another test's map fd, and
// that map is freed under it.
func DupFile(t testing.TB, fd int, name string) *os.File {
	t.Helper()
	dup, err := unix.FcntlInt(uintptr(fd), unix.F_DUPFD_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	f := os.NewFile(uintptr(dup), name)
	t.Cleanup(func() { f.Close() })
	return f
}

// MapID is m's global id, failing the test when the kernel tells none.
func MapID(t testing.TB, m *ebpf.Map) uint32 {
	t.Helper()
	info, err := m.Info()
	if err != nil {
		t.Fatal(err)
	}
	id, ok := info.ID()
	if !ok {
		t.Fatal("the kernel reports no map id")
	}
	return uint32(id)
}

// StartExec starts cmd and returns once its process runs cmd's program:
// until then (Go starts a child with vfork) it shares this process's
// memory and executable, and whatever is read of it is this process's.
func StartExec(t testing.TB, cmd *exec.Cmd) {
	t.Helper()
	self, err := os.Readlink("/proc/self/exe")
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exe := "/proc/" + strconv.Itoa(cmd.Process.Pid) + "/exe"
	deadline := time.Now().Add(Timeout(5 * time.Second))
	for {
		if p, err := os.Readlink(exe); err == nil && p != self {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%v did not exec within 5s", cmd.Args)
		}
		time.Sleep(time.Millisecond)
	}
}

// Stop ends a started command the way a service manager would: SIGTERM,
// so that it can write what it holds, then SIGKILL if it has not exited
// within grace. It reports whether the command stopped on SIGTERM.
func Stop(cmd *exec.Cmd, grace time.Duration) bool {
	cmd.Process.Signal(unix.SIGTERM)
	done := make(chan struct{})
	go func() { cmd.Wait(); close(done) }()
	select {
	case <-done:
		return true
	case <-time.After(grace):
		cmd.Process.Kill()
		<-done
		return false
	}
}

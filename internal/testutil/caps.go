package testutil

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// Capability names a kernel feature a test needs. The VM matrix (make
// vmtest) declares, per kernel, the capabilities that kernel must have, in
// the environment variable CapsEnv; a test needing a declared capability
// fails instead of skipping when the probe says it is missing, so a
// regressed probe cannot turn the matrix green by skipping.
type Capability string

// The capabilities tests ask for.
const (
	// Kprobes: kprobes on the map update functions (the kernel-side
	// sensor's fallback build).
	Kprobes Capability = "kprobes"
	// Fentry: fentry/fexit trampolines on kernel functions (the
	// kernel-side sensor's preferred build).
	Fentry Capability = "fentry"
	// BPFLSM: BPF LSM programs attach (the kernel is booted with bpf in
	// lsm=), for --enforce.
	BPFLSM Capability = "bpf-lsm"
	// FmodRet: fmod_ret (BPF_MODIFY_RETURN) programs attach to the
	// kernel's security_ functions (BPF trampolines), enforcement's build
	// where bpf is not an active LSM.
	FmodRet Capability = "fmod-ret"
	// Iterators: BPF map element iterators load and attach.
	Iterators Capability = "iterators"
	// SyscallFentry: the syscall sensor's fentry build (trampolines on
	// the bpf(2) syscall itself instead of raw_syscalls).
	SyscallFentry Capability = "syscall-fentry"
	// SyscallTPBTF, SyscallRawTracepoint: the syscall sensor's other
	// builds (BTF-typed and raw tracepoints on every system call).
	SyscallTPBTF         Capability = "syscall-tp-btf"
	SyscallRawTracepoint Capability = "syscall-raw-tracepoint"
	// Compat: 32-bit programs run, and call through the kernel's
	// 32-bit compat syscall entry: IA32 emulation on x86-64, AArch32
	// tasks on arm64 (CONFIG_COMPAT and a CPU with 32-bit EL0). Tests
	// of the compat ABI run such programs (CC with CompatFlag).
	Compat Capability = "compat"
	// TaskStorage: task-local storage maps (Linux 5.11+).
	TaskStorage Capability = "task-storage"
	// ProbeWriteUser: tracing programs may call bpf_probe_write_user,
	// which kernel lockdown (integrity and up) refuses: the rootkit
	// programs of the cross-view tests use it.
	ProbeWriteUser Capability = "probe-write-user"
)

// CapsEnv is the environment variable that declares capabilities:
// comma-separated Capability names.
const CapsEnv = "BPFMON_KERNEL_CAPS"

// Declared reports whether the environment declares that the kernel has c.
func Declared(c Capability) bool {
	for _, d := range strings.Split(os.Getenv(CapsEnv), ",") {
		if strings.TrimSpace(d) == string(c) {
			return true
		}
	}
	return false
}

// SkipMarker starts the reason of every skip for a capability the kernel
// lacks: vmtest allows such a skip where the capability is not declared,
// and no other skip unless its allowlist names it.
const SkipMarker = "lacks capability "

// Need returns when missing is nil (the probe for c succeeded). Otherwise
// it skips the test with reason and the probe's error, or fails it when
// the kernel is declared to have c.
func Need(t testing.TB, c Capability, missing error, reason string) {
	t.Helper()
	if missing == nil {
		return
	}
	if Declared(c) {
		t.Fatalf("capability %s is declared for this kernel (%s=%s) but its probe fails: %v (%s)", c, CapsEnv, os.Getenv(CapsEnv), missing, reason)
	}
	t.Skipf("%s%s: %s: %v", SkipMarker, c, reason, missing)
}

// NeedKernelHook is Need for tests that run with either kernel-side hook:
// it returns when kprobes or fentry works, and otherwise fails where
// either is declared, else skips.
func NeedKernelHook(t testing.TB, kprobes, fentry error) {
	t.Helper()
	if kprobes == nil || fentry == nil {
		return
	}
	for _, c := range []Capability{Kprobes, Fentry} {
		if Declared(c) {
			t.Fatalf("capability %s is declared for this kernel (%s=%s) but no kernel-side hook works (kprobes: %v; fentry: %v)", c, CapsEnv, os.Getenv(CapsEnv), kprobes, fentry)
		}
	}
	t.Skipf("%s%s,%s: this kernel allows no kernel-side hook (kprobes: %v; fentry: %v); make vmtest runs this test on kernels that do", SkipMarker, Kprobes, Fentry, kprobes, fentry)
}

// NeedCompat is Need for a program built with CompatFlag: it returns
// when the kernel runs bin, which must exit when run with no arguments
// (a usage message), and otherwise skips, or fails where Compat is
// declared. A kernel without the 32-bit ABI refuses the executable itself
// (ENOEXEC), which is the probe.
func NeedCompat(t testing.TB, bin, reason string) {
	t.Helper()
	err := exec.Command(bin).Run()
	var exit *exec.ExitError
	switch {
	case err == nil, errors.As(err, &exit):
		return
	case !errors.Is(err, unix.ENOEXEC):
		t.Fatalf("running %s: %v", bin, err)
	}
	Need(t, Compat, fmt.Errorf("the kernel does not run %s programs: %w", compatTarget[runtime.GOARCH], err), reason)
}

// CompatFlag, among CC's flags, builds the program for the 32-bit compat
// ABI of the machine: gcc -m32 on x86-64, an AArch32 (armhf) program on
// arm64. Prebuilt binaries (the VM matrix) are named with it as given.
const CompatFlag = "-m32"

// compatTarget names what CompatFlag builds, per GOARCH.
var compatTarget = map[string]string{"amd64": "32-bit x86 (IA32)", "arm64": "AArch32"}

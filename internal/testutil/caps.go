package testutil

import (
	"errors"
	"os"
	"runtime"
	"strings"
	"testing"
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
	// Iterators: BPF map element iterators load and attach.
	Iterators Capability = "iterators"
	// SyscallFentry: the syscall sensor's fentry build (trampolines on
	// the bpf(2) syscall itself instead of raw_syscalls).
	SyscallFentry Capability = "syscall-fentry"
	// SyscallTPBTF, SyscallRawTracepoint: the syscall sensor's other
	// builds (BTF-typed and raw tracepoints on every system call).
	SyscallTPBTF         Capability = "syscall-tp-btf"
	SyscallRawTracepoint Capability = "syscall-raw-tracepoint"
	// IA32: 32-bit x86 programs run (x86-64 kernels with IA32
	// emulation); tests of the compat syscall ABI use them.
	IA32 Capability = "ia32"
	// TaskStorage: task-local storage maps (Linux 5.11+).
	TaskStorage Capability = "task-storage"
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

// NeedIA32 is Need for 32-bit x86 programs: they run on x86-64 only.
func NeedIA32(t testing.TB, reason string) {
	t.Helper()
	if runtime.GOARCH != "amd64" {
		Need(t, IA32, errors.New("not an x86 machine"), reason)
	}
}

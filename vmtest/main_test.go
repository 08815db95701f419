package main

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/bpfmon/bpfmon/internal/testutil"
)

// TestScanTestOutput: skips are found with their reasons (top-level and
// subtests, as go test -v prints them) and judged: a skip for a
// capability the kernel is not declared to have is allowed, one for a
// declared capability is not, nor is any other skip off the allowlist.
func TestScanTestOutput(t *testing.T) {
	out := `=== RUN   TestA
    a_test.go:10: lacks capability kprobes,fentry: this kernel allows no kernel-side hook
--- SKIP: TestA (0.00s)
=== RUN   TestB
=== RUN   TestB/fentry
        b_test.go:20: lacks capability syscall-fentry: the fentry build does not load: EPERM
    --- SKIP: TestB/fentry (0.01s)
=== RUN   TestC
    c_test.go:30: no loopback device
--- SKIP: TestC (0.00s)
=== RUN   TestUnavailableNamesReasons
    sensor_test.go:568: this kernel has kernel-side hooks
--- SKIP: TestUnavailableNamesReasons (0.00s)
=== RUN   TestD
    d_test.go:1: boom
--- FAIL: TestD (0.00s)
=== RUN   TestE
=== RUN   TestE/lsm
    e_test.go:5: lacks capability bpf-lsm: not active
=== RUN   TestE/fmod
    e_test.go:9: hooks: [bpf]
--- PASS: TestE (0.02s)
    --- SKIP: TestE/lsm (0.00s)
    --- PASS: TestE/fmod (0.02s)
`
	failures, skips := scanTestOutput(out, []testutil.Capability{testutil.SyscallFentry})
	if len(failures) != 1 || failures[0] != "TestD" {
		t.Errorf("failures %q, want [TestD]", failures)
	}
	want := []skip{
		{"TestA", "lacks capability kprobes,fentry: this kernel allows no kernel-side hook", "lacks kprobes,fentry (not declared)"},
		{"TestB/fentry", "lacks capability syscall-fentry: the fentry build does not load: EPERM", ""},
		{"TestC", "no loopback device", ""},
		{"TestUnavailableNamesReasons", "this kernel has kernel-side hooks", "allowlist: " + allowedSkips[0].why},
		// A subtest's result printed after its siblings ran: the
		// reason is the one under its own RUN line.
		{"TestE/lsm", "lacks capability bpf-lsm: not active", "lacks bpf-lsm (not declared)"},
	}
	if len(skips) != len(want) {
		t.Fatalf("skips %+v, want %+v", skips, want)
	}
	for i := range want {
		if skips[i] != want[i] {
			t.Errorf("skip %d: %+v, want %+v", i, skips[i], want[i])
		}
	}
	r := result{packages: map[string]string{"p": "ok"}, skips: skips[:1]}
	if !r.ok() {
		t.Error("a matrix row with only allowed skips fails")
	}
	r.skips = skips
	if r.ok() {
		t.Error("a matrix row with a skip not allowed passes")
	}
}

// TestHostOnlyNamesTests: every name in hostOnly is a test of its
// package, so a renamed test is not silently run in the VMs again (or a
// misspelt one silently kept out), and each package's list is a valid
// -test.skip.
func TestHostOnlyNamesTests(t *testing.T) {
	lists := map[string]string{}
	for pkg, skip := range hostOnly {
		lists["hostOnly "+pkg] = skip
	}
	for pkg, run := range run510 {
		lists["run510 "+pkg] = run
	}
	for name, skip := range lists {
		pkg := strings.Fields(name)[1]
		re, err := regexp.Compile(skip)
		if err != nil {
			t.Fatalf("%s: %v", pkg, err)
		}
		files, err := filepath.Glob(filepath.Join("..", pkg, "*_test.go"))
		if err != nil || len(files) == 0 {
			t.Fatalf("%s: no test files: %v", pkg, err)
		}
		var src strings.Builder
		for _, f := range files {
			b, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			src.Write(b)
		}
		names := strings.Split(strings.TrimSuffix(strings.TrimPrefix(skip, "^("), ")$"), "|")
		for _, n := range names {
			if !re.MatchString(n) || !strings.Contains(src.String(), "\nfunc "+n+"(t *testing.T)") {
				t.Errorf("%s names %s, which is not one of its tests", name, n)
			}
		}
	}
}

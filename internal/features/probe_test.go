package features

import (
	"errors"
	"strings"
	"testing"

	"github.com/bpfmon/bpfmon/internal/testutil"
)

func TestProbeReportsEveryCapability(t *testing.T) {
	testutil.RequireRoot(t)
	r := Probe(func() (string, error, error) { return "tp_btf", nil, nil })
	want := []string{"privileges", "kernel_btf", "syscall_sensor", "compat_abi", "kernel_side_writes",
		"program_attribution", "content_scanner", "batch_reads", "mmap_reads", "bpf_lsm"}
	got := map[string]Feature{}
	for _, f := range r.Features {
		got[f.Name] = f
		if !f.Available && (f.Detail == "" || f.Fallback == "") {
			t.Errorf("%s unavailable without a reason or a fallback: %+v", f.Name, f)
		}
	}
	for _, name := range want {
		if _, ok := got[name]; !ok {
			t.Errorf("capability %s not reported", name)
		}
	}
	// What every supported kernel (5.8+ with BTF) has, as root.
	for _, name := range []string{"privileges", "kernel_btf", "syscall_sensor", "content_scanner", "batch_reads", "mmap_reads"} {
		if !got[name].Available {
			t.Errorf("%s not available: %s", name, got[name].Detail)
		}
	}
	if r.Kernel == "" || !strings.Contains(r.Summary(), "syscall_sensor=yes") {
		t.Errorf("kernel %q, summary %q", r.Kernel, r.Summary())
	}
	failing := Probe(func() (string, error, error) { return "", nil, errors.New("verifier said no") })
	for _, f := range failing.Features {
		if f.Name == "syscall_sensor" && (f.Available || !strings.Contains(f.Detail, "verifier said no")) {
			t.Errorf("a failing sensor reported as %+v", f)
		}
	}
}

package features

import (
	"slices"
	"strings"
	"testing"

	"github.com/bpfmon/bpfmon/internal/testutil"
)

func TestBase(t *testing.T) {
	testutil.RequireRoot(t)
	// What every supported kernel (5.8+ with BTF) has, as root.
	for _, f := range Base() {
		if !f.Available {
			t.Errorf("%s not available: %s", f.Name, f.Detail)
		}
	}
	if c := Compat(); c.Name != "compat_abi" || c.Detail == "" {
		t.Errorf("compat: %+v", c)
	}
}

// TestReportOrder: features come in Order whatever order the parts give
// them in, unknown ones last, and the summary names each.
func TestReportOrder(t *testing.T) {
	r := NewReport(
		[]Feature{{Name: "bpf_lsm"}, {Name: "new_thing", Available: true}},
		[]Feature{{Name: "content_scanner", Available: true}, {Name: "syscall_sensor", Available: true}},
	)
	var names []string
	for _, f := range r.Features {
		names = append(names, f.Name)
	}
	want := []string{"privileges", "kernel_btf", "syscall_sensor", "content_scanner", "bpf_lsm", "new_thing"}
	if !slices.Equal(names, want) {
		t.Errorf("order %v, want %v", names, want)
	}
	if r.Kernel == "" || !strings.Contains(r.Summary(), "syscall_sensor=yes") || !strings.Contains(r.Summary(), "bpf_lsm=no") {
		t.Errorf("kernel %q, summary %q", r.Kernel, r.Summary())
	}
}

// TestHookProbes: each kernel-side hook's probe succeeds on every kernel
// declared to have it. The tests that use a hook ask for either kprobes
// or fentry (testutil.NeedKernelHook), so a probe broken for one of them
// would otherwise hide behind the other.
func TestHookProbes(t *testing.T) {
	testutil.RequireRoot(t)
	for _, p := range []struct {
		c     testutil.Capability
		probe func() error
	}{
		{testutil.Kprobes, Kprobes},
		{testutil.Fentry, Fentry},
		{testutil.BPFLSM, BPFLSM},
	} {
		t.Run(string(p.c), func(t *testing.T) {
			testutil.Need(t, p.c, p.probe(), "the probe says this kernel lacks it")
		})
	}
}

package features

import (
	"errors"
	"strings"
	"testing"

	"github.com/bpfmon/bpfmon/internal/testutil"
)

func TestProbeReportsEveryCapability(t *testing.T) {
	testutil.RequireRoot(t)
	kernel := KernelSensor{Err: errors.New("kprobes: none; fexit: denied")}
	r := Probe(Sensors{Syscall: func() (string, error, error) { return "tp_btf", nil, nil }, Kernel: func() KernelSensor { return kernel }})
	want := []string{"privileges", "kernel_btf", "syscall_sensor", "compat_abi", "kernel_side_writes",
		"program_attribution", "syscall_kernel_copy", "content_scanner", "batch_reads", "mmap_reads", "bpf_lsm"}
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
	for _, name := range []string{"kernel_side_writes", "program_attribution", "syscall_kernel_copy"} {
		if got[name].Available || !strings.Contains(got[name].Detail, "fexit: denied") {
			t.Errorf("%s with the kernel-side sensor unavailable: %+v", name, got[name])
		}
	}
	failing := Probe(Sensors{Syscall: func() (string, error, error) { return "", nil, errors.New("verifier said no") }})
	for _, f := range failing.Features {
		if f.Name == "syscall_sensor" && (f.Available || !strings.Contains(f.Detail, "verifier said no")) {
			t.Errorf("a failing sensor reported as %+v", f)
		}
	}
}

func TestKernelSensorFeatures(t *testing.T) {
	k := KernelSensor{Kind: "kprobe", Functions: []FunctionHook{
		{Function: "htab_map_update_elem", Kind: "kprobe", Reason: "fexit: program load denied (EPERM)"},
		{Function: "bpf_cgrp_storage_delete", Reason: "kprobe: not in kallsyms"},
	}}
	got := map[string]Feature{}
	for _, f := range kernelFeatures(k) {
		got[f.Name] = f
	}
	if w := got["kernel_side_writes"]; !w.Available || !strings.Contains(w.Detail, "kprobe on 1 kernel functions") ||
		!strings.Contains(w.Detail, "bpf_cgrp_storage_delete") || len(w.Functions) != 2 {
		t.Errorf("kernel_side_writes: %+v", w)
	}
	if a := got["program_attribution"]; !a.Available || !strings.Contains(a.Detail, "unknown") {
		t.Errorf("attribution without load tracking: %+v", a)
	}
	if c := got["syscall_kernel_copy"]; c.Available || c.Fallback == "" {
		t.Errorf("kernel copy with kprobes: %+v", c)
	}
}

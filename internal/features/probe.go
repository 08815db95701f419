package features

import (
	"bufio"
	"compress/gzip"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/cilium/ebpf/link"
	"golang.org/x/sys/unix"

	"github.com/bpfmon/bpfmon/internal/arch"
)

// Feature is one capability bpfmon relies on, as this kernel provides it.
type Feature struct {
	Name      string `json:"name"`
	Available bool   `json:"available"`
	// Detail says what is used when available, and exactly why not
	// otherwise.
	Detail string `json:"detail"`
	// Fallback says what bpfmon does without it.
	Fallback string `json:"fallback,omitempty"`
	// Functions lists, for the kernel-side sensor, how each kernel
	// function is hooked or why it is not.
	Functions []FunctionHook `json:"functions,omitempty"`
}

// FunctionHook is one kernel function the kernel-side sensor hooks.
type FunctionHook struct {
	Function string `json:"function"`
	Covers   string `json:"covers"`
	Kind     string `json:"kind,omitempty"`   // fexit, fentry or kprobe; empty: not hooked
	Reason   string `json:"reason,omitempty"` // why not (by fexit, or at all)
}

// Report is the result of probing.
type Report struct {
	Kernel   string    `json:"kernel"`
	Features []Feature `json:"features"`
}

// Order is the order reports list features in: the common ones, then each
// sensor's and the content scanner's in the order they come into play.
// Features not listed come last, in the order given.
var Order = []string{"privileges", "kernel_btf", "syscall_sensor", "compat_abi", "kernel_side_writes",
	"program_attribution", "syscall_kernel_copy", "content_scanner", "batch_reads", "mmap_reads", "bpf_lsm", "process_lineage", "netlink_attach_attribution",
	"hidden_object_views", "rewrite_helpers", "pod_metadata"}

// NewReport is the report on this kernel: the common features (Base) and
// those the sensors and the content scanner describe, in Order.
func NewReport(parts ...[]Feature) Report {
	r := Report{Kernel: KernelRelease(), Features: Base()}
	for _, p := range parts {
		r.Features = append(r.Features, p...)
	}
	rank := func(name string) int {
		if i := slices.Index(Order, name); i >= 0 {
			return i
		}
		return len(Order)
	}
	slices.SortStableFunc(r.Features, func(a, b Feature) int { return rank(a.Name) - rank(b.Name) })
	return r
}

// Base probes what every part of bpfmon needs: privileges and the kernel's
// BTF.
func Base() []Feature {
	var fs []Feature
	if err := CheckTracing(); err != nil {
		fs = append(fs, Feature{Name: "privileges", Detail: err.Error(), Fallback: "none: bpfmon cannot run"})
	} else {
		fs = append(fs, Feature{Name: "privileges", Available: true, Detail: "CAP_BPF and CAP_PERFMON (or CAP_SYS_ADMIN) are effective"})
	}
	if _, err := os.Stat("/sys/kernel/btf/vmlinux"); err != nil {
		fs = append(fs, Feature{Name: "kernel_btf", Detail: "no /sys/kernel/btf/vmlinux (CONFIG_DEBUG_INFO_BTF unset)", Fallback: "none: the programs are relocated against it"})
	} else {
		fs = append(fs, Feature{Name: "kernel_btf", Available: true, Detail: "/sys/kernel/btf/vmlinux"})
	}
	return fs
}

// Compat describes the 32-bit syscall entry: whether there is one to
// watch.
func Compat() Feature {
	config := KernelConfig()
	switch {
	case config[arch.CompatConfig] == "y":
		return Feature{Name: "compat_abi", Available: true, Detail: arch.CompatConfig + "=y: " + arch.CompatCalls + " are reported, marked abi " + arch.CompatABI}
	case config == nil:
		return Feature{Name: "compat_abi", Available: true, Detail: "kernel config not readable; the sensor reports 32-bit calls whenever the kernel accepts them"}
	}
	return Feature{Name: "compat_abi", Detail: arch.CompatConfig + " unset: the kernel has no 32-bit syscall entry, so there is nothing to watch there"}
}

// Kprobes reports why the kernel has no kprobes, or nil: the kprobe PMU
// that perf-based attachment needs.
func Kprobes() error {
	if _, err := os.Stat("/sys/bus/event_source/devices/kprobe"); err != nil {
		return errors.New("not built into this kernel (no kprobe PMU; CONFIG_KPROBES unset)")
	}
	return nil
}

// Fentry loads a trivial fentry program on a map update function and
// reports why that fails, or nil: BPF trampolines work here.
func Fentry() error {
	for _, fn := range []string{"array_map_update_elem", "htab_map_update_elem"} {
		p, err := loadProgram(&ebpf.ProgramSpec{Type: ebpf.Tracing, AttachType: ebpf.AttachTraceFEntry, AttachTo: fn,
			License: "GPL", Instructions: asm.Instructions{asm.Mov.Imm(asm.R0, 0), asm.Return()}})
		if err == nil {
			p.Close()
			return nil
		}
		if errors.Is(err, unix.EPERM) {
			return errors.New("program load denied (EPERM)")
		}
		if fn == "htab_map_update_elem" {
			return fmt.Errorf("program load failed: %w", err)
		}
	}
	return nil
}

// BPFLSM says why this kernel cannot run BPF LSM programs, or nil.
func BPFLSM() error { return probeLSM(KernelConfig()) }

// probeLSM: BPF LSM needs CONFIG_BPF_LSM, "bpf" among the active LSMs, and
// a kernel that lets LSM programs load.
func probeLSM(config map[string]string) error {
	if config != nil && config["CONFIG_BPF_LSM"] != "y" {
		return errors.New("CONFIG_BPF_LSM unset")
	}
	lsms, err := os.ReadFile("/sys/kernel/security/lsm")
	if errors.Is(err, os.ErrNotExist) {
		// securityfs is not mounted: mount it (as root) and look again.
		if unix.Mount("securityfs", "/sys/kernel/security", "securityfs", 0, "") == nil {
			lsms, err = os.ReadFile("/sys/kernel/security/lsm")
		}
	}
	if err != nil {
		return errors.New("active LSMs unknown: securityfs is not mounted at /sys/kernel/security (mount -t securityfs securityfs /sys/kernel/security)")
	}
	if !strings.Contains(","+strings.TrimSpace(string(lsms))+",", ",bpf,") {
		return fmt.Errorf("bpf is not an active LSM (%s); boot with lsm=...,bpf", strings.TrimSpace(string(lsms)))
	}
	p, err := loadProgram(&ebpf.ProgramSpec{Type: ebpf.LSM, AttachType: ebpf.AttachLSMMac, AttachTo: "bpf_map",
		License: "GPL", Instructions: asm.Instructions{asm.Mov.Imm(asm.R0, 0), asm.Return()}})
	if err != nil {
		if errors.Is(err, unix.EPERM) {
			return errors.New("LSM program load denied (EPERM)")
		}
		return fmt.Errorf("LSM program load failed: %w", err)
	}
	defer p.Close()
	// Loading is not enough: attaching needs BPF trampolines, which a
	// kernel can lack while it loads LSM programs (arm64 before 6.4).
	l, err := link.AttachLSM(link.LSMOptions{Program: p})
	if err != nil {
		return fmt.Errorf("attaching an LSM program: %w", err)
	}
	return l.Close()
}

// KernelConfig reads the running kernel's config, nil when unavailable.
func KernelConfig() map[string]string {
	var rd io.Reader
	if f, err := os.Open("/proc/config.gz"); err == nil {
		defer f.Close()
		if z, err := gzip.NewReader(f); err == nil {
			rd = z
		}
	}
	if rd == nil {
		f, err := os.Open("/boot/config-" + KernelRelease())
		if err != nil {
			return nil
		}
		defer f.Close()
		rd = f
	}
	config := map[string]string{}
	sc := bufio.NewScanner(rd)
	for sc.Scan() {
		if k, v, ok := strings.Cut(sc.Text(), "="); ok && strings.HasPrefix(k, "CONFIG_") {
			config[k] = v
		}
	}
	return config
}

// KernelRelease is uname -r.
func KernelRelease() string {
	var u unix.Utsname
	if unix.Uname(&u) != nil {
		return "unknown"
	}
	return unix.ByteSliceToString(u.Release[:])
}

// Summary renders a report on one line, for watch's start message.
func (r Report) Summary() string {
	var parts []string
	for _, f := range r.Features {
		if f.Available {
			parts = append(parts, f.Name+"=yes")
		} else {
			parts = append(parts, f.Name+"=no")
		}
	}
	return strings.Join(parts, " ")
}

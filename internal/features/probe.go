package features

import (
	"bufio"
	"compress/gzip"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"golang.org/x/sys/unix"
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

// KernelSensor is what starting the kernel-side sensor gave: the hook
// kind in use and each function's outcome, or why it could not start.
type KernelSensor struct {
	Kind      string // fexit, kprobe or fexit+kprobe
	Functions []FunctionHook
	// TracksLoads: program loads are hooked, so writes by programs loaded
	// (and unloaded) after start are attributed too.
	TracksLoads bool
	// KernelCopy: bpf(2) writes are seen inside the kernel, by fexit.
	KernelCopy bool
	Err        error
}

// Sensors supply the outcome of starting bpfmon's sensors: the packages
// that load them import this one.
type Sensors struct {
	Syscall SyscallSensorProbe
	Kernel  func() KernelSensor
	// Enforce loads and attaches the enforcement programs and removes
	// them: why --enforce cannot work here, or nil.
	Enforce func() error
}

// Report is the result of probing.
type Report struct {
	Kernel   string    `json:"kernel"`
	Features []Feature `json:"features"`
}

// SyscallSensorProbe reports which build of the syscall sensor loads and
// why the faster one does not, when it does not. It is supplied by the
// caller (the sensor package imports this one).
type SyscallSensorProbe func() (hook string, fallback error, err error)

// Probe tests what this kernel offers. It loads small programs and maps
// and removes them again; the sensors themselves are probed by the
// functions in sensors (either may be nil: not reported).
func Probe(sensors Sensors) Report {
	sensor := sensors.Syscall
	r := Report{Kernel: KernelRelease()}
	add := func(f Feature) { r.Features = append(r.Features, f) }
	config := kernelConfig()

	if err := CheckTracing(); err != nil {
		add(Feature{Name: "privileges", Detail: err.Error(), Fallback: "none: bpfmon cannot run"})
	} else {
		add(Feature{Name: "privileges", Available: true, Detail: "CAP_BPF and CAP_PERFMON (or CAP_SYS_ADMIN) are effective"})
	}

	if _, err := os.Stat("/sys/kernel/btf/vmlinux"); err != nil {
		add(Feature{Name: "kernel_btf", Detail: "no /sys/kernel/btf/vmlinux (CONFIG_DEBUG_INFO_BTF unset)", Fallback: "none: the programs are relocated against it"})
	} else {
		add(Feature{Name: "kernel_btf", Available: true, Detail: "/sys/kernel/btf/vmlinux"})
	}

	if sensor != nil {
		hook, fallback, err := sensor()
		switch {
		case err != nil:
			add(Feature{Name: "syscall_sensor", Detail: err.Error(), Fallback: "none: watch cannot report bpf(2) calls"})
		case fallback != nil:
			add(Feature{Name: "syscall_sensor", Available: true, Detail: hook + " programs on raw_syscalls sys_enter/sys_exit (the faster tp_btf build did not load: " + fallback.Error() + ")"})
		default:
			add(Feature{Name: "syscall_sensor", Available: true, Detail: hook + " programs on raw_syscalls sys_enter/sys_exit"})
		}
	}

	switch config["CONFIG_IA32_EMULATION"] {
	case "y":
		add(Feature{Name: "compat_abi", Available: true, Detail: "CONFIG_IA32_EMULATION=y: 32-bit calls (and int $0x80 from 64-bit tasks) are reported, marked abi ia32"})
	case "":
		if config == nil {
			add(Feature{Name: "compat_abi", Available: true, Detail: "kernel config not readable; the sensor reports 32-bit calls whenever the kernel accepts them"})
		} else {
			add(Feature{Name: "compat_abi", Detail: "CONFIG_IA32_EMULATION unset: the kernel has no 32-bit syscall entry, so there is nothing to watch there"})
		}
	}

	if sensors.Kernel != nil {
		for _, f := range kernelFeatures(sensors.Kernel()) {
			add(f)
		}
	}

	add(Feature{Name: "content_scanner", Available: true, Detail: "reads every readable map each --scan-interval"})
	if err := probeBatch(); err != nil {
		add(Feature{Name: "batch_reads", Detail: "BPF_MAP_LOOKUP_BATCH: " + err.Error(), Fallback: "GET_NEXT_KEY and LOOKUP, one element at a time"})
	} else {
		add(Feature{Name: "batch_reads", Available: true, Detail: "BPF_MAP_LOOKUP_BATCH"})
	}
	if err := probeMmap(); err != nil {
		add(Feature{Name: "mmap_reads", Detail: "mmap of a BPF_F_MMAPABLE array: " + err.Error(), Fallback: "batch reads"})
	} else {
		add(Feature{Name: "mmap_reads", Available: true, Detail: "BPF_F_MMAPABLE arrays are read through a read-only mapping"})
	}

	lsmErr := probeLSM(config)
	detail := "LSM programs load"
	if lsmErr == nil && sensors.Enforce != nil {
		lsmErr = sensors.Enforce()
		detail = "enforcement (watch --enforce) works: LSM programs on the bpf, bpf_map, file_receive and mmap_file hooks load and attach"
	}
	if lsmErr != nil {
		detail = lsmErr.Error()
	}
	add(Feature{Name: "bpf_lsm", Available: lsmErr == nil, Detail: detail,
		Fallback: "no enforcement: tampering is reported as alerts, not refused (watch --enforce refuses to start)"})
	return r
}

// kernelFeatures describes the kernel-side sensor: writes by BPF programs,
// their attribution, and the kernel's copy of bpf(2) writes.
func kernelFeatures(k KernelSensor) []Feature {
	const scannerFallback = "the content scanner finds their changes by reading maps, without naming the program"
	if k.Err != nil {
		reason := k.Err.Error()
		return []Feature{
			{Name: "kernel_side_writes", Detail: reason, Fallback: scannerFallback, Functions: k.Functions},
			{Name: "program_attribution", Detail: "needs the kernel-side sensor, unavailable: " + reason,
				Fallback: "map_changed events from the scanner carry the map, key and values, not the program"},
			{Name: "syscall_kernel_copy", Detail: "needs the kernel-side sensor, unavailable: " + reason,
				Fallback: "bpf(2) keys and values are read from the caller's buffers at syscall entry"},
		}
	}
	var hooked, missing []string
	for _, f := range k.Functions {
		if f.Kind != "" {
			hooked = append(hooked, f.Function)
		} else {
			missing = append(missing, f.Function)
		}
	}
	detail := fmt.Sprintf("%s on %d kernel functions", k.Kind, len(hooked))
	if len(missing) > 0 {
		detail += "; not hooked: " + strings.Join(missing, ", ") + " (see functions)"
	}
	writes := Feature{Name: "kernel_side_writes", Available: true, Detail: detail, Functions: k.Functions}
	attr := Feature{Name: "program_attribution", Available: true,
		Detail: "return addresses on the kernel stack, resolved against the JIT'd images of loaded programs; " +
			"loads tracked in order with the writes (bpf_prog_kallsyms_add), so short-lived programs are named too"}
	if !k.TracksLoads {
		attr.Detail = "return addresses on the kernel stack, resolved against the JIT'd images of loaded programs; " +
			"program loads are not hooked, so each attribution is confirmed with the kernel and a program already unloaded is reported unknown"
	}
	cp := Feature{Name: "syscall_kernel_copy", Available: k.KernelCopy,
		Detail: "bpf(2) writes carry the kernel's own copy of key and value (fexit inside the call)"}
	if !k.KernelCopy {
		cp.Detail = "the map operations are hooked by kprobes, which the kernel does not run inside bpf(2) map updates"
		cp.Fallback = "bpf(2) keys and values are read from the caller's buffers at syscall entry"
	}
	return []Feature{writes, attr, cp}
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

func probeBatch() error {
	m, err := ebpf.NewMap(&ebpf.MapSpec{Type: ebpf.Hash, KeySize: 4, ValueSize: 4, MaxEntries: 2})
	if err != nil {
		return err
	}
	defer m.Close()
	m.Put(uint32(1), uint32(1))
	var cursor ebpf.MapBatchCursor
	keys, values := make([]uint32, 2), make([]uint32, 2)
	_, err = m.BatchLookup(&cursor, keys, values, nil)
	if err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
		return err
	}
	return nil
}

func probeMmap() error {
	m, err := ebpf.NewMap(&ebpf.MapSpec{Type: ebpf.Array, KeySize: 4, ValueSize: 8, MaxEntries: 1, Flags: unix.BPF_F_MMAPABLE})
	if err != nil {
		return err
	}
	defer m.Close()
	b, err := unix.Mmap(m.FD(), 0, os.Getpagesize(), unix.PROT_READ, unix.MAP_SHARED)
	if err != nil {
		return err
	}
	return unix.Munmap(b)
}

// BPFLSM says why this kernel cannot run BPF LSM programs, or nil.
func BPFLSM() error { return probeLSM(kernelConfig()) }

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
	p.Close()
	return nil
}

// kernelConfig reads the running kernel's config, nil when unavailable.
func kernelConfig() map[string]string {
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

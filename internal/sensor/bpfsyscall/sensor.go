// Package bpfsyscall is the syscall sensor: it reports every bpf(2) call that
// changes a map or obtains a handle to one, and every mmap(2) of a map, from
// both the 64-bit and the 32-bit compat syscall entries.
//
// The kernel side (bpf/syscall.c) hooks raw_syscalls:sys_enter and sys_exit,
// resolves the map behind the caller's fd inside the kernel, captures key and
// value bytes, and writes an entry and an exit record per call into bpfmon's
// ring buffer. This package loads and attaches those programs and turns
// their records, paired by thread, into event.Events.
package bpfsyscall

import (
	"errors"
	"fmt"
	"os"
	"slices"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"github.com/cilium/ebpf/rlimit"
	"golang.org/x/sys/unix"

	"github.com/bpfmon/bpfmon/internal/event"
	"github.com/bpfmon/bpfmon/internal/features"
	"github.com/bpfmon/bpfmon/internal/sensor"
	"github.com/bpfmon/bpfmon/internal/sensor/record"
)

// Hook is a build of the sensor's programs.
type Hook string

// The builds.
const (
	HookAuto          Hook = ""               // the best this kernel supports
	HookTPBTF         Hook = "tp_btf"         // Linux 5.11+: BTF-typed loads, task-local storage
	HookRawTracepoint Hook = "raw_tracepoint" // older kernels: probe reads, LRU hashes
)

// ParseHook parses --hook: auto, tp_btf or raw_tracepoint.
func ParseHook(s string) (Hook, error) {
	switch h := Hook(s); h {
	case "auto":
		return HookAuto, nil
	case HookTPBTF, HookRawTracepoint:
		return h, nil
	}
	return "", fmt.Errorf("unknown --hook %q: want auto, %s or %s", s, HookTPBTF, HookRawTracepoint)
}

// Config selects what the sensor captures.
type Config struct {
	// Events lists the event types to report; empty means all.
	Events []event.Type
	// Hook forces a build; HookAuto picks the best this kernel supports.
	Hook Hook
}

// Sensor is the syscall sensor.
type Sensor struct {
	// Hook names the build in use, once started.
	Hook Hook
	// HookFallback says why the tp_btf build was not used, if it was not.
	HookFallback error

	cfg       Config
	objs      objects
	enterLink link.Link
	exitLink  link.Link
	loss      *record.Loss
	capture   int
}

// New returns the sensor, not started.
func New(cfg Config) *Sensor { return &Sensor{cfg: cfg} }

// Name is the sensor's name in logs, errors and the set.
const Name = "syscall"

// Name implements sensor.Sensor.
func (s *Sensor) Name() string { return Name }

// Start loads the programs and attaches them (sensor.Sensor). Events are
// produced from the moment it returns. It puts the kernel's map file
// operations, which it learns, in env.MapFileOps.
func (s *Sensor) Start(env *sensor.Env) error {
	mask := cmdMask(s.cfg.Events)
	capBytes := env.CaptureBytes
	if capBytes <= 0 || capBytes > record.MaxCapture {
		return fmt.Errorf("capture limit %d bytes out of range: must be between 1 and %d", capBytes, record.MaxCapture)
	}
	cpus, err := ebpf.PossibleCPU()
	if err != nil {
		return fmt.Errorf("counting possible CPUs: %w", err)
	}

	// Kernels before 5.11 charge BPF memory to RLIMIT_MEMLOCK; later ones
	// use memcg and ignore it. Failing to raise it is fatal only on the
	// former, and the load error then says so.
	_ = rlimit.RemoveMemlock()

	if _, err := os.Stat("/sys/kernel/btf/vmlinux"); err != nil {
		return fmt.Errorf("this kernel exposes no BTF (/sys/kernel/btf/vmlinux: %w): bpfmon relocates its programs against the kernel's BTF and needs a kernel built with CONFIG_DEBUG_INFO_BTF=y (Linux 5.8+; most distribution kernels)", err)
	}
	consts := constants{
		selfTGID:   env.Self.TGID,
		loaderTGID: uint32(os.Getpid()),
		capture:    uint32(capBytes),
		cpus:       uint32(cpus),
		cmdMask:    mask,
		watchMmap:  watchMmap(s.cfg.Events),
	}

	// The tp_btf build is the fast one; kernels before 5.11 (no
	// bpf_get_current_task_btf) or that refuse BTF tracing programs get the
	// raw tracepoint build.
	builds := []Hook{HookTPBTF, HookRawTracepoint}
	if s.cfg.Hook != HookAuto {
		builds = []Hook{s.cfg.Hook}
	}
	var failures []error
	for _, build := range builds {
		err := s.start(build, env.Ring, consts)
		if err == nil {
			break
		}
		s.Close()
		failures = append(failures, fmt.Errorf("%s: %w", build, err))
	}
	if s.Hook == "" {
		return errors.Join(failures...)
	}
	if len(failures) > 0 {
		s.HookFallback = failures[0]
	}
	if err := s.protectMaps(); err != nil {
		s.Close()
		return err
	}
	for kind, h := range handlers() {
		if err := env.Ring.Handle(kind, h); err != nil {
			s.Close()
			return err
		}
	}
	s.loss = env.Ring.CountLost(event.SourceSyscall, s.lostCalls)
	s.capture = capBytes
	env.MapFileOps = s.objs.calib

	env.Log.Info(fmt.Sprintf("watching bpf(2) map calls from every process (%s on raw_syscalls sys_enter/sys_exit, 64-bit and ia32 ABIs)", s.Hook),
		"sensor", Name, "hook", string(s.Hook), "capture_bytes", capBytes)
	if s.HookFallback != nil {
		env.Log.Warn("using raw tracepoints, slower: the tp_btf programs did not load", "sensor", Name, "reason", s.HookFallback.Error())
	}
	return nil
}

// constants are the programs' configuration, in .rodata.
type constants struct {
	selfTGID, loaderTGID, capture, cpus, watchMmap uint32
	cmdMask                                        uint64
}

// protectMaps freezes the sensor's own maps against writes through bpf(2),
// so that no process can clear its in-flight table, its counters or its
// calibration. The programs can still write them; .rodata (configuration)
// was frozen by the loader. Freezing also calibrates the program: it learns
// what a map file looks like from these very calls (see calib in syscall.c).
func (s *Sensor) protectMaps() error {
	for name, m := range s.objs.coll.Maps {
		// The ring buffer is the ring's; .rodata is frozen by the loader.
		if name == bpfMapEvents || name == ".rodata" {
			continue
		}
		if err := m.Freeze(); err != nil {
			return fmt.Errorf("freezing the sensor's %s map: %w", name, err)
		}
	}
	var fop uint64
	if err := s.objs.calib.Lookup(uint32(0), &fop); err != nil {
		return fmt.Errorf("reading calibration: %w", err)
	}
	if fop == 0 {
		return errors.New("calibration failed: the sys_enter program did not see bpfmon's own BPF_MAP_FREEZE call; is raw_syscalls:sys_enter working on this kernel?")
	}
	return nil
}

// MapIDs implements sensor.Sensor: the maps its programs rewrite
// constantly, which the content scanner must not report.
func (s *Sensor) MapIDs() []uint32 { return sensor.MapIDs(s.objs.coll, bpfMapEvents) }

// ProgramIDs implements sensor.Sensor.
func (s *Sensor) ProgramIDs() []uint32 { return sensor.ProgramIDs(s.objs.sysEnter, s.objs.sysExit) }

// CaptureBytes is the capture limit in force.
func (s *Sensor) CaptureBytes() int { return s.capture }

// objects are the parts of either build of bpf/syscall.c that this
// package uses. The builds keep their per-call state in different maps
// (task storage or an LRU hash), so the collection is kept whole: every
// map is frozen and listed as bpfmon's.
type objects struct {
	coll          *ebpf.Collection
	sysEnter      *ebpf.Program
	sysExit       *ebpf.Program
	inflightCount *ebpf.Map
	stats         *ebpf.Map
	calib         *ebpf.Map
}

func (o *objects) Close() {
	if o.coll != nil {
		o.coll.Close()
	}
	*o = objects{}
}

// start loads one build of the programs and attaches them.
func (s *Sensor) start(build Hook, ring *record.Ring, c constants) error {
	load := loadBpf
	if build == HookTPBTF {
		load = loadBpfbtf
	}
	if err := s.load(load, ring, c); err != nil {
		return err
	}
	s.Hook = build
	// Exit first, so no call can enter between the two attachments and
	// leave an entry without its exit.
	var err error
	if s.exitLink, err = s.attach("sys_exit", s.objs.sysExit); err != nil {
		return err
	}
	if s.enterLink, err = s.attach("sys_enter", s.objs.sysEnter); err != nil {
		return err
	}
	return nil
}

// load loads one build of the programs into s.objs.
func (s *Sensor) load(specFn func() (*ebpf.CollectionSpec, error), ring *record.Ring, c constants) error {
	spec, err := specFn()
	if err != nil {
		return fmt.Errorf("parsing the embedded BPF object: %w", err)
	}
	// What both builds have, by the names bpf2go generated.
	var specs struct {
		Scratch      *ebpf.MapSpec      `ebpf:"scratch"`
		SelfTgid     *ebpf.VariableSpec `ebpf:"self_tgid"`
		LoaderTgid   *ebpf.VariableSpec `ebpf:"loader_tgid"`
		CaptureLimit *ebpf.VariableSpec `ebpf:"capture_limit"`
		PossibleCpus *ebpf.VariableSpec `ebpf:"possible_cpus"`
		CmdMask      *ebpf.VariableSpec `ebpf:"cmd_mask"`
		WatchMmap    *ebpf.VariableSpec `ebpf:"watch_mmap"`
	}
	if err := spec.Assign(&specs); err != nil {
		return fmt.Errorf("%w (regenerate the BPF objects with go generate)", err)
	}
	specs.Scratch.MaxEntries = c.cpus
	for _, v := range []struct {
		spec  *ebpf.VariableSpec
		value any
	}{
		{specs.SelfTgid, c.selfTGID}, {specs.LoaderTgid, c.loaderTGID}, {specs.CaptureLimit, c.capture},
		{specs.PossibleCpus, c.cpus}, {specs.CmdMask, c.cmdMask}, {specs.WatchMmap, c.watchMmap},
	} {
		if err := v.spec.Set(v.value); err != nil {
			return fmt.Errorf("setting %s: %w", v.spec.Name, err)
		}
	}
	replace, err := ring.Prepare(spec)
	if err != nil {
		return err
	}
	coll, err := ebpf.NewCollectionWithOptions(spec, ebpf.CollectionOptions{MapReplacements: replace, Cache: features.BTF()})
	if err != nil {
		return explainLoadError(err)
	}
	s.objs = objects{coll: coll,
		sysEnter: coll.Programs[bpfProgSysEnter], sysExit: coll.Programs[bpfProgSysExit],
		inflightCount: coll.Maps[bpfMapInflightCount], stats: coll.Maps[bpfMapStats], calib: coll.Maps[bpfMapCalib]}
	return nil
}

func (s *Sensor) attach(name string, prog *ebpf.Program) (link.Link, error) {
	var l link.Link
	var err error
	if s.Hook == HookTPBTF {
		l, err = link.AttachTracing(link.TracingOptions{Program: prog})
	} else {
		l, err = link.AttachRawTracepoint(link.RawTracepointOptions{Name: name, Program: prog})
	}
	if err != nil {
		return nil, attachError(name, err)
	}
	return l, nil
}

// counter sums counter idx of the stats map over CPUs.
func (s *Sensor) counter(idx bpfCallStat) (uint64, error) {
	n, err := sensor.Counter(s.objs.stats, uint32(idx))
	if err != nil {
		return 0, fmt.Errorf("reading the syscall sensor's counters: %w", err)
	}
	return n, nil
}

// lostCalls counts the calls not reported at all: their entry record did
// not fit in the ring.
func (s *Sensor) lostCalls() (uint64, error) { return s.counter(bpfCallStatSTAT_LOST) }

// Stats implements sensor.Sensor. Incomplete counts calls reported
// without their result: the exit record did not fit, or the in-flight
// table was full.
func (s *Sensor) Stats() sensor.Stats {
	var st sensor.Stats
	if s.loss != nil {
		st.Lost = s.loss.Reported()
	}
	if s.objs.stats == nil {
		return st
	}
	for _, idx := range []bpfCallStat{bpfCallStatSTAT_INFLIGHT, bpfCallStatSTAT_LOST_EXIT} {
		if n, err := s.counter(idx); err == nil {
			st.Incomplete += n
		}
	}
	return st
}

// Features implements sensor.Sensor: which build runs, and the compat ABI.
func (s *Sensor) Features(startErr error) []features.Feature {
	f := features.Feature{Name: "syscall_sensor", Available: true, Detail: string(s.Hook) + " programs on raw_syscalls sys_enter/sys_exit"}
	switch {
	case startErr != nil:
		f = features.Feature{Name: "syscall_sensor", Detail: startErr.Error(), Fallback: "none: watch cannot report bpf(2) calls"}
	case s.HookFallback != nil:
		f.Detail += " (the faster tp_btf build did not load: " + s.HookFallback.Error() + ")"
	}
	return []features.Feature{f, features.Compat()}
}

// drainWait bounds how long Detach waits for calls in flight to finish.
const drainWait = 250 * time.Millisecond

// Detach stops new events; records already in the ring buffer remain to be
// read. Calls already inside bpf(2) still get their exit record: sys_enter
// is detached first, and sys_exit only once the in-flight count drops to
// zero or drainWait has passed.
func (s *Sensor) Detach() {
	if s.enterLink != nil {
		s.enterLink.Close()
		s.enterLink = nil
	}
	if s.exitLink == nil {
		return
	}
	for deadline := time.Now().Add(drainWait); time.Now().Before(deadline); time.Sleep(time.Millisecond) {
		var n int64
		if s.objs.inflightCount.Lookup(uint32(0), &n) != nil || n <= 0 {
			break
		}
	}
	s.exitLink.Close()
	s.exitLink = nil
}

// Close detaches the programs and frees everything.
func (s *Sensor) Close() error {
	s.Detach()
	s.objs.Close()
	s.Hook = ""
	return nil
}

// cmdMask selects the bpf(2) commands behind the wanted event types
// (event.Type.Command). Types that other parts of bpfmon report (lost, the
// scanner's) select nothing here.
func cmdMask(events []event.Type) uint64 {
	var mask uint64
	for _, t := range event.Types {
		if len(events) > 0 && !slices.Contains(events, t) {
			continue
		}
		if cmd, ok := t.Command(); ok && cmd < 64 {
			mask |= 1 << cmd
		}
	}
	return mask
}

// watchMmap reports whether the wanted event types include map_mmap.
func watchMmap(events []event.Type) uint32 {
	if len(events) == 0 || slices.Contains(events, event.MapMmap) {
		return 1
	}
	return 0
}

// explainLoadError turns a load failure into an actionable message.
func explainLoadError(err error) error {
	var ve *ebpf.VerifierError
	switch {
	case errors.Is(err, unix.EPERM):
		return fmt.Errorf("loading the syscall sensor: %w (need root, or CAP_BPF and CAP_PERFMON)", err)
	case errors.As(err, &ve):
		return fmt.Errorf("the kernel verifier rejected the syscall sensor; please report this with your kernel version (%s): %+v", features.KernelRelease(), ve)
	}
	return fmt.Errorf("loading the syscall sensor: %w", err)
}

func attachError(name string, err error) error {
	return fmt.Errorf("attaching raw tracepoint raw_syscalls:%s: %w (bpfmon needs raw tracepoints on raw_syscalls, present since Linux 4.17 with CONFIG_FTRACE_SYSCALLS; kernel %s)", name, err, features.KernelRelease())
}

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
	"strings"
	"time"

	"github.com/cilium/ebpf"
	cfeatures "github.com/cilium/ebpf/features"
	"github.com/cilium/ebpf/link"
	"golang.org/x/sys/unix"

	"github.com/bpfmon/bpfmon/internal/arch"
	"github.com/bpfmon/bpfmon/internal/event"
	"github.com/bpfmon/bpfmon/internal/features"
	"github.com/bpfmon/bpfmon/internal/sensor"
	"github.com/bpfmon/bpfmon/internal/sensor/record"
)

// Hook is a build of the sensor's programs.
type Hook string

// The builds, fastest first.
const (
	HookAuto Hook = "" // the fastest this kernel supports
	// HookFentry: fentry/fexit on the bpf syscall itself and fexit on the
	// map files' mmap operation (BPF trampolines; most distribution
	// kernels): other syscalls run no bpfmon code.
	HookFentry Hook = "fentry"
	// HookTPBTF: tp_btf programs on raw_syscalls sys_enter/sys_exit (Linux
	// 5.11+: BTF-typed loads, task-local storage), on every syscall.
	HookTPBTF Hook = "tp_btf"
	// HookRawTracepoint: raw tracepoints on the same hooks, with probe
	// reads and LRU hashes, for older kernels.
	HookRawTracepoint Hook = "raw_tracepoint"
)

// Hooks lists the builds, fastest first: the order HookAuto tries them in.
var Hooks = []Hook{HookFentry, HookTPBTF, HookRawTracepoint}

// ParseHook parses --hook: auto, fentry, tp_btf or raw_tracepoint.
func ParseHook(s string) (Hook, error) {
	switch h := Hook(s); h {
	case "auto":
		return HookAuto, nil
	case HookFentry, HookTPBTF, HookRawTracepoint:
		return h, nil
	}
	return "", fmt.Errorf("unknown --hook %q: want auto, %s, %s or %s", s, HookFentry, HookTPBTF, HookRawTracepoint)
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
	// HookFallback says why the faster builds were not used, if they
	// were not.
	HookFallback error

	sensor.Base // the collection, programs, exit links and losses: ProgramIDs, MapIDs
	cfg         Config
	objs        objects
	enterLinks  []link.Link // the exit links are Base.Links
	capture     int
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

	// The fastest build that this kernel loads: kernels that refuse BPF
	// trampolines get the tp_btf build, those before 5.11 (no
	// bpf_get_current_task_btf, no task storage for tracing programs) the
	// raw tracepoint build.
	hook, failed, _ := sensor.Choose(Hooks, s.cfg.Hook, func(build Hook) error {
		err := s.start(build, env, consts)
		if err != nil {
			s.Close()
		}
		return err
	}, nil)
	if hook == "" {
		err := sensor.Join(failed)
		if s.cfg.Hook != HookAuto {
			// The build the command line asked for is not available.
			return fmt.Errorf("%w: %w", sensor.ErrUnavailable, err)
		}
		return err
	}
	s.HookFallback = sensor.Join(failed)
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
	s.Loss = env.Ring.CountLost(event.SourceSyscall, s.lostCalls)
	s.capture = capBytes
	env.MapFileOps = s.objs.calib

	env.Log.Info(fmt.Sprintf("watching bpf(2) map calls from every process (%s on %s, %s and %s ABIs)", s.Hook, buildOf[s.Hook].where, arch.NativeABI, arch.CompatABI),
		"sensor", Name, "hook", string(s.Hook), "capture_bytes", capBytes)
	if s.HookFallback != nil {
		env.Log.Warn(fmt.Sprintf("using the %s build, slower: the faster ones did not load", s.Hook), "sensor", Name, "reason", oneLine(s.HookFallback))
	}
	return nil
}

// oneLine joins a joined error's lines with "; ".
func oneLine(err error) string { return strings.ReplaceAll(err.Error(), "\n", "; ") }

// build is how one build hooks the kernel: its object, the programs it
// attaches on the way in and on the way out of a call, and where.
type build struct {
	object func() (*ebpf.CollectionSpec, error)
	// enter and exit are attached exit first, so that no call can enter
	// between the attachments and leave an entry without its exit.
	enter, exit []sensor.Hook
	// mmap is the program that reports mmaps, if apart: left out when
	// map_mmap is not watched.
	mmap  string
	where string
}

// buildOf describes each build (tests may replace an object).
var buildOf = map[Hook]*build{
	HookFentry: {object: loadBpfbtf,
		enter: []sensor.Hook{{Prog: bpfbtfProgFeBpf, How: sensor.Tracing}},
		exit:  []sensor.Hook{{Prog: bpfbtfProgFxBpf, How: sensor.Tracing}, {Prog: bpfbtfProgFxMapMmap, How: sensor.Tracing}},
		mmap:  bpfbtfProgFxMapMmap,
		where: "the bpf syscall and the map files' mmap (fentry/fexit)"},
	HookTPBTF: {object: loadBpfbtf,
		enter: []sensor.Hook{{Prog: bpfbtfProgSysEnter, How: sensor.Tracing}},
		exit:  []sensor.Hook{{Prog: bpfbtfProgSysExit, How: sensor.Tracing}},
		where: "raw_syscalls sys_enter/sys_exit"},
	HookRawTracepoint: {object: loadBpf,
		enter: []sensor.Hook{{Prog: bpfProgSysEnter, How: sensor.RawTracepoint, Target: "sys_enter"}},
		exit:  []sensor.Hook{{Prog: bpfProgSysExit, How: sensor.RawTracepoint, Target: "sys_exit"}},
		where: "raw_syscalls sys_enter/sys_exit"},
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
	if err := s.Freeze(); err != nil {
		return err
	}
	var fop uint64
	if err := s.objs.calib.Lookup(uint32(0), &fop); err != nil {
		return fmt.Errorf("reading calibration: %w", err)
	}
	if fop == 0 {
		return fmt.Errorf("calibration failed: the entry program did not see bpfmon's own BPF_MAP_FREEZE call; is %s working on this kernel?", buildOf[s.Hook].where)
	}
	return nil
}

// programs are the programs loaded, by name.
func (s *Sensor) programs() map[string]*ebpf.Program {
	out := map[string]*ebpf.Program{}
	if s.Coll != nil {
		for name, p := range s.Coll.Programs {
			out[name] = p
		}
	}
	return out
}

// CaptureBytes is the capture limit in force.
func (s *Sensor) CaptureBytes() int { return s.capture }

// objects are the maps of the builds of bpf/syscall.c that this package
// reads (the collection is Base.Coll). The builds keep their per-call
// state in different maps (task storage or an LRU hash), so the
// collection is kept whole: every map is frozen and listed as bpfmon's.
type objects struct {
	inflightCount *ebpf.Map
	stats         *ebpf.Map
	calib         *ebpf.Map
}

// start loads one build of the programs and attaches them.
func (s *Sensor) start(hook Hook, env *sensor.Env, c constants) error {
	b := buildOf[hook]
	var progs []string
	for _, name := range sensor.Programs(b.enter, b.exit) {
		if name != b.mmap || c.watchMmap != 0 {
			progs = append(progs, name)
		}
	}
	if err := s.load(hook, b.object, progs, env, c); err != nil {
		return err
	}
	s.Hook = hook
	explain := func(h sensor.Hook, p *ebpf.Program, err error) error {
		if h.How == sensor.RawTracepoint {
			return attachError("raw tracepoint raw_syscalls:"+h.Target, err)
		}
		return attachError(p.String(), err)
	}
	if err := s.Attach(b.exit, explain); err != nil {
		return err
	}
	exits := len(s.Links)
	err := s.Attach(b.enter, explain)
	s.enterLinks = s.Links[exits:]
	s.Links = s.Links[:exits]
	return err
}

// load loads the programs progs names of one build's object into
// s.Coll: what every build has, by the names bpf2go generated.
func (s *Sensor) load(hook Hook, specFn func() (*ebpf.CollectionSpec, error), progs []string, env *sensor.Env, c constants) error {
	err := s.Load(env, sensor.Object{Name: string(hook), Spec: specFn, Programs: progs,
		PerCPU: []string{"scratch"},
		Constants: []sensor.Constant{
			{Name: "self_tgid", Value: c.selfTGID}, {Name: "loader_tgid", Value: c.loaderTGID},
			{Name: "capture_limit", Value: c.capture}, {Name: "possible_cpus", Value: c.cpus},
			{Name: "cmd_mask", Value: c.cmdMask}, {Name: "watch_mmap", Value: c.watchMmap},
		},
		Explain: func(err error) error { return explainLoadError(string(hook), err) }})
	if err != nil {
		return err
	}
	s.objs = objects{inflightCount: s.Coll.Maps[bpfMapInflightCount], stats: s.Coll.Maps[bpfMapStats], calib: s.Coll.Maps[bpfMapCalib]}
	return nil
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
	st := s.Base.Stats()
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
	var f features.Feature
	switch {
	case startErr != nil:
		f = features.Feature{Name: "syscall_sensor", Detail: oneLine(startErr), Fallback: "none: watch cannot report bpf(2) calls"}
	default:
		f = features.Feature{Name: "syscall_sensor", Available: true, Detail: string(s.Hook) + " programs on " + buildOf[s.Hook].where}
		if s.Hook == HookFentry {
			f.Detail += ": other syscalls run no bpfmon code"
		}
		if s.HookFallback != nil {
			f.Detail += " (the faster builds did not load: " + oneLine(s.HookFallback) + ")"
		}
	}
	return []features.Feature{f, features.Compat()}
}

// drainWait bounds how long Detach waits for calls in flight to finish.
const drainWait = 250 * time.Millisecond

// Detach stops new events; records already in the ring buffer remain to be
// read. Calls already inside bpf(2) still get their exit record: the entry
// programs are detached first, the exit programs only once the in-flight
// count drops to zero or drainWait has passed.
func (s *Sensor) Detach() {
	for _, l := range s.enterLinks {
		l.Close()
	}
	s.enterLinks = nil
	if s.Links == nil {
		return
	}
	for deadline := time.Now().Add(drainWait); time.Now().Before(deadline); time.Sleep(time.Millisecond) {
		var n int64
		if s.objs.inflightCount.Lookup(uint32(0), &n) != nil || n <= 0 {
			break
		}
	}
	s.Base.Detach()
}

// Close detaches the programs and frees everything.
func (s *Sensor) Close() error {
	s.Detach()
	s.Base.Close()
	s.objs = objects{}
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

// explainLoadError turns a load failure of a build into an actionable
// message: a rejection in a few words, its whole verifier log in a file.
func explainLoadError(build string, err error) error {
	if errors.Is(err, unix.EPERM) {
		return errors.New("program load denied (EPERM)")
	}
	if rej, ok := sensor.Rejected(build, err); ok {
		return rej
	}
	if build != string(HookRawTracepoint) && cfeatures.HaveMapType(ebpf.TaskStorage) != nil {
		return fmt.Errorf("the %s build keeps per-thread state in task storage, which this kernel lacks (Linux 5.11): %w", build, err)
	}
	return fmt.Errorf("loading the syscall sensor: %w", err)
}

func attachError(what string, err error) error {
	return fmt.Errorf("attaching %s: %w (kernel %s)", what, err, features.KernelRelease())
}

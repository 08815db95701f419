// Package bpfsyscall is the syscall sensor: it reports every bpf(2) call that
// changes a map or obtains a handle to one, from both the 64-bit and the
// 32-bit compat syscall entries.
//
// The kernel side (bpf/syscall.c) hooks raw_syscalls:sys_enter and sys_exit,
// resolves the map behind the caller's fd inside the kernel, captures key and
// value bytes, and writes an entry and an exit record per call to a ring
// buffer. This package loads and attaches that program, pairs the records by
// thread and turns them into event.Events.
package bpfsyscall

import (
	"errors"
	"fmt"
	"os"
	"slices"
	"strconv"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"github.com/cilium/ebpf/ringbuf"
	"github.com/cilium/ebpf/rlimit"
	"golang.org/x/sys/unix"

	"github.com/bpfmon/bpfmon/internal/event"
	"github.com/bpfmon/bpfmon/internal/features"
)

// MaxCapture is the largest capture limit the kernel program supports
// (MAX_CAPTURE in bpf/include/event.h).
const MaxCapture = 32768

// Defaults.
const (
	DefaultCapture    = 4096
	DefaultRingBuffer = 32 << 20
)

// bpf_cmd values reported by this sensor, and the event types they map to.
var cmdEvents = map[uint32]event.Type{
	unix.BPF_MAP_CREATE:                  event.MapCreate,
	unix.BPF_MAP_UPDATE_ELEM:             event.MapUpdate,
	unix.BPF_MAP_DELETE_ELEM:             event.MapDelete,
	unix.BPF_OBJ_PIN:                     event.ObjPin,
	unix.BPF_OBJ_GET:                     event.ObjGet,
	unix.BPF_MAP_GET_FD_BY_ID:            event.MapGetFDByID,
	unix.BPF_MAP_LOOKUP_AND_DELETE_ELEM:  event.MapLookupAndDelete,
	unix.BPF_MAP_FREEZE:                  event.MapFreeze,
	unix.BPF_MAP_LOOKUP_AND_DELETE_BATCH: event.MapLookupDeleteBatch,
	unix.BPF_MAP_UPDATE_BATCH:            event.MapUpdateBatch,
	unix.BPF_MAP_DELETE_BATCH:            event.MapDeleteBatch,
	unix.BPF_PROG_LOAD:                   event.ProgLoad,
	cmdMmap:                              event.MapMmap, // not a bpf(2) command: watch_mmap, not cmd_mask
}

// CommandEvent names bpf(2) command cmd by the event type it is reported
// as ("map_update" for BPF_MAP_UPDATE_ELEM, ...), or "cmd N".
func CommandEvent(cmd uint32) string {
	if name, ok := cmdEvents[cmd]; ok && cmd < 64 {
		return string(name)
	}
	return "cmd " + strconv.FormatUint(uint64(cmd), 10)
}

// Config selects what the sensor captures.
type Config struct {
	// Events lists the event types to report; empty means all.
	Events []event.Type
	// CaptureBytes limits the bytes captured per key and per value
	// (0: DefaultCapture). At most MaxCapture.
	CaptureBytes int
	// RingBufferBytes sizes the kernel ring buffer (0: DefaultRingBuffer).
	// Rounded up to a power of two of at least one page.
	RingBufferBytes int
	// ExcludeTGID is a process whose calls are never reported: bpfmon
	// itself. 0 means the current process.
	ExcludeTGID uint32
	// IncludeSelf reports the current process's calls too (tests).
	IncludeSelf bool
	// Hook forces HookTPBTF or HookRawTracepoint; empty picks the best
	// this kernel supports.
	Hook string
}

// Sensor is a loaded and attached syscall sensor.
type Sensor struct {
	// Hook names the programs in use: HookTPBTF or HookRawTracepoint.
	Hook string
	// HookFallback says why the tp_btf build was not used, if it was not.
	HookFallback error

	objs      objects
	enterLink link.Link
	exitLink  link.Link
	reader    *ringbuf.Reader
	dec       decoder
	capture   int
	// reported is the kernel's lost-record count at the last report.
	reported uint64
}

// New loads the sensor's programs into the kernel and attaches them. Events
// are produced from the moment New returns; read them with Run.
func New(cfg Config) (*Sensor, error) {
	mask, err := cmdMask(cfg.Events)
	if err != nil {
		return nil, err
	}
	capBytes := cfg.CaptureBytes
	if capBytes == 0 {
		capBytes = DefaultCapture
	}
	if capBytes < 0 || capBytes > MaxCapture {
		return nil, fmt.Errorf("capture limit %d bytes out of range: must be between 1 and %d", capBytes, MaxCapture)
	}
	ring := cfg.RingBufferBytes
	if ring == 0 {
		ring = DefaultRingBuffer
	}
	ring = roundRing(ring)
	cpus, err := ebpf.PossibleCPU()
	if err != nil {
		return nil, fmt.Errorf("counting possible CPUs: %w", err)
	}
	self := cfg.ExcludeTGID
	if self == 0 && !cfg.IncludeSelf {
		self = uint32(os.Getpid())
	}

	// Kernels before 5.11 charge BPF memory to RLIMIT_MEMLOCK; later ones
	// use memcg and ignore it. Failing to raise it is fatal only on the
	// former, and the load error then says so.
	_ = rlimit.RemoveMemlock()

	if _, err := os.Stat("/sys/kernel/btf/vmlinux"); err != nil {
		return nil, fmt.Errorf("this kernel exposes no BTF (/sys/kernel/btf/vmlinux: %w): bpfmon relocates its programs against the kernel's BTF and needs a kernel built with CONFIG_DEBUG_INFO_BTF=y (Linux 5.8+; most distribution kernels)", err)
	}
	consts := map[string]any{
		"self_tgid":     self,
		"loader_tgid":   uint32(os.Getpid()),
		"capture_limit": uint32(capBytes),
		"possible_cpus": uint32(cpus),
		"cmd_mask":      mask,
		"watch_mmap":    watchMmap(cfg.Events),
		"wakeup_bytes":  uint64(min(ring/8, wakeupMax)),
	}

	// The tp_btf build is the fast one; kernels before 5.11 (no
	// bpf_get_current_task_btf) or that refuse BTF tracing programs get the
	// raw tracepoint build.
	var builds []string
	switch cfg.Hook {
	case "":
		builds = []string{HookTPBTF, HookRawTracepoint}
	case HookTPBTF, HookRawTracepoint:
		builds = []string{cfg.Hook}
	default:
		return nil, fmt.Errorf("unknown hook %q: want %s or %s", cfg.Hook, HookTPBTF, HookRawTracepoint)
	}
	s := &Sensor{}
	ok := false
	defer func() {
		if !ok {
			s.Close()
		}
	}()
	var failures []error
	for _, build := range builds {
		err := s.start(build, consts, ring, cpus)
		if err == nil {
			break
		}
		s.Close()
		*s = Sensor{}
		failures = append(failures, fmt.Errorf("%s: %w", build, err))
	}
	if s.Hook == "" {
		return nil, errors.Join(failures...)
	}
	if len(failures) > 0 {
		s.HookFallback = failures[0]
	}

	if err := s.protectMaps(); err != nil {
		return nil, err
	}

	s.reader, err = ringbuf.NewReader(s.objs.Events)
	if err != nil {
		return nil, fmt.Errorf("opening the ring buffer: %w", err)
	}
	s.dec = newDecoder()
	s.capture = capBytes
	ok = true
	return s, nil
}

// protectMaps freezes the sensor's own maps against writes through bpf(2),
// so that no process can clear its in-flight table, its counters or its
// calibration. The programs can still write them; .rodata (configuration)
// was frozen by the loader. Freezing also calibrates the program: it learns
// what a map file looks like from these very calls (see calib in syscall.c).
func (s *Sensor) protectMaps() error {
	for name, m := range s.objs.coll.Maps {
		// The ring buffer's reader needs a writable mapping, which a
		// frozen map refuses; .rodata is frozen by the loader already.
		if name == "events" || name == ".rodata" {
			continue
		}
		if err := m.Freeze(); err != nil {
			return fmt.Errorf("freezing the sensor's %s map: %w", name, err)
		}
	}
	var fop uint64
	if err := s.objs.Calib.Lookup(uint32(0), &fop); err != nil {
		return fmt.Errorf("reading calibration: %w", err)
	}
	if fop == 0 {
		return errors.New("calibration failed: the sys_enter program did not see bpfmon's own BPF_MAP_FREEZE call; is raw_syscalls:sys_enter working on this kernel?")
	}
	return nil
}

// MapIDs lists the ids of the sensor's own maps, which its programs rewrite
// constantly: the content scanner must not report them.
func (s *Sensor) MapIDs() []uint32 { return MapIDs(s.objs.coll.Maps) }

// MapIDs lists the kernel ids of a collection's maps but those named in
// skip (maps another sensor owns, put in by MapReplacements).
func MapIDs(maps map[string]*ebpf.Map, skip ...string) []uint32 {
	var ids []uint32
	for name, m := range maps {
		if slices.Contains(skip, name) {
			continue
		}
		if info, err := m.Info(); err == nil {
			if id, ok := info.ID(); ok {
				ids = append(ids, uint32(id))
			}
		}
	}
	return ids
}

// ProgramIDs lists the ids of the sensor's own programs.
func (s *Sensor) ProgramIDs() []uint32 {
	var ids []uint32
	for _, p := range s.objs.coll.Programs {
		if info, err := p.Info(); err == nil {
			if id, ok := info.ID(); ok {
				ids = append(ids, uint32(id))
			}
		}
	}
	return ids
}

// Ring is the sensor's ring buffer, which other sensors may write into
// with records an Extension decodes (see AddExtension).
func (s *Sensor) Ring() *ebpf.Map { return s.objs.Events }

// AddExtension has Run hand the records of another sensor, written into
// Ring, to ext. Call it before Run.
func (s *Sensor) AddExtension(ext Extension) { s.dec.exts = append(s.dec.exts, ext) }

// Calib is the map holding the kernel address of the map file operations,
// learnt at start: how another sensor's programs tell a map's file.
func (s *Sensor) Calib() *ebpf.Map { return s.objs.Calib }

// CaptureBytes is the capture limit in force.
func (s *Sensor) CaptureBytes() int { return s.capture }

// Hooks.
const (
	HookTPBTF         = "tp_btf"
	HookRawTracepoint = "raw_tracepoint"
)

// objects are the programs and maps of either build of bpf/syscall.c. The
// builds keep their per-call state in different maps (task storage or a
// hash), so the collection is kept whole and the shared parts named here.
type objects struct {
	coll          *ebpf.Collection
	SysEnter      *ebpf.Program
	SysExit       *ebpf.Program
	Events        *ebpf.Map
	InflightCount *ebpf.Map
	Stats         *ebpf.Map
	Calib         *ebpf.Map
}

func (o *objects) Close() error {
	if o.coll != nil {
		o.coll.Close()
	}
	*o = objects{}
	return nil
}

// start loads one build of the programs and attaches them.
func (s *Sensor) start(build string, consts map[string]any, ring, cpus int) error {
	load := loadBpf
	if build == HookTPBTF {
		load = loadBpfbtf
	}
	if err := s.load(load, consts, ring, cpus); err != nil {
		return err
	}
	s.Hook = build
	// Exit first, so no call can enter between the two attachments and
	// leave an entry without its exit.
	var err error
	if s.exitLink, err = s.attach("sys_exit", s.objs.SysExit); err != nil {
		return err
	}
	if s.enterLink, err = s.attach("sys_enter", s.objs.SysEnter); err != nil {
		return err
	}
	return nil
}

// load loads one build of the programs into s.objs.
func (s *Sensor) load(specFn func() (*ebpf.CollectionSpec, error), consts map[string]any, ring, cpus int) error {
	spec, err := specFn()
	if err != nil {
		return fmt.Errorf("parsing the embedded BPF object: %w", err)
	}
	spec.Maps["events"].MaxEntries = uint32(ring)
	spec.Maps["scratch"].MaxEntries = uint32(cpus)
	for name, v := range consts {
		vs, ok := spec.Variables[name]
		if !ok {
			return fmt.Errorf("BPF object lacks variable %s: regenerate it with go generate", name)
		}
		if err := vs.Set(v); err != nil {
			return fmt.Errorf("setting %s: %w", name, err)
		}
	}
	coll, err := ebpf.NewCollectionWithOptions(spec, ebpf.CollectionOptions{Cache: features.BTF()})
	if err != nil {
		return explainLoadError(err)
	}
	o := objects{coll: coll,
		SysEnter: coll.Programs["sys_enter"], SysExit: coll.Programs["sys_exit"],
		Events: coll.Maps["events"], InflightCount: coll.Maps["inflight_count"],
		Stats: coll.Maps["stats"], Calib: coll.Maps["calib"]}
	if o.SysEnter == nil || o.SysExit == nil || o.Events == nil || o.InflightCount == nil || o.Stats == nil || o.Calib == nil {
		coll.Close()
		return errors.New("BPF object lacks a program or map: regenerate it with go generate")
	}
	s.objs = o
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

// Stats are the sensor's kernel-side counters.
type Stats struct {
	// Lost counts calls not reported at all: the ring buffer was full.
	Lost uint64
	// Incomplete counts calls reported without their result: the exit
	// record did not fit, or the in-flight table was full.
	Incomplete uint64
}

// Stats reads the kernel counters, summed over CPUs.
func (s *Sensor) Stats() (Stats, error) {
	var st Stats
	for idx, dst := range map[uint32]*uint64{0: &st.Lost, 1: &st.Incomplete, 2: &st.Incomplete} {
		var per []uint64
		if err := s.objs.Stats.Lookup(idx, &per); err != nil {
			return st, fmt.Errorf("reading sensor stats: %w", err)
		}
		for _, v := range per {
			*dst += v
		}
	}
	return st, nil
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
		if s.objs.InflightCount.Lookup(uint32(0), &n) != nil || n <= 0 {
			break
		}
	}
	s.exitLink.Close()
	s.exitLink = nil
}

// Close detaches the programs and frees everything.
func (s *Sensor) Close() error {
	s.Detach()
	if s.reader != nil {
		s.reader.Close()
	}
	return s.objs.Close()
}

// cmdMask selects the bpf(2) commands behind the wanted event types. Types
// that other parts of bpfmon report (lost, the scanner's) select nothing
// here; names nobody reports are an error.
func cmdMask(events []event.Type) (uint64, error) {
	var mask uint64
	want := map[event.Type]bool{}
	for _, e := range events {
		if !e.Known() {
			_, err := event.ParseTypes([]string{string(e)})
			return 0, err
		}
		want[e] = true
	}
	for cmd, name := range cmdEvents {
		if (len(events) == 0 || want[name]) && cmd < 64 {
			mask |= 1 << cmd
		}
	}
	return mask, nil
}

// watchMmap reports whether the wanted event types include map_mmap.
func watchMmap(events []event.Type) uint32 {
	if len(events) == 0 || slices.Contains(events, event.MapMmap) {
		return 1
	}
	return 0
}

func roundRing(n int) int {
	page := os.Getpagesize()
	r := page
	for r < n {
		r <<= 1
	}
	return r
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

// bootOffset converts CLOCK_BOOTTIME nanoseconds into wall-clock time.
func bootOffset() time.Duration {
	var ts unix.Timespec
	before := time.Now()
	_ = unix.ClockGettime(unix.CLOCK_BOOTTIME, &ts)
	return time.Duration(before.UnixNano() - ts.Nano())
}

// LossInterval is how often lost records are checked and reported.
const LossInterval = time.Second

// PollInterval is how long records may wait in the ring buffer before the
// reader looks, unless wakeupMax bytes (at most 1/8 of the ring) are waiting
// and the kernel wakes the reader. Measured: a 10ms poll cost 1.2% of a core
// on an idle host, over the 1% target.
const PollInterval = 100 * time.Millisecond

// wakeupMax bounds how much may wait in the ring before the kernel wakes the
// reader: a burst is picked up after at most about a thousand records.
const wakeupMax = 256 << 10

// staleAfter is how long a call may wait for its exit record before it is
// reported without a result: bpf(2) map commands do not block, so an entry
// that old lost its exit record.
const staleAfter = 2 * time.Second

// Run delivers events to emit until stop is closed, then detaches the
// programs, drains the ring buffer, reports calls still waiting for their
// exit and any final loss, and returns. Lost records are reported as
// "lost" events at most LossInterval after they happen. idle, if not nil,
// is called whenever the ring buffer has been emptied: the place to flush
// buffered output. emit and idle are called from Run's goroutine only.
func (s *Sensor) Run(stop <-chan struct{}, emit func(*event.Event) error, idle func() error) error {
	if idle == nil {
		idle = func() error { return nil }
	}
	done := make(chan struct{})
	defer close(done)
	go func() {
		select {
		case <-stop:
			// Detaching waits for running programs to finish, so every
			// record they write is in the ring before Flush.
			for _, ext := range s.dec.exts {
				ext.Detach()
			}
			s.Detach()
			s.reader.Flush()
		case <-done:
		}
	}()

	var rec ringbuf.Record
	nextTick := time.Now().Add(LossInterval)
	s.reader.SetDeadline(time.Now().Add(PollInterval))
	for {
		err := s.reader.ReadInto(&rec)
		switch {
		case err == nil:
			if err := s.dec.decode(rec.RawSample, emit); err != nil {
				return fmt.Errorf("decoding a ring buffer record: %w", err)
			}
			if rec.Remaining == 0 {
				if err := idle(); err != nil {
					return err
				}
			}
			continue
		case errors.Is(err, os.ErrDeadlineExceeded):
			if now := time.Now(); now.After(nextTick) {
				if err := s.tick(emit); err != nil {
					return err
				}
				nextTick = now.Add(LossInterval)
			}
			if err := idle(); err != nil {
				return err
			}
			s.reader.SetDeadline(time.Now().Add(PollInterval))
			continue
		case errors.Is(err, ringbuf.ErrFlushed):
			if err := s.dec.flush(emit); err != nil {
				return err
			}
			if err := s.reportLost(emit); err != nil {
				return err
			}
			for _, ext := range s.dec.exts {
				if err := ext.Tick(emit); err != nil {
					return err
				}
			}
			return idle()
		default:
			return fmt.Errorf("reading the ring buffer: %w", err)
		}
	}
}

func (s *Sensor) tick(emit func(*event.Event) error) error {
	if err := s.reportLost(emit); err != nil {
		return err
	}
	for _, ext := range s.dec.exts {
		if err := ext.Tick(emit); err != nil {
			return err
		}
	}
	return s.dec.flushStale(time.Now().Add(-staleAfter), emit)
}

// reportLost emits a "lost" event when the kernel counted records it could
// not write since the last report.
func (s *Sensor) reportLost(emit func(*event.Event) error) error {
	st, err := s.Stats()
	if err != nil {
		return err
	}
	if st.Lost <= s.reported {
		return nil
	}
	n := st.Lost - s.reported
	s.reported = st.Lost
	return emit(&event.Event{
		Time:     time.Now(),
		Type:     event.Lost,
		Source:   event.SourceSyscall,
		Count:    n,
		HasCount: true,
	})
}

// Lost is the number of records lost so far, as last reported.
func (s *Sensor) Lost() uint64 { return s.reported }

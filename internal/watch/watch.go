// Package watch runs `bpfmon watch`: it starts the sensors, filters their
// events and writes them out until told to stop, then drains everything and
// summarises. It holds the wiring, not the flags (cmd/bpfmon) nor the
// sensors' logic (internal/sensor/...).
package watch

import (
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/bpfmon/bpfmon/internal/cgroups"
	"github.com/bpfmon/bpfmon/internal/event"
	"github.com/bpfmon/bpfmon/internal/features"
	"github.com/bpfmon/bpfmon/internal/output"
	"github.com/bpfmon/bpfmon/internal/scanner"
	"github.com/bpfmon/bpfmon/internal/sensor/bpfsyscall"
	"github.com/bpfmon/bpfmon/internal/sensor/kernelwrite"
)

// Options configure a watch.
type Options struct {
	Format       string    // "json" or "text"
	Out          io.Writer // where events go
	Log          io.Writer // diagnostics and the summary (stderr)
	ReadyFile    string    // written once all probes are attached
	CaptureBytes int
	RingBytes    int
	Hook         string // "" (best available), "tp_btf" or "raw_tracepoint"
	// KernelHooks chooses the kernel-side sensor's hooks: "" or "auto"
	// (fexit where the kernel allows, else kprobes; none available is not
	// an error), "fexit" or "kprobe" (required), "off".
	KernelHooks string
	Filter      Filter
	// The content scanner: off when ScanInterval is 0.
	ScanInterval time.Duration
	ScanMaxKeyed int
	ScanBudget   int64  // bytes per second, 0: unlimited
	StatePath    string // the scanner's state file, "" for none
	ScanMemory   int64  // bound on the scanner's snapshots, 0: default
}

// Summary is what a watch did.
type Summary struct {
	Events     uint64             // events written
	Lost       uint64             // calls and kernel-side writes the kernel could not hand over
	Incomplete uint64             // calls reported without their result
	Scan       *scanner.PassStats // the content scanner's last pass, if it ran
}

// ErrSetup marks failures to start: bad privileges, kernel refusals.
var ErrSetup = errors.New("setup failed")

// Run watches until stop is closed, then drains and returns the summary.
func Run(opts Options, stop <-chan struct{}) (Summary, error) {
	var sum Summary
	w, err := output.New(opts.Format, opts.Out)
	if err != nil {
		return sum, err
	}
	if err := features.CheckTracing(); err != nil {
		return sum, fmt.Errorf("%w: %w", ErrSetup, err)
	}
	// The content scanner needs every write the sensor sees, to tell
	// reported writes from unreported ones: then --event filters in user
	// space only.
	sensorEvents := opts.Filter.Events
	if opts.ScanInterval > 0 {
		sensorEvents = nil
	}
	sensor, err := bpfsyscall.New(bpfsyscall.Config{
		Events:          sensorEvents,
		CaptureBytes:    opts.CaptureBytes,
		RingBufferBytes: opts.RingBytes,
		Hook:            opts.Hook,
	})
	if err != nil {
		return sum, fmt.Errorf("%w: %w", ErrSetup, err)
	}
	defer sensor.Close()

	fmt.Fprintf(opts.Log, "bpfmon: watching bpf(2) map calls from every process (%s on raw_syscalls sys_enter/sys_exit, 64-bit and ia32 ABIs; capture %d bytes)\n", sensor.Hook, sensor.CaptureBytes())
	if sensor.HookFallback != nil {
		fmt.Fprintf(opts.Log, "bpfmon: using raw tracepoints, slower: the tp_btf programs did not load: %v\n", sensor.HookFallback)
	}

	// The kernel-side sensor writes into the syscall sensor's ring buffer,
	// so both kinds of record are read in one order.
	kernel := features.KernelSensor{Err: errors.New("turned off (--kernel-hooks off)")}
	var kw *kernelwrite.Sensor
	if opts.KernelHooks != kernelwrite.ModeOff {
		kw, err = kernelwrite.New(kernelwrite.Config{Ring: sensor.Ring(), Mode: opts.KernelHooks, CaptureBytes: sensor.CaptureBytes(),
			SelfMaps: sensor.MapIDs(), SelfPrograms: sensor.ProgramIDs()})
		kernel = kernelwrite.Features(kw, err)
		switch {
		case err != nil && opts.KernelHooks != "" && opts.KernelHooks != kernelwrite.ModeAuto:
			return sum, fmt.Errorf("%w: --kernel-hooks %s: %w", ErrSetup, opts.KernelHooks, err)
		case err != nil:
			fmt.Fprintf(opts.Log, "bpfmon: kernel-side writes unavailable, BPF programs' writes are found by the content scanner without the program's name: %v\n", err)
		default:
			defer kw.Close()
			sensor.SetExtension(kw)
			fmt.Fprintf(opts.Log, "bpfmon: watching writes by BPF programs (%s on %d kernel functions; writer named from the kernel stack)\n", kw.Kind(), kw.Hooked())
		}
	}
	probes := features.Sensors{
		Syscall: func() (string, error, error) { return sensor.Hook, sensor.HookFallback, nil },
		Kernel:  func() features.KernelSensor { return kernel },
	}
	fmt.Fprintf(opts.Log, "bpfmon: features: %s (details: bpfmon features)\n", features.Probe(probes).Summary())
	features.ReleaseBTF() // every program is loaded

	// Two producers (the sensor and the scanner) share the writer.
	var mu sync.Mutex
	maps := newMapContext(stop)
	write := func(ev *event.Event) error {
		mu.Lock()
		defer mu.Unlock()
		maps.enrich(ev)
		if !opts.Filter.Match(ev) {
			return nil
		}
		sum.Events++
		return w.Write(ev)
	}
	flush := func() error {
		mu.Lock()
		defer mu.Unlock()
		return w.Flush()
	}

	var scan *scanner.Scanner
	scanDone := make(chan error, 1)
	if opts.ScanInterval > 0 {
		scan, err = scanner.New(scanner.Config{
			Interval: opts.ScanInterval, MaxKeyed: opts.ScanMaxKeyed, Budget: opts.ScanBudget, Memory: opts.ScanMemory,
			Exclude: ownMaps(sensor, kw),
			Warn:    func(err error) { fmt.Fprintf(opts.Log, "bpfmon: %v\n", err) },
		})
		if err != nil {
			return sum, fmt.Errorf("%w: starting the content scanner: %w", ErrSetup, err)
		}
		if opts.StatePath != "" {
			// A bad state file is reported and monitoring goes on.
			if err := scan.LoadState(opts.StatePath); err != nil {
				fmt.Fprintf(opts.Log, "bpfmon: %v\n", err)
			}
		}
		fmt.Fprintf(opts.Log, "bpfmon: content scanner: every %s, at most %d changed keys per map and pass\n", opts.ScanInterval, max(opts.ScanMaxKeyed, 1))
	}

	// Ready only now: the inventory at start (who holds what) and the
	// scanner's record of which maps existed are taken, so nothing done
	// after this moment can be mistaken for the state at start.
	if opts.ReadyFile != "" {
		if err := writeReady(opts.ReadyFile); err != nil {
			return sum, fmt.Errorf("%w: writing the ready file: %w", ErrSetup, err)
		}
	}
	if scan != nil {
		go func() { scanDone <- scan.Run(stop, write) }()
	} else {
		scanDone <- nil
	}

	cgroupNames := cgroups.NewResolver()
	emit := func(ev *event.Event) error {
		if scan != nil {
			explain(scan, ev)
		}
		if p := ev.Process; p != nil {
			p.Cgroup = cgroupNames.Path(p.CgroupID)
			p.ContainerID = cgroups.ContainerID(p.Cgroup)
		}
		return write(ev)
	}
	runErr := sensor.Run(stop, emit, flush)
	if err := <-scanDone; err != nil && runErr == nil {
		runErr = fmt.Errorf("content scanner: %w", err)
	}
	if scan != nil {
		last := scan.LastPass
		sum.Scan = &last
	}
	sum.Lost = sensor.Lost()
	if kw != nil {
		sum.Lost += kw.Lost()
	}
	if st, err := sensor.Stats(); err == nil {
		sum.Incomplete = st.Incomplete
	}
	if err := flush(); err != nil && runErr == nil {
		runErr = fmt.Errorf("writing events: %w", err)
	}
	return sum, runErr
}

// ownMaps lists bpfmon's maps, which its programs rewrite all the time.
func ownMaps(sensor *bpfsyscall.Sensor, kw *kernelwrite.Sensor) []uint32 {
	ids := sensor.MapIDs()
	if kw != nil {
		ids = append(ids, kw.MapIDs()...)
	}
	return ids
}

// explain tells the scanner about a write a sensor reported, so the change
// it makes is not reported twice. Calls that failed change nothing.
func explain(scan *scanner.Scanner, ev *event.Event) {
	if ev.Map == nil || (ev.HasResult && ev.Result < 0) {
		return
	}
	switch ev.Type {
	case event.MapCreate:
		if ev.HasResult && ev.Map.ID != 0 {
			scan.Created(*ev.Map, ev.Time)
		}
	case event.MapUpdate, event.MapDelete, event.MapLookupAndDelete,
		event.MapUpdateBatch, event.MapDeleteBatch, event.MapLookupDeleteBatch:
		complete := ev.HasKey && !ev.Truncated && !ev.KeyFault
		scan.Explain(ev.Map.ID, ev.Key, ev.Map.KeySize, complete, ev.Time)
	}
}

func writeReady(path string) error {
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, fmt.Appendf(nil, "%d\n", os.Getpid()), 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

// Filter selects events by kernel identities (pids, map ids) and, at the
// user's explicit request, by map name. Names are chosen by whoever creates
// a map: a filter on them shows what the user asked for, nothing more.
// "lost" events always pass.
type Filter struct {
	PIDs     []uint32
	MapIDs   []uint32
	MapNames []string
	Events   []string
}

// Match reports whether ev passes the filter.
func (f *Filter) Match(ev *event.Event) bool {
	if ev.Type == event.Lost {
		return true
	}
	if len(f.Events) > 0 && !slices.Contains(f.Events, ev.Type) {
		return false
	}
	if len(f.PIDs) > 0 && (ev.Process == nil || !slices.Contains(f.PIDs, ev.Process.PID)) {
		return false
	}
	if len(f.MapIDs) > 0 && (ev.Map == nil || !slices.Contains(f.MapIDs, ev.Map.ID)) {
		return false
	}
	if len(f.MapNames) > 0 && (ev.Map == nil || !slices.Contains(f.MapNames, ev.Map.Name)) {
		return false
	}
	return true
}

// String renders the summary line printed at exit.
func (s Summary) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "bpfmon: %d events, %d lost", s.Events, s.Lost)
	if s.Incomplete > 0 {
		fmt.Fprintf(&b, ", %d without result", s.Incomplete)
	}
	if p := s.Scan; p != nil {
		fmt.Fprintf(&b, "; content scanner's last pass: %d maps (%d kept as hashes), %d elements, %.1f MiB of snapshots, %d maps not scannable",
			p.Maps, p.Hashed, p.Elements, float64(p.SnapshotMemory)/(1<<20), p.Skipped)
	}
	return b.String()
}

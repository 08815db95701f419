// Package watch runs `bpfmon watch`: it starts the sensors, filters their
// events and writes them out until told to stop, then drains everything and
// summarises. It holds the wiring, not the flags (cmd/bpfmon) nor the
// sensors' logic (internal/sensor/...).
package watch

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/bpfmon/bpfmon/internal/alert"
	"github.com/bpfmon/bpfmon/internal/cgroups"
	"github.com/bpfmon/bpfmon/internal/event"
	"github.com/bpfmon/bpfmon/internal/features"
	"github.com/bpfmon/bpfmon/internal/inventory"
	"github.com/bpfmon/bpfmon/internal/output"
	"github.com/bpfmon/bpfmon/internal/policy"
	"github.com/bpfmon/bpfmon/internal/scanner"
	"github.com/bpfmon/bpfmon/internal/sdnotify"
	"github.com/bpfmon/bpfmon/internal/sensor/bpfsyscall"
	"github.com/bpfmon/bpfmon/internal/sensor/kernelwrite"
	"github.com/bpfmon/bpfmon/internal/sensor/lsm"
)

// Options configure a watch.
type Options struct {
	Format       string       // "json" or "text"
	Out          io.Writer    // where events go
	Log          *slog.Logger // diagnostics (stderr); nil: slog.Default
	ReadyFile    string       // written once all probes are attached
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
	// Policy selects the protected maps and sets the alert rules (nil:
	// policy.Default, which protects bpfmon's own maps only).
	Policy *policy.Policy
	// AlertsOnly writes only events that carry an alert (and lost events).
	AlertsOnly bool
	// Enforce refuses non-owners write access to protected maps (BPF
	// LSM). Where the kernel cannot, Run fails with an error wrapping
	// lsm.ErrUnavailable: bpfmon never silently does less than asked.
	Enforce bool
}

// Summary is what a watch did.
type Summary struct {
	Events     uint64             // events written
	Lost       uint64             // calls, kernel-side writes and refusals the kernel could not hand over
	Incomplete uint64             // calls reported without their result
	Alerts     uint64             // events written with an alert
	Scan       *scanner.PassStats // the content scanner's last pass, if it ran
}

// ErrSetup marks failures to start: bad privileges, kernel refusals.
var ErrSetup = errors.New("setup failed")

// Run watches until stop is closed, then drains and returns the summary.
func Run(opts Options, stop <-chan struct{}) (Summary, error) {
	var sum Summary
	log := opts.Log
	if log == nil {
		log = slog.Default()
	}
	w, err := output.New(opts.Format, opts.Out)
	if err != nil {
		return sum, err
	}
	if err := features.CheckTracing(); err != nil {
		return sum, fmt.Errorf("%w: %w", ErrSetup, err)
	}
	pol := opts.Policy
	if pol == nil {
		pol = policy.Default()
	}
	// The content scanner needs every write the sensor sees, to tell
	// reported writes from unreported ones, and the alert rules need every
	// creation, load and handle to know owners: then --event filters in
	// user space only.
	sensorEvents := opts.Filter.Events
	if opts.ScanInterval > 0 || len(pol.Protect) > 0 || opts.AlertsOnly {
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

	log.Info(fmt.Sprintf("watching bpf(2) map calls from every process (%s on raw_syscalls sys_enter/sys_exit, 64-bit and ia32 ABIs)", sensor.Hook),
		"sensor", "syscall", "hook", sensor.Hook, "capture_bytes", sensor.CaptureBytes())
	if sensor.HookFallback != nil {
		log.Warn("using raw tracepoints, slower: the tp_btf programs did not load", "sensor", "syscall", "reason", sensor.HookFallback.Error())
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
			return sum, fmt.Errorf("--kernel-hooks %s: %w", opts.KernelHooks, err)
		case err != nil:
			log.Warn("kernel-side writes unavailable: BPF programs' writes are found by the content scanner, without the program's name", "sensor", "kernel", "reason", err.Error())
		default:
			defer kw.Close()
			sensor.AddExtension(kw)
			log.Info("watching writes by BPF programs, writer named from the kernel stack", "sensor", "kernel", "hooks", kw.Kind(), "functions", kw.Hooked())
		}
	}
	// Enforcement, loaded now, attached once the protected maps and their
	// owners are in its maps.
	var enforcer *lsm.Sensor
	if opts.Enforce {
		if enforcer, err = lsm.New(lsm.Config{Ring: sensor.Ring(), Calib: sensor.Calib()}); err != nil {
			return sum, fmt.Errorf("--enforce: %w (see bpfmon features)", err)
		}
		defer enforcer.Close()
		sensor.AddExtension(enforcer)
	}
	probes := features.Sensors{
		Syscall: func() (string, error, error) { return sensor.Hook, sensor.HookFallback, nil },
		Kernel:  func() features.KernelSensor { return kernel },
	}
	if enforcer != nil {
		probes.Enforce = func() error { return nil } // loaded above; attached below
	}
	log.Info("features (details: bpfmon features)", "features", features.Probe(probes).Summary())
	features.ReleaseBTF() // every program is loaded

	// The alert engine learns the state at start (who holds what) from the
	// map context's first inventory, and later ones from its refreshes.
	cgroupNames := cgroups.NewResolver()
	own := ownMaps(sensor, kw, enforcer)
	acfg := alert.Config{Policy: pol, SelfPID: uint32(os.Getpid()), SelfMaps: own, Cgroups: cgroupNames,
		Warn: func(err error) { log.Error(err.Error(), "part", "alerts") }}
	if enforcer != nil {
		acfg.Enforcer = enforcer
	}
	alerts := alert.New(acfg)
	maps := newMapContext(stop, func(maps []inventory.Map, atStart bool) {
		if atStart {
			alerts.Start(maps)
		} else {
			alerts.Refresh(maps)
		}
	})
	logProtected(log, pol, alerts.Protected())
	if enforcer != nil {
		if err := enforcer.Attach(); err != nil {
			return sum, fmt.Errorf("--enforce: %w", err)
		}
		log.Info("enforcing: non-owners are refused write access to the protected maps and to bpfmon's own", "sensor", "lsm", "hooks", strings.Join(enforcer.Hooks, ","))
	}

	// Three producers (the sensor, the scanner, the alert engine's
	// reports) share the writer.
	var mu sync.Mutex
	write := func(ev *event.Event) error {
		mu.Lock()
		defer mu.Unlock()
		maps.enrich(ev)
		alerts.Evaluate(ev)
		if !opts.Filter.Match(ev) || (opts.AlertsOnly && ev.Alert == nil && ev.Type != event.Lost) {
			return nil
		}
		sum.Events++
		if ev.Alert != nil {
			sum.Alerts++
		}
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
			Exclude: own,
			Warn:    func(err error) { log.Warn(err.Error(), "part", "scanner") },
		})
		if err != nil {
			return sum, fmt.Errorf("%w: starting the content scanner: %w", ErrSetup, err)
		}
		if opts.StatePath != "" {
			// A bad state file is reported and monitoring goes on.
			if err := scan.LoadState(opts.StatePath); err != nil {
				log.Warn(err.Error(), "part", "scanner")
			}
		}
		log.Info("content scanner on", "interval", opts.ScanInterval.String(), "max_keyed", max(opts.ScanMaxKeyed, 1))
	}

	// Ready only now: the inventory at start (who holds what) and the
	// scanner's record of which maps existed are taken, so nothing done
	// after this moment can be mistaken for the state at start.
	if opts.ReadyFile != "" {
		if err := writeReady(opts.ReadyFile); err != nil {
			return sum, fmt.Errorf("%w: writing the ready file: %w", ErrSetup, err)
		}
	}
	if err := sdnotify.Notify(sdnotify.Ready); err != nil {
		log.Warn("telling systemd bpfmon is ready: "+err.Error(), "notify_socket", os.Getenv("NOTIFY_SOCKET"))
	}
	if scan != nil {
		go func() { scanDone <- scan.Run(stop, write) }()
	} else {
		scanDone <- nil
	}

	alertsDone := make(chan error, 1)
	go func() { alertsDone <- reportSuppressed(alerts, stop, write) }()

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
	if err := <-alertsDone; err != nil && runErr == nil {
		runErr = fmt.Errorf("writing alerts: %w", err)
	}
	if scan != nil {
		last := scan.LastPass
		sum.Scan = &last
	}
	sum.Lost = sensor.Lost()
	if kw != nil {
		sum.Lost += kw.Lost()
	}
	if enforcer != nil {
		if _, lost, err := enforcer.Stats(); err == nil {
			sum.Lost += lost
		}
	}
	if st, err := sensor.Stats(); err == nil {
		sum.Incomplete = st.Incomplete
	}
	if err := flush(); err != nil && runErr == nil {
		runErr = fmt.Errorf("writing events: %w", err)
	}
	return sum, runErr
}

// reportSuppressed writes, every second and once more at stop, what the
// alert engine's rate limit held back.
func reportSuppressed(alerts *alert.Engine, stop <-chan struct{}, write func(*event.Event) error) error {
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for {
		select {
		case <-stop:
			return writeAll(alerts.Tick(), write)
		case <-tick.C:
			if err := writeAll(alerts.Tick(), write); err != nil {
				return err
			}
		}
	}
}

func writeAll(evs []*event.Event, write func(*event.Event) error) error {
	for _, ev := range evs {
		if err := write(ev); err != nil {
			return err
		}
	}
	return nil
}

// logProtected says at start what is protected, and by which rules.
func logProtected(log *slog.Logger, pol *policy.Policy, protected []alert.Protected) {
	if len(pol.Protect) == 0 {
		log.Info("alerts: no map selected for protection (--protect, --policy); bpfmon's own maps are guarded")
		return
	}
	var sels []string
	for _, s := range pol.Protect {
		sels = append(sels, s.String())
	}
	log.Info("alerts: protecting the maps the policy selects, now and when they appear", "maps", len(protected), "selectors", strings.Join(sels, " "))
	for _, p := range protected {
		var owners []string
		for _, o := range p.Owners {
			owners = append(owners, o.String()+" ("+o.How+")")
		}
		if len(owners) == 0 {
			owners = []string{"none known"}
		}
		log.Info("alerts: protected map", "id", p.ID, "name", p.Name, "selector", p.Why, "owners", strings.Join(owners, ", "))
	}
}

// ownMaps lists bpfmon's maps, which its programs rewrite all the time.
func ownMaps(sensor *bpfsyscall.Sensor, kw *kernelwrite.Sensor, en *lsm.Sensor) []uint32 {
	ids := sensor.MapIDs()
	if kw != nil {
		ids = append(ids, kw.MapIDs()...)
	}
	if en != nil {
		ids = append(ids, en.MapIDs()...)
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
	}
	if ev.Type.Info().Elements {
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
	Events   []event.Type
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
	fmt.Fprintf(&b, "stopped: %d events, %d lost, %d alerts", s.Events, s.Lost, s.Alerts)
	if s.Incomplete > 0 {
		fmt.Fprintf(&b, ", %d without result", s.Incomplete)
	}
	if p := s.Scan; p != nil {
		fmt.Fprintf(&b, "; content scanner's last pass: %d maps (%d kept as hashes), %d elements, %.1f MiB of snapshots, %d maps not scannable",
			p.Maps, p.Hashed, p.Elements, float64(p.SnapshotMemory)/(1<<20), p.Skipped)
	}
	return b.String()
}

package watch

import (
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"time"

	"github.com/bpfmon/bpfmon/internal/alert"
	"github.com/bpfmon/bpfmon/internal/bpfsys"
	"github.com/bpfmon/bpfmon/internal/cgroups"
	"github.com/bpfmon/bpfmon/internal/event"
	"github.com/bpfmon/bpfmon/internal/features"
	"github.com/bpfmon/bpfmon/internal/inventory"
	"github.com/bpfmon/bpfmon/internal/metrics"
	"github.com/bpfmon/bpfmon/internal/output"
	"github.com/bpfmon/bpfmon/internal/policy"
	"github.com/bpfmon/bpfmon/internal/procexe"
	"github.com/bpfmon/bpfmon/internal/scanner"
	"github.com/bpfmon/bpfmon/internal/sensor"
	"github.com/bpfmon/bpfmon/internal/sensor/bpfsyscall"
	"github.com/bpfmon/bpfmon/internal/sensor/kernelwrite"
	"github.com/bpfmon/bpfmon/internal/sensor/lsm"
	"github.com/bpfmon/bpfmon/internal/sensor/record"
	"github.com/bpfmon/bpfmon/internal/sensors"
)

// stage is how far a watcher has started; each stage needs the ones
// before it (see run).
type stage int

const (
	stageNew     stage = iota
	stageSensors       // 1. the sensors attached
	stageScanner       // 2. the content scanner made, its saved state read
	stageStart         // 3. the state at start recorded, the protected set known
	stageArmed         // 4. enforcement armed
	stageSink          // the sink made, the watch's end wired
	stageReady         // 5. the gap written, ready said
)

var stageNames = [...]string{"new", "sensors", "scanner", "state at start", "armed", "sink", "ready"}

func (s stage) String() string { return stageNames[s] }

// errStageOrder: a stage was asked for out of its order (a bug).
var errStageOrder = errors.New("watch stage out of order")

// watcher is one watch: its parts, each made by one stage, grouped here
// by the stage that makes them. A stage method reads only the parts of
// the stages before it, and enter refuses it unless exactly those ran:
// reordering the start is an error at once, not a nil dereference or a
// window of missed events.
type watcher struct {
	opts    Options
	p       parts
	log     *slog.Logger
	pol     *policy.Policy
	sv      *supervisor
	w       output.Writer
	parent  <-chan struct{} // the caller's stop
	stage   stage
	cleanup []func() // run last first by close

	// 1. startSensors
	ring *record.Ring
	set  *sensor.Set
	own  []uint32 // the sensors' own maps

	// 2. openScanner (scan nil: the scanner is off)
	scan  contentScanner
	prior scanner.Prior
	// late are the parts of stage 3 the scanner asks for once it runs
	// (stage 5): set by recordStart, nil until then.
	late struct {
		maps   *mapContext
		alerts *alert.Engine
	}

	// 3. recordStart
	cgroups *cgroups.Resolver
	alerts  *alert.Engine
	cv      *crossView
	maps    *mapContext

	// openSink
	out  *sink
	stop <-chan struct{} // parent, the output's reader gone, or a fatal failure
}

// enter moves w to stage s, which must follow the last one.
func (w *watcher) enter(s stage) error {
	if w.stage != s-1 {
		return fmt.Errorf("%w: %s after %s, want after %s", errStageOrder, s, w.stage, s-1)
	}
	w.stage = s
	return nil
}

// close undoes what the stages did, last first.
func (w *watcher) close() {
	for i := len(w.cleanup) - 1; i >= 0; i-- {
		w.cleanup[i]()
	}
	w.cleanup = nil
}

// newWatcher checks what every stage needs: the output format and the
// kernel's tracing.
func newWatcher(opts Options, stop <-chan struct{}, p parts) (*watcher, error) {
	// The cross-view check's memory: the scanner (stage 2) reads the
	// hidden maps it finds, through the way it reached them; the map
	// context (stage 3) runs the check.
	w := &watcher{opts: opts, p: p, log: opts.Log, pol: opts.Policy, parent: stop, cv: &crossView{now: time.Now}}
	if w.log == nil {
		w.log = slog.Default()
	}
	var err error
	if w.w, err = output.New(opts.Format, opts.Out); err != nil {
		return nil, err
	}
	if opts.Also != nil {
		w.w = tee{w.w, opts.Also}
	}
	if err := features.CheckTracing(); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrSetup, err)
	}
	if w.pol == nil {
		w.pol = policy.Default()
	}
	w.sv = newSupervisor(w.log, opts.Metrics)
	return w, nil
}

// startSensors (1): the sensors, so that nothing done from then on is
// missed. The content scanner needs every write the sensors see, to tell
// reported writes from unreported ones, and the alert rules need every
// creation, load and handle to know owners: then --event filters in user
// space only.
func (w *watcher) startSensors() error {
	if err := w.enter(stageSensors); err != nil {
		return err
	}
	opts := w.opts
	sensorEvents := opts.Filter.Events
	if opts.ScanInterval > 0 || len(w.pol.Protect) > 0 || opts.AlertsOnly {
		sensorEvents = nil
	}
	ring, err := record.NewRing(opts.RingBytes)
	if err != nil {
		return fmt.Errorf("%w: %w", ErrSetup, err)
	}
	w.ring = ring
	w.cleanup = append(w.cleanup, func() { ring.Close() })
	w.set = w.p.sensors(sensors.Config{
		Syscall: bpfsyscall.Config{Events: sensorEvents, Hook: opts.Hook},
		Kernel:  kernelwrite.Config{Mode: opts.KernelHooks, Writes: opts.KernelWrites},
		Enforce: opts.Enforce,
	})
	if err := w.set.Start(sensor.NewEnv(ring, opts.CaptureBytes, w.log)); err != nil {
		return startError(opts, err)
	}
	w.cleanup = append(w.cleanup, func() { w.set.Close() })
	report := features.NewReport(w.set.Features(), scanner.Features(), opts.Features)
	w.log.Info("features (details: bpfmon features)", "features", report.Summary())
	if opts.Metrics != nil {
		opts.Metrics.Started(ring, w.set.OwnPrograms(), report.Features)
	}
	features.ReleaseBTF() // every program is loaded
	w.own = w.set.OwnMaps()
	return nil
}

// openScanner (2): the content scanner, not running yet, and its saved
// state, which says who owned the protected maps when bpfmon last ran.
func (w *watcher) openScanner() error {
	if err := w.enter(stageScanner); err != nil {
		return err
	}
	opts, log := w.opts, w.log
	if opts.ScanInterval <= 0 {
		return nil
	}
	cfg := scanner.Config{
		Hidden: w.cv.hiddenMapIDs, Reopen: w.cv.reopen,
		Interval: opts.ScanInterval, MaxKeyed: opts.ScanMaxKeyed, Budget: opts.ScanBudget, Memory: opts.ScanMemory,
		Exclude: w.own,
		Warn:    func(err error) { log.Warn(err.Error(), "part", "scanner") },
		Passed:  w.scanPassed,
		// Saved with each state: nil (keep the saved one) until the
		// engine has the state at start.
		SaveExtra: func() json.RawMessage {
			if w.late.alerts == nil {
				return nil
			}
			b, _ := json.Marshal(w.late.alerts.Trust())
			return b
		},
	}
	// A map only bpf(2) can change needs reading only after a reported
	// write, if the sensor that reports them runs. The scanner asks once
	// it runs (stage 5), when the map context is made (stage 3).
	if w.set.Started(bpfsyscall.Name) != nil {
		cfg.Quiet = func(id uint32) bool { return w.late.maps.quiet(id) }
		cfg.QuietHost = func() bool { return w.late.maps.quietHost() }
	}
	// Writes the kernel counted are known writes, explained before their
	// summary arrives.
	if kw, ok := w.set.Started(kernelwrite.Name).(*kernelwrite.Sensor); ok {
		cfg.Counted = kw.CountedSince
	}
	var err error
	if w.scan, err = w.p.scanner(cfg); err != nil {
		return fmt.Errorf("%w: starting the content scanner: %w", ErrSetup, err)
	}
	if opts.StatePath != "" {
		// A bad state file is reported and monitoring goes on.
		if err := w.scan.LoadState(opts.StatePath); err != nil {
			log.Warn(err.Error(), "part", "scanner")
		}
		w.prior = w.scan.Prior()
	}
	return nil
}

// scanPassed: the content scanner completed a pass. People waiting for
// one read the log line; programs and tests are told by opts.Status.
func (w *watcher) scanPassed(n int, st scanner.PassStats) {
	if w.opts.Metrics != nil {
		w.opts.Metrics.ScanPassed(st)
	}
	w.log.Debug("scan pass done", "part", "scanner", "pass", n, "maps", st.Maps, "elements", st.Elements,
		"bytes", st.SnapshotBytes, "events", st.Events, "took", st.Duration.Round(time.Microsecond).String())
	if w.opts.Status != nil {
		w.opts.Status(Status{Kind: StatusScanPass, Pass: n, Stats: st})
	}
}

// recordStart (3): the state at start, and what is protected. The alert
// engine learns who holds what from the map context's first inventory,
// and later changes from its refreshes.
func (w *watcher) recordStart() error {
	if err := w.enter(stageStart); err != nil {
		return err
	}
	opts, log := w.opts, w.log
	w.cgroups = cgroups.NewResolver()
	acfg := alert.Config{Policy: w.pol, SelfPID: uint32(os.Getpid()), SelfMaps: w.own, Cgroups: w.cgroups,
		Warn: func(err error) { log.Error(err.Error(), "part", "alerts") }}
	if _, ino, dev, err := procexe.Of(uint32(os.Getpid())); err == nil {
		acfg.SelfExe = event.Identity{ExeIno: ino, ExeDev: dev}
	}
	acfg.Restored = restoredTrust(log, w.pol, opts.StatePath != "", w.prior)
	acfg.DistrustHolders = w.prior.Untrusted != ""
	if en, ok := w.set.Started(lsm.Name).(alert.Enforcer); ok {
		acfg.Enforcer = en
	}
	// The kernel-side sensor itemizes every write to a protected map or
	// one chosen with --map-id; other maps' known writers are counted.
	if kw, ok := w.set.Started(kernelwrite.Name).(*kernelwrite.Sensor); ok {
		acfg.Itemize = kw.Select
		for _, id := range opts.Filter.MapIDs {
			if err := kw.Select(id); err != nil {
				return fmt.Errorf("%w: %w", ErrSetup, err)
			}
		}
	}
	w.alerts = alert.New(acfg)
	if opts.Metrics != nil {
		opts.Metrics.Rules(enabledRules(w.pol))
	}
	_ = bpfsys.PrepareHelpers() // kallsyms now, not at the first prog_load; failing, prog_load says risky_unknown
	w.maps = newMapContext(w.parent, w.inventory(w.cv.collect(w.p.inventory)), func(maps []inventory.Map, atStart bool) {
		if atStart {
			w.alerts.Start(maps)
		} else {
			w.alerts.Refresh(maps)
		}
		w.alerts.HiddenPrograms(w.cv.takeHiddenProgs())
	})
	w.late.maps, w.late.alerts = w.maps, w.alerts
	logProtected(log, w.pol, w.alerts.Protected())
	return nil
}

// inventory is the map context's inventory: collect, with its failures
// told to the supervisor.
func (w *watcher) inventory(collect func(inventory.Options) ([]inventory.Map, error)) func(inventory.Options) ([]inventory.Map, error) {
	return func(o inventory.Options) ([]inventory.Map, error) {
		if !o.SkipHolders {
			// The state at start: without it, the engine starts from
			// nothing, and the refreshes add what they find.
			maps, err := collect(o)
			if err != nil {
				w.sv.failed(metrics.PartAlerts, fmt.Errorf("reading the map inventory at start: %w", err))
			}
			return maps, err
		}
		err := w.p.failing(metrics.PartAlerts)
		var maps []inventory.Map
		if err == nil {
			maps, err = collect(o)
		}
		if err != nil {
			// A refresh: the alert engine does not learn the maps the
			// policy selects since the last one. Tried again at the
			// next.
			w.sv.failed(metrics.PartAlerts, fmt.Errorf("refreshing the map inventory: %w", err))
		} else {
			w.sv.ok(metrics.PartAlerts)
		}
		return maps, err
	}
}

// arm (4): enforcement, now that its maps hold the protected set.
func (w *watcher) arm() error {
	if err := w.enter(stageArmed); err != nil {
		return err
	}
	if err := w.set.Arm(); err != nil {
		return startError(w.opts, err)
	}
	if w.scan != nil {
		w.log.Info("content scanner on", "interval", w.opts.ScanInterval.String(), "max_keyed", max(w.opts.ScanMaxKeyed, 1))
	}
	return nil
}

// openSink: the sink every event goes through, its failures told, and
// the watch's end: when stopped, when the output's reader went away (a
// closed pipe, whether or not there is anything to write), or when an
// essential part cannot go on.
func (w *watcher) openSink() error {
	if err := w.enter(stageSink); err != nil {
		return err
	}
	opts, log := w.opts, w.log
	out := &sink{cv: w.cv, cgroups: w.cgroups, maps: w.maps, alerts: w.alerts, filter: opts.Filter, alertsOnly: opts.AlertsOnly, w: w.w, metrics: opts.Metrics, pods: opts.Pods}
	out.out.log = func(msg string, args ...any) { log.Error(msg, append(args, "part", "output")...) }
	out.out.closed = make(chan struct{})
	if m := opts.Metrics; m != nil {
		// The output's failures are told by the lost events that follow
		// them, and here: a full disk makes bpfmon blind to whoever
		// reads its output.
		out.out.health = func(err error) {
			if err == nil {
				m.Up(metrics.PartOutput)
				return
			}
			m.PartError(metrics.PartOutput, err)
			m.Down(metrics.PartOutput, "writing events: "+err.Error())
		}
	}
	w.sv.setWrite(out.writeNow)
	if m := opts.Metrics; m != nil {
		// The metrics server's errors (it counts them itself).
		m.OnPartError(func(part string, err error) {
			log.Error(err.Error(), "part", part, "reason", metrics.Reason(err))
			w.sv.event(out.writeNow, part, err.Error())
		})
		w.cleanup = append(w.cleanup, func() { m.OnPartError(nil) })
	}
	stopped := make(chan struct{})
	go func(parent <-chan struct{}) {
		select {
		case <-parent:
		case <-out.out.closed:
		case <-w.sv.fatal:
		}
		close(stopped)
	}(w.parent)
	if f, ok := opts.Out.(*os.File); ok {
		go watchReader(f, out, stopped)
	}
	w.stop = stopped
	if w.scan != nil {
		out.scan = w.scan
	}
	w.out = out
	return nil
}

// ready (5): what the saved state says of the time bpfmon was not
// running (the gap, and who got hold of protected maps meanwhile) is
// written, then the ready file, systemd's READY=1, the metrics' and
// opts.Status: from now on nothing done can be mistaken for the state at
// start.
func (w *watcher) ready() error {
	if err := w.enter(stageReady); err != nil {
		return err
	}
	if gap := gapEvent(w.prior, time.Now()); gap != nil {
		if err := w.out.write(gap); err != nil {
			return fmt.Errorf("writing events: %w", err)
		}
	}
	if err := w.out.writeAll(w.alerts.Tick()); err != nil {
		return fmt.Errorf("writing events: %w", err)
	}
	if err := w.p.ready(w.opts.ReadyFile, w.log); err != nil {
		return fmt.Errorf("%w: writing the ready file: %w", ErrSetup, err)
	}
	if w.opts.Metrics != nil {
		w.opts.Metrics.Ready()
	}
	if w.opts.Status != nil {
		w.opts.Status(Status{Kind: StatusReady, Scanner: w.scan != nil})
	}
	return nil
}

// watch runs the scanner, the alert reports, the reloads and the
// sensors' reader until stopped, drains, and summarises.
func (w *watcher) watch() (Summary, error) {
	var sum Summary
	if w.stage != stageReady {
		return sum, fmt.Errorf("%w: watching at %s", errStageOrder, w.stage)
	}
	stop, out, sv := w.stop, w.out, w.sv
	scanDone := make(chan struct{})
	if w.scan != nil {
		go func() { runScanner(w.scan, w.opts.ScanInterval, stop, out.write, sv, w.p); close(scanDone) }()
	} else {
		close(scanDone)
	}
	alertsDone := make(chan struct{})
	go func() { reportSuppressed(w.alerts, stop, out, sv, w.p); close(alertsDone) }()
	reloadDone := make(chan struct{})
	go func() {
		r := &reloader{opts: w.opts, log: w.log, alerts: w.alerts, inventory: w.p.inventory, out: out, sv: sv}
		r.run(stop)
		close(reloadDone)
	}()

	runErr := runSensors(w.set, stop, out, sv, w.p)
	<-scanDone
	<-alertsDone
	<-reloadDone
	if err := sv.failure(); err != nil && runErr == nil {
		runErr = err
	}
	// The last suppression report comes after the ring is drained and the
	// scanner has stopped: alerts held back while draining count too.
	if err := out.writeAll(w.alerts.Tick()); err != nil && runErr == nil {
		runErr = fmt.Errorf("writing alerts: %w", err)
	}
	if w.scan != nil {
		last := w.scan.Last()
		sum.Scan = &last
		// Everything is in: the state says so, with who owns what.
		if err := w.scan.SaveStopped(); err != nil {
			w.log.Warn(err.Error(), "part", "scanner")
		}
	}
	st := w.set.Stats()
	sum.Lost, sum.Incomplete, sum.Malformed = st.Lost, st.Incomplete, st.Malformed
	if err := out.flush(); err != nil && runErr == nil {
		runErr = fmt.Errorf("writing events: %w", err)
	}
	sum.Events, sum.NotWritten, sum.Alerts = out.counts()
	if out.outputClosed() && runErr == nil {
		runErr = ErrOutputClosed
	}
	return sum, runErr
}

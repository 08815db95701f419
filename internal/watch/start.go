package watch

import (
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/bpfmon/bpfmon/internal/alert"
	"github.com/bpfmon/bpfmon/internal/bpfsys"
	"github.com/bpfmon/bpfmon/internal/cgroups"
	"github.com/bpfmon/bpfmon/internal/event"
	"github.com/bpfmon/bpfmon/internal/features"
	"github.com/bpfmon/bpfmon/internal/inventory"
	"github.com/bpfmon/bpfmon/internal/metrics"
	"github.com/bpfmon/bpfmon/internal/outfile"
	"github.com/bpfmon/bpfmon/internal/output"
	"github.com/bpfmon/bpfmon/internal/policy"
	"github.com/bpfmon/bpfmon/internal/procexe"
	"github.com/bpfmon/bpfmon/internal/scanner"
	"github.com/bpfmon/bpfmon/internal/sdnotify"
	"github.com/bpfmon/bpfmon/internal/sensor"
	"github.com/bpfmon/bpfmon/internal/sensor/bpfsyscall"
	"github.com/bpfmon/bpfmon/internal/sensor/kernelwrite"
	"github.com/bpfmon/bpfmon/internal/sensor/lsm"
	"github.com/bpfmon/bpfmon/internal/sensor/record"
	"github.com/bpfmon/bpfmon/internal/sensors"
)

// contentScanner is what watch uses of the content scanner.
type contentScanner interface {
	explainer
	// Pass reads every map once and reports what changed (the watch
	// runs one every interval, and another after one that failed).
	Pass(stop <-chan struct{}, emit func(*event.Event) error) error
	LoadState(path string) error
	Prior() scanner.Prior
	SaveStopped() error
	Last() scanner.PassStats
	// Unsure has the next pass read every map (records were lost).
	Unsure()
}

// parts are what a watch is assembled from. Production builds them from
// the real packages; the tests of the start order replace them with parts
// that record what was done when.
type parts struct {
	sensors   func(sensors.Config) *sensor.Set
	inventory func(inventory.Options) ([]inventory.Map, error)
	scanner   func(scanner.Config) (contentScanner, error)
	// ready tells whoever waits that bpfmon is ready: the ready file
	// (when path is not empty) and systemd.
	ready func(path string, log *slog.Logger) error
	// fault, when set, is asked before each pass of a supervised part
	// (metrics.Part...) and, when it returns an error, the pass fails
	// with it: how the tests make each part fail.
	fault func(part string) error
}

// fault is p.fault's error for part, nil without one.
func (p parts) failing(part string) error {
	if p.fault == nil {
		return nil
	}
	return p.fault(part)
}

func production() parts {
	return parts{
		sensors: sensors.New,
		inventory: func(o inventory.Options) ([]inventory.Map, error) {
			maps, _, err := inventory.Collect(o)
			return maps, err
		},
		scanner: func(c scanner.Config) (contentScanner, error) { return scanner.New(c) },
		ready:   ready,
	}
}

// run starts everything, in this order, each step needing the ones
// before it:
//  1. the sensors, so that nothing done from then on is missed;
//  2. the content scanner, created but not running, and the state it
//     saved (--state): who owned the protected maps when bpfmon last ran,
//     and whether it stopped cleanly;
//  3. the map context's first inventory, which the alert engine takes as
//     the state at start (who holds what), and the protected set from it
//     with their owners, saved or bootstrapped;
//  4. the enforcement programs, armed only once the protected set and its
//     owners are in their maps (armed before, they would let through what
//     they should refuse);
//  5. the gap since bpfmon last ran and the strangers holding protected
//     maps are written, then the ready file and systemd's READY=1: from
//     now on nothing done can be mistaken for the state at start. The
//     content scanner's first pass then records which maps exist.
//
// Then it reads until stop is closed, drains, and summarises.
func run(opts Options, stop <-chan struct{}, p parts) (Summary, error) {
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
	sv := newSupervisor(log, opts.Metrics)

	// 1. The sensors. The content scanner needs every write the sensors
	// see, to tell reported writes from unreported ones, and the alert
	// rules need every creation, load and handle to know owners: then
	// --event filters in user space only.
	sensorEvents := opts.Filter.Events
	if opts.ScanInterval > 0 || len(pol.Protect) > 0 || opts.AlertsOnly {
		sensorEvents = nil
	}
	ring, err := record.NewRing(opts.RingBytes)
	if err != nil {
		return sum, fmt.Errorf("%w: %w", ErrSetup, err)
	}
	defer ring.Close()
	set := p.sensors(sensors.Config{
		Syscall: bpfsyscall.Config{Events: sensorEvents, Hook: opts.Hook},
		Kernel:  kernelwrite.Config{Mode: opts.KernelHooks, Writes: opts.KernelWrites},
		Enforce: opts.Enforce,
	})
	if err := set.Start(sensor.NewEnv(ring, opts.CaptureBytes, log)); err != nil {
		return sum, startError(opts, err)
	}
	defer set.Close()
	report := features.NewReport(set.Features(), scanner.Features())
	log.Info("features (details: bpfmon features)", "features", report.Summary())
	if opts.Metrics != nil {
		opts.Metrics.Started(ring, set.OwnPrograms(), report.Features)
	}
	features.ReleaseBTF() // every program is loaded

	// 2. The content scanner, not running yet, and its saved state,
	// which says who owned the protected maps when bpfmon last ran.
	own := set.OwnMaps()
	var maps *mapContext     // step 3
	var alerts *alert.Engine // step 3
	var scan contentScanner
	var prior scanner.Prior
	// The cross-view check's memory (step 3); the scanner reads the
	// hidden maps it found, through the way it reached them.
	cv := &crossView{now: time.Now}
	if opts.ScanInterval > 0 {
		cfg := scanner.Config{
			Hidden: cv.hiddenMapIDs, Reopen: cv.reopen,
			Interval: opts.ScanInterval, MaxKeyed: opts.ScanMaxKeyed, Budget: opts.ScanBudget, Memory: opts.ScanMemory,
			Exclude: own,
			Warn:    func(err error) { log.Warn(err.Error(), "part", "scanner") },
			// Tests and people waiting for a pass watch for this line.
			Passed: func(n int, st scanner.PassStats) {
				if opts.Metrics != nil {
					opts.Metrics.ScanPassed(st)
				}
				log.Debug("scan pass done", "part", "scanner", "pass", n, "maps", st.Maps, "elements", st.Elements,
					"bytes", st.SnapshotBytes, "events", st.Events, "took", st.Duration.Round(time.Microsecond).String())
			},
			// Saved with each state: nil (keep the saved one) until the
			// engine has the state at start.
			SaveExtra: func() json.RawMessage {
				if alerts == nil {
					return nil
				}
				b, _ := json.Marshal(alerts.Trust())
				return b
			},
		}
		// A map only bpf(2) can change needs reading only after a
		// reported write, if the sensor that reports them runs. The
		// scanner asks once it runs (step 5), when maps is set.
		if set.Started(bpfsyscall.Name) != nil {
			cfg.Quiet = func(id uint32) bool { return maps.quiet(id) }
			cfg.QuietHost = func() bool { return maps.quietHost() }
		}
		// Writes the kernel counted are known writes, explained before
		// their summary arrives.
		if kw, ok := set.Started(kernelwrite.Name).(*kernelwrite.Sensor); ok {
			cfg.Counted = kw.CountedSince
		}
		scan, err = p.scanner(cfg)
		if err != nil {
			return sum, fmt.Errorf("%w: starting the content scanner: %w", ErrSetup, err)
		}
		if opts.StatePath != "" {
			// A bad state file is reported and monitoring goes on.
			if err := scan.LoadState(opts.StatePath); err != nil {
				log.Warn(err.Error(), "part", "scanner")
			}
			prior = scan.Prior()
		}
	}

	// 3. The state at start, and what is protected. The alert engine
	// learns who holds what from the map context's first inventory, and
	// later changes from its refreshes.
	cgroupNames := cgroups.NewResolver()
	acfg := alert.Config{Policy: pol, SelfPID: uint32(os.Getpid()), SelfMaps: own, Cgroups: cgroupNames,
		Warn: func(err error) { log.Error(err.Error(), "part", "alerts") }}
	if _, ino, dev, err := procexe.Of(uint32(os.Getpid())); err == nil {
		acfg.SelfExe = event.Identity{ExeIno: ino, ExeDev: dev}
	}
	acfg.Restored = restoredTrust(log, pol, opts.StatePath != "", prior)
	acfg.DistrustHolders = prior.Untrusted != ""
	if en, ok := set.Started(lsm.Name).(alert.Enforcer); ok {
		acfg.Enforcer = en
	}
	// The kernel-side sensor itemizes every write to a protected map or
	// one chosen with --map-id; other maps' known writers are counted.
	if kw, ok := set.Started(kernelwrite.Name).(*kernelwrite.Sensor); ok {
		acfg.Itemize = kw.Select
		for _, id := range opts.Filter.MapIDs {
			if err := kw.Select(id); err != nil {
				return sum, fmt.Errorf("%w: %w", ErrSetup, err)
			}
		}
	}
	alerts = alert.New(acfg)
	if opts.Metrics != nil {
		opts.Metrics.Rules(enabledRules(pol))
	}
	_ = bpfsys.PrepareHelpers() // kallsyms now, not at the first prog_load; failing, prog_load says risky_unknown
	collect := cv.collect(p.inventory)
	inv := func(o inventory.Options) ([]inventory.Map, error) {
		if !o.SkipHolders {
			// The state at start: without it, the engine starts from
			// nothing, and the refreshes add what they find.
			maps, err := collect(o)
			if err != nil {
				sv.failed(metrics.PartAlerts, fmt.Errorf("reading the map inventory at start: %w", err))
			}
			return maps, err
		}
		err := p.failing(metrics.PartAlerts)
		var maps []inventory.Map
		if err == nil {
			maps, err = collect(o)
		}
		if err != nil {
			// A refresh: the alert engine does not learn the maps the
			// policy selects since the last one. Tried again at the
			// next.
			sv.failed(metrics.PartAlerts, fmt.Errorf("refreshing the map inventory: %w", err))
		} else {
			sv.ok(metrics.PartAlerts)
		}
		return maps, err
	}
	maps = newMapContext(stop, inv, func(maps []inventory.Map, atStart bool) {
		if atStart {
			alerts.Start(maps)
		} else {
			alerts.Refresh(maps)
		}
		alerts.HiddenPrograms(cv.takeHiddenProgs())
	})
	logProtected(log, pol, alerts.Protected())

	// 4. Enforcement, now that its maps hold the protected set.
	if err := set.Arm(); err != nil {
		return sum, startError(opts, err)
	}
	if scan != nil {
		log.Info("content scanner on", "interval", opts.ScanInterval.String(), "max_keyed", max(opts.ScanMaxKeyed, 1))
	}

	out := &sink{cv: cv, cgroups: cgroupNames, maps: maps, alerts: alerts, filter: opts.Filter, alertsOnly: opts.AlertsOnly, w: w, metrics: opts.Metrics}
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
	sv.setWrite(out.writeNow)
	if m := opts.Metrics; m != nil {
		// The metrics server's errors (it counts them itself).
		m.OnPartError(func(part string, err error) {
			log.Error(err.Error(), "part", part, "reason", metrics.Reason(err))
			sv.event(out.writeNow, part, err.Error())
		})
		defer m.OnPartError(nil)
	}
	// The watch ends when stopped, when the output's reader went away
	// (a closed pipe, whether or not there is anything to write), or
	// when an essential part cannot go on.
	stopped := make(chan struct{})
	go func(parent <-chan struct{}) {
		select {
		case <-parent:
		case <-out.out.closed:
		case <-sv.fatal:
		}
		close(stopped)
	}(stop)
	if f, ok := opts.Out.(*os.File); ok {
		go watchReader(f, out, stopped)
	}
	stop = stopped
	if scan != nil {
		out.scan = scan
	}

	// What the saved state says of the time bpfmon was not running: the
	// gap, and who got hold of protected maps meanwhile.
	if gap := gapEvent(prior, time.Now()); gap != nil {
		if err := out.write(gap); err != nil {
			return sum, fmt.Errorf("writing events: %w", err)
		}
	}
	if err := out.writeAll(alerts.Tick()); err != nil {
		return sum, fmt.Errorf("writing events: %w", err)
	}

	// 5. Ready.
	if err := p.ready(opts.ReadyFile, log); err != nil {
		return sum, fmt.Errorf("%w: writing the ready file: %w", ErrSetup, err)
	}
	if opts.Metrics != nil {
		opts.Metrics.Ready()
	}

	scanDone := make(chan struct{})
	if scan != nil {
		go func() { runScanner(scan, opts.ScanInterval, stop, out.write, sv, p); close(scanDone) }()
	} else {
		close(scanDone)
	}
	alertsDone := make(chan struct{})
	go func() { reportSuppressed(alerts, stop, out, sv, p); close(alertsDone) }()
	reloadDone := make(chan struct{})
	go func() {
		r := &reloader{opts: opts, log: log, alerts: alerts, inventory: p.inventory, out: out, sv: sv}
		r.run(stop)
		close(reloadDone)
	}()

	runErr := runSensors(set, stop, out, sv, p)
	<-scanDone
	<-alertsDone
	<-reloadDone
	if err := sv.failure(); err != nil && runErr == nil {
		runErr = err
	}
	// The last suppression report comes after the ring is drained and the
	// scanner has stopped: alerts held back while draining count too.
	if err := out.writeAll(alerts.Tick()); err != nil && runErr == nil {
		runErr = fmt.Errorf("writing alerts: %w", err)
	}
	if scan != nil {
		last := scan.Last()
		sum.Scan = &last
		// Everything is in: the state says so, with who owns what.
		if err := scan.SaveStopped(); err != nil {
			log.Warn(err.Error(), "part", "scanner")
		}
	}
	st := set.Stats()
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

// ErrOutputClosed ends a watch whose output's reader went away: a pipe
// or socket closed at the other end (bpfmon watch | head).
var ErrOutputClosed = errors.New("the output was closed by its reader")

// watchReader polls f, when it is a pipe or a socket, for its reader going
// away: a write would fail with EPIPE, but with no event to write nothing
// would tell. Checked every readerPoll until stopped.
func watchReader(f *os.File, s *sink, stopped <-chan struct{}) {
	var st unix.Stat_t
	if err := unix.Fstat(int(f.Fd()), &st); err != nil {
		return
	}
	if st.Mode&unix.S_IFMT != unix.S_IFIFO && st.Mode&unix.S_IFMT != unix.S_IFSOCK {
		return
	}
	t := time.NewTicker(readerPoll)
	defer t.Stop()
	for {
		select {
		case <-stopped:
			return
		case <-t.C:
		}
		fds := []unix.PollFd{{Fd: int32(f.Fd()), Events: unix.POLLOUT}}
		if n, err := unix.Poll(fds, 0); err == nil && n > 0 && fds[0].Revents&(unix.POLLERR|unix.POLLHUP) != 0 {
			s.mu.Lock()
			s.closeOutput()
			s.mu.Unlock()
			return
		}
	}
}

// readerPoll is how often watchReader looks: bpfmon stops within about
// this long after the reader of its output went away.
const readerPoll = 250 * time.Millisecond

// startError says which part of the command line a sensor that could not
// start was asked for by.
func startError(opts Options, err error) error {
	var se *sensor.StartError
	if !errors.As(err, &se) {
		return fmt.Errorf("%w: %w", ErrSetup, err)
	}
	switch se.Sensor {
	case bpfsyscall.Name:
		if opts.Hook != bpfsyscall.HookAuto {
			return fmt.Errorf("--hook %s: %w", opts.Hook, se.Err)
		}
	case kernelwrite.Name:
		return fmt.Errorf("--kernel-hooks %s: %w", opts.KernelHooks, se.Err)
	case lsm.Name:
		return fmt.Errorf("--enforce: %w (see bpfmon features)", se.Err)
	}
	return fmt.Errorf("%w: %w", ErrSetup, se.Err)
}

// ready writes the ready file, if asked, and tells systemd.
func ready(path string, log *slog.Logger) error {
	if path != "" {
		if err := writeReady(path); err != nil {
			return err
		}
	}
	if err := sdnotify.Notify(sdnotify.Ready); err != nil {
		log.Warn("telling systemd bpfmon is ready: "+err.Error(), "notify_socket", os.Getenv("NOTIFY_SOCKET"))
	}
	log.Info("ready: every sensor attached, the state at start recorded")
	return nil
}

// writeReady writes bpfmon's pid to a new temporary file (mode 0600,
// never through a link: whatever is at its name, a leftover or a link
// planted there, is removed first, and a file created meanwhile is an
// error, not followed) and renames it to path.
func writeReady(path string) error {
	tmp := path + ".tmp"
	if err := os.Remove(tmp); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	f, err := outfile.CreateNew(tmp)
	if err != nil {
		return err
	}
	_, err = fmt.Fprintf(f, "%d\n", os.Getpid())
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		os.Remove(tmp)
	}
	return err
}

// reportSuppressed writes, every second until stop, what the alert
// engine's rate limit held back. The last report is the caller's, once
// every event is in. A report that fails is said, and the next one
// tried a second later.
func reportSuppressed(alerts *alert.Engine, stop <-chan struct{}, out *sink, sv *supervisor, p parts) {
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for {
		select {
		case <-stop:
			return
		case <-tick.C:
			err := p.failing(metrics.PartAlerts)
			if err == nil {
				err = out.writeAll(alerts.Tick())
			}
			if err != nil {
				sv.failed(metrics.PartAlerts, fmt.Errorf("reporting alerts: %w", err))
			} else {
				sv.ok(metrics.PartAlerts)
			}
		}
	}
}

// runScanner makes a content scanner pass every interval until stop. A
// pass that fails (the descriptors of the process exhausted, a map's
// read refused) is said, and the next pass comes at its time: the
// scanner never stops before the watch does.
func runScanner(scan contentScanner, interval time.Duration, stop <-chan struct{}, emit func(*event.Event) error, sv *supervisor, p parts) {
	for {
		start := time.Now()
		err := p.failing(metrics.PartScanner)
		if err == nil {
			err = scan.Pass(stop, emit)
		}
		if err != nil {
			sv.failed(metrics.PartScanner, fmt.Errorf("content scanner pass: %w", err))
		} else {
			sv.ok(metrics.PartScanner)
		}
		select {
		case <-stop:
			return
		case <-time.After(time.Until(start.Add(interval))):
		}
	}
}

// Reading the ring buffer that every sensor writes into: an error that
// ends the reader (a record that cannot be handed on, the reader's own
// failure) is said and reading starts again; one that recurs
// ringFailMax times within ringFailWindow ends the watch (exit 1), as
// bpfmon would otherwise be blind with nothing to show it.
const (
	ringFailMax    = 5
	ringFailWindow = time.Minute
	ringUpAfter    = time.Second
)

func runSensors(set *sensor.Set, stop <-chan struct{}, out *sink, sv *supervisor, p parts) error {
	emit := out.fromSensor
	if p.fault != nil {
		emit = func(ev *event.Event) error {
			if err := p.failing(metrics.PartSensors); err != nil {
				return err
			}
			return out.fromSensor(ev)
		}
	}
	var fails []time.Time
	idle := func() error {
		// Up again once reading has worked for a while since the last
		// failure: a reader that fails at every record is never up.
		if len(fails) > 0 && time.Since(fails[len(fails)-1]) > ringUpAfter && sv.isDown(metrics.PartSensors) {
			sv.ok(metrics.PartSensors)
		}
		return out.flush()
	}
	for {
		err := set.Run(stop, emit, idle)
		if err == nil {
			return nil
		}
		select {
		case <-stop:
			return err // while draining: nothing left to read again
		default:
		}
		now := time.Now()
		fails = append(fails, now)
		for len(fails) > 0 && now.Sub(fails[0]) > ringFailWindow {
			fails = fails[1:]
		}
		err = fmt.Errorf("reading the sensors' ring buffer: %w", err)
		if len(fails) >= ringFailMax {
			sv.stop(metrics.PartSensors, fmt.Errorf("%w (%d times within %v)", err, len(fails), ringFailWindow))
			// Detach and drain what can still be read.
			set.Run(stop, out.fromSensor, out.flush)
			return nil
		}
		sv.failed(metrics.PartSensors, err)
	}
}

// enabledRules are the policy's enabled alert rules with their
// severities, for the metrics.
func enabledRules(pol *policy.Policy) []metrics.Rule {
	var rules []metrics.Rule
	for _, r := range policy.Rules {
		if x, ok := pol.Enabled(r.Name); ok {
			rules = append(rules, metrics.Rule{Name: r.Name, Severity: x.Severity})
		}
	}
	return rules
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

// restoredTrust is the trust the alert engine starts from, said in the
// log: the owners saved when bpfmon last ran on this boot, or nil (a first
// start, or a reboot since), when holders at start are trusted.
func restoredTrust(log *slog.Logger, pol *policy.Policy, saved bool, prior scanner.Prior) *alert.Trust {
	holders := "holders at start own the protected maps they hold"
	if len(pol.Owners) > 0 {
		holders = "holders at start own nothing: the policy names the owners"
	}
	switch {
	case !saved:
		if len(pol.Protect) > 0 {
			log.Info("alerts: no --state, so every start is a first start: "+holders, "part", "alerts")
		}
		return nil
	case prior.Untrusted != "":
		log.Warn("alerts: the state file cannot be trusted, so this is a start after a gap, not a first start: no holder at start owns a protected map (a writable one is a holder-while-down); owners named by the policy do", "part", "alerts")
		return nil
	case !prior.Found:
		log.Info("alerts: first start (no state file): "+holders, "part", "alerts")
		return nil
	case prior.Rebooted:
		log.Info("alerts: the host rebooted since the state was saved, every map is new: "+holders, "part", "alerts")
		return nil
	case prior.Extra == nil:
		log.Warn("alerts: the state file holds no owners (saved by an older bpfmon): "+holders, "part", "alerts")
		return nil
	}
	var t alert.Trust
	if err := json.Unmarshal(prior.Extra, &t); err != nil {
		log.Warn("alerts: the owners in the state file are damaged ("+err.Error()+"): "+holders, "part", "alerts")
		return nil
	}
	log.Info("alerts: restarted: the protected maps keep the owners saved when bpfmon last ran; a holder at start that is not one is a stranger (holder-while-down); maps protected for the first time: "+holders,
		"part", "alerts", "maps", len(t.Maps), "last_alive", prior.Alive.UTC().Format(time.RFC3339))
	return &t
}

// gapEvent is the monitor_gap event at a start with a state file that
// says how bpfmon last stopped; nil without one.
func gapEvent(prior scanner.Prior, now time.Time) *event.Event {
	if prior.Untrusted != "" {
		return &event.Event{Time: now, Type: event.MonitorGap, Source: event.SourceState, Reason: prior.Untrusted,
			Extra: &event.Extra{StateUntrusted: true}}
	}
	if !prior.Found || !prior.StopKnown || prior.Alive.IsZero() {
		return nil
	}
	reason := "bpfmon stopped cleanly"
	if !prior.Clean {
		reason = "bpfmon did not stop cleanly: killed, crashed, or the power was lost"
	}
	if prior.Rebooted {
		reason += "; the host rebooted since"
	}
	return &event.Event{Time: now, Type: event.MonitorGap, Source: event.SourceState, Reason: reason,
		Extra: &event.Extra{LastAlive: prior.Alive, CleanStop: prior.Clean}}
}

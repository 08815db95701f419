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
	"github.com/bpfmon/bpfmon/internal/event"
	"github.com/bpfmon/bpfmon/internal/inventory"
	"github.com/bpfmon/bpfmon/internal/metrics"
	"github.com/bpfmon/bpfmon/internal/outfile"
	"github.com/bpfmon/bpfmon/internal/policy"
	"github.com/bpfmon/bpfmon/internal/scanner"
	"github.com/bpfmon/bpfmon/internal/sdnotify"
	"github.com/bpfmon/bpfmon/internal/sensor"
	"github.com/bpfmon/bpfmon/internal/sensor/bpfsyscall"
	"github.com/bpfmon/bpfmon/internal/sensor/kernelwrite"
	"github.com/bpfmon/bpfmon/internal/sensor/lsm"
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

// run starts everything, one watcher stage each (stages.go), in this
// order, each needing the ones before it:
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
	w, err := newWatcher(opts, stop, p)
	if err != nil {
		return Summary{}, err
	}
	defer w.close()
	for _, start := range []func() error{w.startSensors, w.openScanner, w.recordStart, w.arm, w.openSink, w.ready} {
		if err := start(); err != nil {
			return Summary{}, err
		}
	}
	return w.watch()
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

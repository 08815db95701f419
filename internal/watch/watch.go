// Package watch runs `bpfmon watch`: it starts the sensors, the alert
// engine and the content scanner in the order their invariants need
// (start.go; one watcher stage each, stages.go), passes every event
// through one sink (sink.go) and, when told to stop, drains everything
// and summarises. It holds the wiring, not the flags (cmd/bpfmon) nor the
// sensors' logic (internal/sensor/...).
package watch

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"strings"
	"time"

	"github.com/bpfmon/bpfmon/internal/event"
	"github.com/bpfmon/bpfmon/internal/features"
	"github.com/bpfmon/bpfmon/internal/metrics"
	"github.com/bpfmon/bpfmon/internal/output"
	"github.com/bpfmon/bpfmon/internal/policy"
	"github.com/bpfmon/bpfmon/internal/scanner"
	"github.com/bpfmon/bpfmon/internal/sensor/bpfsyscall"
	"github.com/bpfmon/bpfmon/internal/sensor/kernelwrite"
)

// Options configure a watch. The command line parses and checks them.
type Options struct {
	Format string    // "json" or "text"
	Out    io.Writer // where events go
	// Also, when not nil, is given every event written to Out too (the
	// syslog output): it never fails the watch, and counts its own
	// losses.
	Also output.Writer
	// Pods, when not nil, names the pod of each event's container
	// (process.pod); it must answer at once (internal/pods).
	Pods interface {
		Pod(containerID, cgroup string) *event.Pod
	}
	// Features are more lines for the features report (pod_metadata).
	Features     []features.Feature
	Log          *slog.Logger // diagnostics (stderr); nil: slog.Default
	ReadyFile    string       // written once all probes are attached
	CaptureBytes int
	RingBytes    int
	Hook         bpfsyscall.Hook
	// KernelHooks chooses the kernel-side sensor's hooks: auto (fexit
	// where the kernel allows, else kprobes; none available is not an
	// error), fexit or kprobe (required), off.
	KernelHooks kernelwrite.Mode
	// KernelWrites chooses which writes by programs are itemized
	// (--kernel-writes): selective (the default) or all.
	KernelWrites kernelwrite.Writes
	Filter       Filter
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
	// Metrics, when not nil, counts what the watch does (--metrics-addr);
	// it is marked ready when the ready file is written.
	Metrics *metrics.Metrics
	// Reload, when not nil, asks for the policy to be loaded again from
	// PolicyPath (SIGHUP), with Protect (--protect) added: see reload.go.
	Reload     <-chan struct{}
	PolicyPath string
	Protect    []policy.Selector
	// Status, when not nil, is told of the watch's progress: that it is
	// ready, and each content scanner pass. It is how a program or a
	// test waits for them (the log says them to people). It is called
	// from the watch's goroutines, one call at a time, and must return
	// soon: the watch waits for it.
	Status func(Status)
}

// StatusKind says what a Status reports.
type StatusKind int

const (
	// StatusReady: every sensor is attached and the state at start is
	// recorded (the ready file is written, systemd told); told once.
	StatusReady StatusKind = iota + 1
	// StatusScanPass: the content scanner completed a pass. The first is
	// its baseline: a change made before it is not reported as one.
	StatusScanPass
)

// Status is a step of a watch's progress (Options.Status).
type Status struct {
	Kind StatusKind
	// Scanner, with StatusReady: the content scanner runs, and its
	// passes are told.
	Scanner bool
	// Pass and Stats, with StatusScanPass: the pass's number (from 1)
	// and what it did.
	Pass  int
	Stats scanner.PassStats
}

// Summary is what a watch did.
type Summary struct {
	Events     uint64             // events written whole to the output
	NotWritten uint64             // events the output could not take (full disk, closed pipe)
	Lost       uint64             // calls, kernel-side writes and refusals the kernel could not hand over
	Incomplete uint64             // calls reported without their result
	Malformed  uint64             // ring records skipped as undecodable (a sensor bug)
	Alerts     uint64             // events written with an alert
	Scan       *scanner.PassStats // the content scanner's last pass, if it ran
}

// ErrSetup marks failures to start: bad privileges, kernel refusals.
var ErrSetup = errors.New("setup failed")

// Run watches until stop is closed, then drains and returns the summary.
func Run(opts Options, stop <-chan struct{}) (Summary, error) {
	return run(opts, stop, production())
}

// Filter selects events by kernel identities (pids, map ids) and, at the
// user's explicit request, by map name. Names are chosen by whoever creates
// a map: a filter on them shows what the user asked for, nothing more.
// "lost" events and bpfmon's own (part_error, policy_reloaded) always pass.
type Filter struct {
	PIDs     []uint32
	MapIDs   []uint32
	MapNames []string
	Events   []event.Type
}

// Match reports whether ev passes the filter.
func (f *Filter) Match(ev *event.Event) bool {
	if ev.Type == event.Lost || ev.Source == event.SourceSelf {
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
	if s.Malformed > 0 {
		fmt.Fprintf(&b, ", %d malformed records skipped", s.Malformed)
	}
	if s.NotWritten > 0 {
		fmt.Fprintf(&b, ", %d events not written (output)", s.NotWritten)
	}
	if s.Incomplete > 0 {
		fmt.Fprintf(&b, ", %d without result", s.Incomplete)
	}
	if p := s.Scan; p != nil {
		fmt.Fprintf(&b, "; content scanner's last pass: %d maps (%d kept as hashes), %d elements, %.1f MiB of snapshots, %d maps not scannable",
			p.Maps, p.Hashed, p.Elements, float64(p.SnapshotMemory)/(1<<20), p.Skipped)
		if p.Coarse > 0 || p.NoMemory > 0 {
			fmt.Fprintf(&b, ", %d compared coarsely and %d not scanned for lack of --scan-memory", p.Coarse, p.NoMemory)
		}
		if p.Unread > 0 {
			fmt.Fprintf(&b, ", %d quiet maps not read again (no reported write)", p.Unread)
		}
	}
	return b.String()
}

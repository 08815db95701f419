package watch

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/bpfmon/bpfmon/internal/event"
	"github.com/bpfmon/bpfmon/internal/features"
	"github.com/bpfmon/bpfmon/internal/inventory"
	"github.com/bpfmon/bpfmon/internal/metrics"
	"github.com/bpfmon/bpfmon/internal/output"
	"github.com/bpfmon/bpfmon/internal/policy"
	"github.com/bpfmon/bpfmon/internal/scanner"
	"github.com/bpfmon/bpfmon/internal/sensor"
	"github.com/bpfmon/bpfmon/internal/sensors"
	"github.com/bpfmon/bpfmon/internal/testutil"
)

// steps is the order in which a watch did things, as its fake parts saw
// them.
type steps struct {
	mu  sync.Mutex
	log []string
}

func (s *steps) add(format string, args ...any) {
	s.mu.Lock()
	s.log = append(s.log, fmt.Sprintf(format, args...))
	s.mu.Unlock()
}

func (s *steps) all() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.log)
}

// first is the index of the first step starting with prefix, -1 if none.
func (s *steps) first(prefix string) int {
	return slices.IndexFunc(s.all(), func(l string) bool { return strings.HasPrefix(l, prefix) })
}

// fakeSensor stands for a sensor: it loads nothing.
type fakeSensor struct {
	name  string
	steps *steps
}

func (f *fakeSensor) Name() string { return f.name }
func (f *fakeSensor) Start(*sensor.Env) error {
	f.steps.add("start %s", f.name)
	return nil
}
func (f *fakeSensor) MapIDs() []uint32                  { return nil }
func (f *fakeSensor) ProgramIDs() []uint32              { return nil }
func (f *fakeSensor) Stats() sensor.Stats               { return sensor.Stats{} }
func (f *fakeSensor) Features(error) []features.Feature { return nil }
func (f *fakeSensor) Detach()                           {}
func (f *fakeSensor) Close() error                      { return nil }
func (f *fakeSensor) Protect(id uint32) error           { f.steps.add("protect %d", id); return nil }
func (f *fakeSensor) Arm() error                        { f.steps.add("arm %s", f.name); return nil }
func (f *fakeSensor) AddOwner(id uint32, _ event.Identity) error {
	f.steps.add("owner %d", id)
	return nil
}

// fakeScanner stands for the content scanner, created (and its state
// read) before the state at start is taken.
type fakeScanner struct{}

func (fakeScanner) Explain(uint32, []byte, uint32, bool, time.Time)      {}
func (fakeScanner) Created(event.Map, time.Time)                         {}
func (fakeScanner) LoadState(string) error                               { return nil }
func (fakeScanner) Prior() scanner.Prior                                 { return scanner.Prior{} }
func (fakeScanner) SaveStopped() error                                   { return nil }
func (fakeScanner) Unsure()                                              {}
func (fakeScanner) Last() scanner.PassStats                              { return scanner.PassStats{} }
func (fakeScanner) Pass(<-chan struct{}, func(*event.Event) error) error { return nil }

// TestStartOrder checks the invariants of run's start order, with parts
// that record what was done when:
//   - the state at start (the first inventory, holders included) and the
//     scanner's record of which maps exist are taken before bpfmon says
//     it is ready, so nothing done after that is mistaken for them;
//   - the enforcement programs are armed only once the protected maps and
//     their owners are in their maps, and before bpfmon is ready.
func TestStartOrder(t *testing.T) {
	testutil.RequireRoot(t) // the ring buffer and the features' probes
	st := &steps{}
	ready := make(chan struct{})
	mets := metrics.New("test")
	// The holder at start: another process (bpfmon's own are never
	// owners).
	holder := exec.Command("sleep", "60")
	testutil.StartExec(t, holder)
	defer holder.Process.Kill()
	p := parts{
		sensors: func(c sensors.Config) *sensor.Set {
			if !c.Enforce {
				t.Error("enforcement not asked of the sensors")
			}
			return sensor.NewSet(
				sensor.Entry{Sensor: &fakeSensor{name: "syscall", steps: st}, Need: sensor.Required},
				sensor.Entry{Sensor: &fakeSensor{name: "lsm", steps: st}, Need: sensor.Required},
			)
		},
		inventory: func(o inventory.Options) ([]inventory.Map, error) {
			st.add("inventory holders=%v", !o.SkipHolders)
			return []inventory.Map{{ID: 42, Name: "guarded", Holders: []inventory.Holder{{PID: uint32(holder.Process.Pid)}}}}, nil
		},
		scanner: func(scanner.Config) (contentScanner, error) {
			st.add("scanner")
			return fakeScanner{}, nil
		},
		ready: func(string, *slog.Logger) error {
			st.add("ready")
			if mets.IsReady() {
				t.Error("the metrics said ready before the ready file was written")
			}
			close(ready)
			return nil
		},
	}
	sel, err := policy.ParseSelector("id:42")
	if err != nil {
		t.Fatal(err)
	}
	pol := policy.Default()
	pol.AddProtect(sel)
	stop := make(chan struct{})
	done := make(chan error, 1)
	go func() {
		_, err := run(Options{Format: "json", Out: io.Discard, Log: slog.New(slog.NewTextHandler(io.Discard, nil)),
			ScanInterval: time.Hour, Policy: pol, Enforce: true, Metrics: mets,
			Status: func(s Status) { st.add("status %d scanner=%v", s.Kind, s.Scanner) }}, stop, p)
		done <- err
	}()
	select {
	case <-ready:
	case err := <-done:
		t.Fatalf("run: %v", err)
	case <-time.After(testutil.Timeout(10 * time.Second)):
		t.Fatal("never ready")
	}
	// /healthz answers 200 from the moment the ready file is written.
	for deadline := time.Now().Add(testutil.Timeout(10 * time.Second)); !mets.IsReady(); time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the metrics never said ready")
		}
	}
	close(stop)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	t.Logf("steps: %q", st.all())

	at := func(step string) int {
		i := st.first(step)
		if i < 0 {
			t.Errorf("no step %q in %q", step, st.all())
		}
		return i
	}
	started, inv, protect, owner, arm, scan, rdy := at("start lsm"), at("inventory holders=true"), at("protect 42"), at("owner 42"), at("arm lsm"), at("scanner"), at("ready")
	if !(started < inv && inv < protect && protect < arm && owner < arm) {
		t.Errorf("the LSM programs were armed before the protected set was filled: %q", st.all())
	}
	if scan > inv {
		t.Errorf("the state at start was taken before the saved state (who owned what) was read: %q", st.all())
	}
	if !(inv < rdy && scan < rdy && arm < rdy) {
		t.Errorf("ready before the state at start was recorded: %q", st.all())
	}
	// Readiness is told to Options.Status once, after the ready file.
	if told := at(fmt.Sprintf("status %d scanner=true", StatusReady)); told < rdy {
		t.Errorf("Status told ready before the ready file was written: %q", st.all())
	}
}

// TestGapEventGolden: the monitor_gap event as gapEvent makes it from
// what the state file said, in both formats; none without a known stop.
func TestGapEventGolden(t *testing.T) {
	now := time.Date(2026, 12, 3, 10, 0, 0, 5, time.UTC)
	prior := scanner.Prior{Found: true, StopKnown: true, Alive: now.Add(-90 * time.Second)}
	for format, want := range map[string]string{
		"json": `{"time":"2026-12-03T10:00:00.000000005Z","event":"monitor_gap","source":"state","last_alive":"2026-12-03T09:58:30.000000005Z","clean_stop":false,"reason":"bpfmon did not stop cleanly: killed, crashed, or the power was lost"}`,
		"text": now.Local().Format("15:04:05.000000000") + ` monitor_gap last_alive=2026-12-03T09:58:30.000000005Z unclean_stop reason="bpfmon did not stop cleanly: killed, crashed, or the power was lost"`,
	} {
		var b strings.Builder
		w, err := output.New(format, &b)
		if err != nil {
			t.Fatal(err)
		}
		if err := w.Write(gapEvent(prior, now)); err != nil {
			t.Fatal(err)
		}
		w.Flush()
		if got := strings.TrimSuffix(b.String(), "\n"); got != want {
			t.Errorf("%s:\n got %s\nwant %s", format, got, want)
		}
		if format == "json" {
			if err := output.CheckDocumented([]byte(want)); err != nil {
				t.Error(err)
			}
		}
	}
	if ev := gapEvent(scanner.Prior{Found: true, Alive: now}, now); ev != nil {
		t.Errorf("a state file that does not say how bpfmon stopped made %+v", ev)
	}
	if ev := gapEvent(scanner.Prior{Found: true, StopKnown: true, Clean: true, Rebooted: true, Alive: now}, now); ev == nil || !ev.Extra.CleanStop || !strings.Contains(ev.Reason, "rebooted") {
		t.Errorf("a clean stop before a reboot: %+v", ev)
	}
}

// TestStagesEnforceOrder: a watcher's stages refuse to run out of order
// (no kernel needed: each refuses before touching a part), so a start
// reordered by mistake fails at once instead of reading a part that is
// not made yet.
func TestStagesEnforceOrder(t *testing.T) {
	w := &watcher{}
	stages := []struct {
		name string
		run  func() error
	}{
		{"startSensors", w.startSensors}, {"openScanner", w.openScanner}, {"recordStart", w.recordStart},
		{"arm", w.arm}, {"openSink", w.openSink}, {"ready", w.ready},
	}
	for i, s := range stages {
		for at := stageNew; at <= stageReady; at++ {
			if at == stage(i) {
				continue // its turn: it would start real parts
			}
			w.stage = at
			if err := s.run(); !errors.Is(err, errStageOrder) {
				t.Errorf("%s after stage %s: %v, want %v", s.name, at, err, errStageOrder)
			}
			if w.stage != at {
				t.Errorf("%s refused after stage %s moved the watcher to %s", s.name, at, w.stage)
			}
		}
	}
	for at := stageNew; at < stageReady; at++ {
		w.stage = at
		if _, err := w.watch(); !errors.Is(err, errStageOrder) {
			t.Errorf("watch after stage %s: %v, want %v", at, err, errStageOrder)
		}
	}
}

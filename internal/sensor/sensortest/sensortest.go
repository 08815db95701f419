// Package sensortest runs sensors for tests, the way bpfmon watch does: a
// ring buffer, an Env, a set in order, and a reader that keeps every event.
package sensortest

import (
	"log/slog"
	"os"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cilium/ebpf"

	"github.com/bpfmon/bpfmon/internal/event"
	"github.com/bpfmon/bpfmon/internal/sensor"
	"github.com/bpfmon/bpfmon/internal/sensor/record"
	"github.com/bpfmon/bpfmon/internal/testutil"
)

// Options configure a run.
type Options struct {
	// RingBytes sizes the ring buffer (0: record.DefaultSize).
	RingBytes int
	// CaptureBytes is the capture limit (0: each sensor's default).
	CaptureBytes int
	// ExcludeSelf leaves this process's calls out, as bpfmon leaves out its
	// own; by default the test's own calls are reported, and refused.
	ExcludeSelf bool
	// Deferred leaves the ring unread until Read or Drain.
	Deferred bool
	// Describe renders an event in failure messages.
	Describe func(*event.Event) string
	// Discard counts the events instead of keeping them (benchmarks).
	Discard bool
}

// Run is sensors started on their own ring, and the events read so far.
type Run struct {
	testutil.Events
	Ring *record.Ring
	Set  *sensor.Set
	Env  *sensor.Env

	// Discarded counts the events read with Options.Discard.
	Discarded atomic.Uint64

	stop    chan struct{}
	done    chan error
	once    sync.Once
	read    bool
	discard bool
}

// Start starts the sensors, each required, in order, and unless
// o.Deferred reads the ring until the test ends. It fails the test when a
// sensor does not start.
func Start(t testing.TB, o Options, sensors ...sensor.Sensor) *Run {
	t.Helper()
	r, err := TryStart(t, o, sensors...)
	if err != nil {
		t.Fatalf("starting the sensors: %v", err)
	}
	return r
}

// TryStart is Start that returns the error of a sensor that does not
// start, for the test to judge.
func TryStart(t testing.TB, o Options, sensors ...sensor.Sensor) (*Run, error) {
	t.Helper()
	testutil.RequireRoot(t)
	ring, err := record.NewRing(o.RingBytes)
	if err != nil {
		t.Fatal(err)
	}
	var entries []sensor.Entry
	for _, s := range sensors {
		entries = append(entries, sensor.Entry{Sensor: s, Need: sensor.Required})
	}
	env := sensor.NewEnv(ring, o.CaptureBytes, slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn})))
	if !o.ExcludeSelf {
		env.Self.TGID = 0
	}
	set := sensor.NewSet(entries...)
	if err := set.Start(env); err != nil {
		ring.Close()
		return nil, err
	}
	r := &Run{Ring: ring, Set: set, Env: env, stop: make(chan struct{}), done: make(chan error, 1), discard: o.Discard}
	r.Events.Describe = o.Describe
	if r.Events.Describe == nil {
		r.Events.Describe = func(ev *event.Event) string { return string(ev.Type) }
	}
	if !o.Deferred {
		r.Read()
	}
	t.Cleanup(func() {
		r.Finish(t)
		set.Close()
		ring.Close()
	})
	return r, nil
}

// Read starts reading the ring.
func (r *Run) Read() {
	if r.read {
		return
	}
	r.read = true
	emit := r.Events.Add
	if r.discard {
		emit = func(*event.Event) error { r.Discarded.Add(1); return nil }
	}
	go func() { r.done <- r.Set.Run(r.stop, emit, nil) }()
}

// Finish stops the sensors, drains the ring and returns every event.
func (r *Run) Finish(t testing.TB) []*event.Event {
	t.Helper()
	r.once.Do(func() {
		r.Read()
		close(r.stop)
		if err := <-r.done; err != nil {
			t.Errorf("sensor run: %v", err)
		}
	})
	return r.Events.All(nil)
}

// Wait returns the first event matching pred, failing after limit.
func (r *Run) Wait(t testing.TB, limit time.Duration, what string, pred func(*event.Event) bool) *event.Event {
	t.Helper()
	return r.Events.Wait(t, limit, what, pred)
}

// CheckOwnMaps checks what the loader promises of a started sensor's
// maps (sensor.Base.Freeze, sensor.Base.MapIDs): it lists some, not the
// ring buffer, which is the set's; and each is frozen against bpf(2)
// writes (.rodata by the library, the others by Base.Freeze) but those
// named in writable, which bpfmon itself fills (lsm's protected set).
func (r *Run) CheckOwnMaps(t testing.TB, s sensor.Sensor, writable ...string) {
	t.Helper()
	ids := s.MapIDs()
	if len(ids) == 0 {
		t.Fatalf("%s sensor lists no maps of its own", s.Name())
	}
	for _, id := range ids {
		if id == r.Ring.MapID() {
			t.Errorf("%s sensor lists the ring buffer (map %d) as its own", s.Name(), id)
			continue
		}
		m, err := ebpf.NewMapFromID(ebpf.MapID(id))
		if err != nil {
			t.Fatalf("map %d: %v", id, err)
		}
		info, err := m.Info()
		m.Close()
		if err != nil {
			t.Fatalf("map %d: %v", id, err)
		}
		if frozen := info.Frozen(); frozen == slices.Contains(writable, info.Name) {
			t.Errorf("%s sensor's map %s (%d): frozen %v", s.Name(), info.Name, id, frozen)
		}
	}
}

package testutil

import (
	"sync"
	"testing"
	"time"

	"github.com/bpfmon/bpfmon/internal/event"
)

// Events keeps the events a sensor's Run delivers, for a test to wait on
// and inspect while the sensor runs. Safe for concurrent use.
type Events struct {
	// Describe renders an event in failure messages.
	Describe func(*event.Event) string

	mu  sync.Mutex
	evs []*event.Event
}

// Add is the emit function to hand to Run.
func (e *Events) Add(ev *event.Event) error {
	e.mu.Lock()
	e.evs = append(e.evs, ev)
	e.mu.Unlock()
	return nil
}

// All returns the events so far that match pred (every one when nil).
func (e *Events) All(pred func(*event.Event) bool) []*event.Event {
	e.mu.Lock()
	defer e.mu.Unlock()
	var out []*event.Event
	for _, ev := range e.evs {
		if pred == nil || pred(ev) {
			out = append(out, ev)
		}
	}
	return out
}

// Wait returns the first event matching pred, waiting up to limit (scaled
// by Timeout). On failure it lists every event seen.
func (e *Events) Wait(t testing.TB, limit time.Duration, what string, pred func(*event.Event) bool) *event.Event {
	t.Helper()
	if ev := e.Poll(limit, pred); ev != nil {
		return ev
	}
	for _, ev := range e.All(nil) {
		t.Logf("seen: %s", e.Describe(ev))
	}
	t.Fatalf("no event: %s", what)
	return nil
}

// Poll returns the first event matching pred, waiting up to limit (scaled
// by Timeout), or nil when none came.
func (e *Events) Poll(limit time.Duration, pred func(*event.Event) bool) *event.Event {
	deadline := time.Now().Add(Timeout(limit))
	for {
		if evs := e.All(pred); len(evs) > 0 {
			return evs[0]
		}
		if !time.Now().Before(deadline) {
			return nil
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// None fails the test for each event so far that matches pred.
func (e *Events) None(t testing.TB, what string, pred func(*event.Event) bool) {
	t.Helper()
	for _, ev := range e.All(pred) {
		t.Errorf("unexpected event (%s): %s", what, e.Describe(ev))
	}
}

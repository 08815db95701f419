package sensortest

import (
	"bytes"
	"encoding/json"
	"testing"

	"github.com/bpfmon/bpfmon/internal/event"
	"github.com/bpfmon/bpfmon/internal/output"
	"github.com/bpfmon/bpfmon/internal/sensor/record"
)

// CheckCapture fails t unless the key and value of ev are what a capture
// can be, whatever records it came from: none of a part the event does not
// have; never more bytes than the part's total or record.MaxCapture; none
// of a part that faulted; Truncated whenever a part that did not fault
// lacks bytes, and only when some part lacks bytes.
func CheckCapture(t testing.TB, ev *event.Event) {
	t.Helper()
	short := false
	for _, p := range []struct {
		name       string
		has, fault bool
		b          []byte
		total      uint64
	}{{"key", ev.HasKey, ev.KeyFault, ev.Key, ev.KeyTotal}, {"value", ev.HasValue, ev.ValueFault, ev.Value, ev.ValueTotal}} {
		if !p.has {
			if len(p.b) != 0 {
				t.Fatalf("no %s, yet %d bytes of it", p.name, len(p.b))
			}
			continue
		}
		switch {
		case len(p.b) > record.MaxCapture:
			t.Fatalf("%s of %d bytes, more than MaxCapture", p.name, len(p.b))
		case uint64(len(p.b)) > p.total:
			t.Fatalf("%s of %d bytes, its total %d", p.name, len(p.b), p.total)
		case p.fault && len(p.b) != 0:
			t.Fatalf("%s faulted, yet %d bytes", p.name, len(p.b))
		case !p.fault && uint64(len(p.b)) < p.total && !ev.Truncated:
			t.Fatalf("%s: %d of %d bytes, not truncated", p.name, len(p.b), p.total)
		}
		short = short || uint64(len(p.b)) < p.total
	}
	if ev.Truncated && !short {
		t.Fatalf("truncated, yet key %d of %d (%v) and value %d of %d (%v) bytes", len(ev.Key), ev.KeyTotal, ev.HasKey, len(ev.Value), ev.ValueTotal, ev.HasValue)
	}
}

// WriteJSON fails t unless the JSON writer writes ev as one line of valid
// JSON.
func WriteJSON(t testing.TB, ev *event.Event) {
	t.Helper()
	var buf bytes.Buffer
	w, err := output.New("json", &buf)
	if err != nil {
		t.Fatal(err)
	}
	if err := w.Write(ev); err != nil {
		t.Fatalf("writing %+v: %v", ev, err)
	}
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}
	line := buf.Bytes()
	if bytes.IndexByte(line, '\n') != len(line)-1 || !json.Valid(line) {
		t.Fatalf("not one line of JSON: %q", line)
	}
}

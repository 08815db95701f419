package watch

import (
	"bytes"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/bpfmon/bpfmon/internal/alert"
	"github.com/bpfmon/bpfmon/internal/event"
	"github.com/bpfmon/bpfmon/internal/inventory"
	"github.com/bpfmon/bpfmon/internal/metrics"
	"github.com/bpfmon/bpfmon/internal/output"
	"github.com/bpfmon/bpfmon/internal/policy"
)

// trace records, in one log, what each part of the sink did to which
// event.
type trace struct {
	log     []string
	written uint64
}

func (tr *trace) add(part string, ev *event.Event) {
	tr.log = append(tr.log, fmt.Sprintf("%s %s", part, ev.Type))
}

type traceEnricher struct{ *trace }

func (e traceEnricher) enrich(ev *event.Event) {
	e.add("enrich", ev)
	if ev.Process != nil {
		ev.Process.Relation = "holder"
	}
}

type traceEvaluator struct{ *trace }

func (e traceEvaluator) Evaluate(ev *event.Event) {
	e.add("evaluate", ev)
	if ev.Process != nil && ev.Process.Relation != "holder" {
		e.log = append(e.log, "evaluated before enriched")
	}
	if ev.Type == event.MapDelete {
		ev.Alert = &event.Alert{Rule: "foreign-write", Severity: "critical"}
	}
}

type traceWriter struct{ *trace }

func (w traceWriter) Write(ev *event.Event) error { w.add("write", ev); w.written++; return nil }
func (w traceWriter) Flush() error                { w.log = append(w.log, "flush"); return nil }
func (w traceWriter) Counts() (uint64, uint64)    { return w.written, 0 }

type traceExplainer struct{ *trace }

func (e traceExplainer) Explain(mapID uint32, keys []byte, keySize uint32, complete bool, _ time.Time) {
	e.log = append(e.log, fmt.Sprintf("explain %d %x %d %v", mapID, keys, keySize, complete))
}
func (e traceExplainer) Created(m event.Map, _ time.Time) {
	e.log = append(e.log, fmt.Sprintf("created %d", m.ID))
}
func (e traceExplainer) Unsure() { e.log = append(e.log, "unsure") }

type cgroupNames map[uint64]string

func (c cgroupNames) Path(id uint64) string { return c[id] }

func newTraceSink(tr *trace, f Filter, alertsOnly bool) *sink {
	return &sink{scan: traceExplainer{tr}, cgroups: cgroupNames{7: "/system.slice/docker-0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef.scope"},
		maps: traceEnricher{tr}, alerts: traceEvaluator{tr}, filter: f, alertsOnly: alertsOnly, w: traceWriter{tr}}
}

func write(typ event.Type, mapID uint32, result int64) *event.Event {
	return &event.Event{Type: typ, Source: event.SourceSyscall, HasResult: true, Result: result,
		Process: &event.Process{PID: 10, CgroupID: 7}, Map: &event.Map{ID: mapID, KeySize: 4},
		Key: []byte{1, 0, 0, 0}, HasKey: true}
}

// TestSinkOrder: every event is enriched, then evaluated, then filtered,
// then written; an event the filter drops is still enriched and evaluated
// (the alert engine learns owners from what the user does not want to
// see).
func TestSinkOrder(t *testing.T) {
	tr := &trace{}
	s := newTraceSink(tr, Filter{Events: []event.Type{event.MapDelete}}, false)
	for _, ev := range []*event.Event{write(event.MapCreate, 5, 3), write(event.MapDelete, 5, 0)} {
		if err := s.write(ev); err != nil {
			t.Fatal(err)
		}
	}
	want := []string{"enrich map_create", "evaluate map_create", "enrich map_delete", "evaluate map_delete", "write map_delete"}
	if !slices.Equal(tr.log, want) {
		t.Errorf("log\n%q, want\n%q", tr.log, want)
	}
	if w, _, a := s.counts(); w != 1 || a != 1 {
		t.Errorf("counts %d written, %d alerted", w, a)
	}
}

// TestSinkAlertsOnly: with --alerts-only, only alerted and lost events
// are written, and lost events pass every filter.
func TestSinkAlertsOnly(t *testing.T) {
	tr := &trace{}
	s := newTraceSink(tr, Filter{MapIDs: []uint32{99}}, true)
	for _, ev := range []*event.Event{
		write(event.MapUpdate, 99, 0), // no alert: not written
		write(event.MapDelete, 99, 0), // alerted
		write(event.MapDelete, 5, 0),  // alerted, but another map
		{Type: event.Lost, Source: event.SourceKernel, Count: 3, HasCount: true}, // always
	} {
		if err := s.write(ev); err != nil {
			t.Fatal(err)
		}
	}
	var written []string
	for _, l := range tr.log {
		if strings.HasPrefix(l, "write ") {
			written = append(written, l)
		}
	}
	if !slices.Equal(written, []string{"write map_delete", "write lost"}) {
		t.Errorf("written %q", written)
	}
}

// TestSinkFromSensor: a sensor's events tell the scanner what changed
// (successful element writes, with whether the key is complete; new maps),
// and their process gets its cgroup's path and container.
func TestSinkFromSensor(t *testing.T) {
	tr := &trace{}
	s := newTraceSink(tr, Filter{}, false)
	truncated := write(event.MapUpdate, 6, 0)
	truncated.Truncated = true
	for _, ev := range []*event.Event{
		write(event.MapUpdate, 5, 0),
		write(event.MapDelete, 5, -2), // failed: changed nothing
		truncated,
		write(event.MapCreate, 7, 4),
		write(event.MapFreeze, 5, 0), // modifies, no element changes
		write(event.MapGetFDByID, 5, 3),
		{Type: event.Lost, Source: event.SourceSyscall, Count: 1, HasCount: true, Process: &event.Process{CgroupID: 7}},
	} {
		if err := s.fromSensor(ev); err != nil {
			t.Fatal(err)
		}
		if ev.Process.Cgroup == "" || ev.Process.ContainerID != "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef" {
			t.Errorf("%s: process %+v", ev.Type, ev.Process)
		}
	}
	var told []string
	for _, l := range tr.log {
		if strings.HasPrefix(l, "explain") || strings.HasPrefix(l, "created") || l == "unsure" {
			told = append(told, l)
		}
	}
	if want := []string{"explain 5 01000000 4 true", "explain 6 01000000 4 false", "created 7", "unsure"}; !slices.Equal(told, want) {
		t.Errorf("told the scanner %q, want %q", told, want)
	}
}

// TestSinkTeachesOwners runs the real alert engine and JSON writer behind
// the sink: a map created by its owner, filtered out by --event, still
// makes the owner known, so the owner's delete is not alerted and a
// stranger's is.
func TestSinkTeachesOwners(t *testing.T) {
	sel, err := policy.ParseSelector("name:guarded")
	if err != nil {
		t.Fatal(err)
	}
	pol := policy.Default()
	pol.AddProtect(sel)
	engine := alert.New(alert.Config{Policy: pol, SelfPID: 1})
	engine.Start([]inventory.Map{})
	var buf bytes.Buffer
	w, err := output.New("json", &buf)
	if err != nil {
		t.Fatal(err)
	}
	s := &sink{cgroups: cgroupNames{}, maps: noContext{}, alerts: engine, filter: Filter{Events: []event.Type{event.MapDelete}}, w: w}
	owner := &event.Process{PID: 10, ExeIno: 100, CgroupID: 7, Exe: "/usr/bin/agent"}
	stranger := &event.Process{PID: 11, ExeIno: 200, CgroupID: 7, Exe: "/tmp/x"}
	create := &event.Event{Type: event.MapCreate, Source: event.SourceSyscall, HasResult: true, Result: 3,
		Process: owner, Map: &event.Map{ID: 42, Name: "guarded"}}
	del := func(p *event.Process) *event.Event {
		pp := *p
		return &event.Event{Type: event.MapDelete, Source: event.SourceSyscall, HasResult: true,
			Process: &pp, Map: &event.Map{ID: 42, Name: "guarded"}, Key: []byte{1}, HasKey: true}
	}
	for _, ev := range []*event.Event{create, del(owner), del(stranger)} {
		if err := s.fromSensor(ev); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.flush(); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
	if len(lines) != 2 {
		t.Fatalf("wrote %d lines, want the two deletes:\n%s", len(lines), buf.String())
	}
	for i, wantAlert := range []bool{false, true} {
		var got struct {
			Event string
			Alert *struct{ Rule string }
		}
		if err := json.Unmarshal([]byte(lines[i]), &got); err != nil {
			t.Fatal(err)
		}
		if got.Event != "map_delete" || (got.Alert != nil) != wantAlert || (wantAlert && got.Alert.Rule != policy.RuleForeignWrite) {
			t.Errorf("line %d: %s", i, lines[i])
		}
	}
}

type noContext struct{}

func (noContext) enrich(*event.Event) {}

// lossyWriter drops what it is given while full is set, as a writer on a
// full disk does.
type lossyWriter struct {
	full             bool
	written, dropped uint64
}

func (w *lossyWriter) Write(*event.Event) error {
	if w.full {
		w.dropped++
		return syscall.ENOSPC
	}
	w.written++
	return nil
}
func (w *lossyWriter) Flush() error {
	if w.full {
		return syscall.ENOSPC
	}
	return nil
}
func (w *lossyWriter) Counts() (uint64, uint64) { return w.written, w.dropped }

// TestSinkMetrics: the metrics count every event the sink is given, also
// those the output's filter drops, with its alert; what the output cannot
// take is counted as lost (source output) when it is dropped, not a
// second time when the lost event reports it.
func TestSinkMetrics(t *testing.T) {
	tr := &trace{}
	w := &lossyWriter{}
	m := metrics.New("test")
	s := newTraceSink(tr, Filter{Events: []event.Type{event.MapDelete}}, false)
	s.w, s.metrics = w, m
	for _, ev := range []*event.Event{write(event.MapUpdate, 5, 0), write(event.MapUpdate, 5, 0)} {
		if err := s.write(ev); err != nil {
			t.Fatal(err)
		}
	}
	w.full = true
	for range 3 {
		if err := s.write(write(event.MapDelete, 5, 0)); err != nil {
			t.Fatal(err)
		}
	}
	lostNow := gathered(t, m, "bpfmon_lost_events_total", "source", "output")
	w.full = false
	if err := s.write(write(event.MapDelete, 5, 0)); err != nil {
		t.Fatal(err)
	}
	if lostNow != 3 {
		t.Errorf("lost (output) while the output fails: %v, want 3", lostNow)
	}
	for _, c := range []struct {
		name, label, value string
		want               float64
	}{
		{"bpfmon_events_total", "type", "map_update", 2}, // filtered out, counted
		{"bpfmon_events_total", "type", "map_delete", 4},
		{"bpfmon_events_total", "type", "lost", 1}, // the lost event the sink wrote once writing worked
		{"bpfmon_lost_events_total", "source", "output", 3},
		{"bpfmon_alerts_total", "rule", "foreign-write", 4}, // the trace evaluator alerts every delete
	} {
		if got := gathered(t, m, c.name, c.label, c.value); got != c.want {
			t.Errorf("%s{%s=%q} = %v, want %v", c.name, c.label, c.value, got, c.want)
		}
	}
	if w.written != 2 { // the delete and the lost event
		t.Errorf("%d lines written, want 2", w.written)
	}
}

// gathered sums the series of metric name whose label has value.
func gathered(t *testing.T, m *metrics.Metrics, name, label, value string) float64 {
	t.Helper()
	mfs, err := m.Registry().Gather()
	if err != nil {
		t.Fatal(err)
	}
	var sum float64
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, s := range mf.Metric {
			for _, l := range s.Label {
				if l.GetName() == label && l.GetValue() == value {
					sum += s.GetCounter().GetValue()
				}
			}
		}
	}
	return sum
}

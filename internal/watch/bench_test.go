package watch

import (
	"io"
	"testing"

	"github.com/bpfmon/bpfmon/internal/alert"
	"github.com/bpfmon/bpfmon/internal/event"
	"github.com/bpfmon/bpfmon/internal/inventory"
	"github.com/bpfmon/bpfmon/internal/metrics"
	"github.com/bpfmon/bpfmon/internal/output"
	"github.com/bpfmon/bpfmon/internal/policy"
)

// BenchmarkSinkJSON is the sink's cost per sensor event, behind the real
// alert engine and JSON writer (to io.Discard): a map update nobody
// protects, without and with --metrics-addr's counting, in one run so
// the two compare as a ratio.
func BenchmarkSinkJSON(b *testing.B) {
	for _, bc := range []struct {
		name    string
		metrics *metrics.Metrics
	}{{"metrics=off", nil}, {"metrics=on", metrics.New("bench")}} {
		b.Run(bc.name, func(b *testing.B) {
			engine := alert.New(alert.Config{Policy: policy.Default(), SelfPID: 1})
			engine.Start([]inventory.Map{{ID: 42}})
			w, err := output.New("json", io.Discard)
			if err != nil {
				b.Fatal(err)
			}
			s := &sink{cgroups: cgroupNames{}, maps: noContext{}, alerts: engine, w: w, metrics: bc.metrics}
			ev := &event.Event{Type: event.MapUpdate, Source: event.SourceSyscall, HasResult: true,
				Process: &event.Process{PID: 10, TID: 10, CgroupID: 7, Comm: "writer", Exe: "/usr/bin/writer"},
				Map:     &event.Map{ID: 42, Name: "cilium_policy", Type: 1, KeySize: 4, ValueSize: 8, MaxEntries: 1024},
				Key:     []byte{1, 0, 0, 0}, HasKey: true, Value: []byte{1, 2, 3, 4, 5, 6, 7, 8}, HasValue: true}
			b.ReportAllocs()
			for b.Loop() {
				if err := s.fromSensor(ev); err != nil {
					b.Fatal(err)
				}
			}
			if err := s.flush(); err != nil {
				b.Fatal(err)
			}
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "events/s")
		})
	}
}

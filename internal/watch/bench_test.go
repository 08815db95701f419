package watch

import (
	"io"
	"testing"

	"github.com/cilium/ebpf/btf"

	"github.com/bpfmon/bpfmon/internal/alert"
	"github.com/bpfmon/bpfmon/internal/btffmt"
	"github.com/bpfmon/bpfmon/internal/event"
	"github.com/bpfmon/bpfmon/internal/inventory"
	"github.com/bpfmon/bpfmon/internal/metrics"
	"github.com/bpfmon/bpfmon/internal/output"
	"github.com/bpfmon/bpfmon/internal/policy"
)

// BenchmarkSinkJSON is the sink's cost per sensor event, behind the real
// alert engine and JSON writer (to io.Discard): a map update nobody
// protects, without and with --metrics-addr's counting, and behind the
// real map context without the BTF cache, with it for a map without BTF
// (one lookup) and for a map with BTF (a lookup and the rendering of key
// and value), in one run so that they compare as ratios.
func BenchmarkSinkJSON(b *testing.B) {
	u32 := &btf.Int{Name: "u32", Size: 4}
	cfg := &btf.Struct{Name: "cfg", Size: 8, Members: []btf.Member{
		{Name: "pid", Type: u32}, {Name: "enabled", Type: &btf.Int{Name: "bool", Size: 1, Encoding: btf.Bool}, Offset: 32}}}
	shape := event.Map{ID: 42, Name: "cilium_policy", Type: 1, KeySize: 4, ValueSize: 8, MaxEntries: 1024}
	context := func(types bool, withBTF bool) enricher {
		c := &mapContext{programs: map[uint32][]event.MapProgram{}, pins: map[uint32][]string{}, written: map[uint32]bool{},
			owners: map[uint32]map[uint32]string{}, kick: make(chan struct{}, 1), known: map[uint32]inventory.Map{}}
		if types {
			c.withTypes(btffmt.NewCache(func(id uint32) (btffmt.Resolved, error) {
				if !withBTF {
					return btffmt.Resolved{Shape: shape}, nil
				}
				return btffmt.Resolved{Shape: shape, BTFID: 1, Key: btffmt.Compile(u32), Value: btffmt.Compile(cfg)}, nil
			}))
		}
		return c
	}
	for _, bc := range []struct {
		name    string
		metrics *metrics.Metrics
		maps    enricher
	}{
		{"metrics=off", nil, noContext{}},
		{"metrics=on", metrics.New("bench"), noContext{}},
		{"context/types=off", nil, context(false, false)},
		{"context/btf=none", nil, context(true, false)},
		{"context/btf=on", nil, context(true, true)},
	} {
		b.Run(bc.name, func(b *testing.B) {
			engine := alert.New(alert.Config{Policy: policy.Default(), SelfPID: 1})
			engine.Start([]inventory.Map{{ID: 42}})
			w, err := output.New("json", io.Discard)
			if err != nil {
				b.Fatal(err)
			}
			s := &sink{cgroups: cgroupNames{}, maps: bc.maps, alerts: engine, w: w, metrics: bc.metrics}
			m := shape
			ev := &event.Event{Type: event.MapUpdate, Source: event.SourceSyscall, HasResult: true,
				Process: &event.Process{PID: 10, TID: 10, CgroupID: 7, Comm: "writer", Exe: "/usr/bin/writer"},
				Map:     &m, Key: []byte{1, 0, 0, 0}, HasKey: true, Value: []byte{1, 2, 3, 4, 1, 0, 0, 0}, HasValue: true}
			b.ReportAllocs()
			for b.Loop() {
				if err := s.fromSensor(ev); err != nil {
					b.Fatal(err)
				}
			}
			if err := s.flush(); err != nil {
				b.Fatal(err)
			}
			if bc.name == "context/btf=on" && ev.Map.ValueType == nil {
				b.Fatal("no rendering")
			}
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "events/s")
		})
	}
}

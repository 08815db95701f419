package bpfsyscall

import (
	"os"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"

	"github.com/bpfmon/bpfmon/internal/sensor/sensortest"
	"github.com/bpfmon/bpfmon/internal/testutil"
)

// BenchmarkProgramCost measures what the sensor's programs cost a bpf(2)
// map update, as the kernel times them (bpf_stats: run_time_ns over
// run_cnt), beside the update's own cost without the sensor, for each
// build this kernel loads. The ratio is the one the cost target is about.
// The ring is read and decoded meanwhile, events discarded.
func BenchmarkProgramCost(b *testing.B) {
	testutil.RequireRoot(b)
	m, err := ebpf.NewMap(&ebpf.MapSpec{Type: ebpf.Hash, KeySize: 4, ValueSize: 8, MaxEntries: 1024})
	if err != nil {
		b.Fatal(err)
	}
	defer m.Close()
	update := func(n int) time.Duration {
		t0 := time.Now()
		for i := range n {
			if err := m.Update(uint32(i%1024), uint64(i), ebpf.UpdateAny); err != nil {
				b.Fatal(err)
			}
		}
		return time.Since(t0)
	}
	b.Run("none", func(b *testing.B) {
		d := update(b.N)
		b.ReportMetric(float64(d.Nanoseconds())/float64(b.N), "ns/update")
	})
	if obj := os.Getenv("BPFMON_COST_OBJECT"); obj != "" {
		// An experimental build of the tp_btf object, compiled by hand:
		// what a change to the programs costs, before committing to it.
		b := *buildOf[HookTPBTF]
		b.object = func() (*ebpf.CollectionSpec, error) { return ebpf.LoadCollectionSpec(obj) }
		buildOf[HookTPBTF] = &b
	}
	for _, hook := range Hooks {
		b.Run(string(hook), func(b *testing.B) {
			s := New(Config{Hook: hook})
			r, err := sensortest.TryStart(b, sensortest.Options{Discard: true}, s)
			if err != nil {
				testutil.Need(b, hookCapability[hook], err, "the "+string(hook)+" build does not load")
			}
			_ = r
			stats, err := ebpf.EnableStats(unix.BPF_STATS_RUN_TIME)
			if err != nil {
				b.Fatalf("enabling bpf_stats: %v", err)
			}
			before := programStats(b, s)
			b.ResetTimer()
			d := update(b.N)
			b.StopTimer()
			after := programStats(b, s)
			stats.Close()
			var total float64
			for name, st := range after {
				ns := float64(st.Runtime-before[name].Runtime) / float64(b.N)
				total += ns
				b.ReportMetric(ns, "ns/call-"+name)
				b.ReportMetric(float64(st.RunCount-before[name].RunCount)/float64(b.N), "runs/call-"+name)
			}
			b.ReportMetric(total, "ns/call-programs")
			b.ReportMetric(float64(d.Nanoseconds())/float64(b.N), "ns/update")
		})
	}
}

func programStats(b *testing.B, s *Sensor) map[string]ebpf.ProgramStats {
	out := map[string]ebpf.ProgramStats{}
	for name, p := range s.programs() {
		st, err := p.Stats()
		if err != nil {
			b.Fatalf("%s stats: %v", name, err)
		}
		out[name] = *st
	}
	return out
}

package scanner

import (
	"os"
	"runtime"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"

	"github.com/bpfmon/bpfmon/internal/event"
)

// BenchmarkScanPass1M measures one full scanner pass (every map on the host,
// dominated by one 1,000,000-entry hash map): wall time, CPU time and the
// memory its snapshots take.
func BenchmarkScanPass1M(b *testing.B) {
	if os.Geteuid() != 0 {
		b.Skip("needs root to create BPF maps")
	}
	const n = 1_000_000
	m, err := ebpf.NewMap(&ebpf.MapSpec{Name: "bench_1m", Type: ebpf.Hash, KeySize: 4, ValueSize: 8, MaxEntries: n})
	if err != nil {
		b.Fatal(err)
	}
	defer m.Close()
	keys := make([]uint32, n)
	vals := make([]uint64, n)
	for i := range keys {
		keys[i], vals[i] = uint32(i), uint64(i)*3
	}
	if _, err := m.BatchUpdate(keys, vals, nil); err != nil {
		b.Fatal(err)
	}
	for _, tc := range []struct {
		name   string
		change bool
	}{{"unchanged", false}, {"one-key-changed", true}} {
		b.Run(tc.name, func(b *testing.B) {
			s, err := New(Config{Interval: time.Hour, Grace: time.Millisecond})
			if err != nil {
				b.Fatal(err)
			}
			discard := func(*event.Event) error { return nil }
			if err := s.Pass(nil, discard); err != nil { // the baseline
				b.Fatal(err)
			}
			var cpu time.Duration
			b.ResetTimer()
			for i := range b.N {
				if tc.change {
					b.StopTimer()
					m.Update(uint32(i), uint64(1e9+i), 0)
					b.StartTimer()
				}
				before := cpuTime()
				if err := s.Pass(nil, discard); err != nil {
					b.Fatal(err)
				}
				cpu += cpuTime() - before
			}
			b.StopTimer()
			var ms runtime.MemStats
			runtime.GC()
			runtime.ReadMemStats(&ms)
			b.ReportMetric(float64(b.Elapsed().Milliseconds())/float64(b.N), "ms/pass")
			b.ReportMetric(float64(cpu.Milliseconds())/float64(b.N), "cpu-ms/pass")
			b.ReportMetric(float64(s.LastPass.Elements), "elements")
			b.ReportMetric(float64(s.LastPass.SnapshotMemory)/(1<<20), "snapshot-MiB")
			b.ReportMetric(float64(ms.HeapInuse)/(1<<20), "heap-MiB")
		})
	}
}

func cpuTime() time.Duration {
	var ru unix.Rusage
	unix.Getrusage(unix.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

package kernelwrite

import (
	"testing"
	"time"

	"github.com/cilium/ebpf"

	"github.com/bpfmon/bpfmon/internal/sensor/kernelwrite/writers"
)

// BenchmarkProgramWrite measures what the kernel-side sensor adds to a BPF
// program's map write: update_hash run with BPF_PROG_TEST_RUN, timed by the
// kernel, with no sensor, with fexit hooks and with kprobes, each with
// --kernel-writes selective (after the first write, a known pair: counted)
// and all (every write a record, as before selection). The sensors'
// records are read and decoded meanwhile, as in bpfmon watch.
func BenchmarkProgramWrite(b *testing.B) {
	type run struct {
		mode   Mode
		writes Writes
	}
	for _, r := range []run{{ModeOff, ""}, {ModeFexit, WritesSelective}, {ModeFexit, WritesAll}, {ModeKprobe, WritesSelective}, {ModeKprobe, WritesAll}} {
		name := string(r.mode)
		if r.writes != "" {
			name += "-" + string(r.writes)
		}
		b.Run(name, func(b *testing.B) {
			mode := r.mode
			w, err := writers.Load()
			if err != nil {
				b.Fatal(err)
			}
			defer w.Close()
			if mode != ModeOff {
				start(b, options{mode: mode, writes: r.writes})
			}
			p := w.Program(writers.UpdateHash)
			b.ResetTimer()
			_, per, err := p.Benchmark(writers.Packet(1, 1), b.N, nil)
			if err != nil {
				b.Fatal(err)
			}
			b.ReportMetric(float64(per.Nanoseconds()), "ns/write")
		})
	}
}

// BenchmarkSyscallWrite measures a bpf(2) update of a hash map with the
// syscall sensor only and with the kernel-side sensor's fexit hooks, which
// take the kernel's copy of key and value inside the call.
func BenchmarkSyscallWrite(b *testing.B) {
	for _, mode := range []Mode{ModeOff, ModeFexit} {
		b.Run(string(mode), func(b *testing.B) {
			start(b, options{mode: mode})
			m, err := ebpf.NewMap(&ebpf.MapSpec{Type: ebpf.Hash, KeySize: 4, ValueSize: 8, MaxEntries: 1})
			if err != nil {
				b.Fatal(err)
			}
			defer m.Close()
			start := time.Now()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				if err := m.Update(uint32(0), uint64(i), ebpf.UpdateAny); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(time.Since(start).Nanoseconds())/float64(b.N), "ns/write")
		})
	}
}

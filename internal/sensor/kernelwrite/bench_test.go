package kernelwrite

import (
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/cilium/ebpf/link"
	"golang.org/x/sys/unix"

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

// BenchmarkCountedPath profiles the counted path inside the kernel: with
// bpf_stats enabled, the run time per invocation of the sensor's program on
// htab_map_update_elem (a known pair writing an unselected map: counted)
// beside an empty program of the same kind on the same function, the
// floor, run by the same writes. ns/hook and ns/floor are the kernel's
// run_time_ns/run_cnt of each (the trampoline's or kprobe's own cost is in
// neither).
func BenchmarkCountedPath(b *testing.B) {
	for _, mode := range []Mode{ModeFexit, ModeKprobe} {
		b.Run(string(mode), func(b *testing.B) {
			w, err := writers.Load()
			if err != nil {
				b.Fatal(err)
			}
			defer w.Close()
			c := start(b, options{mode: mode, writes: WritesSelective})
			if c.hookKind("htab_map_update_elem") != hookKindOf(mode) {
				b.Skipf("htab_map_update_elem hooked by %q", c.hookKind("htab_map_update_elem"))
			}
			floor := emptyHook(b, mode, "htab_map_update_elem")
			stats, err := ebpf.EnableStats(uint32(unix.BPF_STATS_RUN_TIME))
			if err != nil {
				b.Skipf("bpf_stats: %v", err)
			}
			defer stats.Close()
			p := w.Program(writers.UpdateHash)
			if err := w.Run(writers.UpdateHash, 1, 1); err != nil { // the first sighting
				b.Fatal(err)
			}
			progs := append([]*ebpf.Program{floor}, c.kw.writeProgs...)
			before := runStats(b, progs)
			b.ResetTimer()
			_, per, err := p.Benchmark(writers.Packet(1, 1), b.N, nil)
			if err != nil {
				b.Fatal(err)
			}
			b.StopTimer()
			after := runStats(b, progs)
			b.ReportMetric(float64(per.Nanoseconds()), "ns/write")
			for i := range progs {
				n := after[i].RunCount - before[i].RunCount
				if n < uint64(b.N)/2 {
					continue // another hook, run by other writes
				}
				ns := float64(after[i].Runtime-before[i].Runtime) / float64(n)
				if i == 0 {
					b.ReportMetric(ns, "ns/floor")
				} else {
					b.ReportMetric(ns, "ns/hook")
					b.ReportMetric(float64(n)/float64(b.N), "runs/write")
				}
			}
		})
	}
}

func hookKindOf(m Mode) string {
	if m == ModeKprobe {
		return "kprobe"
	}
	return "fexit"
}

// emptyHook attaches an empty program of mode's kind to fn until the
// benchmark ends.
func emptyHook(b *testing.B, mode Mode, fn string) *ebpf.Program {
	b.Helper()
	empty := asm.Instructions{asm.Mov.Imm(asm.R0, 0), asm.Return()}
	var (
		p   *ebpf.Program
		l   link.Link
		err error
	)
	if mode == ModeKprobe {
		p, err = ebpf.NewProgram(&ebpf.ProgramSpec{Type: ebpf.Kprobe, License: "GPL", Instructions: empty})
		if err == nil {
			l, err = link.Kprobe(fn, p, nil)
		}
	} else {
		p, err = ebpf.NewProgram(&ebpf.ProgramSpec{Type: ebpf.Tracing, AttachType: ebpf.AttachTraceFExit, AttachTo: fn, License: "GPL", Instructions: empty})
		if err == nil {
			l, err = link.AttachTracing(link.TracingOptions{Program: p})
		}
	}
	if err != nil {
		b.Fatalf("empty %s program on %s: %v", mode, fn, err)
	}
	b.Cleanup(func() { l.Close(); p.Close() })
	return p
}

func runStats(b *testing.B, progs []*ebpf.Program) []ebpf.ProgramStats {
	b.Helper()
	out := make([]ebpf.ProgramStats, len(progs))
	for i, p := range progs {
		s, err := p.Stats()
		if err != nil {
			b.Fatal(err)
		}
		out[i] = *s
	}
	return out
}

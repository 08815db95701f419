package lsm

import (
	"slices"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"

	"github.com/bpfmon/bpfmon/internal/sensor/bpfsyscall"
	"github.com/bpfmon/bpfmon/internal/sensor/sensortest"
	"github.com/bpfmon/bpfmon/internal/testutil"
)

// BenchmarkEnforceUpdate is the cost of each build per bpf(2) call: an
// array update by its owner on a protected map (every check runs and
// allows) and on a map that is not protected, with the build's programs
// attached (on) and detached (off), the syscall sensor running in both,
// in one process, in interleaved rounds: the difference is enforcement's.
// ns/op includes attaching and detaching; the metrics are per update.
func BenchmarkEnforceUpdate(b *testing.B) {
	for _, build := range builds {
		b.Run(string(build), func(b *testing.B) {
			needBuild(b, build)
			stats, err := ebpf.EnableStats(uint32(unix.BPF_STATS_RUN_TIME))
			if err != nil {
				b.Fatal(err)
			}
			defer stats.Close()
			en := NewBuild(build)
			sensortest.Start(b, sensortest.Options{Discard: true}, bpfsyscall.New(bpfsyscall.Config{}), en)
			prot, err := ebpf.NewMap(&ebpf.MapSpec{Type: ebpf.Array, KeySize: 4, ValueSize: 8, MaxEntries: 1})
			if err != nil {
				b.Fatal(err)
			}
			defer prot.Close()
			other, err := ebpf.NewMap(&ebpf.MapSpec{Type: ebpf.Array, KeySize: 4, ValueSize: 8, MaxEntries: 1})
			if err != nil {
				b.Fatal(err)
			}
			defer other.Close()
			id := testutil.MapID(b, prot)
			if err := en.Protect(id); err != nil {
				b.Fatal(err)
			}
			if err := en.AddOwner(id, self(b)); err != nil {
				b.Fatal(err)
			}
			for _, target := range []struct {
				name string
				m    *ebpf.Map
			}{{"owned", prot}, {"other", other}} {
				b.Run(target.name, func(b *testing.B) {
					// Rounds of a burst without the programs and one with
					// them, interleaved, so that a slower spell of a
					// shared machine weighs on both; medians of the rounds.
					// Attaching and detaching takes about a second in an
					// emulated VM, so the rounds are a fixed number, not
					// b.N (which would stop at one).
					const burst, rounds = 1000, 9
					var off, on []float64
					update := func() float64 {
						start := time.Now()
						for range burst {
							if err := target.m.Update(uint32(0), uint64(1), 0); err != nil {
								b.Fatal(err)
							}
						}
						return float64(time.Since(start).Nanoseconds()) / burst
					}
					run0 := progTime(en)
					for range rounds {
						off = append(off, update())
						if err := en.Arm(); err != nil {
							b.Fatal(err)
						}
						on = append(on, update())
						en.Detach()
					}
					// The programs' own time per update, as the kernel
					// times them (bpf_stats), over every round.
					if run := progTime(en) - run0; run > 0 {
						b.ReportMetric(float64(run.Nanoseconds())/float64(len(on)*burst), "prog-ns/update")
					}
					mOff, mOn := median(off), median(on)
					b.ReportMetric(mOff, "ns/update-off")
					b.ReportMetric(mOn, "ns/update-on")
					b.ReportMetric(mOn/mOff, "on/off")
					b.ReportMetric(float64(len(off)), "rounds")
				})
			}
			if d, _ := en.Denied(); d != 0 {
				b.Errorf("%d of the owner's updates refused", d)
			}
		})
	}
}

func median(xs []float64) float64 {
	s := slices.Clone(xs)
	slices.Sort(s)
	return s[len(s)/2]
}

// progTime is the run time of en's programs so far (bpf_stats).
func progTime(en *Sensor) time.Duration {
	var run time.Duration
	for _, p := range en.Progs {
		if st, err := p.Stats(); err == nil {
			run += st.Runtime
		}
	}
	return run
}

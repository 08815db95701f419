package lsm

import (
	"testing"

	"github.com/cilium/ebpf"

	"github.com/bpfmon/bpfmon/internal/sensor/bpfsyscall"
	"github.com/bpfmon/bpfmon/internal/sensor/sensortest"
	"github.com/bpfmon/bpfmon/internal/testutil"
)

// BenchmarkEnforceUpdate is the cost of each build per bpf(2) call: an
// array update by its owner on a protected map (every check runs and
// allows) and on a map that is not protected, with the build's programs
// attached (on) and detached (off), the syscall sensor running in both,
// in one process: the difference is enforcement's.
func BenchmarkEnforceUpdate(b *testing.B) {
	for _, build := range builds {
		b.Run(string(build), func(b *testing.B) {
			needBuild(b, build)
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
				for _, on := range []bool{false, true} {
					state := "off"
					if on {
						state = "on"
					}
					b.Run(target.name+"/"+state, func(b *testing.B) {
						if on {
							if err := en.Arm(); err != nil {
								b.Fatal(err)
							}
							defer en.Detach()
						}
						for b.Loop() {
							if err := target.m.Update(uint32(0), uint64(1), 0); err != nil {
								b.Fatal(err)
							}
						}
					})
				}
			}
			if d, _ := en.Denied(); d != 0 {
				b.Errorf("%d of the owner's updates refused", d)
			}
		})
	}
}

package bpfsyscall

import (
	"errors"
	"testing"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"

	"github.com/bpfmon/bpfmon/internal/event"
	"github.com/bpfmon/bpfmon/internal/testprogs/iterwriter"
	"github.com/bpfmon/bpfmon/internal/testutil"
)

// TestIterLink: a BPF iterator over a map's elements hands its program a
// writable pointer to every value, so creating its link is reported, with
// the map and the program; the program then rewrites the map with no
// update call. Iterators are tracing programs: skipped where the kernel
// refuses them (this project's Firecracker machines), run in the VMs.
func TestIterLink(t *testing.T) {
	c := startSensor(t, Config{})
	m, id := newMap(t, hashSpec)
	for k := uint32(0); k < 3; k++ {
		if err := m.Update(k, uint64(k), 0); err != nil {
			t.Fatal(err)
		}
	}
	progID, err := iterwriter.Rewrite(m)
	if errors.Is(err, unix.EPERM) || errors.Is(err, ebpf.ErrNotSupported) {
		testutil.Need(t, testutil.Iterators, err, "this kernel refuses BPF iterators")
	}
	if err != nil {
		t.Fatal(err)
	}
	var v uint64
	if err := m.Lookup(uint32(1), &v); err != nil || v != 0xbadbadbad {
		t.Fatalf("the iterator did not rewrite the map: %x %v", v, err)
	}
	ev := c.wait(t, "map_iter_link", onMap(event.MapIterLink, id))
	if ev.Prog == nil || ev.Prog.ID != progID || ev.Prog.Name != "rewrite" || !ev.HasResult || ev.Result < 0 {
		t.Errorf("iterator link: %s, prog %+v; want program %d \"rewrite\" and a link fd", describe(ev), ev.Prog, progID)
	}
	c.sensorIdle(t)
	if n := len(c.Events.All(onMap(event.MapUpdate, id))); n != 3 {
		t.Errorf("%d updates reported, want this test's 3: the iterator's rewrite makes none", n)
	}
}

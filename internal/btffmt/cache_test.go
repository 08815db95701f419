package btffmt

import (
	"errors"
	"fmt"
	"runtime"
	"testing"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/btf"

	"github.com/bpfmon/bpfmon/internal/event"
	"github.com/bpfmon/bpfmon/internal/testutil"
)

// fakeMaps stands for the kernel's map ids: what each id names now.
type fakeMaps map[uint32]Resolved

func (f fakeMaps) resolve(id uint32) (Resolved, error) {
	r, ok := f[id]
	if !ok {
		return Resolved{}, errors.New("no such map")
	}
	return r, nil
}

func TestCacheIDReuse(t *testing.T) {
	cfg := Compile(policy)
	kernel := fakeMaps{7: {Shape: event.Map{ID: 7, Name: "cfg", Type: 1, KeySize: 4, ValueSize: 16, MaxEntries: 8}, BTFID: 100, Key: Compile(u32), Value: cfg}}
	c := NewCache(kernel.resolve)
	ev := &event.Map{ID: 7, Name: "cfg", Type: 1, KeySize: 4, ValueSize: 16, MaxEntries: 8}
	for range 3 {
		if k, v := c.Lookup(ev, nil); k == nil || v != cfg {
			t.Fatalf("lookup: %v %v", k, v)
		}
	}
	if c.Resolves != 1 {
		t.Errorf("%d resolves for three events of one map, want 1", c.Resolves)
	}

	// The map goes, id 7 is given to another map of another shape: its
	// first event resolves again.
	kernel[7] = Resolved{Shape: event.Map{ID: 7, Name: "other", Type: 2, KeySize: 4, ValueSize: 4, MaxEntries: 1}}
	other := &event.Map{ID: 7, Name: "other", Type: 2, KeySize: 4, ValueSize: 4, MaxEntries: 1}
	if k, v := c.Lookup(other, nil); k != nil || v != nil {
		t.Errorf("reused id rendered by the old map's types: %v %v", k, v)
	}
	if c.Resolves != 2 {
		t.Errorf("reused id not resolved again (%d resolves)", c.Resolves)
	}
	// A late event of the old map (from before the reuse) is not
	// rendered by the new map's types, which it does not match.
	if k, v := c.Lookup(ev, nil); k != nil || v != nil {
		t.Errorf("old map's event rendered after the reuse: %v %v", k, v)
	}

	// Reused by a map of the very same shape but other BTF: a
	// map_create of the id (Forget) or the inventory (Refresh) tells.
	kernel[7] = Resolved{Shape: *ev, BTFID: 100, Key: Compile(u32), Value: cfg}
	c.Lookup(ev, nil)
	newer := Compile(flags)
	kernel[7] = Resolved{Shape: *ev, BTFID: 101, Value: newer}
	if _, v := c.Lookup(ev, nil); v != cfg {
		t.Fatal("same shape: the cache holds until told")
	}
	c.Forget(7)
	if _, v := c.Lookup(ev, nil); v != newer {
		t.Errorf("after Forget: %v, want the new map's layout", v)
	}
	kernel[7] = Resolved{Shape: *ev, BTFID: 102, Value: cfg}
	c.Refresh(func(id uint32) (uint32, bool) { return 101, id == 7 })
	if _, v := c.Lookup(ev, nil); v != newer {
		t.Error("Refresh dropped a map the inventory lists with the same BTF")
	}
	c.Refresh(func(id uint32) (uint32, bool) { return 102, id == 7 })
	if _, v := c.Lookup(ev, nil); v != cfg {
		t.Error("Refresh kept a map the inventory lists with another BTF object")
	}
	c.Refresh(func(uint32) (uint32, bool) { return 0, false })
	if c.Len() != 0 {
		t.Errorf("Refresh kept %d maps the inventory does not list", c.Len())
	}
}

func TestCacheWithoutBTF(t *testing.T) {
	kernel := fakeMaps{}
	c := NewCache(kernel.resolve)
	m := &event.Map{ID: 9, Name: "plain", Type: 1, KeySize: 4, ValueSize: 8, MaxEntries: 1}
	// Listed by the inventory without BTF: no resolve at all.
	listed := func(ev *event.Map) (uint32, bool) { return 0, ev.ID == 9 }
	for range 3 {
		if k, v := c.Lookup(m, listed); k != nil || v != nil {
			t.Fatal("rendered a map without BTF")
		}
	}
	if c.Resolves != 0 {
		t.Errorf("%d resolves of a map the inventory lists without BTF", c.Resolves)
	}
	// Gone before it was resolved: remembered, not asked again.
	gone := &event.Map{ID: 10, Name: "gone", Type: 1}
	c.Lookup(gone, nil)
	c.Lookup(gone, nil)
	if c.Resolves != 1 {
		t.Errorf("%d resolves of a vanished map, want 1", c.Resolves)
	}
	if k, v := c.Lookup(nil, nil); k != nil || v != nil {
		t.Error("nil map")
	}
}

func TestCacheBounded(t *testing.T) {
	c := NewCache(func(id uint32) (Resolved, error) { return Resolved{Shape: event.Map{ID: id}}, nil })
	for id := uint32(1); id <= maxCached+100; id++ {
		c.Lookup(&event.Map{ID: id}, nil)
	}
	if c.Len() > maxCached {
		t.Errorf("%d maps cached, bound %d", c.Len(), maxCached)
	}
}

// TestResolve reads a real map's types through the kernel, and a map
// without BTF, and one that is gone.
func TestResolve(t *testing.T) {
	testutil.RequireRoot(t)
	m, err := ebpf.NewMap(&ebpf.MapSpec{Name: "resolve_test", Type: ebpf.Hash, KeySize: 4, ValueSize: 16, MaxEntries: 4, Key: u32, Value: policy})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	id := uint32(testutil.MapID(t, m))
	c := NewCache(nil)
	ev := &event.Map{ID: id, Name: "resolve_test", Type: uint32(ebpf.Hash), KeySize: 4, ValueSize: 16, MaxEntries: 4}
	k, v := c.Lookup(ev, nil)
	if k == nil || v == nil {
		t.Fatalf("map %d with BTF: no layouts", id)
	}
	out, res := v.AppendJSON(nil, []byte{7, 0, 0, 0, 1, 0, 1, 0, 'x', 0, 0, 0, 0, 0, 0, 0})
	if res != event.RenderedWhole || string(out) != `{"pid":7,"delta":1,"enabled":true,"tag":"x"}` {
		t.Errorf("rendered %s (%d)", out, res)
	}

	plain, err := ebpf.NewMap(&ebpf.MapSpec{Type: ebpf.Array, KeySize: 4, ValueSize: 4, MaxEntries: 1})
	if err != nil {
		t.Fatal(err)
	}
	pid := uint32(testutil.MapID(t, plain))
	pev := &event.Map{ID: pid, Type: uint32(ebpf.Array), KeySize: 4, ValueSize: 4, MaxEntries: 1}
	if k, v := c.Lookup(pev, nil); k != nil || v != nil {
		t.Error("map without BTF rendered")
	}
	plain.Close()
	c.Forget(pid)
	if k, v := c.Lookup(pev, nil); k != nil || v != nil {
		t.Error("gone map rendered")
	}
	if c.Resolves != 3 {
		t.Errorf("%d resolves, want 3", c.Resolves)
	}
}

// wideStruct is a struct of n int members with names of 200 bytes.
func wideStruct(n int) *btf.Struct {
	i32 := &btf.Int{Name: "int", Size: 4, Encoding: btf.Signed}
	s := &btf.Struct{Name: "wide", Size: uint32(4 * n)}
	for i := range n {
		s.Members = append(s.Members, btf.Member{Name: fmt.Sprintf("%0200d", i), Type: i32, Offset: btf.Bits(32 * i)})
	}
	return s
}

// TestLayoutBytesBounded: a type whose names alone would hold more than
// MaxLayoutBytes has no Layout (hex only); one below it has, and says
// what it holds.
func TestLayoutBytesBounded(t *testing.T) {
	if l := Compile(wideStruct(1000)); l != nil {
		t.Errorf("a struct of 1,000 members named with 200 bytes each has a layout of %d bytes, bound %d", l.Bytes(), MaxLayoutBytes)
	}
	l := Compile(wideStruct(100))
	if l == nil || l.Bytes() < 100*416 || l.Bytes() > MaxLayoutBytes {
		t.Fatalf("a struct of 100 members: layout %v of %d bytes", l != nil, l.Bytes())
	}
	var ms1, ms2 runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&ms1)
	l = Compile(wideStruct(100))
	runtime.GC()
	runtime.ReadMemStats(&ms2)
	held := int(ms2.HeapAlloc) - int(ms1.HeapAlloc)
	runtime.KeepAlive(l)
	if held > l.Bytes() {
		t.Errorf("the layout holds %d bytes of heap, %d estimated", held, l.Bytes())
	}
}

// TestCacheBytesBounded: maps whose layouts are large are cached up to
// maxCacheBytes, not maxCached of them.
func TestCacheBytesBounded(t *testing.T) {
	wide := Compile(wideStruct(100))
	c := NewCache(func(id uint32) (Resolved, error) {
		return Resolved{Shape: event.Map{ID: id}, BTFID: 1, Key: wide, Value: wide}, nil
	})
	for id := uint32(1); id <= 1000; id++ {
		c.Lookup(&event.Map{ID: id}, nil)
		if c.Bytes() > maxCacheBytes {
			t.Fatalf("after %d maps the cache holds %d bytes, bound %d", id, c.Bytes(), maxCacheBytes)
		}
	}
	if c.Len() < 10 || c.Len() >= 1000 {
		t.Errorf("%d maps of %d-byte layouts cached", c.Len(), 2*wide.Bytes())
	}
	for id := uint32(1); id <= 1000; id++ {
		c.Forget(id)
	}
	if c.Bytes() != 0 || c.Len() != 0 {
		t.Errorf("after forgetting every map: %d bytes, %d maps", c.Bytes(), c.Len())
	}
}

package watch

import (
	"fmt"
	"runtime"
	"testing"
	"time"

	"github.com/cilium/ebpf/btf"

	"github.com/bpfmon/bpfmon/internal/btffmt"
	"github.com/bpfmon/bpfmon/internal/event"
	"github.com/bpfmon/bpfmon/internal/inventory"
)

// TestQuietMaps: a map stops being quiet (read only after a reported
// write) as soon as a program load says it uses it, and every map does
// when a load could not say which maps it uses, until a refresh lists
// them. Quiet needs the iterator list: not knowing is not quiet.
func TestQuietMaps(t *testing.T) {
	refreshed := make(chan struct{}, 10)
	collect := func(inventory.Options) ([]inventory.Map, error) {
		refreshed <- struct{}{}
		return []inventory.Map{{ID: 5}, {ID: 6}}, nil
	}
	stop := make(chan struct{})
	defer close(stop)
	c := newMapContext(stop, collect, nil)
	<-refreshed
	if c.iterated == nil {
		t.Skip("BPF links cannot be listed here; quiet needs them")
	}
	if c.syscallProgs {
		t.Skip("a BPF_PROG_TYPE_SYSCALL program is loaded on this host: no map is quiet")
	}
	if !c.quiet(5) || !c.quiet(6) {
		t.Fatal("maps no program uses are not quiet")
	}
	load := func(ids []uint32, count uint32) {
		c.enrich(&event.Event{Type: event.ProgLoad, HasResult: true, Result: 3,
			Prog: &event.Prog{ID: 9, Name: "p"}, Extra: &event.Extra{ProgMaps: ids, ProgMapCount: count}})
	}
	load([]uint32{5}, 1)
	if c.quiet(5) || !c.quiet(6) {
		t.Errorf("after a load using map 5: quiet(5)=%v quiet(6)=%v, want false true", c.quiet(5), c.quiet(6))
	}
	load([]uint32{5}, 2) // a list cut short
	if c.quiet(6) {
		t.Error("map 6 quiet after a load whose maps are not all known")
	}
	<-refreshed // the load's kick; the refresh ends after collect returns
	waitQuiet := func(id uint32) bool {
		for range 100 {
			if c.quiet(id) {
				return true
			}
			time.Sleep(10 * time.Millisecond)
		}
		return false
	}
	if !waitQuiet(6) {
		t.Fatal("map 6 not quiet again after a refresh")
	}
	// The refresh lists no program on map 5 (it was unloaded): the
	// program may have written it before the scanner's next read, so it
	// stays not quiet. So does a map an iterator was attached to, after
	// the link is gone.
	if c.quiet(5) {
		t.Error("map 5 quiet again once its program was gone")
	}
	c.enrich(&event.Event{Type: event.MapIterLink, HasResult: true, Result: 8, Map: &event.Map{ID: 6}})
	if c.quiet(6) {
		t.Error("map 6 quiet with an iterator attached")
	}
	c.poke()
	<-refreshed
	time.Sleep(50 * time.Millisecond)
	if c.quiet(6) {
		t.Error("map 6 quiet again once the inventory lists no iterator on it")
	}
}

// TestContextTypes: events of a map with BTF get its types, resolved once;
// a map_create of the id forgets them (ids are reused); a map the
// inventory lists without BTF is never resolved; events without key or
// value do not look.
func TestContextTypes(t *testing.T) {
	cfg := btffmt.Compile(&btf.Int{Name: "u64", Size: 8})
	shape := event.Map{ID: 5, Name: "cfg", Type: 1, KeySize: 4, ValueSize: 8, MaxEntries: 2}
	kernel := map[uint32]btffmt.Resolved{5: {Shape: shape, BTFID: 3, Value: cfg}}
	var resolved []uint32
	c := &mapContext{programs: map[uint32][]event.MapProgram{}, pins: map[uint32][]string{}, written: map[uint32]bool{},
		owners: map[uint32]map[uint32]string{}, kick: make(chan struct{}, 1),
		known: map[uint32]inventory.Map{6: {ID: 6, Name: "plain", TypeID: 2, KeySize: 4, ValueSize: 4, MaxEntries: 1}}}
	c.withTypes(btffmt.NewCache(func(id uint32) (btffmt.Resolved, error) {
		resolved = append(resolved, id)
		return kernel[id], nil
	}))
	update := func(m event.Map) *event.Event {
		ev := &event.Event{Type: event.MapUpdate, HasResult: true, Map: &m, HasKey: true, HasValue: true}
		c.enrich(ev)
		return ev
	}
	for range 2 {
		if ev := update(shape); ev.Map.ValueType != event.Renderer(cfg) || ev.Map.KeyType != nil {
			t.Fatalf("types %v %v", ev.Map.KeyType, ev.Map.ValueType)
		}
	}
	// Id 5 is freed and given to a new map of the same shape, with other
	// types: its map_create says so.
	other := btffmt.Compile(&btf.Int{Name: "s64", Size: 8, Encoding: btf.Signed})
	kernel[5] = btffmt.Resolved{Shape: shape, BTFID: 4, Value: other}
	m := shape
	c.enrich(&event.Event{Type: event.MapCreate, HasResult: true, Result: 3, Map: &m})
	if ev := update(shape); ev.Map.ValueType != event.Renderer(other) {
		t.Errorf("after the id's map_create: %v", ev.Map.ValueType)
	}
	if ev := update(event.Map{ID: 6, Name: "plain", Type: 2, KeySize: 4, ValueSize: 4, MaxEntries: 1}); ev.Map.KeyType != nil || ev.Map.ValueType != nil {
		t.Error("a map without BTF has types")
	}
	c.enrich(&event.Event{Type: event.MapGetFDByID, HasResult: true, Map: &event.Map{ID: 7}})
	if len(resolved) != 2 || resolved[0] != 5 || resolved[1] != 5 {
		t.Errorf("resolved %v, want map 5 twice (once per map that had the id)", resolved)
	}
	// Id 6 is given to a map of the same shape with BTF: after its
	// map_create, the inventory's word on the old map does not count.
	plain := event.Map{ID: 6, Name: "plain", Type: 2, KeySize: 4, ValueSize: 4, MaxEntries: 1}
	kernel[6] = btffmt.Resolved{Shape: plain, BTFID: 9, Value: cfg}
	m6 := plain
	c.enrich(&event.Event{Type: event.MapCreate, HasResult: true, Result: 4, Map: &m6})
	if ev := update(plain); ev.Map.ValueType != event.Renderer(cfg) {
		t.Errorf("a new map on a reused id, listed without BTF before: %v", ev.Map.ValueType)
	}
}

// TestContextBounded: the map context at its bounds: an inventory of more
// maps than maxContextMaps keeps that many (the maps beyond are not
// quiet), and a map pinned, loaded and created over and over keeps at
// most maxPerMap pins and programs and maxOwnersPer related processes;
// the heap it holds at the bound is what docs/memory.md states.
func TestContextBounded(t *testing.T) {
	const pinsEach = 2
	collect := func(o inventory.Options) ([]inventory.Map, error) {
		n := maxContextMaps + 1000
		if o.MaxMaps > 0 && n > o.MaxMaps {
			n = o.MaxMaps
			*o.Truncated = true
		}
		maps := make([]inventory.Map, n)
		for i := range maps {
			m := &maps[i]
			m.ID, m.Name, m.Type = uint32(i+1), "some_map_name", "hash"
			m.Programs = []inventory.Program{{ID: uint32(i + 1), Name: "some_program"}}
			for p := range pinsEach {
				m.Pins = append(m.Pins, fmt.Sprintf("/sys/fs/bpf/some/where/map_%d_%d", i, p))
			}
		}
		return maps, nil
	}
	var ms1, ms2 runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&ms1)
	stop := make(chan struct{})
	defer close(stop)
	c := newMapContext(stop, collect, nil)
	runtime.GC()
	runtime.ReadMemStats(&ms2)
	held := int64(ms2.HeapAlloc) - int64(ms1.HeapAlloc)
	c.mu.Lock()
	known := len(c.known)
	c.mu.Unlock()
	if known != maxContextMaps {
		t.Errorf("%d maps known, bound %d", known, maxContextMaps)
	}
	if per := held / maxContextMaps; per > contextMapBytes {
		t.Errorf("the context holds %d bytes a map (%d MiB), docs/memory.md says %d", per, held>>20, contextMapBytes)
	}
	t.Logf("%d maps: %d MiB, %d bytes each", known, held>>20, held/maxContextMaps)
	if c.quiet(maxContextMaps + 10) {
		t.Error("a map beyond the bound is quiet")
	}
	for i := range 3 * maxPerMap {
		c.enrich(&event.Event{Type: event.ObjPin, HasResult: true, Path: fmt.Sprintf("/p/%d", i), Map: &event.Map{ID: 7}})
		c.enrich(&event.Event{Type: event.ProgLoad, HasResult: true, Result: 3,
			Prog: &event.Prog{ID: uint32(i), Name: "p"}, Extra: &event.Extra{ProgMaps: []uint32{7}, ProgMapCount: 1}})
	}
	for pid := range uint32(3 * maxOwnersPer) {
		c.enrich(&event.Event{Type: event.MapCreate, HasResult: true, Process: &event.Process{PID: pid}, Map: &event.Map{ID: 7}})
	}
	if len(c.pins[7]) > maxPerMap || len(c.programs[7]) > maxPerMap || len(c.owners[7]) > maxOwnersPer {
		t.Errorf("map 7: %d pins, %d programs, %d related processes; bounds %d, %d, %d", len(c.pins[7]), len(c.programs[7]), len(c.owners[7]), maxPerMap, maxPerMap, maxOwnersPer)
	}
	for id := range uint32(maxOwnerMaps + 100) {
		c.own(id+1_000_000, 1, "creator")
	}
	c.refresh(false)
	if len(c.owners) > maxOwnerMaps {
		t.Errorf("related processes of %d maps kept, bound %d", len(c.owners), maxOwnerMaps)
	}
}

// TestContextCreateDuringRefresh: a map_create of a listed id while a
// refresh reads the inventory must not write the map the refresh is
// reading (its Options.Known): Go ends the process on a concurrent map
// read and write, which a busy host met in the background refresh.
func TestContextCreateDuringRefresh(t *testing.T) {
	stop := make(chan struct{})
	defer close(stop)
	const n = 4096
	listed := make([]inventory.Map, n)
	for i := range listed {
		listed[i] = inventory.Map{ID: uint32(i + 1), Name: "m"}
	}
	reading := make(chan struct{}, 1)
	collect := func(o inventory.Options) ([]inventory.Map, error) {
		if o.Known != nil {
			select {
			case reading <- struct{}{}:
			default:
			}
			for range 50 {
				for id := range uint32(n) {
					_ = o.Known[id+1]
				}
			}
		}
		return listed, nil
	}
	c := newMapContext(stop, collect, nil)
	go c.refresh(false)
	<-reading
	for id := range uint32(n) {
		c.enrich(&event.Event{Type: event.MapCreate, HasResult: true, Map: &event.Map{ID: id + 1}})
	}
}

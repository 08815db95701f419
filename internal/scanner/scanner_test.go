package scanner

import (
	"bytes"
	"encoding/binary"
	"os"
	"runtime"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"golang.org/x/sys/unix"

	"github.com/bpfmon/bpfmon/internal/event"
	"github.com/bpfmon/bpfmon/internal/testutil"
)

// passes runs n passes and returns the events about mapID.
func passes(t testing.TB, s *Scanner, n int, mapID uint32, between func(i int)) []*event.Event {
	t.Helper()
	var evs []*event.Event
	for i := range n {
		if between != nil {
			between(i)
		}
		err := s.Pass(nil, func(ev *event.Event) error {
			if ev.Map != nil && ev.Map.ID == mapID {
				evs = append(evs, ev)
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	return evs
}

func newScanner(t *testing.T) *Scanner {
	t.Helper()
	s, err := New(Config{Interval: time.Second, Grace: 10 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func le64(v uint64) []byte { return binary.LittleEndian.AppendUint64(nil, v) }
func le32(v uint32) []byte { return binary.LittleEndian.AppendUint32(nil, v) }

// TestMmapWrite: a process writes an mmap'ed BPF_F_MMAPABLE array, which
// no hook sees.
func TestMmapWrite(t *testing.T) {
	testutil.RequireRoot(t)
	m, err := ebpf.NewMap(&ebpf.MapSpec{Name: "t_mmap", Type: ebpf.Array, KeySize: 4, ValueSize: 8, MaxEntries: 8, Flags: unix.BPF_F_MMAPABLE})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	mem, err := unix.Mmap(m.FD(), 0, os.Getpagesize(), unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Munmap(mem)
	s := newScanner(t)
	id := testutil.MapID(t, m)
	evs := passes(t, s, 2, id, func(i int) {
		if i == 1 {
			binary.LittleEndian.PutUint64(mem[3*8:], 0xdeadbeef)
		}
	})
	if len(evs) != 1 {
		t.Fatalf("%d events, want 1: %+v", len(evs), evs)
	}
	ev := evs[0]
	if ev.Type != event.MapChanged || ev.Source != event.SourceScan || ev.Change != event.ChangeModified ||
		!bytes.Equal(ev.Key, le32(3)) || !bytes.Equal(ev.Value, le64(0xdeadbeef)) || !bytes.Equal(ev.OldValue, le64(0)) ||
		ev.Map.Name != "t_mmap" {
		t.Errorf("event %+v", ev)
	}
}

// progWriting loads a socket filter that writes value at key of m, through
// the bpf_map_update_elem helper or, with viaPointer, through the pointer
// bpf_map_lookup_elem returns.
func progWriting(t *testing.T, m *ebpf.Map, key uint32, value int32, viaPointer bool) *ebpf.Program {
	t.Helper()
	insns := asm.Instructions{
		asm.StoreImm(asm.R10, -4, int64(key), asm.Word),
		asm.Mov.Imm(asm.R5, value),
		asm.StoreMem(asm.R10, -16, asm.R5, asm.DWord),
		asm.LoadMapPtr(asm.R1, m.FD()),
		asm.Mov.Reg(asm.R2, asm.R10),
		asm.Add.Imm(asm.R2, -4),
	}
	if viaPointer {
		insns = append(insns,
			asm.FnMapLookupElem.Call(),
			asm.JEq.Imm(asm.R0, 0, "out"),
			asm.Mov.Imm(asm.R5, value),
			asm.StoreMem(asm.R0, 0, asm.R5, asm.DWord),
		)
	} else {
		insns = append(insns,
			asm.Mov.Reg(asm.R3, asm.R10),
			asm.Add.Imm(asm.R3, -16),
			asm.Mov.Imm(asm.R4, 0),
			asm.FnMapUpdateElem.Call(),
		)
	}
	insns = append(insns, asm.Mov.Imm(asm.R0, 0).WithSymbol("out"), asm.Return())
	p, err := ebpf.NewProgram(&ebpf.ProgramSpec{Type: ebpf.SocketFilter, License: "GPL", Instructions: insns})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	return p
}

func run(t *testing.T, p *ebpf.Program) {
	t.Helper()
	if _, err := p.Run(&ebpf.RunOptions{Data: make([]byte, 64)}); err != nil {
		t.Fatal(err)
	}
}

// TestProgramWrites: BPF programs writing through the helper (into a hash:
// an added key) and through a lookup pointer (into an array: the verifier
// inlines that lookup, so no hook could see it anyway).
func TestProgramWrites(t *testing.T) {
	testutil.RequireRoot(t)
	h, err := ebpf.NewMap(&ebpf.MapSpec{Name: "t_hash", Type: ebpf.Hash, KeySize: 4, ValueSize: 8, MaxEntries: 8})
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	a, err := ebpf.NewMap(&ebpf.MapSpec{Name: "t_arr", Type: ebpf.Array, KeySize: 4, ValueSize: 8, MaxEntries: 8})
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	helper := progWriting(t, h, 5, 0x55, false)
	pointer := progWriting(t, a, 6, 0x66, true)
	s := newScanner(t)

	var evs []*event.Event
	for i := range 2 {
		if i == 1 {
			run(t, helper)
			run(t, pointer)
		}
		err := s.Pass(nil, func(ev *event.Event) error {
			if ev.Map != nil && (ev.Map.ID == testutil.MapID(t, h) || ev.Map.ID == testutil.MapID(t, a)) {
				evs = append(evs, ev)
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	var added, modified bool
	for _, ev := range evs {
		switch {
		case ev.Map.Name == "t_hash" && ev.Change == event.ChangeAdded && bytes.Equal(ev.Key, le32(5)) && bytes.Equal(ev.Value, le64(0x55)) && !ev.HasOldValue:
			added = true
		case ev.Map.Name == "t_arr" && ev.Change == event.ChangeModified && bytes.Equal(ev.Key, le32(6)) && bytes.Equal(ev.Value, le64(0x66)) && bytes.Equal(ev.OldValue, le64(0)):
			modified = true
		default:
			t.Errorf("unexpected event %+v", ev)
		}
	}
	if !added || !modified {
		t.Errorf("helper write reported: %v, pointer write reported: %v (%d events)", added, modified, len(evs))
	}
}

// TestExplainedAndRemoved: a change a sensor reported is not repeated; an
// unreported delete is reported as removed.
func TestExplainedAndRemoved(t *testing.T) {
	testutil.RequireRoot(t)
	m, err := ebpf.NewMap(&ebpf.MapSpec{Name: "t_expl", Type: ebpf.Hash, KeySize: 4, ValueSize: 8, MaxEntries: 8})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	m.Update(uint32(1), uint64(1), 0)
	m.Update(uint32(2), uint64(2), 0)
	s := newScanner(t)
	id := testutil.MapID(t, m)
	evs := passes(t, s, 2, id, func(i int) {
		if i == 1 {
			m.Update(uint32(1), uint64(100), 0)
			s.Explain(id, le32(1), 4, true, time.Now()) // as the syscall sensor would
			m.Delete(uint32(2))                         // not explained
		}
	})
	if len(evs) != 1 || evs[0].Change != event.ChangeRemoved || !bytes.Equal(evs[0].Key, le32(2)) || !bytes.Equal(evs[0].OldValue, le64(2)) || evs[0].HasValue {
		t.Fatalf("want only the removal of key 2, got %d events: %+v", len(evs), evs)
	}
}

// TestNoiseLimit: a map with many changed keys gets MaxKeyed keyed events
// and one summary with the count.
func TestNoiseLimit(t *testing.T) {
	testutil.RequireRoot(t)
	m, err := ebpf.NewMap(&ebpf.MapSpec{Name: "t_noisy", Type: ebpf.Array, KeySize: 4, ValueSize: 8, MaxEntries: 100})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	s, err := New(Config{Interval: time.Second, Grace: 10 * time.Millisecond, MaxKeyed: 5})
	if err != nil {
		t.Fatal(err)
	}
	id := testutil.MapID(t, m)
	evs := passes(t, s, 2, id, func(i int) {
		if i == 1 {
			for k := range uint32(40) {
				m.Update(k, uint64(k+1), 0)
			}
		}
	})
	var keyed, summaries int
	for _, ev := range evs {
		if ev.HasKey {
			keyed++
		} else if ev.HasCount && ev.Count == 40 {
			summaries++
		}
	}
	if keyed != 5 || summaries != 1 || len(evs) != 6 {
		t.Errorf("keyed %d (want 5), summaries %d (want 1 with count 40), events %d", keyed, summaries, len(evs))
	}
}

// TestMemoryBound: past the memory budget a map is kept as hashes; changed
// and added keys are still reported with their key and new value, removed
// ones as a count, and explained removals are still recognised.
func TestMemoryBound(t *testing.T) {
	testutil.RequireRoot(t)
	m, err := ebpf.NewMap(&ebpf.MapSpec{Name: "t_bound", Type: ebpf.Hash, KeySize: 4, ValueSize: 8, MaxEntries: 256})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	for k := range uint32(100) {
		m.Update(k, uint64(k), 0)
	}
	// 32 KiB: one large map's share is 7.5 KiB, which 100 elements fit
	// as hashes (4.5 KiB) but not as contents (9.5 KiB, half the share).
	const budget = 32 << 10
	s, err := New(Config{Interval: time.Second, Grace: time.Millisecond, Memory: budget})
	if err != nil {
		t.Fatal(err)
	}
	id := testutil.MapID(t, m)
	s.only = map[uint32]bool{id: true}
	evs := passes(t, s, 2, id, func(i int) {
		if i == 1 {
			m.Update(uint32(7), uint64(700), 0) // modified
			m.Update(uint32(200), uint64(2), 0) // added
			m.Delete(uint32(8))                 // removed
			m.Delete(uint32(9))                 // removed
			m.Delete(uint32(10))                // removed, but explained:
			s.Explain(id, le32(10), 4, true, time.Now())
		}
	})
	if snap := s.snaps[id]; snap == nil || snap.hashes == nil {
		t.Errorf("the 100-element map was not kept as hashes under a %d-byte budget", budget)
	}
	if want := uint64(snapOverhead + 98*hashedOverhead); s.LastPass.SnapshotMemory != want || s.LastPass.Hashed != 1 {
		t.Errorf("snapshot memory %d, want %d for 98 hashed elements: %+v", s.LastPass.SnapshotMemory, want, s.LastPass)
	}
	var modified, added, removed bool
	for _, ev := range evs {
		switch {
		case ev.Change == event.ChangeModified && bytes.Equal(ev.Key, le32(7)) && bytes.Equal(ev.Value, le64(700)) && !ev.HasOldValue:
			modified = true
		case ev.Change == event.ChangeAdded && bytes.Equal(ev.Key, le32(200)):
			added = true
		case ev.Change == event.ChangeRemoved && !ev.HasKey && ev.HasCount && ev.Count == 2:
			removed = true
		default:
			t.Errorf("unexpected %+v", ev)
		}
	}
	if !modified || !added || !removed {
		t.Errorf("modified %v added %v removed(count 2) %v: %d events", modified, added, removed, len(evs))
	}
}

// TestCreatedMapBaseline: a map created while bpfmon runs and written
// through mmap before any pass saw it: its creation, not the first pass, is
// the baseline, so the write is reported, whether the sensor's map_create
// arrived first (Created) or not (the id is above those present at start).
func TestCreatedMapBaseline(t *testing.T) {
	testutil.RequireRoot(t)
	for _, announced := range []bool{true, false} {
		s := newScanner(t)
		passes(t, s, 1, 0, nil) // a pass before the map exists
		m, err := ebpf.NewMap(&ebpf.MapSpec{Name: "t_new", Type: ebpf.Array, KeySize: 4, ValueSize: 8, MaxEntries: 4, Flags: unix.BPF_F_MMAPABLE})
		if err != nil {
			t.Fatal(err)
		}
		defer m.Close()
		id := testutil.MapID(t, m)
		if announced {
			s.Created(event.Map{ID: id, Name: "t_new", Type: uint32(ebpf.Array), KeySize: 4, ValueSize: 8, MaxEntries: 4, Flags: unix.BPF_F_MMAPABLE}, time.Now())
		}
		mem, err := unix.Mmap(m.FD(), 0, os.Getpagesize(), unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
		if err != nil {
			t.Fatal(err)
		}
		defer unix.Munmap(mem)
		binary.LittleEndian.PutUint64(mem[2*8:], 0x42)
		evs := passes(t, s, 1, id, nil)
		if len(evs) != 1 || evs[0].Change != event.ChangeModified || !bytes.Equal(evs[0].Key, le32(2)) || !bytes.Equal(evs[0].Value, le64(0x42)) || !bytes.Equal(evs[0].OldValue, le64(0)) {
			t.Fatalf("announced=%v: want key 2 modified from 0 to 0x42, got %d events: %+v", announced, len(evs), evs)
		}
	}
}

// TestExplainTimes: each key keeps its own latest write time, also keys
// first explained together by one batch call, and a map's writes are
// forgotten once old.
func TestExplainTimes(t *testing.T) {
	s, err := New(Config{})
	if err != nil {
		t.Fatal(err)
	}
	t0 := time.Now()
	s.Explain(7, append(le32(1), le32(2)...), 4, true, t0) // a batch of two
	s.Explain(7, le32(1), 4, true, t0.Add(2*time.Second))
	since := t0.Add(time.Second + explainSlack)
	if !s.explained(7, string(le32(1)), since) {
		t.Error("key 1, written again later, not explained")
	}
	if s.explained(7, string(le32(2)), since) {
		t.Error("key 2 took key 1's later time")
	}
	if s.explained(8, string(le32(1)), t0.Add(-time.Second)) {
		t.Error("another map's key explained")
	}
	s.forget(t0.Add(time.Second))
	if s.explained(7, string(le32(2)), t0.Add(-time.Second)) || !s.explained(7, string(le32(1)), since) {
		t.Error("forget dropped the wrong writes")
	}
}

// TestQuietMaps: a map that can change only through bpf(2) is not read
// again until a reported write concerns it, a sensor lost records, or the
// FullEvery-th pass comes; a write by no reported path is then found.
func TestQuietMaps(t *testing.T) {
	testutil.RequireRoot(t)
	m, err := ebpf.NewMap(&ebpf.MapSpec{Name: "t_quiet", Type: ebpf.Hash, KeySize: 4, ValueSize: 8, MaxEntries: 8})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	mm, err := ebpf.NewMap(&ebpf.MapSpec{Name: "t_quiet_mm", Type: ebpf.Array, KeySize: 4, ValueSize: 8, MaxEntries: 1, Flags: unix.BPF_F_MMAPABLE})
	if err != nil {
		t.Fatal(err)
	}
	defer mm.Close()
	id, mmID := testutil.MapID(t, m), testutil.MapID(t, mm)
	s, err := New(Config{Interval: time.Second, Grace: 10 * time.Millisecond,
		Quiet: func(uint32) bool { return true }, QuietHost: func() bool { return true }})
	if err != nil {
		t.Fatal(err)
	}
	changed := func(i int) int {
		n := 0
		err := s.Pass(nil, func(ev *event.Event) error {
			if ev.Map != nil && (ev.Map.ID == id || ev.Map.ID == mmID) && ev.Type == event.MapChanged {
				n++
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		return n
	}
	changed(0) // the full first pass: both read
	if s.LastPass.Unread != 0 {
		t.Fatal("the first pass left maps unread")
	}
	if err := m.Update(uint32(1), uint64(1), 0); err != nil {
		t.Fatal(err)
	}
	if err := mm.Update(uint32(0), uint64(1), 0); err != nil { // stands for a write through the mapping
		t.Fatal(err)
	}
	// Pass 1: the hash is quiet and unexplained, so not read; the
	// mmapable array is never quiet.
	if n := changed(1); n != 1 {
		t.Fatalf("pass 1: %d map_changed events, want only the mmapable array's", n)
	}
	if s.LastPass.Unread == 0 {
		t.Error("pass 1 read every map")
	}
	// Between full passes only known and reported maps are visited: one
	// created unreported waits for the full pass, one reported is read.
	late, err := ebpf.NewMap(&ebpf.MapSpec{Name: "t_quiet_late", Type: ebpf.Hash, KeySize: 4, ValueSize: 8, MaxEntries: 8})
	if err != nil {
		t.Fatal(err)
	}
	defer late.Close()
	lateID := testutil.MapID(t, late)
	changed(1)
	if s.snaps[lateID] != nil {
		t.Error("a pass between full ones listed every map id")
	}
	s.Created(event.Map{ID: lateID, Type: uint32(ebpf.Hash), KeySize: 4, ValueSize: 8, MaxEntries: 8}, time.Now())
	changed(1)
	if s.snaps[lateID] == nil {
		t.Error("a map reported created was not read")
	}

	s.Unsure() // a sensor lost records
	if n := changed(2); n != 1 {
		t.Fatalf("pass after a loss: %d map_changed events, want the hash's unreported write", n)
	}
	// A reported write: read at the next pass, and explained.
	m.Update(uint32(2), uint64(2), 0)
	s.Explain(id, le32(2), 4, true, time.Now())
	if n := changed(3); n != 0 {
		t.Fatalf("an explained write made %d map_changed events", n)
	}
	// An unreported write is found at the full pass at the latest.
	m.Update(uint32(3), uint64(3), 0)
	found := -1
	for i := 6; i <= FullEvery+1 && found < 0; i++ {
		if changed(i) > 0 {
			found = i
		}
	}
	if found != FullEvery {
		t.Fatalf("an unreported write to a quiet map found at pass %d, want the full pass %d", found, FullEvery)
	}
}

// TestExplainBounded: a burst of distinct keys keeps at most
// maxExplainKeysPerMap of them; beyond, the map is remembered as written
// at the latest time, and nothing it covered becomes unexplained.
func TestExplainBounded(t *testing.T) {
	s, err := New(Config{})
	if err != nil {
		t.Fatal(err)
	}
	t0 := time.Now()
	for k := range uint32(maxExplainKeysPerMap + 10) {
		s.Explain(9, le32(k), 4, true, t0.Add(time.Duration(k)))
	}
	// One collapse, at key maxExplainKeysPerMap; the 9 keys after it kept.
	if len(s.writes[9]) != 9 || s.explainKeys != 9 || s.mapWrites[9].IsZero() {
		t.Fatalf("%d keys kept (%d counted), map time %v", len(s.writes[9]), s.explainKeys, s.mapWrites[9])
	}
	for _, k := range []uint32{0, maxExplainKeysPerMap, 12345678} {
		if !s.explained(9, string(le32(k)), t0) {
			t.Errorf("key %d: not explained after the collapse", k)
		}
	}
	s.forget(t0.Add(time.Hour))
	if s.explainKeys != 0 || len(s.writes)+len(s.mapWrites) != 0 {
		t.Errorf("after forget: %d keys, %d maps, %d map times", s.explainKeys, len(s.writes), len(s.mapWrites))
	}
}

// TestExplainBoundedMemory: the reported-keys table at its bound, in
// maps of distinct 8-byte keys, holds at most explainKeyBytes a key.
func TestExplainBoundedMemory(t *testing.T) {
	s, err := New(Config{})
	if err != nil {
		t.Fatal(err)
	}
	var ms1, ms2 runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&ms1)
	t0 := time.Now()
	for k := range uint64(2 * maxExplainKeys) {
		// Below the per-map bound in each map: the total bound bites.
		s.Explain(uint32(k/(maxExplainKeysPerMap-1)), le64(k), 8, true, t0)
	}
	runtime.GC()
	runtime.ReadMemStats(&ms2)
	runtime.KeepAlive(s)
	if s.explainKeys > maxExplainKeys {
		t.Errorf("%d keys kept, bound %d", s.explainKeys, maxExplainKeys)
	}
	held := int64(ms2.HeapAlloc) - int64(ms1.HeapAlloc)
	if held > maxExplainKeys*explainKeyBytes {
		t.Errorf("the table holds %d MiB for %d keys, bound %d MiB", held>>20, s.explainKeys, maxExplainKeys*explainKeyBytes>>20)
	}
	t.Logf("%d keys: %d bytes each", s.explainKeys, held/int64(max(s.explainKeys, 1)))
}

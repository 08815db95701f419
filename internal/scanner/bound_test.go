package scanner

import (
	"runtime"
	"testing"
	"time"

	"github.com/cilium/ebpf"

	"github.com/bpfmon/bpfmon/internal/event"
	"github.com/bpfmon/bpfmon/internal/testutil"
)

// bigHash is a u32 -> u64 hash map of n elements (key i, value i),
// filled with one BPF_MAP_UPDATE_BATCH.
func bigHash(t testing.TB, name string, n int) *ebpf.Map {
	t.Helper()
	m, err := ebpf.NewMap(&ebpf.MapSpec{Name: name, Type: ebpf.Hash, KeySize: 4, ValueSize: 8, MaxEntries: uint32(n)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	keys := make([]uint32, n)
	vals := make([]uint64, n)
	for i := range keys {
		keys[i], vals[i] = uint32(i), uint64(i)
	}
	if _, err := m.BatchUpdate(keys, vals, nil); err != nil {
		t.Fatal(err)
	}
	return m
}

// boundScanner is a scanner with this memory budget that sees only these
// maps.
func boundScanner(t testing.TB, memory int64, maps ...*ebpf.Map) *Scanner {
	t.Helper()
	s, err := New(Config{Interval: time.Second, Grace: time.Millisecond, Memory: memory})
	if err != nil {
		t.Fatal(err)
	}
	s.only = map[uint32]bool{}
	for _, m := range maps {
		s.only[testutil.MapID(t, m)] = true
	}
	return s
}

// checkBound fails when what the scanner holds exceeds its budget.
func checkBound(t testing.TB, s *Scanner) {
	t.Helper()
	if s.memUsed > uint64(s.cfg.Memory) || s.LastPass.SnapshotMemory > uint64(s.cfg.Memory) {
		t.Errorf("snapshots hold %d bytes, over --scan-memory %d", s.memUsed, s.cfg.Memory)
	}
	var sum uint64
	for _, snap := range s.snaps {
		sum += snap.mem
	}
	if sum != s.memUsed {
		t.Errorf("snapshots hold %d bytes, %d counted", sum, s.memUsed)
	}
}

// TestCoarseComparison: a map whose hashes exceed its share of the budget
// is compared per range of key hashes: a change no sensor reported is
// reported with granularity "range" and the ranges' count, a reported one
// is quiet, and the snapshots stay within the budget.
func TestCoarseComparison(t *testing.T) {
	testutil.RequireRoot(t)
	m := bigHash(t, "t_coarse", 20000)
	id := testutil.MapID(t, m)
	const budget = 64 << 10 // a large map's share: 15 KiB; hashes: 800 KB
	s := boundScanner(t, budget, m)
	evs := passes(t, s, 3, id, func(i int) {
		switch i {
		case 1:
			for _, k := range []uint32{5, 500, 5000} {
				m.Update(k, uint64(1e9), 0)
			}
		case 2:
			m.Update(uint32(77), uint64(1e9), 0)
			s.Explain(id, le32(77), 4, true, time.Now())
		}
		checkBound(t, s)
	})
	checkBound(t, s)
	snap := s.snaps[id]
	if snap == nil || len(snap.ranges) < 2 || snap.granularity() != GranularityRange {
		t.Fatalf("the 20,000-element map was not kept as ranges under a %d-byte budget: %+v", budget, snap)
	}
	if s.LastPass.Coarse != 1 || s.LastPass.Quiet != 1 {
		t.Errorf("last pass: %+v, want 1 coarse map and 1 change explained", s.LastPass)
	}
	if len(evs) != 1 {
		t.Fatalf("%d events, want 1 (the unreported changes): %+v", len(evs), evs)
	}
	ev := evs[0]
	if ev.Type != event.MapChanged || ev.Granularity != GranularityRange || !ev.HasCount || ev.Count < 1 || ev.Count > 3 || ev.HasKey || ev.Reason == "" {
		t.Errorf("coarse change: %+v", ev)
	}
	t.Logf("%s", ev.Reason)
}

// TestCoarseWholeMap: with room for a single hash, the map is compared as
// a whole (granularity "map").
func TestCoarseWholeMap(t *testing.T) {
	testutil.RequireRoot(t)
	m := bigHash(t, "t_coarse_map", 2000)
	id := testutil.MapID(t, m)
	s := boundScanner(t, 2300, m) // a large map's share: 539 bytes
	evs := passes(t, s, 2, id, func(i int) {
		if i == 1 {
			m.Delete(uint32(3))
		}
	})
	checkBound(t, s)
	if len(evs) != 1 || evs[0].Granularity != GranularityMap || evs[0].Count != 1 {
		for _, ev := range evs {
			t.Logf("%+v", *ev)
		}
		t.Fatalf("%d events, want one of granularity map", len(evs))
	}
}

// TestNotScannedForMemory: a budget too small for even one hash of a map
// lists it as not scanned, with the reason, and counts it.
func TestNotScannedForMemory(t *testing.T) {
	testutil.RequireRoot(t)
	m := bigHash(t, "t_nomem", 100)
	id := testutil.MapID(t, m)
	s := boundScanner(t, 1024, m)
	evs := passes(t, s, 2, id, nil)
	checkBound(t, s)
	if len(evs) != 1 || evs[0].Type != event.MapNotScanned || evs[0].Reason == "" {
		t.Fatalf("events %+v, want one map_not_scanned", evs)
	}
	if s.LastPass.NoMemory != 1 || s.LastPass.Skipped != 1 {
		t.Errorf("last pass %+v, want 1 map not scanned for memory", s.LastPass)
	}
}

// TestSmallMapsKeepDetail: a huge map takes at most its share; a small map
// read after it keeps its contents, so its changes have old values.
func TestSmallMapsKeepDetail(t *testing.T) {
	testutil.RequireRoot(t)
	big := bigHash(t, "t_huge", 50000)
	small := bigHash(t, "t_small", 4)
	id := testutil.MapID(t, small)
	s := boundScanner(t, 1<<20, big, small)
	evs := passes(t, s, 2, id, func(i int) {
		if i == 1 {
			small.Update(uint32(2), uint64(99), 0)
			big.Update(uint32(2), uint64(99), 0)
		}
	})
	checkBound(t, s)
	if s.snaps[testutil.MapID(t, big)].ranges == nil {
		t.Errorf("the 50,000-element map is not coarse under 1 MiB")
	}
	if len(evs) != 1 || !evs[0].HasOldValue || !evs[0].HasKey {
		t.Fatalf("events about the small map %+v, want one with its key and old value", evs)
	}
}

// TestCandidatesBound: changes past the candidates' share of the budget
// are judged at once and counted, none lost.
func TestCandidatesBound(t *testing.T) {
	testutil.RequireRoot(t)
	m := bigHash(t, "t_cands", 200)
	id := testutil.MapID(t, m)
	s := boundScanner(t, 64<<10, m) // candidates: 4 KiB, about 10
	evs := passes(t, s, 2, id, func(i int) {
		if i == 1 {
			for k := range uint32(100) {
				m.Update(k, uint64(1e9), 0)
			}
		}
	})
	checkBound(t, s)
	if s.snaps[id].hashes == nil {
		t.Fatalf("the 200-element map is not hashed")
	}
	keyed, counted := 0, uint64(0)
	for _, ev := range evs {
		switch {
		case ev.HasKey:
			keyed++
		case ev.HasCount:
			counted += ev.Count
		}
	}
	if keyed < 1 || keyed > DefaultMaxKeyed || counted != 100 {
		t.Errorf("%d keyed events, summary count %d: want 1 to %d and 100", keyed, counted, DefaultMaxKeyed)
	}
}

// TestBoundHeap: the Go heap the scanner keeps after passes over a
// 1,000,000-element map changed between them stays within an 8 MiB
// budget: the estimates the bound counts are not below what Go holds.
func TestBoundHeap(t *testing.T) {
	testutil.RequireRoot(t)
	if testing.Short() {
		t.Skip("1M-element map")
	}
	const budget = 8 << 20
	m := bigHash(t, "t_heap", 1_000_000)
	live := func() uint64 {
		runtime.GC()
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		return ms.HeapAlloc
	}
	before := live()
	s := boundScanner(t, budget, m)
	passes(t, s, 3, testutil.MapID(t, m), func(i int) {
		m.Update(uint32(i), uint64(1e9), 0)
	})
	checkBound(t, s)
	after := live()
	runtime.KeepAlive(s)
	if after > before && after-before > budget {
		t.Errorf("the scanner holds %d MiB of heap after 3 passes, over its %d MiB budget", (after-before)>>20, budget>>20)
	}
	t.Logf("heap held: %d KiB; counted %d KiB; %+v", (int64(after)-int64(before))>>10, s.memUsed>>10, s.LastPass)
}

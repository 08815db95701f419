package inventory

import (
	"slices"
	"testing"

	"github.com/bpfmon/bpfmon/internal/bpfiter"
	"github.com/bpfmon/bpfmon/internal/testprogs/hider"
	"github.com/bpfmon/bpfmon/internal/testutil"
)

// TestCrossViewIterators: a rootkit hides its map and its program from
// bpf(2)'s listing, and nothing else shows the map (not pinned, held by
// no other process, used by no listed program: the program using it is
// hidden too). Only the bpf_map and bpf_prog iterators still see them:
// Collect lists the map hidden with what the iterator tells of it, and
// the program among the hidden programs.
func TestCrossViewIterators(t *testing.T) {
	testutil.RequireRoot(t)
	testutil.RequireTracefs(t)
	_, err := bpfiter.Shared()
	testutil.Need(t, testutil.Iterators, err, "this kernel refuses BPF iterators")
	h, err := hider.Load()
	testutil.Need(t, testutil.ProbeWriteUser, err, "the hiding program calls bpf_probe_write_user")
	defer h.Close()
	if err := h.HideProg(); err != nil {
		t.Fatal(err)
	}
	if err := h.Hide(); err != nil {
		t.Fatal(err)
	}
	if slices.Contains(bpftoolIDs(t), h.MapID) {
		t.Fatalf("bpftool's listing still has map %d", h.MapID)
	}

	var progs []HiddenProg
	maps := collect(t, Options{HiddenProgs: &progs, Loaded: []uint32{h.ProgID}})
	m := find(t, maps, h.MapID)
	if m.Hidden == nil {
		t.Fatalf("map %d listed but not hidden: %+v", h.MapID, m)
	}
	if !slices.Equal(m.Hidden.SeenBy, []string{ViewIterator}) {
		t.Errorf("seen by %q, want only %s", m.Hidden.SeenBy, ViewIterator)
	}
	for _, v := range []string{ViewNextID, ViewFDByID, ViewPins, ViewFdinfo, ViewProgMaps} {
		if !slices.Contains(m.Hidden.MissedBy, v) {
			t.Errorf("missed by %q, want %s among them", m.Hidden.MissedBy, v)
		}
	}
	if m.Name != "hider_ids" || m.Type != "array" || m.KeySize != 4 || m.ValueSize != 8 || m.MaxEntries != 4 || m.Hidden.Via != "" {
		t.Errorf("got %+v, want hider_ids, an array of 4 8-byte values, from the iterator (no via)", m)
	}

	i := slices.IndexFunc(progs, func(p HiddenProg) bool { return p.ID == h.ProgID })
	if i < 0 {
		t.Fatalf("hidden programs %+v, want %d", progs, h.ProgID)
	}
	p := progs[i]
	// Attached through a bpf_link where the kernel has perf-event links
	// (5.15+), else through a perf event's fd: then no link shows it.
	linked, err := linkProgs()
	if err != nil {
		t.Fatal(err)
	}
	seenBy, missedBy := []string{ViewProgIterator, ViewSensor}, []string{ViewFDByID, ViewNextID}
	if linked[h.ProgID] {
		seenBy = []string{ViewLinks, ViewProgIterator, ViewSensor}
	} else {
		missedBy = []string{ViewLinks, ViewFDByID, ViewNextID}
	}
	if p.Name != "hide" || p.Type != "tracepoint" || !slices.Equal(p.Hidden.SeenBy, seenBy) || !slices.Equal(p.Hidden.MissedBy, missedBy) {
		t.Errorf("hidden program %+v, want hide, a tracepoint, seen by %q, missed by %q", p, seenBy, missedBy)
	}
	t.Logf("hidden program: %+v", p)
	if len(progs) != 1 {
		t.Errorf("hidden programs %+v, want only %d", progs, h.ProgID)
	}

	// Without the iterators, the map is seen by nothing: as before them.
	maps = collect(t, Options{NoIterators: true})
	if slices.ContainsFunc(maps, func(x Map) bool { return x.ID == h.MapID }) {
		t.Errorf("without the iterators, map %d still listed: the test does not test them", h.MapID)
	}
}

// TestCrossViewIteratorFreed is the benign control for the iterator view:
// an object the first walk saw and that is gone when the listing is asked
// again (freed during the pass) is not hidden, whether map or program.
func TestCrossViewIteratorFreed(t *testing.T) {
	testutil.RequireRoot(t)
	_, err := bpfiter.Shared()
	testutil.Need(t, testutil.Iterators, err, "this kernel refuses BPF iterators")
	iv := readIterView(false)
	const gone = 1<<32 - 2 // an id the kernel has not given out
	iv.maps[gone] = bpfiter.Map{ID: gone, Name: "freed"}
	if iv.progs != nil {
		iv.progs[gone] = bpfiter.Prog{ID: gone, Name: "freed"}
	}
	maps, errs := crossView(nil, nil, nil, nil, nil, iv)
	if len(maps) != 0 || len(errs) != 0 {
		t.Errorf("a map freed during the pass: %+v, %v; want nothing", maps, errs)
	}
	if progs := hiddenPrograms(iv, []uint32{gone}, progViews{}); len(progs) != 0 {
		t.Errorf("a program freed during the pass: %+v; want nothing", progs)
	}
}

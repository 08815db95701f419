package bpfiter

import (
	"errors"
	"slices"
	"testing"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"golang.org/x/sys/unix"

	"github.com/bpfmon/bpfmon/internal/bpfsys"
	"github.com/bpfmon/bpfmon/internal/testutil"
)

// TestListsWhatTheListingLists: with nothing hidden, the iterators give
// every map and program that GET_NEXT_ID gives, with the same attributes.
func TestListsWhatTheListingLists(t *testing.T) {
	testutil.RequireRoot(t)
	l, err := Open()
	testutil.Need(t, testutil.Iterators, err, "this kernel refuses BPF iterators")
	defer l.Close()
	m, err := ebpf.NewMap(&ebpf.MapSpec{Name: "bpfiter_test", Type: ebpf.Hash, KeySize: 4, ValueSize: 12, MaxEntries: 7, Flags: unix.BPF_F_NO_PREALLOC})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	p, err := ebpf.NewProgram(&ebpf.ProgramSpec{Name: "bpfiter_prog", Type: ebpf.SocketFilter, License: "GPL",
		Instructions: asm.Instructions{asm.LoadMapPtr(asm.R1, m.FD()), asm.Mov.Imm(asm.R0, 0), asm.Return()}})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	mi, _ := m.Info()
	mid, _ := mi.ID()
	pi, _ := p.Info()
	pid, _ := pi.ID()

	maps, err := l.Maps()
	if err != nil {
		t.Fatal(err)
	}
	i := slices.IndexFunc(maps, func(x Map) bool { return x.ID == uint32(mid) })
	want := Map{ID: uint32(mid), Type: uint32(ebpf.Hash), KeySize: 4, ValueSize: 12, MaxEntries: 7, Flags: unix.BPF_F_NO_PREALLOC, Name: "bpfiter_test"}
	if i < 0 || maps[i] != want {
		t.Errorf("map %d: got %+v, want %+v", mid, maps, want)
	}
	if !slices.IsSortedFunc(maps, func(a, b Map) int { return int(a.ID) - int(b.ID) }) {
		t.Errorf("maps not in id order")
	}
	sameAsListing(t, "maps", bpfsys.NextMapID, func() []uint32 {
		ms, err := l.Maps()
		if err != nil {
			t.Fatal(err)
		}
		return mapIDs(ms)
	})

	if !l.HasProgs() {
		testutil.Need(t, testutil.Iterators, l.ProgsErr, "this kernel has no bpf_prog iterator")
	}
	progs, err := l.Progs()
	if err != nil {
		t.Fatal(err)
	}
	j := slices.IndexFunc(progs, func(x Prog) bool { return x.ID == uint32(pid) })
	if wantp := (Prog{ID: uint32(pid), Type: uint32(ebpf.SocketFilter), Name: "bpfiter_prog"}); j < 0 || progs[j] != wantp {
		t.Errorf("program %d: got %+v, want %+v", pid, progs, wantp)
	}
	sameAsListing(t, "programs", bpfsys.NextProgID, func() []uint32 {
		ps, err := l.Progs()
		if err != nil {
			t.Fatal(err)
		}
		var ids []uint32
		for _, x := range ps {
			ids = append(ids, x.ID)
		}
		return ids
	})
}

// sameAsListing: the iterator's ids are GET_NEXT_ID's, in one of a few
// tries (other processes create and free objects between the two walks).
func sameAsListing(t *testing.T, what string, next func(uint32) (uint32, error), iter func() []uint32) {
	t.Helper()
	var ids, it []uint32
	for range 10 {
		ids, it = listed(t, next), iter()
		if slices.Equal(ids, it) {
			return
		}
	}
	t.Errorf("GET_NEXT_ID lists %s %v, the iterator %v", what, ids, it)
}

func mapIDs(ms []Map) []uint32 {
	var out []uint32
	for _, m := range ms {
		out = append(out, m.ID)
	}
	return out
}

func listed(t *testing.T, next func(uint32) (uint32, error)) []uint32 {
	var out []uint32
	for id := uint32(0); ; {
		n, err := next(id)
		if errors.Is(err, unix.ENOENT) {
			return out
		}
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, n)
		id = n
	}
}

package scanner

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/cilium/ebpf"

	"github.com/bpfmon/bpfmon/internal/event"
	"github.com/bpfmon/bpfmon/internal/testutil"
)

func scannerWithState(t *testing.T, path string) (*Scanner, error) {
	t.Helper()
	s, err := New(Config{Interval: time.Second, Grace: time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	return s, s.LoadState(path)
}

// TestStateWhileDown: stop, change maps, start: the changes are reported
// with while_down, key by key for a small map, as a count for a large one.
func TestStateWhileDown(t *testing.T) {
	testutil.RequireRoot(t)
	path := filepath.Join(t.TempDir(), "state.json")
	small, err := ebpf.NewMap(&ebpf.MapSpec{Name: "t_small", Type: ebpf.Hash, KeySize: 4, ValueSize: 8, MaxEntries: 8})
	if err != nil {
		t.Fatal(err)
	}
	defer small.Close()
	large, err := ebpf.NewMap(&ebpf.MapSpec{Name: "t_large", Type: ebpf.Array, KeySize: 4, ValueSize: 8, MaxEntries: 2000})
	if err != nil {
		t.Fatal(err)
	}
	defer large.Close()
	small.Update(uint32(1), uint64(1), 0)
	small.Update(uint32(2), uint64(2), 0)

	s1, err := scannerWithState(t, path)
	if err != nil {
		t.Fatalf("no state file yet: %v", err)
	}
	passes(t, s1, 1, 0, nil)
	if _, err := os.Stat(path); err != nil {
		t.Fatalf("state not saved: %v", err)
	}

	// bpfmon is down.
	small.Update(uint32(1), uint64(100), 0)
	small.Delete(uint32(2))
	large.Update(uint32(1500), uint64(7), 0)

	s2, err := scannerWithState(t, path)
	if err != nil {
		t.Fatal(err)
	}
	var evs []*event.Event
	err = s2.Pass(nil, func(ev *event.Event) error {
		if ev.Map != nil && (ev.Map.ID == mapID(t, small) || ev.Map.ID == mapID(t, large)) {
			evs = append(evs, ev)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	var modified, removed, largeChanged bool
	for _, ev := range evs {
		if !ev.WhileDown || ev.Source != event.SourceScan || ev.Type != event.MapChanged {
			t.Errorf("not a while_down map_changed: %+v", ev)
		}
		switch {
		case ev.Map.Name == "t_small" && ev.Change == event.ChangeModified && bytes.Equal(ev.Key, le32(1)) && bytes.Equal(ev.Value, le64(100)) && bytes.Equal(ev.OldValue, le64(1)):
			modified = true
		case ev.Map.Name == "t_small" && ev.Change == event.ChangeRemoved && bytes.Equal(ev.Key, le32(2)):
			removed = true
		case ev.Map.Name == "t_large" && ev.HasCount && !ev.HasKey:
			largeChanged = true
		default:
			t.Errorf("unexpected %+v", ev)
		}
	}
	if !modified || !removed || !largeChanged || len(evs) != 3 {
		t.Errorf("modified %v removed %v large %v, %d events", modified, removed, largeChanged, len(evs))
	}
	// The next pass compares with the live baseline, not the file.
	if more := passes(t, s2, 1, mapID(t, small), nil); len(more) != 0 {
		t.Errorf("while_down reported again: %+v", more)
	}
}

func TestStateCorruptAndForeign(t *testing.T) {
	testutil.RequireRoot(t)
	dir := t.TempDir()

	corrupt := filepath.Join(dir, "corrupt.json")
	os.WriteFile(corrupt, []byte(`{"format":"bpfmon-scanner-state","version":1,"maps":[{"id":`), 0o600)
	s, err := scannerWithState(t, corrupt)
	if err == nil || errors.Is(err, ErrForeignState) {
		t.Fatalf("corrupt state: %v", err)
	}
	passes(t, s, 1, 0, nil)
	if _, err := scannerWithState(t, corrupt); err != nil {
		t.Errorf("corrupt state was not rewritten: %v", err)
	}

	foreign := filepath.Join(dir, "foreign.txt")
	os.WriteFile(foreign, []byte("precious data\n"), 0o600)
	s, err = scannerWithState(t, foreign)
	if !errors.Is(err, ErrForeignState) {
		t.Fatalf("foreign file: %v", err)
	}
	passes(t, s, 1, 0, nil)
	if b, _ := os.ReadFile(foreign); string(b) != "precious data\n" {
		t.Errorf("foreign file overwritten: %q", b)
	}
}

package scanner

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"errors"
	"math/rand"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
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
		if ev.Map != nil && (ev.Map.ID == testutil.MapID(t, small) || ev.Map.ID == testutil.MapID(t, large)) {
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
	if more := passes(t, s2, 1, testutil.MapID(t, small), nil); len(more) != 0 {
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

// TestStateBadFiles: a state file truncated at any point, binary, huge or
// not a regular file never stops the scanner: LoadState says why, the
// pass runs, and only a file that is bpfmon's is rewritten.
func TestStateBadFiles(t *testing.T) {
	testutil.RequireRoot(t)
	dir := t.TempDir()
	m, err := ebpf.NewMap(&ebpf.MapSpec{Name: "t_bad_state", Type: ebpf.Hash, KeySize: 4, ValueSize: 8, MaxEntries: 8})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	m.Update(uint32(1), uint64(1), 0)
	good := filepath.Join(dir, "good.json")
	s, err := scannerWithState(t, good)
	if err != nil {
		t.Fatal(err)
	}
	passes(t, s, 1, 0, nil)
	valid, err := os.ReadFile(good)
	if err != nil {
		t.Fatal(err)
	}
	// Changed since the save: each pass decodes the saved entries.
	m.Update(uint32(1), uint64(2), 0)

	type tc struct {
		name      string
		data      []byte
		foreign   bool // left alone
		wantError bool
	}
	var cases []tc
	for _, n := range []int{1, 10, len(`{"format":"bpfmon-scanner-state"`), len(valid) / 2, len(valid) - 1} {
		cases = append(cases, tc{name: "truncated at " + strconv.Itoa(n), data: valid[:n], foreign: n < len(`{"format":"bpfmon-scanner-state"`), wantError: true})
	}
	binary := make([]byte, 4096)
	rand.New(rand.NewSource(1)).Read(binary)
	cases = append(cases,
		tc{name: "binary", data: binary, foreign: true, wantError: true},
		tc{name: "NULs", data: make([]byte, 4096), foreign: true, wantError: true},
		tc{name: "bpfmon prefix, binary rest", data: append([]byte(`{"format":"bpfmon-scanner-state"`), binary...), wantError: true},
		// Damaged, still JSON: its checksum tells.
		tc{name: "entries not hex", data: bytes.Replace(valid, []byte(`"entries":{"`), []byte(`"entries":{"zz`), 1), wantError: true},
		tc{name: "a hash changed", data: bytes.Replace(valid, []byte(`"hash":"`), []byte(`"hash":"0`), 1), wantError: true},
		tc{name: "checksum changed", data: bytes.Replace(valid, []byte(`"sha256:`), []byte(`"sha256:0`), 1), wantError: true},
		// Written by a bpfmon from before the checksum: used.
		tc{name: "no checksum", data: append(bytes.Clone(valid[:bytes.LastIndex(valid, []byte(checksumField))]), '}')},
		tc{name: "wrong types", data: []byte(`{"format":"bpfmon-scanner-state","version":1,"maps":[{"id":"x","entries":[1]}]}`), wantError: true},
		tc{name: "future version", data: []byte(`{"format":"bpfmon-scanner-state","version":99,"maps":null}`), wantError: true},
		tc{name: "empty", data: nil, wantError: true},
	)
	for _, c := range cases {
		path := filepath.Join(dir, "state.json")
		if err := os.WriteFile(path, c.data, 0o600); err != nil {
			t.Fatal(err)
		}
		s, err := scannerWithState(t, path)
		if (err != nil) != c.wantError || errors.Is(err, ErrForeignState) != c.foreign {
			t.Errorf("%s: LoadState = %v", c.name, err)
		}
		passes(t, s, 1, 0, nil)
		after, _ := os.ReadFile(path)
		if rewritten := !bytes.Equal(after, c.data); rewritten == c.foreign {
			t.Errorf("%s: rewritten %v, want %v", c.name, rewritten, !c.foreign)
		}
	}

	// Larger than bpfmon writes: not read (sparse, no disk used).
	huge := filepath.Join(dir, "huge.json")
	if err := os.WriteFile(huge, valid, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(huge, stateMaxFile+1); err != nil {
		t.Fatal(err)
	}
	if _, err := scannerWithState(t, huge); err == nil || !strings.Contains(err.Error(), "more than bpfmon ever writes") {
		t.Errorf("huge: %v", err)
	}
	// A device never ends and must not be replaced by a rename.
	s, err = scannerWithState(t, "/dev/zero")
	if !errors.Is(err, ErrForeignState) {
		t.Errorf("/dev/zero: %v", err)
	}
	passes(t, s, 1, 0, nil)
	if fi, err := os.Stat("/dev/zero"); err != nil || fi.Mode().IsRegular() {
		t.Errorf("/dev/zero replaced: %v %v", fi, err)
	}
}

// FuzzLoadState: no state file content makes LoadState, or the pass that
// compares with it, panic; and none silences a change. The token ID in an
// input stands for a live map's id (holding {1: 1}). Whenever the file,
// as loaded, holds an entry for that id, the first pass reports exactly
// what the entry implies: nothing when it describes the map with its
// hash, the map's removal when it describes another map, and a change
// otherwise. The pass saves nothing (Exclude) that the next input could
// depend on.
func FuzzLoadState(f *testing.F) {
	testutil.RequireRoot(f)
	for _, seed := range []string{
		`{"format":"bpfmon-scanner-state","version":1,"saved":"2026-01-01T00:00:00Z","maps":[{"id":ID,"name":"t_fuzz_state","type":1,"key_size":4,"value_size":8,"max_entries":4,"elements":1,"hash":"0:1","entries":{"01000000":"0100000000000000"}}]}`,
		`{"format":"bpfmon-scanner-state","version":1,"maps":[{"id":ID,"name":"t_fuzz_state","type":1,"key_size":4,"value_size":8,"max_entries":4,"elements":1,"hash":"0:1","entries":{"0":"1"}}]}`,
		`{"format":"bpfmon-scanner-state","version":2,"maps":[{"id":ID,"name":"t_fuzz_state","type":1,"key_size":4,"value_size":8,"max_entries":4,"elements":1,"hash":"x"}]}`,
		`{"format":"bpfmon-scanner-state","version":1,"maps":[{"id":ID,"name":"t_other","type":1,"key_size":4,"value_size":8,"max_entries":4,"elements":1}]}`,
		`{"format":"bpfmon-scanner-state","version":1,"maps":[{"id":ID}]}`,
		`{"format":"bpfmon-scanner-state"`,
		"\xff\xfe\x00",
	} {
		f.Add([]byte(seed))
	}
	m, err := ebpf.NewMap(&ebpf.MapSpec{Name: "t_fuzz_state", Type: ebpf.Hash, KeySize: 4, ValueSize: 8, MaxEntries: 4})
	if err != nil {
		f.Fatal(err)
	}
	defer m.Close()
	if err := m.Update(uint32(1), uint64(1), 0); err != nil {
		f.Fatal(err)
	}
	info, err := m.Info()
	if err != nil {
		f.Fatal(err)
	}
	mid, _ := info.ID()
	id := uint32(mid)
	// The live map's own hash, as a pass computes it.
	probe, err := New(Config{Interval: time.Second, Grace: time.Millisecond})
	if err != nil {
		f.Fatal(err)
	}
	passes(f, probe, 1, 0, nil)
	live := probe.snaps[id]
	if live == nil {
		f.Fatal("the live map was not read")
	}
	liveHash := live.contentHash()
	path := filepath.Join(f.TempDir(), "state.json")
	f.Fuzz(func(t *testing.T, data []byte) {
		data = bytes.ReplaceAll(data, []byte("ID"), []byte(strconv.FormatUint(uint64(id), 10)))
		if err := os.WriteFile(path, data, 0o600); err != nil {
			t.Fatal(err)
		}
		s, err := New(Config{Interval: time.Second, Grace: time.Millisecond})
		if err != nil {
			t.Fatal(err)
		}
		s.LoadState(path)
		s.statePath = "" // nothing saved: the file stays the input
		old, had := s.saved[id]
		var got []*event.Event
		if err := s.Pass(nil, func(ev *event.Event) error {
			if ev.Map != nil && ev.Map.ID == id {
				got = append(got, ev)
			}
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		for _, ev := range got {
			if ev.Type != event.MapChanged || !ev.WhileDown {
				t.Fatalf("not a while_down map_changed: %+v", ev)
			}
		}
		if !had {
			if len(got) != 0 {
				t.Fatalf("no saved entry, yet reported %+v", got[0])
			}
			return
		}
		same := old.Name == info.Name && old.Type == uint32(info.Type) && old.KeySize == info.KeySize &&
			old.ValueSize == info.ValueSize && old.MaxEntries == info.MaxEntries
		switch {
		case !same:
			if len(got) != 1 || got[0].Change != event.ChangeRemoved || got[0].Reason != reasonGone {
				t.Fatalf("saved entry %+v describes another map: reported %d events, want its removal", old, len(got))
			}
		case old.Hash == liveHash:
			if len(got) != 0 {
				t.Fatalf("saved hash is the live one, yet reported %+v", got[0])
			}
		default:
			if len(got) == 0 {
				t.Fatalf("saved hash %q differs from the live %q: nothing reported", old.Hash, liveHash)
			}
		}
	})
}

// TestStateWhileDownPaths: every way the saved state can differ from what
// the first pass finds reports the change, none falls silent: a damaged
// entry (key or value not hex, a key of the wrong size, an entry missing),
// a file of another version, a saved id that now names another map, a
// saved map that is gone. The unchanged control reports nothing.
func TestStateWhileDownPaths(t *testing.T) {
	testutil.RequireRoot(t)
	m, err := ebpf.NewMap(&ebpf.MapSpec{Name: "t_down_paths", Type: ebpf.Hash, KeySize: 4, ValueSize: 8, MaxEntries: 8})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	m.Update(uint32(1), uint64(1), 0)
	m.Update(uint32(2), uint64(2), 0)
	id := testutil.MapID(t, m)
	dir := t.TempDir()
	good := filepath.Join(dir, "good.json")
	s, err := scannerWithState(t, good)
	if err != nil {
		t.Fatal(err)
	}
	passes(t, s, 1, 0, nil)
	valid, err := os.ReadFile(good)
	if err != nil {
		t.Fatal(err)
	}
	edit := func(f func(ms *mapState, sf *stateFile)) []byte {
		var c stateFile
		if err := json.Unmarshal(valid, &c); err != nil {
			t.Fatal(err)
		}
		for i := range c.Maps {
			if c.Maps[i].ID == id {
				f(&c.Maps[i], &c)
			}
		}
		c.Checksum = ""
		b, _ := json.Marshal(&c)
		return seal(b) // edited as bpfmon would have written it
	}
	key1 := hex.EncodeToString(le32(1))
	const goneID = 0xfffffff0 // never allocated in a test's lifetime
	cases := []struct {
		name    string
		data    []byte
		change  bool   // the map changed while down
		want    string // the one event expected: change, reason
		wantErr bool
	}{
		{name: "unchanged", data: valid},
		{name: "key not hex", change: true, data: edit(func(ms *mapState, _ *stateFile) {
			ms.Entries["zz"] = ms.Entries[key1]
			delete(ms.Entries, key1)
		}), want: "modified/" + reasonDamaged},
		{name: "value not hex", change: true, data: edit(func(ms *mapState, _ *stateFile) { ms.Entries[key1] = "0q" }), want: "modified/" + reasonDamaged},
		{name: "key of another size", change: true, data: edit(func(ms *mapState, _ *stateFile) {
			ms.Entries["0100"] = ms.Entries[key1]
			delete(ms.Entries, key1)
		}), want: "modified/" + reasonDamaged},
		{name: "entry missing", change: true, data: edit(func(ms *mapState, _ *stateFile) { delete(ms.Entries, key1) }), want: "modified/" + reasonDamaged},
		{name: "another version, unchanged", wantErr: true, data: edit(func(_ *mapState, sf *stateFile) { sf.Version = 99 })},
		{name: "another version", change: true, wantErr: true, data: edit(func(_ *mapState, sf *stateFile) { sf.Version = 99 }), want: "modified/" + reasonOtherVersion},
		{name: "id names another map", data: edit(func(ms *mapState, _ *stateFile) { ms.Name = "t_other" }), want: "removed/" + reasonGone},
		{name: "map gone", data: edit(func(ms *mapState, _ *stateFile) { ms.ID = goneID }), want: "removed/" + reasonGone},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			// The live map holds {1:1, 2:2} as saved, or {1:100, 2:2}.
			v := uint64(1)
			if c.change {
				v = 100
			}
			if err := m.Update(uint32(1), v, 0); err != nil {
				t.Fatal(err)
			}
			path := filepath.Join(t.TempDir(), "state.json")
			if err := os.WriteFile(path, c.data, 0o600); err != nil {
				t.Fatal(err)
			}
			s, err := scannerWithState(t, path)
			if (err != nil) != c.wantErr {
				t.Fatalf("LoadState = %v, want error %v", err, c.wantErr)
			}
			var got []string
			err = s.Pass(nil, func(ev *event.Event) error {
				if ev.Map == nil || (ev.Map.ID != id && ev.Map.ID != goneID) {
					return nil
				}
				if ev.Type != event.MapChanged || !ev.WhileDown || !ev.HasCount || ev.HasKey {
					t.Errorf("not a while_down map_changed with a count: %+v", ev)
				}
				wantCount := uint64(2)
				if ev.Count != wantCount {
					t.Errorf("count %d, want %d", ev.Count, wantCount)
				}
				if ev.Change == event.ChangeRemoved && (ev.Map.KeySize != 4 || ev.Map.ValueSize != 8 || ev.Map.MaxEntries != 8) {
					t.Errorf("removed map not described as saved: %+v", ev.Map)
				}
				got = append(got, ev.Change+"/"+ev.Reason)
				return nil
			})
			if err != nil {
				t.Fatal(err)
			}
			var want []string
			if c.want != "" {
				want = []string{c.want}
			}
			if strings.Join(got, "|") != strings.Join(want, "|") {
				t.Errorf("reported %q, want %q", got, want)
			}
		})
	}
	m.Update(uint32(1), uint64(1), 0)
}

// TestStateStops: the state file says from the start that bpfmon runs, at
// each pass when it was last alive, and at a clean stop that it stopped;
// the next start reads that back with the SaveExtra section. A state
// written on another boot lists maps that are all gone.
func TestStateStops(t *testing.T) {
	testutil.RequireRoot(t)
	path := filepath.Join(t.TempDir(), "state.json")
	m, err := ebpf.NewMap(&ebpf.MapSpec{Name: "t_stops", Type: ebpf.Hash, KeySize: 4, ValueSize: 8, MaxEntries: 8})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	m.Update(uint32(1), uint64(1), 0)
	read := func() stateFile {
		t.Helper()
		b, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		var f stateFile
		if err := json.Unmarshal(b, &f); err != nil {
			t.Fatal(err)
		}
		return f
	}
	start := func(extra string) *Scanner {
		t.Helper()
		s, err := New(Config{Interval: time.Second, Grace: time.Millisecond,
			SaveExtra: func() json.RawMessage { return json.RawMessage(extra) }})
		if err != nil {
			t.Fatal(err)
		}
		if err := s.LoadState(path); err != nil {
			t.Fatal(err)
		}
		return s
	}

	before := time.Now().UTC()
	s1 := start(`{"n":1}`)
	if p := s1.Prior(); p.Found {
		t.Errorf("a first start found a prior state: %+v", p)
	}
	if f := read(); f.CleanStop == nil || *f.CleanStop || f.Alive.Before(before) || f.BootID == "" {
		t.Errorf("at start the state does not say bpfmon runs: %+v", f)
	}
	passes(t, s1, 1, 0, nil)
	f := read()
	if f.CleanStop == nil || *f.CleanStop || string(f.Watch) != `{"n":1}` || !slices.ContainsFunc(f.Maps, func(ms mapState) bool { return ms.ID == testutil.MapID(t, m) }) {
		t.Fatalf("after a pass: clean_stop %v, watch %s, %d maps", f.CleanStop, f.Watch, len(f.Maps))
	}
	passAlive := f.Alive

	// Killed: the next start reads an unclean stop, alive at the pass.
	s2 := start(`{"n":2}`)
	if p := s2.Prior(); !p.Found || !p.StopKnown || p.Clean || !p.Alive.Equal(passAlive) || string(p.Extra) != `{"n":1}` || p.Rebooted {
		t.Errorf("after a kill: %+v", p)
	}
	// A change after the pass that a stop cuts short is not saved as
	// seen: the clean stop keeps the last completed pass's contents.
	m.Update(uint32(1), uint64(2), 0)
	time.Sleep(10 * time.Millisecond)
	if err := s2.SaveStopped(); err != nil {
		t.Fatal(err)
	}
	f = read()
	if f.CleanStop == nil || !*f.CleanStop || !f.Alive.After(passAlive) || string(f.Watch) != `{"n":2}` {
		t.Errorf("after a clean stop: clean_stop %v, alive %v (pass at %v), watch %s", f.CleanStop, f.Alive, passAlive, f.Watch)
	}
	s3 := start(`{"n":3}`)
	if p := s3.Prior(); !p.Found || !p.StopKnown || !p.Clean || !p.Alive.Equal(f.Alive) || string(p.Extra) != `{"n":2}` {
		t.Errorf("after a clean stop, the next start read %+v", p)
	}
	changed := slices.ContainsFunc(passes(t, s3, 1, testutil.MapID(t, m), nil), func(ev *event.Event) bool { return ev.WhileDown })
	if !changed {
		t.Error("the change made before the clean stop, after the last pass, was never reported")
	}

	// Another boot: every saved map is gone, whatever has its id now.
	f = read()
	f.BootID = "00000000-0000-0000-0000-000000000000"
	f.Checksum = ""
	b, _ := json.Marshal(&f)
	if err := os.WriteFile(path, seal(b), 0o600); err != nil {
		t.Fatal(err)
	}
	s4 := start(`{}`)
	if p := s4.Prior(); !p.Rebooted {
		t.Errorf("another boot's state: %+v", p)
	}
	gone := slices.ContainsFunc(passes(t, s4, 1, testutil.MapID(t, m), nil), func(ev *event.Event) bool {
		return ev.WhileDown && ev.Change == event.ChangeRemoved && ev.Reason == reasonRebooted
	})
	if !gone {
		t.Error("a map saved on another boot was not reported as gone with the reboot as the reason")
	}
}

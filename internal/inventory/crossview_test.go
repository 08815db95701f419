package inventory

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"golang.org/x/sys/unix"

	"github.com/bpfmon/bpfmon/internal/bpfsys"
	"github.com/bpfmon/bpfmon/internal/testprogs/hider"
	"github.com/bpfmon/bpfmon/internal/testutil"
)

// bpftoolIDs lists the map ids the way bpftool does: GET_NEXT_ID, then
// GET_FD_BY_ID, skipping what cannot be opened.
func bpftoolIDs(t *testing.T) []uint32 {
	t.Helper()
	var out []uint32
	for id := uint32(0); ; {
		next, err := bpfsys.NextMapID(id)
		if errors.Is(err, unix.ENOENT) {
			return out
		}
		if err != nil {
			t.Fatal(err)
		}
		id = next
		fd, err := bpfsys.MapFDByID(id, unix.BPF_F_RDONLY)
		if err != nil {
			continue
		}
		unix.Close(fd)
		out = append(out, id)
	}
}

// TestCrossViewHidden loads a rootkit's hiding program on the bpf
// syscall, which hides its own (pinned) map from GET_NEXT_ID and
// GET_FD_BY_ID: bpftool's way of listing misses the map, Collect lists it
// marked hidden, with the views that saw it, read through its pin.
func TestCrossViewHidden(t *testing.T) {
	testutil.RequireRoot(t)
	testutil.RequireTracefs(t)
	h, err := hider.Load()
	testutil.Need(t, testutil.ProbeWriteUser, err, "the hiding program calls bpf_probe_write_user")
	defer h.Close()
	dir, err := os.MkdirTemp(testutil.BPFFSPath(t), "crossview")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(dir)
	pin := filepath.Join(dir, "hidden")
	if err := h.Map().Pin(pin); err != nil {
		t.Fatal(err)
	}
	defer h.Map().Unpin()
	if !slices.Contains(bpftoolIDs(t), h.MapID) {
		t.Fatalf("map %d not listed before hiding", h.MapID)
	}
	if err := h.Hide(); err != nil {
		t.Fatal(err)
	}
	if slices.Contains(bpftoolIDs(t), h.MapID) {
		t.Fatalf("bpftool's listing still has map %d: the hiding program does not hide", h.MapID)
	}

	maps := collect(t, Options{Created: []uint32{h.MapID}})
	m := find(t, maps, h.MapID)
	if m.Hidden == nil {
		t.Fatalf("map %d is listed but not marked hidden: %+v", h.MapID, m)
	}
	for _, v := range []string{ViewPins, ViewProgMaps, ViewSensor} {
		if !slices.Contains(m.Hidden.SeenBy, v) {
			t.Errorf("seen by %q, want %s among them", m.Hidden.SeenBy, v)
		}
	}
	for _, v := range []string{ViewNextID, ViewFDByID} {
		if !slices.Contains(m.Hidden.MissedBy, v) {
			t.Errorf("missed by %q, want %s among them", m.Hidden.MissedBy, v)
		}
	}
	if m.Name != "hider_ids" || m.Type != "array" || m.Hidden.Via != "pin "+pin || !slices.Equal(m.Pins, []string{pin}) {
		t.Errorf("got %+v (%+v), want hider_ids, an array, read via its pin %s", m, *m.Hidden, pin)
	}
	if len(m.Programs) != 1 || m.Programs[0].ID != h.ProgID || m.Programs[0].Risky != bpfsys.RiskyProbeWriteUser {
		t.Errorf("programs %+v, want %d calling %s", m.Programs, h.ProgID, bpfsys.RiskyProbeWriteUser)
	}
	// Another process holding it: the fdinfo view, and its fd a way in.
	h.Map().Unpin()
	child := holdHiddenChild(t, h.Map())
	maps = collect(t, Options{SkipHolders: true, CrossViewFDs: true})
	m = find(t, maps, h.MapID)
	if m.Hidden == nil || !slices.Contains(m.Hidden.SeenBy, ViewFdinfo) || m.Hidden.Via == "" || m.Name != "hider_ids" {
		t.Errorf("held by pid %d, not pinned: %+v (%+v)", child, m, m.Hidden)
	}
	// Filters are not the whole host: no cross-view.
	if maps := collect(t, Options{Names: []string{"hider_ids"}}); len(maps) != 0 {
		t.Errorf("by name: %+v, want nothing (the listing has no such map)", maps)
	}
}

// holdHiddenChild starts a process that holds m (inherited as fd 3) until
// the test ends, and returns its pid.
func holdHiddenChild(t *testing.T, m *ebpf.Map) int {
	t.Helper()
	sleep, err := exec.LookPath("sleep")
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(sleep, "600")
	cmd.ExtraFiles = []*os.File{testutil.DupFile(t, m.FD(), "hidden")}
	testutil.StartExec(t, cmd)
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	return cmd.Process.Pid
}

// TestCrossViewChurnIsNotHidden is the benign control: maps created,
// pinned, used by programs and destroyed while Collect runs, and programs
// freed while it reads them, are never reported hidden.
func TestCrossViewChurnIsNotHidden(t *testing.T) {
	testutil.RequireRoot(t)
	dir, err := os.MkdirTemp(testutil.BPFFSPath(t), "churn")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(dir)
	var stop atomic.Bool
	var wg sync.WaitGroup
	var made atomic.Int64
	for w := range 2 {
		wg.Go(func() {
			for i := 0; !stop.Load(); i++ {
				m, err := ebpf.NewMap(&ebpf.MapSpec{Name: "churn", Type: ebpf.Array, KeySize: 4, ValueSize: 8, MaxEntries: 1})
				if err != nil {
					t.Error(err)
					return
				}
				pin := filepath.Join(dir, string(rune('a'+w)))
				m.Pin(pin)
				p, err := ebpf.NewProgram(&ebpf.ProgramSpec{Type: ebpf.SocketFilter, License: "GPL", Instructions: asm.Instructions{
					asm.LoadMapPtr(asm.R1, m.FD()), asm.Mov.Imm(asm.R0, 0), asm.Return(),
				}})
				if err != nil {
					t.Error(err)
				}
				time.Sleep(time.Duration(i%3) * time.Millisecond)
				m.Unpin()
				m.Close()
				if p != nil {
					p.Close()
				}
				made.Add(1)
			}
		})
	}
	deadline := time.Now().Add(3 * time.Second)
	passes := 0
	for time.Now().Before(deadline) || passes < 5 {
		var progs []HiddenProg
		maps, problems, err := Collect(Options{SkipHolders: passes%2 == 0, CrossViewFDs: true, HiddenProgs: &progs})
		if err != nil {
			t.Fatal(err)
		}
		for _, p := range progs {
			t.Errorf("pass %d: program %d %q reported hidden: %+v", passes, p.ID, p.Name, p.Hidden)
		}
		for _, p := range problems {
			t.Logf("problem: %v", p)
		}
		for _, m := range maps {
			if m.Hidden != nil {
				t.Errorf("pass %d: map %d %q reported hidden: %+v", passes, m.ID, m.Name, *m.Hidden)
			}
		}
		passes++
	}
	stop.Store(true)
	wg.Wait()
	t.Logf("%d passes while %d maps and programs came and went", passes, made.Load())
}

// BenchmarkCrossViewRefresh is what watch's refresh costs at 10,000 maps
// held by another process: the refresh as it was (known maps, no holders;
// the cross-view then compares pins and programs' map ids, which the
// refresh reads anyway), and the refresh that also reads every process's
// fds for the fdinfo view, which watch does every 5 minutes; each with the
// bpf_map and bpf_prog iterator view and without it (the figures before
// it), in one run.
func BenchmarkCrossViewRefresh(b *testing.B) {
	testutil.RequireRoot(b)
	const n = 10000
	_, f := startChild(b, "many", strconv.Itoa(n))
	if len(f) != n {
		b.Fatalf("child printed %d ids, want %d", len(f), n)
	}
	maps, _, err := Collect(Options{})
	if err != nil {
		b.Fatal(err)
	}
	known := make(map[uint32]Map, len(maps))
	for _, m := range maps {
		known[m.ID] = m
	}
	for _, bc := range []struct {
		name string
		opts Options
	}{
		{"refresh/no-iterators", Options{SkipHolders: true, Known: known, NoIterators: true}},
		{"refresh", Options{SkipHolders: true, Known: known}},
		{"refresh+fdinfo", Options{SkipHolders: true, Known: known, CrossViewFDs: true}},
		{"start/no-iterators", Options{NoIterators: true}},
		{"start", Options{}},
	} {
		b.Run(bc.name, func(b *testing.B) {
			c0 := cpuTime()
			for b.Loop() {
				if _, _, err := Collect(bc.opts); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(cpuTime()-c0)/float64(b.N)/1e6, "cpu-ms/op")
			b.ReportMetric(float64(len(maps)), "maps")
		})
	}
}

// cpuTime is this process's CPU time (all threads), in ns: the wall time
// of a benchmark on a loaded machine says little.
func cpuTime() int64 {
	var ru unix.Rusage
	unix.Getrusage(unix.RUSAGE_SELF, &ru)
	return ru.Utime.Nano() + ru.Stime.Nano()
}

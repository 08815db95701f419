package inventory

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
	"unsafe"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"golang.org/x/sys/unix"

	"github.com/bpfmon/bpfmon/internal/testutil"
)

// TestMain lets the test binary act as a child process that holds maps:
// Collect never lists its own process as a holder, so holders must be
// other processes.
func TestMain(m *testing.M) {
	if mode := os.Getenv("INVENTORY_CHILD"); mode != "" {
		if err := child(mode, os.Args[len(os.Args)-1]); err != nil {
			fmt.Fprintln(os.Stderr, "child:", err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// hostileComm is a process name built to break line-oriented output; the
// inventory must carry it as data, unchanged.
const hostileComm = "x\ny\"z\x1b[31m"

// child runs in a re-executed test binary. Mode "hold" creates the hash
// map "inv_test", pins it at arg, opens it once more read-only through the
// pin and prints "id rwfd rofd". Mode "many" creates arg arrays named
// "inv_many" and prints their ids. Both then hold everything open until
// stdin closes.
func child(mode, arg string) error {
	var line string
	var keep []*ebpf.Map
	switch mode {
	case "hold":
		comm := append([]byte(hostileComm), 0)
		if err := unix.Prctl(unix.PR_SET_NAME, uintptr(unsafe.Pointer(&comm[0])), 0, 0, 0); err != nil {
			return err
		}
		m, err := ebpf.NewMap(&ebpf.MapSpec{Name: "inv_test", Type: ebpf.Hash, KeySize: 4, ValueSize: 8, MaxEntries: 16})
		if err != nil {
			return err
		}
		if err := m.Pin(arg); err != nil {
			return err
		}
		ro, err := ebpf.LoadPinnedMap(arg, &ebpf.LoadPinOptions{ReadOnly: true})
		if err != nil {
			return err
		}
		info, err := m.Info()
		if err != nil {
			return err
		}
		id, _ := info.ID()
		keep = append(keep, m, ro)
		line = fmt.Sprintf("%d %d %d", id, m.FD(), ro.FD())
	case "many":
		n, err := strconv.Atoi(arg)
		if err != nil {
			return err
		}
		var ids []string
		for range n {
			m, err := ebpf.NewMap(&ebpf.MapSpec{Name: "inv_many", Type: ebpf.Array, KeySize: 4, ValueSize: 4, MaxEntries: 1})
			if err != nil {
				return err
			}
			info, err := m.Info()
			if err != nil {
				return err
			}
			id, _ := info.ID()
			ids = append(ids, strconv.FormatUint(uint64(id), 10))
			keep = append(keep, m)
		}
		line = strings.Join(ids, " ")
	default:
		return fmt.Errorf("unknown mode %q", mode)
	}
	fmt.Println(line)
	io.Copy(io.Discard, os.Stdin)
	for _, m := range keep {
		m.Close()
	}
	return nil
}

// startChild runs a child in mode and returns its pid and the fields of
// the line it printed. The child exits at the end of the test.
func startChild(t testing.TB, mode, arg string) (int, []string) {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$", arg)
	cmd.Env = append(os.Environ(), "INVENTORY_CHILD="+mode)
	cmd.Stderr = os.Stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		stdin.Close()
		if err := cmd.Wait(); err != nil {
			t.Errorf("child %s: %v", mode, err)
		}
	})
	line, err := bufio.NewReader(stdout).ReadString('\n')
	if err != nil {
		t.Fatalf("child %s printed nothing: %v", mode, err)
	}
	return cmd.Process.Pid, strings.Fields(line)
}

// holdChild starts a "hold" child with a pin in a fresh bpffs directory
// and returns its pid, map id, fds and pin path.
func holdChild(t *testing.T) (pid int, id uint32, rwfd, rofd int, pin string) {
	t.Helper()
	testutil.RequireRoot(t)
	dir, err := os.MkdirTemp(testutil.BPFFSPath(t), "inventory_test_")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	pin = filepath.Join(dir, "inv_test")
	pid, f := startChild(t, "hold", pin)
	if len(f) != 3 {
		t.Fatalf("child printed %q", f)
	}
	n := make([]int, 3)
	for i := range f {
		if n[i], err = strconv.Atoi(f[i]); err != nil {
			t.Fatal(err)
		}
	}
	return pid, uint32(n[0]), n[1], n[2], pin
}

func collect(t testing.TB, opts Options) []Map {
	t.Helper()
	maps, problems, err := Collect(opts)
	if err != nil {
		t.Fatalf("Collect: %v", err)
	}
	for _, p := range problems {
		t.Logf("problem: %v", p)
	}
	if !slices.IsSortedFunc(maps, func(a, b Map) int { return int(a.ID) - int(b.ID) }) {
		t.Errorf("maps not sorted by id")
	}
	return maps
}

func find(t testing.TB, maps []Map, id uint32) *Map {
	t.Helper()
	for i := range maps {
		if maps[i].ID == id {
			return &maps[i]
		}
	}
	t.Fatalf("map %d not listed (%d maps)", id, len(maps))
	return nil
}

func ids(maps []Map) []uint32 {
	var out []uint32
	for _, m := range maps {
		out = append(out, m.ID)
	}
	return out
}

// newMap creates a map held by the test process itself.
func newMap(t testing.TB, spec *ebpf.MapSpec) (*ebpf.Map, uint32) {
	t.Helper()
	testutil.RequireRoot(t)
	m, err := ebpf.NewMap(spec)
	if err != nil {
		t.Fatalf("creating map %s: %v", spec.Name, err)
	}
	t.Cleanup(func() { m.Close() })
	return m, testutil.MapID(t, m)
}

// holdersOf lists m's holders in process pid. Tests look only at their
// own processes: others may hold any map for a moment (the content scanner
// of a bpfmon watch that another package's test runs in parallel reads
// every map on the host).
func holdersOf(m *Map, pid int) []Holder {
	var hs []Holder
	for _, h := range m.Holders {
		if h.PID == uint32(pid) {
			hs = append(hs, h)
		}
	}
	return hs
}

func TestHoldersPinsAndAttributes(t *testing.T) {
	pid, id, rwfd, rofd, pin := holdChild(t)
	m := find(t, collect(t, Options{}), id)

	if m.Name != "inv_test" || m.Type != "hash" || m.TypeID != 1 || m.KeySize != 4 || m.ValueSize != 8 || m.MaxEntries != 16 {
		t.Errorf("attributes: got name %q type %q(%d) sizes %d/%d/%d, want inv_test hash(1) 4/8/16",
			m.Name, m.Type, m.TypeID, m.KeySize, m.ValueSize, m.MaxEntries)
	}
	if m.Flags != 0 || len(m.FlagNames) != 0 || m.Frozen {
		t.Errorf("flags: got %#x %q frozen=%v, want none", m.Flags, m.FlagNames, m.Frozen)
	}
	if m.MemoryBytes == 0 {
		t.Errorf("memory_bytes is 0")
	}
	if !m.UserWritable || !strings.HasPrefix(m.WritableWhy, "not frozen") {
		t.Errorf("writable: got %v %q", m.UserWritable, m.WritableWhy)
	}
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	want := []Holder{
		{PID: uint32(pid), Comm: hostileComm, Exe: exe, FD: rwfd, Writable: true},
		{PID: uint32(pid), Comm: hostileComm, Exe: exe, FD: rofd, Writable: false},
	}
	slices.SortFunc(want, func(a, b Holder) int { return a.FD - b.FD })
	if !slices.Equal(holdersOf(m, pid), want) {
		t.Errorf("holders:\n got %#v\nwant %#v", m.Holders, want)
	}
	if !slices.Equal(m.Pins, []string{pin}) {
		t.Errorf("pins: got %q, want [%q]", m.Pins, pin)
	}
	if len(m.Programs) != 0 {
		t.Errorf("programs: got %+v, want none", m.Programs)
	}

	b, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range []string{`"programs":[]`, `"flag_names":[]`, `"type":"hash"`, `"key_size":4`, `"writable":false`, `"comm":"x\ny\"z\u001b[31m"`} {
		if !strings.Contains(string(b), s) {
			t.Errorf("JSON lacks %s: %s", s, b)
		}
	}
}

func TestNeverListsItself(t *testing.T) {
	_, id := newMap(t, &ebpf.MapSpec{Name: "inv_self", Type: ebpf.Array, KeySize: 4, ValueSize: 4, MaxEntries: 1})
	holdChild(t) // so that at least one holder exists
	maps := collect(t, Options{})
	if got := holdersOf(find(t, maps, id), os.Getpid()); len(got) != 0 {
		t.Errorf("map held only by the test process: got holders %+v", got)
	}
	self := uint32(os.Getpid())
	holders := 0
	for _, m := range maps {
		for _, h := range m.Holders {
			holders++
			if h.PID == self {
				t.Errorf("map %d lists the collecting process as holder: %+v", m.ID, h)
			}
		}
	}
	if holders < 2 {
		t.Errorf("only %d holders on the whole host, want at least the child's 2", holders)
	}
	if got := collect(t, Options{PIDs: []uint32{self}}); len(got) != 0 {
		t.Errorf("--pid self: got maps %v, want none", ids(got))
	}
}

func TestFilters(t *testing.T) {
	pid, id, _, _, pin := holdChild(t)
	_, other := newMap(t, &ebpf.MapSpec{Name: "inv_other", Type: ebpf.Array, KeySize: 4, ValueSize: 4, MaxEntries: 1})

	if got := ids(collect(t, Options{IDs: []uint32{id}})); !slices.Equal(got, []uint32{id}) {
		t.Errorf("IDs [%d]: got %v", id, got)
	}
	if got := ids(collect(t, Options{IDs: []uint32{other, id, id}})); !slices.Equal(got, []uint32{min(id, other), max(id, other)}) {
		t.Errorf("IDs [%d %d %d]: got %v", other, id, id, got)
	}
	byName := collect(t, Options{Names: []string{"inv_test"}})
	find(t, byName, id)
	for _, m := range byName {
		if m.Name != "inv_test" {
			t.Errorf("Names [inv_test]: got map %d named %q", m.ID, m.Name)
		}
	}
	if got := collect(t, Options{IDs: []uint32{id}, Names: []string{"inv_other"}}); len(got) != 0 {
		t.Errorf("IDs [%d] and Names [inv_other]: got %v, want none", id, ids(got))
	}
	if got := ids(collect(t, Options{PIDs: []uint32{uint32(pid)}})); !slices.Equal(got, []uint32{id}) {
		t.Errorf("PIDs [%d]: got %v, want [%d]", pid, got, id)
	}

	got := collect(t, Options{PIDs: []uint32{uint32(pid)}, SkipHolders: true, SkipPins: true})
	if !slices.Equal(ids(got), []uint32{id}) {
		t.Fatalf("PIDs with SkipHolders: got %v, want [%d]", ids(got), id)
	}
	if got[0].Holders == nil || len(got[0].Holders) != 0 || got[0].Pins == nil || len(got[0].Pins) != 0 {
		t.Errorf("SkipHolders/SkipPins: got holders %+v pins %q, want empty non-nil", got[0].Holders, got[0].Pins)
	}
	if m := find(t, collect(t, Options{IDs: []uint32{id}}), id); !slices.Equal(m.Pins, []string{pin}) {
		t.Errorf("pins with an id filter: got %q", m.Pins)
	}

	_, problems, err := Collect(Options{IDs: []uint32{0xfffffff0}, SkipPins: true, SkipHolders: true})
	if err != nil || len(problems) != 1 || !strings.Contains(problems[0].Error(), "no such map") {
		t.Errorf("unknown id: got problems %v, err %v; want one 'no such map'", problems, err)
	}
}

func TestProgramUsingMap(t *testing.T) {
	m, id := newMap(t, &ebpf.MapSpec{Name: "inv_prog", Type: ebpf.Array, KeySize: 4, ValueSize: 8, MaxEntries: 4})
	_, unused := newMap(t, &ebpf.MapSpec{Name: "inv_noprog", Type: ebpf.Array, KeySize: 4, ValueSize: 8, MaxEntries: 4})
	prog, err := ebpf.NewProgram(&ebpf.ProgramSpec{
		Name:    "inv_prog_sf",
		Type:    ebpf.SocketFilter,
		License: "GPL",
		Instructions: asm.Instructions{
			asm.LoadMapPtr(asm.R1, m.FD()),
			asm.Mov.Imm(asm.R0, 0),
			asm.Return(),
		},
	})
	if err != nil {
		t.Fatalf("loading the socket filter: %v", err)
	}
	defer prog.Close()
	info, err := prog.Info()
	if err != nil {
		t.Fatal(err)
	}
	pid, ok := info.ID()
	if !ok {
		t.Fatal("the kernel reports no program id")
	}

	maps := collect(t, Options{IDs: []uint32{id, unused}})
	want := []Program{{ID: uint32(pid), Name: "inv_prog_sf", Type: "socket_filter"}}
	if got := find(t, maps, id).Programs; !reflect.DeepEqual(got, want) {
		t.Errorf("programs of map %d: got %+v, want %+v", id, got, want)
	}
	if got := find(t, maps, unused).Programs; len(got) != 0 {
		t.Errorf("programs of unused map %d: got %+v, want none", unused, got)
	}
}

func TestFlagsFrozenMmapable(t *testing.T) {
	frozen, fid := newMap(t, &ebpf.MapSpec{Name: "inv_frozen", Type: ebpf.Array, KeySize: 4, ValueSize: 4, MaxEntries: 1})
	if err := frozen.Freeze(); err != nil {
		t.Fatal(err)
	}
	_, mid := newMap(t, &ebpf.MapSpec{Name: "inv_mmap", Type: ebpf.Array, KeySize: 4, ValueSize: 4, MaxEntries: 1,
		Flags: unix.BPF_F_MMAPABLE | unix.BPF_F_RDONLY_PROG})
	_, rid := newMap(t, &ebpf.MapSpec{Name: "inv_rdonly", Type: ebpf.Hash, KeySize: 4, ValueSize: 4, MaxEntries: 1,
		Flags: unix.BPF_F_RDONLY | unix.BPF_F_NO_PREALLOC})
	maps := collect(t, Options{IDs: []uint32{fid, mid, rid}})

	f := find(t, maps, fid)
	if !f.Frozen || !slices.Equal(f.FlagNames, []string{"frozen"}) || f.UserWritable || !strings.HasPrefix(f.WritableWhy, "frozen") {
		t.Errorf("frozen map: got frozen=%v flags %q writable=%v %q", f.Frozen, f.FlagNames, f.UserWritable, f.WritableWhy)
	}
	m := find(t, maps, mid)
	if m.Flags != 0x480 || !slices.Equal(m.FlagNames, []string{"rdonly_prog", "mmapable"}) || m.Frozen ||
		!m.UserWritable || !strings.Contains(m.WritableWhy, "mmapable") {
		t.Errorf("mmapable map: got flags %#x %q frozen=%v writable=%v %q", m.Flags, m.FlagNames, m.Frozen, m.UserWritable, m.WritableWhy)
	}
	r := find(t, maps, rid)
	// The kernel drops BPF_F_RDONLY from map_flags: it only made the
	// creator's fd read-only, and any other opener may write.
	if r.Flags != 0x1 || !slices.Equal(r.FlagNames, []string{"no_prealloc"}) || !r.UserWritable {
		t.Errorf("rdonly map: got flags %#x %q writable=%v %q", r.Flags, r.FlagNames, r.UserWritable, r.WritableWhy)
	}
}

// TestPinsAcrossMounts pins maps on a second bpffs instance and checks
// that a bind mount of an instance does not list its pins twice.
func TestPinsAcrossMounts(t *testing.T) {
	_, id, _, _, pin := holdChild(t)
	base := t.TempDir()
	second, bind := filepath.Join(base, "second"), filepath.Join(base, "bind")
	for _, d := range []string{second, bind} {
		if err := os.Mkdir(d, 0o700); err != nil {
			t.Fatal(err)
		}
	}
	if err := unix.Mount("bpf", second, "bpf", 0, ""); err != nil {
		t.Fatalf("mounting a second bpffs: %v", err)
	}
	t.Cleanup(func() { unix.Unmount(second, unix.MNT_DETACH) })
	if err := unix.Mount(testutil.BPFFSPath(t), bind, "", unix.MS_BIND, ""); err != nil {
		t.Fatalf("bind-mounting bpffs: %v", err)
	}
	t.Cleanup(func() { unix.Unmount(bind, unix.MNT_DETACH) })

	m, mid := newMap(t, &ebpf.MapSpec{Name: "inv_pin2", Type: ebpf.Array, KeySize: 4, ValueSize: 4, MaxEntries: 1})
	p1, p2 := filepath.Join(second, "a"), filepath.Join(second, "sub dir", "b\nc")
	// Pin through a second handle: Map.Pin on an already pinned *Map
	// renames its pin.
	m2, err := ebpf.NewMapFromID(ebpf.MapID(mid))
	if err != nil {
		t.Fatal(err)
	}
	defer m2.Close()
	if err := m2.Pin(p1); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(filepath.Dir(p2), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := m.Pin(p2); err != nil {
		t.Fatal(err)
	}
	maps := collect(t, Options{IDs: []uint32{id, mid}})
	if got := find(t, maps, id).Pins; !slices.Equal(got, []string{pin}) {
		t.Errorf("pin seen through a bind mount too: got %q, want [%q]", got, pin)
	}
	if got, want := find(t, maps, mid).Pins, []string{p1, p2}; !slices.Equal(got, want) {
		t.Errorf("pins on the second bpffs: got %q, want %q", got, want)
	}
}

// TestManyMaps has a child hold 2,000 maps and checks that one Collect
// lists them all, each with its holder, in bounded time.
func TestManyMaps(t *testing.T) {
	testutil.RequireRoot(t)
	const n = 2000
	pid, f := startChild(t, "many", strconv.Itoa(n))
	if len(f) != n {
		t.Fatalf("child printed %d ids, want %d", len(f), n)
	}
	start := time.Now()
	maps := collect(t, Options{})
	took := time.Since(start)
	byID := map[uint32]*Map{}
	for i := range maps {
		byID[maps[i].ID] = &maps[i]
	}
	for _, s := range f {
		id, _ := strconv.ParseUint(s, 10, 32)
		m := byID[uint32(id)]
		if m == nil {
			t.Fatalf("map %d not listed", id)
		}
		if m.Name != "inv_many" || len(holdersOf(m, pid)) != 1 {
			t.Fatalf("map %d: got name %q holders %+v, want the child %d once", id, m.Name, m.Holders, pid)
		}
	}
	// A limit against a walk gone quadratic, not a speed target (the
	// figure is logged; make bench measures): scaled for the VMs'
	// emulation, where arm64 6.1 took 10.08 s.
	t.Logf("Collect of %d maps (%d held by one child) took %v", len(maps), n, took)
	if limit := testutil.Timeout(10 * time.Second); took > limit {
		t.Errorf("Collect took %v for %d maps, want well under %v", took, len(maps), limit)
	}
}

func countProcesses() int {
	names, _ := os.ReadDir("/proc")
	n := 0
	for _, e := range names {
		if _, err := strconv.Atoi(e.Name()); err == nil {
			n++
		}
	}
	return n
}

func benchCollect(b *testing.B) {
	var maps []Map
	start := time.Now()
	for b.Loop() {
		var err error
		if maps, _, err = Collect(Options{}); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(time.Since(start).Microseconds())/1000/float64(b.N), "ms/collect")
	b.ReportMetric(float64(len(maps)), "maps")
	b.ReportMetric(float64(countProcesses()), "processes")
}

// BenchmarkCollect measures a full Collect on the current host.
func BenchmarkCollect(b *testing.B) {
	testutil.RequireRoot(b)
	benchCollect(b)
}

// BenchmarkCollect2000Maps measures Collect with 2,000 more maps, all held
// by one child process.
func BenchmarkCollect2000Maps(b *testing.B) {
	testutil.RequireRoot(b)
	startChild(b, "many", "2000")
	benchCollect(b)
}

// BenchmarkCollectLargeHost builds the host the inventory is designed for:
// 10,000 maps (held by one child) and 2,000 more processes, each holding 5
// map fds among 20 inherited fds, then measures Collect.
func BenchmarkCollectLargeHost(b *testing.B) {
	testutil.RequireRoot(b)
	const maps, procs, mapFDs, otherFDs = 10000, 2000, 5, 15
	startChild(b, "many", strconv.Itoa(maps))
	var files []*os.File
	for i := range 100 {
		m, _ := newMap(b, &ebpf.MapSpec{Name: "inv_shared", Type: ebpf.Array, KeySize: 4, ValueSize: 4, MaxEntries: 1})
		fd, err := unix.FcntlInt(uintptr(m.FD()), unix.F_DUPFD_CLOEXEC, 0)
		if err != nil {
			b.Fatal(err)
		}
		files = append(files, os.NewFile(uintptr(fd), "map"+strconv.Itoa(i)))
	}
	devnull, err := os.Open(os.DevNull)
	if err != nil {
		b.Fatal(err)
	}
	defer devnull.Close()
	var sleepers []*exec.Cmd
	b.Cleanup(func() {
		for _, c := range sleepers {
			c.Process.Kill()
			c.Wait()
		}
		for _, f := range files {
			f.Close()
		}
	})
	for i := range procs {
		c := exec.Command("sleep", "3600")
		for j := range mapFDs {
			c.ExtraFiles = append(c.ExtraFiles, files[(i*mapFDs+j)%len(files)])
		}
		for range otherFDs {
			c.ExtraFiles = append(c.ExtraFiles, devnull)
		}
		if err := c.Start(); err != nil {
			b.Fatalf("starting sleeper %d: %v", i, err)
		}
		sleepers = append(sleepers, c)
	}
	got, _, err := Collect(Options{})
	if err != nil {
		b.Fatal(err)
	}
	held := 0
	for _, m := range got {
		if m.Name == "inv_shared" {
			held += len(m.Holders)
		}
	}
	if held != procs*mapFDs {
		b.Fatalf("got %d holders of the shared maps, want %d", held, procs*mapFDs)
	}
	b.ResetTimer()
	benchCollect(b)
}

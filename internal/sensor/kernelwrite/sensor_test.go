package kernelwrite

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"os"
	"runtime"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	cfeatures "github.com/cilium/ebpf/features"
	"github.com/cilium/ebpf/link"
	"golang.org/x/sys/unix"

	"github.com/bpfmon/bpfmon/internal/event"
	"github.com/bpfmon/bpfmon/internal/features"
	"github.com/bpfmon/bpfmon/internal/sensor"
	"github.com/bpfmon/bpfmon/internal/sensor/bpfsyscall"
	"github.com/bpfmon/bpfmon/internal/sensor/kernelwrite/writers"
	"github.com/bpfmon/bpfmon/internal/sensor/sensortest"
	"github.com/bpfmon/bpfmon/internal/testutil"
)

// collector runs the syscall sensor with the kernel-side sensor on the
// same ring buffer and keeps every event.
type collector struct {
	*sensortest.Run
	sys *bpfsyscall.Sensor
	kw  *Sensor
}

type options struct {
	mode Mode
	hook bpfsyscall.Hook // the syscall sensor's build
	ring int
	// deferRun leaves the ring buffer unread until c.run is called.
	deferRun bool
	// writes, countEntries, summaryEvery, cacheSlots: the sensor's Config (zero:
	// its defaults).
	writes       Writes
	countEntries int
	summaryEvery time.Duration
	cacheSlots   int
}

// start starts both sensors. Where this kernel allows no kernel-side hook
// at all (no kprobes, trampolines refused), the test is skipped with the
// reason, in CI too: there is nothing to test. Any other failure fails.
// With mode ModeOff only the syscall sensor runs.
func start(t testing.TB, o options) *collector {
	t.Helper()
	testutil.RequireRoot(t)
	c := &collector{sys: bpfsyscall.New(bpfsyscall.Config{Hook: o.hook})}
	sensors := []sensor.Sensor{c.sys}
	if o.mode != ModeOff {
		requireHooks(t)
		c.kw = New(Config{Mode: o.mode, Writes: o.writes, CountEntries: o.countEntries, SummaryEvery: o.summaryEvery,
			CacheSlots: o.cacheSlots})
		sensors = append(sensors, c.kw)
	}
	c.Run = sensortest.Start(t, sensortest.Options{RingBytes: o.ring, Deferred: o.deferRun, Describe: describe}, sensors...)
	if c.kw != nil {
		for _, h := range c.kw.Hooks {
			t.Logf("hook %s: %s %s", h.Function, h.Kind, h.Reason())
		}
	}
	return c
}

// requireHooks skips when the kernel has neither kprobes nor working BPF
// trampolines, as on this project's Firecracker machines.
func requireHooks(t testing.TB) {
	t.Helper()
	testutil.NeedKernelHook(t, features.Kprobes(), features.Fentry())
}

// run starts reading the ring buffer.
func (c *collector) run() { c.Read() }

func (c *collector) finish(t testing.TB) []*event.Event {
	t.Helper()
	return c.Finish(t)
}

func (c *collector) wait(t *testing.T, what string, pred func(*event.Event) bool) *event.Event {
	t.Helper()
	return c.Events.Wait(t, 10*time.Second, what, pred)
}

// all returns the events so far matching pred.
func (c *collector) all(pred func(*event.Event) bool) []*event.Event { return c.Events.All(pred) }

// idle returns once every record written before the call was decoded: a
// marker update through bpf(2) is ordered after them in the ring buffer.
// The marker is written again until one arrives: when the ring buffer is
// still full (a test that overflowed it on purpose, a reader not yet
// scheduled), the marker's own record is dropped, and counted, like any
// other.
func (c *collector) idle(t *testing.T) {
	t.Helper()
	m, err := ebpf.NewMap(&ebpf.MapSpec{Name: "t_marker", Type: ebpf.Array, KeySize: 4, ValueSize: 4, MaxEntries: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	id := testutil.MapID(t, m)
	marker := func(ev *event.Event) bool {
		return ev.Source == event.SourceSyscall && ev.Type == event.MapUpdate && ev.Map != nil && ev.Map.ID == id
	}
	for try := 0; try < 20; try++ {
		if err := m.Update(uint32(0), uint32(try), 0); err != nil {
			t.Fatal(err)
		}
		if c.Events.Poll(time.Second, marker) != nil {
			return
		}
	}
	c.wait(t, "marker", marker)
}

// hookKind is how function fn is hooked.
func (c *collector) hookKind(fn string) string {
	for _, h := range c.kw.Hooks {
		if h.Function == fn {
			return h.Kind
		}
	}
	return ""
}

func describe(ev *event.Event) string {
	s := fmt.Sprintf("%s/%s result=%v:%d key=%x value=%x kcopy=%v", ev.Type, ev.Source, ev.HasResult, ev.Result, ev.Key, ev.Value, ev.KernelCopy)
	if ev.Map != nil {
		s += fmt.Sprintf(" map=%d:%q", ev.Map.ID, ev.Map.Name)
	}
	if ev.Prog != nil {
		s += fmt.Sprintf(" prog=%+v", *ev.Prog)
	}
	if ev.Process != nil {
		s += fmt.Sprintf(" pid=%d tid=%d comm=%q", ev.Process.PID, ev.Process.TID, ev.Process.Comm)
	}
	if ev.Interrupt {
		s += " interrupt"
	}
	if ev.HasOwner {
		s += fmt.Sprintf(" owner=%d", ev.Owner)
	}
	return s
}

// progIdentity is what an event must name for program p.
func progIdentity(t *testing.T, p *ebpf.Program) event.Prog {
	t.Helper()
	info, err := p.Info()
	if err != nil {
		t.Fatal(err)
	}
	id, ok := info.ID()
	if !ok {
		t.Fatal("the kernel reports no program id")
	}
	return event.Prog{ID: uint32(id), Name: info.Name, Tag: info.Tag}
}

// kernelWrite matches kernel-side events of type typ on map id.
func kernelWrite(typ event.Type, id uint32) func(*event.Event) bool {
	return func(ev *event.Event) bool {
		return ev.Source == event.SourceKernel && ev.Type == typ && ev.Map != nil && ev.Map.ID == id
	}
}

func le32(v uint32) []byte { return binary.LittleEndian.AppendUint32(nil, v) }
func le64(v uint64) []byte { return binary.LittleEndian.AppendUint64(nil, v) }

// checkWrite asserts a program's write: the program, this process, the
// result where fexit gives it.
func checkWrite(t *testing.T, c *collector, ev *event.Event, want event.Prog, fn string) {
	t.Helper()
	if ev.Prog == nil || *ev.Prog != want {
		t.Errorf("%s on %q: prog %+v, want %+v", ev.Type, ev.Map.Name, ev.Prog, want)
	}
	if ev.Process == nil || ev.Process.PID != uint32(os.Getpid()) || ev.Interrupt {
		t.Errorf("%s on %q: process %+v interrupt %v, want pid %d", ev.Type, ev.Map.Name, ev.Process, ev.Interrupt, os.Getpid())
	}
	if fexit := c.hookKind(fn) == "fexit"; ev.HasResult != fexit || ev.Result != 0 {
		t.Errorf("%s on %q: result %v/%d, want known=%v and 0", ev.Type, ev.Map.Name, ev.HasResult, ev.Result, fexit)
	}
}

func TestProgramWritesEveryMapType(t *testing.T) {
	for _, mode := range []Mode{ModeAuto, ModeKprobe} {
		t.Run(string(mode), func(t *testing.T) {
			if mode == ModeKprobe {
				testutil.Need(t, testutil.Kprobes, features.Kprobes(), "the kprobe build")
			}
			c := start(t, options{mode: mode})
			w, err := writers.Load()
			if err != nil {
				t.Fatal(err)
			}
			defer w.Close()
			cases := []struct {
				prog, mapName, fn string
				key               []byte
			}{
				{writers.UpdateArray, "w_array", "array_map_update_elem", le32(3)},
				{writers.UpdatePcpuArray, "w_pcpu_array", "array_map_update_elem", le32(4)},
				{writers.UpdateHash, "w_hash", "htab_map_update_elem", le32(5)},
				{writers.UpdatePcpuHash, "w_pcpu_hash", "htab_percpu_map_update_elem", le32(6)},
				{writers.UpdateLRU, "w_lru", "htab_lru_map_update_elem", le32(7)},
				{writers.UpdateLRUPcpu, "w_lru_pcpu", "htab_lru_percpu_map_update_elem", le32(8)},
				{writers.UpdateLPM, "w_lpm", "trie_update_elem", append(le32(32), le32(9)...)},
			}
			for i, tc := range cases {
				key := binary.LittleEndian.Uint32(tc.key[len(tc.key)-4:])
				value := uint64(0x1122334455660000) + uint64(i)
				if err := w.Run(tc.prog, key, value); err != nil {
					t.Fatal(err)
				}
				id := testutil.MapID(t, w.Map(tc.mapName))
				ev := c.wait(t, tc.prog, kernelWrite(event.MapUpdate, id))
				checkWrite(t, c, ev, progIdentity(t, w.Program(tc.prog)), tc.fn)
				if !bytes.Equal(ev.Key, tc.key) || !bytes.Equal(ev.Value, le64(value)) {
					t.Errorf("%s: key %x value %x, want %x %x", tc.prog, ev.Key, ev.Value, tc.key, le64(value))
				}
				if ev.Map.Name != tc.mapName || ev.Map.KeySize != uint32(len(tc.key)) || ev.Map.ValueSize != 8 {
					t.Errorf("%s: map %+v", tc.prog, ev.Map)
				}
			}
		})
	}
}

func TestProgramDeletesPushesPops(t *testing.T) {
	c := start(t, options{})
	w, err := writers.Load()
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	if err := w.Run(writers.UpdateHash, 11, 1); err != nil {
		t.Fatal(err)
	}
	if err := w.Run(writers.UpdateLPM, 11, 1); err != nil {
		t.Fatal(err)
	}
	if err := w.Run(writers.DeleteHash, 11, 0); err != nil {
		t.Fatal(err)
	}
	del := progIdentity(t, w.Program(writers.DeleteHash))
	ev := c.wait(t, "hash delete", kernelWrite(event.MapDelete, testutil.MapID(t, w.Map("w_hash"))))
	checkWrite(t, c, ev, del, "htab_map_delete_elem")
	if !bytes.Equal(ev.Key, le32(11)) || ev.HasValue {
		t.Errorf("hash delete: key %x value %v", ev.Key, ev.HasValue)
	}
	ev = c.wait(t, "lpm delete", kernelWrite(event.MapDelete, testutil.MapID(t, w.Map("w_lpm"))))
	checkWrite(t, c, ev, del, "trie_delete_elem")
	if !bytes.Equal(ev.Key, append(le32(32), le32(11)...)) {
		t.Errorf("lpm delete: key %x", ev.Key)
	}

	if err := w.Run(writers.PushPop, 0, 0xabcdef); err != nil {
		t.Fatal(err)
	}
	pp := progIdentity(t, w.Program(writers.PushPop))
	for _, name := range []string{"w_queue", "w_stack"} {
		id := testutil.MapID(t, w.Map(name))
		push := c.wait(t, name+" push", kernelWrite(event.MapUpdate, id))
		checkWrite(t, c, push, pp, "queue_stack_map_push_elem")
		if push.HasKey || !bytes.Equal(push.Value, le64(0xabcdef)) {
			t.Errorf("%s push: key %v value %x", name, push.HasKey, push.Value)
		}
		pop := c.wait(t, name+" pop", kernelWrite(event.MapDelete, id))
		fn := "queue_map_pop_elem"
		if name == "w_stack" {
			fn = "stack_map_pop_elem"
		}
		checkWrite(t, c, pop, pp, fn)
		// The popped value is known at fexit only.
		if c.hookKind(fn) == "fexit" && !bytes.Equal(pop.Value, le64(0xabcdef)) {
			t.Errorf("%s pop: value %x", name, pop.Value)
		}
	}
}

// A subprogram writing through the generic helper is one frame deeper, and
// in a function of the program other than its main one.
func TestGenericHelperAndSubprogram(t *testing.T) {
	c := start(t, options{})
	w, err := writers.Load()
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	if err := w.Run(writers.UpdateGeneric, 2, 0x77); err != nil {
		t.Fatal(err)
	}
	want := progIdentity(t, w.Program(writers.UpdateGeneric))
	for _, name := range []string{"w_hash", "w_array"} {
		ev := c.wait(t, name, kernelWrite(event.MapUpdate, testutil.MapID(t, w.Map(name))))
		fn := "htab_map_update_elem"
		if name == "w_array" {
			fn = "array_map_update_elem"
		}
		checkWrite(t, c, ev, want, fn)
	}
}

// A program loaded after start, run once and unloaded at once is still
// named: its load record precedes its writes in the ring buffer.
func TestShortLivedProgram(t *testing.T) {
	c := start(t, options{})
	keep, err := writers.Load() // keeps the map ids apart from the short-lived set's
	if err != nil {
		t.Fatal(err)
	}
	defer keep.Close()
	w, err := writers.Load()
	if err != nil {
		t.Fatal(err)
	}
	want := progIdentity(t, w.Program(writers.UpdateHash))
	id := testutil.MapID(t, w.Map("w_hash"))
	if err := w.Run(writers.UpdateHash, 1, 2); err != nil {
		t.Fatal(err)
	}
	w.Close()
	ev := c.wait(t, "write by the unloaded program", kernelWrite(event.MapUpdate, id))
	checkWrite(t, c, ev, want, "htab_map_update_elem")
}

// A bpf(2) update is reported once, by the syscall sensor; with fexit it
// carries the kernel's copy of key and value.
func TestSyscallWriteReportedOnce(t *testing.T) {
	for _, mode := range []Mode{ModeAuto, ModeKprobe} {
		t.Run(string(mode), func(t *testing.T) {
			if mode == ModeKprobe {
				testutil.Need(t, testutil.Kprobes, features.Kprobes(), "the kprobe build")
			}
			c := start(t, options{mode: mode})
			w, err := writers.Load()
			if err != nil {
				t.Fatal(err)
			}
			defer w.Close()
			hash, pcpu := w.Map("w_hash"), w.Map("w_pcpu_hash")
			if err := hash.Update(uint32(21), uint64(0x2121), ebpf.UpdateAny); err != nil {
				t.Fatal(err)
			}
			cpus, _ := ebpf.PossibleCPU()
			vals := make([]uint64, cpus)
			for i := range vals {
				vals[i] = uint64(100 + i)
			}
			if err := pcpu.Update(uint32(22), vals, ebpf.UpdateAny); err != nil {
				t.Fatal(err)
			}
			if _, err := hash.BatchUpdate([]uint32{23, 24}, []uint64{0x23, 0x24}, nil); err != nil {
				t.Fatal(err)
			}
			if err := hash.Delete(uint32(21)); err != nil {
				t.Fatal(err)
			}
			c.idle(t)
			// Each of them told from its caller's address, without a stack
			// walk (from_syscall): the update, the per-CPU update, the
			// batch's two elements and the delete, and the idle marker.
			// Kprobes do not run there (bpf_prog_active is raised). Only
			// x86's trampoline frame is read for the caller (arch.h's
			// TRAMP_CALLER_OFF); on arm64 the stack walk tells them, and
			// the checks below hold there as well.
			if n := kstat(t, c.kw, kwKwStatKSTAT_SYSCALL); runtime.GOARCH == "amd64" && c.hookKind("htab_map_update_elem") == "fexit" && n < 5 {
				t.Errorf("%d writes told to be bpf(2)'s own by their caller, want at least 5 (sys_caller ranges %x)", n, syscallCallerRanges())
			}
			hid, pid := testutil.MapID(t, hash), testutil.MapID(t, pcpu)
			onMaps := func(ev *event.Event) bool {
				return ev.Map != nil && (ev.Map.ID == hid || ev.Map.ID == pid)
			}
			for _, ev := range c.all(onMaps) {
				if ev.Source != event.SourceSyscall {
					t.Errorf("reported twice: %s", describe(ev))
				}
			}
			fexit := c.hookKind("htab_map_update_elem") == "fexit"
			var allCPUs []byte
			for _, v := range vals {
				allCPUs = append(allCPUs, le64(v)...)
			}
			for _, want := range []struct {
				typ        event.Type
				id         uint32
				key, value []byte
				fexit      bool
			}{
				{event.MapUpdate, hid, le32(21), le64(0x2121), fexit},
				{event.MapUpdate, pid, le32(22), allCPUs, c.hookKind("bpf_percpu_hash_update") == "fexit"},
				{event.MapUpdateBatch, hid, append(le32(23), le32(24)...), append(le64(0x23), le64(0x24)...), fexit},
				{event.MapDelete, hid, le32(21), nil, c.hookKind("htab_map_delete_elem") == "fexit"},
			} {
				evs := c.all(func(ev *event.Event) bool { return ev.Type == want.typ && onMaps(ev) && ev.Map.ID == want.id })
				if len(evs) != 1 {
					t.Errorf("%s on %d: %d events, want 1", want.typ, want.id, len(evs))
					continue
				}
				ev := evs[0]
				if ev.KernelCopy != want.fexit || ev.UserCopyDiffers {
					t.Errorf("%s: kernel_copy %v user_copy_differs %v, want %v false", want.typ, ev.KernelCopy, ev.UserCopyDiffers, want.fexit)
				}
				if !bytes.Equal(ev.Key, want.key) || (want.value != nil && !bytes.Equal(ev.Value, want.value)) {
					t.Errorf("%s: key %x value %x, want %x %x", want.typ, ev.Key, ev.Value, want.key, want.value)
				}
			}
		})
	}
}

// A socket filter on a socket runs on received packets in softirq: no
// process is responsible, and none is named.
func TestInterruptContext(t *testing.T) {
	c := start(t, options{})
	w, err := writers.Load()
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	rx, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer rx.Close()
	raw, err := rx.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	var serr error
	raw.Control(func(fd uintptr) {
		serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_ATTACH_BPF, w.Program(writers.UpdateHash).FD())
	})
	if serr != nil {
		t.Fatalf("attaching the socket filter: %v", serr)
	}
	tx, err := net.DialUDP("udp4", nil, rx.LocalAddr().(*net.UDPAddr))
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Close()
	if _, err := tx.Write([]byte("0123456789abcdef")); err != nil {
		t.Fatal(err)
	}
	ev := c.wait(t, "write on packet receive", kernelWrite(event.MapUpdate, testutil.MapID(t, w.Map("w_hash"))))
	if !ev.Interrupt || ev.Process != nil {
		t.Errorf("interrupt %v process %+v, want interrupt and no process", ev.Interrupt, ev.Process)
	}
	if want := progIdentity(t, w.Program(writers.UpdateHash)); ev.Prog == nil || *ev.Prog != want {
		t.Errorf("prog %+v, want %+v", ev.Prog, want)
	}
}

// bpfmon's own maps, written by its programs on every bpf(2) call in the
// raw tracepoint build, are never reported.
func TestOwnMapsNotReported(t *testing.T) {
	c := start(t, options{hook: bpfsyscall.HookRawTracepoint})
	w, err := writers.Load()
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	for i := range 20 {
		if err := w.Map("w_hash").Update(uint32(i%8), uint64(i), ebpf.UpdateAny); err != nil {
			t.Fatal(err)
		}
	}
	c.idle(t)
	own := map[uint32]bool{}
	for _, id := range c.Set.OwnMaps() {
		own[id] = true
	}
	for _, ev := range c.all(func(ev *event.Event) bool { return ev.Source == event.SourceKernel }) {
		if own[ev.Map.ID] {
			t.Errorf("bpfmon's own map reported: %s", describe(ev))
		}
	}
}

func TestTaskStorage(t *testing.T) {
	testutil.Need(t, testutil.TaskStorage, cfeatures.HaveMapType(ebpf.TaskStorage), "task storage maps came in Linux 5.11")
	for _, del := range []bool{false, true} {
		t.Run(fmt.Sprintf("delete=%v", del), func(t *testing.T) {
			c := start(t, options{})
			runtime.LockOSThread()
			defer runtime.UnlockOSThread()
			tid := uint32(unix.Gettid())
			ts, err := writers.LoadTaskStorage(tid, 0x5151, del)
			if err != nil {
				t.Fatal(err)
			}
			defer ts.Close()
			l, err := link.AttachTracing(link.TracingOptions{Program: ts.Program()})
			if err != nil {
				t.Fatal(err)
			}
			defer l.Close()
			unix.Getpid() // the target's next system call
			id := testutil.MapID(t, ts.Map())
			want := progIdentity(t, ts.Program())
			ev := c.wait(t, "task storage create", kernelWrite(event.MapUpdate, id))
			checkWrite(t, c, ev, want, "bpf_local_storage_update")
			if !ev.HasOwner || ev.Owner != uint64(tid) || !bytes.Equal(ev.Value, le64(0x5151)) {
				t.Errorf("create: owner %v/%d value %x, want %d %x", ev.HasOwner, ev.Owner, ev.Value, tid, le64(0x5151))
			}
			if del {
				ev := c.wait(t, "task storage delete", kernelWrite(event.MapDelete, id))
				if ev.Prog == nil || *ev.Prog != want || ev.Owner != uint64(tid) {
					t.Errorf("delete: %s", describe(ev))
				}
			}
		})
	}
}

// Writes that do not fit in the ring buffer are counted and reported:
// none goes missing silently. The ring is left unread while the writes are
// made, so that most cannot fit.
func TestLossIsCounted(t *testing.T) {
	// Loaded first: its own bpf(2) writes (global data) must not take the
	// ring's room.
	w, err := writers.Load()
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	c := start(t, options{ring: 16 << 10, deferRun: true, writes: WritesAll})
	const n = 5000
	ret, err := w.Program(writers.UpdateArray).Run(&ebpf.RunOptions{Data: writers.Packet(1, 1), Repeat: n})
	if err != nil || ret != 0 {
		t.Fatalf("test run: %d %v", ret, err)
	}
	id := testutil.MapID(t, w.Map("w_array"))
	c.run()
	c.idle(t)
	evs := c.finish(t)
	var reported, lost uint64
	for _, ev := range evs {
		switch {
		case ev.Source == event.SourceKernel && ev.Type == event.MapUpdate && ev.Map.ID == id:
			reported++
		case ev.Source == event.SourceKernel && ev.Type == event.Lost:
			lost += ev.Count
		}
	}
	t.Logf("%d writes: %d reported, %d lost", n, reported, lost)
	// Other processes' programs may lose writes in the same window: lost
	// may exceed what this test lost, never fall short of it.
	if lost == 0 || reported == n || reported+lost < n {
		t.Errorf("%d reported + %d lost, want %d or more with some lost", reported, lost, n)
	}
}

func TestUnavailableNamesReasons(t *testing.T) {
	testutil.RequireRoot(t)
	kp, fe := features.Kprobes(), features.Fentry()
	if kp == nil || fe == nil {
		t.Skip("this kernel has kernel-side hooks; the unavailable path is tested where it has none")
	}
	_, err := sensortest.TryStart(t, sensortest.Options{}, bpfsyscall.New(bpfsyscall.Config{}), New(Config{}))
	if !errors.Is(err, ErrUnavailable) || !errors.Is(err, sensor.ErrUnavailable) {
		t.Fatalf("Start: %v, want ErrUnavailable", err)
	}
	t.Logf("%v", err)
	for _, want := range []string{"kprobe", "fexit", "EPERM"} {
		if !bytes.Contains([]byte(err.Error()), []byte(want)) {
			t.Errorf("error %q does not mention %q", err, want)
		}
	}
}

// kstat sums counter idx of the kernel-side sensor's kstats over the CPUs.
func kstat(t *testing.T, s *Sensor, idx kwKwStat) uint64 {
	t.Helper()
	var per []uint64
	if err := s.Coll.Maps[kwMapKstats].Lookup(uint32(idx), &per); err != nil {
		t.Fatal(err)
	}
	var n uint64
	for _, v := range per {
		n += v
	}
	return n
}

// syscallCallerRanges is what the loader found of the bpf(2) command
// code, for failure messages.
func syscallCallerRanges() [][2]uint64 {
	syms, err := readKallsyms()
	if err != nil {
		return nil
	}
	lo, hi := syscallCallers(syms)
	var out [][2]uint64
	for i := range lo {
		if lo[i] != 0 {
			out = append(out, [2]uint64{lo[i], hi[i]})
		}
	}
	return out
}

// TestOwnMapsFrozen: no process can blind the selection or clear the
// counters and counts through bpf(2), and the ring is not listed as the
// sensor's.
func TestOwnMapsFrozen(t *testing.T) {
	requireHooks(t)
	s := New(Config{})
	r := sensortest.Start(t, sensortest.Options{}, s)
	r.CheckOwnMaps(t, s)
}

package record

import (
	"errors"
	"os"
	"reflect"
	"strings"
	"sync/atomic"
	"testing"
	"time"
	"unsafe"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"golang.org/x/sys/unix"

	"github.com/bpfmon/bpfmon/internal/event"
	"github.com/bpfmon/bpfmon/internal/testutil"
)

// taskRecord is a record of kind k about this process: a header and a
// task, then pad bytes.
func taskRecord(k Kind, tid uint32, comm string, pad int) []byte {
	var h Header
	h.Kind, h.Tid, h.Ktime = uint32(k), tid, 5e9
	var ti Task
	ti.Pid, ti.Ppid, ti.Uid, ti.Gid, ti.CgroupId = uint32(os.Getpid()), 1, 2, 3, 4
	var st unix.Stat_t
	if unix.Stat("/proc/self/exe", &st) == nil {
		ti.ExeIno = st.Ino // the inode the /proc fallback must find
	}
	copy(unsafe.Slice((*byte)(unsafe.Pointer(&ti.Comm[0])), len(ti.Comm)), comm)
	b := append([]byte(nil), unsafe.Slice((*byte)(unsafe.Pointer(&h)), HeaderSize)...)
	b = append(b, unsafe.Slice((*byte)(unsafe.Pointer(&ti)), unsafe.Sizeof(ti))...)
	return append(b, make([]byte, pad)...)
}

func TestDemuxDispatch(t *testing.T) {
	m := NewDemux()
	var got []string
	h := func(name string) Handler {
		return func(raw []byte, d *Decoder, emit Emit) error {
			var p event.Process
			if !d.Process(&p, raw) {
				return errors.New("no task")
			}
			got = append(got, name+":"+p.Comm)
			return emit(&event.Event{Type: event.MapUpdate, Process: &p})
		}
	}
	if err := m.Handle(KindKwrite, h("kwrite")); err != nil {
		t.Fatal(err)
	}
	if err := m.Handle(KindDeny, h("deny")); err != nil {
		t.Fatal(err)
	}
	// One handler a kind: a second sensor claiming it is refused.
	if err := m.Handle(KindDeny, h("other")); err == nil {
		t.Error("a second handler for REC_DENY accepted")
	}
	if err := m.Handle(kindMax, h("x")); err == nil || m.Handle(0, h("x")) == nil {
		t.Error("kinds out of range accepted")
	}
	var evs []*event.Event
	emit := func(ev *event.Event) error { evs = append(evs, ev); return nil }
	for _, raw := range [][]byte{taskRecord(KindDeny, 9, "d", 0), taskRecord(KindKwrite, 8, "k", 8)} {
		if err := m.Decode(raw, emit); err != nil {
			t.Fatal(err)
		}
	}
	if strings.Join(got, " ") != "deny:d kwrite:k" || len(evs) != 2 {
		t.Fatalf("dispatched %v, emitted %d", got, len(evs))
	}
	p := evs[0].Process
	if p.PID != uint32(os.Getpid()) || p.TID != 9 || p.PPID != 1 || p.UID != 2 || p.GID != 3 || p.CgroupID != 4 {
		t.Errorf("process %+v", p)
	}
	if exe, err := os.Executable(); err != nil || p.Exe != exe {
		t.Errorf("exe %q, want %q (from /proc, no REC_EXE was sent)", p.Exe, exe)
	}
	if got := m.Time(5e9); got.Sub(m.Time(0)) != 5*time.Second {
		t.Errorf("Time: %v", got)
	}
	// Never a panic: short, unknown, or claiming a task it has not.
	for name, raw := range map[string][]byte{
		"empty": nil, "short header": taskRecord(KindDeny, 1, "x", 0)[:HeaderSize-1],
		"no handler": taskRecord(KindEnter, 1, "x", 0), "kind beyond the table": taskRecord(200, 1, "x", 0),
		"no task": taskRecord(KindDeny, 1, "x", 0)[:HeaderSize+4],
	} {
		if err := m.Decode(raw, emit); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	if err := m.Decode(taskRecord(KindEnter, 1, "x", 0), emit); !errors.Is(err, ErrUnknownKind) {
		t.Errorf("unknown kind: %v", err)
	}
}

// TestExeRecord: a REC_EXE record names the process's executable from
// then on; the path is rebuilt from its slots, leaf first, mount crossings
// skipped, and a truncated one cannot pass for absolute.
func TestExeRecord(t *testing.T) {
	m := NewDemux()
	var r recordExeRec
	r.Hdr.Kind = uint32(KindExe)
	r.Task.Pid, r.Task.StartTime, r.Task.ExeIno = 4242, 77, 88
	for i, c := range []string{"agent", "bin", "", "usr"} {
		copy(unsafe.Slice((*byte)(unsafe.Pointer(&r.Slots[i][0])), len(r.Slots[i])), c)
	}
	r.Count = 4
	raw := unsafe.Slice((*byte)(unsafe.Pointer(&r)), exeRecSize)
	if err := m.Decode(raw, nil); err != nil {
		t.Fatal(err)
	}
	if got := m.procs.exe(4242, 77, 88); got != "/usr/bin/agent" {
		t.Errorf("exe %q", got)
	}
	r.Truncated, r.Task.StartTime = 1, 78
	if err := m.Decode(raw, nil); err != nil {
		t.Fatal(err)
	}
	if got := m.procs.exe(4242, 78, 88); got != ".../usr/bin/agent" {
		t.Errorf("truncated exe %q", got)
	}
	r.Count = uint32(len(r.Slots) + 1)
	if got := exePath(&r); got != "" {
		t.Errorf("count beyond the slots: %q", got)
	}
	if err := m.Decode(raw[:exeRecSize-1], nil); err == nil {
		t.Error("short REC_EXE accepted")
	}
}

func TestCalls(t *testing.T) {
	var c Calls
	c.pending = map[uint32]*event.Event{}
	old := &event.Event{Time: time.Unix(10, 0)}
	if c.Begin(1, old) != nil {
		t.Fatal("a first call returned a previous one")
	}
	next := &event.Event{Time: time.Unix(20, 0)}
	if c.Begin(1, next) != old {
		t.Error("the call whose exit was lost is not handed back")
	}
	if c.InFlight(1) != next || c.End(1) != next || c.End(1) != nil || c.InFlight(1) != nil {
		t.Error("End does not take the call once")
	}
	c.Begin(2, &event.Event{Time: time.Unix(30, 0)})
	c.Begin(3, &event.Event{Time: time.Unix(5, 0)})
	var out []*event.Event
	emit := func(ev *event.Event) error { out = append(out, ev); return nil }
	if err := c.stale(time.Unix(6, 0), emit); err != nil || len(out) != 1 || out[0].Time != time.Unix(5, 0) {
		t.Errorf("stale: %v %v", out, err)
	}
	c.Begin(4, &event.Event{Time: time.Unix(25, 0)})
	out = nil
	if err := c.flush(emit); err != nil || len(out) != 2 || !out[0].Time.Before(out[1].Time) || len(c.pending) != 0 {
		t.Errorf("flush: %v %v", out, err)
	}
}

// TestRingRun reads a real ring: Run calls detach when told to stop,
// reports what a loss counter grew by as lost events of its source (at a
// tick and at the final drain), runs the tickers, and hands back the calls
// still in flight, without a result.
func TestRingRun(t *testing.T) {
	testutil.RequireRoot(t)
	r, err := NewRing(5000)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	if r.Size() != 8192 || r.MapID() == 0 || r.WakeupBytes() != 1024 {
		t.Errorf("size %d, id %d, wakeup %d", r.Size(), r.MapID(), r.WakeupBytes())
	}
	var lost atomic.Uint64
	lost.Store(3)
	loss := r.CountLost("kernel", func() (uint64, error) { return lost.Load(), nil })
	var ticks atomic.Int32
	r.OnTick(func(Emit) error { ticks.Add(1); return nil })
	r.Calls.Begin(7, &event.Event{Type: event.MapUpdate, Time: time.Now()})

	var evs []*event.Event
	stop := make(chan struct{})
	detached := make(chan struct{})
	done := make(chan error, 1)
	go func() {
		done <- r.Run(stop, func() { close(detached) }, func(ev *event.Event) error { evs = append(evs, ev); return nil }, nil)
	}()
	time.Sleep(LossInterval + 3*PollInterval)
	lost.Store(5)
	close(stop)
	<-detached
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	var counts []uint64
	var inflight int
	for _, ev := range evs {
		switch {
		case ev.Type == event.Lost && ev.Source == "kernel":
			counts = append(counts, ev.Count)
		case ev.Type == event.MapUpdate && !ev.HasResult:
			inflight++
		default:
			t.Errorf("unexpected event %+v", ev)
		}
	}
	if len(counts) != 2 || counts[0] != 3 || counts[1] != 2 {
		t.Errorf("lost events %v, want [3 2]", counts)
	}
	if loss.Reported() != 5 || r.Lost() != 5 {
		t.Errorf("reported %d, ring's %d, want 5", loss.Reported(), r.Lost())
	}
	if inflight != 1 || ticks.Load() < 2 {
		t.Errorf("calls in flight handed back: %d; ticks %d", inflight, ticks.Load())
	}
}

// TestRingReadable: Readable is what programs wrote and the reader has not
// read (each record's 8-byte header included), and 0 once the ring is
// closed, without touching the unmapped ring.
func TestRingReadable(t *testing.T) {
	testutil.RequireRoot(t)
	r, err := NewRing(8192)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	prog, err := ebpf.NewProgram(&ebpf.ProgramSpec{Name: "ring_fill", Type: ebpf.SocketFilter, License: "GPL", Instructions: asm.Instructions{
		asm.Mov.Imm(asm.R5, 1),
		asm.StoreMem(asm.R10, -8, asm.R5, asm.DWord),
		asm.StoreMem(asm.R10, -16, asm.R5, asm.DWord),
		asm.LoadMapPtr(asm.R1, r.Map().FD()),
		asm.Mov.Reg(asm.R2, asm.R10), asm.Add.Imm(asm.R2, -16),
		asm.Mov.Imm(asm.R3, 16),
		asm.Mov.Imm(asm.R4, 0),
		asm.FnRingbufOutput.Call(),
		asm.Mov.Imm(asm.R0, 0), asm.Return(),
	}})
	if err != nil {
		t.Fatal(err)
	}
	defer prog.Close()
	if n := r.Readable(); n != 0 {
		t.Errorf("%d bytes readable in a new ring", n)
	}
	if _, err := prog.Run(&ebpf.RunOptions{Data: make([]byte, 14), Repeat: 3}); err != nil {
		t.Fatal(err)
	}
	if n := r.Readable(); n != 3*(8+16) {
		t.Errorf("%d bytes readable after three 16-byte records, want %d", n, 3*(8+16))
	}
	r.Close()
	if n := r.Readable(); n != 0 {
		t.Errorf("%d bytes readable in a closed ring", n)
	}
}

// TestProtocolObject: this package's own object passes its own check, and
// the check notices a struct that breaks the protocol.
func TestProtocolObject(t *testing.T) {
	spec, err := loadRecord()
	if err != nil {
		t.Fatal(err)
	}
	if err := CheckObject(spec); err != nil {
		t.Error(err)
	}
	if err := CheckType(spec, "task_info", reflect.TypeFor[Header]()); err == nil {
		t.Error("task_info taken for the header's layout")
	}
}

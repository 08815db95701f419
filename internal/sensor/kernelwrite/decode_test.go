package kernelwrite

import (
	"bytes"
	"reflect"
	"strings"
	"testing"
	"time"
	"unsafe"

	"github.com/bpfmon/bpfmon/internal/event"
	"github.com/bpfmon/bpfmon/internal/features"
	"github.com/bpfmon/bpfmon/internal/sensor"
	"github.com/bpfmon/bpfmon/internal/sensor/record"
)

// A kernel's text symbols as /proc/kallsyms lists them: the core kernel
// between _stext and _etext, a module, a BPF trampoline and a program.
const testKallsyms = `ffffffff81000000 T _stext
ffffffff81100000 t htab_map_update_elem
ffffffff81100400 T bpf_map_update_elem
ffffffff81200000 T __sys_bpf
ffffffff81e00000 T _etext
ffffffffc0001000 t some_module_fn	[somemod]
ffffffffc0100000 t bpf_trampoline_6442527157	[bpf]
ffffffffc0200000 t bpf_prog_8a45e10a94de49a5_writer	[bpf]
ffffffff81300000 D some_data
ffffffff81400000 t only_variant.isra.0
`

const (
	coreHelper = 0xffffffff81100410 // in bpf_map_update_elem
	coreOp     = 0xffffffff81100005 // htab_map_update_elem+5
	coreSys    = 0xffffffff81200100
	moduleAddr = 0xffffffffc0001010
	trampAddr  = 0xffffffffc0100079
	selfStart  = 0xffffffffc0300000
	progStart  = 0xffffffffc0200000
)

func testResolver(t *testing.T) *resolver {
	t.Helper()
	k, err := parseKallsyms(strings.NewReader(testKallsyms))
	if err != nil {
		t.Fatal(err)
	}
	table := newProgTable([]uint32{1})
	table.add(selfStart, 0x200, &event.Prog{ID: 1, Name: "bpfmon_own"}, 10)
	table.add(progStart, 0x100, &event.Prog{ID: 7, Name: "writer", Tag: "8a45e10a94de49a5"}, 100)
	op, _ := k.span("htab_map_update_elem")
	return &resolver{table: table, syms: k, classes: map[uint64]frameClass{}, refreshed: time.Now(),
		hooked:  []span{op},
		confirm: func(*progRange, uint64, uint64) bool { return false }}
}

func TestKallsymsParse(t *testing.T) {
	k, err := parseKallsyms(strings.NewReader(testKallsyms))
	if err != nil {
		t.Fatal(err)
	}
	if !k.inCore(coreOp) || k.inCore(trampAddr) || k.inCore(0xffffffff81e00000) {
		t.Error("core text range wrong")
	}
	if s, ok := k.at(trampAddr); !ok || s.name != "bpf_trampoline_6442527157" || s.mod != "bpf" {
		t.Errorf("at(trampoline) = %+v %v", s, ok)
	}
	if _, ok := k.addr("htab_map_update_elem"); !ok {
		t.Error("htab_map_update_elem not found")
	}
	if _, ok := k.addr("some_data"); ok {
		t.Error("a data symbol was taken for text")
	}
	if v := k.variant("only_variant"); v != "only_variant.isra.0" {
		t.Errorf("variant = %q", v)
	}
	if _, err := parseKallsyms(strings.NewReader("0000000000000000 T _stext\n0000000000000000 T _etext\n")); err == nil {
		t.Error("zeroed addresses (kptr_restrict) accepted")
	}
	// arm64 lists _etext as data, not text.
	arm, err := parseKallsyms(strings.NewReader("ffff800008010000 T _stext\nffff800008020000 T htab_map_update_elem\nffff800008fe0000 D _etext\n"))
	if err != nil {
		t.Fatalf("arm64's _etext: %v", err)
	}
	if !arm.inCore(0xffff800008020010) || arm.inCore(0xffff800008fe0010) {
		t.Error("arm64 text bounds wrong")
	}
}

func TestWriterWalk(t *testing.T) {
	rs := testResolver(t)
	writer := event.Prog{ID: 7, Name: "writer", Tag: "8a45e10a94de49a5"}
	for _, tc := range []struct {
		name   string
		frames []uint64
		ktime  uint64
		want   attribution
	}{
		// fexit: own program, trampoline, the operation, the writer.
		{"direct call", []uint64{selfStart + 0xdc, trampAddr, coreOp, progStart + 0x4b, coreSys}, 200, byProgram},
		// the generic helper sits between.
		{"generic helper", []uint64{coreOp, coreHelper, progStart + 0x33, coreSys}, 200, byProgram},
		{"bpf(2)", []uint64{selfStart, trampAddr, coreOp, coreSys, coreSys + 8}, 200, byKernel},
		// Below the hooked function: bpfmon's side, not looked at.
		{"unknown below the operation", []uint64{0xffffffffc0900000, coreOp, progStart + 4}, 200, byProgram},
		// Someone else's trampoline between the operation and the writer.
		{"trampoline above", []uint64{coreOp, trampAddr, progStart + 4}, 200, byProgram},
		// Never past something opaque, even with a program beyond it.
		{"module before program", []uint64{coreOp, moduleAddr, progStart + 4}, 200, byUnknown},
		// The range was loaded after the write: reused memory.
		{"address reused", []uint64{coreOp, progStart + 4}, 50, byUnknown},
		{"no frames", nil, 200, byUnknown},
		{"unmapped address", []uint64{coreOp, 0xffffffffc0900000}, 200, byUnknown},
	} {
		prog, by := rs.writer(tc.frames, tc.ktime)
		if by != tc.want {
			t.Errorf("%s: attribution %d, want %d", tc.name, by, tc.want)
		}
		if (by == byProgram) != (prog != nil) || (prog != nil && *prog != writer) {
			t.Errorf("%s: prog %+v", tc.name, prog)
		}
	}
	// With records lost, an attribution stands only if the kernel confirms.
	rs.table.verify = true
	if _, by := rs.writer([]uint64{coreOp, progStart + 4}, 200); by != byUnknown {
		t.Errorf("unconfirmed attribution accepted: %d", by)
	}
	rs.confirm = func(*progRange, uint64, uint64) bool { return true }
	if _, by := rs.writer([]uint64{coreOp, progStart + 4}, 200); by != byProgram {
		t.Errorf("confirmed attribution refused: %d", by)
	}
}

func TestTableReplaceAndPrune(t *testing.T) {
	tb := newProgTable(nil)
	a := &event.Prog{ID: 1}
	b := &event.Prog{ID: 2}
	tb.add(0x1000, 0x100, a, 1)
	tb.add(0x1200, 0x100, a, 1)
	tb.add(0x1080, 0x200, b, 5) // overlaps both of a's
	if r := tb.lookup(0x1010); r != nil {
		t.Errorf("0x1010 still mapped to %d after the overlap replaced it", r.prog.ID)
	}
	if r := tb.lookup(0x1100); r == nil || r.prog != b {
		t.Errorf("0x1100: %+v", r)
	}
	if r := tb.lookup(0x1290); r != nil {
		t.Errorf("0x1290 still mapped after the overlap")
	}
	now := time.Now()
	tb.gone(2, now)
	tb.prune(now.Add(goneGrace / 2))
	if tb.lookup(0x1100) == nil {
		t.Error("a freed program's range dropped before the grace period")
	}
	tb.prune(now.Add(2 * goneGrace))
	if tb.lookup(0x1100) != nil || len(tb.ranges) != 0 {
		t.Errorf("freed range kept: %+v", tb.ranges)
	}
}

// kwriteRecord builds a REC_KWRITE record.
func kwriteRecord(op, tid, mapID uint32, flags uint32, frames []uint64, key, value []byte) []byte {
	var r kwKwriteRec
	r.Hdr.Kind, r.Hdr.Tid, r.Hdr.Ktime = uint32(record.KindKwrite), tid, 200
	r.Op, r.Task.Pid, r.Flags = op, tid, flags|kfResult
	r.Map.Id, r.Map.KeySize, r.Map.ValueSize = mapID, 4, 8
	copy(r.Frames[:], frames)
	r.Nframes = uint32(len(frames))
	r.KeyLen, r.KeyTotal = uint32(len(key)), uint32(len(key))
	r.ValueLen, r.ValueTotal = uint32(len(value)), uint32(len(value))
	b := unsafe.Slice((*byte)(unsafe.Pointer(&r)), kwriteHeader)
	return append(append(append([]byte(nil), b...), key...), value...)
}

// demux decodes d's records as the ring does.
func demux(t *testing.T, d *decoder) *record.Demux {
	t.Helper()
	m := record.NewDemux()
	for kind, h := range map[record.Kind]record.Handler{record.KindKwrite: d.write, record.KindProg: d.prog, record.KindProgGone: d.prog} {
		if err := m.Handle(kind, h); err != nil {
			t.Fatal(err)
		}
	}
	return m
}

func TestDecodeProgramWriteAndKernelCopy(t *testing.T) {
	d := &decoder{cfg: decoderConfig{selfTGID: 999, capture: 4096}, rs: *testResolver(t), batches: map[uint32]*batchCopy{}}
	m := demux(t, d)
	var out []*event.Event
	emit := func(ev *event.Event) error { out = append(out, ev); return nil }

	// A program's write is its own event.
	if err := m.Decode(kwriteRecord(kopUpdate, 5, 42, 0, []uint64{coreOp, progStart + 1}, le32(1), le64(2)), emit); err != nil {
		t.Fatal(err)
	}
	if len(out) != 1 || out[0].Source != event.SourceKernel || out[0].Prog == nil || out[0].Prog.ID != 7 ||
		!bytes.Equal(out[0].Key, le32(1)) || !bytes.Equal(out[0].Value, le64(2)) || out[0].Process.PID != 5 || out[0].Process.TID != 5 || !out[0].HasResult {
		t.Fatalf("program write: %+v", out)
	}

	// A bpf(2) update in flight on the same thread and map gets the
	// kernel's copy, and says the user buffer changed meanwhile.
	pending := &event.Event{Type: event.MapUpdate, Source: event.SourceSyscall, Map: &event.Map{ID: 42},
		Key: le32(9), HasKey: true, Value: le64(1), HasValue: true}
	m.Calls.Begin(6, pending)
	if err := m.Decode(kwriteRecord(kopUpdate, 6, 42, 0, []uint64{coreOp, coreSys}, le32(9), le64(0x66)), emit); err != nil {
		t.Fatal(err)
	}
	if len(out) != 1 {
		t.Fatalf("a bpf(2) write reported twice: %+v", out[1:])
	}
	if !pending.KernelCopy || !pending.UserCopyDiffers || !bytes.Equal(pending.Value, le64(0x66)) {
		t.Errorf("kernel copy not merged: %+v", pending)
	}

	// Same thread, another map: not part of that call.
	if err := m.Decode(kwriteRecord(kopUpdate, 6, 43, 0, []uint64{coreOp, coreSys}, le32(9), le64(0x66)), emit); err != nil {
		t.Fatal(err)
	}
	if len(out) != 2 || out[1].Prog != nil || out[1].Map.ID != 43 {
		t.Errorf("unmatched kernel write: %+v", out[1:])
	}

	// bpfmon's own bpf(2) calls are dropped, as the syscall sensor does.
	if err := m.Decode(kwriteRecord(kopDelete, 999<<0, 44, 0, []uint64{coreOp, coreSys}, le32(1), nil), emit); err != nil {
		t.Fatal(err)
	}
	if len(out) != 2 {
		t.Errorf("bpfmon's own call reported: %+v", out[2:])
	}

	// In interrupt context there is no process, and no call to merge into.
	m.Calls.Begin(7, &event.Event{Type: event.MapUpdate, Source: event.SourceSyscall, Map: &event.Map{ID: 42}})
	if err := m.Decode(kwriteRecord(kopUpdate, 7, 42, kfIRQ, []uint64{coreOp, progStart + 1}, le32(1), le64(2)), emit); err != nil {
		t.Fatal(err)
	}
	if len(out) != 3 || !out[2].Interrupt || out[2].Process != nil || m.Calls.InFlight(7).KernelCopy {
		t.Errorf("interrupt write: %+v", out[2:])
	}
}

func TestMergeBatch(t *testing.T) {
	d := &decoder{cfg: decoderConfig{capture: 12}, rs: *testResolver(t), batches: map[uint32]*batchCopy{}}
	ev := &event.Event{Type: event.MapUpdateBatch, Source: event.SourceSyscall, Map: &event.Map{ID: 42},
		Key: append(append(le32(1), le32(2)...), le32(3)...), HasKey: true,
		Value: append(le64(10), le64(20)[:4]...), HasValue: true} // captured at entry, cut at 12 bytes
	m := demux(t, d)
	m.Calls.Begin(8, ev)
	emit := func(ev *event.Event) error { t.Errorf("emitted %+v", ev); return nil }
	for i, v := range []uint64{10, 20, 30} {
		if err := m.Decode(kwriteRecord(kopUpdate, 8, 42, 0, []uint64{coreOp, coreSys}, le32(uint32(i+1)), le64(v)), emit); err != nil {
			t.Fatal(err)
		}
	}
	if !ev.KernelCopy || ev.UserCopyDiffers {
		t.Errorf("kernel_copy %v user_copy_differs %v", ev.KernelCopy, ev.UserCopyDiffers)
	}
	if want := append(append(le32(1), le32(2)...), le32(3)...); !bytes.Equal(ev.Key, want) {
		t.Errorf("keys %x, want %x", ev.Key, want)
	}
	if want := append(le64(10), le64(20)[:4]...); !bytes.Equal(ev.Value, want) || !ev.Truncated {
		t.Errorf("values %x truncated %v, want %x cut at the capture limit", ev.Value, ev.Truncated, want)
	}
}

func TestMalformedRecords(t *testing.T) {
	d := &decoder{cfg: decoderConfig{capture: 16}, rs: *testResolver(t), batches: map[uint32]*batchCopy{}}
	m := demux(t, d)
	emit := func(*event.Event) error { return nil }
	good := kwriteRecord(kopUpdate, 1, 1, 0, nil, le32(1), le64(1))
	for name, raw := range map[string][]byte{
		"short":        good[:kwriteHeader-1],
		"lengths":      good[:len(good)-1],
		"program":      append([]byte{byte(record.KindProg)}, make([]byte, 16)...),
		"unknown kind": append([]byte{99}, make([]byte, 16)...),
	} {
		if err := m.Decode(raw, emit); err == nil {
			t.Errorf("%s record accepted", name)
		}
	}
	bad := append([]byte(nil), good...)
	(*kwKwriteRec)(unsafe.Pointer(&bad[0])).Nframes = 1000
	if err := m.Decode(bad, emit); err == nil {
		t.Error("frame count beyond the record accepted")
	}
}

// TestLayoutMatchesObject checks that the object speaks the record
// protocol and that the Go record types match its BTF.
func TestLayoutMatchesObject(t *testing.T) {
	spec, err := loadKw()
	if err != nil {
		t.Fatal(err)
	}
	if err := record.CheckObject(spec); err != nil {
		t.Error(err)
	}
	for name, goType := range map[string]reflect.Type{"kwrite_rec": reflect.TypeFor[kwKwriteRec](), "kprog_rec": reflect.TypeFor[kwKprogRec]()} {
		if err := record.CheckType(spec, name, goType); err != nil {
			t.Error(err)
		}
	}
}

func TestFeaturesFromHooks(t *testing.T) {
	s := &Sensor{Hooks: []HookStatus{
		{Function: "htab_map_update_elem", Kind: "kprobe", FexitError: "program load denied (EPERM)"},
		{Function: "bpf_cgrp_storage_delete", KprobeError: "not in kallsyms"},
	}}
	got := map[string]features.Feature{}
	for _, f := range s.Features(nil) {
		got[f.Name] = f
	}
	if w := got["kernel_side_writes"]; !w.Available || !strings.Contains(w.Detail, "kprobe on 1 kernel functions") ||
		!strings.Contains(w.Detail, "bpf_cgrp_storage_delete") || len(w.Functions) != 2 || w.Functions[0].Reason != "fexit: program load denied (EPERM)" {
		t.Errorf("kernel_side_writes: %+v", w)
	}
	if a := got["program_attribution"]; !a.Available || !strings.Contains(a.Detail, "unknown") {
		t.Errorf("attribution without load tracking: %+v", a)
	}
	if c := got["syscall_kernel_copy"]; c.Available || c.Fallback == "" {
		t.Errorf("kernel copy with kprobes: %+v", c)
	}
	// Unavailable: each feature says why, with the per-function outcome.
	err := &UnavailableError{Hooks: s.Hooks, Reason: "fexit: denied"}
	for _, f := range s.Features(err) {
		if f.Available || !strings.Contains(f.Detail, "fexit: denied") || f.Fallback == "" {
			t.Errorf("with the sensor unavailable: %+v", f)
		}
	}
	if fs := s.Features(err); len(fs[0].Functions) != 2 {
		t.Errorf("functions of an unavailable sensor: %+v", fs[0].Functions)
	}
	if fs := s.Features(sensor.ErrNotStarted); !strings.Contains(fs[0].Detail, "--kernel-hooks off") {
		t.Errorf("turned off: %+v", fs[0])
	}
}

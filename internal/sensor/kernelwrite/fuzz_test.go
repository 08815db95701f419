package kernelwrite

import (
	"bytes"
	"encoding/binary"
	"errors"
	"testing"
	"unsafe"

	"github.com/bpfmon/bpfmon/internal/event"
	"github.com/bpfmon/bpfmon/internal/sensor/record"
	"github.com/bpfmon/bpfmon/internal/sensor/sensortest"
)

// Offsets in struct kwrite_rec (bpf/kernelwrite.c), written out so that the
// fuzz target reads the bytes itself; FuzzDecode holds them to the Go type.
const (
	offTid        = 4
	offPid        = 16
	offUID        = 24
	offOp         = 80
	offFlags      = 84
	offResult     = 88
	offKeyLen     = 104
	offValueLen   = 108
	offKeyTotal   = 112
	offValueTotal = 116
	offNframes    = 120
	offMapID      = 192
)

func u32(b []byte, off int) uint32 { return binary.NativeEndian.Uint32(b[off:]) }

// wellFormed says, from the bytes alone, whether a write record is one the
// decoder must accept.
func wellFormed(raw []byte) bool {
	if len(raw) < kwriteHeader {
		return false
	}
	kl, vl, fl := u32(raw, offKeyLen), u32(raw, offValueLen), u32(raw, offFlags)
	return uint64(kl)+uint64(vl) <= uint64(len(raw)-kwriteHeader) && u32(raw, offNframes) <= 8 &&
		record.CheckCapture("key", kl, uint64(u32(raw, offKeyTotal)), fl&kfKeyFault != 0, fl&kfKeyTrunc != 0) == nil &&
		record.CheckCapture("value", vl, uint64(u32(raw, offValueTotal)), fl&kfValueFault != 0, fl&kfValueTrunc != 0) == nil
}

// FuzzDecode feeds the kernel-side sensor's decoders arbitrary records as
// writes, program loads and frees, and holds what they decode to the
// records' bytes:
//
//   - a record shorter than its fixed part, or whose lengths overrun it or
//     could not come from the kernel's capture, is record.ErrMalformed and
//     no event; a well-formed one is no error; a program record is never
//     an event;
//   - a write's event has the map id, tid, pid and uid (none in interrupt
//     context), operation and result of the record; its key and value are
//     the bytes at their offsets, with the totals of the record, Truncated
//     exactly as the record's flags; an owner key is the owner; and any
//     event, or the bpf(2) call a write completes, passes
//     sensortest.CheckCapture;
//   - decoding leaves the record alone, and the event keeps nothing of it;
//   - the JSON writer writes every event as one valid JSON line.
func FuzzDecode(f *testing.F) {
	var r kwKwriteRec
	for _, c := range [][2]uintptr{{offTid, unsafe.Offsetof(r.Hdr.Tid)}, {offPid, unsafe.Offsetof(r.Task)}, {offUID, unsafe.Offsetof(r.Task) + unsafe.Offsetof(r.Task.Uid)},
		{offOp, unsafe.Offsetof(r.Op)}, {offFlags, unsafe.Offsetof(r.Flags)}, {offResult, unsafe.Offsetof(r.Result)}, {offKeyLen, unsafe.Offsetof(r.KeyLen)},
		{offValueLen, unsafe.Offsetof(r.ValueLen)}, {offKeyTotal, unsafe.Offsetof(r.KeyTotal)}, {offValueTotal, unsafe.Offsetof(r.ValueTotal)},
		{offNframes, unsafe.Offsetof(r.Nframes)}, {offMapID, unsafe.Offsetof(r.Map)}} {
		if c[0] != c[1] {
			f.Fatalf("offset %d, the record has it at %d", c[0], c[1])
		}
	}
	f.Add(kwriteRecord(kopUpdate, 5, 42, 0, []uint64{coreOp, progStart + 1}, le32(1), le64(2)))
	f.Add(kwriteRecord(kopUpdate, 6, 42, kfSyscall, nil, le32(9), le64(0x66)))
	f.Add([]byte{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16})
	f.Fuzz(func(t *testing.T, raw []byte) {
		for _, k := range []record.Kind{record.KindKwrite, record.KindProg, record.KindProgGone} {
			d := &decoder{cfg: decoderConfig{selfTGID: 999, capture: 4096}, rs: *testResolver(t), batches: map[uint32]*batchCopy{}}
			m := demux(t, d)
			call := &event.Event{Type: event.MapUpdate, Source: event.SourceSyscall, Map: &event.Map{ID: 42}}
			m.Calls.Begin(6, call)
			c := bytes.Clone(raw)
			if len(c) >= record.HeaderSize {
				binary.NativeEndian.PutUint32(c, uint32(k))
			}
			orig := bytes.Clone(c)
			var evs []*event.Event
			err := m.Decode(c, func(ev *event.Event) error { evs = append(evs, ev); return nil })
			valid := len(c) >= record.HeaderSize && wellFormed(c)
			if k != record.KindKwrite {
				valid = len(c) >= kprogSize
			}
			switch {
			case !bytes.Equal(c, orig):
				t.Fatalf("decoding changed the record")
			case err != nil && !errors.Is(err, record.ErrMalformed):
				t.Fatalf("%d-byte record of kind %d: %v, not ErrMalformed", len(c), k, err)
			case (err == nil) != valid:
				t.Fatalf("%d-byte record of kind %d: error %v, want one: %v", len(c), k, err, !valid)
			case len(evs) > 1 || (len(evs) == 1 && (err != nil || k != record.KindKwrite)):
				t.Fatalf("%d-byte record of kind %d: %d events, error %v", len(c), k, len(evs), err)
			}
			if len(c) < record.HeaderSize {
				return
			}
			// The ring reuses the buffer.
			var keep [][]byte
			for _, ev := range evs {
				keep = append(keep, bytes.Clone(ev.Key), bytes.Clone(ev.Value))
			}
			for i := range c {
				c[i] ^= 0xa5
			}
			for i, ev := range evs {
				if !bytes.Equal(ev.Key, keep[2*i]) || !bytes.Equal(ev.Value, keep[2*i+1]) {
					t.Fatalf("an event shares the record's buffer")
				}
				checkDecodedWrite(t, ev, orig)
			}
			if ev := m.Calls.InFlight(6); ev != nil {
				sensortest.CheckCapture(t, ev)
				sensortest.WriteJSON(t, ev)
			}
		}
	})
}

// checkDecodedWrite holds ev to the well-formed write record raw.
func checkDecodedWrite(t *testing.T, ev *event.Event, raw []byte) {
	t.Helper()
	sensortest.CheckCapture(t, ev)
	sensortest.WriteJSON(t, ev)
	fl := u32(raw, offFlags)
	if ev.Source != event.SourceKernel || ev.Map == nil || ev.Map.ID != u32(raw, offMapID) {
		t.Fatalf("source %q, map %+v; the record's map is %d", ev.Source, ev.Map, u32(raw, offMapID))
	}
	if fl&kfIRQ != 0 {
		if ev.Process != nil || !ev.Interrupt {
			t.Fatalf("a write in interrupt context has process %+v, interrupt %v", ev.Process, ev.Interrupt)
		}
	} else if p := ev.Process; p == nil || p.TID != u32(raw, offTid) || p.PID != u32(raw, offPid) || p.UID != u32(raw, offUID) {
		t.Fatalf("process %+v; the record has tid %d, pid %d, uid %d", p, u32(raw, offTid), u32(raw, offPid), u32(raw, offUID))
	}
	want := event.MapUpdate
	if op := u32(raw, offOp); op == kopDelete || op == kopPop {
		want = event.MapDelete
	}
	if ev.Type != want {
		t.Fatalf("type %s for operation %d", ev.Type, u32(raw, offOp))
	}
	if res := int64(binary.NativeEndian.Uint64(raw[offResult:])); ev.HasResult != (fl&kfResult != 0) || (ev.HasResult && ev.Result != res) {
		t.Fatalf("result %d (%v), the record has %d (flags %#x)", ev.Result, ev.HasResult, res, fl)
	}
	kl, vl := u32(raw, offKeyLen), u32(raw, offValueLen)
	data := raw[kwriteHeader:]
	if ev.HasKey && (!bytes.Equal(ev.Key, data[:kl]) || ev.KeyTotal != uint64(u32(raw, offKeyTotal))) {
		t.Fatalf("key %x of %d, the record has %x of %d", ev.Key, ev.KeyTotal, data[:kl], u32(raw, offKeyTotal))
	}
	if ev.HasValue && (!bytes.Equal(ev.Value, data[kl:kl+vl]) || ev.ValueTotal != uint64(u32(raw, offValueTotal))) {
		t.Fatalf("value %x of %d, the record has %x of %d", ev.Value, ev.ValueTotal, data[kl:kl+vl], u32(raw, offValueTotal))
	}
	if ev.HasOwner && (fl&kfOwnerKey == 0 || kl != 8 || ev.Owner != binary.LittleEndian.Uint64(data)) {
		t.Fatalf("owner %d, the record's key %x (flags %#x)", ev.Owner, data[:kl], fl)
	}
	if ev.Truncated != (fl&(kfKeyTrunc|kfValueTrunc) != 0) {
		t.Fatalf("truncated %v, the record's flags %#x", ev.Truncated, fl)
	}
}

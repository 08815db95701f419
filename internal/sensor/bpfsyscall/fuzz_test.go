package bpfsyscall

import (
	"bytes"
	"encoding/binary"
	"errors"
	"testing"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/bpfmon/bpfmon/internal/event"
	"github.com/bpfmon/bpfmon/internal/sensor/record"
	"github.com/bpfmon/bpfmon/internal/sensor/sensortest"
)

// Offsets in struct call_rec and struct call_exit (bpf/syscall.c), written
// out so that the fuzz target reads the bytes itself rather than through
// the decoder's own view of them; checkOffsets holds them to the Go types.
const (
	offTid        = 4
	offPid        = 16
	offUID        = 24
	offCmd        = 80
	offFlags      = 84
	offResult     = 88
	offKeyLen     = 120
	offValueLen   = 124
	offKeyTotal   = 128
	offValueTotal = 136
	offPathLen    = 144
	offMapID      = 152
	offExitResult = 24
)

func checkOffsets(f *testing.F) {
	var r bpfCallRec
	var x bpfCallExit
	for _, c := range []struct {
		name      string
		got, want uintptr
	}{
		{"tid", offTid, unsafe.Offsetof(r.Hdr.Tid)},
		{"pid", offPid, unsafe.Offsetof(r.Task) + unsafe.Offsetof(r.Task.Pid)},
		{"uid", offUID, unsafe.Offsetof(r.Task) + unsafe.Offsetof(r.Task.Uid)},
		{"cmd", offCmd, unsafe.Offsetof(r.Cmd)},
		{"flags", offFlags, unsafe.Offsetof(r.Flags)},
		{"result", offResult, unsafe.Offsetof(r.Result)},
		{"key_len", offKeyLen, unsafe.Offsetof(r.KeyLen)},
		{"value_len", offValueLen, unsafe.Offsetof(r.ValueLen)},
		{"key_total", offKeyTotal, unsafe.Offsetof(r.KeyTotal)},
		{"value_total", offValueTotal, unsafe.Offsetof(r.ValueTotal)},
		{"path_len", offPathLen, unsafe.Offsetof(r.PathLen)},
		{"map.id", offMapID, unsafe.Offsetof(r.Map)},
		{"exit result", offExitResult, unsafe.Offsetof(x.Result)},
	} {
		if c.got != c.want {
			f.Fatalf("%s at %d, the record has it at %d", c.name, c.got, c.want)
		}
	}
}

func u32(b []byte, off int) uint32 { return binary.NativeEndian.Uint32(b[off:]) }
func u64(b []byte, off int) uint64 { return binary.NativeEndian.Uint64(b[off:]) }

// wellFormed says, from the bytes alone, whether a call record is one the
// decoder must accept: its fixed part is there, the lengths it gives fit
// in what follows, and its key and value are what the kernel's copy_user
// can produce (record.CheckCapture).
func wellFormed(raw []byte) bool {
	if len(raw) < callRecSize {
		return false
	}
	kl, vl, pl := u32(raw, offKeyLen), u32(raw, offValueLen), u32(raw, offPathLen)
	if uint64(kl)+uint64(vl)+uint64(pl) > uint64(len(raw)-callRecSize) {
		return false
	}
	fl := u32(raw, offFlags)
	return record.CheckCapture("key", kl, u64(raw, offKeyTotal), fl&uint32(cfKeyFault) != 0, fl&uint32(cfKeyTrunc) != 0) == nil &&
		record.CheckCapture("value", vl, u64(raw, offValueTotal), fl&uint32(cfValueFault) != 0, fl&uint32(cfValueTrunc) != 0) == nil
}

// keyOf and valueOf are the key and value a well-formed call record carries.
func keyOf(raw []byte) []byte { return raw[callRecSize:][:u32(raw, offKeyLen)] }
func valueOf(raw []byte) []byte {
	return raw[callRecSize:][u32(raw, offKeyLen):][:u32(raw, offValueLen)]
}

// FuzzDecode feeds the syscall sensor's decoders arbitrary records, a as a
// call's entry and b as its exit, and holds what they decode to the
// records' bytes:
//
//   - a record shorter than its header or fixed part, or whose lengths
//     overrun it or could not come from the kernel's capture, is
//     record.ErrMalformed and no event; a well-formed one is no error;
//   - an entry's event has the pid, tid, uid and map id at their offsets,
//     and its exit's result; its key and value are the bytes the entry or
//     the exit carries at their offsets, never longer than their totals or
//     MaxCapture, a faulted one empty; Truncated is set exactly when a key
//     or value flagged cut is shorter than its total, and whenever one not
//     faulted is;
//   - decoding leaves the record alone, and the event keeps nothing of it:
//     the ring reuses its buffer once the handler returns;
//   - the JSON writer writes every event as one valid JSON line.
func FuzzDecode(f *testing.F) {
	checkOffsets(f)
	enter, exit := updateRecords()
	f.Add(enter, exit)
	f.Add(enter[:callRecSize], exit[:8])
	f.Add([]byte{}, []byte{1, 2, 3})
	long := append([]byte(nil), enter...)
	(*bpfCallRec)(unsafe.Pointer(&long[0])).KeyLen = 0xffffffff // past the end
	f.Add(long, exit)
	f.Fuzz(func(t *testing.T, a, b []byte) {
		// Each record as it is, of whatever kind it says.
		for _, raw := range [][]byte{a, b} {
			d := demux(t)
			decode(t, d, raw, nil)
		}
		if len(a) < record.HeaderSize {
			return
		}
		// a as an entry, b as its exit, in both exit formats.
		for _, k := range []record.Kind{record.KindExit, record.KindExitShort} {
			d := demux(t)
			in := append([]byte(nil), a...)
			binary.NativeEndian.PutUint32(in, uint32(record.KindEnter))
			tid := u32(in, offTid)
			if evs := decode(t, d, in, func() bool { return wellFormed(in) }); len(evs) != 0 {
				t.Fatalf("an entry record emitted %d events", len(evs))
			}
			pending := d.Calls.InFlight(tid)
			if pending != nil {
				if !wellFormed(in) {
					t.Fatalf("a malformed entry record began a call")
				}
				checkEvent(t, pending, in, nil)
			}
			if len(b) < record.HeaderSize {
				continue
			}
			out := append([]byte(nil), b...)
			binary.NativeEndian.PutUint32(out, uint32(k))
			binary.NativeEndian.PutUint32(out[offTid:], tid)
			size := callRecSize
			if k == record.KindExitShort {
				size = callExitSize
			}
			evs := decode(t, d, out, func() bool {
				if k == record.KindExitShort {
					return len(out) >= callExitSize
				}
				return wellFormed(out)
			})
			if len(out) < size || (k == record.KindExit && !wellFormed(out)) {
				if d.Calls.InFlight(tid) != pending {
					t.Fatalf("a malformed exit record ended the call")
				}
				continue
			}
			if pending == nil {
				if len(evs) != 0 {
					t.Fatalf("an exit with no call in flight emitted %d events", len(evs))
				}
				continue
			}
			if d.Calls.InFlight(tid) != nil {
				t.Fatalf("a well-formed exit record left its call in flight")
			}
			if len(evs) > 1 || (len(evs) == 0 && (k == record.KindExitShort || u32(out, offFlags)&uint32(cfNotMap) == 0)) {
				t.Fatalf("an exit record emitted %d events", len(evs))
			}
			for _, ev := range evs {
				if ev != pending {
					t.Fatalf("the exit emitted an event other than its call's")
				}
				checkEvent(t, ev, in, out)
				res := int64(u64(out, offExitResult))
				if k == record.KindExit {
					res = int64(u64(out, offResult))
				}
				if !ev.HasResult || ev.Result != res {
					t.Fatalf("result %d (%v), the exit record says %d", ev.Result, ev.HasResult, res)
				}
			}
		}
	})
}

// decode decodes raw on d, checks what any decode must hold, and returns
// the events it emitted. valid, when not nil, says whether raw must decode
// without error.
func decode(t *testing.T, d *record.Demux, raw []byte, valid func() bool) []*event.Event {
	t.Helper()
	var evs []*event.Event
	emit := func(ev *event.Event) error { evs = append(evs, ev); return nil }
	orig := append([]byte(nil), raw...)
	// What the events already pending hold: the ring may reuse the buffer
	// of the records they came from.
	err := d.Decode(raw, emit)
	if !bytes.Equal(raw, orig) {
		t.Fatalf("decoding changed the record: %x, was %x", raw, orig)
	}
	switch {
	case err != nil && !errors.Is(err, record.ErrMalformed):
		t.Fatalf("%d-byte record: %v, not ErrMalformed", len(raw), err)
	case err != nil && len(evs) != 0:
		t.Fatalf("%d-byte record: %v, yet %d events", len(raw), err, len(evs))
	case len(raw) < record.HeaderSize && err == nil:
		t.Fatalf("%d-byte record, shorter than a header, decoded", len(raw))
	case valid != nil && (err == nil) != valid():
		t.Fatalf("%d-byte record: error %v, want one: %v", len(raw), err, !valid())
	}
	// The ring reuses the buffer: what was decoded must not change.
	var keep [][]byte
	for _, ev := range evs {
		keep = append(keep, bytes.Clone(ev.Key), bytes.Clone(ev.Value))
	}
	for i := range raw {
		raw[i] ^= 0xa5
	}
	for i, ev := range evs {
		if !bytes.Equal(ev.Key, keep[2*i]) || !bytes.Equal(ev.Value, keep[2*i+1]) {
			t.Fatalf("an event shares the record's buffer")
		}
		sensortest.CheckCapture(t, ev)
		sensortest.WriteJSON(t, ev)
	}
	copy(raw, orig)
	return evs
}

// checkEvent holds ev to the entry record in and the exit record out (nil
// when none was decoded yet). Both are well-formed call records; the exit
// may be a short one.
func checkEvent(t *testing.T, ev *event.Event, in, out []byte) {
	t.Helper()
	sensortest.CheckCapture(t, ev)
	p := ev.Process
	if p == nil || p.PID != u32(in, offPid) || p.TID != u32(in, offTid) || p.UID != u32(in, offUID) {
		t.Fatalf("process %+v; the entry has pid %d, tid %d, uid %d", p, u32(in, offPid), u32(in, offTid), u32(in, offUID))
	}
	fl := u32(in, offFlags)
	full := len(out) >= callRecSize
	if ev.Map != nil {
		ids := []uint32{u32(in, offMapID)}
		if full {
			ids = append(ids, u32(out, offMapID))
		}
		if u32(in, offCmd) == unix.BPF_MAP_GET_FD_BY_ID {
			ids = append(ids, u32(in, 104)) // the id asked for
		}
		if !contains(ids, ev.Map.ID) {
			t.Fatalf("map id %d, the records say %d", ev.Map.ID, ids)
		}
	} else if fl&uint32(cfMap|cfMapRequested) != 0 {
		t.Fatalf("no map, the entry has one (flags %#x)", fl)
	}
	// Each part is what one of the records carries.
	recs := [][]byte{in}
	if full {
		recs = append(recs, out)
	}
	for _, part := range []struct {
		name string
		has  bool
		b    []byte
		of   func([]byte) []byte
	}{{"key", ev.HasKey, ev.Key, keyOf}, {"value", ev.HasValue, ev.Value, valueOf}} {
		if !part.has {
			continue
		}
		found := false
		for _, r := range recs {
			found = found || bytes.Equal(part.b, part.of(r))
		}
		if !found {
			t.Fatalf("%s %x is not what a record carries", part.name, part.b)
		}
	}
}

func contains(s []uint32, v uint32) bool {
	for _, x := range s {
		if x == v {
			return true
		}
	}
	return false
}

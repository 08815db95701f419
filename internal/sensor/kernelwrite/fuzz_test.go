package kernelwrite

import (
	"encoding/binary"
	"errors"
	"io"
	"testing"

	"github.com/bpfmon/bpfmon/internal/event"
	"github.com/bpfmon/bpfmon/internal/output"
	"github.com/bpfmon/bpfmon/internal/sensor/record"
)

// FuzzDecode feeds arbitrary bytes to the kernel-side sensor's decoders
// (writes, program loads and frees): never a panic, and a record that
// cannot be decoded is record.ErrMalformed, which the ring counts and
// skips.
func FuzzDecode(f *testing.F) {
	f.Add(kwriteRecord(kopUpdate, 5, 42, 0, []uint64{coreOp, progStart + 1}, le32(1), le64(2)))
	f.Add(kwriteRecord(kopUpdate, 6, 42, kfSyscall, nil, le32(9), le64(0x66)))
	f.Add([]byte{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16})
	w, err := output.New("json", io.Discard)
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, raw []byte) {
		d := &decoder{cfg: decoderConfig{selfTGID: 999, capture: 4096}, rs: *testResolver(t), batches: map[uint32]*batchCopy{}}
		m := demux(t, d)
		m.Calls.Begin(6, &event.Event{Type: event.MapUpdate, Source: event.SourceSyscall, Map: &event.Map{ID: 42}})
		emit := func(ev *event.Event) error { return w.Write(ev) }
		for _, k := range []record.Kind{record.KindKwrite, record.KindProg, record.KindProgGone} {
			if len(raw) < record.HeaderSize {
				if err := m.Decode(raw, emit); err != nil && !errors.Is(err, record.ErrMalformed) {
					t.Fatal(err)
				}
				return
			}
			c := append([]byte(nil), raw...)
			binary.NativeEndian.PutUint32(c, uint32(k))
			if err := m.Decode(c, emit); err != nil && !errors.Is(err, record.ErrMalformed) {
				t.Fatalf("%d-byte record of kind %d: %v, not ErrMalformed", len(c), k, err)
			}
		}
	})
}

package bpfsyscall

import (
	"encoding/binary"
	"errors"
	"io"
	"testing"
	"unsafe"

	"github.com/bpfmon/bpfmon/internal/event"
	"github.com/bpfmon/bpfmon/internal/output"
	"github.com/bpfmon/bpfmon/internal/sensor/record"
)

// FuzzDecode feeds arbitrary bytes to the syscall sensor's decoders, as
// records of each kind: never a panic; a record that cannot be decoded is
// record.ErrMalformed (which the ring counts and skips), never another
// error; what does decode is an event the writers can write.
func FuzzDecode(f *testing.F) {
	enter, exit := updateRecords()
	f.Add(enter, exit)
	f.Add(enter[:callRecSize], exit[:8])
	f.Add([]byte{}, []byte{1, 2, 3})
	long := append([]byte(nil), enter...)
	(*bpfCallRec)(unsafe.Pointer(&long[0])).KeyLen = 0xffffffff // past the end
	f.Add(long, exit)
	w, err := output.New("json", io.Discard)
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, a, b []byte) {
		d := demux(t)
		emit := func(ev *event.Event) error { return w.Write(ev) }
		for _, raw := range [][]byte{a, b} {
			if err := d.Decode(raw, emit); err != nil && !errors.Is(err, record.ErrMalformed) {
				t.Fatalf("%d-byte record: %v, not ErrMalformed", len(raw), err)
			}
			// Every kind the sensor decodes, whatever the bytes say.
			for _, k := range []record.Kind{record.KindEnter, record.KindExit, record.KindExitShort} {
				if len(raw) >= record.HeaderSize {
					c := append([]byte(nil), raw...)
					binary.NativeEndian.PutUint32(c, uint32(k))
					if err := d.Decode(c, emit); err != nil && !errors.Is(err, record.ErrMalformed) {
						t.Fatalf("%d-byte record of kind %d: %v", len(c), k, err)
					}
				}
			}
		}
	})
}

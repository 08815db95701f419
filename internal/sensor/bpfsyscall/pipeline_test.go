package bpfsyscall

import (
	"io"
	"os"
	"testing"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/bpfmon/bpfmon/internal/event"
	"github.com/bpfmon/bpfmon/internal/output"
	"github.com/bpfmon/bpfmon/internal/sensor/record"
)

// callRecord serialises r followed by data, as the kernel writes it.
func callRecord(r bpfCallRec, data []byte) []byte {
	b := append([]byte(nil), unsafe.Slice((*byte)(unsafe.Pointer(&r)), callRecSize)...)
	return append(b, data...)
}

// updateRecords is the entry and exit record of one 8-byte map update.
func updateRecords() (enter, exit []byte) {
	r := bpfCallRec{Cmd: unix.BPF_MAP_UPDATE_ELEM, Flags: uint32(cfMap), Fd: 5, KeyLen: 4, ValueLen: 8, KeyTotal: 4, ValueTotal: 8}
	r.Hdr.Kind, r.Hdr.Tid, r.Hdr.Ktime = uint32(record.KindEnter), 7, 1e9
	r.Task.Pid, r.Task.CgroupId = uint32(os.Getpid()), 1
	r.Map.Id, r.Map.Type, r.Map.KeySize, r.Map.ValueSize, r.Map.MaxEntries = 42, 1, 4, 8, 1024
	copy(unsafe.Slice((*byte)(unsafe.Pointer(&r.Task.Comm[0])), 16), "writer")
	copy(unsafe.Slice((*byte)(unsafe.Pointer(&r.Map.Name[0])), 16), "cilium_policy")
	enter = callRecord(r, []byte{1, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8})
	var x bpfCallExit
	x.Hdr.Kind, x.Hdr.Tid, x.Cmd = uint32(record.KindExitShort), 7, unix.BPF_MAP_UPDATE_ELEM
	return enter, unsafe.Slice((*byte)(unsafe.Pointer(&x)), callExitSize)
}

// demux decodes the sensor's records as the ring does.
func demux(t testing.TB) *record.Demux {
	d := record.NewDemux()
	for kind, h := range handlers() {
		if err := d.Handle(kind, h); err != nil {
			t.Fatal(err)
		}
	}
	return d
}

// TestPipelineDecodesSyntheticUpdate keeps the benchmark's input honest.
func TestPipelineDecodesSyntheticUpdate(t *testing.T) {
	enter, exit := updateRecords()
	d := demux(t)
	var got []*event.Event
	emit := func(ev *event.Event) error { got = append(got, ev); return nil }
	if err := d.Decode(enter, emit); err != nil {
		t.Fatal(err)
	}
	if err := d.Decode(exit, emit); err != nil {
		t.Fatal(err)
	}
	if len(got) != 1 || got[0].Type != event.MapUpdate || got[0].Map.Name != "cilium_policy" || len(got[0].Value) != 8 || !got[0].HasResult ||
		got[0].Process.TID != 7 || got[0].Process.Comm != "writer" {
		t.Fatalf("decoded %+v", got)
	}
	// Malformed input is an error, never a panic.
	for _, bad := range [][]byte{nil, enter[:10], append(enter[:callRecSize:callRecSize], 1), exit[:callExitSize-1]} {
		if err := d.Decode(bad, emit); err == nil {
			t.Errorf("malformed record of %d bytes accepted", len(bad))
		}
	}
}

// BenchmarkPipelineJSON measures user space alone: decoding a call's two
// records and writing its event as a JSON line.
func BenchmarkPipelineJSON(b *testing.B) {
	enter, exit := updateRecords()
	d := demux(b)
	w, err := output.New("json", io.Discard)
	if err != nil {
		b.Fatal(err)
	}
	emit := w.Write
	b.ReportAllocs()
	for b.Loop() {
		if err := d.Decode(enter, emit); err != nil {
			b.Fatal(err)
		}
		if err := d.Decode(exit, emit); err != nil {
			b.Fatal(err)
		}
	}
	w.Flush()
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "events/s")
}

package bpfsyscall

import (
	"io"
	"os"
	"testing"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/bpfmon/bpfmon/internal/event"
	"github.com/bpfmon/bpfmon/internal/output"
)

// record serialises r followed by data, as the kernel writes it.
func record(r bpfEvent, data []byte) []byte {
	b := append([]byte(nil), unsafe.Slice((*byte)(unsafe.Pointer(&r)), recordHeader)...)
	return append(b, data...)
}

// updateRecords is the entry and exit record of one 8-byte map update.
func updateRecords() (enter, exit []byte) {
	r := bpfEvent{Kind: recEnter, Cmd: unix.BPF_MAP_UPDATE_ELEM, Ktime: 1e9, Pid: uint32(os.Getpid()), Tid: 7, Uid: 0,
		Flags: efMap, CgroupId: 1, Fd: 5, KeyLen: 4, ValueLen: 8, KeyTotal: 4, ValueTotal: 8,
		Map: bpfMapInfo{Id: 42, Type: 1, KeySize: 4, ValueSize: 8, MaxEntries: 1024}}
	copy(unsafe.Slice((*byte)(unsafe.Pointer(&r.Comm[0])), 16), "writer")
	copy(unsafe.Slice((*byte)(unsafe.Pointer(&r.Map.Name[0])), 16), "cilium_policy")
	enter = record(r, []byte{1, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8})
	x := bpfEvent{Kind: recExit, Cmd: unix.BPF_MAP_UPDATE_ELEM, Pid: r.Pid, Tid: 7}
	return enter, record(x, nil)
}

// TestPipelineDecodesSyntheticUpdate keeps the benchmark's input honest.
func TestPipelineDecodesSyntheticUpdate(t *testing.T) {
	enter, exit := updateRecords()
	d := newDecoder()
	var got []*event.Event
	emit := func(ev *event.Event) error { got = append(got, ev); return nil }
	if err := d.decode(enter, emit); err != nil {
		t.Fatal(err)
	}
	if err := d.decode(exit, emit); err != nil {
		t.Fatal(err)
	}
	if len(got) != 1 || got[0].Type != event.MapUpdate || got[0].Map.Name != "cilium_policy" || len(got[0].Value) != 8 || !got[0].HasResult {
		t.Fatalf("decoded %+v", got)
	}
	// Malformed input is an error, never a panic.
	for _, bad := range [][]byte{nil, enter[:10], append(enter[:recordHeader:recordHeader], 1)} {
		if err := d.decode(bad, emit); err == nil {
			t.Errorf("malformed record of %d bytes accepted", len(bad))
		}
	}
}

// BenchmarkPipelineJSON measures user space alone: decoding a call's two
// records and writing its event as a JSON line.
func BenchmarkPipelineJSON(b *testing.B) {
	enter, exit := updateRecords()
	d := newDecoder()
	w, err := output.New("json", io.Discard)
	if err != nil {
		b.Fatal(err)
	}
	emit := w.Write
	b.ReportAllocs()
	for b.Loop() {
		if err := d.decode(enter, emit); err != nil {
			b.Fatal(err)
		}
		if err := d.decode(exit, emit); err != nil {
			b.Fatal(err)
		}
	}
	w.Flush()
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "events/s")
}

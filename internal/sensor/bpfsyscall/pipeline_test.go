package bpfsyscall

import (
	"io"
	"os"
	"testing"
	"unsafe"

	"github.com/cilium/ebpf/btf"
	"golang.org/x/sys/unix"

	"github.com/bpfmon/bpfmon/internal/btffmt"

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
// records and writing its event as a JSON line; btf=on also looks the
// map's types up in the BTF cache, as the map context does, and renders
// key (u32) and value (struct {u32 pid; bool enabled;}) beside the hex.
// make bench reports both, and their ratio.
func BenchmarkPipelineJSON(b *testing.B) {
	u32 := &btf.Int{Name: "u32", Size: 4}
	cfg := &btf.Struct{Name: "cfg", Size: 8, Members: []btf.Member{
		{Name: "pid", Type: u32}, {Name: "enabled", Type: &btf.Int{Name: "bool", Size: 1, Encoding: btf.Bool}, Offset: 32}}}
	for _, withBTF := range []bool{false, true} {
		name := "btf=off"
		if withBTF {
			name = "btf=on"
		}
		b.Run(name, func(b *testing.B) {
			enter, exit := updateRecords()
			d := demux(b)
			w, err := output.New("json", io.Discard)
			if err != nil {
				b.Fatal(err)
			}
			emit := w.Write
			if withBTF {
				cache := btffmt.NewCache(func(id uint32) (btffmt.Resolved, error) {
					return btffmt.Resolved{Shape: event.Map{ID: id, Name: "cilium_policy", Type: 1, KeySize: 4, ValueSize: 8, MaxEntries: 1024},
						BTFID: 1, Key: btffmt.Compile(u32), Value: btffmt.Compile(cfg)}, nil
				})
				emit = func(ev *event.Event) error {
					if k, v := cache.Lookup(ev.Map, nil); k != nil && v != nil {
						ev.Map.KeyType, ev.Map.ValueType = k, v
					} else {
						b.Fatal("no types")
					}
					return w.Write(ev)
				}
			}
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
		})
	}
}

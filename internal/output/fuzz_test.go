package output

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/cilium/ebpf/btf"

	"github.com/bpfmon/bpfmon/internal/btffmt"
	"github.com/bpfmon/bpfmon/internal/event"
)

// fuzzRenderer is a renderer for b's length of a type chosen by how: a
// char array, a byte array, a struct of a u32, a char and the rest, or
// none.
func fuzzRenderer(b []byte, how uint32) event.Renderer {
	n := uint32(len(b))
	if n == 0 {
		return nil
	}
	var t btf.Type
	switch how % 4 {
	case 0:
		t = &btf.Array{Type: btfChar, Index: btfU32, Nelems: n}
	case 1:
		t = &btf.Array{Type: &btf.Int{Name: "s8", Size: 1, Encoding: btf.Signed}, Index: btfU32, Nelems: n}
	case 2:
		if n < 6 {
			return nil
		}
		t = &btf.Struct{Name: "\x00s", Size: n, Members: []btf.Member{
			{Name: "a", Type: btfU32}, {Name: "c\n", Type: btfChar, Offset: 32},
			{Name: "rest", Type: &btf.Array{Type: btfChar, Index: btfU32, Nelems: n - 5}, Offset: 40}}}
	default:
		return nil
	}
	if l := btffmt.Compile(t); l != nil {
		return l
	}
	return nil
}

// FuzzWriters puts arbitrary bytes into every string and byte field and
// checks that each format still yields exactly one safe line per event.
func FuzzWriters(f *testing.F) {
	f.Add("map_update", "syscall", "x", "/usr/bin/x", "cilium_policy", "", []byte{1}, []byte{2}, int64(0), uint32(1), uint8(0), int64(0))
	f.Add("lost", "bpfmon", "", "", "", "", []byte(nil), []byte(nil), int64(-14), uint32(99), uint8(0xff), int64(-1))
	f.Add("obj_pin", "syscall", "x\n\"\x1b[31m", "/tmp/a\r\nb", "n\x1b]0;t\x07", "/sys/fs/bpf/\n", []byte{}, []byte{0xff}, int64(-524), uint32(34), uint8(0x55), int64(1<<62))
	f.Add("\xff\xfe", "\u2028\u0085", "\xed\xa0\x80", "\x7f\u009b", "\ufffd\xc3", "\u202e\xe2\x80", []byte("\n"), []byte("\""), int64(5), uint32(1<<31), uint8(0xaa), int64(-1<<62))
	f.Fuzz(func(t *testing.T, typ, source, comm, exe, mapName, path string, key, value []byte, result int64, mapType uint32, bits uint8, nsec int64) {
		ev := &event.Event{
			Time: time.Unix(0, nsec), Type: event.Type(typ), Source: source,
			HasResult: bits&1 != 0, Result: result,
			HasFD: bits&2 != 0, FD: int32(result),
			Key: key, HasKey: bits&4 != 0, KeyTotal: uint64(len(key)) * 3,
			Value: value, HasValue: bits&8 != 0, ValueTotal: uint64(len(value)) + 7,
			Truncated: bits&16 != 0, KeyFault: bits&32 != 0 && len(key) == 0, ValueFault: bits&32 != 0 && len(value) == 0,
			HasCount: bits&64 != 0, Count: uint64(result),
			Path: path, HasPathFD: bits&128 != 0, PathFD: int32(mapType),
			HasFlags: bits&2 != 0, Flags: uint64(nsec),
			Compat: bits&64 != 0, ReqMapID: mapType,
		}
		if bits&3 != 0 {
			ev.Process = &event.Process{PID: uint32(result), TID: mapType, Comm: comm, Exe: exe, CgroupID: uint64(nsec)}
		}
		if bits&12 != 0 {
			ev.Map = &event.Map{ID: mapType, Name: mapName, Type: mapType, Frozen: bits&16 != 0}
			// Types that fit the bytes, built from them: arbitrary
			// bytes rendered as strings, numbers and structs.
			ev.Map.KeyType, ev.Map.ValueType = fuzzRenderer(key, mapType), fuzzRenderer(value, mapType>>8)
			if bits&128 != 0 {
				ev.OldValue, ev.HasOldValue = value, true
			}
		}

		js := render(t, "json", ev)
		if strings.IndexByte(js, '\n') != len(js)-1 {
			t.Fatalf("JSON is not one line: %q", js)
		}
		if !json.Valid([]byte(js)) {
			t.Fatalf("invalid JSON: %q", js)
		}
		if !utf8.ValidString(js) {
			t.Fatalf("JSON is not UTF-8: %q", js)
		}
		var back struct {
			Event, Source string
			Process       *struct{ Comm, Exe string }
			Map           *struct{ Name string }
			Path          string
		}
		if err := json.Unmarshal([]byte(js), &back); err != nil {
			t.Fatalf("%v: %q", err, js)
		}
		same := func(got, in string) {
			if utf8.ValidString(in) && got != in {
				t.Errorf("JSON changed %q into %q", in, got)
			}
		}
		same(back.Event, typ)
		same(back.Source, source)
		same(back.Path, path)
		if ev.Process != nil {
			same(back.Process.Comm, comm)
			same(back.Process.Exe, exe)
		}
		if ev.Map != nil {
			same(back.Map.Name, mapName)
		}

		txt := render(t, "text", ev)
		if strings.IndexByte(txt, '\n') != len(txt)-1 {
			t.Fatalf("text is not one line: %q", txt)
		}
		if !isSafeText(txt[:len(txt)-1]) {
			t.Fatalf("control character or invalid UTF-8 in text: %q", txt)
		}
		if len(key) > 0 && ev.HasKey && !ev.KeyFault && !bytes.Contains([]byte(txt), appendHex(nil, key)) {
			t.Errorf("text lacks the key: %q", txt)
		}
	})
}

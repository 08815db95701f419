package output

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/cilium/ebpf/btf"

	"github.com/bpfmon/bpfmon/internal/arch"
	"github.com/bpfmon/bpfmon/internal/btffmt"
	"github.com/bpfmon/bpfmon/internal/event"
)

var (
	btfU32  = &btf.Int{Name: "u32", Size: 4}
	btfBool = &btf.Int{Name: "bool", Size: 1, Encoding: btf.Bool}
	btfChar = &btf.Int{Name: "char", Size: 1, Encoding: btf.Char}
	btfCfg  = &btf.Struct{Name: "cfg", Size: 8, Members: []btf.Member{
		{Name: "pid", Type: btfU32}, {Name: "enabled", Type: btfBool, Offset: 32},
	}}
)

// typedEvent is a map update of a map with BTF: u32 keys, struct cfg
// values.
func typedEvent() *event.Event {
	ev := benchEvent()
	ev.Map.KeySize, ev.Map.ValueSize = 4, 8
	ev.Map.KeyType, ev.Map.ValueType = btffmt.Compile(btfU32), btffmt.Compile(btfCfg)
	ev.Key, ev.KeyTotal = []byte{3, 0, 0, 0}, 4
	ev.Value, ev.ValueTotal = []byte{42, 0, 0, 0, 1, 0, 0, 0}, 8
	return ev
}

// TestTypedGolden: where the map has BTF, key_btf and value_btf (and
// old_value_btf) follow the hex they render, in both formats.
func TestTypedGolden(t *testing.T) {
	ev := typedEvent()
	changed := &event.Event{Time: ev.Time, Type: event.MapChanged, Source: event.SourceScan, Map: ev.Map,
		Key: ev.Key, HasKey: true, KeyTotal: 4, Value: ev.Value, HasValue: true, ValueTotal: 8,
		OldValue: []byte{42, 0, 0, 0, 0, 0, 0, 0}, HasOldValue: true, Change: event.ChangeModified}
	for _, tc := range []struct {
		ev         *event.Event
		json, text string
	}{
		{ev,
			`{"time":"2026-11-22T10:00:00.123456789Z","event":"map_update","source":"syscall","result":0,"process":{"pid":1234,"tid":1235,"ppid":1,"uid":0,"gid":0,"comm":"cilium-agent","exe":"/usr/bin/cilium-agent","cgroup_id":4242},"map":{"id":42,"name":"cilium_policy","type":"hash","key_size":4,"value_size":8,"max_entries":16384,"flags":0,"frozen":false},"fd":17,"key":"03000000","key_btf":3,"value":"2a00000001000000","value_btf":{"pid":42,"enabled":true},"truncated":false,"flags":0,"abi":"x86_64"}`,
			`map_update pid=1234 tid=1235 comm="cilium-agent" uid=0 exe=/usr/bin/cilium-agent map=42:"cilium_policy"(hash) fd=17 key=03000000 key_btf=3 value=2a00000001000000 value_btf={pid=42,enabled=true} flags=0x0 result=0`},
		{changed,
			`{"time":"2026-11-22T10:00:00.123456789Z","event":"map_changed","source":"scan","map":{"id":42,"name":"cilium_policy","type":"hash","key_size":4,"value_size":8,"max_entries":16384,"flags":0,"frozen":false},"key":"03000000","key_btf":3,"value":"2a00000001000000","value_btf":{"pid":42,"enabled":true},"truncated":false,"old_value":"2a00000000000000","old_value_btf":{"pid":42,"enabled":false},"change":"modified"}`,
			`map_changed map=42:"cilium_policy"(hash) key=03000000 key_btf=3 change=modified old_value=2a00000000000000 old_value_btf={pid=42,enabled=false} value=2a00000001000000 value_btf={pid=42,enabled=true}`},
	} {
		if got := render(t, "json", tc.ev); got != archGolden(tc.json)+"\n" {
			t.Errorf("JSON:\n got %s\nwant %s", got, tc.json)
		}
		if err := CheckDocumented([]byte(tc.json)); err != nil {
			t.Error(err)
		}
		e := *tc.ev
		e.Time = time.Date(2026, 11, 22, 10, 0, 0, 123456789, time.Local)
		got := render(t, "text", &e)
		if want := "10:00:00.123456789 " + tc.text + "\n"; got != want {
			t.Errorf("text:\n got %s\nwant %s", got, want)
		}
	}
}

// TestTypedOmitted: bytes a map's types cannot render leave the event as
// it was, hex and all; nothing is lost.
func TestTypedOmitted(t *testing.T) {
	plain := render(t, "json", benchEvent())
	for name, change := range map[string]func(*event.Event){
		"truncated value": func(ev *event.Event) { ev.Value, ev.ValueTotal, ev.Truncated = ev.Value[:4], 8, true },
		"per-CPU values":  func(ev *event.Event) { ev.Value, ev.ValueTotal = make([]byte, 16), 16 },
		"key fault":       func(ev *event.Event) { ev.Key, ev.KeyFault = nil, true },
		"no BTF":          func(ev *event.Event) { ev.Map.KeyType, ev.Map.ValueType = nil, nil },
	} {
		ev := typedEvent()
		change(ev)
		for _, f := range Formats {
			out := render(t, f, ev)
			if f == "json" && !json.Valid([]byte(out)) {
				t.Errorf("%s: invalid JSON %s", name, out)
			}
			if name != "key fault" && strings.Contains(out, "value_btf") {
				t.Errorf("%s: %s: value rendered: %s", name, f, out)
			}
			if name == "key fault" && strings.Contains(out, "key_btf") {
				t.Errorf("%s: %s: key rendered: %s", name, f, out)
			}
			if name != "key fault" && !strings.Contains(out, "03000000") {
				t.Errorf("%s: %s: the hex is gone: %s", name, f, out)
			}
		}
	}
	if strings.Contains(plain, "_btf") {
		t.Errorf("an event of a map without BTF has a rendered field: %s", plain)
	}
}

// TestTypedCut: a rendering cut at btffmt.MaxRendered says so, and stays
// one valid JSON line.
func TestTypedCut(t *testing.T) {
	ev := typedEvent()
	ev.Value = make([]byte, 5000)
	for i := range ev.Value {
		ev.Value[i] = 'a'
	}
	ev.ValueTotal = 5000
	ev.Map.ValueType = btffmt.Compile(&btf.Array{Type: btfChar, Index: btfU32, Nelems: 5000})
	out := render(t, "json", ev)
	var back struct {
		ValueBTF  string `json:"value_btf"`
		Truncated bool   `json:"value_btf_truncated"`
	}
	if err := json.Unmarshal([]byte(out), &back); err != nil || !back.Truncated || len(back.ValueBTF) == 0 || len(back.ValueBTF) > btffmt.MaxRendered {
		t.Errorf("cut rendering: %v, truncated %v, %d bytes", err, back.Truncated, len(back.ValueBTF))
	}
	txt := render(t, "text", ev)
	if !strings.Contains(txt, `aaa"…`) || strings.Count(txt, "\n") != 1 {
		t.Errorf("cut text rendering not marked: %.100s…", txt[len(txt)-100:])
	}
}

func TestTypedZeroAllocs(t *testing.T) {
	for _, f := range Formats {
		w, _ := New(f, discard{})
		ev := typedEvent()
		if allocs := testing.AllocsPerRun(1000, func() {
			ev.Time = ev.Time.Add(time.Microsecond)
			w.Write(ev)
		}); allocs != 0 {
			t.Errorf("%s: %.1f allocations per event with BTF", f, allocs)
		}
	}
}

func BenchmarkJSONTyped(b *testing.B) {
	w, _ := New("json", discard{})
	ev := typedEvent()
	b.ReportAllocs()
	for b.Loop() {
		ev.Time = ev.Time.Add(100 * time.Nanosecond)
		if err := w.Write(ev); err != nil {
			b.Fatal(err)
		}
	}
	w.Flush()
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "events/s")
}

// archGolden turns the golden lines' x86-64 ABI names into the ones of the
// architecture the test runs on (internal/arch).
func archGolden(s string) string {
	return strings.NewReplacer(`"abi":"x86_64"`, `"abi":"`+arch.NativeABI+`"`,
		`"abi":"ia32"`, `"abi":"`+arch.CompatABI+`"`, " [ia32] ", " ["+arch.CompatABI+"] ").Replace(s)
}

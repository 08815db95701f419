package btffmt

import (
	"encoding/json"
	"math"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/cilium/ebpf/btf"

	"github.com/bpfmon/bpfmon/internal/event"
)

var (
	u8    = &btf.Int{Name: "u8", Size: 1}
	u64   = &btf.Int{Name: "u64", Size: 8}
	s32   = &btf.Int{Name: "s32", Size: 4, Encoding: btf.Signed}
	f32   = &btf.Float{Name: "float", Size: 4}
	f64   = &btf.Float{Name: "double", Size: 8}
	mode  = &btf.Enum{Name: "mode", Size: 4, Values: []btf.EnumValue{{Name: "OFF", Value: 0}, {Name: "ON", Value: 1}}}
	flags = &btf.Struct{Name: "flags", Size: 4, Members: []btf.Member{
		{Name: "a", Type: u32, Offset: 0, BitfieldSize: 3},
		{Name: "b", Type: s32, Offset: 3, BitfieldSize: 5},
		{Name: "m", Type: mode, Offset: 8, BitfieldSize: 1},
		{Name: "rest", Type: u32, Offset: 9, BitfieldSize: 23},
	}}
)

// typedef and const are seen through.
var typedefPolicy = &btf.Typedef{Name: "policy_t", Type: &btf.Const{Type: policy}}

func TestLayout(t *testing.T) {
	policyValue := []byte{42, 0, 0, 0, 0xfe, 0xff, 1, 0, 'f', 'a', 'l', 'c', 'o', 0, 0, 0}
	for _, tc := range []struct {
		name       string
		typ        btf.Type
		b          []byte
		json, text string
	}{
		{"struct", typedefPolicy, policyValue, `{"pid":42,"delta":-2,"enabled":true,"tag":"falco"}`, `{pid=42,delta=-2,enabled=true,tag="falco"}`},
		{"u32", u32, []byte{3, 0, 0, 0}, `3`, `3`},
		{"u64 max", u64, []byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff}, `18446744073709551615`, `18446744073709551615`},
		{"s32", s32, []byte{0xff, 0xff, 0xff, 0xff}, `-1`, `-1`},
		{"enum", mode, []byte{1, 0, 0, 0}, `"ON"`, `ON`},
		{"enum unnamed value", mode, []byte{7, 0, 0, 0}, `7`, `7`},
		{"array", &btf.Array{Type: u32, Index: u32, Nelems: 2}, []byte{1, 0, 0, 0, 2, 0, 0, 0}, `[1,2]`, `[1,2]`},
		{"char", char, []byte{'"'}, `"\""`, `'"'`},
		{"hostile chars", &btf.Array{Type: char, Index: u32, Nelems: 4}, []byte{'\n', 0x1b, 0xff, 0}, `"\n\u001b\ufffd"`, `"\n\x1b\xff"`},
		{"pointer", &btf.Pointer{Target: u32}, []byte{0, 0x10, 0, 0, 0, 0, 0, 0}, `"0x1000"`, `0x1000`},
		{"float", f32, le32(math.Float32bits(1.5)), `1.5`, `1.5`},
		{"NaN", f64, le64(math.Float64bits(math.NaN())), `"NaN"`, `NaN`},
		{"bitfields", flags, le32(5 | 0x1f<<3 | 1<<8 | 77<<9), `{"a":5,"b":-1,"m":"ON","rest":77}`, `{a=5,b=-1,m=ON,rest=77}`},
		{"union", &btf.Union{Name: "u", Size: 4, Members: []btf.Member{{Name: "i", Type: s32}, {Type: &btf.Array{Type: u8, Index: u32, Nelems: 4}}}},
			[]byte{0xff, 0xff, 0xff, 0xff}, `{"i":-1,"_":[255,255,255,255]}`, `{i=-1,_=[255,255,255,255]}`},
		{"int128", &btf.Int{Name: "__int128", Size: 16}, make([]byte, 16), `"0x00000000000000000000000000000000"`, `0x00000000000000000000000000000000`},
		{"datasec", &btf.Datasec{Name: ".data", Size: 8, Vars: []btf.VarSecinfo{
			{Type: &btf.Var{Name: "limit", Type: u32}, Offset: 0, Size: 4},
			{Type: &btf.Var{Name: "on", Type: boolT}, Offset: 4, Size: 1},
		}}, []byte{9, 0, 0, 0, 1, 0, 0, 0}, `{"limit":9,"on":true}`, `{limit=9,on=true}`},
		{"odd names", &btf.Struct{Name: "s", Size: 4, Members: []btf.Member{{Name: "a b\"", Type: u32}}}, []byte{1, 0, 0, 0}, `{"a b\"":1}`, `{"a b\""=1}`},
		{"member beyond the struct", &btf.Struct{Name: "s", Size: 4, Members: []btf.Member{{Name: "x", Type: u64}}}, []byte{1, 0, 0, 0}, `{"x":null}`, `{x=?}`},
	} {
		l := Compile(tc.typ)
		if l == nil {
			t.Errorf("%s: no layout", tc.name)
			continue
		}
		js, res := l.AppendJSON([]byte("x"), tc.b)
		if string(js) != "x"+tc.json || res != event.RenderedWhole {
			t.Errorf("%s: JSON %s (%d), want %s", tc.name, js[1:], res, tc.json)
		}
		if !json.Valid(js[1:]) {
			t.Errorf("%s: invalid JSON %s", tc.name, js[1:])
		}
		txt, res := l.AppendText(nil, tc.b)
		if string(txt) != tc.text || res != event.RenderedWhole {
			t.Errorf("%s: text %s (%d), want %s", tc.name, txt, res, tc.text)
		}
	}
}

func le32(v uint32) []byte { return []byte{byte(v), byte(v >> 8), byte(v >> 16), byte(v >> 24)} }
func le64(v uint64) []byte { return append(le32(uint32(v)), le32(uint32(v>>32))...) }

func TestLayoutFails(t *testing.T) {
	l := Compile(policy)
	for _, b := range [][]byte{nil, make([]byte, 15), make([]byte, 17), make([]byte, 16*4)} {
		if out, res := l.AppendJSON([]byte("x"), b); res != event.RenderFailed || string(out) != "x" {
			t.Errorf("%d bytes: %q, %d", len(b), out, res)
		}
		if _, res := l.AppendText(nil, b); res != event.RenderFailed {
			t.Errorf("%d bytes: text %d", len(b), res)
		}
	}
	var nilLayout *Layout
	if _, res := nilLayout.AppendJSON(nil, []byte{1}); res != event.RenderFailed {
		t.Error("nil layout rendered")
	}
	for _, typ := range []btf.Type{nil, &btf.Void{}, &btf.Fwd{Name: "x"}, &btf.Struct{Name: "empty"}} {
		if Compile(typ) != nil {
			t.Errorf("%v has a layout", typ)
		}
	}
	// A struct inside itself (the kernel refuses it; bpfmon does not rely
	// on that): the inner one is not rendered.
	self := &btf.Struct{Name: "self", Size: 4}
	self.Members = []btf.Member{{Name: "me", Type: self}}
	if out, _ := Compile(self).AppendJSON(nil, make([]byte, 4)); string(out) != `{"me":null}` {
		t.Errorf("self-containing struct: %s", out)
	}
	// Too many members to walk: no layout.
	wide := &btf.Struct{Name: "wide", Size: 4}
	for i := range maxNodes + 1 {
		wide.Members = append(wide.Members, btf.Member{Name: "m", Type: &btf.Int{Name: "i", Size: 4 + uint32(i%2)*0}})
	}
	if Compile(wide) != nil {
		t.Error("a struct of more than maxNodes members has a layout")
	}
}

// TestLayoutCut: a value whose rendering would be larger than MaxRendered
// is cut, still valid JSON and one safe line of text.
func TestLayoutCut(t *testing.T) {
	for _, tc := range []struct {
		name string
		typ  btf.Type
	}{
		{"u8 array", &btf.Array{Type: u8, Index: u32, Nelems: 4096}},
		{"string", &btf.Array{Type: char, Index: u32, Nelems: 4096}},
		{"hex", &btf.Int{Name: "big", Size: 4096}},
		{"array of structs", &btf.Array{Type: policy, Index: u32, Nelems: 256}},
		{"nested", &btf.Struct{Name: "n", Size: 4096, Members: []btf.Member{{Name: "inner", Type: &btf.Array{Type: &btf.Array{Type: u32, Index: u32, Nelems: 32}, Index: u32, Nelems: 32}}}}},
	} {
		b := make([]byte, 4096)
		for i := range b {
			b[i] = byte(i*7) | 1 // no NUL: the string is all of it
		}
		l := Compile(tc.typ)
		js, res := l.AppendJSON(nil, b)
		if res != event.RenderedCut || !json.Valid(js) || len(js) > MaxRendered+2*maxDepth+16 {
			t.Errorf("%s: JSON cut %d, valid %v, %d bytes", tc.name, res, json.Valid(js), len(js))
		}
		txt, res := l.AppendText(nil, b)
		if res != event.RenderedCut || !strings.Contains(string(txt), "…") || !safeText(string(txt)) || len(txt) > MaxRendered+4*maxDepth+16 {
			t.Errorf("%s: text cut %d, %d bytes: %.200s", tc.name, res, len(txt), txt)
		}
	}
}

func safeText(s string) bool {
	if !utf8.ValidString(s) {
		return false
	}
	for _, r := range s {
		if r < 0x20 || (r >= 0x7f && r < 0xa0) || r == '\u2028' || r == '\u2029' {
			return false
		}
	}
	return true
}

func TestLayoutZeroAllocs(t *testing.T) {
	l := Compile(typedefPolicy)
	b := []byte{42, 0, 0, 0, 0xfe, 0xff, 1, 0, 'f', 'a', 'l', 'c', 'o', 0, 0, 0}
	dst := make([]byte, 0, 256)
	if n := testing.AllocsPerRun(1000, func() {
		dst, _ = l.AppendJSON(dst[:0], b)
		dst, _ = l.AppendText(dst[:0], b)
	}); n != 0 {
		t.Errorf("%.1f allocations per rendering", n)
	}
}

// FuzzLayout renders arbitrary bytes through types built from the fuzzer's
// choices: always valid JSON, always safe text, never a panic.
func FuzzLayout(f *testing.F) {
	f.Add(uint8(0), uint8(4), uint32(0), []byte{1, 2, 3, 4})
	f.Add(uint8(7), uint8(16), uint32(3), []byte("falco\x00\xff\n"))
	f.Add(uint8(3), uint8(1), uint32(1<<20), []byte{0xff})
	f.Fuzz(func(t *testing.T, shape, size uint8, n uint32, b []byte) {
		typ := fuzzType(shape, size, n)
		l := Compile(typ)
		if l == nil {
			return
		}
		if l.Size() != len(b) {
			b = append(b, make([]byte, max(l.Size()-len(b), 0))...)[:l.Size()]
		}
		js, res := l.AppendJSON(nil, b)
		if res == event.RenderFailed {
			t.Fatalf("%v: %d bytes not rendered", typ, len(b))
		}
		if !json.Valid(js) || !utf8.Valid(js) {
			t.Fatalf("%v: invalid JSON %q", typ, js)
		}
		txt, _ := l.AppendText(nil, b)
		if !safeText(string(txt)) {
			t.Fatalf("%v: unsafe text %q", typ, txt)
		}
	})
}

// fuzzType builds one of a few shapes of type from the fuzzer's bytes.
func fuzzType(shape, size uint8, n uint32) btf.Type {
	n = n%4096 + 1
	scalar := []btf.Type{u8, s16, u32, u64, boolT, char, f32, f64, mode, &btf.Pointer{Target: u8}, &btf.Int{Name: "odd", Size: uint32(size%32) + 1, Encoding: btf.IntEncoding(size % 8)}}
	elem := scalar[int(size)%len(scalar)]
	es, _ := btf.Sizeof(elem)
	switch shape % 6 {
	case 0:
		return elem
	case 1:
		return &btf.Array{Type: elem, Index: u32, Nelems: n % 512}
	case 2:
		return &btf.Struct{Name: "s", Size: uint32(es) * 2, Members: []btf.Member{
			{Name: "a", Type: elem}, {Name: "b", Type: elem, Offset: btf.Bits(8 * es)}, {Name: "c", Type: u32, Offset: btf.Bits(n % 64), BitfieldSize: btf.Bits(n % 40)}}}
	case 3:
		return &btf.Array{Type: &btf.Struct{Name: "s", Size: uint32(es), Members: []btf.Member{{Name: "\xff\n", Type: elem}}}, Index: u32, Nelems: n % 64}
	case 4:
		return &btf.Union{Name: "u", Size: uint32(es), Members: []btf.Member{{Name: "x", Type: elem}, {Name: "y", Type: char}}}
	default:
		return &btf.Array{Type: &btf.Array{Type: elem, Index: u32, Nelems: n % 8}, Index: u32, Nelems: n % 16}
	}
}

// BenchmarkLayoutJSON is the rendering alone: a u32 key and a struct of a
// u32 and a bool, as in the writers' and pipeline's benchmarks.
func BenchmarkLayoutJSON(b *testing.B) {
	key := Compile(u32)
	value := Compile(&btf.Struct{Name: "cfg", Size: 8, Members: []btf.Member{{Name: "pid", Type: u32}, {Name: "enabled", Type: boolT, Offset: 32}}})
	k, v := []byte{3, 0, 0, 0}, []byte{42, 0, 0, 0, 1, 0, 0, 0}
	dst := make([]byte, 0, 256)
	b.ReportAllocs()
	for b.Loop() {
		dst, _ = key.AppendJSON(dst[:0], k)
		dst, _ = value.AppendJSON(dst, v)
	}
}

// TestLayoutDepth: a type nested past the depth limit is rendered in hex
// from there on, and the rendering says it was cut (the event's
// key_btf_truncated, value_btf_truncated), still valid JSON.
func TestLayoutDepth(t *testing.T) {
	var typ btf.Type = u32
	for range maxDepth + 4 {
		typ = &btf.Struct{Name: "nest", Size: 4, Members: []btf.Member{{Name: "in", Type: typ}}}
	}
	b := []byte{7, 0, 0, 0}
	l := Compile(typ)
	js, res := l.AppendJSON(nil, b)
	if res != event.RenderedCut || !json.Valid(js) || !strings.Contains(string(js), `"0x07000000"`) {
		t.Errorf("JSON past the depth limit: %s, result %d; want valid JSON with the rest in hex, cut (%d)", js, res, event.RenderedCut)
	}
	txt, res := l.AppendText(nil, b)
	if res != event.RenderedCut || !strings.Contains(string(txt), "0x07000000…") {
		t.Errorf("text past the depth limit: %s, result %d; want the rest in hex marked …, cut", txt, res)
	}
	// Within the limit: whole.
	typ = u32
	for range maxDepth {
		typ = &btf.Struct{Name: "nest", Size: 4, Members: []btf.Member{{Name: "in", Type: typ}}}
	}
	if js, res := Compile(typ).AppendJSON(nil, b); res != event.RenderedWhole || !strings.Contains(string(js), ":7}") {
		t.Errorf("JSON at the depth limit: %s, result %d; want whole", js, res)
	}
}

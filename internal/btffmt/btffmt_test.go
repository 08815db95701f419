package btffmt

import (
	"testing"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/btf"

	"github.com/bpfmon/bpfmon/internal/scanner"
	"github.com/bpfmon/bpfmon/internal/testutil"
)

var (
	u32    = &btf.Int{Name: "u32", Size: 4}
	s16    = &btf.Int{Name: "s16", Size: 2, Encoding: btf.Signed}
	boolT  = &btf.Int{Name: "bool", Size: 1, Encoding: btf.Bool}
	char   = &btf.Int{Name: "char", Size: 1, Encoding: btf.Char}
	policy = &btf.Struct{Name: "policy", Size: 16, Members: []btf.Member{
		{Name: "pid", Type: u32, Offset: 0},
		{Name: "delta", Type: s16, Offset: 32},
		{Name: "enabled", Type: boolT, Offset: 48},
		{Name: "tag", Type: &btf.Array{Type: char, Index: u32, Nelems: 8}, Offset: 64},
	}}
)

func TestFormat(t *testing.T) {
	value := []byte{42, 0, 0, 0, 0xfe, 0xff, 1, 0, 'f', 'a', 'l', 'c', 'o', 0, 0, 0}
	if got, want := Format(policy, value), `{pid: 42, delta: -2, enabled: true, tag: "falco"}`; got != want {
		t.Errorf("Format = %s, want %s", got, want)
	}
	// Wrong size: hex, never a panic.
	if got := Format(policy, value[:3]); got != "0x2a0000" {
		t.Errorf("short value: %s", got)
	}
	enum := &btf.Enum{Name: "mode", Size: 4, Values: []btf.EnumValue{{Name: "OFF", Value: 0}, {Name: "ON", Value: 1}}}
	if got := Format(enum, []byte{1, 0, 0, 0}); got != "ON" {
		t.Errorf("enum: %s", got)
	}
	arr := &btf.Array{Type: u32, Index: u32, Nelems: 2}
	if got := Format(arr, []byte{1, 0, 0, 0, 2, 0, 0, 0}); got != "[1, 2]" {
		t.Errorf("array: %s", got)
	}
}

// TestMapTypes loads a map with BTF and gets its types back from the ids
// the scanner's reader reports.
func TestMapTypes(t *testing.T) {
	testutil.RequireRoot(t)
	m, err := ebpf.NewMap(&ebpf.MapSpec{Name: "btf_test", Type: ebpf.Hash, KeySize: 4, ValueSize: 16, MaxEntries: 4, Key: u32, Value: policy})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	r, err := scanner.NewReader(nil)
	if err != nil {
		t.Fatal(err)
	}
	id := ebpf.MapID(testutil.MapID(t, m))
	mi, err := r.Read(uint32(id), func(k, v []byte) error { return nil })
	if err != nil {
		t.Fatal(err)
	}
	key, value, err := Types(mi.BTFID, mi.BTFKeyTypeID, mi.BTFValueTypeID)
	if err != nil {
		t.Fatal(err)
	}
	if key == nil || value == nil || value.TypeName() != "policy" {
		t.Fatalf("types %v %v", key, value)
	}
	if got := Format(value, []byte{7, 0, 0, 0, 1, 0, 0, 0, 'x', 0, 0, 0, 0, 0, 0, 0}); got != `{pid: 7, delta: 1, enabled: false, tag: "x"}` {
		t.Errorf("Format = %s", got)
	}
	plain, err := ebpf.NewMap(&ebpf.MapSpec{Type: ebpf.Array, KeySize: 4, ValueSize: 4, MaxEntries: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer plain.Close()
	pid := ebpf.MapID(testutil.MapID(t, plain))
	pmi, err := r.Read(uint32(pid), func(k, v []byte) error { return nil })
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := Types(pmi.BTFID, pmi.BTFKeyTypeID, pmi.BTFValueTypeID); err != ErrNoBTF {
		t.Errorf("map without BTF: %v", err)
	}
}

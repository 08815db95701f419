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
	if got, _ := Compile(value).AppendText(nil, []byte{7, 0, 0, 0, 1, 0, 0, 0, 'x', 0, 0, 0, 0, 0, 0, 0}); string(got) != `{pid=7,delta=1,enabled=false,tag="x"}` {
		t.Errorf("rendered %s", got)
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

package bpfsyscall

import (
	"reflect"
	"testing"

	"github.com/cilium/ebpf"

	"github.com/bpfmon/bpfmon/internal/sensor/record"
)

// TestRecordLayoutMatchesObject checks that both embedded objects speak
// the record protocol, and that the Go record types agree with each
// object field by field: bpf2go generates them from one object's BTF, so a
// mismatch means one of them was edited or is stale.
func TestRecordLayoutMatchesObject(t *testing.T) {
	for build, load := range map[string]func() (*ebpf.CollectionSpec, error){"bpf": loadBpf, "bpfbtf": loadBpfbtf} {
		spec, err := load()
		if err != nil {
			t.Fatal(err)
		}
		if err := record.CheckObject(spec); err != nil {
			t.Errorf("%s: %v", build, err)
		}
		for name, goType := range map[string]reflect.Type{
			"call_rec":    reflect.TypeFor[bpfCallRec](),
			"call_exit":   reflect.TypeFor[bpfCallExit](),
			"prog_loaded": reflect.TypeFor[bpfProgLoaded](),
		} {
			if err := record.CheckType(spec, name, goType); err != nil {
				t.Errorf("%s: %v", build, err)
			}
		}
	}
}

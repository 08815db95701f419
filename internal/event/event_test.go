package event

import (
	"strings"
	"testing"
)

// TestTable checks the type table's own consistency: what it says is what
// the alert engine and the scanner act on.
func TestTable(t *testing.T) {
	if len(Types) != len(infos) {
		t.Fatalf("%d types listed, %d distinct", len(Types), len(infos))
	}
	for _, typ := range Types {
		info := typ.Info()
		if len(info.Sources) == 0 {
			t.Errorf("%s: no source reports it", typ)
		}
		if info.Elements && !info.Modifies {
			t.Errorf("%s changes elements but is not marked as modifying the map", typ)
		}
		if info.Handle && info.Modifies {
			t.Errorf("%s both obtains a handle and modifies", typ)
		}
	}
	want := map[Type]Info{
		MapUpdate: {Modifies: true, Elements: true}, MapFreeze: {Modifies: true}, MapGetFDByID: {Handle: true},
		ObjGet: {Handle: true}, ObjPin: {}, MapCreate: {}, MapMmap: {}, MapChanged: {}, Lost: {},
	}
	for typ, w := range want {
		got := typ.Info()
		if got.Modifies != w.Modifies || got.Elements != w.Elements || got.Handle != w.Handle {
			t.Errorf("%s: %+v, want %+v", typ, got, w)
		}
	}
	if !MapUpdate.ReportedBy(SourceKernel) || MapCreate.ReportedBy(SourceKernel) || !AccessDenied.ReportedBy(SourceLSM) {
		t.Error("sources wrong")
	}
	if bogus := Type("map_bogus"); bogus.Known() || bogus.Info().Modifies || bogus.Info().Sources != nil {
		t.Error("an unknown type has an Info")
	}
}

func TestParseTypes(t *testing.T) {
	got, err := ParseTypes(Names())
	if err != nil || len(got) != len(Types) {
		t.Fatalf("every name: %v %v", got, err)
	}
	if _, err := ParseTypes([]string{"map_update", "map_bogus"}); err == nil || !strings.Contains(err.Error(), `"map_bogus"`) || !strings.Contains(err.Error(), "map_update, map_delete") {
		t.Errorf("unknown type: %v", err)
	}
}

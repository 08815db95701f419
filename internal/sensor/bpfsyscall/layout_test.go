package bpfsyscall

import (
	"os"
	"reflect"
	"regexp"
	"strconv"
	"testing"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/btf"
)

// TestRecordLayoutMatchesObject checks that the Go record types and both
// embedded objects agree field by field: bpf2go generates the Go types from
// the object's BTF, so a mismatch means one of them was edited or is stale.
func TestRecordLayoutMatchesObject(t *testing.T) {
	for build, load := range map[string]func() (*ebpf.CollectionSpec, error){"bpf": loadBpf, "bpfbtf": loadBpfbtf} {
		spec, err := load()
		if err != nil {
			t.Fatal(err)
		}
		for name, goType := range map[string]reflect.Type{
			"event":       reflect.TypeOf(bpfEvent{}),
			"exit_short":  reflect.TypeOf(bpfExitShort{}),
			"prog_loaded": reflect.TypeOf(bpfProgLoaded{}),
		} {
			var st *btf.Struct
			if err := spec.Types.TypeByName(name, &st); err != nil {
				t.Fatalf("%s: %v", build, err)
			}
			if uintptr(st.Size) != goType.Size() {
				t.Fatalf("%s: struct %s is %d bytes in the object, %d in Go", build, name, st.Size, goType.Size())
			}
			var goFields []reflect.StructField
			for i := range goType.NumField() {
				if f := goType.Field(i); f.Name != "_" {
					goFields = append(goFields, f)
				}
			}
			if len(goFields) != len(st.Members) {
				t.Fatalf("%s: %s has %d fields in C, %d in Go", build, name, len(st.Members), len(goFields))
			}
			for i, m := range st.Members {
				if uintptr(m.Offset.Bytes()) != goFields[i].Offset {
					t.Errorf("%s: %s.%s at %d in C, %s at %d in Go", build, name, m.Name, m.Offset.Bytes(), goFields[i].Name, goFields[i].Offset)
				}
			}
		}
	}
}

// TestFlagsMatchHeader checks the record kinds and flag bits used by the
// decoder against bpf/include/event.h, which BTF does not carry.
func TestFlagsMatchHeader(t *testing.T) {
	src, err := os.ReadFile("../../../bpf/include/event.h")
	if err != nil {
		t.Fatal(err)
	}
	goValues := map[string]int{
		"REC_ENTER": recEnter, "REC_EXIT": recExit, "REC_PROC": recProc, "REC_EXIT_SHORT": recShort, "MAX_CAPTURE": MaxCapture,
		"EXE_SLOTS": exeSlots, "EXE_SLOT": exeSlot, "EF_EXE_TRUNC": efExeTrunc,
		"EF_COMPAT": efCompat, "EF_MAP": efMap, "EF_MAP_REQUESTED": efMapRequested,
		"EF_KEY_FAULT": efKeyFault, "EF_VALUE_FAULT": efValueFault, "EF_KEY_TRUNC": efKeyTrunc,
		"EF_VALUE_TRUNC": efValueTrunc, "EF_PATH_TRUNC": efPathTrunc, "EF_NOT_MAP": efNotMap,
		"EF_UNVERIFIED": efUnverified, "EF_PATH_FD": efPathFD, "EF_BAD_FD": efBadFD,
		"EF_PROG": efProg, "CMD_MMAP": cmdMmap, "PROG_MAPS": len(bpfProgLoaded{}.MapIds),
	}
	re := regexp.MustCompile(`(?m)^#define (\w+) \(?(?:1 << )?(\d+)\)?`)
	seen := 0
	for _, m := range re.FindAllStringSubmatch(string(src), -1) {
		want, ok := goValues[m[1]]
		if !ok {
			continue
		}
		seen++
		v, _ := strconv.Atoi(m[2])
		if m[0][len(m[0])-1] == ')' && regexp.MustCompile(`<<`).MatchString(m[0]) {
			v = 1 << v
		}
		if v != want {
			t.Errorf("%s is %d in event.h, %d in Go", m[1], v, want)
		}
	}
	if seen != len(goValues) {
		t.Errorf("found %d of %d constants in event.h", seen, len(goValues))
	}
}

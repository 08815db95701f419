package output

import (
	"reflect"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/bpfmon/bpfmon/internal/event"
)

// cutRenderer renders anything as a value cut at its limit.
type cutRenderer struct{}

func (cutRenderer) AppendJSON(dst, b []byte) ([]byte, event.Rendered) {
	return append(dst, `{"a":1}`...), event.RenderedCut
}
func (cutRenderer) AppendText(dst, b []byte) ([]byte, event.Rendered) {
	return append(dst, `{a=1…`...), event.RenderedCut
}

// everyField returns events that, between them, set every field the
// writers know: the first sets all it can at once, the others what
// excludes something the first has (an unknown program, a cut rendering,
// an unclean stop).
func everyField() []*event.Event {
	proc := &event.Process{PID: 10, TID: 11, PPID: 1, UID: 1000, GID: 100, Comm: "x", Exe: "/usr/bin/x",
		CgroupID: 7, Cgroup: "/system.slice/x.service", ContainerID: "abc", Relation: "newcomer",
		Pod: &event.Pod{Namespace: "prod", Name: "web-1", UID: "0b1c", Container: "app"}}
	m := typedEvent().Map
	m.Programs = []event.MapProgram{{ID: 3, Name: "p"}}
	m.Pins = []string{"/sys/fs/bpf/m"}
	full := &event.Event{
		Time: t0, Type: event.MapUpdate, Source: event.SourceSyscall,
		Alert:     &event.Alert{Rule: "foreign-write", Severity: "critical", Reason: "r"},
		HasResult: true, Result: -14, Process: proc, Map: m,
		Prog:      &event.Prog{ID: 9, Name: "w", Tag: "0102030405060708", Type: 6},
		Interrupt: true, HasFD: true, FD: 3,
		Key: []byte{3, 0, 0, 0, 9}, HasKey: true, Value: []byte{42, 0, 0, 0, 1, 0, 0, 0, 9}, HasValue: true,
		KeyTotal: 99, ValueTotal: 99, Truncated: true,
		KernelCopy: true, UserCopyDiffers: true, Owner: 5, HasOwner: true, HasCount: true, Count: 2,
		Path: "/sys/fs/bpf/m", PathFD: -100, HasPathFD: true, Flags: 1, HasFlags: true, Compat: true, ReqMapID: 8,
		Extra: &event.Extra{ProgMaps: []uint32{1, 2}, ProgMapCount: 3, Prot: 3, HasProt: true, Hook: "bpf", Cmd: "map_update",
			LastAlive: t0.Add(-time.Minute), CleanStop: true,
			Lineage: &event.Lineage{Kind: event.LineageProcessVMWrite, Target: proc, TargetByPID: true, Cgroup: 7,
				Vars: []string{"LD_PRELOAD"}, Request: "PTRACE_ATTACH"}},
		OldValue: []byte{42, 0, 0, 0, 0, 0, 0, 0}, HasOldValue: true, Change: event.ChangeModified, WhileDown: true, Reason: "why",
	}
	// The typed renderings need whole values: the key and value fit
	// their types here, and the truncated hex is the next event's.
	full.Key, full.Value, full.Truncated = full.Key[:4], full.Value[:8], false
	truncated := *full
	truncated.Key, truncated.Value, truncated.Truncated = []byte{3, 0, 0, 0, 9}, []byte{42, 0, 0, 0, 1, 0, 0, 0, 9}, true
	fault := *full
	fault.KeyFault, fault.ValueFault = true, true
	unknown := *full
	unknown.Prog = &event.Prog{Unknown: true}
	cut := *full
	cm := *m
	cm.KeyType, cm.ValueType = cutRenderer{}, cutRenderer{}
	cut.Map = &cm
	unclean := *full
	x := *full.Extra
	x.CleanStop = false
	unclean.Extra = &x
	// Every field of an Event set, found by reflection: a field added to
	// the event package and written by a writer shows up here without
	// anyone listing it, and must then be in Fields.
	var filled event.Event
	fill(reflect.ValueOf(&filled).Elem())
	filled.Type, filled.Source, filled.Time = event.MapUpdate, event.SourceSyscall, t0
	return []*event.Event{full, &truncated, &fault, &unknown, &cut, &unclean, &filled}
}

// fill sets every settable field of v to a value that is not its zero:
// true, 1, "x", one element, a new struct. Interfaces stay nil.
func fill(v reflect.Value) {
	switch v.Kind() {
	case reflect.Bool:
		v.SetBool(true)
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		v.SetInt(1)
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		v.SetUint(1)
	case reflect.String:
		v.SetString("x")
	case reflect.Slice:
		v.Set(reflect.MakeSlice(v.Type(), 1, 1))
		fill(v.Index(0))
	case reflect.Pointer:
		v.Set(reflect.New(v.Type().Elem()))
		fill(v.Elem())
	case reflect.Struct:
		if v.Type() == reflect.TypeOf(time.Time{}) {
			v.Set(reflect.ValueOf(t0))
			return
		}
		for i := 0; i < v.NumField(); i++ {
			if v.Field(i).CanSet() {
				fill(v.Field(i))
			}
		}
	}
}

// TestFieldsMatchWriters: the JSON writer writes exactly the keys Fields
// lists, and the text writer shows each field Fields says it shows and
// no key Fields does not name.
func TestFieldsMatchWriters(t *testing.T) {
	written := map[string]bool{}
	var text strings.Builder
	for _, ev := range everyField() {
		keys, err := JSONKeys([]byte(render(t, "json", ev)))
		if err != nil {
			t.Fatal(err)
		}
		for _, k := range keys {
			written[k] = true
		}
		text.WriteString(render(t, "text", ev))
	}
	listed := map[string]bool{}
	for _, f := range Fields {
		if listed[f.JSON] {
			t.Errorf("Fields lists %s twice", f.JSON)
		}
		listed[f.JSON] = true
		if !written[f.JSON] {
			t.Errorf("Fields lists %s, which the JSON writer never writes", f.JSON)
		}
		if strings.TrimSpace(f.Doc) == "" {
			t.Errorf("field %s has no Doc", f.JSON)
		}
		for _, et := range f.Events {
			if !et.Known() {
				t.Errorf("field %s: unknown event type %q", f.JSON, et)
			}
		}
		if f.Text == "" {
			continue
		}
		// The first word, up to its '=': what the line holds.
		tok, _, _ := strings.Cut(f.Text, " ")
		if k, _, ok := strings.Cut(tok, "="); ok {
			tok = k + "="
		}
		if strings.HasPrefix(tok, "…(N") {
			tok = "…("
		}
		if !strings.Contains(text.String(), tok) && !strings.HasPrefix(f.Text, "HH:") && !strings.HasPrefix(f.Text, "the event type") &&
			!strings.HasPrefix(f.Text, "ALERT") {
			t.Errorf("field %s: the text writer shows no %q", f.JSON, tok)
		}
	}
	for k := range written {
		if !listed[k] && !slices.Contains(objects, k) {
			t.Errorf("the JSON writer writes %s, which Fields does not list", k)
		}
	}
	for _, m := range regexp.MustCompile(` ([a-z_]+)=`).FindAllStringSubmatch(text.String(), -1) {
		key := m[1] + "="
		if !slices.ContainsFunc(Fields, func(f Field) bool { return strings.Contains(f.Text, key) }) {
			t.Errorf("the text writer shows %s, which no field's Text names", key)
		}
	}
	for _, mark := range regexp.MustCompile(`\[([a-z_0-9]+)\]`).FindAllString(text.String(), -1) {
		if !slices.ContainsFunc(Fields, func(f Field) bool { return strings.Contains(f.Text, mark) }) && !strings.Contains(mark, "32") {
			t.Errorf("the text writer shows %s, which no field's Text names", mark)
		}
	}
}

// TestEventDocs: every event type is documented, once, in the event
// package's order.
func TestEventDocs(t *testing.T) {
	var got []event.Type
	for _, d := range EventDocs {
		got = append(got, d.Type)
		if d.Command == "" {
			t.Errorf("%s: no Command", d.Type)
		}
	}
	for _, et := range event.Types {
		if !slices.Contains(got, et) {
			t.Errorf("event type %s has no line in EventDocs (fields.go); then run make docs", et)
		}
	}
	if !slices.Equal(got, event.Types) {
		t.Errorf("EventDocs documents %q, want event.Types %q, in their order", got, event.Types)
	}
}

// TestCheckDocumented: a key Fields does not list, or lists for other
// events, is refused.
func TestCheckDocumented(t *testing.T) {
	for line, ok := range map[string]bool{
		`{"time":"t","event":"lost","source":"syscall","count":1}`:                        true,
		`{"time":"t","event":"lost","source":"syscall","count":1,"nope":2}`:               false,
		`{"time":"t","event":"lost","source":"syscall","path":"/x"}`:                      false,
		`{"time":"t","event":"map_update","source":"syscall","map":{"id":1,"nope":true}}`: false,
		`{"time":"t","event":"map_update","source":"syscall","map":{"id":1}}`:             true,
	} {
		if err := CheckDocumented([]byte(line)); (err == nil) != ok {
			t.Errorf("CheckDocumented(%s) = %v", line, err)
		}
	}
}

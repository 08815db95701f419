package sensor

import (
	"errors"
	"io"
	"log/slog"
	"slices"
	"strings"
	"testing"

	"github.com/bpfmon/bpfmon/internal/features"
)

// fake is a sensor that records what was done to it in a shared log.
type fake struct {
	name     string
	log      *[]string
	startErr error
	armErr   error
	maps     []uint32
	sawMaps  []uint32 // env.Self.Maps when it started
}

func (f *fake) Name() string { return f.name }
func (f *fake) Start(env *Env) error {
	*f.log = append(*f.log, "start "+f.name)
	f.sawMaps = slices.Clone(env.Self.Maps)
	return f.startErr
}
func (f *fake) MapIDs() []uint32     { return f.maps }
func (f *fake) ProgramIDs() []uint32 { return nil }
func (f *fake) Stats() Stats         { return Stats{Lost: 1, Incomplete: 2} }
func (f *fake) Features(err error) []features.Feature {
	if err != nil {
		return []features.Feature{{Name: f.name, Detail: err.Error(), Fallback: f.name + " fallback"}}
	}
	return []features.Feature{{Name: f.name, Available: true}}
}
func (f *fake) Detach()      { *f.log = append(*f.log, "detach "+f.name) }
func (f *fake) Close() error { *f.log = append(*f.log, "close "+f.name); return nil }

// armed is a fake that starts unarmed.
type armed struct{ *fake }

func (a armed) Arm() error { *a.log = append(*a.log, "arm "+a.name); return a.armErr }

func env() *Env {
	return &Env{Self: Self{Maps: []uint32{1}}, Log: slog.New(slog.NewTextHandler(io.Discard, nil))}
}

func TestSetOrderAndOptional(t *testing.T) {
	var log []string
	a := &fake{name: "a", log: &log, maps: []uint32{10, 11}}
	b := &fake{name: "b", log: &log, startErr: errors.New("no hook here")}
	c := &fake{name: "c", log: &log, maps: []uint32{12}}
	off := &fake{name: "off", log: &log}
	d := armed{&fake{name: "d", log: &log}}
	set := NewSet(Entry{a, Required}, Entry{b, Optional}, Entry{off, Off}, Entry{c, Required}, Entry{d, Optional})
	e := env()
	if err := set.Start(e); err != nil {
		t.Fatal(err)
	}
	if err := set.Arm(); err != nil {
		t.Fatal(err)
	}
	// Later sensors see the maps of the earlier ones: they must never
	// report them.
	if !slices.Equal(c.sawMaps, []uint32{1, 10, 11}) || !slices.Equal(set.OwnMaps(), []uint32{1, 10, 11, 12}) {
		t.Errorf("c saw %v; own maps %v", c.sawMaps, set.OwnMaps())
	}
	if set.Started("a") != a || set.Started("b") != nil || set.Started("off") != nil || set.Err("b") == nil || !errors.Is(set.Err("off"), ErrNotStarted) {
		t.Error("Started/Err wrong")
	}
	if st := set.Stats(); st.Lost != 3 || st.Incomplete != 6 {
		t.Errorf("stats %+v: the three running sensors' sum", st)
	}
	var names []string
	for _, f := range set.Features() {
		names = append(names, f.Name)
		if f.Name == "b" && (f.Available || !strings.Contains(f.Detail, "no hook here")) {
			t.Errorf("b: %+v", f)
		}
		if f.Name == "off" && (f.Available || f.Detail != ErrNotStarted.Error()) {
			t.Errorf("off: %+v", f)
		}
	}
	if !slices.Equal(names, []string{"a", "b", "off", "c", "d"}) {
		t.Errorf("features of %v", names)
	}
	set.Detach()
	set.Close()
	want := []string{"start a", "start b", "start c", "start d", "arm d", "detach d", "detach c", "detach a", "close d", "close c", "close a"}
	if !slices.Equal(log, want) {
		t.Errorf("log\n%v, want\n%v", log, want)
	}
}

// A required sensor that fails stops the set, which closes what started,
// and the error names it.
func TestSetRequiredFails(t *testing.T) {
	var log []string
	a := &fake{name: "a", log: &log}
	b := &fake{name: "b", log: &log, startErr: errors.New("boom")}
	c := &fake{name: "c", log: &log}
	err := NewSet(Entry{a, Required}, Entry{b, Required}, Entry{c, Required}).Start(env())
	var se *StartError
	if !errors.As(err, &se) || se.Sensor != "b" || err.Error() != "b sensor: boom" {
		t.Fatalf("error %v", err)
	}
	if want := []string{"start a", "start b", "close a"}; !slices.Equal(log, want) {
		t.Errorf("log %v, want %v", log, want)
	}

	// Arming a required sensor that cannot: an error, and it is closed.
	log = nil
	d := armed{&fake{name: "d", log: &log, armErr: errors.New("attach refused")}}
	set := NewSet(Entry{d, Required})
	if err := set.Start(env()); err != nil {
		t.Fatal(err)
	}
	if err := set.Arm(); !errors.As(err, &se) || se.Sensor != "d" {
		t.Errorf("arm: %v", err)
	}
	if set.Started("d") != nil || !slices.Contains(log, "close d") {
		t.Errorf("a sensor that failed to arm still runs: %v", log)
	}
}

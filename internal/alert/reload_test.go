package alert

import (
	"strconv"
	"strings"
	"testing"

	"github.com/bpfmon/bpfmon/internal/event"
	"github.com/bpfmon/bpfmon/internal/inventory"
	"github.com/bpfmon/bpfmon/internal/policy"
)

// unrecorder is an Enforcer and Unenforcer that records what it is told.
type unrecorder struct{ protected map[uint32]bool }

func (r *unrecorder) Protect(id uint32) error                  { r.protected[id] = true; return nil }
func (r *unrecorder) AddOwner(uint32, event.Identity) error    { return nil }
func (r *unrecorder) Unprotect(id uint32) error                { delete(r.protected, id); return nil }
func (r *unrecorder) RemoveOwner(uint32, event.Identity) error { return nil }

// TestReload: a reload lets go of the maps whose selector is gone (in
// the enforcer too), guards those the new policy selects, applies the
// new rule settings, and says what changed.
func TestReload(t *testing.T) {
	sel := func(id uint32) policy.Selector {
		s, err := policy.ParseSelector("id:" + itoaU(id))
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	pol := policy.Default()
	pol.AddProtect(sel(7))
	en := &unrecorder{protected: map[uint32]bool{}}
	e := New(Config{Policy: pol, SelfPID: 1, Enforcer: en})
	maps := []inventory.Map{{ID: 7}, {ID: 8}}
	e.Start(maps)
	foreign := event.Identity{ExeIno: 99, CgroupID: 5}
	alert := func(id uint32) *event.Alert { ev := update(id, foreign, 100); e.Evaluate(ev); return ev.Alert }
	if alert(7) == nil || alert(8) != nil {
		t.Fatal("before the reload: want map 7 guarded, 8 not")
	}

	next := policy.Default()
	next.AddProtect(sel(8))
	r := next.Rules[policy.RuleForeignWrite]
	r.Severity = policy.SeverityLow
	next.Rules[policy.RuleForeignWrite] = r
	changes := e.Reload(next, maps)
	for _, want := range []string{"selectors added: id:8", "selectors removed: id:7", "rule foreign-write severity critical -> low", "maps no longer protected: 7", "1 more maps protected"} {
		if !strings.Contains(changes, want) {
			t.Errorf("changes %q: no %q", changes, want)
		}
	}
	if a := alert(8); a == nil || a.Severity != policy.SeverityLow {
		t.Errorf("after the reload, a stranger's write to map 8: %+v; want a low foreign-write", a)
	}
	if alert(7) != nil {
		t.Error("after the reload, map 7 still guarded")
	}
	if en.protected[7] || !en.protected[8] {
		t.Errorf("enforced after the reload: %v; want map 8 only", en.protected)
	}
	if e.Reload(next, maps) != "" {
		t.Error("reloading the same policy changed something")
	}
}

func itoaU(id uint32) string { return strconv.FormatUint(uint64(id), 10) }

// TestSelfReads: bpfmon's own executable (by device and inode) reading
// bpfmon's maps, a handle or a read-only mapping, is no alert; its write,
// or a writable mapping, is, as anyone else's; another executable's
// handle is.
func TestSelfReads(t *testing.T) {
	self := event.Identity{ExeDev: 3, ExeIno: 42}
	e := New(Config{Policy: policy.Default(), SelfPID: 1, SelfMaps: []uint32{9}, SelfExe: self})
	e.Start(nil)
	ev := func(typ event.Type, who event.Identity, prot uint32) *event.Event {
		ev := &event.Event{Type: typ, Source: event.SourceSyscall, HasResult: true,
			Process: &event.Process{PID: 200, ExeDev: who.ExeDev, ExeIno: who.ExeIno, CgroupID: 5, Exe: "/usr/local/bin/bpfmon"}, Map: &event.Map{ID: 9}}
		if typ == event.MapMmap {
			ev.Extra = &event.Extra{HasProt: true, Prot: prot}
		}
		e.Evaluate(ev)
		return ev
	}
	other := event.Identity{ExeDev: 3, ExeIno: 43}
	for _, c := range []struct {
		what  string
		ev    *event.Event
		alert bool
	}{
		{"bpfmon's handle", ev(event.MapGetFDByID, self, 0), false},
		{"bpfmon's read-only mapping", ev(event.MapMmap, self, 1), false},
		{"bpfmon's writable mapping", ev(event.MapMmap, self, 3), true},
		{"bpfmon's write", ev(event.MapUpdate, self, 0), true},
		{"another executable's handle", ev(event.MapGetFDByID, other, 0), true},
		{"same inode, other device", ev(event.MapGetFDByID, event.Identity{ExeDev: 4, ExeIno: 42}, 0), true},
	} {
		if got := c.ev.Alert != nil && c.ev.Alert.Rule == policy.RuleSelfAccess; got != c.alert {
			t.Errorf("%s: self-access alert %v, want %v", c.what, got, c.alert)
		}
	}
}

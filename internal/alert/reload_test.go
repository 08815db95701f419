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

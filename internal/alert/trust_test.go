package alert

import (
	"encoding/json"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/bpfmon/bpfmon/internal/cgroups"
	"github.com/bpfmon/bpfmon/internal/event"
	"github.com/bpfmon/bpfmon/internal/inventory"
	"github.com/bpfmon/bpfmon/internal/policy"
	"github.com/bpfmon/bpfmon/internal/testutil"
)

// holderEvents evaluates what the engine made at start, as the sink does,
// and returns the holder_while_down events by pid.
func holderEvents(t *testing.T, e *Engine) map[uint32]*event.Event {
	t.Helper()
	out := map[uint32]*event.Event{}
	for _, ev := range e.Tick() {
		if ev.Type != event.HolderWhileDown {
			continue
		}
		e.Evaluate(ev)
		if ev.Process == nil || ev.Map == nil || !ev.HasFD {
			t.Fatalf("holder_while_down without process, map or fd: %+v", ev)
		}
		out[ev.Process.PID] = ev
	}
	return out
}

// TestTrustAtStart: the saved owners survive a restart and a holder at
// start that is not one is a stranger, reported; a map the saved trust
// does not list is bootstrapped from its holders; the policy's owners
// replace the bootstrap; a read-only holder is no threat and is not
// reported; the trust saved is what was restored and learnt.
func TestTrustAtStart(t *testing.T) {
	cg := cgroups.NewResolver()
	me, err := ProcessOwner(uint32(os.Getpid()), cg)
	if err != nil {
		t.Fatal(err)
	}
	// Another executable: the saved owner.
	sleep := exec.Command("sleep", "60")
	testutil.StartExec(t, sleep)
	defer sleep.Process.Kill()
	initProc, err := ProcessOwner(uint32(sleep.Process.Pid), cg)
	if err != nil {
		t.Fatal(err)
	}
	me.How = "holder"
	saved := &Trust{Maps: []TrustedMap{{ID: 7, Name: "guarded", Owners: []TrustedOwner{{ExeIno: initProc.ExeIno, CgroupID: initProc.CgroupID, Exe: initProc.Exe, How: "creator"}}}}}
	// Through JSON, as the state file holds it.
	b, err := json.Marshal(saved)
	if err != nil {
		t.Fatal(err)
	}
	var restored Trust
	if err := json.Unmarshal(b, &restored); err != nil {
		t.Fatal(err)
	}
	pol := policy.Default()
	pol.AddProtect(policy.Selector{Kind: policy.SelectName, Value: "guarded"})
	held := func(id uint32, writable bool) inventory.Map {
		return inventory.Map{ID: id, Name: "guarded", Holders: []inventory.Holder{{PID: uint32(os.Getpid()), FD: 9, Writable: writable}}}
	}
	stranger := update(7, me.Identity, 4242)
	owner := update(7, initProc.Identity, 4243)

	t.Run("restored", func(t *testing.T) {
		e := New(Config{Policy: pol, Cgroups: cg, Restored: &restored, Now: func() time.Time { return time.Unix(1000, 0) }})
		e.Start([]inventory.Map{held(7, true), held(8, true)})
		evs := holderEvents(t, e)
		ev := evs[uint32(os.Getpid())]
		if len(evs) != 1 || ev == nil || ev.Map.ID != 7 || ev.FD != 9 || ev.Alert == nil || ev.Alert.Rule != policy.RuleHolderWhileDown || ev.Alert.Severity != policy.SeverityHigh {
			t.Fatalf("want one holder-while-down alert for the stranger holding map 7, got %+v (alert %+v)", evs, ev)
		}
		if !strings.Contains(ev.Alert.Reason, "held fd 9") || !strings.Contains(ev.Alert.Reason, initProc.Exe) {
			t.Errorf("the reason names neither the fd nor the saved owner: %s", ev.Alert.Reason)
		}
		e.Evaluate(stranger)
		e.Evaluate(owner)
		if stranger.Alert == nil || stranger.Alert.Rule != policy.RuleForeignWrite || owner.Alert != nil {
			t.Errorf("the stranger's write: %+v, want foreign-write; the saved owner's: %+v, want none", stranger.Alert, owner.Alert)
		}
		// Map 8 is not in the trust (created while bpfmon was down):
		// its holder owns it.
		w := update(8, me.Identity, 4244)
		if e.Evaluate(w); w.Alert != nil {
			t.Errorf("the holder of a map created while down alerted: %+v", w.Alert)
		}
		tr := e.Trust()
		if len(tr.Maps) != 2 || tr.Maps[0].ID != 7 || len(tr.Maps[0].Owners) != 1 || tr.Maps[0].Owners[0].ExeIno != initProc.ExeIno ||
			tr.Maps[1].ID != 8 || len(tr.Maps[1].Owners) != 1 || tr.Maps[1].Owners[0].ExeIno != me.ExeIno {
			t.Errorf("trust saved: %+v", tr)
		}
	})
	t.Run("another map under the same id", func(t *testing.T) {
		e := New(Config{Policy: pol, Cgroups: cg, Restored: &Trust{Maps: []TrustedMap{{ID: 7, Name: "other"}}}})
		e.Start([]inventory.Map{held(7, true)})
		if evs := holderEvents(t, e); len(evs) != 0 {
			t.Errorf("a saved map of another name made its holder a stranger: %+v", evs)
		}
	})
	t.Run("read-only holder", func(t *testing.T) {
		e := New(Config{Policy: pol, Cgroups: cg, Restored: &restored})
		e.Start([]inventory.Map{held(7, false)})
		if evs := holderEvents(t, e); len(evs) != 0 {
			t.Errorf("a read-only holder was reported: %+v", evs)
		}
		s := update(7, me.Identity, 4242)
		if e.Evaluate(s); s.Alert == nil {
			t.Error("a read-only holder became an owner")
		}
	})
	t.Run("policy owners", func(t *testing.T) {
		var sh unix.Stat_t
		if err := unix.Stat("/bin/sh", &sh); err != nil {
			t.Skip("no /bin/sh")
		}
		pol := policy.Default()
		pol.AddProtect(policy.Selector{Kind: policy.SelectName, Value: "guarded"})
		pol.Owners = []policy.Owner{{Exe: "/bin/sh"}}
		e := New(Config{Policy: pol, Cgroups: cg}) // a first start
		e.Start([]inventory.Map{held(7, true)})
		evs := holderEvents(t, e)
		if ev := evs[uint32(os.Getpid())]; len(evs) != 1 || ev.Alert == nil || !strings.Contains(ev.Alert.Reason, "/bin/sh") {
			t.Fatalf("want the holder reported against the policy's owners, got %+v", evs)
		}
		s, o := update(7, me.Identity, 4242), update(7, event.Identity{ExeIno: sh.Ino, CgroupID: 12345}, 4243)
		e.Evaluate(s)
		e.Evaluate(o)
		if s.Alert == nil || o.Alert != nil {
			t.Errorf("holder's write: %+v (want an alert); the policy owner's in any cgroup: %+v (want none)", s.Alert, o.Alert)
		}
		if tr := e.Trust(); len(tr.Maps) != 1 || len(tr.Maps[0].Owners) != 0 {
			t.Errorf("the policy's owners or a holder were saved as the map's: %+v", tr)
		}
	})
}

// TestMonitorGap: an unclean stop alerts, with the gap in the reason; a
// clean one is an event only.
func TestMonitorGap(t *testing.T) {
	e := New(Config{})
	now := time.Date(2026, 12, 3, 10, 0, 0, 0, time.UTC)
	unclean := &event.Event{Time: now, Type: event.MonitorGap, Source: event.SourceState, Extra: &event.Extra{LastAlive: now.Add(-90 * time.Second)}}
	clean := &event.Event{Time: now, Type: event.MonitorGap, Source: event.SourceState, Extra: &event.Extra{LastAlive: now.Add(-time.Hour), CleanStop: true}}
	e.Evaluate(unclean)
	e.Evaluate(clean)
	if a := unclean.Alert; a == nil || a.Rule != policy.RuleMonitorGap || a.Severity != policy.SeverityHigh || !strings.Contains(a.Reason, "1m30s") || !strings.Contains(a.Reason, "2026-12-03T09:58:30Z") {
		t.Errorf("unclean stop: %+v", a)
	}
	if clean.Alert != nil {
		t.Errorf("a clean stop alerted: %+v", clean.Alert)
	}
}

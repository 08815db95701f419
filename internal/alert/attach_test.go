package alert

import (
	"testing"
	"time"

	"github.com/bpfmon/bpfmon/internal/event"
	"github.com/bpfmon/bpfmon/internal/inventory"
	"github.com/bpfmon/bpfmon/internal/policy"
)

// TestAttachmentScan: a protected program (one using a protected map)
// that loses its attachment between two scans is a prog_detached, judged
// a second later: an alert when no owner of its maps made a call on them
// since the scan before, none when one did (its unload); a program in
// its place is an attach_changed naming it; an unprotected program's
// detach is nothing.
func TestAttachmentScan(t *testing.T) {
	c := &clock{t: time.Unix(1000, 0)}
	pol := policy.Default()
	pol.AddProtect(policy.Selector{Kind: policy.SelectID, Value: "7", ID: 7})
	e := New(Config{Policy: pol, SelfPID: 1, Now: c.now})
	owner := event.Identity{ExeIno: 99, CgroupID: 5}
	xdp := inventory.Attachment{Kind: "xdp", Point: "xdp skb on v0 (ifindex 5, netns 1)", Interface: "v0", Mode: "skb"}
	other := inventory.Attachment{Kind: "link", Point: "link 3 (tracing)"}
	attached := func(id uint32, name string, a ...inventory.Attachment) inventory.Program {
		return inventory.Program{ID: id, Name: name, Attachments: a}
	}
	e.Evaluate(&event.Event{Type: event.MapCreate, HasResult: true, Result: 3,
		Process: &event.Process{PID: 100, ExeIno: owner.ExeIno, CgroupID: owner.CgroupID}, Map: &event.Map{ID: 7, Name: "rules"}})
	c.t = c.t.Add(time.Minute) // the creation is an owner's work, long before
	e.Start([]inventory.Map{{ID: 7, Name: "rules", Programs: []inventory.Program{attached(100, "fw", xdp)}},
		{ID: 8, Programs: []inventory.Program{attached(200, "trace", other)}}})

	scan := func(maps ...inventory.Map) []*event.Event {
		t.Helper()
		c.t = c.t.Add(10 * time.Second)
		e.Refresh(maps)
		if evs := e.Tick(); len(evs) != 0 {
			t.Fatalf("findings before their delay: %+v", evs)
		}
		c.t = c.t.Add(attachDelay)
		evs := e.Tick()
		for _, ev := range evs {
			e.Evaluate(ev)
		}
		return evs
	}
	// A stranger takes it off the interface; the unprotected program
	// goes too.
	evs := scan(inventory.Map{ID: 7, Name: "rules", Programs: []inventory.Program{attached(100, "fw")}}, inventory.Map{ID: 8})
	if len(evs) != 1 || evs[0].Type != event.ProgDetached || evs[0].Prog.ID != 100 || evs[0].Extra.Attach.Point != xdp.Point ||
		evs[0].Process != nil || evs[0].Alert == nil || evs[0].Alert.Rule != policy.RuleProgramDetached ||
		evs[0].Alert.Severity != policy.SeverityCritical {
		t.Fatalf("detach by a stranger: %+v", evs)
	}
	t.Log(evs[0].Alert.Reason)

	// Attached again, then replaced by a stranger's program.
	scan(inventory.Map{ID: 7, Name: "rules", Programs: []inventory.Program{attached(100, "fw", xdp)}})
	evs = scan(inventory.Map{ID: 7, Name: "rules", Programs: []inventory.Program{attached(100, "fw")}},
		inventory.Map{ID: 9, Programs: []inventory.Program{attached(300, "evil", xdp)}})
	if len(evs) != 1 || evs[0].Type != event.AttachChanged || evs[0].Extra.Attach.NewProg == nil ||
		evs[0].Extra.Attach.NewProg.ID != 300 || evs[0].Alert == nil {
		t.Fatalf("replaced by a stranger: %+v", evs)
	}

	// The owner at work on the map (its unload opens the pinned map),
	// then the detach: no alert.
	scan(inventory.Map{ID: 7, Name: "rules", Programs: []inventory.Program{attached(100, "fw", xdp)}})
	c.t = c.t.Add(5 * time.Second)
	e.Evaluate(&event.Event{Type: event.ObjGet, HasResult: true, Result: 4,
		Process: &event.Process{PID: 101, ExeIno: owner.ExeIno, CgroupID: owner.CgroupID}, Map: &event.Map{ID: 7}})
	evs = scan(inventory.Map{ID: 7, Name: "rules", Programs: []inventory.Program{attached(100, "fw")}})
	if len(evs) != 1 || evs[0].Type != event.ProgDetached || evs[0].Alert != nil {
		t.Fatalf("the owner's unload: %+v", evs)
	}
	// ... and only that once: the next stranger's detach alerts again.
	scan(inventory.Map{ID: 7, Name: "rules", Programs: []inventory.Program{attached(100, "fw", xdp)}})
	c.t = c.t.Add(time.Minute)
	scan(inventory.Map{ID: 7, Name: "rules", Programs: []inventory.Program{attached(100, "fw", xdp)}})
	evs = scan(inventory.Map{ID: 7, Name: "rules", Programs: []inventory.Program{attached(100, "fw")}})
	if len(evs) != 1 || evs[0].Alert == nil {
		t.Fatalf("a stranger's detach after the owner's work: %+v", evs)
	}
}

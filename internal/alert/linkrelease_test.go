package alert

import (
	"strings"
	"testing"
	"time"

	"github.com/bpfmon/bpfmon/internal/event"
	"github.com/bpfmon/bpfmon/internal/inventory"
	"github.com/bpfmon/bpfmon/internal/policy"
)

// TestLinkRelease: a stranger closing the last reference of a protected
// program's link (link_release, the netattach sensor) raises
// program-detached naming it, once: the scan's finding of that detach is
// not reported again. The owner's own release (its exit) raises nothing.
func TestLinkRelease(t *testing.T) {
	c := &clock{t: time.Unix(1000, 0)}
	pol := policy.Default()
	pol.AddProtect(policy.Selector{Kind: policy.SelectID, Value: "7", ID: 7})
	e := New(Config{Policy: pol, SelfPID: 1, Now: c.now})
	owner := &event.Process{PID: 100, ExeIno: 99, CgroupID: 5, Comm: "xdp-filter"}
	gdb := &event.Process{PID: 300, ExeIno: 77, CgroupID: 5, Comm: "gdb", Exe: "/usr/bin/gdb"}
	lnk := inventory.Attachment{Kind: "xdp", Point: "xdp skb on v0 (ifindex 5, netns 1)", Interface: "v0", Ifindex: 5, NetNS: 1, Mode: "skb",
		LinkID: 12, LinkType: "xdp"}
	other := inventory.Attachment{Kind: "link", Point: "link 3 (tracing)", LinkID: 3, LinkType: "tracing"}
	maps := func(a ...inventory.Attachment) []inventory.Map {
		return []inventory.Map{{ID: 7, Name: "rules", Programs: []inventory.Program{{ID: 100, Name: "fw", Attachments: a}}}}
	}
	e.Evaluate(&event.Event{Type: event.MapCreate, HasResult: true, Result: 3, Process: owner, Map: &event.Map{ID: 7, Name: "rules"}})
	c.t = c.t.Add(time.Minute)
	e.Start(maps(lnk, other))
	scan := func(m []inventory.Map) []*event.Event {
		t.Helper()
		c.t = c.t.Add(10 * time.Second)
		e.Refresh(m)
		c.t = c.t.Add(attachDelay)
		evs := e.Tick()
		for _, ev := range evs {
			e.Evaluate(ev)
		}
		return evs
	}
	release := func(p *event.Process, link, prog uint32) *event.Event {
		ev := &event.Event{Time: c.t, Type: event.LinkRelease, Source: event.SourceNetAttach, Process: p, Prog: &event.Prog{ID: prog},
			Extra: &event.Extra{Attach: &event.Attach{Kind: "link", LinkID: link, LinkType: "xdp", Point: "link 12 (xdp)"}}}
		e.Evaluate(ev)
		return ev
	}

	// Another program's link: nothing.
	if ev := release(gdb, 40, 200); ev.Alert != nil {
		t.Fatalf("an unprotected program's link released, yet %+v", ev.Alert)
	}

	// A stranger closes the link's last fd: named; the scan that finds
	// the program gone from its link's point stays silent.
	ev := release(gdb, 12, 100)
	if ev.Alert == nil || ev.Alert.Rule != policy.RuleProgramDetached || ev.Extra.Attach.Point != lnk.Point ||
		!strings.Contains(ev.Alert.Reason, "gdb") || !strings.Contains(ev.Alert.Reason, "last reference") {
		t.Fatalf("gdb's release: attach %+v alert %+v", ev.Extra.Attach, ev.Alert)
	}
	t.Log(ev.Alert.Reason)
	if evs := scan(maps(other)); len(evs) != 0 {
		t.Fatalf("the scan reported the named release again: %+v", evs[0])
	}

	// The owner's own release (its exit): nothing, and no scan finding.
	scan(maps(lnk, other))
	if ev := release(owner, 12, 100); ev.Alert != nil {
		t.Fatalf("the owner's release: alert %+v", ev.Alert)
	}
	if evs := scan(maps(other)); len(evs) != 0 {
		t.Fatalf("the scan reported the owner's named release: %+v", evs[0])
	}

	// The scan sees the link gone before the event is read (it finds it
	// in the scan before): the event names the process, the waiting
	// finding is dropped.
	scan(maps(lnk, other))
	c.t = c.t.Add(10 * time.Second)
	e.Refresh(maps(other))
	if ev := release(&event.Process{PID: 301, ExeIno: 78, CgroupID: 5, Comm: "busybox"}, 12, 100); ev.Alert == nil {
		t.Fatal("a release the scan found first: no alert from the event")
	}
	c.t = c.t.Add(attachDelay)
	if evs := e.Tick(); len(evs) != 0 {
		t.Fatalf("the scan's finding of a named release was reported: %+v", evs[0])
	}

	// A release by an exiting process (no executable to tell it by):
	// no alert, and the scan still reports the detach.
	scan(maps(lnk, other))
	scan(maps(lnk, other))
	scan(maps(lnk, other))
	if ev := release(&event.Process{PID: 302, CgroupID: 5, Comm: "gdb"}, 12, 100); ev.Alert != nil {
		t.Fatalf("an exiting process's release: %+v", ev.Alert)
	}
	if evs := scan(maps(other)); len(evs) != 1 || evs[0].Type != event.ProgDetached {
		t.Fatalf("an exiting process's release: the scan found %d events", len(evs))
	}

	// Unnamed, the scan still reports it (once the named one's two
	// scans passed).
	scan(maps(lnk, other))
	scan(maps(lnk, other))
	if evs := scan(maps(other)); len(evs) != 1 || evs[0].Type != event.ProgDetached {
		t.Fatalf("an unnamed detach: the scan found %d events", len(evs))
	}
}

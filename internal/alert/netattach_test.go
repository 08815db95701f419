package alert

import (
	"strings"
	"testing"
	"time"

	"github.com/bpfmon/bpfmon/internal/event"
	"github.com/bpfmon/bpfmon/internal/inventory"
	"github.com/bpfmon/bpfmon/internal/policy"
	"github.com/bpfmon/bpfmon/internal/sensor/netattach"
)

// TestNetAttach: the netattach sensor's xdp_set and tc_filter_del events
// of a stranger that take a protected program off its attachment (as the
// last scan found it) are program-detached alerts naming the process, the
// program and the attach point, and the scan then does not report that
// detach a second time, even when it found it before the event was read;
// the owner's own detach raises none, nor does a failed call or one on
// another device, direction or priority.
func TestNetAttach(t *testing.T) {
	c := &clock{t: time.Unix(1000, 0)}
	pol := policy.Default()
	pol.AddProtect(policy.Selector{Kind: policy.SelectID, Value: "7", ID: 7})
	e := New(Config{Policy: pol, SelfPID: 1, Now: c.now})
	owner := &event.Process{PID: 100, ExeIno: 99, CgroupID: 5, Comm: "xdp-filter"}
	ip := &event.Process{PID: 300, ExeIno: 77, CgroupID: 5, Comm: "ip", Exe: "/usr/sbin/ip"}
	xdp := inventory.Attachment{Kind: "xdp", Point: "xdp skb on v0 (ifindex 5, netns 1)", Interface: "v0", Ifindex: 5, NetNS: 1, Mode: "skb"}
	tc := inventory.Attachment{Kind: "tc", Point: "tc ingress priority 49152 on v0 (ifindex 5, netns 1)", Interface: "v0", Ifindex: 5, NetNS: 1,
		AttachType: "ingress", Target: "priority 49152"}
	maps := func(a ...inventory.Attachment) []inventory.Map {
		return []inventory.Map{{ID: 7, Name: "rules", Programs: []inventory.Program{{ID: 100, Name: "fw", Attachments: a}}}}
	}
	e.Evaluate(&event.Event{Type: event.MapCreate, HasResult: true, Result: 3, Process: owner, Map: &event.Map{ID: 7, Name: "rules"}})
	c.t = c.t.Add(time.Minute)
	e.Start(maps(xdp, tc))
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
	xdpSet := func(p *event.Process, result int64, ifindex uint32, after uint32) *event.Event {
		ev := &event.Event{Time: c.t, Type: event.XDPSet, Source: event.SourceNetAttach, Process: p, HasResult: true, Result: result,
			Extra: &event.Extra{Attach: &event.Attach{Kind: "xdp", Ifindex: ifindex, NetNS: 1, Mode: "skb", ModeProgs: [3]uint32{after}}}}
		e.Evaluate(ev)
		return ev
	}

	// Failed, or on another device, or leaving the program in place:
	// nothing.
	for _, ev := range []*event.Event{xdpSet(ip, -16, 5, 0), xdpSet(ip, 0, 6, 0), xdpSet(ip, 0, 5, 100)} {
		if ev.Alert != nil || ev.Prog != nil {
			t.Fatalf("no protected program taken off, yet %+v %+v", ev.Prog, ev.Alert)
		}
	}

	// ip takes it off the interface: named, and the scan then stays
	// silent about that detach.
	ev := xdpSet(ip, 0, 5, 0)
	if ev.Alert == nil || ev.Alert.Rule != policy.RuleProgramDetached || ev.Prog == nil || ev.Prog.ID != 100 ||
		ev.Extra.Attach.Point != xdp.Point || !strings.Contains(ev.Alert.Reason, "ip") {
		t.Fatalf("ip's detach: prog %+v attach %+v alert %+v", ev.Prog, ev.Extra.Attach, ev.Alert)
	}
	t.Log(ev.Alert.Reason)
	if evs := scan(maps(tc)); len(evs) != 0 {
		t.Fatalf("the scan reported the named detach again: %+v", evs[0])
	}

	// The owner's own detach: the event carries the program, no alert.
	scan(maps(xdp, tc))
	if ev := xdpSet(owner, 0, 5, 0); ev.Alert != nil || ev.Prog == nil || ev.Prog.ID != 100 {
		t.Fatalf("the owner's detach: prog %+v alert %+v", ev.Prog, ev.Alert)
	}
	if evs := scan(maps(tc)); len(evs) != 0 {
		t.Fatalf("the scan reported the owner's named detach: %+v", evs[0])
	}

	// The scan finds the detach before the event is read: the event
	// alerts, the waiting finding is dropped. (Another stranger: ip's
	// alert on that program is within the rate limit's window.)
	scan(maps(xdp, tc))
	c.t = c.t.Add(10 * time.Second)
	e.Refresh(maps(tc))
	if ev := xdpSet(&event.Process{PID: 301, ExeIno: 78, CgroupID: 5, Comm: "busybox"}, 0, 5, 0); ev.Alert == nil {
		t.Fatal("a detach the scan found first: no alert from the event")
	}
	c.t = c.t.Add(attachDelay)
	if evs := e.Tick(); len(evs) != 0 {
		t.Fatalf("the scan's finding of a named detach was reported: %+v", evs[0])
	}

	// The event comes while a scan reads the attachments from before
	// the change: that scan finds nothing, the next finds the detach,
	// which is still the named one.
	scan(maps(xdp, tc))
	c.t = c.t.Add(time.Hour) // past the rate limit
	if ev := xdpSet(ip, 0, 5, 0); ev.Alert == nil {
		t.Fatal("ip's detach during a scan: no alert")
	}
	if evs := scan(maps(xdp, tc)); len(evs) != 0 {
		t.Fatalf("a scan of the state before the change: %+v", evs[0])
	}
	if evs := scan(maps(tc)); len(evs) != 0 {
		t.Fatalf("the scan after reported the named detach again: %+v", evs[0])
	}

	// tc: another direction or priority is nothing; the filter's own, or
	// every priority, alerts.
	scan(maps(xdp, tc))
	tcDel := func(dir string, prio uint16) *event.Event {
		ev := &event.Event{Time: c.t, Type: event.TCFilterDel, Source: event.SourceNetAttach, Process: ip, HasResult: true,
			Extra: &event.Extra{Attach: &event.Attach{Kind: "tc", Ifindex: 5, NetNS: 1, Direction: dir, Priority: prio}}}
		e.Evaluate(ev)
		return ev
	}
	if ev := tcDel("egress", 0); ev.Alert != nil {
		t.Fatalf("egress delete: %+v", ev.Alert)
	}
	if ev := tcDel("ingress", 1); ev.Alert != nil {
		t.Fatalf("another priority's delete: %+v", ev.Alert)
	}
	c.t = c.t.Add(time.Hour) // past ip's rate limit
	if ev := tcDel(netattach.Direction(0xFFFFFFF2), 0); ev.Alert == nil || ev.Prog == nil || ev.Extra.Attach.Point != tc.Point {
		t.Fatalf("tc filter del of every ingress priority: prog %+v alert %+v", ev.Prog, ev.Alert)
	}
}

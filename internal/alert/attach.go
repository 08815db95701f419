package alert

import (
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/bpfmon/bpfmon/internal/event"
	"github.com/bpfmon/bpfmon/internal/inventory"
	"github.com/bpfmon/bpfmon/internal/policy"
)

// attachState is what the engine remembers of the attachment scan: the
// protected programs (those using a protected map) with their attachments
// at the last scan, and the findings waiting for their delay.
type attachState struct {
	progs map[uint32]watchedProg
	// prev is progs of the scan before: a netlink change read just
	// after a scan that already saw its result is matched there.
	prev  map[uint32]watchedProg
	last  time.Time
	later []*event.Event
	// calls: each identity's last reported call (atWork); podCall: the
	// last by a process the policy's pod owners name (podOwns), an owner
	// of every protected map.
	calls   map[event.Identity]time.Time
	podCall time.Time
	// linkOps are the links a link_detach or link_update named since
	// the last scan: the scan does not report them again, without the
	// process.
	linkOps map[uint32]bool
	// progOps are the attachments (program id and point) a prog_detach
	// or prog_attach with BPF_F_REPLACE took away since the last scan,
	// which does not report them again.
	progOps map[progPoint]bool
	// pointOps are the attach points a netlink change named by the
	// netattach sensor took a protected program off (matchNetAttach),
	// with the scans left during which the scan does not report them
	// again: the scan that finds the change may be the second after it,
	// when the first read the attachments before the change was made.
	pointOps map[string]int
}

type progPoint struct {
	prog  uint32
	point string
}

type watchedProg struct {
	name   string
	maps   []uint32 // the protected maps it uses
	attach []inventory.Attachment
}

// strangerGuards is what a process p that took program w off its
// attachment is a stranger to: w's protected maps and their texts. It
// returns none when p owns any of them (the owner's own detach, replace
// or unload) or when none is protected.
func (e *Engine) strangerGuards(w watchedProg, p *event.Process) ([]*guarded, []string) {
	var gs []*guarded
	for _, id := range w.maps {
		g := e.guarded[id]
		if g == nil {
			continue
		}
		if e.owns(g, p) {
			return nil, nil
		}
		gs = append(gs, g)
	}
	names := make([]string, 0, len(gs))
	for _, g := range gs {
		names = append(names, e.guardedText(g))
	}
	return gs, names
}

// attachDelay is how long a finding waits before it is judged: the
// owner's bpf(2) calls made just before the detach (an unload opening its
// pinned maps) may still be in the ring when the scan runs.
const attachDelay = time.Second

// scanAttachments diffs the protected programs' attachments with the last
// scan's: a protected program that lost an attachment is a prog_detached,
// one whose attach point another program holds now an attach_changed.
// Called with e.mu held, after refresh (so newly protected maps count).
func (e *Engine) scanAttachments(maps []inventory.Map, atStart bool) {
	now := e.cfg.Now()
	cur := map[uint32]watchedProg{}
	holder := map[string]inventory.Program{}
	for _, m := range maps {
		if g := e.guarded[m.ID]; g != nil && g.name == "" {
			g.name = m.Name // protected from a program load, before its name was known
		}
		for _, p := range m.Programs {
			for _, a := range p.Attachments {
				holder[a.Point] = p
			}
			if e.guarded[m.ID] == nil {
				continue
			}
			w := cur[p.ID]
			w.name, w.attach = p.Name, p.Attachments
			w.maps = append(w.maps, m.ID)
			cur[p.ID] = w
		}
	}
	if !atStart && e.attach.progs != nil {
		for id, old := range e.attach.progs {
			for _, a := range old.attach {
				if slices.ContainsFunc(cur[id].attach, func(b inventory.Attachment) bool { return b.Point == a.Point }) {
					continue
				}
				if a.LinkID != 0 && e.attach.linkOps[a.LinkID] || e.attach.progOps[progPoint{id, a.Point}] {
					continue // the syscall sensor named who did it
				}
				if e.attach.pointOps[a.Point] > 0 {
					delete(e.attach.pointOps, a.Point)
					continue // the netattach sensor named who did it
				}
				e.attach.later = append(e.attach.later, e.detachEvent(now, id, old, a, holder))
			}
		}
	}
	e.attach.prev, e.attach.progs, e.attach.last = e.attach.progs, cur, now
	clear(e.attach.linkOps)
	clear(e.attach.progOps)
	for p, n := range e.attach.pointOps {
		if n <= 1 {
			delete(e.attach.pointOps, p)
		} else {
			e.attach.pointOps[p] = n - 1
		}
	}
}

// detachEvent is the finding that program id (old, at the last scan) is
// no longer attached at a.
func (e *Engine) detachEvent(now time.Time, id uint32, old watchedProg, a inventory.Attachment, holder map[string]inventory.Program) *event.Event {
	ev := &event.Event{Time: now, Type: event.ProgDetached, Source: event.SourceInventory,
		Prog: &event.Prog{ID: id, Name: old.name},
		Extra: &event.Extra{Since: e.attach.last, ProgMaps: old.maps, ProgMapCount: uint32(len(old.maps)),
			Attach: &event.Attach{Kind: a.Kind, Point: a.Point, Interface: a.Interface, Mode: a.Mode, LinkID: a.LinkID}},
		Reason: "found by the attachment scan, which names no process (a netlink detach and a link's release reach no hook on this kernel)"}
	if g := e.guarded[old.maps[0]]; g != nil {
		ev.Map = &event.Map{ID: g.id, Name: g.name}
	}
	if h, ok := holder[a.Point]; ok && h.ID != id {
		ev.Type = event.AttachChanged
		ev.Extra.Attach.NewProg = &event.Prog{ID: h.ID, Name: h.Name}
	}
	return ev
}

// dueAttachments takes the findings whose delay has passed. Called with
// e.mu held.
func (e *Engine) dueAttachments(now time.Time) []*event.Event {
	var out []*event.Event
	n := 0
	for _, ev := range e.attach.later {
		if _, named := e.attach.pointOps[ev.Extra.Attach.Point]; named {
			continue // named by the netattach sensor while it waited
		}
		if now.Sub(ev.Time) >= attachDelay {
			out = append(out, ev)
			continue
		}
		e.attach.later[n] = ev
		n++
	}
	e.attach.later = e.attach.later[:n]
	return out
}

// atWork notes when each identity last made a call bpfmon reports (but
// element writes): an
// owner's unload and reload of its tool (xdp-filter unload, then load)
// make calls, if not on the old maps then on the new ones, and a detach
// found by the next scan is then its own. A marked process (lineage.go)
// is no one's work. Called with e.mu held.
//
// Element writes, the hot path, are left out: a reload creates, pins and
// loads, and those calls are few.
func (e *Engine) atWork(ev *event.Event) {
	p := ev.Process
	if ev.Type.Info().Elements || p.ExeIno == 0 {
		return
	}
	if _, marked := e.marked(p); marked {
		return
	}
	if len(e.attach.calls) >= callsMax {
		clear(e.attach.calls)
	}
	if e.attach.calls == nil {
		e.attach.calls = map[event.Identity]time.Time{}
	}
	at := ev.Time // when the call was made, not when it was read from the ring
	if at.IsZero() {
		at = e.cfg.Now()
	}
	if at.After(e.attach.calls[identity(p)]) {
		e.attach.calls[identity(p)] = at
	}
	if at.After(e.attach.podCall) && e.podOwns(p) {
		e.attach.podCall = at
	}
}

// callsMax bounds the identities whose last call is remembered: each
// executable and cgroup pair that made a reported bpf(2) call.
const callsMax = 4096

// ownerCalled reports whether an owner of g made a call at or after t.
func (e *Engine) ownerCalled(g *guarded, t time.Time) bool {
	if !e.attach.podCall.IsZero() && !e.attach.podCall.Before(t) {
		return true
	}
	for id, at := range e.attach.calls {
		if !at.Before(t) && e.identityOwns(g, id) {
			return true
		}
	}
	return false
}

// matchDetached: a protected program lost an attachment, and no owner of
// its maps made a reported call since the scan before (the owner's reload
// makes such calls: creating, pinning and loading); nor did an owner load
// the program that took its place.
func (e *Engine) matchDetached(ev *event.Event) (string, string, limitKey) {
	x := ev.Extra
	if x == nil || x.Attach == nil || ev.Prog == nil {
		return "", "", limitKey{}
	}
	// The program was attached when the scan before read it: the owner's
	// unload, or the reload after it, is a call made since.
	since := x.Since
	var gs []*guarded
	for _, id := range x.ProgMaps {
		if g := e.guarded[id]; g != nil {
			if e.ownerCalled(g, since) {
				return "", "", limitKey{} // its owner at work
			}
			gs = append(gs, g)
		}
	}
	if len(gs) == 0 {
		return "", "", limitKey{}
	}
	g := gs[0]
	if np := x.Attach.NewProg; np != nil && e.progOwns(g, np) {
		return "", "", limitKey{} // an owner's program took its place
	}
	what := "is no longer attached at " + x.Attach.Point
	if np := x.Attach.NewProg; np != nil {
		what = fmt.Sprintf("was replaced at %s by %s", x.Attach.Point, e.progText(np))
	}
	var names []string
	for _, g := range gs {
		names = append(names, e.guardedText(g))
	}
	return policy.RuleProgramDetached, fmt.Sprintf("%s, which uses %s, %s: found by the attachment scan, which names no process; no owner of its maps made a bpf(2) call since %s; %s",
			e.progText(ev.Prog), strings.Join(names, ", "), what, x.Since.UTC().Format(time.RFC3339), e.ownersText(g)),
		limitKey{rule: policy.RuleProgramDetached, mapID: g.id, progID: ev.Prog.ID}
}

// matchLinkOp: BPF_LINK_DETACH or BPF_LINK_UPDATE of a link of a
// protected program, or the release of its last reference (link_release,
// the netattach sensor), by a process that owns none of its protected
// maps. The sensor names the caller, the link and the program(s); the
// attach point is the last scan's (or, for a release, the scan's before,
// when the last one saw the link gone before the event was read).
func (e *Engine) matchLinkOp(ev *event.Event) (string, string, limitKey) {
	x, p := ev.Extra, ev.Process
	if x == nil || x.Attach == nil || ev.Prog == nil || p == nil {
		return "", "", limitKey{}
	}
	w, ok := e.attach.progs[ev.Prog.ID]
	if !ok || !slices.ContainsFunc(w.attach, func(a inventory.Attachment) bool { return a.LinkID == x.Attach.LinkID }) {
		// Not a protected program's now; but the link may have been
		// one's at the last scan (a stranger's update, then its
		// detach, within one refresh).
		w, ok = e.linkOwner(e.attach.progs, x.Attach.LinkID)
	}
	if !ok && ev.Type == event.LinkRelease {
		w, ok = e.linkOwner(e.attach.prev, x.Attach.LinkID)
	}
	if !ok || ev.Type == event.LinkRelease && p.ExeIno == 0 {
		// A release with no executable to tell the process by: one
		// exiting with the link's file (its mm is gone before its files).
		// Its owner's exit and a stranger's look alike: no alert, and the
		// scan still reports the detach, naming no process.
		return "", "", limitKey{}
	}
	point := fmt.Sprintf("link %d", x.Attach.LinkID)
	if ev.Prog.Name == "" {
		ev.Prog.Name = w.name
	}
	for _, a := range w.attach {
		if a.LinkID == x.Attach.LinkID {
			x.Attach.Point, x.Attach.Interface, x.Attach.Mode = a.Point, a.Interface, a.Mode
			point = a.Point
		}
	}
	if succeeded(ev) {
		if e.attach.linkOps == nil {
			e.attach.linkOps = map[uint32]bool{}
		}
		if len(e.attach.linkOps) < callsMax {
			e.attach.linkOps[x.Attach.LinkID] = true
		}
		if ev.Type == event.LinkRelease {
			e.notePoint(point) // its scan may come two scans later, or be waiting
		}
	}
	gs, names := e.strangerGuards(w, p)
	if len(gs) == 0 {
		return "", "", limitKey{} // the owner's own, or nothing protected
	}
	verb := "detached"
	if !succeeded(ev) {
		verb = "tried to detach"
	}
	what := fmt.Sprintf("%s %s (%s) from %s", verb, point, "BPF_LINK_DETACH", e.progText(ev.Prog))
	switch ev.Type {
	case event.LinkRelease:
		what = fmt.Sprintf("closed the last reference of %s, detaching %s", point, e.progText(ev.Prog))
	case event.LinkUpdate:
		np := "another program"
		if x.Attach.NewProg != nil {
			np = e.progText(x.Attach.NewProg)
		}
		verb = "put"
		if !succeeded(ev) {
			verb = "tried to put"
		}
		what = fmt.Sprintf("%s %s behind %s (BPF_LINK_UPDATE) in place of %s", verb, np, point, e.progText(ev.Prog))
	}
	who := e.who(p)
	if p.Exe == "" && p.Comm != "" {
		who += fmt.Sprintf(" (comm %q)", p.Comm) // for people only: the process has exited
	}
	return policy.RuleProgramDetached, fmt.Sprintf("%s, not an owner, %s, which uses %s; %s", who, what, strings.Join(names, ", "), e.ownersText(gs[0])),
		limitKey{rule: policy.RuleProgramDetached, mapID: gs[0].id, who: identity(p), progID: ev.Prog.ID}
}

// linkOwner finds the protected program that a scan (progs) found
// attached through link id.
func (e *Engine) linkOwner(progs map[uint32]watchedProg, id uint32) (watchedProg, bool) {
	for _, w := range progs {
		if slices.ContainsFunc(w.attach, func(a inventory.Attachment) bool { return a.LinkID == id }) {
			return w, true
		}
	}
	return watchedProg{}, false
}

// matchProgOp: BPF_PROG_DETACH of a protected program, or BPF_PROG_ATTACH
// with BPF_F_REPLACE in its place, by a process that owns none of its
// protected maps. The syscall sensor names the caller, the cgroup (its
// id), the attach type and both programs; the attach point in words is
// the last scan's.
func (e *Engine) matchProgOp(ev *event.Event) (string, string, limitKey) {
	x, p := ev.Extra, ev.Process
	if x == nil || x.Attach == nil || p == nil {
		return "", "", limitKey{}
	}
	a := x.Attach
	if ev.Prog == nil && ev.Type == event.ProgDetach && a.Kind == "cgroup" {
		// A legacy detach names no program: it takes the cgroup's only
		// one, which the last scan found there.
		ev.Prog = e.cgroupProg(a.TargetIno, a.AttachType)
	}
	if ev.Prog == nil {
		return "", "", limitKey{} // a plain attach
	}
	w, ok := e.attach.progs[ev.Prog.ID]
	if !ok {
		return "", "", limitKey{}
	}
	for _, b := range w.attach {
		if b.Kind == "cgroup" && b.CgroupID == a.TargetIno && b.AttachType == a.AttachType {
			a.Point = b.Point
			if succeeded(ev) && len(e.attach.progOps) < callsMax {
				if e.attach.progOps == nil {
					e.attach.progOps = map[progPoint]bool{}
				}
				e.attach.progOps[progPoint{ev.Prog.ID, b.Point}] = true
			}
		}
	}
	gs, names := e.strangerGuards(w, p)
	if len(gs) == 0 {
		return "", "", limitKey{} // the owner's own detach or replace, or nothing protected
	}
	detach, put := "detached", "put"
	if !succeeded(ev) {
		detach, put = "tried to detach", "tried to put"
	}
	what := fmt.Sprintf("%s %s from %s (BPF_PROG_DETACH)", detach, e.progText(ev.Prog), a.Point)
	if ev.Type == event.ProgAttach {
		np := "another program"
		if a.NewProg != nil {
			np = e.progText(a.NewProg)
		}
		what = fmt.Sprintf("%s %s at %s (BPF_PROG_ATTACH, BPF_F_REPLACE) in place of %s", put, np, a.Point, e.progText(ev.Prog))
	}
	return policy.RuleProgramDetached, fmt.Sprintf("%s, not an owner, %s, which uses %s; %s", e.who(p), what, strings.Join(names, ", "), e.ownersText(gs[0])),
		limitKey{rule: policy.RuleProgramDetached, mapID: gs[0].id, who: identity(p), progID: ev.Prog.ID}
}

// cgroupProg is the protected program the last scan found attached to
// cgroup id with attach type t, nil when none or more than one (a
// multi-program cgroup, whose detach must name its program).
func (e *Engine) cgroupProg(id uint64, t string) *event.Prog {
	var found *event.Prog
	for pid, w := range e.attach.progs {
		for _, b := range w.attach {
			if b.Kind == "cgroup" && b.CgroupID == id && b.AttachType == t {
				if found != nil {
					return nil
				}
				found = &event.Prog{ID: pid, Name: w.name}
			}
		}
	}
	return found
}

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
	last  time.Time
	later []*event.Event
}

type watchedProg struct {
	name   string
	maps   []uint32 // the protected maps it uses
	attach []inventory.Attachment
}

// attachDelay is how long a finding waits before it is judged: the
// owner's bpf(2) calls made just before the detach (an unload opening its
// pinned maps) may still be in the ring when the scan runs.
const attachDelay = time.Second

// ownerSlack widens the window in which an owner's call on a program's
// maps explains its detach: the call may come shortly before the previous
// scan read the program as attached.
const ownerSlack = 2 * time.Second

// scanAttachments diffs the protected programs' attachments with the last
// scan's: a protected program that lost an attachment is a prog_detached,
// one whose attach point another program holds now an attach_changed.
// Called with e.mu held, after refresh (so newly protected maps count).
func (e *Engine) scanAttachments(maps []inventory.Map, atStart bool) {
	now := e.cfg.Now()
	cur := map[uint32]watchedProg{}
	holder := map[string]inventory.Program{}
	for _, m := range maps {
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
				e.attach.later = append(e.attach.later, e.detachEvent(now, id, old, a, holder))
			}
		}
	}
	e.attach.progs, e.attach.last = cur, now
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

// ownerAtWork notes that an owner of g made a call on it: a detach found
// by the next scan may be its own (an unload, a reload).
func (e *Engine) ownerAtWork(g *guarded, ev *event.Event) {
	if p := ev.Process; p != nil && succeeded(ev) && e.owns(g, p) {
		g.ownerSeen = e.cfg.Now()
	}
}

// matchDetached: a protected program lost an attachment, and no owner of
// its maps made a call on them since the scan before (the owner's unload
// and load make such calls: opening the pinned maps, creating new ones);
// nor did an owner load the program that took its place.
func (e *Engine) matchDetached(ev *event.Event) (string, string, limitKey) {
	x := ev.Extra
	if x == nil || x.Attach == nil || ev.Prog == nil {
		return "", "", limitKey{}
	}
	since := x.Since.Add(-ownerSlack)
	var gs []*guarded
	for _, id := range x.ProgMaps {
		if g := e.guarded[id]; g != nil {
			if !g.ownerSeen.IsZero() && !g.ownerSeen.Before(since) {
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
	return policy.RuleProgramDetached, fmt.Sprintf("%s, which uses %s, %s: found by the attachment scan, which names no process; no owner was at work on its maps since %s; %s",
			e.progText(ev.Prog), strings.Join(names, ", "), what, x.Since.UTC().Format(time.RFC3339), e.ownersText(g)),
		limitKey{rule: policy.RuleProgramDetached, mapID: g.id, progID: ev.Prog.ID}
}

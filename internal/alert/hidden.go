package alert

import (
	"fmt"
	"strings"
	"time"

	"github.com/bpfmon/bpfmon/internal/bpfsys"
	"github.com/bpfmon/bpfmon/internal/event"
	"github.com/bpfmon/bpfmon/internal/inventory"
	"github.com/bpfmon/bpfmon/internal/policy"
)

// hiddenState is what the engine remembers of the cross-view check: the
// hidden maps and the risky programs already reported, so that each is
// reported once while it lasts.
type hiddenState struct {
	maps  map[uint32]bool
	progs map[uint32]bool
	// hiddenProgs are the programs reported missing from bpf(2)'s
	// listing (hidden_progs.go).
	hiddenProgs map[uint32]bool
}

// crossView turns an inventory's findings into events for the next Tick:
// a hidden_object for each map newly missing from bpf(2)'s listing, and,
// for programs that were already loaded (at start, or loaded while a
// record was lost), a prog_load from the inventory for each that calls a
// risky helper. Called with e.mu held.
func (e *Engine) crossView(maps []inventory.Map, atStart bool) {
	if e.hidden.maps == nil {
		e.hidden = hiddenState{maps: map[uint32]bool{}, progs: map[uint32]bool{}}
	}
	now := e.cfg.Now()
	hidden := map[uint32]bool{}
	progs := map[uint32]bool{}
	for _, m := range maps {
		for _, p := range m.Programs {
			progs[p.ID] = true
			if p.Risky == "" || e.hidden.progs[p.ID] {
				continue
			}
			e.hidden.progs[p.ID] = true
			if !atStart {
				continue // its prog_load said it
			}
			e.pending = append(e.pending, &event.Event{Time: now, Type: event.ProgLoad, Source: event.SourceInventory,
				Prog:   &event.Prog{ID: p.ID, Name: p.Name, Risky: p.Risky},
				Reason: "loaded before bpfmon started: found by the inventory"})
		}
		if m.Hidden == nil {
			continue
		}
		hidden[m.ID] = true
		if e.hidden.maps[m.ID] {
			continue
		}
		e.hidden.maps[m.ID] = true
		e.pending = append(e.pending, hiddenEvent(now, m))
	}
	for id := range e.hidden.maps {
		if !hidden[id] {
			delete(e.hidden.maps, id) // gone, or listed again
		}
	}
	for id := range e.hidden.progs {
		if !progs[id] {
			delete(e.hidden.progs, id)
		}
	}
}

// hiddenEvent is the hidden_object event of m.
func hiddenEvent(now time.Time, m inventory.Map) *event.Event {
	ev := &event.Event{Time: now, Type: event.HiddenObject, Source: event.SourceInventory,
		Map: &event.Map{ID: m.ID, Name: m.Name, Type: m.TypeID, KeySize: m.KeySize, ValueSize: m.ValueSize,
			MaxEntries: m.MaxEntries, Flags: m.Flags, Frozen: m.Frozen, Pins: m.Pins},
		Extra: &event.Extra{Hidden: &event.Hidden{Kind: "map", ID: m.ID, SeenBy: m.Hidden.SeenBy, MissedBy: m.Hidden.MissedBy}}}
	for _, p := range m.Programs {
		ev.Map.Programs = append(ev.Map.Programs, event.MapProgram{ID: p.ID, Name: p.Name})
	}
	return ev
}

// matchHidden: every hidden object is an alert.
func (e *Engine) matchHidden(ev *event.Event) (string, string, limitKey) {
	x := ev.Extra
	if x == nil || x.Hidden == nil {
		return "", "", limitKey{}
	}
	h := x.Hidden
	what := fmt.Sprintf("%s %d", h.Kind, h.ID)
	key := limitKey{rule: policy.RuleHiddenObject, mapID: h.ID}
	switch {
	case ev.Map != nil:
		what = e.mapText(ev.Map.ID, ev.Map.Name)
	case ev.Prog != nil:
		what = fmt.Sprintf("program %d (%q)", ev.Prog.ID, ev.Prog.Name)
		key = limitKey{rule: policy.RuleHiddenObject, progID: h.ID}
	}
	return policy.RuleHiddenObject, fmt.Sprintf("%s is missing from bpf(2)'s own listing (%s) while %s show it: something rewrites what bpf(2) tells user space, as a rootkit on the bpf syscall does to hide its objects",
		what, strings.Join(h.MissedBy, ", "), strings.Join(h.SeenBy, ", ")), key
}

// matchRewriting: a program that can rewrite what user space reads
// (bpf_probe_write_user: a syscall's arguments and results, such as the
// bpf_attr of GET_NEXT_ID) or what the kernel returns
// (bpf_override_return), or that makes bpf(2) calls from the kernel. The
// hook it will run on is not known at load (a tracepoint program is
// attached after), and these helpers have next to no use but tampering
// (the kernel itself warns of bpf_probe_write_user): the rule does not
// wait for the hook. bpf_send_signal alone is flagged, not alerted:
// enforcement tools kill with it.
func (e *Engine) matchRewriting(ev *event.Event) (string, string, limitKey) {
	pr := ev.Prog
	if pr == nil || pr.ID == 0 || !succeeded(ev) {
		return "", "", limitKey{}
	}
	var bad []string
	for r := range strings.SplitSeq(pr.Risky, ",") {
		switch r {
		case bpfsys.RiskyProbeWriteUser, bpfsys.RiskyOverrideReturn, bpfsys.RiskySyscallProgram:
			bad = append(bad, r)
		}
	}
	if len(bad) == 0 {
		return "", "", limitKey{}
	}
	who := "a process bpfmon did not see"
	if ev.Process != nil {
		who = e.who(ev.Process)
	} else if ev.Reason != "" {
		who = "a process before bpfmon started"
	}
	return policy.RuleRewritingProgram, fmt.Sprintf("%s loaded %s, which can rewrite what user space reads or what the kernel returns (%s): on the bpf syscall, it can hide maps and programs from bpf(2)'s listing",
		who, e.progText(pr), strings.Join(bad, ", ")), limitKey{rule: policy.RuleRewritingProgram, progID: pr.ID}
}

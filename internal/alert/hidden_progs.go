package alert

import (
	"github.com/bpfmon/bpfmon/internal/event"
	"github.com/bpfmon/bpfmon/internal/inventory"
)

// HiddenPrograms turns an inventory's hidden programs (programs that
// bpf(2)'s listing misses while the bpf_prog iterator has them) into a
// hidden_object event each, for the next Tick: once per program while it
// stays hidden. progs is the whole of them: one not in it is gone, or
// listed again.
func (e *Engine) HiddenPrograms(progs []inventory.HiddenProg) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.hidden.hiddenProgs == nil {
		e.hidden.hiddenProgs = map[uint32]bool{}
	}
	now := e.cfg.Now()
	still := make(map[uint32]bool, len(progs))
	for _, p := range progs {
		still[p.ID] = true
		if e.hidden.hiddenProgs[p.ID] {
			continue
		}
		e.hidden.hiddenProgs[p.ID] = true
		e.pending = append(e.pending, &event.Event{Time: now, Type: event.HiddenObject, Source: event.SourceInventory,
			Prog:  &event.Prog{ID: p.ID, Name: p.Name, Type: p.TypeID},
			Extra: &event.Extra{Hidden: &event.Hidden{Kind: "prog", ID: p.ID, SeenBy: p.Hidden.SeenBy, MissedBy: p.Hidden.MissedBy}}})
	}
	for id := range e.hidden.hiddenProgs {
		if !still[id] {
			delete(e.hidden.hiddenProgs, id)
		}
	}
}

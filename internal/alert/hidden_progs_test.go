package alert

import (
	"strings"
	"testing"

	"github.com/bpfmon/bpfmon/internal/event"
	"github.com/bpfmon/bpfmon/internal/inventory"
	"github.com/bpfmon/bpfmon/internal/policy"
)

// TestHiddenProgramOnce: a hidden program makes one hidden_object (kind
// prog) and a critical alert naming it and the views; still hidden, none
// more; listed again and then hidden again, another.
func TestHiddenProgramOnce(t *testing.T) {
	e := New(Config{SelfPID: 1})
	e.Start(nil)
	e.Tick()
	p := inventory.HiddenProg{ID: 61, Name: "rk_hide", Type: "tracepoint", TypeID: 5,
		Hidden: inventory.HiddenView{SeenBy: []string{"bpf_prog_iter", "sensor"}, MissedBy: []string{"get_fd_by_id", "get_next_id"}}}
	e.HiddenPrograms([]inventory.HiddenProg{p})
	evs := e.Tick()
	if len(evs) != 1 || evs[0].Type != event.HiddenObject || evs[0].Prog == nil || evs[0].Prog.ID != 61 ||
		evs[0].Extra.Hidden.Kind != "prog" || evs[0].Map != nil {
		t.Fatalf("%+v, want one hidden_object for program 61", evs)
	}
	ev := evs[0]
	e.Evaluate(ev)
	if ev.Alert == nil || ev.Alert.Rule != policy.RuleHiddenObject || ev.Alert.Severity != policy.SeverityCritical ||
		!strings.Contains(ev.Alert.Reason, `program 61 ("rk_hide")`) || !strings.Contains(ev.Alert.Reason, "bpf_prog_iter, sensor") {
		t.Errorf("alert %+v", ev.Alert)
	}
	e.HiddenPrograms([]inventory.HiddenProg{p})
	if evs := e.Tick(); len(evs) != 0 {
		t.Errorf("still hidden: %+v, want nothing new", evs)
	}
	e.HiddenPrograms(nil)
	e.HiddenPrograms([]inventory.HiddenProg{p})
	if evs := e.Tick(); len(evs) != 1 {
		t.Errorf("hidden again: %d events, want 1", len(evs))
	}
}

package alert

import (
	"strings"
	"testing"

	"github.com/bpfmon/bpfmon/internal/bpfsys"
	"github.com/bpfmon/bpfmon/internal/event"
	"github.com/bpfmon/bpfmon/internal/inventory"
	"github.com/bpfmon/bpfmon/internal/policy"
)

// TestHiddenObjectOnce: a hidden map in an inventory makes one
// hidden_object at the next Tick, a critical alert naming the map and the
// views; the same map in the next inventory makes none, and one hidden
// again after it was listed makes another.
func TestHiddenObjectOnce(t *testing.T) {
	e := New(Config{SelfPID: 1})
	hidden := inventory.Map{ID: 87, Name: "rk_ids", Type: "array", TypeID: 2,
		Hidden: &inventory.HiddenView{SeenBy: []string{"bpffs", "prog_map_ids"}, MissedBy: []string{"get_fd_by_id", "get_next_id"}}}
	listed := inventory.Map{ID: 88, Name: "plain"}
	e.Start([]inventory.Map{hidden, listed})
	evs := e.Tick()
	if len(evs) != 1 || evs[0].Type != event.HiddenObject || evs[0].Extra.Hidden.ID != 87 {
		t.Fatalf("after start: %+v, want one hidden_object for map 87", evs)
	}
	ev := evs[0]
	e.Evaluate(ev)
	if ev.Alert == nil || ev.Alert.Rule != policy.RuleHiddenObject || ev.Alert.Severity != policy.SeverityCritical ||
		!strings.Contains(ev.Alert.Reason, `map 87 "rk_ids"`) || !strings.Contains(ev.Alert.Reason, "bpffs, prog_map_ids") {
		t.Errorf("alert %+v", ev.Alert)
	}
	e.Refresh([]inventory.Map{hidden, listed})
	if evs := e.Tick(); len(evs) != 0 {
		t.Errorf("still hidden: %+v, want nothing new", evs)
	}
	h2 := hidden
	h2.Hidden = nil
	e.Refresh([]inventory.Map{h2, listed})
	e.Refresh([]inventory.Map{hidden, listed})
	if evs := e.Tick(); len(evs) != 1 {
		t.Errorf("hidden again: %d events, want 1", len(evs))
	}
}

// TestRewritingProgram: a prog_load of a program calling
// bpf_probe_write_user is a high alert; one calling only bpf_send_signal
// is not; a program found at start calling it makes a prog_load from the
// inventory with the alert.
func TestRewritingProgram(t *testing.T) {
	e := New(Config{SelfPID: 1})
	e.Start([]inventory.Map{{ID: 5, Programs: []inventory.Program{{ID: 40, Name: "old_rk", Risky: "bpf_probe_write_user,bpf_send_signal"}, {ID: 41, Name: "fine"}}}})
	evs := e.Tick()
	if len(evs) != 1 || evs[0].Type != event.ProgLoad || evs[0].Source != event.SourceInventory || evs[0].Prog.ID != 40 {
		t.Fatalf("at start: %+v, want a prog_load of program 40 from the inventory", evs)
	}
	e.Evaluate(evs[0])
	if a := evs[0].Alert; a == nil || a.Rule != policy.RuleRewritingProgram || a.Severity != policy.SeverityHigh {
		t.Errorf("program at start: alert %+v", a)
	}
	load := func(risky ...string) *event.Event {
		ev := &event.Event{Type: event.ProgLoad, Source: event.SourceSyscall, HasResult: true, Result: 5,
			Process: &event.Process{PID: 99}, Prog: &event.Prog{ID: 50, Name: "x", Risky: strings.Join(risky, ",")}}
		e.Evaluate(ev)
		return ev
	}
	if ev := load(bpfsys.RiskyProbeWriteUser); ev.Alert == nil || ev.Alert.Rule != policy.RuleRewritingProgram || !strings.Contains(ev.Alert.Reason, "bpf_probe_write_user") {
		t.Errorf("probe_write_user: %+v", ev.Alert)
	}
	if ev := load(bpfsys.RiskySendSignal); ev.Alert != nil {
		t.Errorf("send_signal alone: %+v, want no alert", ev.Alert)
	}
	if ev := load(); ev.Alert != nil {
		t.Errorf("nothing risky: %+v, want no alert", ev.Alert)
	}
}

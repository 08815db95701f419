package alert

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/bpfmon/bpfmon/internal/event"
	"github.com/bpfmon/bpfmon/internal/inventory"
	"github.com/bpfmon/bpfmon/internal/policy"
)

// The lineage sensor's events as the engine reads them: which process
// each kind marks, that a marked process is no owner whatever its
// identity (and is an owner-impersonation alert when it has an owner's),
// that a mark follows a process (pid and start time) through forks and
// ends at its exit, and what a full table does. The sensor's side, the
// kernel's facts, is internal/sensor/lineage's TestLineage.

// ownerID is the identity of the guarded map's owner in these tests.
var ownerID = event.Identity{ExeIno: 500, ExeDev: 8, CgroupID: 9}

// lineageEngine guards map 7, owned (as saved at the last run) by
// ownerID.
func lineageEngine(t *testing.T, warn func(error)) *Engine {
	t.Helper()
	pol := policy.Default()
	pol.AlertRate, pol.AlertBurst = 1e6, 1e6
	pol.AddProtect(policy.Selector{Kind: policy.SelectID, Value: "7", ID: 7})
	restored := &Trust{Maps: []TrustedMap{{ID: 7, Name: "guarded", Owners: []TrustedOwner{
		{ExeDev: ownerID.ExeDev, ExeIno: ownerID.ExeIno, CgroupID: ownerID.CgroupID, How: "creator"}}}}}
	c := &clock{t: time.Unix(1000, 0)}
	e := New(Config{Policy: pol, SelfPID: 1, Now: c.now, Restored: restored, Warn: warn})
	e.Start([]inventory.Map{{ID: 7, Name: "guarded"}})
	if p := e.Protected(); len(p) != 1 || len(p[0].Owners) != 1 {
		t.Fatalf("protected: %+v", p)
	}
	return e
}

// proc is a process with the owner's identity: pid and start time.
func proc(pid uint32, start uint64) *event.Process {
	return &event.Process{PID: pid, TID: pid, StartTime: start, Exe: "/usr/bin/owner",
		ExeIno: ownerID.ExeIno, ExeDev: ownerID.ExeDev, CgroupID: ownerID.CgroupID}
}

func lineageEvent(kind string, actor, target *event.Process) *event.Event {
	l := &event.Lineage{Kind: kind, Target: target}
	switch kind {
	case event.LineageLoaderEnv:
		l.Vars = []string{"LD_PRELOAD"}
	case event.LineagePtraceAttach:
		l.Request = "PTRACE_SEIZE"
	case event.LineageCgroupJoin, event.LineageCloneIntoCgroup:
		l.Cgroup = ownerID.CgroupID
	}
	return &event.Event{Time: time.Unix(1000, 0), Type: event.LineageEvent, Source: event.SourceLineage,
		Process: actor, Extra: &event.Extra{Lineage: l}}
}

// writeAlert is the rule the engine gives p's update of map 7, "" for
// none: an owner's write has none, anyone else's is a foreign-write.
func writeAlert(e *Engine, p *event.Process) string {
	cp := *p
	ev := &event.Event{Type: event.MapUpdate, Source: event.SourceSyscall, HasResult: true, Process: &cp, Map: &event.Map{ID: 7, Name: "guarded"}}
	e.Evaluate(ev)
	if ev.Alert == nil {
		return ""
	}
	return ev.Alert.Rule
}

// TestLineageMarks: every kind of mark, on the process it is about (the
// actor, or the target), and its benign control: the other process of
// the event, with the owner's identity too, stays an owner.
func TestLineageMarks(t *testing.T) {
	for _, tc := range []struct {
		kind     string
		onTarget bool   // the target is marked (else the actor)
		why      string // in the alert's reason
	}{
		{event.LineageLoaderEnv, false, "it was started with LD_PRELOAD"},
		{event.LineagePtraceTraceme, false, "PTRACE_TRACEME"},
		{event.LineageExec, false, "it was marked before it exec'd"},
		{event.LineageCgroupJoin, true, "it was moved into cgroup"},
		{event.LineageCloneIntoCgroup, true, "it was started into cgroup"},
		{event.LineagePtraceAttach, true, "attached to it (PTRACE_SEIZE)"},
		{event.LineageProcessVMWrite, true, "wrote into its memory (process_vm_writev)"},
		{event.LineageProcMemOpen, true, "opened its /proc/300/mem for writing"},
		{event.LineageFork, true, "its parent, pid 200, was marked"},
	} {
		t.Run(tc.kind, func(t *testing.T) {
			e := lineageEngine(t, nil)
			actor, target := proc(200, 2000), proc(300, 3000)
			for _, p := range []*event.Process{actor, target} {
				if r := writeAlert(e, p); r != "" {
					t.Fatalf("before any mark, pid %d's write: %s", p.PID, r)
				}
			}
			ev := lineageEvent(tc.kind, actor, target)
			if !tc.onTarget {
				ev.Extra.Lineage.Target = nil
			}
			e.Evaluate(ev)
			marked, control := actor, target
			if tc.onTarget {
				marked, control = target, actor
			}
			if ev.Alert == nil || ev.Alert.Rule != policy.RuleOwnerImpersonation || !strings.Contains(ev.Alert.Reason, tc.why) ||
				!strings.Contains(ev.Alert.Reason, fmt.Sprintf("pid %d", marked.PID)) {
				t.Errorf("the %s event: alert %+v, want %s naming pid %d, %q", tc.kind, ev.Alert, policy.RuleOwnerImpersonation, marked.PID, tc.why)
			}
			if r := writeAlert(e, marked); r != policy.RuleForeignWrite {
				t.Errorf("the marked process's write: %q, want %s", r, policy.RuleForeignWrite)
			}
			if r := writeAlert(e, control); r != "" {
				t.Errorf("the event's other process (the control) was marked: its write alerted %s", r)
			}
			// A later process with the marked one's pid is another
			// process: the mark was of the process, by its start time.
			if r := writeAlert(e, proc(marked.PID, 9999)); r != "" {
				t.Errorf("a reused pid (another start time) inherited the mark: %s", r)
			}
			// Its exit ends the mark.
			e.Evaluate(lineageEvent(event.LineageExit, marked, nil))
			if r := writeAlert(e, marked); r != "" {
				t.Errorf("after its exit, the pid's process is still marked: %s", r)
			}
		})
	}
}

// TestLineageNoImpersonation: a mark on a process without an owner's
// identity is no alert, yet the mark holds when it takes one on (exec of
// the owner's executable, in the owner's cgroup).
func TestLineageNoImpersonation(t *testing.T) {
	e := lineageEngine(t, nil)
	stranger := &event.Process{PID: 400, StartTime: 4000, ExeIno: 77, ExeDev: 8, CgroupID: 9}
	ev := lineageEvent(event.LineageLoaderEnv, stranger, nil)
	e.Evaluate(ev)
	if ev.Alert != nil {
		t.Errorf("a marked stranger's loader_env alerted: %+v", ev.Alert)
	}
	execEv := lineageEvent(event.LineageExec, proc(400, 4000), nil)
	e.Evaluate(execEv)
	if execEv.Alert == nil || execEv.Alert.Rule != policy.RuleOwnerImpersonation || !strings.Contains(execEv.Alert.Reason, "LD_PRELOAD") {
		t.Errorf("the marked process's exec of the owner's executable: %+v, want owner-impersonation with the first reason", execEv.Alert)
	}
	if r := writeAlert(e, proc(400, 4000)); r != policy.RuleForeignWrite {
		t.Errorf("its write: %q", r)
	}
	// bpfmon itself is never marked.
	self := lineageEvent(event.LineagePtraceAttach, proc(500, 5000), proc(1, 10))
	e.Evaluate(self)
	if _, ok := e.marked(proc(1, 10)); ok {
		t.Error("bpfmon's own process was marked")
	}
}

// TestLineageForkAndPidOnly: a marked process's child inherits the mark
// with its reason; a mark by pid alone (process_vm_writev through the
// tracepoints) holds for whichever process has the pid; an exit of
// another process with a marked pid does not end the mark.
func TestLineageForkAndPidOnly(t *testing.T) {
	e := lineageEngine(t, nil)
	parent := proc(200, 2000)
	e.Evaluate(lineageEvent(event.LineagePtraceTraceme, parent, nil))
	child := proc(201, 2010)
	grandchild := proc(202, 2020)
	fork := lineageEvent(event.LineageFork, parent, child)
	e.Evaluate(fork)
	e.Evaluate(lineageEvent(event.LineageFork, child, grandchild))
	m, ok := e.marked(grandchild)
	if !ok || !strings.Contains(m.why, "its parent, pid 201, was marked: its parent, pid 200, was marked: it asked its parent") {
		t.Errorf("the grandchild's mark: %v %q", ok, m.why)
	}
	if fork.Alert == nil || fork.Alert.Rule != policy.RuleOwnerImpersonation {
		t.Errorf("the fork of a marked owner look-alike: %+v", fork.Alert)
	}
	for _, p := range []*event.Process{parent, child, grandchild} {
		if r := writeAlert(e, p); r != policy.RuleForeignWrite {
			t.Errorf("pid %d's write: %q", p.PID, r)
		}
	}
	// Marked by pid only: start time unknown.
	byPID := lineageEvent(event.LineageProcessVMWrite, proc(220, 2200), &event.Process{PID: 230})
	byPID.Extra.Lineage.TargetByPID = true
	e.Evaluate(byPID)
	if r := writeAlert(e, proc(230, 2300)); r != policy.RuleForeignWrite {
		t.Errorf("the process at a pid marked by pid only: %q", r)
	}
	// Another process with pid 201 exits: the child's mark stays.
	e.Evaluate(lineageEvent(event.LineageExit, proc(201, 1), nil))
	if r := writeAlert(e, child); r != policy.RuleForeignWrite {
		t.Errorf("an exit of another process with the child's pid unmarked it: %q", r)
	}
}

// TestLineageTableFull: past learntMax marks, the table is emptied (the
// oldest marks are mostly of processes gone), which is said; the mark
// that did not fit is kept.
func TestLineageTableFull(t *testing.T) {
	var warned []error
	e := lineageEngine(t, func(err error) { warned = append(warned, err) })
	first := proc(10, 100)
	e.Evaluate(lineageEvent(event.LineageLoaderEnv, first, nil))
	for i := range learntMax - 1 {
		e.learnLineage(lineageEvent(event.LineageLoaderEnv, &event.Process{PID: uint32(1000 + i), StartTime: 1}, nil))
	}
	if len(warned) != 0 || writeAlert(e, first) != policy.RuleForeignWrite {
		t.Fatalf("a full table before the limit: warned %v", warned)
	}
	last := proc(20, 200)
	e.Evaluate(lineageEvent(event.LineageLoaderEnv, last, nil))
	if len(warned) != 1 || !strings.Contains(warned[0].Error(), "marks forgotten") {
		t.Errorf("a full table: warned %v, want once that marks are forgotten", warned)
	}
	if len(e.marks) != 1 {
		t.Errorf("%d marks after the clear, want the new one only", len(e.marks))
	}
	if r := writeAlert(e, last); r != policy.RuleForeignWrite {
		t.Errorf("the mark made at the clear was dropped: %q", r)
	}
	if r := writeAlert(e, first); r != "" {
		t.Errorf("an old mark outlived the clear: %q", r)
	}
}

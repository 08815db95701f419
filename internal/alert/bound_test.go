package alert

import (
	"runtime"
	"testing"
	"time"

	"github.com/bpfmon/bpfmon/internal/event"
	"github.com/bpfmon/bpfmon/internal/inventory"
	"github.com/bpfmon/bpfmon/internal/policy"
)

// learntBytes is what the engine holds per entry of a learnt table (a
// creator, a loader, a mark) at its bound, as docs/memory.md states:
// 3 tables of learntMax entries, about 40 MiB.
const learntBytes = 224

// TestTablesBounded: the per-process and per-object tables of the alert
// engine at their bounds: creators, loaders and lineage marks keep at most
// learntMax entries, the rate limiter's first-seen keys seenMax, whatever
// the number of maps, programs and processes the events name; and the
// heap they hold is what docs/memory.md states.
func TestTablesBounded(t *testing.T) {
	pol := policy.Default()
	pol.AddProtect(policy.Selector{Kind: policy.SelectID, Value: "7", ID: 7})
	var ms1, ms2 runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&ms1)
	e := New(Config{Policy: pol, SelfPID: 1, Warn: func(error) {}})
	e.Start([]inventory.Map{{ID: 7}})
	now := time.Now()
	const n = 2*learntMax + 10
	var held int64
	for i := range uint32(n) {
		if i == learntMax-1 {
			// Full, before the bound empties them: what they hold.
			runtime.GC()
			runtime.ReadMemStats(&ms2)
			held = int64(ms2.HeapAlloc) - int64(ms1.HeapAlloc)
		}
		p := &event.Process{PID: 1000 + i, StartTime: uint64(i), ExeIno: uint64(i), CgroupID: 5, Exe: "/some/where/exe"}
		e.Evaluate(&event.Event{Time: now, Type: event.MapCreate, Source: event.SourceSyscall, HasResult: true, Result: 3,
			Process: p, Map: &event.Map{ID: 100 + i, Name: "m"}})
		e.Evaluate(&event.Event{Time: now, Type: event.ProgLoad, Source: event.SourceSyscall, HasResult: true, Result: 3,
			Process: p, Prog: &event.Prog{ID: 100 + i, Name: "p"}})
		e.Evaluate(&event.Event{Time: now, Type: event.LineageEvent, Source: event.SourceLineage, Process: p,
			Extra: &event.Extra{Lineage: &event.Lineage{Kind: event.LineagePtraceAttach, Request: "PTRACE_ATTACH",
				Target: &event.Process{PID: 500000 + i, StartTime: 1}}}})
		// A stranger's write to the protected map: a first-seen key each.
		e.Evaluate(update(7, event.Identity{ExeIno: uint64(i) + 1e6, CgroupID: 9}, 2000+i))
	}
	runtime.KeepAlive(e)
	if len(e.creators) > learntMax || len(e.loaders) > learntMax || len(e.marks) > learntMax || len(e.lim.seen) > seenMax {
		t.Errorf("after %d processes: %d creators, %d loaders, %d marks (bound %d), %d first-seen keys (bound %d)",
			n, len(e.creators), len(e.loaders), len(e.marks), learntMax, len(e.lim.seen), seenMax)
	}
	if held > 3*learntMax*learntBytes {
		t.Errorf("the engine holds %d MiB, docs/memory.md says %d MiB", held>>20, 3*learntMax*learntBytes>>20)
	}
	t.Logf("full: %d MiB; at the end %d creators, %d loaders, %d marks, %d seen", held>>20, len(e.creators), len(e.loaders), len(e.marks), len(e.lim.seen))
}

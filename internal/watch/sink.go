package watch

import (
	"sync"
	"time"

	"github.com/bpfmon/bpfmon/internal/cgroups"
	"github.com/bpfmon/bpfmon/internal/event"
	"github.com/bpfmon/bpfmon/internal/output"
)

// The parts the sink passes events through. Production uses the content
// scanner, the map context, the alert engine and the cgroup resolver;
// tests use their own.
type (
	// explainer is told of the writes the sensors report, so that the
	// content scanner does not report their changes a second time.
	explainer interface {
		Explain(mapID uint32, keys []byte, keySize uint32, complete bool, at time.Time)
		Created(m event.Map, at time.Time)
		// Unsure: records were lost, a write may be unreported.
		Unsure()
	}
	// enricher adds what the inventory knows to an event's map and
	// process.
	enricher interface{ enrich(*event.Event) }
	// evaluator learns from every event and marks those that break a rule.
	evaluator interface{ Evaluate(*event.Event) }
	// cgroupNamer names cgroup ids.
	cgroupNamer interface{ Path(id uint64) string }
)

// sink is the one way every event takes to the output, from the sensors,
// the content scanner and the alert engine alike: enrich, evaluate, filter,
// write. Every event is enriched and evaluated, also those the filter then
// drops: the alert engine learns owners from creations and loads whether
// or not the user asked to see them. Safe for concurrent use: the three
// producers share it.
type sink struct {
	mu         sync.Mutex
	scan       explainer // nil when the scanner is off
	cgroups    cgroupNamer
	maps       enricher
	alerts     evaluator
	filter     Filter
	alertsOnly bool
	w          output.Writer
	// written and alerted count the events written, and of them those with
	// an alert.
	written, alerted uint64
}

// fromSensor takes a sensor's event: the scanner learns what it wrote, the
// process gets its cgroup's path and container, and it goes the common way.
func (s *sink) fromSensor(ev *event.Event) error {
	if s.scan != nil {
		explain(s.scan, ev)
	}
	if p := ev.Process; p != nil {
		p.Cgroup = s.cgroups.Path(p.CgroupID)
		p.ContainerID = cgroups.ContainerID(p.Cgroup)
	}
	return s.write(ev)
}

// write enriches, evaluates, filters and writes ev.
func (s *sink) write(ev *event.Event) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.maps.enrich(ev)
	s.alerts.Evaluate(ev)
	if !s.filter.Match(ev) || (s.alertsOnly && ev.Alert == nil && ev.Type != event.Lost) {
		return nil
	}
	s.written++
	if ev.Alert != nil {
		s.alerted++
	}
	return s.w.Write(ev)
}

// writeAll writes evs in order.
func (s *sink) writeAll(evs []*event.Event) error {
	for _, ev := range evs {
		if err := s.write(ev); err != nil {
			return err
		}
	}
	return nil
}

// flush pushes buffered output out.
func (s *sink) flush() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.w.Flush()
}

// counts returns the events written, and of them those with an alert.
func (s *sink) counts() (written, alerted uint64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.written, s.alerted
}

// explain tells the scanner about a write a sensor reported, so the change
// it makes is not reported twice, and about maps created, whose initial
// contents are known. Calls that failed change nothing.
func explain(scan explainer, ev *event.Event) {
	if ev.Type == event.Lost {
		scan.Unsure()
		return
	}
	if ev.Map == nil || (ev.HasResult && ev.Result < 0) {
		return
	}
	if ev.Type == event.MapCreate {
		if ev.HasResult && ev.Map.ID != 0 {
			scan.Created(*ev.Map, ev.Time)
		}
		return
	}
	if ev.Type.Info().Elements {
		complete := ev.HasKey && !ev.Truncated && !ev.KeyFault
		scan.Explain(ev.Map.ID, ev.Key, ev.Map.KeySize, complete, ev.Time)
	}
}

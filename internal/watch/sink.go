package watch

import (
	"errors"
	"sync"
	"syscall"
	"time"

	"github.com/bpfmon/bpfmon/internal/cgroups"
	"github.com/bpfmon/bpfmon/internal/event"
	"github.com/bpfmon/bpfmon/internal/metrics"
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
	cv         *crossView // nil in tests: no sensor view for the cross-view check
	scan       explainer  // nil when the scanner is off
	cgroups    cgroupNamer
	maps       enricher
	alerts     evaluator
	filter     Filter
	alertsOnly bool
	w          output.Writer
	// alerted counts the events with an alert handed to the writer.
	alerted uint64
	// out is what the sink knows of its destination (see outputState).
	out outputState
	// metrics, when not nil, counts every event, and the events the
	// output could not take (of which countedDropped are counted).
	metrics        *metrics.Metrics
	countedDropped uint64
	// pods, when not nil, names the pod of a process in a container.
	pods interface {
		Pod(containerID, cgroup string) *event.Pod
	}
}

// outputState follows the output's failures. A reader that closed the
// pipe or socket ends the watch (closed); any other write error (a full
// disk, EIO, EDQUOT) does not: the events that could not be written are
// counted, said at most once per LossInterval, and reported as a lost
// event with source "output" once writing works again.
type outputState struct {
	log func(msg string, args ...any) // nil: quiet
	// health, when set, is told of the first error of a failure, and
	// of nil once writing works again (the part's metrics, /healthz).
	health   func(err error)
	closed   chan struct{} // closed when the reader went away
	isClosed bool
	failing  error     // the last write error, until a write works
	saidAt   time.Time // when the failure was last logged
	reported uint64    // dropped lines already reported as lost
	// writtenAt is the count of lines written at the last failure: only
	// more lines written, not a Write that merely buffered, say the
	// output works again.
	writtenAt uint64
}

// lossInterval is how often at most an output failure is logged.
const lossInterval = time.Second

// wrote handles the result of a write or flush; s.mu is held.
func (s *sink) wrote(err error) error {
	o := &s.out
	written, dropped := s.w.Counts()
	if s.metrics != nil && dropped > s.countedDropped {
		s.metrics.OutputLost(dropped - s.countedDropped)
		s.countedDropped = dropped
	}
	if err != nil {
		if errors.Is(err, syscall.EPIPE) || errors.Is(err, syscall.ECONNRESET) {
			s.closeOutput()
			return nil
		}
		now := time.Now()
		if o.log != nil && (o.failing == nil || now.Sub(o.saidAt) >= lossInterval) {
			o.log("writing events failed; monitoring goes on, events not written are counted and reported as lost (source output) once writing works again",
				"error", err.Error(), "not_written", dropped)
			o.saidAt = now
		}
		if o.failing == nil && o.health != nil {
			o.health(err)
		}
		o.failing, o.writtenAt = err, written
		return nil
	}
	if o.failing != nil {
		if written == o.writtenAt {
			return nil // buffered only: not known to work yet
		}
		o.failing = nil
		if o.log != nil {
			o.log("writing events works again", "not_written", dropped-o.reported)
		}
		if o.health != nil {
			o.health(nil)
		}
	}
	if dropped > o.reported && !o.isClosed {
		n := dropped - o.reported
		o.reported = dropped
		lost := &event.Event{Time: time.Now(), Type: event.Lost, Source: event.SourceOutput, HasCount: true, Count: n}
		return s.writeLocked(lost)
	}
	return nil
}

// outputClosed reports whether the output's reader went away.
func (s *sink) outputClosed() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.out.isClosed
}

// closeOutput records that the output's reader went away; s.mu is held.
func (s *sink) closeOutput() {
	if !s.out.isClosed {
		s.out.isClosed = true
		if s.out.closed != nil {
			close(s.out.closed)
		}
	}
}

// fromSensor takes a sensor's event: the scanner learns what it wrote, the
// process gets its cgroup's path and container, and it goes the common way.
func (s *sink) fromSensor(ev *event.Event) error {
	markRisky(ev)
	if s.cv != nil {
		s.cv.sawCreated(ev)
	}
	if s.scan != nil {
		explain(s.scan, ev)
	}
	if p := ev.Process; p != nil {
		p.Cgroup = s.cgroups.Path(p.CgroupID)
		p.ContainerID = cgroups.ContainerID(p.Cgroup)
		if s.pods != nil {
			p.Pod = s.pods.Pod(p.ContainerID, p.Cgroup)
		}
	}
	if x := ev.Extra; x != nil && x.Lineage != nil && x.Lineage.Target != nil {
		t := x.Lineage.Target
		t.Cgroup = s.cgroups.Path(t.CgroupID)
		t.ContainerID = cgroups.ContainerID(t.Cgroup)
	}
	return s.write(ev)
}

// write enriches, evaluates, filters and writes ev.
func (s *sink) write(ev *event.Event) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.writeLocked(ev)
}

func (s *sink) writeLocked(ev *event.Event) error {
	if s.maps != nil {
		s.maps.enrich(ev)
	}
	s.alerts.Evaluate(ev)
	if s.metrics != nil {
		s.metrics.Event(ev)
	}
	if !s.filter.Match(ev) || (s.alertsOnly && ev.Alert == nil && ev.Type != event.Lost && ev.Source != event.SourceSelf) {
		return nil
	}
	if ev.Alert != nil {
		s.alerted++
	}
	if s.out.isClosed {
		return nil // nobody reads: the summary counts it as not written
	}
	return s.wrote(s.w.Write(ev))
}

// writeNow writes ev and flushes: bpfmon's own events (part_error,
// policy_reloaded) are rare, and must not wait in the buffer while a
// flood of records keeps the ring from emptying.
func (s *sink) writeNow(ev *event.Event) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.writeLocked(ev); err != nil {
		return err
	}
	if s.out.isClosed {
		return nil
	}
	return s.wrote(s.w.Flush())
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
	if s.out.isClosed {
		return nil
	}
	return s.wrote(s.w.Flush())
}

// counts returns the events written whole to the output, those that could
// not be, and those with an alert.
func (s *sink) counts() (written, notWritten, alerted uint64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	written, notWritten = s.w.Counts()
	return written, notWritten, s.alerted
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

// tee writes every event to the output and to a second writer (the
// syslog output). Only the output's result and counts reach the sink:
// the second writer never blocks, counts what it loses and reports it
// on its own stream, so a failing receiver neither stops the watch nor
// makes the file report losses it did not have.
type tee struct {
	output.Writer
	also output.Writer
}

func (t tee) Write(ev *event.Event) error {
	t.also.Write(ev)
	return t.Writer.Write(ev)
}

func (t tee) Flush() error {
	t.also.Flush()
	return t.Writer.Flush()
}

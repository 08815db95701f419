package watch

import (
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/bpfmon/bpfmon/internal/event"
	"github.com/bpfmon/bpfmon/internal/metrics"
)

// supervisor keeps the watch's long-lived parts going: the ring buffer
// reader all sensors write into, the content scanner, the alert engine's
// reports and the map inventory they learn from, the output and the
// metrics server. An error in a part's pass is reported three ways, a
// part_error event, a log line and bpfmon_part_errors_total, and the pass
// is tried again at the next. While a part fails, /healthz answers 503
// naming it (bpfmon_part_up 0): bpfmon never says it is ready while
// blind. An essential part that cannot go on (the ring reader, failing
// again and again) ends the watch with an error, and bpfmon exits 1.
type supervisor struct {
	log     *slog.Logger
	metrics *metrics.Metrics // nil without --metrics-addr
	// write writes an event (the sink's); nil until the sink exists.
	write func(*event.Event) error

	mu   sync.Mutex
	down map[string]string // parts failing now, with the last error
	// said is, by part, the last error said and when, and how many
	// like it were only counted since: a part failing at every pass says
	// so once a minute (sayAgain), not at every pass.
	said map[string]*saying
	// fatal is closed, and err set, when an essential part cannot go on.
	fatal chan struct{}
	err   error
}

// ErrPartFailed ends a watch one of whose essential parts cannot go on.
var ErrPartFailed = errors.New("a part of bpfmon cannot go on")

func newSupervisor(log *slog.Logger, m *metrics.Metrics) *supervisor {
	return &supervisor{log: log, metrics: m, down: map[string]string{}, said: map[string]*saying{}, fatal: make(chan struct{})}
}

// saying is the last error of a part that was said.
type saying struct {
	msg     string
	at      time.Time
	repeats int // the same error since, counted but not said
}

// sayAgain is how often at most the same error of a part is said again
// (event and log line) while it repeats; the metric counts every one.
const sayAgain = time.Minute

// failed reports err, an error in one of part's passes, which is tried
// again at the next: an event (when the sink can take one), a log line
// and the metric; part is down until ok.
func (s *supervisor) failed(part string, err error) {
	msg := err.Error()
	now := time.Now()
	s.mu.Lock()
	s.down[part] = msg
	write := s.write
	last := s.said[part]
	say := last == nil || last.msg != msg || now.Sub(last.at) >= sayAgain
	repeats := 0
	if say {
		if last != nil && last.msg == msg {
			repeats = last.repeats
		}
		s.said[part] = &saying{msg: msg, at: now}
	} else {
		last.repeats++
	}
	s.mu.Unlock()
	if s.metrics != nil {
		s.metrics.PartError(part, err)
		s.metrics.Down(part, msg)
	}
	if !say {
		return
	}
	if repeats > 0 {
		msg += fmt.Sprintf(" (and %d times more since it was last said)", repeats)
	}
	s.log.Error(msg, "part", part, "reason", metrics.Reason(err))
	if write != nil {
		s.event(write, part, msg+"; retried at its next pass")
	}
}

// event writes a part_error event. A write error is not reported again
// (the output's failures are the output part's).
func (s *supervisor) event(write func(*event.Event) error, part, reason string) {
	_ = write(&event.Event{Time: time.Now(), Type: event.PartError, Source: event.SourceSelf, Reason: reason,
		Extra: &event.Extra{Part: part}})
}

// ok says one of part's passes worked: a part that was down is up again.
func (s *supervisor) ok(part string) {
	s.mu.Lock()
	_, was := s.down[part]
	delete(s.down, part)
	delete(s.said, part)
	s.mu.Unlock()
	if !was {
		return
	}
	s.log.Info("works again", "part", part)
	if s.metrics != nil {
		s.metrics.Up(part)
	}
}

// isDown reports whether part failed since its last pass that worked.
func (s *supervisor) isDown(part string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	_, ok := s.down[part]
	return ok
}

// stop ends the watch: essential part cannot go on after err.
func (s *supervisor) stop(part string, err error) {
	err = fmt.Errorf("%w: %s: %w", ErrPartFailed, part, err)
	s.mu.Lock()
	first := s.err == nil
	if first {
		s.err = err
		s.down[part] = err.Error()
	}
	write := s.write
	s.mu.Unlock()
	if !first {
		return
	}
	s.log.Error(err.Error()+"; stopping", "part", part)
	if s.metrics != nil {
		s.metrics.PartError(part, err)
		s.metrics.Down(part, err.Error())
	}
	if write != nil {
		s.event(write, part, err.Error()+"; bpfmon stops")
	}
	close(s.fatal)
}

// failure is the error of an essential part that ended the watch, or nil.
func (s *supervisor) failure() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.err
}

// setWrite has events written through write from now on.
func (s *supervisor) setWrite(write func(*event.Event) error) {
	s.mu.Lock()
	s.write = write
	s.mu.Unlock()
}

package metrics

import (
	"errors"
	"sort"
	"strings"
	"syscall"

	"github.com/prometheus/client_golang/prometheus"
)

// Parts are the long-lived parts of a watch that are supervised: each
// reports the errors of its passes here (PartError), and says when it
// cannot go on (Down) and when it works again (Up).
var Parts = []string{PartSensors, PartScanner, PartAlerts, PartOutput, PartMetrics, PartPolicy}

// Names of the parts.
const (
	PartSensors = "sensors" // the ring buffer reader all sensors write into
	PartScanner = "scanner" // the content scanner
	PartAlerts  = "alerts"  // the alert engine's periodic reports
	PartOutput  = "output"  // the event output (--output, stdout)
	PartMetrics = "metrics" // this server
	PartPolicy  = "policy"  // reloading the policy (SIGHUP)
)

// Reasons are the values of the reason label of
// bpfmon_part_errors_total: a bounded set, whatever the error.
var Reasons = []string{"emfile", "enfile", "enomem", "eacces", "eperm", "eio", "enospc", "invalid", "other"}

// Reason classifies err for the reason label: the errno it wraps, as
// one of Reasons, or "other".
func Reason(err error) string {
	var errno syscall.Errno
	if errors.As(err, &errno) {
		switch errno {
		case syscall.EMFILE:
			return "emfile"
		case syscall.ENFILE:
			return "enfile"
		case syscall.ENOMEM:
			return "enomem"
		case syscall.EACCES:
			return "eacces"
		case syscall.EPERM:
			return "eperm"
		case syscall.EIO:
			return "eio"
		case syscall.ENOSPC, syscall.EDQUOT:
			return "enospc"
		case syscall.EINVAL:
			return "invalid"
		}
	}
	return "other"
}

// health is what /healthz says beyond readiness: the parts that cannot
// go on, and why.
type health struct {
	errors *prometheus.CounterVec
	up     *prometheus.GaugeVec
	down   map[string]string // part -> why; guarded by Metrics.mu
}

func newHealth() *health {
	h := &health{
		errors: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "bpfmon_part_errors_total",
			Help: "Errors of a part of bpfmon (sensors, scanner, alerts, output, metrics, policy) in one of its passes, by part and reason (the errno: emfile, enomem..., or other); the pass is retried (part_error events say more)."},
			[]string{"part", "reason"}),
		up: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "bpfmon_part_up",
			Help: "1 while a part of bpfmon works, 0 while it cannot go on (/healthz then answers 503 with the reason)."},
			[]string{"part"}),
		down: map[string]string{},
	}
	// At 0 from the start: a rate over a series that appears with its
	// first error misses that error.
	for _, p := range Parts {
		h.up.WithLabelValues(p).Set(1)
		for _, r := range Reasons {
			h.errors.WithLabelValues(p, r)
		}
	}
	return h
}

// PartError counts an error of part's pass, by reason (Reason(err)).
func (m *Metrics) PartError(part string, err error) {
	m.health.errors.WithLabelValues(part, Reason(err)).Inc()
}

// Down marks part unable to go on, for why: /healthz answers 503 naming
// it until Up.
func (m *Metrics) Down(part, why string) {
	m.mu.Lock()
	m.health.down[part] = why
	m.mu.Unlock()
	m.health.up.WithLabelValues(part).Set(0)
}

// Up marks part working (again).
func (m *Metrics) Up(part string) {
	m.mu.Lock()
	delete(m.health.down, part)
	m.mu.Unlock()
	m.health.up.WithLabelValues(part).Set(1)
}

// Unhealthy lists the parts that cannot go on, with why ("" when none).
func (m *Metrics) Unhealthy() string {
	m.mu.Lock()
	defer m.mu.Unlock()
	var parts []string
	for p, why := range m.health.down {
		parts = append(parts, p+": "+why)
	}
	sort.Strings(parts)
	return strings.Join(parts, "; ")
}

// OnPartError has f told of each error PartFailed reports (the watch
// writes it as a part_error event); nil: none.
func (m *Metrics) OnPartError(f func(part string, err error)) {
	m.mu.Lock()
	m.notify = f
	m.mu.Unlock()
}

// PartFailed counts err as PartError does and hands it to the function
// OnPartError set.
func (m *Metrics) PartFailed(part string, err error) {
	m.PartError(part, err)
	m.tell(part, err)
}

// tell hands err to the function OnPartError set.
func (m *Metrics) tell(part string, err error) {
	m.mu.Lock()
	f := m.notify
	m.mu.Unlock()
	if f != nil {
		f(part, err)
	}
}

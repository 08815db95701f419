// Package metrics holds what `bpfmon watch --metrics-addr` serves to
// Prometheus: counters of events, losses and alerts, the ring buffer's
// fill, the content scanner's last pass, bpfmon's own programs' cost, its
// build and its features, and a readiness answer (/healthz).
//
// It exists so that a fleet's Prometheus can page on loss and alerts
// without reading the event stream. The watch wiring (internal/watch)
// feeds it from the one sink every event passes and from the scanner's
// per-pass hook; the sensors and the scanner know nothing of it. Each
// Metrics has its own registry, not the process-wide default, so that
// tests can run several. Labels are bounded sets only (event types,
// sources, rule names, severities, feature and program names of bpfmon's
// own): never a map id or a pid.
package metrics

import (
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cilium/ebpf"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/bpfmon/bpfmon/internal/event"
	"github.com/bpfmon/bpfmon/internal/features"
	"github.com/bpfmon/bpfmon/internal/scanner"
)

// sources are the event sources, in the order of the per-type counter
// arrays.
var sources = [...]string{event.SourceSyscall, event.SourceKernel, event.SourceScan, event.SourceLSM, event.SourceAlert, event.SourceOutput,
	event.SourceState, event.SourceLineage, event.SourceSelf, event.SourceInventory, event.SourceNetAttach}

// sourceIndex is s's index in sources, -1 for a source bpfmon does not have.
func sourceIndex(s string) int {
	switch s {
	case event.SourceSyscall:
		return 0
	case event.SourceKernel:
		return 1
	case event.SourceScan:
		return 2
	case event.SourceLSM:
		return 3
	case event.SourceAlert:
		return 4
	case event.SourceOutput:
		return 5
	case event.SourceState:
		return 6
	case event.SourceLineage:
		return 7
	case event.SourceSelf:
		return 8
	case event.SourceInventory:
		return 9
	case event.SourceNetAttach:
		return 10
	}
	return -1
}

// typeIndex numbers the event types for the counter table: a switch,
// several times faster than a map lookup by name on the path of every
// event. A type missing here is still counted, more slowly
// (TestTypeIndex checks that none is).
func typeIndex(t event.Type) int {
	switch t {
	case event.MapUpdate:
		return 0
	case event.MapDelete:
		return 1
	case event.MapLookupAndDelete:
		return 2
	case event.MapUpdateBatch:
		return 3
	case event.MapDeleteBatch:
		return 4
	case event.MapLookupDeleteBatch:
		return 5
	case event.MapGetFDByID:
		return 6
	case event.ObjGet:
		return 7
	case event.ObjPin:
		return 8
	case event.MapCreate:
		return 9
	case event.MapFreeze:
		return 10
	case event.ProgLoad:
		return 11
	case event.MapIterLink:
		return 12
	case event.MapMmap:
		return 13
	case event.Lost:
		return 14
	case event.MapChanged:
		return 15
	case event.MapNotScanned:
		return 16
	case event.AccessDenied:
		return 17
	case event.AlertsSuppressed:
		return 18
	case event.HolderWhileDown:
		return 19
	case event.MonitorGap:
		return 20
	case event.LineageEvent:
		return 21
	case event.PartError:
		return 22
	case event.PolicyReloaded:
		return 23
	case event.HiddenObject:
		return 24
	case event.MapWritesCounted:
		return 25
	case event.LinkDetach:
		return 26
	case event.LinkUpdate:
		return 27
	case event.ProgDetached:
		return 28
	case event.AttachChanged:
		return 29
	case event.ProgAttach:
		return 30
	case event.ProgDetach:
		return 31
	case event.XDPSet:
		return 32
	case event.TCFilterDel:
		return 33
	case event.LinkRelease:
		return 34
	}
	return -1
}

const numTypes = 35

// lostSources are the sources of lost events: what the kernel could not
// hand over, per sensor, and what the output could not take.
var lostSources = []string{event.SourceSyscall, event.SourceKernel, event.SourceLSM, event.SourceLineage, event.SourceNetAttach, event.SourceOutput}

// Ring is what the metrics read of the ring buffer.
type Ring interface {
	Size() uint32
	// Readable is how many bytes wait to be read; 0 once closed.
	Readable() int
}

// Metrics are one watch's metrics, in their own registry.
type Metrics struct {
	reg *prometheus.Registry

	events *prometheus.CounterVec
	// byType holds, by typeIndex and sourceIndex, the counter of each
	// event type and source the event package lists, resolved once:
	// counting an event is two switches and an atomic add.
	byType     [numTypes][len(sources)]prometheus.Counter
	lost       [len(sources)]prometheus.Counter // by source index; nil for a source that loses nothing
	alerts     *prometheus.CounterVec
	suppressed *prometheus.CounterVec
	scanPass   prometheus.Histogram
	podMisses  prometheus.Counter
	// byPod, when on (PodLabels), counts alerts by pod too (podlabels.go).
	byPod *podAlerts

	ready atomic.Bool
	// health: errors of the supervised parts, and those that cannot go
	// on (health.go).
	health *health
	notify func(part string, err error) // OnPartError

	// What the watch learns as it starts, read at each scrape.
	mu       sync.Mutex
	ring     Ring
	programs []uint32
	features []features.Feature
	pass     *scanner.PassStats
	passAt   time.Time
	// statsPath is the sysctl saying whether the kernel counts programs'
	// run time (tests point it elsewhere).
	statsPath string
}

// New returns the metrics of a watch by bpfmon version, with Go's and
// the process's own collectors.
func New(version string) *Metrics {
	m := &Metrics{reg: prometheus.NewRegistry(), statsPath: "/proc/sys/kernel/bpf_stats_enabled", health: newHealth()}
	m.events = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "bpfmon_events_total",
		Help: "Events bpfmon reported, by type and source, before the output's filters (--event, --pid, --map-id, --map-name, --alerts-only)."},
		[]string{"type", "source"})
	for _, t := range event.Types {
		ti := typeIndex(t)
		for _, s := range t.Info().Sources {
			if si := sourceIndex(s); ti >= 0 && si >= 0 {
				m.byType[ti][si] = m.events.WithLabelValues(string(t), s)
			}
		}
	}
	lost := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "bpfmon_lost_events_total",
		Help: "Events lost, by source: syscall, kernel, lsm, lineage and netattach count what the kernel could not put in the full ring buffer; output counts events the output could not take (a full disk)."},
		[]string{"source"})
	for _, s := range lostSources {
		m.lost[sourceIndex(s)] = lost.WithLabelValues(s)
	}
	m.alerts = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "bpfmon_alerts_total",
		Help: "Alerts raised and reported, by rule and severity (alerts_suppressed reports excluded)."},
		[]string{"rule", "severity"})
	m.suppressed = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "bpfmon_alerts_suppressed_total",
		Help: "Alerts the rate limit held back (alerts.rate, alerts.burst), by rule, as alerts_suppressed events report them."},
		[]string{"rule"})
	m.scanPass = prometheus.NewHistogram(prometheus.HistogramOpts{Name: "bpfmon_scanner_pass_duration_seconds",
		Help:    "How long each content scanner pass took, from its start to its report (the grace period for sensor events included).",
		Buckets: []float64{0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60}})
	m.podMisses = prometheus.NewCounter(prometheus.CounterOpts{Name: "bpfmon_pod_lookup_misses_total",
		Help: "Events of a process in a container whose pod the container runtime had not named yet: they carry the pod uid from the cgroup path only, while the runtime is asked (--cri-socket)."})
	build := prometheus.NewGauge(prometheus.GaugeOpts{Name: "bpfmon_build_info",
		Help:        "Always 1: the bpfmon version and the Go version it was built with.",
		ConstLabels: prometheus.Labels{"version": version, "goversion": runtime.Version()}})
	build.Set(1)
	m.reg.MustRegister(m.events, lost, m.alerts, m.suppressed, m.scanPass, m.podMisses, build, (*state)(m), m.health.errors, m.health.up,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

// Registry is where the metrics are registered.
func (m *Metrics) Registry() *prometheus.Registry { return m.reg }

// Event counts ev: by type and source, its loss, its alert. Called for
// every event, from the sink, after the alert engine marked it; it does
// not allocate.
func (m *Metrics) Event(ev *event.Event) {
	src := sourceIndex(ev.Source)
	if ti := typeIndex(ev.Type); ti >= 0 && src >= 0 && m.byType[ti][src] != nil {
		m.byType[ti][src].Inc()
	} else {
		m.events.WithLabelValues(string(ev.Type), ev.Source).Inc() // a pairing the event package does not list
	}
	switch ev.Type {
	case event.Lost:
		// The output's losses are counted as they happen (OutputLost),
		// not when writing works again and the lost event says so.
		if src >= 0 && ev.Source != event.SourceOutput && m.lost[src] != nil {
			m.lost[src].Add(float64(ev.Count))
		}
	case event.AlertsSuppressed:
		if ev.Alert != nil {
			m.suppressed.WithLabelValues(ev.Alert.Rule).Add(float64(ev.Count))
		}
		return
	}
	if ev.Alert != nil {
		m.alerts.WithLabelValues(ev.Alert.Rule, ev.Alert.Severity).Inc()
		if m.byPod != nil {
			m.byPod.count(ev)
		}
	}
}

// OutputLost counts n events the output could not take.
func (m *Metrics) OutputLost(n uint64) {
	m.lost[sourceIndex(event.SourceOutput)].Add(float64(n))
}

// PodMiss counts an event whose pod was not known yet.
func (m *Metrics) PodMiss() { m.podMisses.Inc() }

// Rule is an alert rule and the severity the policy gives it.
type Rule struct{ Name, Severity string }

// Rules makes the alert counters of the enabled rules exist from the
// start, at 0: a rate over a series that appears with its first alert
// misses that alert.
func (m *Metrics) Rules(rules []Rule) {
	for _, r := range rules {
		m.alerts.WithLabelValues(r.Name, r.Severity)
		m.suppressed.WithLabelValues(r.Name)
	}
}

// ScanPassed records a completed content scanner pass
// (scanner.Config.Passed).
func (m *Metrics) ScanPassed(st scanner.PassStats) {
	m.scanPass.Observe(st.Duration.Seconds())
	m.mu.Lock()
	m.pass, m.passAt = &st, time.Now()
	m.mu.Unlock()
}

// Started records what the watch started: the ring buffer, the ids of
// its own BPF programs and the features it has (as `bpfmon features`
// reports them).
func (m *Metrics) Started(ring Ring, programs []uint32, fs []features.Feature) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.ring, m.programs, m.features = ring, programs, fs
}

// Ready marks the watch ready: every probe attached and the state at
// start recorded. /healthz answers 200 from then on.
func (m *Metrics) Ready() { m.ready.Store(true) }

// IsReady reports whether Ready was called.
func (m *Metrics) IsReady() bool { return m.ready.Load() }

// state collects, at each scrape, what the watch learnt as it started and
// what changes without an event: the ring's fill, the last scanner pass,
// the programs' run time.
type state Metrics

var (
	descRingSize = prometheus.NewDesc("bpfmon_ring_buffer_size_bytes",
		"Size of the ring buffer the sensors write their records into (--ring-buffer, rounded up to a power of two).", nil, nil)
	descRingReadable = prometheus.NewDesc("bpfmon_ring_buffer_readable_bytes",
		"Bytes in the ring buffer not yet read by bpfmon, at the scrape: near the size, records are about to be lost.", nil, nil)
	descFeature = prometheus.NewDesc("bpfmon_feature",
		"1 when this watch has the capability, 0 when not (bpfmon features says why).", []string{"name"}, nil)
	descScanMaps = prometheus.NewDesc("bpfmon_scanner_maps",
		"Maps the content scanner's last pass covered.", nil, nil)
	descScanHashed = prometheus.NewDesc("bpfmon_scanner_maps_hashed",
		"Maps of the last pass kept as hashes for lack of --scan-memory (old values then unknown).", nil, nil)
	descScanCoarse = prometheus.NewDesc("bpfmon_scanner_maps_coarse",
		"Maps of the last pass compared per range of keys or as a whole for lack of --scan-memory (granularity in their map_changed events; changed keys then unknown).", nil, nil)
	descScanNoMemory = prometheus.NewDesc("bpfmon_scanner_maps_no_memory",
		"Maps the last pass did not scan at all because --scan-memory was taken by other maps (map_not_scanned says so).", nil, nil)
	descScanSkipped = prometheus.NewDesc("bpfmon_scanner_maps_not_scannable",
		"Maps the last pass could not read (map_not_scanned events say why).", nil, nil)
	descScanElements = prometheus.NewDesc("bpfmon_scanner_elements",
		"Elements the last pass read.", nil, nil)
	descScanBytes = prometheus.NewDesc("bpfmon_scanner_snapshot_bytes",
		"Key and value bytes the last pass read.", nil, nil)
	descScanMemory = prometheus.NewDesc("bpfmon_scanner_snapshot_memory_bytes",
		"Estimated memory the scanner's snapshots hold after the last pass (bounded by --scan-memory).", nil, nil)
	descScanAt = prometheus.NewDesc("bpfmon_scanner_last_pass_timestamp_seconds",
		"When the last pass completed, in seconds since the Unix epoch.", nil, nil)
	descStatsEnabled = prometheus.NewDesc("bpfmon_bpf_stats_enabled",
		"1 when the kernel.bpf_stats_enabled sysctl is set: the kernel counts every BPF program's run time.", nil, nil)
	descProgTime = prometheus.NewDesc("bpfmon_program_run_seconds_total",
		"Time bpfmon's own BPF programs ran, by program, while the kernel's BPF statistics were on.", []string{"program"}, nil)
	descProgRuns = prometheus.NewDesc("bpfmon_program_runs_total",
		"Times bpfmon's own BPF programs ran, by program, while the kernel's BPF statistics were on.", []string{"program"}, nil)
)

func (s *state) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descRingSize, descRingReadable, descFeature, descScanMaps, descScanHashed, descScanCoarse, descScanNoMemory, descScanSkipped,
		descScanElements, descScanBytes, descScanMemory, descScanAt, descStatsEnabled, descProgTime, descProgRuns} {
		ch <- d
	}
}

func (s *state) Collect(ch chan<- prometheus.Metric) {
	s.mu.Lock()
	ring, programs, fs, pass, passAt := s.ring, s.programs, s.features, s.pass, s.passAt
	s.mu.Unlock()
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	if ring != nil {
		gauge(descRingSize, float64(ring.Size()))
		gauge(descRingReadable, float64(ring.Readable()))
	}
	seen := map[string]bool{}
	for _, f := range fs {
		if seen[f.Name] {
			continue
		}
		seen[f.Name] = true
		gauge(descFeature, b2f(f.Available), f.Name)
	}
	if pass != nil {
		gauge(descScanMaps, float64(pass.Maps))
		gauge(descScanHashed, float64(pass.Hashed))
		gauge(descScanCoarse, float64(pass.Coarse))
		gauge(descScanNoMemory, float64(pass.NoMemory))
		gauge(descScanSkipped, float64(pass.Skipped))
		gauge(descScanElements, float64(pass.Elements))
		gauge(descScanBytes, float64(pass.SnapshotBytes))
		gauge(descScanMemory, float64(pass.SnapshotMemory))
		gauge(descScanAt, float64(passAt.UnixNano())/1e9)
	}
	s.collectPrograms(ch, programs)
}

// collectPrograms reports the run time and count of bpfmon's programs,
// summed by name, when the kernel counts them. The sysctl does not show
// statistics turned on by another process's BPF_ENABLE_STATS: counts
// above zero do.
func (s *state) collectPrograms(ch chan<- prometheus.Metric, ids []uint32) {
	enabled, known := statsEnabled(s.statsPath)
	if known {
		ch <- prometheus.MustNewConstMetric(descStatsEnabled, prometheus.GaugeValue, b2f(enabled))
	}
	type stat struct {
		run  time.Duration
		runs uint64
	}
	var names []string
	byName := map[string]*stat{}
	counted := false
	for _, id := range ids {
		// By id, not through the sensors' handles: a program closed at
		// the end of the watch is then simply gone, not a closed handle.
		p, err := ebpf.NewProgramFromID(ebpf.ProgramID(id))
		if err != nil {
			continue
		}
		info, ierr := p.Info()
		st, serr := p.Stats()
		p.Close()
		if ierr != nil || serr != nil {
			continue
		}
		name := info.Name
		if name == "" {
			name = "id" + strconv.FormatUint(uint64(id), 10) // never: bpfmon names its programs
		}
		x := byName[name]
		if x == nil {
			x = &stat{}
			byName[name] = x
			names = append(names, name)
		}
		x.run += st.Runtime
		x.runs += st.RunCount
		counted = counted || st.RunCount > 0
	}
	if !enabled && !counted {
		return
	}
	for _, name := range names {
		x := byName[name]
		ch <- prometheus.MustNewConstMetric(descProgTime, prometheus.CounterValue, x.run.Seconds(), name)
		ch <- prometheus.MustNewConstMetric(descProgRuns, prometheus.CounterValue, float64(x.runs), name)
	}
}

// statsEnabled reads the kernel.bpf_stats_enabled sysctl.
func statsEnabled(path string) (enabled, known bool) {
	b, err := os.ReadFile(path)
	if err != nil {
		return false, false
	}
	return strings.TrimSpace(string(b)) != "0", true
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

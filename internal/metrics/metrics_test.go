package metrics

import (
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"golang.org/x/sys/unix"

	"github.com/bpfmon/bpfmon/internal/event"
	"github.com/bpfmon/bpfmon/internal/features"
	"github.com/bpfmon/bpfmon/internal/scanner"
	bpfmontest "github.com/bpfmon/bpfmon/internal/testutil"
)

func update(source string) *event.Event {
	return &event.Event{Type: event.MapUpdate, Source: source, HasResult: true, Map: &event.Map{ID: 7}}
}

// TestEventCounts: each event is counted by type and source, its loss by
// source (the output's as the writer loses it, not again when the lost
// event reports it), its alert by rule and severity, and a suppression
// report by rule, not as an alert.
func TestEventCounts(t *testing.T) {
	m := New("v1")
	m.Rules([]Rule{{"foreign-write", "critical"}, {"events-lost", "medium"}})
	alerted := update(event.SourceSyscall)
	alerted.Alert = &event.Alert{Rule: "foreign-write", Severity: "critical"}
	for _, ev := range []*event.Event{
		update(event.SourceSyscall), update(event.SourceSyscall), update(event.SourceKernel), alerted,
		{Type: event.MapDelete, Source: event.SourceSyscall},
		{Type: event.Lost, Source: event.SourceSyscall, HasCount: true, Count: 5},
		{Type: event.Lost, Source: event.SourceKernel, HasCount: true, Count: 2},
		{Type: event.Lost, Source: event.SourceOutput, HasCount: true, Count: 9},
		{Type: event.AlertsSuppressed, Source: event.SourceAlert, HasCount: true, Count: 30,
			Alert: &event.Alert{Rule: "foreign-write", Severity: "critical"}},
		// A pairing the event package does not list is still counted.
		{Type: event.MapChanged, Source: event.SourceSyscall},
	} {
		m.Event(ev)
	}
	m.OutputLost(4)
	m.OutputLost(5)
	want := `
# HELP bpfmon_alerts_suppressed_total Alerts the rate limit held back (alerts.rate, alerts.burst), by rule, as alerts_suppressed events report them.
# TYPE bpfmon_alerts_suppressed_total counter
bpfmon_alerts_suppressed_total{rule="events-lost"} 0
bpfmon_alerts_suppressed_total{rule="foreign-write"} 30
# HELP bpfmon_alerts_total Alerts raised and reported, by rule and severity (alerts_suppressed reports excluded).
# TYPE bpfmon_alerts_total counter
bpfmon_alerts_total{rule="events-lost",severity="medium"} 0
bpfmon_alerts_total{rule="foreign-write",severity="critical"} 1
# HELP bpfmon_lost_events_total Events lost, by source: syscall, kernel, lsm, lineage and netattach count what the kernel could not put in the full ring buffer; output counts events the output could not take (a full disk).
# TYPE bpfmon_lost_events_total counter
bpfmon_lost_events_total{source="kernel"} 2
bpfmon_lost_events_total{source="lineage"} 0
bpfmon_lost_events_total{source="lsm"} 0
bpfmon_lost_events_total{source="netattach"} 0
bpfmon_lost_events_total{source="output"} 9
bpfmon_lost_events_total{source="syscall"} 5
`
	if err := testutil.CollectAndCompare(m.Registry(), strings.NewReader(want),
		"bpfmon_alerts_total", "bpfmon_alerts_suppressed_total", "bpfmon_lost_events_total"); err != nil {
		t.Error(err)
	}
	for _, c := range []struct {
		typ, source string
		want        float64
	}{
		{"map_update", "syscall", 3}, {"map_update", "kernel", 1}, {"map_delete", "syscall", 1}, {"map_delete", "kernel", 0},
		{"lost", "syscall", 1}, {"lost", "output", 1}, {"lost", "lsm", 0}, {"alerts_suppressed", "alert", 1},
		{"map_changed", "scan", 0}, {"map_changed", "syscall", 1},
	} {
		if got := testutil.ToFloat64(m.events.WithLabelValues(c.typ, c.source)); got != c.want {
			t.Errorf("bpfmon_events_total{type=%q,source=%q} = %v, want %v", c.typ, c.source, got, c.want)
		}
	}
	// Every type and source the event package lists exists from the start.
	if n := testutil.CollectAndCount(New("v1").events); n != countPairs() {
		t.Errorf("%d event series at start, want %d", n, countPairs())
	}
}

func countPairs() int {
	n := 0
	for _, t := range event.Types {
		n += len(t.Info().Sources)
	}
	return n
}

// TestTypeIndex: every event type has its own slot in the counter table.
func TestTypeIndex(t *testing.T) {
	seen := map[int]event.Type{}
	for _, typ := range event.Types {
		i := typeIndex(typ)
		if i < 0 || i >= numTypes {
			t.Errorf("%s: index %d, want 0 to %d: add it to typeIndex", typ, i, numTypes-1)
		} else if other, ok := seen[i]; ok {
			t.Errorf("%s and %s share index %d", typ, other, i)
		}
		seen[i] = typ
	}
	if typeIndex("no_such_type") != -1 {
		t.Error("an unknown type has an index")
	}
	for i, s := range sources {
		if sourceIndex(s) != i {
			t.Errorf("source %s: index %d, want %d", s, sourceIndex(s), i)
		}
	}
}

// TestEventDoesNotAllocate: counting is on the path of every event.
func TestEventDoesNotAllocate(t *testing.T) {
	m := New("v1")
	m.PodLabels() // the pod labels are for alerts only
	evs := []*event.Event{update(event.SourceSyscall), update(event.SourceKernel),
		{Type: event.Lost, Source: event.SourceSyscall, HasCount: true, Count: 1},
		{Type: event.MapChanged, Source: event.SourceScan}}
	if n := testing.AllocsPerRun(1000, func() {
		for _, ev := range evs {
			m.Event(ev)
		}
	}); n != 0 {
		t.Errorf("%v allocations per event", n/float64(len(evs)))
	}
}

type fakeRing struct{ size, readable int }

func (r fakeRing) Size() uint32  { return uint32(r.size) }
func (r fakeRing) Readable() int { return r.readable }

// TestStateAtScrape: the ring, the features and the last scanner pass are
// read at each scrape, and absent until the watch has them.
func TestStateAtScrape(t *testing.T) {
	m := New("v1.2.3")
	m.statsPath = filepath.Join(t.TempDir(), "none")
	names := []string{"bpfmon_ring_buffer_size_bytes", "bpfmon_ring_buffer_readable_bytes", "bpfmon_feature",
		"bpfmon_scanner_maps", "bpfmon_scanner_maps_hashed", "bpfmon_scanner_maps_coarse", "bpfmon_scanner_maps_no_memory", "bpfmon_scanner_maps_not_scannable", "bpfmon_scanner_elements",
		"bpfmon_scanner_snapshot_bytes", "bpfmon_scanner_snapshot_memory_bytes", "bpfmon_scanner_pass_duration_seconds",
		"bpfmon_build_info", "bpfmon_bpf_stats_enabled"}
	before := `
# HELP bpfmon_build_info Always 1: the bpfmon version and the Go version it was built with.
# TYPE bpfmon_build_info gauge
bpfmon_build_info{goversion="` + runtime.Version() + `",version="v1.2.3"} 1
`
	if err := testutil.CollectAndCompare(m.Registry(), strings.NewReader(before+noPasses), names...); err != nil {
		t.Errorf("before start: %v", err)
	}
	m.Started(fakeRing{size: 1 << 20, readable: 4096}, nil, []features.Feature{
		{Name: "syscall_sensor", Available: true}, {Name: "bpf_lsm"}, {Name: "bpf_lsm", Available: true}})
	m.ScanPassed(scanner.PassStats{Maps: 12, Skipped: 2, Hashed: 1, Elements: 3000, SnapshotBytes: 36000, SnapshotMemory: 500000, Duration: 30 * time.Millisecond})
	m.ScanPassed(scanner.PassStats{Maps: 13, Skipped: 2, Hashed: 1, Coarse: 3, NoMemory: 1, Elements: 3001, SnapshotBytes: 36012, SnapshotMemory: 500100, Duration: 2 * time.Second})
	after := before + `
# HELP bpfmon_feature 1 when this watch has the capability, 0 when not (bpfmon features says why).
# TYPE bpfmon_feature gauge
bpfmon_feature{name="bpf_lsm"} 0
bpfmon_feature{name="syscall_sensor"} 1
# HELP bpfmon_ring_buffer_readable_bytes Bytes in the ring buffer not yet read by bpfmon, at the scrape: near the size, records are about to be lost.
# TYPE bpfmon_ring_buffer_readable_bytes gauge
bpfmon_ring_buffer_readable_bytes 4096
# HELP bpfmon_ring_buffer_size_bytes Size of the ring buffer the sensors write their records into (--ring-buffer, rounded up to a power of two).
# TYPE bpfmon_ring_buffer_size_bytes gauge
bpfmon_ring_buffer_size_bytes 1.048576e+06
# HELP bpfmon_scanner_elements Elements the last pass read.
# TYPE bpfmon_scanner_elements gauge
bpfmon_scanner_elements 3001
# HELP bpfmon_scanner_maps Maps the content scanner's last pass covered.
# TYPE bpfmon_scanner_maps gauge
bpfmon_scanner_maps 13
# HELP bpfmon_scanner_maps_coarse Maps of the last pass compared per range of keys or as a whole for lack of --scan-memory (granularity in their map_changed events; changed keys then unknown).
# TYPE bpfmon_scanner_maps_coarse gauge
bpfmon_scanner_maps_coarse 3
# HELP bpfmon_scanner_maps_hashed Maps of the last pass kept as hashes for lack of --scan-memory (old values then unknown).
# TYPE bpfmon_scanner_maps_hashed gauge
bpfmon_scanner_maps_hashed 1
# HELP bpfmon_scanner_maps_no_memory Maps the last pass did not scan at all because --scan-memory was taken by other maps (map_not_scanned says so).
# TYPE bpfmon_scanner_maps_no_memory gauge
bpfmon_scanner_maps_no_memory 1
# HELP bpfmon_scanner_maps_not_scannable Maps the last pass could not read (map_not_scanned events say why).
# TYPE bpfmon_scanner_maps_not_scannable gauge
bpfmon_scanner_maps_not_scannable 2
# HELP bpfmon_scanner_snapshot_bytes Key and value bytes the last pass read.
# TYPE bpfmon_scanner_snapshot_bytes gauge
bpfmon_scanner_snapshot_bytes 36012
# HELP bpfmon_scanner_snapshot_memory_bytes Estimated memory the scanner's snapshots hold after the last pass (bounded by --scan-memory).
# TYPE bpfmon_scanner_snapshot_memory_bytes gauge
bpfmon_scanner_snapshot_memory_bytes 500100
# HELP bpfmon_scanner_pass_duration_seconds How long each content scanner pass took, from its start to its report (the grace period for sensor events included).
# TYPE bpfmon_scanner_pass_duration_seconds histogram
bpfmon_scanner_pass_duration_seconds_bucket{le="0.001"} 0
bpfmon_scanner_pass_duration_seconds_bucket{le="0.0025"} 0
bpfmon_scanner_pass_duration_seconds_bucket{le="0.005"} 0
bpfmon_scanner_pass_duration_seconds_bucket{le="0.01"} 0
bpfmon_scanner_pass_duration_seconds_bucket{le="0.025"} 0
bpfmon_scanner_pass_duration_seconds_bucket{le="0.05"} 1
bpfmon_scanner_pass_duration_seconds_bucket{le="0.1"} 1
bpfmon_scanner_pass_duration_seconds_bucket{le="0.25"} 1
bpfmon_scanner_pass_duration_seconds_bucket{le="0.5"} 1
bpfmon_scanner_pass_duration_seconds_bucket{le="1"} 1
bpfmon_scanner_pass_duration_seconds_bucket{le="2.5"} 2
bpfmon_scanner_pass_duration_seconds_bucket{le="5"} 2
bpfmon_scanner_pass_duration_seconds_bucket{le="10"} 2
bpfmon_scanner_pass_duration_seconds_bucket{le="30"} 2
bpfmon_scanner_pass_duration_seconds_bucket{le="60"} 2
bpfmon_scanner_pass_duration_seconds_bucket{le="+Inf"} 2
bpfmon_scanner_pass_duration_seconds_sum 2.03
bpfmon_scanner_pass_duration_seconds_count 2
`
	if err := testutil.CollectAndCompare(m.Registry(), strings.NewReader(after), names...); err != nil {
		t.Errorf("after start and two passes: %v", err)
	}
	if n := testutil.CollectAndCount(m.Registry(), "bpfmon_scanner_last_pass_timestamp_seconds"); n != 1 {
		t.Errorf("%d last-pass timestamps", n)
	}
}

const noPasses = `
# HELP bpfmon_scanner_pass_duration_seconds How long each content scanner pass took, from its start to its report (the grace period for sensor events included).
# TYPE bpfmon_scanner_pass_duration_seconds histogram
bpfmon_scanner_pass_duration_seconds_bucket{le="0.001"} 0
bpfmon_scanner_pass_duration_seconds_bucket{le="0.0025"} 0
bpfmon_scanner_pass_duration_seconds_bucket{le="0.005"} 0
bpfmon_scanner_pass_duration_seconds_bucket{le="0.01"} 0
bpfmon_scanner_pass_duration_seconds_bucket{le="0.025"} 0
bpfmon_scanner_pass_duration_seconds_bucket{le="0.05"} 0
bpfmon_scanner_pass_duration_seconds_bucket{le="0.1"} 0
bpfmon_scanner_pass_duration_seconds_bucket{le="0.25"} 0
bpfmon_scanner_pass_duration_seconds_bucket{le="0.5"} 0
bpfmon_scanner_pass_duration_seconds_bucket{le="1"} 0
bpfmon_scanner_pass_duration_seconds_bucket{le="2.5"} 0
bpfmon_scanner_pass_duration_seconds_bucket{le="5"} 0
bpfmon_scanner_pass_duration_seconds_bucket{le="10"} 0
bpfmon_scanner_pass_duration_seconds_bucket{le="30"} 0
bpfmon_scanner_pass_duration_seconds_bucket{le="60"} 0
bpfmon_scanner_pass_duration_seconds_bucket{le="+Inf"} 0
bpfmon_scanner_pass_duration_seconds_sum 0
bpfmon_scanner_pass_duration_seconds_count 0
`

// TestProgramStats loads a real program and runs it a known number of
// times with the kernel's statistics on (BPF_ENABLE_STATS, held by this
// test only while it runs): its run count comes back exactly; with the
// statistics off and the program never run, no program series is there.
func TestProgramStats(t *testing.T) {
	bpfmontest.RequireRoot(t)
	prog, err := ebpf.NewProgram(&ebpf.ProgramSpec{Name: "bpfmon_mtest", Type: ebpf.SocketFilter, License: "GPL",
		Instructions: asm.Instructions{asm.Mov.Imm(asm.R0, 0), asm.Return()}})
	if err != nil {
		t.Fatal(err)
	}
	defer prog.Close()
	info, _ := prog.Info()
	id, ok := info.ID()
	if !ok {
		t.Fatal("the kernel gave the program no id")
	}
	m := New("v1")
	off := filepath.Join(t.TempDir(), "bpf_stats_enabled")
	os.WriteFile(off, []byte("0\n"), 0o644)
	m.statsPath = off
	m.Started(nil, []uint32{uint32(id), 0xfffffff0}, nil) // the second: a program that is gone
	if n := testutil.CollectAndCount(m.Registry(), "bpfmon_program_runs_total", "bpfmon_program_run_seconds_total"); n != 0 {
		t.Errorf("%d program series while the statistics are off and the program never ran", n)
	}
	if v := gathered(t, m, "bpfmon_bpf_stats_enabled"); v != 0 {
		t.Errorf("bpfmon_bpf_stats_enabled = %v with the sysctl at 0", v)
	}

	// Linux 5.8 and later, as every kernel bpfmon supports.
	stats, err := ebpf.EnableStats(unix.BPF_STATS_RUN_TIME)
	if err != nil {
		t.Fatalf("BPF_ENABLE_STATS: %v", err)
	}
	const runs = 37
	_, err = prog.Run(&ebpf.RunOptions{Data: make([]byte, 14), Repeat: runs})
	stats.Close()
	if err != nil {
		t.Fatal(err)
	}
	want := `
# HELP bpfmon_program_runs_total Times bpfmon's own BPF programs ran, by program, while the kernel's BPF statistics were on.
# TYPE bpfmon_program_runs_total counter
bpfmon_program_runs_total{program="bpfmon_mtest"} 37
`
	if err := testutil.CollectAndCompare(m.Registry(), strings.NewReader(want), "bpfmon_program_runs_total"); err != nil {
		t.Error(err)
	}
	if n := testutil.CollectAndCount(m.Registry(), "bpfmon_program_run_seconds_total"); n != 1 {
		t.Errorf("%d run time series, want 1", n)
	}
}

// gathered is the value of a gauge of one series.
func gathered(t *testing.T, m *Metrics, name string) float64 {
	t.Helper()
	mfs, err := m.Registry().Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == name && len(mf.Metric) == 1 {
			return mf.Metric[0].GetGauge().GetValue()
		}
	}
	t.Fatalf("no single %s", name)
	return 0
}

// CheckAddr takes HOST:PORT with a numeric port, and names what is wrong.
func TestCheckAddr(t *testing.T) {
	for _, ok := range []string{":9567", "127.0.0.1:0", "[::1]:9567", "localhost:65535", "0.0.0.0:1"} {
		if err := CheckAddr(ok); err != nil {
			t.Errorf("%q refused: %v", ok, err)
		}
	}
	for _, bad := range []string{"", "9567", "127.0.0.1", ":http", ":65536", ":-1", "::1:9567", "host:"} {
		if err := CheckAddr(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

// TestServer: /healthz answers 503 until Ready, then 200; /metrics serves
// the registry in Prometheus's text format; Shutdown returns once the
// server's goroutines are gone, and the port is free again.
func TestServer(t *testing.T) {
	goroutines := runtime.NumGoroutine()
	m := New("v1")
	ln, err := Listen("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := m.Serve(ln)
	addr := srv.Addr().String()
	if strings.HasSuffix(addr, ":0") {
		t.Fatalf("Addr %s is not the port bound", addr)
	}
	client := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}
	get := func(path string) (int, string) {
		t.Helper()
		resp, err := client.Get("http://" + addr + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	if code, body := get("/healthz"); code != http.StatusServiceUnavailable {
		t.Errorf("/healthz before ready: %d %q", code, body)
	}
	m.Ready()
	if code, body := get("/healthz"); code != http.StatusOK || body != "ready\n" {
		t.Errorf("/healthz when ready: %d %q", code, body)
	}
	m.Event(update(event.SourceSyscall))
	code, body := get("/metrics")
	if code != http.StatusOK || !strings.Contains(body, "\nbpfmon_events_total{source=\"syscall\",type=\"map_update\"} 1\n") ||
		!strings.Contains(body, "\ngo_goroutines ") || !strings.Contains(body, "\nprocess_resident_memory_bytes ") {
		t.Errorf("/metrics: %d\n%s", code, body)
	}
	if code, _ := get("/"); code != http.StatusNotFound {
		t.Errorf("/: %d, want 404", code)
	}
	if err := srv.Shutdown(time.Second); err != nil {
		t.Fatal(err)
	}
	client.CloseIdleConnections()
	deadline := time.Now().Add(5 * time.Second)
	for runtime.NumGoroutine() > goroutines {
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<16)
			t.Fatalf("%d goroutines after Shutdown, %d before:\n%s", runtime.NumGoroutine(), goroutines, buf[:runtime.Stack(buf, true)])
		}
		time.Sleep(10 * time.Millisecond)
	}
	again, err := Listen(addr)
	if err != nil {
		t.Fatalf("the port is not free after Shutdown: %v", err)
	}
	again.Close()
}

// BenchmarkEvent is the cost of counting one event on the sink's path.
func BenchmarkEvent(b *testing.B) {
	m := New("v1")
	ev := update(event.SourceSyscall)
	b.ReportAllocs()
	for b.Loop() {
		m.Event(ev)
	}
}

// TestReferenceListsEveryMetric: the metrics reference
// (docs/reference/metrics.md, generated from Reference by make docs)
// names every bpfmon_ metric this package can report, and no other.
func TestReferenceListsEveryMetric(t *testing.T) {
	readme, err := os.ReadFile("../../docs/reference/metrics.md")
	if err != nil {
		t.Fatal(err)
	}
	documented := map[string]bool{}
	for _, m := range regexp.MustCompile("(?m)^\\| `(bpfmon_[a-z_]+)` \\|").FindAllStringSubmatch(string(readme), -1) {
		documented[m[1]] = true
	}
	m := New("v1")
	m.Rules([]Rule{{"foreign-write", "critical"}}) // vectors without a series are not gathered
	m.PodLabels()                                  // --metrics-pod-labels
	m.byPod.vec.WithLabelValues("foreign-write", "critical", "", "")
	reported := map[string]bool{}
	descs := make(chan *prometheus.Desc, 100)
	(*state)(m).Describe(descs)
	close(descs)
	for d := range descs {
		reported[regexp.MustCompile(`fqName: "([^"]+)"`).FindStringSubmatch(d.String())[1]] = true
	}
	mfs, err := m.Registry().Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if strings.HasPrefix(mf.GetName(), "bpfmon_") {
			reported[mf.GetName()] = true
		}
	}
	for name := range reported {
		if !documented[name] {
			t.Errorf("%s is not in docs/reference/metrics.md (make docs)", name)
		}
	}
	for name := range documented {
		if !reported[name] {
			t.Errorf("docs/reference/metrics.md lists %s, which bpfmon does not report", name)
		}
	}
}

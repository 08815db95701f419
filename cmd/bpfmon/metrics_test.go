package main

import (
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"

	"github.com/bpfmon/bpfmon/internal/testutil"
)

// metricsAddrRE matches the line bpfmon logs with the address it serves
// metrics on (the port the kernel chose for port 0).
var metricsAddrRE = regexp.MustCompile(`msg="metrics: serving /metrics and /healthz" addr=(\S+)`)

// metricsAddr is the address a watch started with --metrics-addr serves on.
func (w *watcher) metricsAddr(t *testing.T) string {
	t.Helper()
	m := metricsAddrRE.FindStringSubmatch(w.stderr.String())
	if m == nil {
		t.Fatalf("no metrics address logged: %s", w.stderr.String())
	}
	return m[1]
}

// promServer is a real Prometheus server on loopback, scraping one target
// every second, with its own empty storage.
type promServer struct {
	url    string
	cmd    *exec.Cmd
	stderr lockedBuffer
}

func startPrometheus(t *testing.T, exe, target string) *promServer {
	t.Helper()
	return startPrometheusWith(t, exe, target, "")
}

// startPrometheusWith is startPrometheus with more configuration (rule
// files, alerting) appended; rules are evaluated every second.
func startPrometheusWith(t *testing.T, exe, target, extra string) *promServer {
	t.Helper()
	dir := t.TempDir()
	config := filepath.Join(dir, "prometheus.yml")
	if err := os.WriteFile(config, []byte(`global:
  scrape_interval: 1s
  scrape_timeout: 1s
  evaluation_interval: 1s
scrape_configs:
  - job_name: bpfmon
    static_configs:
      - targets: ['`+target+`']
`+extra), 0o600); err != nil {
		t.Fatal(err)
	}
	// A free port: taken, then given back for Prometheus to bind.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	listen := ln.Addr().String()
	ln.Close()
	p := &promServer{url: "http://" + listen}
	p.cmd = exec.Command(exe, "--config.file="+config, "--storage.tsdb.path="+filepath.Join(dir, "data"),
		"--web.listen-address="+listen, "--log.level=warn")
	p.cmd.Stderr = &p.stderr
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		p.cmd.Process.Signal(syscall.SIGTERM)
		done := make(chan struct{})
		go func() { p.cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			p.cmd.Process.Kill()
			<-done
		}
	})
	deadline := time.Now().Add(testutil.Timeout(30 * time.Second))
	for {
		if resp, err := http.Get(p.url + "/-/ready"); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return p
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("prometheus not ready at %s within 30s: %s", p.url, p.stderr.String())
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// sample is one series of an instant query's result.
type sample struct {
	labels map[string]string
	value  float64
}

// query runs an instant PromQL query through Prometheus's HTTP API.
func (p *promServer) query(t *testing.T, q string) []sample {
	t.Helper()
	resp, err := http.Get(p.url + "/api/v1/query?query=" + url.QueryEscape(q))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	var r struct {
		Status string
		Error  string
		Data   struct {
			ResultType string
			Result     []struct {
				Metric map[string]string
				Value  [2]any
			}
		}
	}
	if err := json.Unmarshal(body, &r); err != nil || r.Status != "success" || r.Data.ResultType != "vector" {
		t.Fatalf("query %s: %d %s (%v)", q, resp.StatusCode, body, err)
	}
	var out []sample
	for _, s := range r.Data.Result {
		str, _ := s.Value[1].(string)
		v, err := strconv.ParseFloat(str, 64)
		if err != nil {
			t.Fatalf("query %s: value %v", q, s.Value)
		}
		out = append(out, sample{labels: s.Metric, value: v})
	}
	return out
}

// value is the value of the one series q selects, and false while there
// is none (not scraped yet).
func (p *promServer) value(t *testing.T, q string) (float64, bool) {
	t.Helper()
	r := p.query(t, q)
	if len(r) > 1 {
		t.Fatalf("query %s: %d series, want one: %v", q, len(r), r)
	}
	if len(r) == 0 {
		return 0, false
	}
	return r[0].value, true
}

// countLines counts the output's events of one type and source.
func countLines(t *testing.T, lines []string, typ, source string) float64 {
	t.Helper()
	n := 0
	for _, l := range lines {
		var ev jsonEvent
		if err := json.Unmarshal([]byte(l), &ev); err != nil {
			t.Fatalf("invalid JSON line %q: %v", l, err)
		}
		if ev.Event == typ && ev.Source == source {
			n++
		}
	}
	return float64(n)
}

// TestWatchMetricsPrometheus: a real Prometheus scrapes bpfmon watch
// --metrics-addr 127.0.0.1:0 every second. A foreign process (a copy of
// the test binary, no owner) makes a known number of writes, N updates
// and M deletes, to a map this test protects; through Prometheus's query
// API, the foreign-write alerts grow by exactly N+M (no one else writes
// that map) and the syscall map_update and map_delete counters by at
// least N and M, never past the lines bpfmon wrote (they count every
// event on the host: go test runs other packages' tests at the same
// time), and with --metrics-pod-labels the same alerts by pod (none: a
// host process). The other families are there with the values this watch has.
func TestWatchMetricsPrometheus(t *testing.T) {
	testutil.RequireRoot(t)
	if testutil.InVM() {
		t.Skip("the kernel test matrix's VMs carry no Prometheus; the host's run (CI) runs this test")
	}
	promExe, err := exec.LookPath("prometheus")
	if err != nil {
		testutil.SkipOrFail(t, "prometheus not installed (apt-get install prometheus): the test needs a real Prometheus server")
	}
	// The kernel counts programs' run time while this is held (this
	// test's few seconds only), for bpfmon_program_runs_total.
	stats, err := ebpf.EnableStats(unix.BPF_STATS_RUN_TIME)
	if err != nil {
		t.Fatalf("BPF_ENABLE_STATS: %v", err)
	}
	defer stats.Close()

	m, id := newMap(t) // before the watch starts: this process holds it, an owner
	foreign := testutil.ForeignExecutable(t, "foreign.test")
	w := startWatch(t, "--format", "json", "--metrics-addr", "127.0.0.1:0", "--metrics-pod-labels", "--protect", "id:"+itoa(id),
		"--policy", unlimitedAlerts(t), "--ring-buffer", "4M", "--scan-interval", "1s")
	addr := w.metricsAddr(t)
	if strings.HasSuffix(addr, ":0") || !strings.HasPrefix(addr, "127.0.0.1:") {
		t.Fatalf("logged address %s: want the port bound on 127.0.0.1", addr)
	}
	resp, err := http.Get("http://" + addr + "/healthz")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Errorf("/healthz once ready: %d, want 200", resp.StatusCode)
	}

	p := startPrometheus(t, promExe, addr)
	const (
		updates = 6
		deletes = 3
	)
	updQ := `bpfmon_events_total{type="map_update",source="syscall"}`
	delQ := `bpfmon_events_total{type="map_delete",source="syscall"}`
	alertQ := `bpfmon_alerts_total{rule="foreign-write",severity="critical"}`
	var upd0, del0, alert0 float64
	deadline := time.Now().Add(testutil.Timeout(20 * time.Second))
	for {
		up, _ := p.value(t, `up{job="bpfmon"}`)
		var ok1, ok2, ok3 bool
		upd0, ok1 = p.value(t, updQ)
		del0, ok2 = p.value(t, delQ)
		alert0, ok3 = p.value(t, alertQ)
		if up == 1 && ok1 && ok2 && ok3 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("prometheus has not scraped bpfmon at %s within 20s: up=%v; prometheus: %s", addr, up, p.stderr.String())
		}
		time.Sleep(200 * time.Millisecond)
	}
	if alert0 != 0 {
		t.Errorf("%v foreign-write alerts before any foreign write", alert0)
	}

	acts := []string{fmt.Sprintf("flood:%d:%d", id, updates)}
	for k := range deletes {
		acts = append(acts, fmt.Sprintf("delete:%d:%d", id, k))
	}
	act(t, foreign, acts...)

	var upd, del, alerts float64
	for {
		upd, _ = p.value(t, updQ)
		del, _ = p.value(t, delQ)
		alerts, _ = p.value(t, alertQ)
		if alerts-alert0 > updates+deletes {
			t.Fatalf("foreign-write alerts grew by %v, want %d", alerts-alert0, updates+deletes)
		}
		if alerts-alert0 == updates+deletes && upd-upd0 >= updates && del-del0 >= deletes {
			break
		}
		if time.Now().After(deadline.Add(testutil.Timeout(10 * time.Second))) {
			t.Fatalf("through prometheus: foreign-write alerts +%v (want %d), map_update +%v (want at least %d), map_delete +%v (want at least %d)",
				alerts-alert0, updates+deletes, upd-upd0, updates, del-del0, deletes)
		}
		time.Sleep(200 * time.Millisecond)
	}
	// --metrics-pod-labels: the same alerts by pod, here a host
	// process's, outside any pod (namespace and pod empty, which PromQL
	// matches as absent).
	podQ := `sum(bpfmon_alerts_by_pod_total{rule="foreign-write",severity="critical",namespace="",pod=""})`
	for {
		if n, _ := p.value(t, podQ); n == updates+deletes {
			break
		} else if time.Now().After(deadline.Add(testutil.Timeout(15 * time.Second))) {
			t.Fatalf("through prometheus: %s = %v, want %d", podQ, n, updates+deletes)
		}
		time.Sleep(200 * time.Millisecond)
	}
	// An event is counted as it is handed to the output, which flushes
	// within a poll interval: after that, the output has every event the
	// last scrape counted, and more if others came since.
	time.Sleep(500 * time.Millisecond)
	lines := w.lines(t)
	if n := countLines(t, lines, "map_update", "syscall"); upd > n {
		t.Errorf("map_update counter %v, but only %v such events written", upd, n)
	}
	if n := countLines(t, lines, "map_delete", "syscall"); del > n {
		t.Errorf("map_delete counter %v, but only %v such events written", del, n)
	}

	for _, c := range []struct {
		query string
		ok    func(float64) bool
		want  string
	}{
		{`bpfmon_build_info{goversion="` + runtime.Version() + `"}`, func(v float64) bool { return v == 1 }, "1"},
		{`bpfmon_feature{name="syscall_sensor"}`, func(v float64) bool { return v == 1 }, "1"},
		{`bpfmon_feature{name="content_scanner"}`, func(v float64) bool { return v == 1 }, "1"},
		{`bpfmon_ring_buffer_size_bytes`, func(v float64) bool { return v == 4<<20 }, "4194304 (--ring-buffer 4M)"},
		{`bpfmon_ring_buffer_readable_bytes`, func(v float64) bool { return v >= 0 && v <= 4<<20 }, "0 to 4M"},
		{`bpfmon_lost_events_total{source="output"}`, func(v float64) bool { return v == 0 }, "0"},
		{`bpfmon_scanner_pass_duration_seconds_count`, func(v float64) bool { return v >= 1 }, "at least 1 pass"},
		{`bpfmon_scanner_maps`, func(v float64) bool { return v >= 1 }, "at least this test's map"},
		{`sum(bpfmon_program_runs_total)`, func(v float64) bool { return v > 0 }, "runs while BPF_ENABLE_STATS is held"},
		{`sum(bpfmon_program_run_seconds_total)`, func(v float64) bool { return v > 0 }, "run time while BPF_ENABLE_STATS is held"},
		{`process_resident_memory_bytes{job="bpfmon"}`, func(v float64) bool { return v > 0 }, "bpfmon's RSS"},
	} {
		if v, ok := p.value(t, c.query); !ok || !c.ok(v) {
			t.Errorf("%s = %v (present: %v), want %s", c.query, v, ok, c.want)
		}
	}
	for _, s := range p.query(t, `bpfmon_program_runs_total`) {
		t.Logf("bpfmon_program_runs_total{program=%q} %v", s.labels["program"], s.value)
	}
	if got := p.query(t, `bpfmon_lost_events_total`); len(got) != 6 {
		t.Errorf("bpfmon_lost_events_total: %d sources, want syscall, kernel, lsm, lineage, netattach and output: %v", len(got), got)
	}
	// Labels stay bounded: no series names a map id or a pid.
	for _, s := range p.query(t, `{job="bpfmon", __name__=~"bpfmon_.*"}`) {
		for k := range s.labels {
			if k == "id" || k == "map_id" || k == "pid" || k == "map" {
				t.Errorf("unbounded label %s on %v", k, s.labels)
			}
		}
	}
	m.Close()

	w.stop(t, syscall.SIGINT)
	// Stopped with the watch: the port is closed.
	if c, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
		c.Close()
		t.Errorf("%s still accepts connections after bpfmon exited", addr)
	}
}

// TestWatchMetricsAddrInUse: an address bpfmon cannot bind stops it
// before any probe loads: exit 1, the address and the cause, no output
// file.
func TestWatchMetricsAddrInUse(t *testing.T) {
	testutil.RequireRoot(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	out := filepath.Join(t.TempDir(), "events")
	code, msg := runBpfmon(t, "watch", "--output", out, "--metrics-addr", ln.Addr().String())
	if code != 1 || !strings.Contains(msg, "--metrics-addr: listen tcp "+ln.Addr().String()) || !strings.Contains(msg, "address already in use") {
		t.Errorf("exit %d: %s", code, msg)
	}
	if strings.Contains(msg, "watching bpf(2)") {
		t.Errorf("a probe loaded before the address was refused: %s", msg)
	}
	if _, err := os.Stat(out); err == nil {
		t.Errorf("output file created")
	}
}

package main

import (
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/bpfmon/bpfmon/internal/metrics"
	"github.com/bpfmon/bpfmon/internal/policy"
	"github.com/bpfmon/bpfmon/internal/testutil"
)

// rulesFile and rulesTest are the shipped alerting rules and their unit
// tests.
var (
	rulesFile = filepath.Join("..", "..", "contrib", "prometheus", "bpfmon.rules.yml")
	rulesTest = filepath.Join("..", "..", "contrib", "prometheus", "bpfmon.rules.test.yml")
)

// TestPrometheusRules: the shipped rules parse (promtool check rules),
// their unit tests pass (promtool test rules), and every bpfmon metric
// and alert rule they name exists: a renamed metric or rule fails here,
// not in an operator's silent alert.
func TestPrometheusRules(t *testing.T) {
	if testutil.InVM() {
		t.Skip("the kernel test matrix's VMs carry no promtool; the host's run (CI) checks the rules")
	}
	promtool, err := exec.LookPath("promtool")
	if err != nil {
		testutil.SkipOrFail(t, "promtool not installed (apt-get install prometheus): the test checks the shipped rules with it")
	}
	for _, args := range [][]string{{"check", "rules", rulesFile}, {"test", "rules", rulesTest}} {
		out, err := exec.Command(promtool, args...).CombinedOutput()
		if err != nil {
			t.Errorf("promtool %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
	text, err := os.ReadFile(rulesFile)
	if err != nil {
		t.Fatal(err)
	}
	served := map[string]bool{}
	for _, d := range metrics.Reference() {
		served[d.Name] = true
	}
	for _, m := range regexp.MustCompile(`bpfmon_[a-z_]+`).FindAllString(string(text), -1) {
		if !served[m] {
			t.Errorf("%s names metric %s, which bpfmon does not serve", rulesFile, m)
		}
	}
	rules := map[string]bool{}
	for _, r := range policy.Rules {
		rules[r.Name] = true
	}
	for _, m := range regexp.MustCompile(`rule="([a-z-]+)"`).FindAllStringSubmatch(string(text), -1) {
		if !rules[m[1]] {
			t.Errorf("%s names alert rule %s, which bpfmon does not have", rulesFile, m[1])
		}
	}
}

// webhook is an Alertmanager webhook receiver: the alerts it was sent.
type webhook struct {
	mu     sync.Mutex
	alerts []map[string]string // labels of firing alerts
}

func (h *webhook) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	var msg struct {
		Alerts []struct {
			Status string
			Labels map[string]string
		}
	}
	if err := json.NewDecoder(r.Body).Decode(&msg); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, a := range msg.Alerts {
		if a.Status == "firing" {
			h.alerts = append(h.alerts, a.Labels)
		}
	}
}

// firing returns the labels of a firing alert named name whose labels
// include want, if one came.
func (h *webhook) firing(name string, want map[string]string) map[string]string {
	h.mu.Lock()
	defer h.mu.Unlock()
next:
	for _, a := range h.alerts {
		if a["alertname"] != name {
			continue
		}
		for k, v := range want {
			if a[k] != v {
				continue next
			}
		}
		return a
	}
	return nil
}

// freeAddr is a loopback address with a port free a moment ago.
func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// startAlertmanager runs a real Alertmanager (Debian's
// prometheus-alertmanager) on loopback, without clustering, sending
// every alert at once to hook.
func startAlertmanager(t *testing.T, exe, hook string) string {
	t.Helper()
	dir := t.TempDir()
	config := filepath.Join(dir, "alertmanager.yml")
	if err := os.WriteFile(config, []byte(`route:
  receiver: hook
  group_by: ['alertname', 'instance', 'rule']
  group_wait: 0s
  group_interval: 1s
  repeat_interval: 1h
receivers:
  - name: hook
    webhook_configs:
      - url: '`+hook+`'
        send_resolved: false
`), 0o600); err != nil {
		t.Fatal(err)
	}
	addr := freeAddr(t)
	var stderr lockedBuffer
	cmd := exec.Command(exe, "--config.file="+config, "--storage.path="+filepath.Join(dir, "data"),
		"--web.listen-address="+addr, "--cluster.listen-address=", "--log.level=warn")
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGTERM)
		done := make(chan struct{})
		go func() { cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			cmd.Process.Kill()
			<-done
		}
	})
	deadline := time.Now().Add(testutil.Timeout(30 * time.Second))
	for {
		if resp, err := http.Get("http://" + addr + "/-/ready"); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return addr
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("alertmanager not ready at %s within 30s: %s", addr, stderr.String())
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// TestAlertmanagerWebhook: from tamper to webhook. A real Prometheus
// scrapes a real bpfmon watch and evaluates the shipped rules; a
// stranger (a copy of the test binary, no owner) writes a protected map;
// a real Alertmanager delivers BpfmonCriticalAlert, naming the rule and
// the node, to a webhook in the test.
func TestAlertmanagerWebhook(t *testing.T) {
	testutil.RequireRoot(t)
	if testutil.InVM() {
		t.Skip("the kernel test matrix's VMs carry no Prometheus nor Alertmanager; the host's run (CI) runs this test")
	}
	promExe, err := exec.LookPath("prometheus")
	if err != nil {
		testutil.SkipOrFail(t, "prometheus not installed (apt-get install prometheus): the test needs a real Prometheus server")
	}
	amExe, err := exec.LookPath("prometheus-alertmanager")
	if err != nil {
		testutil.SkipOrFail(t, "prometheus-alertmanager not installed (apt-get install prometheus-alertmanager): the test needs a real Alertmanager")
	}
	rules, err := filepath.Abs(rulesFile)
	if err != nil {
		t.Fatal(err)
	}
	hook := &webhook{}
	srv := httptest.NewServer(hook)
	defer srv.Close()
	am := startAlertmanager(t, amExe, srv.URL+"/")

	m, id := newMap(t) // before the watch starts: this process holds it, an owner
	defer m.Close()
	foreign := testutil.ForeignExecutable(t, "foreign.test")
	w := startWatch(t, "--format", "json", "--metrics-addr", "127.0.0.1:0", "--protect", "id:"+itoa(id), "--scan-interval", "0")
	addr := w.metricsAddr(t)
	p := startPrometheusWith(t, promExe, addr, fmt.Sprintf(`rule_files:
  - %q
alerting:
  alertmanagers:
    - static_configs:
        - targets: ['%s']
`, rules, am))
	// The counter is scraped at 0 before the write: increase() needs a
	// sample before it.
	q := `bpfmon_alerts_total{rule="foreign-write",severity="critical"}`
	deadline := time.Now().Add(testutil.Timeout(30 * time.Second))
	for {
		if v, ok := p.value(t, q); ok && v == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("prometheus has not scraped %s at 0 within 30s: %s", q, p.stderr.String())
		}
		time.Sleep(200 * time.Millisecond)
	}
	wrote := time.Now()
	act(t, foreign, fmt.Sprintf("flood:%d:1", id))
	want := map[string]string{"rule": "foreign-write", "instance": addr, "severity": "critical", "job": "bpfmon"}
	for {
		if a := hook.firing("BpfmonCriticalAlert", want); a != nil {
			t.Logf("webhook got %v %v after the write", a, time.Since(wrote).Round(100*time.Millisecond))
			break
		}
		if time.Now().After(deadline.Add(testutil.Timeout(30 * time.Second))) {
			t.Fatalf("no BpfmonCriticalAlert %v delivered to the webhook; prometheus: %s", want, p.stderr.String())
		}
		time.Sleep(200 * time.Millisecond)
	}
	if a := hook.firing("BpfmonDown", nil); a != nil {
		t.Errorf("BpfmonDown fired for a running bpfmon: %v", a)
	}
	w.stop(t, syscall.SIGINT)
}

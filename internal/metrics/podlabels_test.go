package metrics

import (
	"fmt"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil"
	dto "github.com/prometheus/client_model/go"

	"github.com/bpfmon/bpfmon/internal/event"
)

// byPodSeries gathers bpfmon_alerts_by_pod_total: the count by
// "namespace/pod" label pair; nil when the metric is not served.
func byPodSeries(t *testing.T, m *Metrics) map[string]float64 {
	t.Helper()
	mfs, err := m.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != "bpfmon_alerts_by_pod_total" {
			continue
		}
		out := map[string]float64{}
		for _, s := range mf.GetMetric() {
			out[label(s, "namespace")+"/"+label(s, "pod")] += s.GetCounter().GetValue()
		}
		return out
	}
	return nil
}

func label(s *dto.Metric, name string) string {
	for _, l := range s.GetLabel() {
		if l.GetName() == name {
			return l.GetValue()
		}
	}
	return ""
}

func podAlert(p *event.Pod) *event.Event {
	ev := update(event.SourceSyscall)
	ev.Process = &event.Process{PID: 9, Pod: p}
	ev.Alert = &event.Alert{Rule: "foreign-write", Severity: "critical"}
	return ev
}

// TestPodLabels: off by default, nothing is served by pod; on, alerts are
// counted by namespace and pod as the runtime named them (a pod known by
// its uid only has none), non-alerts are not, and past 64 namespaces and
// 256 pods the labels are "other", so the series stay bounded.
func TestPodLabels(t *testing.T) {
	off := New("v1")
	off.Event(podAlert(&event.Pod{Namespace: "prod", Name: "web-1"}))
	if got := byPodSeries(t, off); got != nil {
		t.Errorf("without PodLabels: %v, want no bpfmon_alerts_by_pod_total", got)
	}

	m := New("v1")
	m.PodLabels()
	m.Event(podAlert(&event.Pod{Namespace: "prod", Name: "web-1", UID: "u"}))
	m.Event(podAlert(&event.Pod{Namespace: "prod", Name: "web-1", UID: "u"}))
	m.Event(podAlert(&event.Pod{UID: "u2"})) // not named yet
	m.Event(podAlert(nil))                   // outside a pod
	m.Event(update(event.SourceSyscall))     // no alert
	got := byPodSeries(t, m)
	if len(got) != 2 || got["prod/web-1"] != 2 || got["/"] != 2 {
		t.Errorf("series %v, want prod/web-1 2 and no pod 2", got)
	}
	if n := testutil.ToFloat64(m.alerts.WithLabelValues("foreign-write", "critical")); n != 4 {
		t.Errorf("bpfmon_alerts_total %v, want 4 whatever the pod labels", n)
	}

	// 100 namespaces of 4 pods each, then 10 more pods in prod: prod and
	// the first 63 of them (ns0 to ns62) keep their names, the others are
	// "other"; of the pods, prod/web-1, the 252 of ns0 to ns62 and 3 more
	// in prod keep theirs, the other 7 in prod are "other".
	for ns := 0; ns < 100; ns++ {
		for pod := 0; pod < 4; pod++ {
			m.Event(podAlert(&event.Pod{Namespace: fmt.Sprintf("ns%d", ns), Name: fmt.Sprintf("p%d", pod)}))
		}
	}
	for pod := 0; pod < 10; pod++ {
		m.Event(podAlert(&event.Pod{Namespace: "prod", Name: fmt.Sprintf("q%d", pod)}))
	}
	got = byPodSeries(t, m)
	namespaces, pods := map[string]bool{}, 0
	for k := range got {
		ns, pod, _ := strings.Cut(k, "/")
		if ns != "" && ns != otherLabel {
			namespaces[ns] = true
		}
		if pod != "" && pod != otherLabel {
			pods++
		}
	}
	if len(namespaces) != maxPodNamespaces || pods != maxPodNames {
		t.Errorf("%d namespaces and %d pods with their own label, want %d and %d", len(namespaces), pods, maxPodNamespaces, maxPodNames)
	}
	if got["prod/web-1"] != 2 || got["ns62/p3"] != 1 || got["ns63/p0"] != 0 || got["other/other"] != 37*4 || got["prod/q2"] != 1 || got["prod/other"] != 7 {
		t.Errorf("series prod/web-1 %v, ns62/p3 %v, ns63/p0 %v, other/other %v, prod/q2 %v, prod/other %v; want 2, 1, 0, %d, 1, 7",
			got["prod/web-1"], got["ns62/p3"], got["ns63/p0"], got["other/other"], got["prod/q2"], got["prod/other"], 37*4)
	}
}

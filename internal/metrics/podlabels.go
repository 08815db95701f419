package metrics

import (
	"sync"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/bpfmon/bpfmon/internal/event"
)

// Bounds of the pod labels: namespaces and pods are named by whoever
// creates them, and each distinct value is a series Prometheus keeps, so
// a node where pods come and go (a new name with each replica) must not
// grow the scrape without end. Past the bounds, "other".
const (
	maxPodNamespaces = 64
	maxPodNames      = 256
	otherLabel       = "other"
)

// podAlerts counts alerts by rule, severity, namespace and pod
// (bpfmon_alerts_by_pod_total, --metrics-pod-labels). A separate counter
// rather than more labels on bpfmon_alerts_total, so that the alert
// rules written for that one (contrib/prometheus) read the same series
// whether the flag is on or not.
type podAlerts struct {
	vec *prometheus.CounterVec

	mu         sync.Mutex
	namespaces map[string]bool
	pods       map[[2]string]bool
}

// PodLabels turns on bpfmon_alerts_by_pod_total; call it before the
// first event.
func (m *Metrics) PodLabels() {
	if m.byPod != nil {
		return
	}
	m.byPod = &podAlerts{vec: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "bpfmon_alerts_by_pod_total",
		Help: "Alerts raised and reported, by rule, severity and the pod of the process (--metrics-pod-labels; empty outside a pod or before the runtime named it): at most 64 namespaces and 256 pods get their own label, the rest are \"other\"."},
		[]string{"rule", "severity", "namespace", "pod"}),
		namespaces: map[string]bool{}, pods: map[[2]string]bool{}}
	m.reg.MustRegister(m.byPod.vec)
}

// count counts ev's alert under its process's pod.
func (a *podAlerts) count(ev *event.Event) {
	ns, pod := a.labels(ev.Process)
	a.vec.WithLabelValues(ev.Alert.Rule, ev.Alert.Severity, ns, pod).Inc()
}

// labels are p's namespace and pod as labels, within the bounds: a
// namespace past maxPodNamespaces is "other" (and so is its pod), a pod
// past maxPodNames is "other" in its namespace. Only the runtime's names
// are used (a pod known only by its uid has no namespace yet).
func (a *podAlerts) labels(p *event.Process) (ns, pod string) {
	if p == nil || p.Pod == nil || p.Pod.Namespace == "" {
		return "", ""
	}
	ns, pod = p.Pod.Namespace, p.Pod.Name
	a.mu.Lock()
	defer a.mu.Unlock()
	if !a.namespaces[ns] {
		if len(a.namespaces) >= maxPodNamespaces {
			return otherLabel, otherLabel
		}
		a.namespaces[ns] = true
	}
	if k := [2]string{ns, pod}; !a.pods[k] {
		if len(a.pods) >= maxPodNames {
			return ns, otherLabel
		}
		a.pods[k] = true
	}
	return ns, pod
}

package kubernetes

import (
	"fmt"
	"slices"
	"strings"
	"testing"

	"helm.sh/helm/v4/pkg/chart/common"
	"helm.sh/helm/v4/pkg/chart/common/util"
	"helm.sh/helm/v4/pkg/chart/loader"
	"helm.sh/helm/v4/pkg/engine"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	"sigs.k8s.io/yaml"
)

const chartDir = "../helm/bpfmon"

// renderChart renders the chart with Helm's own engine, as helm install
// -n bpfmon would with values (nil: the defaults), and decodes the
// objects strictly (decodeManifest).
func renderChart(t *testing.T, values map[string]any) (m *manifest, policySum string) {
	t.Helper()
	ch, err := loader.Load(chartDir)
	if err != nil {
		t.Fatalf("loading the chart: %v", err)
	}
	vals, err := util.ToRenderValues(ch, values, common.ReleaseOptions{Name: "bpfmon", Namespace: "bpfmon", IsInstall: true}, common.DefaultCapabilities)
	if err != nil {
		t.Fatalf("the chart's values: %v", err)
	}
	files, err := engine.Render(ch, vals)
	if err != nil {
		t.Fatalf("rendering the chart: %v", err)
	}
	var names []string
	for name := range files {
		if strings.HasSuffix(name, ".yaml") {
			names = append(names, name)
		}
	}
	slices.Sort(names)
	var all strings.Builder
	for _, name := range names {
		fmt.Fprintf(&all, "---\n# Source: %s\n%s\n", name, files[name])
	}
	m, err = decodeManifest([]byte(all.String()))
	if err != nil {
		t.Fatalf("the rendered chart: %v\n%s", err, &all)
	}
	// The chart's one addition: a new policy rolls the pods.
	ann := m.daemonSet.Spec.Template.Annotations
	policySum = ann["checksum/policy"]
	if len(policySum) != 64 {
		t.Errorf("the pod template's checksum/policy annotation: %q, want the policy's SHA-256", policySum)
	}
	delete(ann, "checksum/policy")
	return m, policySum
}

// TestHelmChartDefaults: the chart (contrib/helm/bpfmon), rendered by
// Helm's engine with its default values into the release namespace
// bpfmon, yields the same objects as bpfmon.yaml, both decoded strictly,
// but for the pod template's checksum/policy annotation: a default or a
// setting changed in one and not the other fails here.
func TestHelmChartDefaults(t *testing.T) {
	want := loadManifest(t)
	got, _ := renderChart(t, nil)
	for _, o := range []struct {
		kind      string
		got, want any
	}{
		{"Namespace", got.namespace, want.namespace},
		{"ServiceAccount", got.serviceAccount, want.serviceAccount},
		{"ConfigMap", got.policy, want.policy},
		{"DaemonSet", got.daemonSet, want.daemonSet},
	} {
		g, _ := yaml.Marshal(o.got)
		w, _ := yaml.Marshal(o.want)
		if string(g) != string(w) {
			t.Errorf("%s: the chart's defaults and %s differ:\n%s", o.kind, manifestFile, lineDiff(string(w), string(g)))
		}
	}
}

// lineDiff lists the lines only in a (-) and only in b (+).
func lineDiff(a, b string) string {
	al, bl := strings.Split(a, "\n"), strings.Split(b, "\n")
	var out []string
	for _, l := range al {
		if !slices.Contains(bl, l) {
			out = append(out, "- "+l)
		}
	}
	for _, l := range bl {
		if !slices.Contains(al, l) {
			out = append(out, "+ "+l)
		}
	}
	return strings.Join(out, "\n")
}

// TestHelmChartValues: each value the chart documents reaches the object
// it is meant for.
func TestHelmChartValues(t *testing.T) {
	policy := "version: 1\nprotect:\n  - pin: /sys/fs/bpf/tetragon/policy_conf\nowners: []\n"
	m, sum := renderChart(t, map[string]any{
		"image":   map[string]any{"repository": "registry.example/bpfmon", "tag": "1.2.3", "pullPolicy": "Always"},
		"policy":  policy,
		"metrics": map[string]any{"port": 9100},
		"resources": map[string]any{
			"requests": map[string]any{"cpu": "100m", "memory": "256Mi"},
			"limits":   map[string]any{"memory": "2Gi"},
		},
		"tolerations": []any{map[string]any{"key": "node-role.kubernetes.io/control-plane", "operator": "Exists", "effect": "NoSchedule"}},
		"extraArgs":   []any{"--enforce", "--scan-interval=30s"},
		"goMemLimit":  "1700MiB",
		"criSocket":   "/run/crio/crio.sock",
	})
	spec := m.daemonSet.Spec.Template.Spec
	c := &spec.Containers[0]
	if c.Image != "registry.example/bpfmon:1.2.3" || c.ImagePullPolicy != corev1.PullAlways {
		t.Errorf("image %s, pull policy %s", c.Image, c.ImagePullPolicy)
	}
	if m.policy.Data["policy.yaml"] != policy {
		t.Errorf("policy.yaml: %q, want %q", m.policy.Data["policy.yaml"], policy)
	}
	if addr, _ := flagValue(c.Args, "metrics-addr"); addr != ":9100" || c.Ports[0].ContainerPort != 9100 ||
		m.daemonSet.Spec.Template.Annotations["prometheus.io/port"] != "9100" {
		t.Errorf("metrics port 9100: --metrics-addr %s, containerPort %d, prometheus.io/port %s", addr, c.Ports[0].ContainerPort, m.daemonSet.Spec.Template.Annotations["prometheus.io/port"])
	}
	r := c.Resources
	if !r.Requests.Cpu().Equal(resource.MustParse("100m")) || !r.Requests.Memory().Equal(resource.MustParse("256Mi")) ||
		!r.Limits.Memory().Equal(resource.MustParse("2Gi")) {
		t.Errorf("resources: %v", r)
	}
	if len(spec.Tolerations) != 1 || spec.Tolerations[0].Key != "node-role.kubernetes.io/control-plane" || spec.Tolerations[0].Effect != corev1.TaintEffectNoSchedule {
		t.Errorf("tolerations: %v", spec.Tolerations)
	}
	if n := len(c.Args); n < 2 || c.Args[n-2] != "--enforce" || c.Args[n-1] != "--scan-interval=30s" {
		t.Errorf("args %v: want the extra args at the end", c.Args)
	}
	if len(c.Env) != 1 || c.Env[0].Value != "1700MiB" {
		t.Errorf("env %v: want GOMEMLIMIT=1700MiB", c.Env)
	}
	cri := false
	for _, vm := range c.VolumeMounts {
		if vm.Name == "cri-socket" && vm.MountPath == "/run/crio/crio.sock" && vm.ReadOnly {
			cri = true
		}
	}
	for _, v := range spec.Volumes {
		if v.Name == "cri-socket" && (v.HostPath == nil || v.HostPath.Path != "/run/crio/crio.sock") {
			cri = false
		}
	}
	if !cri {
		t.Errorf("criSocket /run/crio/crio.sock: not mounted read-only from the host at the same path")
	}
	if _, defSum := renderChart(t, nil); defSum == sum {
		t.Errorf("checksum/policy is %s for the default policy and another: a new policy would not roll the pods", sum)
	}
}

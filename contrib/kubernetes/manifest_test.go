package kubernetes

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	kjson "k8s.io/apimachinery/pkg/runtime/serializer/json"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
)

const (
	manifestFile = "bpfmon.yaml"
	readmeFile   = "../../docs/deployment.md" // the deployment guide, whose Kubernetes section documents the command line
	unitFile     = "../systemd/bpfmon.service"
	repoRoot     = "../.."
)

// manifest is what bpfmon.yaml declares, one object of each kind.
type manifest struct {
	namespace      *corev1.Namespace
	serviceAccount *corev1.ServiceAccount
	policy         *corev1.ConfigMap
	daemonSet      *appsv1.DaemonSet
}

// decodeManifest decodes every document of a multi-document YAML file with
// apimachinery's strict decoder, as the API server's strict field
// validation does: an unknown field, a field in the wrong case (encoding/json
// would take hostPid for hostPID), a duplicate key or a value of the wrong
// type is an error, as is a kind the manifest is not meant to hold or a
// second object of one kind.
func decodeManifest(data []byte) (*manifest, error) {
	scheme := runtime.NewScheme()
	if err := errors.Join(corev1.AddToScheme(scheme), appsv1.AddToScheme(scheme)); err != nil {
		return nil, err
	}
	decoder := kjson.NewSerializerWithOptions(kjson.DefaultMetaFactory, scheme, scheme, kjson.SerializerOptions{Yaml: true, Strict: true})
	m := &manifest{}
	rd := utilyaml.NewYAMLReader(bufio.NewReader(bytes.NewReader(data)))
	for n := 1; ; n++ {
		doc, err := rd.Read()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("document %d: %w", n, err)
		}
		if len(bytes.TrimSpace(stripComments(doc))) == 0 {
			continue // comments only
		}
		obj, gvk, err := decoder.Decode(doc, nil, nil)
		if err != nil {
			return nil, fmt.Errorf("document %d: %w", n, err)
		}
		dup := false
		switch o := obj.(type) {
		case *corev1.Namespace:
			dup, m.namespace = m.namespace != nil, o
		case *corev1.ServiceAccount:
			dup, m.serviceAccount = m.serviceAccount != nil, o
		case *corev1.ConfigMap:
			dup, m.policy = m.policy != nil, o
		case *appsv1.DaemonSet:
			dup, m.daemonSet = m.daemonSet != nil, o
		default:
			return nil, fmt.Errorf("document %d: unexpected %s", n, gvk)
		}
		if dup {
			return nil, fmt.Errorf("document %d: a second %s", n, gvk.Kind)
		}
	}
	if m.namespace == nil || m.serviceAccount == nil || m.policy == nil || m.daemonSet == nil {
		return nil, errors.New("want a Namespace, a ServiceAccount, a ConfigMap and a DaemonSet")
	}
	return m, nil
}

func stripComments(doc []byte) []byte {
	var out []byte
	for _, line := range bytes.Split(doc, []byte("\n")) {
		if t := bytes.TrimSpace(line); len(t) > 0 && t[0] != '#' {
			out = append(out, line...)
			out = append(out, '\n')
		}
	}
	return out
}

var (
	loadOnce sync.Once
	loaded   *manifest
	loadErr  error
)

func loadManifest(t *testing.T) *manifest {
	t.Helper()
	loadOnce.Do(func() {
		data, err := os.ReadFile(manifestFile)
		if err != nil {
			loadErr = err
			return
		}
		loaded, loadErr = decodeManifest(data)
	})
	if loadErr != nil {
		t.Fatalf("%s: %v", manifestFile, loadErr)
	}
	return loaded
}

// container returns the DaemonSet's only container.
func container(t *testing.T, m *manifest) *corev1.Container {
	t.Helper()
	cs := m.daemonSet.Spec.Template.Spec.Containers
	if len(cs) != 1 || cs[0].Name != "bpfmon" {
		t.Fatalf("want one container named bpfmon, got %d", len(cs))
	}
	if len(m.daemonSet.Spec.Template.Spec.InitContainers) != 0 {
		t.Fatal("init containers would run with the pod's host access and are not checked here")
	}
	return &cs[0]
}

// flagValue returns the value of --name in args ("--name V" or
// "--name=V"), and whether it is there.
func flagValue(args []string, name string) (string, bool) {
	for i, a := range args {
		if a == "--"+name && i+1 < len(args) {
			return args[i+1], true
		}
		if v, ok := strings.CutPrefix(a, "--"+name+"="); ok {
			return v, true
		}
	}
	return "", false
}

// TestManifestStrict: the manifest decodes into the API types with no
// unknown field, and the decoder really is strict: the same manifest with
// one field misspelt, one key duplicated or one value of the wrong type is
// refused.
func TestManifestStrict(t *testing.T) {
	loadManifest(t)
	data, err := os.ReadFile(manifestFile)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct{ what, old, new string }{
		{"a misspelt field", "      hostPID: true\n", "      hostPid: true\n"},
		{"a field the type has not", "            readOnlyRootFilesystem: true\n", "            readOnlyRootFilesystem: true\n            noNewPrivileges: true\n"},
		{"a duplicate key", "      hostPID: true\n", "      hostPID: true\n      hostPID: true\n"},
		{"a value of the wrong type", "      hostPID: true\n", "      hostPID: \"yes\"\n"},
		{"a kind the scheme has not", "kind: ServiceAccount\n", "kind: ClusterRole\n"},
		// Appended documents.
		{"an unexpected kind", "", "---\napiVersion: v1\nkind: Secret\nmetadata:\n  name: x\n  namespace: bpfmon\n"},
		{"a second DaemonSet", "", "---\napiVersion: apps/v1\nkind: DaemonSet\nmetadata:\n  name: x\n"},
	} {
		bad := append(slices.Clip(data), c.new...)
		if c.old != "" {
			if !bytes.Contains(data, []byte(c.old)) {
				t.Fatalf("%s: %q is not in the manifest: update this test", c.what, c.old)
			}
			bad = bytes.Replace(data, []byte(c.old), []byte(c.new), 1)
		}
		if _, err := decodeManifest(bad); err == nil {
			t.Errorf("%s (%q) was accepted", c.what, strings.TrimSpace(c.new))
		} else {
			t.Logf("%s: %v", c.what, err)
		}
	}
}

// TestManifestPod: the invariants that make the DaemonSet work: the host's
// processes, every node, no privileged mode but only the capabilities
// bpfmon needs (the systemd unit's), the metrics port and its scrape
// annotations, the probes on it.
func TestManifestPod(t *testing.T) {
	m := loadManifest(t)
	ds, pod := m.daemonSet, &m.daemonSet.Spec.Template.Spec
	c := container(t, m)
	ns := m.namespace.Name
	for what, got := range map[string]string{"ServiceAccount": m.serviceAccount.Namespace, "ConfigMap": m.policy.Namespace, "DaemonSet": ds.Namespace} {
		if got != ns {
			t.Errorf("%s in namespace %q, want the manifest's %q", what, got, ns)
		}
	}
	if m.namespace.Labels["pod-security.kubernetes.io/enforce"] != "privileged" {
		t.Error("the namespace must allow the privileged Pod Security level: baseline refuses hostPID and hostPath")
	}
	sel, err := metav1.LabelSelectorAsMap(ds.Spec.Selector)
	if err != nil || len(sel) == 0 {
		t.Fatalf("selector: %v", err)
	}
	for k, v := range sel {
		if ds.Spec.Template.Labels[k] != v {
			t.Errorf("the selector's %s=%s is not on the pod template", k, v)
		}
	}
	if !pod.HostPID {
		t.Error("hostPID: bpfmon reads every process's /proc")
	}
	if pod.HostNetwork || pod.HostIPC {
		t.Error("hostNetwork and hostIPC are not needed")
	}
	if pod.ServiceAccountName != m.serviceAccount.Name {
		t.Errorf("serviceAccountName %q, want %q", pod.ServiceAccountName, m.serviceAccount.Name)
	}
	for what, p := range map[string]*bool{"pod": pod.AutomountServiceAccountToken, "ServiceAccount": m.serviceAccount.AutomountServiceAccountToken} {
		if p == nil || *p {
			t.Errorf("%s: automountServiceAccountToken must be false: bpfmon never calls the API", what)
		}
	}
	if !slices.ContainsFunc(pod.Tolerations, func(tl corev1.Toleration) bool {
		return tl.Operator == corev1.TolerationOpExists && tl.Key == "" && tl.Effect == ""
	}) {
		t.Error("want a toleration of every taint (operator Exists, no key, no effect): every node is watched")
	}
	if g := pod.TerminationGracePeriodSeconds; g == nil || *g < 30 {
		t.Error("terminationGracePeriodSeconds: at least 30 s for the drain on SIGTERM")
	}

	sc := c.SecurityContext
	if sc == nil {
		t.Fatal("no securityContext")
	}
	if sc.Privileged == nil || *sc.Privileged {
		t.Error("privileged must be set, to false: capabilities suffice")
	}
	if sc.RunAsUser == nil || *sc.RunAsUser != 0 {
		t.Error("runAsUser 0: /proc of other users' processes and the capabilities need root")
	}
	if sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem {
		t.Error("readOnlyRootFilesystem: bpfmon writes only to its volumes")
	}
	if sc.Capabilities == nil || !slices.Equal(sc.Capabilities.Drop, []corev1.Capability{"ALL"}) {
		t.Error("capabilities.drop must be [ALL]")
	}
	if unit := unitCapabilities(t); !slices.Equal(sortedCaps(sc.Capabilities.Add), unit) {
		t.Errorf("capabilities.add %v, the systemd unit's CapabilityBoundingSet %v: bpfmon needs the same wherever it runs", sortedCaps(sc.Capabilities.Add), unit)
	}
	if sc.SeccompProfile == nil || sc.SeccompProfile.Type != corev1.SeccompProfileTypeRuntimeDefault {
		t.Error("seccompProfile RuntimeDefault: the default profile allows bpf(2) with these capabilities")
	}
	if sc.AppArmorProfile == nil || sc.AppArmorProfile.Type != corev1.AppArmorProfileTypeUnconfined {
		t.Error("appArmorProfile Unconfined: the default profile denies securityfs and ptrace reads of host processes")
	}

	addr, ok := flagValue(c.Args, "metrics-addr")
	if !ok {
		t.Fatal("no --metrics-addr in args")
	}
	_, portStr, ok := strings.Cut(addr, ":")
	port, err := strconv.Atoi(portStr)
	if !ok || err != nil {
		t.Fatalf("--metrics-addr %q: want HOST:PORT", addr)
	}
	i := slices.IndexFunc(c.Ports, func(p corev1.ContainerPort) bool { return int(p.ContainerPort) == port })
	if i < 0 || c.Ports[i].Protocol != corev1.ProtocolTCP {
		t.Fatalf("no TCP container port %d for --metrics-addr %s", port, addr)
	}
	portName := c.Ports[i].Name
	ann := ds.Spec.Template.Annotations
	if ann["prometheus.io/scrape"] != "true" || ann["prometheus.io/port"] != strconv.Itoa(port) || ann["prometheus.io/path"] != "/metrics" {
		t.Errorf("scrape annotations %v: want scrape \"true\", port %q, path /metrics", ann, strconv.Itoa(port))
	}
	for what, p := range map[string]*corev1.Probe{"startupProbe": c.StartupProbe, "readinessProbe": c.ReadinessProbe, "livenessProbe": c.LivenessProbe} {
		if p == nil || p.HTTPGet == nil {
			t.Errorf("%s: want an httpGet of /healthz", what)
			continue
		}
		g := p.HTTPGet
		if g.Path != "/healthz" || !(g.Port.String() == portName || g.Port.IntValue() == port) {
			t.Errorf("%s: GET %s on port %s, want /healthz on %s (%d)", what, g.Path, g.Port.String(), portName, port)
		}
	}
}

// unitCapabilities returns the systemd unit's CapabilityBoundingSet, as
// Kubernetes spells capabilities (no CAP_ prefix), sorted.
func unitCapabilities(t *testing.T) []corev1.Capability {
	t.Helper()
	unit, err := os.ReadFile(unitFile)
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(unit), "\n") {
		if v, ok := strings.CutPrefix(line, "CapabilityBoundingSet="); ok {
			var caps []corev1.Capability
			for _, f := range strings.Fields(v) {
				caps = append(caps, corev1.Capability(strings.TrimPrefix(f, "CAP_")))
			}
			return sortedCaps(caps)
		}
	}
	t.Fatalf("%s: no CapabilityBoundingSet", unitFile)
	return nil
}

func sortedCaps(caps []corev1.Capability) []corev1.Capability {
	s := slices.Clone(caps)
	slices.Sort(s)
	return s
}

// mountFor returns the volume mount at dir and its volume.
func mountFor(t *testing.T, m *manifest, dir string) (*corev1.VolumeMount, *corev1.Volume) {
	t.Helper()
	c := container(t, m)
	i := slices.IndexFunc(c.VolumeMounts, func(vm corev1.VolumeMount) bool { return path.Clean(vm.MountPath) == path.Clean(dir) })
	if i < 0 {
		return nil, nil
	}
	vm := &c.VolumeMounts[i]
	vols := m.daemonSet.Spec.Template.Spec.Volumes
	j := slices.IndexFunc(vols, func(v corev1.Volume) bool { return v.Name == vm.Name })
	if j < 0 {
		t.Fatalf("volume mount %s: no volume %q", dir, vm.Name)
	}
	return vm, &vols[j]
}

// TestManifestMounts: every host path bpfmon reads is mounted from the
// host at the same path, read-only; the state and output directories are
// writable host paths; the policy file is in the ConfigMap; and with a
// read-only root the temporary directory is a volume.
func TestManifestMounts(t *testing.T) {
	m := loadManifest(t)
	c := container(t, m)
	for _, want := range []struct {
		dir, why    string
		propagation corev1.MountPropagationMode
	}{
		{"/sys/fs/bpf", "pinned maps (bpffs)", corev1.MountPropagationHostToContainer},
		{"/sys/kernel/security", "the active LSMs (securityfs)", ""},
		{"/sys/kernel/tracing", "the syscall tracepoints' ids (tracefs)", ""},
		{"/sys/fs/cgroup", "the host's whole cgroup hierarchy", ""},
		{"/boot", "the kernel's config", ""},
		{"/run/containerd/containerd.sock", "the container runtime's CRI socket (process.pod)", ""},
	} {
		vm, v := mountFor(t, m, want.dir)
		switch {
		case vm == nil:
			t.Errorf("%s (%s) is not mounted", want.dir, want.why)
		case v.HostPath == nil || path.Clean(v.HostPath.Path) != want.dir:
			t.Errorf("%s (%s): want the host's %s", want.dir, want.why, want.dir)
		case !vm.ReadOnly:
			t.Errorf("%s (%s): bpfmon only reads it: mount it read-only", want.dir, want.why)
		case want.propagation != "" && (vm.MountPropagation == nil || *vm.MountPropagation != want.propagation):
			t.Errorf("%s (%s): want mountPropagation %s", want.dir, want.why, want.propagation)
		}
	}
	for _, flag := range []string{"state", "output"} {
		file, ok := flagValue(c.Args, flag)
		if !ok {
			t.Errorf("no --%s", flag)
			continue
		}
		vm, v := mountFor(t, m, path.Dir(file))
		if vm == nil || v.HostPath == nil || vm.ReadOnly ||
			v.HostPath.Type == nil || *v.HostPath.Type != corev1.HostPathDirectoryOrCreate {
			t.Errorf("--%s %s: its directory must be a writable hostPath (DirectoryOrCreate), to outlive the pod", flag, file)
		}
	}
	policy, ok := flagValue(c.Args, "policy")
	if !ok {
		t.Fatal("no --policy")
	}
	vm, v := mountFor(t, m, path.Dir(policy))
	if vm == nil || v.ConfigMap == nil || v.ConfigMap.Name != m.policy.Name || !vm.ReadOnly {
		t.Errorf("--policy %s: want its directory mounted read-only from ConfigMap %s", policy, m.policy.Name)
	} else if _, ok := m.policy.Data[path.Base(policy)]; !ok {
		t.Errorf("--policy %s: ConfigMap %s has no key %s", policy, m.policy.Name, path.Base(policy))
	}
	if vm, v := mountFor(t, m, "/tmp"); vm == nil || v.EmptyDir == nil || vm.ReadOnly {
		t.Error("/tmp: with a read-only root, a writable emptyDir for the verifier's logs")
	}
}

// TestManifestResources: requests and limits are set, and GOMEMLIMIT is
// not: bpfmon sets Go's memory limit from its flags, and the main
// module's TestDeploymentMemoryLimits holds this memory limit to the
// formula of docs/memory.md.
func TestManifestResources(t *testing.T) {
	m := loadManifest(t)
	c := container(t, m)
	r := c.Resources
	for _, name := range []corev1.ResourceName{corev1.ResourceCPU, corev1.ResourceMemory} {
		req, lim := r.Requests[name], r.Limits[name]
		if req.IsZero() || lim.IsZero() || req.Cmp(lim) > 0 {
			t.Errorf("%s: want a request at most the limit, both set (request %s, limit %s)", name, req.String(), lim.String())
		}
	}
	for _, e := range c.Env {
		if e.Name == "GOMEMLIMIT" {
			t.Errorf("GOMEMLIMIT %s overrides the limit bpfmon derives from its flags", e.Value)
		}
	}
}

// readmeCommand returns the command line in the first fenced block, under
// a heading that names Kubernetes, that starts with "bpfmon".
func readmeCommand(t *testing.T) []string {
	t.Helper()
	data, err := os.ReadFile(readmeFile)
	if err != nil {
		t.Fatal(err)
	}
	heading := regexp.MustCompile(`^#+ .*Kubernetes`)
	var under, inBlock bool
	var block []string
	for _, line := range strings.Split(string(data), "\n") {
		switch {
		case strings.HasPrefix(line, "```"):
			if inBlock && under && len(block) > 0 && strings.HasPrefix(block[0], "bpfmon ") {
				joined := strings.ReplaceAll(strings.Join(block, "\n"), "\\\n", " ")
				if strings.Contains(joined, "\n") {
					t.Fatalf("%s: the Kubernetes command line has more than one line:\n%s", readmeFile, joined)
				}
				return strings.Fields(joined)
			}
			inBlock, block = !inBlock, nil
		case inBlock:
			block = append(block, line)
		case strings.HasPrefix(line, "#"):
			under = heading.MatchString(line)
		}
	}
	t.Fatalf("%s: no fenced block starting with \"bpfmon \" under a heading that names Kubernetes", readmeFile)
	return nil
}

// TestManifestMatchesREADME: the container runs exactly the command line
// the deployment guide (docs/deployment.md) documents for Kubernetes.
func TestManifestMatchesREADME(t *testing.T) {
	c := container(t, loadManifest(t))
	doc := readmeCommand(t)
	got := append(slices.Clone(c.Command), c.Args...)
	want := append([]string{"/bpfmon"}, doc[1:]...)
	if !slices.Equal(got, want) {
		t.Errorf("the manifest runs\n  %s\n%s documents\n  %s", strings.Join(got, " "), readmeFile, strings.Join(doc, " "))
	}
}

func TestMain(m *testing.M) {
	childMain() // the pod runtime and the writer of pod_test.go
	code := m.Run()
	if binPath != "" {
		os.RemoveAll(filepath.Dir(binPath))
	}
	os.Exit(code)
}

var (
	buildOnce sync.Once
	binPath   string
	buildErr  error
)

// bpfmonBinary builds bpfmon from the repository once per test run,
// static as the Dockerfile builds it: the image holds nothing else.
func bpfmonBinary(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "bpfmon-k8s-test-")
		if err != nil {
			buildErr = err
			return
		}
		binPath = filepath.Join(dir, "bpfmon")
		cmd := exec.Command("go", "build", "-o", binPath, "./cmd/bpfmon")
		cmd.Dir = repoRoot
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := cmd.CombinedOutput(); err != nil {
			buildErr = fmt.Errorf("go build ./cmd/bpfmon: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return binPath
}

// TestManifestFlagsExist: every flag the container passes is one that
// `bpfmon watch --help` of this repository lists.
func TestManifestFlagsExist(t *testing.T) {
	c := container(t, loadManifest(t))
	if len(c.Args) == 0 || c.Args[0] != "watch" {
		t.Fatalf("args %v: want bpfmon watch", c.Args)
	}
	out, err := exec.Command(bpfmonBinary(t), "watch", "--help").CombinedOutput()
	if err != nil {
		t.Fatalf("bpfmon watch --help: %v\n%s", err, out)
	}
	known := map[string]bool{}
	for _, m := range regexp.MustCompile(`(?m)^  --([a-z0-9-]+)`).FindAllStringSubmatch(string(out), -1) {
		known[m[1]] = true
	}
	if len(known) < 10 {
		t.Fatalf("bpfmon watch --help lists %d flags; its format changed?\n%s", len(known), out)
	}
	var missing []string
	for _, a := range c.Args[1:] {
		if name, ok := strings.CutPrefix(a, "--"); ok {
			name, _, _ = strings.Cut(name, "=")
			if !known[name] {
				missing = append(missing, "--"+name)
			}
		}
	}
	if len(missing) > 0 {
		t.Errorf("the manifest passes flags bpfmon watch does not have: %s", strings.Join(missing, ", "))
	}
}

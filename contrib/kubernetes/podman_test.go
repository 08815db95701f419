package kubernetes

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
	corev1 "k8s.io/api/core/v1"
)

// This file runs the DaemonSet's container with a real container runtime:
// the image make dist builds (release/), loaded into podman, run by runc
// with the manifest's security context, host PID namespace, volumes and
// command line translated into podman run flags. Debian's podman 4.3 with
// crun fails on these machines (setrlimit without CAP_SYS_RESOURCE, the
// hybrid cgroup setup), so the test runs runc, with containers.conf's
// default_ulimits emptied. Podman's storage is a temporary directory of
// the test's: no image or container outlives it.

// podman runs podman with the test's own storage and configuration.
type podman struct {
	t    *testing.T
	args []string // global flags
	env  []string
}

func newPodman(t *testing.T) *podman {
	t.Helper()
	if os.Geteuid() != 0 {
		skipOrFail(t, "needs root: podman runs bpfmon's container as the DaemonSet would")
	}
	for _, tool := range []string{"podman", "/usr/sbin/runc"} {
		if _, err := exec.LookPath(tool); err != nil {
			skipOrFail(t, tool+" not installed (apt-get install podman runc)")
		}
	}
	dir := t.TempDir()
	conf := filepath.Join(dir, "containers.conf")
	if err := os.WriteFile(conf, []byte("[containers]\ndefault_ulimits = []\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	p := &podman{t: t, env: append(os.Environ(), "CONTAINERS_CONF="+conf), args: []string{
		"--root", filepath.Join(dir, "storage"), "--runroot", filepath.Join(dir, "run"), "--tmpdir", filepath.Join(dir, "tmp"),
		"--storage-driver", "vfs", "--runtime", "/usr/sbin/runc", "--cgroup-manager", "cgroupfs", "--events-backend", "none",
	}}
	t.Cleanup(func() {
		p.cmd("rm", "--all", "--force", "--time", "0").Run()
		p.cmd("rmi", "--all", "--force").Run()
	})
	return p
}

func (p *podman) cmd(args ...string) *exec.Cmd {
	cmd := exec.Command("podman", append(append([]string(nil), p.args...), args...)...)
	cmd.Env = p.env
	return cmd
}

func (p *podman) run(args ...string) string {
	p.t.Helper()
	var stderr bytes.Buffer
	cmd := p.cmd(args...)
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		p.t.Fatalf("podman %s: %v\n%s%s", strings.Join(args, " "), err, out, &stderr)
	}
	return strings.TrimSpace(string(out))
}

// distImage builds the amd64 image as make dist does and returns its path.
func distImage(t *testing.T) string {
	t.Helper()
	out := t.TempDir()
	cmd := exec.Command("go", "run", ".", "-arch", "amd64", "-out", out)
	cmd.Dir = filepath.Join(repoRoot, "release")
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("release (make dist): %v\n%s", err, b)
	}
	imgs, _ := filepath.Glob(filepath.Join(out, "*_linux_amd64.image.tar"))
	if len(imgs) != 1 {
		t.Fatalf("make dist made no amd64 image in %s: %v", out, imgs)
	}
	return imgs[0]
}

// podmanRunFlags translates the DaemonSet's pod spec into podman run
// flags. hostDirs replaces the writable hostPath volumes (the node's own
// state) with temporary directories; configMaps holds a directory with
// each ConfigMap volume's files.
func podmanRunFlags(t *testing.T, m *manifest, hostDirs, configMaps map[string]string) []string {
	t.Helper()
	spec := m.daemonSet.Spec.Template.Spec
	c := container(t, m)
	sc := c.SecurityContext
	if sc == nil || sc.Capabilities == nil {
		t.Fatal("the container has no securityContext.capabilities")
	}
	// No pod network: podman's would leave a bridge on the host, and
	// nothing here reaches bpfmon over the network (pod_test.go probes it).
	f := []string{"--network", "none"}
	if spec.HostNetwork {
		f[1] = "host"
	}
	if spec.HostPID {
		f = append(f, "--pid", "host")
	}
	if sc.Privileged != nil && *sc.Privileged {
		f = append(f, "--privileged")
	}
	if sc.ReadOnlyRootFilesystem != nil && *sc.ReadOnlyRootFilesystem {
		// Kubernetes adds no tmpfs of its own on a read-only root.
		f = append(f, "--read-only", "--read-only-tmpfs=false")
	}
	if sc.AllowPrivilegeEscalation != nil && !*sc.AllowPrivilegeEscalation {
		f = append(f, "--security-opt", "no-new-privileges")
	}
	if sc.RunAsUser != nil {
		u := strconv.FormatInt(*sc.RunAsUser, 10)
		if sc.RunAsGroup != nil {
			u += ":" + strconv.FormatInt(*sc.RunAsGroup, 10)
		}
		f = append(f, "--user", u)
	}
	for _, d := range sc.Capabilities.Drop {
		f = append(f, "--cap-drop", string(d))
	}
	for _, a := range sc.Capabilities.Add {
		f = append(f, "--cap-add", string(a))
	}
	if sc.SeccompProfile != nil && sc.SeccompProfile.Type != corev1.SeccompProfileTypeRuntimeDefault {
		t.Fatalf("seccomp profile %s: only RuntimeDefault (podman's default) is translated", sc.SeccompProfile.Type)
	}
	if sc.AppArmorProfile != nil && sc.AppArmorProfile.Type == corev1.AppArmorProfileTypeUnconfined {
		f = append(f, "--security-opt", "apparmor=unconfined")
	}
	for _, e := range c.Env {
		f = append(f, "--env", e.Name+"="+e.Value)
	}
	vols := map[string]corev1.Volume{}
	for _, v := range spec.Volumes {
		vols[v.Name] = v
	}
	for _, vm := range c.VolumeMounts {
		v, ok := vols[vm.Name]
		if !ok {
			t.Fatalf("volumeMount %s: no such volume", vm.Name)
		}
		opts := []string{"rw"}
		if vm.ReadOnly {
			opts[0] = "ro"
		}
		if vm.MountPropagation != nil && *vm.MountPropagation == corev1.MountPropagationHostToContainer {
			opts = append(opts, "rslave")
		}
		var src string
		switch {
		case v.HostPath != nil:
			src = v.HostPath.Path
			if d, ok := hostDirs[vm.Name]; ok {
				src = d
			}
			if _, err := os.Stat(src); err != nil && v.HostPath.Type != nil && *v.HostPath.Type == corev1.HostPathSocket {
				// No container runtime's socket on this machine: bpfmon
				// then names pods by uid only (the kubelet would not
				// start the pod; this test stands in for a node with one).
				continue
			}
		case v.ConfigMap != nil:
			src = configMaps[vm.Name]
		case v.EmptyDir != nil:
			size := ""
			if v.EmptyDir.SizeLimit != nil {
				size = ",tmpfs-size=" + strconv.FormatInt(v.EmptyDir.SizeLimit.Value(), 10)
			}
			f = append(f, "--mount", "type=tmpfs,destination="+vm.MountPath+size)
			continue
		default:
			t.Fatalf("volume %s: a kind this test does not translate", vm.Name)
		}
		if src == "" {
			t.Fatalf("volume %s: no source", vm.Name)
		}
		f = append(f, "--volume", src+":"+vm.MountPath+":"+strings.Join(opts, ","))
	}
	if len(c.Command) > 0 {
		cmd, _ := json.Marshal(c.Command)
		f = append(f, "--entrypoint", string(cmd))
	}
	return f
}

// TestManifestPodman runs the DaemonSet's container from the image make
// dist builds, with podman and runc and the manifest's own settings, and a
// policy that protects a map pinned on the host: a process on the host,
// of another executable, that writes the map must be reported as a
// foreign-write alert, with its pid, in the events file on the host path; the holder's own write must
// not be; podman stop (SIGTERM) must stop it with exit status 0 within
// the grace period, its state written.
func TestManifestPodman(t *testing.T) {
	pm := newPodman(t)
	m := loadManifest(t)
	c := container(t, m)
	bpffs(t)
	img := distImage(t)
	loaded := pm.run("load", "--input", img)
	ref, ok := strings.CutPrefix(loaded[strings.LastIndex(loaded, "\n")+1:], "Loaded image: ")
	if !ok {
		t.Fatalf("podman load: %s", loaded)
	}
	t.Logf("podman load %s: %s", filepath.Base(img), ref)

	// The map, held and pinned by this process (its owner) since before
	// bpfmon starts.
	name := fmt.Sprintf("pm_%d", os.Getpid()%100000000)
	mapFD, mapID, err := createHashMap(name)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(mapFD)
	pin := filepath.Join("/sys/fs/bpf", name)
	if err := pinMap(mapFD, pin); err != nil {
		t.Fatalf("pinning at %s: %v", pin, err)
	}
	defer os.Remove(pin)

	tmp := t.TempDir()
	hostDirs := map[string]string{}
	for _, v := range m.daemonSet.Spec.Template.Spec.Volumes {
		if v.HostPath != nil && v.HostPath.Type != nil && *v.HostPath.Type == corev1.HostPathDirectoryOrCreate {
			hostDirs[v.Name] = filepath.Join(tmp, v.Name)
			if err := os.Mkdir(hostDirs[v.Name], 0o755); err != nil {
				t.Fatal(err)
			}
		}
	}
	configMaps := map[string]string{}
	for _, v := range m.daemonSet.Spec.Template.Spec.Volumes {
		if v.ConfigMap != nil {
			if v.ConfigMap.Name != m.policy.Name {
				t.Fatalf("volume %s: ConfigMap %s is not the manifest's", v.Name, v.ConfigMap.Name)
			}
			d := filepath.Join(tmp, v.Name)
			os.Mkdir(d, 0o755)
			for file := range m.policy.Data {
				policy := fmt.Sprintf("version: 1\nprotect:\n  - pin: %s\n", pin)
				if err := os.WriteFile(filepath.Join(d, file), []byte(policy), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			configMaps[v.Name] = d
		}
	}

	flags := podmanRunFlags(t, m, hostDirs, configMaps)
	ctr := fmt.Sprintf("bpfmon-test-%d", os.Getpid())
	runArgs := append(append([]string{"run", "--detach", "--name", ctr}, flags...), ref)
	runArgs = append(runArgs, c.Args...)
	t.Logf("podman %s", strings.Join(runArgs, " "))
	pm.run(runArgs...)

	logs := func() string {
		b, _ := pm.cmd("logs", ctr).CombinedOutput()
		return string(b)
	}
	deadline := time.Now().Add(60 * time.Second)
	for !strings.Contains(logs(), "ready: every sensor attached") {
		if state := pm.run("inspect", "--format", "{{.State.Status}}", ctr); state != "running" {
			t.Fatalf("bpfmon's container is %s before it was ready; its log:\n%s", state, logs())
		}
		if time.Now().After(deadline) {
			t.Fatalf("bpfmon not ready within 60 s; its log:\n%s", logs())
		}
		time.Sleep(200 * time.Millisecond)
	}

	// The holder writes (an owner: no alert), then another process on the
	// host does (a foreign write).
	if err := updateMap(mapFD, 2, 7); err != nil {
		t.Fatal(err)
	}
	// The writer is another executable (a copy of this one): a process of
	// the holder's executable in the holder's cgroup is an owner too.
	self, err := os.ReadFile(os.Args[0])
	if err != nil {
		t.Fatal(err)
	}
	writerExe := filepath.Join(tmp, "writer")
	if err := os.WriteFile(writerExe, self, 0o755); err != nil {
		t.Fatal(err)
	}
	writer := exec.Command(writerExe, "-test.run=^$")
	writer.Env = append(os.Environ(), writeEnv+"="+strconv.Itoa(int(mapID)))
	if out, err := writer.CombinedOutput(); err != nil {
		t.Fatalf("writer: %v\n%s", err, out)
	}
	output, _ := flagValue(c.Args, "output")
	state, _ := flagValue(c.Args, "state")
	hostFile := func(file string) string {
		vm, v := mountFor(t, m, path.Dir(file))
		return filepath.Join(hostDirs[v.Name], strings.TrimPrefix(file, vm.MountPath))
	}
	// The alert reaches the file on the host, then podman stops the
	// container as the kubelet does (SIGTERM, then SIGKILL after the
	// grace period).
	alertLine := `"rule":"foreign-write"`
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(200 * time.Millisecond) {
		if b, _ := os.ReadFile(hostFile(output)); bytes.Contains(b, []byte(alertLine)) {
			break
		}
	}
	grace := strconv.FormatInt(*m.daemonSet.Spec.Template.Spec.TerminationGracePeriodSeconds, 10)
	pm.run("stop", "--time", grace, ctr)
	if code := pm.run("inspect", "--format", "{{.State.ExitCode}}", ctr); code != "0" {
		t.Errorf("bpfmon exited with %s on SIGTERM (podman stop, %s s grace); its log:\n%s", code, grace, logs())
	}
	if _, err := os.Stat(hostFile(state)); err != nil {
		t.Errorf("--state %s: nothing on the host path: %v", state, err)
	}
	events, err := os.ReadFile(hostFile(output))
	if err != nil {
		t.Fatalf("--output %s: %v; log:\n%s", output, err, logs())
	}
	var foreign, owner int
	for _, line := range strings.Split(strings.TrimSpace(string(events)), "\n") {
		var e struct {
			Event string `json:"event"`
			Alert *struct {
				Rule string `json:"rule"`
			} `json:"alert"`
			Process *struct {
				PID int `json:"pid"`
			} `json:"process"`
			Map *struct {
				ID uint32 `json:"id"`
			} `json:"map"`
		}
		if json.Unmarshal([]byte(line), &e) != nil || e.Map == nil || e.Map.ID != mapID || e.Event != "map_update" || e.Process == nil {
			continue
		}
		switch {
		case e.Process.PID == os.Getpid():
			owner++
		case e.Process.PID == writer.Process.Pid && e.Alert != nil && e.Alert.Rule == "foreign-write":
			foreign++
		}
	}
	if foreign != 1 || owner != 0 {
		t.Errorf("want one foreign-write alert on map %d by the host's pid %d and none for its holder %d: got %d and %d\nevents:\n%s\nlog:\n%s",
			mapID, writer.Process.Pid, os.Getpid(), foreign, owner, events, logs())
	} else {
		t.Logf("the container reported the host's write to map %d by pid %d as foreign-write", mapID, writer.Process.Pid)
	}
}

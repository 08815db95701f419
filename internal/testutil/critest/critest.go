// Package critest runs a real containerd (Debian's, with runc) as a
// private CRI runtime for live tests, and plays the kubelet against it:
// it starts pods through the CRI the way a node does, so that bpfmon's pod
// lookup is tested against the real runtime, not a stand-in.
//
// Everything is private to the test: containerd's root, state, sockets
// and plugin paths live in a temporary directory, so it cannot disturb
// another containerd on the machine. What these machines need (they
// withhold CAP_SYS_RESOURCE and cannot pull images): restrict_oom_score_adj,
// the native snapshotter, and a sandbox image built here from
// busybox-static and imported with ctr.
//
// It is a package of its own so that the CRI and gRPC libraries are
// compiled only into the tests that use it.
package critest

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	cri "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/bpfmon/bpfmon/internal/testutil"
)

// Image is the image every pod and container runs: busybox-static alone.
const Image = "localhost/bpfmon-busybox:test"

// Runtime is a private containerd serving the CRI.
type Runtime struct {
	Socket string
	dir    string
	cmd    *exec.Cmd
	log    *os.File
	conn   *grpc.ClientConn
	rt     cri.RuntimeServiceClient
	mu     sync.Mutex
	pods   []string
}

// Start runs containerd, imports the image and connects as the kubelet.
// It is stopped, its pods removed, when the test ends.
func Start(t *testing.T) *Runtime {
	t.Helper()
	testutil.RequireRoot(t)
	if testutil.InVM() {
		t.Skip("the kernel test matrix's VMs carry no containerd; the host's run (CI) runs this test")
	}
	for _, exe := range []string{"containerd", "ctr", "runc", "containerd-shim-runc-v2"} {
		if _, err := exec.LookPath(exe); err != nil {
			testutil.SkipOrFail(t, exe+" not installed (apt-get install containerd runc): the test runs pods through a real containerd")
		}
	}
	busybox, err := exec.LookPath("busybox")
	if err != nil {
		testutil.SkipOrFail(t, "busybox not installed (apt-get install busybox-static): the test builds its image from it")
	}
	// Short: unix socket paths are limited to 108 bytes.
	dir, err := os.MkdirTemp("", "bpfmon-ctd")
	if err != nil {
		t.Fatal(err)
	}
	r := &Runtime{dir: dir, Socket: filepath.Join(dir, "c.sock")}
	t.Cleanup(func() { r.cleanup(t) })
	if err := r.writeConfig(); err != nil {
		t.Fatal(err)
	}
	if err := r.start(); err != nil {
		t.Fatal(err)
	}
	archive := filepath.Join(dir, "image.tar")
	if err := writeImage(archive, busybox); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command("ctr", "--address", r.Socket, "-n", "k8s.io", "images", "import", "--snapshotter", "native", archive).CombinedOutput()
	if err != nil {
		t.Fatalf("ctr images import: %v: %s", err, out)
	}
	r.conn, err = grpc.NewClient("unix://"+r.Socket, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	r.rt = cri.NewRuntimeServiceClient(r.conn)
	return r
}

func (r *Runtime) writeConfig() error {
	d := r.dir
	for _, sub := range []string{"cni", "cni-conf"} {
		if err := os.MkdirAll(filepath.Join(d, sub), 0o700); err != nil {
			return err
		}
	}
	conf := fmt.Sprintf(`version = 2
root = %[1]q
state = %[2]q
disabled_plugins = ["io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.devmapper", "io.containerd.snapshotter.v1.zfs", "io.containerd.tracing.processor.v1.otlp", "io.containerd.internal.v1.tracing"]
[grpc]
  address = %[3]q
[ttrpc]
  address = %[4]q
[plugins."io.containerd.internal.v1.opt"]
  path = %[5]q
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = %[6]q
  restrict_oom_score_adj = true
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "native"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = %[7]q
    conf_dir = %[8]q
`, filepath.Join(d, "root"), filepath.Join(d, "state"), r.Socket, r.Socket+".ttrpc", filepath.Join(d, "opt"), Image,
		filepath.Join(d, "cni"), filepath.Join(d, "cni-conf"))
	return os.WriteFile(filepath.Join(d, "config.toml"), []byte(conf), 0o600)
}

// start runs containerd and waits for its socket.
func (r *Runtime) start() error {
	log, err := os.OpenFile(filepath.Join(r.dir, "containerd.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return err
	}
	r.log = log
	r.cmd = exec.Command("containerd", "--config", filepath.Join(r.dir, "config.toml"))
	r.cmd.Stdout, r.cmd.Stderr = log, log
	if err := r.cmd.Start(); err != nil {
		return err
	}
	deadline := time.Now().Add(testutil.Timeout(30 * time.Second))
	for {
		if c, err := net.Dial("unix", r.Socket); err == nil {
			c.Close()
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("containerd does not serve %s within 30s (log: %s)", r.Socket, filepath.Join(r.dir, "containerd.log"))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// Stop stops containerd: the pods' processes go on (each has its shim).
func (r *Runtime) Stop(t *testing.T) {
	t.Helper()
	if r.cmd == nil {
		return
	}
	testutil.Stop(r.cmd, 15*time.Second)
	r.cmd = nil
	os.Remove(r.Socket) // as a stopped runtime's socket is gone
}

// cleanup removes the pods (starting containerd again if it was
// stopped), stops containerd and removes its directory.
func (r *Runtime) cleanup(t *testing.T) {
	if r.cmd == nil && len(r.pods) > 0 {
		if err := r.start(); err != nil {
			t.Logf("restarting containerd to remove the pods: %v", err)
		}
	}
	if r.rt != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		for _, id := range r.pods {
			if _, err := r.rt.StopPodSandbox(ctx, &cri.StopPodSandboxRequest{PodSandboxId: id}); err != nil {
				t.Logf("StopPodSandbox %s: %v", id, err)
			}
			if _, err := r.rt.RemovePodSandbox(ctx, &cri.RemovePodSandboxRequest{PodSandboxId: id}); err != nil {
				t.Logf("RemovePodSandbox %s: %v", id, err)
			}
		}
		cancel()
		r.conn.Close()
	}
	r.Stop(t)
	if r.log != nil {
		r.log.Close()
	}
	// The native snapshotter's copies; runc's state is gone with the pods.
	exec.Command("umount", "-R", filepath.Join(r.dir, "state")).Run()
	os.RemoveAll(r.dir)
}

// Pod is a pod a test started: its CRI ids and the metadata the kubelet
// gave it.
type Pod struct {
	Namespace, Name, UID, Container string
	SandboxID, ContainerID          string
}

// RunPod starts a host-network pod namespace/name with one privileged
// container, container, running command, with the host's root mounted
// read-only at /host (chroot /host runs a host binary in the pod's
// cgroups). Its cgroup is /kubepods/besteffort/pod<uid>/<container id>.
func (r *Runtime) RunPod(t *testing.T, namespace, name, container string, env map[string]string, command ...string) Pod {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), testutil.Timeout(60*time.Second))
	defer cancel()
	uid := fmt.Sprintf("%08x-0000-4000-8000-%012x", time.Now().UnixNano()&0xffffffff, time.Now().UnixNano()&0xffffffffffff)
	logs := filepath.Join(r.dir, "logs", uid)
	if err := os.MkdirAll(logs, 0o700); err != nil {
		t.Fatal(err)
	}
	host := &cri.NamespaceOption{Network: cri.NamespaceMode_NODE, Pid: cri.NamespaceMode_CONTAINER, Ipc: cri.NamespaceMode_POD}
	sandbox := &cri.PodSandboxConfig{
		Metadata:     &cri.PodSandboxMetadata{Name: name, Namespace: namespace, Uid: uid},
		LogDirectory: logs,
		Linux: &cri.LinuxPodSandboxConfig{
			CgroupParent:    "/kubepods/besteffort/pod" + uid,
			SecurityContext: &cri.LinuxSandboxSecurityContext{NamespaceOptions: host, Privileged: true},
		},
	}
	run, err := r.rt.RunPodSandbox(ctx, &cri.RunPodSandboxRequest{Config: sandbox})
	if err != nil {
		t.Fatalf("RunPodSandbox %s/%s: %v (containerd log: %s)", namespace, name, err, r.logTail())
	}
	r.mu.Lock()
	r.pods = append(r.pods, run.PodSandboxId)
	r.mu.Unlock()
	var envs []*cri.KeyValue
	for k, v := range env {
		envs = append(envs, &cri.KeyValue{Key: k, Value: []byte(v)})
	}
	cc := &cri.ContainerConfig{
		Metadata: &cri.ContainerMetadata{Name: container},
		Image:    &cri.ImageSpec{Image: Image},
		Command:  command,
		Envs:     envs,
		Mounts:   []*cri.Mount{{ContainerPath: "/host", HostPath: "/", Readonly: true}},
		LogPath:  container + ".log",
		Linux: &cri.LinuxContainerConfig{
			SecurityContext: &cri.LinuxContainerSecurityContext{NamespaceOptions: host, Privileged: true},
		},
	}
	created, err := r.rt.CreateContainer(ctx, &cri.CreateContainerRequest{PodSandboxId: run.PodSandboxId, Config: cc, SandboxConfig: sandbox})
	if err != nil {
		t.Fatalf("CreateContainer in %s/%s: %v (containerd log: %s)", namespace, name, err, r.logTail())
	}
	if _, err := r.rt.StartContainer(ctx, &cri.StartContainerRequest{ContainerId: created.ContainerId}); err != nil {
		t.Fatalf("StartContainer in %s/%s: %v (containerd log: %s)", namespace, name, err, r.logTail())
	}
	return Pod{Namespace: namespace, Name: name, UID: uid, Container: container, SandboxID: run.PodSandboxId, ContainerID: created.ContainerId}
}

// Logs returns what a pod's container wrote.
func (r *Runtime) Logs(p Pod) string {
	b, _ := os.ReadFile(filepath.Join(r.dir, "logs", p.UID, p.Container+".log"))
	return string(b)
}

// logTail is the end of containerd's log, for errors.
func (r *Runtime) logTail() string {
	b, _ := os.ReadFile(filepath.Join(r.dir, "containerd.log"))
	if len(b) > 2000 {
		b = b[len(b)-2000:]
	}
	return string(b)
}

// writeImage writes a docker-archive of one layer holding busybox as
// /bin/busybox and the applets the tests run, its default command a long
// sleep (it is also the pods' sandbox, "pause", image).
func writeImage(path, busybox string) error {
	bin, err := os.ReadFile(busybox)
	if err != nil {
		return err
	}
	var layer bytes.Buffer
	tw := tar.NewWriter(&layer)
	tw.WriteHeader(&tar.Header{Name: "bin/", Typeflag: tar.TypeDir, Mode: 0o755})
	tw.WriteHeader(&tar.Header{Name: "bin/busybox", Typeflag: tar.TypeReg, Mode: 0o755, Size: int64(len(bin))})
	tw.Write(bin)
	for _, a := range []string{"sh", "sleep", "chroot", "cat", "echo"} {
		tw.WriteHeader(&tar.Header{Name: "bin/" + a, Typeflag: tar.TypeSymlink, Linkname: "busybox", Mode: 0o777})
	}
	for _, d := range []string{"host/", "proc/", "sys/", "dev/", "etc/", "tmp/"} {
		tw.WriteHeader(&tar.Header{Name: d, Typeflag: tar.TypeDir, Mode: 0o755})
	}
	if err := tw.Close(); err != nil {
		return err
	}
	sum := sha256.Sum256(layer.Bytes())
	diffID := "sha256:" + hex.EncodeToString(sum[:])
	config, _ := json.Marshal(map[string]any{
		"architecture": runtime.GOARCH, "os": "linux",
		"config": map[string]any{"Cmd": []string{"/bin/sleep", "1000000"}},
		"rootfs": map[string]any{"type": "layers", "diff_ids": []string{diffID}},
	})
	manifest, _ := json.Marshal([]map[string]any{{"Config": "config.json", "RepoTags": []string{Image}, "Layers": []string{"layer.tar"}}})
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	defer f.Close()
	out := tar.NewWriter(f)
	for _, e := range []struct {
		name string
		data []byte
	}{{"layer.tar", layer.Bytes()}, {"config.json", config}, {"manifest.json", manifest}} {
		if err := out.WriteHeader(&tar.Header{Name: e.name, Typeflag: tar.TypeReg, Mode: 0o644, Size: int64(len(e.data))}); err != nil {
			return err
		}
		if _, err := out.Write(e.data); err != nil {
			return err
		}
	}
	return out.Close()
}

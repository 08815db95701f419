package kubernetes

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/http"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
	corev1 "k8s.io/api/core/v1"
)

// This file runs the DaemonSet's container on this machine as a container
// runtime would, from the decoded manifest: a mount namespace whose root is
// an image of the static binary alone, read-only; proc and a read-only
// sysfs; each volume where the manifest mounts it (hostPath volumes bound
// from the host, read-only where it says, the ConfigMap's files, an
// emptyDir); the host's pid namespace (hostPID) but a cgroup namespace of
// its own, as containerd gives a non-privileged container on cgroup v2;
// only the capabilities the manifest adds (as the bounding set, so that
// root gets exactly those), no_new_privs, the manifest's environment and
// command line. A capability, a mount or a flag that bpfmon needs and the
// manifest lacks fails here, not on a cluster.
//
// podman_test.go runs the same container with a real runtime (podman and
// runc, from the image make dist builds). This hand-made runtime stays for
// what podman cannot give on these machines: a cgroup namespace rooted at
// a pod's cgroup v2 directory, beside other pods' with containerd's
// container ids (podman's cgroupfs manager follows this machine's hybrid
// v1 hierarchy), against which an alert's cgroup and container_id are
// checked; and the startup probe asked over HTTP from outside the
// container, as the kubelet asks it, without a pod network (podman's
// would leave a bridge on the host). The other checks here (holders in
// other pods and of other users, bpfmon maps in the container) run in the
// same pod and cost nothing more.

// podSpec is what the test hands to the runtime child (runPod).
type podSpec struct {
	Root       string     // the image: a directory holding /bpfmon and mount points
	Mounts     []podMount // in order
	Caps       []string   // capability names, as the manifest spells them
	NoNewPrivs bool       // allowPrivilegeEscalation: false
	ReadOnly   bool       // readOnlyRootFilesystem
	CgroupNS   bool       // a cgroup namespace of its own
	Env        []string   // KEY=VALUE
	Argv       []string   // command and args
}

type podMount struct {
	Source, Target, FSType string // FSType "" for a bind mount
	ReadOnly               bool
}

const podEnv = "BPFMON_K8S_TEST_POD"     // the runtime child: the path of its podSpec
const writeEnv = "BPFMON_K8S_TEST_WRITE" // a writer child: the id of the map to update
const holdEnv = "BPFMON_K8S_TEST_HOLD"   // a holder child: fd 3 is the map; update it on a line of stdin

func init() {
	// The runtime child must run on one thread from the start: the
	// bounding set and no_new_privs are per thread, and it execs from it.
	if os.Getenv(podEnv) != "" {
		runtime.LockOSThread()
	}
}

// childMain runs the test binary's other roles, before any test; it
// returns only when the binary was started as the test runner.
func childMain() {
	if p := os.Getenv(podEnv); p != "" {
		err := runPod(p)
		fmt.Fprintln(os.Stderr, "pod runtime:", err)
		os.Exit(125)
	}
	if os.Getenv(holdEnv) != "" {
		if _, err := bufio.NewReader(os.Stdin).ReadString('\n'); err != nil {
			os.Exit(0) // stdin closed: no write asked for
		}
		if err := updateMap(3, 3, 0xa9e7); err != nil {
			fmt.Fprintln(os.Stderr, "holder:", err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	if id := os.Getenv(writeEnv); id != "" {
		n, _ := strconv.ParseUint(id, 10, 32)
		if err := updateMapByID(uint32(n), 1, 0x5eed); err != nil {
			fmt.Fprintln(os.Stderr, "writer:", err)
			os.Exit(1)
		}
		os.Exit(0)
	}
}

// runPod sets the container up as the spec says and execs its command; it
// returns only on failure.
func runPod(specPath string) error {
	data, err := os.ReadFile(specPath)
	if err != nil {
		return err
	}
	var s podSpec
	if err := json.Unmarshal(data, &s); err != nil {
		return err
	}
	flags := unix.CLONE_NEWNS
	if s.CgroupNS {
		flags |= unix.CLONE_NEWCGROUP
	}
	if err := unix.Unshare(flags); err != nil {
		return fmt.Errorf("unshare: %w", err)
	}
	if err := unix.Mount("", "/", "", unix.MS_REC|unix.MS_PRIVATE, ""); err != nil {
		return fmt.Errorf("making / private: %w", err)
	}
	if err := unix.Mount(s.Root, s.Root, "", unix.MS_BIND, ""); err != nil {
		return fmt.Errorf("the image: %w", err)
	}
	for _, m := range s.Mounts {
		target := filepath.Join(s.Root, m.Target)
		var err error
		if m.FSType != "" {
			fl := uintptr(unix.MS_NOSUID | unix.MS_NODEV | unix.MS_NOEXEC)
			if m.ReadOnly {
				fl |= unix.MS_RDONLY
			}
			err = unix.Mount(m.Source, target, m.FSType, fl, "")
		} else {
			// A file is bound onto a file: make one (in /dev's tmpfs).
			if fi, serr := os.Stat(m.Source); serr == nil && !fi.IsDir() {
				if f, cerr := os.OpenFile(target, os.O_CREATE|os.O_RDONLY, 0o644); cerr == nil {
					f.Close()
				}
			}
			err = unix.Mount(m.Source, target, "", unix.MS_BIND|unix.MS_REC, "")
			if err == nil && m.ReadOnly {
				err = unix.Mount("", target, "", unix.MS_REMOUNT|unix.MS_BIND|unix.MS_RDONLY, "")
			}
		}
		if err != nil {
			return fmt.Errorf("mounting %s at %s: %w", m.Source, m.Target, err)
		}
	}
	if s.ReadOnly {
		if err := unix.Mount("", s.Root, "", unix.MS_REMOUNT|unix.MS_BIND|unix.MS_RDONLY, ""); err != nil {
			return fmt.Errorf("read-only root: %w", err)
		}
	}
	if err := unix.Chroot(s.Root); err != nil {
		return fmt.Errorf("chroot: %w", err)
	}
	if err := unix.Chdir("/"); err != nil {
		return err
	}
	keep := map[int]bool{}
	for _, c := range s.Caps {
		n, ok := capNumbers[c]
		if !ok {
			return fmt.Errorf("unknown capability %s", c)
		}
		keep[n] = true
	}
	last, err := os.ReadFile("/proc/sys/kernel/cap_last_cap")
	if err != nil {
		return err
	}
	lastCap, err := strconv.Atoi(strings.TrimSpace(string(last)))
	if err != nil {
		return err
	}
	for c := 0; c <= lastCap; c++ {
		if !keep[c] {
			if err := unix.Prctl(unix.PR_CAPBSET_DROP, uintptr(c), 0, 0, 0); err != nil {
				return fmt.Errorf("dropping capability %d: %w", c, err)
			}
		}
	}
	if err := unix.Prctl(unix.PR_CAP_AMBIENT, unix.PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0); err != nil {
		return err
	}
	if s.NoNewPrivs {
		if err := unix.Prctl(unix.PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0); err != nil {
			return err
		}
	}
	return syscall.Exec(s.Argv[0], s.Argv, s.Env)
}

// capNumbers: linux/capability.h, for the capabilities a manifest may add.
var capNumbers = map[string]int{
	"CHOWN": 0, "DAC_OVERRIDE": 1, "DAC_READ_SEARCH": 2, "FOWNER": 3, "FSETID": 4, "KILL": 5,
	"SETGID": 6, "SETUID": 7, "SETPCAP": 8, "NET_BIND_SERVICE": 10, "NET_ADMIN": 12, "NET_RAW": 13,
	"IPC_LOCK": 14, "SYS_CHROOT": 18, "SYS_PTRACE": 19, "SYS_ADMIN": 21, "SYS_RESOURCE": 24,
	"SYSLOG": 34, "PERFMON": 38, "BPF": 39,
}

// podFixture is one run of the DaemonSet's container.
type podFixture struct {
	t        *testing.T
	m        *manifest
	c        *corev1.Container
	image    string            // the image's root directory
	hostDirs map[string]string // hostPath volumes this test gives temporary directories instead
	policy   string            // policy.yaml for the ConfigMap, in place of the manifest's
	cgroupFD int               // the pod's cgroup, or -1
	tmp      string
}

// newPod prepares the image and the volumes' sources.
func newPod(t *testing.T, m *manifest, policy string, cgroupFD int) *podFixture {
	t.Helper()
	p := &podFixture{t: t, m: m, c: container(t, m), image: t.TempDir(), policy: policy, cgroupFD: cgroupFD, tmp: t.TempDir(),
		hostDirs: map[string]string{}}
	bin, err := os.ReadFile(bpfmonBinary(t))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(p.image, "bpfmon"), bin, 0o755); err != nil {
		t.Fatal(err)
	}
	// The writable host paths are the node's own state: this test gives
	// them temporary directories.
	for _, v := range m.daemonSet.Spec.Template.Spec.Volumes {
		if v.HostPath != nil && v.HostPath.Type != nil && *v.HostPath.Type == corev1.HostPathDirectoryOrCreate {
			p.hostDirs[v.Name] = filepath.Join(p.tmp, v.Name)
			if err := os.Mkdir(p.hostDirs[v.Name], 0o755); err != nil {
				t.Fatal(err)
			}
		}
	}
	return p
}

// spec returns the runtime's spec for a run of the container with args in
// place of the manifest's (nil: the manifest's).
func (p *podFixture) spec(args []string) podSpec {
	t := p.t
	t.Helper()
	s := podSpec{Root: p.image, CgroupNS: p.cgroupFD >= 0}
	mkdir := func(target string) {
		if err := os.MkdirAll(filepath.Join(p.image, target), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	mkdir("/proc")
	mkdir("/sys")
	mkdir("/dev")
	s.Mounts = append(s.Mounts,
		podMount{Source: "proc", Target: "/proc", FSType: "proc"},
		podMount{Source: "sysfs", Target: "/sys", FSType: "sysfs", ReadOnly: true},
		podMount{Source: "tmpfs", Target: "/dev", FSType: "tmpfs"})
	for _, dev := range []string{"null", "zero", "full", "random", "urandom"} {
		target := "/dev/" + dev
		s.Mounts = append(s.Mounts, podMount{Source: target, Target: target})
	}
	vols := map[string]corev1.Volume{}
	for _, v := range p.m.daemonSet.Spec.Template.Spec.Volumes {
		vols[v.Name] = v
	}
	mounts := slices.Clone(p.c.VolumeMounts)
	// As runtimes do: a mount inside another comes after it.
	slices.SortStableFunc(mounts, func(a, b corev1.VolumeMount) int {
		return strings.Count(path.Clean(a.MountPath), "/") - strings.Count(path.Clean(b.MountPath), "/")
	})
	for _, vm := range mounts {
		v := vols[vm.Name]
		var src string
		switch {
		case p.hostDirs[v.Name] != "":
			src = p.hostDirs[v.Name]
		case v.HostPath != nil:
			src = v.HostPath.Path
			fi, err := os.Stat(src)
			switch {
			case err == nil && !fi.IsDir():
				t.Fatalf("volume %s: host path %s is not a directory", v.Name, src)
			case err != nil && v.HostPath.Type != nil && *v.HostPath.Type == corev1.HostPathDirectory:
				t.Fatalf("volume %s: host path %s (type Directory) is missing on this machine: the pod would not start", v.Name, src)
			case err != nil:
				// The runtime would create it on the host; this test does not.
				src = filepath.Join(p.tmp, "created-"+v.Name)
				os.MkdirAll(src, 0o755)
			}
		case v.ConfigMap != nil:
			if v.ConfigMap.Name != p.m.policy.Name {
				t.Fatalf("volume %s: ConfigMap %s is not the manifest's", v.Name, v.ConfigMap.Name)
			}
			src = filepath.Join(p.tmp, "configmap-"+v.Name)
			os.MkdirAll(src, 0o755)
			for k, data := range p.m.policy.Data {
				if k == "policy.yaml" && p.policy != "" {
					data = p.policy
				}
				if err := os.WriteFile(filepath.Join(src, k), []byte(data), 0o644); err != nil {
					t.Fatal(err)
				}
			}
		case v.EmptyDir != nil:
			src = filepath.Join(p.tmp, "emptydir-"+v.Name)
			os.MkdirAll(src, 0o777)
		default:
			t.Fatalf("volume %s: a kind this test cannot provide", v.Name)
		}
		mkdir(vm.MountPath)
		s.Mounts = append(s.Mounts, podMount{Source: src, Target: vm.MountPath, ReadOnly: vm.ReadOnly})
	}
	sc := p.c.SecurityContext
	for _, c := range sc.Capabilities.Add {
		s.Caps = append(s.Caps, string(c))
	}
	s.NoNewPrivs = sc.AllowPrivilegeEscalation != nil && !*sc.AllowPrivilegeEscalation
	s.ReadOnly = sc.ReadOnlyRootFilesystem != nil && *sc.ReadOnlyRootFilesystem
	for _, e := range p.c.Env {
		if e.ValueFrom != nil {
			t.Fatalf("env %s: valueFrom is not supported by this test", e.Name)
		}
		s.Env = append(s.Env, e.Name+"="+e.Value)
	}
	if args == nil {
		args = p.c.Args
	}
	s.Argv = append(slices.Clone(p.c.Command), args...)
	return s
}

// start starts the container with args (nil: the manifest's).
func (p *podFixture) start(args []string, stdout, stderr *bytes.Buffer) *exec.Cmd {
	t := p.t
	t.Helper()
	data, err := json.Marshal(p.spec(args))
	if err != nil {
		t.Fatal(err)
	}
	specPath := filepath.Join(p.tmp, fmt.Sprintf("spec-%d.json", rand.Uint64()))
	if err := os.WriteFile(specPath, data, 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), podEnv+"="+specPath)
	cmd.Stdout, cmd.Stderr = stdout, stderr
	if p.cgroupFD >= 0 {
		cmd.SysProcAttr = &syscall.SysProcAttr{UseCgroupFD: true, CgroupFD: p.cgroupFD}
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	return cmd
}

// cgroup2Root returns where the cgroup v2 hierarchy is mounted, "" if
// nowhere.
func cgroup2Root() string {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return ""
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		for i, fl := range fields {
			if fl == "-" && i+1 < len(fields) && fields[i+1] == "cgroup2" && len(fields) > 4 {
				return fields[4]
			}
		}
	}
	return ""
}

// The raw bpf(2) calls this test makes: creating a map, opening one by id,
// updating it, pinning it.

func bpf(cmd int, attr unsafe.Pointer, size uintptr) (int, error) {
	r, _, errno := unix.Syscall(unix.SYS_BPF, uintptr(cmd), uintptr(attr), size)
	if errno != 0 {
		return -1, errno
	}
	return int(r), nil
}

func createHashMap(name string) (fd int, id uint32, err error) {
	var attr struct {
		mapType, keySize, valueSize, maxEntries, mapFlags, innerMapFD, numaNode uint32
		name                                                                    [16]byte
		_                                                                       [64]byte
	}
	attr.mapType, attr.keySize, attr.valueSize, attr.maxEntries = unix.BPF_MAP_TYPE_HASH, 4, 8, 8
	copy(attr.name[:15], name)
	fd, err = bpf(unix.BPF_MAP_CREATE, unsafe.Pointer(&attr), unsafe.Sizeof(attr))
	if err != nil {
		return -1, 0, fmt.Errorf("BPF_MAP_CREATE: %w", err)
	}
	info, err := os.ReadFile("/proc/self/fdinfo/" + strconv.Itoa(fd))
	if err != nil {
		return -1, 0, err
	}
	for _, line := range strings.Split(string(info), "\n") {
		if v, ok := strings.CutPrefix(line, "map_id:"); ok {
			n, err := strconv.ParseUint(strings.TrimSpace(v), 10, 32)
			return fd, uint32(n), err
		}
	}
	return -1, 0, fmt.Errorf("no map_id in fdinfo")
}

func updateMap(fd int, key uint32, value uint64) error {
	var attr struct {
		mapFD uint32
		_     uint32
		key   uint64
		value uint64
		flags uint64
	}
	attr.mapFD = uint32(fd)
	attr.key, attr.value = uint64(uintptr(unsafe.Pointer(&key))), uint64(uintptr(unsafe.Pointer(&value)))
	_, err := bpf(unix.BPF_MAP_UPDATE_ELEM, unsafe.Pointer(&attr), unsafe.Sizeof(attr))
	runtime.KeepAlive(&key)
	runtime.KeepAlive(&value)
	return err
}

func updateMapByID(id uint32, key uint32, value uint64) error {
	var attr struct{ id, nextID, openFlags uint32 }
	attr.id = id
	fd, err := bpf(unix.BPF_MAP_GET_FD_BY_ID, unsafe.Pointer(&attr), unsafe.Sizeof(attr))
	if err != nil {
		return fmt.Errorf("BPF_MAP_GET_FD_BY_ID %d: %w", id, err)
	}
	defer unix.Close(fd)
	return updateMap(fd, key, value)
}

func pinMap(fd int, pathname string) error {
	p, err := unix.BytePtrFromString(pathname)
	if err != nil {
		return err
	}
	var attr struct {
		pathname         uint64
		bpfFD, fileFlags uint32
	}
	attr.pathname, attr.bpfFD = uint64(uintptr(unsafe.Pointer(p))), uint32(fd)
	_, err = bpf(unix.BPF_OBJ_PIN, unsafe.Pointer(&attr), unsafe.Sizeof(attr))
	runtime.KeepAlive(p)
	return err
}

// bpffs mounts a bpffs at /sys/fs/bpf if none is there, as the nodes that
// run BPF tools have.
func bpffs(t *testing.T) {
	t.Helper()
	var st unix.Statfs_t
	if err := unix.Statfs("/sys/fs/bpf", &st); err == nil && st.Type == unix.BPF_FS_MAGIC {
		return
	}
	if err := unix.Mount("bpf", "/sys/fs/bpf", "bpf", 0, ""); err != nil {
		skipOrFail(t, "no bpffs at /sys/fs/bpf, and mounting one failed: "+err.Error())
	}
}

// skipOrFail skips, or fails where CI is set: CI's machine has what these
// tests need.
func skipOrFail(t *testing.T, reason string) {
	t.Helper()
	if os.Getenv("CI") != "" {
		t.Fatal("prerequisite missing in CI: " + reason)
	}
	t.Skip(reason)
}

// TestManifestPodRuns runs the DaemonSet's container (see the top of this
// file), then: its startup probe must pass; a process in another pod that
// writes a protected map must be reported, with its pid, executable,
// cgroup and container id, as a foreign-write alert, while the map's
// holder, a process of the host, writes without an alert; `bpfmon maps`,
// run in the same container, must list the holder and the pin; SIGTERM
// must stop it within the grace period, its events and state written to
// their host paths.
func TestManifestPodRuns(t *testing.T) {
	if os.Geteuid() != 0 {
		skipOrFail(t, "needs root: it runs bpfmon as the DaemonSet would")
	}
	m := loadManifest(t)
	bpffs(t)

	// The pods: bpfmon's, and a workload's with a container id.
	root := cgroup2Root()
	if root == "" {
		skipOrFail(t, "no cgroup v2 hierarchy: containerd would give no cgroup namespace either")
	}
	pods := filepath.Join(root, fmt.Sprintf("bpfmon-k8s-test-%d", os.Getpid()))
	cid := fmt.Sprintf("%016x%016x%016x%016x", rand.Uint64(), rand.Uint64(), rand.Uint64(), rand.Uint64())
	bpfmonCg, workloadCg := filepath.Join(pods, "bpfmon"), filepath.Join(pods, "cri-containerd-"+cid+".scope")
	agentCg := filepath.Join(pods, "agent") // another pod's, holding the map too
	for _, d := range []string{pods, bpfmonCg, workloadCg, agentCg} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	t.Cleanup(func() {
		for _, d := range []string{bpfmonCg, workloadCg, agentCg, pods} {
			os.Remove(d)
		}
	})
	cgFD, err := unix.Open(bpfmonCg, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(cgFD)

	// The host's process holding the protected map, pinned, since before
	// bpfmon starts.
	name := fmt.Sprintf("k8s_%d", os.Getpid()%100000000)
	mapFD, mapID, err := createHashMap(name)
	if err != nil {
		t.Fatal(err)
	}
	// One *os.File owns the fd and closes it, once: an os.NewFile per
	// holder would each close mapFD again when the collector finalizes
	// it, by then another file's number (TestManifestPodman's read of its
	// own executable failed with EBADF in CI).
	mapFile := os.NewFile(uintptr(mapFD), "map")
	defer mapFile.Close()
	pin := filepath.Join("/sys/fs/bpf", name)
	if err := pinMap(mapFD, pin); err != nil {
		t.Fatalf("pinning at %s: %v", pin, err)
	}
	defer os.Remove(pin)

	// A second holder, of another user: its /proc/PID/fd is mode 0500.
	other := exec.Command("sleep", "120")
	other.ExtraFiles = []*os.File{mapFile}
	other.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
	if err := other.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { other.Process.Kill(); other.Wait() }()

	// A third holder, in another pod, as an agent (Cilium, Tetragon) that
	// owns its maps: it writes once bpfmon runs, on a line of its stdin.
	agentFD, err := unix.Open(agentCg, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	agent := exec.Command(os.Args[0], "-test.run=^$")
	agent.Env = append(os.Environ(), holdEnv+"=1")
	agent.ExtraFiles = []*os.File{mapFile}
	agent.SysProcAttr = &syscall.SysProcAttr{UseCgroupFD: true, CgroupFD: agentFD}
	agentIn, _ := agent.StdinPipe()
	var agentOut bytes.Buffer
	agent.Stdout, agent.Stderr = &agentOut, &agentOut
	err = agent.Start()
	unix.Close(agentFD)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { agentIn.Close(); agent.Wait() }()

	policy := fmt.Sprintf("version: 1\nprotect:\n  - pin: %s\n", pin)
	p := newPod(t, m, policy, cgFD)
	var stdout, stderr bytes.Buffer
	cmd := p.start(nil, &stdout, &stderr)
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	defer func() {
		if cmd.ProcessState == nil {
			cmd.Process.Kill()
			<-exited
		}
	}()

	// The startup probe, as the kubelet asks it.
	probe := p.c.StartupProbe.HTTPGet
	port := probe.Port.IntValue()
	for _, cp := range p.c.Ports {
		if cp.Name == probe.Port.String() {
			port = int(cp.ContainerPort)
		}
	}
	url := fmt.Sprintf("http://127.0.0.1:%d%s", port, probe.Path)
	deadline := time.Now().Add(20 * time.Second)
	for {
		select {
		case err := <-exited:
			t.Fatalf("bpfmon exited before its startup probe passed (%v); stderr:\n%s", err, &stderr)
		default:
		}
		resp, err := http.Get(url)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("startup probe %s not 200 within 20 s (%v); stderr:\n%s", url, err, &stderr)
		}
		time.Sleep(100 * time.Millisecond)
	}

	// The holder writes (an owner: no alert), then a process in the
	// workload's pod does (a foreign write).
	if err := updateMap(mapFD, 2, 7); err != nil {
		t.Fatal(err)
	}
	if _, err := agentIn.Write([]byte("write\n")); err != nil {
		t.Fatal(err)
	}
	agentIn.Close()
	if err := agent.Wait(); err != nil {
		t.Fatalf("the agent's write: %v\n%s", err, &agentOut)
	}
	wfd, err := unix.Open(workloadCg, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	writer := exec.Command(os.Args[0], "-test.run=^$")
	writer.Env = append(os.Environ(), writeEnv+"="+strconv.Itoa(int(mapID)))
	writer.SysProcAttr = &syscall.SysProcAttr{UseCgroupFD: true, CgroupFD: wfd}
	out, err := writer.CombinedOutput()
	unix.Close(wfd)
	if err != nil {
		t.Fatalf("writer: %v\n%s", err, out)
	}

	// bpfmon maps, in the same container.
	var mapsOut, mapsErr bytes.Buffer
	mapsCmd := p.start([]string{"maps", "--format", "json", "--id", strconv.Itoa(int(mapID))}, &mapsOut, &mapsErr)
	if err := mapsCmd.Wait(); err != nil {
		t.Errorf("bpfmon maps in the container: %v\n%s", err, &mapsErr)
	}
	var inv struct {
		Holders []struct {
			PID      int  `json:"pid"`
			Writable bool `json:"writable"`
		} `json:"holders"`
		Pins []string `json:"pins"`
	}
	if err := json.Unmarshal(bytes.TrimSpace(mapsOut.Bytes()), &inv); err != nil {
		t.Errorf("bpfmon maps: %v: %s", err, &mapsOut)
	}
	for _, pid := range []int{os.Getpid(), other.Process.Pid} {
		if !slices.ContainsFunc(inv.Holders, func(h struct {
			PID      int  `json:"pid"`
			Writable bool `json:"writable"`
		}) bool {
			return h.PID == pid && h.Writable
		}) {
			t.Errorf("bpfmon maps in the container: holder %d (writable) missing: %s\nstderr: %s", pid, &mapsOut, &mapsErr)
		}
	}
	if !slices.Contains(inv.Pins, pin) {
		t.Errorf("bpfmon maps in the container: pin %s missing: %s", pin, &mapsOut)
	}

	// Let the alert reach the file, then stop as the kubelet does.
	time.Sleep(1500 * time.Millisecond)
	cmd.Process.Signal(syscall.SIGTERM)
	grace := time.Duration(*m.daemonSet.Spec.Template.Spec.TerminationGracePeriodSeconds) * time.Second
	select {
	case err := <-exited:
		if err != nil {
			t.Errorf("bpfmon exited with %v on SIGTERM; stderr:\n%s", err, &stderr)
		}
	case <-time.After(grace):
		t.Fatalf("bpfmon did not stop within the grace period (%s)", grace)
	}
	// Every sensor this kernel allows runs in the pod: the lineage
	// sensor (impersonation) needs tracefs where it has no trampolines.
	lineageStarted := slices.ContainsFunc(strings.Split(stderr.String(), "\n"), func(l string) bool {
		var rec struct{ Level, Sensor, Hooks string }
		return json.Unmarshal([]byte(l), &rec) == nil && rec.Level == "INFO" && rec.Sensor == "lineage" && rec.Hooks != ""
	})
	if !lineageStarted || strings.Contains(stderr.String(), "lineage sensor unavailable") {
		t.Errorf("the lineage sensor did not start in the pod (no start line naming its hooks):\n%s", &stderr)
	}

	output, _ := flagValue(p.c.Args, "output")
	state, _ := flagValue(p.c.Args, "state")
	hostFile := func(file string) string {
		vm, v := mountFor(t, m, path.Dir(file))
		return filepath.Join(p.hostDirs[v.Name], strings.TrimPrefix(file, vm.MountPath))
	}
	if _, err := os.Stat(hostFile(state)); err != nil {
		t.Errorf("--state %s: nothing on the host path: %v", state, err)
	}
	events, err := os.ReadFile(hostFile(output))
	if err != nil {
		t.Fatalf("--output %s: %v", output, err)
	}
	var foreign, owner int
	for _, line := range strings.Split(strings.TrimSpace(string(events)), "\n") {
		var e struct {
			Event string `json:"event"`
			Alert *struct {
				Rule string `json:"rule"`
			} `json:"alert"`
			Process *struct {
				PID         int    `json:"pid"`
				Exe         string `json:"exe"`
				Cgroup      string `json:"cgroup"`
				ContainerID string `json:"container_id"`
			} `json:"process"`
			Map *struct {
				ID uint32 `json:"id"`
			} `json:"map"`
		}
		if json.Unmarshal([]byte(line), &e) != nil || e.Map == nil || e.Map.ID != mapID || e.Event != "map_update" || e.Process == nil {
			continue
		}
		switch {
		case e.Process.PID == os.Getpid() || e.Process.PID == agent.Process.Pid:
			owner++
		case e.Process.PID == writer.Process.Pid && e.Alert != nil && e.Alert.Rule == "foreign-write" &&
			e.Process.Exe == mustExecutable(t) && e.Process.Cgroup == strings.TrimPrefix(workloadCg, root) && e.Process.ContainerID == cid:
			foreign++
		}
	}
	if foreign != 1 || owner != 0 {
		t.Errorf("want one foreign-write alert on map %d by pid %d (%s in %s, container %s) and none for its holders %d (host) and %d (another pod): got %d and %d\nevents:\n%s\nstderr:\n%s",
			mapID, writer.Process.Pid, mustExecutable(t), strings.TrimPrefix(workloadCg, root), cid, os.Getpid(), agent.Process.Pid, foreign, owner, events, &stderr)
	}
}

func mustExecutable(t *testing.T) string {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	exe, err = filepath.EvalSymlinks(exe)
	if err != nil {
		t.Fatal(err)
	}
	return exe
}

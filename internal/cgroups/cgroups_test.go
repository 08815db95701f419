package cgroups

import (
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/bpfmon/bpfmon/internal/testutil"
)

const id64 = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"

func TestContainerID(t *testing.T) {
	for path, want := range map[string]string{
		"/system.slice/docker-" + id64 + ".scope": id64,
		"/docker/" + id64:                         id64,
		"/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod1.slice/cri-containerd-" + id64 + ".scope": id64,
		"/kubepods/besteffort/pod1234/" + id64:               id64,
		"/machine.slice/libpod-" + id64 + ".scope/container": id64,
		"/crio-" + id64 + ".scope":                           id64,
		"/user.slice/user-1000.slice/session-2.scope":        "",
		"/":                               "",
		"/docker-" + id64[:63] + ".scope": "", // too short
		"/x" + id64:                       "", // not a whole component
	} {
		if got := ContainerID(path); got != want {
			t.Errorf("ContainerID(%q) = %q, want %q", path, got, want)
		}
	}
}

// TestResolvePath creates a cgroup and finds it by the inode the kernel
// uses as its id.
func TestResolvePath(t *testing.T) {
	testutil.RequireRoot(t)
	r := NewResolver()
	if r.root == "" {
		testutil.SkipOrFail(t, "no cgroup v2 hierarchy mounted")
	}
	dir := filepath.Join(r.root, "bpfmon-test-docker-"+id64[:8]+".scope")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	defer os.Remove(dir)
	var st syscall.Stat_t
	if err := syscall.Stat(dir, &st); err != nil {
		t.Fatal(err)
	}
	if got, want := r.Path(st.Ino), "/"+filepath.Base(dir); got != want {
		t.Errorf("Path(%d) = %q, want %q", st.Ino, got, want)
	}
	if r.Path(1<<62) != "" {
		t.Error("an unknown id resolved")
	}
	if id, err := r.ID("/" + filepath.Base(dir)); err != nil || id != st.Ino {
		t.Errorf("ID = %d, %v; want %d", id, err, st.Ino)
	}
	if _, err := r.ID("/no-such-cgroup"); err == nil {
		t.Error("ID of a missing cgroup")
	}
}

// TestProcessCgroup: this process's cgroup, as /proc shows it, is a
// directory of the hierarchy, whose inode is its id.
func TestProcessCgroup(t *testing.T) {
	r := NewResolver()
	if r.root == "" {
		testutil.SkipOrFail(t, "no cgroup v2 hierarchy mounted")
	}
	path, err := ProcessCgroup(uint32(os.Getpid()))
	if err != nil || path == "" || path[0] != '/' {
		t.Fatalf("ProcessCgroup = %q, %v", path, err)
	}
	if _, err := r.ID(path); err != nil {
		t.Errorf("ID(%q): %v", path, err)
	}
	if _, err := ProcessCgroup(1 << 30); err == nil {
		t.Error("cgroup of a process that does not exist")
	}
}

// Roles of the test binary for TestProcessPathInNamespace.
const (
	nsStageEnv = "BPFMON_CGROUPS_TEST_NS"    // "1": start stage 2 in a new cgroup namespace; "2": print ProcessPath of $pid
	nsPIDEnv   = "BPFMON_CGROUPS_TEST_PID"   // the process to look up
	nsHoldEnv  = "BPFMON_CGROUPS_TEST_SLEEP" // wait for stdin to close
)

func TestMain(m *testing.M) {
	switch os.Getenv(nsStageEnv) {
	case "1":
		// In the "pod" cgroup already: a new namespace is rooted here.
		cmd := exec.Command(os.Args[0], "-test.run=^$")
		cmd.Env = append(os.Environ(), nsStageEnv+"=2")
		cmd.SysProcAttr = &syscall.SysProcAttr{Cloneflags: syscall.CLONE_NEWCGROUP}
		cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
		if err := cmd.Run(); err != nil {
			fmt.Fprintln(os.Stderr, "stage 2:", err)
			os.Exit(1)
		}
		os.Exit(0)
	case "2":
		pid, _ := strconv.Atoi(os.Getenv(nsPIDEnv))
		raw, err := ProcessCgroup(uint32(pid))
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		r := NewResolver()
		p, err := r.ProcessPath(uint32(pid))
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		id, err := r.ID(p)
		fmt.Printf("%s %s %d %v\n", raw, p, id, err)
		os.Exit(0)
	}
	if os.Getenv(nsHoldEnv) != "" {
		io.ReadAll(os.Stdin)
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// TestProcessPathInNamespace: from a cgroup namespace of its own, as a
// container's, a process in a sibling cgroup reads as "/../SIBLING" in
// /proc; ProcessPath gives its path in the hierarchy, whose id is the
// sibling's.
func TestProcessPathInNamespace(t *testing.T) {
	testutil.RequireRoot(t)
	r := NewResolver()
	if r.root == "" {
		testutil.SkipOrFail(t, "no cgroup v2 hierarchy mounted")
	}
	base := filepath.Join(r.root, fmt.Sprintf("bpfmon-test-ns-%d", os.Getpid()))
	pod, other := filepath.Join(base, "pod"), filepath.Join(base, "other")
	for _, d := range []string{base, pod, other} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	defer func() {
		for _, d := range []string{pod, other, base} {
			os.Remove(d)
		}
	}()
	cgroupFD := func(dir string) int {
		fd, err := syscall.Open(dir, syscall.O_RDONLY|syscall.O_DIRECTORY|syscall.O_CLOEXEC, 0)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { syscall.Close(fd) })
		return fd
	}
	held := exec.Command(os.Args[0], "-test.run=^$")
	held.Env = append(os.Environ(), nsHoldEnv+"=1")
	held.SysProcAttr = &syscall.SysProcAttr{UseCgroupFD: true, CgroupFD: cgroupFD(other)}
	stdin, _ := held.StdinPipe()
	if err := held.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { stdin.Close(); held.Wait() }()

	look := exec.Command(os.Args[0], "-test.run=^$")
	look.Env = append(os.Environ(), nsStageEnv+"=1", nsPIDEnv+"="+strconv.Itoa(held.Process.Pid))
	look.SysProcAttr = &syscall.SysProcAttr{UseCgroupFD: true, CgroupFD: cgroupFD(pod)}
	out, err := look.CombinedOutput()
	if err != nil {
		t.Fatalf("looking from a namespace: %v\n%s", err, out)
	}
	var st syscall.Stat_t
	if err := syscall.Stat(other, &st); err != nil {
		t.Fatal(err)
	}
	rel := strings.TrimPrefix(other, r.root)
	if want := fmt.Sprintf("/../other %s %d <nil>\n", rel, st.Ino); string(out) != want {
		t.Errorf("from a namespace rooted at %s: got %q, want %q (the /proc path, ProcessPath, its id)", strings.TrimPrefix(pod, r.root), out, want)
	}
	// On the host, the /proc path is the path.
	if p, err := r.ProcessPath(uint32(held.Process.Pid)); err != nil || p != rel {
		t.Errorf("ProcessPath on the host = %q, %v; want %q", p, err, rel)
	}
}

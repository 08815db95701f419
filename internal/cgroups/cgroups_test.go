package cgroups

import (
	"os"
	"path/filepath"
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

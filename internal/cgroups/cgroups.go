// Package cgroups names the cgroup and container of a process from the
// cgroup v2 id the kernel reports with each event. The id is the inode of
// the cgroup's directory, so the name is found even after the process
// exited, without /proc.
package cgroups

import (
	"bufio"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// Resolver maps cgroup ids to paths. Safe for concurrent use.
type Resolver struct {
	root string // cgroup2 mount point, "" when there is none
	// mountRoot is the mounted hierarchy's root as /proc/self/mountinfo
	// shows it: relative to this process's cgroup namespace, so "/" on a
	// host, "/../.." in a container with a namespace of its own that has
	// the host's hierarchy mounted (see ProcessPath).
	mountRoot string

	nsOnce sync.Once
	nsRoot string // the namespace's root, relative to root, once found
	nsErr  error

	mu       sync.Mutex
	paths    map[uint64]string
	lastWalk time.Time
}

// rewalkEvery bounds how often an unknown id makes the resolver walk the
// cgroup tree again.
const rewalkEvery = time.Second

// NewResolver finds the cgroup v2 hierarchy (on a unified or hybrid host).
func NewResolver() *Resolver {
	point, mountRoot := cgroup2Mount("/proc/self/mountinfo")
	return &Resolver{root: point, mountRoot: mountRoot, paths: map[uint64]string{}}
}

// Root is the cgroup v2 mount point, "" when there is none.
func (r *Resolver) Root() string { return r.root }

// cgroup2Mount returns the first cgroup2 mount's point and root.
func cgroup2Mount(mountinfo string) (point, root string) {
	f, err := os.Open(mountinfo)
	if err != nil {
		return "", ""
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		// id parent major:minor root mount-point ... - fstype source options
		fields := strings.Fields(sc.Text())
		for i, f := range fields {
			if f == "-" && i+1 < len(fields) && fields[i+1] == "cgroup2" && len(fields) > 4 {
				return fields[4], fields[3]
			}
		}
	}
	return "", ""
}

// Path returns the path of cgroup id relative to the hierarchy's root
// ("/" for the root), or "" when unknown.
func (r *Resolver) Path(id uint64) string {
	if r.root == "" || id == 0 {
		return ""
	}
	return r.lookup(id, false)
}

// lookup returns the path of id, walking the tree again when id is not
// known, at most once per rewalkEvery unless force.
func (r *Resolver) lookup(id uint64, force bool) string {
	r.mu.Lock()
	defer r.mu.Unlock()
	if p, ok := r.paths[id]; ok {
		return p
	}
	if !force && time.Since(r.lastWalk) < rewalkEvery {
		return ""
	}
	r.lastWalk = time.Now()
	clear(r.paths)
	filepath.WalkDir(r.root, func(path string, d fs.DirEntry, err error) error {
		if err != nil || !d.IsDir() {
			return nil
		}
		info, err := d.Info()
		if err != nil {
			return nil
		}
		if st, ok := info.Sys().(*syscall.Stat_t); ok {
			rel, _ := filepath.Rel(r.root, path)
			r.paths[st.Ino] = "/" + strings.TrimPrefix(rel, ".")
		}
		return nil
	})
	return r.paths[id]
}

// ID returns the id of the cgroup at path (relative to the hierarchy's
// root, as Path and ProcessPath return): the inode of its directory.
func (r *Resolver) ID(path string) (uint64, error) {
	if r.root == "" {
		return 0, errors.New("no cgroup v2 hierarchy is mounted")
	}
	fi, err := os.Stat(filepath.Join(r.root, filepath.Clean("/"+path)))
	if err != nil {
		return 0, err
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return 0, fmt.Errorf("%s: no inode", path)
	}
	return st.Ino, nil
}

// ProcessPath returns the cgroup v2 path of process pid relative to the
// hierarchy's root, as Path returns and ID takes. /proc/PID/cgroup shows it
// relative to the reader's cgroup namespace: the same on a host, but not in
// a container with a namespace of its own (containerd gives one to every
// container that is not privileged, on cgroup v2) that has the host's
// hierarchy mounted, as bpfmon's DaemonSet has: there a process in another
// pod reads "/../../POD/CONTAINER", relative to bpfmon's own cgroup. The
// path is then joined to where the namespace's root lies in the hierarchy,
// found once.
func (r *Resolver) ProcessPath(pid uint32) (string, error) {
	p, err := ProcessCgroup(pid)
	if err != nil || r.mountRoot == "/" || r.mountRoot == "" {
		return p, err
	}
	r.nsOnce.Do(func() { r.nsRoot, r.nsErr = r.namespaceRoot() })
	if r.nsErr != nil {
		return "", fmt.Errorf("process %d is in cgroup %s of bpfmon's cgroup namespace, which is not rooted where %s is (%s): %w", pid, p, r.root, r.mountRoot, r.nsErr)
	}
	return filepath.Clean(r.nsRoot + "/" + p), nil
}

// namespaceRoot finds this process's cgroup namespace's root in the
// mounted hierarchy. A cgroup2 file system created in a namespace is
// rooted at the namespace's root, so the inode of its root directory is
// that cgroup's id, which the walk of the mounted hierarchy names.
// fsopen and fsmount create it detached: nothing is mounted anywhere.
func (r *Resolver) namespaceRoot() (string, error) {
	fsfd, err := unix.Fsopen("cgroup2", unix.FSOPEN_CLOEXEC)
	if err != nil {
		return "", fmt.Errorf("fsopen cgroup2: %w", err)
	}
	defer unix.Close(fsfd)
	if err := unix.FsconfigCreate(fsfd); err != nil {
		return "", fmt.Errorf("creating a cgroup2 file system: %w", err)
	}
	mfd, err := unix.Fsmount(fsfd, unix.FSMOUNT_CLOEXEC, 0)
	if err != nil {
		return "", fmt.Errorf("fsmount cgroup2: %w", err)
	}
	defer unix.Close(mfd)
	var st unix.Stat_t
	if err := unix.Fstat(mfd, &st); err != nil {
		return "", err
	}
	if p := r.lookup(st.Ino, true); p != "" {
		return p, nil
	}
	return "", fmt.Errorf("the namespace's root, cgroup %d, is not under %s", st.Ino, r.root)
}

// ProcessCgroup returns the cgroup v2 path of process pid, from
// /proc/PID/cgroup ("0::PATH"): relative to this process's cgroup
// namespace (see ProcessPath).
func ProcessCgroup(pid uint32) (string, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/cgroup", pid))
	if err != nil {
		return "", err
	}
	for _, line := range strings.Split(string(b), "\n") {
		if p, ok := strings.CutPrefix(line, "0::"); ok {
			return p, nil
		}
	}
	return "", fmt.Errorf("process %d is in no cgroup v2", pid)
}

// Container ids in the cgroup layouts of docker, containerd (cri), cri-o
// and podman: a 64-hex-digit id, as a directory or inside a scope name.
var containerRE = regexp.MustCompile(`(?:^|/)(?:docker-|cri-containerd-|crio-|libpod-|docker/|libpod/|kubepods[^/]*/[^/]*/)?([0-9a-f]{64})(?:\.scope)?(?:/|$)`)

// ContainerID extracts a container id from a cgroup path, "" if none.
func ContainerID(path string) string {
	m := containerRE.FindAllStringSubmatch(path, -1)
	if len(m) == 0 {
		return ""
	}
	return m[len(m)-1][1] // the innermost
}

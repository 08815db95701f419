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
)

// Resolver maps cgroup ids to paths. Safe for concurrent use.
type Resolver struct {
	root string // cgroup2 mount point, "" when there is none

	mu       sync.Mutex
	paths    map[uint64]string
	lastWalk time.Time
}

// rewalkEvery bounds how often an unknown id makes the resolver walk the
// cgroup tree again.
const rewalkEvery = time.Second

// NewResolver finds the cgroup v2 hierarchy (on a unified or hybrid host).
func NewResolver() *Resolver {
	return &Resolver{root: cgroup2Mount("/proc/self/mountinfo"), paths: map[uint64]string{}}
}

// Root is the cgroup v2 mount point, "" when there is none.
func (r *Resolver) Root() string { return r.root }

func cgroup2Mount(mountinfo string) string {
	f, err := os.Open(mountinfo)
	if err != nil {
		return ""
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		// ... mount-point ... - fstype source options
		fields := strings.Fields(sc.Text())
		for i, f := range fields {
			if f == "-" && i+1 < len(fields) && fields[i+1] == "cgroup2" && len(fields) > 4 {
				return fields[4]
			}
		}
	}
	return ""
}

// Path returns the path of cgroup id relative to the hierarchy's root
// ("/" for the root), or "" when unknown.
func (r *Resolver) Path(id uint64) string {
	if r.root == "" || id == 0 {
		return ""
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if p, ok := r.paths[id]; ok {
		return p
	}
	if time.Since(r.lastWalk) < rewalkEvery {
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
// root, as Path returns and /proc/PID/cgroup shows): the inode of its
// directory.
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

// ProcessCgroup returns the cgroup v2 path of process pid, from
// /proc/PID/cgroup ("0::PATH").
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

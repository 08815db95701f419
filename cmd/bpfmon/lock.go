package main

import (
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// defaultLockFile is where bpfmon watch takes its lock: one monitor per
// host (two would flag each other's reads, and double every alert).
// lockEnv overrides it, as --lock-file does (tests run many watches).
const (
	defaultLockFile = "/run/bpfmon/watch.lock"
	lockEnv         = "BPFMON_LOCK_FILE"
)

// errLocked: another bpfmon watch holds the lock.
var errLocked = errors.New("another bpfmon watch is running")

// lockWatch takes the lock at path for as long as the process lives: an
// flock(2), which the kernel releases when its holder dies however it
// dies, on a file that names the holder's pid. It returns errLocked
// (wrapped, with the holder's pid) if another process holds it, and
// ok false, with the reason, where there is no directory to put it in
// (a container without /run): bpfmon then runs unlocked and says so.
func lockWatch(path string) (ok bool, err error) {
	open := func() (int, error) {
		return unix.Open(path, unix.O_RDWR|unix.O_CREAT|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o644)
	}
	fd, err := open()
	if errors.Is(err, unix.ENOENT) {
		// Its directory (/run/bpfmon: systemd's RuntimeDirectory), made
		// where its parent exists.
		if unix.Mkdir(filepath.Dir(path), 0o755) == nil {
			fd, err = open()
		}
	}
	if errors.Is(err, unix.ENOENT) || errors.Is(err, unix.EROFS) {
		return false, fmt.Errorf("cannot create the lock file %s: %w", path, err)
	}
	if err != nil {
		return false, fmt.Errorf("lock file %s: %w", path, err)
	}
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil || st.Mode&unix.S_IFMT != unix.S_IFREG {
		unix.Close(fd)
		return false, fmt.Errorf("lock file %s: not a regular file", path)
	}
	if err := unix.Flock(fd, unix.LOCK_EX|unix.LOCK_NB); err != nil {
		defer unix.Close(fd)
		if errors.Is(err, unix.EWOULDBLOCK) {
			buf := make([]byte, 32)
			n, _ := unix.Pread(fd, buf, 0)
			holder := strings.TrimSpace(string(buf[:max(n, 0)]))
			if _, perr := strconv.Atoi(holder); perr != nil || holder == "" {
				holder = "unknown"
			}
			return false, fmt.Errorf("%w on this host (pid %s holds %s): stop it first; one monitor per host sees everything", errLocked, holder, path)
		}
		return false, fmt.Errorf("lock file %s: %w", path, err)
	}
	// Ours until the process ends: the descriptor is never closed.
	pid := []byte(strconv.Itoa(os.Getpid()) + "\n")
	if err := unix.Ftruncate(fd, 0); err == nil {
		unix.Pwrite(fd, pid, 0)
	}
	return true, nil
}

// flagSet reports whether the command line set the flag name.
func flagSet(fs *flag.FlagSet, name string) bool {
	set := false
	fs.Visit(func(f *flag.Flag) {
		if f.Name == name {
			set = true
		}
	})
	return set
}

package main

import (
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// TestLockWatch: the lock's directory is made where its parent exists;
// a second taker is refused with the holder's pid; a path with no
// directory to make leaves bpfmon unlocked, saying why; a symlink is not
// followed.
func TestLockWatch(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "run", "watch.lock")
	if ok, err := lockWatch(path); !ok || err != nil {
		t.Fatalf("first: %v %v", ok, err)
	}
	b, _ := os.ReadFile(path)
	if strings.TrimSpace(string(b)) != strconv.Itoa(os.Getpid()) {
		t.Errorf("lock file holds %q, want this pid", b)
	}
	ok, err := lockWatch(path)
	if ok || !errors.Is(err, errLocked) || !strings.Contains(err.Error(), "pid "+strconv.Itoa(os.Getpid())) {
		t.Errorf("second: %v %v; want errLocked naming pid %d", ok, err, os.Getpid())
	}
	if ok, err := lockWatch(filepath.Join(dir, "no", "such", "watch.lock")); ok || err == nil || errors.Is(err, errLocked) {
		t.Errorf("no directory: %v %v; want unlocked, with the reason", ok, err)
	}
	link := filepath.Join(dir, "link.lock")
	os.Symlink(filepath.Join(dir, "target"), link)
	if ok, _ := lockWatch(link); ok {
		t.Error("a symlink was followed")
	}
}

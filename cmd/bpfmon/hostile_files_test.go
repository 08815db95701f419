package main

import (
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/cilium/ebpf"

	"github.com/bpfmon/bpfmon/internal/testutil"
)

// TestHostileFiles: what a stranger who may write a directory bpfmon
// writes in can leave there for it. Each is refused before anything
// loads (exit 2, one line naming the flag and why, within seconds), and
// the file a planted link points to, or a planted file, is left as it
// was.
func TestHostileFiles(t *testing.T) {
	testutil.RequireRoot(t)
	dir := t.TempDir()
	os.Chmod(dir, 0o777) // the stranger's playground
	victim := filepath.Join(t.TempDir(), "root-owned")
	if err := os.WriteFile(victim, []byte("precious\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	path := func(name string) string { return filepath.Join(dir, name) }
	link := func(name string) string {
		p := path(name)
		if err := os.Symlink(victim, p); err != nil {
			t.Fatal(err)
		}
		return p
	}
	foreign := func(name string, mode os.FileMode) string {
		p := path(name)
		if err := os.WriteFile(p, []byte("the stranger's\n"), mode); err != nil {
			t.Fatal(err)
		}
		os.Chmod(p, mode)
		if err := os.Chown(p, 65534, 65534); err != nil {
			t.Fatal(err)
		}
		return p
	}
	fifo := func(name string) string {
		p := path(name)
		if err := syscall.Mkfifo(p, 0o666); err != nil {
			t.Fatal(err)
		}
		return p
	}
	policy := unlimitedAlerts(t)
	state := path("state.json")
	readyDir := path("ready.d")
	if err := os.Mkdir(readyDir, 0o700); err != nil {
		t.Fatal(err)
	}
	link("ready-link.tmp")
	for _, c := range []struct {
		name string
		args []string
		msg  string
	}{
		{"link as --output", []string{"--output", link("out-link")}, "--output: " + path("out-link") + ": refused: it is a symbolic link"},
		{"link as --output, rotated", []string{"--output", link("out-link-rot"), "--output-max-size", "1M"}, "symbolic link"},
		{"link at the ready file's .tmp", []string{"--ready-file", path("ready-link")}, "--ready-file: " + path("ready-link.tmp") + ": refused: it is a symbolic link"},
		{"link as --cpu-profile", []string{"--cpu-profile", link("profile-link")}, "--cpu-profile: " + path("profile-link") + ": refused: it is a symbolic link"},
		{"another user's 0666 --output", []string{"--output", foreign("out-nobody", 0o666)}, "owned by uid 65534"},
		{"another user's 0644 --output, rotated", []string{"--output", foreign("out-nobody-rot", 0o644), "--output-max-size", "1M"}, "owned by uid 65534"},
		{"another user's --cpu-profile", []string{"--cpu-profile", foreign("profile-nobody", 0o600)}, "owned by uid 65534"},
		{"named pipe as --output", []string{"--output", fifo("out-fifo")}, "is a named pipe"},
		{"named pipe as --policy", []string{"--policy", fifo("policy-fifo")}, "is a named pipe"},
		{"named pipe as --state", []string{"--state", fifo("state-fifo")}, "is a named pipe"},
		{"device as --output", []string{"--output", "/dev/null"}, "is a device"},
		{"directory as --output", []string{"--output", readyDir}, "is a directory"},
		{"directory as --ready-file", []string{"--ready-file", readyDir}, "--ready-file: " + readyDir + " is a directory"},
		{"--output is --state", []string{"--output", state, "--state", state}, "--output " + state + " and --state " + state + " are the same file"},
		{"--output is --policy", []string{"--output", policy, "--policy", policy}, "are the same file"},
		{"--output is --policy by another name", []string{"--output", filepath.Join(filepath.Dir(policy), ".", filepath.Base(policy)), "--policy", policy}, "are the same file"},
		{"--state is --cpu-profile", []string{"--state", state, "--cpu-profile", state}, "are the same file"},
		{"rotating standard output", []string{"--output", "-", "--output-max-size", "1M"}, "give --output FILE"},
		{"--output is the ready file's .tmp", []string{"--output", path("r.tmp"), "--ready-file", path("r")}, "are the same file"},
	} {
		before := snapshot(t, dir)
		start := time.Now()
		code, out := runBpfmon(t, append([]string{"watch", "--log-level", "debug"}, c.args...)...)
		took := time.Since(start)
		if code != exitUsage || !strings.HasPrefix(out, "bpfmon watch: ") || !strings.Contains(out, c.msg) || strings.Count(out, "\n") != 1 {
			t.Errorf("%s: exit %d, want %d and one line with %q: %.600s", c.name, code, exitUsage, c.msg, out)
		}
		if took > testutil.Timeout(5*time.Second) {
			t.Errorf("%s: refused after %v", c.name, took)
		}
		if after := snapshot(t, dir); after != before {
			t.Errorf("%s: the directory changed:\nbefore %s\nafter  %s", c.name, before, after)
		}
		if b, _ := os.ReadFile(victim); string(b) != "precious\n" {
			t.Errorf("%s: the root-owned file a link points to was written: %.100q", c.name, b)
			os.WriteFile(victim, []byte("precious\n"), 0o600)
		}
	}
}

// snapshot describes the files in dir: names, kinds, owners, sizes.
func snapshot(t *testing.T, dir string) string {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var s []string
	for _, e := range ents {
		fi, err := os.Lstat(filepath.Join(dir, e.Name()))
		if err != nil {
			continue
		}
		st := fi.Sys().(*syscall.Stat_t)
		s = append(s, e.Name()+":"+fi.Mode().String()+":"+itoa(st.Uid)+":"+itoa(uint32(fi.Size())))
	}
	return strings.Join(s, " ")
}

// TestOwnFilesWritten: the files bpfmon makes are its user's, mode 0600,
// whatever the umask: the output, the ready file and the CPU profile;
// and the output is appended to, so that logrotate's copytruncate
// (which empties it under bpfmon) leaves no hole of NUL bytes.
func TestOwnFilesWritten(t *testing.T) {
	testutil.RequireRoot(t)
	old := syscall.Umask(0) // inherited by bpfmon
	defer syscall.Umask(old)
	m, id := newSpecMap(t, &ebpf.MapSpec{Name: "own_files", Type: ebpf.Hash, KeySize: 4, ValueSize: 8, MaxEntries: 64})
	profile := filepath.Join(t.TempDir(), "profile")
	w := startWatch(t, "--format", "json", "--map-id", itoa(id), "--scan-interval", "0", "--cpu-profile", profile)
	for i := range 10 {
		m.Update(uint32(i), uint64(i), 0)
	}
	w.waitOutput(t, "the first 10 updates", func(lines []string) bool { return len(lines) >= 10 })
	if err := os.Truncate(w.out, 0); err != nil { // copytruncate's truncate
		t.Fatal(err)
	}
	for i := 10; i < 20; i++ {
		m.Update(uint32(i), uint64(i), 0)
	}
	w.waitOutput(t, "10 updates after the truncation", func(lines []string) bool { return len(lines) >= 10 })
	lines := w.stop(t, syscall.SIGINT)
	b, _ := os.ReadFile(w.out)
	if n := strings.Count(string(b), "\x00"); n > 0 || len(lines) != 10 {
		t.Errorf("after copytruncate: %d NUL bytes and %d lines; want none and the 10 written since", n, len(lines))
	}
	for _, p := range []string{w.out, filepath.Join(filepath.Dir(w.out), "ready"), profile} {
		fi, err := os.Lstat(p)
		if err != nil {
			t.Fatal(err)
		}
		if st := fi.Sys().(*syscall.Stat_t); !fi.Mode().IsRegular() || fi.Mode().Perm() != 0o600 || st.Uid != uint32(os.Geteuid()) {
			t.Errorf("%s: %v, uid %d; want a regular file of uid %d, mode 0600", p, fi.Mode(), st.Uid, os.Geteuid())
		}
	}
}

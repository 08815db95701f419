package main

import (
	"bytes"
	"context"
	"math/rand"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/bpfmon/bpfmon/internal/testutil"
)

// runBpfmon runs bpfmon to its end and returns its exit code and output.
func runBpfmon(t *testing.T, args ...string) (int, string) {
	t.Helper()
	// A command line that is accepted by mistake would watch forever.
	ctx, cancel := context.WithTimeout(context.Background(), testutil.Timeout(20*time.Second))
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, args...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	if ee, ok := err.(*exec.ExitError); ok {
		return ee.ExitCode(), out.String()
	} else if err != nil {
		t.Fatal(err)
	}
	return 0, out.String()
}

// TestBadPolicyFiles: a policy that is truncated, binary, huge, a bomb of
// YAML aliases or not a file is refused before anything loads: exit 2,
// one message naming the file and the cause, no panic, no output file.
func TestBadPolicyFiles(t *testing.T) {
	dir := t.TempDir()
	example, err := os.ReadFile("../../contrib/policy.example.yaml")
	if err != nil {
		t.Fatal(err)
	}
	binary := make([]byte, 8192)
	rand.New(rand.NewSource(7)).Read(binary)
	bomb := "version: 1\na: &a [x,x,x,x,x,x,x,x,x]\n"
	for i, prev := 'b', 'a'; i <= 'k'; i, prev = i+1, i {
		bomb += string(i) + ": &" + string(i) + " [" + strings.Repeat("*"+string(prev)+",", 8) + "*" + string(prev) + "]\n"
	}
	for _, c := range []struct {
		name, data, msg string
	}{
		{"truncated after a key", string(example[:bytes.Index(example, []byte("\nowners:\n"))+9]), "owners has no value"},
		{"cut inside a quoted string", "version: 1\nprotect:\n  - name: \"tracee_ev", ""},
		{"binary", string(binary), ""},
		{"NULs", string(make([]byte, 100)), ""},
		{"not UTF-8", "version: 1\nprotect:\n  - name: \xff\xfe\n", ""},
		{"alias bomb", bomb, ""},
		{"alias bomb in a known key", "version: 1\nprotect: " + aliasBomb(), ""},
		{"two documents", "version: 1\n---\nversion: 1\n", ""},
		{"huge", "version: 1\n" + strings.Repeat("# padding\n", 120000), "larger than 1 MiB"},
		{"deeply nested", "version: 1\nx: " + strings.Repeat("[", 10000) + strings.Repeat("]", 10000) + "\n", ""},
	} {
		path := filepath.Join(dir, strings.ReplaceAll(c.name, " ", "_")+".yaml")
		if err := os.WriteFile(path, []byte(c.data), 0o600); err != nil {
			t.Fatal(err)
		}
		checkRefused(t, c.name, path, c.msg)
	}
	checkRefused(t, "directory", dir, "is a directory")
	checkRefused(t, "endless device", "/dev/zero", "is a device, not a regular file")
	// A named pipe no one writes: refused at once, not waited on forever.
	fifo := filepath.Join(dir, "fifo.yaml")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	checkRefused(t, "named pipe", fifo, "is a named pipe, not a regular file")
	if d := time.Since(start); d > testutil.Timeout(5*time.Second) {
		t.Errorf("a named pipe as --policy took %v to refuse", d)
	}
}

// aliasBomb is 9^9 nodes once its aliases are expanded.
func aliasBomb() string {
	s, prev := "[&a [x,x,x,x,x,x,x,x,x]", "a"
	for c := 'b'; c <= 'i'; c++ {
		s += ", &" + string(c) + " [" + strings.Repeat("*"+prev+",", 8) + "*" + prev + "]"
		prev = string(c)
	}
	return s + "]\n"
}

func checkRefused(t *testing.T, name, path, msg string) {
	t.Helper()
	out := filepath.Join(t.TempDir(), "events")
	code, stderr := runBpfmon(t, "watch", "--policy", path, "--output", out)
	if code != exitUsage || !strings.HasPrefix(stderr, "bpfmon watch: "+path+":") || !strings.Contains(stderr, msg) ||
		strings.Count(stderr, "\n") != 1 || strings.Contains(stderr, "panic") {
		t.Errorf("%s policy: exit %d, want %d with one line naming %s (%q): %.500s", name, code, exitUsage, path, msg, stderr)
	}
	if _, err := os.Stat(out); err == nil {
		t.Errorf("%s policy: the refused command line created its output file", name)
	}
}

// TestBadStateFiles: a --state path bpfmon cannot replace is refused at
// start (exit 2); a state file whose contents are damaged or not
// bpfmon's is reported once and monitoring starts all the same.
func TestBadStateFiles(t *testing.T) {
	testutil.RequireRoot(t)
	dir := t.TempDir()
	for _, c := range []struct{ path, msg string }{
		{dir, "is a directory"},
		{"/dev/null", "is a device"},
		{filepath.Join(dir, "missing", "state.json"), "no such file or directory"},
	} {
		code, out := runBpfmon(t, "watch", "--state", c.path)
		if code != exitUsage || !strings.Contains(out, c.msg) || strings.Count(out, "\n") != 1 {
			t.Errorf("--state %s: exit %d, want %d and %q: %s", c.path, code, exitUsage, c.msg, out)
		}
	}
	binary := make([]byte, 8192)
	rand.New(rand.NewSource(8)).Read(binary)
	for _, c := range []struct {
		name, data, msg string
		kept            bool
	}{
		{"binary", string(binary), "not a bpfmon state file", true},
		{"truncated", `{"format":"bpfmon-scanner-state","version":1,"maps":[{"id":3,"na`, "is corrupt", false},
	} {
		path := filepath.Join(dir, c.name+".json")
		if err := os.WriteFile(path, []byte(c.data), 0o600); err != nil {
			t.Fatal(err)
		}
		w := startWatch(t, "--format", "json", "--state", path, "--scan-interval", "200ms")
		waitFor(t, func() bool { b, _ := os.ReadFile(path); return c.kept || !bytes.Equal(b, []byte(c.data)) })
		w.stop(t, syscall.SIGINT)
		stderr := w.stderr.String()
		if strings.Count(stderr, c.msg) != 1 || strings.Contains(stderr, "panic") {
			t.Errorf("%s state: want one warning %q: %s", c.name, c.msg, stderr)
		}
		b, _ := os.ReadFile(path)
		if kept := bytes.Equal(b, []byte(c.data)); kept != c.kept {
			t.Errorf("%s state: kept %v, want %v", c.name, kept, c.kept)
		}
	}
}

// waitFor polls cond for up to 10 seconds (scaled in the VMs).
func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(testutil.Timeout(10 * time.Second))
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met within 10s")
		}
		time.Sleep(50 * time.Millisecond)
	}
}

package main

import (
	"bufio"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/bpfmon/bpfmon/internal/testutil"
)

const unitFile = "../../contrib/systemd/bpfmon.service"

// TestSystemdUnit checks contrib/systemd/bpfmon.service with systemd's own
// verifier (an unknown or misspelt directive fails), then runs its
// ExecStart as systemd would, in temporary directories: bpfmon must accept
// that command line, tell the notify socket READY=1 once it watches and
// STOPPING=1 on SIGTERM, and exit 0 with its events file written.
func TestSystemdUnit(t *testing.T) {
	testutil.RequireRoot(t)
	unit, err := os.ReadFile(unitFile)
	if err != nil {
		t.Fatal(err)
	}
	var execStart []string
	sc := bufio.NewScanner(strings.NewReader(string(unit)))
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "ExecStart="); ok {
			execStart = strings.Fields(v)
		}
	}
	if len(execStart) < 2 || execStart[0] != "/usr/local/bin/bpfmon" || execStart[1] != "watch" {
		t.Fatalf("ExecStart %q: want /usr/local/bin/bpfmon watch ...", execStart)
	}

	dir := t.TempDir()
	t.Run("systemd-analyze verify", func(t *testing.T) {
		analyze, err := exec.LookPath("systemd-analyze")
		if err != nil && testutil.InVM() {
			t.Skip("the kernel test matrix's VMs carry no systemd; the host's run verifies the unit")
		}
		if err != nil {
			testutil.SkipOrFail(t, "systemd-analyze not installed (apt-get install systemd): the unit cannot be verified")
		}
		copyUnit := filepath.Join(dir, "bpfmon.service")
		os.WriteFile(copyUnit, []byte(strings.ReplaceAll(string(unit), "/usr/local/bin/bpfmon", bin)), 0o644)
		out, err := exec.Command(analyze, "verify", copyUnit).CombinedOutput()
		if err != nil || len(out) > 0 {
			t.Errorf("systemd-analyze verify: %v\n%s", err, out)
		}
	})

	// The service's paths, moved into dir.
	for _, d := range []string{"log", "lib", "etc"} {
		os.Mkdir(filepath.Join(dir, d), 0o755)
	}
	policy, err := os.ReadFile("../../contrib/policy.example.yaml")
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(dir, "etc", "policy.yaml"), policy, 0o644)
	args := strings.Fields(strings.NewReplacer("/var/log/bpfmon", filepath.Join(dir, "log"), "/var/lib/bpfmon", filepath.Join(dir, "lib"),
		"/etc/bpfmon", filepath.Join(dir, "etc")).Replace(strings.Join(execStart[1:], " ")))
	sock := filepath.Join(dir, "notify")
	l, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: sock, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	cmd := exec.Command(bin, args...)
	cmd.Env = append(os.Environ(), "NOTIFY_SOCKET="+sock)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()
	notified := func(want string) {
		t.Helper()
		l.SetReadDeadline(time.Now().Add(testutil.Timeout(10 * time.Second)))
		buf := make([]byte, 256)
		n, err := l.Read(buf)
		if err != nil || string(buf[:n]) != want {
			t.Fatalf("notify socket: got %q, %v; want %q\n%s", buf[:n], err, want, stderr.String())
		}
	}
	notified("READY=1")
	cmd.Process.Signal(syscall.SIGTERM)
	notified("STOPPING=1")
	if err := cmd.Wait(); err != nil {
		t.Fatalf("the service exited with %v\n%s", err, stderr.String())
	}
	fi, err := os.Stat(filepath.Join(dir, "log", "events.json"))
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("events file: %v %v, want mode 0600", fi, err)
	}
	if !strings.Contains(stderr.String(), "level=INFO msg=\"stopped:") {
		t.Errorf("no summary in the log:\n%s", stderr.String())
	}
}

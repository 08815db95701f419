package main

import (
	"bufio"
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/bpfmon/bpfmon/internal/testutil"
)

var (
	distOnce             sync.Once
	distDir, distVersion string
	distErr              error
)

// artefacts runs make dist's build for amd64 once per test run, into a
// temporary directory TestMain removes.
func artefacts(t *testing.T) (dir, version string) {
	t.Helper()
	distOnce.Do(func() {
		root, err := git("", "rev-parse", "--show-toplevel")
		if err != nil {
			distErr = err
			return
		}
		if distVersion, distErr = git(root, "describe", "--tags", "--always", "--dirty"); distErr != nil {
			return
		}
		if distDir, distErr = os.MkdirTemp("", "bpfmon-dist-test-"); distErr != nil {
			return
		}
		distErr = run(distDir, []string{"amd64"}, "")
	})
	if distErr != nil {
		t.Fatal(distErr)
	}
	return distDir, distVersion
}

func TestMain(m *testing.M) {
	code := m.Run()
	if distDir != "" {
		os.RemoveAll(distDir)
	}
	os.Exit(code)
}

// TestDistChecksums: make dist's SHA256SUMS lists every artefact, and
// sha256sum agrees with it.
func TestDistChecksums(t *testing.T) {
	dir, version := artefacts(t)
	sums, err := os.ReadFile(filepath.Join(dir, "SHA256SUMS"))
	if err != nil {
		t.Fatal(err)
	}
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		if e.Name() != "SHA256SUMS" && !bytes.Contains(sums, []byte("  "+e.Name()+"\n")) {
			t.Errorf("SHA256SUMS does not list %s:\n%s", e.Name(), sums)
		}
	}
	if len(entries) != 4 {
		t.Errorf("want a binary, a .deb, an image and SHA256SUMS, got %d files", len(entries))
	}
	cmd := exec.Command("sha256sum", "--strict", "-c", "SHA256SUMS")
	cmd.Dir = dir
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Errorf("sha256sum -c: %v\n%s", err, out)
	}
	out, err := exec.Command(filepath.Join(dir, "bpfmon_"+version+"_linux_amd64"), "version").Output()
	if err != nil || string(out) != "bpfmon "+version+"\n" {
		t.Errorf("the binary's version: %q (%v), want bpfmon %s", out, err, version)
	}
}

// TestDebInstall installs the amd64 package with dpkg on this machine:
// every path the unit's ExecStart names is there, systemd-analyze verify
// accepts the installed unit, bpfmon version prints git's version, the
// default policy is one bpfmon starts with, logrotate accepts the
// snippet, and dpkg -r leaves the conffiles alone, which dpkg --purge
// removes.
func TestDebInstall(t *testing.T) {
	testutil.RequireRoot(t)
	for _, tool := range []string{"dpkg", "dpkg-query", "systemd-analyze", "logrotate"} {
		if _, err := exec.LookPath(tool); err != nil {
			testutil.SkipOrFail(t, tool+" not installed (apt-get install dpkg systemd logrotate)")
		}
	}
	if out, err := exec.Command("dpkg-query", "-W", "-f", "${Status}", "bpfmon").Output(); err == nil && len(out) > 0 && !strings.Contains(string(out), "not-installed") {
		t.Fatalf("a bpfmon package is installed on this machine already (%s): the test would replace it; dpkg --purge bpfmon first", out)
	}
	dir, version := artefacts(t)
	debs, _ := filepath.Glob(filepath.Join(dir, "*.deb"))
	if len(debs) != 1 {
		t.Fatalf("want one .deb, got %v", debs)
	}
	dpkg := func(args ...string) {
		t.Helper()
		if out, err := exec.Command("dpkg", args...).CombinedOutput(); err != nil {
			t.Fatalf("dpkg %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
	dpkg("-i", debs[0])
	t.Cleanup(func() { exec.Command("dpkg", "--purge", "bpfmon").Run() })
	t.Logf("installed %s", filepath.Base(debs[0]))

	unit, err := os.ReadFile(unitPath)
	if err != nil {
		t.Fatal(err)
	}
	var execStart []string
	sc := bufio.NewScanner(bytes.NewReader(unit))
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "ExecStart="); ok {
			execStart = strings.Fields(v)
		}
	}
	if len(execStart) < 2 || execStart[0] != binPath {
		t.Fatalf("the installed unit runs %q, want %s", execStart, binPath)
	}
	// The files and directories the command line names.
	flag := func(name string) string {
		for i, a := range execStart {
			if a == "--"+name && i+1 < len(execStart) {
				return execStart[i+1]
			}
		}
		t.Fatalf("the unit's ExecStart has no --%s", name)
		return ""
	}
	for what, p := range map[string]string{
		"the binary": execStart[0], "--policy": flag("policy"), "--state's directory": filepath.Dir(flag("state")),
		"--output's directory": filepath.Dir(flag("output")), "the man page": manPath, "the logrotate snippet": logrotatePath,
	} {
		if _, err := os.Stat(p); err != nil {
			t.Errorf("%s: %v", what, err)
		}
	}
	if st, err := os.Stat(stateDir); err != nil || !st.IsDir() || st.Mode().Perm() != 0o700 {
		t.Errorf("state directory %s: %v (%v), want a directory of mode 0700", stateDir, st, err)
	}

	out, err := exec.Command("systemd-analyze", "verify", unitPath).CombinedOutput()
	if err != nil || len(out) > 0 {
		t.Errorf("systemd-analyze verify %s: %v\n%s", unitPath, err, out)
	} else {
		t.Logf("systemd-analyze verify %s: no complaint", unitPath)
	}
	out, err = exec.Command(binPath, "version").CombinedOutput()
	if err != nil || string(out) != "bpfmon "+version+"\n" {
		t.Errorf("%s version: %q (%v), want \"bpfmon %s\"", binPath, out, err, version)
	} else {
		t.Logf("%s version: %s", binPath, bytes.TrimSpace(out))
	}
	out, err = exec.Command("logrotate", "--debug", "--state", filepath.Join(t.TempDir(), "state"), logrotatePath).CombinedOutput()
	if err != nil || bytes.Contains(bytes.ToLower(out), []byte("error")) {
		t.Errorf("logrotate --debug %s: %v\n%s", logrotatePath, err, out)
	}
	policyStarts(t)

	dpkg("-r", "bpfmon")
	status, _ := exec.Command("dpkg-query", "-W", "-f", "${Status}", "bpfmon").Output()
	if string(status) != "deinstall ok config-files" {
		t.Errorf("after dpkg -r: status %q, want \"deinstall ok config-files\"", status)
	}
	for _, p := range []string{binPath, unitPath, manPath} {
		if _, err := os.Stat(p); err == nil {
			t.Errorf("after dpkg -r: %s is still there", p)
		}
	}
	for _, p := range []string{policyPath, logrotatePath} {
		if _, err := os.Stat(p); err != nil {
			t.Errorf("after dpkg -r: the conffile %s is gone: %v", p, err)
		}
	}
	dpkg("--purge", "bpfmon")
	for _, p := range []string{policyPath, logrotatePath, stateDir} {
		if _, err := os.Stat(p); err == nil {
			t.Errorf("after dpkg --purge: %s is still there", p)
		}
	}
}

// policyStarts runs the installed bpfmon with the installed default
// policy: a policy bpfmon refuses makes it exit at once, with 2.
func policyStarts(t *testing.T) {
	t.Helper()
	dir := t.TempDir()
	cmd := exec.Command(binPath, "watch", "--format", "json", "--policy", policyPath, "--alerts-only",
		"--output", filepath.Join(dir, "events.json"), "--state", filepath.Join(dir, "state"))
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		t.Fatalf("bpfmon watch --policy %s exited at once: %v\n%s", policyPath, err, &stderr)
	case <-time.After(testutil.Timeout(3 * time.Second)):
	}
	cmd.Process.Signal(syscall.SIGTERM)
	if err := <-done; err != nil {
		t.Errorf("bpfmon watch --policy %s: %v on SIGTERM\n%s", policyPath, err, &stderr)
	}
}

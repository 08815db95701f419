package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"

	"github.com/bpfmon/bpfmon/internal/testutil"
)

// Hostile input: what a user of the host, unprivileged or not, can do to
// bpfmon to blind it. Each test is a probe that once made bpfmon stop
// seeing something while it went on saying it was ready.

// connectEnv makes the test binary a process that opens connections to
// an address and holds them: "ADDR:N" (connectChild).
const connectEnv = "BPFMON_E2E_CONNECT"

// connectChild opens up to n connections to addr, says how many it got
// on stdout, and holds them until its stdin closes.
func connectChild(spec string) int {
	i := strings.LastIndexByte(spec, ':')
	n, err := strconv.Atoi(spec[i+1:])
	if i < 0 || err != nil {
		return 2
	}
	addr := spec[:i]
	var conns []net.Conn
	for range n {
		c, err := net.DialTimeout("tcp", addr, 200*time.Millisecond)
		if err != nil {
			continue // the kernel's queue is full: a flood goes on
		}
		conns = append(conns, c)
	}
	fmt.Println(len(conns))
	io.ReadAll(os.Stdin)
	return 0
}

// asNobody copies the test binary where user nobody can run it.
func asNobody(t *testing.T) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "bpfmon-nobody")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	os.Chmod(dir, 0o755)
	src, err := os.ReadFile(os.Args[0])
	if err != nil {
		t.Fatal(err)
	}
	exe := filepath.Join(dir, "flood.test")
	if err := os.WriteFile(exe, src, 0o755); err != nil {
		t.Fatal(err)
	}
	return exe
}

// TestHostileMetricsFlood: an unprivileged process (nobody) opens
// connections to the metrics port until bpfmon, with a descriptor limit
// of 300, would have none left. The server holds at most MaxConns of them
// (the rest wait in the kernel's queue), so the content scanner, which
// needs a descriptor for each map it reads, keeps passing during the
// flood and still reports an mmap write made afterwards. Before, the
// flood took every descriptor, the scanner's BPF_MAP_GET_FD_BY_ID failed
// with EMFILE once, and the scanner ended for good while /healthz kept
// answering ready.
func TestHostileMetricsFlood(t *testing.T) {
	flooder := asNobody(t)
	w := startWatchUnder(t, []string{"/bin/sh", "-c", `ulimit -n 300 && exec "$0" "$@"`},
		"--format", "json", "--scan-interval", "200ms", "--metrics-addr", "127.0.0.1:0", "--event", "map_changed")
	addr := w.metricsAddr(t)

	cmd := exec.Command(flooder, "-test.run=^$")
	cmd.Env = append(os.Environ(), connectEnv+"="+addr+":1500")
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		stdin.Close()
		cmd.Wait()
	}()
	line, err := bufio.NewReader(stdout).ReadString('\n')
	if err != nil {
		t.Fatalf("the flood: %v", err)
	}
	t.Logf("nobody holds %s connections to the metrics port", strings.TrimSpace(line))
	fds, _ := os.ReadDir(fmt.Sprintf("/proc/%d/fd", w.cmd.Process.Pid))
	t.Logf("bpfmon holds %d descriptors of its 300", len(fds))

	// The scanner keeps passing while the connections are held.
	w.waitScanPasses(t, 3)

	m, err := ebpf.NewMap(&ebpf.MapSpec{Name: "flood_mmap", Type: ebpf.Array, KeySize: 4, ValueSize: 8, MaxEntries: 4, Flags: unix.BPF_F_MMAPABLE})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	w.waitScanPasses(t, 2) // its baseline
	mem, err := unix.Mmap(m.FD(), 0, os.Getpagesize(), unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Munmap(mem)
	mem[8] = 0x5a // key 1, through memory: only the scanner sees it
	w.waitOutput(t, "map_changed for the mmap write made during the flood", func(lines []string) bool {
		for _, l := range lines {
			if strings.Contains(l, `"name":"flood_mmap"`) && strings.Contains(l, `"key":"01000000"`) && strings.Contains(l, `"change":"modified"`) {
				return true
			}
		}
		return false
	})
	if s := w.stderr.String(); strings.Contains(s, "too many open files") {
		t.Errorf("bpfmon ran out of descriptors:\n%s", s)
	}
	// The flood over, the server answers, and every part is healthy.
	stdin.Close()
	cmd.Wait()
	for deadline := time.Now().Add(testutil.Timeout(10 * time.Second)); ; time.Sleep(100 * time.Millisecond) {
		code, body := healthz(t, addr)
		if code == http.StatusOK && body == "ready\n" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("/healthz after the flood: %d %q", code, body)
		}
	}
}

// healthz is the status and body of GET /healthz; 0 when the server
// did not answer.
func healthz(t *testing.T, addr string) (int, string) {
	t.Helper()
	c := &http.Client{Timeout: 5 * time.Second}
	resp, err := c.Get("http://" + addr + "/healthz")
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// TestHostileSIGHUPWithoutOutput: SIGHUP to a watch that writes to its
// standard output (no --output) does not end it: it goes on, then stops
// cleanly at SIGINT. Before, SIGHUP's default action killed it (rc 129,
// nothing drained, and the next start saw an unclean stop).
func TestHostileSIGHUPWithoutOutput(t *testing.T) {
	testutil.RequireRoot(t)
	dir := t.TempDir()
	ready := filepath.Join(dir, "ready")
	out, err := os.Create(filepath.Join(dir, "stdout"))
	if err != nil {
		t.Fatal(err)
	}
	defer out.Close()
	cmd := exec.Command(bin, "watch", "--format", "json", "--ready-file", ready, "--scan-interval", "0", "--pid", "1")
	var stderr strings.Builder
	cmd.Stdout, cmd.Stderr = out, &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill() })
	waitReady(t, ready, cmd, &stderr)
	for range 3 {
		cmd.Process.Signal(syscall.SIGHUP)
		time.Sleep(100 * time.Millisecond)
	}
	time.Sleep(300 * time.Millisecond)
	if err := cmd.Process.Signal(syscall.Signal(0)); err != nil {
		t.Fatalf("bpfmon is gone after SIGHUP: %v; stderr:\n%s", err, stderr.String())
	}
	cmd.Process.Signal(syscall.SIGINT)
	if err := cmd.Wait(); err != nil {
		t.Fatalf("bpfmon watch without --output ended with %v after SIGHUP; stderr:\n%s", err, stderr.String())
	}
}

// TestHostileReloadPolicy: SIGHUP loads the policy again. A broken file
// keeps the policy in force (a stranger's write to a map it protects is
// still alerted, one to a map only the broken file names is not) and is
// reported with its FILE:LINE:COL; a fixed file that protects a new map
// replaces it, said by a policy_reloaded event, and a stranger's write to
// the new map is then alerted. Before, SIGHUP only reopened the output.
func TestHostileReloadPolicy(t *testing.T) {
	testutil.RequireRoot(t)
	_, a := newSpecMap(t, &ebpf.MapSpec{Name: "reload_a", Type: ebpf.Hash, KeySize: 4, ValueSize: 8, MaxEntries: 8})
	_, b := newSpecMap(t, &ebpf.MapSpec{Name: "reload_b", Type: ebpf.Hash, KeySize: 4, ValueSize: 8, MaxEntries: 8})
	foreign := testutil.ForeignExecutable(t, "stranger.test")
	pol := filepath.Join(t.TempDir(), "policy.yaml")
	write := func(text string) {
		t.Helper()
		if err := os.WriteFile(pol, []byte(text), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	limits := "alerts:\n  rate: 100000\n  burst: 100000\n"
	write("version: 1\nprotect:\n  - id: " + itoa(a) + "\n" + limits)
	w := startWatch(t, "--format", "json", "--alerts-only", "--scan-interval", "0", "--policy", pol)

	type line struct {
		alertEvent
		Part   string
		Path   string
		Reason string
	}
	events := func() []line {
		var out []line
		for _, l := range w.lines(t) {
			var ev line
			if json.Unmarshal([]byte(l), &ev) == nil {
				out = append(out, ev)
			}
		}
		return out
	}
	waitFor := func(what string, cond func(line) bool) {
		t.Helper()
		w.waitOutput(t, what, func([]string) bool {
			for _, ev := range events() {
				if cond(ev) {
					return true
				}
			}
			return false
		})
	}
	alerted := func(id uint32, pid int) bool {
		for _, ev := range events() {
			if ev.Alert != nil && ev.Alert.Rule == "foreign-write" && ev.on(id) && ev.by(pid) {
				return true
			}
		}
		return false
	}

	// Broken: protects b, but does not parse.
	write("version: 1\nprotect:\n  - id: " + itoa(a) + "\n  - id: " + itoa(b) + "\n  - bogus: 1\n" + limits)
	w.cmd.Process.Signal(syscall.SIGHUP)
	waitFor("part_error for the broken policy", func(ev line) bool {
		return ev.Event == "part_error" && ev.Part == "policy" && strings.Contains(ev.Reason, pol+":5:")
	})
	if !strings.Contains(w.stderr.String(), pol+":5:") {
		t.Errorf("the broken policy's FILE:LINE:COL is not logged:\n%s", w.stderr.String())
	}
	pa := act(t, foreign, "update:"+itoa(a)+":1")
	pb := act(t, foreign, "update:"+itoa(b)+":1")
	waitFor("foreign-write on the map the old policy protects", func(ev line) bool { return alerted(a, pa) })
	time.Sleep(300 * time.Millisecond) // the write to b had as long as the one to a
	if alerted(b, pb) {
		t.Errorf("the broken policy's map %d was protected", b)
	}

	// Fixed: now b is protected.
	write("version: 1\nprotect:\n  - id: " + itoa(a) + "\n  - id: " + itoa(b) + "\n" + limits)
	w.cmd.Process.Signal(syscall.SIGHUP)
	waitFor("policy_reloaded", func(ev line) bool {
		return ev.Event == "policy_reloaded" && ev.Source == "bpfmon" && ev.Path == pol && strings.Contains(ev.Reason, "id:"+itoa(b))
	})
	pb = act(t, foreign, "update:"+itoa(b)+":2")
	waitFor("foreign-write on the map the reloaded policy protects", func(ev line) bool { return alerted(b, pb) })
	w.stop(t, syscall.SIGINT)
}

// TestHostileSecondInstance: a second bpfmon watch on the host (the same
// lock) is refused at once, exit 1, naming the first's pid, which goes
// on; once the first is killed, the kernel frees the lock and a watch
// starts.
func TestHostileSecondInstance(t *testing.T) {
	first := startWatch(t, "--format", "json", "--scan-interval", "0", "--pid", "1")
	// Refused at once; one that was not would run until killed.
	ctx, cancel := context.WithTimeout(context.Background(), testutil.Timeout(10*time.Second))
	defer cancel()
	second := exec.CommandContext(ctx, bin, "watch", "--format", "json", "--scan-interval", "0", "--output", filepath.Join(t.TempDir(), "out"))
	second.Env = append(os.Environ(), lockEnv+"="+first.lock)
	out, err := second.CombinedOutput()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != exitError || !strings.Contains(string(out), "pid "+strconv.Itoa(first.cmd.Process.Pid)) {
		t.Fatalf("a second watch: %v; want exit %d naming pid %d:\n%s", err, exitError, first.cmd.Process.Pid, out)
	}
	if strings.Contains(string(out), "ready") {
		t.Errorf("the second watch got as far as ready:\n%s", out)
	}
	if err := first.cmd.Process.Signal(syscall.Signal(0)); err != nil {
		t.Fatalf("the first watch is gone: %v", err)
	}

	first.cmd.Process.Kill()
	first.cmd.Wait()
	dir := t.TempDir()
	ready := filepath.Join(dir, "ready")
	third := exec.Command(bin, "watch", "--format", "json", "--scan-interval", "0", "--pid", "1", "--output", filepath.Join(dir, "out"), "--ready-file", ready)
	third.Env = append(os.Environ(), lockEnv+"="+first.lock)
	var stderr strings.Builder
	third.Stderr = &stderr
	if err := third.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { third.Process.Kill(); third.Wait() })
	waitReady(t, ready, third, &stderr)
}

// TestHostileSelfReads: an admin's bpfmon maps and bpfmon features, the
// same executable as the watch, read bpfmon's own maps: no alert. Before,
// bpfmon maps raised a critical self-access alert for each of them. A
// stranger's handle to them still raises one.
func TestHostileSelfReads(t *testing.T) {
	w := startWatch(t, "--format", "json", "--alerts-only", "--scan-interval", "0", "--policy", unlimitedAlerts(t))
	var pids []int
	for _, sub := range []string{"maps", "features"} {
		cmd := exec.Command(bin, sub, "--format", "json")
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("bpfmon %s: %v\n%s", sub, err, out)
		}
		pids = append(pids, cmd.Process.Pid)
	}
	// A stranger's handle to one of them, for a positive control.
	own := w.ownMaps(t)
	if len(own) == 0 {
		t.Fatal("no map of bpfmon's found")
	}
	stranger := act(t, testutil.ForeignExecutable(t, "stranger.test"), "getfd:"+itoa(own[0].ID))
	w.waitOutput(t, "self-access alert for the stranger's handle", func(lines []string) bool {
		for _, ev := range parseAlerts(t, lines) {
			if ev.Alert != nil && ev.Alert.Rule == "self-access" && ev.by(stranger) {
				return true
			}
		}
		return false
	})
	lines := w.stop(t, syscall.SIGINT)
	for _, ev := range parseAlerts(t, lines) {
		for _, pid := range pids {
			if ev.Alert != nil && ev.by(pid) {
				t.Errorf("bpfmon's own reads alerted: %s %s: %s", ev.Alert.Rule, ev.Alert.Severity, ev.Alert.Reason)
			}
		}
	}
}

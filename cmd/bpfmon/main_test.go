package main

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
	"unsafe"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/cilium/ebpf/btf"
	"golang.org/x/sys/unix"

	"github.com/bpfmon/bpfmon/internal/cgroups"
	"github.com/bpfmon/bpfmon/internal/features"
	"github.com/bpfmon/bpfmon/internal/sensor/kernelwrite"
	"github.com/bpfmon/bpfmon/internal/sensor/kernelwrite/writers"
	"github.com/bpfmon/bpfmon/internal/testutil"
)

// bin is the bpfmon binary under test, built once by TestMain.
var bin string

// hostileName is a process name made to forge or hide output lines and to
// send terminal escapes.
var hostileName = "x\n\"y\x1b[2J"

func TestMain(m *testing.M) {
	if acts := os.Getenv(actEnv); acts != "" {
		if err := actChild(acts); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	if spec := os.Getenv(connectEnv); spec != "" {
		os.Exit(connectChild(spec))
	}
	// As a holder: create and pin a map at $1, print its id, hold it until
	// stdin closes.
	if path := os.Getenv("BPFMON_E2E_HOLD"); path != "" {
		mp, err := ebpf.NewMap(&ebpf.MapSpec{Name: "e2e_held", Type: ebpf.Hash, KeySize: 4, ValueSize: 8, MaxEntries: 8})
		if err != nil || mp.Pin(path) != nil {
			os.Exit(6)
		}
		info, _ := mp.Info()
		id, _ := info.ID()
		fmt.Println(id)
		io.ReadAll(os.Stdin)
		os.Exit(0)
	}
	// As a child: take the hostile name, then update map id $1 once.
	if os.Getenv("BPFMON_E2E_CHILD") != "" {
		name := append([]byte(hostileName), 0)
		if err := unix.Prctl(unix.PR_SET_NAME, uintptr(unsafe.Pointer(&name[0])), 0, 0, 0); err != nil {
			os.Exit(3)
		}
		id, _ := strconv.Atoi(os.Args[len(os.Args)-1])
		mp, err := ebpf.NewMapFromID(ebpf.MapID(id))
		if err != nil {
			os.Exit(4)
		}
		if err := mp.Update(uint32(2), uint64(0x4242), 0); err != nil {
			os.Exit(5)
		}
		os.Exit(0)
	}
	dir, err := os.MkdirTemp("", "bpfmon-e2e")
	if err != nil {
		panic(err)
	}
	os.Chmod(dir, 0o755) // the not-root test runs the binary as nobody
	// One bpfmon watch per host, but tests run many, and other packages'
	// tests run theirs: this package's have locks of their own
	// (startWatch gives each watch its own).
	os.Setenv(lockEnv, filepath.Join(dir, "watch.lock"))
	bin = filepath.Join(dir, "bpfmon")
	if prebuilt := testutil.Binary(); prebuilt != "" {
		bin = prebuilt // built beforehand: the VM test matrix has no Go toolchain
	} else if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "building bpfmon: %v\n%s", err, out)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

type watcher struct {
	cmd    *exec.Cmd
	out    string // events file
	lock   string // its one-per-host lock (lockEnv)
	status string // its status file (statusEnv), if any
	stderr lockedBuffer
}

// lockedBuffer holds bpfmon's stderr, written by exec's copier while the
// test reads it.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// statusLines are the lines bpfmon has written to its status descriptor
// so far (statusEnv: "ready scanner=on", "scan_pass N").
func (w *watcher) statusLines() []string {
	b, err := os.ReadFile(w.status)
	if err != nil {
		return nil
	}
	return strings.Split(strings.TrimSuffix(string(b), "\n"), "\n")
}

// scanPasses is the number of the last pass the scanner completed.
func (w *watcher) scanPasses() int {
	lines := w.statusLines()
	for i := len(lines) - 1; i >= 0; i-- {
		if v, ok := strings.CutPrefix(lines[i], "scan_pass "); ok {
			n, _ := strconv.Atoi(v)
			return n
		}
	}
	return 0
}

// withStatus has w.cmd tell its progress in a file of dir (statusEnv),
// which statusLines and scanPasses read.
func (w *watcher) withStatus(t *testing.T, dir string) {
	t.Helper()
	w.status = filepath.Join(dir, "status")
	f, err := os.OpenFile(w.status, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	w.cmd.ExtraFiles = append(w.cmd.ExtraFiles, f)
	if w.cmd.Env == nil {
		w.cmd.Env = os.Environ()
	}
	w.cmd.Env = append(w.cmd.Env, statusEnv+"="+strconv.Itoa(2+len(w.cmd.ExtraFiles)))
}

// scanPassWait bounds the wait for a content scanner pass: it is a
// bound for a hang, not a speed target (10 s failed on a loaded host,
// where another package's huge map was being read).
const scanPassWait = 30 * time.Second

// waitScanPasses waits until the scanner has completed n more passes: with
// n = 2, at least one pass started after the call and has reported what
// it found, grace period included.
func (w *watcher) waitScanPasses(t *testing.T, n int) {
	t.Helper()
	want := w.scanPasses() + n
	// A pass reads every map on the host: go test runs packages side by
	// side, and another package's map of millions of elements makes a
	// pass take seconds on a loaded machine (scanPassWait).
	deadline := time.Now().Add(testutil.Timeout(scanPassWait))
	for w.scanPasses() < want {
		if time.Now().After(deadline) {
			t.Fatalf("the content scanner did not complete pass %d within %v (at %d); status: %q; stderr:\n%s", want, scanPassWait, w.scanPasses(), w.statusLines(), w.stderr.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// lines is the output so far, complete lines only.
func (w *watcher) lines(t *testing.T) []string {
	t.Helper()
	b, err := os.ReadFile(w.out)
	if err != nil {
		t.Fatal(err)
	}
	if i := bytes.LastIndexByte(b, '\n'); i >= 0 {
		return strings.Split(string(b[:i]), "\n")
	}
	return nil
}

// waitOutput waits until cond holds for the output so far: events
// written while bpfmon runs (those the output flushes within a poll
// interval), for what a stop would not bring.
func (w *watcher) waitOutput(t *testing.T, what string, cond func(lines []string) bool) {
	t.Helper()
	deadline := time.Now().Add(testutil.Timeout(10 * time.Second))
	for !cond(w.lines(t)) {
		if time.Now().After(deadline) {
			t.Fatalf("not written within 10s: %s\n%s", what, strings.Join(w.lines(t), "\n"))
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func startWatch(t *testing.T, args ...string) *watcher {
	t.Helper()
	return startWatchUnder(t, nil, args...)
}

// startWatchUnder starts bpfmon watch as startWatch does, through the
// command line wrap (nil: none), which must exec bpfmon in its own
// process: "sh -c 'ulimit -n 300; exec \"$0\" \"$@\"'".
func startWatchUnder(t *testing.T, wrap []string, args ...string) *watcher {
	t.Helper()
	testutil.RequireRoot(t)
	dir := t.TempDir()
	w := &watcher{out: filepath.Join(dir, "events")}
	ready := filepath.Join(dir, "ready")
	argv := append([]string{bin, "watch", "--output", w.out, "--ready-file", ready, "--log-level", "debug"}, args...)
	argv = append(slices.Clone(wrap), argv...)
	w.cmd = exec.Command(argv[0], argv[1:]...)
	w.lock = filepath.Join(dir, "watch.lock")
	w.cmd.Env = append(os.Environ(), lockEnv+"="+w.lock)
	w.cmd.Stderr = &w.stderr
	w.withStatus(t, dir)
	if err := w.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { w.cmd.Process.Kill() })
	deadline := time.Now().Add(testutil.Timeout(10 * time.Second))
	for {
		// The ready file, then the status line that follows it.
		if b, err := os.ReadFile(ready); err == nil && strings.TrimSpace(string(b)) == strconv.Itoa(w.cmd.Process.Pid) &&
			slices.ContainsFunc(w.statusLines(), func(l string) bool { return strings.HasPrefix(l, "ready ") }) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("bpfmon watch not ready after 10s: status %q: %s", w.statusLines(), w.stderr.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	// The content scanner's first pass is its baseline: a change made
	// before it completes is part of the baseline, not a change.
	if !slices.Contains(w.statusLines(), "ready scanner=on") {
		return w
	}
	deadline = time.Now().Add(testutil.Timeout(scanPassWait))
	for w.scanPasses() < 1 {
		if time.Now().After(deadline) {
			t.Fatalf("the content scanner's first pass did not complete within %v: %s", scanPassWait, w.stderr.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	return w
}

// stop sends sig, waits for a clean exit and returns the output lines.
func (w *watcher) stop(t *testing.T, sig syscall.Signal) []string {
	t.Helper()
	w.cmd.Process.Signal(sig)
	done := make(chan error, 1)
	go func() { done <- w.cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("bpfmon watch exited with %v; stderr: %s", err, w.stderr.String())
		}
	case <-time.After(testutil.Timeout(10 * time.Second)):
		t.Fatal("bpfmon watch did not exit within 10s of the signal")
	}
	b, err := os.ReadFile(w.out)
	if err != nil {
		t.Fatal(err)
	}
	if len(b) > 0 && b[len(b)-1] != '\n' {
		t.Errorf("output does not end with a newline")
	}
	return strings.Split(strings.TrimSuffix(string(b), "\n"), "\n")
}

// summary parses "stopped: N events, M lost" from stderr.
func (w *watcher) summary(t *testing.T) (events, lost int) {
	t.Helper()
	m := regexp.MustCompile(`stopped: (\d+) events, (\d+) lost`).FindStringSubmatch(w.stderr.String())
	if m == nil {
		t.Fatalf("no summary on stderr: %q", w.stderr.String())
	}
	events, _ = strconv.Atoi(m[1])
	lost, _ = strconv.Atoi(m[2])
	return events, lost
}

func newMap(t *testing.T) (*ebpf.Map, uint32) {
	t.Helper()
	m, err := ebpf.NewMap(&ebpf.MapSpec{Name: "e2e_map", Type: ebpf.Hash, KeySize: 4, ValueSize: 8, MaxEntries: 8})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	info, _ := m.Info()
	id, _ := info.ID()
	return m, uint32(id)
}

func hostileChild(t *testing.T, id uint32) int {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$", strconv.Itoa(int(id)))
	cmd.Env = append(os.Environ(), "BPFMON_E2E_CHILD=1")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("child: %v %s", err, out)
	}
	return cmd.Process.Pid
}

type jsonEvent struct {
	Time    string `json:"time"`
	Event   string `json:"event"`
	Source  string `json:"source"`
	Result  *int64 `json:"result"`
	Process *struct {
		PID      uint32  `json:"pid"`
		TID      uint32  `json:"tid"`
		PPID     *uint32 `json:"ppid"`
		UID      *uint32 `json:"uid"`
		Comm     string  `json:"comm"`
		Exe      string  `json:"exe"`
		CgroupID uint64  `json:"cgroup_id"`
	} `json:"process"`
	Map *struct {
		ID         uint32  `json:"id"`
		Name       string  `json:"name"`
		Type       string  `json:"type"`
		KeySize    uint32  `json:"key_size"`
		ValueSize  uint32  `json:"value_size"`
		MaxEntries uint32  `json:"max_entries"`
		Flags      *uint32 `json:"flags"`
	} `json:"map"`
	Prog *struct {
		ID   uint32 `json:"id"`
		Name string `json:"name"`
		Tag  string `json:"tag"`
	} `json:"prog"`
	FD        *int32  `json:"fd"`
	Key       string  `json:"key"`
	Value     string  `json:"value"`
	Truncated *bool   `json:"truncated"`
	Count     *uint64 `json:"count"`
	Path      string  `json:"path"`
}

func TestWatchJSON(t *testing.T) {
	w := startWatch(t, "--format", "json")
	m, id := newMap(t)
	if err := m.Update(uint32(1), uint64(0x0102030405060708), 0); err != nil {
		t.Fatal(err)
	}
	childPID := hostileChild(t, id)

	// The demo writer, as a user would run it next to watch.
	demo := exec.Command(bin, "mapwriter", "--count", "2", "--interval", "20ms")
	demoOut, err := demo.CombinedOutput()
	if err != nil {
		t.Fatalf("bpfmon mapwriter: %v: %s", err, demoOut)
	}
	lines := w.stop(t, syscall.SIGINT)
	events, lost := w.summary(t)
	if events != len(lines) || lost != 0 {
		t.Errorf("summary says %d events, %d lost; output has %d lines", events, lost, len(lines))
	}

	var own, hostile, demoUpdates, demoProgWrites int
	timeRE := regexp.MustCompile(`^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{9}(Z|[+-]\d\d:\d\d)$`)
	for _, line := range lines {
		var ev jsonEvent
		if err := json.Unmarshal([]byte(line), &ev); err != nil {
			t.Fatalf("invalid JSON line %q: %v", line, err)
		}
		if ev.Source == "scan" {
			// The content scanner's findings about other maps on the host
			// (TestWatchScanner checks them).
			if !timeRE.MatchString(ev.Time) || ev.Map == nil || (ev.Event != "map_changed" && ev.Event != "map_not_scanned") {
				t.Errorf("bad scanner event: %s", line)
			}
			continue
		}
		if ev.Source == "lineage" {
			// How other processes on the host came to be (go test runs
			// packages in parallel; TestOwnerImpersonation checks them).
			if !timeRE.MatchString(ev.Time) || ev.Event != "lineage" || ev.Process == nil {
				t.Errorf("bad lineage event: %s", line)
			}
			continue
		}
		if ev.Source == "kernel" {
			// The demo's program writes key 1, where a kernel hook sees it.
			if ev.Event == "map_update" && ev.Map != nil && ev.Map.Name == "bpfmon_demo" && ev.Key == "01000000" && ev.Prog != nil &&
				ev.Prog.Name == "bpfmon_demo_wr" && ev.Prog.ID != 0 && len(ev.Prog.Tag) == 16 && ev.Process != nil && ev.Process.PID == uint32(demo.Process.Pid) {
				demoProgWrites++
			} else if ev.Event == "map_writes_counted" && ev.Map != nil && ev.Map.Name == "bpfmon_demo" && ev.Prog != nil && ev.Prog.Name == "bpfmon_demo_wr" &&
				ev.Count != nil && ev.Process != nil && ev.Process.PID == uint32(demo.Process.Pid) {
				// Its later writes, counted in the kernel (--kernel-writes
				// selective): a known program on a map nobody selected.
				demoProgWrites += int(*ev.Count)
			} else if !timeRE.MatchString(ev.Time) || ev.Map == nil || ev.Prog == nil {
				t.Errorf("bad kernel-side event: %s", line)
			}
			continue
		}
		if ev.Source == "netattach" {
			// Other processes' netlink changes and link releases (go test
			// runs packages in parallel: a `bpfmon features` closes the
			// links of the sensors it tried; internal/sensor/netattach
			// checks these events).
			if !timeRE.MatchString(ev.Time) || ev.Process == nil ||
				(ev.Event != "link_release" && ev.Event != "xdp_set" && ev.Event != "tc_filter_del") {
				t.Errorf("bad netattach event: %s", line)
			}
			continue
		}
		if ev.Source == "alert" {
			// The rate limit's count of alerts on other processes' calls
			// (packages that walk every map open bpfmon's own: self-access).
			if !timeRE.MatchString(ev.Time) || ev.Event != "alerts_suppressed" {
				t.Errorf("bad alert-engine event: %s", line)
			}
			continue
		}
		if !timeRE.MatchString(ev.Time) || ev.Source != "syscall" || ev.Process == nil {
			t.Errorf("incomplete event: %s", line)
			continue
		}
		if ev.Result == nil {
			// Other processes on the host (go test runs packages in
			// parallel) may be inside bpf(2) at the stop; ours are not.
			if ev.Process.PID == uint32(os.Getpid()) || ev.Process.PID == uint32(childPID) {
				t.Errorf("no result: %s", line)
			}
			continue
		}
		if ev.Process.PID == uint32(w.cmd.Process.Pid) {
			t.Errorf("bpfmon's own call reported: %s", line)
		}
		switch {
		case ev.Event == "map_update" && ev.Map != nil && ev.Map.ID == id && ev.Process.PID == uint32(os.Getpid()):
			own++
			if ev.Key != "01000000" || ev.Value != "0807060504030201" || *ev.Result != 0 || ev.Map.Name != "e2e_map" ||
				ev.Map.Type != "hash" || ev.Map.KeySize != 4 || ev.Map.ValueSize != 8 || ev.Map.MaxEntries != 8 ||
				ev.FD == nil || *ev.FD != int32(m.FD()) || ev.Truncated == nil || *ev.Truncated {
				t.Errorf("own update reported wrongly: %s", line)
			}
			if exe, _ := os.Executable(); ev.Process.Exe != exe || ev.Process.TID == 0 || ev.Process.CgroupID == 0 || ev.Process.PPID == nil || ev.Process.UID == nil {
				t.Errorf("process context: %s (want exe %s)", line, exe)
			}
		case ev.Event == "map_update" && ev.Map != nil && ev.Map.ID == id && ev.Process.PID == uint32(childPID):
			hostile++
			if ev.Process.Comm != hostileName {
				t.Errorf("hostile comm came back as %q", ev.Process.Comm)
			}
		case ev.Event == "map_update" && ev.Map != nil && ev.Map.Name == "bpfmon_demo" && ev.Process.PID == uint32(demo.Process.Pid):
			demoUpdates++
			if !strings.HasSuffix(ev.Process.Exe, "/bpfmon") || ev.Key != "00000000" {
				t.Errorf("demo update: %s", line)
			}
		}
	}
	if own != 1 || hostile != 1 || demoUpdates != 2 {
		t.Errorf("own=%d hostile=%d demo=%d updates reported, want 1, 1, 2\n%s", own, hostile, demoUpdates, strings.Join(lines, "\n"))
	}
	// Where the kernel allows a hook, the demo program's writes too.
	wantProg := 2
	if features.Kprobes() != nil && features.Fentry() != nil {
		wantProg = 0
	}
	if demoProgWrites != wantProg {
		t.Errorf("%d writes by the demo program reported, want %d\n%s", demoProgWrites, wantProg, strings.Join(lines, "\n"))
	}
}

func TestWatchTextEscapesHostileNames(t *testing.T) {
	w := startWatch(t, "--format", "text", "--event", "map_update")
	m, id := newMap(t)
	if err := m.Update(uint32(1), uint64(7), 0); err != nil {
		t.Fatal(err)
	}
	hostileChild(t, id)
	lines := w.stop(t, syscall.SIGTERM)
	events, _ := w.summary(t)
	if events != len(lines) || events < 2 {
		t.Fatalf("%d events, %d lines:\n%s", events, len(lines), strings.Join(lines, "\n"))
	}
	var sawHostile bool
	for _, line := range lines {
		for _, r := range line {
			if r < 0x20 || r == 0x7f || (r >= 0x80 && r < 0xa0) {
				t.Errorf("control character %U in text line %q", r, line)
			}
		}
		if !strings.Contains(line, "map_update") {
			t.Errorf("line without its event: %q", line)
		}
		// Exactly Go-quoted: an unescaped quote or escape would not match.
		if strings.Contains(line, fmt.Sprintf(" map=%d:", id)) && strings.Contains(line, " comm="+strconv.Quote(hostileName)+" ") {
			sawHostile = true
		}
	}
	if !sawHostile {
		t.Errorf("hostile process's update not found, escaped, in:\n%s", strings.Join(lines, "\n"))
	}
}

func TestWatchFilters(t *testing.T) {
	m1, id1 := newMap(t)
	w := startWatch(t, "--format", "json", "--map-id", strconv.Itoa(int(id1)), "--pid", strconv.Itoa(os.Getpid()))
	m2, _ := newMap(t)
	m1.Update(uint32(1), uint64(1), 0)
	m2.Update(uint32(1), uint64(1), 0)
	hostileChild(t, id1) // another pid: filtered out
	lines := w.stop(t, syscall.SIGINT)
	if len(lines) != 1 {
		t.Fatalf("want exactly the one update of map %d by this pid, got:\n%s", id1, strings.Join(lines, "\n"))
	}
	var ev jsonEvent
	if err := json.Unmarshal([]byte(lines[0]), &ev); err != nil || ev.Map.ID != id1 || ev.Event != "map_update" {
		t.Errorf("filtered event: %s", lines[0])
	}
}

// runInProcess runs bpfmon's run with args in this process, standard
// output and error both into out: for command lines refused before
// anything starts, it is what the binary would do, without building and
// starting one each time.
func runInProcess(t *testing.T, args ...string) (code int, out string) {
	t.Helper()
	var b lockedBuffer
	done := make(chan int, 1)
	go func() { done <- run(args, &b, &b) }()
	select {
	case code = <-done:
	case <-time.After(testutil.Timeout(20 * time.Second)):
		// A command line accepted by mistake would watch forever.
		t.Fatalf("bpfmon %v did not return within 20s: %s", args, b.String())
	}
	return code, b.String()
}

func TestUsageErrors(t *testing.T) {
	for _, tc := range []struct {
		args []string
		code int
		msg  string
	}{
		{[]string{}, 2, "Usage"},
		{[]string{"frobnicate"}, 2, "unknown command"},
		{[]string{"watch", "--bogus"}, 2, "flag provided but not defined"},
		{[]string{"watch", "--format", "xml"}, 2, "unknown --format"},
		{[]string{"watch", "--event", "map_nope"}, 2, "unknown event type"},
		{[]string{"watch", "--pid", "abc"}, 2, "not a number"},
		{[]string{"watch", "--capture-bytes", "0"}, 2, "capture-bytes"},
		{[]string{"watch", "--ring-buffer", "lots"}, 2, "ring-buffer"},
		{[]string{"watch", "extra"}, 2, "unexpected argument"},
		{[]string{"watch", "--hook", "kprobe"}, 2, "unknown --hook"},
		{[]string{"watch", "--event="}, 2, "empty name"},
		{[]string{"watch", "--event", "map_update,,map_delete"}, 2, "empty name"},
		{[]string{"watch", "--map-name="}, 2, "empty name"},
		{[]string{"watch", "--map-id", "1,,2"}, 2, "empty id"},
		{[]string{"watch", "--map-id", "0"}, 2, "out of range"},
		{[]string{"watch", "--map-id", "4294967296"}, 2, "out of range"},
		{[]string{"watch", "--pid", "0"}, 2, "out of range"},
		{[]string{"watch", "--pid", "-5"}, 2, "not a number"},
		{[]string{"watch", "--format="}, 2, "unknown --format"},
		{[]string{"watch", "--capture-bytes", "-1"}, 2, "capture-bytes"},
		{[]string{"watch", "--capture-bytes", "99999999999999999999"}, 2, "out of range"},
		{[]string{"watch", "--ring-buffer", "3"}, 2, "between 4K and 1G"},
		{[]string{"watch", "--ring-buffer", "2G"}, 2, "between 4K and 1G"},
		{[]string{"watch", "--ring-buffer", "-1M"}, 2, "between 4K and 1G"},
		{[]string{"watch", "--scan-budget", "xyz"}, 2, "invalid --scan-budget"},
		{[]string{"watch", "--scan-memory", "-5"}, 2, "invalid --scan-memory"},
		{[]string{"watch", "--scan-interval", "-1s"}, 2, "invalid --scan-interval"},
		{[]string{"watch", "--scan-interval", "soon"}, 2, "scan-interval"},
		{[]string{"watch", "--scan-max-keyed", "0"}, 2, "invalid --scan-max-keyed"},
		{[]string{"watch", "--state", "/tmp/s", "--scan-interval", "0"}, 2, "needs the content scanner"},
		{[]string{"watch", "--state", "/"}, 2, "is a directory"},
		{[]string{"watch", "--ready-file", "/nonexistent/dir/ready"}, 2, "cannot create"},
		{[]string{"watch", "--cpu-profile", "/nonexistent/dir/prof"}, 2, "cpu-profile"},
		{[]string{"watch", "--kernel-hooks", "bogus"}, 2, "unknown --kernel-hooks"},
		{[]string{"watch", "--log-format", "xml"}, 2, "unknown --log-format"},
		{[]string{"watch", "--log-level", "trace"}, 2, "unknown --log-level \"trace\": want debug, info, warn or error"},
		{[]string{"watch", "--output", "/tmp/x", "--output-max-size", "1500K"}, 2, "invalid --output-max-size \"1500K\": want a whole number of MiB"},
		{[]string{"watch", "--output-max-size", "10M"}, 2, "--output-max-size rotates the --output file: give --output FILE"},
		{[]string{"watch", "--output", "/tmp/x", "--output-max-size", "1M", "--output-max-files", "-1"}, 2, "invalid --output-max-files -1"},
		{[]string{"watch", "--policy", "/nonexistent"}, 2, "cannot read policy"},
		{[]string{"watch", "--protect", "bogus"}, 2, "missing \":\""},
		{[]string{"watch", "--protect", "id:abc"}, 2, "not a whole number"},
		{[]string{"watch", "--protect", "pin:relative"}, 2, "not absolute"},
		{[]string{"watch", "--alerts-only=maybe"}, 2, "invalid boolean"},
		{[]string{"watch", "--metrics-addr", "9567"}, 2, "invalid --metrics-addr \"9567\": want HOST:PORT, such as :9567"},
		{[]string{"watch", "--metrics-addr", ":http"}, 2, "port \"http\" is not a number from 0 to 65535"},
		{[]string{"watch", "--metrics-addr", "127.0.0.1:70000"}, 2, "invalid --metrics-addr"},
		{[]string{"watch", "--metrics-pod-labels"}, 2, "--metrics-pod-labels labels the metrics --metrics-addr serves: give --metrics-addr HOST:PORT too"},
		{[]string{"maps", "--id", "0"}, 2, "out of range"},
		{[]string{"maps", "--dump-max", "-1"}, 2, "invalid --dump-max"},
		{[]string{"maps", "--pid", "x"}, 2, "not a number"},
		{[]string{"mapwriter", "--interval", "0"}, 2, "--interval must be positive"},
		{[]string{"maps", "--format", "xml"}, 2, "unknown --format"},
		{[]string{"features", "--format", "xml"}, 2, "unknown --format"},
		{[]string{"features", "--help"}, 0, "--format"},
		{[]string{"maps", "--help"}, 0, "--dump"},
		{[]string{"watch", "--help"}, 0, "--ready-file"},
		{[]string{"mapwriter", "--help"}, 0, "--interval"},
		{[]string{"version"}, 0, "bpfmon"},
	} {
		code, out := runInProcess(t, tc.args...)
		if code != tc.code || !strings.Contains(out, tc.msg) {
			t.Errorf("bpfmon %v: exit %d, want %d; output lacks %q: %s", tc.args, code, tc.code, tc.msg, out)
		}
	}
}

func TestNotRootNamesCapability(t *testing.T) {
	testutil.RequireRoot(t)
	cmd := exec.Command(bin, "watch", "--format", "json")
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	ee, ok := err.(*exec.ExitError)
	if !ok || ee.ExitCode() != 1 || !strings.Contains(out.String(), "CAP_BPF") {
		t.Errorf("as nobody: %v: %s", err, out.String())
	}
}

// TestWatchScanner: with the content scanner on, a syscall update is
// reported once, as map_update, and a BPF program's write, which no hook
// sees (kernel hooks off, as on kernels that allow none), as map_changed.
func TestWatchScanner(t *testing.T) {
	m, id := newMap(t) // before watch starts: in the scanner's baseline
	prog, err := writingProgram(m)
	if err != nil {
		t.Fatal(err)
	}
	defer prog.Close()
	w := startWatch(t, "--format", "json", "--scan-interval", "300ms", "--map-id", strconv.Itoa(int(id)), "--kernel-hooks", "off")
	// The ready file says the baseline is taken.
	if err := m.Update(uint32(1), uint64(0x11), 0); err != nil {
		t.Fatal(err)
	}
	if _, err := prog.Run(&ebpf.RunOptions{Data: make([]byte, 64)}); err != nil {
		t.Fatal(err)
	}
	w.waitScanPasses(t, 2)
	lines := w.stop(t, syscall.SIGINT)
	var updates, changedKey1, changedKey2 int
	for _, line := range lines {
		var ev struct {
			Event, Source, Key, Value, Change string
		}
		if err := json.Unmarshal([]byte(line), &ev); err != nil {
			t.Fatalf("%q: %v", line, err)
		}
		switch {
		case ev.Event == "map_update" && ev.Key == "01000000":
			updates++
		case ev.Event == "map_changed" && ev.Key == "01000000":
			changedKey1++
		case ev.Event == "map_changed" && ev.Key == "02000000" && ev.Source == "scan" && ev.Change == "added" && ev.Value == "7700000000000000":
			changedKey2++
		}
	}
	if updates != 1 || changedKey1 != 0 || changedKey2 != 1 {
		t.Errorf("map_update of key 1: %d (want 1), map_changed of key 1: %d (want 0), map_changed of key 2 by the program: %d (want 1)\n%s",
			updates, changedKey1, changedKey2, strings.Join(lines, "\n"))
	}
}

// TestWatchStateWhileDown: stop bpfmon, change a map, start it again: the
// change is reported as made while bpfmon was down. A state file that is
// not bpfmon's is reported, left alone, and does not stop monitoring.
func TestWatchStateWhileDown(t *testing.T) {
	m, id := newMap(t)
	m.Update(uint32(1), uint64(1), 0)
	state := filepath.Join(t.TempDir(), "state.json")
	args := []string{"--format", "json", "--scan-interval", "200ms", "--state", state, "--map-id", strconv.Itoa(int(id))}

	w := startWatch(t, args...)
	w.waitScanPasses(t, 1) // a pass saved the state
	w.stop(t, syscall.SIGTERM)

	if err := m.Update(uint32(1), uint64(0x99), 0); err != nil { // while down
		t.Fatal(err)
	}
	w = startWatch(t, args...)
	w.waitScanPasses(t, 1)
	lines := w.stop(t, syscall.SIGTERM)
	var found int
	for _, line := range lines {
		var ev struct {
			Event     string
			WhileDown bool `json:"while_down"`
		}
		if err := json.Unmarshal([]byte(line), &ev); err != nil {
			t.Fatalf("%q: %v", line, err)
		}
		if ev.Event == "map_changed" && ev.WhileDown && strings.Contains(line, `"key":"01000000"`) && strings.Contains(line, `"value":"9900000000000000"`) && strings.Contains(line, `"old_value":"0100000000000000"`) {
			found++
		}
	}
	if found != 1 {
		t.Errorf("want one while_down map_changed for key 1, got %d:\n%s", found, strings.Join(lines, "\n"))
	}

	foreign := filepath.Join(t.TempDir(), "notes.txt")
	os.WriteFile(foreign, []byte("mine\n"), 0o600)
	w = startWatch(t, "--format", "json", "--scan-interval", "200ms", "--state", foreign)
	w.stop(t, syscall.SIGINT) // the state file is read before the ready file
	if b, _ := os.ReadFile(foreign); string(b) != "mine\n" || !strings.Contains(w.stderr.String(), "not a bpfmon state file") {
		t.Errorf("foreign state file: content %q, stderr %q", b, w.stderr.String())
	}
}

// TestWatchScannerNewMap: a map created after watch started and written
// through mmap at once is reported, with its creation as the baseline.
func TestWatchScannerNewMap(t *testing.T) {
	w := startWatch(t, "--format", "json", "--scan-interval", "300ms", "--event", "map_changed")
	m, err := ebpf.NewMap(&ebpf.MapSpec{Name: "e2e_mmap", Type: ebpf.Array, KeySize: 4, ValueSize: 8, MaxEntries: 4, Flags: unix.BPF_F_MMAPABLE})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	mem, err := unix.Mmap(m.FD(), 0, os.Getpagesize(), unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Munmap(mem)
	mem[8] = 0x5a // key 1, through memory: no hook sees it
	w.waitScanPasses(t, 2)
	lines := w.stop(t, syscall.SIGINT)
	var found bool
	for _, line := range lines {
		if strings.Contains(line, `"name":"e2e_mmap"`) && strings.Contains(line, `"key":"01000000"`) &&
			strings.Contains(line, `"value":"5a00000000000000"`) && strings.Contains(line, `"change":"modified"`) {
			found = true
		}
	}
	if !found {
		t.Errorf("no map_changed for the mmap write:\n%s", strings.Join(lines, "\n"))
	}
}

// TestMapsInventory: a map created, pinned and held by another process is
// listed with its holder, its pin and its attributes.
func TestMapsInventory(t *testing.T) {
	testutil.RequireRoot(t)
	pin := filepath.Join(testutil.BPFFSPath(t), "bpfmon_e2e_"+strconv.Itoa(os.Getpid()))
	t.Cleanup(func() { os.Remove(pin) })
	holder := exec.Command(os.Args[0], "-test.run=^$")
	holder.Env = append(os.Environ(), "BPFMON_E2E_HOLD="+pin)
	stdin, _ := holder.StdinPipe()
	stdout, _ := holder.StdoutPipe()
	if err := holder.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { stdin.Close(); holder.Wait() }()
	line, err := bufio.NewReader(stdout).ReadString('\n')
	if err != nil {
		t.Fatalf("holder: %v", err)
	}
	id := strings.TrimSpace(line)

	out, err := exec.Command(bin, "maps", "--format", "json", "--id", id).Output()
	if err != nil {
		t.Fatalf("bpfmon maps: %v", err)
	}
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	if len(lines) != 1 {
		t.Fatalf("want one map, got:\n%s", out)
	}
	var m struct {
		ID         uint32 `json:"id"`
		Name       string `json:"name"`
		Type       string `json:"type"`
		KeySize    uint32 `json:"key_size"`
		ValueSize  uint32 `json:"value_size"`
		MaxEntries uint32 `json:"max_entries"`
		Holders    []struct {
			PID      int  `json:"pid"`
			Writable bool `json:"writable"`
		} `json:"holders"`
		Pins     []string          `json:"pins"`
		Programs []json.RawMessage `json:"programs"`
	}
	if err := json.Unmarshal([]byte(lines[0]), &m); err != nil {
		t.Fatal(err)
	}
	if strconv.Itoa(int(m.ID)) != id || m.Name != "e2e_held" || m.Type != "hash" || m.KeySize != 4 || m.ValueSize != 8 || m.MaxEntries != 8 ||
		m.Programs == nil || len(m.Pins) != 1 || m.Pins[0] != pin {
		t.Errorf("map: %s", lines[0])
	}
	var held bool
	for _, h := range m.Holders {
		held = held || (h.PID == holder.Process.Pid && h.Writable)
	}
	if !held {
		t.Errorf("holder pid %d (read-write) missing: %s", holder.Process.Pid, lines[0])
	}

	table, err := exec.Command(bin, "maps", "--id", id).Output()
	if err != nil || !strings.Contains(string(table), "e2e_held") || !strings.Contains(string(table), "pinned at "+pin) {
		t.Errorf("table: %v\n%s", err, table)
	}
}

// TestWatchContainer: a process in a container's cgroup is reported with
// that cgroup's id, path and container id, even though it exits at once.
func TestWatchContainer(t *testing.T) {
	testutil.RequireRoot(t)
	root := cgroups.NewResolver().Root()
	if root == "" {
		testutil.SkipOrFail(t, "no cgroup v2 hierarchy mounted")
	}
	// docker's systemd-driver layout, with a random id for this run.
	cid := fmt.Sprintf("%016x%016x%016x%016x", rand.Uint64(), rand.Uint64(), rand.Uint64(), rand.Uint64())
	dir := filepath.Join(root, "docker-"+cid+".scope")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	defer os.Remove(dir)
	var st syscall.Stat_t
	syscall.Stat(dir, &st)

	_, id := newMap(t)
	w := startWatch(t, "--format", "json", "--map-id", strconv.Itoa(int(id)), "--event", "map_update")
	// The child joins the cgroup before it runs: started stopped by a
	// shell that first moves itself.
	sh := exec.Command("/bin/sh", "-c", `echo $$ > "$1"/cgroup.procs && exec "$2" -test.run='^$' "$3"`, "sh", dir, os.Args[0], strconv.Itoa(int(id)))
	sh.Env = append(os.Environ(), "BPFMON_E2E_CHILD=1")
	if out, err := sh.CombinedOutput(); err != nil {
		t.Fatalf("child in cgroup: %v: %s", err, out)
	}
	lines := w.stop(t, syscall.SIGINT)
	var found bool
	for _, line := range lines {
		if strings.Contains(line, fmt.Sprintf(`"cgroup_id":%d,"cgroup":"/%s"`, st.Ino, filepath.Base(dir))) &&
			strings.Contains(line, `"container_id":"`+cid+`"`) {
			found = true
		}
	}
	if !found {
		t.Errorf("no update with cgroup %d and container %s:\n%s\nstderr: %s", st.Ino, cid, strings.Join(lines, "\n"), w.stderr.String())
	}
}

// TestWatchMapContext: events carry the map's programs and pins, and how
// the process relates to the map: a holder at start, its creator, or a
// newcomer.
func TestWatchMapContext(t *testing.T) {
	testutil.RequireRoot(t)
	old, oldID := newMap(t)
	pin := filepath.Join(testutil.BPFFSPath(t), "bpfmon_ctx_"+strconv.Itoa(os.Getpid()))
	if err := old.Pin(pin); err != nil {
		t.Fatal(err)
	}
	defer os.Remove(pin)
	prog, err := ebpf.NewProgram(&ebpf.ProgramSpec{Name: "ctx_user", Type: ebpf.SocketFilter, License: "GPL", Instructions: asm.Instructions{
		asm.LoadMapPtr(asm.R1, old.FD()), asm.Mov.Imm(asm.R0, 0), asm.Return(),
	}})
	if err != nil {
		t.Fatal(err)
	}
	defer prog.Close()

	w := startWatch(t, "--format", "json", "--event", "map_update")
	old.Update(uint32(1), uint64(1), 0) // a holder at start
	childPID := hostileChild(t, oldID)  // a newcomer
	fresh, freshID := newMap(t)
	fresh.Update(uint32(1), uint64(1), 0) // its creator
	lines := w.stop(t, syscall.SIGINT)

	type ev struct {
		Process struct {
			PID      int    `json:"pid"`
			Relation string `json:"relation"`
		} `json:"process"`
		Map struct {
			ID       uint32 `json:"id"`
			Programs []struct {
				Name string `json:"name"`
			} `json:"programs"`
			Pins []string `json:"pins"`
		} `json:"map"`
	}
	seen := map[string]bool{}
	for _, line := range lines {
		var e ev
		if err := json.Unmarshal([]byte(line), &e); err != nil {
			t.Fatalf("%q: %v", line, err)
		}
		switch {
		case e.Map.ID == oldID && e.Process.PID == os.Getpid():
			seen["holder"] = e.Process.Relation == "holder" && len(e.Map.Pins) == 1 && e.Map.Pins[0] == pin &&
				len(e.Map.Programs) == 1 && e.Map.Programs[0].Name == "ctx_user"
		case e.Map.ID == oldID && e.Process.PID == childPID:
			seen["newcomer"] = e.Process.Relation == "newcomer"
		case e.Map.ID == freshID && e.Process.PID == os.Getpid():
			seen["creator"] = e.Process.Relation == "creator"
		}
	}
	if !seen["holder"] || !seen["newcomer"] || !seen["creator"] {
		t.Errorf("relations/context %v:\n%s", seen, strings.Join(lines, "\n"))
	}
}

// TestMapsDumpBTF: --dump renders values through the map's BTF.
func TestMapsDumpBTF(t *testing.T) {
	testutil.RequireRoot(t)
	u32 := &btf.Int{Name: "u32", Size: 4}
	value := &btf.Struct{Name: "cfg", Size: 8, Members: []btf.Member{
		{Name: "pid", Type: u32, Offset: 0}, {Name: "enabled", Type: &btf.Int{Name: "bool", Size: 1, Encoding: btf.Bool}, Offset: 32},
	}}
	m, err := ebpf.NewMap(&ebpf.MapSpec{Name: "e2e_btf", Type: ebpf.Hash, KeySize: 4, ValueSize: 8, MaxEntries: 2, Key: u32, Value: value})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	if err := m.Update(uint32(3), []byte{42, 0, 0, 0, 1, 0, 0, 0}, 0); err != nil {
		t.Fatal(err)
	}
	info, _ := m.Info()
	id, _ := info.ID()
	out, err := exec.Command(bin, "maps", "--format", "json", "--dump", "--id", strconv.Itoa(int(id))).Output()
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(out), `"key":"03000000","value":"2a00000001000000","key_btf":"3","value_btf":"{pid: 42, enabled: true}"`) {
		t.Errorf("dump: %s", out)
	}
}

// TestFeaturesJSON: bpfmon features --format json is one object naming the
// kernel and each capability; the syscall sensor works on this machine.
func TestFeaturesJSON(t *testing.T) {
	testutil.RequireRoot(t)
	out, err := exec.Command(bin, "features", "--format", "json").Output()
	if err != nil {
		t.Fatal(err)
	}
	var r struct {
		Kernel   string `json:"kernel"`
		Features []struct {
			Name      string `json:"name"`
			Available bool   `json:"available"`
			Detail    string `json:"detail"`
			Functions []struct {
				Function string `json:"function"`
			} `json:"functions"`
		} `json:"features"`
	}
	if err := json.Unmarshal(out, &r); err != nil || r.Kernel == "" {
		t.Fatalf("%v: %s", err, out)
	}
	var names []string
	for _, f := range r.Features {
		names = append(names, f.Name)
	}
	if !slices.Equal(names, features.Order) {
		t.Errorf("features %v, want exactly %v", names, features.Order)
	}
	var sensor, kernel bool
	for _, f := range r.Features {
		// Named by its build: the trampolines on the bpf syscall, or the
		// raw_syscalls tracepoints.
		sensor = sensor || (f.Name == "syscall_sensor" && f.Available &&
			(strings.Contains(f.Detail, "raw_syscalls") || strings.Contains(f.Detail, "fentry programs on the bpf syscall")))
		if f.Name == "kernel_side_writes" {
			// Either hooked, or the exact reasons, per kernel function too.
			var fns []string
			for _, fn := range f.Functions {
				fns = append(fns, fn.Function)
			}
			if !slices.Equal(fns, kernelwrite.Functions()) {
				t.Errorf("kernel_side_writes lists functions %v, want %v", fns, kernelwrite.Functions())
			}
			kernel = (f.Available || (strings.Contains(f.Detail, "fexit:") && strings.Contains(f.Detail, "kprobe:")))
			if !kernel {
				t.Errorf("kernel_side_writes: %+v", f)
			}
		}
	}
	if !kernel {
		t.Errorf("kernel_side_writes not reported: %s", out)
	}
	if !sensor {
		t.Errorf("syscall sensor not reported available: %s", out)
	}
}

// TestWatchKernelWrites: a socket filter run with BPF_PROG_TEST_RUN writes
// an array, a hash and an LRU hash with bpf_map_update_elem; watch reports
// each with source kernel, the map, key, value and the program; a bpf(2)
// update of the same hash is reported exactly once.
func TestWatchKernelWrites(t *testing.T) {
	testutil.RequireRoot(t)
	testutil.NeedKernelHook(t, features.Kprobes(), features.Fentry())
	w := startWatch(t, "--format", "json", "--kernel-hooks", "auto")
	set, err := writers.Load()
	if err != nil {
		t.Fatal(err)
	}
	defer set.Close()
	type want struct {
		prog, mapName string
		key           uint32
		value         uint64
	}
	wants := []want{
		{writers.UpdateArray, "w_array", 1, 0xa1},
		{writers.UpdateHash, "w_hash", 2, 0xa2},
		{writers.UpdateLRU, "w_lru", 3, 0xa3},
	}
	for _, wt := range wants {
		if err := set.Run(wt.prog, wt.key, wt.value); err != nil {
			t.Fatal(err)
		}
	}
	if err := set.Map("w_hash").Update(uint32(9), uint64(0x99), ebpf.UpdateAny); err != nil {
		t.Fatal(err)
	}
	lines := w.stop(t, syscall.SIGINT)
	type kernelEvent struct {
		Event, Source, Key, Value string
		Map                       struct{ ID uint32 }
		Prog                      *struct {
			ID        uint32
			Name, Tag string
			Unknown   bool
		}
		KernelCopy bool `json:"kernel_copy"`
		Process    *struct{ PID int }
	}
	var evs []kernelEvent
	for _, line := range lines {
		var ev kernelEvent
		if err := json.Unmarshal([]byte(line), &ev); err != nil {
			t.Fatalf("%q: %v", line, err)
		}
		evs = append(evs, ev)
	}
	le := func(b []byte) string { return hex.EncodeToString(b) }
	for _, wt := range wants {
		info, _ := set.Program(wt.prog).Info()
		pid, _ := info.ID()
		mi, _ := set.Map(wt.mapName).Info()
		mid, _ := mi.ID()
		found := 0
		for _, ev := range evs {
			if ev.Event != "map_update" || ev.Map.ID != uint32(mid) || ev.Source == "syscall" {
				continue // the bpf(2) update of key 9 is checked below
			}
			found++
			if ev.Source != "kernel" || ev.Prog == nil || ev.Prog.ID != uint32(pid) || ev.Prog.Name != info.Name || ev.Prog.Tag != info.Tag ||
				ev.Key != le(binary.LittleEndian.AppendUint32(nil, wt.key)) || ev.Value != le(binary.LittleEndian.AppendUint64(nil, wt.value)) ||
				ev.Process == nil || ev.Process.PID != os.Getpid() {
				t.Errorf("%s: %+v (prog %+v), want source kernel, prog %d %q %s, key %d value %#x", wt.prog, ev, ev.Prog, pid, info.Name, info.Tag, wt.key, wt.value)
			}
		}
		if found != 1 {
			t.Errorf("%s: %d map_update events on %s, want 1\n%s", wt.prog, found, wt.mapName, strings.Join(lines, "\n"))
		}
	}
	hi, _ := set.Map("w_hash").Info()
	hid, _ := hi.ID()
	var once int
	for _, ev := range evs {
		if ev.Map.ID == uint32(hid) && ev.Key == "09000000" {
			once++
			if ev.Source != "syscall" || ev.Value != "9900000000000000" {
				t.Errorf("the bpf(2) update: %+v", ev)
			}
		}
	}
	if once != 1 {
		t.Errorf("the bpf(2) update was reported %d times, want once\n%s", once, strings.Join(lines, "\n"))
	}
}

// btfMap creates a hash map with BTF: u32 keys, struct cfg {u32 pid;
// bool enabled;} values.
func btfMap(t *testing.T) (*ebpf.Map, uint32) {
	t.Helper()
	u32 := &btf.Int{Name: "u32", Size: 4}
	value := &btf.Struct{Name: "cfg", Size: 8, Members: []btf.Member{
		{Name: "pid", Type: u32, Offset: 0}, {Name: "enabled", Type: &btf.Int{Name: "bool", Size: 1, Encoding: btf.Bool}, Offset: 32},
	}}
	m, err := ebpf.NewMap(&ebpf.MapSpec{Name: "e2e_btf", Type: ebpf.Hash, KeySize: 4, ValueSize: 8, MaxEntries: 4, Key: u32, Value: value})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	info, _ := m.Info()
	id, _ := info.ID()
	return m, uint32(id)
}

// TestWatchBTFValues: an update of a map with BTF carries its key and
// value rendered by type, beside the hex, in JSON and in text; a map
// without BTF carries no rendered field.
func TestWatchBTFValues(t *testing.T) {
	w := startWatch(t, "--format", "json", "--event", "map_update,map_delete", "--pid", strconv.Itoa(os.Getpid()))
	typed, typedID := btfMap(t)
	plain, plainID := newMap(t)
	for i := range 3 { // the first event resolves the map's types, the others use the cache
		if err := typed.Update(uint32(3), []byte{42, 0, 0, byte(i), 1, 0, 0, 0}, 0); err != nil {
			t.Fatal(err)
		}
	}
	if err := typed.Delete(uint32(3)); err != nil {
		t.Fatal(err)
	}
	if err := plain.Update(uint32(1), uint64(7), 0); err != nil {
		t.Fatal(err)
	}
	lines := w.stop(t, syscall.SIGINT)
	var typedUpdates, typedDeletes, plainUpdates int
	for _, line := range lines {
		var ev struct {
			Event    string `json:"event"`
			Map      struct{ ID uint32 }
			Key      string          `json:"key"`
			Value    string          `json:"value"`
			KeyBTF   json.RawMessage `json:"key_btf"`
			ValueBTF json.RawMessage `json:"value_btf"`
		}
		if err := json.Unmarshal([]byte(line), &ev); err != nil {
			t.Fatalf("invalid JSON line %q: %v", line, err)
		}
		switch {
		case ev.Map.ID == typedID && ev.Event == "map_update":
			var v struct {
				PID     uint32 `json:"pid"`
				Enabled bool   `json:"enabled"`
			}
			want := uint32(42) | uint32(typedUpdates)<<24
			if string(ev.KeyBTF) != "3" || json.Unmarshal(ev.ValueBTF, &v) != nil || v.PID != want || !v.Enabled || ev.Key != "03000000" ||
				ev.Value != fmt.Sprintf("2a0000%02x01000000", typedUpdates) {
				t.Errorf("update %d of the map with BTF: %s", typedUpdates, line)
			}
			if !strings.Contains(line, fmt.Sprintf(`"key":"03000000","key_btf":3,"value":"2a0000%02x01000000","value_btf":{"pid":%d,"enabled":true}`, typedUpdates, want)) {
				t.Errorf("rendered fields not beside the hex: %s", line)
			}
			typedUpdates++
		case ev.Map.ID == typedID && ev.Event == "map_delete":
			typedDeletes++
			if string(ev.KeyBTF) != "3" || ev.ValueBTF != nil {
				t.Errorf("delete of the map with BTF: %s", line)
			}
		case ev.Map.ID == plainID:
			plainUpdates++
			if strings.Contains(line, "_btf") {
				t.Errorf("map without BTF has a rendered field: %s", line)
			}
		}
	}
	if typedUpdates != 3 || typedDeletes != 1 || plainUpdates != 1 {
		t.Errorf("%d updates and %d deletes of the map with BTF, %d of the one without; want 3, 1, 1:\n%s", typedUpdates, typedDeletes, plainUpdates, strings.Join(lines, "\n"))
	}

	// The text line, of the same map.
	w = startWatch(t, "--format", "text", "--event", "map_update", "--map-id", strconv.Itoa(int(typedID)))
	if err := typed.Update(uint32(5), []byte{7, 0, 0, 0, 0, 0, 0, 0}, 0); err != nil {
		t.Fatal(err)
	}
	lines = w.stop(t, syscall.SIGINT)
	if len(lines) != 1 || !strings.Contains(lines[0], " key=05000000 key_btf=5 value=0700000000000000 value_btf={pid=7,enabled=false} ") {
		t.Errorf("text:\n%s", strings.Join(lines, "\n"))
	}
}

// TestWatchCountedWritesExplained: a program's writes that the kernel
// counts, not itemizes, are known writes: the content scanner, passing
// many times before their summary, reports none of their changes, and the
// summaries add up to every write after the first.
func TestWatchCountedWritesExplained(t *testing.T) {
	testutil.RequireRoot(t)
	testutil.NeedKernelHook(t, features.Kprobes(), features.Fentry())
	set, err := writers.Load() // before watch starts: in the scanner's baseline
	if err != nil {
		t.Fatal(err)
	}
	defer set.Close()
	mi, _ := set.Map("w_hash").Info()
	id, _ := mi.ID()
	w := startWatch(t, "--format", "json", "--scan-interval", "300ms")
	const n = 12
	for i := range n {
		if err := set.Run(writers.UpdateHash, 5, uint64(0x100+i)); err != nil {
			t.Fatal(err)
		}
		time.Sleep(150 * time.Millisecond) // a scanner pass every other write
	}
	w.waitScanPasses(t, 2)
	lines := w.stop(t, syscall.SIGINT)
	var itemized, changed int
	var counted uint64
	for _, line := range lines {
		var ev struct {
			Event, Source string
			Map           *struct{ ID uint32 }
			Count         uint64
		}
		if err := json.Unmarshal([]byte(line), &ev); err != nil {
			t.Fatalf("%q: %v", line, err)
		}
		if ev.Map == nil || ev.Map.ID != uint32(id) {
			continue
		}
		switch ev.Event {
		case "map_update":
			itemized++
		case "map_writes_counted":
			counted += ev.Count
		case "map_changed":
			changed++
		}
	}
	if itemized != 1 || counted != n-1 || changed != 0 {
		t.Errorf("itemized %d (want 1), counted %d (want %d), map_changed %d (want 0)\n%s", itemized, counted, n-1, changed, strings.Join(lines, "\n"))
	}
}

// TestWatchProtectedItemized: every write to a protected map is itemized
// (the alert engine selects it in the kernel); another map's known writer
// is counted after its first write.
func TestWatchProtectedItemized(t *testing.T) {
	testutil.RequireRoot(t)
	testutil.NeedKernelHook(t, features.Kprobes(), features.Fentry())
	set, err := writers.Load()
	if err != nil {
		t.Fatal(err)
	}
	defer set.Close()
	idOf := func(name string) uint32 {
		mi, _ := set.Map(name).Info()
		id, _ := mi.ID()
		return uint32(id)
	}
	hash, lru := idOf("w_hash"), idOf("w_lru")
	w := startWatch(t, "--format", "json", "--scan-interval", "0", "--policy", unlimitedAlerts(t), "--protect", "id:"+itoa(hash))
	const n = 20
	for _, p := range []string{writers.UpdateHash, writers.UpdateLRU} {
		if ret, err := set.Program(p).Run(&ebpf.RunOptions{Data: writers.Packet(1, 2), Repeat: n}); err != nil || ret != 0 {
			t.Fatalf("%s: %d %v", p, ret, err)
		}
	}
	lines := w.stop(t, syscall.SIGINT)
	itemized := map[uint32]int{}
	counted := map[uint32]uint64{}
	for _, line := range lines {
		var ev struct {
			Event, Source string
			Map           *struct{ ID uint32 }
			Count         uint64
		}
		if err := json.Unmarshal([]byte(line), &ev); err != nil {
			t.Fatalf("%q: %v", line, err)
		}
		if ev.Map == nil || ev.Source != "kernel" {
			continue
		}
		switch ev.Event {
		case "map_update":
			itemized[ev.Map.ID]++
		case "map_writes_counted":
			counted[ev.Map.ID] += ev.Count
		}
	}
	if itemized[hash] != n || counted[hash] != 0 || itemized[lru] != 1 || counted[lru] != n-1 {
		t.Errorf("protected map: %d itemized, %d counted (want %d, 0); other map: %d itemized, %d counted (want 1, %d)\n%s",
			itemized[hash], counted[hash], n, itemized[lru], counted[lru], n-1, strings.Join(lines, "\n"))
	}
}

// TestStatusFDRefused: a $BPFMON_STATUS_FD that names no descriptor
// bpfmon may write is a usage error, said before anything starts.
func TestStatusFDRefused(t *testing.T) {
	for _, v := range []string{"", "x", "1", "-3", "987654"} {
		t.Setenv(statusEnv, v)
		code, out := runInProcess(t, "watch")
		if want := statusEnv + "=" + strconv.Quote(v) + ": want the number of a descriptor"; code != exitUsage || !strings.Contains(out, want) {
			t.Errorf("%s=%q: exit %d, output %q; want exit 2 and %q", statusEnv, v, code, out, want)
		}
	}
}

// TestWatchMapIDItemized: a map chosen with --map-id is selected in the
// kernel: a program's every write to it is itemized, none counted, though
// its writer becomes a known pair on its first write.
func TestWatchMapIDItemized(t *testing.T) {
	testutil.RequireRoot(t)
	testutil.NeedKernelHook(t, features.Kprobes(), features.Fentry())
	set, err := writers.Load()
	if err != nil {
		t.Fatal(err)
	}
	defer set.Close()
	mi, err := set.Map("w_hash").Info()
	if err != nil {
		t.Fatal(err)
	}
	id, _ := mi.ID()
	hash := uint32(id)
	w := startWatch(t, "--format", "json", "--scan-interval", "0", "--map-id", itoa(hash))
	const n = 20
	if ret, err := set.Program(writers.UpdateHash).Run(&ebpf.RunOptions{Data: writers.Packet(1, 2), Repeat: n}); err != nil || ret != 0 {
		t.Fatalf("%s: %d %v", writers.UpdateHash, ret, err)
	}
	lines := w.stop(t, syscall.SIGINT)
	var itemized int
	var counted uint64
	for _, line := range lines {
		var ev struct {
			Event, Source string
			Map           *struct{ ID uint32 }
			Count         uint64
		}
		if err := json.Unmarshal([]byte(line), &ev); err != nil {
			t.Fatalf("%q: %v", line, err)
		}
		if ev.Map == nil || ev.Map.ID != hash || ev.Source != "kernel" {
			continue
		}
		switch ev.Event {
		case "map_update":
			itemized++
		case "map_writes_counted":
			counted += ev.Count
		}
	}
	if itemized != n || counted != 0 {
		t.Errorf("--map-id %d: %d itemized, %d counted (want %d, 0)\n%s", hash, itemized, counted, n, strings.Join(lines, "\n"))
	}
}

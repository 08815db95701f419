package watch

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	dto "github.com/prometheus/client_model/go"

	"github.com/bpfmon/bpfmon/internal/event"
	"github.com/bpfmon/bpfmon/internal/metrics"
	"github.com/bpfmon/bpfmon/internal/sensor/kernelwrite"
	"github.com/bpfmon/bpfmon/internal/testutil"
)

// faults are the errors the tests make the watch's parts fail with.
type faults struct {
	mu    sync.Mutex
	on    map[string]error
	times map[string]int // how many more times; <0: until set again
}

func (f *faults) set(part string, err error) { f.setN(part, err, -1) }

// setN has part fail with err n times.
func (f *faults) setN(part string, err error, n int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.on == nil {
		f.on, f.times = map[string]error{}, map[string]int{}
	}
	f.on[part], f.times[part] = err, n
}

func (f *faults) fault(part string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	err := f.on[part]
	if err != nil && f.times[part] >= 0 {
		if f.times[part] == 0 {
			return nil
		}
		f.times[part]--
	}
	return err
}

// syncBuffer is an output the test reads while the watch writes; it
// fails with failWith while that is set (a full disk).
type syncBuffer struct {
	mu       sync.Mutex
	b        bytes.Buffer
	failWith error
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.failWith != nil {
		return 0, s.failWith
	}
	return s.b.Write(p)
}

func (s *syncBuffer) fail(err error) {
	s.mu.Lock()
	s.failWith = err
	s.mu.Unlock()
}

type jsonLine struct {
	Event  string `json:"event"`
	Source string `json:"source"`
	Part   string `json:"part"`
	Reason string `json:"reason"`
	Count  uint64 `json:"count"`
}

func (s *syncBuffer) events() []jsonLine {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []jsonLine
	for _, l := range strings.Split(s.b.String(), "\n") {
		var ev jsonLine
		if json.Unmarshal([]byte(l), &ev) == nil {
			out = append(out, ev)
		}
	}
	return out
}

// supervised is a real watch (real sensors, scanner and alert engine)
// whose parts fail as its faults say, with its metrics served.
type supervised struct {
	faults faults
	out    syncBuffer
	mets   *metrics.Metrics
	addr   string
	stop   chan struct{}
	done   chan error
	// status is what Options.Status was told (buffered: the test reads
	// what it waits for, the rest is dropped).
	status chan Status
}

// startSupervised starts the watch, with the faults preset sets (nil:
// none) from the start.
func startSupervised(t *testing.T, preset func(*faults)) *supervised {
	t.Helper()
	testutil.RequireRoot(t)
	w := &supervised{mets: metrics.New("test"), stop: make(chan struct{}), done: make(chan error, 1), status: make(chan Status, 16)}
	if preset != nil {
		preset(&w.faults)
	}
	ln, err := metrics.Listen("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := w.mets.Serve(ln)
	t.Cleanup(func() { srv.Shutdown(time.Second) })
	w.addr = srv.Addr().String()
	p := production()
	p.fault = w.faults.fault
	go func() {
		_, err := run(Options{Format: "json", Out: &w.out, Log: slog.New(slog.NewTextHandler(io.Discard, nil)),
			RingBytes: 1 << 20, CaptureBytes: 64, KernelHooks: kernelwrite.ModeOff,
			ScanInterval: 100 * time.Millisecond, Metrics: w.mets,
			Status: func(s Status) {
				select {
				case w.status <- s:
				default:
				}
			},
			// Written: lost events and bpfmon's own (the filter lets
			// them through), not the host's other calls.
			Filter: Filter{Events: []event.Type{event.Lost}}}, w.stop, p)
		w.done <- err
	}()
	t.Cleanup(func() {
		select {
		case <-w.stop:
		default:
			close(w.stop)
		}
		<-w.done
	})
	select {
	case s := <-w.status:
		if s.Kind != StatusReady || !s.Scanner {
			t.Fatalf("the first status told is %+v, want ready with the scanner on", s)
		}
	case err := <-w.done:
		t.Fatalf("the watch ended before it was ready: %v", err)
	case <-time.After(testutil.Timeout(60 * time.Second)):
		t.Fatal("the watch was not ready within 60 s")
	}
	if !w.mets.IsReady() {
		t.Fatal("ready told before the metrics said ready")
	}
	return w
}

// waitScanPass waits for the status of a content scanner pass and
// returns its number.
func (w *supervised) waitScanPass(t *testing.T) int {
	t.Helper()
	for deadline := time.After(testutil.Timeout(60 * time.Second)); ; {
		select {
		case s := <-w.status:
			if s.Kind == StatusScanPass {
				return s.Pass
			}
		case <-deadline:
			t.Fatal("no content scanner pass within 60 s")
		}
	}
}

// TestStatusScanPasses: each content scanner pass is told to
// Options.Status, numbered from 1, after readiness.
func TestStatusScanPasses(t *testing.T) {
	w := startSupervised(t, nil)
	first := w.waitScanPass(t)
	if first != 1 {
		t.Errorf("the first pass told is %d, want 1", first)
	}
	if next := w.waitScanPass(t); next != first+1 {
		t.Errorf("the pass after %d told is %d", first, next)
	}
}

// waitEvent waits for an event the output took that cond accepts.
func (w *supervised) waitEvent(t *testing.T, what string, cond func(jsonLine) bool) jsonLine {
	t.Helper()
	for deadline := time.Now().Add(testutil.Timeout(60 * time.Second)); ; time.Sleep(20 * time.Millisecond) {
		for _, ev := range w.out.events() {
			if cond(ev) {
				return ev
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("no %s within 60 s; events: %+v", what, w.out.events())
		}
	}
}

// healthz is GET /healthz's status and body.
func (w *supervised) healthz(t *testing.T) (int, string) {
	t.Helper()
	resp, err := (&http.Client{Timeout: 5 * time.Second}).Get("http://" + w.addr + "/healthz")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// waitHealth waits until /healthz answers code with a body containing
// text.
func (w *supervised) waitHealth(t *testing.T, code int, text string) {
	t.Helper()
	var got int
	var body string
	for deadline := time.Now().Add(testutil.Timeout(60 * time.Second)); ; time.Sleep(20 * time.Millisecond) {
		if got, body = w.healthz(t); got == code && strings.Contains(body, text) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("/healthz answers %d %q; want %d with %q", got, body, code, text)
		}
	}
}

// partErrors is bpfmon_part_errors_total for part and reason.
func partErrors(t *testing.T, m *metrics.Metrics, part, reason string) float64 {
	t.Helper()
	mfs, err := m.Registry().Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != "bpfmon_part_errors_total" {
			continue
		}
		for _, s := range mf.GetMetric() {
			if label(s, "part") == part && label(s, "reason") == reason {
				return s.GetCounter().GetValue()
			}
		}
	}
	t.Fatalf("no bpfmon_part_errors_total{part=%q,reason=%q}", part, reason)
	return 0
}

func label(m *dto.Metric, name string) string {
	for _, l := range m.GetLabel() {
		if l.GetName() == name {
			return l.GetValue()
		}
	}
	return ""
}

// checkRecovers: with part failing with err, the watch writes a
// part_error event naming the part and the error, counts it by reason,
// and /healthz answers 503 naming the part; once the fault is gone,
// /healthz answers 200 and the watch goes on. act makes the part do
// something when it only runs on demand (nil: it runs on its own).
func checkRecovers(t *testing.T, part string, times int, act func()) {
	// From the start: a real pass on a busy host can take long.
	w := startSupervised(t, func(f *faults) { f.setN(part, syscall.EMFILE, times) })
	if act != nil {
		act()
	}
	w.waitEvent(t, "part_error for "+part, func(ev jsonLine) bool {
		return ev.Event == "part_error" && ev.Source == "bpfmon" && ev.Part == part && strings.Contains(ev.Reason, "too many open files")
	})
	if n := partErrors(t, w.mets, part, "emfile"); n < 1 {
		t.Errorf("%s: bpfmon_part_errors_total{reason=emfile} %v after the error", part, n)
	}
	w.waitHealth(t, http.StatusServiceUnavailable, part+": ")
	w.faults.set(part, nil)
	if act != nil {
		act()
	}
	w.waitHealth(t, http.StatusOK, "ready")
	select {
	case err := <-w.done:
		t.Fatalf("the watch ended: %v", err)
	default:
	}
}

// TestSuperviseScanner: a content scanner pass that fails (EMFILE, as a
// flood of connections once made BPF_MAP_GET_FD_BY_ID fail) is reported
// and the next pass runs; before, the scanner ended for good.
func TestSuperviseScanner(t *testing.T) {
	checkRecovers(t, metrics.PartScanner, -1, nil)
}

// TestSuperviseAlerts: the alert engine's report that fails is said and
// tried again a second later.
func TestSuperviseAlerts(t *testing.T) {
	checkRecovers(t, metrics.PartAlerts, -1, nil)
}

// updaterEnv makes this test binary a child that updates, once, the map
// whose id it names, and exits. bpfmon never reports its own process's
// calls (the syscall sensor's self_tgid), so the events the ring reader
// is to fail at must come from another process: on a busy host others
// make some anyway, in the VMs of the kernel test matrix nothing does.
const updaterEnv = "BPFMON_WATCH_TEST_UPDATER"

func TestMain(m *testing.M) {
	if id := os.Getenv(updaterEnv); id != "" {
		n, err := strconv.ParseUint(id, 10, 32)
		var mm *ebpf.Map
		if err == nil {
			mm, err = ebpf.NewMapFromID(ebpf.MapID(n))
		}
		if err == nil {
			err = mm.Update(uint32(1), uint32(2), 0)
		}
		if err != nil {
			os.Stderr.WriteString("updater: " + err.Error() + "\n")
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// updateFromChild updates m from another process (updaterEnv).
func updateFromChild(t *testing.T, m *ebpf.Map) {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), updaterEnv+"="+strconv.FormatUint(uint64(testutil.MapID(t, m)), 10))
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Errorf("updater: %v: %s", err, out)
	}
}

// TestSuperviseSensors: an error that ends the ring buffer's reader (an
// event it cannot hand on) is said, and reading starts again.
func TestSuperviseSensors(t *testing.T) {
	m, err := ebpf.NewMap(&ebpf.MapSpec{Type: ebpf.Hash, KeySize: 4, ValueSize: 4, MaxEntries: 4})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	// Events for the reader to hand on, from another process, until the
	// test ends: the first may come before the sensors attach. Once:
	// a reader that fails at every event is ended
	// (TestSuperviseSensorsExit).
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			updateFromChild(t, m)
			select {
			case <-done:
				return
			case <-time.After(250 * time.Millisecond):
			}
		}
	}()
	defer wg.Wait()
	defer close(done)
	checkRecovers(t, metrics.PartSensors, 1, nil)
}

// TestSuperviseSensorsExit: a ring reader that fails again and again
// ends the watch with ErrPartFailed (exit 1): bpfmon does not go on
// blind.
func TestSuperviseSensorsExit(t *testing.T) {
	m, err := ebpf.NewMap(&ebpf.MapSpec{Type: ebpf.Hash, KeySize: 4, ValueSize: 4, MaxEntries: 4})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	w := startSupervised(t, nil)
	w.faults.set(metrics.PartSensors, syscall.EIO)
	deadline := time.Now().Add(testutil.Timeout(60 * time.Second))
	for {
		updateFromChild(t, m)
		select {
		case err := <-w.done:
			w.done <- err // for the cleanup
			if !errors.Is(err, ErrPartFailed) || !strings.Contains(err.Error(), "sensors") {
				t.Fatalf("the watch ended with %v; want ErrPartFailed naming the sensors", err)
			}
			if why := w.mets.Unhealthy(); !strings.Contains(why, "sensors") {
				t.Errorf("unhealthy: %q; want the sensors", why)
			}
			if n := partErrors(t, w.mets, metrics.PartSensors, "eio"); n < ringFailMax {
				t.Errorf("bpfmon_part_errors_total{part=sensors,reason=eio} %v; want %d", n, ringFailMax)
			}
			w.waitEvent(t, "part_error saying bpfmon stops", func(ev jsonLine) bool {
				return ev.Event == "part_error" && ev.Part == metrics.PartSensors && strings.Contains(ev.Reason, "bpfmon stops")
			})
			return
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatal("the watch went on with a ring reader failing at every event")
		}
	}
}

// TestSuperviseOutput: an output that cannot be written (a full disk)
// makes /healthz unhealthy, counted by reason, and healthy again once it
// can; what was not written is reported as lost. The scanner's errors,
// each new one said at once, are the lines to write.
func TestSuperviseOutput(t *testing.T) {
	w := startSupervised(t, func(f *faults) { f.set(metrics.PartScanner, syscall.EMFILE) })
	w.out.fail(syscall.ENOSPC)
	w.faults.set(metrics.PartScanner, syscall.ENOMEM)
	w.waitHealth(t, http.StatusServiceUnavailable, "output: writing events")
	if n := partErrors(t, w.mets, metrics.PartOutput, "enospc"); n < 1 {
		t.Errorf("bpfmon_part_errors_total{part=output,reason=enospc} %v", n)
	}
	// Writing is known to work again once a line is written.
	w.out.fail(nil)
	w.faults.set(metrics.PartScanner, syscall.EIO)
	w.waitEvent(t, "lost event for the output", func(ev jsonLine) bool {
		return ev.Event == "lost" && ev.Source == "output" && ev.Count > 0
	})
	for deadline := time.Now().Add(testutil.Timeout(60 * time.Second)); ; time.Sleep(20 * time.Millisecond) {
		code, body := w.healthz(t)
		if !strings.Contains(body, "output:") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("/healthz still names the output once it works: %d %q", code, body)
		}
	}
}

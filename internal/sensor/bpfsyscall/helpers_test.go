package bpfsyscall

import (
	"encoding/binary"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"

	"github.com/bpfmon/bpfmon/internal/event"
	"github.com/bpfmon/bpfmon/internal/sensor"
	"github.com/bpfmon/bpfmon/internal/sensor/record"
	"github.com/bpfmon/bpfmon/internal/sensor/sensortest"
)

// TestMain lets the test binary act as a child process that makes bpf(2)
// calls: the tests need callers other than themselves (by id, pinned path,
// SCM_RIGHTS, inherited fds, hostile names).
//
// It also runs the whole suite once per build of the sensor: first on the
// build this kernel picks, then, in a copy of the test binary, on each
// other build it loads (BPFMON_TEST_BUILD), so that every event type,
// handle path and ABI is checked on every build a user may get. A build
// the kernel does not load is skipped, with the reason.
func TestMain(m *testing.M) {
	if mode := os.Getenv("BPFMON_CHILD"); mode != "" {
		if err := child(mode, os.Args[len(os.Args)-1]); err != nil {
			fmt.Fprintln(os.Stderr, "child:", err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	testBuild = Hook(os.Getenv(buildEnv))
	code := m.Run()
	if testBuild == HookAuto && os.Geteuid() == 0 && !listing() {
		code = max(code, otherBuilds())
	}
	os.Exit(code)
}

const buildEnv = "BPFMON_TEST_BUILD"

// testBuild is the build the tests run on; HookAuto: the kernel's pick.
var testBuild Hook

// forTest has cfg use the build under test.
func forTest(cfg Config) Config {
	if cfg.Hook == HookAuto {
		cfg.Hook = testBuild
	}
	return cfg
}

// listing reports whether the binary only lists tests (-test.list).
func listing() bool {
	for _, a := range os.Args[1:] {
		if strings.HasPrefix(a, "-test.list") {
			return true
		}
	}
	return false
}

// otherBuilds runs the suite on every build but the kernel's pick, each
// in a copy of this binary, and returns the worst exit code.
func otherBuilds() int {
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	// try starts a sensor of build h (HookAuto: the kernel's pick) on a
	// ring of its own, and stops it.
	try := func(h Hook) (Hook, error) {
		ring, err := record.NewRing(0)
		if err != nil {
			return "", err
		}
		defer ring.Close()
		s := New(Config{Hook: h})
		defer s.Close()
		err = s.Start(sensor.NewEnv(ring, 0, quiet))
		return s.Hook, err
	}
	picked, err := try(HookAuto)
	if err != nil {
		fmt.Fprintf(os.Stderr, "builds: the kernel's pick does not start: %v\n", err)
		return 1
	}
	code := 0
	for _, h := range Hooks {
		if h == picked {
			continue
		}
		if _, err := try(h); err != nil {
			fmt.Printf("=== builds: %s skipped: this kernel does not load it: %v\n", h, err)
			continue
		}
		fmt.Printf("=== builds: the whole suite again on the %s build\n", h)
		cmd := exec.Command(os.Args[0], append(slices.Clone(os.Args[1:]), "-test.bench=^$")...)
		cmd.Env = append(os.Environ(), buildEnv+"="+string(h))
		cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
		if err := cmd.Run(); err != nil {
			fmt.Printf("=== builds: %s: FAIL: %v\n", h, err)
			code = 1
		}
	}
	return code
}

// Each child mode updates key childKey[mode] with value childValue.
var childKey = map[string]uint32{"byid": 7, "pinned": 8, "scm": 9, "inherit": 10, "comm": 11}

const childValue = uint64(0x1122334455667788)

func child(mode, arg string) error {
	var m *ebpf.Map
	var err error
	switch mode {
	case "byid", "comm":
		if mode == "comm" {
			// PR_SET_NAME names the calling thread only: the bpf(2)
			// calls that follow must come from the same one.
			runtime.LockOSThread()
			if err := unix.Prctl(unix.PR_SET_NAME, uintptr(unsafePtr(hostileComm)), 0, 0, 0); err != nil {
				return err
			}
		}
		id, _ := strconv.Atoi(arg)
		m, err = ebpf.NewMapFromID(ebpf.MapID(id))
	case "pinned":
		m, err = ebpf.LoadPinnedMap(arg, nil)
	case "scm":
		buf := make([]byte, 1)
		oob := make([]byte, unix.CmsgSpace(4))
		_, oobn, _, _, rerr := unix.Recvmsg(3, buf, oob, 0)
		if rerr != nil {
			return rerr
		}
		msgs, perr := unix.ParseSocketControlMessage(oob[:oobn])
		if perr != nil || len(msgs) != 1 {
			return fmt.Errorf("no control message: %v", perr)
		}
		fds, perr := unix.ParseUnixRights(&msgs[0])
		if perr != nil || len(fds) != 1 {
			return fmt.Errorf("no fd received: %v", perr)
		}
		m, err = ebpf.NewMapFromFD(fds[0])
	case "inherit":
		// The map arrives as fd 3 across fork+exec; move it with dup2.
		if err := unix.Dup2(3, 100); err != nil {
			return err
		}
		unix.Close(3)
		m, err = ebpf.NewMapFromFD(100)
	default:
		return fmt.Errorf("unknown mode %q", mode)
	}
	if err != nil {
		return err
	}
	defer m.Close()
	return m.Update(childKey[mode], childValue, ebpf.UpdateAny)
}

// hostileComm is a process name built to break line-oriented output.
var hostileComm = []byte("a\nb\"c\x1b[31m\x00")

// runChild runs the test binary as a child in mode and waits for it.
func runChild(t *testing.T, mode, arg string, extra ...*os.File) int {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$", arg)
	cmd.Env = append(os.Environ(), "BPFMON_CHILD="+mode)
	cmd.ExtraFiles = extra
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("child %s: %v: %s", mode, err, out)
	}
	return cmd.Process.Pid
}

// collector runs a sensor and keeps every event it reports.
type collector struct {
	*sensortest.Run
	sensor *Sensor
}

func startSensor(t *testing.T, cfg Config) *collector {
	t.Helper()
	s := New(forTest(cfg))
	return &collector{Run: sensortest.Start(t, sensortest.Options{Describe: describe}, s), sensor: s}
}

// finish stops the sensor, drains it and returns every event.
func (c *collector) finish(t *testing.T) []*event.Event {
	t.Helper()
	return c.Finish(t)
}

// wait returns the first event matching pred, failing after a timeout.
func (c *collector) wait(t *testing.T, what string, pred func(*event.Event) bool) *event.Event {
	t.Helper()
	return c.Events.Wait(t, 5*time.Second, what, pred)
}

// none asserts that no event so far matches pred.
func (c *collector) none(t *testing.T, what string, pred func(*event.Event) bool) {
	t.Helper()
	c.Events.None(t, what, pred)
}

func describe(ev *event.Event) string {
	s := fmt.Sprintf("%s result=%v:%d fd=%d key=%x value=%x count=%d path=%q", ev.Type, ev.HasResult, ev.Result, ev.FD, ev.Key, ev.Value, ev.Count, ev.Path)
	if ev.Map != nil {
		s += fmt.Sprintf(" map=%d:%q", ev.Map.ID, ev.Map.Name)
	}
	if ev.Process != nil {
		s += fmt.Sprintf(" pid=%d comm=%q compat=%v", ev.Process.PID, ev.Process.Comm, ev.Compat)
	}
	return s
}

// onMap matches events of type typ on map id.
func onMap(typ event.Type, id ebpf.MapID) func(*event.Event) bool {
	return func(ev *event.Event) bool {
		return ev.Type == typ && ev.Map != nil && ev.Map.ID == uint32(id)
	}
}

func newMap(t *testing.T, spec ebpf.MapSpec) (*ebpf.Map, ebpf.MapID) {
	t.Helper()
	m, err := ebpf.NewMap(&spec)
	if err != nil {
		t.Fatalf("creating map: %v", err)
	}
	t.Cleanup(func() { m.Close() })
	info, err := m.Info()
	if err != nil {
		t.Fatal(err)
	}
	id, ok := info.ID()
	if !ok {
		t.Fatal("kernel does not report map ids")
	}
	return m, id
}

func le32(v uint32) []byte { return binary.LittleEndian.AppendUint32(nil, v) }
func le64(v uint64) []byte { return binary.LittleEndian.AppendUint64(nil, v) }

// bpf issues a raw bpf(2) call with attr, for cases the library will not
// produce (invalid pointers, batch calls with exact arguments).
func bpf(cmd uintptr, attr []byte) (int64, unix.Errno) {
	r, _, e := unix.Syscall(unix.SYS_BPF, cmd, uintptr(unsafePtr(attr)), uintptr(len(attr)))
	return int64(r), e
}

func command(name string, args ...string) *exec.Cmd { return exec.Command(name, args...) }

// sensorIdle returns once the sensor has delivered every record written
// before the call: it makes a marker call and waits for its event, which
// the ring buffer orders after everything before it.
func (c *collector) sensorIdle(t *testing.T) {
	t.Helper()
	m, id := newMap(t, ebpf.MapSpec{Name: "t_marker", Type: ebpf.Array, KeySize: 4, ValueSize: 4, MaxEntries: 1})
	if err := m.Update(uint32(0), uint32(0), 0); err != nil {
		t.Fatal(err)
	}
	c.wait(t, "marker update", onMap(event.MapUpdate, id))
}

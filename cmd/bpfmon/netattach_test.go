package main

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"golang.org/x/sys/unix"

	"github.com/bpfmon/bpfmon/internal/features"
	"github.com/bpfmon/bpfmon/internal/policy"
	"github.com/bpfmon/bpfmon/internal/testutil"
)

// TestNetlinkXDPDetach is issue 39's netlink path, end to end: an XDP
// program that uses a protected map is on lo in skb (generic) mode; a
// stranger's executable named ip takes it off over netlink, as `ip link
// set dev lo xdpgeneric off` does. Where the kernel allows the netattach
// sensor's hooks (kprobes or trampolines), that is an xdp_set event whose
// program-detached alert names the process, the program and the attach
// point, and the attachment scan reports the detach no second time;
// elsewhere the scan's prog_detached alert, naming no process, covers it.
func TestNetlinkXDPDetach(t *testing.T) {
	testutil.RequireRoot(t)
	kp, fe := features.Kprobes(), features.Fentry()
	hooks := kp == nil || fe == nil
	if !hooks && (testutil.Declared(testutil.Kprobes) || testutil.Declared(testutil.Fentry)) {
		t.Fatalf("kprobes or fentry declared for this kernel, yet neither works (kprobes: %v; fentry: %v)", kp, fe)
	}
	m, mapID := newSpecMap(t, &ebpf.MapSpec{Name: "nl_prot", Type: ebpf.Array, KeySize: 4, ValueSize: 8, MaxEntries: 1})
	prog, err := ebpf.NewProgram(&ebpf.ProgramSpec{Name: "nl_fw", Type: ebpf.XDP, License: "GPL", Instructions: asm.Instructions{
		asm.LoadMapPtr(asm.R1, m.FD()), asm.Mov.Imm(asm.R0, 2), asm.Return()}})
	if err != nil {
		t.Fatal(err)
	}
	defer prog.Close()
	info, _ := prog.Info()
	progID, _ := info.ID()
	b, err := os.ReadFile("/sys/class/net/lo/ifindex")
	if err != nil {
		t.Fatal(err)
	}
	lo := strings.TrimSpace(string(b))
	ip := filepath.Join(t.TempDir(), "ip")
	data, err := os.ReadFile(testutil.CC(t, "../../internal/sensor/netattach/testdata/nl.c"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(ip, data, 0o755); err != nil {
		t.Fatal(err)
	}
	nl := func(files []*os.File, args ...string) int {
		t.Helper()
		c := exec.Command(ip, args...)
		c.ExtraFiles = files
		out, err := c.Output()
		if err != nil || strings.TrimSpace(string(out)) != "0" {
			t.Fatalf("ip %v: %v %s", args, err, out)
		}
		return c.Process.Pid
	}
	// A copy of the program's fd, the os.File's own (the program's own
	// would be closed twice: by the file's finalizer and by prog.Close).
	dup, err := unix.FcntlInt(uintptr(prog.FD()), unix.F_DUPFD_CLOEXEC, 3)
	if err != nil {
		t.Fatal(err)
	}
	progFile := os.NewFile(uintptr(dup), "prog")
	defer progFile.Close()
	nl([]*os.File{progFile}, "xdp", lo, "3")
	defer exec.Command(ip, "xdp", lo, "-1").Run()

	w := startWatch(t, "--format", "json", "--policy", unlimitedAlerts(t), "--protect", "id:"+itoa(mapID))
	stranger := nl(nil, "xdp", lo, "-1")

	type nlEvent struct {
		Event   string
		Source  string
		Alert   *struct{ Rule, Reason string }
		Process *struct {
			PID  int
			Comm string
		}
		Prog   *struct{ ID uint32 }
		Attach *struct{ Point, Mode string } `json:"attachment"`
	}
	want := `"event":"xdp_set","source":"netattach","alert"`
	if !hooks {
		want = `"event":"prog_detached","source":"inventory","alert"`
	}
	// The sensor's event comes at once; the scan's within two refreshes
	// and the delay.
	deadline := time.Now().Add(testutil.Timeout(30 * time.Second))
	for !strings.Contains(strings.Join(w.lines(t), "\n"), want) {
		if time.Now().After(deadline) {
			t.Fatalf("no %s within 30 s\n%s", want, w.stderr.String())
		}
		time.Sleep(100 * time.Millisecond)
	}
	if hooks {
		time.Sleep(testutil.Timeout(12 * time.Second)) // a refresh: the scan must not report it again
	}
	lines := w.stop(t, syscall.SIGTERM)
	alerts := 0
	for _, line := range lines {
		if !strings.Contains(line, `"event":"xdp_set"`) && !strings.Contains(line, `"event":"prog_detached"`) && !strings.Contains(line, `"event":"attach_changed"`) {
			continue
		}
		var ev nlEvent
		if err := json.Unmarshal([]byte(line), &ev); err != nil {
			t.Fatal(err)
		}
		if ev.Alert == nil {
			continue
		}
		alerts++
		t.Logf("%s: %s", ev.Event, ev.Alert.Reason)
		if ev.Alert.Rule != policy.RuleProgramDetached || ev.Prog == nil || ev.Prog.ID != uint32(progID) || ev.Attach == nil ||
			!strings.HasPrefix(ev.Attach.Point, "xdp skb on lo (ifindex "+lo) {
			t.Errorf("the detach's alert: %s", line)
		}
		if hooks && (ev.Event != "xdp_set" || ev.Process == nil || ev.Process.PID != stranger || ev.Process.Comm != "ip" ||
			!strings.Contains(ev.Alert.Reason, "pid "+strconv.Itoa(stranger))) {
			t.Errorf("not named by the netattach sensor: %s", line)
		}
	}
	if alerts != 1 {
		t.Errorf("%d program-detached alerts, want 1: one detach, one alert", alerts)
	}
}

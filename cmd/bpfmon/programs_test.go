package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
	"unsafe"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/cilium/ebpf/link"
	"golang.org/x/sys/unix"

	"github.com/bpfmon/bpfmon/internal/policy"
	"github.com/bpfmon/bpfmon/internal/testutil"
)

// detachEvent is what TestXDPFilterDetach reads of a prog_detached or
// attach_changed line.
type detachEvent struct {
	Event   string
	Source  string
	Alert   *struct{ Rule, Severity, Reason string }
	Prog    *struct{ ID uint32 }
	Process *struct{ PID int }
	Attach  *struct {
		Kind, Point, Interface, Mode string
	} `json:"attachment"`
}

func (ev detachEvent) Point() string {
	if ev.Attach == nil {
		return ""
	}
	return ev.Attach.Point
}

func detachEvents(t *testing.T, lines []string) []detachEvent {
	t.Helper()
	var out []detachEvent
	for _, l := range lines {
		if !strings.Contains(l, `"event":"prog_detached"`) && !strings.Contains(l, `"event":"attach_changed"`) {
			continue
		}
		var ev detachEvent
		if err := json.Unmarshal([]byte(l), &ev); err != nil {
			t.Fatalf("%q: %v", l, err)
		}
		out = append(out, ev)
	}
	return out
}

// xdpFilter is Debian's xdp-filter (xdp-tools) run in a network namespace
// and a mount namespace of the test's own: xdp-filter pins its maps at the
// fixed path /sys/fs/bpf/xdp-filter, which is then a private bpffs.
type xdpFilter struct {
	exe, netns, mnt string
}

func newXDPFilter(t *testing.T) *xdpFilter {
	t.Helper()
	testutil.RequireRoot(t)
	if testutil.InVM() {
		t.Skip("the kernel test matrix's VMs carry no xdp-tools; the host's run (CI) runs this test")
	}
	exe, err := exec.LookPath("xdp-filter")
	if err != nil {
		testutil.SkipOrFail(t, "xdp-filter not installed (apt-get install xdp-tools)")
	}
	if exe, err = filepath.EvalSymlinks(exe); err != nil {
		t.Fatal(err)
	}
	for _, tool := range []string{"ip", "nsenter", "unshare"} {
		if _, err := exec.LookPath(tool); err != nil {
			testutil.SkipOrFail(t, tool+" not installed")
		}
	}
	x := &xdpFilter{exe: exe, netns: fmt.Sprintf("bpfmon-xdp-%d", os.Getpid())}
	mustRun(t, "ip", "netns", "add", x.netns)
	t.Cleanup(func() { exec.Command("ip", "netns", "del", x.netns).Run() })
	mustRun(t, "ip", "-n", x.netns, "link", "add", "xf0", "type", "veth", "peer", "name", "xf1")
	// The mount namespace lives as long as a sleep in it: its end frees
	// the private bpffs, and with it the pinned programs and maps.
	holder := exec.Command("unshare", "-m", "--propagation", "private", "sh", "-c", "mount -t bpf bpf /sys/fs/bpf && echo ready && exec sleep 600")
	out, err := holder.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := holder.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { holder.Process.Kill(); holder.Wait() })
	if line, err := bufio.NewReader(out).ReadString('\n'); err != nil || line != "ready\n" {
		t.Fatalf("private bpffs: %q, %v", line, err)
	}
	x.mnt = fmt.Sprintf("/proc/%d/ns/mnt", holder.Process.Pid)
	return x
}

// mustRun runs a command that must succeed.
func mustRun(t *testing.T, name string, args ...string) {
	t.Helper()
	if out, err := exec.Command(name, args...).CombinedOutput(); err != nil {
		t.Fatalf("%s %s: %v: %s", name, strings.Join(args, " "), err, out)
	}
}

// owner runs xdp-filter (its owner) with args in the namespaces.
func (x *xdpFilter) owner(t *testing.T, args ...string) {
	t.Helper()
	mustRun(t, "nsenter", append([]string{"--mount=" + x.mnt, "--net=/run/netns/" + x.netns, x.exe}, args...)...)
}

// stranger runs ip (not an owner) with args in the network namespace.
func (x *xdpFilter) stranger(t *testing.T, args ...string) {
	t.Helper()
	mustRun(t, "nsenter", append([]string{"--net=/run/netns/" + x.netns, "ip"}, args...)...)
}

// TestXDPFilterDetach is issue 39's scan path on this machine, which has
// no hook on a netlink detach: xdp-filter's program protected (its
// program named by the policy, xdp-filter its owner); the owner's unload
// and load raise no alert, and the new program is protected again: a
// stranger's `ip link set dev xf0 xdpgeneric off` is a program-detached
// alert within one inventory refresh (10 s) and the judging delay,
// naming the program and the interface, found by the scan with no
// process named. bpftrace starting and stopping meanwhile, a tool that
// attaches and detaches its own programs, raises nothing.
func TestXDPFilterDetach(t *testing.T) {
	x := newXDPFilter(t)
	x.owner(t, "load", "-m", "skb", "xf0")
	pol := filepath.Join(t.TempDir(), "policy.yaml")
	if err := os.WriteFile(pol, fmt.Appendf(nil, "version: 1\nprotect:\n  - program: xdpfilt_alw_all\nowners:\n  - exe: %s\nalerts:\n  rate: 100000\n  burst: 100000\n", x.exe), 0o600); err != nil {
		t.Fatal(err)
	}
	w := startWatch(t, "--format", "json", "--policy", pol)
	if !protectedRE.MatchString(w.stderr.String()) {
		t.Fatalf("xdp-filter's maps are not protected: %s", w.stderr.String())
	}

	// The owner's unload and reload: found, not alerted.
	x.owner(t, "unload", "xf0")
	x.owner(t, "load", "-m", "skb", "xf0")
	waitDetach(t, w, "the owner's unload", func(evs []detachEvent) bool { return len(evs) > 0 })
	for _, ev := range detachEvents(t, w.lines(t)) {
		if ev.Alert != nil {
			t.Errorf("the owner's unload and load raised %+v", ev.Alert)
		}
	}
	// The owner's reload counts for a detach found by the scan after the
	// one that last saw the program attached: a stranger acting within
	// that window is taken for the owner (docs/programs.md). Wait out a
	// refresh (10 s) so that the stranger's detach is judged on its own.
	time.Sleep(12 * time.Second)

	// A benign control: bpftrace (not protected) starts, attaches its
	// programs and detaches them at its stop: nothing is reported.
	if bt, err := exec.LookPath("bpftrace"); err == nil {
		mustRun(t, bt, "-e", "tracepoint:syscalls:sys_enter_getppid { @n = count(); } interval:ms:500 { exit(); }")
	} else {
		testutil.SkipOrFail(t, "bpftrace not installed (apt-get install bpftrace)")
	}
	seen := len(detachEvents(t, w.lines(t)))

	// A stranger takes the reloaded program off the interface.
	start := time.Now()
	x.stranger(t, "link", "set", "dev", "xf0", "xdpgeneric", "off")
	var got detachEvent
	waitDetach(t, w, "the stranger's detach", func(evs []detachEvent) bool {
		for _, ev := range evs[min(seen, len(evs)):] {
			if ev.Alert != nil {
				got = ev
				return true
			}
		}
		return false
	})
	t.Logf("alerted %v after the detach: %s", time.Since(start).Round(100*time.Millisecond), got.Alert.Reason)
	if got.Event != "prog_detached" || got.Source != "inventory" || got.Process != nil || got.Alert.Rule != policy.RuleProgramDetached ||
		got.Alert.Severity != readmeSeverity(t, policy.RuleProgramDetached) || got.Attach == nil || got.Attach.Interface != "xf0" ||
		got.Attach.Mode != "skb" || !strings.Contains(got.Alert.Reason, `"xdpfilt_alw_all"`) || !strings.Contains(got.Alert.Reason, "xf0") {
		t.Errorf("the stranger's detach: %+v %+v", got, got.Alert)
	}
	// Everything reported was xdp-filter's program: none of bpftrace's.
	alerts := 0
	for _, ev := range detachEvents(t, w.stop(t, syscall.SIGTERM)) {
		if ev.Alert != nil {
			alerts++
		}
		if !strings.Contains(ev.Point(), "xf0") {
			t.Errorf("a finding not about xdp-filter's interface: %+v", ev.Attach)
		}
	}
	if alerts != 1 {
		t.Errorf("%d program-detached alerts, want the stranger's one", alerts)
	}
}

// waitDetach waits for the prog_detached and attach_changed events to
// satisfy cond: within two refreshes of the inventory and the delay.
func waitDetach(t *testing.T, w *watcher, what string, cond func([]detachEvent) bool) {
	t.Helper()
	deadline := time.Now().Add(testutil.Timeout(25 * time.Second))
	for !cond(detachEvents(t, w.lines(t))) {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not reported within 25 s: %+v\n%s", what, detachEvents(t, w.lines(t)), w.stderr.String())
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// cgroupProgram loads a cgroup_skb program that uses m (nil: no map).
func cgroupProgram(m *ebpf.Map) (*ebpf.Program, error) {
	insns := asm.Instructions{asm.Mov.Imm(asm.R0, 1), asm.Return()}
	if m != nil {
		insns = append(asm.Instructions{asm.LoadMapPtr(asm.R1, m.FD())}, insns...)
	}
	return ebpf.NewProgram(&ebpf.ProgramSpec{Name: "link_test", Type: ebpf.CGroupSKB, AttachType: ebpf.AttachCGroupInetIngress,
		License: "GPL", Instructions: insns})
}

// linkOp is an action child's linkupdate or linkdetach of the link pinned
// at pin.
func linkOp(op, pin string) error {
	l, err := link.LoadPinnedLink(pin, nil)
	if err != nil {
		return err
	}
	defer l.Close()
	if op == "linkdetach" {
		return l.Detach()
	}
	p, err := cgroupProgram(nil)
	if err != nil {
		return err
	}
	defer p.Close()
	return l.Update(p)
}

// TestLinkOpsAlert is issue 39's bpf(2) path: a cgroup link of a program
// that uses a protected map. Its owner (the holder of the map at start)
// puts another program of its own behind the link and back: no alert. A
// stranger's BPF_LINK_UPDATE is a program-detached alert naming the
// process, the link and both programs; its BPF_LINK_DETACH one naming the
// link; neither is reported again by the attachment scan.
func TestLinkOpsAlert(t *testing.T) {
	testutil.RequireRoot(t)
	m, mapID := newSpecMap(t, &ebpf.MapSpec{Name: "link_prot", Type: ebpf.Array, KeySize: 4, ValueSize: 8, MaxEntries: 1})
	prog, err := cgroupProgram(m)
	if err != nil {
		t.Fatal(err)
	}
	defer prog.Close()
	root := cgroupRootDir(t)
	cg := filepath.Join(root, fmt.Sprintf("bpfmon-link-%d", os.Getpid()))
	if err := os.Mkdir(cg, 0o755); err != nil {
		t.Fatal(err)
	}
	defer os.Remove(cg)
	l, err := link.AttachCgroup(link.CgroupOptions{Path: cg, Attach: ebpf.AttachCGroupInetIngress, Program: prog})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	pin := filepath.Join(testutil.BPFFSPath(t), fmt.Sprintf("bpfmon_link_%d", os.Getpid()))
	if err := l.Pin(pin); err != nil {
		t.Fatal(err)
	}
	defer l.Unpin()
	info, err := l.Info()
	if err != nil {
		t.Fatal(err)
	}
	linkID := uint32(info.ID)
	progInfo, _ := prog.Info()
	progID, _ := progInfo.ID()
	foreign := testutil.ForeignExecutable(t, "foreign.test")

	w := startWatch(t, "--format", "json", "--policy", unlimitedAlerts(t), "--protect", "id:"+itoa(mapID))

	// The owner's own update and back.
	other, err := cgroupProgram(m)
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	if err := l.Update(other); err != nil {
		t.Fatal(err)
	}
	if err := l.Update(prog); err != nil {
		t.Fatal(err)
	}
	// The stranger's update, then (the scan not run since) its detach of
	// the link, which then holds the stranger's program.
	stranger := act(t, foreign, "linkupdate:"+pin)
	w.waitOutput(t, "the stranger's link_update", func(lines []string) bool {
		return strings.Contains(strings.Join(lines, "\n"), `"event":"link_update","source":"syscall","alert"`)
	})
	detacher := act(t, foreign, "linkdetach:"+pin)
	w.waitOutput(t, "the stranger's link_detach", func(lines []string) bool {
		return strings.Contains(strings.Join(lines, "\n"), `"event":"link_detach","source":"syscall","alert"`)
	})
	// Two refreshes: the scan must not report the detach again.
	time.Sleep(testutil.Timeout(12 * time.Second))
	lines := w.stop(t, syscall.SIGTERM)

	type linkEvent struct {
		Event   string
		Alert   *struct{ Rule, Reason string }
		Process *struct{ PID int }
		Prog    *struct{ ID uint32 }
		Attach  *struct {
			LinkID  uint32 `json:"link_id"`
			Point   string
			NewProg *struct{ ID uint32 } `json:"new_prog"`
		} `json:"attachment"`
	}
	var updates, detaches, alerts int
	for _, line := range lines {
		if !strings.Contains(line, `"event":"link_`) && !strings.Contains(line, `"event":"prog_detached"`) && !strings.Contains(line, `"event":"attach_changed"`) {
			continue
		}
		var ev linkEvent
		if err := json.Unmarshal([]byte(line), &ev); err != nil {
			t.Fatal(err)
		}
		if ev.Alert != nil {
			alerts++
			t.Logf("%s: %s", ev.Event, ev.Alert.Reason)
		}
		switch {
		case ev.Event == "link_update" && ev.Process != nil && ev.Process.PID == stranger:
			updates++
			if ev.Alert == nil || ev.Alert.Rule != policy.RuleProgramDetached || ev.Prog == nil || ev.Prog.ID != uint32(progID) ||
				ev.Attach == nil || ev.Attach.LinkID != linkID || ev.Attach.NewProg == nil || ev.Attach.NewProg.ID == 0 ||
				!strings.Contains(ev.Attach.Point, fmt.Sprintf("link %d", linkID)) {
				t.Errorf("the stranger's update: %s", line)
			}
		case ev.Event == "link_detach" && ev.Process != nil && ev.Process.PID == detacher:
			detaches++
			if ev.Alert == nil || ev.Alert.Rule != policy.RuleProgramDetached || ev.Attach == nil || ev.Attach.LinkID != linkID {
				t.Errorf("the stranger's detach: %s", line)
			}
		}
	}
	if updates != 1 || detaches != 1 || alerts != 2 {
		t.Errorf("%d updates, %d detaches by the stranger, %d alerts: want 1, 1 and 2 (the owner's updates and the scan raise none)", updates, detaches, alerts)
	}
}

// cgroupRootDir is where the cgroup v2 hierarchy is mounted.
func cgroupRootDir(t *testing.T) string {
	t.Helper()
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	for line := range strings.SplitSeq(string(b), "\n") {
		if _, post, ok := strings.Cut(line, " - "); ok && strings.HasPrefix(post, "cgroup2 ") {
			return strings.Fields(line)[4]
		}
	}
	testutil.SkipOrFail(t, "no cgroup v2 hierarchy mounted")
	return ""
}

// progOp is an action child's progdetach or progreplace of program id on
// the cgroup at cg (inet ingress).
func progOp(op, cg, id string) error {
	dir, err := os.Open(cg)
	if err != nil {
		return err
	}
	defer dir.Close()
	if op == "progdetachnofd" {
		// No program fd (attach_bpf_fd 0, stdin): the cgroup's only one.
		attr := [3]uint32{uint32(dir.Fd()), 0, uint32(ebpf.AttachCGroupInetIngress)}
		if _, _, e := unix.Syscall(unix.SYS_BPF, unix.BPF_PROG_DETACH, uintptr(unsafe.Pointer(&attr[0])), unsafe.Sizeof(attr)); e != 0 {
			return e
		}
		return nil
	}
	n, err := strconv.Atoi(id)
	if err != nil {
		return err
	}
	p, err := ebpf.NewProgramFromID(ebpf.ProgramID(n))
	if err != nil {
		return err
	}
	defer p.Close()
	if op == "progdetach" {
		return link.RawDetachProgram(link.RawDetachProgramOptions{Target: int(dir.Fd()), Program: p, Attach: ebpf.AttachCGroupInetIngress})
	}
	np, err := cgroupProgram(nil)
	if err != nil {
		return err
	}
	defer np.Close()
	return link.RawAttachProgram(link.RawAttachProgramOptions{Target: int(dir.Fd()), Program: np, Attach: ebpf.AttachCGroupInetIngress,
		Flags: unix.BPF_F_ALLOW_MULTI, Anchor: link.ReplaceProgram(p)})
}

// TestProgAttachAlert is issue 39's BPF_PROG_ATTACH and BPF_PROG_DETACH:
// four cgroup programs (attached with BPF_PROG_ATTACH, multi) that use a
// protected map. Its owner (the holder of the map at start) detaches one
// and replaces another with a program of its own: no alert. A
// stranger's BPF_F_REPLACE of the third is a program-detached alert
// naming the process, the cgroup and both programs; its BPF_PROG_DETACH
// of the fourth one naming the program and the cgroup; its legacy
// detach (no program fd) of a fifth, alone on a cgroup, one naming the
// program the last scan found there; the attachment scan reports none
// of them again.
func TestProgAttachAlert(t *testing.T) {
	testutil.RequireRoot(t)
	m, mapID := newSpecMap(t, &ebpf.MapSpec{Name: "progatt_prot", Type: ebpf.Array, KeySize: 4, ValueSize: 8, MaxEntries: 1})
	cg := filepath.Join(cgroupRootDir(t), fmt.Sprintf("bpfmon-progatt-%d", os.Getpid()))
	if err := os.Mkdir(cg, 0o755); err != nil {
		t.Fatal(err)
	}
	defer os.Remove(cg)
	dir, err := os.Open(cg)
	if err != nil {
		t.Fatal(err)
	}
	defer dir.Close()
	attach := func(p, replace *ebpf.Program) error {
		o := link.RawAttachProgramOptions{Target: int(dir.Fd()), Program: p, Attach: ebpf.AttachCGroupInetIngress, Flags: unix.BPF_F_ALLOW_MULTI}
		if replace != nil {
			o.Anchor = link.ReplaceProgram(replace)
		}
		return link.RawAttachProgram(o)
	}
	// A cgroup of its own for a sixth, attached alone (no
	// BPF_F_ALLOW_MULTI): a legacy detach names no program.
	cg2 := cg + "-single"
	if err := os.Mkdir(cg2, 0o755); err != nil {
		t.Fatal(err)
	}
	defer os.Remove(cg2)
	dir2, err := os.Open(cg2)
	if err != nil {
		t.Fatal(err)
	}
	defer dir2.Close()
	var progs [6]*ebpf.Program
	var ids [6]uint32
	for i := range progs {
		p, err := cgroupProgram(m)
		if err != nil {
			t.Fatal(err)
		}
		defer p.Close()
		info, _ := p.Info()
		id, _ := info.ID()
		progs[i], ids[i] = p, uint32(id)
		if i < 4 {
			if err := attach(p, nil); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := link.RawAttachProgram(link.RawAttachProgramOptions{Target: int(dir2.Fd()), Program: progs[5], Attach: ebpf.AttachCGroupInetIngress}); err != nil {
		t.Fatal(err)
	}
	// Whatever is left attached goes with the cgroup: detach it first.
	defer func() {
		for _, p := range progs {
			link.RawDetachProgram(link.RawDetachProgramOptions{Target: int(dir.Fd()), Program: p, Attach: ebpf.AttachCGroupInetIngress})
		}
		link.RawDetachProgram(link.RawDetachProgramOptions{Target: int(dir2.Fd()), Program: progs[5], Attach: ebpf.AttachCGroupInetIngress})
	}()
	foreign := testutil.ForeignExecutable(t, "foreign.test")

	w := startWatch(t, "--format", "json", "--policy", unlimitedAlerts(t), "--protect", "id:"+itoa(mapID))

	// The owner's detach of the first and its replace of the second.
	if err := link.RawDetachProgram(link.RawDetachProgramOptions{Target: int(dir.Fd()), Program: progs[0], Attach: ebpf.AttachCGroupInetIngress}); err != nil {
		t.Fatal(err)
	}
	if err := attach(progs[4], progs[1]); err != nil {
		t.Fatal(err)
	}
	replacer := act(t, foreign, fmt.Sprintf("progreplace:%s:%d", cg, ids[2]))
	detacher := act(t, foreign, fmt.Sprintf("progdetach:%s:%d", cg, ids[3]))
	legacy := act(t, foreign, fmt.Sprintf("progdetachnofd:%s:0", cg2))
	w.waitOutput(t, "the stranger's prog_detach", func(lines []string) bool {
		return strings.Count(strings.Join(lines, "\n"), `"event":"prog_detach","source":"syscall","alert"`) == 2
	})
	// Two refreshes: the scan must not report the four again.
	time.Sleep(testutil.Timeout(12 * time.Second))
	lines := w.stop(t, syscall.SIGTERM)

	type progEvent struct {
		Event   string
		Alert   *struct{ Rule, Reason string }
		Process *struct{ PID int }
		Prog    *struct{ ID uint32 }
		Attach  *struct {
			Kind    string
			Point   string
			NewProg *struct{ ID uint32 } `json:"new_prog"`
		} `json:"attachment"`
	}
	var replaces, detaches, legacies, alerts, owners int
	for _, line := range lines {
		if !strings.Contains(line, `"event":"prog_attach"`) && !strings.Contains(line, `"event":"prog_detach`) && !strings.Contains(line, `"event":"attach_changed"`) {
			continue
		}
		var ev progEvent
		if err := json.Unmarshal([]byte(line), &ev); err != nil {
			t.Fatal(err)
		}
		if ev.Alert != nil {
			alerts++
			t.Logf("%s: %s", ev.Event, ev.Alert.Reason)
		}
		switch {
		case ev.Event == "prog_attach" && ev.Process != nil && ev.Process.PID == replacer:
			replaces++
			if ev.Alert == nil || ev.Alert.Rule != policy.RuleProgramDetached || ev.Prog == nil || ev.Prog.ID != ids[2] ||
				ev.Attach == nil || ev.Attach.Kind != "cgroup" || ev.Attach.NewProg == nil || ev.Attach.NewProg.ID == 0 ||
				!strings.Contains(ev.Attach.Point, filepath.Base(cg)) {
				t.Errorf("the stranger's replace: %s", line)
			}
		case ev.Event == "prog_detach" && ev.Process != nil && ev.Process.PID == detacher:
			detaches++
			if ev.Alert == nil || ev.Alert.Rule != policy.RuleProgramDetached || ev.Prog == nil || ev.Prog.ID != ids[3] ||
				ev.Attach == nil || !strings.Contains(ev.Attach.Point, filepath.Base(cg)) {
				t.Errorf("the stranger's detach: %s", line)
			}
		case ev.Event == "prog_detach" && ev.Process != nil && ev.Process.PID == legacy:
			legacies++
			if ev.Alert == nil || ev.Alert.Rule != policy.RuleProgramDetached || ev.Prog == nil || ev.Prog.ID != ids[5] ||
				ev.Attach == nil || !strings.Contains(ev.Attach.Point, filepath.Base(cg2)) {
				t.Errorf("the stranger's legacy detach: %s", line)
			}
		case ev.Event == "prog_detach" || ev.Event == "prog_attach":
			if ev.Process != nil && ev.Process.PID == os.Getpid() && ev.Prog != nil && (ev.Prog.ID == ids[0] || ev.Prog.ID == ids[1]) {
				owners++
			}
		case ev.Prog != nil && (slices.Contains(ids[:4], ev.Prog.ID) || ev.Prog.ID == ids[5]):
			t.Errorf("reported again by the scan: %s", line)
		}
	}
	if replaces != 1 || detaches != 1 || legacies != 1 || alerts != 3 || owners != 2 {
		t.Errorf("%d replaces, %d detaches, %d legacy detaches by the stranger, %d alerts, %d of the owner's calls: want 1, 1, 1, 3 and 2 (the owner's calls and the scan raise none)",
			replaces, detaches, legacies, alerts, owners)
	}
}

package lsm

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/cilium/ebpf/link"
	"golang.org/x/sys/unix"

	"github.com/bpfmon/bpfmon/internal/event"
	"github.com/bpfmon/bpfmon/internal/testutil"
)

// cgroupProgram loads a cgroup_skb program that uses m (nil: no map).
func cgroupProgram(m *ebpf.Map) (*ebpf.Program, error) {
	insns := asm.Instructions{asm.Mov.Imm(asm.R0, 1), asm.Return()}
	if m != nil {
		insns = append(asm.Instructions{asm.LoadMapPtr(asm.R1, m.FD())}, insns...)
	}
	return ebpf.NewProgram(&ebpf.ProgramSpec{Name: "lsm_link", Type: ebpf.CGroupSKB, AttachType: ebpf.AttachCGroupInetIngress,
		License: "GPL", Instructions: insns})
}

// linkOp is the child's linkupdate or linkdetach of the link pinned at pin.
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

// TestEnforceLinks: under enforcement, a non-owner's BPF_LINK_UPDATE and
// BPF_LINK_DETACH of a link whose program uses a protected map are
// refused and reported (access_denied, hook bpf, the command, the map);
// the owner's own update goes through.
func TestEnforceLinks(t *testing.T) {
	for _, b := range builds {
		t.Run(string(b), func(t *testing.T) { testEnforceLinks(t, b) })
	}
}

func testEnforceLinks(t *testing.T, b Build) {
	en, evs := start(t, b)
	m, err := ebpf.NewMap(&ebpf.MapSpec{Name: "lsm_linkmap", Type: ebpf.Array, KeySize: 4, ValueSize: 8, MaxEntries: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	id := testutil.MapID(t, m)
	prog, err := cgroupProgram(m)
	if err != nil {
		t.Fatal(err)
	}
	defer prog.Close()
	root := ""
	if b, err := os.ReadFile("/proc/self/mountinfo"); err == nil {
		for line := range strings.SplitSeq(string(b), "\n") {
			if _, post, ok := strings.Cut(line, " - "); ok && strings.HasPrefix(post, "cgroup2 ") {
				root = strings.Fields(line)[4]
			}
		}
	}
	if root == "" {
		testutil.SkipOrFail(t, "no cgroup v2 hierarchy mounted")
	}
	cg := filepath.Join(root, fmt.Sprintf("bpfmon-lsmlink-%d-%s", os.Getpid(), b))
	if err := os.Mkdir(cg, 0o755); err != nil {
		t.Fatal(err)
	}
	defer os.Remove(cg)
	l, err := link.AttachCgroup(link.CgroupOptions{Path: cg, Attach: ebpf.AttachCGroupInetIngress, Program: prog})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	pin := filepath.Join(testutil.BPFFSPath(t), fmt.Sprintf("bpfmon_lsmlink_%d_%s", os.Getpid(), b))
	if err := l.Pin(pin); err != nil {
		t.Fatal(err)
	}
	defer l.Unpin()

	f := startForeign(t)
	if err := en.Protect(id); err != nil {
		t.Fatal(err)
	}
	if err := en.AddOwner(id, self(t)); err != nil {
		t.Fatal(err)
	}
	if err := en.Arm(); err != nil {
		t.Fatalf("attaching: %v", err)
	}
	eperm := unix.EPERM.Error()
	for _, c := range []string{"linkupdate " + pin, "linkdetach " + pin} {
		if got := f.do(t, c); got != eperm {
			t.Errorf("foreign %s: %s, want %s", c, got, eperm)
		}
	}
	// The owner swaps the program for another of its own, and back.
	other, err := cgroupProgram(m)
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	if err := l.Update(other); err != nil {
		t.Errorf("the owner's update: %v", err)
	}
	if err := l.Update(prog); err != nil {
		t.Errorf("the owner's update back: %v", err)
	}
	pid := uint32(f.cmd.Process.Pid)
	for _, cmd := range []event.Type{event.LinkUpdate, event.LinkDetach} {
		ev := evs.Wait(t, testutil.Timeout(5*time.Second), "access_denied "+string(cmd), func(ev *event.Event) bool {
			return ev.Type == event.AccessDenied && ev.Extra != nil && ev.Extra.Cmd == string(cmd)
		})
		if ev.Process == nil || ev.Process.PID != pid || ev.Map == nil || ev.Map.ID != id || ev.Extra.Hook != "bpf" {
			t.Errorf("%s refusal: %+v process %+v map %+v", cmd, ev, ev.Process, ev.Map)
		}
	}
}

// progOp is the child's progdetach or progreplace of program id on the
// cgroup at cg (inet ingress).
func progOp(op, cg, id string) error {
	n, err := strconv.Atoi(id)
	if err != nil {
		return err
	}
	p, err := ebpf.NewProgramFromID(ebpf.ProgramID(n))
	if err != nil {
		return err
	}
	defer p.Close()
	dir, err := os.Open(cg)
	if err != nil {
		return err
	}
	defer dir.Close()
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

// TestEnforceProgAttach: under enforcement, a non-owner's BPF_PROG_DETACH
// of a cgroup program that uses a protected map, and its BPF_PROG_ATTACH
// with BPF_F_REPLACE in that program's place, are refused and reported
// (access_denied, hook bpf, the command, the map); the owner's own
// replace and detach go through.
func TestEnforceProgAttach(t *testing.T) {
	for _, b := range builds {
		t.Run(string(b), func(t *testing.T) { testEnforceProgAttach(t, b) })
	}
}

func testEnforceProgAttach(t *testing.T, b Build) {
	en, evs := start(t, b)
	m, err := ebpf.NewMap(&ebpf.MapSpec{Name: "lsm_progmap", Type: ebpf.Array, KeySize: 4, ValueSize: 8, MaxEntries: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	id := testutil.MapID(t, m)
	prog, err := cgroupProgram(m)
	if err != nil {
		t.Fatal(err)
	}
	defer prog.Close()
	info, err := prog.Info()
	if err != nil {
		t.Fatal(err)
	}
	progID, _ := info.ID()
	root := ""
	if b, err := os.ReadFile("/proc/self/mountinfo"); err == nil {
		for line := range strings.SplitSeq(string(b), "\n") {
			if _, post, ok := strings.Cut(line, " - "); ok && strings.HasPrefix(post, "cgroup2 ") {
				root = strings.Fields(line)[4]
			}
		}
	}
	if root == "" {
		testutil.SkipOrFail(t, "no cgroup v2 hierarchy mounted")
	}
	cg := filepath.Join(root, fmt.Sprintf("bpfmon-lsmprog-%d-%s", os.Getpid(), b))
	if err := os.Mkdir(cg, 0o755); err != nil {
		t.Fatal(err)
	}
	defer os.Remove(cg)
	dir, err := os.Open(cg)
	if err != nil {
		t.Fatal(err)
	}
	defer dir.Close()
	target := int(dir.Fd())
	if err := link.RawAttachProgram(link.RawAttachProgramOptions{Target: target, Program: prog, Attach: ebpf.AttachCGroupInetIngress,
		Flags: unix.BPF_F_ALLOW_MULTI}); err != nil {
		t.Fatal(err)
	}

	f := startForeign(t)
	if err := en.Protect(id); err != nil {
		t.Fatal(err)
	}
	if err := en.AddOwner(id, self(t)); err != nil {
		t.Fatal(err)
	}
	if err := en.Arm(); err != nil {
		t.Fatalf("attaching: %v", err)
	}
	eperm := unix.EPERM.Error()
	ids := strconv.Itoa(int(progID))
	for _, c := range []string{"progreplace " + cg + " " + ids, "progdetach " + cg + " " + ids} {
		if got := f.do(t, c); got != eperm {
			t.Errorf("foreign %s: %s, want %s", c, got, eperm)
		}
	}
	// The owner replaces its program with another of its own, then
	// detaches that.
	other, err := cgroupProgram(m)
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	if err := link.RawAttachProgram(link.RawAttachProgramOptions{Target: target, Program: other, Attach: ebpf.AttachCGroupInetIngress,
		Flags: unix.BPF_F_ALLOW_MULTI, Anchor: link.ReplaceProgram(prog)}); err != nil {
		t.Errorf("the owner's replace: %v", err)
	}
	if err := link.RawDetachProgram(link.RawDetachProgramOptions{Target: target, Program: other, Attach: ebpf.AttachCGroupInetIngress}); err != nil {
		t.Errorf("the owner's detach: %v", err)
	}
	pid := uint32(f.cmd.Process.Pid)
	for _, cmd := range []event.Type{event.ProgAttach, event.ProgDetach} {
		ev := evs.Wait(t, testutil.Timeout(5*time.Second), "access_denied "+string(cmd), func(ev *event.Event) bool {
			return ev.Type == event.AccessDenied && ev.Extra != nil && ev.Extra.Cmd == string(cmd)
		})
		if ev.Process == nil || ev.Process.PID != pid || ev.Map == nil || ev.Map.ID != id || ev.Extra.Hook != "bpf" {
			t.Errorf("%s refusal: %+v process %+v map %+v", cmd, ev, ev.Process, ev.Map)
		}
	}
}

package bpfsyscall

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/cilium/ebpf/link"
	"golang.org/x/sys/unix"

	"github.com/bpfmon/bpfmon/internal/event"
	"github.com/bpfmon/bpfmon/internal/testutil"
)

// TestLinkOps: BPF_LINK_UPDATE and BPF_LINK_DETACH of a cgroup link are
// reported with the link's id, its program and, for the update, the
// program put in its place, read in the kernel from the caller's fds.
func TestLinkOps(t *testing.T) {
	c := startSensor(t, Config{})
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
	cg := filepath.Join(root, fmt.Sprintf("bpfmon-linkops-%d", os.Getpid()))
	if err := os.Mkdir(cg, 0o755); err != nil {
		t.Fatal(err)
	}
	defer os.Remove(cg)
	load := func() (*ebpf.Program, uint32) {
		p, err := ebpf.NewProgram(&ebpf.ProgramSpec{Name: "linkops", Type: ebpf.CGroupSKB, AttachType: ebpf.AttachCGroupInetIngress,
			License: "GPL", Instructions: asm.Instructions{asm.Mov.Imm(asm.R0, 1), asm.Return()}})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { p.Close() })
		info, _ := p.Info()
		id, _ := info.ID()
		return p, uint32(id)
	}
	p1, id1 := load()
	p2, id2 := load()
	l, err := link.AttachCgroup(link.CgroupOptions{Path: cg, Attach: ebpf.AttachCGroupInetIngress, Program: p1})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	info, err := l.Info()
	if err != nil {
		t.Fatal(err)
	}
	linkID := uint32(info.ID)
	if err := l.Update(p2); err != nil {
		t.Fatal(err)
	}
	if err := l.Detach(); err != nil {
		t.Fatal(err)
	}
	onLink := func(typ event.Type) func(*event.Event) bool {
		return func(ev *event.Event) bool {
			return ev.Type == typ && ev.Extra != nil && ev.Extra.Attach != nil && ev.Extra.Attach.LinkID == linkID
		}
	}
	upd := c.wait(t, "link_update", onLink(event.LinkUpdate))
	if upd.Prog == nil || upd.Prog.ID != id1 || upd.Extra.Attach.NewProg == nil || upd.Extra.Attach.NewProg.ID != id2 ||
		!upd.HasResult || upd.Result != 0 || upd.Process == nil || upd.Process.PID != uint32(os.Getpid()) {
		t.Errorf("link_update: %s prog %+v new %+v", describe(upd), upd.Prog, upd.Extra.Attach.NewProg)
	}
	det := c.wait(t, "link_detach", onLink(event.LinkDetach))
	if det.Prog == nil || det.Prog.ID != id2 || !det.HasResult || det.Result != 0 {
		t.Errorf("link_detach: %s prog %+v", describe(det), det.Prog)
	}
}

// TestProgAttachOps: BPF_PROG_ATTACH of a cgroup program, its
// BPF_F_REPLACE by another and BPF_PROG_DETACH are reported with the
// cgroup (its id, the attach type) and the programs, read in the kernel
// from the caller's fds: the replace names both.
func TestProgAttachOps(t *testing.T) {
	c := startSensor(t, Config{})
	cg := testCgroup(t, "progattach")
	dir, err := os.Open(cg)
	if err != nil {
		t.Fatal(err)
	}
	defer dir.Close()
	var st unix.Stat_t
	if err := unix.Fstat(int(dir.Fd()), &st); err != nil {
		t.Fatal(err)
	}
	load := func() (*ebpf.Program, uint32) {
		p, err := ebpf.NewProgram(&ebpf.ProgramSpec{Name: "progattach", Type: ebpf.CGroupSKB, AttachType: ebpf.AttachCGroupInetEgress,
			License: "GPL", Instructions: asm.Instructions{asm.Mov.Imm(asm.R0, 1), asm.Return()}})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { p.Close() })
		info, _ := p.Info()
		id, _ := info.ID()
		return p, uint32(id)
	}
	p1, id1 := load()
	p2, id2 := load()
	target := int(dir.Fd())
	if err := link.RawAttachProgram(link.RawAttachProgramOptions{Target: target, Program: p1, Attach: ebpf.AttachCGroupInetEgress,
		Flags: unix.BPF_F_ALLOW_MULTI}); err != nil {
		t.Fatal(err)
	}
	if err := link.RawAttachProgram(link.RawAttachProgramOptions{Target: target, Program: p2, Attach: ebpf.AttachCGroupInetEgress,
		Flags: unix.BPF_F_ALLOW_MULTI, Anchor: link.ReplaceProgram(p1)}); err != nil {
		t.Fatal(err)
	}
	if err := link.RawDetachProgram(link.RawDetachProgramOptions{Target: target, Program: p2, Attach: ebpf.AttachCGroupInetEgress}); err != nil {
		t.Fatal(err)
	}
	onCgroup := func(typ event.Type, replace bool) func(*event.Event) bool {
		return func(ev *event.Event) bool {
			return ev.Type == typ && ev.Extra != nil && ev.Extra.Attach != nil && ev.Extra.Attach.TargetIno == st.Ino &&
				(ev.Prog != nil) == replace
		}
	}
	ok := func(ev *event.Event) bool {
		a := ev.Extra.Attach
		return a.Kind == "cgroup" && a.AttachType == ebpf.AttachCGroupInetEgress.String() && ev.HasResult && ev.Result == 0 &&
			ev.Process != nil && ev.Process.PID == uint32(os.Getpid()) && ev.HasFD && ev.FD == int32(target)
	}
	att := c.wait(t, "prog_attach", onCgroup(event.ProgAttach, false))
	if !ok(att) || att.Extra.Attach.NewProg == nil || att.Extra.Attach.NewProg.ID != id1 || att.Flags != unix.BPF_F_ALLOW_MULTI {
		t.Errorf("prog_attach: %s attach %+v", describe(att), att.Extra.Attach)
	}
	rep := c.wait(t, "prog_attach with BPF_F_REPLACE", onCgroup(event.ProgAttach, true))
	if !ok(rep) || rep.Prog.ID != id1 || rep.Extra.Attach.NewProg == nil || rep.Extra.Attach.NewProg.ID != id2 ||
		rep.Flags != unix.BPF_F_ALLOW_MULTI|unix.BPF_F_REPLACE {
		t.Errorf("prog_attach replace: %s prog %+v attach %+v", describe(rep), rep.Prog, rep.Extra.Attach)
	}
	det := c.wait(t, "prog_detach", onCgroup(event.ProgDetach, true))
	if !ok(det) || det.Prog.ID != id2 || det.Extra.Attach.NewProg != nil {
		t.Errorf("prog_detach: %s prog %+v attach %+v", describe(det), det.Prog, det.Extra.Attach)
	}
}

// testCgroup makes a cgroup of its own under the cgroup v2 root.
func testCgroup(t *testing.T, name string) string {
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
	cg := filepath.Join(root, fmt.Sprintf("bpfmon-%s-%d", name, os.Getpid()))
	if err := os.Mkdir(cg, 0o755); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.Remove(cg) })
	return cg
}

// TestLinkPin: BPF_OBJ_PIN of a link is an obj_pin with the link's id
// and type and its program, besides the path.
func TestLinkPin(t *testing.T) {
	c := startSensor(t, Config{})
	cg := testCgroup(t, "linkpin")
	p, err := ebpf.NewProgram(&ebpf.ProgramSpec{Name: "linkpin", Type: ebpf.CGroupSKB, AttachType: ebpf.AttachCGroupInetIngress,
		License: "GPL", Instructions: asm.Instructions{asm.Mov.Imm(asm.R0, 1), asm.Return()}})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	info, _ := p.Info()
	progID, _ := info.ID()
	l, err := link.AttachCgroup(link.CgroupOptions{Path: cg, Attach: ebpf.AttachCGroupInetIngress, Program: p})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	li, err := l.Info()
	if err != nil {
		t.Fatal(err)
	}
	pin := filepath.Join(testutil.BPFFSPath(t), fmt.Sprintf("bpfmon_linkpin_%d", os.Getpid()))
	if err := l.Pin(pin); err != nil {
		t.Fatal(err)
	}
	defer l.Unpin()
	ev := c.wait(t, "obj_pin of the link", func(ev *event.Event) bool { return ev.Type == event.ObjPin && ev.Path == pin })
	if ev.Prog == nil || ev.Prog.ID != uint32(progID) || ev.Map != nil || ev.Extra == nil || ev.Extra.Attach == nil ||
		ev.Extra.Attach.LinkID != uint32(li.ID) || ev.Extra.Attach.LinkType != "cgroup" || !ev.HasResult || ev.Result != 0 {
		t.Errorf("obj_pin: %s prog %+v extra %+v", describe(ev), ev.Prog, ev.Extra)
	}
}

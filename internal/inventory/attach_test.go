package inventory

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/cilium/ebpf/link"
	"golang.org/x/sys/unix"

	"github.com/bpfmon/bpfmon/internal/testutil"
)

// privateVeth makes a network namespace of its own with a veth pair in it
// and returns the namespace's name and the pair's names.
func privateVeth(t *testing.T) (ns, a, b string) {
	t.Helper()
	if _, err := exec.LookPath("ip"); err != nil {
		testutil.SkipOrFail(t, "no ip command (iproute2)")
	}
	ns = fmt.Sprintf("bpfmon-inv-%d", os.Getpid())
	a, b = "bpfmon0", "bpfmon1"
	run := func(args ...string) {
		t.Helper()
		if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
			t.Fatalf("ip %s: %v: %s", strings.Join(args, " "), err, out)
		}
	}
	run("netns", "add", ns)
	t.Cleanup(func() { exec.Command("ip", "netns", "del", ns).Run() })
	run("-n", ns, "link", "add", a, "type", "veth", "peer", "name", b)
	return ns, a, b
}

// xdpProgram loads a program that uses a map and returns both.
func xdpProgram(t testing.TB, name string) (*ebpf.Program, *ebpf.Map) {
	t.Helper()
	m, err := ebpf.NewMap(&ebpf.MapSpec{Name: name, Type: ebpf.Array, KeySize: 4, ValueSize: 4, MaxEntries: 1})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	p, err := ebpf.NewProgram(&ebpf.ProgramSpec{Name: name, Type: ebpf.XDP, License: "GPL", Instructions: asm.Instructions{
		asm.LoadMapPtr(asm.R1, m.FD()), asm.Mov.Imm(asm.R0, 2), asm.Return()}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	return p, m
}

// TestAttachments: an XDP program attached over netlink to a veth in a
// namespace bpfmon is not in, one attached through a bpf_link, and their
// map's Programs in Collect say where each is attached; and no longer
// once detached, over netlink and with BPF_LINK_DETACH.
func TestAttachments(t *testing.T) {
	testutil.RequireRoot(t)
	ns, a, b := privateVeth(t)
	viaNetlink, m := xdpProgram(t, "inv_att_nl")
	pin := filepath.Join(testutil.BPFFSPath(t), fmt.Sprintf("inv_att_%d", os.Getpid()))
	if err := viaNetlink.Pin(pin); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.Remove(pin) })
	if out, err := exec.Command("nsenter", "--net=/run/netns/"+ns, "ip", "link", "set", "dev", a, "xdpgeneric", "pinned", pin).CombinedOutput(); err != nil {
		t.Fatalf("attaching over netlink: %v: %s", err, out)
	}

	viaLink, m2 := xdpProgram(t, "inv_att_link")
	// (nsenter: ip -n would enter a mount namespace of its own, without
	// the bpffs.) The link is made in the namespace through a thread that enters it.
	var l link.Link
	err := inNetns(t, ns, func() error {
		iface, err := netIfindex(b)
		if err != nil {
			return err
		}
		l, err = link.AttachXDP(link.XDPOptions{Program: viaLink, Interface: iface, Flags: link.XDPGenericMode})
		return err
	})
	if err != nil {
		t.Fatalf("attaching through a link: %v", err)
	}
	defer l.Close()

	// A tc (cls_bpf) filter on the first veth's ingress.
	clsMap, err := ebpf.NewMap(&ebpf.MapSpec{Name: "inv_att_tc", Type: ebpf.Array, KeySize: 4, ValueSize: 4, MaxEntries: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer clsMap.Close()
	cls, err := ebpf.NewProgram(&ebpf.ProgramSpec{Name: "inv_att_tc", Type: ebpf.SchedCLS, License: "GPL", Instructions: asm.Instructions{
		asm.LoadMapPtr(asm.R1, clsMap.FD()), asm.Mov.Imm(asm.R0, 0), asm.Return()}})
	if err != nil {
		t.Fatal(err)
	}
	defer cls.Close()
	clsPin := pin + "_tc"
	if err := cls.Pin(clsPin); err != nil {
		t.Fatal(err)
	}
	defer os.Remove(clsPin)
	for _, args := range [][]string{{"tc", "qdisc", "add", "dev", a, "clsact"},
		{"tc", "filter", "add", "dev", a, "ingress", "prio", "7", "bpf", "direct-action", "object-pinned", clsPin}} {
		if out, err := exec.Command("nsenter", append([]string{"--net=/run/netns/" + ns}, args...)...).CombinedOutput(); err != nil {
			t.Fatalf("%v: %v: %s", args, err, out)
		}
	}

	maps := collect(t, Options{IDs: []uint32{testutil.MapID(t, m), testutil.MapID(t, m2), testutil.MapID(t, clsMap)}, Attachments: true})
	if progs := find(t, maps, testutil.MapID(t, clsMap)).Programs; len(progs) != 1 || len(progs[0].Attachments) != 1 ||
		progs[0].Attachments[0].Kind != "tc" || progs[0].Attachments[0].Interface != a || progs[0].Attachments[0].AttachType != "ingress" ||
		!strings.Contains(progs[0].Attachments[0].Point, "priority 7") {
		t.Errorf("the tc filter: %+v", progs)
	}
	check := func(mapID uint32, iface string, isLink bool) {
		t.Helper()
		progs := find(t, maps, mapID).Programs
		if len(progs) != 1 || len(progs[0].Attachments) != 1 {
			t.Fatalf("map %d: want one program with one attachment, got %+v", mapID, progs)
		}
		at := progs[0].Attachments[0]
		if at.Kind != "xdp" || at.Interface != iface || at.Mode != "skb" || at.NetNS == 0 || (at.LinkID != 0) != isLink {
			t.Errorf("map %d: attachment %+v, want xdp skb on %s (link: %v)", mapID, at, iface, isLink)
		}
	}
	check(testutil.MapID(t, m), a, false)
	check(testutil.MapID(t, m2), b, true)

	// Detached over netlink: gone from the next read.
	if out, err := exec.Command("ip", "-n", ns, "link", "set", "dev", a, "xdpgeneric", "off").CombinedOutput(); err != nil {
		t.Fatalf("detaching: %v: %s", err, out)
	}
	// The link detached (BPF_LINK_DETACH): it is still there, its fd
	// held, but attaches nothing.
	if err := l.Detach(); err != nil {
		t.Fatalf("BPF_LINK_DETACH: %v", err)
	}
	maps = collect(t, Options{IDs: []uint32{testutil.MapID(t, m), testutil.MapID(t, m2)}, Attachments: true})
	for _, id := range []uint32{testutil.MapID(t, m), testutil.MapID(t, m2)} {
		if at := find(t, maps, id).Programs[0].Attachments; len(at) != 0 {
			t.Errorf("map %d: after the detaches, attachments %+v, want none", id, at)
		}
	}
}

// inNetns runs f on a thread in network namespace ns (ip netns's name),
// which then goes back to its own namespace.
func inNetns(t testing.TB, ns string, f func() error) error {
	t.Helper()
	done := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		home, err := unix.Open("/proc/thread-self/ns/net", unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			done <- err
			return
		}
		defer unix.Close(home)
		fd, err := unix.Open("/run/netns/"+ns, unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			done <- err
			return
		}
		defer unix.Close(fd)
		if err := unix.Setns(fd, unix.CLONE_NEWNET); err != nil {
			done <- err
			return
		}
		err = f()
		if unix.Setns(home, unix.CLONE_NEWNET) == nil {
			runtime.UnlockOSThread()
		}
		done <- err
	}()
	return <-done
}

func netIfindex(name string) (int, error) {
	iface, err := net.InterfaceByName(name)
	if err != nil {
		return 0, err
	}
	return iface.Index, nil
}

// BenchmarkAttachments is the attachment scan's read with 1,000 XDP
// attachments: 500 veth pairs in a namespace of their own, each end's
// program attached through a link (so listed by the link walk and the
// namespace's netlink dump alike).
func BenchmarkAttachments(b *testing.B) {
	testutil.RequireRoot(b)
	ns := fmt.Sprintf("bpfmon-bench-%d", os.Getpid())
	if out, err := exec.Command("ip", "netns", "add", ns).CombinedOutput(); err != nil {
		b.Skipf("ip netns add: %v: %s", err, out)
	}
	b.Cleanup(func() { exec.Command("ip", "netns", "del", ns).Run() })
	var batch strings.Builder
	for i := range 500 {
		fmt.Fprintf(&batch, "link add ba%d type veth peer name bb%d\n", i, i)
	}
	cmd := exec.Command("ip", "-n", ns, "-batch", "-")
	cmd.Stdin = strings.NewReader(batch.String())
	if out, err := cmd.CombinedOutput(); err != nil {
		b.Fatalf("ip -batch: %v: %s", err, out)
	}
	prog, _ := xdpProgram(b, "inv_bench")
	var links []link.Link
	b.Cleanup(func() {
		for _, l := range links {
			l.Close()
		}
	})
	err := inNetns(b, ns, func() error {
		for i := range 500 {
			for _, name := range []string{fmt.Sprint("ba", i), fmt.Sprint("bb", i)} {
				idx, err := netIfindex(name)
				if err != nil {
					return err
				}
				l, err := link.AttachXDP(link.XDPOptions{Program: prog, Interface: idx, Flags: link.XDPGenericMode})
				if err != nil {
					return err
				}
				links = append(links, l)
			}
		}
		return nil
	})
	if err != nil {
		b.Fatal(err)
	}
	info, _ := prog.Info()
	id, _ := info.ID()
	var before, after unix.Rusage
	unix.Getrusage(unix.RUSAGE_SELF, &before)
	n := 0
	for b.Loop() {
		all, errs := Attachments()
		if len(all[uint32(id)]) != 1000 || len(errs) > 0 {
			b.Fatalf("%d attachments, %v", len(all[uint32(id)]), errs)
		}
		n++
	}
	unix.Getrusage(unix.RUSAGE_SELF, &after)
	cpu := time.Duration(after.Utime.Nano() + after.Stime.Nano() - before.Utime.Nano() - before.Stime.Nano())
	b.ReportMetric(float64(cpu.Nanoseconds())/float64(n), "cpu-ns/op")
}

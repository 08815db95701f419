package netattach

import (
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
	"unsafe"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/cilium/ebpf/link"
	"golang.org/x/sys/unix"

	"github.com/bpfmon/bpfmon/internal/event"
	"github.com/bpfmon/bpfmon/internal/features"
	"github.com/bpfmon/bpfmon/internal/sensor/record"
	"github.com/bpfmon/bpfmon/internal/sensor/sensortest"
	"github.com/bpfmon/bpfmon/internal/testutil"
)

// TestLayout: the object's records are the protocol's.
func TestLayout(t *testing.T) {
	spec, err := loadNetattach()
	if err != nil {
		t.Fatal(err)
	}
	if err := record.CheckObject(spec); err != nil {
		t.Fatal(err)
	}
}

// TestDecodeBadInput: a short record or one of an unknown kind is an
// error, never a panic.
func TestDecodeBadInput(t *testing.T) {
	s := New()
	d := record.NewDemux()
	if err := d.Handle(record.KindNetAttach, s.decode); err != nil {
		t.Fatal(err)
	}
	emit := func(*event.Event) error { return nil }
	rec := make([]byte, recSize)
	*(*uint32)(unsafe.Pointer(&rec[0])) = uint32(record.KindNetAttach)
	for _, raw := range [][]byte{rec[:record.HeaderSize], rec[:recSize-1], rec} {
		if err := d.Decode(raw, emit); err == nil {
			t.Errorf("a record of %d bytes (kind 0) decoded", len(raw))
		}
	}
}

// start starts the sensor's preferred build (fexit where the kernel allows
// trampolines), excluding this process (whose own netlink calls set the
// scene); it skips where the kernel allows neither kprobes nor fentry,
// fails where either is declared and the sensor does not start.
func start(t *testing.T) *sensortest.Run {
	t.Helper()
	testutil.RequireRoot(t)
	testutil.NeedKernelHook(t, features.Kprobes(), features.Fentry())
	return sensortest.Start(t, sensortest.Options{ExcludeSelf: true, Describe: describe}, New())
}

// startKprobes starts the kprobe build, which kernels without trampolines
// (arm64 before 6.4) run.
func startKprobes(t *testing.T) *sensortest.Run {
	t.Helper()
	testutil.RequireRoot(t)
	testutil.Need(t, testutil.Kprobes, features.Kprobes(), "the kprobe build")
	s := New()
	s.kprobesOnly = true
	r := sensortest.Start(t, sensortest.Options{ExcludeSelf: true, Describe: describe}, s)
	if !strings.HasPrefix(s.build, "kprobes") {
		t.Fatalf("the kprobe build was asked for, the sensor runs %s", s.build)
	}
	return r
}

func describe(ev *event.Event) string {
	s := string(ev.Type)
	if ev.Process != nil {
		s += " pid " + strconv.Itoa(int(ev.Process.PID)) + " " + ev.Process.Comm
	}
	if a := ev.Extra.Attach; a != nil {
		s += " ifindex " + strconv.Itoa(int(a.Ifindex)) + " mode " + a.Mode + " dir " + a.Direction
	}
	return s + " result " + strconv.FormatInt(ev.Result, 10)
}

// nl is the test's netlink helper (testdata/nl.c), copied under the name
// the process is to have: the kernel names a process after its
// executable's file.
func nl(t *testing.T, name string) string {
	t.Helper()
	bin := testutil.CC(t, "testdata/nl.c")
	data, err := os.ReadFile(bin)
	if err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(out, data, 0o755); err != nil {
		t.Fatal(err)
	}
	return out
}

// run runs the helper and returns the kernel's answer and its pid.
func run(t *testing.T, bin string, files []*os.File, args ...string) (int, int) {
	t.Helper()
	c := exec.Command(bin, args...)
	c.ExtraFiles = files
	out, err := c.Output()
	if err != nil {
		t.Fatalf("%s %s: %v (%s)", bin, strings.Join(args, " "), err, out)
	}
	n, err := strconv.Atoi(strings.TrimSpace(string(out)))
	if err != nil {
		t.Fatalf("%s %s printed %q", bin, strings.Join(args, " "), out)
	}
	return n, c.Process.Pid
}

func netnsIno(t *testing.T) uint64 {
	t.Helper()
	var st unix.Stat_t
	if err := unix.Stat("/proc/self/ns/net", &st); err != nil {
		t.Fatal(err)
	}
	return st.Ino
}

// TestXDPNetlink: an XDP program using a map is put on lo in skb (generic)
// mode over netlink by one process named ip, then taken off by another:
// both are xdp_set events naming that process (pid, start time, exe inode),
// the device, its namespace and mode, and the program of the mode after the
// call (the program, then none). The kernel is asked as iproute2 asks it
// (ip link set dev lo xdpgeneric obj ... / off).
func TestXDPNetlink(t *testing.T) {
	t.Run("preferred", func(t *testing.T) { testXDPNetlink(t, start(t)) }) // fexit where trampolines work
	t.Run("kprobe", func(t *testing.T) { testXDPNetlink(t, startKprobes(t)) })
}

func testXDPNetlink(t *testing.T, r *sensortest.Run) {
	m, err := ebpf.NewMap(&ebpf.MapSpec{Name: "rules", Type: ebpf.Array, KeySize: 4, ValueSize: 4, MaxEntries: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	prog, err := ebpf.NewProgram(&ebpf.ProgramSpec{Name: "fw", Type: ebpf.XDP, License: "GPL", Instructions: asm.Instructions{
		asm.LoadMapPtr(asm.R1, m.FD()), // the program uses the map, as a firewall its rules
		asm.Mov.Imm(asm.R0, 2),         // XDP_PASS
		asm.Return(),
	}})
	if err != nil {
		t.Fatal(err)
	}
	defer prog.Close()
	info, _ := prog.Info()
	progID, _ := info.ID()
	lo, err := net1()
	if err != nil {
		t.Fatal(err)
	}
	ip := nl(t, "ip")
	// A copy of the program's fd, the os.File's own: the program's, given
	// to an os.File, would be closed twice (by the file's finalizer and by
	// prog.Close), the second time closing whatever file has its number.
	dup, err := unix.FcntlInt(uintptr(prog.FD()), unix.F_DUPFD_CLOEXEC, 3)
	if err != nil {
		t.Fatal(err)
	}
	f := os.NewFile(uintptr(dup), "prog")
	defer f.Close()
	got, attacher := run(t, ip, []*os.File{f}, "xdp", strconv.Itoa(lo), "3")
	if got != 0 {
		t.Fatalf("attaching over netlink: %d", got)
	}
	defer run(t, ip, nil, "xdp", strconv.Itoa(lo), "-1")
	got, detacher := run(t, ip, nil, "xdp", strconv.Itoa(lo), "-1")
	if got != 0 {
		t.Fatalf("detaching over netlink: %d", got)
	}
	ns := netnsIno(t)
	check := func(pid int, fd int32, after uint32) {
		t.Helper()
		ev := r.Wait(t, 10*time.Second, "xdp_set by pid "+strconv.Itoa(pid), func(ev *event.Event) bool {
			return ev.Type == event.XDPSet && ev.Process != nil && ev.Process.PID == uint32(pid)
		})
		a := ev.Extra.Attach
		if ev.Source != event.SourceNetAttach || ev.Process.Comm != "ip" || ev.Process.ExeIno == 0 || ev.Process.StartTime == 0 ||
			!ev.HasResult || ev.Result != 0 || ev.FD != fd || ev.Flags != xdpFlagsSKB ||
			a.Kind != "xdp" || a.Ifindex != uint32(lo) || a.NetNS != ns || a.Mode != "skb" || a.ModeProgs != [3]uint32{after} {
			t.Fatalf("xdp_set by pid %d: %s, process %+v, attach %+v, fd %d flags %#x", pid, describe(ev), ev.Process, a, ev.FD, ev.Flags)
		}
	}
	check(attacher, 3, uint32(progID))
	check(detacher, -1, 0)
}

// TestTCDelNetlink: RTM_DELTFILTER, as `tc filter del dev lo ingress pref
// 49152` sends it, by a process named tc is a tc_filter_del naming it,
// the device, direction and priority, with the kernel's answer (lo has no
// clsact qdisc in the test: the delete fails, and is reported as tried).
func TestTCDelNetlink(t *testing.T) {
	t.Run("preferred", func(t *testing.T) { testTCDelNetlink(t, start(t)) })
	t.Run("kprobe", func(t *testing.T) { testTCDelNetlink(t, startKprobes(t)) })
}

func testTCDelNetlink(t *testing.T, r *sensortest.Run) {
	lo, err := net1()
	if err != nil {
		t.Fatal(err)
	}
	got, pid := run(t, nl(t, "tc"), nil, "tcdel", strconv.Itoa(lo), "49152")
	ev := r.Wait(t, 10*time.Second, "tc_filter_del", func(ev *event.Event) bool {
		return ev.Type == event.TCFilterDel && ev.Process != nil && ev.Process.PID == uint32(pid)
	})
	a := ev.Extra.Attach
	if ev.Process.Comm != "tc" || ev.Result != int64(got) || a.Kind != "tc" || a.Ifindex != uint32(lo) || a.NetNS != netnsIno(t) ||
		a.Direction != "ingress" || a.Priority != 49152 {
		t.Fatalf("tc_filter_del: %s, attach %+v (the kernel answered %d)", describe(ev), a, got)
	}
}

// net1 is lo's index.
func net1() (int, error) {
	b, err := os.ReadFile("/sys/class/net/lo/ifindex")
	if err != nil {
		return 0, err
	}
	return strconv.Atoi(strings.TrimSpace(string(b)))
}

// TestOwnMapsFrozen: no process can clear the sensor's counters or its
// calls in flight through bpf(2), and the ring is not listed as the
// sensor's (the loader's promise, sensor.Base).
func TestOwnMapsFrozen(t *testing.T) {
	testutil.RequireRoot(t)
	testutil.NeedKernelHook(t, features.Kprobes(), features.Fentry())
	s := New()
	r := sensortest.Start(t, sensortest.Options{ExcludeSelf: true, Describe: describe}, s)
	r.CheckOwnMaps(t, s)
}

// TestLinkRelease: an XDP link on lo held by a process named holder (its
// fd 3, which it closes when told) and by this one: the holder's close
// releases no last reference, and writes nothing; a second holder, with
// the link's file alone, releases its last reference as it closes it,
// and the link_release names that process (its executable too: it is
// not exiting), the link (id and type) and its program. A third holder
// closing a pinned link's last file writes nothing either.
func TestLinkRelease(t *testing.T) {
	t.Run("preferred", func(t *testing.T) { testLinkRelease(t, start(t)) })
	t.Run("kprobe", func(t *testing.T) { testLinkRelease(t, startKprobes(t)) })
}

func testLinkRelease(t *testing.T, r *sensortest.Run) {
	prog, err := ebpf.NewProgram(&ebpf.ProgramSpec{Name: "fw", Type: ebpf.XDP, License: "GPL", Instructions: asm.Instructions{
		asm.Mov.Imm(asm.R0, 2), // XDP_PASS
		asm.Return(),
	}})
	if err != nil {
		t.Fatal(err)
	}
	defer prog.Close()
	info, _ := prog.Info()
	progID, _ := info.ID()
	lo, err := net1()
	if err != nil {
		t.Fatal(err)
	}
	holder := nl(t, "holder")
	// hold runs the holder with the link's file as its fd 3, which it
	// closes at its stdin's end; closeOurs is called once it runs.
	hold := func(l link.Link, closeOurs func()) int {
		t.Helper()
		fd, err := unix.FcntlInt(uintptr(l.(interface{ FD() int }).FD()), unix.F_DUPFD_CLOEXEC, 3)
		if err != nil {
			t.Fatal(err)
		}
		f := os.NewFile(uintptr(fd), "link")
		defer f.Close()
		c := exec.Command(holder, "hold")
		c.ExtraFiles = []*os.File{f}
		in, err := c.StdinPipe()
		if err != nil {
			t.Fatal(err)
		}
		if err := c.Start(); err != nil {
			t.Fatal(err)
		}
		f.Close()
		closeOurs()
		in.Close()
		if err := c.Wait(); err != nil {
			t.Fatal(err)
		}
		return c.Process.Pid
	}
	l, err := link.AttachXDP(link.XDPOptions{Program: prog, Interface: lo, Flags: link.XDPGenericMode})
	if err != nil {
		t.Fatal(err)
	}
	li, err := l.Info()
	if err != nil {
		t.Fatal(err)
	}
	first := hold(l, func() {})             // this process still holds the link's file
	second := hold(l, func() { l.Close() }) // the holder's file alone: its close releases the link
	ev := r.Wait(t, 10*time.Second, "link_release by pid "+strconv.Itoa(second), func(ev *event.Event) bool {
		return ev.Type == event.LinkRelease && ev.Process != nil && ev.Process.PID == uint32(second)
	})
	a := ev.Extra.Attach
	if ev.Source != event.SourceNetAttach || ev.Process.Comm != "holder" || ev.Process.ExeIno == 0 || ev.Process.StartTime == 0 ||
		ev.Prog == nil || ev.Prog.ID != uint32(progID) || a.Kind != "link" || a.LinkID != uint32(li.ID) || a.LinkType != "xdp" {
		t.Fatalf("link_release: %s, process %+v, prog %+v, attach %+v (link %d, prog %d)", describe(ev), ev.Process, ev.Prog, a, li.ID, progID)
	}

	// A pinned link: its last file's close leaves it attached. (The
	// pin's own removal drops its reference later, from an RCU callback
	// on some kernels: not hooked, and not waited for here.) An xdp_set
	// that lo's link refuses (EBUSY) fences the ring: a release by the
	// holder would be before it.
	l, err = link.AttachXDP(link.XDPOptions{Program: prog, Interface: lo, Flags: link.XDPGenericMode})
	if err != nil {
		t.Fatal(err)
	}
	pin := filepath.Join(testutil.BPFFSPath(t), "bpfmon-linkrel-"+strconv.Itoa(os.Getpid()))
	if err := l.Pin(pin); err != nil {
		t.Fatal(err)
	}
	defer os.Remove(pin)
	pinned := hold(l, func() { l.Close() }) // the last file, but the pin holds the link
	_, fence := run(t, nl(t, "ip"), nil, "xdp", strconv.Itoa(lo), "-1")
	r.Wait(t, 10*time.Second, "xdp_set by pid "+strconv.Itoa(fence), func(ev *event.Event) bool {
		return ev.Type == event.XDPSet && ev.Process != nil && ev.Process.PID == uint32(fence)
	})
	for _, ev := range r.Events.All(nil) {
		if ev.Type == event.LinkRelease && ev.Process != nil && (ev.Process.PID == uint32(first) || ev.Process.PID == uint32(pinned)) {
			t.Fatalf("a holder that did not close the last reference: %s", describe(ev))
		}
	}
}

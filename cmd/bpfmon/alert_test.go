package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
	"unsafe"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"golang.org/x/sys/unix"

	"github.com/bpfmon/bpfmon/internal/bpfsys"
	"github.com/bpfmon/bpfmon/internal/features"
	"github.com/bpfmon/bpfmon/internal/inventory"
	"github.com/bpfmon/bpfmon/internal/sensor/lsm"
	"github.com/bpfmon/bpfmon/internal/testprogs/iterwriter"
	"github.com/bpfmon/bpfmon/internal/testutil"
)

// actEnv makes the test binary a child that performs the listed actions
// (see actChild) and exits. Run as a copy at another path, it is a
// process that owns nothing: another executable, the same cgroup.
const actEnv = "BPFMON_E2E_ACTS"

// actChild performs comma-separated actions, each KIND:ARG[:ARG]:
//
//	getfd:ID        open map ID (BPF_MAP_GET_FD_BY_ID)
//	objget:PATH     open a pinned map (BPF_OBJ_GET)
//	update:ID:KEY   write KEY (u32) = 0x99 (u64) in map ID
//	flood:ID:N      N such writes of keys 0..N-1
//	delete:ID:KEY   delete KEY (u32) from map ID
//	mmap:ID         map the first page of map ID, shared and writable
//	progload:ID     load a socket filter that uses map ID
//	progwrite:ID    load and run (BPF_PROG_TEST_RUN) one that writes key 2 = 0x77
//	updatefd:FD:KEY write KEY through fd FD, inherited
//	tamper:ID       update (key and value all zeros) and delete key zero
//	                in map ID with bpf(2), each of which must fail
//	wait            print "waiting", then read a line from stdin
//	seize:PID       attach to process PID with PTRACE_SEIZE (and exit, detaching)
//	procmem:PID     open /proc/PID/mem for writing
//	linkupdate:PIN  put a program of its own behind the pinned cgroup link (BPF_LINK_UPDATE)
//	linkdetach:PIN  detach the pinned link (BPF_LINK_DETACH)
//	progdetach:CG:ID   detach program ID from cgroup CG's inet ingress (BPF_PROG_DETACH)
//	progdetachnofd:CG:0  detach cgroup CG's only inet ingress program, naming none
//	progreplace:CG:ID  put a program of its own in ID's place there (BPF_PROG_ATTACH, BPF_F_REPLACE)
//
// Maps are opened once and kept, as a real client would.
func actChild(acts string) error {
	open := map[string]*ebpf.Map{}
	get := func(id string) (*ebpf.Map, error) {
		if m := open[id]; m != nil {
			return m, nil
		}
		n, err := strconv.ParseUint(id, 10, 32)
		if err != nil {
			return nil, err
		}
		m, err := ebpf.NewMapFromID(ebpf.MapID(n))
		open[id] = m
		return m, err
	}
	for _, act := range strings.Split(acts, ",") {
		f := strings.Split(act, ":")
		var m *ebpf.Map
		var err error
		if f[0] == "wait" {
			fmt.Println("waiting") // for actHolding
			bufio.NewReader(os.Stdin).ReadString('\n')
			continue
		}
		switch f[0] {
		case "seize":
			pid, _ := strconv.Atoi(f[1])
			runtime.LockOSThread()
			if err := unix.PtraceSeize(pid); err != nil {
				return fmt.Errorf("%s: %w", act, err)
			}
			continue
		case "linkupdate", "linkdetach":
			if err := linkOp(f[0], f[1]); err != nil {
				return fmt.Errorf("%s: %w", act, err)
			}
			continue
		case "progdetach", "progreplace", "progdetachnofd":
			if err := progOp(f[0], f[1], f[2]); err != nil {
				return fmt.Errorf("%s: %w", act, err)
			}
			continue
		case "procmem":
			mem, err := os.OpenFile("/proc/"+f[1]+"/mem", os.O_RDWR, 0)
			if err != nil {
				return fmt.Errorf("%s: %w", act, err)
			}
			mem.Close()
			continue
		}
		if f[0] == "updatefd" {
			fd, _ := strconv.Atoi(f[1])
			k, _ := strconv.Atoi(f[2])
			if m, err = ebpf.NewMapFromFD(fd); err == nil {
				err = m.Update(uint32(k), uint64(0x99), 0)
			}
			if err != nil {
				return fmt.Errorf("%s: %w", act, err)
			}
			continue
		}
		if f[0] != "objget" {
			if m, err = get(f[1]); err != nil {
				return fmt.Errorf("%s: %w", act, err)
			}
		}
		switch f[0] {
		case "getfd":
		case "tamper":
			err = tamper(m)
		case "wipe":
			err = wipe(m)
		case "objget":
			_, err = ebpf.LoadPinnedMap(f[1], nil)
		case "update":
			k, _ := strconv.Atoi(f[2])
			err = m.Update(uint32(k), uint64(0x99), 0)
		case "delete":
			k, _ := strconv.Atoi(f[2])
			err = m.Delete(uint32(k))
		case "flood":
			n, _ := strconv.Atoi(f[2])
			for k := 0; k < n && err == nil; k++ {
				err = m.Update(uint32(k%8), uint64(k), 0)
			}
		case "mmap":
			_, err = unix.Mmap(m.FD(), 0, 4096, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
		case "progload":
			_, err = usingProgram(m)
		case "iterrewrite":
			_, err = iterwriter.Rewrite(m)
		case "progwrite":
			var p *ebpf.Program
			if p, err = writingProgram(m); err == nil {
				_, err = p.Run(&ebpf.RunOptions{Data: make([]byte, 64)})
			}
		default:
			err = fmt.Errorf("unknown action")
		}
		if err != nil {
			return fmt.Errorf("%s: %w", act, err)
		}
	}
	return nil
}

// tamper updates and deletes key zero of m through bpf(2) directly (any
// map type and value size), and fails unless both calls fail.
func tamper(m *ebpf.Map) error {
	key := make([]byte, max(m.KeySize(), 1))
	val := make([]byte, 8*max(int(m.ValueSize()), 8)*runtime.NumCPU())
	attr := struct {
		fd         uint32
		_          uint32
		key, value uint64
		flags      uint64
	}{fd: uint32(m.FD()), key: uint64(uintptr(unsafe.Pointer(&key[0]))), value: uint64(uintptr(unsafe.Pointer(&val[0])))}
	_, upd := bpfsys.Call(unix.BPF_MAP_UPDATE_ELEM, unsafe.Pointer(&attr), unsafe.Sizeof(attr))
	_, del := bpfsys.Call(unix.BPF_MAP_DELETE_ELEM, unsafe.Pointer(&attr), unsafe.Sizeof(attr))
	runtime.KeepAlive(key)
	runtime.KeepAlive(val)
	if upd == 0 || del == 0 {
		return fmt.Errorf("map %s (%s): update %v, delete %v: a stranger changed bpfmon's map", m, m.Type(), upd, del)
	}
	return nil
}

// wipe deletes every key of m, as attack kits blind a tool; it is an
// error if there was none.
func wipe(m *ebpf.Map) error {
	var keys [][]byte
	key := make([]byte, m.KeySize())
	for it := m.Iterate(); ; {
		var v []byte
		if m.Type() == ebpf.PerCPUHash || m.Type() == ebpf.LRUCPUHash || m.Type() == ebpf.PerCPUArray {
			var pv [][]byte
			if !it.Next(&key, &pv) {
				break
			}
		} else if !it.Next(&key, &v) {
			break
		}
		keys = append(keys, slices.Clone(key))
	}
	if len(keys) == 0 {
		return fmt.Errorf("map %s has no key to delete", m)
	}
	for _, k := range keys {
		if err := m.Delete(k); err != nil {
			return err
		}
	}
	return nil
}

// usingProgram loads a socket filter that uses m.
func usingProgram(m *ebpf.Map) (*ebpf.Program, error) {
	return ebpf.NewProgram(&ebpf.ProgramSpec{Name: "e2e_uses", Type: ebpf.SocketFilter, License: "GPL", Instructions: asm.Instructions{
		asm.LoadMapPtr(asm.R1, m.FD()), asm.Mov.Imm(asm.R0, 0), asm.Return(),
	}})
}

// writingProgram loads a socket filter that sets key 2 of m (u32 keys, u64
// values) to 0x77 with bpf_map_update_elem.
func writingProgram(m *ebpf.Map) (*ebpf.Program, error) {
	return ebpf.NewProgram(&ebpf.ProgramSpec{Name: "e2e_writes", Type: ebpf.SocketFilter, License: "GPL", Instructions: asm.Instructions{
		asm.StoreImm(asm.R10, -4, 2, asm.Word),
		asm.Mov.Imm(asm.R5, 0x77),
		asm.StoreMem(asm.R10, -16, asm.R5, asm.DWord),
		asm.LoadMapPtr(asm.R1, m.FD()),
		asm.Mov.Reg(asm.R2, asm.R10), asm.Add.Imm(asm.R2, -4),
		asm.Mov.Reg(asm.R3, asm.R10), asm.Add.Imm(asm.R3, -16),
		asm.Mov.Imm(asm.R4, 0),
		asm.FnMapUpdateElem.Call(),
		asm.Mov.Imm(asm.R0, 0), asm.Return(),
	}})
}

// unlimitedAlerts is a policy with the largest rate limit: the tests of
// other packages, run at the same time, take handles on every map on the
// host (scanner, inventory), and their alerts must not use up the burst
// that the alerts a test waits for need.
func unlimitedAlerts(t *testing.T) string {
	path := filepath.Join(t.TempDir(), "unlimited.yaml")
	if err := os.WriteFile(path, []byte("version: 1\nalerts:\n  rate: 100000\n  burst: 100000\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// act runs exe as an action child and returns its pid.
func act(t *testing.T, exe string, acts ...string) int {
	t.Helper()
	cmd := exec.Command(exe, "-test.run=^$")
	cmd.Env = append(os.Environ(), actEnv+"="+strings.Join(acts, ","))
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("%s %v: %v: %s", filepath.Base(exe), acts, err, out)
	}
	return cmd.Process.Pid
}

// actHolding runs exe as act does, with "wait" after acts: the child
// keeps what it opened or loaded (maps, programs, mappings) until the
// test ends, or until the returned function lets it exit and waits for it.
func actHolding(t *testing.T, exe string, acts ...string) (pid int, release func()) {
	t.Helper()
	cmd := exec.Command(exe, "-test.run=^$")
	cmd.Env = append(os.Environ(), actEnv+"="+strings.Join(append(acts, "wait"), ","))
	in, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = cmd.Stdout
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	var said strings.Builder
	for r := bufio.NewScanner(out); ; {
		if !r.Scan() {
			cmd.Wait()
			t.Fatalf("%s %v: exited before holding: %s", filepath.Base(exe), acts, said.String())
		}
		if r.Text() == "waiting" {
			break
		}
		said.WriteString(r.Text() + "\n")
	}
	return cmd.Process.Pid, func() {
		t.Helper()
		io.WriteString(in, "\n")
		if err := cmd.Wait(); err != nil {
			t.Fatalf("%s %v: %v", filepath.Base(exe), acts, err)
		}
	}
}

type alertEvent struct {
	Event  string
	Source string
	Result *int64
	Count  uint64
	Alert  *struct{ Rule, Severity, Reason string }
	Map    *struct{ ID uint32 }
	Prog   *struct{ ID uint32 }
	Proc   *struct{ PID int } `json:"process"`
}

func parseAlerts(t *testing.T, lines []string) []alertEvent {
	t.Helper()
	var evs []alertEvent
	for _, l := range lines {
		var ev alertEvent
		if err := json.Unmarshal([]byte(l), &ev); err != nil {
			t.Fatalf("%q: %v", l, err)
		}
		evs = append(evs, ev)
	}
	return evs
}

func (ev alertEvent) on(id uint32) bool { return ev.Map != nil && ev.Map.ID == id }
func (ev alertEvent) by(pid int) bool   { return ev.Proc != nil && ev.Proc.PID == pid }

func newSpecMap(t *testing.T, spec *ebpf.MapSpec) (*ebpf.Map, uint32) {
	t.Helper()
	m, err := ebpf.NewMap(spec)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	info, _ := m.Info()
	id, _ := info.ID()
	return m, uint32(id)
}

// ownMaps lists the maps bpfmon holds an fd to in two listings 200 ms
// apart: its content scanner holds other maps' fds while it reads them,
// briefly, and one of those mistaken for bpfmon's would not be guarded.
func (w *watcher) ownMaps(t *testing.T) []inventory.Map {
	t.Helper()
	list := func() []inventory.Map {
		maps, _, err := inventory.Collect(inventory.Options{PIDs: []uint32{uint32(w.cmd.Process.Pid)}, SkipPins: true})
		if err != nil {
			t.Fatalf("bpfmon's maps: %v", err)
		}
		return maps
	}
	first := list()
	time.Sleep(200 * time.Millisecond)
	again := map[uint32]bool{}
	for _, m := range list() {
		again[m.ID] = true
	}
	var own []inventory.Map
	for _, m := range first {
		if again[m.ID] {
			own = append(own, m)
		}
	}
	if len(own) == 0 {
		t.Fatal("bpfmon holds no map")
	}
	return own
}

// readmeSeverity is rule's default severity in the rules table of the
// alert rules reference (docs/reference/alerts.md, generated from the
// policy's rules): the alerts bpfmon writes are held to what it promises.
func readmeSeverity(t *testing.T, rule string) string {
	t.Helper()
	b, err := os.ReadFile("../../docs/reference/alerts.md")
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile("(?m)^\\| `" + regexp.QuoteMeta(rule) + "` \\| (low|medium|high|critical) \\|").FindSubmatch(b)
	if m == nil {
		t.Fatalf("rule %s is not in docs/reference/alerts.md's rules table (make docs)", rule)
	}
	return string(m[1])
}

func itoa(id uint32) string { return strconv.FormatUint(uint64(id), 10) }

// TestAlertRules runs every detection rule against a live watch, each
// with a benign control that must not alert. This process creates the
// protected maps before watch starts, so it and every process running its
// executable in its cgroup own them; a copy of the executable at another
// path is the foreigner.
func TestAlertRules(t *testing.T) {
	testutil.RequireRoot(t)
	prot, protID := newSpecMap(t, &ebpf.MapSpec{Name: "alert_prot", Type: ebpf.Hash, KeySize: 4, ValueSize: 8, MaxEntries: 8})
	mm, mmID := newSpecMap(t, &ebpf.MapSpec{Name: "alert_mmap", Type: ebpf.Array, KeySize: 4, ValueSize: 8, MaxEntries: 512, Flags: unix.BPF_F_MMAPABLE})
	_, otherID := newMap(t)
	pin := filepath.Join(testutil.BPFFSPath(t), fmt.Sprintf("bpfmon_alert_%d", os.Getpid()))
	if err := prot.Pin(pin); err != nil {
		t.Fatal(err)
	}
	defer prot.Unpin()
	foreign := testutil.ForeignExecutable(t, "foreign.test")

	w := startWatch(t, "--format", "json", "--policy", unlimitedAlerts(t), "--scan-interval", "300ms", "--protect", "pin:"+pin, "--protect", "name:alert_mmap")
	if !strings.Contains(w.stderr.String(), fmt.Sprintf("id=%d name=alert_prot selector=pin:%s", protID, pin)) {
		t.Errorf("start message does not list the map protected by its pin:\n%s", w.stderr.String())
	}
	// One of bpfmon's own maps, for the self-access rule. Listing them
	// opens them: this process's own handles alert too, rightly.
	own := w.ownMaps(t)
	selfID := own[0].ID
	// The ready file says the scanner's baseline is taken.

	// Benign: the owner writes, maps and uses its maps; so does another
	// process of the owner's executable and cgroup.
	if err := prot.Update(uint32(1), uint64(1), 0); err != nil {
		t.Fatal(err)
	}
	ownerChild := act(t, os.Args[0], "update:"+itoa(protID)+":2", "getfd:"+itoa(mmID), "mmap:"+itoa(mmID))
	ownProg, err := usingProgram(prot)
	if err != nil {
		t.Fatal(err)
	}
	defer ownProg.Close()
	// The foreigner: a handle and a write; a pinned handle; a writable
	// mapping; a program using the map; a handle to bpfmon's map; and a
	// write to a map nobody protects.
	f1 := act(t, foreign, "getfd:"+itoa(protID), "update:"+itoa(protID)+":3")
	f2 := act(t, foreign, "objget:"+pin)
	f3 := act(t, foreign, "getfd:"+itoa(mmID), "mmap:"+itoa(mmID))
	f4 := act(t, foreign, "progload:"+itoa(protID))
	f5 := act(t, foreign, "getfd:"+itoa(selfID))
	f6 := act(t, foreign, "update:"+itoa(otherID)+":4")
	// A store through the owner's own mapping: no hook sees it; the
	// scanner does, and nothing explains it.
	b, err := unix.Mmap(mm.FD(), 0, 4096, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
	if err != nil {
		t.Fatal(err)
	}
	b[8*5] = 0x55
	unix.Munmap(b)
	w.waitScanPasses(t, 2)
	lines := w.stop(t, syscall.SIGINT)
	evs := parseAlerts(t, lines)

	type want struct {
		rule, event string
		pid         int
		mapID       uint32
	}
	wants := []want{
		{"foreign-handle", "map_get_fd_by_id", f1, protID},
		{"foreign-write", "map_update", f1, protID},
		{"foreign-handle", "obj_get", f2, protID},
		{"foreign-handle", "map_get_fd_by_id", f3, mmID},
		{"foreign-mmap", "map_mmap", f3, mmID},
		{"foreign-program", "prog_load", f4, 0},
		{"self-access", "map_get_fd_by_id", f5, selfID},
		{"unexplained-change", "map_changed", 0, mmID},
	}
	for _, wt := range wants {
		found := false
		for _, ev := range evs {
			if ev.Event == wt.event && ev.Alert != nil && ev.Alert.Rule == wt.rule && (wt.pid == 0 || ev.by(wt.pid)) && (wt.mapID == 0 || ev.on(wt.mapID)) {
				found = true
				if sev := readmeSeverity(t, wt.rule); ev.Alert.Severity != sev {
					t.Errorf("%s: severity %q, the alert rules reference says %q", wt.rule, ev.Alert.Severity, sev)
				}
				names := fmt.Sprintf("map %d", wt.mapID)
				if wt.mapID == 0 { // prog_load: the map it uses
					names = fmt.Sprintf("map %d", protID)
				}
				if !strings.Contains(ev.Alert.Reason, names) || (wt.pid != 0 && !strings.Contains(ev.Alert.Reason, fmt.Sprintf("pid %d", wt.pid))) {
					t.Errorf("%s: the reason does not name %s and pid %d: %q", wt.rule, names, wt.pid, ev.Alert.Reason)
				}
			}
		}
		if !found {
			t.Errorf("no %s alert on %s by pid %d on map %d\n%s", wt.rule, wt.event, wt.pid, wt.mapID, strings.Join(lines, "\n"))
		}
	}
	// The benign controls: seen, and not alerted.
	seen := map[string]int{}
	for _, ev := range evs {
		benign := (ev.by(os.Getpid()) && (ev.Alert == nil || ev.Alert.Rule != "self-access")) || ev.by(ownerChild) || ev.by(f6)
		if benign {
			seen[fmt.Sprintf("%s by %d", ev.Event, ev.Proc.PID)]++
			if ev.Alert != nil {
				t.Errorf("benign %s by pid %d alerted: %+v", ev.Event, ev.Proc.PID, *ev.Alert)
			}
		}
		if ev.Alert != nil && ev.Alert.Rule == "foreign-write" && !ev.by(f1) {
			t.Errorf("foreign-write alert for pid %v: %+v", ev.Proc, *ev.Alert)
		}
	}
	for _, s := range []string{
		fmt.Sprintf("map_update by %d", os.Getpid()), fmt.Sprintf("prog_load by %d", os.Getpid()), fmt.Sprintf("map_mmap by %d", os.Getpid()),
		fmt.Sprintf("map_update by %d", ownerChild), fmt.Sprintf("map_mmap by %d", ownerChild), fmt.Sprintf("map_update by %d", f6),
	} {
		if seen[s] == 0 {
			t.Errorf("benign control not seen: %s\n%s", s, strings.Join(lines, "\n"))
		}
	}
	if t.Failed() {
		// Tests of other packages run at the same time: a loss would
		// explain a missing event (and is itself reported).
		events, lost := w.summary(t)
		t.Logf("%d events written, %d lost; stderr:\n%s", events, lost, w.stderr.String())
	}
}

// TestAlertPolicyAndRateLimit: a policy file names an owner by executable
// (its writes do not alert), changes a rule's severity and limits alerts to
// a burst of 3 and 1 per second. A flood of foreign writes is alerted up to
// the limit and the rest counted in alerts_suppressed; a foreign write to
// another map, after the flood, is still alerted: new sources are never
// buried. --alerts-only writes nothing else. bpfmon is stopped right after
// the flood: the count holds only if the last suppression report follows
// the final drain of the ring.
func TestAlertPolicyAndRateLimit(t *testing.T) {
	testutil.RequireRoot(t)
	_, a := newSpecMap(t, &ebpf.MapSpec{Name: "alert_a", Type: ebpf.Hash, KeySize: 4, ValueSize: 8, MaxEntries: 8})
	_, c := newSpecMap(t, &ebpf.MapSpec{Name: "alert_c", Type: ebpf.Hash, KeySize: 4, ValueSize: 8, MaxEntries: 8})
	foreign := testutil.ForeignExecutable(t, "foreign.test")
	trusted := testutil.ForeignExecutable(t, "trusted.test")
	policyFile := filepath.Join(t.TempDir(), "policy.yaml")
	pol := fmt.Sprintf(`version: 1
protect:
  - id: %d
  - id: %d
owners:
  - exe: %s
rules:
  foreign-write: {severity: high}
  foreign-handle: {enabled: false}
alerts:
  rate: 1
  burst: 3
`, a, c, trusted)
	if err := os.WriteFile(policyFile, []byte(pol), 0o644); err != nil {
		t.Fatal(err)
	}
	w := startWatch(t, "--format", "json", "--policy", policyFile, "--alerts-only", "--scan-interval", "0")
	tr := act(t, trusted, "update:"+itoa(a)+":1")
	const flood = 200
	f := act(t, foreign, "flood:"+itoa(a)+":"+strconv.Itoa(flood), "update:"+itoa(c)+":1")
	// Stopped right after the flood: what the ring still holds is drained
	// first, and the last suppression report counts it.
	lines := w.stop(t, syscall.SIGINT)
	evs := parseAlerts(t, lines)
	// Tests running in parallel make alerts of their own (a content
	// scanner reading bpfmon's maps is self-access): only this test's
	// processes and rule are counted.
	var alerted, suppressed, onC int
	for _, ev := range evs {
		switch {
		case ev.Alert == nil && ev.Event != "lost":
			t.Errorf("--alerts-only wrote an event without alert: %+v", ev)
		case ev.Event == "alerts_suppressed" && ev.Alert.Rule == "foreign-write":
			if ev.Alert.Severity != "high" || ev.Source != "alert" || !strings.Contains(ev.Alert.Reason, "rate limit 1/s after a burst of 3") {
				t.Errorf("alerts_suppressed: %+v", *ev.Alert)
			}
			suppressed += int(ev.Count)
		case ev.by(tr):
			t.Errorf("the policy's owner alerted: %+v", *ev.Alert)
		case ev.by(f) && ev.Alert.Rule == "foreign-handle":
			t.Errorf("a disabled rule alerted: %+v", *ev.Alert)
		case ev.Event == "map_update" && ev.by(f) && ev.on(a):
			alerted++
			if ev.Alert.Rule != "foreign-write" || ev.Alert.Severity != "high" {
				t.Errorf("flood alert: %+v", *ev.Alert)
			}
		case ev.Event == "map_update" && ev.by(f) && ev.on(c):
			onC++
		}
	}
	// The burst, plus at most a few refilled at 1/s during the flood.
	if alerted < 3 || alerted > 6 || alerted+suppressed != flood || onC != 1 {
		t.Errorf("flood of %d: %d alerted, %d suppressed; write to the other map alerted %d times (want 1)\n%s",
			flood, alerted, suppressed, onC, strings.Join(lines, "\n"))
	}
}

// TestAlertEventsLost: with a map protected, events lost because the ring
// buffer overflowed are an alert: the write that mattered may be among them.
func TestAlertEventsLost(t *testing.T) {
	testutil.RequireRoot(t)
	_, a := newSpecMap(t, &ebpf.MapSpec{Name: "alert_lost", Type: ebpf.Hash, KeySize: 4, ValueSize: 8, MaxEntries: 8})
	m, _ := newMap(t)
	w := startWatch(t, "--format", "json", "--protect", "id:"+itoa(a), "--alerts-only", "--ring-buffer", "4K", "--scan-interval", "0",
		"--metrics-addr", "127.0.0.1:0")
	for i := 0; i < 20000; i++ {
		m.Update(uint32(i%8), uint64(i), 0)
	}
	// The sensors' losses are in bpfmon_lost_events_total as they are in
	// the output: the lost events written before a scrape are counted in
	// it, and it counts none that are not written soon after. (Others'
	// tests may make more losses meanwhile: hence bounds, not equality.)
	addr := w.metricsAddr(t)
	deadline := time.Now().Add(testutil.Timeout(10 * time.Second))
	for {
		before := lostInLines(t, w.lines(t))
		scraped := scrapeSensorLost(t, addr)
		time.Sleep(testutil.Timeout(300 * time.Millisecond)) // the output's flush
		after := lostInLines(t, w.lines(t))
		if before > 0 && before <= scraped && scraped <= after {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("bpfmon_lost_events_total of the sensors: %v; lost events in the output: %v before the scrape, %v after", scraped, before, after)
		}
	}
	lines := w.stop(t, syscall.SIGINT)
	var lostAlert bool
	for _, ev := range parseAlerts(t, lines) {
		if ev.Event == "lost" && ev.Count > 0 && ev.Alert != nil && ev.Alert.Rule == "events-lost" && ev.Alert.Severity == "medium" {
			lostAlert = true
		}
	}
	if !lostAlert {
		t.Errorf("no events-lost alert:\n%s", strings.Join(lines, "\n"))
	}
}

// lostInLines sums the counts of the sensors' lost events (every source
// but the output) in a watch's output.
func lostInLines(t *testing.T, lines []string) float64 {
	t.Helper()
	var n float64
	for _, ev := range parseAlerts(t, lines) {
		if ev.Event == "lost" && ev.Source != "output" {
			n += float64(ev.Count)
		}
	}
	return n
}

// scrapeSensorLost reads bpfmon_lost_events_total from a watch's /metrics,
// summed over the sensors' sources (every source but the output).
func scrapeSensorLost(t *testing.T, addr string) float64 {
	t.Helper()
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var n float64
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		l := sc.Text()
		if !strings.HasPrefix(l, "bpfmon_lost_events_total{") || strings.Contains(l, `source="output"`) {
			continue
		}
		f := strings.Fields(l)
		v, err := strconv.ParseFloat(f[len(f)-1], 64)
		if err != nil {
			t.Fatalf("/metrics: %q: %v", l, err)
		}
		n += v
	}
	return n
}

// TestWatchEnforce: with --enforce on a kernel with BPF LSM, a foreign
// process is refused a writable fd to a protected map (EPERM), and its
// update through an fd it inherited fails with EPERM too; each attempt is
// reported with its result and alert, each refusal as access_denied. The
// owner's update still works, without alert.
func TestWatchEnforce(t *testing.T) {
	testutil.RequireRoot(t)
	m, id := newSpecMap(t, &ebpf.MapSpec{Name: "enforce_prot", Type: ebpf.Hash, KeySize: 4, ValueSize: 8, MaxEntries: 8})
	lsmErr := features.BPFLSM()
	if enfErr := lsm.Available(); enfErr != nil && !testutil.Declared(testutil.BPFLSM) && !testutil.Declared(testutil.FmodRet) {
		// Where the kernel cannot enforce, --enforce refuses to start,
		// exit 3, and says why each build cannot run and where to look;
		// it never watches without the enforcement asked for.
		ready := filepath.Join(t.TempDir(), "ready")
		code, out := runBpfmon(t, "watch", "--enforce", "--protect", "id:"+itoa(id), "--ready-file", ready)
		want := "--enforce: enforcement is not available: " + enfErr.Error() + " (see bpfmon features)"
		if _, err := os.Stat(ready); code != 3 || !strings.Contains(out, want) || err == nil {
			t.Errorf("--enforce without BPF LSM: exit %d (want 3), ready file written: %v; output lacks %q:\n%s", code, err == nil, want, out)
		}
		return
	}
	foreign := testutil.ForeignExecutable(t, "foreign.test")
	w := startWatch(t, "--format", "json", "--enforce", "--protect", "id:"+itoa(id), "--scan-interval", "0")
	// The start log names the build, and why not bpf-lsm where it is
	// fmod_ret (the kernel's LSM list).
	build, why := "build=bpf-lsm", ""
	if lsmErr != nil {
		build, why = "build=fmod_ret", "not_chosen=\"bpf-lsm: "
	}
	if log := w.stderr.String(); !strings.Contains(log, "enforcing") || !strings.Contains(log, build) || !strings.Contains(log, why) {
		t.Errorf("no enforcement message naming %s %s at start:\n%s", build, why, log)
	}
	own := w.ownMaps(t)
	run := func(acts string, extra ...*os.File) (int, string, error) {
		cmd := exec.Command(foreign, "-test.run=^$")
		cmd.Env = append(os.Environ(), actEnv+"="+acts)
		cmd.ExtraFiles = extra
		out, err := cmd.CombinedOutput()
		return cmd.Process.Pid, string(out), err
	}
	byID, out, err := run("getfd:" + itoa(id))
	if err == nil || !strings.Contains(out, "operation not permitted") {
		t.Errorf("a foreign writable fd: %v %s, want EPERM", err, out)
	}
	// bpfmon's own maps are protected as well as frozen.
	for _, om := range own {
		if _, out, err := run("getfd:" + itoa(om.ID)); err == nil || !strings.Contains(out, "operation not permitted") {
			t.Errorf("a foreign writable fd to bpfmon's map %d %q: %v %s, want EPERM", om.ID, om.Name, err, out)
		}
	}
	// An fd passed down at fork, kept across exec: another executable, so
	// not an owner, holding a writable fd.
	inherited, out, err := run("updatefd:3:5", testutil.DupFile(t, m.FD(), "map"))
	if err == nil || !strings.Contains(out, "operation not permitted") {
		t.Errorf("a foreign update through an inherited fd: %v %s, want EPERM", err, out)
	}
	if err := m.Update(uint32(1), uint64(1), 0); err != nil {
		t.Errorf("the owner's update: %v", err)
	}
	lines := w.stop(t, syscall.SIGINT)
	eperm := -int64(unix.EPERM)
	for _, l := range lines {
		if strings.Contains(l, `"access_denied"`) || strings.Contains(l, `"result":-1,`) {
			t.Log(l) // what an operator sees
		}
	}
	var refusedFD, deniedFD, refusedUpdate, deniedUpdate, owner bool
	for _, ev := range parseAlerts(t, lines) {
		failed := ev.Result != nil && *ev.Result == eperm
		switch {
		case ev.Event == "map_get_fd_by_id" && ev.by(byID):
			refusedFD = refusedFD || failed
		case ev.Event == "map_update" && ev.by(inherited) && ev.on(id):
			refusedUpdate = refusedUpdate || (failed && ev.Alert != nil && ev.Alert.Rule == "foreign-write")
		case ev.Event == "access_denied" && ev.Source == "lsm" && ev.on(id) && failed && ev.Alert != nil && ev.Alert.Rule == "write-denied":
			deniedFD = deniedFD || ev.by(byID)
			deniedUpdate = deniedUpdate || ev.by(inherited)
		case ev.Event == "map_update" && ev.by(os.Getpid()) && ev.on(id):
			owner = ev.Alert == nil && ev.Result != nil && *ev.Result == 0
		}
	}
	if !refusedFD || !deniedFD || !refusedUpdate || !deniedUpdate || !owner {
		t.Errorf("refused fd reported: %v, its refusal: %v; refused update reported with alert: %v, its refusal: %v; owner's update without alert: %v\n%s",
			refusedFD, deniedFD, refusedUpdate, deniedUpdate, owner, strings.Join(lines, "\n"))
	}
}

// TestAlertProgramWrite: where a kernel-side hook names the program that
// wrote, a write to a protected map by a program a foreigner loaded is a
// foreign-write alert; the same write by the owner's program is not.
func TestAlertProgramWrite(t *testing.T) {
	testutil.RequireRoot(t)
	testutil.NeedKernelHook(t, features.Kprobes(), features.Fentry())
	m, id := newSpecMap(t, &ebpf.MapSpec{Name: "alert_progw", Type: ebpf.Hash, KeySize: 4, ValueSize: 8, MaxEntries: 8})
	foreign := testutil.ForeignExecutable(t, "foreign.test")
	w := startWatch(t, "--format", "json", "--policy", unlimitedAlerts(t), "--protect", "id:"+itoa(id), "--scan-interval", "0")
	own, err := writingProgram(m)
	if err != nil {
		t.Fatal(err)
	}
	defer own.Close()
	if _, err := own.Run(&ebpf.RunOptions{Data: make([]byte, 64)}); err != nil {
		t.Fatal(err)
	}
	info, _ := own.Info()
	ownID, _ := info.ID()
	f := act(t, foreign, "progwrite:"+itoa(id))
	lines := w.stop(t, syscall.SIGINT)
	var ownWrite, foreignWrite, foreignLoad bool
	for _, ev := range parseAlerts(t, lines) {
		switch {
		case ev.Event == "map_update" && ev.Source == "kernel" && ev.on(id) && ev.Prog != nil && ev.Prog.ID == uint32(ownID):
			ownWrite = true // its alerts are checked below
			if ev.Alert != nil {
				t.Errorf("the owner's program's write alerted: %+v", *ev.Alert)
			}
		case ev.Event == "map_update" && ev.Source == "kernel" && ev.on(id) && ev.by(f):
			foreignWrite = foreignWrite || (ev.Alert != nil && ev.Alert.Rule == "foreign-write" && strings.Contains(ev.Alert.Reason, "e2e_writes"))
		case ev.Event == "prog_load" && ev.by(f):
			foreignLoad = foreignLoad || (ev.Alert != nil && ev.Alert.Rule == "foreign-program")
		}
	}
	if !ownWrite || !foreignWrite || !foreignLoad {
		t.Errorf("owner's program's write seen: %v; foreign program's write alerted: %v; its load alerted: %v\n%s", ownWrite, foreignWrite, foreignLoad, strings.Join(lines, "\n"))
	}
}

// TestSelfMapsRefuseStrangers: every map bpfmon holds refuses a stranger's
// update and delete through bpf(2) (the sensors freeze theirs; the ring
// buffer takes no update), and each attempt, with its handle, is reported
// with its failed result as a self-access alert.
func TestSelfMapsRefuseStrangers(t *testing.T) {
	testutil.RequireRoot(t)
	foreign := testutil.ForeignExecutable(t, "foreign.test")
	w := startWatch(t, "--format", "json", "--policy", unlimitedAlerts(t), "--scan-interval", "0")
	own := w.ownMaps(t)
	var acts []string
	for _, m := range own {
		acts = append(acts, "tamper:"+itoa(m.ID))
	}
	stranger := act(t, foreign, acts...)
	lines := w.stop(t, syscall.SIGINT)
	type seen struct{ handle, update, delete bool }
	got := map[uint32]*seen{}
	for _, m := range own {
		got[m.ID] = &seen{}
	}
	for _, ev := range parseAlerts(t, lines) {
		if !ev.by(stranger) || ev.Map == nil || got[ev.Map.ID] == nil {
			continue
		}
		alerted := ev.Alert != nil && ev.Alert.Rule == "self-access" && ev.Alert.Severity == readmeSeverity(t, "self-access")
		failed := ev.Result != nil && *ev.Result < 0
		g := got[ev.Map.ID]
		switch ev.Event {
		case "map_get_fd_by_id":
			g.handle = alerted
		case "map_update":
			g.update = alerted && failed
		case "map_delete":
			g.delete = alerted && failed
		}
	}
	for _, m := range own {
		if g := got[m.ID]; !g.handle || !g.update || !g.delete {
			t.Errorf("bpfmon's map %d %q (%s): handle alerted %v, failed update alerted %v, failed delete alerted %v", m.ID, m.Name, m.Type, g.handle, g.update, g.delete)
		}
	}
	if t.Failed() {
		t.Logf("output:\n%s", strings.Join(lines, "\n"))
	}
}

package main

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"golang.org/x/sys/unix"

	"github.com/bpfmon/bpfmon/internal/inventory"
	"github.com/bpfmon/bpfmon/internal/testutil"
)

// countingProgram loads a socket filter that counts in key 0 of m (u32
// keys, u64 values) the way most BPF programs keep counters: an atomic add
// through the pointer bpf_map_lookup_elem returns, which no hook reports.
func countingProgram(t *testing.T, m *ebpf.Map) *ebpf.Program {
	t.Helper()
	p, err := ebpf.NewProgram(&ebpf.ProgramSpec{Name: "e2e_counts", Type: ebpf.SocketFilter, License: "GPL", Instructions: asm.Instructions{
		asm.StoreImm(asm.R10, -4, 0, asm.Word),
		asm.LoadMapPtr(asm.R1, m.FD()),
		asm.Mov.Reg(asm.R2, asm.R10), asm.Add.Imm(asm.R2, -4),
		asm.FnMapLookupElem.Call(),
		asm.JEq.Imm(asm.R0, 0, "out"),
		asm.Mov.Imm(asm.R1, 1),
		asm.StoreXAdd(asm.R0, asm.R1, asm.DWord),
		asm.Mov.Imm(asm.R0, 0).WithSymbol("out"),
		asm.Return(),
	}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	return p
}

func count(t *testing.T, p *ebpf.Program, n int) {
	t.Helper()
	for range n {
		if _, err := p.Run(&ebpf.RunOptions{Data: make([]byte, 64)}); err != nil {
			t.Fatal(err)
		}
	}
}

// changes are the map_changed events on map id, by alert rule ("" for
// none).
func changes(t *testing.T, lines []string, id uint32) map[string]int {
	t.Helper()
	got := map[string]int{}
	for _, ev := range parseAlerts(t, lines) {
		if ev.Event != "map_changed" || !ev.on(id) {
			continue
		}
		rule := ""
		if ev.Alert != nil {
			rule = ev.Alert.Rule
		}
		got[rule]++
	}
	return got
}

// TestOwnerCountersNoAlarm: the owner's program counting in its
// protected map through a lookup pointer is map_changed without an alert
// (the benign control), pass after pass; once a stranger loads a program
// that uses the map, the same counting is unexplained-change; on a second
// map, a stranger's writable mapping makes it one too.
func TestOwnerCountersNoAlarm(t *testing.T) {
	testutil.RequireRoot(t)
	m, id := newSpecMap(t, &ebpf.MapSpec{Name: "own_counts", Type: ebpf.Array, KeySize: 4, ValueSize: 8, MaxEntries: 4})
	mm, mmID := newSpecMap(t, &ebpf.MapSpec{Name: "own_counts_mm", Type: ebpf.Array, KeySize: 4, ValueSize: 8, MaxEntries: 4, Flags: unix.BPF_F_MMAPABLE})
	prog, mmProg := countingProgram(t, m), countingProgram(t, mm)
	foreign := testutil.ForeignExecutable(t, "foreign.test")
	w := startWatch(t, "--format", "json", "--policy", unlimitedAlerts(t), "--scan-interval", "300ms",
		"--protect", "id:"+itoa(id), "--protect", "id:"+itoa(mmID), "--map-id", itoa(id), "--map-id", itoa(mmID))

	// The owner counts, over several passes: each round is one change
	// of key 0 in each map.
	var before []string
	for i := range 3 {
		count(t, prog, 5)
		count(t, mmProg, 5)
		w.waitOutput(t, "the owner's counting found", func(lines []string) bool {
			n, nMM := changes(t, lines, id), changes(t, lines, mmID)
			before = lines
			return n[""]+n["unexplained-change"] > i && nMM[""]+nMM["unexplained-change"] > i
		})
	}
	own, ownMM := changes(t, before, id), changes(t, before, mmID)
	if own[""] != 3 || len(own) != 1 || ownMM[""] != 3 || len(ownMM) != 1 {
		t.Fatalf("the owner's counting: map_changed by alert rule %v and %v, want 3 each, none alerted:\n%s", own, ownMM, strings.Join(before, "\n"))
	}

	// A stranger's program that uses the first map, kept loaded: one
	// that is freed before the scanner reads the map again cannot have
	// made the next change, and once a refresh no longer lists it the
	// owner's program explains that change (how the test flaked on a
	// loaded machine); a stranger's writable mapping of the second.
	actHolding(t, foreign, "progload:"+itoa(id))
	act(t, foreign, "mmap:"+itoa(mmID))
	w.waitScanPasses(t, 1)
	count(t, prog, 5)
	count(t, mmProg, 5)
	w.waitOutput(t, "the counting after the stranger's program and mapping", func(lines []string) bool {
		n, nMM := changes(t, lines, id), changes(t, lines, mmID)
		return n[""]+n["unexplained-change"] > 3 && nMM[""]+nMM["unexplained-change"] > 3
	})
	lines := w.stop(t, syscall.SIGINT)
	after, afterMM := changes(t, lines[len(before):], id), changes(t, lines[len(before):], mmID)
	if after["unexplained-change"] != 1 || len(after) != 1 || afterMM["unexplained-change"] != 1 || len(afterMM) != 1 {
		t.Errorf("after the stranger's program and mapping: map_changed by alert rule %v and %v, want one unexplained-change each:\n%s",
			after, afterMM, strings.Join(lines[len(before):], "\n"))
	}
}

// TestImmutableMap: a map the policy marks immutable alerts on any
// change: the owner's bpf(2) update, and the owner's program counting.
func TestImmutableMap(t *testing.T) {
	testutil.RequireRoot(t)
	m, id := newSpecMap(t, &ebpf.MapSpec{Name: "immutable_cfg", Type: ebpf.Array, KeySize: 4, ValueSize: 8, MaxEntries: 4})
	ctl, ctlID := newSpecMap(t, &ebpf.MapSpec{Name: "mutable_cfg", Type: ebpf.Array, KeySize: 4, ValueSize: 8, MaxEntries: 4})
	prog, ctlProg := countingProgram(t, m), countingProgram(t, ctl)
	pol := filepath.Join(t.TempDir(), "policy.yaml")
	if err := os.WriteFile(pol, []byte("version: 1\nprotect:\n  - id: "+itoa(id)+"\n    immutable: true\n  - id: "+itoa(ctlID)+"\nalerts: {rate: 100000, burst: 100000}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	w := startWatch(t, "--format", "json", "--policy", pol, "--scan-interval", "300ms", "--map-id", itoa(id), "--map-id", itoa(ctlID))
	if err := m.Update(uint32(1), uint64(7), 0); err != nil {
		t.Fatal(err)
	}
	if err := ctl.Update(uint32(1), uint64(7), 0); err != nil {
		t.Fatal(err)
	}
	count(t, prog, 3)
	count(t, ctlProg, 3)
	w.waitScanPasses(t, 2)
	lines := w.stop(t, syscall.SIGINT)
	rules := map[string]map[string]int{}
	for _, ev := range parseAlerts(t, lines) {
		if ev.Map == nil || (ev.Event != "map_update" && ev.Event != "map_changed") {
			continue
		}
		k := ev.Event + "@" + itoa(ev.Map.ID)
		if rules[k] == nil {
			rules[k] = map[string]int{}
		}
		rule := ""
		if ev.Alert != nil {
			rule = ev.Alert.Rule
			if ev.Alert.Severity != readmeSeverity(t, rule) {
				t.Errorf("%s: severity %s, want the alert rules reference's %s", rule, ev.Alert.Severity, readmeSeverity(t, rule))
			}
		}
		rules[k][rule]++
	}
	want := map[string]map[string]int{
		"map_update@" + itoa(id):     {"immutable-change": 1},
		"map_changed@" + itoa(id):    {"immutable-change": 1},
		"map_update@" + itoa(ctlID):  {"": 1},
		"map_changed@" + itoa(ctlID): {"": 1},
	}
	for k, w := range want {
		for r, n := range w {
			if rules[k][r] != n || len(rules[k]) != 1 {
				t.Errorf("%s: by alert rule %v, want %v", k, rules[k], w)
			}
		}
	}
	if t.Failed() {
		t.Logf("output:\n%s", strings.Join(lines, "\n"))
	}
}

var protectedRE = regexp.MustCompile(`msg="alerts: protected map" id=(\d+)`)

// TestBpftraceCountsNoAlarm: a real BPF tool as the owner. bpftrace counts
// execs per uid in a hash through a lookup pointer, in its own protected
// map; while a workload execs, bpfmon raises no alert, pass after pass.
// A stranger deleting the map's keys then is a foreign-write: the map
// was protected all along. Needs bpftrace (.ci/run installs it); the VMs
// carry none, so it runs on the host.
func TestBpftraceCountsNoAlarm(t *testing.T) {
	testutil.RequireRoot(t)
	if testutil.InVM() {
		t.Skip("the kernel test matrix's VMs carry no bpftrace; the host's run (CI) runs this test")
	}
	bt, err := exec.LookPath("bpftrace")
	if err != nil {
		testutil.SkipOrFail(t, "bpftrace not installed (apt-get install bpftrace)")
	}
	testutil.RequireTracefs(t)
	cmd := exec.Command(bt, "-e", `tracepoint:syscalls:sys_enter_execve { @execs[uid] = count(); }`)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	attached := make(chan error, 1)
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			if strings.HasPrefix(sc.Text(), "Attaching") {
				attached <- nil
				io.Copy(io.Discard, out)
				return
			}
		}
		attached <- fmt.Errorf("bpftrace ended without attaching: %s", stderr.String())
	}()
	select {
	case err := <-attached:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(testutil.Timeout(30 * time.Second)):
		t.Fatalf("bpftrace did not attach within 30s: %s", stderr.String())
	}
	// bpftrace prints "Attaching" before the program is attached; the
	// map exists once it is loaded, which the inventory at start shows.
	// The output holds the events on bpftrace's maps alone (the host's
	// others would drown them), all of them, not only alerts: the
	// scanner's finds in them are what shows it read them.
	// bpftrace says "Attaching" before it loads: its maps are those it
	// holds once their number stops changing.
	var held []inventory.Map
	for deadline := time.Now().Add(testutil.Timeout(30 * time.Second)); ; {
		now, _, err := inventory.Collect(inventory.Options{PIDs: []uint32{uint32(cmd.Process.Pid)}, SkipPins: true})
		if err != nil {
			t.Fatal(err)
		}
		if len(now) > 0 && len(now) == len(held) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("bpftrace holds %d maps, then %d, after 30 s", len(held), len(now))
		}
		held = now
		time.Sleep(300 * time.Millisecond)
	}
	args := []string{"--format", "json", "--policy", unlimitedAlerts(t), "--scan-interval", "300ms", "--protect", "program:sys_enter_execve"}
	for _, hm := range held {
		args = append(args, "--map-id", itoa(hm.ID))
	}
	w := startWatch(t, args...)
	m := protectedRE.FindAllStringSubmatch(w.stderr.String(), -1)
	if len(m) == 0 {
		t.Fatalf("bpftrace's maps are not protected: %s", w.stderr.String())
	}
	for _, pm := range m {
		if !slices.ContainsFunc(held, func(hm inventory.Map) bool { return itoa(hm.ID) == pm[1] }) {
			t.Fatalf("protected map %s is not one bpftrace held before the watch", pm[1])
		}
	}
	for range 3 {
		for range 20 {
			if err := exec.Command("/bin/true").Run(); err != nil {
				t.Fatal(err)
			}
		}
		w.waitScanPasses(t, 2)
	}
	foreign := testutil.ForeignExecutable(t, "foreign.test")
	stranger := act(t, foreign, "wipe:"+m[0][1])
	w.waitOutput(t, "the stranger's update alerted", func(lines []string) bool {
		return slices.ContainsFunc(parseAlerts(t, lines), func(ev alertEvent) bool { return ev.by(stranger) && ev.Alert != nil })
	})
	lines := w.stop(t, syscall.SIGINT)
	var foreignWrite bool
	counted := 0
	for _, ev := range parseAlerts(t, lines) {
		switch {
		case ev.by(stranger) && ev.Alert != nil && ev.Alert.Rule == "foreign-write":
			foreignWrite = true
		case ev.by(stranger):
		case ev.Alert != nil && ev.Alert.Rule == "unexplained-change":
			t.Errorf("bpftrace's own counting alerted: %+v", *ev.Alert)
		case ev.Event == "map_changed" && ev.Source == "scan" && itoa(ev.Map.ID) == m[0][1]:
			counted++ // bpftrace's counting, as the scanner read it
		}
	}
	// Positive evidence that the passes read the map: its counts changed
	// in each of the three rounds of execs.
	t.Logf("the scanner reported %d changes of bpftrace's counts", counted)
	if counted < 3 {
		t.Errorf("the scanner reported %d changes of bpftrace's counts in map %s over three rounds of execs, want 3 or more:\n%s", counted, m[0][1], strings.Join(lines, "\n"))
	}
	if !foreignWrite {
		t.Errorf("the stranger's update of bpftrace's map %s was not a foreign-write:\n%s", m[0][1], strings.Join(lines, "\n"))
	}
}

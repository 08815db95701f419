package main

import (
	"bufio"
	"debug/elf"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/bpfmon/bpfmon/internal/cgroups"
	"github.com/bpfmon/bpfmon/internal/testutil"
)

// victimProc is a running testdata/victim.c: the owner of the map it
// created, which writes it when told.
type victimProc struct {
	cmd *exec.Cmd
	in  io.WriteCloser
	out *bufio.Reader
	id  uint32
}

func startVictim(t *testing.T, bin, name string) *victimProc {
	t.Helper()
	v := &victimProc{cmd: exec.Command(bin, "create", name)}
	var err error
	if v.in, err = v.cmd.StdinPipe(); err != nil {
		t.Fatal(err)
	}
	stdout, err := v.cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	v.cmd.Stderr = os.Stderr
	if err := v.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { v.in.Close(); v.cmd.Process.Kill(); v.cmd.Wait() })
	v.out = bufio.NewReader(stdout)
	line, err := v.out.ReadString('\n')
	if err != nil {
		t.Fatalf("victim: %v", err)
	}
	id, err := strconv.ParseUint(strings.TrimSpace(line), 10, 32)
	if err != nil {
		t.Fatalf("victim printed %q", line)
	}
	v.id = uint32(id)
	return v
}

// update has the victim write key k, and waits for it.
func (v *victimProc) update(t *testing.T, k int) {
	t.Helper()
	fmt.Fprintf(v.in, "update %d\n", k)
	if line, err := v.out.ReadString('\n'); err != nil || line != "ok\n" {
		t.Fatalf("victim update %d: %q %v", k, line, err)
	}
}

// interpreter is the dynamic loader named in bin's PT_INTERP.
func interpreter(t *testing.T, bin string) string {
	t.Helper()
	f, err := elf.Open(bin)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			b, err := io.ReadAll(p.Open())
			if err != nil {
				t.Fatal(err)
			}
			return strings.TrimRight(string(b), "\x00")
		}
	}
	t.Fatalf("%s has no PT_INTERP: not dynamically linked", bin)
	return ""
}

// runChild runs cmd and fails the test on an error; it returns the pid.
func runChild(t *testing.T, cmd *exec.Cmd) int {
	t.Helper()
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("%v: %v: %s", cmd.Args, err, out)
	}
	return cmd.Process.Pid
}

// TestOwnerImpersonation: the owner's own executable, in its cgroup, is
// not the owner when it was started with LD_PRELOAD, through the loader
// named explicitly, by a process that joined the cgroup from another, or
// once another process attached to it with ptrace or opened its
// /proc/PID/mem for writing; each is alerted when it happens
// (owner-impersonation), and the impersonator's handles and writes are
// foreign. Beside each, the benign control: the owner's writes, another
// run of its executable started normally.
func TestOwnerImpersonation(t *testing.T) {
	testutil.RequireRoot(t)
	if testutil.InVM() {
		t.Skip("the kernel test matrix's VMs carry no C library nor dynamic loader, which LD_PRELOAD needs; the host's run (CI) runs this test, and TestLineage (internal/sensor/lineage) the sensor on every kernel")
	}
	victim := testutil.CC(t, "testdata/dynamic/victim.c")
	evil := testutil.CC(t, "testdata/dynamic/evil.c", "-shared", "-fPIC")
	ld := interpreter(t, victim)
	cg := cgroups.NewResolver()
	if cg.Root() == "" {
		testutil.SkipOrFail(t, "no cgroup2 mount: the cgroup join cannot be tried")
	}
	ownCgroup, err := cgroups.ProcessCgroup(uint32(os.Getpid()))
	if err != nil {
		t.Fatal(err)
	}
	// The intruder: a shell in another cgroup, put there before bpfmon
	// starts (so nothing marks it yet), which will move itself into the
	// owner's cgroup and run the owner's binary there.
	other := filepath.Join(cg.Root(), fmt.Sprintf("bpfmon-imp-%d", os.Getpid()))
	if err := os.Mkdir(other, 0o755); err != nil {
		t.Fatal(err)
	}
	defer os.Remove(other)
	intruder := exec.Command("sh", "-c", `read id; echo $$ > "$1"; exec "$2" update "$id" 5`, "sh",
		filepath.Join(cg.Root(), ownCgroup, "cgroup.procs"), victim)
	intruderIn, err := intruder.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	var intruderOut strings.Builder
	intruder.Stdout, intruder.Stderr = &intruderOut, &intruderOut
	if err := intruder.Start(); err != nil {
		t.Fatal(err)
	}
	defer intruder.Process.Kill()
	if err := os.WriteFile(filepath.Join(other, "cgroup.procs"), []byte(strconv.Itoa(intruder.Process.Pid)), 0); err != nil {
		t.Fatalf("moving the intruder into %s: %v", other, err)
	}

	w := startWatch(t, "--format", "json", "--policy", unlimitedAlerts(t), "--scan-interval", "0",
		"--protect", "name:imp_victim", "--protect", "name:imp_victim2")
	if !sensorStarted(w.stderr.String(), "lineage") {
		t.Fatalf("the lineage sensor did not start:\n%s", w.stderr.String())
	}
	owner := startVictim(t, victim, "imp_victim")
	id := itoa(owner.id)

	// Benign: the owner writes; another run of its executable, started
	// normally in its cgroup, writes.
	owner.update(t, 1)
	normal := runChild(t, exec.Command(victim, "update", id, "2"))
	// LD_PRELOAD: the same executable with injected code, which deletes
	// key 1 before main.
	preload := exec.Command(victim, "update", id, "3")
	preload.Env = append(os.Environ(), "LD_PRELOAD="+evil, "EVIL_MAP_ID="+id)
	preloaded := runChild(t, preload)
	// The loader named explicitly: its executable is the loader's.
	viaLoader := runChild(t, exec.Command(ld, victim, "update", id, "4"))
	// The intruder joins the owner's cgroup and runs the owner's binary.
	fmt.Fprintln(intruderIn, id)
	if err := intruder.Wait(); err != nil {
		t.Fatalf("intruder: %v: %s", err, intruderOut.String())
	}
	joined := intruder.Process.Pid
	// ptrace: attached to, the owner is no owner any more.
	owner.update(t, 6)
	tracer := act(t, os.Args[0], "seize:"+strconv.Itoa(owner.cmd.Process.Pid))
	owner.update(t, 7)
	// /proc/PID/mem opened for writing, on a second owner.
	owner2 := startVictim(t, victim, "imp_victim2")
	owner2.update(t, 1)
	memWriter := act(t, os.Args[0], "procmem:"+strconv.Itoa(owner2.cmd.Process.Pid))
	owner2.update(t, 2)
	// A marked process's child: a shell started with LD_PRELOAD drops
	// the variable and runs the owner's binary, which only the kernel's
	// mark at the fork tells (the exec has no loader variable).
	marked := exec.Command("sh", "-c", `unset LD_PRELOAD; "$0" update "$1" 8 & echo $!; wait $!`, victim, id)
	marked.Env = append(os.Environ(), "LD_PRELOAD="+evil)
	forkOut, err := marked.CombinedOutput()
	if err != nil {
		t.Fatalf("the marked shell: %v: %s", err, forkOut)
	}
	forkedChild, err := strconv.Atoi(strings.TrimSpace(string(forkOut)))
	if err != nil {
		t.Fatalf("the marked shell printed %q", forkOut)
	}

	type want struct {
		what, event string
		pid         int
		key         string // map_update: the key written (hex)
		rule        string // "" for none
	}
	wants := []want{
		{"the owner's write", "map_update", owner.cmd.Process.Pid, "01000000", ""},
		{"another run of the owner's binary, started normally", "map_update", normal, "02000000", ""},
		{"the LD_PRELOAD run, at exec", "lineage", preloaded, "", "owner-impersonation"},
		{"the LD_PRELOAD run's handle", "map_get_fd_by_id", preloaded, "", "foreign-handle"},
		{"the injected code's delete", "map_delete", preloaded, "", "foreign-write"},
		{"the LD_PRELOAD run's write", "map_update", preloaded, "03000000", "foreign-write"},
		{"the run through the loader named explicitly", "map_update", viaLoader, "04000000", "foreign-write"},
		{"the intruder, at the exec of the owner's binary after joining", "lineage", joined, "", "owner-impersonation"},
		{"the intruder's write", "map_update", joined, "05000000", "foreign-write"},
		{"the owner's write before ptrace", "map_update", owner.cmd.Process.Pid, "06000000", ""},
		{"the traced owner's write", "map_update", owner.cmd.Process.Pid, "07000000", "foreign-write"},
		{"the second owner's write", "map_update", owner2.cmd.Process.Pid, "01000000", ""},
		{"the second owner's write after /proc/PID/mem", "map_update", owner2.cmd.Process.Pid, "02000000", "foreign-write"},
		{"the marked shell's child, at the exec of the owner's binary", "lineage", forkedChild, "", "owner-impersonation"},
		{"the marked shell's child's write", "map_update", forkedChild, "08000000", "foreign-write"},
	}
	lineageAlert := func(ev stateEvent, kind string, actor, target int) bool {
		return ev.Event == "lineage" && ev.Alert != nil && ev.Alert.Rule == "owner-impersonation" &&
			ev.by(actor) && strings.Contains(ev.raw, `"kind":"`+kind+`"`) && strings.Contains(ev.raw, fmt.Sprintf(`"target":{"pid":%d,`, target))
	}
	var evs []stateEvent
	w.waitOutput(t, "the marked shell's child's write", func(lines []string) bool {
		evs = parseStateEvents(t, lines)
		for i := range evs {
			evs[i].raw = lines[i]
		}
		for _, ev := range evs {
			if ev.Event == "map_update" && ev.by(forkedChild) && strings.Contains(ev.raw, `"key":"08000000"`) {
				return true
			}
		}
		return false
	})
	for _, wt := range wants {
		found := false
		for _, ev := range evs {
			if ev.Event != wt.event || !ev.by(wt.pid) || (wt.key != "" && !strings.Contains(ev.raw, `"key":"`+wt.key+`"`)) ||
				(wt.event == "lineage" && !strings.Contains(ev.raw, `"kind":"loader_env"`) && !strings.Contains(ev.raw, `"kind":"exec"`)) {
				continue
			}
			found = true
			switch {
			case wt.rule == "" && ev.Alert != nil:
				t.Errorf("%s: alert %+v", wt.what, ev.Alert)
			case wt.rule != "" && (ev.Alert == nil || ev.Alert.Rule != wt.rule):
				t.Errorf("%s: alert %+v, want %s", wt.what, ev.Alert, wt.rule)
			}
			break
		}
		if !found {
			t.Errorf("%s: no %s event by pid %d", wt.what, wt.event, wt.pid)
		}
	}
	var traced, memOpened bool
	for _, ev := range evs {
		traced = traced || lineageAlert(ev, "ptrace_attach", tracer, owner.cmd.Process.Pid)
		memOpened = memOpened || lineageAlert(ev, "proc_mem_open", memWriter, owner2.cmd.Process.Pid)
		if ev.Alert != nil && ev.Alert.Rule == "owner-impersonation" && ev.Alert.Severity != readmeSeverity(t, "owner-impersonation") {
			t.Errorf("owner-impersonation severity %s", ev.Alert.Severity)
		}
	}
	if !traced {
		t.Error("no owner-impersonation alert naming the owner the tracer attached to")
	}
	if !memOpened {
		t.Error("no owner-impersonation alert naming the owner whose /proc/PID/mem was opened")
	}
	if t.Failed() {
		t.Logf("events:\n%s", strings.Join(w.lines(t), "\n"))
	}
}

// sensorStarted reports whether a watch's log says sensor name started:
// its start line (information), not its warning that it is unavailable,
// which names it too.
func sensorStarted(log, name string) bool {
	for _, l := range strings.Split(log, "\n") {
		if strings.Contains(l, "level=INFO") && strings.Contains(l, " sensor="+name+" ") && !strings.Contains(l, "unavailable") {
			return true
		}
	}
	return false
}

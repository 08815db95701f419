package lineage

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/bpfmon/bpfmon/internal/cgroups"
	"github.com/bpfmon/bpfmon/internal/event"
	"github.com/bpfmon/bpfmon/internal/sensor/record"
	"github.com/bpfmon/bpfmon/internal/sensor/sensortest"
	"github.com/bpfmon/bpfmon/internal/testutil"
)

// TestLayout: the object's records are the protocol's.
func TestLayout(t *testing.T) {
	spec, err := loadLineage()
	if err != nil {
		t.Fatal(err)
	}
	if err := record.CheckObject(spec); err != nil {
		t.Fatal(err)
	}
}

func lineageOf(ev *event.Event) *event.Lineage {
	if ev.Type != event.LineageEvent || ev.Extra == nil {
		return nil
	}
	return ev.Extra.Lineage
}

// sleeper starts a process to act on, gone when the test ends.
func sleeper(t *testing.T) *exec.Cmd {
	t.Helper()
	c := exec.Command("sleep", "30")
	testutil.StartExec(t, c)
	t.Cleanup(func() { c.Process.Kill(); c.Wait() })
	return c
}

// writableAddr is the start of pid's stack: a writable mapping that
// stays so (a data segment just after exec may be made read-only by the
// program's start-up, RELRO, and then refuses the write).
func writableAddr(t *testing.T, pid int) uintptr {
	t.Helper()
	f, err := os.Open("/proc/" + strconv.Itoa(pid) + "/maps")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) >= 6 && fields[1] == "rw-p" && fields[5] == "[stack]" {
			start, _, _ := strings.Cut(fields[0], "-")
			a, err := strconv.ParseUint(start, 16, 64)
			if err == nil {
				return uintptr(a)
			}
		}
	}
	t.Fatal("no stack mapping")
	return 0
}

// TestLineage runs each way a process is marked and checks the event the
// kernel's facts make of it, beside an unmarked control.
func TestLineage(t *testing.T) {
	testutil.RequireRoot(t)
	s := New()
	r := sensortest.Start(t, sensortest.Options{}, s)
	self := uint32(os.Getpid())
	// Where fentry works, the syscall hooks must be trampolines: the
	// tracepoints would slow every syscall on the host.
	if fexit := strings.HasPrefix(s.build, "fexit"); testutil.Declared(testutil.Fentry) && trampolinesMissing() == nil && !fexit {
		t.Errorf("this kernel is declared to have fentry, and the sensor runs %s", s.build)
	} else {
		t.Logf("syscall hooks: %s", s.build)
	}
	find := func(what string, pred func(ev *event.Event, l *event.Lineage) bool) *event.Event {
		t.Helper()
		return r.Wait(t, 5*time.Second, what, func(ev *event.Event) bool {
			l := lineageOf(ev)
			return l != nil && ev.Process != nil && pred(ev, l)
		})
	}

	// LD_PRELOAD (a library that does not exist: the variable is what
	// counts) and a control without.
	plain := exec.Command("/bin/true")
	if err := plain.Run(); err != nil {
		t.Fatal(err)
	}
	pre := exec.Command("/bin/true")
	pre.Env = append(os.Environ(), "LD_PRELOAD=/nonexistent/evil.so", "LD_AUDIT=")
	pre.Run()
	ev := find("loader_env of the LD_PRELOAD run", func(ev *event.Event, l *event.Lineage) bool {
		return l.Kind == event.LineageLoaderEnv && ev.Process.PID == uint32(pre.Process.Pid)
	})
	if l := lineageOf(ev); !slices.Equal(l.Vars, []string{"LD_PRELOAD"}) || ev.Process.ExeIno == 0 || ev.Process.ExeDev == 0 {
		t.Errorf("loader_env: vars %v (LD_AUDIT is empty: not set), exe %d dev %d", l.Vars, ev.Process.ExeIno, ev.Process.ExeDev)
	}
	find("the LD_PRELOAD run's exit", func(ev *event.Event, l *event.Lineage) bool {
		return l.Kind == event.LineageExit && ev.Process.PID == uint32(pre.Process.Pid)
	})

	// An environment variable longer than the programs' buffer before
	// LD_PRELOAD: the scan reads on and still finds it.
	long := exec.Command("/bin/true")
	long.Env = append(os.Environ(), "BPFMON_LONG="+strings.Repeat("x", 10000), "LD_LIBRARY_PATH=/tmp")
	long.Run()
	ev = find("loader_env after a long variable", func(ev *event.Event, l *event.Lineage) bool {
		return l.Kind == event.LineageLoaderEnv && ev.Process.PID == uint32(long.Process.Pid)
	})
	if l := lineageOf(ev); !slices.Equal(l.Vars, []string{"LD_LIBRARY_PATH"}) {
		t.Errorf("after a long variable: vars %v", l.Vars)
	}

	// A marked process's fork and exec: a shell started with
	// LD_PRELOAD drops the variable and runs a child, whose exec is then
	// told only because the kernel marked it at the fork (with the
	// variable, its own loader_env would tell it).
	sh := exec.Command("sh", "-c", "unset LD_PRELOAD; /bin/true; exit 0")
	sh.Env = append(os.Environ(), "LD_PRELOAD=/nonexistent/evil.so")
	sh.Run()
	fork := find("the marked shell's fork", func(ev *event.Event, l *event.Lineage) bool {
		return l.Kind == event.LineageFork && ev.Process.PID == uint32(sh.Process.Pid) && l.Target != nil
	})
	child := lineageOf(fork).Target
	if child.StartTime == 0 || child.PID == 0 {
		t.Errorf("fork target: %+v", child)
	}
	find("the marked child's exec, without loader variables", func(ev *event.Event, l *event.Lineage) bool {
		return l.Kind == event.LineageExec && ev.Process.PID == child.PID
	})
	find("the marked child's exit", func(ev *event.Event, l *event.Lineage) bool {
		return l.Kind == event.LineageExit && ev.Process.PID == child.PID
	})

	// ptrace: the tracee, as the kernel linked it.
	traced := sleeper(t)
	done := make(chan error, 1)
	go func() {
		runtime.LockOSThread() // the tracer is this thread
		defer runtime.UnlockOSThread()
		err := unix.PtraceSeize(traced.Process.Pid)
		if err == nil {
			// Detaching needs a stop; killing the tracee ends it.
			traced.Process.Kill()
		}
		done <- err
	}()
	if err := <-done; err != nil {
		t.Fatalf("PTRACE_SEIZE: %v", err)
	}
	ev = find("ptrace_attach", func(ev *event.Event, l *event.Lineage) bool {
		return l.Kind == event.LineagePtraceAttach && ev.Process.PID == self && l.Target != nil && l.Target.PID == uint32(traced.Process.Pid)
	})
	if l := lineageOf(ev); l.Request != "PTRACE_SEIZE" || l.Target.ExeIno == 0 || l.TargetByPID {
		t.Errorf("ptrace_attach: %+v target %+v", l, l.Target)
	}

	// /proc/PID/mem opened for writing: the target is the task the
	// file's memory is of; a read-only open, of another process, is
	// nothing (asserted with the controls).
	memTarget, roTarget := sleeper(t), sleeper(t)
	ro, err := os.Open("/proc/" + strconv.Itoa(roTarget.Process.Pid) + "/mem")
	if err != nil {
		t.Fatal(err)
	}
	ro.Close()
	rw, err := os.OpenFile("/proc/"+strconv.Itoa(memTarget.Process.Pid)+"/task/"+strconv.Itoa(memTarget.Process.Pid)+"/mem", os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	rw.Close()
	ev = find("proc_mem_open", func(ev *event.Event, l *event.Lineage) bool {
		return l.Kind == event.LineageProcMemOpen && ev.Process.PID == self
	})
	if l := lineageOf(ev); l.Target == nil || l.Target.PID != uint32(memTarget.Process.Pid) || l.TargetByPID || l.Target.StartTime == 0 {
		t.Errorf("proc_mem_open target %+v, want pid %d from the kernel", l.Target, memTarget.Process.Pid)
	}

	// process_vm_writev: one byte written back as it was.
	vmTarget := sleeper(t)
	addr := writableAddr(t, vmTarget.Process.Pid)
	b := []byte{0}
	local := []unix.Iovec{{Base: &b[0], Len: 1}}
	remote := []unix.RemoteIovec{{Base: addr, Len: 1}}
	if _, err := unix.ProcessVMReadv(vmTarget.Process.Pid, local, remote, 0); err != nil {
		t.Fatal(err)
	}
	if _, err := unix.ProcessVMWritev(vmTarget.Process.Pid, local, remote, 0); err != nil {
		t.Fatal(err)
	}
	ev = find("process_vm_write", func(ev *event.Event, l *event.Lineage) bool {
		return l.Kind == event.LineageProcessVMWrite && ev.Process.PID == self
	})
	// The tracepoints see the pid passed (resolved from /proc); the
	// trampoline, the task the kernel granted.
	if l := lineageOf(ev); l.Target == nil || l.Target.PID != uint32(vmTarget.Process.Pid) || l.TargetByPID == strings.HasPrefix(s.build, "fexit") || l.Target.ExeIno == 0 {
		t.Errorf("process_vm_write target %+v (by pid: %v), want pid %d", l.Target, l.TargetByPID, vmTarget.Process.Pid)
	}

	// Cgroups: a process moved into another cgroup by this one (not the
	// service manager) is the target of a cgroup_join; a child started
	// into another cgroup than its parent's (clone3 with
	// CLONE_INTO_CGROUP), of a clone_into_cgroup. The plain run, started
	// in this process's cgroup, is the control.
	cgRoot := cgroups.NewResolver().Root()
	if cgRoot == "" {
		t.Fatal("no cgroup2 hierarchy mounted")
	}
	cgDir := filepath.Join(cgRoot, fmt.Sprintf("bpfmon-lineage-%d", os.Getpid()))
	if err := os.Mkdir(cgDir, 0o755); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.Remove(cgDir) }) // after the processes in it are gone
	var st unix.Stat_t
	if err := unix.Stat(cgDir, &st); err != nil {
		t.Fatal(err)
	}
	joiner := sleeper(t)
	if err := os.WriteFile(filepath.Join(cgDir, "cgroup.procs"), []byte(strconv.Itoa(joiner.Process.Pid)), 0); err != nil {
		t.Fatal(err)
	}
	ev = find("cgroup_join", func(ev *event.Event, l *event.Lineage) bool {
		return l.Kind == event.LineageCgroupJoin && l.Target != nil && l.Target.PID == uint32(joiner.Process.Pid)
	})
	if l := lineageOf(ev); ev.Process.PID != self || l.Cgroup != st.Ino || l.Target.StartTime == 0 {
		t.Errorf("cgroup_join by pid %d into cgroup %d, target %+v; want by this process, into %d", ev.Process.PID, l.Cgroup, l.Target, st.Ino)
	}
	cgFD, err := unix.Open(cgDir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	into := exec.Command("/bin/true")
	into.SysProcAttr = &syscall.SysProcAttr{UseCgroupFD: true, CgroupFD: cgFD}
	err = into.Run()
	unix.Close(cgFD)
	if err != nil {
		t.Fatalf("clone3 into cgroup %s: %v", cgDir, err)
	}
	ev = find("clone_into_cgroup", func(ev *event.Event, l *event.Lineage) bool {
		return l.Kind == event.LineageCloneIntoCgroup && l.Target != nil && l.Target.PID == uint32(into.Process.Pid)
	})
	if l := lineageOf(ev); ev.Process.PID != self || l.Cgroup != st.Ino {
		t.Errorf("clone_into_cgroup by pid %d into cgroup %d; want by this process, into %d", ev.Process.PID, l.Cgroup, st.Ino)
	}

	// PTRACE_TRACEME: the child asks this process to trace it (and
	// stops at its exec, where it is killed).
	traceme := exec.Command("/bin/true")
	traceme.SysProcAttr = &syscall.SysProcAttr{Ptrace: true}
	testutil.StartExec(t, traceme)
	traceme.Process.Kill()
	traceme.Wait()
	find("ptrace_traceme", func(ev *event.Event, l *event.Lineage) bool {
		return l.Kind == event.LineagePtraceTraceme && ev.Process.PID == uint32(traceme.Process.Pid)
	})

	// The controls: nothing about the plain run, nor the read-only open;
	// one record of the open for writing.
	memOpens := 0
	for _, ev := range r.Finish(t) {
		l := lineageOf(ev)
		if l == nil || ev.Process == nil {
			continue
		}
		if ev.Process.PID == uint32(plain.Process.Pid) {
			t.Errorf("the plain run was marked: %+v", l)
		}
		if l.Target != nil && l.Target.PID == uint32(roTarget.Process.Pid) {
			t.Errorf("the read-only open of /proc/%d/mem was reported: %s by pid %d", roTarget.Process.Pid, l.Kind, ev.Process.PID)
		}
		if l.Kind == event.LineageProcMemOpen && ev.Process.PID == self {
			memOpens++
		}
	}
	if memOpens != 1 {
		t.Errorf("%d proc_mem_open records by this process, want 1 (the open for writing)", memOpens)
	}
}

// BenchmarkLineageCost measures what the sensor costs the host's hot
// syscalls it hooks: openat read-only (the common case, one test in the
// program), openat for writing (the path is read), and fork+exec+wait (the
// environment is scanned). Rounds alternate between the sensor loaded and
// not, in one run; the figures are the medians and their ratio.
func BenchmarkLineageCost(b *testing.B) {
	testutil.RequireRoot(b)
	ops := []struct {
		name string
		n    int
		op   func()
	}{
		{"openat_ro", 20000, func() {
			fd, _ := unix.Open("/dev/null", unix.O_RDONLY, 0)
			unix.Close(fd)
		}},
		{"openat_wr", 20000, func() {
			fd, _ := unix.Open("/dev/null", unix.O_WRONLY, 0)
			unix.Close(fd)
		}},
		{"fork_exec", 200, func() { exec.Command("/bin/true").Run() }},
	}
	const rounds = 5
	for _, o := range ops {
		b.Run(o.name, func(b *testing.B) {
			var on, off []float64
			measure := func() float64 {
				t0 := time.Now()
				for range o.n {
					o.op()
				}
				return float64(time.Since(t0).Nanoseconds()) / float64(o.n)
			}
			for range b.N {
				for range rounds {
					off = append(off, measure())
					s := New()
					r := sensortest.Start(b, sensortest.Options{Discard: true}, s)
					on = append(on, measure())
					r.Finish(b)
					r.Set.Close()
				}
			}
			sort.Float64s(on)
			sort.Float64s(off)
			b.ReportMetric(off[len(off)/2], "ns/op-without")
			b.ReportMetric(on[len(on)/2], "ns/op-with")
			b.ReportMetric(on[len(on)/2]/off[len(off)/2], "ratio")
		})
	}
}

// TestOwnMapsFrozen: no process can clear a mark or the counters through
// bpf(2), and the ring is not listed as the sensor's.
func TestOwnMapsFrozen(t *testing.T) {
	s := New()
	r := sensortest.Start(t, sensortest.Options{}, s)
	r.CheckOwnMaps(t, s)
}

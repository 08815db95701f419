// Package lineage is bpfmon's lineage sensor: how processes came to be,
// for the line between a map's owner and a stranger running the owner's
// executable.
//
// An owner is an executable in a cgroup (internal/alert). A root attacker
// can run that executable in that cgroup with code of their own: preload a
// library into it (LD_PRELOAD, LD_AUDIT, LD_LIBRARY_PATH), move a shell
// into the cgroup and start the binary from there, or attach to a running
// owner with ptrace, process_vm_writev or /proc/PID/mem. The programs
// (bpf/lineage.c) see each of these as the kernel does it and mark the
// process, and everything it starts, until it exits; each is a lineage
// event. The marks live in the kernel (for forks) and, from these events,
// in the alert engine, which never counts a marked process as an owner.
//
// Only the kernel's facts at the time decide: the moved task, the tracee
// the kernel linked to the tracer, the environment the new program got.
// Where fexit works, the syscall hooks are trampolines on the kernel
// functions that grant the access and name the task. Elsewhere they are
// syscall tracepoints, where process_vm_writev and /proc/PID/mem name
// their target by the pid the caller passed: the programs mark that pid
// in the kernel at once, and the event resolves it to its process from
// /proc when it is read.
package lineage

import (
	"errors"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/bpfmon/bpfmon/internal/cgroups"
	"github.com/bpfmon/bpfmon/internal/event"
	"github.com/bpfmon/bpfmon/internal/features"
	"github.com/bpfmon/bpfmon/internal/procexe"
	"github.com/bpfmon/bpfmon/internal/sensor"
	"github.com/bpfmon/bpfmon/internal/sensor/record"
	"github.com/bpfmon/bpfmon/internal/tracefs"
)

// Name is the sensor's name in logs, errors and the set.
const Name = "lineage"

// Sensor holds the programs.
type Sensor struct {
	sensor.Base        // the collection, programs, links and losses: Detach, Close, ProgramIDs, MapIDs, Stats
	build       string // which syscall hooks, in words
	cgroups     *cgroups.Resolver
}

// New returns the sensor, not started.
func New() *Sensor { return &Sensor{cgroups: cgroups.NewResolver()} }

// Name implements sensor.Sensor.
func (s *Sensor) Name() string { return Name }

// common are the hooks every build has: raw tracepoints, which cost only
// the events they fire on.
var common = []sensor.Hook{
	{Prog: "lineage_cgroup_attach", How: sensor.RawTracepoint, Target: "cgroup_attach_task"},
	{Prog: "lineage_fork", How: sensor.RawTracepoint, Target: "sched_process_fork"},
	{Prog: "lineage_exec", How: sensor.RawTracepoint, Target: "sched_process_exec"},
	{Prog: "lineage_exit", How: sensor.RawTracepoint, Target: "sched_process_exit"},
}

// The syscall hooks, in two builds: fexit trampolines where the kernel
// allows them, else syscall tracepoints, which put every syscall of every
// task on the kernel's slow path (as the syscall sensor's raw_syscalls
// builds, which such kernels run, already do).
var (
	trampolines = []sensor.Hook{
		{Prog: "lineage_fx_ptrace_attach", How: sensor.Tracing, Target: "ptrace_attach"},
		{Prog: "lineage_fx_traceme", How: sensor.Tracing, Target: "ptrace_traceme"},
		{Prog: "lineage_fx_vm_write", How: sensor.Tracing, Target: "mm_access"},
		{Prog: "lineage_fx_mem_open", How: sensor.Tracing, Target: "mem_open"},
	}
	tracepoints = []sensor.Hook{
		{Prog: "lineage_ptrace_enter", How: sensor.SyscallTracepoint, Target: "sys_enter_ptrace"},
		{Prog: "lineage_ptrace_exit", How: sensor.SyscallTracepoint, Target: "sys_exit_ptrace"},
		{Prog: "lineage_vm_write_enter", How: sensor.SyscallTracepoint, Target: "sys_enter_process_vm_writev"},
		{Prog: "lineage_vm_write_exit", How: sensor.SyscallTracepoint, Target: "sys_exit_process_vm_writev"},
		{Prog: "lineage_openat_enter", How: sensor.SyscallTracepoint, Target: "sys_enter_openat"},
		{Prog: "lineage_openat_exit", How: sensor.SyscallTracepoint, Target: "sys_exit_openat"},
	}
)

// Start loads and attaches the programs (sensor.Sensor): the trampoline
// build of the syscall hooks, else the tracepoint build.
func (s *Sensor) Start(env *sensor.Env) error {
	errFexit := trampolinesMissing()
	if errFexit == nil {
		errFexit = s.start(env, trampolines)
	}
	if errFexit == nil {
		s.build = "fexit on ptrace_attach, ptrace_traceme, mm_access and mem_open"
	} else if err := s.startTracepoints(env); err != nil {
		return fmt.Errorf("%w (fexit build: %w)", err, errFexit)
	} else {
		s.build = "syscall tracepoints (fexit: " + errFexit.Error() + ")"
	}
	if err := env.Ring.Handle(record.KindLineage, s.decode); err != nil {
		s.Close()
		return err
	}
	s.Loss = env.Ring.CountLost(event.SourceLineage, s.lost)
	env.Log.Info("watching how processes came to be: cgroup joins, loader variables at exec, ptrace, writes into other processes' memory",
		"sensor", Name, "hooks", s.build)
	return nil
}

// startTracepoints starts the tracepoint build. Its syscall tracepoints
// are attached by name, whose ids tracefs gives: it is mounted first,
// once for all of them.
func (s *Sensor) startTracepoints(env *sensor.Env) error {
	if err := tracefs.Mount(); err != nil {
		return err
	}
	return s.start(env, tracepoints)
}

// trampolinesMissing says what the trampoline build needs that the kernel
// lacks: bpf_get_current_task_btf (5.11) and bpf_task_pt_regs (5.15), to
// read the number of the syscall that called mm_access.
func trampolinesMissing() error {
	for _, h := range []struct{ name, since string }{{"get_current_task_btf", "5.11"}, {"task_pt_regs", "5.15"}} {
		if err := features.HaveHelper(h.name); err != nil {
			return fmt.Errorf("needs %w (Linux %s)", err, h.since)
		}
	}
	return nil
}

// start loads the object with the common hooks and syscalls', freezes
// its maps (no process may clear a mark or the counters through bpf(2);
// the programs still write them), attaches them, and leaves nothing
// behind on failure.
func (s *Sensor) start(env *sensor.Env, syscalls []sensor.Hook) error {
	hooks := append(slices.Clone(common), syscalls...)
	err := s.Load(env, sensor.Object{Name: Name, Spec: loadLineage, Programs: sensor.Programs(hooks),
		Constants: []sensor.Constant{{Name: "self_tgid", Value: env.Self.TGID}}})
	if err == nil {
		err = s.Freeze()
	}
	if err == nil {
		err = s.Attach(hooks, nil)
	}
	if err != nil {
		s.Close()
	}
	return err
}

func (s *Sensor) lost() (uint64, error) {
	if s.Coll == nil {
		return 0, nil // closed: what it lost was counted before
	}
	lost, err := sensor.Counter(s.Coll.Maps[lineageMapLinstats], uint32(lineageLineageStatLINSTAT_LOST))
	if err != nil {
		return 0, err
	}
	// A mark the kernel could not keep is a lineage bpfmon lost.
	untaint, err := sensor.Counter(s.Coll.Maps[lineageMapLinstats], uint32(lineageLineageStatLINSTAT_UNTAINT))
	return lost + untaint, err
}

// Features implements sensor.Sensor.
func (s *Sensor) Features(startErr error) []features.Feature {
	f := features.Feature{Name: "process_lineage", Available: startErr == nil,
		Detail:   "cgroup joins, loader variables at exec, ptrace and writes into other processes' memory are seen as they happen: such a process never counts as an owner",
		Fallback: "owners are told by executable and cgroup only: a stranger running an owner's binary with injected code counts as the owner"}
	switch {
	case errors.Is(startErr, sensor.ErrNotStarted):
		f.Available, f.Detail = false, "not started"
	case startErr != nil:
		f.Detail = startErr.Error()
	case s.build != "":
		f.Detail += "; hooks: " + s.build
	}
	return []features.Feature{f}
}

const recSize = int(unsafe.Sizeof(lineageLineageRec{}))

var kindNames = map[lineageLineageKind]string{
	lineageLineageKindLIN_JOIN:       event.LineageCgroupJoin,
	lineageLineageKindLIN_CLONE_INTO: event.LineageCloneIntoCgroup,
	lineageLineageKindLIN_LOADER:     event.LineageLoaderEnv,
	lineageLineageKindLIN_TRACEME:    event.LineagePtraceTraceme,
	lineageLineageKindLIN_PTRACE:     event.LineagePtraceAttach,
	lineageLineageKindLIN_VM_WRITE:   event.LineageProcessVMWrite,
	lineageLineageKindLIN_MEM_OPEN:   event.LineageProcMemOpen,
	lineageLineageKindLIN_FORK:       event.LineageFork,
	lineageLineageKindLIN_EXEC:       event.LineageExec,
	lineageLineageKindLIN_EXIT:       event.LineageExit,
}

// decode turns a lineage record into a lineage event.
func (s *Sensor) decode(raw []byte, d *record.Decoder, emit record.Emit) error {
	if err := record.Check(raw, recSize, "lineage"); err != nil {
		return err
	}
	r := (*lineageLineageRec)(unsafe.Pointer(&raw[0]))
	kind, ok := kindNames[lineageLineageKind(r.Lkind)]
	if !ok {
		return fmt.Errorf("%w: lineage record of unknown kind %d", record.ErrMalformed, r.Lkind)
	}
	l := &event.Lineage{Kind: kind}
	ev := &event.Event{Time: d.Time(r.Hdr.Ktime), Type: event.LineageEvent, Source: event.SourceLineage,
		Process: &event.Process{}, Extra: &event.Extra{Lineage: l}}
	d.Process(ev.Process, raw)
	switch lineageLineageKind(r.Lkind) {
	case lineageLineageKindLIN_JOIN, lineageLineageKindLIN_CLONE_INTO:
		l.Cgroup = r.DstCgroup
	case lineageLineageKindLIN_LOADER:
		l.Vars = loaderVars(r.Detail)
	case lineageLineageKindLIN_PTRACE:
		l.Request = "PTRACE_ATTACH"
		if r.Detail == unix.PTRACE_SEIZE {
			l.Request = "PTRACE_SEIZE"
		}
	}
	switch {
	case r.Flags&uint32(lineageLineageFlagLFLAG_TARGET_PID_ONLY) != 0:
		l.TargetByPID = true
		l.Target = s.resolve(r.Target.Pid, r.Flags&uint32(lineageLineageFlagLFLAG_HOST_PIDNS) != 0)
	case r.Target.Pid != 0:
		t := &r.Target
		l.Target = &event.Process{PID: t.Pid, TID: t.Pid, PPID: t.Ppid, UID: t.Uid, GID: t.Gid, StartTime: t.StartTime,
			ExeIno: t.ExeIno, ExeDev: procexe.FromKernel(t.ExeDev), CgroupID: t.CgroupId, Comm: d.String(t.Comm[:]), Exe: exePath(t.Pid, t.ExeIno)}
	}
	return emit(ev)
}

// loaderVars names the LOADER_* bits.
func loaderVars(bits uint32) []string {
	var vars []string
	for _, v := range []struct {
		bit  lineageLoaderVar
		name string
	}{
		{lineageLoaderVarLOADER_PRELOAD, "LD_PRELOAD"},
		{lineageLoaderVarLOADER_AUDIT, "LD_AUDIT"},
		{lineageLoaderVarLOADER_LIBRARY_PATH, "LD_LIBRARY_PATH"},
		{lineageLoaderVarLOADER_UNINSPECTED, "uninspected"},
	} {
		if bits&uint32(v.bit) != 0 {
			vars = append(vars, v.name)
		}
	}
	return vars
}

// resolve turns the pid a caller passed to process_vm_writev or in a
// /proc/PID/mem path into its process, read from /proc when the event is
// decoded: the thread's process (a write into one thread writes them
// all), its executable and cgroup. Outside the host's pid namespace the
// pid is the caller's, which bpfmon cannot map: only the number is kept.
func (s *Sensor) resolve(pid uint32, hostNS bool) *event.Process {
	p := &event.Process{PID: pid, TID: pid}
	if !hostNS || pid == 0 {
		return p
	}
	dir := "/proc/" + strconv.FormatUint(uint64(pid), 10)
	status, err := os.ReadFile(dir + "/status")
	if err != nil {
		return p
	}
	if tgid, ok := statusField(status, "Tgid"); ok {
		p.PID = tgid
		dir = "/proc/" + strconv.FormatUint(uint64(tgid), 10)
	}
	if exe, ino, dev, err := procexe.Of(p.PID); err == nil {
		p.Exe, p.ExeIno, p.ExeDev = exe, ino, dev
	}
	if ppid, ok := statusField(status, "PPid"); ok {
		p.PPID = ppid
	}
	if b, err := os.ReadFile(dir + "/comm"); err == nil {
		p.Comm = strings.TrimSuffix(string(b), "\n")
	}
	if path, err := s.cgroups.ProcessPath(p.PID); err == nil {
		if id, err := s.cgroups.ID(path); err == nil {
			p.CgroupID = id
		}
	}
	return p
}

func statusField(status []byte, name string) (uint32, bool) {
	for _, line := range strings.Split(string(status), "\n") {
		if v, ok := strings.CutPrefix(line, name+":"); ok {
			n, err := strconv.ParseUint(strings.TrimSpace(v), 10, 32)
			return uint32(n), err == nil
		}
	}
	return 0, false
}

// exePath names a target's executable for people (nothing is decided by
// it): its /proc link while it is the same inode.
func exePath(pid uint32, ino uint64) string {
	link := "/proc/" + strconv.FormatUint(uint64(pid), 10) + "/exe"
	var st unix.Stat_t
	if unix.Stat(link, &st) != nil || st.Ino != ino {
		return ""
	}
	p, _ := os.Readlink(link)
	return p
}

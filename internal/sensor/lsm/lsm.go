// Package lsm is bpfmon's enforcement (--enforce): BPF programs that
// refuse write access to protected maps to every process that does not own
// them, and report each refusal as an access_denied event.
//
// Detection alone tells a security team that a tool was switched off; on a
// kernel that lets BPF programs decide security hooks, the write can be
// refused instead. The programs (bpf/lsm.c) hook the bpf command, new map
// fds, fds passed between processes and shared mappings, so a non-owner
// never gets to write. Which maps are protected and who owns them is
// decided in user space (internal/alert, through the Enforcer interface)
// and kept in the programs' maps.
//
// Two builds run the same programs' bodies: BPF LSM programs (bpf-lsm:
// CONFIG_BPF_LSM and "bpf" among the active LSMs), and fmod_ret programs
// on the kernel's security_* functions (fmod_ret: BPF trampolines, for
// the kernels, Ubuntu's among them, that build BPF LSM without activating
// it). The best one that loads runs.
//
// The refusal records go into bpfmon's one ring buffer and are decoded
// here, in order with the bpf(2) call they refused.
package lsm

import (
	"errors"
	"fmt"
	"strings"
	"unsafe"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/cilium/ebpf/btf"
	"github.com/cilium/ebpf/link"
	"golang.org/x/sys/unix"

	"github.com/bpfmon/bpfmon/internal/event"
	"github.com/bpfmon/bpfmon/internal/features"
	"github.com/bpfmon/bpfmon/internal/procexe"
	"github.com/bpfmon/bpfmon/internal/sensor"
	"github.com/bpfmon/bpfmon/internal/sensor/record"
)

// The hooks of struct deny_rec, as bpf2go generated them from enum
// lsm_hook.
const (
	hookBPF         = uint32(lsmLsmHookHOOK_BPF)
	hookBPFMap      = uint32(lsmLsmHookHOOK_BPF_MAP)
	hookFileReceive = uint32(lsmLsmHookHOOK_FILE_RECEIVE)
	hookMmapFile    = uint32(lsmLsmHookHOOK_MMAP_FILE)
)

var hookNames = map[uint32]string{hookBPF: "bpf", hookBPFMap: "bpf_map", hookFileReceive: "file_receive", hookMmapFile: "mmap_file"}

// Build is which programs enforce.
type Build string

const (
	// BuildAuto picks the best build that loads: bpf-lsm, else fmod_ret.
	BuildAuto Build = ""
	// BuildLSM is BPF LSM programs on the bpf_lsm_* hooks.
	BuildLSM Build = "bpf-lsm"
	// BuildFmodRet is BPF_MODIFY_RETURN programs on the kernel's
	// security_* functions.
	BuildFmodRet Build = "fmod_ret"
)

// builds in order of preference: an LSM program runs among the other
// LSMs, in the order the kernel gives them; an fmod_ret program runs
// before every LSM and skips them when it refuses.
var builds = []Build{BuildLSM, BuildFmodRet}

// hook is one enforcement hook: the programs of each build for each
// parameter count its kernel function has had (bpf_lsm_NAME for bpf-lsm,
// security_NAME for fmod_ret).
type hook struct {
	name string
	lsm  map[int]string // parameters -> program
	fmod map[int]string
}

var hooks = []hook{
	{"bpf", map[int]string{3: "lsm_bpf", 4: "lsm_bpf4"}, map[int]string{3: "fmod_bpf", 4: "fmod_bpf4"}},
	{"bpf_map", map[int]string{2: "lsm_bpf_map"}, map[int]string{2: "fmod_bpf_map"}},
	{"file_receive", map[int]string{1: "lsm_file_receive"}, map[int]string{1: "fmod_file_receive"}},
	// security_mmap_file takes (file, prot, flags); the LSM hook also
	// reqprot.
	{"mmap_file", map[int]string{4: "lsm_mmap_file"}, map[int]string{3: "fmod_mmap_file"}},
}

// progs is h's programs in build b.
func (h hook) progs(b Build) map[int]string {
	if b == BuildFmodRet {
		return h.fmod
	}
	return h.lsm
}

// ErrUnavailable wraps the reason this kernel cannot enforce.
var ErrUnavailable = errors.New("enforcement is not available")

// unavailable wraps err as a reason this kernel cannot enforce.
func unavailable(err error) error {
	return &unavailableError{err}
}

type unavailableError struct{ err error }

func (e *unavailableError) Error() string { return ErrUnavailable.Error() + ": " + e.err.Error() }
func (e *unavailableError) Unwrap() []error {
	return []error{ErrUnavailable, sensor.ErrUnavailable, e.err}
}

// Sensor holds the programs. It implements alert.Enforcer.
type Sensor struct {
	// Hooks names the hooks attached, once armed.
	Hooks []string
	// Build is the build that runs, once started; Fallback, when set,
	// says why a better build did not.
	Build    Build
	Fallback error

	sensor.Base // the collection, programs, links and losses: Detach, Close, ProgramIDs, MapIDs, Stats
	want        Build
	hooks       []sensor.Hook // the build's programs, attached by Arm
	log         func(msg string, args ...any)
}

// New returns the sensor, not started, which runs the best build.
func New() *Sensor { return &Sensor{} }

// NewBuild returns the sensor, not started, which runs build b only
// (BuildAuto: the best).
func NewBuild(b Build) *Sensor { return &Sensor{want: b} }

// Name is the sensor's name in logs, errors and the set.
const Name = "lsm"

// Name implements sensor.Sensor.
func (s *Sensor) Name() string { return Name }

// Start loads the programs without attaching them (sensor.Sensor): fill
// the protected maps and owners first (Protect, AddOwner), then Arm. It
// fails with an error wrapping ErrUnavailable, naming each build's
// reason, when the kernel cannot enforce. It needs the syscall sensor's
// map file calibration (env.MapFileOps). bpfmon (env.Self.TGID) is never
// refused.
func (s *Sensor) Start(env *sensor.Env) error {
	if env.MapFileOps == nil {
		return errors.New("needs the syscall sensor's map file calibration, and the syscall sensor did not start")
	}
	build, failed, err := sensor.Choose(builds, s.want, func(b Build) error { return s.start(env, b) }, func(err error) bool {
		var ue *unavailableError
		return !errors.As(err, &ue)
	})
	if err != nil {
		return err
	}
	var reasons []string
	for _, f := range failed {
		var ue *unavailableError
		errors.As(f.Err, &ue)
		reasons = append(reasons, f.Build+": "+ue.err.Error())
	}
	if build == "" {
		return unavailable(errors.New(strings.Join(reasons, "; ")))
	}
	s.Build = build
	if len(reasons) > 0 {
		s.Fallback = errors.New(strings.Join(reasons, "; "))
	}
	if err := env.Ring.Handle(record.KindDeny, decodeDeny); err != nil {
		s.Close()
		return err
	}
	s.Loss = env.Ring.CountLost(event.SourceLSM, s.lost)
	s.log = env.Log.Info
	return nil
}

// Available says why no build can enforce on this kernel (each build's
// reason), or nil: a quick probe, which loads and attaches a trivial
// program of each build.
func Available() error {
	lsmErr := features.BPFLSM()
	if lsmErr == nil {
		return nil
	}
	fmodErr := FmodRet()
	if fmodErr == nil {
		return nil
	}
	return fmt.Errorf("%s: %v; %s: %v", BuildLSM, lsmErr, BuildFmodRet, fmodErr)
}

// FmodRet says why fmod_ret programs on the security_ functions cannot
// run here, or nil: it loads and attaches one that allows everything.
func FmodRet() error {
	p, err := ebpf.NewProgramWithOptions(&ebpf.ProgramSpec{Type: ebpf.Tracing, AttachType: ebpf.AttachModifyReturn, AttachTo: "security_bpf_map",
		License: "GPL", Instructions: asm.Instructions{asm.Mov.Imm(asm.R0, 0), asm.Return()}}, ebpf.ProgramOptions{KernelTypes: kernelTypes()})
	if err != nil {
		if errors.Is(err, unix.EPERM) {
			return errors.New("fmod_ret program load denied (EPERM)")
		}
		return fmt.Errorf("fmod_ret program load failed: %w", err)
	}
	defer p.Close()
	l, err := link.AttachTracing(link.TracingOptions{Program: p, AttachType: ebpf.AttachModifyReturn})
	if err != nil {
		return fmt.Errorf("attaching an fmod_ret program (BPF trampolines): %w", err)
	}
	return l.Close()
}

func kernelTypes() *btf.Spec {
	k, _ := features.KernelSpec()
	return k
}

// prereq says why build b cannot run on this kernel, or nil.
func prereq(b Build) error {
	if b == BuildLSM {
		return features.BPFLSM()
	}
	return FmodRet()
}

// start loads build b's programs.
func (s *Sensor) start(env *sensor.Env, b Build) error {
	if err := prereq(b); err != nil {
		return unavailable(err)
	}
	// Before 5.11 LSM programs have no bpf_get_current_task_btf: the
	// build that reads the task with probe reads.
	load := loadLsm
	if features.HaveHelper("get_current_task_btf") != nil {
		load = loadLsmlegacy
	}
	kernel, err := features.KernelSpec()
	if err != nil {
		return unavailable(fmt.Errorf("no kernel BTF: %w", err))
	}
	var progs []string
	for _, h := range hooks {
		prog, err := pick(kernel, h, b)
		if err != nil {
			return unavailable(err)
		}
		progs = append(progs, prog)
	}
	err = s.Load(env, sensor.Object{Name: Name, Spec: load, Programs: progs,
		Constants: []sensor.Constant{{Name: "self_tgid", Value: env.Self.TGID}},
		Shared:    map[string]*ebpf.Map{lsmMapCalib: env.MapFileOps},
		Explain: func(err error) error {
			if errors.Is(err, unix.EPERM) {
				return unavailable(fmt.Errorf("%s program load denied (EPERM)", b))
			} else if rej, ok := sensor.Rejected(Name, err); ok {
				return unavailable(rej)
			}
			return unavailable(fmt.Errorf("loading the %s programs: %w", b, err))
		}})
	if err != nil {
		return err
	}
	s.Progs = nil
	s.hooks = nil
	for _, prog := range progs {
		s.Progs = append(s.Progs, s.Coll.Programs[prog])
		s.hooks = append(s.hooks, sensor.Hook{Prog: prog, How: attachOf[b]})
	}
	return nil
}

// attachOf is how each build's programs attach.
var attachOf = map[Build]sensor.Attach{BuildLSM: sensor.LSM, BuildFmodRet: sensor.FmodRet}

// pick returns h's program in build b for this kernel's signature of the
// hook's function.
func pick(kernel *btf.Spec, h hook, b Build) (string, error) {
	fname := "bpf_lsm_" + h.name
	if b == BuildFmodRet {
		fname = "security_" + h.name
	}
	var fn *btf.Func
	if err := kernel.TypeByName(fname, &fn); err != nil {
		return "", fmt.Errorf("the kernel has no function %s for the hook %s (not in its BTF)", fname, h.name)
	}
	proto, ok := fn.Type.(*btf.FuncProto)
	if !ok {
		return "", fmt.Errorf("%s has no prototype in BTF", fname)
	}
	prog, ok := h.progs(b)[len(proto.Params)]
	if !ok {
		return "", fmt.Errorf("%s has %d parameters in this kernel, which bpfmon does not know", fname, len(proto.Params))
	}
	return prog, nil
}

// Arm attaches every hook (sensor.Armer). Any failure detaches all and is
// returned: enforcement is all or nothing.
func (s *Sensor) Arm() error {
	err := s.Attach(s.hooks, func(_ sensor.Hook, _ *ebpf.Program, err error) error {
		return unavailable(fmt.Errorf("attaching a %s program: %w", s.Build, err))
	})
	if err != nil {
		s.Detach()
		return err
	}
	s.Hooks = nil
	for _, h := range hooks {
		s.Hooks = append(s.Hooks, h.name)
	}
	if s.log != nil {
		args := []any{"sensor", Name, "build", string(s.Build), "hooks", strings.Join(s.Hooks, ",")}
		if s.Fallback != nil {
			args = append(args, "not_chosen", s.Fallback.Error())
		}
		s.log("enforcing: non-owners are refused write access to the protected maps and to bpfmon's own", args...)
	}
	return nil
}

// Protect implements alert.Enforcer.
func (s *Sensor) Protect(mapID uint32) error {
	if err := s.Coll.Maps[lsmMapProtected].Put(mapID, uint8(1)); err != nil {
		return fmt.Errorf("protecting map %d in the kernel: %w", mapID, err)
	}
	return nil
}

// AddOwner implements alert.Enforcer.
func (s *Sensor) AddOwner(mapID uint32, id event.Identity) error {
	k := lsmOwnerKey{MapId: mapID, ExeDev: uint32(procexe.ToKernel(id.ExeDev)), ExeIno: id.ExeIno, CgroupId: id.CgroupID}
	if err := s.Coll.Maps[lsmMapOwners].Put(&k, uint8(1)); err != nil {
		return fmt.Errorf("adding an owner of map %d in the kernel: %w", mapID, err)
	}
	return nil
}

const denySize = int(unsafe.Sizeof(lsmDenyRec{}))

// decodeDeny turns a refusal into an access_denied event.
func decodeDeny(raw []byte, d *record.Decoder, emit record.Emit) error {
	if err := record.Check(raw, denySize, "refusal"); err != nil {
		return err
	}
	r := (*lsmDenyRec)(unsafe.Pointer(&raw[0]))
	ev := &event.Event{
		Time: d.Time(r.Hdr.Ktime), Type: event.AccessDenied, Source: event.SourceLSM,
		HasResult: true, Result: -int64(unix.EPERM),
		Process: &event.Process{}, Map: &event.Map{},
		Extra: &event.Extra{Hook: hookNames[r.Hook]},
	}
	d.Process(ev.Process, raw)
	d.Map(ev.Map, (*record.MapInfo)(unsafe.Pointer(&r.Map)))
	switch r.Hook {
	case hookBPF:
		ev.Extra.Cmd = event.CommandName(r.Cmd)
	case hookMmapFile:
		ev.Extra.Prot, ev.Extra.HasProt = r.Mode, true
	default:
		ev.Flags, ev.HasFlags = uint64(r.Mode), true // the fd's fmode
	}
	return emit(ev)
}

// Denied returns how many accesses were refused.
func (s *Sensor) Denied() (uint64, error) { return s.counter(lsmLsmStatLSTAT_DENIED) }

func (s *Sensor) lost() (uint64, error) { return s.counter(lsmLsmStatLSTAT_LOST) }

func (s *Sensor) counter(idx lsmLsmStat) (uint64, error) {
	if s.Coll == nil {
		return 0, nil // closed
	}
	return sensor.Counter(s.Coll.Maps[lsmMapLstats], uint32(idx))
}

// Features implements sensor.Sensor: whether this kernel can enforce,
// and with which build.
func (s *Sensor) Features(startErr error) []features.Feature {
	f := features.Feature{Name: "bpf_lsm", Available: true,
		Fallback: "no enforcement: tampering is reported as alerts, not refused (watch --enforce refuses to start)"}
	switch {
	case errors.Is(startErr, sensor.ErrNotStarted):
		// Not asked for: the quick probes only.
		switch lsmErr := features.BPFLSM(); {
		case lsmErr == nil:
			f.Detail = "enforcement (watch --enforce) works: build bpf-lsm (LSM programs load)"
		default:
			if fmodErr := FmodRet(); fmodErr != nil {
				f.Available, f.Detail = false, fmt.Sprintf("%s: %v; %s: %v", BuildLSM, lsmErr, BuildFmodRet, fmodErr)
			} else {
				f.Detail = "enforcement (watch --enforce) works: build fmod_ret (programs on the security_ functions load; bpf-lsm does not: " + lsmErr.Error() + ")"
			}
		}
	case startErr != nil:
		f.Available, f.Detail = false, startErr.Error()
		var ue *unavailableError
		if errors.As(startErr, &ue) {
			f.Detail = ue.err.Error()
		}
	default:
		on := "LSM programs on the bpf, bpf_map, file_receive and mmap_file hooks"
		if s.Build == BuildFmodRet {
			on = "fmod_ret programs on security_bpf, security_bpf_map, security_file_receive and security_mmap_file"
		}
		verb := "load and attach"
		if s.Links == nil {
			verb = "load"
		}
		f.Detail = "enforcement (watch --enforce) works: build " + string(s.Build) + ": " + on + " " + verb
		if s.Fallback != nil {
			f.Detail += " (not " + s.Fallback.Error() + ")"
		}
	}
	return []features.Feature{f}
}

// Unprotect implements alert.Unenforcer.
func (s *Sensor) Unprotect(mapID uint32) error {
	if err := s.Coll.Maps[lsmMapProtected].Delete(mapID); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
		return fmt.Errorf("unprotecting map %d in the kernel: %w", mapID, err)
	}
	return nil
}

// RemoveOwner implements alert.Unenforcer.
func (s *Sensor) RemoveOwner(mapID uint32, id event.Identity) error {
	k := lsmOwnerKey{MapId: mapID, ExeDev: uint32(procexe.ToKernel(id.ExeDev)), ExeIno: id.ExeIno, CgroupId: id.CgroupID}
	if err := s.Coll.Maps[lsmMapOwners].Delete(&k); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
		return fmt.Errorf("removing an owner of map %d in the kernel: %w", mapID, err)
	}
	return nil
}

// Package lsm is bpfmon's enforcement (--enforce): BPF LSM programs that
// refuse write access to protected maps to every process that does not own
// them, and report each refusal as an access_denied event.
//
// Detection alone tells a security team that a tool was switched off; on a
// kernel with BPF LSM (CONFIG_BPF_LSM, "bpf" among the active LSMs) the
// write can be refused instead. The programs (bpf/lsm.c) hook the bpf
// command, new map fds, fds passed between processes and shared mappings,
// so a non-owner never gets to write. Which maps are protected and who owns
// them is decided in user space (internal/alert, through the Enforcer
// interface) and kept in the programs' maps.
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

// hook is one LSM hook: the kernel's bpf_lsm_ function, the programs for
// each parameter count it has had.
type hook struct {
	name  string
	progs map[int]string // parameters -> program
}

var hooks = []hook{
	{"bpf", map[int]string{3: "lsm_bpf", 4: "lsm_bpf4"}},
	{"bpf_map", map[int]string{2: "lsm_bpf_map"}},
	{"file_receive", map[int]string{1: "lsm_file_receive"}},
	{"mmap_file", map[int]string{4: "lsm_mmap_file"}},
}

// ErrUnavailable wraps the reason this kernel cannot enforce.
var ErrUnavailable = errors.New("enforcement (BPF LSM) is not available")

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
	// Hooks names the LSM hooks attached, once armed.
	Hooks []string

	coll  *ebpf.Collection
	progs []*ebpf.Program
	links []link.Link
	loss  *record.Loss
	log   func(msg string, args ...any)
}

// New returns the sensor, not started.
func New() *Sensor { return &Sensor{} }

// Name is the sensor's name in logs, errors and the set.
const Name = "lsm"

// Name implements sensor.Sensor.
func (s *Sensor) Name() string { return Name }

// Start loads the programs without attaching them (sensor.Sensor): fill
// the protected maps and owners first (Protect, AddOwner), then Arm. It
// fails with an error wrapping ErrUnavailable, naming the reason, when the
// kernel cannot enforce. It needs the syscall sensor's map file
// calibration (env.MapFileOps). bpfmon (env.Self.TGID) is never refused.
func (s *Sensor) Start(env *sensor.Env) error {
	if env.MapFileOps == nil {
		return errors.New("needs the syscall sensor's map file calibration, and the syscall sensor did not start")
	}
	if err := features.BPFLSM(); err != nil {
		return unavailable(err)
	}
	// Before 5.11 LSM programs have no bpf_get_current_task_btf: the
	// build that reads the task with probe reads.
	load := loadLsm
	if features.HaveHelper("get_current_task_btf") != nil {
		load = loadLsmlegacy
	}
	spec, err := load()
	if err != nil {
		return fmt.Errorf("parsing the embedded BPF object: %w", err)
	}
	var specs lsmVariableSpecs
	if err := spec.Assign(&specs); err != nil {
		return fmt.Errorf("%w (regenerate the BPF objects with go generate)", err)
	}
	if err := specs.SelfTgid.Set(env.Self.TGID); err != nil {
		return fmt.Errorf("setting self_tgid: %w", err)
	}
	replace, err := env.Ring.Prepare(spec)
	if err != nil {
		return err
	}
	replace[lsmMapCalib] = env.MapFileOps
	kernel, err := features.KernelSpec()
	if err != nil {
		return unavailable(fmt.Errorf("no kernel BTF: %w", err))
	}
	want := map[string]bool{}
	for _, h := range hooks {
		prog, err := pick(kernel, h)
		if err != nil {
			return unavailable(err)
		}
		want[prog] = true
	}
	for name := range spec.Programs {
		if !want[name] {
			delete(spec.Programs, name)
		}
	}
	coll, err := ebpf.NewCollectionWithOptions(spec, ebpf.CollectionOptions{MapReplacements: replace, Cache: features.BTF()})
	if err != nil {
		if errors.Is(err, unix.EPERM) {
			return unavailable(errors.New("LSM program load denied (EPERM)"))
		} else if rej, ok := sensor.Rejected("lsm", err); ok {
			return unavailable(rej)
		}
		return unavailable(fmt.Errorf("loading the LSM programs: %w", err))
	}
	s.coll = coll
	for _, h := range hooks {
		for _, name := range h.progs {
			if p := coll.Programs[name]; p != nil {
				s.progs = append(s.progs, p)
			}
		}
	}
	if err := env.Ring.Handle(record.KindDeny, decodeDeny); err != nil {
		s.Close()
		return err
	}
	s.loss = env.Ring.CountLost(event.SourceLSM, s.lost)
	s.log = env.Log.Info
	return nil
}

// pick returns h's program for this kernel's signature of the hook.
func pick(kernel *btf.Spec, h hook) (string, error) {
	var fn *btf.Func
	if err := kernel.TypeByName("bpf_lsm_"+h.name, &fn); err != nil {
		return "", fmt.Errorf("the kernel has no BPF LSM hook %s (bpf_lsm_%s not in its BTF)", h.name, h.name)
	}
	proto, ok := fn.Type.(*btf.FuncProto)
	if !ok {
		return "", fmt.Errorf("bpf_lsm_%s has no prototype in BTF", h.name)
	}
	prog, ok := h.progs[len(proto.Params)]
	if !ok {
		return "", fmt.Errorf("the LSM hook %s has %d parameters in this kernel, which bpfmon does not know", h.name, len(proto.Params))
	}
	return prog, nil
}

// Arm attaches every hook (sensor.Armer). Any failure detaches all and is
// returned: enforcement is all or nothing.
func (s *Sensor) Arm() error {
	for _, p := range s.progs {
		l, err := link.AttachLSM(link.LSMOptions{Program: p})
		if err != nil {
			s.Detach()
			return unavailable(fmt.Errorf("attaching an LSM program: %w", err))
		}
		s.links = append(s.links, l)
	}
	s.Hooks = nil
	for _, h := range hooks {
		s.Hooks = append(s.Hooks, h.name)
	}
	if s.log != nil {
		s.log("enforcing: non-owners are refused write access to the protected maps and to bpfmon's own", "sensor", Name, "hooks", strings.Join(s.Hooks, ","))
	}
	return nil
}

// Protect implements alert.Enforcer.
func (s *Sensor) Protect(mapID uint32) error {
	if err := s.coll.Maps[lsmMapProtected].Put(mapID, uint8(1)); err != nil {
		return fmt.Errorf("protecting map %d in the kernel: %w", mapID, err)
	}
	return nil
}

// AddOwner implements alert.Enforcer.
func (s *Sensor) AddOwner(mapID uint32, id event.Identity) error {
	k := lsmOwnerKey{MapId: mapID, ExeDev: uint32(procexe.ToKernel(id.ExeDev)), ExeIno: id.ExeIno, CgroupId: id.CgroupID}
	if err := s.coll.Maps[lsmMapOwners].Put(&k, uint8(1)); err != nil {
		return fmt.Errorf("adding an owner of map %d in the kernel: %w", mapID, err)
	}
	return nil
}

// MapIDs implements sensor.Sensor (the ring buffer and the calibration
// are not the sensor's).
func (s *Sensor) MapIDs() []uint32 { return sensor.MapIDs(s.coll, lsmMapEvents, lsmMapCalib) }

// ProgramIDs implements sensor.Sensor.
func (s *Sensor) ProgramIDs() []uint32 { return sensor.ProgramIDs(s.progs...) }

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

// Stats implements sensor.Sensor: refusals whose record did not fit in
// the ring buffer (the refusal itself happened).
func (s *Sensor) Stats() sensor.Stats {
	if s.loss == nil {
		return sensor.Stats{}
	}
	return sensor.Stats{Lost: s.loss.Reported()}
}

// Denied returns how many accesses were refused.
func (s *Sensor) Denied() (uint64, error) { return s.counter(lsmLsmStatLSTAT_DENIED) }

func (s *Sensor) lost() (uint64, error) { return s.counter(lsmLsmStatLSTAT_LOST) }

func (s *Sensor) counter(idx lsmLsmStat) (uint64, error) {
	if s.coll == nil {
		return 0, nil // closed
	}
	return sensor.Counter(s.coll.Maps[lsmMapLstats], uint32(idx))
}

// Features implements sensor.Sensor: whether this kernel can enforce.
func (s *Sensor) Features(startErr error) []features.Feature {
	f := features.Feature{Name: "bpf_lsm", Available: true,
		Detail:   "enforcement (watch --enforce) works: LSM programs on the bpf, bpf_map, file_receive and mmap_file hooks load and attach",
		Fallback: "no enforcement: tampering is reported as alerts, not refused (watch --enforce refuses to start)"}
	switch {
	case errors.Is(startErr, sensor.ErrNotStarted):
		// Not asked for: the quick probe only.
		if err := features.BPFLSM(); err != nil {
			f.Available, f.Detail = false, err.Error()
		} else {
			f.Detail = "LSM programs load"
		}
	case startErr != nil:
		f.Available, f.Detail = false, startErr.Error()
		var ue *unavailableError
		if errors.As(startErr, &ue) {
			f.Detail = ue.err.Error()
		}
	case s.links == nil:
		f.Detail = "LSM programs load"
	}
	return []features.Feature{f}
}

// Detach removes the hooks; refusals already recorded remain to be read.
func (s *Sensor) Detach() {
	for _, l := range s.links {
		l.Close()
	}
	s.links = nil
}

// Close detaches and frees everything.
func (s *Sensor) Close() error {
	s.Detach()
	if s.coll != nil {
		s.coll.Close()
		s.coll = nil
	}
	s.progs = nil
	return nil
}

// Unprotect implements alert.Unenforcer.
func (s *Sensor) Unprotect(mapID uint32) error {
	if err := s.coll.Maps[lsmMapProtected].Delete(mapID); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
		return fmt.Errorf("unprotecting map %d in the kernel: %w", mapID, err)
	}
	return nil
}

// RemoveOwner implements alert.Unenforcer.
func (s *Sensor) RemoveOwner(mapID uint32, id event.Identity) error {
	k := lsmOwnerKey{MapId: mapID, ExeDev: uint32(procexe.ToKernel(id.ExeDev)), ExeIno: id.ExeIno, CgroupId: id.CgroupID}
	if err := s.coll.Maps[lsmMapOwners].Delete(&k); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
		return fmt.Errorf("removing an owner of map %d in the kernel: %w", mapID, err)
	}
	return nil
}

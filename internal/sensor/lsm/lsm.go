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
// The refusal records go into the syscall sensor's ring buffer and are
// decoded there, as a bpfsyscall.Extension, in order with the bpf(2) call
// they refused.
package lsm

import (
	"errors"
	"fmt"
	"os"
	"time"
	"unsafe"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/btf"
	"github.com/cilium/ebpf/link"
	"golang.org/x/sys/unix"

	"github.com/bpfmon/bpfmon/internal/event"
	"github.com/bpfmon/bpfmon/internal/features"
	"github.com/bpfmon/bpfmon/internal/sensor/bpfsyscall"
)

// Record kind and hooks, mirrored from bpf/include/event.h (a test
// compares them).
const (
	recDeny = 32

	hookBPF         = 1
	hookBPFMap      = 2
	hookFileReceive = 3
	hookMmapFile    = 4

	lstatLost   = 0
	lstatDenied = 1
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

// Config configures the sensor.
type Config struct {
	// Ring and Calib are the syscall sensor's ring buffer and its map
	// file calibration.
	Ring, Calib *ebpf.Map
	// SelfTGID is always allowed (bpfmon); 0: this process.
	SelfTGID uint32
}

// Sensor holds the loaded programs. It implements alert.Enforcer and
// bpfsyscall.Extension.
type Sensor struct {
	// Hooks names the LSM hooks attached, once Attach returned.
	Hooks []string

	coll  *ebpf.Collection
	progs []*ebpf.Program
	links []link.Link
	// reported is the lost-refusal count last reported.
	reported uint64
}

// New loads the programs without attaching them: fill the protected maps
// and owners first (Protect, AddOwner), then Attach. It fails with an error
// wrapping ErrUnavailable, naming the reason, when the kernel cannot
// enforce.
func New(cfg Config) (*Sensor, error) {
	if cfg.Ring == nil || cfg.Calib == nil {
		return nil, errors.New("lsm: the syscall sensor's ring buffer and calibration are needed")
	}
	if err := features.BPFLSM(); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrUnavailable, err)
	}
	spec, err := loadLsm()
	if err != nil {
		return nil, fmt.Errorf("parsing the embedded BPF object: %w", err)
	}
	self := cfg.SelfTGID
	if self == 0 {
		self = uint32(os.Getpid())
	}
	if err := spec.Variables["self_tgid"].Set(self); err != nil {
		return nil, fmt.Errorf("setting self_tgid: %w (regenerate the BPF object with go generate)", err)
	}
	ringInfo, err := cfg.Ring.Info()
	if err != nil {
		return nil, fmt.Errorf("reading the ring buffer's info: %w", err)
	}
	spec.Maps["events"].MaxEntries = ringInfo.MaxEntries
	kernel, err := features.KernelSpec()
	if err != nil {
		return nil, fmt.Errorf("%w: no kernel BTF: %w", ErrUnavailable, err)
	}
	want := map[string]bool{}
	for _, h := range hooks {
		prog, err := pick(kernel, h)
		if err != nil {
			return nil, fmt.Errorf("%w: %w", ErrUnavailable, err)
		}
		want[prog] = true
	}
	for name := range spec.Programs {
		if !want[name] {
			delete(spec.Programs, name)
		}
	}
	coll, err := ebpf.NewCollectionWithOptions(spec, ebpf.CollectionOptions{
		MapReplacements: map[string]*ebpf.Map{"events": cfg.Ring, "calib": cfg.Calib}, Cache: features.BTF()})
	if err != nil {
		var ve *ebpf.VerifierError
		if errors.Is(err, unix.EPERM) {
			return nil, fmt.Errorf("%w: LSM program load denied (EPERM)", ErrUnavailable)
		} else if errors.As(err, &ve) {
			return nil, fmt.Errorf("%w: the verifier rejected an LSM program: %v", ErrUnavailable, ve)
		}
		return nil, fmt.Errorf("%w: loading the LSM programs: %w", ErrUnavailable, err)
	}
	s := &Sensor{coll: coll}
	for _, h := range hooks {
		for _, name := range h.progs {
			if p := coll.Programs[name]; p != nil {
				s.progs = append(s.progs, p)
			}
		}
	}
	return s, nil
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

// Attach attaches every hook. Any failure detaches all and is returned:
// enforcement is all or nothing.
func (s *Sensor) Attach() error {
	for _, p := range s.progs {
		l, err := link.AttachLSM(link.LSMOptions{Program: p})
		if err != nil {
			s.Detach()
			return fmt.Errorf("%w: attaching an LSM program: %w", ErrUnavailable, err)
		}
		s.links = append(s.links, l)
	}
	s.Hooks = nil
	for _, h := range hooks {
		s.Hooks = append(s.Hooks, h.name)
	}
	return nil
}

// Protect implements alert.Enforcer.
func (s *Sensor) Protect(mapID uint32) error {
	if err := s.coll.Maps["protected"].Put(mapID, uint8(1)); err != nil {
		return fmt.Errorf("protecting map %d in the kernel: %w", mapID, err)
	}
	return nil
}

// AddOwner implements alert.Enforcer.
func (s *Sensor) AddOwner(mapID uint32, id event.Identity) error {
	k := lsmOwnerKey{MapId: mapID, ExeIno: id.ExeIno, CgroupId: id.CgroupID}
	if err := s.coll.Maps["owners"].Put(&k, uint8(1)); err != nil {
		return fmt.Errorf("adding an owner of map %d in the kernel: %w", mapID, err)
	}
	return nil
}

// MapIDs lists the sensor's own maps (the ring buffer and calibration are
// the syscall sensor's).
func (s *Sensor) MapIDs() []uint32 { return bpfsyscall.MapIDs(s.coll.Maps, "events", "calib") }

// Owns implements bpfsyscall.Extension.
func (s *Sensor) Owns(kind uint32) bool { return kind == recDeny }

const denySize = int(unsafe.Sizeof(lsmDeny{}))

// Decode implements bpfsyscall.Extension: a refusal becomes an
// access_denied event.
func (s *Sensor) Decode(raw []byte, calls bpfsyscall.Calls, emit func(*event.Event) error) error {
	if len(raw) < denySize {
		return fmt.Errorf("short refusal record: %d bytes, want %d", len(raw), denySize)
	}
	d := (*lsmDeny)(unsafe.Pointer(&raw[0]))
	ev := &event.Event{
		Time: calls.Time(d.Ktime), Type: event.AccessDenied, Source: event.SourceLSM,
		HasResult: true, Result: -int64(unix.EPERM),
		Process: &event.Process{PID: d.Pid, TID: d.Tid, PPID: d.Ppid, UID: d.Uid, GID: d.Gid,
			Comm: calls.String(d.Comm[:]), CgroupID: d.CgroupId, ExeIno: d.ExeIno, Exe: calls.Exe(d.Pid, d.StartTime, d.ExeIno)},
		Map: &event.Map{ID: d.Map.Id, Name: calls.String(d.Map.Name[:]), Type: d.Map.Type, KeySize: d.Map.KeySize,
			ValueSize: d.Map.ValueSize, MaxEntries: d.Map.MaxEntries, Flags: d.Map.Flags, Frozen: d.Map.Frozen != 0},
		Extra: &event.Extra{Hook: hookNames[d.Hook]},
	}
	switch d.Hook {
	case hookBPF:
		ev.Extra.Cmd = bpfsyscall.CommandEvent(d.Cmd)
	case hookMmapFile:
		ev.Extra.Prot, ev.Extra.HasProt = d.Mode, true
	default:
		ev.Flags, ev.HasFlags = uint64(d.Mode), true // the fd's fmode
	}
	return emit(ev)
}

// Tick implements bpfsyscall.Extension: refusals whose record did not fit
// in the ring buffer are reported lost (the refusal itself happened).
func (s *Sensor) Tick(emit func(*event.Event) error) error {
	lost, _, err := s.counts()
	if err != nil || lost <= s.reported {
		return err
	}
	n := lost - s.reported
	s.reported = lost
	return emit(&event.Event{Type: event.Lost, Source: event.SourceLSM, HasCount: true, Count: n, Time: time.Now()})
}

// Stats returns how many accesses were refused and how many refusals went
// unreported.
func (s *Sensor) Stats() (denied, lost uint64, err error) {
	lost, denied, err = s.counts()
	return denied, lost, err
}

func (s *Sensor) counts() (lost, denied uint64, err error) {
	var perCPU []uint64
	for i, dst := range []*uint64{&lost, &denied} {
		if err := s.coll.Maps["lstats"].Lookup(uint32([]int{lstatLost, lstatDenied}[i]), &perCPU); err != nil {
			return 0, 0, err
		}
		for _, v := range perCPU {
			*dst += v
		}
	}
	return lost, denied, nil
}

// Detach implements bpfsyscall.Extension: the hooks go; refusals already
// recorded remain to be read.
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
	return nil
}

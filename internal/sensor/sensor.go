// Package sensor is the frame every bpfmon sensor fits: one lifecycle
// (Start, Detach, Close), one way to say what it owns (its maps and
// programs, which bpfmon must not report or name as writers) and what it
// lost, one way to describe what it gives on this kernel (Features), and
// an ordered Set that starts them one after another on one shared Env.
//
// A sensor is a package of its own under internal/sensor, with its C file
// in bpf/; internal/sensors assembles the set, one line per sensor. It
// embeds Base, and its Start is the shared start-up of loader.go driven
// by its tables (Object, Hook): what is left in the sensor is its
// tables, its programs and its record handlers. A
// sensor knows the record protocol (internal/sensor/record) and this
// package; it knows nothing of the alert engine, the inventory, the
// writers, nor the other sensors.
package sensor

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"slices"

	"github.com/cilium/ebpf"

	"github.com/bpfmon/bpfmon/internal/features"
	"github.com/bpfmon/bpfmon/internal/sensor/record"
)

// Sensor is one kind of probe: its programs, its maps, and the handlers
// that decode its records.
type Sensor interface {
	// Name says which sensor it is ("syscall", "kernel", "lsm"), in logs
	// and errors.
	Name() string
	// Start loads the sensor's programs, registers its record handlers on
	// env.Ring and attaches the programs (but see Armer). On failure it
	// leaves nothing behind.
	Start(env *Env) error
	// MapIDs and ProgramIDs are the sensor's own maps and programs, once
	// started.
	MapIDs() []uint32
	ProgramIDs() []uint32
	// Stats are what the sensor's programs could not report.
	Stats() Stats
	// Features describe what the sensor gives on this kernel: startErr is
	// what Start returned, or ErrNotStarted when the set did not start it.
	Features(startErr error) []features.Feature
	// Detach stops the programs; records already written remain to be
	// read. It returns once no program of the sensor can write a record.
	Detach()
	// Close detaches and frees everything.
	Close() error
}

// Armer is a sensor that starts unarmed: its programs are loaded by Start
// but attached by Arm, once what they act on is known (the enforcement
// programs refuse access by the protected set: attached before it is
// filled, they would let through what should be refused).
type Armer interface {
	Arm() error
}

// Stats are a sensor's losses.
type Stats struct {
	// Lost counts records the kernel could not hand over, as reported.
	Lost uint64
	// Incomplete counts calls reported without their result.
	Incomplete uint64
	// Malformed counts ring records skipped as undecodable (Set only).
	Malformed uint64
}

// Env is what the sensors of a set share.
type Env struct {
	// Ring is the ring buffer every sensor writes its records into.
	Ring *record.Ring
	// Self is bpfmon itself: its calls are not reported, its maps never
	// reported as written, its programs never named as writers. The set
	// adds each sensor's maps and programs once it started.
	Self Self
	// CaptureBytes limits the bytes captured per key and per value, for
	// every sensor (1 to record.MaxCapture).
	CaptureBytes int
	// MapFileOps holds the kernel's address of the map file operations,
	// learnt by the syscall sensor at start (nil before): how programs
	// tell a map's fd from any other file.
	MapFileOps *ebpf.Map
	// Log receives the sensors' diagnostics.
	Log *slog.Logger
}

// Self is bpfmon's identity in the kernel.
type Self struct {
	// TGID is bpfmon's process, whose calls are not reported; 0 reports
	// every process (tests).
	TGID     uint32
	Maps     []uint32
	Programs []uint32
}

// NewEnv returns an Env on ring for this process, with a capture limit of
// captureBytes (0: record.DefaultCapture).
func NewEnv(ring *record.Ring, captureBytes int, log *slog.Logger) *Env {
	if log == nil {
		log = slog.Default()
	}
	if captureBytes == 0 {
		captureBytes = record.DefaultCapture
	}
	return &Env{Ring: ring, Self: Self{TGID: uint32(os.Getpid()), Maps: []uint32{ring.MapID()}},
		CaptureBytes: captureBytes, Log: log}
}

// Need says what a set does when a sensor cannot start.
type Need int

const (
	// Off: the sensor is not started.
	Off Need = iota
	// Optional: a failure is logged and the set goes on without it.
	Optional
	// Required: a failure stops the set.
	Required
)

// Entry is a sensor and how much it is needed.
type Entry struct {
	Sensor Sensor
	Need   Need
}

// ErrNotStarted is what Features is told of a sensor the set did not
// start (Need Off).
var ErrNotStarted = errors.New("not started")

// ErrUnavailable is wrapped by the errors of sensors that cannot work on
// this kernel (a hook or program type it lacks), as opposed to a failure:
// bpfmon then exits with its own status when the sensor was required.
var ErrUnavailable = errors.New("not available on this kernel")

// StartError is a required sensor's failure to start.
type StartError struct {
	Sensor string
	Err    error
}

func (e *StartError) Error() string { return e.Sensor + " sensor: " + e.Err.Error() }
func (e *StartError) Unwrap() error { return e.Err }

// Set is an ordered set of sensors on one Env: started in order, each
// after the ones it may depend on (a later sensor may use what an earlier
// one put in the Env), detached in reverse order.
type Set struct {
	slots []*slot
	env   *Env
}

type slot struct {
	Entry
	err     error // from Start, or ErrNotStarted
	started bool
}

// NewSet returns a set of the entries, in the order they start.
func NewSet(entries ...Entry) *Set {
	s := &Set{}
	for _, e := range entries {
		s.slots = append(s.slots, &slot{Entry: e, err: ErrNotStarted})
	}
	return s
}

// Start starts every sensor that is not Off, in order. A required sensor
// that fails closes everything started and returns a *StartError; an
// optional one is logged and left out.
func (s *Set) Start(env *Env) error {
	s.env = env
	for _, sl := range s.slots {
		if sl.Need == Off {
			continue
		}
		err := sl.Sensor.Start(env)
		sl.err = err
		if err != nil {
			if sl.Need == Required {
				s.Close()
				return &StartError{Sensor: sl.Sensor.Name(), Err: err}
			}
			env.Log.Warn(fmt.Sprintf("%s sensor unavailable%s", sl.Sensor.Name(), fallback(sl.Sensor.Features(err))),
				"sensor", sl.Sensor.Name(), "reason", err.Error())
			continue
		}
		sl.started = true
		env.Self.Maps = append(env.Self.Maps, sl.Sensor.MapIDs()...)
		env.Self.Programs = append(env.Self.Programs, sl.Sensor.ProgramIDs()...)
	}
	return nil
}

// fallback says what bpfmon does without a sensor, from its features.
func fallback(fs []features.Feature) string {
	for _, f := range fs {
		if !f.Available && f.Fallback != "" {
			return ": " + f.Fallback
		}
	}
	return ""
}

// Arm arms the started sensors that start unarmed. A failure of a
// required one is returned as a *StartError; an optional one is logged.
func (s *Set) Arm() error {
	for _, sl := range s.slots {
		a, ok := sl.Sensor.(Armer)
		if !ok || !sl.started {
			continue
		}
		if err := a.Arm(); err != nil {
			sl.err, sl.started = err, false
			sl.Sensor.Close()
			if sl.Need == Required {
				return &StartError{Sensor: sl.Sensor.Name(), Err: err}
			}
			s.env.Log.Warn(sl.Sensor.Name()+" sensor unavailable", "sensor", sl.Sensor.Name(), "reason", err.Error())
		}
	}
	return nil
}

// Run reads the ring until stop is closed, then detaches every sensor and
// drains it (record.Ring.Run).
func (s *Set) Run(stop <-chan struct{}, emit record.Emit, idle func() error) error {
	return s.env.Ring.Run(stop, s.Detach, emit, idle)
}

// Started returns the started sensor of that name, or nil.
func (s *Set) Started(name string) Sensor {
	for _, sl := range s.slots {
		if sl.started && sl.Sensor.Name() == name {
			return sl.Sensor
		}
	}
	return nil
}

// Err is why the sensor of that name is not running (ErrNotStarted when it
// was off), nil when it runs.
func (s *Set) Err(name string) error {
	for _, sl := range s.slots {
		if sl.Sensor.Name() == name {
			return sl.err
		}
	}
	return ErrNotStarted
}

// Features describe every sensor of the set, in order, running or not.
func (s *Set) Features() []features.Feature {
	var fs []features.Feature
	for _, sl := range s.slots {
		fs = append(fs, sl.Sensor.Features(sl.err)...)
	}
	return fs
}

// Stats sums the running sensors' losses.
func (s *Set) Stats() Stats {
	var st Stats
	for _, sl := range s.slots {
		if sl.started {
			x := sl.Sensor.Stats()
			st.Lost += x.Lost
			st.Incomplete += x.Incomplete
		}
	}
	if s.env != nil && s.env.Ring != nil {
		st.Malformed = s.env.Ring.Malformed()
	}
	return st
}

// OwnMaps lists bpfmon's maps: the ring and every started sensor's.
func (s *Set) OwnMaps() []uint32 {
	if s.env == nil {
		return nil
	}
	return slices.Clone(s.env.Self.Maps)
}

// OwnPrograms lists the ids of the programs the started sensors loaded.
func (s *Set) OwnPrograms() []uint32 {
	if s.env == nil {
		return nil
	}
	return slices.Clone(s.env.Self.Programs)
}

// Detach detaches the running sensors, the last started first.
func (s *Set) Detach() {
	for i := len(s.slots) - 1; i >= 0; i-- {
		if s.slots[i].started {
			s.slots[i].Sensor.Detach()
		}
	}
}

// Close closes every sensor, the last started first. The ring is the
// caller's.
func (s *Set) Close() {
	for i := len(s.slots) - 1; i >= 0; i-- {
		if sl := s.slots[i]; sl.started {
			sl.Sensor.Close()
			sl.started = false
		}
	}
}

// MapIDs lists the kernel ids of a collection's maps but those named in
// skip (maps the sensor does not own: the ring buffer, another sensor's).
func MapIDs(coll *ebpf.Collection, skip ...string) []uint32 {
	if coll == nil {
		return nil
	}
	var ids []uint32
	for name, m := range coll.Maps {
		if slices.Contains(skip, name) {
			continue
		}
		if info, err := m.Info(); err == nil {
			if id, ok := info.ID(); ok {
				ids = append(ids, uint32(id))
			}
		}
	}
	return ids
}

// ProgramIDs lists the kernel ids of progs (nil ones skipped).
func ProgramIDs(progs ...*ebpf.Program) []uint32 {
	var ids []uint32
	for _, p := range progs {
		if p == nil {
			continue
		}
		if info, err := p.Info(); err == nil {
			if id, ok := info.ID(); ok {
				ids = append(ids, uint32(id))
			}
		}
	}
	return ids
}

// Counter sums counter idx of a per-CPU array of counters (count_inc in
// bpf/include/common.h) over the CPUs.
func Counter(m *ebpf.Map, idx uint32) (uint64, error) {
	var per []uint64
	if err := m.Lookup(idx, &per); err != nil {
		return 0, err
	}
	var n uint64
	for _, v := range per {
		n += v
	}
	return n, nil
}

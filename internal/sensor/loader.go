package sensor

import (
	"errors"
	"fmt"
	"slices"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"golang.org/x/sys/unix"

	"github.com/bpfmon/bpfmon/internal/features"
	"github.com/bpfmon/bpfmon/internal/tracefs"
)

// The start-up every sensor shares, driven by its tables: Object says
// what to load from the sensor's embedded BPF object, Hook where each
// program attaches. A sensor's Start calls Base.Load (or Base.Prepare,
// to load its programs its own way), Base.Freeze, then Base.Attach with
// its hooks for the build it chose; what is left in the sensor is its
// tables, its programs and its record handlers.

// Object is what a sensor loads from its embedded BPF object.
type Object struct {
	// Name names the sensor's programs in load errors ("the lineage
	// programs") and the verifier's log (Rejected).
	Name string
	// Spec is the generated loader of the object (bpf2go's loadNAME).
	Spec func() (*ebpf.CollectionSpec, error)
	// Programs are the programs to load, each of them in the object; nil
	// keeps them all in the spec Prepare returns (for a sensor that
	// loads them its own way: kernelwrite, one function at a time).
	Programs []string
	// Constants are the object's .rodata variables to set, in order.
	Constants []Constant
	// PerCPU names maps with one entry per possible CPU (scratch).
	PerCPU []string
	// Sizes sets other maps' number of entries.
	Sizes map[string]uint32
	// Shared are maps the object uses but does not own, besides the
	// ring (Env.MapFileOps for the calibration, say): they are not
	// created, frozen or listed among the sensor's maps.
	Shared map[string]*ebpf.Map
	// Explain turns a load failure into the sensor's error (nil: the
	// verifier's rejection, EPERM, or "loading the NAME programs").
	Explain func(error) error
}

// Constant is a .rodata variable and its value.
type Constant struct {
	Name  string
	Value any
}

// Prepare parses the object, keeps o.Programs, sets o's constants and
// sizes, and returns the spec with the maps it shares: the Env's ring
// (record.Ring.Prepare) and o.Shared, also noted in b.Shared so that
// MapIDs and Freeze leave them out.
func (b *Base) Prepare(env *Env, o Object) (*ebpf.CollectionSpec, map[string]*ebpf.Map, error) {
	spec, err := o.Spec()
	if err != nil {
		return nil, nil, fmt.Errorf("parsing the embedded BPF object: %w", err)
	}
	if o.Programs != nil {
		for name := range spec.Programs {
			if !slices.Contains(o.Programs, name) {
				delete(spec.Programs, name)
			}
		}
		if len(spec.Programs) != len(o.Programs) {
			return nil, nil, errors.New("BPF object lacks a program: regenerate it with go generate")
		}
	}
	if err := setConstants(spec, o); err != nil {
		return nil, nil, err
	}
	replace, err := env.Ring.Prepare(spec)
	if err != nil {
		return nil, nil, err
	}
	for name, m := range o.Shared {
		replace[name] = m
	}
	b.Shared = b.Shared[:0]
	for name := range replace {
		b.Shared = append(b.Shared, name)
	}
	return spec, replace, nil
}

func setConstants(spec *ebpf.CollectionSpec, o Object) error {
	regenerate := " (regenerate the BPF objects with go generate)"
	sizes := map[string]uint32{}
	if len(o.PerCPU) > 0 {
		cpus, err := ebpf.PossibleCPU()
		if err != nil {
			return fmt.Errorf("counting possible CPUs: %w", err)
		}
		for _, name := range o.PerCPU {
			sizes[name] = uint32(cpus)
		}
	}
	for name, n := range o.Sizes {
		sizes[name] = n
	}
	for name, n := range sizes {
		m := spec.Maps[name]
		if m == nil {
			return fmt.Errorf("the BPF object has no map %s%s", name, regenerate)
		}
		m.MaxEntries = n
	}
	for _, c := range o.Constants {
		v := spec.Variables[c.Name]
		if v == nil {
			return fmt.Errorf("the BPF object has no variable %s%s", c.Name, regenerate)
		}
		if err := v.Set(c.Value); err != nil {
			return fmt.Errorf("setting %s: %w", c.Name, err)
		}
	}
	return nil
}

// Options are the collection options the sensors load with: the shared
// maps in, and the kernel's BTF from the process-wide cache.
func Options(replace map[string]*ebpf.Map) ebpf.CollectionOptions {
	return ebpf.CollectionOptions{MapReplacements: replace, Cache: features.BTF()}
}

// Load prepares the object (Prepare) and loads it into b.Coll.
func (b *Base) Load(env *Env, o Object) error {
	spec, replace, err := b.Prepare(env, o)
	if err != nil {
		return err
	}
	coll, err := ebpf.NewCollectionWithOptions(spec, Options(replace))
	if err != nil {
		if o.Explain != nil {
			return o.Explain(err)
		}
		return ExplainLoad(o.Name, err)
	}
	b.Coll = coll
	return nil
}

// ExplainLoad is a load failure in a few words: EPERM, the verifier's
// rejection (its log in a file, Rejected), or the error.
func ExplainLoad(name string, err error) error {
	if errors.Is(err, unix.EPERM) {
		return errors.New("program load denied (EPERM)")
	}
	if rej, ok := Rejected(name, err); ok {
		return rej
	}
	return fmt.Errorf("loading the %s programs: %w", name, err)
}

// Freeze freezes the sensor's maps against writes through bpf(2), so
// that no process can clear what its programs keep (marks, counters,
// in-flight calls, selections); the programs still write them. The
// shared maps are not the sensor's, and .rodata was frozen by the loader.
func (b *Base) Freeze() error {
	if b.Coll == nil {
		return nil
	}
	for name, m := range b.Coll.Maps {
		if name == ".rodata" || slices.Contains(b.Shared, name) {
			continue
		}
		if err := m.Freeze(); err != nil {
			return fmt.Errorf("freezing the sensor's %s map: %w", name, err)
		}
	}
	return nil
}

// Attach says how a program attaches to its hook.
type Attach int

// The kinds of attachment.
const (
	// RawTracepoint: a raw tracepoint, Hook.Target its name.
	RawTracepoint Attach = iota + 1
	// SyscallTracepoint: a tracepoint of the syscalls group, Hook.Target
	// its name (sys_enter_ptrace); tracefs is mounted first.
	SyscallTracepoint
	// Tracing: fentry, fexit or tp_btf, the target in the program.
	Tracing
	// FmodRet: BPF_MODIFY_RETURN, the target in the program.
	FmodRet
	// LSM: a BPF LSM program, the hook in the program.
	LSM
	// Kprobe: a kprobe on the kernel function Hook.Target.
	Kprobe
	// Kretprobe: a kretprobe on the kernel function Hook.Target.
	Kretprobe
)

// Hook is one row of a sensor's table of hooks: a program and where it
// attaches.
type Hook struct {
	Prog   string
	How    Attach
	Target string
}

// Link attaches p at h.
func (h Hook) Link(p *ebpf.Program) (link.Link, error) {
	switch h.How {
	case RawTracepoint:
		return link.AttachRawTracepoint(link.RawTracepointOptions{Name: h.Target, Program: p})
	case SyscallTracepoint:
		if err := tracefs.Mount(); err != nil {
			return nil, err
		}
		return link.Tracepoint("syscalls", h.Target, p, nil)
	case Tracing:
		return link.AttachTracing(link.TracingOptions{Program: p})
	case FmodRet:
		return link.AttachTracing(link.TracingOptions{Program: p, AttachType: ebpf.AttachModifyReturn})
	case LSM:
		return link.AttachLSM(link.LSMOptions{Program: p})
	case Kprobe:
		return link.Kprobe(h.Target, p, nil)
	case Kretprobe:
		return link.Kretprobe(h.Target, p, nil)
	}
	return nil, fmt.Errorf("hook %s: unknown kind of attachment %d", h.Prog, h.How)
}

// Attach attaches each hook's program of b.Coll, in order, adding the
// links to b.Links and the programs to b.Progs (unless there already:
// a sensor that starts unarmed lists them at Start). A program the collection
// lacks is skipped (left out by Object.Programs). The first failure is
// returned, through explain when not nil, with the links made so far
// left in b.Links for the caller's Close or Detach.
func (b *Base) Attach(hooks []Hook, explain func(Hook, *ebpf.Program, error) error) error {
	for _, h := range hooks {
		p := b.Coll.Programs[h.Prog]
		if p == nil {
			continue
		}
		l, err := h.Link(p)
		if err != nil {
			if explain != nil {
				return explain(h, p, err)
			}
			return fmt.Errorf("attaching to %s: %w", h.Target, err)
		}
		b.Links = append(b.Links, l)
		if !slices.Contains(b.Progs, p) {
			b.Progs = append(b.Progs, p)
		}
	}
	return nil
}

// Programs lists the programs of hooks.
func Programs(hooks ...[]Hook) []string {
	var names []string
	for _, hs := range hooks {
		for _, h := range hs {
			names = append(names, h.Prog)
		}
	}
	return names
}

// Failure is a build of a sensor that did not start here, and why: what
// Features and the logs say of the better builds not chosen.
type Failure struct {
	Build string
	Err   error
}

func (f Failure) Error() string { return f.Build + ": " + f.Err.Error() }
func (f Failure) Unwrap() error { return f.Err }

// Choose starts the first of builds, in order of preference, that starts
// here (only want, unless it is ""), and returns it with the failures of
// those tried before it. start must leave nothing behind when it fails.
// A failure that is not the kernel's lack of something (fatal says so,
// when not nil) ends the search and is returned; none starting, it
// returns "" and every failure.
func Choose[B ~string](builds []B, want B, start func(B) error, fatal func(error) bool) (B, []Failure, error) {
	var failed []Failure
	for _, b := range builds {
		if want != "" && b != want {
			continue
		}
		err := start(b)
		if err == nil {
			return b, failed, nil
		}
		if fatal != nil && fatal(err) {
			return "", failed, err
		}
		failed = append(failed, Failure{Build: string(b), Err: err})
	}
	return "", failed, nil
}

// Join joins failures into one error, one line each ("build: reason");
// nil for none.
func Join(failed []Failure) error {
	errs := make([]error, len(failed))
	for i, f := range failed {
		errs[i] = f
	}
	return errors.Join(errs...)
}

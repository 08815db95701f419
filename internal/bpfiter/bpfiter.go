package bpfiter

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"sync"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
)

// Map is one map as the bpf_map iterator gives it: what bpf_map_info also
// says, read from the kernel's struct bpf_map.
type Map struct {
	ID, Type, KeySize, ValueSize, MaxEntries, Flags uint32
	Name                                            string
}

// Prog is one program as the bpf_prog iterator gives it.
type Prog struct {
	ID, Type uint32
	Name     string
}

// The records iterids.c writes: struct iter_map and struct iter_prog.
const (
	mapRecord  = 6*4 + 16
	progRecord = 2*4 + 16
)

// Lister holds the loaded iterators; each Maps or Progs call is one walk.
// A nil program means the kernel refused that iterator (MapsErr,
// ProgsErr say why).
type Lister struct {
	mu                sync.Mutex
	maps, progs       *link.Iter
	mapProg, progProg *ebpf.Program
	MapsErr, ProgsErr error
	buf               bytes.Buffer
}

// ErrUnavailable wraps why an iterator is not there.
var ErrUnavailable = errors.New("BPF iterator unavailable")

// Open loads and attaches both iterators. Each one that fails (a kernel
// before 5.8 for bpf_map, 5.9 for bpf_prog, or one that refuses tracing
// programs) is left out, with its error; Open fails only when both do.
func Open() (*Lister, error) {
	spec, err := loadIterids()
	if err != nil {
		return nil, err
	}
	l := &Lister{}
	l.mapProg, l.maps, l.MapsErr = attach(spec, "list_maps")
	l.progProg, l.progs, l.ProgsErr = attach(spec, "list_progs")
	if l.maps == nil && l.progs == nil {
		return nil, fmt.Errorf("%w: bpf_map: %v; bpf_prog: %v", ErrUnavailable, l.MapsErr, l.ProgsErr)
	}
	return l, nil
}

func attach(spec *ebpf.CollectionSpec, name string) (*ebpf.Program, *link.Iter, error) {
	p, err := ebpf.NewProgram(spec.Programs[name])
	if err != nil {
		return nil, nil, fmt.Errorf("%w: loading the %s iterator: %v", ErrUnavailable, spec.Programs[name].AttachTo, err)
	}
	l, err := link.AttachIter(link.IterOptions{Program: p})
	if err != nil {
		p.Close()
		return nil, nil, fmt.Errorf("%w: attaching the %s iterator: %v", ErrUnavailable, spec.Programs[name].AttachTo, err)
	}
	return p, l, nil
}

// Close detaches and unloads the iterators.
func (l *Lister) Close() {
	for _, it := range []*link.Iter{l.maps, l.progs} {
		if it != nil {
			it.Close()
		}
	}
	for _, p := range []*ebpf.Program{l.mapProg, l.progProg} {
		if p != nil {
			p.Close()
		}
	}
}

// HasMaps and HasProgs say whether each iterator is there.
func (l *Lister) HasMaps() bool  { return l != nil && l.maps != nil }
func (l *Lister) HasProgs() bool { return l != nil && l.progs != nil }

// walk runs it once and returns what it wrote, in l.buf (valid until the
// next walk).
func (l *Lister) walk(it *link.Iter, record int) ([]byte, error) {
	rc, err := it.Open()
	if err != nil {
		return nil, fmt.Errorf("running the iterator: %w", err)
	}
	defer rc.Close()
	l.buf.Reset()
	if _, err := l.buf.ReadFrom(rc); err != nil {
		return nil, fmt.Errorf("reading the iterator: %w", err)
	}
	b := l.buf.Bytes()
	if len(b)%record != 0 {
		return nil, fmt.Errorf("the iterator wrote %d bytes, not records of %d", len(b), record)
	}
	return b, nil
}

// Maps lists every map the kernel holds, in id order.
func (l *Lister) Maps() ([]Map, error) {
	if !l.HasMaps() {
		return nil, l.MapsErr
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	b, err := l.walk(l.maps, mapRecord)
	if err != nil {
		return nil, err
	}
	out := make([]Map, 0, len(b)/mapRecord)
	u := binary.NativeEndian.Uint32
	for ; len(b) > 0; b = b[mapRecord:] {
		out = append(out, Map{ID: u(b), Type: u(b[4:]), KeySize: u(b[8:]), ValueSize: u(b[12:]),
			MaxEntries: u(b[16:]), Flags: u(b[20:]), Name: cstring(b[24:40])})
	}
	return out, nil
}

// Progs lists every program the kernel holds, in id order.
func (l *Lister) Progs() ([]Prog, error) {
	if !l.HasProgs() {
		return nil, l.ProgsErr
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	b, err := l.walk(l.progs, progRecord)
	if err != nil {
		return nil, err
	}
	out := make([]Prog, 0, len(b)/progRecord)
	u := binary.NativeEndian.Uint32
	for ; len(b) > 0; b = b[progRecord:] {
		out = append(out, Prog{ID: u(b), Type: u(b[4:]), Name: cstring(b[8:24])})
	}
	return out, nil
}

func cstring(b []byte) string {
	if i := bytes.IndexByte(b, 0); i >= 0 {
		b = b[:i]
	}
	return string(b)
}

var shared struct {
	sync.Once
	l   *Lister
	err error
}

// Shared is the process's Lister, opened at the first call and kept:
// loading costs more than a walk. Its error is the first call's.
func Shared() (*Lister, error) {
	shared.Do(func() { shared.l, shared.err = Open() })
	return shared.l, shared.err
}

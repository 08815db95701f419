// Package writers loads BPF programs that write maps from inside the
// kernel, through the map helpers (bpf/writers.c): the writes the
// kernel-side sensor exists to report. Tests use it; bpfmon does not.
package writers

import (
	"encoding/binary"
	"fmt"
	"slices"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/rlimit"
)

// Socket filter programs, each writing one kind of map (see bpf/writers.c).
const (
	UpdateArray     = "update_array"
	UpdatePcpuArray = "update_pcpu_array"
	UpdateHash      = "update_hash"
	UpdatePcpuHash  = "update_pcpu_hash"
	UpdateLRU       = "update_lru"
	UpdateLRUPcpu   = "update_lru_pcpu"
	UpdateLPM       = "update_lpm"
	DeleteHash      = "delete_hash"    // deletes the key from w_hash and w_lpm
	PushPop         = "push_pop"       // pushes onto w_queue and w_stack, pops both
	UpdateGeneric   = "update_generic" // w_hash and w_array through the generic helper
)

// Set is a loaded set of writer programs and their maps.
type Set struct {
	coll *ebpf.Collection
}

// Load loads the socket filters and their maps.
func Load() (*Set, error) { return LoadWith(nil) }

// LoadWith loads the socket filters with some of their maps replaced, by
// name (w_hash, ...): new programs writing maps that already exist. With
// only, just those programs are loaded.
func LoadWith(maps map[string]*ebpf.Map, only ...string) (*Set, error) {
	_ = rlimit.RemoveMemlock()
	spec, err := loadWriters()
	if err != nil {
		return nil, err
	}
	if len(only) > 0 {
		for name := range spec.Programs {
			if !slices.Contains(only, name) {
				delete(spec.Programs, name)
			}
		}
	}
	// The task storage writer and its map are LoadTaskStorage's: kernels
	// before 5.11 have no such map, and the socket filters need none.
	delete(spec.Programs, writersProgTaskStorage)
	delete(spec.Maps, writersMapW_task)
	coll, err := ebpf.NewCollectionWithOptions(spec, ebpf.CollectionOptions{MapReplacements: maps})
	if err != nil {
		return nil, fmt.Errorf("loading the writer programs: %w", err)
	}
	return &Set{coll: coll}, nil
}

// Map returns one of the set's maps (w_array, w_hash, ...).
func (s *Set) Map(name string) *ebpf.Map { return s.coll.Maps[name] }

// Program returns one of the set's programs.
func (s *Set) Program(name string) *ebpf.Program { return s.coll.Programs[name] }

// Packet is what the socket filters read: key and value after the
// Ethernet header that BPF_PROG_TEST_RUN strips.
func Packet(key uint32, value uint64) []byte {
	p := make([]byte, 14+4+8)
	binary.LittleEndian.PutUint32(p[14:], key)
	binary.LittleEndian.PutUint64(p[18:], value)
	return p
}

// Run runs program prog once with BPF_PROG_TEST_RUN on key and value.
func (s *Set) Run(prog string, key uint32, value uint64) error {
	p := s.coll.Programs[prog]
	if p == nil {
		return fmt.Errorf("no program %s", prog)
	}
	ret, err := p.Run(&ebpf.RunOptions{Data: Packet(key, value)})
	if err != nil {
		return fmt.Errorf("running %s: %w", prog, err)
	}
	if ret != 0 {
		return fmt.Errorf("%s returned %d", prog, ret)
	}
	return nil
}

// Close unloads everything.
func (s *Set) Close() { s.coll.Close() }

// TaskStorage is the tracing program that creates (and optionally
// deletes) an element of a task-storage map on its target thread's next
// system call.
type TaskStorage struct {
	coll *ebpf.Collection
}

// LoadTaskStorage loads it with target thread tid and value; with del,
// the element is deleted right after it is created. Attach it with
// Program and link.AttachTracing.
func LoadTaskStorage(tid uint32, value uint64, del bool) (*TaskStorage, error) {
	_ = rlimit.RemoveMemlock()
	spec, err := loadWriters()
	if err != nil {
		return nil, err
	}
	for name := range spec.Programs {
		if name != writersProgTaskStorage {
			delete(spec.Programs, name)
		}
	}
	d := uint32(0)
	if del {
		d = 1
	}
	var vars writersVariableSpecs
	if err := spec.Assign(&vars); err != nil {
		return nil, err
	}
	for _, v := range []struct {
		spec  *ebpf.VariableSpec
		value any
	}{{vars.TargetTid, tid}, {vars.TaskValue, value}, {vars.DeleteToo, d}} {
		if err := v.spec.Set(v.value); err != nil {
			return nil, err
		}
	}
	coll, err := ebpf.NewCollection(spec)
	if err != nil {
		return nil, fmt.Errorf("loading the task storage writer: %w", err)
	}
	return &TaskStorage{coll: coll}, nil
}

// Program is the tp_btf program.
func (t *TaskStorage) Program() *ebpf.Program { return t.coll.Programs[writersProgTaskStorage] }

// Map is the task storage map.
func (t *TaskStorage) Map() *ebpf.Map { return t.coll.Maps[writersMapW_task] }

// Close unloads it.
func (t *TaskStorage) Close() { t.coll.Close() }

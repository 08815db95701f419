package inventory

import (
	"errors"
	"fmt"

	"github.com/bpfmon/bpfmon/internal/bpfiter"
	"github.com/bpfmon/bpfmon/internal/names"
)

// ViewProgIterator names the bpf_prog iterator's view of programs.
const ViewProgIterator = "bpf_prog_iter"

// iterView is what the bpf_map and bpf_prog iterators listed in one pass
// of Collect: the kernel's own idr, walked without GET_NEXT_ID or
// GET_FD_BY_ID. A nil map means that iterator is not there (a kernel
// before 5.8/5.9, or one refusing tracing programs): the view is left out
// of the comparison, not counted as missing anything.
type iterView struct {
	l     *bpfiter.Lister
	maps  map[uint32]bpfiter.Map
	progs map[uint32]bpfiter.Prog
	// again are the maps and programs of a second walk, after the
	// listing was asked again about the candidates (nil until then).
	againMaps  map[uint32]bpfiter.Map
	againProgs map[uint32]bpfiter.Prog
	errs       []error
}

// readIterView walks both iterators once. Without them (skip, or the
// kernel lacks them) it is empty, with no error: bpfmon features says so.
func readIterView(skip bool) *iterView {
	v := &iterView{}
	if skip {
		return v
	}
	l, err := bpfiter.Shared()
	if err != nil {
		if !errors.Is(err, bpfiter.ErrUnavailable) {
			v.errs = append(v.errs, fmt.Errorf("cross-view: the BPF iterators: %w", err))
		}
		return v
	}
	v.l = l
	v.maps, v.progs = v.walk(true, true)
	return v
}

// walk runs the iterators asked for that are there; a failing walk is an
// error, and its view is left out (nil).
func (v *iterView) walk(wantMaps, wantProgs bool) (map[uint32]bpfiter.Map, map[uint32]bpfiter.Prog) {
	var (
		maps  map[uint32]bpfiter.Map
		progs map[uint32]bpfiter.Prog
	)
	if wantMaps && v.l.HasMaps() {
		ms, err := v.l.Maps()
		if err != nil {
			v.errs = append(v.errs, fmt.Errorf("cross-view: the bpf_map iterator: %w", err))
		} else {
			maps = make(map[uint32]bpfiter.Map, len(ms))
			for _, m := range ms {
				maps[m.ID] = m
			}
		}
	}
	if wantProgs && v.l.HasProgs() {
		ps, err := v.l.Progs()
		if err != nil {
			v.errs = append(v.errs, fmt.Errorf("cross-view: the bpf_prog iterator: %w", err))
		} else {
			progs = make(map[uint32]bpfiter.Prog, len(ps))
			for _, p := range ps {
				progs[p.ID] = p
			}
		}
	}
	return maps, progs
}

// The second walks, once per pass each, after the listing was asked again
// about the candidates (and only then: an object freed between a walk
// made earlier and the recheck would look hidden): an object in neither
// walk's reach now was freed during the pass; one there now exists while
// the listing misses it.

// mapsAgain walks the bpf_map iterator the second time.
func (v *iterView) mapsAgain() {
	if v.againMaps == nil {
		v.againMaps, _ = v.walk(true, false)
		if v.againMaps == nil {
			v.againMaps = map[uint32]bpfiter.Map{}
		}
	}
}

// progsAgain walks the bpf_prog iterator the second time.
func (v *iterView) progsAgain() {
	if v.againProgs == nil {
		_, v.againProgs = v.walk(false, true)
		if v.againProgs == nil {
			v.againProgs = map[uint32]bpfiter.Prog{}
		}
	}
}

// hasMaps says whether the bpf_map iterator view is part of this pass.
func (v *iterView) hasMaps() bool { return v != nil && v.maps != nil }

// mapNow is the map as the second walk gives it: ok is false when it is
// gone (or there is no such view).
func (v *iterView) mapNow(id uint32) (bpfiter.Map, bool) {
	if !v.hasMaps() {
		return bpfiter.Map{}, false
	}
	v.mapsAgain()
	m, ok := v.againMaps[id]
	return m, ok
}

// fillFromIter fills m from the bpf_map iterator's record of it: the map
// exists, but no view gives a way to open it, so it cannot be read and
// its frozen state and memory are unknown.
func fillFromIter(m *Map, r bpfiter.Map) {
	m.Name = r.Name
	m.Type = names.MapType(r.Type)
	m.TypeID, m.KeySize, m.ValueSize, m.MaxEntries, m.Flags = r.Type, r.KeySize, r.ValueSize, r.MaxEntries, r.Flags
	m.FlagNames = names.MapFlags(r.Flags, false)
	m.UserWritable, m.WritableWhy = false, "unknown: only the bpf_map iterator reaches the map, which gives no way to open it"
}

// Package inventory lists every BPF map on the host with the context that
// makes an event about it actionable: which programs use it, which
// processes hold an fd to it (and whether that fd can write), where it is
// pinned, and whether user space could write it now.
//
// It exists because an event such as "pid P wrote map 87" says little on
// its own: whether map 87 is Cilium's policy map or a test's scratch array,
// who else holds it, and whether it should have been frozen decide what to
// do about it. bpftool shows these pieces one map at a time and leaves the
// joining to the reader; Collect gathers them for all maps at once, with one
// pass over /proc, one over the programs, one over the maps and one over
// every mounted bpffs, so that it stays fast on hosts with thousands of
// maps and processes.
//
// Everything it reads changes while it reads: processes exit, fds close,
// maps are freed, pins are removed. Such disappearances are not errors; the
// result is a best-effort snapshot.
package inventory

import (
	"errors"
	"fmt"
	"os"
	"slices"
	"strconv"
	"sync"

	"golang.org/x/sys/unix"

	"github.com/bpfmon/bpfmon/internal/bpfsys"
	"github.com/bpfmon/bpfmon/internal/names"
)

// Program is a loaded BPF program that uses a map.
type Program struct {
	ID   uint32 `json:"id"`
	Name string `json:"name"`
	Type string `json:"type"` // bpftool's name, e.g. "socket_filter"
	// Risky is what lets the program rewrite what user space reads or
	// what the kernel returns (bpfsys.Risky*, comma-separated: a string
	// keeps Program comparable), from its instructions.
	Risky string `json:"risky,omitempty"`
	// Attachments are where the program is attached (attach.go), when
	// Options.Attachments asked for them; sorted by Point.
	Attachments []Attachment `json:"attachments,omitempty"`
}

// Holder is one fd of a process that refers to a map. A process with two
// fds to the same map is two holders.
type Holder struct {
	PID  uint32 `json:"pid"`
	Comm string `json:"comm"`
	Exe  string `json:"exe,omitempty"`
	FD   int    `json:"fd"`
	// Writable is whether the fd was opened for writing (its fdinfo flags'
	// access mode is not O_RDONLY): the kernel refuses writes through a
	// read-only map fd.
	Writable bool `json:"writable"`
}

// Map is one BPF map and its context.
type Map struct {
	ID         uint32 `json:"id"`
	Name       string `json:"name"`
	Type       string `json:"type"` // bpftool's name, e.g. "hash"
	TypeID     uint32 `json:"type_id"`
	KeySize    uint32 `json:"key_size"`
	ValueSize  uint32 `json:"value_size"`
	MaxEntries uint32 `json:"max_entries"`
	Flags      uint32 `json:"flags"`
	// FlagNames names the BPF_F_* bits of Flags ("no_prealloc", "rdonly",
	// "mmapable", ...; an unknown bit as "0x..."), plus "frozen" when the
	// map is frozen. Never nil.
	FlagNames   []string `json:"flag_names"`
	Frozen      bool     `json:"frozen"`
	MemoryBytes uint64   `json:"memory_bytes"` // memlock from fdinfo
	BTFID       uint32   `json:"btf_id"`
	// Programs are the loaded programs whose map ids include this map,
	// sorted by id. Never nil.
	Programs []Program `json:"programs"`
	// Holders are the fds to this map of every process but the caller,
	// sorted by pid and fd. Never nil.
	Holders []Holder `json:"holders"`
	// Pins are the paths where the map is pinned, one per pin per bpffs
	// instance, sorted. Never nil.
	Pins []string `json:"pins"`
	// UserWritable is whether a process with CAP_BPF could change the map
	// now; WritableWhy says why or why not.
	UserWritable bool   `json:"user_writable"`
	WritableWhy  string `json:"writable_why"`
	// Hidden is set for a map that bpf(2)'s listing skips or refuses
	// while other views show it (crossview.go): a rootkit's.
	Hidden *HiddenView `json:"hidden,omitempty"`
}

// Options selects what Collect lists. Empty filters select everything;
// filters combine with AND.
type Options struct {
	IDs []uint32 // only these map ids
	// Names lists only maps with these names. Names are chosen by whoever
	// creates a map and are not unique: this is a display filter, not an
	// identity.
	Names []string
	PIDs  []uint32 // only maps that one of these processes holds an fd to

	SkipPins    bool // do not walk bpffs: Pins stays empty
	SkipHolders bool // do not report holders (PIDs still filters)

	// Known are maps listed before, by id: those still there are not read
	// again (a map's attributes do not change, but for frozen and memory,
	// which keep their earlier values); their programs, pins and holders
	// are. On a host with thousands of maps a refresh then costs a walk of
	// the ids, not three syscalls and a file read per map.
	Known map[uint32]Map
	// MaxMaps, when not 0, lists at most this many maps (the lowest ids):
	// a watch's bound on what a host's maps cost it. Truncated says
	// whether it bit.
	MaxMaps   int
	Truncated *bool

	// CrossViewFDs reads every process's fds for the cross-view check
	// (maps that bpf(2)'s listing misses) even with SkipHolders. Without
	// it and with SkipHolders, the check compares the listing with pins
	// and programs' map ids only.
	CrossViewFDs bool
	// Created are the ids of maps that bpfmon's sensors saw created: a
	// view for the cross-view check (a map listed nowhere else that no
	// view can open is not reported).
	Created []uint32
	// Attachments lists each program's attachments (links, XDP in
	// every network namespace, cgroups): Program.Attachments.
	Attachments bool
	// NoIterators leaves the bpf_map and bpf_prog iterators out of the
	// cross-view check (crossview_iter.go): the check as it was before
	// them, for the benchmarks.
	NoIterators bool
	// Loaded are the ids of programs that bpfmon's sensors saw loaded: a
	// view for the check of hidden programs.
	Loaded []uint32
	// HiddenProgs, when not nil, receives the programs that bpf(2)'s
	// listing misses while other views show them (hiddenprogs.go); only
	// a listing of the whole host (no IDs, Names, PIDs) looks for them.
	HiddenProgs *[]HiddenProg
}

// Collect lists the maps selected by opts, sorted by id. The []error holds
// problems that left the result incomplete without stopping it (a pin that
// could not be opened, fd tables we may not read); objects that vanish
// while Collect runs are skipped silently. The error is fatal: the maps
// could not be listed at all (typically missing privileges).
func Collect(opts Options) ([]Map, []error, error) {
	self := os.Getpid()
	var (
		wg                          sync.WaitGroup
		held                        []heldFD
		heldProgs                   []heldProg
		progPins                    map[uint32][]string
		pins                        map[uint32][]string
		progs                       map[uint32][]Program
		attach                      map[uint32][]Attachment
		holderErrs, pinErrs, prErrs []error
		attachErrs                  []error
	)
	filtered := len(opts.IDs) > 0 || len(opts.Names) > 0 || len(opts.PIDs) > 0
	if !opts.SkipHolders || len(opts.PIDs) > 0 || (opts.CrossViewFDs && !filtered) {
		var pids []uint32 // nil: every process
		if opts.SkipHolders {
			pids = opts.PIDs
		}
		wg.Go(func() { held, heldProgs, _, holderErrs = walkHolders(self, pids) })
	}
	if !opts.SkipPins {
		wg.Go(func() { pins, progPins, pinErrs = walkPins() })
	}
	wg.Go(func() { progs, prErrs = walkPrograms() })
	if opts.Attachments {
		wg.Go(func() { attach, attachErrs = Attachments() })
	}
	var iv *iterView
	if !filtered {
		wg.Go(func() { iv = readIterView(opts.NoIterators) })
	}
	maps, errs, err := walkMaps(opts)
	wg.Wait()
	if err != nil {
		return nil, nil, err
	}
	errs = append(errs, prErrs...)
	errs = append(errs, holderErrs...)
	errs = append(errs, pinErrs...)
	errs = append(errs, attachErrs...)

	index := make(map[uint32]int, len(maps))
	for i := range maps {
		index[maps[i].ID] = i
	}
	for _, h := range held {
		if i, ok := index[h.mapID]; ok {
			maps[i].Holders = append(maps[i].Holders, h.h)
		}
	}
	for i := range maps {
		m := &maps[i]
		if p := progs[m.ID]; len(p) > 0 {
			m.Programs = p
			if attach != nil {
				m.Programs = slices.Clone(p) // shared by every map the program uses
				for j := range m.Programs {
					m.Programs[j].Attachments = attach[m.Programs[j].ID]
				}
			}
		}
		if p := pins[m.ID]; len(p) > 0 {
			m.Pins = p
			slices.Sort(m.Pins)
		}
		slices.SortFunc(m.Holders, func(a, b Holder) int {
			if a.PID != b.PID {
				return cmpU32(a.PID, b.PID)
			}
			return a.FD - b.FD
		})
	}
	if !filtered {
		var cvErrs []error
		maps, cvErrs = crossView(maps, held, pins, progs, opts.Created, iv)
		errs = append(errs, cvErrs...)
		if opts.HiddenProgs != nil {
			*opts.HiddenProgs = hiddenPrograms(iv, opts.Loaded, progViews{held: heldProgs, pins: progPins})
		}
		errs = append(errs, iv.errs...)
	}
	if len(opts.PIDs) > 0 {
		maps = slices.DeleteFunc(maps, func(m Map) bool {
			return !slices.ContainsFunc(m.Holders, func(h Holder) bool { return slices.Contains(opts.PIDs, h.PID) })
		})
	}
	if opts.SkipHolders {
		for i := range maps {
			maps[i].Holders = []Holder{}
		}
	}
	return maps, errs, nil
}

func cmpU32(a, b uint32) int {
	if a < b {
		return -1
	}
	return 1
}

// walkMaps lists the maps selected by opts.IDs and opts.Names, sorted by
// id, with what the maps themselves say (no programs, holders or pins).
func walkMaps(opts Options) ([]Map, []error, error) {
	var wanted map[string]bool
	if len(opts.Names) > 0 {
		wanted = make(map[string]bool, len(opts.Names))
		for _, n := range opts.Names {
			wanted[n] = true
		}
	}
	var (
		maps []Map
		errs []error
		s    procScratch
	)
	add := func(id uint32, explicit bool) {
		if m, ok := opts.Known[id]; ok && (wanted == nil || wanted[m.Name]) {
			m.Programs, m.Holders, m.Pins = []Program{}, []Holder{}, []string{}
			maps = append(maps, m)
			return
		}
		fd, err := bpfsys.MapFDByID(id, unix.BPF_F_RDONLY)
		if err != nil {
			if !vanished(err) {
				errs = append(errs, fmt.Errorf("map %d: opening by id: %w", id, err))
			} else if explicit {
				errs = append(errs, fmt.Errorf("map %d: no such map", id))
			}
			return
		}
		defer unix.Close(fd)
		info, err := bpfsys.GetMapInfo(fd)
		if err != nil {
			errs = append(errs, fmt.Errorf("map %d: %w", id, err))
			return
		}
		name := bpfsys.CString(info.Name[:])
		if wanted != nil && !wanted[name] {
			return
		}
		var fi fdinfo
		if b, ok := s.readFile("/proc/self/fdinfo/" + strconv.Itoa(fd)); ok {
			fi = parseFdinfo(b)
		} else {
			errs = append(errs, fmt.Errorf("map %d: reading its fdinfo failed: memory and frozen state unknown", id))
		}
		writable, why := writability(info.MapFlags, fi.frozen)
		maps = append(maps, Map{
			ID:           info.ID,
			Name:         name,
			Type:         names.MapType(info.Type),
			TypeID:       info.Type,
			KeySize:      info.KeySize,
			ValueSize:    info.ValueSize,
			MaxEntries:   info.MaxEntries,
			Flags:        info.MapFlags,
			FlagNames:    names.MapFlags(info.MapFlags, fi.frozen),
			Frozen:       fi.frozen,
			MemoryBytes:  fi.memlock,
			BTFID:        info.BTFID,
			Programs:     []Program{},
			Holders:      []Holder{},
			Pins:         []string{},
			UserWritable: writable,
			WritableWhy:  why,
		})
	}
	if len(opts.IDs) > 0 {
		ids := slices.Clone(opts.IDs)
		slices.Sort(ids)
		for _, id := range slices.Compact(ids) {
			add(id, true)
		}
		return maps, errs, nil
	}
	for id := uint32(0); ; {
		next, err := bpfsys.NextMapID(id)
		if errors.Is(err, unix.ENOENT) {
			return maps, errs, nil
		}
		if err != nil {
			return nil, errs, fmt.Errorf("listing maps: %w", err)
		}
		if opts.MaxMaps > 0 && len(maps) >= opts.MaxMaps {
			if opts.Truncated != nil {
				*opts.Truncated = true
			}
			return maps, errs, nil
		}
		add(next, false)
		id = next
	}
}

// walkPrograms returns, by map id, the programs that use each map.
func walkPrograms() (map[uint32][]Program, []error) {
	byMap := map[uint32][]Program{}
	var (
		errs []error
		ids  = make([]uint32, 0, 64)
		// listed are the programs read, for the cache of their
		// instructions' risky helpers.
		listed = map[uint32]bool{}
	)
	for id := uint32(0); ; {
		next, err := bpfsys.NextProgID(id)
		if errors.Is(err, unix.ENOENT) {
			pruneRisky(listed)
			return byMap, errs
		}
		if err != nil {
			return byMap, append(errs, fmt.Errorf("listing programs: %w", err))
		}
		id = next
		fd, err := bpfsys.ProgFDByID(id)
		if err != nil {
			if !vanished(err) {
				errs = append(errs, fmt.Errorf("program %d: opening by id: %w", id, err))
			}
			continue
		}
		var info bpfsys.ProgInfo
		info, ids, err = bpfsys.GetProgInfo(fd, ids)
		var risky string
		if err == nil {
			listed[id] = true
			risky = riskyOf(id, fd)
		}
		unix.Close(fd)
		if err != nil {
			errs = append(errs, fmt.Errorf("program %d: %w", id, err))
			continue
		}
		p := Program{ID: info.ID, Name: bpfsys.CString(info.Name[:]), Type: names.ProgType(info.Type), Risky: risky}
		for _, m := range ids {
			if l := byMap[m]; len(l) == 0 || l[len(l)-1].ID != p.ID {
				byMap[m] = append(l, p)
			}
		}
	}
}

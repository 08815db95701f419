package watch

import (
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/bpfmon/bpfmon/internal/bpfsys"
	"github.com/bpfmon/bpfmon/internal/event"
	"github.com/bpfmon/bpfmon/internal/inventory"
)

// crossViewFDsEvery is how often a refresh also reads every process's fds
// for the cross-view check (inventory.Options.CrossViewFDs): the check
// compares bpf(2)'s listing with pins and programs' map ids at every
// refresh, and with fdinfo every 5 minutes. That walk of /proc costs
// 0.2 s of CPU with 10,000 map fds held (docs/benchmarks.md): once a minute it
// would be 0.3% of a core, a third of the idle budget.
const crossViewFDsEvery = 5 * time.Minute

// createdMax bounds the map ids the syscall sensor saw created that the
// cross-view check keeps as a view: a stranger creating maps in a loop
// pushes on it, and past it the oldest are forgotten (they are still in
// the other views).
const createdMax = 4096

// crossView feeds the inventory's cross-view check what only a watch
// knows: the maps its sensor saw created, and when fds are due.
type crossView struct {
	mu      sync.Mutex
	created []uint32
	// loaded are the programs the sensor saw loaded, bounded and kept as
	// created is; hiddenProgs what the last read found hidden.
	loaded      []uint32
	hiddenProgs []inventory.HiddenProg
	// hiddenMaps are the maps the last read found hidden, each with the
	// latest way a view gave to open it (a pin, a holder's fd: the fdinfo
	// view is read only every crossViewFDsEvery), for the scanner.
	hiddenMaps map[uint32]*inventory.HiddenView
	lastFDs    time.Time
	now        func() time.Time
}

// sawCreated records a successful map_create or prog_load.
func (cv *crossView) sawCreated(ev *event.Event) {
	if ev.HasResult && ev.Result < 0 {
		return
	}
	var ids *[]uint32
	var id uint32
	switch {
	case ev.Type == event.MapCreate && ev.Map != nil:
		ids, id = &cv.created, ev.Map.ID
	case ev.Type == event.ProgLoad && ev.Prog != nil && ev.Source != event.SourceInventory:
		ids, id = &cv.loaded, ev.Prog.ID
	}
	if ids == nil || id == 0 {
		return
	}
	cv.mu.Lock()
	defer cv.mu.Unlock()
	if len(*ids) >= createdMax {
		*ids = append((*ids)[:0], (*ids)[len(*ids)-createdMax/2:]...)
	}
	*ids = append(*ids, id)
}

// takeHiddenProgs returns the hidden programs the last read found.
func (cv *crossView) takeHiddenProgs() []inventory.HiddenProg {
	cv.mu.Lock()
	defer cv.mu.Unlock()
	return cv.hiddenProgs
}

// collect wraps an inventory read with the cross-view's options. A
// created id is kept while its map exists (listed, or hidden): a map the
// listing had before a rootkit began to hide it is still one the sensor
// saw created. A read that does not have it (freed) drops it.
func (cv *crossView) collect(read func(inventory.Options) ([]inventory.Map, error)) func(inventory.Options) ([]inventory.Map, error) {
	return func(o inventory.Options) ([]inventory.Map, error) {
		cv.mu.Lock()
		now := cv.now()
		if o.SkipHolders && now.Sub(cv.lastFDs) >= crossViewFDsEvery {
			o.CrossViewFDs = true
			cv.lastFDs = now
		} else if !o.SkipHolders {
			cv.lastFDs = now // the holders walk is the fdinfo view
		}
		o.Created = append([]uint32(nil), cv.created...)
		o.Loaded = append([]uint32(nil), cv.loaded...)
		var hidden []inventory.HiddenProg
		o.HiddenProgs = &hidden
		cv.mu.Unlock()
		maps, err := read(o)
		if err != nil {
			return maps, err
		}
		cv.keepLoaded(o.Loaded, hidden)
		cv.keepHiddenMaps(maps)
		keep := make(map[uint32]bool, len(maps))
		for _, m := range maps {
			keep[m.ID] = true
		}
		asked := make(map[uint32]bool, len(o.Created))
		for _, id := range o.Created {
			asked[id] = true
		}
		cv.mu.Lock()
		n := 0
		for _, id := range cv.created {
			if keep[id] || !asked[id] {
				cv.created[n] = id // hidden still, or created meanwhile
				n++
			}
		}
		cv.created = cv.created[:n]
		cv.mu.Unlock()
		return maps, nil
	}
}

// keepHiddenMaps remembers the hidden maps of a read of the whole host,
// keeping the earlier way to open one that this read found no way to.
func (cv *crossView) keepHiddenMaps(maps []inventory.Map) {
	cv.mu.Lock()
	defer cv.mu.Unlock()
	now := make(map[uint32]*inventory.HiddenView)
	for _, m := range maps {
		if m.Hidden == nil {
			continue
		}
		h := m.Hidden
		if old := cv.hiddenMaps[m.ID]; !h.CanOpen() && old.CanOpen() {
			h = old
		}
		now[m.ID] = h
	}
	cv.hiddenMaps = now
}

// hiddenMapIDs are the hidden maps that can be opened (scanner.Config).
func (cv *crossView) hiddenMapIDs() []uint32 {
	cv.mu.Lock()
	defer cv.mu.Unlock()
	var ids []uint32
	for id, h := range cv.hiddenMaps {
		if h.CanOpen() {
			ids = append(ids, id)
		}
	}
	slices.Sort(ids)
	return ids
}

// reopen opens hidden map id (scanner.Config.Reopen).
func (cv *crossView) reopen(id, openFlags uint32) (int, error) {
	cv.mu.Lock()
	h := cv.hiddenMaps[id]
	cv.mu.Unlock()
	if h == nil {
		return -1, fmt.Errorf("map %d: not a hidden map", id)
	}
	return h.Open(id, openFlags)
}

// keepLoaded keeps the loaded programs that are hidden (the sensor's
// record still corroborates them) or that were not asked about (loaded
// meanwhile), and forgets the rest: a listed program needs no record, and
// only the iterator (without which no program is found hidden) tells
// that a program the listing misses exists.
func (cv *crossView) keepLoaded(asked []uint32, hidden []inventory.HiddenProg) {
	cv.mu.Lock()
	defer cv.mu.Unlock()
	cv.hiddenProgs = hidden
	keep := map[uint32]bool{}
	for _, p := range hidden {
		keep[p.ID] = true
	}
	was := make(map[uint32]bool, len(asked))
	for _, id := range asked {
		was[id] = true
	}
	n := 0
	for _, id := range cv.loaded {
		if keep[id] || !was[id] {
			cv.loaded[n] = id
			n++
		}
	}
	cv.loaded = cv.loaded[:n]
}

// markRisky sets on a prog_load what lets its program rewrite what user
// space reads (the helpers it calls), read from the program's
// instructions while it is loaded: a program freed before that is
// marked unknown. A load is rare; this costs one read of its
// instructions, in the sink rather than the decoder, which must not call
// the kernel.
func markRisky(ev *event.Event) {
	prog := ev.Prog
	if ev.Type != event.ProgLoad || prog == nil || prog.ID == 0 || (ev.HasResult && ev.Result < 0) {
		return
	}
	risky, err := bpfsys.RiskyHelpersByID(prog.ID)
	prog.Risky = strings.Join(risky, ",")
	if err != nil {
		prog.RiskyUnknown = true
		if prog.Type == bpfsys.ProgTypeSyscall && risky == nil {
			prog.Risky = bpfsys.RiskySyscallProgram
		}
	}
}

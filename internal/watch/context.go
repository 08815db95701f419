package watch

import (
	"maps"
	"slices"
	"sync"
	"time"

	"github.com/bpfmon/bpfmon/internal/bpfsys"
	"github.com/bpfmon/bpfmon/internal/btffmt"
	"github.com/bpfmon/bpfmon/internal/event"
	"github.com/bpfmon/bpfmon/internal/inventory"
)

// mapContext adds to events what the inventory knows about their map: the
// programs using it, where it is pinned, and how the calling process relates
// to it (its creator, a process that held it when bpfmon started, or a
// newcomer). It is built from one inventory at start and refreshed in the
// background, never in the event path, so a host with thousands of maps
// cannot slow event delivery. Create and pin events update it at once.
type mapContext struct {
	mu       sync.Mutex
	programs map[uint32][]event.MapProgram
	pins     map[uint32][]string
	owners   map[uint32]map[uint32]string // map id -> pid -> "creator" or "holder"
	// known is the last inventory, by map id: a refresh reads only the
	// maps it does not list.
	known map[uint32]inventory.Map
	// iterated are the maps a BPF iterator walks; syscallProgs is set
	// while a program that can make bpf(2) calls from the kernel is
	// loaded.
	iterated     map[uint32]bool
	syscallProgs bool
	// written are the maps that a program loaded or an iterator
	// attached since start could write with no reported call. A refresh
	// does not forget them when the program or link is gone (it may have
	// written before the scanner's next read: attach, rewrite, detach);
	// only the map's end does.
	written map[uint32]bool
	// loads counts the program loads whose maps are not known yet;
	// refreshed is its value when the last finished refresh began.
	loads, refreshed int
	// truncated: the last inventory stopped at maxContextMaps; the maps
	// it did not list are not known to be quiet.
	truncated bool
	kick      chan struct{}
	// collect reads the inventory.
	collect func(inventory.Options) ([]inventory.Map, error)
	// observe, when set, sees every inventory read, the one at start (with
	// holders) first.
	observe func(maps []inventory.Map, atStart bool)
	// types renders keys and values by their maps' BTF, resolved once per
	// map; hint tells it what known says of a map.
	types *btffmt.Cache
	hint  func(m *event.Map) (btfID uint32, ok bool)
}

// Bounds on the map context, whatever the host holds (docs/memory.md):
// the maps listed (the lowest ids; events on the others carry no programs
// or pins, and they are never quiet), and per map the programs, pins and
// processes related to it that are kept. maxOwnerMaps bounds the maps
// with related processes: past it those of maps gone are dropped at once,
// and of the others the oldest ids.
const (
	maxContextMaps = 1 << 17
	maxPerMap      = 64
	maxOwnersPer   = 1024
	maxOwnerMaps   = 1 << 17
	// contextMapBytes is what the context holds per map listed, with a
	// program (not attached) and two pins (TestContextBounded): 131,072
	// maps, 81 MiB. Each attachment of a program adds about 200 bytes
	// (at most inventory.MaxAttachments a program).
	contextMapBytes = 656
)

// contextRefresh is how often the background refresh runs without a kick.
// What must not wait for it is learnt from events at once (creations,
// pins, program loads and the maps they use); on a host with 10,000 maps
// each refresh lists every map id, a tenth of bpfmon's idle CPU at 5 s.
const contextRefresh = 10 * time.Second

func newMapContext(stop <-chan struct{}, collect func(inventory.Options) ([]inventory.Map, error), observe func(maps []inventory.Map, atStart bool)) *mapContext {
	c := &mapContext{programs: map[uint32][]event.MapProgram{}, pins: map[uint32][]string{}, written: map[uint32]bool{},
		owners: map[uint32]map[uint32]string{}, kick: make(chan struct{}, 1), collect: collect, observe: observe}
	c.withTypes(btffmt.NewCache(nil))
	c.refresh(true)
	go func() {
		for {
			select {
			case <-stop:
				return
			case <-c.kick:
			case <-time.After(contextRefresh):
			}
			c.refresh(false)
			time.Sleep(time.Second) // at most one refresh a second
		}
	}()
	return c
}

// refresh reads the inventory; at start it also records each map's holders.
func (c *mapContext) refresh(atStart bool) {
	var truncated bool
	// Attachments: the alert engine diffs the protected programs' (the
	// attachment scan, internal/alert/attach.go).
	opts := inventory.Options{SkipHolders: !atStart, MaxMaps: maxContextMaps, Truncated: &truncated, Attachments: true}
	c.mu.Lock()
	if !atStart {
		opts.Known = c.known
	}
	loads := c.loads
	c.mu.Unlock()
	maps, err := c.collect(opts)
	if c.observe != nil && (err == nil || atStart) {
		c.observe(maps, atStart) // at start even with nothing: the observer starts from it
	}
	if err != nil {
		return
	}
	programs := map[uint32][]event.MapProgram{}
	pins := map[uint32][]string{}
	for _, m := range maps {
		for _, p := range m.Programs[:min(len(m.Programs), maxPerMap)] {
			programs[m.ID] = append(programs[m.ID], event.MapProgram{ID: p.ID, Name: p.Name})
		}
		pins[m.ID] = m.Pins[:min(len(m.Pins), maxPerMap):min(len(m.Pins), maxPerMap)]
	}
	known := make(map[uint32]inventory.Map, len(maps))
	for _, m := range maps {
		known[m.ID] = m
	}
	iterated, ierr := bpfsys.IteratedMaps()
	syscallProgs, serr := bpfsys.SyscallPrograms()
	c.mu.Lock()
	defer c.mu.Unlock()
	c.programs, c.pins, c.known, c.truncated = programs, pins, known, truncated
	if len(c.owners) > maxOwnerMaps {
		for id := range c.owners {
			if _, ok := known[id]; !ok {
				delete(c.owners, id) // the map is gone
			}
		}
		if len(c.owners) > maxOwnerMaps {
			ids := make([]uint32, 0, len(c.owners))
			for id := range c.owners {
				ids = append(ids, id)
			}
			slices.Sort(ids)
			for _, id := range ids[:len(ids)-maxOwnerMaps] {
				delete(c.owners, id)
			}
		}
	}
	for id := range c.written {
		if _, ok := known[id]; !ok {
			delete(c.written, id) // the map is gone
		}
	}
	c.refreshed = loads
	if c.types != nil {
		c.types.Refresh(func(id uint32) (uint32, bool) {
			k, ok := known[id]
			return k.BTFID, ok
		})
	}
	// Not knowing is not quiet.
	c.iterated, c.syscallProgs = iterated, syscallProgs || serr != nil
	if ierr != nil {
		c.iterated = nil
		c.syscallProgs = true
	}
	if atStart {
		for _, m := range maps {
			for _, h := range m.Holders {
				c.own(m.ID, h.PID, "holder")
			}
		}
	}
}

// withTypes has c render keys and values through cache.
func (c *mapContext) withTypes(cache *btffmt.Cache) {
	c.types = cache
	// Made once: a method value made per event would be an allocation.
	c.hint = func(m *event.Map) (uint32, bool) {
		k, ok := c.known[m.ID]
		if !ok || k.TypeID != m.Type || k.KeySize != m.KeySize || k.ValueSize != m.ValueSize ||
			k.MaxEntries != m.MaxEntries || k.Flags != m.Flags || k.Name != m.Name {
			return 0, false
		}
		return k.BTFID, true
	}
}

// renderer is l as an event.Renderer: nil, not a nil *Layout, when l is.
func renderer(l *btffmt.Layout) event.Renderer {
	if l == nil {
		return nil
	}
	return l
}

func (c *mapContext) own(mapID, pid uint32, how string) {
	if c.owners[mapID] == nil {
		c.owners[mapID] = map[uint32]string{}
	}
	if len(c.owners[mapID]) >= maxOwnersPer {
		return // more are newcomers: display only, the alert engine keeps its owners
	}
	if _, ok := c.owners[mapID][pid]; !ok {
		c.owners[mapID][pid] = how
	}
}

// enrich adds the context to ev, and learns from create and pin events.
func (c *mapContext) enrich(ev *event.Event) {
	ok := !ev.HasResult || ev.Result >= 0
	if ev.Type == event.ProgLoad && ok {
		c.loaded(ev)
		return
	}
	m := ev.Map
	if m == nil || m.ID == 0 {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	switch {
	case ev.Type == event.MapIterLink && ok:
		// Not quiet from now on: the iterator's program may rewrite it.
		if c.iterated != nil {
			c.iterated[m.ID] = true
		}
		c.written[m.ID] = true
		c.poke()
	case ev.Type == event.MapCreate && ok:
		if ev.Process != nil {
			c.own(m.ID, ev.Process.PID, "creator")
		}
		// A new map: neither what the cache nor what the last inventory
		// knew of the id is about it (the next refresh reads it again).
		// The refresh in progress reads c.known without the lock (it is
		// its Options.Known), so the map is replaced, never written in
		// place; an id is new almost always, and then nothing is copied.
		if _, ok := c.known[m.ID]; ok {
			known := maps.Clone(c.known)
			delete(known, m.ID)
			c.known = known
		}
		if c.types != nil {
			c.types.Forget(m.ID)
		}
	case ev.Type == event.ObjPin && ok && ev.Path != "" && !ev.HasPathFD:
		if len(c.pins[m.ID]) < maxPerMap {
			c.pins[m.ID] = append(c.pins[m.ID], ev.Path)
		}
		c.poke()
	}
	m.Programs = c.programs[m.ID]
	m.Pins = c.pins[m.ID]
	if c.types != nil && (ev.HasKey || ev.HasValue || ev.HasOldValue) {
		key, value := c.types.Lookup(m, c.hint)
		m.KeyType, m.ValueType = renderer(key), renderer(value)
	}
	if p := ev.Process; p != nil {
		if how, ok := c.owners[m.ID][p.PID]; ok {
			p.Relation = how
		} else {
			p.Relation = "newcomer"
		}
	}
}

// loaded learns from a program load: the maps it uses have a program from
// now on, before the next refresh lists it. Where the event could not say
// which maps (a list cut short, no program details), no map is quiet
// until a refresh that began after the load has finished.
func (c *mapContext) loaded(ev *event.Event) {
	c.mu.Lock()
	defer c.mu.Unlock()
	x := ev.Extra
	if ev.Prog == nil || x == nil || int(x.ProgMapCount) > len(x.ProgMaps) {
		c.loads++
		c.poke()
		return
	}
	for _, id := range x.ProgMaps {
		if len(c.programs[id]) < maxPerMap {
			c.programs[id] = append(c.programs[id], event.MapProgram{ID: ev.Prog.ID, Name: ev.Prog.Name})
		}
		c.written[id] = true
	}
	if ev.Prog.Type == bpfsys.ProgTypeSyscall {
		c.syscallProgs = true
	}
}

// quiet reports whether map id can change only through bpf(2), as far as
// the inventory knows: no program uses it, no iterator walks it, and no
// program that makes bpf(2) calls itself is loaded (scanner.Config.Quiet).
func (c *mapContext) quiet(id uint32) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, listed := c.known[id]; c.truncated && !listed {
		return false
	}
	return len(c.programs[id]) == 0 && c.iterated != nil && !c.iterated[id] && !c.written[id] && c.quietHostLocked()
}

// quietHost reports whether every change of a map, creation included,
// goes through bpf(2) from user space as far as the inventory knows (see
// scanner.Config.QuietHost).
func (c *mapContext) quietHost() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.quietHostLocked()
}

func (c *mapContext) quietHostLocked() bool {
	return c.iterated != nil && !c.syscallProgs && c.refreshed == c.loads
}

// poke asks for a refresh soon.
func (c *mapContext) poke() {
	select {
	case c.kick <- struct{}{}:
	default:
	}
}

package watch

import (
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
// 0.2 s of CPU with 10,000 map fds held (BENCHMARKS.md): once a minute it
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
	lastFDs time.Time
	now     func() time.Time
}

// sawCreated records a successful map_create.
func (cv *crossView) sawCreated(ev *event.Event) {
	if ev.Type != event.MapCreate || ev.Map == nil || ev.Map.ID == 0 || (ev.HasResult && ev.Result < 0) {
		return
	}
	cv.mu.Lock()
	defer cv.mu.Unlock()
	if len(cv.created) >= createdMax {
		cv.created = append(cv.created[:0], cv.created[len(cv.created)-createdMax/2:]...)
	}
	cv.created = append(cv.created, ev.Map.ID)
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
		cv.mu.Unlock()
		maps, err := read(o)
		if err != nil {
			return maps, err
		}
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

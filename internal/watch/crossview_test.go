package watch

import (
	"slices"
	"testing"
	"time"

	"github.com/bpfmon/bpfmon/internal/event"
	"github.com/bpfmon/bpfmon/internal/inventory"
)

// TestCrossViewCollect: the fdinfo view is read at start and then once
// per crossViewFDsEvery; created maps are passed on until a read lists
// them or finds them gone, and kept while hidden.
func TestCrossViewCollect(t *testing.T) {
	now := time.Unix(1000, 0)
	cv := &crossView{now: func() time.Time { return now }}
	var got []inventory.Options
	result := []inventory.Map{}
	read := cv.collect(func(o inventory.Options) ([]inventory.Map, error) {
		got = append(got, o)
		return result, nil
	})
	read(inventory.Options{}) // at start: holders are walked anyway
	cv.sawCreated(&event.Event{Type: event.MapCreate, Map: &event.Map{ID: 7}, HasResult: true, Result: 3})
	cv.sawCreated(&event.Event{Type: event.MapCreate, Map: &event.Map{ID: 8}, HasResult: true, Result: 4})
	cv.sawCreated(&event.Event{Type: event.MapCreate, Map: &event.Map{ID: 9}, HasResult: true, Result: -1})
	now = now.Add(10 * time.Second)
	result = []inventory.Map{{ID: 7, Hidden: &inventory.HiddenView{}}, {ID: 9}} // 8 gone
	read(inventory.Options{SkipHolders: true})
	if o := got[1]; o.CrossViewFDs || !slices.Equal(o.Created, []uint32{7, 8}) {
		t.Errorf("10 s after start: fds %v, created %v; want no fds, created [7 8]", o.CrossViewFDs, o.Created)
	}
	now = now.Add(crossViewFDsEvery)
	read(inventory.Options{SkipHolders: true})
	if o := got[2]; !o.CrossViewFDs || !slices.Equal(o.Created, []uint32{7}) {
		t.Errorf("a period later: fds %v, created %v; want fds, created [7] (hidden)", o.CrossViewFDs, o.Created)
	}
	result = []inventory.Map{{ID: 7}} // listed again: still a map the sensor saw created
	read(inventory.Options{SkipHolders: true})
	read(inventory.Options{SkipHolders: true})
	if o := got[4]; !slices.Equal(o.Created, []uint32{7}) {
		t.Errorf("listed: created %v, want [7] kept while the map exists", o.Created)
	}
	read(inventory.Options{SkipHolders: true})
	if got[3].CrossViewFDs {
		t.Errorf("right after: fds again")
	}
}

// TestCrossViewLoaded: programs the sensor saw loaded are passed on as a
// view until a read shows them listed (not hidden); a hidden one is kept,
// and the read's hidden programs are what the alert engine is given.
func TestCrossViewLoaded(t *testing.T) {
	cv := &crossView{now: time.Now}
	var got []inventory.Options
	var hidden []inventory.HiddenProg
	read := cv.collect(func(o inventory.Options) ([]inventory.Map, error) {
		got = append(got, o)
		*o.HiddenProgs = hidden
		return nil, nil
	})
	cv.sawCreated(&event.Event{Type: event.ProgLoad, Prog: &event.Prog{ID: 40}, HasResult: true, Result: 5})
	cv.sawCreated(&event.Event{Type: event.ProgLoad, Prog: &event.Prog{ID: 41}, HasResult: true, Result: 6})
	cv.sawCreated(&event.Event{Type: event.ProgLoad, Prog: &event.Prog{ID: 42}, Source: event.SourceInventory}) // found, not seen loaded
	cv.sawCreated(&event.Event{Type: event.ProgLoad, Prog: &event.Prog{}, HasResult: true, Result: -13})
	hidden = []inventory.HiddenProg{{ID: 41}}
	read(inventory.Options{SkipHolders: true})
	if o := got[0]; !slices.Equal(o.Loaded, []uint32{40, 41}) {
		t.Errorf("loaded %v, want [40 41]", o.Loaded)
	}
	if h := cv.takeHiddenProgs(); len(h) != 1 || h[0].ID != 41 {
		t.Errorf("hidden programs %+v, want 41", h)
	}
	hidden = nil
	read(inventory.Options{SkipHolders: true})
	if o := got[1]; !slices.Equal(o.Loaded, []uint32{41}) {
		t.Errorf("after a read: loaded %v, want [41] (hidden; 40 listed)", o.Loaded)
	}
	if h := cv.takeHiddenProgs(); len(h) != 0 {
		t.Errorf("hidden programs %+v, want none", h)
	}
}

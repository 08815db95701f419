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

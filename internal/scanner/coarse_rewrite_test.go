package scanner

import (
	"testing"
	"time"

	"github.com/bpfmon/bpfmon/internal/event"
	"github.com/bpfmon/bpfmon/internal/testutil"
)

// TestCoarseUnderRewrites: a huge map compared per range while its
// values are rewritten through bpf(2) (reported), a write by a program
// (unreported) is still found.
func TestCoarseUnderRewrites(t *testing.T) {
	testutil.RequireRoot(t)
	const n = 1 << 20
	m := bigHash(t, "t_rewrite", n)
	id := testutil.MapID(t, m)
	s := boundScanner(t, 8<<20, m)
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := uint32(0); ; i++ {
			select {
			case <-stop:
				return
			case <-time.After(time.Millisecond):
			}
			k := i % 60000
			m.Update(k, uint64(i)+1e9, 0)
			s.Explain(id, le32(k), 4, true, time.Now())
		}
	}()
	defer func() { close(stop); <-done }()
	var found *event.Event
	p := progWriting(t, m, n-7, 12345, false)
	evs := passes(t, s, 4, id, func(i int) {
		if i == 2 {
			run(t, p)
		}
	})
	for _, ev := range evs {
		t.Logf("%+v", *ev)
		if ev.Granularity != "" {
			found = ev
		}
	}
	if found == nil {
		t.Fatalf("the program's write was not found: %+v", s.LastPass)
	}
}

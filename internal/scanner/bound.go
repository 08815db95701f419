// The scanner's memory bound. Everything a pass holds that grows with the
// maps on the host (the snapshots kept between passes, the snapshot being
// built while the previous one is still held, and the changes found before
// they are judged) is counted against Config.Memory, which is set by
// bpfmon, never by the maps. Past it the scanner changes the granularity of
// its comparison, not its bound: a map's elements themselves, else one hash
// per element (old values unknown), else one hash per range of key hashes
// or one for the whole map (the keys that changed unknown too), and, when
// not even that fits, the map is listed as not scanned. Each coarser
// comparison says so in its event.

package scanner

import (
	"fmt"
	"math/bits"
	"sort"
	"time"

	"github.com/bpfmon/bpfmon/internal/event"
)

// Shares of Config.Memory.
//
//   - Candidates (changes found, not yet judged) take at most 1/16.
//   - The rest holds snapshots. Maps whose snapshot exceeds a small-map
//     size (1/256) share at most half of it, and one such map at most a
//     quarter of it: its previous snapshot and the one being built then fit
//     together, and however large the maps a stranger creates, half of the
//     budget stays for the small maps that programs and policies are made
//     of.
const (
	candShareDiv = 16
	smallMapDiv  = 256
	largePoolDiv = 2
)

// Costs, in estimated bytes, of what the bound counts beyond fullOverhead
// and hashedOverhead per element.
const (
	// snapOverhead: a snapshot's struct, its map header and its entry in
	// the scanner's tables.
	snapOverhead = 512
	// rangeCost: one range of a coarse snapshot.
	rangeCost = 16
	// candOverhead: a change found, before it is judged (its event and
	// map entry), beyond its key and values.
	candOverhead = 400
	// maxRanges bounds a coarse snapshot: 1 MiB.
	maxRanges = 1 << 16
)

// Granularities of a coarse comparison, as events name them.
const (
	GranularityRange = "range" // one hash per range of key hashes
	GranularityMap   = "map"   // one hash for the whole map
)

// rangeSum is one range of a coarse snapshot: the order-independent hash
// and the count of the elements whose key hashes fall in it.
type rangeSum struct{ sum, n uint64 }

// rangeOf is the range of ranges a key hash falls in.
func rangeOf(kh uint64, ranges int) int {
	if ranges <= 1 {
		return 0
	}
	// FNV's high bits are poorly spread for short keys: finalise first.
	z := kh
	z = (z ^ z>>30) * 0xbf58476d1ce4e5b9
	z = (z ^ z>>27) * 0x94d049bb133111eb
	z ^= z >> 31
	hi, _ := bits.Mul64(z, uint64(ranges))
	return int(hi)
}

// rangesFor is the number of ranges that fit in mem bytes: a power of two
// up to maxRanges, 1 (the whole map) when fewer than two fit.
func rangesFor(mem uint64) int {
	n := mem / rangeCost
	if n < 2 {
		return 1
	}
	return int(min(uint64(1)<<(bits.Len64(n)-1), maxRanges))
}

// coarse makes s a coarse snapshot of r ranges, from what it holds.
func (s *snapshot) coarse(r int) {
	ranges := make([]rangeSum, r)
	switch {
	case s.entries != nil:
		for k, v := range s.entries {
			kh := hash64([]byte(k))
			rs := &ranges[rangeOf(kh, r)]
			rs.sum += mix(kh, hash64([]byte(v)))
			rs.n++
		}
	case s.hashes != nil:
		for kh, vh := range s.hashes {
			rs := &ranges[rangeOf(kh, r)]
			rs.sum += mix(kh, vh)
			rs.n++
		}
	case s.ranges != nil:
		if len(s.ranges) == r {
			return
		}
		// Fewer ranges, nested in the finer ones (both powers of two,
		// rangeOf takes the high bits): merge. Callers never ask for
		// more ranges than s has.
		for i, rs := range s.ranges {
			j := i * r / len(s.ranges)
			ranges[j].sum += rs.sum
			ranges[j].n += rs.n
		}
	}
	s.entries, s.hashes, s.ranges = nil, nil, ranges
	s.mem = snapOverhead + uint64(r)*rangeCost
}

// granularity names a coarse snapshot's comparison, "" for a fine one.
func (s *snapshot) granularity() string {
	switch {
	case s.ranges == nil:
		return ""
	case len(s.ranges) == 1:
		return GranularityMap
	}
	return GranularityRange
}

// budget is what one map's read may take.
type budget struct {
	snap  uint64 // the new snapshot, while the previous one is still held
	large bool   // it is a large map's (the shared half)
}

// snapBudget is the memory a new snapshot of a map may take, given that
// prev (nil or already counted in s.memUsed) stays held until it is built.
func (s *Scanner) snapBudget() budget {
	total := uint64(s.cfg.Memory)
	snapTotal := total - total/candShareDiv
	left := uint64(0)
	if snapTotal > s.memUsed {
		left = snapTotal - s.memUsed
	}
	small := total / smallMapDiv
	largeLeft := uint64(0)
	if pool := snapTotal / largePoolDiv; pool > s.memLarge {
		largeLeft = pool - s.memLarge
	}
	// One large map takes at most half the pool: its previous snapshot
	// (counted in memLarge until replaced) and the new one fit together.
	large := min(left, largeLeft, snapTotal/largePoolDiv/2)
	if large < small {
		// No room among the large maps: a map may still be small.
		return budget{snap: min(left, small)}
	}
	return budget{snap: large, large: true}
}

// account adds snap to the memory held, replacing prev.
func (s *Scanner) account(prev, snap *snapshot) {
	if prev != nil {
		s.memUsed -= prev.mem
		if prev.large {
			s.memLarge -= prev.mem
		}
	}
	if snap != nil {
		snap.large = snap.mem > uint64(s.cfg.Memory)/smallMapDiv
		s.memUsed += snap.mem
		if snap.large {
			s.memLarge += snap.mem
		}
	}
}

// cands collects the changes found in a pass, within the candidates'
// share of the memory. Past it, a change is judged at once (the grace
// period for sensor events then is what has passed since the read): one
// explained is dropped, one not is counted for its map's summary.
type cands struct {
	s    *Scanner
	mem  uint64
	over map[*event.Map]*overflow
}

type overflow struct {
	first *event.Event
	n     uint64
}

func (c *cands) limit() uint64 { return uint64(c.s.cfg.Memory) / candShareDiv }

// keep reports whether c0 is kept to be judged after the grace period;
// otherwise it was judged now.
func (c *cands) keep(c0 candidate) bool {
	cost := candOverhead + uint64(len(c0.key)+len(c0.ev.Value)+len(c0.ev.OldValue))
	if c.mem+cost <= c.limit() {
		c.mem += cost
		return true
	}
	var ok bool
	if c0.keyHash != 0 {
		ok = c.s.explainedHash(c0.ev.Map.ID, c0.keyHash, c0.since)
	} else {
		ok = c.s.explained(c0.ev.Map.ID, c0.key, c0.since)
	}
	if ok {
		return false
	}
	if c.over == nil {
		c.over = map[*event.Map]*overflow{}
	}
	o := c.over[c0.ev.Map]
	if o == nil {
		o = &overflow{first: c0.ev}
		c.over[c0.ev.Map] = o
	}
	o.n++
	return false
}

// coarseReason says why a map's comparison is coarse.
func coarseReason(snap *snapshot, r int, b uint64) string {
	what := fmt.Sprintf("one hash per range of key hashes (%d ranges)", r)
	if r == 1 {
		what = "one hash for the whole map"
	}
	return fmt.Sprintf("a map of %d elements does not fit its share of --scan-memory (%s) even as one hash per element: compared by %s; the keys that changed and their old values are unknown",
		snap.n, sizeString(b), what)
}

func sizeString(b uint64) string {
	switch {
	case b >= 1<<30 && b%(1<<30) == 0:
		return fmt.Sprintf("%dG", b>>30)
	case b >= 1<<20:
		return fmt.Sprintf("%.1fM", float64(b)/(1<<20))
	case b >= 1<<10:
		return fmt.Sprintf("%.1fK", float64(b)/(1<<10))
	}
	return fmt.Sprintf("%d bytes", b)
}

// compareRanges lists the ranges in which prev and cur differ, at the
// coarser of the two granularities; both are made coarse if needed (cur
// keeps its own granularity for the next pass: only a copy is merged).
func compareRanges(prev, cur *snapshot) (changed []int, r int) {
	r = len(cur.ranges)
	if prev.ranges != nil && (r == 0 || len(prev.ranges) < r) {
		r = len(prev.ranges)
	}
	p, c := coarseCopy(prev, r), coarseCopy(cur, r)
	for i := range p {
		if p[i] != c[i] {
			changed = append(changed, i)
		}
	}
	return changed, r
}

// coarseCopy is snap's ranges at r ranges, without changing snap.
func coarseCopy(snap *snapshot, r int) []rangeSum {
	if snap.ranges != nil && len(snap.ranges) == r {
		return snap.ranges
	}
	cp := *snap
	cp.coarse(r)
	return cp.ranges
}

// explainedRanges drops from changed the ranges in which a sensor reported
// a write to mapID after since; all when the map as a whole was written.
func (s *Scanner) explainedRanges(mapID uint32, changed []int, r int, since time.Time) []int {
	s.mu.Lock()
	defer s.mu.Unlock()
	since = since.Add(-explainSlack)
	if t, ok := s.mapWrites[mapID]; ok && t.After(since) {
		return nil
	}
	written := map[int]bool{}
	for k, t := range s.writes[mapID] {
		if *t > since.UnixNano() {
			written[rangeOf(hash64([]byte(k)), r)] = true
		}
	}
	var out []int
	for _, i := range changed {
		if !written[i] {
			out = append(out, i)
		}
	}
	sort.Ints(out)
	return out
}

// Package scanner is the content scanner. Some writes to maps pass through
// no hook at all: stores into an mmap'ed BPF_F_MMAPABLE array, writes by a
// BPF program through a pointer from bpf_map_lookup_elem, and, on kernels
// without kprobes or fentry, every helper call of a BPF program. The only
// honest way to see them is to read the maps and compare. The scanner reads
// every readable map on the host at intervals, diffs it with the previous
// pass and reports each change that no sensor event explains.
package scanner

import (
	"errors"
	"fmt"
	"os"
	"sync"
	"time"

	"github.com/cilium/ebpf"

	"github.com/bpfmon/bpfmon/internal/event"
)

// Defaults.
const (
	DefaultInterval = 5 * time.Second
	DefaultMaxKeyed = 16
	// DefaultGrace is how long after reading a map the scanner waits for
	// sensor events that may explain a change: the syscall sensor delivers
	// within its poll interval (100ms) plus decoding.
	DefaultGrace = 500 * time.Millisecond
)

// Config configures a Scanner.
type Config struct {
	Interval time.Duration // between the starts of two passes
	MaxKeyed int           // keyed events per map and pass; more are summarised
	Budget   int64         // bytes read per second, 0: unlimited
	Grace    time.Duration // wait for explaining sensor events (0: DefaultGrace)
	// Exclude lists map ids never scanned: bpfmon's own maps, which its
	// programs rewrite on every event.
	Exclude []uint32
	// Warn receives problems that do not stop scanning (saving state).
	Warn func(error)
}

// Scanner reads and diffs maps. Explain may be called from any goroutine.
type Scanner struct {
	cfg    Config
	reader *Reader

	mu        sync.Mutex
	writes    map[writeKey]time.Time // latest reported write per map and key
	mapWrites map[uint32]time.Time   // latest write to a map whose keys are unknown

	snaps    map[uint32]*snapshot
	reported map[uint32]bool // maps listed as not scanned
	exclude  map[uint32]bool

	// State persistence (state.go).
	statePath string
	saved     map[uint32]mapState // to compare with at the first pass
	savedAt   time.Time
	saveErr   string // last warning about saving, not repeated

	// Stats of the last pass.
	LastPass PassStats
}

// PassStats describe one pass.
type PassStats struct {
	Maps, Skipped int
	Elements      uint64
	SnapshotBytes uint64
	Duration      time.Duration
	Events, Quiet int // events reported; changes explained by sensors
}

type writeKey struct {
	mapID uint32
	key   string
}

// snapshot is a map's contents at one pass.
type snapshot struct {
	info    MapInfo
	readAt  time.Time
	entries map[string]string // key -> value
	bytes   uint64
}

// New returns a scanner. It reads nothing until the first pass.
func New(cfg Config) (*Scanner, error) {
	if cfg.Interval <= 0 {
		cfg.Interval = DefaultInterval
	}
	if cfg.MaxKeyed <= 0 {
		cfg.MaxKeyed = DefaultMaxKeyed
	}
	if cfg.Grace <= 0 {
		cfg.Grace = DefaultGrace
	}
	r, err := NewReader(NewLimiter(cfg.Budget))
	if err != nil {
		return nil, err
	}
	s := &Scanner{
		cfg: cfg, reader: r,
		writes: map[writeKey]time.Time{}, mapWrites: map[uint32]time.Time{},
		snaps: map[uint32]*snapshot{}, reported: map[uint32]bool{}, exclude: map[uint32]bool{},
	}
	for _, id := range cfg.Exclude {
		s.exclude[id] = true
	}
	return s, nil
}

// Explain records a write that a sensor reported, so that the change it
// causes is not reported again. keys holds one key, or several
// concatenated (batch calls) of keySize bytes each; nil or a truncated list
// explains the whole map for that moment.
func (s *Scanner) Explain(mapID uint32, keys []byte, keySize uint32, complete bool, at time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !complete || keySize == 0 || len(keys) == 0 || len(keys)%int(keySize) != 0 {
		if at.After(s.mapWrites[mapID]) {
			s.mapWrites[mapID] = at
		}
		return
	}
	for off := 0; off+int(keySize) <= len(keys); off += int(keySize) {
		k := writeKey{mapID, string(keys[off : off+int(keySize)])}
		if at.After(s.writes[k]) {
			s.writes[k] = at
		}
	}
}

// explained reports whether a sensor reported a write to mapID's key after
// since (the previous read of the map, less a slack for a call that was
// inside the kernel while it was read).
func (s *Scanner) explained(mapID uint32, key string, since time.Time) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	since = since.Add(-explainSlack)
	if t, ok := s.mapWrites[mapID]; ok && t.After(since) {
		return true
	}
	t, ok := s.writes[writeKey{mapID, key}]
	return ok && t.After(since)
}

// explainSlack covers a write whose syscall entered before a read of the map
// and completed after it.
const explainSlack = 50 * time.Millisecond

// forget drops writes older than before.
func (s *Scanner) forget(before time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for k, t := range s.writes {
		if t.Before(before) {
			delete(s.writes, k)
		}
	}
	for k, t := range s.mapWrites {
		if t.Before(before) {
			delete(s.mapWrites, k)
		}
	}
}

// Run makes a pass every interval until stop is closed. The first pass
// records a baseline and reports only maps that cannot be scanned.
func (s *Scanner) Run(stop <-chan struct{}, emit func(*event.Event) error) error {
	for {
		start := time.Now()
		if err := s.Pass(stop, emit); err != nil {
			return err
		}
		select {
		case <-stop:
			return nil
		case <-time.After(time.Until(start.Add(s.cfg.Interval))):
		}
	}
}

// candidate is a change found in a pass, judged after the grace period.
type candidate struct {
	ev    *event.Event
	since time.Time
	key   string
}

// Pass reads every map once, then, after the grace period, reports the
// changes no sensor event explains.
func (s *Scanner) Pass(stop <-chan struct{}, emit func(*event.Event) error) error {
	start := time.Now()
	st := PassStats{}
	seen := map[uint32]bool{}
	var found [][]candidate
	var summaries []*event.Event

	for id := ebpf.MapID(0); ; {
		next, err := ebpf.MapGetNextID(id)
		if errors.Is(err, os.ErrNotExist) {
			break // no map after id
		}
		if err != nil {
			return fmt.Errorf("listing maps: %w", err)
		}
		id = next
		select {
		case <-stop:
			return nil
		default:
		}
		mid := uint32(id)
		if s.exclude[mid] {
			continue
		}
		seen[mid] = true
		snap, err := s.read(mid)
		var ns *NotScannableError
		switch {
		case errors.As(err, &ns):
			st.Skipped++
			if !s.reported[mid] {
				s.reported[mid] = true
				if err := emit(&event.Event{Time: time.Now(), Type: event.MapNotScanned, Source: event.SourceScan,
					Map: eventMap(snap.info), Reason: ns.Reason}); err != nil {
					return err
				}
			}
			continue
		case errors.Is(err, ErrVanished):
			delete(s.snaps, mid)
			continue
		case err != nil:
			return fmt.Errorf("scanning map %d: %w", mid, err)
		}
		st.Maps++
		st.Elements += uint64(len(snap.entries))
		st.SnapshotBytes += snap.bytes
		if s.saved != nil {
			if err := s.whileDown(snap, emit); err != nil {
				return err
			}
		}
		prev := s.snaps[mid]
		s.snaps[mid] = snap
		if prev == nil || prev.info.Type != snap.info.Type || prev.info.KeySize != snap.info.KeySize {
			continue // new map: this pass is its baseline
		}
		found = append(found, diff(prev, snap))
	}
	s.saved = nil // compared at the first pass only
	for id := range s.snaps {
		if !seen[id] {
			delete(s.snaps, id) // the map is gone
			delete(s.reported, id)
		}
	}

	// Wait for sensor events about writes up to the end of the reads.
	select {
	case <-stop:
	case <-time.After(s.cfg.Grace):
	}
	for _, cands := range found {
		keyed := 0
		var over int
		var first *event.Event
		for _, c := range cands {
			if s.explained(c.ev.Map.ID, c.key, c.since) {
				st.Quiet++
				continue
			}
			if keyed < s.cfg.MaxKeyed {
				keyed++
				st.Events++
				if err := emit(c.ev); err != nil {
					return err
				}
				continue
			}
			if first == nil {
				first = c.ev
			}
			over++
		}
		if over > 0 {
			summaries = append(summaries, &event.Event{Time: first.Time, Type: event.MapChanged, Source: event.SourceScan,
				Map: first.Map, HasCount: true, Count: uint64(keyed + over)})
		}
	}
	for _, ev := range summaries {
		st.Events++
		if err := emit(ev); err != nil {
			return err
		}
	}
	s.forget(start.Add(-2*s.cfg.Interval - s.cfg.Grace))
	if err := s.saveState(); err != nil {
		if err.Error() != s.saveErr && s.cfg.Warn != nil {
			s.cfg.Warn(err)
		}
		s.saveErr = err.Error()
	} else {
		s.saveErr = ""
	}
	st.Duration = time.Since(start)
	s.LastPass = st
	return nil
}

// read takes a snapshot of map id.
func (s *Scanner) read(id uint32) (*snapshot, error) {
	snap := &snapshot{readAt: time.Now(), entries: map[string]string{}}
	info, err := s.reader.Read(id, func(key, value []byte) error {
		snap.entries[string(key)] = string(value)
		snap.bytes += uint64(len(key) + len(value))
		return nil
	})
	snap.info = info
	return snap, err
}

// diff lists the changes from prev to cur, as events to report unless
// explained.
func diff(prev, cur *snapshot) []candidate {
	var out []candidate
	m := eventMap(cur.info)
	mk := func(key string, change string) *event.Event {
		return &event.Event{Time: cur.readAt, Type: event.MapChanged, Source: event.SourceScan, Map: m,
			Key: []byte(key), HasKey: true, KeyTotal: uint64(len(key)), Change: change}
	}
	for k, v := range cur.entries {
		old, ok := prev.entries[k]
		switch {
		case !ok:
			ev := mk(k, event.ChangeAdded)
			ev.Value, ev.HasValue, ev.ValueTotal = []byte(v), true, uint64(len(v))
			out = append(out, candidate{ev, prev.readAt, k})
		case old != v:
			ev := mk(k, event.ChangeModified)
			ev.Value, ev.HasValue, ev.ValueTotal = []byte(v), true, uint64(len(v))
			ev.OldValue, ev.HasOldValue = []byte(old), true
			out = append(out, candidate{ev, prev.readAt, k})
		}
	}
	for k, old := range prev.entries {
		if _, ok := cur.entries[k]; !ok {
			ev := mk(k, event.ChangeRemoved)
			ev.OldValue, ev.HasOldValue = []byte(old), true
			out = append(out, candidate{ev, prev.readAt, k})
		}
	}
	return out
}

func eventMap(info MapInfo) *event.Map {
	return &event.Map{
		ID: info.ID, Name: info.Name, Type: uint32(info.Type), KeySize: info.KeySize,
		ValueSize: info.ValueSize, MaxEntries: info.MaxEntries, Flags: info.Flags,
	}
}

// Package scanner is the content scanner. Some writes to maps pass through
// no hook at all: stores into an mmap'ed BPF_F_MMAPABLE array, writes by a
// BPF program through a pointer from bpf_map_lookup_elem, and, on kernels
// without kprobes or fentry, every helper call of a BPF program. The only
// honest way to see them is to read the maps and compare. The scanner reads
// every readable map on the host at intervals, diffs it with the previous
// pass and reports each change that no sensor event explains.
package scanner

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"
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
	// DefaultMemory bounds the snapshots' full contents.
	DefaultMemory = 256 << 20
)

// Config configures a Scanner.
type Config struct {
	Interval time.Duration // between the starts of two passes
	MaxKeyed int           // keyed events per map and pass; more are summarised
	Budget   int64         // bytes read per second, 0: unlimited
	// Memory bounds what snapshots hold (0: DefaultMemory). Maps that do
	// not fit are kept as hashes per element.
	Memory int64
	Grace  time.Duration // wait for explaining sensor events (0: DefaultGrace)
	// Exclude lists map ids never scanned: bpfmon's own maps, which its
	// programs rewrite on every event.
	Exclude []uint32
	// Warn receives problems that do not stop scanning (saving state).
	Warn func(error)
	// Passed, when set, is told of each pass completed (1 for the
	// first), after its changes are emitted: a log line for people and
	// tests that wait for a pass, a figure for metrics.
	Passed func(n int, st PassStats)
	// Quiet, when set, says whether a map can change only through bpf(2),
	// which the syscall sensor reports: no program uses it, no iterator
	// walks it, no program on the host can make bpf(2) calls itself. The
	// scanner itself adds: not mmapable, not an inner map of a
	// map-in-map. Such a map is read again only once a reported write
	// (Explain, Created) or a loss (Unsure) concerns it, and at every
	// FullEvery-th pass: an idle host with thousands of maps costs a walk
	// of their ids, not a read of each.
	Quiet func(id uint32) bool
	// QuietHost, when set, says whether every map creation is reported
	// too (no program that makes bpf(2) calls from the kernel is
	// loaded, no record was lost). Then a pass between full ones visits
	// only the maps it knows and those reported created, without listing
	// every map id on the host (a syscall each); a map that appeared
	// otherwise is found at the next full pass.
	QuietHost func() bool
	// Counted, when set, says whether the kernel counted writes to map
	// id after since that are not summarised yet (the kernel-side
	// sensor's map_writes_counted comes at intervals longer than Grace):
	// a known program's writes, which explain any change to the map.
	Counted func(id uint32, since time.Time) bool
	// SaveExtra, when set, gives a section saved with each state (the
	// watch's: who owns the protected maps), as is; Prior hands back the
	// one read at start.
	SaveExtra func() json.RawMessage
	// Hidden, when set, gives the ids of maps hidden from bpf(2)'s
	// listing (the inventory's cross-view check), which the walk of ids
	// never reaches: each pass reads them too, through Reopen.
	Hidden func() []uint32
	Reopen func(id, openFlags uint32) (int, error)
}

// FullEvery is how often, in passes, every map is read, quiet or not: a
// write by a path bpfmon does not know of is found within that many
// passes.
const FullEvery = 12

// Scanner reads and diffs maps. Explain may be called from any goroutine.
type Scanner struct {
	cfg    Config
	reader *Reader

	mu sync.Mutex
	// writes holds the latest reported write per map and key (Unix ns,
	// behind a pointer: a write to a key seen before, the common case,
	// updates it without allocating the key again).
	writes      map[uint32]map[string]*int64
	mapWrites   map[uint32]time.Time // latest write to a map whose keys are unknown
	explainKeys int                  // the keys in writes, for maxExplainKeys

	snaps    map[uint32]*snapshot
	created  map[uint32]createdMap // maps created since start, not yet read
	reported map[uint32]bool       // maps listed as not scanned
	exclude  map[uint32]bool

	// State persistence (state.go).
	statePath string
	saved     map[uint32]mapState // to compare with at the first pass
	savedAt   time.Time
	// savedVersion is the state file's version: another one's hashes
	// are compared, its contents not trusted.
	savedVersion int
	saveErr      string // last warning about saving, not repeated
	prior        Prior
	// lastSaved is the state last written (or read, when it was this
	// version's): a stop rewrites it marked clean, so that contents a
	// pass cut short by the stop read but did not compare are not saved
	// as seen.
	lastSaved []byte

	memUsed  uint64 // estimated memory the snapshots hold (bound.go)
	memLarge uint64 // of which large maps' snapshots
	// only, when set (tests), restricts passes to these maps: a bound
	// is then tested without the other maps on the host.
	only map[uint32]bool

	// dirty are the maps a reported write or creation concerned since
	// their last read; unsure is set by a loss: every map is read next.
	dirty  map[uint32]bool
	unsure bool
	passes int

	// Map ids are allocated upwards (cyclically): a map with an id above
	// startMaxID was created after start, and its initial contents are
	// known even if its map_create event has not arrived yet.
	startMaxID uint32
	started    time.Time
	lastPass   time.Time // start of the previous pass

	// Stats of the last pass.
	LastPass PassStats
}

// PassStats describe one pass.
type PassStats struct {
	Maps, Skipped int
	Hashed        int // maps kept as hashes for lack of memory
	// Coarse counts the maps compared per range of keys or as a whole
	// for lack of memory (granularity "range" or "map"); NoMemory those
	// not scanned at all for lack of it (also in Skipped).
	Coarse, NoMemory int
	Elements         uint64
	SnapshotBytes    uint64 // key and value bytes read
	SnapshotMemory   uint64 // estimated memory the snapshots hold
	Duration         time.Duration
	Events, Quiet    int // events reported; changes explained by sensors
	// Unread counts the maps of Maps not read again in this pass: quiet,
	// and no reported write since their last read (see Config.Quiet);
	// their last snapshots stand for them.
	Unread int
}

// snapshot is a map's contents at one pass: the elements themselves while
// the memory budget allows (entries), else a hash of each key and value
// (hashes), which still tells which keys changed, but not their old values.
type snapshot struct {
	info    MapInfo
	readAt  time.Time
	entries map[string]string // key -> value; nil when hashed
	hashes  map[uint64]uint64 // hash(key) -> hash(value); nil when not hashed
	ranges  []rangeSum        // coarse (bound.go): per range of key hashes
	large   bool              // counted in the large maps' share
	n       int               // elements
	sum     uint64            // order-independent content hash (state.go)
	bytes   uint64            // key and value bytes read
	mem     uint64            // estimated memory held
}

// Estimated memory per element held in a snapshot, beyond the data itself:
// Go map slot, two string headers and allocation rounding.
const (
	fullOverhead   = 80
	hashedOverhead = 40
)

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
	if cfg.Memory <= 0 {
		cfg.Memory = DefaultMemory
	}
	r, err := NewReader(NewLimiter(cfg.Budget))
	if err != nil {
		return nil, err
	}
	r.Reopen = cfg.Reopen
	s := &Scanner{
		cfg: cfg, reader: r,
		writes: map[uint32]map[string]*int64{}, mapWrites: map[uint32]time.Time{},
		snaps: map[uint32]*snapshot{}, reported: map[uint32]bool{}, exclude: map[uint32]bool{},
		created: map[uint32]createdMap{}, dirty: map[uint32]bool{},
	}
	for _, id := range cfg.Exclude {
		s.exclude[id] = true
	}
	s.started = time.Now()
	for id := ebpf.MapID(0); ; {
		next, err := ebpf.MapGetNextID(id)
		if err != nil {
			break
		}
		id = next
		if !s.exclude[uint32(id)] {
			s.startMaxID = uint32(id)
		}
	}
	return s, nil
}

// walkIDs lists every map id on the host, in order.
func walkIDs() func() (uint32, bool, error) {
	var id ebpf.MapID
	return func() (uint32, bool, error) {
		next, err := ebpf.MapGetNextID(id)
		if errors.Is(err, os.ErrNotExist) {
			return 0, false, nil // no map after id
		}
		if err != nil {
			return 0, false, err
		}
		id = next
		return uint32(id), true, nil
	}
}

// withHidden lists next's ids, then the hidden maps' (none of which the
// listing gives).
func withHidden(next func() (uint32, bool, error), hidden func() []uint32) func() (uint32, bool, error) {
	if hidden == nil {
		return next
	}
	var extra []uint32
	done := false
	return func() (uint32, bool, error) {
		if !done {
			id, ok, err := next()
			if ok || err != nil {
				return id, ok, err
			}
			done, extra = true, hidden()
		}
		if len(extra) == 0 {
			return 0, false, nil
		}
		id := extra[0]
		extra = extra[1:]
		return id, true, nil
	}
}

// knownIDs lists the maps read before, reported created or written since,
// in order (see Config.QuietHost).
func (s *Scanner) knownIDs() func() (uint32, bool, error) {
	ids := make([]uint32, 0, len(s.snaps)+len(s.created))
	for id := range s.snaps {
		ids = append(ids, id)
	}
	s.mu.Lock()
	for id := range s.created {
		if s.snaps[id] == nil {
			ids = append(ids, id)
		}
	}
	for id := range s.dirty {
		if s.snaps[id] == nil && s.created[id].at.IsZero() {
			ids = append(ids, id)
		}
	}
	s.mu.Unlock()
	slices.Sort(ids)
	i := 0
	return func() (uint32, bool, error) {
		if i == len(ids) {
			return 0, false, nil
		}
		i++
		return ids[i-1], true, nil
	}
}

// Unsure has the next pass read every map: a sensor lost records, so a
// write it did not report may have changed a quiet one.
func (s *Scanner) Unsure() {
	s.mu.Lock()
	s.unsure = true
	s.mu.Unlock()
}

// unread reports whether map mid, read before as prev, may be left unread
// in this pass, and takes it off the dirty list otherwise.
func (s *Scanner) unread(mid uint32, prev *snapshot, full bool, inner map[uint32]bool) bool {
	s.mu.Lock()
	dirty := s.dirty[mid]
	delete(s.dirty, mid)
	s.mu.Unlock()
	return prev != nil && !full && !dirty && s.cfg.Quiet != nil && prev.info.Flags&bpfFMmapable == 0 &&
		!inner[mid] && prev.info.Type != ebpf.ArrayOfMaps && prev.info.Type != ebpf.HashOfMaps && s.cfg.Quiet(mid)
}

// innerMaps lists the maps that the map-in-maps hold, from their last
// snapshots (user space reads an inner map as its id). all is set when an
// outer map's contents are kept only as hashes: then any map may be one.
func (s *Scanner) innerMaps() (inner map[uint32]bool, all bool) {
	inner = map[uint32]bool{}
	for _, snap := range s.snaps {
		if snap.info.Type != ebpf.ArrayOfMaps && snap.info.Type != ebpf.HashOfMaps {
			continue
		}
		if snap.entries == nil {
			return inner, true
		}
		for _, v := range snap.entries {
			if len(v) >= 4 {
				inner[binary.NativeEndian.Uint32([]byte(v))] = true
			}
		}
	}
	return inner, false
}

// Last returns the stats of the last pass. Call it once Run returned.
func (s *Scanner) Last() PassStats { return s.LastPass }

// createdMap is a map the syscall sensor saw created.
type createdMap struct {
	m  event.Map
	at time.Time
}

// Created records a map created while bpfmon runs. Its contents at creation
// are known (arrays: zeros; hash-like maps: empty), so they, not the first
// pass that sees the map, are its baseline: a write between its creation
// and that pass (through mmap, by a program) is not taken for its initial
// state.
func (s *Scanner) Created(m event.Map, at time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.dirty[m.ID] = true
	s.created[m.ID] = createdMap{m, at}
}

// initialSnapshot is the content of a map just created, or nil when it is
// not known or too large to build (the first pass is then the baseline).
func (s *Scanner) initialSnapshot(c createdMap) *snapshot {
	m := c.m
	snap := &snapshot{readAt: c.at, entries: map[string]string{},
		info: MapInfo{ID: m.ID, Name: m.Name, Type: ebpf.MapType(m.Type), KeySize: m.KeySize, ValueSize: m.ValueSize, MaxEntries: m.MaxEntries, Flags: m.Flags}}
	switch ebpf.MapType(m.Type) {
	case ebpf.Hash, ebpf.PerCPUHash, ebpf.LRUHash, ebpf.LRUCPUHash, ebpf.LPMTrie, ebpf.HashOfMaps, ebpf.DevMapHash:
		return snap // empty
	case ebpf.Array, ebpf.PerCPUArray:
		if m.KeySize != 4 {
			return nil
		}
		vb := s.reader.ValueBytes(snap.info)
		// Held as the map's snapshot until its first read replaces it,
		// within the budget a snapshot of it may take.
		if snapOverhead+uint64(m.MaxEntries)*uint64(vb+4+fullOverhead) > s.snapBudget().snap/2 {
			return nil
		}
		zero := string(make([]byte, vb))
		snap.mem = snapOverhead
		for i := range m.MaxEntries {
			k := string([]byte{byte(i), byte(i >> 8), byte(i >> 16), byte(i >> 24)})
			snap.entries[k] = zero
			snap.n++
			snap.sum += mix(hash64([]byte(k)), hash64([]byte(zero)))
			snap.mem += uint64(len(k)+len(zero)) + fullOverhead
		}
		return snap
	}
	return nil
}

// Explain records a write that a sensor reported, so that the change it
// causes is not reported again. keys holds one key, or several
// concatenated (batch calls) of keySize bytes each; nil or a truncated list
// explains the whole map for that moment.
func (s *Scanner) Explain(mapID uint32, keys []byte, keySize uint32, complete bool, at time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !complete || keySize == 0 || len(keys) == 0 || len(keys)%int(keySize) != 0 {
		s.dirty[mapID] = true
		if at.After(s.mapWrites[mapID]) {
			s.mapWrites[mapID] = at
		}
		return
	}
	s.dirty[mapID] = true
	m := s.writes[mapID]
	if m == nil {
		m = map[string]*int64{}
		s.writes[mapID] = m
	}
	ns := at.UnixNano()
	for off := 0; off+int(keySize) <= len(keys); off += int(keySize) {
		key := keys[off : off+int(keySize)]
		if t := m[string(key)]; t != nil { // no allocation for the lookup
			*t = max(*t, ns)
		} else {
			t := ns // one each: a key's time is its own
			m[string(key)] = &t
			s.explainKeys++
		}
	}
	if len(m) > maxExplainKeysPerMap || s.explainKeys > maxExplainKeys {
		// A burst of distinct keys: remember the map, not each key, until
		// the next pass forgets it. Memory stays bounded; for that pass a
		// change to this map by a path no hook sees is taken as explained
		// (every bpf(2) write to it is reported by the syscall sensor).
		latest := ns
		for _, t := range m {
			latest = max(latest, *t)
		}
		s.explainKeys -= len(m)
		delete(s.writes, mapID)
		if t := time.Unix(0, latest); t.After(s.mapWrites[mapID]) {
			s.mapWrites[mapID] = t
		}
	}
}

// Bounds on the keys of reported writes kept between passes: beyond them a
// map's keys are replaced by the time of its latest write. 64 Ki keys in
// one map, 256 Ki in all: at most explainKeyBytes each (keys up to 16
// bytes; TestExplainBoundedMemory), 24 MiB.
const (
	maxExplainKeysPerMap = 1 << 16
	maxExplainKeys       = 1 << 18
	explainKeyBytes      = 96
)

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
	if t := s.writes[mapID][key]; t != nil && *t > since.UnixNano() {
		return true
	}
	return s.cfg.Counted != nil && s.cfg.Counted(mapID, since)
}

// explainedHash is explained for a key known only by its hash.
func (s *Scanner) explainedHash(mapID uint32, kh uint64, since time.Time) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	since = since.Add(-explainSlack)
	if t, ok := s.mapWrites[mapID]; ok && t.After(since) {
		return true
	}
	for k, t := range s.writes[mapID] {
		if *t > since.UnixNano() && hash64([]byte(k))|1 == kh {
			return true
		}
	}
	return s.cfg.Counted != nil && s.cfg.Counted(mapID, since)
}

// explainSlack covers a write whose syscall entered before a read of the map
// and completed after it.
const explainSlack = 50 * time.Millisecond

// forget drops writes older than before.
func (s *Scanner) forget(before time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for id, m := range s.writes {
		for k, t := range m {
			if *t < before.UnixNano() {
				delete(m, k)
				s.explainKeys--
			}
		}
		if len(m) == 0 {
			delete(s.writes, id)
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
	ev      *event.Event
	since   time.Time
	key     string
	keyHash uint64 // a removal known only by its key's hash
	// A coarse comparison: the ranges that differ, of nranges.
	ranges  []int
	nranges int
}

// pass is one Pass's working state.
type pass struct {
	start time.Time
	st    PassStats
	seen  map[uint32]bool // the maps listed
	found [][]candidate   // each map's changes, judged after the grace period
	cs    *cands
	full  bool            // every map read, none left unread as quiet
	inner map[uint32]bool // inner maps of map-in-maps: always read
}

// Pass reads every map once, then, after the grace period, reports the
// changes no sensor event explains: readAll, dropGone, then, once the
// sensors' events up to the reads are in, judge and finish.
func (s *Scanner) Pass(stop <-chan struct{}, emit func(*event.Event) error) error {
	p := &pass{start: time.Now(), seen: map[uint32]bool{}, cs: &cands{s: s}}
	s.mu.Lock()
	p.full = s.unsure || s.passes%FullEvery == 0
	s.unsure = false
	s.mu.Unlock()
	s.passes++
	var allInner bool
	p.inner, allInner = s.innerMaps()
	p.full = p.full || allInner
	if stopped, err := s.readAll(p, stop, emit); stopped || err != nil {
		return err
	}
	if err := s.dropGone(p, emit); err != nil {
		return err
	}
	// Wait for sensor events about writes up to the end of the reads.
	select {
	case <-stop:
	case <-time.After(s.cfg.Grace):
	}
	if err := s.judge(p, emit); err != nil {
		return err
	}
	s.finish(p)
	return nil
}

// readAll reads every map the pass lists (only those known, when the
// host is quiet and the pass need not be full). stopped: stop was closed
// before every map was read, and the pass ends there.
func (s *Scanner) readAll(p *pass, stop <-chan struct{}, emit func(*event.Event) error) (stopped bool, err error) {
	nextID := walkIDs()
	if !p.full && s.cfg.Quiet != nil && s.cfg.QuietHost != nil && s.cfg.QuietHost() {
		nextID = s.knownIDs()
	}
	nextID = withHidden(nextID, s.cfg.Hidden)
	for {
		mid, ok, err := nextID()
		if err != nil {
			return false, fmt.Errorf("listing maps: %w", err)
		}
		if !ok {
			return false, nil
		}
		select {
		case <-stop:
			return true, nil
		default:
		}
		if s.exclude[mid] || (s.only != nil && !s.only[mid]) {
			continue
		}
		p.seen[mid] = true
		if err := s.readOne(p, mid, emit); err != nil {
			return false, err
		}
	}
}

// count adds snap to the pass's figures.
func (st *PassStats) count(snap *snapshot) {
	st.Maps++
	st.Elements += uint64(snap.n)
	st.SnapshotBytes += snap.bytes
	if snap.hashes != nil {
		st.Hashed++
	}
	if snap.ranges != nil {
		st.Coarse++
	}
}

// readOne reads map mid, compares it with its last snapshot (or what a
// map created since holds), and keeps the changes for judging.
func (s *Scanner) readOne(p *pass, mid uint32, emit func(*event.Event) error) error {
	prev := s.snaps[mid]
	if s.unread(mid, prev, p.full, p.inner) {
		// Its snapshot stands: counted as the pass's, as if read.
		p.st.Unread++
		p.st.count(prev)
		return nil
	}
	if prev == nil {
		s.mu.Lock()
		c, ok := s.created[mid]
		delete(s.created, mid)
		s.mu.Unlock()
		if ok {
			prev = s.initialSnapshot(c)
			s.account(nil, prev) // held until replaced, as a snapshot
		}
	}
	newSinceStart := prev == nil && mid > s.startMaxID
	snap, cands, err := s.read(mid, prev, p.cs)
	var ns *NotScannableError
	if err != nil && prev != nil && s.snaps[mid] != prev {
		s.account(prev, nil) // an initial snapshot, not kept
	}
	switch {
	case errors.As(err, &ns):
		p.st.Skipped++
		if strings.HasPrefix(ns.Reason, "--scan-memory") {
			p.st.NoMemory++
		}
		if !s.reported[mid] {
			s.reported[mid] = true
			return emit(&event.Event{Time: time.Now(), Type: event.MapNotScanned, Source: event.SourceScan,
				Map: eventMap(snap.info), Reason: ns.Reason})
		}
		return nil
	case errors.Is(err, ErrVanished):
		if old := s.snaps[mid]; old != nil {
			s.account(old, nil)
		}
		delete(s.snaps, mid)
		return nil
	case err != nil:
		return fmt.Errorf("scanning map %d: %w", mid, err)
	}
	p.st.count(snap)
	s.account(prev, snap)
	if s.saved != nil {
		if err := s.whileDown(snap, emit); err != nil {
			return err
		}
	}
	s.snaps[mid] = snap
	if newSinceStart && snap.entries != nil {
		// Created after start, its map_create not (yet) seen: compare
		// with what such a map holds when created.
		since := s.lastPass
		if since.IsZero() {
			since = s.started
		}
		if init := s.initialSnapshot(createdMap{*eventMap(snap.info), since}); init != nil {
			cands = diff(init, snap, p.cs.keep)
		}
	}
	if len(cands) > 0 {
		p.found = append(p.found, cands)
	}
	return nil
}

// dropGone: the saved state's maps that are gone (at the first pass
// only), and the snapshots of maps the pass did not list.
func (s *Scanner) dropGone(p *pass, emit func(*event.Event) error) error {
	p.st.SnapshotMemory = s.memUsed
	if s.saved != nil {
		if err := s.savedGone(time.Now(), emit); err != nil {
			return err
		}
	}
	s.saved = nil // compared at the first pass only
	for id, snap := range s.snaps {
		if !p.seen[id] {
			s.account(snap, nil)
			delete(s.snaps, id) // the map is gone
			delete(s.reported, id)
		}
	}
	return nil
}

// judge reports the pass's changes that no sensor event explains: up to
// MaxKeyed keyed changes a map, then one summary for the rest.
func (s *Scanner) judge(p *pass, emit func(*event.Event) error) error {
	var summaries []*event.Event
	removedUnknown := map[*event.Map][]candidate{}
	for _, cands := range p.found {
		sum, err := s.judgeMap(p, cands, removedUnknown, emit)
		if err != nil {
			return err
		}
		if sum != nil {
			summaries = append(summaries, sum)
		}
	}
	for _, o := range p.cs.over {
		summaries = append(summaries, &event.Event{Time: o.first.Time, Type: event.MapChanged, Source: event.SourceScan,
			Map: o.first.Map, HasCount: true, Count: o.n, Extra: o.first.Extra})
	}
	for m, cs := range removedUnknown {
		summaries = append(summaries, &event.Event{Time: cs[0].ev.Time, Type: event.MapChanged, Source: event.SourceScan,
			Map: m, Change: event.ChangeRemoved, HasCount: true, Count: uint64(len(cs)), Extra: cs[0].ev.Extra})
	}
	for _, ev := range summaries {
		p.st.Events++
		if err := emit(ev); err != nil {
			return err
		}
	}
	return nil
}

// judgeMap reports one map's changes that no sensor event explains and
// returns the summary of those past MaxKeyed, if any. Removals known only
// by their key's hash and not explained go to removedUnknown.
func (s *Scanner) judgeMap(p *pass, cands []candidate, removedUnknown map[*event.Map][]candidate, emit func(*event.Event) error) (*event.Event, error) {
	keyed := 0
	var over int
	var first *event.Event
	for _, c := range cands {
		if c.ranges != nil {
			// A coarse comparison: the ranges no reported write
			// explains.
			left := s.explainedRanges(c.ev.Map.ID, c.ranges, c.nranges, c.since)
			if len(left) == 0 {
				p.st.Quiet++
				continue
			}
			c.ev.Count = uint64(len(left))
			p.st.Events++
			if err := emit(c.ev); err != nil {
				return nil, err
			}
			continue
		}
		if c.keyHash != 0 {
			// A removal from a hashed snapshot: only the key's hash is
			// known, matched against the keys sensors reported.
			if s.explainedHash(c.ev.Map.ID, c.keyHash, c.since) {
				p.st.Quiet++
			} else {
				removedUnknown[c.ev.Map] = append(removedUnknown[c.ev.Map], c)
			}
			continue
		}
		if s.explained(c.ev.Map.ID, c.key, c.since) {
			p.st.Quiet++
			continue
		}
		if keyed < s.cfg.MaxKeyed {
			keyed++
			p.st.Events++
			if err := emit(c.ev); err != nil {
				return nil, err
			}
			continue
		}
		if first == nil {
			first = c.ev
		}
		over++
	}
	if o := p.cs.over[cands[0].ev.Map]; o != nil {
		// Changes past the candidates' memory, judged at once.
		delete(p.cs.over, cands[0].ev.Map)
		if first == nil {
			first = o.first
		}
		over += int(o.n)
	}
	if over == 0 {
		return nil, nil
	}
	return &event.Event{Time: first.Time, Type: event.MapChanged, Source: event.SourceScan,
		Map: first.Map, HasCount: true, Count: uint64(keyed + over), Extra: first.Extra}, nil
}

// finish forgets what the sensors reported before the window a later
// pass needs, drops maps created and gone between passes, saves the
// state and tells the pass's figures.
func (s *Scanner) finish(p *pass) {
	start := p.start
	s.forget(start.Add(-2*s.cfg.Interval - s.cfg.Grace))
	s.lastPass = start
	s.mu.Lock()
	for id, c := range s.created {
		if c.at.Before(start) && !p.seen[id] {
			delete(s.created, id) // created and gone between passes
		}
	}
	s.mu.Unlock()
	if err := s.saveState(); err != nil {
		if err.Error() != s.saveErr && s.cfg.Warn != nil {
			s.cfg.Warn(err)
		}
		s.saveErr = err.Error()
	} else {
		s.saveErr = ""
	}
	p.st.Duration = time.Since(start)
	s.LastPass = p.st
	if s.cfg.Passed != nil {
		s.cfg.Passed(s.passes, p.st)
	}
}

// Snapshot granularities a read may start with.
const (
	modeFull = iota
	modeHashed
	modeRanges
)

// plan is the finest granularity a snapshot of n elements and bytes key
// and value bytes fits in b at. Full contents get half of b: past it they
// become hashes, which must fit beside them while converted.
func plan(n int, bytes, b uint64) int {
	switch {
	case snapOverhead+bytes+uint64(n)*fullOverhead <= b/2:
		return modeFull
	case snapOverhead+uint64(n)*hashedOverhead <= b:
		return modeHashed
	}
	return modeRanges
}

// read takes a snapshot of map id and compares it with prev (nil for a new
// map: its baseline). Most maps do not change between passes: a first read
// only hashes the contents, and when they hash as prev did, prev is kept
// and nothing is compared or stored. Otherwise the map is read again and
// compared element by element as it is read, keeping the elements
// themselves while the memory budget allows, else hashes of each, else
// hashes of ranges (bound.go). A map whose previous snapshot says it takes
// ranges is read once: the first read makes them.
func (s *Scanner) read(id uint32, prev *snapshot, cs *cands) (*snapshot, []candidate, error) {
	b := s.snapBudget()
	if b.snap < snapOverhead+rangeCost {
		info, err := s.reader.Read(id, func(key, value []byte) error { return errStop })
		if err != nil && err != errStop {
			return &snapshot{info: info}, nil, err
		}
		return &snapshot{info: info}, nil, &NotScannableError{Reason: fmt.Sprintf(
			"--scan-memory (%s) is taken by the snapshots of other maps: not even one hash of this map fits; it is scanned once memory is free", sizeString(uint64(s.cfg.Memory)))}
	}
	r := rangesFor(b.snap - snapOverhead)
	mode := modeFull
	n := 0
	if prev != nil {
		mode = plan(prev.n, prev.bytes, b.snap)
		cnt, err := s.hashRead(id, mode == modeRanges, r)
		if err != nil {
			return cnt, nil, err
		}
		info := cnt.info
		sameMap := info.Type == prev.info.Type && info.KeySize == prev.info.KeySize
		if cnt.sum == prev.sum && cnt.n == prev.n && sameMap {
			same := *prev
			same.readAt, same.info = cnt.readAt, info
			return &same, nil, nil
		}
		if !sameMap {
			prev = nil // another map under the same id: a new baseline
		}
		if mode == modeRanges {
			cnt.mem = snapOverhead + uint64(r)*rangeCost
			if prev == nil {
				return cnt, nil, nil
			}
			return cnt, s.coarseChange(prev, cnt, b.snap), nil
		}
		n = cnt.n
		mode = plan(n, cnt.bytes, b.snap)
	}
	return s.readCompare(id, prev, cs, mode, n, r, b.snap)
}

// hashRead is read's first read of a map it has a snapshot of: only the
// hash of its contents (and of each of r ranges, when ranges), the
// element count and bytes. On an error, the snapshot holds only the
// map's info.
func (s *Scanner) hashRead(id uint32, ranges bool, r int) (*snapshot, error) {
	cnt := &snapshot{readAt: time.Now()}
	if ranges {
		cnt.ranges = make([]rangeSum, r)
	}
	info, err := s.reader.Read(id, func(key, value []byte) error {
		kh := hash64(key)
		e := mix(kh, hash64(value))
		cnt.n++
		cnt.sum += e
		cnt.bytes += uint64(len(key) + len(value))
		if cnt.ranges != nil {
			rs := &cnt.ranges[rangeOf(kh, r)]
			rs.sum += e
			rs.n++
		}
		return nil
	})
	if err != nil {
		return &snapshot{info: info}, err
	}
	cnt.info = info
	return cnt, nil
}

// readCompare reads map id into a snapshot of the granularity mode (n
// elements expected), comparing each element with prev's as it is read
// (comparison), then finds prev's elements this read did not.
func (s *Scanner) readCompare(id uint32, prev *snapshot, cs *cands, mode, n, r int, budget uint64) (*snapshot, []candidate, error) {
	snap := &snapshot{readAt: time.Now(), mem: snapOverhead}
	switch mode {
	case modeFull:
		snap.entries = make(map[string]string, n)
	case modeHashed:
		snap.hashes = make(map[uint64]uint64, n)
	default:
		snap.ranges = make([]rangeSum, r)
		snap.mem += uint64(r) * rangeCost
	}
	c := &comparison{snap: snap, prev: prev, cs: cs, r: r, budget: budget,
		compare: prev != nil && prev.ranges == nil && snap.ranges == nil,
		evMap:   &event.Map{}, // filled once Read returns the map's info
	}
	if prev != nil {
		c.since = prev.readAt
	}
	info, err := s.reader.Read(id, c.element)
	snap.info = info
	if err != nil {
		cs.mem -= c.kept
		delete(cs.over, c.evMap)
		return snap, nil, err
	}
	*c.evMap = *eventMap(info)
	if prev == nil {
		return snap, nil, nil
	}
	if snap.ranges != nil || prev.ranges != nil {
		return snap, s.coarseChange(prev, snap, budget), nil
	}
	if c.matched != prev.n {
		c.removals()
	}
	return snap, c.found, nil
}

// comparison is one read of a map compared element by element with its
// previous snapshot.
type comparison struct {
	snap, prev *snapshot
	cs         *cands
	r          int    // ranges, should the snapshot turn coarse
	budget     uint64 // the snapshot's memory budget
	compare    bool   // still comparing element by element
	found      []candidate
	kept       uint64     // what found holds of cs.mem
	evMap      *event.Map // the candidates' map
	matched    int        // elements of prev found again
	since      time.Time  // when prev was read
}

func (c *comparison) add(cand candidate) {
	if c.cs.keep(cand) {
		c.found = append(c.found, cand)
		c.kept += candOverhead + uint64(len(cand.key)+len(cand.ev.Value)+len(cand.ev.OldValue))
	}
}

// element takes one element into the snapshot (keeping it, its hash, or
// its range's, as the budget allows) and compares it with prev's.
func (c *comparison) element(key, value []byte) error {
	snap, prev := c.snap, c.prev
	kh, vh := hash64(key), hash64(value)
	e := mix(kh, vh)
	snap.n++
	snap.sum += e
	snap.bytes += uint64(len(key) + len(value))
	switch {
	case snap.entries != nil:
		snap.entries[string(key)] = string(value)
		snap.mem += uint64(len(key)+len(value)) + fullOverhead
		if snap.mem > c.budget/2 {
			snap.toHashes()
		}
	case snap.hashes != nil:
		snap.hashes[kh] = vh
		snap.mem += hashedOverhead
	default:
		rs := &snap.ranges[rangeOf(kh, c.r)]
		rs.sum += e
		rs.n++
	}
	if snap.hashes != nil && snap.mem > c.budget {
		// Past the budget even as hashes: ranges from here on, and the
		// comparison is theirs.
		snap.coarse(c.r)
		if c.compare {
			c.compare = false
			c.cs.mem -= c.kept
			delete(c.cs.over, c.evMap)
			c.found, c.kept = nil, 0
		}
	}
	if !c.compare {
		return nil
	}
	// The previous value, or only its hash when prev is hashed.
	var old string
	var ok, same, haveOld bool
	if prev.entries != nil {
		old, ok = prev.entries[string(key)]
		same, haveOld = old == string(value), true
	} else {
		var pv uint64
		pv, ok = prev.hashes[kh]
		same = pv == vh
	}
	switch {
	case !ok:
		c.add(newChange(snap.readAt, c.evMap, c.since, event.ChangeAdded, string(key), value, nil))
	case !same:
		c.matched++
		var oldValue []byte
		if haveOld {
			oldValue = []byte(old)
		}
		c.add(newChange(snap.readAt, c.evMap, c.since, event.ChangeModified, string(key), value, oldValue))
	default:
		c.matched++
	}
	return nil
}

// removals: elements of prev that this read did not find.
func (c *comparison) removals() {
	snap := c.snap
	if c.prev.entries != nil {
		for k, old := range c.prev.entries {
			if snap.has(k) {
				continue
			}
			c.add(newChange(snap.readAt, c.evMap, c.since, event.ChangeRemoved, k, nil, []byte(old)))
		}
		return
	}
	for kh := range c.prev.hashes {
		if _, ok := snap.lookupHash(kh); !ok {
			c.add(candidate{ev: &event.Event{Time: snap.readAt, Map: c.evMap, Extra: &event.Extra{Since: c.since}}, since: c.since, keyHash: kh | 1})
		}
	}
}

// errStop ends a read that only wanted the map's info.
var errStop = errors.New("stop")

// coarseChange is the candidate for a coarse comparison of prev and cur:
// the ranges that differ, judged after the grace period; nil when none do.
func (s *Scanner) coarseChange(prev, cur *snapshot, b uint64) []candidate {
	changed, r := compareRanges(prev, cur)
	if len(changed) == 0 {
		return nil
	}
	g := GranularityRange
	if r == 1 {
		g = GranularityMap
	}
	reason := coarseReason(cur, r, b)
	ev := &event.Event{Time: cur.readAt, Type: event.MapChanged, Source: event.SourceScan, Map: eventMap(cur.info),
		Change: event.ChangeModified, HasCount: true, Granularity: g, Reason: reason, Extra: &event.Extra{Since: prev.readAt}}
	return []candidate{{ev: ev, since: prev.readAt, ranges: changed, nranges: r}}
}

// toHashes drops the elements of a snapshot that outgrew the memory budget,
// keeping a hash of each key and value.
func (s *snapshot) toHashes() {
	s.hashes = make(map[uint64]uint64, len(s.entries))
	s.mem = snapOverhead
	for k, v := range s.entries {
		s.hashes[hash64([]byte(k))] = hash64([]byte(v))
		s.mem += hashedOverhead
	}
	s.entries = nil
}

func (s *snapshot) has(key string) bool {
	if s.entries != nil {
		_, ok := s.entries[key]
		return ok
	}
	_, ok := s.hashes[hash64([]byte(key))]
	return ok
}

func (s *snapshot) lookupHash(kh uint64) (uint64, bool) {
	if s.hashes != nil {
		v, ok := s.hashes[kh]
		return v, ok
	}
	for k, v := range s.entries { // rare: a map that shrank under the budget
		if hash64([]byte(k)) == kh {
			return hash64([]byte(v)), true
		}
	}
	return 0, false
}

// hash64 is FNV-1a: stable across runs, as the state file needs.
func hash64(b []byte) uint64 {
	h := uint64(14695981039346656037)
	for _, c := range b {
		h ^= uint64(c)
		h *= 1099511628211
	}
	return h
}

// mix combines a key's and a value's hash into an element's (splitmix64).
func mix(kh, vh uint64) uint64 {
	z := kh ^ (vh + 0x9e3779b97f4a7c15 + kh<<6 + kh>>2)
	z = (z ^ z>>30) * 0xbf58476d1ce4e5b9
	z = (z ^ z>>27) * 0x94d049bb133111eb
	return z ^ z>>31
}

// diff lists the changes between two full snapshots (the state file's and
// the first pass's, or a new map's initial contents and its first read).
// keep, when not nil, says which candidates are kept (cands.keep).
func diff(prev, cur *snapshot, keep func(candidate) bool) []candidate {
	var out []candidate
	m := eventMap(cur.info)
	add := func(c candidate) {
		if keep == nil || keep(c) {
			out = append(out, c)
		}
	}
	for k, v := range cur.entries {
		old, ok := prev.entries[k]
		switch {
		case !ok:
			add(newChange(cur.readAt, m, prev.readAt, event.ChangeAdded, k, []byte(v), nil))
		case old != v:
			add(newChange(cur.readAt, m, prev.readAt, event.ChangeModified, k, []byte(v), []byte(old)))
		}
	}
	for k, old := range prev.entries {
		if _, ok := cur.entries[k]; !ok {
			add(newChange(cur.readAt, m, prev.readAt, event.ChangeRemoved, k, nil, []byte(old)))
		}
	}
	return out
}

// newChange is the candidate map_changed event for key: value is the new
// value (nil when removed), old the previous one (nil when added, or when
// only its hash was kept). The byte slices are copied.
func newChange(at time.Time, m *event.Map, since time.Time, change, key string, value, old []byte) candidate {
	ev := &event.Event{Time: at, Type: event.MapChanged, Source: event.SourceScan, Map: m,
		Key: []byte(key), HasKey: true, KeyTotal: uint64(len(key)), Change: change, Extra: &event.Extra{Since: since}}
	if value != nil {
		ev.Value, ev.HasValue, ev.ValueTotal = append([]byte(nil), value...), true, uint64(len(value))
	}
	if old != nil {
		ev.OldValue, ev.HasOldValue = append([]byte(nil), old...), true
	}
	return candidate{ev: ev, since: since, key: key}
}

func eventMap(info MapInfo) *event.Map {
	return &event.Map{
		ID: info.ID, Name: info.Name, Type: uint32(info.Type), KeySize: info.KeySize,
		ValueSize: info.ValueSize, MaxEntries: info.MaxEntries, Flags: info.Flags,
	}
}

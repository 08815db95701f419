// State persistence: the last pass, saved so that a change made while
// bpfmon was stopped is reported when it starts again.

package scanner

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"syscall"
	"time"

	"github.com/bpfmon/bpfmon/internal/event"
)

const (
	stateFormat  = "bpfmon-scanner-state"
	stateVersion = 1
	// Maps up to this size have their contents saved, so a change while
	// down is reported key by key; larger ones only by their hash.
	stateMaxEntries = 1024
	stateMaxBytes   = 64 << 10
	// A state file larger than this is not one bpfmon wrote: at most
	// 64 KiB of contents (hex: twice that) per map, for tens of thousands
	// of maps only hashes. It is not read into memory.
	stateMaxFile = 1 << 30
)

// ErrForeignState says the state file exists but is not bpfmon's: it is
// neither read nor overwritten.
var ErrForeignState = errors.New("not a bpfmon state file")

type stateFile struct {
	Format  string    `json:"format"`
	Version int       `json:"version"`
	Saved   time.Time `json:"saved"` // when the maps below were read
	// Alive is the last time bpfmon wrote the file (each pass, at start
	// and at a clean stop), on the boot BootID names; CleanStop says it
	// then stopped cleanly. Files from before these fields have none:
	// their stop is unknown.
	Alive     time.Time  `json:"alive,omitzero"`
	BootID    string     `json:"boot_id,omitempty"`
	CleanStop *bool      `json:"clean_stop,omitempty"`
	Maps      []mapState `json:"maps"`
	// Watch is Config.SaveExtra's section, kept as is.
	Watch json.RawMessage `json:"watch,omitempty"`
	// Checksum is the SHA-256 of the file's bytes before it, closed by
	// "}": it is written last (see seal), and files of bpfmon before it
	// have none.
	Checksum string `json:"checksum,omitempty"`
}

// checksumField starts the checksum, the last field of a state file.
const checksumField = `,"checksum":"sha256:`

// seal appends the checksum of b, a JSON object, as its last field.
func seal(b []byte) []byte {
	sum := sha256.Sum256(b)
	out := append(b[:len(b)-1:len(b)-1], checksumField...)
	out = hex.AppendEncode(out, sum[:])
	return append(out, `"}`...)
}

// checkSeal says whether b, a state file, is as seal wrote it, and
// whether it has a checksum at all.
func checkSeal(b []byte) (sealed, ok bool) {
	b = bytes.TrimRight(b, "\n")
	i := bytes.LastIndex(b, []byte(checksumField))
	if i < 0 {
		return false, false
	}
	want := b[i+len(checksumField):]
	if len(want) != 2*sha256.Size+2 || !bytes.HasSuffix(want, []byte(`"}`)) {
		return true, false
	}
	body := append(b[:i:i], '}')
	sum := sha256.Sum256(body)
	return true, hex.EncodeToString(sum[:]) == string(want[:2*sha256.Size])
}

// Prior is what the state file read at start says of the bpfmon that
// wrote it.
type Prior struct {
	Found bool // a state file of bpfmon's was read (any version)
	// Untrusted says why a state file that exists cannot be trusted
	// (damaged, not bpfmon's, failing its checksum, writable by others):
	// nothing in it was used, and what happened while bpfmon was down,
	// the owners of protected maps included, is unknown. "" otherwise.
	Untrusted string
	Alive     time.Time // the last time it wrote the file
	// StopKnown: the file says how it stopped (files from before bpfmon
	// recorded it do not); Clean: it stopped cleanly, at Alive.
	StopKnown, Clean bool
	// Rebooted: the host booted since the file was written, so every
	// map it lists was freed and the ids it names may be reused.
	Rebooted bool
	Extra    json.RawMessage // the SaveExtra section saved, nil if none
}

// Prior returns what LoadState read; the zero Prior before, or without a
// state file.
func (s *Scanner) Prior() Prior { return s.prior }

// bootID is the kernel's id of this boot, "" if unknown.
func bootID() string {
	b, err := os.ReadFile("/proc/sys/kernel/random/boot_id")
	if err != nil {
		return ""
	}
	return string(bytes.TrimSpace(b))
}

type mapState struct {
	ID         uint32            `json:"id"`
	Name       string            `json:"name"`
	Type       uint32            `json:"type"`
	KeySize    uint32            `json:"key_size"`
	ValueSize  uint32            `json:"value_size"`
	MaxEntries uint32            `json:"max_entries"`
	Elements   int               `json:"elements"`
	Hash       string            `json:"hash"`
	Entries    map[string]string `json:"entries,omitempty"` // hex key -> hex value
}

// contentHash is independent of the order elements are read in: the sum of
// one hash per element, computed as the map is read. It detects changes, it
// is not a MAC: the state file is only as trustworthy as its directory's
// permissions.
func (s *snapshot) contentHash() string {
	return fmt.Sprintf("%016x:%d", s.sum, s.n)
}

// LoadState reads a state file for the first pass to compare with. A
// missing file is not an error. A file that is bpfmon's but unreadable is
// an error and will be overwritten; a foreign one is ErrForeignState and
// is left alone (the scanner then saves nothing).
func (s *Scanner) LoadState(path string) error {
	s.statePath = path
	// Not through a link, and without waiting on a named pipe.
	file, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NOFOLLOW|syscall.O_NONBLOCK, 0)
	if errors.Is(err, os.ErrNotExist) {
		return s.markNew()
	}
	if err != nil {
		s.statePath = ""
		return s.untrusted(fmt.Errorf("reading state file %s: %w; choose another --state path", path, err))
	}
	defer file.Close()
	fi, err := file.Stat()
	if err != nil {
		return s.untrusted(fmt.Errorf("reading state file %s: %w", path, err))
	}
	if !fi.Mode().IsRegular() {
		// A device or a pipe would never end, and a rename would replace it.
		s.statePath = ""
		return s.untrusted(fmt.Errorf("state file %s: %w: it is not a regular file; choose another --state path", path, ErrForeignState))
	}
	if err := stateWritable(path, fi); err != nil {
		return s.untrusted(fmt.Errorf("state file %s cannot be trusted: %w; it is not used, and will be replaced by one of bpfmon's own", path, err))
	}
	if fi.Size() > stateMaxFile {
		return s.untrusted(fmt.Errorf("state file %s is %d bytes, more than bpfmon ever writes (%d): starting without it; it will be rewritten", path, fi.Size(), int64(stateMaxFile)))
	}
	b, err := io.ReadAll(io.LimitReader(file, stateMaxFile+1))
	if err != nil {
		return s.untrusted(fmt.Errorf("reading state file %s: %w", path, err))
	}
	if len(b) == 0 {
		return s.untrusted(fmt.Errorf("state file %s is empty: bpfmon never writes an empty one; starting without it; it will be rewritten", path))
	}
	if !bytes.HasPrefix(b, []byte(`{"format":"`+stateFormat+`"`)) {
		s.statePath = "" // never overwrite what is not ours
		return s.untrusted(fmt.Errorf("state file %s: %w: it will not be used or overwritten; choose another --state path", path, ErrForeignState))
	}
	var f stateFile
	if err := json.Unmarshal(b, &f); err != nil {
		return s.untrusted(fmt.Errorf("state file %s is corrupt (%v): starting without it; it will be rewritten", path, err))
	}
	if sealed, ok := checkSeal(b); sealed && !ok {
		return s.untrusted(fmt.Errorf("state file %s fails its checksum: it was changed or damaged since bpfmon wrote it; starting without it; it will be rewritten", path))
	}
	s.saved = map[uint32]mapState{}
	for _, m := range f.Maps {
		s.saved[m.ID] = m
	}
	s.savedAt = f.Saved
	s.savedVersion = f.Version
	s.prior = Prior{Found: true, Alive: f.Alive, StopKnown: f.CleanStop != nil, Extra: f.Watch}
	if s.prior.Alive.IsZero() {
		s.prior.Alive = f.Saved
	}
	if f.CleanStop != nil {
		s.prior.Clean = *f.CleanStop
	}
	if now := bootID(); f.BootID != "" && now != "" && f.BootID != now {
		s.prior.Rebooted = true
	}
	if f.Version != stateVersion {
		// Another version's file still says which maps it saw and their
		// hashes: a hash that differs is reported as a change (perhaps
		// one another version's hash makes up), never dropped.
		return fmt.Errorf("state file %s has version %d, this bpfmon writes %d: comparing its maps' content hashes only, any difference is reported as a change while down; it will be rewritten", path, f.Version, stateVersion)
	}
	// From now on the file says bpfmon runs: a kill before the first
	// pass saves is an unclean stop too.
	s.lastSaved = b
	if err := s.rewrite(false); err != nil {
		return err
	}
	return nil
}

// untrusted records that the state file cannot be trusted, and why: the
// watch then reports a monitor gap and adopts no holder as an owner.
func (s *Scanner) untrusted(err error) error {
	s.prior = Prior{Untrusted: err.Error()}
	// Replaced at once, when it is to be, by a file that says bpfmon
	// runs: a kill before the first pass is then an unclean stop.
	if s.statePath != "" {
		if werr := s.markNew(); werr != nil {
			return errors.Join(err, werr)
		}
	}
	return err
}

// stateWritable says whether anyone but bpfmon's user could have written
// the state file fi at path, or replaced it: the file or its directory
// owned by another user, or writable by group or others. A sticky
// directory is no exception: whoever may create files in it may create
// the state file while it does not exist.
func stateWritable(path string, fi os.FileInfo) error {
	euid := uint32(os.Geteuid())
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		switch {
		case st.Uid != euid:
			return fmt.Errorf("it is owned by uid %d, not by bpfmon's user (uid %d)", st.Uid, euid)
		case st.Mode&0o022 != 0:
			return fmt.Errorf("its mode %04o lets group or others write it", st.Mode&0o7777)
		}
	}
	dir := filepath.Dir(path)
	di, err := os.Stat(dir)
	if err != nil {
		return err
	}
	if st, ok := di.Sys().(*syscall.Stat_t); ok {
		switch {
		case st.Uid != euid && st.Uid != 0:
			return fmt.Errorf("its directory %s is owned by uid %d, who may replace it", dir, st.Uid)
		case st.Mode&0o022 != 0:
			return fmt.Errorf("its directory %s (mode %04o) lets group or others replace it", dir, st.Mode&0o7777)
		}
	}
	return nil
}

// markNew writes, when there is no state file yet, one that says bpfmon
// runs (LoadState does it for a file it read): a kill before the first
// pass is then an unclean stop.
func (s *Scanner) markNew() error {
	f := stateFile{Format: stateFormat, Version: stateVersion, Saved: time.Now().UTC(), BootID: bootID(), Maps: []mapState{}}
	s.lastSaved, _ = json.Marshal(&f)
	return s.rewrite(false)
}

// SaveStopped marks the state file stopped cleanly, with the state of the
// last completed pass (or the one read at start, before any) and the
// current SaveExtra section. The watch calls it once everything is in.
func (s *Scanner) SaveStopped() error {
	return s.rewrite(true)
}

// rewrite writes the last saved state again, with Alive now, the stop
// said and the current SaveExtra section. BootID stays the boot the maps
// were read on.
func (s *Scanner) rewrite(clean bool) error {
	if s.statePath == "" || s.lastSaved == nil {
		return nil
	}
	var f stateFile
	if err := json.Unmarshal(s.lastSaved, &f); err != nil {
		return fmt.Errorf("saving scanner state: %w", err)
	}
	f.Alive, f.CleanStop, f.Checksum = time.Now().UTC(), &clean, ""
	if s.cfg.SaveExtra != nil {
		f.Watch = s.cfg.SaveExtra()
	}
	b, err := json.Marshal(&f)
	if err != nil {
		return fmt.Errorf("saving scanner state: %w", err)
	}
	return s.writeState(seal(b))
}

// Why a change while down is reported without its keys.
const (
	reasonDamaged      = "the saved contents are damaged: the keys that changed are unknown"
	reasonOtherVersion = "the state was saved by another version of bpfmon: only its content hash was compared"
	reasonGone         = "the map was freed while bpfmon was down"
	reasonRebooted     = "the host restarted while bpfmon was down: every map was freed"
)

// whileDown reports the differences between a map's saved state and its
// first snapshot since start.
func (s *Scanner) whileDown(snap *snapshot, emit func(*event.Event) error) error {
	old, ok := s.saved[snap.info.ID]
	if !ok || s.prior.Rebooted {
		return nil // after a reboot, every saved map is gone (savedGone)
	}
	delete(s.saved, snap.info.ID)
	i := snap.info
	if old.Name != i.Name || old.Type != uint32(i.Type) || old.KeySize != i.KeySize || old.ValueSize != i.ValueSize || old.MaxEntries != i.MaxEntries {
		// Not the same map: the saved one was freed and its id, after
		// the kernel's ids wrapped around, names another.
		return emit(goneEvent(old, snap.readAt))
	}
	if old.Hash == snap.contentHash() {
		return nil
	}
	m := eventMap(i)
	whole := func(reason string) error {
		return emit(&event.Event{Time: snap.readAt, Type: event.MapChanged, Source: event.SourceScan, Map: m,
			Change: event.ChangeModified, WhileDown: true, HasCount: true, Count: uint64(snap.n), Reason: reason})
	}
	if s.savedVersion != stateVersion {
		return whole(reasonOtherVersion)
	}
	if old.Entries == nil || snap.entries == nil {
		// Too large to have been saved: only the fact and the count.
		return whole("")
	}
	prev := &snapshot{info: i, readAt: s.savedAt, entries: map[string]string{}}
	for hk, hv := range old.Entries {
		k, err1 := hex.DecodeString(hk)
		v, err2 := hex.DecodeString(hv)
		if err1 != nil || err2 != nil || len(k) != int(i.KeySize) {
			// The hash said changed; which keys is lost, that it
			// changed is not.
			return whole(reasonDamaged)
		}
		prev.entries[string(k)] = string(v)
	}
	if len(prev.entries) != old.Elements {
		return whole(reasonDamaged)
	}
	cands := diff(prev, snap, nil)
	if len(cands) == 0 {
		// The hash says changed, the saved entries say not: one of the
		// two is damaged, and the change is reported.
		return whole(reasonDamaged)
	}
	sort.Slice(cands, func(a, b int) bool { return cands[a].key < cands[b].key })
	for n, c := range cands {
		if n == s.cfg.MaxKeyed {
			return emit(&event.Event{Time: snap.readAt, Type: event.MapChanged, Source: event.SourceScan, Map: m,
				WhileDown: true, HasCount: true, Count: uint64(len(cands))})
		}
		c.ev.WhileDown = true
		if err := emit(c.ev); err != nil {
			return err
		}
	}
	return nil
}

// savedGone reports the saved maps the first pass did not find: freed
// while bpfmon was down, with all they held. Maps it found but cannot
// scan are not gone.
func (s *Scanner) savedGone(at time.Time, emit func(*event.Event) error) error {
	ids := make([]uint32, 0, len(s.saved))
	for id := range s.saved {
		if !s.reported[id] || s.prior.Rebooted {
			ids = append(ids, id)
		}
	}
	sort.Slice(ids, func(a, b int) bool { return ids[a] < ids[b] })
	for _, id := range ids {
		ev := goneEvent(s.saved[id], at)
		if s.prior.Rebooted {
			ev.Reason = reasonRebooted
		}
		if err := emit(ev); err != nil {
			return err
		}
	}
	return nil
}

func goneEvent(old mapState, at time.Time) *event.Event {
	m := &event.Map{ID: old.ID, Name: old.Name, Type: old.Type, KeySize: old.KeySize,
		ValueSize: old.ValueSize, MaxEntries: old.MaxEntries}
	return &event.Event{Time: at, Type: event.MapChanged, Source: event.SourceScan, Map: m,
		Change: event.ChangeRemoved, WhileDown: true, HasCount: true, Count: uint64(max(old.Elements, 0)), Reason: reasonGone}
}

// saveState writes the current snapshots, saying bpfmon runs.
func (s *Scanner) saveState() error {
	if s.statePath == "" {
		return nil
	}
	now := time.Now().UTC()
	f := stateFile{Format: stateFormat, Version: stateVersion, Saved: now, Alive: now, BootID: bootID(), CleanStop: new(bool)}
	if s.cfg.SaveExtra != nil {
		f.Watch = s.cfg.SaveExtra()
	}
	// Contents saved in all: a 32nd of the scanner's memory (hex and
	// JSON make about 2.5 times as much of the file, built in memory);
	// past it, maps are saved by their hashes only.
	contents := uint64(s.cfg.Memory) / 32
	for _, snap := range s.snaps {
		i := snap.info
		ms := mapState{ID: i.ID, Name: i.Name, Type: uint32(i.Type), KeySize: i.KeySize, ValueSize: i.ValueSize,
			MaxEntries: i.MaxEntries, Elements: snap.n, Hash: snap.contentHash()}
		if snap.entries != nil && snap.n <= stateMaxEntries && snap.bytes <= stateMaxBytes && snap.bytes <= contents {
			contents -= snap.bytes
			ms.Entries = make(map[string]string, len(snap.entries))
			for k, v := range snap.entries {
				ms.Entries[hex.EncodeToString([]byte(k))] = hex.EncodeToString([]byte(v))
			}
		}
		f.Maps = append(f.Maps, ms)
	}
	sort.Slice(f.Maps, func(a, b int) bool { return f.Maps[a].ID < f.Maps[b].ID })
	b, err := json.Marshal(&f)
	if err != nil {
		return err
	}
	s.lastSaved = b
	return s.writeState(seal(b))
}

// writeState writes b as the state file atomically: a temporary file in
// the same directory, synced, then renamed over the old one.
func (s *Scanner) writeState(b []byte) error {
	tmp, err := os.CreateTemp(filepath.Dir(s.statePath), ".bpfmon-state-*")
	if err != nil {
		return fmt.Errorf("saving scanner state: %w", err)
	}
	defer os.Remove(tmp.Name())
	_, err = tmp.Write(b)
	if err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("saving scanner state: %w", err)
	}
	if err := os.Rename(tmp.Name(), s.statePath); err != nil {
		return fmt.Errorf("saving scanner state: %w", err)
	}
	return nil
}

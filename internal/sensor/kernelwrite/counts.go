package kernelwrite

import (
	"errors"
	"fmt"
	"time"

	"github.com/cilium/ebpf"

	"github.com/bpfmon/bpfmon/internal/event"
	"github.com/bpfmon/bpfmon/internal/sensor/record"
)

// Writes chooses which writes by programs are itemized (--kernel-writes).
type Writes string

// What is itemized.
const (
	// WritesSelective itemizes the writes to selected maps (protected,
	// or chosen with --map-id) and the first write of each (map, writer)
	// pair; the kernel counts the rest, reported as map_writes_counted.
	WritesSelective Writes = "selective"
	// WritesAll itemizes every write (audits; costly beside busy tools).
	WritesAll Writes = "all"
)

// ParseWrites parses --kernel-writes.
func ParseWrites(s string) (Writes, error) {
	switch w := Writes(s); w {
	case WritesSelective, WritesAll:
		return w, nil
	}
	return "", fmt.Errorf("unknown --kernel-writes %q: want selective or all", s)
}

// Defaults of the counting.
const (
	// DefaultCountEntries bounds the kernel's table of counts: one entry
	// per (map, writer, process, operation) written in an interval.
	DefaultCountEntries = 4096
	// DefaultSummaryEvery is how often counted writes are summarised.
	DefaultSummaryEvery = 10 * time.Second
)

// counter drains the kernel's counts (kw_counts) into map_writes_counted
// events. The programs count into the epoch kw_epoch names; every
// summary interval the epoch written one interval ago, which no program
// writes any more, is read and emptied, then the epoch flips. Counts
// written while a summary is read are therefore never lost to a delete:
// they are in the other epoch. At the end, after the hooks are detached,
// both are drained.
type counter struct {
	counts *ebpf.Map
	epoch  *ebpf.Map
	every  int // ticks (record.LossInterval) between summaries
	ticks  int
	cur    uint32 // the epoch the programs write
	maps   map[uint32]event.Map
}

// Select has every write to map id itemized (a protected map, or one
// chosen with --map-id). Safe to call from any goroutine.
func (s *Sensor) Select(id uint32) error {
	m := s.selectMap()
	if m == nil {
		return nil // not started, or itemizing everything
	}
	if err := m.Update(id, uint8(1), ebpf.UpdateAny); err != nil && !errors.Is(err, ebpf.ErrKeyExist) {
		return fmt.Errorf("selecting map %d for itemized kernel-side writes: %w", id, err)
	}
	return nil
}

func (s *Sensor) selectMap() *ebpf.Map {
	if s.coll == nil || s.writes == WritesAll {
		return nil
	}
	return s.coll.Maps[kwMapKwSelect]
}

// summarise emits the counts of the epoch not written now, then flips
// the epoch; final drains both.
func (d *decoder) summarise(emit record.Emit, final bool) error {
	c := d.count
	if c == nil {
		return nil
	}
	c.ticks++
	if !final && c.ticks < c.every {
		return nil
	}
	c.ticks = 0
	old := c.cur ^ 1
	if err := d.drain(old, emit); err != nil {
		return err
	}
	if final {
		return d.drain(c.cur, emit)
	}
	if err := c.epoch.Update(uint32(0), old, ebpf.UpdateAny); err != nil {
		return fmt.Errorf("flipping the kernel-side sensor's count epoch: %w", err)
	}
	c.cur = old
	return nil
}

// drain reads and deletes the counts of epoch, summed over CPUs, one event
// per (map, writer, process, operation).
func (d *decoder) drain(epoch uint32, emit record.Emit) error {
	c := d.count
	var (
		key  kwKwCountKey
		vals []kwKwCount
		keys []kwKwCountKey
	)
	it := c.counts.Iterate()
	for it.Next(&key, &vals) {
		if uint32(key.Epoch) == epoch {
			keys = append(keys, key)
		}
	}
	if err := it.Err(); err != nil {
		return fmt.Errorf("reading the kernel's counts of writes: %w", err)
	}
	for _, k := range keys {
		if err := c.counts.Lookup(&k, &vals); err != nil {
			if errors.Is(err, ebpf.ErrKeyNotExist) {
				continue
			}
			return fmt.Errorf("reading the kernel's counts of writes: %w", err)
		}
		var sum kwKwCount
		for _, v := range vals {
			if v.Count == 0 {
				continue
			}
			sum.Count += v.Count
			if sum.First == 0 || v.First < sum.First {
				sum.First = v.First
			}
			sum.Last = max(sum.Last, v.Last)
		}
		// Emitted before it is deleted: CountedSince, asked meanwhile
		// by the content scanner, finds it in one place or the other.
		if sum.Count > 0 {
			if err := emit(d.summary(k, sum)); err != nil {
				return err
			}
		}
		if err := c.counts.Delete(&k); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
			return fmt.Errorf("emptying the kernel's counts of writes: %w", err)
		}
	}
	return nil
}

// CountedSince reports whether the kernel counted writes to map id after
// since that are not yet summarised: the content scanner's explanation
// for a change it finds before the summary arrives. Safe to call from any
// goroutine.
func (s *Sensor) CountedSince(id uint32, since time.Time) bool {
	if s.dec == nil || s.dec.count == nil {
		return false
	}
	var (
		key  kwKwCountKey
		vals []kwKwCount
	)
	it := s.dec.count.counts.Iterate()
	for it.Next(&key, &vals) {
		if key.MapId != id {
			continue
		}
		for _, v := range vals {
			if v.Count > 0 && s.dec.rd.Time(v.Last).After(since) {
				return true
			}
		}
	}
	return false
}

// summary makes the map_writes_counted event of one count.
func (d *decoder) summary(k kwKwCountKey, sum kwKwCount) *event.Event {
	m, ok := d.count.maps[k.MapId]
	if !ok {
		m = event.Map{ID: k.MapId}
	}
	ev := &event.Event{
		Time:     d.rd.Time(sum.Last),
		Type:     event.MapWritesCounted,
		Source:   event.SourceKernel,
		Map:      &m,
		Count:    sum.Count,
		HasCount: true,
		Extra:    &event.Extra{First: d.rd.Time(sum.First), Op: opName(uint32(k.Op))},
	}
	if k.Tgid != 0 {
		ev.Process = &event.Process{PID: k.Tgid}
	} else {
		ev.Interrupt = true
	}
	// The writer's address resolves to the program that held it when
	// the pair was first seen: a program loaded there later is a new
	// pair (the kernel's birth generation tells them apart).
	if prog, by := d.rs.writer([]uint64{k.Writer}, sum.First); by == byProgram {
		ev.Prog = prog
	} else {
		ev.Prog = &event.Prog{Unknown: true}
	}
	return ev
}

// noteMap remembers a map's attributes from an itemized write, for the
// summaries of its counted writes.
func (d *decoder) noteMap(m *event.Map) {
	c := d.count
	if c == nil {
		return
	}
	if _, ok := c.maps[m.ID]; ok {
		return
	}
	if len(c.maps) >= 4096 {
		clear(c.maps)
	}
	c.maps[m.ID] = *m
}

func opName(op uint32) string {
	switch op {
	case kopUpdate:
		return "update"
	case kopDelete:
		return "delete"
	case kopPush:
		return "push"
	case kopPop:
		return "pop"
	}
	return "unknown"
}

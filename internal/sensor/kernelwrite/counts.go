package kernelwrite

import (
	"encoding/binary"
	"errors"
	"fmt"
	"sync"
	"time"
	"unsafe"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"

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

// counter drains the kernel's counts (kw_counts, and each CPU's cache of
// them, kw_cache) into map_writes_counted events. The programs count into
// the epoch kw_gen names (its parity), which user space moves once per
// interval (kw_ctl_epoch); then it flushes every CPU's cache of the epoch
// left (kw_ctl_flush, run on each CPU: the programs read the epoch and
// write kw_counts only inside the cache's critical section, which the
// flush, interrupting that CPU, waits out) and only then reads and empties
// that epoch's counts: no increment can fall between its read and its
// delete. A CPU whose flush finds its cache busy three times running is
// tried again at the next tick, and the epoch is not moved again before
// it is drained. At the end, after the hooks are detached, every cache is
// flushed and both epochs drained.
type counter struct {
	counts  *ebpf.Map
	forget  *ebpf.Program // kw_ctl_forget: the maps are frozen against bpf(2)
	flip    *ebpf.Program // kw_ctl_epoch
	flush   *ebpf.Program // kw_ctl_flush
	cpus    int
	every   time.Duration
	next    time.Time // when the epoch is moved next
	epoch   uint64    // kw_gen's epoch, as moved by flip
	pending bool      // the epoch before is not drained yet
	maps    map[uint32]event.Map
	// mu orders the flushes and drains (the reader's goroutine) with
	// CountedSince (the content scanner's).
	mu sync.Mutex
	// CountedSince's reading of the counts: the latest write per map.
	lastAt time.Time
	last   map[uint32]uint64
}

// flushTries is how often a CPU's flush is tried in a row while a program
// there is inside the cache (microseconds, unless preempted).
const flushTries = 3

// flushCaches flushes every online CPU's cache into kw_counts: the slots
// of epochs other than the current one, or all. It reports whether every
// CPU's flush ran (false: one was busy each time). The caller holds mu.
func (c *counter) flushCaches(all bool) (bool, error) {
	mode := uint64(0)
	if all {
		mode = 1
	}
	done := true
	for cpu := range c.cpus {
		ok := false
		for range flushTries {
			ret, err := c.flush.Run(&ebpf.RunOptions{Context: mode, Flags: unix.BPF_F_TEST_RUN_ON_CPU, CPU: uint32(cpu)})
			if errors.Is(err, unix.ENXIO) {
				ok = true // offline: it runs no program
				break
			}
			if err != nil {
				return false, fmt.Errorf("flushing CPU %d's cache of counted writes: %w", cpu, err)
			}
			if ret == 0 {
				ok = true
				break
			}
		}
		done = done && ok
	}
	return done, nil
}

// flushAll flushes every cache whole, after the hooks are detached.
func (c *counter) flushAll() {
	c.mu.Lock()
	defer c.mu.Unlock()
	_, _ = c.flushCaches(true) // a failure shows as counts missing from the summaries: nothing else to do at stop
}

// Select has every write to map id itemized (a protected map, or one
// chosen with --map-id). Safe to call from any goroutine.
func (s *Sensor) Select(id uint32) error {
	if s.ctlSelect == nil || s.writes == WritesAll {
		return nil // not started, or itemizing everything
	}
	if err := runCtl(s.ctlSelect, binary.LittleEndian.AppendUint32(nil, id)); err != nil {
		return fmt.Errorf("selecting map %d for itemized kernel-side writes: %w", id, err)
	}
	return nil
}

// runCtl runs a control program (kw_ctl_*) on arg.
func runCtl(p *ebpf.Program, arg []byte) error {
	pkt := make([]byte, 14, 14+len(arg)) // the Ethernet header the test run strips
	ret, err := p.Run(&ebpf.RunOptions{Data: append(pkt, arg...)})
	if err != nil {
		return err
	}
	if ret != 0 {
		return fmt.Errorf("control program returned %d", ret)
	}
	return nil
}

// summarise emits the counts of the epoch before the current one, once
// per interval; final drains both.
func (d *decoder) summarise(emit record.Emit, final bool) error {
	c := d.count
	if c == nil {
		return nil
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if final {
		return errors.Join(d.drain(0, emit), d.drain(1, emit))
	}
	if !c.pending {
		if time.Now().Before(c.next) {
			return nil
		}
		if err := runCtl(c.flip, nil); err != nil {
			return fmt.Errorf("moving the kernel's epoch of counts: %w", err)
		}
		c.epoch++
		c.pending = true
		c.next = time.Now().Add(c.every)
	}
	done, err := c.flushCaches(false)
	if err != nil || !done {
		return err
	}
	c.pending = false
	return d.drain(uint32((c.epoch-1)&1), emit)
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
		if err := runCtl(c.forget, k.bytes()); err != nil {
			return fmt.Errorf("emptying the kernel's counts of writes: %w", err)
		}
	}
	return nil
}

// CountedSince reports whether the kernel counted writes to map id after
// since that are not yet summarised: the content scanner's explanation
// for a change it finds before the summary arrives. The table is read at
// most every countedFresh, for all maps at once (the scanner asks per
// changed key). Safe to call from any goroutine.
func (s *Sensor) CountedSince(id uint32, since time.Time) bool {
	if s.dec == nil || s.dec.count == nil {
		return false
	}
	c := s.dec.count
	c.mu.Lock()
	defer c.mu.Unlock()
	if time.Since(c.lastAt) > countedFresh {
		c.lastAt = time.Now()
		// The caches' counts, with the time of their last write, are
		// in kw_counts only once flushed.
		if _, err := c.flushCaches(true); err != nil {
			return false
		}
		clear(c.last)
		var (
			key  kwKwCountKey
			vals []kwKwCount
		)
		it := c.counts.Iterate()
		for it.Next(&key, &vals) {
			for _, v := range vals {
				if v.Count > 0 {
					c.last[key.MapId] = max(c.last[key.MapId], v.Last)
				}
			}
		}
	}
	last, ok := c.last[id]
	return ok && s.dec.rd.Time(last).After(since)
}

// countedFresh is how old CountedSince's reading of the counts may be.
const countedFresh = 100 * time.Millisecond

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

// bytes gives the key as the kernel lays it out (kw_ctl_forget's
// argument), without copying.
func (k *kwKwCountKey) bytes() []byte {
	return unsafe.Slice((*byte)(unsafe.Pointer(k)), unsafe.Sizeof(*k))
}

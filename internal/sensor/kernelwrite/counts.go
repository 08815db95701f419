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

// counter drains the kernel's counts (kw_counts) into map_writes_counted
// events. The programs count into epoch (CLOCK_BOOTTIME / epochNS) & 1;
// once per epoch, early in it, the other epoch (written until its end,
// at least drainMargin ago) is read and emptied: no increment can fall
// between its read and its delete. An epoch not drained in time (no
// tick in the window) is written on in the next epoch of its parity and
// summarised then: counts merge, none is lost. At the end, after the
// hooks are detached, both are drained.
type counter struct {
	counts  *ebpf.Map
	forget  *ebpf.Program // kw_ctl_forget: the maps are frozen against bpf(2)
	epochNS uint64
	drained uint64 // the last epoch number whose predecessor was drained
	maps    map[uint32]event.Map
	// CountedSince's reading of the counts: the latest write per map.
	mu     sync.Mutex
	lastAt time.Time
	last   map[uint32]uint64
}

// drainMargin is how long after an epoch ended its counts are read: a
// program that read the clock just before the end has finished.
const drainMargin = 100 * time.Millisecond

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

// boottime is CLOCK_BOOTTIME in ns, the programs' clock.
func boottime() uint64 {
	var ts unix.Timespec
	if unix.ClockGettime(unix.CLOCK_BOOTTIME, &ts) != nil {
		return 0
	}
	return uint64(ts.Nano())
}

// summarise emits the counts of the epoch not written now, once per
// epoch; final drains both.
func (d *decoder) summarise(emit record.Emit, final bool) error {
	c := d.count
	if c == nil {
		return nil
	}
	if final {
		return errors.Join(d.drain(0, emit), d.drain(1, emit))
	}
	now := boottime()
	n, into := now/c.epochNS, now%c.epochNS
	// Early in the epoch, well before the other one is written again.
	if n == c.drained || into < uint64(drainMargin) || into > c.epochNS/2 {
		return nil
	}
	c.drained = n
	return d.drain(uint32((n+1)&1), emit)
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

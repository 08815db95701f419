package record

import (
	"errors"
	"fmt"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/ringbuf"
	"github.com/cilium/ebpf/rlimit"

	"github.com/bpfmon/bpfmon/internal/event"
)

// DefaultSize is the ring buffer's default size in bytes.
const DefaultSize = 32 << 20

// LossInterval is how often lost records are checked and reported, and
// the sensors' periodic work (OnTick) done.
const LossInterval = time.Second

// PollInterval is how long records may wait in the ring buffer before the
// reader looks, unless wakeupMax bytes (at most 1/8 of the ring) are waiting
// and the kernel wakes the reader. Measured: a 10ms poll cost 1.2% of a core
// on an idle host, over the 1% target.
const PollInterval = 100 * time.Millisecond

// idleEvery is how often, at most, Run calls idle while records keep
// coming: measured, a flush each time the ring was emptied took 17% of
// bpfmon's CPU in a burst of a million updates (a write(2) each).
const idleEvery = 10 * time.Millisecond

// wakeupMax bounds how much may wait in the ring before the kernel wakes the
// reader: a burst is picked up after at most about a thousand records.
const wakeupMax = 256 << 10

// Ring is bpfmon's one ring buffer: every sensor's programs write into it
// (Prepare puts it in their objects), and Run reads it.
type Ring struct {
	*Demux
	m       *ebpf.Map
	id      uint32
	reader  *ringbuf.Reader
	losses  []*Loss
	tickers []func(Emit) error
	// malformed counts the records Run skipped as undecodable.
	malformed atomic.Uint64
	// closeMu keeps Close from unmapping the ring while Readable looks
	// at it from another goroutine.
	closeMu sync.RWMutex
	closed  bool
}

// Malformed returns how many records Run skipped as undecodable.
func (r *Ring) Malformed() uint64 { return r.malformed.Load() }

// NewRing creates the ring buffer, size bytes rounded up to a power of two
// of at least one page (0: DefaultSize).
func NewRing(size int) (*Ring, error) {
	if size == 0 {
		size = DefaultSize
	}
	spec, err := loadRecord()
	if err != nil {
		return nil, fmt.Errorf("parsing the embedded BPF object: %w", err)
	}
	var specs recordMapSpecs
	if err := spec.Assign(&specs); err != nil {
		return nil, fmt.Errorf("%w (regenerate the BPF objects with go generate)", err)
	}
	ms := specs.Events.Copy()
	ms.MaxEntries = uint32(roundSize(size))
	// Before 5.11 the ring is charged to RLIMIT_MEMLOCK: the first
	// object every sensor needs raises it (a no-op on later kernels).
	_ = rlimit.RemoveMemlock()
	m, err := ebpf.NewMap(ms)
	if err != nil {
		return nil, fmt.Errorf("creating the ring buffer of %d bytes: %w", ms.MaxEntries, err)
	}
	r := &Ring{Demux: NewDemux(), m: m}
	if info, err := m.Info(); err == nil {
		if id, ok := info.ID(); ok {
			r.id = uint32(id)
		}
	}
	if r.reader, err = ringbuf.NewReader(m); err != nil {
		m.Close()
		return nil, fmt.Errorf("opening the ring buffer: %w", err)
	}
	return r, nil
}

func roundSize(n int) int {
	r := os.Getpagesize()
	for r < n {
		r <<= 1
	}
	return r
}

// Map is the ring buffer.
func (r *Ring) Map() *ebpf.Map { return r.m }

// MapID is the ring buffer's map id.
func (r *Ring) MapID() uint32 { return r.id }

// Size is the ring buffer's size in bytes.
func (r *Ring) Size() uint32 { return r.m.MaxEntries() }

// Readable is how many bytes the programs wrote that Run has not read
// yet; 0 once the ring is closed. Safe to call from any goroutine.
func (r *Ring) Readable() int {
	r.closeMu.RLock()
	defer r.closeMu.RUnlock()
	if r.closed || r.reader == nil {
		return 0
	}
	return r.reader.AvailableBytes()
}

// WakeupBytes is how much may be buffered before a program wakes the
// reader (wakeup_bytes in every object).
func (r *Ring) WakeupBytes() uint64 { return uint64(min(r.Size()/8, wakeupMax)) }

// Prepare readies a sensor's object for the ring: it sets wakeup_bytes
// and returns the map replacements that put the ring in the place of the
// object's own "events" definition (record.h), for
// ebpf.CollectionOptions.MapReplacements; the caller may add its own.
func (r *Ring) Prepare(spec *ebpf.CollectionSpec) (map[string]*ebpf.Map, error) {
	var vars struct {
		WakeupBytes *ebpf.VariableSpec `ebpf:"wakeup_bytes"`
	}
	var maps struct {
		Events *ebpf.MapSpec `ebpf:"events"`
	}
	if err := spec.Assign(&vars); err != nil {
		return nil, fmt.Errorf("%w (regenerate the BPF objects with go generate)", err)
	}
	if err := spec.Assign(&maps); err != nil {
		return nil, fmt.Errorf("%w (regenerate the BPF objects with go generate)", err)
	}
	if err := vars.WakeupBytes.Set(r.WakeupBytes()); err != nil {
		return nil, fmt.Errorf("setting wakeup_bytes: %w", err)
	}
	maps.Events.MaxEntries = r.Size()
	return map[string]*ebpf.Map{recordMapEvents: r.m}, nil
}

// Loss counts the records one source's programs could not write into the
// ring (it was full), as the kernel counts them, and how many of them were
// reported.
type Loss struct {
	source   string
	total    func() (uint64, error)
	reported uint64
}

// Reported is the number of lost records reported so far.
func (l *Loss) Reported() uint64 { return l.reported }

// CountLost has the ring report, as "lost" events of source, what total
// (the kernel's running count, summed over CPUs) grew by: at most
// LossInterval after it grew, and once more after the final drain.
func (r *Ring) CountLost(source string, total func() (uint64, error)) *Loss {
	l := &Loss{source: source, total: total}
	r.losses = append(r.losses, l)
	return l
}

// Lost is the number of lost records reported, from every source.
func (r *Ring) Lost() uint64 {
	var n uint64
	for _, l := range r.losses {
		n += l.reported
	}
	return n
}

// OnTick has f run every LossInterval and once after the final drain, on
// the reader's goroutine.
func (r *Ring) OnTick(f func(Emit) error) { r.tickers = append(r.tickers, f) }

// Run delivers events to emit until stop is closed; then it calls detach
// (which must return only once no program can write a record any more),
// drains the ring, reports the calls still waiting for their exit and any
// final loss, and returns. idle, if not nil, is called whenever the ring
// has been emptied: the place to flush buffered output. emit and idle are
// called from Run's goroutine only.
func (r *Ring) Run(stop <-chan struct{}, detach func(), emit Emit, idle func() error) error {
	if idle == nil {
		idle = func() error { return nil }
	}
	done := make(chan struct{})
	defer close(done)
	go func() {
		select {
		case <-stop:
			// Detaching waits for running programs to finish, so every
			// record they write is in the ring before Flush.
			detach()
			r.reader.Flush()
		case <-done:
		}
	}()

	var rec ringbuf.Record
	lastIdle := time.Now()
	nextTick := lastIdle.Add(LossInterval)
	r.reader.SetDeadline(time.Now().Add(PollInterval))
	for {
		err := r.reader.ReadInto(&rec)
		switch {
		case err == nil:
			if err := r.Decode(rec.RawSample, emit); err != nil {
				if !errors.Is(err, ErrMalformed) {
					return fmt.Errorf("decoding a ring buffer record: %w", err)
				}
				// Never from a working sensor; counted, and monitoring
				// goes on.
				r.malformed.Add(1)
			}
			if rec.Remaining == 0 {
				// Emptied: flush, but not more often than idleEvery
				// during a burst (each flush is a write(2)); what waits is
				// flushed at the next poll deadline at the latest.
				if now := time.Now(); now.Sub(lastIdle) >= idleEvery {
					if err := idle(); err != nil {
						return err
					}
					lastIdle = now
				}
			}
			continue
		case errors.Is(err, os.ErrDeadlineExceeded):
			if now := time.Now(); now.After(nextTick) {
				if err := r.tick(emit); err != nil {
					return err
				}
				if err := r.Calls.stale(now.Add(-staleAfter), emit); err != nil {
					return err
				}
				nextTick = now.Add(LossInterval)
			}
			if err := idle(); err != nil {
				return err
			}
			lastIdle = time.Now()
			r.reader.SetDeadline(lastIdle.Add(PollInterval))
			continue
		case errors.Is(err, ringbuf.ErrFlushed):
			if err := r.Calls.flush(emit); err != nil {
				return err
			}
			if err := r.tick(emit); err != nil {
				return err
			}
			return idle()
		default:
			return fmt.Errorf("reading the ring buffer: %w", err)
		}
	}
}

// tick reports losses, then runs the sensors' periodic work.
func (r *Ring) tick(emit Emit) error {
	for _, l := range r.losses {
		n, err := l.total()
		if err != nil {
			return err
		}
		if n <= l.reported {
			continue
		}
		ev := &event.Event{Time: time.Now(), Type: event.Lost, Source: l.source, Count: n - l.reported, HasCount: true}
		l.reported = n
		if err := emit(ev); err != nil {
			return err
		}
	}
	for _, f := range r.tickers {
		if err := f(emit); err != nil {
			return err
		}
	}
	return nil
}

// Close frees the ring buffer and its reader.
func (r *Ring) Close() error {
	r.closeMu.Lock()
	defer r.closeMu.Unlock()
	r.closed = true
	if r.reader != nil {
		r.reader.Close()
	}
	return r.m.Close()
}

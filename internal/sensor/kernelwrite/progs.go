package kernelwrite

import (
	"encoding/hex"
	"slices"
	"sort"
	"strings"
	"sync/atomic"
	"time"

	"github.com/bpfmon/bpfmon/internal/bpfsys"
	"github.com/bpfmon/bpfmon/internal/event"
)

// progTable maps addresses of JIT'd code to the programs they belong to.
//
// It starts from bpf_prog_info of every program loaded (read after the
// hooks are attached) and is then kept by the sensor's own records: the
// kernel reports a program's load (REC_PROG) before the program can run,
// and in the same ring buffer as the writes, so when a write record is
// decoded every program that could have made it is already in the table,
// even one that was unloaded since. A newly loaded program replaces any
// range it overlaps (a freed program's memory reused); a freed program's
// ranges stay for goneGrace, for writes it made on another CPU while it
// was being freed.
type progTable struct {
	ranges []progRange // by start, disjoint
	self   map[uint32]bool
	// verify is set once a load or free record was lost: a range may then
	// belong to a program the table never heard of, and each attribution
	// is confirmed with the kernel first.
	verify bool
}

type progRange struct {
	start, end uint64
	prog       *event.Prog
	// loaded is when the program was loaded (CLOCK_BOOTTIME ns): a write
	// older than that was made by whatever held the address before.
	loaded uint64
	gone   time.Time // when its free record arrived; zero while loaded
}

// goneGrace is how long a freed program's ranges are kept.
const goneGrace = 10 * time.Second

func newProgTable(self []uint32) *progTable {
	t := &progTable{self: map[uint32]bool{}}
	for _, id := range self {
		t.self[id] = true
	}
	return t
}

// add records that [start, start+n) holds prog's code from loaded on.
func (t *progTable) add(start uint64, n uint32, prog *event.Prog, loaded uint64) {
	if start == 0 || n == 0 {
		return
	}
	end := start + uint64(n)
	i := sort.Search(len(t.ranges), func(i int) bool { return t.ranges[i].end > start })
	j := i
	for j < len(t.ranges) && t.ranges[j].start < end {
		j++
	}
	r := progRange{start: start, end: end, prog: prog, loaded: loaded}
	t.ranges = append(t.ranges[:i], append([]progRange{r}, t.ranges[j:]...)...)
}

// addImage records every function of a program as bpf_prog_info reports it.
func (t *progTable) addImage(img bpfsys.ProgramImage) {
	prog := &event.Prog{ID: img.ID, Name: bpfsys.ProgramFullName(img.ID, img.Name), Tag: img.Tag}
	for i, s := range img.Starts {
		if i < len(img.Lens) {
			t.add(s, img.Lens[i], prog, img.LoadTime)
		}
	}
}

// addRecord records a program from its REC_PROG record.
func (t *progTable) addRecord(r *kwKprogRec, name string) {
	prog := &event.Prog{ID: r.Id, Name: bpfsys.ProgramFullName(r.Id, name), Tag: hex.EncodeToString(r.Tag[:])}
	for i := 0; i < int(r.Nfuncs) && i < len(r.Start); i++ {
		t.add(r.Start[i], r.Len[i], prog, r.Hdr.Ktime)
	}
}

// gone marks program id's ranges freed at now.
func (t *progTable) gone(id uint32, now time.Time) {
	for i := range t.ranges {
		if t.ranges[i].prog.ID == id && t.ranges[i].gone.IsZero() {
			t.ranges[i].gone = now
		}
	}
}

// prune drops ranges freed more than goneGrace before now.
func (t *progTable) prune(now time.Time) {
	t.ranges = slices.DeleteFunc(t.ranges, func(r progRange) bool {
		return !r.gone.IsZero() && now.Sub(r.gone) > goneGrace
	})
}

// lookup returns the range holding addr, or nil.
func (t *progTable) lookup(addr uint64) *progRange {
	i := sort.Search(len(t.ranges), func(i int) bool { return t.ranges[i].end > addr })
	if i < len(t.ranges) && t.ranges[i].start <= addr {
		return &t.ranges[i]
	}
	return nil
}

// Outcomes of attribution.
type attribution int

const (
	byKernel  attribution = iota // no program on the stack: bpf(2), or the kernel itself
	byProgram                    // a program, identified
	byUnknown                    // something that may be a program, unidentified
)

// frameClass is what a return address outside the core kernel and outside
// every known program turns out to be.
type frameClass int

const (
	frameOpaque      frameClass = iota // unidentified: a module, or an unknown program
	frameTransparent                   // a BPF trampoline or dispatcher: it passes calls on
)

// resolver attributes writes to programs from their stack frames. Its
// methods run on the decoder's goroutine, which they never make wait for
// /proc/kallsyms: a fresh copy is read in the background.
type resolver struct {
	table *progTable
	syms  *kallsyms
	// hooked are the hooked functions' code: the walk starts above them,
	// past bpfmon's own program and its trampoline.
	hooked []span
	// classes caches what addresses outside the core kernel and every
	// known program are, for the snapshot in syms.
	classes map[uint64]frameClass
	// fresh is a newer snapshot, read in the background after an address
	// could not be classified; refreshing is set while that runs.
	fresh      atomic.Pointer[kallsyms]
	refreshing atomic.Bool
	refreshed  time.Time
	// confirm checks an attribution with the kernel when the table may
	// be incomplete (tests replace it).
	confirm func(r *progRange, addr, ktime uint64) bool
}

type span struct{ start, end uint64 }

const refreshEvery = time.Second

// writer walks frames (innermost first) to the program that made the
// call: the first frame in a program other than bpfmon's own, above the
// hooked function. Frames in the core kernel (the helper, the syscall
// path) and in BPF trampolines are passed over; any other frame stops the
// walk as unknown, so a write is never pinned on a program further down
// the stack than something bpfmon cannot see through.
func (rs *resolver) writer(frames []uint64, ktime uint64) (*event.Prog, attribution) {
	if rs.syms == nil {
		return nil, byUnknown // no kernel symbols: nothing can be told apart
	}
	if k := rs.fresh.Swap(nil); k != nil {
		rs.syms = k
		clear(rs.classes)
	}
	if len(frames) == 0 {
		return nil, byUnknown
	}
	for i, f := range frames {
		if rs.inHooked(f) {
			frames = frames[i+1:]
			break
		}
	}
	for _, f := range frames {
		if r := rs.table.lookup(f); r != nil {
			if rs.table.self[r.prog.ID] {
				continue
			}
			if r.loaded > ktime {
				return nil, byUnknown // the address was reused after the write
			}
			if rs.table.verify && !rs.confirm(r, f, ktime) {
				return nil, byUnknown
			}
			return r.prog, byProgram
		}
		if rs.syms.inCore(f) {
			continue
		}
		if rs.classify(f) == frameTransparent {
			continue
		}
		return nil, byUnknown
	}
	return nil, byKernel
}

func (rs *resolver) inHooked(addr uint64) bool {
	for _, h := range rs.hooked {
		if addr >= h.start && addr < h.end {
			return true
		}
	}
	return false
}

// classify tells BPF trampolines and dispatchers, which sit between a
// traced function and its caller, from everything else. An address no
// symbol of the snapshot explains is opaque for now; a fresh snapshot is
// read in the background (trampolines come and go with what is attached).
func (rs *resolver) classify(addr uint64) frameClass {
	if c, ok := rs.classes[addr]; ok {
		return c
	}
	sym, ok := rs.syms.at(addr)
	known := ok && sym.mod != "" && addr-sym.addr < 4096
	if !known {
		rs.refresh()
		return frameOpaque
	}
	c := frameOpaque
	if sym.mod == "bpf" && (strings.HasPrefix(sym.name, "bpf_trampoline_") || strings.HasPrefix(sym.name, "bpf_dispatcher_")) {
		c = frameTransparent
	}
	if len(rs.classes) >= 4096 {
		clear(rs.classes)
	}
	rs.classes[addr] = c
	return c
}

// refresh reads /proc/kallsyms in the background, at most once per
// refreshEvery.
func (rs *resolver) refresh() {
	if time.Since(rs.refreshed) < refreshEvery || !rs.refreshing.CompareAndSwap(false, true) {
		return
	}
	rs.refreshed = time.Now()
	go func() {
		defer rs.refreshing.Store(false)
		if k, err := readKallsyms(); err == nil {
			rs.fresh.Store(k)
		}
	}()
}

// confirmations caches the kernel's word on programs' images for a
// second: a busy program writes many times in a row.
type confirmations struct {
	m map[uint32]confirmation
}

type confirmation struct {
	img bpfsys.ProgramImage
	err error
	at  time.Time
}

// confirm checks that program r.prog still exists, was loaded before the
// write, and holds addr.
func (c *confirmations) confirm(r *progRange, addr, ktime uint64) bool {
	cf, ok := c.m[r.prog.ID]
	if !ok || time.Since(cf.at) > time.Second {
		if len(c.m) >= 1024 {
			clear(c.m)
		}
		img, err := bpfsys.ProgramImageByID(r.prog.ID)
		cf = confirmation{img, err, time.Now()}
		c.m[r.prog.ID] = cf
	}
	if cf.err != nil || cf.img.LoadTime > ktime {
		return false
	}
	for i, s := range cf.img.Starts {
		if i < len(cf.img.Lens) && addr >= s && addr < s+uint64(cf.img.Lens[i]) {
			return true
		}
	}
	return false
}

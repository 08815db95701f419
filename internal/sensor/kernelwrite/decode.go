package kernelwrite

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"time"
	"unsafe"

	"github.com/cilium/ebpf"

	"github.com/bpfmon/bpfmon/internal/bpfsys"
	"github.com/bpfmon/bpfmon/internal/event"
	"github.com/bpfmon/bpfmon/internal/sensor/bpfsyscall"
)

// Record kinds, operations and flags, mirrored from bpf/include/event.h
// (a test compares them).
const (
	recKwrite   = 16
	recProg     = 17
	recProgGone = 18

	kopUpdate = 1
	kopDelete = 2
	kopPush   = 3
	kopPop    = 4

	kfResult     = 1 << 0
	kfIRQ        = 1 << 1
	kfKeyTrunc   = 1 << 2
	kfValueTrunc = 1 << 3
	kfKeyFault   = 1 << 4
	kfValueFault = 1 << 5
	kfAllCPUs    = 1 << 6
	kfOwnerKey   = 1 << 7

	kstatLost     = 0
	kstatProgLost = 1
)

const (
	kwriteHeader = int(unsafe.Sizeof(kwKwrite{}))
	kprogSize    = int(unsafe.Sizeof(kwKprog{}))
)

type decoderConfig struct {
	selfTGID     uint32
	selfPrograms []uint32
	capture      int
	kallsyms     *kallsyms
	stats        *ebpf.Map       // kstats
	writeProgs   []*ebpf.Program // write hooks, whose misses are lost writes
	loadProgs    []*ebpf.Program // load/free hooks, whose misses make the table unsure
	trackLoads   bool
	hooked       []string // the functions hooked
}

// decoder turns the sensor's records into events. Its methods run on the
// syscall sensor's Run goroutine.
type decoder struct {
	cfg     decoderConfig
	rs      resolver
	batches map[uint32]*batchCopy // by thread: the kernel's copies of a batch call so far
	// reported is how many lost writes were last reported; misses the
	// programs' recursion misses at that time.
	reported uint64
}

func newDecoder(cfg decoderConfig) (*decoder, error) {
	d := &decoder{cfg: cfg, batches: map[uint32]*batchCopy{}}
	d.rs = resolver{table: newProgTable(cfg.selfPrograms), syms: cfg.kallsyms, classes: map[uint64]frameClass{},
		refreshed: time.Now(), confirm: (&confirmations{m: map[uint32]confirmation{}}).confirm}
	if cfg.kallsyms != nil {
		for _, fn := range cfg.hooked {
			if sp, ok := cfg.kallsyms.span(fn); ok {
				d.rs.hooked = append(d.rs.hooked, sp)
			}
		}
	}
	// The programs loaded now. Loaded after the hooks are attached, so a
	// program is either listed here or reported by a REC_PROG record.
	imgs, err := bpfsys.ProgramImages()
	if err != nil {
		return nil, fmt.Errorf("listing the loaded programs' images: %w", err)
	}
	for _, img := range imgs {
		d.rs.table.addImage(img)
	}
	if !cfg.trackLoads {
		// Without the load hook, programs loaded later are unknown to
		// the table: each attribution is confirmed with the kernel.
		d.rs.table.verify = true
	}
	return d, nil
}

// Decode implements bpfsyscall.Extension.
func (d *decoder) Decode(raw []byte, calls bpfsyscall.Calls, emit func(*event.Event) error) error {
	switch *(*uint32)(unsafe.Pointer(&raw[0])) {
	case recProg, recProgGone:
		if len(raw) < kprogSize {
			return fmt.Errorf("short program record: %d bytes, want %d", len(raw), kprogSize)
		}
		r := (*kwKprog)(unsafe.Pointer(&raw[0]))
		if r.Kind == recProgGone {
			d.rs.table.gone(r.Id, time.Now())
			return nil
		}
		d.rs.table.addRecord(r, calls.String(r.Name[:]))
		if r.FuncCnt > r.Nfuncs {
			// More functions than the record holds: read the rest.
			if img, err := bpfsys.ProgramImageByID(r.Id); err == nil {
				d.rs.table.addImage(img)
			}
		}
		return nil
	case recKwrite:
		return d.write(raw, calls, emit)
	}
	return fmt.Errorf("unknown record kind %d", *(*uint32)(unsafe.Pointer(&raw[0])))
}

func (d *decoder) write(raw []byte, calls bpfsyscall.Calls, emit func(*event.Event) error) error {
	if len(raw) < kwriteHeader {
		return fmt.Errorf("short kernel write record: %d bytes, want at least %d", len(raw), kwriteHeader)
	}
	r := (*kwKwrite)(unsafe.Pointer(&raw[0]))
	data := raw[kwriteHeader:]
	if uint64(r.KeyLen)+uint64(r.ValueLen) > uint64(len(data)) || r.Nframes > uint32(len(r.Frames)) {
		return fmt.Errorf("malformed kernel write record: key %d + value %d bytes of %d, %d frames", r.KeyLen, r.ValueLen, len(data), r.Nframes)
	}
	key := data[:r.KeyLen]
	value := data[r.KeyLen : r.KeyLen+r.ValueLen]
	irq := r.Flags&kfIRQ != 0

	prog, by := d.rs.writer(r.Frames[:r.Nframes], r.Ktime)
	if by != byProgram && !irq {
		// No program on the stack (or none could be seen): a bpf(2) call
		// of this thread, if one is in flight on this map, is reported
		// once, by the syscall sensor, with the kernel's copy.
		if ev := calls.InFlight(r.Tid); ev != nil && sameCall(ev, r) {
			d.merge(ev, r, key, value)
			return nil
		}
		if by == byKernel && r.Pid == d.cfg.selfTGID {
			return nil // bpfmon's own bpf(2) calls, excluded as by the syscall sensor
		}
	}

	ev := &event.Event{
		Time:   calls.Time(r.Ktime),
		Source: event.SourceKernel,
		Type:   event.MapUpdate,
		Map:    mapOf((*kwMapInfo)(unsafe.Pointer(&r.Map)), calls),
	}
	if r.Op == kopDelete || r.Op == kopPop {
		ev.Type = event.MapDelete
	}
	switch by {
	case byProgram:
		ev.Prog = prog
	case byUnknown:
		ev.Prog = &event.Prog{Unknown: true}
	}
	if r.Flags&kfResult != 0 {
		ev.Result, ev.HasResult = r.Result, true
	}
	if irq {
		ev.Interrupt = true
	} else {
		ev.Process = &event.Process{
			PID: r.Pid, TID: r.Tid, PPID: r.Ppid, UID: r.Uid, GID: r.Gid,
			Comm: calls.String(r.Comm[:]), CgroupID: r.CgroupId,
			Exe: calls.Exe(r.Pid, r.StartTime, r.ExeIno), ExeIno: r.ExeIno,
		}
	}
	if r.Op == kopUpdate || r.Op == kopPush {
		ev.Flags, ev.HasFlags = r.ElemFlags, true
	}
	kv := append([]byte(nil), data[:r.KeyLen+r.ValueLen]...)
	switch {
	case r.Flags&kfOwnerKey != 0:
		if len(key) == 8 {
			ev.Owner, ev.HasOwner = binary.LittleEndian.Uint64(key), true
		}
	case r.KeyTotal > 0 || r.Flags&kfKeyFault != 0:
		ev.Key, ev.HasKey, ev.KeyTotal = kv[:r.KeyLen:r.KeyLen], true, uint64(r.KeyTotal)
		ev.KeyFault = r.Flags&kfKeyFault != 0
	}
	if r.ValueTotal > 0 || r.Flags&kfValueFault != 0 {
		ev.Value, ev.HasValue, ev.ValueTotal = kv[r.KeyLen:], true, uint64(r.ValueTotal)
		ev.ValueFault = r.Flags&kfValueFault != 0
	}
	ev.Truncated = r.Flags&(kfKeyTrunc|kfValueTrunc) != 0
	return emit(ev)
}

func mapOf(m *kwMapInfo, calls bpfsyscall.Calls) *event.Map {
	return &event.Map{ID: m.Id, Name: calls.String(m.Name[:]), Type: m.Type, KeySize: m.KeySize,
		ValueSize: m.ValueSize, MaxEntries: m.MaxEntries, Flags: m.Flags, Frozen: m.Frozen != 0}
}

// sameCall reports whether the kernel hook's record r is part of the bpf(2)
// call ev: same map, and an operation that command performs.
func sameCall(ev *event.Event, r *kwKwrite) bool {
	if ev.Map == nil || ev.Map.ID != r.Map.Id || ev.Source != event.SourceSyscall {
		return false
	}
	switch ev.Type {
	case event.MapUpdate:
		return r.Op == kopUpdate || r.Op == kopPush
	case event.MapDelete:
		return r.Op == kopDelete
	case event.MapLookupAndDelete:
		return r.Op == kopPop
	case event.MapUpdateBatch:
		return r.Op == kopUpdate
	case event.MapDeleteBatch:
		return r.Op == kopDelete
	}
	return false
}

// batchCopy gathers the kernel's copies of a batch call's elements, one
// record per element, in the order the kernel processes them.
type batchCopy struct {
	ev           *event.Event
	userKey      []byte // what the syscall sensor read at entry
	userValue    []byte
	keys, values []byte
	elements     int
	keyTruncated bool
	valTruncated bool
	keyDiffers   bool
	valueDiffers bool
}

// merge gives the syscall event ev the kernel's copy of key and value from
// r. Where the caller's buffers, read at syscall entry, held other bytes,
// ev says so: they changed during the call.
func (d *decoder) merge(ev *event.Event, r *kwKwrite, key, value []byte) {
	owner := r.Flags&kfOwnerKey != 0
	if ev.Type != event.MapUpdateBatch && ev.Type != event.MapDeleteBatch {
		differs := false
		if !owner && r.KeyTotal > 0 {
			if ev.HasKey && !ev.KeyFault && !prefixEqual(ev.Key, key) {
				differs = true
			}
			ev.Key, ev.HasKey, ev.KeyTotal, ev.KeyFault = append([]byte(nil), key...), true, uint64(r.KeyTotal), false
		}
		if r.ValueTotal > 0 {
			if ev.HasValue && !ev.ValueFault && !prefixEqual(ev.Value, value) {
				differs = true
			}
			ev.Value, ev.HasValue, ev.ValueTotal, ev.ValueFault = append([]byte(nil), value...), true, uint64(r.ValueTotal), false
		}
		ev.KernelCopy = true
		ev.UserCopyDiffers = ev.UserCopyDiffers || differs
		ev.Truncated = r.Flags&(kfKeyTrunc|kfValueTrunc) != 0
		return
	}

	b := d.batches[r.Tid]
	if b == nil || b.ev != ev {
		if len(d.batches) >= 1024 {
			clear(d.batches)
		}
		b = &batchCopy{ev: ev, userKey: ev.Key, userValue: ev.Value}
		d.batches[r.Tid] = b
	}
	capture := d.cfg.capture
	// Element i of the batch is at offset i*size in the caller's buffers.
	if off := b.elements * int(r.KeyTotal); !owner && r.KeyTotal > 0 {
		if off+len(key) <= len(b.userKey) && !bytes.Equal(b.userKey[off:off+len(key)], key) {
			b.keyDiffers = true
		}
		b.keys, b.keyTruncated = appendCapped(b.keys, key, capture, b.keyTruncated || r.Flags&kfKeyTrunc != 0)
	}
	if off := b.elements * int(r.ValueTotal); r.ValueTotal > 0 {
		if off+len(value) <= len(b.userValue) && !bytes.Equal(b.userValue[off:off+len(value)], value) {
			b.valueDiffers = true
		}
		b.values, b.valTruncated = appendCapped(b.values, value, capture, b.valTruncated || r.Flags&kfValueTrunc != 0)
	}
	b.elements++
	if b.keys != nil {
		ev.Key, ev.HasKey = b.keys, true
	}
	if b.values != nil {
		ev.Value, ev.HasValue = b.values, true
	}
	ev.KernelCopy = true
	ev.UserCopyDiffers = b.keyDiffers || b.valueDiffers
	ev.Truncated = b.keyTruncated || b.valTruncated
}

// appendCapped appends b to dst up to limit bytes in all, and reports
// whether anything was left out.
func appendCapped(dst, b []byte, limit int, truncated bool) ([]byte, bool) {
	room := limit - len(dst)
	if room < len(b) {
		return append(dst, b[:max(room, 0)]...), true
	}
	return append(dst, b...), truncated
}

// prefixEqual compares two captures of the same bytes, either of which may
// be cut at the capture limit.
func prefixEqual(a, b []byte) bool {
	n := min(len(a), len(b))
	return bytes.Equal(a[:n], b[:n])
}

// Tick implements bpfsyscall.Extension: it reports writes lost since the
// last tick (the ring buffer was full, or a hook was skipped because a
// BPF program was already running on that CPU) and forgets freed
// programs.
func (d *decoder) Tick(emit func(*event.Event) error) error {
	d.rs.table.prune(time.Now())
	lost, progLost, err := d.counters()
	if err != nil {
		return err
	}
	if progLost > 0 {
		d.rs.table.verify = true
	}
	if lost <= d.reported {
		return nil
	}
	n := lost - d.reported
	d.reported = lost
	return emit(&event.Event{Time: time.Now(), Type: event.Lost, Source: event.SourceKernel, Count: n, HasCount: true})
}

// counters sums the kernel's lost-write counters and the programs'
// recursion misses (a hook that did not run), and the lost program
// records.
func (d *decoder) counters() (lost, progLost uint64, err error) {
	for idx, dst := range map[uint32]*uint64{kstatLost: &lost, kstatProgLost: &progLost} {
		var per []uint64
		if err := d.cfg.stats.Lookup(idx, &per); err != nil {
			return 0, 0, fmt.Errorf("reading the kernel-side sensor's counters: %w", err)
		}
		for _, v := range per {
			*dst += v
		}
	}
	for _, p := range d.cfg.writeProgs {
		if st, err := p.Stats(); err == nil {
			lost += st.RecursionMisses
		}
	}
	for _, p := range d.cfg.loadProgs {
		if st, err := p.Stats(); err == nil {
			progLost += st.RecursionMisses
		}
	}
	return lost, progLost, nil
}

// Lost is the number of writes reported lost so far.
func (d *decoder) Lost() uint64 { return d.reported }

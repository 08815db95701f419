package kernelwrite

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"sync/atomic"
	"time"
	"unsafe"

	"github.com/cilium/ebpf"

	"github.com/bpfmon/bpfmon/internal/bpfsys"
	"github.com/bpfmon/bpfmon/internal/event"
	"github.com/bpfmon/bpfmon/internal/sensor"
	"github.com/bpfmon/bpfmon/internal/sensor/record"
)

// Operations and flags of struct kwrite_rec, as bpf2go generated them
// from the C enums.
const (
	kopUpdate = uint32(kwKwOpKOP_UPDATE)
	kopDelete = uint32(kwKwOpKOP_DELETE)
	kopPush   = uint32(kwKwOpKOP_PUSH)
	kopPop    = uint32(kwKwOpKOP_POP)

	kfResult     = uint32(kwKwFlagKF_RESULT)
	kfIRQ        = uint32(kwKwFlagKF_IRQ)
	kfKeyTrunc   = uint32(kwKwFlagKF_KEY_TRUNC)
	kfValueTrunc = uint32(kwKwFlagKF_VALUE_TRUNC)
	kfKeyFault   = uint32(kwKwFlagKF_KEY_FAULT)
	kfValueFault = uint32(kwKwFlagKF_VALUE_FAULT)
	kfOwnerKey   = uint32(kwKwFlagKF_OWNER_KEY)
	kfSyscall    = uint32(kwKwFlagKF_SYSCALL)
)

const (
	kwriteHeader = int(unsafe.Sizeof(kwKwriteRec{}))
	kprogSize    = int(unsafe.Sizeof(kwKprogRec{}))
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
	hooked       []string        // the functions hooked
	kprobed      map[string]bool // the functions hooked by kprobes
	count        *counter        // nil: every write itemized
	decoder      *record.Decoder
}

// decoder turns the sensor's records into events. Its methods run on the
// ring's reader goroutine.
type decoder struct {
	cfg   decoderConfig
	count *counter
	rd    *record.Decoder
	// detached is set once the hooks are gone: the next tick is the
	// last, and drains every count.
	detached atomic.Bool
	rs       resolver
	batches  map[uint32]*batchCopy // by thread: the kernel's copies of a batch call so far
}

func newDecoder(cfg decoderConfig) (*decoder, error) {
	d := &decoder{cfg: cfg, batches: map[uint32]*batchCopy{}, count: cfg.count, rd: cfg.decoder}
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

// prog handles a program's load (REC_PROG) or free (REC_PROG_GONE).
func (d *decoder) prog(raw []byte, rd *record.Decoder, _ record.Emit) error {
	if err := record.Check(raw, kprogSize, "program"); err != nil {
		return err
	}
	r := (*kwKprogRec)(unsafe.Pointer(&raw[0]))
	if record.Kind(r.Hdr.Kind) == record.KindProgGone {
		d.rs.table.gone(r.Id, time.Now())
		return nil
	}
	d.rs.table.addRecord(r, rd.String(r.Name[:]))
	if r.FuncCnt > r.Nfuncs {
		// More functions than the record holds: read the rest.
		if img, err := bpfsys.ProgramImageByID(r.Id); err == nil {
			d.rs.table.addImage(img)
		}
	}
	return nil
}

// write handles a write seen by a kernel hook (REC_KWRITE).
func (d *decoder) write(raw []byte, rd *record.Decoder, emit record.Emit) error {
	if err := record.Check(raw, kwriteHeader, "kernel write"); err != nil {
		return err
	}
	r := (*kwKwriteRec)(unsafe.Pointer(&raw[0]))
	data := raw[kwriteHeader:]
	if uint64(r.KeyLen)+uint64(r.ValueLen) > uint64(len(data)) || r.Nframes > uint32(len(r.Frames)) {
		return fmt.Errorf("%w: kernel write: key %d + value %d bytes of %d, %d frames", record.ErrMalformed, r.KeyLen, r.ValueLen, len(data), r.Nframes)
	}
	if err := record.CheckCapture("kernel write key", r.KeyLen, uint64(r.KeyTotal), r.Flags&kfKeyFault != 0, r.Flags&kfKeyTrunc != 0); err != nil {
		return err
	}
	if err := record.CheckCapture("kernel write value", r.ValueLen, uint64(r.ValueTotal), r.Flags&kfValueFault != 0, r.Flags&kfValueTrunc != 0); err != nil {
		return err
	}
	key := data[:r.KeyLen]
	value := data[r.KeyLen : r.KeyLen+r.ValueLen]
	irq := r.Flags&kfIRQ != 0

	var prog *event.Prog
	var by attribution
	if r.Flags&kfSyscall != 0 {
		// The bpf(2) command code's own write (from_syscall in the C
		// file): its call is in flight, or the write comes from a
		// program making bpf(2) commands itself, which is not named.
		by = byKernel
		if ev := rd.Calls.InFlight(r.Hdr.Tid); ev == nil || !sameCall(ev, r) {
			by = byUnknown
		}
	} else {
		prog, by = d.rs.writer(r.Frames[:r.Nframes], r.Hdr.Ktime)
	}
	if by != byProgram && !irq {
		// No program on the stack (or none could be seen): a bpf(2) call
		// of this thread, if one is in flight on this map, is reported
		// once, by the syscall sensor, with the kernel's copy.
		if ev := rd.Calls.InFlight(r.Hdr.Tid); ev != nil && sameCall(ev, r) {
			d.merge(ev, r, key, value)
			return nil
		}
		if (by == byKernel || r.Flags&kfSyscall != 0) && r.Task.Pid == d.cfg.selfTGID {
			return nil // bpfmon's own bpf(2) calls, excluded as by the syscall sensor
		}
	}

	sl := &eventSlot{}
	ev := &sl.ev
	*ev = event.Event{
		Time:   rd.Time(r.Hdr.Ktime),
		Source: event.SourceKernel,
		Type:   event.MapUpdate,
		Map:    &sl.m,
	}
	rd.Map(ev.Map, (*record.MapInfo)(unsafe.Pointer(&r.Map)))
	d.noteMap(ev.Map)
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
		ev.Process = &sl.proc
		rd.Process(ev.Process, raw)
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

// eventSlot holds an event and what it points to, allocated together.
type eventSlot struct {
	ev   event.Event
	proc event.Process
	m    event.Map
}

// sameCall reports whether the kernel hook's record r is part of the bpf(2)
// call ev: same map, and an operation that command performs.
func sameCall(ev *event.Event, r *kwKwriteRec) bool {
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
func (d *decoder) merge(ev *event.Event, r *kwKwriteRec, key, value []byte) {
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

	b := d.batches[r.Hdr.Tid]
	if b == nil || b.ev != ev {
		if len(d.batches) >= 1024 {
			clear(d.batches)
		}
		b = &batchCopy{ev: ev, userKey: ev.Key, userValue: ev.Value}
		d.batches[r.Hdr.Tid] = b
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

// tick runs every record.LossInterval: it forgets freed programs, and
// once a load or free record was lost, has every attribution confirmed.
func (d *decoder) tick(emit record.Emit) error {
	if err := d.summarise(emit, d.detached.Load()); err != nil {
		return err
	}
	d.rs.table.prune(time.Now())
	progLost, err := d.counter(int(kwKwStatKSTAT_PROG_LOST), d.cfg.loadProgs)
	if err != nil {
		return err
	}
	if progLost > 0 {
		d.rs.table.verify = true
	}
	return nil
}

// lostWrites counts the writes not reported: the ring buffer was full, or
// the kernel skipped a hook because a BPF program was already running on
// that CPU.
func (d *decoder) lostWrites() (uint64, error) {
	var c [kwKwStatKSTAT_MAX]uint64
	for _, i := range []kwKwStat{kwKwStatKSTAT_LOST, kwKwStatKSTAT_COUNT_LOST, kwKwStatKSTAT_NESTED, kwKwStatKSTAT_NESTED_KP_HTAB, kwKwStatKSTAT_NESTED_KP_PCPU} {
		n, err := sensor.Counter(d.cfg.stats, uint32(i))
		if err != nil {
			return 0, fmt.Errorf("reading the kernel-side sensor's counters: %w", err)
		}
		c[i] = n
	}
	misses, _ := d.counter(-1, d.cfg.writeProgs)
	// bpfmon's own inserts that its running program missed (KSTAT_NESTED
	// in the C file) are among the misses, and are no write lost. A
	// kernel that counts no misses (before 5.12) counts none of these.
	nested := c[kwKwStatKSTAT_NESTED]
	if d.cfg.kprobed["htab_map_update_elem"] {
		nested += c[kwKwStatKSTAT_NESTED_KP_HTAB]
	}
	if d.cfg.kprobed["htab_percpu_map_update_elem"] {
		nested += c[kwKwStatKSTAT_NESTED_KP_PCPU]
	}
	misses -= min(misses, nested)
	return c[kwKwStatKSTAT_LOST] + c[kwKwStatKSTAT_COUNT_LOST] + misses, nil
}

// counter sums kstats counter idx over CPUs (none for -1) and the
// recursion misses of progs (a hook that did not run).
func (d *decoder) counter(idx int, progs []*ebpf.Program) (uint64, error) {
	var n uint64
	if idx >= 0 {
		var err error
		if n, err = sensor.Counter(d.cfg.stats, uint32(idx)); err != nil {
			return 0, fmt.Errorf("reading the kernel-side sensor's counters: %w", err)
		}
	}
	for _, p := range progs {
		if st, err := p.Stats(); err == nil {
			n += st.RecursionMisses
		}
	}
	return n, nil
}

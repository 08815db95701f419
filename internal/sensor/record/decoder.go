package record

import (
	"bytes"
	"os"
	"sort"
	"strconv"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/bpfmon/bpfmon/internal/event"
	"github.com/bpfmon/bpfmon/internal/procexe"
)

// Decoder is the state every sensor's handlers share: the clock, the
// strings and executable paths seen so far, and the bpf(2) calls in
// flight. Its methods run on the ring's reader goroutine only.
type Decoder struct {
	// Calls are the bpf(2) calls between their entry and exit records.
	Calls   Calls
	boot    time.Duration // CLOCK_BOOTTIME to wall clock
	strings interner
	procs   procCache
}

func newDecoder() Decoder {
	return Decoder{
		Calls:   Calls{pending: map[uint32]*event.Event{}},
		boot:    bootOffset(),
		strings: interner{m: map[string]string{}},
		procs:   procCache{m: map[procKey]string{}},
	}
}

// bootOffset converts CLOCK_BOOTTIME nanoseconds into wall-clock time.
func bootOffset() time.Duration {
	var ts unix.Timespec
	before := time.Now()
	_ = unix.ClockGettime(unix.CLOCK_BOOTTIME, &ts)
	return time.Duration(before.UnixNano() - ts.Nano())
}

// Time converts a CLOCK_BOOTTIME timestamp from the kernel to wall-clock
// time.
func (d *Decoder) Time(ktime uint64) time.Time { return time.Unix(0, int64(ktime)+int64(d.boot)) }

// String returns a C string from a record, interned: comms and map names
// repeat from event to event.
func (d *Decoder) String(b []int8) string { return d.strings.of(b) }

// Process fills dst from a record about a task: its header's thread and
// the task_info that follows it. It reports false, leaving dst alone, when
// raw is too short to hold them.
func (d *Decoder) Process(dst *event.Process, raw []byte) bool {
	if len(raw) < TaskRecordSize {
		return false
	}
	h := (*Header)(unsafe.Pointer(&raw[0]))
	t := (*Task)(unsafe.Pointer(&raw[HeaderSize]))
	*dst = event.Process{
		PID:       t.Pid,
		TID:       h.Tid,
		PPID:      t.Ppid,
		UID:       t.Uid,
		GID:       t.Gid,
		Comm:      d.strings.of(t.Comm[:]),
		Exe:       d.procs.exe(t.Pid, t.StartTime, t.ExeIno),
		ExeIno:    t.ExeIno,
		ExeDev:    procexe.FromKernel(t.ExeDev),
		CgroupID:  t.CgroupId,
		StartTime: t.StartTime,
	}
	return true
}

// Map fills dst from a record's map_info.
func (d *Decoder) Map(dst *event.Map, m *MapInfo) {
	*dst = event.Map{
		ID:         m.Id,
		Name:       d.strings.of(m.Name[:]),
		Type:       m.Type,
		KeySize:    m.KeySize,
		ValueSize:  m.ValueSize,
		MaxEntries: m.MaxEntries,
		Flags:      m.Flags,
		Frozen:     m.Frozen != 0,
	}
}

// Calls are the bpf(2) calls whose entry record has been decoded and whose
// exit record has not, by thread: the ring buffer keeps one thread's
// records in order, so a thread is in at most one call. A kernel hook's
// record read in between may complete the call's event (the kernel's own
// copy of key and value).
type Calls struct {
	pending map[uint32]*event.Event
}

// Begin records ev as the call thread tid is in. A call still pending on
// that thread lost its exit record: it is returned, to be reported
// without its result.
func (c *Calls) Begin(tid uint32, ev *event.Event) *event.Event {
	old := c.pending[tid]
	c.pending[tid] = ev
	return old
}

// End takes the call thread tid is in, nil when there is none (it was
// reported without result already, see Stale).
func (c *Calls) End(tid uint32) *event.Event {
	ev := c.pending[tid]
	if ev != nil {
		delete(c.pending, tid)
	}
	return ev
}

// InFlight returns the event of the call thread tid is in, or nil.
func (c *Calls) InFlight(tid uint32) *event.Event { return c.pending[tid] }

// staleAfter is how long a call may wait for its exit record before it is
// reported without a result: bpf(2) map commands do not block, so an entry
// that old lost its exit record.
const staleAfter = 2 * time.Second

// stale emits the calls that entered before before: their exit record will
// not come.
func (c *Calls) stale(before time.Time, emit Emit) error {
	for tid, ev := range c.pending {
		if ev.Time.Before(before) {
			delete(c.pending, tid)
			if err := emit(ev); err != nil {
				return err
			}
		}
	}
	return nil
}

// flush emits every call still waiting for its exit record, oldest first:
// the sensors are detached, or the records were lost.
func (c *Calls) flush(emit Emit) error {
	evs := make([]*event.Event, 0, len(c.pending))
	for tid, ev := range c.pending {
		evs = append(evs, ev)
		delete(c.pending, tid)
	}
	sort.Slice(evs, func(i, j int) bool { return evs[i].Time.Before(evs[j].Time) })
	for _, ev := range evs {
		if err := emit(ev); err != nil {
			return err
		}
	}
	return nil
}

// interner returns one string per distinct C string: comms and map names
// repeat from event to event, and converting them anew each time was two
// of the decoder's allocations per event.
type interner struct {
	m map[string]string
}

const internMax = 4096

func (in *interner) of(b []int8) string {
	n := 0
	for n < len(b) && b[n] != 0 {
		n++
	}
	u := unsafe.Slice((*byte)(unsafe.Pointer(unsafe.SliceData(b))), n)
	if s, ok := in.m[string(u)]; ok { // no allocation for the lookup
		return s
	}
	if len(in.m) >= internMax {
		clear(in.m)
	}
	s := string(u)
	in.m[s] = s
	return s
}

const exeRecSize = int(unsafe.Sizeof(recordExeRec{}))

// decodeExe keeps a process's executable path from its REC_EXE record.
func decodeExe(raw []byte, d *Decoder, _ Emit) error {
	if err := Check(raw, exeRecSize, "executable path"); err != nil {
		return err
	}
	r := (*recordExeRec)(unsafe.Pointer(&raw[0]))
	d.procs.set(procKey{r.Task.Pid, r.Task.StartTime, r.Task.ExeIno}, exePath(r))
	return nil
}

// exePath joins the components of a REC_EXE record, which come leaf first,
// one per slot; an empty slot marks a mount crossing. A path deeper than
// the slots starts with "..." so it cannot be taken for an absolute path.
func exePath(r *recordExeRec) string {
	n := int(r.Count)
	if n > len(r.Slots) {
		return ""
	}
	b := make([]byte, 0, 64)
	if r.Truncated != 0 {
		b = append(b, "..."...)
	}
	for i := n - 1; i >= 0; i-- {
		slot := unsafe.Slice((*byte)(unsafe.Pointer(&r.Slots[i][0])), len(r.Slots[i]))
		if z := bytes.IndexByte(slot, 0); z >= 0 {
			slot = slot[:z]
		}
		if len(slot) == 0 {
			continue
		}
		b = append(b, '/')
		b = append(b, slot...)
	}
	if len(b) == 0 {
		return "/"
	}
	return string(b)
}

// procKey identifies a process across pid reuse.
type procKey struct {
	pid   uint32
	start uint64
	ino   uint64
}

// procCache holds executable paths by process. The kernel sends each
// process's path once (REC_EXE). When that record was lost, the path is
// read from /proc, and used only when it still names the inode the kernel
// reported, so a process that exec'd, or died and whose pid was reused, is
// never attributed the wrong binary.
type procCache struct {
	m map[procKey]string
}

const procCacheMax = 8192

func (c *procCache) set(k procKey, path string) {
	if len(c.m) >= procCacheMax {
		clear(c.m)
	}
	c.m[k] = path
}

func (c *procCache) exe(pid uint32, start, ino uint64) string {
	k := procKey{pid, start, ino}
	if p, ok := c.m[k]; ok {
		return p
	}
	p := ""
	proc := "/proc/" + strconv.FormatUint(uint64(pid), 10) + "/exe"
	if link, err := os.Readlink(proc); err == nil {
		var st unix.Stat_t
		if unix.Stat(proc, &st) == nil && st.Ino == ino {
			p = link
		}
	}
	c.set(k, p)
	return p
}

// The map-reading layer of the content scanner: open a map by id read-only,
// decide whether its contents can be read at all, and hand every element to
// a callback, by batch lookup, by get_next_key + lookup, or through a
// read-only mmap for BPF_F_MMAPABLE arrays.

package scanner

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"unsafe"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"

	"github.com/bpfmon/bpfmon/internal/bpfsys"
	"github.com/bpfmon/bpfmon/internal/names"
)

// MapInfo is what the scanner knows of a map.
type MapInfo struct {
	ID         uint32
	Name       string
	Type       ebpf.MapType
	KeySize    uint32
	ValueSize  uint32 // as the kernel reports it
	MaxEntries uint32
	Flags      uint32
	// The map's BTF object and key and value type ids, 0 when it has none.
	BTFID, BTFKeyTypeID, BTFValueTypeID uint32
}

// NotScannableError says why a map's contents cannot be read; the scanner
// lists such maps once.
type NotScannableError struct{ Reason string }

func (e *NotScannableError) Error() string { return "map not scannable: " + e.Reason }

// ErrVanished: the map disappeared (its id no longer exists) before or
// during the read. Once Read holds the map's fd the map cannot go away, so
// only the open can see this.
var ErrVanished = errors.New("map vanished")

// ReadStats are cumulative counters of a Reader, for the benchmark and the
// report.
type ReadStats struct {
	Maps     uint64 // maps read to the end (fn saw every element)
	Elements uint64 // elements handed to fn
	Bytes    uint64 // key + value bytes handed to fn

	BatchReads uint64 // BPF_MAP_LOOKUP_BATCH calls that returned elements
	SlowReads  uint64 // BPF_MAP_LOOKUP_ELEM calls (get_next_key + lookup path)
	MmapReads  uint64 // maps read through a read-only mmap
}

// Reader reads maps by id. It keeps its buffers between reads and remembers
// which map types the kernel cannot batch-read. Safe for use by one
// goroutine.
type Reader struct {
	lim     *Limiter
	ncpu    int
	noBatch map[ebpf.MapType]bool // types whose first batch lookup was refused

	batchElems int // elements per batch call; defaultBatchElems outside tests

	keys, vals    []byte
	inTok, outTok []byte
	seen          map[string]struct{} // slow path: keys already handed to fn

	// Reopen, when set, opens a map that BPF_MAP_GET_FD_BY_ID does not
	// (a map hidden from bpf(2)'s listing, reached through a pin or a
	// holder's fd: inventory.HiddenView.Open), with these open_flags.
	Reopen func(id, openFlags uint32) (int, error)

	stats        ReadStats
	grows        uint64 // ENOSPC retries with a bigger buffer (for tests)
	nextKeyCalls uint64 // BPF_MAP_GET_NEXT_KEY calls (for tests)
}

const (
	// defaultBatchElems is the number of elements asked for per
	// BPF_MAP_LOOKUP_BATCH call.
	defaultBatchElems = 256
	// maxBatchBytes caps a batch buffer for maps with large elements.
	maxBatchBytes = 4 << 20

	bpfFRdonly   = unix.BPF_F_RDONLY   // open_flags / map_flags 1<<3
	bpfFWronly   = unix.BPF_F_WRONLY   // map_flags 1<<4
	bpfFMmapable = unix.BPF_F_MMAPABLE // map_flags 1<<10

	// enotsupp is the kernel-internal ENOTSUPP that bpf(2) lets through,
	// e.g. for a map type without batch operations.
	enotsupp = unix.Errno(524)

	mapTypeInsnArray ebpf.MapType = 34 // BPF_MAP_TYPE_INSN_ARRAY, not named by cilium/ebpf v0.22
)

// NewReader returns a Reader that waits on lim before each batch; lim may be
// nil (unlimited). It counts the possible CPUs once, for per-CPU values.
func NewReader(lim *Limiter) (*Reader, error) {
	n, err := ebpf.PossibleCPU()
	if err != nil {
		return nil, fmt.Errorf("counting possible CPUs: %w", err)
	}
	return &Reader{
		lim:        lim,
		ncpu:       n,
		noBatch:    make(map[ebpf.MapType]bool),
		batchElems: defaultBatchElems,
	}, nil
}

// Stats returns the cumulative counters.
func (r *Reader) Stats() ReadStats { return r.stats }

// ValueBytes returns the length of the values Read hands to fn for a map:
// the value size, or for per-CPU maps one value per possible CPU, each
// padded to 8 bytes (the layout bpf(2) returns).
func (r *Reader) ValueBytes(info MapInfo) int {
	if perCPU(info.Type) {
		return roundUp8(int(info.ValueSize)) * r.ncpu
	}
	return int(info.ValueSize)
}

func perCPU(t ebpf.MapType) bool {
	switch t {
	case ebpf.PerCPUHash, ebpf.PerCPUArray, ebpf.LRUCPUHash, ebpf.PerCPUCGroupStorage:
		return true
	}
	return false
}

func roundUp8(n int) int { return (n + 7) &^ 7 }

// notScannable lists the map types whose contents Read does not read, and
// why.
var notScannable = map[ebpf.MapType]string{
	ebpf.ProgramArray:        "program array: its values are references to programs for tail calls, not data",
	ebpf.PerfEventArray:      "perf event array: its values are perf event references; events are streamed, not stored",
	ebpf.RingBuf:             "ring buffer: no elements to read (records are consumed by a reader)",
	ebpf.UserRingbuf:         "user ring buffer: no elements to read (records are consumed by a program)",
	ebpf.StructOpsMap:        "struct_ops map: holds a kernel struct of program references, not data",
	ebpf.Arena:               "arena: sparse memory shared with programs, with no elements to read",
	ebpf.Queue:               "queue: reading would pop elements",
	ebpf.Stack:               "stack: reading would pop elements",
	ebpf.BloomFilter:         "bloom filter: holds membership bits only, no elements to list",
	ebpf.SkStorage:           "socket local storage: keyed by socket, cannot be enumerated",
	ebpf.InodeStorage:        "inode local storage: keyed by inode, cannot be enumerated",
	ebpf.TaskStorage:         "task local storage: keyed by task, cannot be enumerated",
	ebpf.CgroupStorage:       "cgroup local storage: keyed by cgroup, cannot be enumerated",
	ebpf.CGroupStorage:       "cgroup storage: storage of an attached program per cgroup, not a standalone map",
	ebpf.PerCPUCGroupStorage: "per-CPU cgroup storage: storage of an attached program per cgroup, not a standalone map",
	ebpf.SockMap:             "sockmap: its values are socket references, not data",
	ebpf.SockHash:            "sockhash: its values are socket references, not data",
	ebpf.XSKMap:              "XDP socket map: its values are AF_XDP socket references, not data",
	ebpf.ReusePortSockArray:  "reuseport socket array: its values are socket references, not data",
	mapTypeInsnArray:         "instruction array: a program's internal jump table, not data",
}

// checkScannable returns a NotScannableError for maps Read must not read.
func checkScannable(info MapInfo) error {
	if info.Flags&bpfFWronly != 0 {
		return &NotScannableError{Reason: "write-only map (BPF_F_WRONLY): user space may not read it"}
	}
	if reason, ok := notScannable[info.Type]; ok {
		return &NotScannableError{Reason: reason}
	}
	if info.KeySize == 0 {
		return &NotScannableError{Reason: fmt.Sprintf("%s map with key size 0: no keys to enumerate", names.MapType(uint32(info.Type)))}
	}
	return nil
}

func errnoString(e unix.Errno) string {
	if e == enotsupp {
		return "ENOTSUPP (524)"
	}
	if n := unix.ErrnoName(e); n != "" {
		return fmt.Sprintf("%s (%s)", n, e.Error())
	}
	return e.Error()
}

// refused reports whether errno is the kernel saying an operation is not
// supported for this map.
func refused(e unix.Errno) bool {
	return e == unix.EINVAL || e == unix.EOPNOTSUPP || e == enotsupp
}

// Read opens map id read-only and calls fn for every element with its key
// and value bytes (per-CPU maps: one value per possible CPU, each padded to 8
// bytes, concatenated — the layout bpf(2) returns; see ValueBytes). The
// slices are valid only during the call. fn returning an error stops the read
// and Read returns that error as is. Read returns the map's info even with a
// NotScannableError; a map whose id no longer exists gives an error wrapping
// ErrVanished.
//
// The read is not a snapshot: elements changed while it runs may be seen
// old or new, and on the get_next_key path a key deleted meanwhile is
// skipped.
func (r *Reader) Read(id uint32, fn func(key, value []byte) error) (MapInfo, error) {
	info := MapInfo{ID: id}
	fd, err := r.open(id, bpfFRdonly)
	if err != nil {
		return info, err
	}
	defer unix.Close(fd)

	info, err = mapInfo(fd)
	if err != nil {
		return MapInfo{ID: id}, fmt.Errorf("map %d: %w", id, err)
	}
	if err := checkScannable(info); err != nil {
		return info, err
	}

	if info.Type == ebpf.Array && info.Flags&bpfFMmapable != 0 {
		done, err := r.readMmap(info, fn)
		if done || err != nil {
			if err == nil {
				r.stats.Maps++
			}
			return info, err
		}
		// The kernel refused the mmap (e.g. a value with a spin lock):
		// read it like any array.
	}

	if !r.noBatch[info.Type] {
		err := r.readBatch(fd, info, fn)
		if err != errBatchUnsupported {
			if err == nil {
				r.stats.Maps++
			}
			return info, err
		}
		r.noBatch[info.Type] = true
	}

	if err := r.readSlow(fd, info, fn); err != nil {
		return info, err
	}
	r.stats.Maps++
	return info, nil
}

// open is openMap, then Reopen for a map the listing refuses.
func (r *Reader) open(id, openFlags uint32) (int, error) {
	fd, err := openMap(id, openFlags)
	if err != nil && r.Reopen != nil && errors.Is(err, ErrVanished) {
		if fd2, err2 := r.Reopen(id, openFlags); err2 == nil {
			return fd2, nil
		}
	}
	return fd, err
}

// openMap is BPF_MAP_GET_FD_BY_ID with these open_flags (BPF_F_RDONLY for
// a read-only fd, 0 for read-write).
func openMap(id, openFlags uint32) (int, error) {
	fd, err := bpfsys.MapFDByID(id, openFlags)
	switch {
	case err == nil:
		return fd, nil
	case errors.Is(err, unix.ENOENT):
		return -1, fmt.Errorf("map %d: %w", id, ErrVanished)
	}
	return -1, fmt.Errorf("map %d: BPF_MAP_GET_FD_BY_ID: %w", id, os.NewSyscallError("bpf", err))
}

// mapInfo is BPF_OBJ_GET_INFO_BY_FD on a map fd.
func mapInfo(fd int) (MapInfo, error) {
	info, err := bpfsys.GetMapInfo(fd)
	if err != nil {
		return MapInfo{}, fmt.Errorf("BPF_OBJ_GET_INFO_BY_FD: %w", os.NewSyscallError("bpf", err))
	}
	return MapInfo{
		Type:           ebpf.MapType(info.Type),
		ID:             info.ID,
		KeySize:        info.KeySize,
		ValueSize:      info.ValueSize,
		MaxEntries:     info.MaxEntries,
		Flags:          info.MapFlags,
		Name:           bpfsys.CString(info.Name[:]),
		BTFID:          info.BTFID,
		BTFKeyTypeID:   info.BTFKeyTypeID,
		BTFValueTypeID: info.BTFValueTypeID,
	}, nil
}

func grow(b []byte, n int) []byte {
	if cap(b) < n {
		return make([]byte, n)
	}
	return b[:n]
}

// mmapArray maps the values of a BPF_F_MMAPABLE array read-only. The kernel
// turns a MAP_SHARED mapping of a read-only fd into a private one, which
// bpf maps refuse (EINVAL), so this opens a second, read-write fd to the
// same map only to create the mapping, and closes it at once. The mapping
// is PROT_READ, and the kernel clears VM_MAYWRITE on such a bpf map mapping,
// so it can never be made writable; a read-only mapping also does not count
// as a writer that would block BPF_MAP_FREEZE. The caller's read-only fd
// keeps the map alive, so id cannot name another map meanwhile.
func mmapArray(info MapInfo, open func(id, openFlags uint32) (int, error)) ([]byte, error) {
	stride := roundUp8(int(info.ValueSize))
	page := os.Getpagesize()
	size := (stride*int(info.MaxEntries) + page - 1) &^ (page - 1)
	fd, err := open(info.ID, 0)
	if err != nil {
		return nil, err
	}
	defer unix.Close(fd)
	return unix.Mmap(fd, 0, size, unix.PROT_READ, unix.MAP_SHARED)
}

// readMmap reads a BPF_F_MMAPABLE array through a read-only shared mapping.
// done is false if the mapping could not be made and nothing was read; the
// caller then reads the map like any array.
func (r *Reader) readMmap(info MapInfo, fn func(key, value []byte) error) (done bool, err error) {
	mem, err := mmapArray(info, r.open)
	if err != nil {
		return false, nil
	}
	defer unix.Munmap(mem)
	r.stats.MmapReads++

	stride := roundUp8(int(info.ValueSize))
	vs := int(info.ValueSize)
	chunk := r.chunkElems(4, vs)
	r.keys = grow(r.keys, chunk*4)
	r.vals = grow(r.vals, chunk*vs)
	for start := 0; start < int(info.MaxEntries); start += chunk {
		n := min(chunk, int(info.MaxEntries)-start)
		// Copy the chunk out first, so that fn sees values that do not
		// change under it and that outlive nothing.
		for i := 0; i < n; i++ {
			binary.NativeEndian.PutUint32(r.keys[i*4:], uint32(start+i))
			off := (start + i) * stride
			copy(r.vals[i*vs:(i+1)*vs], mem[off:off+vs])
		}
		if err := r.deliver(n, 4, vs, fn); err != nil {
			return true, err
		}
	}
	return true, nil
}

// chunkElems is the number of elements per batch for a map with these
// sizes: batchElems, fewer if the elements are large.
func (r *Reader) chunkElems(ks, vs int) int {
	return max(1, min(r.batchElems, maxBatchBytes/max(1, ks+vs)))
}

// deliver waits on the limiter for n elements of r.keys/r.vals and hands
// them to fn.
func (r *Reader) deliver(n, ks, vs int, fn func(key, value []byte) error) error {
	r.lim.Wait(n * (ks + vs))
	for i := 0; i < n; i++ {
		r.stats.Elements++
		r.stats.Bytes += uint64(ks + vs)
		if err := fn(r.keys[i*ks:(i+1)*ks:(i+1)*ks], r.vals[i*vs:(i+1)*vs:(i+1)*vs]); err != nil {
			return err
		}
	}
	return nil
}

var errBatchUnsupported = errors.New("batch lookup not supported")

// readBatch reads the map with BPF_MAP_LOOKUP_BATCH. It returns
// errBatchUnsupported if the kernel refuses the first call.
func (r *Reader) readBatch(fd int, info MapInfo, fn func(key, value []byte) error) error {
	ks, vs := int(info.KeySize), r.ValueBytes(info)
	count := r.chunkElems(ks, vs)
	if info.MaxEntries > 0 {
		count = min(count, int(info.MaxEntries))
	}
	tok := max(ks, 8)
	r.inTok = grow(r.inTok, tok)
	r.outTok = grow(r.outTok, tok)
	first := true
	zeroRuns, eintrRuns := 0, 0
	for {
		r.keys = grow(r.keys, count*ks)
		r.vals = grow(r.vals, count*vs)
		attr := bpfsys.BatchAttr{
			OutBatch: bpfsys.Ptr(r.outTok),
			Keys:     bpfsys.Ptr(r.keys),
			Values:   bpfsys.Ptr(r.vals),
			Count:    uint32(count),
			MapFD:    uint32(fd),
		}
		if !first {
			attr.InBatch = bpfsys.Ptr(r.inTok)
		}
		_, errno := bpfsys.Call(unix.BPF_MAP_LOOKUP_BATCH, unsafe.Pointer(&attr), unsafe.Sizeof(attr))
		got := int(attr.Count)
		switch {
		case errno == 0 || errno == unix.ENOENT:
		case first && refused(errno):
			return errBatchUnsupported
		case errno == unix.ENOSPC && got == 0:
			// A hash bucket holds more elements than the buffer: retry
			// the same position with a bigger one.
			limit := 2*max(int(info.MaxEntries), defaultBatchElems) + 16
			if count >= limit {
				return fmt.Errorf("map %d: BPF_MAP_LOOKUP_BATCH: ENOSPC with room for %d elements", info.ID, count)
			}
			count = min(2*count, limit)
			r.grows++
			continue
		case errno == unix.EINTR:
			// Generic batch: an element vanished three times in a row
			// under the kernel's lookup. Take what came and go on.
			if eintrRuns++; eintrRuns > 100 {
				return fmt.Errorf("map %d: BPF_MAP_LOOKUP_BATCH: %w", info.ID, os.NewSyscallError("bpf", errno))
			}
		default:
			return fmt.Errorf("map %d: BPF_MAP_LOOKUP_BATCH: %w", info.ID, os.NewSyscallError("bpf", errno))
		}
		if got > count {
			return fmt.Errorf("map %d: BPF_MAP_LOOKUP_BATCH returned %d elements for %d asked", info.ID, got, count)
		}
		if got > 0 {
			r.stats.BatchReads++
			zeroRuns = 0
			if err := r.deliver(got, ks, vs, fn); err != nil {
				return err
			}
		} else if errno == 0 {
			if zeroRuns++; zeroRuns > 16 {
				return fmt.Errorf("map %d: BPF_MAP_LOOKUP_BATCH makes no progress", info.ID)
			}
		}
		if errno == unix.ENOENT {
			return nil
		}
		if got > 0 || errno == 0 {
			// The kernel wrote out_batch; it is the next call's in_batch.
			copy(r.inTok, r.outTok)
			first = false
		}
	}
}

// readSlow reads the map with BPF_MAP_GET_NEXT_KEY + BPF_MAP_LOOKUP_ELEM.
// A key deleted between the two is skipped. get_next_key on a key deleted
// meanwhile starts over at the first key; keys already handed to fn are then
// skipped, and the walk is capped at max_entries*2+16 steps.
func (r *Reader) readSlow(fd int, info MapInfo, fn func(key, value []byte) error) error {
	ks, vs := int(info.KeySize), r.ValueBytes(info)
	chunk := r.chunkElems(ks, vs)
	r.keys = grow(r.keys, chunk*ks)
	r.vals = grow(r.vals, chunk*vs)
	cur := make([]byte, ks)
	next := make([]byte, ks)
	clear(r.seen)
	if r.seen == nil {
		r.seen = make(map[string]struct{})
	}
	defer clear(r.seen)

	limit := uint64(info.MaxEntries)*2 + 16
	n := 0 // elements buffered in r.keys/r.vals
	first := true
	for steps := uint64(0); ; steps++ {
		if steps >= limit {
			return fmt.Errorf("map %d: get_next_key walk did not end after %d steps (map changing faster than it can be read)", info.ID, limit)
		}
		gattr := bpfsys.ElemAttr{MapFD: uint32(fd), Value: bpfsys.Ptr(next)} // Value: next_key
		if !first {
			gattr.Key = bpfsys.Ptr(cur)
		}
		_, errno := bpfsys.Call(unix.BPF_MAP_GET_NEXT_KEY, unsafe.Pointer(&gattr), unsafe.Sizeof(gattr))
		r.nextKeyCalls++
		if errno == unix.ENOENT {
			break
		}
		if errno != 0 {
			if first && refused(errno) {
				return &NotScannableError{Reason: fmt.Sprintf("%s map: the kernel refuses to enumerate it: get_next_key: %s", names.MapType(uint32(info.Type)), errnoString(errno))}
			}
			return fmt.Errorf("map %d: BPF_MAP_GET_NEXT_KEY: %w", info.ID, os.NewSyscallError("bpf", errno))
		}
		cur, next = next, cur
		if _, dup := r.seen[string(cur)]; dup {
			first = false
			continue
		}

		key := r.keys[n*ks : (n+1)*ks]
		val := r.vals[n*vs : (n+1)*vs]
		copy(key, cur)
		lattr := bpfsys.ElemAttr{MapFD: uint32(fd), Key: bpfsys.Ptr(key), Value: bpfsys.Ptr(val)}
		_, errno = bpfsys.Call(unix.BPF_MAP_LOOKUP_ELEM, unsafe.Pointer(&lattr), unsafe.Sizeof(lattr))
		r.stats.SlowReads++
		switch {
		case errno == unix.ENOENT:
			// Deleted since get_next_key returned it.
			first = false
			continue
		case errno != 0 && first && refused(errno):
			return &NotScannableError{Reason: fmt.Sprintf("%s map: the kernel refuses to read its elements: lookup: %s", names.MapType(uint32(info.Type)), errnoString(errno))}
		case errno != 0:
			return fmt.Errorf("map %d: BPF_MAP_LOOKUP_ELEM: %w", info.ID, os.NewSyscallError("bpf", errno))
		}
		first = false
		r.seen[string(cur)] = struct{}{}
		if n++; n == chunk {
			if err := r.deliver(n, ks, vs, fn); err != nil {
				return err
			}
			n = 0
		}
	}
	return r.deliver(n, ks, vs, fn)
}

package btffmt

import (
	"errors"
	"fmt"
	"unsafe"

	"github.com/cilium/ebpf/btf"
	"golang.org/x/sys/unix"

	"github.com/bpfmon/bpfmon/internal/bpfsys"
	"github.com/bpfmon/bpfmon/internal/event"
)

// Resolved is what a map id names now: the map's shape (the attributes an
// event carries: type, sizes, flags, name), its BTF object and the Layouts
// of its key and value types (nil where it has none).
type Resolved struct {
	Shape      event.Map
	BTFID      uint32
	Key, Value *Layout
}

// Cache keeps, per map id, the Layouts of the map's key and value types,
// so that an event of a map with BTF is rendered without reading its BTF
// again, and an event of a map without costs one lookup. A map id the
// kernel gives to another map (ids wrap) is told by the event's shape
// differing from the one resolved, by a map_create of that id (Forget), or
// by the inventory listing another BTF object for it (Refresh).
//
// A Cache is not safe for concurrent use: its owner serializes calls (the
// map context holds its lock). The Layouts it returns are.
type Cache struct {
	entries map[uint32]*cacheEntry
	bytes   int // the Layouts' and entries' estimated memory (maxCacheBytes)
	resolve func(id uint32) (Resolved, error)
	// Resolves counts the maps resolved (a test and the benchmark look).
	Resolves int
}

type cacheEntry struct {
	shape      event.Map // Programs and Pins unset
	btfID      uint32
	key, value *Layout
}

// maxCached bounds the maps a Cache holds: a host creating maps faster than
// the inventory's refresh drops them gone costs re-resolving, never
// unbounded memory.
const maxCached = 16384

// maxCacheBytes bounds the memory a Cache holds: 16,384 maps of the
// largest Layouts would be 2 GiB; past it, entries are dropped (and
// resolved again when their maps' events come).
const maxCacheBytes = 16 << 20

// entryBytes is an entry's estimated memory beyond its Layouts.
const entryBytes = 160

func (e *cacheEntry) mem() int {
	return entryBytes + len(e.shape.Name) + e.key.Bytes() + e.value.Bytes()
}

// NewCache returns a Cache resolving ids with resolve (nil: Resolve).
func NewCache(resolve func(id uint32) (Resolved, error)) *Cache {
	if resolve == nil {
		resolve = Resolve
	}
	return &Cache{entries: map[uint32]*cacheEntry{}, resolve: resolve}
}

// SameShape reports whether a and b describe the same map as far as an
// event can tell: id, type, sizes, flags and name.
func SameShape(a, b *event.Map) bool {
	return a.ID == b.ID && a.Type == b.Type && a.KeySize == b.KeySize && a.ValueSize == b.ValueSize &&
		a.MaxEntries == b.MaxEntries && a.Flags == b.Flags && a.Name == b.Name
}

// Lookup returns the Layouts of m's key and value types, nil where m has
// no BTF or its types cannot be rendered. On a miss, hint may say what the
// inventory knows of the map: listed with m's very shape, and its BTF id;
// a map listed without BTF then needs no system call. Otherwise the map is
// resolved, once: its info and BTF read.
func (c *Cache) Lookup(m *event.Map, hint func(m *event.Map) (btfID uint32, ok bool)) (key, value *Layout) {
	if m == nil || m.ID == 0 {
		return nil, nil
	}
	if e := c.entries[m.ID]; e != nil && SameShape(&e.shape, m) {
		return e.key, e.value
	}
	if hint != nil {
		if btfID, ok := hint(m); ok && btfID == 0 {
			c.put(m.ID, &cacheEntry{shape: shapeOf(m)})
			return nil, nil
		}
	}
	c.Resolves++
	r, err := c.resolve(m.ID)
	if err != nil {
		// Gone, or unreadable: nothing rendered, and not asked again for
		// this shape.
		c.put(m.ID, &cacheEntry{shape: shapeOf(m)})
		return nil, nil
	}
	r.Shape.ID = m.ID
	e := &cacheEntry{shape: shapeOf(&r.Shape), btfID: r.BTFID, key: r.Key, value: r.Value}
	c.put(m.ID, e)
	if !SameShape(&e.shape, m) {
		return nil, nil // the id names another map now: not this event's
	}
	return e.key, e.value
}

func shapeOf(m *event.Map) event.Map {
	return event.Map{ID: m.ID, Name: m.Name, Type: m.Type, KeySize: m.KeySize, ValueSize: m.ValueSize, MaxEntries: m.MaxEntries, Flags: m.Flags}
}

func (c *Cache) put(id uint32, e *cacheEntry) {
	c.Forget(id)
	for old := range c.entries {
		if len(c.entries) < maxCached && c.bytes+e.mem() <= maxCacheBytes {
			break
		}
		c.Forget(old)
	}
	c.entries[id] = e
	c.bytes += e.mem()
}

// Forget drops what is cached of map id: a map was created with it.
func (c *Cache) Forget(id uint32) {
	if e := c.entries[id]; e != nil {
		c.bytes -= e.mem()
		delete(c.entries, id)
	}
}

// Bytes is the estimated memory the Cache holds, at most maxCacheBytes.
func (c *Cache) Bytes() int { return c.bytes }

// Refresh drops the maps that listed no longer lists (gone), or lists with
// another BTF object than the one resolved (the id was reused).
func (c *Cache) Refresh(listed func(id uint32) (btfID uint32, ok bool)) {
	for id, e := range c.entries {
		btfID, ok := listed(id)
		if !ok || btfID != e.btfID {
			c.Forget(id)
		}
	}
}

// Len is the number of maps cached.
func (c *Cache) Len() int { return len(c.entries) }

// maxBTF bounds the BTF object Resolve reads and parses for one map: the
// event path waits for it, once per map. Objects of programs built with
// libbpf or cilium/ebpf are tens or hundreds of KiB; a larger one (a map
// created with a copy of the kernel's BTF, or made to stall bpfmon) has
// its values shown in hex only.
const maxBTF = 2 << 20

// ErrBTFTooLarge says a map's BTF object is larger than bpfmon reads.
var ErrBTFTooLarge = errors.New("BTF object too large to render by")

// Resolve reads what map id is now: its info and, where it has BTF, the
// Layouts of its key and value types.
func Resolve(id uint32) (Resolved, error) {
	fd, err := bpfsys.MapFDByID(id, unix.BPF_F_RDONLY)
	if err != nil {
		return Resolved{}, fmt.Errorf("map %d: %w", id, err)
	}
	info, err := bpfsys.GetMapInfo(fd)
	unix.Close(fd)
	if err != nil {
		return Resolved{}, fmt.Errorf("map %d: %w", id, err)
	}
	r := Resolved{Shape: event.Map{ID: info.ID, Name: bpfsys.CString(info.Name[:]), Type: info.Type, KeySize: info.KeySize,
		ValueSize: info.ValueSize, MaxEntries: info.MaxEntries, Flags: info.MapFlags}, BTFID: info.BTFID}
	key, value, err := types(info.BTFID, info.BTFKeyTypeID, info.BTFValueTypeID, maxBTF)
	if err != nil {
		// No BTF, or BTF that cannot be read (too large, not parsed):
		// remembered as such, shown in hex.
		return r, nil
	}
	if key != nil {
		r.Key = Compile(key)
	}
	if value != nil {
		r.Value = Compile(value)
	}
	return r, nil
}

// btfSize is the size of the raw BTF behind fd (struct bpf_btf_info).
func btfSize(fd int) (uint32, error) {
	var info struct {
		BTF  uint64
		Size uint32
		ID   uint32
	}
	if err := bpfsys.ObjInfo(fd, unsafe.Pointer(&info), uint32(unsafe.Sizeof(info))); err != nil {
		return 0, err
	}
	return info.Size, nil
}

// types is Types, refusing objects larger than limit bytes (0: any).
func types(btfID, keyTypeID, valueTypeID uint32, limit uint32) (key, value btf.Type, err error) {
	if btfID == 0 || (keyTypeID == 0 && valueTypeID == 0) {
		return nil, nil, ErrNoBTF
	}
	h, err := btf.NewHandleFromID(btf.ID(btfID))
	if err != nil {
		return nil, nil, fmt.Errorf("BTF %d: %w", btfID, err)
	}
	defer h.Close()
	if limit > 0 {
		size, err := btfSize(h.FD())
		if err != nil {
			return nil, nil, fmt.Errorf("BTF %d: %w", btfID, err)
		}
		if size > limit {
			return nil, nil, fmt.Errorf("BTF %d: %d bytes: %w", btfID, size, ErrBTFTooLarge)
		}
	}
	spec, err := h.Spec(nil)
	if err != nil {
		return nil, nil, fmt.Errorf("BTF %d: %w", btfID, err)
	}
	if keyTypeID != 0 {
		key, _ = spec.TypeByID(btf.TypeID(keyTypeID))
	}
	if valueTypeID != 0 {
		value, _ = spec.TypeByID(btf.TypeID(valueTypeID))
	}
	return key, value, nil
}

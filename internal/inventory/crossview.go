package inventory

import (
	"cmp"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"

	"golang.org/x/sys/unix"

	"github.com/bpfmon/bpfmon/internal/bpfsys"
	"github.com/bpfmon/bpfmon/internal/names"
)

// The views of which maps exist. bpf(2)'s own listing (GET_NEXT_ID, then
// GET_FD_BY_ID) is what bpftool and the rest of the inventory use, and
// what a rootkit's program on the bpf syscall rewrites (bpf_probe_write_user
// on the caller's bpf_attr) or fails. The others do not go through those
// two commands: a hook on them does not reach them.
const (
	ViewNextID   = "get_next_id"  // BPF_MAP_GET_NEXT_ID walks past it
	ViewFDByID   = "get_fd_by_id" // BPF_MAP_GET_FD_BY_ID opens it
	ViewFdinfo   = "fdinfo"       // a process holds an fd to it (/proc/PID/fdinfo's map_id)
	ViewPins     = "bpffs"        // it is pinned (BPF_OBJ_GET of the pin)
	ViewProgMaps = "prog_map_ids" // a listed program uses it (bpf_prog_info.map_ids)
	ViewSensor   = "sensor"       // bpfmon's syscall sensor saw it created (Options.Created)
	ViewIterator = "bpf_map_iter" // a bpf_map iterator walks the kernel's own list
)

// HiddenView says how a map missing from bpf(2)'s listing was found.
type HiddenView struct {
	// SeenBy are the views that show the map, MissedBy those that do not
	// (ViewNextID and ViewFDByID where the listing skips or refuses it),
	// both sorted.
	SeenBy   []string `json:"seen_by"`
	MissedBy []string `json:"missed_by"`
	// Via is the path bpfmon read the map through ("pin /sys/fs/bpf/x",
	// "fd 7 of pid 42"); empty when no view gives a way to open it (only
	// a program's map ids name it), and then only ID is known.
	Via string `json:"via,omitempty"`

	// The way Via names, for Open: a pin, or a process's fd.
	pin    string
	pid    uint32
	fd     int
	viaSet bool
}

// CanOpen says whether some view gave a way to open the map (Open).
func (h *HiddenView) CanOpen() bool { return h != nil && h.viaSet }

// Open opens hidden map id again the way the cross-view check reached it
// (bpf(2)'s GET_FD_BY_ID refuses it): BPF_OBJ_GET of its pin with
// openFlags, or a duplicate of the fd a process holds (pidfd_getfd; the
// holder's access mode). It fails when that pin or fd no longer names
// map id.
func (h *HiddenView) Open(id, openFlags uint32) (int, error) {
	if !h.CanOpen() {
		return -1, fmt.Errorf("map %d: hidden, and no view gives a way to open it", id)
	}
	var fd int
	var err error
	if h.pin != "" {
		fd, err = bpfsys.ObjGet(h.pin, openFlags)
	} else {
		fd, err = fdOf(h.pid, h.fd)
	}
	if err != nil {
		return -1, fmt.Errorf("map %d: hidden, and reopening it via %s: %w", id, h.Via, err)
	}
	if info, err := bpfsys.GetMapInfo(fd); err != nil || info.ID != id {
		unix.Close(fd)
		return -1, fmt.Errorf("map %d: hidden, and %s no longer names it", id, h.Via)
	}
	return fd, nil
}

// crossView adds to maps (listed by bpf(2), sorted by id) the maps that
// other views show and the listing missed, each with Hidden set, and
// returns the result sorted by id. A map a view saw that the listing gives
// when asked again was created during the pass, and one that no view can
// open again was freed meanwhile: neither is hidden.
func crossView(maps []Map, held []heldFD, pins map[uint32][]string, progs map[uint32][]Program, created []uint32, iv *iterView) ([]Map, []error) {
	listed := make(map[uint32]bool, len(maps))
	for _, m := range maps {
		listed[m.ID] = true
	}
	seen := map[uint32][]string{}
	see := func(id uint32, view string) {
		if id == 0 || listed[id] {
			return
		}
		if v := seen[id]; !slices.Contains(v, view) {
			seen[id] = append(v, view)
		}
	}
	for _, h := range held {
		see(h.mapID, ViewFdinfo)
	}
	for id := range pins {
		see(id, ViewPins)
	}
	for id := range progs {
		see(id, ViewProgMaps)
	}
	for _, id := range created {
		see(id, ViewSensor)
	}
	if iv.hasMaps() {
		for id := range iv.maps {
			see(id, ViewIterator)
		}
	}
	if len(seen) == 0 {
		return maps, nil
	}
	var errs []error
	ids := make([]uint32, 0, len(seen))
	for id := range seen {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	missed := make(map[uint32][]string, len(ids))
	for _, id := range ids {
		missed[id] = listingMisses(id)
	}
	// The others are compared with the views' state after the listing
	// was asked again: in the second walk of the iterator, a map is
	// still there; in neither, it was freed meanwhile.
	others := []string{ViewFdinfo, ViewPins, ViewProgMaps}
	if iv.hasMaps() {
		others = append(others, ViewIterator)
	}
	for _, id := range ids {
		if len(missed[id]) == 0 {
			continue // created during the pass
		}
		views := seen[id]
		now, inIter := iv.mapNow(id)
		if inIter && !slices.Contains(views, ViewIterator) {
			views = append(views, ViewIterator)
		}
		m, ok, err := reachHidden(id, held, pins[id], progs[id])
		if err != nil {
			errs = append(errs, err)
		}
		if !ok && inIter {
			// No view opens it, but the kernel holds it.
			m, ok = Map{ID: id, Hidden: &HiddenView{}, FlagNames: []string{}}, true
			fillFromIter(&m, now)
		} else if ok && inIter && m.Type == "unknown" {
			fillFromIter(&m, now) // only a program's map ids named it
		}
		if !ok {
			continue // freed meanwhile, or only a sensor record left of it
		}
		slices.Sort(views)
		m.Hidden.SeenBy = views
		m.Hidden.MissedBy = missed[id]
		for _, v := range others {
			if !slices.Contains(views, v) {
				m.Hidden.MissedBy = append(m.Hidden.MissedBy, v)
			}
		}
		slices.Sort(m.Hidden.MissedBy)
		m.Programs = nonNil(progs[id])
		for _, h := range held {
			if h.mapID == id {
				m.Holders = append(m.Holders, h.h)
			}
		}
		slices.SortFunc(m.Holders, func(a, b Holder) int {
			if a.PID != b.PID {
				return cmp.Compare(a.PID, b.PID)
			}
			return a.FD - b.FD
		})
		m.Pins = slices.Sorted(slices.Values(nonNil(pins[id])))
		maps = append(maps, m)
	}
	slices.SortFunc(maps, func(a, b Map) int { return cmp.Compare(a.ID, b.ID) })
	return maps, errs
}

func nonNil[T any](s []T) []T {
	if s == nil {
		return []T{}
	}
	return s
}

// listingMisses asks bpf(2)'s listing about id again, after the views
// were read: which of GET_NEXT_ID and GET_FD_BY_ID miss it. None: the
// listing has it now.
func listingMisses(id uint32) []string {
	var missed []string
	if next, err := bpfsys.NextMapID(id - 1); err != nil || next != id {
		missed = append(missed, ViewNextID)
	}
	fd, err := bpfsys.MapFDByID(id, unix.BPF_F_RDONLY)
	if err != nil {
		missed = append(missed, ViewFDByID)
	} else {
		unix.Close(fd)
	}
	return missed
}

// reachHidden reads map id through a path other than bpf(2)'s listing: a
// pin, else an fd a process holds (pidfd_getfd), else (a program's map
// ids only) it confirms that a listed program still uses it. ok is false
// when the map is gone.
func reachHidden(id uint32, held []heldFD, pins []string, progs []Program) (Map, bool, error) {
	m := Map{ID: id, Hidden: &HiddenView{}, FlagNames: []string{}, Programs: []Program{}, Holders: []Holder{}, Pins: []string{}}
	for _, p := range pins {
		fd, err := bpfsys.ObjGet(p, unix.BPF_F_RDONLY)
		if err != nil {
			continue
		}
		ok := fillHidden(&m, fd)
		unix.Close(fd)
		if ok {
			m.Hidden.Via = "pin " + p
			m.Hidden.pin, m.Hidden.viaSet = p, true
			return m, true, nil
		}
	}
	var lastErr error
	for _, h := range held {
		if h.mapID != id {
			continue
		}
		fd, err := fdOf(h.h.PID, h.h.FD)
		if err != nil {
			if !vanished(err) && !errors.Is(err, unix.EBADF) {
				lastErr = err // not gone: we may not read it
			}
			continue
		}
		ok := fillHidden(&m, fd)
		unix.Close(fd)
		if ok {
			m.Hidden.Via = "fd " + strconv.Itoa(h.h.FD) + " of pid " + strconv.FormatUint(uint64(h.h.PID), 10)
			m.Hidden.pid, m.Hidden.fd, m.Hidden.viaSet = h.h.PID, h.h.FD, true
			return m, true, nil
		}
	}
	for _, p := range progs {
		fd, err := bpfsys.ProgFDByID(p.ID)
		if err != nil {
			continue
		}
		_, ids, err := bpfsys.GetProgInfo(fd, nil)
		unix.Close(fd)
		if err == nil && slices.Contains(ids, id) {
			m.Type = "unknown"
			m.WritableWhy = "unknown: no view gives a way to open the map"
			return m, true, nil
		}
	}
	if lastErr != nil {
		return m, false, fmt.Errorf("map %d: hidden from bpf(2)'s listing, and its holders' fds cannot be read: %w", id, lastErr)
	}
	return m, false, nil
}

// fdOf duplicates fd of process pid into ours (pidfd_getfd, Linux 5.6;
// needs the right to ptrace it).
func fdOf(pid uint32, fd int) (int, error) {
	pfd, err := unix.PidfdOpen(int(pid), 0)
	if err != nil {
		return -1, err
	}
	defer unix.Close(pfd)
	return unix.PidfdGetfd(pfd, fd, 0)
}

// fillHidden fills m from the map behind fd, and reports whether it is
// map m.ID (an fd may have been closed and reused meanwhile).
func fillHidden(m *Map, fd int) bool {
	info, err := bpfsys.GetMapInfo(fd)
	if err != nil || info.ID != m.ID {
		return false
	}
	var s procScratch
	var fi fdinfo
	if b, ok := s.readFile("/proc/self/fdinfo/" + strconv.Itoa(fd)); ok {
		fi = parseFdinfo(b)
	}
	writable, why := writability(info.MapFlags, fi.frozen)
	m.Name = bpfsys.CString(info.Name[:])
	m.Type = names.MapType(info.Type)
	m.TypeID, m.KeySize, m.ValueSize, m.MaxEntries, m.Flags = info.Type, info.KeySize, info.ValueSize, info.MaxEntries, info.MapFlags
	m.FlagNames = names.MapFlags(info.MapFlags, fi.frozen)
	m.Frozen, m.MemoryBytes, m.BTFID = fi.frozen, fi.memlock, info.BTFID
	m.UserWritable, m.WritableWhy = writable, why
	return true
}

// riskyCache keeps what the listed programs' instructions say (the risky
// helpers they call) by program id: instructions never change, and ids
// are not reused while a program is listed.
var riskyCache struct {
	sync.Mutex
	byID map[uint32]string
}

// riskyOf returns the Risky flags of program id, read once.
func riskyOf(id uint32, fd int) string {
	riskyCache.Lock()
	defer riskyCache.Unlock()
	if r, ok := riskyCache.byID[id]; ok {
		return r
	}
	rs, err := bpfsys.RiskyHelpers(fd)
	r := strings.Join(rs, ",")
	if err != nil && !errors.Is(err, bpfsys.ErrHelpersUnknown) {
		return r // not cached: try again next time
	}
	if riskyCache.byID == nil {
		riskyCache.byID = map[uint32]string{}
	}
	riskyCache.byID[id] = r
	return r
}

// pruneRisky forgets the programs not in listed.
func pruneRisky(listed map[uint32]bool) {
	riskyCache.Lock()
	defer riskyCache.Unlock()
	for id := range riskyCache.byID {
		if !listed[id] {
			delete(riskyCache.byID, id)
		}
	}
}

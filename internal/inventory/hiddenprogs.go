package inventory

import (
	"errors"
	"fmt"
	"slices"
	"strconv"

	"github.com/cilium/ebpf/link"
	"golang.org/x/sys/unix"

	"github.com/bpfmon/bpfmon/internal/bpfsys"
	"github.com/bpfmon/bpfmon/internal/names"
)

// HiddenProg is a program that bpf(2)'s listing (BPF_PROG_GET_NEXT_ID,
// BPF_PROG_GET_FD_BY_ID) skips or refuses while the bpf_prog iterator or
// a bpf_link still shows it: a rootkit's own program, typically the one
// doing the hiding. What is known of it is what the iterator gives: no view
// gives an fd to it, so its instructions (and risky helpers) are not read.
type HiddenProg struct {
	ID     uint32     `json:"id"`
	Name   string     `json:"name"`
	Type   string     `json:"type"` // bpftool's name
	TypeID uint32     `json:"type_id"`
	Hidden HiddenView `json:"hidden"`
}

// ViewLinks names the view of programs through the bpf_links that hold
// them (BPF_LINK_GET_NEXT_ID, each link's info): other bpf(2) commands
// than the programs' listing, which a hook on that listing does not reach.
const ViewLinks = "bpf_link"

// progViews are the views of programs that the walks of processes and
// pins gave: fds held (fdinfo's prog_id) and bpffs pins.
type progViews struct {
	held []heldProg
	pins map[uint32][]string
}

// stillThere says whether program id is still held by the fd, or pinned
// at the path, through which the walk saw it: a second look, as the
// iterator's second walk is, by paths a hook on bpf(2)'s listing does not
// reach (fdinfo is read from /proc; BPF_OBJ_GET opens the pin).
func (v progViews) stillThere(id uint32) (held, pinned bool) {
	var s procScratch
	for _, h := range v.held {
		if h.progID != id {
			continue
		}
		pid := strconv.FormatUint(uint64(h.pid), 10)
		if b, ok := s.readFile(procRoot + "/" + pid + "/fdinfo/" + strconv.Itoa(h.fd)); ok {
			if f := parseFdinfo(b); f.hasProgID && f.progID == id {
				held = true
				break
			}
		}
	}
	for _, path := range v.pins[id] {
		if again, kind, err := pinnedObject(path); err == nil && kind == pinnedProg && again == id {
			pinned = true
			break
		}
	}
	return held, pinned
}

// hiddenPrograms compares the programs the bpf_prog iterator, the
// bpf_links, the fds processes hold and the bpffs pins show (and the
// sensor, loaded, corroborates) with the listing's, as crossView does for
// maps: a candidate is asked about again, and is hidden only if the
// listing still misses it and it still exists, in a second walk of the
// iterator, held by a link read again, or by the same fd or pin (a
// program loaded during the pass is listed by then; one freed is in none).
func hiddenPrograms(iv *iterView, loaded []uint32, pv progViews) []HiddenProg {
	if iv == nil {
		return nil
	}
	linked, err := linkProgs()
	if err != nil {
		iv.errs = append(iv.errs, err)
	}
	if iv.progs == nil && len(linked) == 0 && len(pv.held) == 0 && len(pv.pins) == 0 {
		return nil
	}
	listed, ok := listedProgs()
	if !ok {
		return nil // no listing to compare with; Collect's walk says why
	}
	seen := map[uint32][]string{}
	add := func(id uint32, view string) {
		if !listed[id] && !slices.Contains(seen[id], view) {
			seen[id] = append(seen[id], view)
		}
	}
	for id := range iv.progs {
		add(id, ViewProgIterator)
	}
	for id := range linked {
		add(id, ViewLinks)
	}
	for _, h := range pv.held {
		add(h.progID, ViewFdinfo)
	}
	for id := range pv.pins {
		add(id, ViewPins)
	}
	for _, id := range loaded {
		if _, ok := seen[id]; ok {
			add(id, ViewSensor)
		}
	}
	if len(seen) == 0 {
		return nil
	}
	ids := make([]uint32, 0, len(seen))
	missed := map[uint32][]string{}
	for id := range seen {
		ids = append(ids, id)
		missed[id] = progListingMisses(id)
	}
	slices.Sort(ids)
	iv.progsAgain()
	linkedAgain, _ := linkProgs()
	var out []HiddenProg
	for _, id := range ids {
		_, inIter := iv.againProgs[id]
		heldAgain, pinnedAgain := pv.stillThere(id)
		if len(missed[id]) == 0 || (!inIter && !linkedAgain[id] && !heldAgain && !pinnedAgain) {
			continue // loaded, or freed, during the pass
		}
		views := seen[id]
		for view, there := range map[string]bool{ViewProgIterator: inIter, ViewLinks: linkedAgain[id], ViewFdinfo: heldAgain, ViewPins: pinnedAgain} {
			if there && !slices.Contains(views, view) {
				views = append(views, view)
			}
		}
		if iv.progs != nil && !inIter && !slices.Contains(views, ViewProgIterator) {
			missed[id] = append(missed[id], ViewProgIterator)
		}
		if err == nil && !slices.Contains(views, ViewLinks) {
			missed[id] = append(missed[id], ViewLinks)
		}
		slices.Sort(views)
		slices.Sort(missed[id])
		p, ok := iv.againProgs[id]
		if !ok {
			p = iv.progs[id] // zero when only a link shows it
		}
		hp := HiddenProg{ID: id, Name: p.Name, Type: names.ProgType(p.Type), TypeID: p.Type,
			Hidden: HiddenView{SeenBy: views, MissedBy: missed[id]}}
		if p.ID == 0 {
			hp.Type = "unknown" // only a link, an fd or a pin names it: no view tells its type or name
		}
		out = append(out, hp)
	}
	return out
}

// listedProgs walks BPF_PROG_GET_NEXT_ID; ok is false when it fails.
func listedProgs() (map[uint32]bool, bool) {
	listed := map[uint32]bool{}
	for id := uint32(0); ; {
		next, err := bpfsys.NextProgID(id)
		if err != nil {
			return listed, errors.Is(err, unix.ENOENT)
		}
		listed[next], id = true, next
	}
}

// linkProgs returns the ids of the programs that the host's bpf_links
// hold. A kernel without links (before 5.8) has none, with no error.
func linkProgs() (map[uint32]bool, error) {
	out := map[uint32]bool{}
	it := new(link.Iterator)
	defer it.Close()
	for it.Next() {
		if info, err := it.Link.Info(); err == nil && info.Program != 0 {
			out[uint32(info.Program)] = true
		}
	}
	if err := it.Err(); err != nil && !errors.Is(err, unix.EINVAL) {
		return out, fmt.Errorf("cross-view: listing bpf_links: %w", err)
	}
	return out, nil
}

// progListingMisses asks bpf(2)'s listing about program id again: which of
// GET_NEXT_ID and GET_FD_BY_ID miss it.
func progListingMisses(id uint32) []string {
	var missed []string
	if next, err := bpfsys.NextProgID(id - 1); err != nil || next != id {
		missed = append(missed, ViewNextID)
	}
	fd, err := bpfsys.ProgFDByID(id)
	if err != nil {
		missed = append(missed, ViewFDByID)
	} else {
		unix.Close(fd)
	}
	return missed
}

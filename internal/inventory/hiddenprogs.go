package inventory

import (
	"errors"
	"slices"

	"golang.org/x/sys/unix"

	"github.com/bpfmon/bpfmon/internal/bpfsys"
	"github.com/bpfmon/bpfmon/internal/names"
)

// HiddenProg is a program that bpf(2)'s listing (BPF_PROG_GET_NEXT_ID,
// BPF_PROG_GET_FD_BY_ID) skips or refuses while the bpf_prog iterator
// still finds it in the kernel: a rootkit's own program, typically the one
// doing the hiding. What is known of it is what the iterator gives: no view
// gives an fd, so its instructions (and risky helpers) cannot be read.
type HiddenProg struct {
	ID     uint32     `json:"id"`
	Name   string     `json:"name"`
	Type   string     `json:"type"` // bpftool's name
	TypeID uint32     `json:"type_id"`
	Hidden HiddenView `json:"hidden"`
}

// hiddenPrograms compares the programs the bpf_prog iterator (and the
// sensor, loaded) shows with the listing's, as crossView does for maps: a
// candidate is asked about again, and is hidden only if the listing still
// misses it and a second walk of the iterator still has it (a program
// loaded during the pass is listed by then; one freed is in neither). The
// sensor's records only corroborate: without the iterator, nothing says a
// program the listing misses still exists.
func hiddenPrograms(iv *iterView, loaded []uint32) []HiddenProg {
	if iv == nil || iv.progs == nil {
		return nil
	}
	listed := map[uint32]bool{}
	for id := uint32(0); ; {
		next, err := bpfsys.NextProgID(id)
		if err != nil {
			if !errors.Is(err, unix.ENOENT) {
				return nil // no listing to compare with; Collect's walk says why
			}
			break
		}
		listed[next], id = true, next
	}
	seen := map[uint32][]string{}
	for id := range iv.progs {
		if !listed[id] {
			seen[id] = []string{ViewProgIterator}
		}
	}
	for _, id := range loaded {
		if v, ok := seen[id]; ok && !slices.Contains(v, ViewSensor) {
			seen[id] = append(v, ViewSensor)
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
	var out []HiddenProg
	for _, id := range ids {
		p, there := iv.againProgs[id]
		if len(missed[id]) == 0 || !there {
			continue // loaded, or freed, during the pass
		}
		views := seen[id]
		slices.Sort(views)
		slices.Sort(missed[id])
		out = append(out, HiddenProg{ID: id, Name: p.Name, Type: names.ProgType(p.Type), TypeID: p.Type,
			Hidden: HiddenView{SeenBy: views, MissedBy: missed[id]}})
	}
	return out
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

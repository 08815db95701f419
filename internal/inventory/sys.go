package inventory

import (
	"runtime"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Raw bpf(2) calls: cilium/ebpf's NewMapFromID opens maps read-write and
// queries more than the inventory needs, and Program.Info copies every
// program's instructions; on a host with thousands of objects the syscall
// count is the cost, so the inventory makes exactly the calls it needs.

func bpfCall(cmd int, attr unsafe.Pointer, size uintptr) (uintptr, error) {
	r, _, e := unix.Syscall(unix.SYS_BPF, uintptr(cmd), uintptr(attr), size)
	if e != 0 {
		return r, e
	}
	return r, nil
}

// getFDByIDAttr is the BPF_*_GET_FD_BY_ID part of union bpf_attr.
type getFDByIDAttr struct {
	ID        uint32
	NextID    uint32
	OpenFlags uint32
	TokenFD   uint32
}

// mapFDByID opens map id read-only (BPF_F_RDONLY): the inventory never
// needs to write, and a read-only fd in its hands cannot be abused.
func mapFDByID(id uint32) (int, error) {
	attr := getFDByIDAttr{ID: id, OpenFlags: unix.BPF_F_RDONLY}
	fd, err := bpfCall(unix.BPF_MAP_GET_FD_BY_ID, unsafe.Pointer(&attr), unsafe.Sizeof(attr))
	return int(fd), err
}

func progFDByID(id uint32) (int, error) {
	attr := getFDByIDAttr{ID: id}
	fd, err := bpfCall(unix.BPF_PROG_GET_FD_BY_ID, unsafe.Pointer(&attr), unsafe.Sizeof(attr))
	return int(fd), err
}

// nextID is BPF_MAP_GET_NEXT_ID or BPF_PROG_GET_NEXT_ID.
func nextID(cmd int, start uint32) (uint32, error) {
	attr := getFDByIDAttr{ID: start}
	_, err := bpfCall(cmd, unsafe.Pointer(&attr), unsafe.Sizeof(attr))
	return attr.NextID, err
}

// objGetAttr is the BPF_OBJ_GET part of union bpf_attr.
type objGetAttr struct {
	Pathname  uint64
	BPFFD     uint32
	FileFlags uint32
	PathFD    int32
	_         uint32
}

// objGetRDOnly opens the object pinned at path with BPF_F_RDONLY.
func objGetRDOnly(path string) (int, error) {
	p, err := unix.BytePtrFromString(path)
	if err != nil {
		return -1, err
	}
	attr := objGetAttr{Pathname: uint64(uintptr(unsafe.Pointer(p))), FileFlags: unix.BPF_F_RDONLY}
	fd, err := bpfCall(unix.BPF_OBJ_GET, unsafe.Pointer(&attr), unsafe.Sizeof(attr))
	runtime.KeepAlive(p)
	return int(fd), err
}

type objInfoAttr struct {
	FD      uint32
	InfoLen uint32
	Info    uint64
}

// objInfo is BPF_OBJ_GET_INFO_BY_FD into buf.
func objInfo(fd int, buf unsafe.Pointer, size uint32) error {
	attr := objInfoAttr{FD: uint32(fd), InfoLen: size, Info: uint64(uintptr(buf))}
	_, err := bpfCall(unix.BPF_OBJ_GET_INFO_BY_FD, unsafe.Pointer(&attr), unsafe.Sizeof(attr))
	return err
}

// mapInfo is the start of struct bpf_map_info, up to btf_value_type_id.
type mapInfo struct {
	Type                  uint32 // 0
	ID                    uint32 // 4
	KeySize               uint32 // 8
	ValueSize             uint32 // 12
	MaxEntries            uint32 // 16
	MapFlags              uint32 // 20
	Name                  [16]byte
	Ifindex               uint32 // 40
	BTFVmlinuxValueTypeID uint32 // 44
	NetnsDev              uint64 // 48
	NetnsIno              uint64 // 56
	BTFID                 uint32 // 64
	BTFKeyTypeID          uint32 // 68
	BTFValueTypeID        uint32 // 72
	_                     uint32 // 76
}

func getMapInfo(fd int) (mapInfo, error) {
	var info mapInfo
	err := objInfo(fd, unsafe.Pointer(&info), uint32(unsafe.Sizeof(info)))
	return info, err
}

// progInfo is the start of struct bpf_prog_info, up to name.
type progInfo struct {
	Type            uint32 // 0
	ID              uint32 // 4
	Tag             [8]byte
	JitedProgLen    uint32 // 16
	XlatedProgLen   uint32 // 20
	JitedProgInsns  uint64 // 24
	XlatedProgInsns uint64 // 32
	LoadTime        uint64 // 40
	CreatedByUID    uint32 // 48
	NrMapIDs        uint32 // 52
	MapIDs          uint64 // 56
	Name            [16]byte
}

// getProgInfo returns the program's type, id, name and map ids; ids is a
// reusable buffer. Only the map ids are copied out: no instructions.
func getProgInfo(fd int, ids []uint32) (progInfo, []uint32, error) {
	for {
		var info progInfo
		if cap(ids) > 0 {
			ids = ids[:cap(ids)]
			info.NrMapIDs = uint32(len(ids))
			info.MapIDs = uint64(uintptr(unsafe.Pointer(&ids[0])))
		}
		err := objInfo(fd, unsafe.Pointer(&info), uint32(unsafe.Sizeof(info)))
		runtime.KeepAlive(ids)
		if err != nil {
			return info, ids[:0], err
		}
		if int(info.NrMapIDs) <= len(ids) {
			return info, ids[:info.NrMapIDs], nil
		}
		ids = make([]uint32, info.NrMapIDs)
	}
}

// cString returns b up to its first NUL.
func cString(b []byte) string {
	for i, c := range b {
		if c == 0 {
			return string(b[:i])
		}
	}
	return string(b)
}

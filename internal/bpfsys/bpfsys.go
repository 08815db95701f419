// Package bpfsys makes raw bpf(2) calls: the few commands the inventory,
// the content scanner and the kernel-side sensor's attribution make on
// every map and program of the host, with the parts of union bpf_attr and
// of the info structs they use, laid out once.
//
// cilium/ebpf's NewMapFromID opens maps read-write and queries more than
// these callers need, and Program.Info copies every program's
// instructions; on a host with thousands of objects the syscall count is
// the cost, so these helpers make exactly the calls needed. Errors are the
// kernel's unix.Errno, so callers can tell ENOENT (the object vanished)
// from the rest.
//
// Every field that carries an address is an unsafe.Pointer, never an
// integer: the memory it points to may be on a goroutine's stack, which
// the runtime moves when it grows, and it adjusts only what it knows to be
// a pointer. An address kept as a uint64 would still name the old stack,
// and the kernel would write there.
package bpfsys

import (
	"unsafe"

	"golang.org/x/sys/unix"
)

// Call is bpf(2). The errno is 0 on success.
func Call(cmd int, attr unsafe.Pointer, size uintptr) (uintptr, unix.Errno) {
	r, _, e := unix.Syscall(unix.SYS_BPF, uintptr(cmd), uintptr(attr), size)
	return r, e
}

func call(cmd int, attr unsafe.Pointer, size uintptr) (uintptr, error) {
	r, e := Call(cmd, attr, size)
	if e != 0 {
		return r, e
	}
	return r, nil
}

// Ptr is the address of b's first byte as bpf_attr wants it, nil when b is
// empty.
func Ptr(b []byte) unsafe.Pointer {
	if len(b) == 0 {
		return nil
	}
	return unsafe.Pointer(&b[0])
}

// GetIDAttr is the BPF_*_GET_FD_BY_ID and BPF_*_GET_NEXT_ID part of union
// bpf_attr.
type GetIDAttr struct {
	ID        uint32
	NextID    uint32
	OpenFlags uint32
	TokenFD   uint32
}

// MapFDByID opens map id with openFlags (unix.BPF_F_RDONLY for a read-only
// fd, 0 for read-write).
func MapFDByID(id, openFlags uint32) (int, error) {
	attr := GetIDAttr{ID: id, OpenFlags: openFlags}
	fd, err := call(unix.BPF_MAP_GET_FD_BY_ID, unsafe.Pointer(&attr), unsafe.Sizeof(attr))
	return int(fd), err
}

// ProgFDByID opens program id.
func ProgFDByID(id uint32) (int, error) {
	attr := GetIDAttr{ID: id}
	fd, err := call(unix.BPF_PROG_GET_FD_BY_ID, unsafe.Pointer(&attr), unsafe.Sizeof(attr))
	return int(fd), err
}

// NextMapID returns the id of the first map after start (ENOENT: none).
func NextMapID(start uint32) (uint32, error) { return nextID(unix.BPF_MAP_GET_NEXT_ID, start) }

// NextProgID returns the id of the first program after start (ENOENT: none).
func NextProgID(start uint32) (uint32, error) { return nextID(unix.BPF_PROG_GET_NEXT_ID, start) }

func nextID(cmd int, start uint32) (uint32, error) {
	attr := GetIDAttr{ID: start}
	_, err := call(cmd, unsafe.Pointer(&attr), unsafe.Sizeof(attr))
	return attr.NextID, err
}

// ObjAttr is the BPF_OBJ_PIN and BPF_OBJ_GET part of union bpf_attr.
type ObjAttr struct {
	Pathname  unsafe.Pointer
	BPFFD     uint32
	FileFlags uint32
	PathFD    int32
	_         uint32
}

// ObjGet opens the object pinned at path with fileFlags
// (unix.BPF_F_RDONLY for a read-only fd).
func ObjGet(path string, fileFlags uint32) (int, error) {
	p, err := unix.BytePtrFromString(path)
	if err != nil {
		return -1, err
	}
	attr := ObjAttr{Pathname: unsafe.Pointer(p), FileFlags: fileFlags}
	fd, err := call(unix.BPF_OBJ_GET, unsafe.Pointer(&attr), unsafe.Sizeof(attr))
	return int(fd), err
}

type objInfoAttr struct {
	FD      uint32
	InfoLen uint32
	Info    unsafe.Pointer
}

// ObjInfo is BPF_OBJ_GET_INFO_BY_FD into buf, size bytes.
func ObjInfo(fd int, buf unsafe.Pointer, size uint32) error {
	attr := objInfoAttr{FD: uint32(fd), InfoLen: size, Info: buf}
	_, err := call(unix.BPF_OBJ_GET_INFO_BY_FD, unsafe.Pointer(&attr), unsafe.Sizeof(attr))
	return err
}

// MapInfo is the start of struct bpf_map_info, up to btf_value_type_id.
// Older kernels fill less of it and leave the rest zero.
type MapInfo struct {
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

// GetMapInfo reads a map's info.
func GetMapInfo(fd int) (MapInfo, error) {
	var info MapInfo
	err := ObjInfo(fd, unsafe.Pointer(&info), uint32(unsafe.Sizeof(info)))
	return info, err
}

// ProgInfo is the start of struct bpf_prog_info, up to name.
type ProgInfo struct {
	Type            uint32 // 0
	ID              uint32 // 4
	Tag             [8]byte
	JitedProgLen    uint32         // 16
	XlatedProgLen   uint32         // 20
	JitedProgInsns  unsafe.Pointer // 24
	XlatedProgInsns unsafe.Pointer // 32
	LoadTime        uint64         // 40
	CreatedByUID    uint32         // 48
	NrMapIDs        uint32         // 52
	MapIDs          unsafe.Pointer // 56
	Name            [16]byte
}

// GetProgInfo returns the program's type, id, name and map ids; ids is a
// reusable buffer. Only the map ids are copied out: no instructions.
func GetProgInfo(fd int, ids []uint32) (ProgInfo, []uint32, error) {
	for {
		var info ProgInfo
		if cap(ids) > 0 {
			ids = ids[:cap(ids)]
			info.NrMapIDs = uint32(len(ids))
			info.MapIDs = unsafe.Pointer(&ids[0])
		}
		err := ObjInfo(fd, unsafe.Pointer(&info), uint32(unsafe.Sizeof(info)))
		if err != nil {
			return info, ids[:0], err
		}
		if int(info.NrMapIDs) <= len(ids) {
			return info, ids[:info.NrMapIDs], nil
		}
		ids = make([]uint32, info.NrMapIDs)
	}
}

// ElemAttr is the BPF_MAP_*_ELEM part of union bpf_attr. For
// BPF_MAP_GET_NEXT_KEY, Value is next_key.
type ElemAttr struct {
	MapFD uint32
	_     uint32
	Key   unsafe.Pointer
	Value unsafe.Pointer
	Flags uint64
}

// BatchAttr is the BPF_MAP_*_BATCH part of union bpf_attr.
type BatchAttr struct {
	InBatch   unsafe.Pointer
	OutBatch  unsafe.Pointer
	Keys      unsafe.Pointer
	Values    unsafe.Pointer
	Count     uint32
	MapFD     uint32
	ElemFlags uint64
	Flags     uint64
}

// CString returns b up to its first NUL.
func CString(b []byte) string {
	for i, c := range b {
		if c == 0 {
			return string(b[:i])
		}
	}
	return string(b)
}

// linkInfoIter is the start of struct bpf_link_info, with the iterator
// part of its union.
type linkInfoIter struct {
	Type          uint32 // 0: enum bpf_link_type
	ID            uint32 // 4
	ProgID        uint32 // 8
	_             uint32 // 12
	TargetName    unsafe.Pointer
	TargetNameLen uint32 // 24
	MapID         uint32 // 28: iter.map.map_id
	_             [32]byte
}

const linkTypeIter = 4 // BPF_LINK_TYPE_ITER

// IteratedMaps lists the maps that a BPF iterator link walks the elements
// of (bpf_map_elem, bpf_sk_storage_map): its program gets a writable
// pointer to every value, and can rewrite the map with no update call.
func IteratedMaps() (map[uint32]bool, error) {
	out := map[uint32]bool{}
	for id := uint32(0); ; {
		attr := GetIDAttr{ID: id}
		if _, err := call(unix.BPF_LINK_GET_NEXT_ID, unsafe.Pointer(&attr), unsafe.Sizeof(attr)); err != nil {
			if err == unix.ENOENT {
				return out, nil
			}
			return out, err
		}
		id = attr.NextID
		get := GetIDAttr{ID: id}
		fd, err := call(unix.BPF_LINK_GET_FD_BY_ID, unsafe.Pointer(&get), unsafe.Sizeof(get))
		if err != nil {
			continue // gone meanwhile
		}
		var info linkInfoIter
		err = ObjInfo(int(fd), unsafe.Pointer(&info), uint32(unsafe.Sizeof(info)))
		unix.Close(int(fd))
		if err == nil && info.Type == linkTypeIter && info.MapID != 0 {
			out[info.MapID] = true
		}
	}
}

// ProgTypeSyscall is BPF_PROG_TYPE_SYSCALL.
const ProgTypeSyscall = 31

// SyscallPrograms reports whether any BPF_PROG_TYPE_SYSCALL program is
// loaded: such a program can make bpf(2) commands from inside the kernel
// (bpf_sys_bpf), on any map its caller holds an fd to, and no syscall
// hook sees them.
func SyscallPrograms() (bool, error) {
	var ids []uint32
	for id := uint32(0); ; {
		next, err := NextProgID(id)
		if err == unix.ENOENT {
			return false, nil
		}
		if err != nil {
			return false, err
		}
		id = next
		fd, err := ProgFDByID(id)
		if err != nil {
			continue // gone meanwhile
		}
		var info ProgInfo
		info, ids, err = GetProgInfo(fd, ids)
		unix.Close(fd)
		if err == nil && info.Type == ProgTypeSyscall {
			return true, nil
		}
	}
}

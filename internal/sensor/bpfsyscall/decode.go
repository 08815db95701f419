package bpfsyscall

import (
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"strings"
	"unsafe"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"

	"github.com/bpfmon/bpfmon/internal/bpfsys"
	"github.com/bpfmon/bpfmon/internal/event"
	"github.com/bpfmon/bpfmon/internal/inventory"
	"github.com/bpfmon/bpfmon/internal/sensor/record"
)

// Flags of struct call_rec, as bpf2go generated them from enum call_flag.
const (
	cfCompat       = bpfCallFlagCF_COMPAT
	cfMap          = bpfCallFlagCF_MAP
	cfMapRequested = bpfCallFlagCF_MAP_REQUESTED
	cfKeyFault     = bpfCallFlagCF_KEY_FAULT
	cfReread       = bpfCallFlagCF_REREAD
	cfValueFault   = bpfCallFlagCF_VALUE_FAULT
	cfKeyTrunc     = bpfCallFlagCF_KEY_TRUNC
	cfValueTrunc   = bpfCallFlagCF_VALUE_TRUNC
	cfNotMap       = bpfCallFlagCF_NOT_MAP
	cfPathFD       = bpfCallFlagCF_PATH_FD
	cfProg         = bpfCallFlagCF_PROG

	// cmdMmap is the record's cmd for an mmap(2) of a map fd.
	cmdMmap = uint32(bpfCallCmdCMD_MMAP)
)

const (
	callRecSize    = int(unsafe.Sizeof(bpfCallRec{}))
	callExitSize   = int(unsafe.Sizeof(bpfCallExit{}))
	progLoadedSize = int(unsafe.Sizeof(bpfProgLoaded{}))
)

// handlers are the sensor's record kinds and their decoders. Each call
// yields an entry record then an exit record from the same thread; the
// ring buffer keeps one thread's records in order, so pairing by thread
// (record.Calls) is exact.
func handlers() map[record.Kind]record.Handler {
	return map[record.Kind]record.Handler{
		record.KindEnter:     decodeEnter,
		record.KindExit:      decodeExit,
		record.KindExitShort: decodeExitShort,
	}
}

// callRec returns the call record in raw and the data after it, checking
// that the lengths it gives fit and that its key and value are what the
// kernel's capture can produce (record.CheckCapture): an event's Key and
// Value are never longer than their totals or MaxCapture, and Truncated
// says exactly that one was cut.
func callRec(raw []byte) (*bpfCallRec, []byte, error) {
	if err := record.Check(raw, callRecSize, "syscall"); err != nil {
		return nil, nil, err
	}
	r := (*bpfCallRec)(unsafe.Pointer(&raw[0]))
	data := raw[callRecSize:]
	if uint64(r.KeyLen)+uint64(r.ValueLen)+uint64(r.PathLen) > uint64(len(data)) {
		return nil, nil, fmt.Errorf("%w: key %d + value %d + path %d bytes exceed %d", record.ErrMalformed, r.KeyLen, r.ValueLen, r.PathLen, len(data))
	}
	if err := record.CheckCapture("syscall key", r.KeyLen, r.KeyTotal, r.Flags&uint32(cfKeyFault) != 0, r.Flags&uint32(cfKeyTrunc) != 0); err != nil {
		return nil, nil, err
	}
	if err := record.CheckCapture("syscall value", r.ValueLen, r.ValueTotal, r.Flags&uint32(cfValueFault) != 0, r.Flags&uint32(cfValueTrunc) != 0); err != nil {
		return nil, nil, err
	}
	return r, data, nil
}

func decodeEnter(raw []byte, d *record.Decoder, emit record.Emit) error {
	r, data, err := callRec(raw)
	if err != nil {
		return err
	}
	ev := enter(r, raw, data, d)
	var old *event.Event
	if ev != nil {
		old = d.Calls.Begin(r.Hdr.Tid, ev)
	} else {
		old = d.Calls.End(r.Hdr.Tid)
	}
	if old != nil {
		// The exit record of the thread's previous call was lost.
		return emit(old)
	}
	return nil
}

func decodeExit(raw []byte, d *record.Decoder, emit record.Emit) error {
	r, data, err := callRec(raw)
	if err != nil {
		return err
	}
	ev := d.Calls.End(r.Hdr.Tid)
	if ev == nil || !exit(ev, r, data, d) {
		// Reported without a result already (its entry went stale), or
		// not about a map after all.
		return nil
	}
	return emit(ev)
}

func decodeExitShort(raw []byte, d *record.Decoder, emit record.Emit) error {
	if err := record.Check(raw, callExitSize, "syscall exit"); err != nil {
		return err
	}
	x := (*bpfCallExit)(unsafe.Pointer(&raw[0]))
	ev := d.Calls.End(x.Hdr.Tid)
	if ev == nil {
		return nil // reported without a result already
	}
	ev.Result, ev.HasResult = x.Result, true
	if ev.HasCount {
		ev.Count = uint64(x.Count)
	}
	return emit(ev)
}

// eventSlot holds an event and what it points to, allocated together.
type eventSlot struct {
	ev   event.Event
	proc event.Process
	m    event.Map
}

func enter(r *bpfCallRec, raw, data []byte, d *record.Decoder) *event.Event {
	typ, ok := event.CommandType(r.Cmd)
	if r.Cmd == cmdMmap {
		typ, ok = event.MapMmap, true
	}
	if !ok {
		return nil
	}
	// One allocation for the event and the parts it points to.
	// The fields are set one by one: a composite literal would zero the
	// whole, already zeroed, event once more (measured: a tenth of the
	// decoder's time).
	sl := &eventSlot{}
	ev := &sl.ev
	ev.Time = d.Time(r.Hdr.Ktime)
	ev.Type = typ
	ev.Source = event.SourceSyscall
	ev.Compat = r.Flags&uint32(cfCompat) != 0
	ev.Process = &sl.proc
	d.Process(&sl.proc, raw)
	if r.Flags&uint32(cfMap|cfMapRequested) != 0 {
		ev.Map = &sl.m
		d.Map(ev.Map, mapInfo(r))
	}
	switch r.Cmd {
	case unix.BPF_MAP_GET_FD_BY_ID:
		ev.ReqMapID = r.ReqId
		ev.Flags, ev.HasFlags = r.ElemFlags, true
	case unix.BPF_OBJ_GET, unix.BPF_OBJ_PIN:
		off := 0
		if r.Cmd == unix.BPF_OBJ_PIN && r.Flags&uint32(cfProg) != 0 {
			// A link's pin: its program, then the path.
			if int(r.ValueLen) < progLoadedSize {
				return nil
			}
			ev.Prog = progOf((*bpfProgLoaded)(unsafe.Pointer(&data[0])), d)
			a := &event.Attach{Kind: "link", LinkID: r.ReqId, LinkType: inventory.LinkTypeName(r.Count)}
			a.Point = fmt.Sprintf("link %d (%s)", a.LinkID, a.LinkType)
			ev.Extra = &event.Extra{Attach: a}
			off = int(r.ValueLen)
		}
		ev.Path = string(data[off : off+int(r.PathLen)])
		ev.Flags, ev.HasFlags = r.ElemFlags, true
		if r.Flags&uint32(cfPathFD) != 0 {
			ev.PathFD, ev.HasPathFD = r.PathFd, true
		}
		if r.Cmd == unix.BPF_OBJ_PIN {
			ev.FD, ev.HasFD = r.Fd, true
		}
	case unix.BPF_LINK_CREATE:
		// Only iterators over a map's elements: the link's iter_info
		// begins with something else for other targets.
		if r.Flags&uint32(cfProg) == 0 || int(r.ValueLen) < progLoadedSize || int(r.ValueLen+r.PathLen) > len(data) {
			return nil
		}
		// The kernel names the target by its function, bpf_iter_<target>.
		if !iterTargets[strings.TrimPrefix(string(data[r.ValueLen:r.ValueLen+r.PathLen]), "bpf_iter_")] {
			return nil
		}
		ev.FD, ev.HasFD = r.Fd, true
		p := (*bpfProgLoaded)(unsafe.Pointer(&data[0]))
		ev.Prog = progOf(p, d)
	case unix.BPF_LINK_DETACH, unix.BPF_LINK_UPDATE:
		// The link's id and program; an update's new program after it.
		if r.Flags&uint32(cfProg) == 0 || int(r.ValueLen) < progLoadedSize || int(r.ValueLen) > len(data) {
			return nil
		}
		ev.FD, ev.HasFD = r.Fd, true
		ev.Prog = progOf((*bpfProgLoaded)(unsafe.Pointer(&data[0])), d)
		ev.Extra = &event.Extra{Attach: &event.Attach{Kind: "link", LinkID: r.ReqId}}
		if r.Cmd == unix.BPF_LINK_UPDATE {
			ev.Flags, ev.HasFlags = r.ElemFlags, true
			if int(r.ValueLen) >= 2*progLoadedSize {
				ev.Extra.Attach.NewProg = progOf((*bpfProgLoaded)(unsafe.Pointer(&data[progLoadedSize])), d)
			}
		}
		return ev
	case unix.BPF_PROG_ATTACH, unix.BPF_PROG_DETACH:
		return progAttach(ev, r, data, d)
	case cmdMmap:
		ev.FD, ev.HasFD = r.Fd, true
		ev.Extra = &event.Extra{Prot: r.ReqId, HasProt: true}
		ev.Flags, ev.HasFlags = r.ElemFlags, true
	case unix.BPF_PROG_LOAD:
		ev.Prog = &event.Prog{Type: r.ReqId}
	case unix.BPF_MAP_CREATE:
	default:
		ev.FD, ev.HasFD = r.Fd, true
		if r.Cmd != unix.BPF_MAP_FREEZE {
			ev.Flags, ev.HasFlags = r.ElemFlags, true
		}
	}
	switch r.Cmd {
	case unix.BPF_MAP_UPDATE_BATCH, unix.BPF_MAP_DELETE_BATCH, unix.BPF_MAP_LOOKUP_AND_DELETE_BATCH:
		ev.Count, ev.HasCount = uint64(r.Count), true
	}
	setKeyValue(ev, r, data)
	return ev
}

func mapInfo(r *bpfCallRec) *record.MapInfo { return (*record.MapInfo)(unsafe.Pointer(&r.Map)) }

// exit completes ev from its exit record. It reports false when the call
// turned out not to concern a map (obj_get of a pinned program).
func exit(ev *event.Event, r *bpfCallRec, data []byte, d *record.Decoder) bool {
	ev.Result, ev.HasResult = r.Result, true
	if r.Flags&uint32(cfReread) != 0 {
		reread(ev, r, data)
	}
	switch r.Cmd {
	case unix.BPF_MAP_CREATE, unix.BPF_MAP_GET_FD_BY_ID, unix.BPF_OBJ_GET:
		if r.Result >= 0 {
			if r.Flags&uint32(cfNotMap) != 0 {
				return false
			}
			ev.FD, ev.HasFD = int32(r.Result), true
			if r.Flags&uint32(cfMap) != 0 {
				if ev.Map == nil {
					ev.Map = &event.Map{}
				}
				d.Map(ev.Map, mapInfo(r))
			}
		} else if r.Cmd == unix.BPF_MAP_GET_FD_BY_ID && ev.ReqMapID != 0 {
			ev.Map = &event.Map{ID: ev.ReqMapID}
		}
	case unix.BPF_PROG_LOAD:
		if r.Result >= 0 {
			ev.FD, ev.HasFD = int32(r.Result), true
		}
		if r.Flags&uint32(cfProg) != 0 && int(r.KeyLen)+progLoadedSize <= len(data) {
			progLoaded(ev, (*bpfProgLoaded)(unsafe.Pointer(&data[r.KeyLen])), d)
		}
	case unix.BPF_MAP_UPDATE_BATCH, unix.BPF_MAP_DELETE_BATCH:
		ev.Count, ev.HasCount = uint64(r.Count), true
	case unix.BPF_MAP_LOOKUP_AND_DELETE_BATCH:
		ev.Count, ev.HasCount = uint64(r.Count), true
		setKeyValue(ev, r, data)
	case unix.BPF_MAP_LOOKUP_AND_DELETE_ELEM:
		if r.Result == 0 {
			setKeyValue(ev, r, data)
		}
	}
	return true
}

// iterTargets are the iterator targets whose link names a map whose
// values the program gets to write.
var iterTargets = map[string]bool{"bpf_map_elem": true, "bpf_sk_storage_map": true}

// reread takes what the entry record could not read, the caller's memory
// not yet present then, from the exit record, which read it again once the
// kernel had faulted it in (CF_REREAD).
func reread(ev *event.Event, r *bpfCallRec, data []byte) {
	switch r.Cmd {
	case unix.BPF_OBJ_GET, unix.BPF_OBJ_PIN:
		if int(r.PathLen) <= len(data) {
			ev.Path = string(data[:r.PathLen])
		}
	default:
		if int(r.KeyLen)+int(r.ValueLen) <= len(data) {
			ev.Truncated = false
			setKeyValue(ev, r, data)
		}
	}
}

// setKeyValue copies the key and value captured in a record into ev. Parts
// the record does not carry are left as they are.
func setKeyValue(ev *event.Event, r *bpfCallRec, data []byte) {
	// One copy out of the ring's buffer for both.
	kv := append([]byte(nil), data[:r.KeyLen+r.ValueLen]...)
	if r.KeyTotal > 0 || r.Flags&uint32(cfKeyFault) != 0 {
		ev.Key = kv[:r.KeyLen:r.KeyLen]
		ev.HasKey, ev.KeyTotal = true, r.KeyTotal
		ev.KeyFault = r.Flags&uint32(cfKeyFault) != 0
	}
	if r.ValueTotal > 0 || r.Flags&uint32(cfValueFault) != 0 {
		ev.Value = kv[r.KeyLen:]
		ev.HasValue, ev.ValueTotal = true, r.ValueTotal
		ev.ValueFault = r.Flags&uint32(cfValueFault) != 0
	}
	if r.Flags&uint32(cfKeyTrunc|cfValueTrunc) != 0 {
		ev.Truncated = true
	}
}

// progLoaded completes a prog_load event with the program the kernel
// loaded. The kernel keeps 15 bytes of a program's name; the full name comes
// from the program's BTF while it is loaded.
// progOf is the program a struct prog_loaded describes.
func progOf(p *bpfProgLoaded, d *record.Decoder) *event.Prog {
	return &event.Prog{ID: p.Id, Type: p.Type, Tag: hex.EncodeToString(p.Tag[:]), Name: bpfsys.ProgramFullName(p.Id, d.String(p.Name[:]))}
}

// progAttach fills a BPF_PROG_ATTACH's or BPF_PROG_DETACH's event: the
// attach point (the target fd; its file's inode, the key, or for tcx and
// netkit the ifindex it is; the attach type and flags); the value holds
// the program the call names (attached, or detached), then with
// BPF_F_REPLACE the one replaced. Prog is the program that loses its place, NewProg the one
// attached.
func progAttach(ev *event.Event, r *bpfCallRec, data []byte, d *record.Decoder) *event.Event {
	if r.Flags&uint32(cfProg) == 0 || r.KeyLen != 8 || int(r.ValueLen) < progLoadedSize || int(r.KeyLen+r.ValueLen) > len(data) {
		return nil
	}
	ino := binary.NativeEndian.Uint64(data)
	data = data[8:]
	ev.FD, ev.HasFD = r.Fd, true
	ev.Flags, ev.HasFlags = r.ElemFlags, true
	t := ebpf.AttachType(r.ReqId)
	a := &event.Attach{Kind: attachKind(t), AttachType: attachTypeName(t)}
	switch a.Kind {
	case "tcx", "netkit":
		a.Ifindex = uint32(r.Fd)
		a.Point = fmt.Sprintf("%s ifindex %d %s", a.Kind, a.Ifindex, a.AttachType)
	case "cgroup":
		a.TargetIno = ino
		a.Point = fmt.Sprintf("cgroup id %d %s", a.TargetIno, a.AttachType)
	default:
		a.TargetIno = ino
		a.Point = fmt.Sprintf("%s on inode %d", a.AttachType, a.TargetIno)
	}
	var named *event.Prog
	if p := (*bpfProgLoaded)(unsafe.Pointer(&data[0])); p.Id != 0 {
		named = progOf(p, d)
	}
	if r.Cmd == unix.BPF_PROG_DETACH {
		ev.Prog = named
	} else {
		a.NewProg = named
		if int(r.ValueLen) >= 2*progLoadedSize {
			ev.Prog = progOf((*bpfProgLoaded)(unsafe.Pointer(&data[progLoadedSize])), d)
		}
	}
	ev.Extra = &event.Extra{Attach: a}
	return ev
}

// attachKind names the kind of attach point of a BPF_PROG_ATTACH type.
func attachKind(t ebpf.AttachType) string {
	switch t {
	case ebpf.AttachTCXIngress, ebpf.AttachTCXEgress:
		return "tcx"
	case ebpf.AttachNetkitPrimary, ebpf.AttachNetkitPeer:
		return "netkit"
	case ebpf.AttachSkSKBStreamParser, ebpf.AttachSkSKBStreamVerdict, ebpf.AttachSkMsgVerdict, ebpf.AttachSkSKBVerdict:
		return "sockmap"
	case ebpf.AttachFlowDissector:
		return "flow_dissector"
	case ebpf.AttachLircMode2:
		return "lirc"
	}
	if strings.HasPrefix(strings.ToLower(attachTypeName(t)), "cgroup") {
		return "cgroup"
	}
	return "other"
}

// attachTypeName is the inventory's name of an attach type: 0 is cgroup
// inet ingress, which cilium/ebpf's stringer calls None.
func attachTypeName(t ebpf.AttachType) string {
	if t == ebpf.AttachCGroupInetIngress {
		return "CGroupInetIngress"
	}
	return t.String()
}

func progLoaded(ev *event.Event, p *bpfProgLoaded, d *record.Decoder) {
	ev.Prog = progOf(p, d)
	n := min(int(p.Nmaps), len(p.MapIds))
	ev.Extra = &event.Extra{ProgMaps: append(make([]uint32, 0, n), p.MapIds[:n]...), ProgMapCount: p.MapCnt}
}

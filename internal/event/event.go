// Package event defines what bpfmon reports: the event types shared by every
// sensor and every output writer. Sensors fill Events; writers render them.
// The JSON field names produced from these types are a stable interface that
// scripts depend on; see docs/reference/events.md.
package event

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// Type is an event type: the "event" field of every report.
type Type string

// Names of event types.
const (
	MapUpdate            Type = "map_update"
	MapDelete            Type = "map_delete"
	MapLookupAndDelete   Type = "map_lookup_and_delete"
	MapUpdateBatch       Type = "map_update_batch"
	MapDeleteBatch       Type = "map_delete_batch"
	MapLookupDeleteBatch Type = "map_lookup_and_delete_batch"
	MapGetFDByID         Type = "map_get_fd_by_id"
	ObjGet               Type = "obj_get"
	ObjPin               Type = "obj_pin"
	MapCreate            Type = "map_create"
	MapFreeze            Type = "map_freeze"
	ProgLoad             Type = "prog_load"          // BPF_PROG_LOAD: the program, and the maps it uses
	MapIterLink          Type = "map_iter_link"      // BPF_LINK_CREATE of an iterator over a map's elements: its program may rewrite every value
	MapMmap              Type = "map_mmap"           // mmap(2) of a map's fd
	MapWritesCounted     Type = "map_writes_counted" // writes of a known (map, program) pair to an unselected map, counted in the kernel (internal/sensor/kernelwrite)
	Lost                 Type = "lost"
	MapChanged           Type = "map_changed"       // the content scanner saw a change no sensor explains
	MapNotScanned        Type = "map_not_scanned"   // the content scanner cannot read a map, and says why
	AccessDenied         Type = "access_denied"     // --enforce refused a process access to a protected map
	HolderWhileDown      Type = "holder_while_down" // at start: a process holds a writable fd to a protected map and is not one of its saved owners
	MonitorGap           Type = "monitor_gap"       // at start: bpfmon was not running since the last time its state file says it was alive
	LineageEvent         Type = "lineage"           // how a process came to be: moved into a cgroup, exec'd with loader variables, traced, its memory written
	AlertsSuppressed     Type = "alerts_suppressed"
	// PartError: a part of bpfmon (extra.part) failed a pass, and
	// retries at the next, or cannot go on; reason says why.
	PartError Type = "part_error"
	// PolicyReloaded: SIGHUP loaded the policy file again; reason says
	// what changed.
	PolicyReloaded Type = "policy_reloaded"
	HiddenObject   Type = "hidden_object" // a map or program that bpf(2)'s own listing (GET_NEXT_ID, GET_FD_BY_ID) skips or refuses, but other views show
	// ProgDetached: a protected program lost an attachment (an XDP
	// program taken off an interface, a link detached or released);
	// AttachChanged: another program holds its attach point now.
	// Found by the attachment scan, which names no process.
	ProgDetached  Type = "prog_detached"
	AttachChanged Type = "attach_changed"
	// LinkDetach and LinkUpdate: BPF_LINK_DETACH of a link, and
	// BPF_LINK_UPDATE, which puts another program behind it (Prog is the
	// link's program; Extra.Attach the link and the new program).
	LinkDetach Type = "link_detach"
	LinkUpdate Type = "link_update"
	// ProgAttach and ProgDetach: BPF_PROG_ATTACH and BPF_PROG_DETACH
	// (cgroup, sockmap, flow dissector, tcx). Prog is the program that
	// loses its place (detached; replaced with BPF_F_REPLACE), absent
	// when the call names none; Extra.Attach the attach point and, for an
	// attach, NewProg, the program attached.
	ProgAttach Type = "prog_attach"
	ProgDetach Type = "prog_detach"
	// XDPSet and TCFilterDel: a process changed a device's XDP program
	// over netlink (IFLA_XDP: attach, replace or detach), or deleted tc
	// filters (RTM_DELTFILTER), seen by the netattach sensor's kernel
	// hooks. Extra.Attach holds the device and, once the alert engine
	// found one, the protected program's attach point (Prog).
	XDPSet      Type = "xdp_set"
	TCFilterDel Type = "tc_filter_del"
	// LinkRelease: a process closed the last file of a bpf_link that
	// held its last reference (no pin, no other fd), detaching the
	// link's program (the netattach sensor's hook on bpf_link_release).
	// Prog is the link's program (its id); Extra.Attach the link.
	LinkRelease Type = "link_release"
)

// Kinds of change in a map_changed event.
const (
	ChangeModified = "modified"
	ChangeAdded    = "added"
	ChangeRemoved  = "removed"
)

// Sources of events.
const (
	SourceSyscall = "syscall"
	SourceKernel  = "kernel"  // a kernel hook on a map operation: a BPF program's write
	SourceScan    = "scan"    // the content scanner
	SourceLSM     = "lsm"     // bpfmon's BPF LSM programs (--enforce)
	SourceAlert   = "alert"   // the alert engine itself (alerts_suppressed)
	SourceOutput  = "output"  // bpfmon's own output: events it could not write (lost)
	SourceState   = "state"   // bpfmon's saved state (--state), compared with what is there at start
	SourceLineage = "lineage" // the lineage sensor: cgroup joins, loader variables, ptrace, memory writes
	// SourceNetAttach: the netattach sensor, kernel hooks on the netlink
	// paths that change a device's XDP program or delete tc filters.
	SourceNetAttach = "netattach"
	SourceSelf      = "bpfmon" // bpfmon itself: its parts' errors, its policy reloads
	// SourceInventory: the inventory's cross-view check, which compares
	// bpf(2)'s listing of objects with views a hook on bpf(2) does not
	// reach (hidden_object).
	SourceInventory = "inventory"
)

// Info is what an event of one type means for its map. It is the one
// place that says which events write a map or obtain a handle to it: the
// alert engine, the content scanner's bookkeeping and the sensors'
// selection all ask it, so they cannot disagree.
type Info struct {
	// Modifies: a successful call changes the map, its elements or (a
	// freeze) whether it can be changed. A stranger's is tampering.
	Modifies bool
	// Elements: a successful call changes elements, which the content
	// scanner must then not report a second time.
	Elements bool
	// Handle: a successful call gives the caller a new fd to the map.
	Handle bool
	// Sources are the parts of bpfmon that report events of this type.
	Sources []string
	// cmd is the bpf(2) command reported as this type, -1 for none.
	cmd int
}

// table lists every type in the order the references document them
// (docs/reference/events.md is generated from it).
var table = []struct {
	t Type
	Info
}{
	{MapUpdate, Info{Modifies: true, Elements: true, Sources: []string{SourceSyscall, SourceKernel}, cmd: unix.BPF_MAP_UPDATE_ELEM}},
	{MapDelete, Info{Modifies: true, Elements: true, Sources: []string{SourceSyscall, SourceKernel}, cmd: unix.BPF_MAP_DELETE_ELEM}},
	{MapLookupAndDelete, Info{Modifies: true, Elements: true, Sources: []string{SourceSyscall}, cmd: unix.BPF_MAP_LOOKUP_AND_DELETE_ELEM}},
	{MapUpdateBatch, Info{Modifies: true, Elements: true, Sources: []string{SourceSyscall}, cmd: unix.BPF_MAP_UPDATE_BATCH}},
	{MapDeleteBatch, Info{Modifies: true, Elements: true, Sources: []string{SourceSyscall}, cmd: unix.BPF_MAP_DELETE_BATCH}},
	{MapLookupDeleteBatch, Info{Modifies: true, Elements: true, Sources: []string{SourceSyscall}, cmd: unix.BPF_MAP_LOOKUP_AND_DELETE_BATCH}},
	{MapGetFDByID, Info{Handle: true, Sources: []string{SourceSyscall}, cmd: unix.BPF_MAP_GET_FD_BY_ID}},
	{ObjGet, Info{Handle: true, Sources: []string{SourceSyscall}, cmd: unix.BPF_OBJ_GET}},
	{ObjPin, Info{Sources: []string{SourceSyscall}, cmd: unix.BPF_OBJ_PIN}},
	{MapCreate, Info{Sources: []string{SourceSyscall}, cmd: unix.BPF_MAP_CREATE}},
	{MapFreeze, Info{Modifies: true, Sources: []string{SourceSyscall}, cmd: unix.BPF_MAP_FREEZE}},
	{ProgLoad, Info{Sources: []string{SourceSyscall}, cmd: unix.BPF_PROG_LOAD}},
	{MapIterLink, Info{Sources: []string{SourceSyscall}, cmd: unix.BPF_LINK_CREATE}},
	{MapMmap, Info{Sources: []string{SourceSyscall}, cmd: -1}},
	{MapWritesCounted, Info{Modifies: true, Elements: true, Sources: []string{SourceKernel}, cmd: -1}},
	{Lost, Info{Sources: []string{SourceSyscall, SourceKernel, SourceLSM, SourceLineage, SourceNetAttach, SourceOutput}, cmd: -1}},
	{MapChanged, Info{Sources: []string{SourceScan}, cmd: -1}},
	{MapNotScanned, Info{Sources: []string{SourceScan}, cmd: -1}},
	{AccessDenied, Info{Sources: []string{SourceLSM}, cmd: -1}},
	{HolderWhileDown, Info{Sources: []string{SourceState}, cmd: -1}},
	{MonitorGap, Info{Sources: []string{SourceState}, cmd: -1}},
	{LineageEvent, Info{Sources: []string{SourceLineage}, cmd: -1}},
	{AlertsSuppressed, Info{Sources: []string{SourceAlert}, cmd: -1}},
	{PartError, Info{Sources: []string{SourceSelf}, cmd: -1}},
	{PolicyReloaded, Info{Sources: []string{SourceSelf}, cmd: -1}},
	{HiddenObject, Info{Sources: []string{SourceInventory}, cmd: -1}},
	{LinkDetach, Info{Sources: []string{SourceSyscall}, cmd: unix.BPF_LINK_DETACH}},
	{LinkUpdate, Info{Sources: []string{SourceSyscall}, cmd: unix.BPF_LINK_UPDATE}},
	{ProgAttach, Info{Sources: []string{SourceSyscall}, cmd: unix.BPF_PROG_ATTACH}},
	{ProgDetach, Info{Sources: []string{SourceSyscall}, cmd: unix.BPF_PROG_DETACH}},
	{XDPSet, Info{Sources: []string{SourceNetAttach}, cmd: -1}},
	{TCFilterDel, Info{Sources: []string{SourceNetAttach}, cmd: -1}},
	{LinkRelease, Info{Sources: []string{SourceNetAttach}, cmd: -1}},
	{ProgDetached, Info{Sources: []string{SourceInventory}, cmd: -1}},
	{AttachChanged, Info{Sources: []string{SourceInventory}, cmd: -1}},
}

// Types lists every event type a user can select with --event, in the
// order the references document them.
var Types = func() []Type {
	ts := make([]Type, len(table))
	for i, e := range table {
		ts[i] = e.t
	}
	return ts
}()

// Names lists the names of Types.
func Names() []string {
	names := make([]string, len(Types))
	for i, t := range Types {
		names[i] = string(t)
	}
	return names
}

var infos = func() map[Type]Info {
	m := make(map[Type]Info, len(table))
	for _, e := range table {
		m[e.t] = e.Info
	}
	return m
}()

// Info returns what t means; the zero Info for a type bpfmon does not
// report.
func (t Type) Info() Info { return infos[t] }

// Command returns the bpf(2) command (enum bpf_cmd) that the syscall
// sensor reports as type t, and false for types that are not a command.
func (t Type) Command() (uint32, bool) {
	info, ok := infos[t]
	if !ok || info.cmd < 0 {
		return 0, false
	}
	return uint32(info.cmd), true
}

// CommandType returns the type bpf(2) command cmd is reported as, and
// false for commands bpfmon does not report.
func CommandType(cmd uint32) (Type, bool) {
	t, ok := commands[cmd]
	return t, ok
}

// CommandName names bpf(2) command cmd by the type it is reported as
// ("map_update" for BPF_MAP_UPDATE_ELEM), or "cmd N".
func CommandName(cmd uint32) string {
	if t, ok := commands[cmd]; ok {
		return string(t)
	}
	return "cmd " + strconv.FormatUint(uint64(cmd), 10)
}

var commands = func() map[uint32]Type {
	m := map[uint32]Type{}
	for _, e := range table {
		if e.cmd >= 0 {
			m[uint32(e.cmd)] = e.t
		}
	}
	return m
}()

// Known reports whether bpfmon reports events of type t.
func (t Type) Known() bool {
	_, ok := infos[t]
	return ok
}

// ReportedBy reports whether source reports events of type t.
func (t Type) ReportedBy(source string) bool { return slices.Contains(infos[t].Sources, source) }

// ParseTypes parses event type names, as --event takes them.
func ParseTypes(names []string) ([]Type, error) {
	out := make([]Type, 0, len(names))
	for _, n := range names {
		t := Type(n)
		if !t.Known() {
			return nil, fmt.Errorf("unknown event type %q; known: %s", n, strings.Join(Names(), ", "))
		}
		out = append(out, t)
	}
	return out, nil
}

// Identity is who a process is, for ownership: its executable's inode and
// its cgroup v2 id, both kernel identities a process cannot choose.
// CgroupID 0 (a policy owner without a cgroup) matches any cgroup.
type Identity struct {
	ExeDev   uint64 // the executable's filesystem (superblock) device, user-space encoding; 0: unknown
	ExeIno   uint64
	CgroupID uint64
}

// Identity of p; the zero Identity for nil.
func (p *Process) Identity() Identity {
	if p == nil {
		return Identity{}
	}
	return Identity{ExeDev: p.ExeDev, ExeIno: p.ExeIno, CgroupID: p.CgroupID}
}

// Alert marks an event that a tamper rule matched (internal/alert).
type Alert struct {
	Rule     string // the rule's name, e.g. "foreign-write"
	Severity string // low, medium, high or critical
	Reason   string // why, in words: who, which map, whose it is
}

// Process is the task that made a call, as the kernel saw it.
type Process struct {
	PID      uint32 // thread group id
	TID      uint32
	PPID     uint32
	UID      uint32
	GID      uint32
	Comm     string // chosen by the process: never trust it for decisions
	Exe      string // path of the executable, "" when unknown
	ExeIno   uint64 // its inode number, from the kernel (0: none); with ExeDev and CgroupID, who owns a map
	ExeDev   uint64 // its filesystem's device (user-space encoding, procexe.FromKernel)
	CgroupID uint64
	// StartTime is when the process started (boot-time ns, from the
	// kernel): with PID, which process this is, where a pid is reused.
	// 0 when unknown. Not written out.
	StartTime uint64
	// Cgroup is the cgroup v2 path of CgroupID and ContainerID the
	// container id found in it (docker, containerd, cri-o, podman).
	Cgroup      string
	ContainerID string
	// Pod is the Kubernetes pod of the container, as the container
	// runtime's CRI names it (namespace, name, uid, container), or
	// only its uid from the cgroup path when no runtime answered; nil
	// outside a pod. Shared between events: never changed once set.
	Pod *Pod
	// Relation says how the process relates to the event's map: "creator",
	// "holder" (held an fd to it when bpfmon started) or "newcomer".
	Relation string
}

// Pod is a Kubernetes pod and the container in it. Namespace, Name and
// Container come from the container runtime (the kubelet's request, kept
// by containerd or CRI-O), never from the process; UID may come from the
// cgroup path alone, the others then empty.
type Pod struct {
	Namespace, Name, UID, Container string
}

// Map describes a BPF map. When an event reports a failed map_create, the
// fields are the ones requested and ID is 0.
type Map struct {
	ID         uint32
	Name       string
	Type       uint32
	KeySize    uint32
	ValueSize  uint32
	MaxEntries uint32
	Flags      uint32
	Frozen     bool
	// From the inventory, when known: the programs that use the map and
	// the paths where it is pinned.
	Programs []MapProgram
	Pins     []string
	// KeyType and ValueType render the event's key and values (Key;
	// Value and OldValue) by the map's types, when it has BTF; nil
	// otherwise. The writers show the rendered form beside the hex.
	KeyType, ValueType Renderer
}

// Renderer renders the bytes of a key or value by their type (a map's BTF,
// internal/btffmt), so that the writers, which know nothing of BTF, can
// show {pid=42,enabled=true} beside the hex. Renderers are shared by every
// event of a map and safe for concurrent use; they append to dst and
// allocate nothing.
type Renderer interface {
	// AppendJSON appends b as one JSON value (an object for a struct, a
	// number for an integer, a string for a char array).
	AppendJSON(dst, b []byte) ([]byte, Rendered)
	// AppendText appends b for people: {pid=42,comm="x"}, with every
	// string quoted as the text writer quotes.
	AppendText(dst, b []byte) ([]byte, Rendered)
}

// Rendered says how a Renderer did.
type Rendered uint8

const (
	// RenderFailed: b does not fit the type (a truncated capture, per-CPU
	// values, another size); what was appended is to be dropped.
	RenderFailed Rendered = iota
	// RenderedWhole: all of b was rendered.
	RenderedWhole
	// RenderedCut: the rendering reached its size limit and was cut
	// short, still a valid JSON value (text: marked "…").
	RenderedCut
)

// MapProgram is a BPF program that uses a map.
type MapProgram struct {
	ID   uint32
	Name string
}

// Prog is the BPF program that made a write, as the kernel knows it. Unknown
// is set when the writer was inside some program that bpfmon could not
// identify; bpfmon then names none rather than risk a wrong one.
type Prog struct {
	ID      uint32
	Name    string // chosen by the program's loader: never trust it for decisions
	Tag     string // hex of the kernel's hash of the program's instructions
	Unknown bool
	Type    uint32 // enum bpf_prog_type; 0: not known
	// Risky (prog_load): what lets the program rewrite what user space
	// reads or what the kernel returns (bpfsys.Risky*: the helpers it
	// calls, or BPF_PROG_TYPE_SYSCALL), from its translated instructions.
	// Comma-separated (a string keeps Prog comparable); empty: none, or
	// not known (RiskyUnknown).
	Risky        string
	RiskyUnknown bool
}

// Extra is what prog_load, map_mmap and access_denied events carry
// besides the common fields.
type Extra struct {
	// part_error: the part of bpfmon that failed (sensors, scanner,
	// alerts, output, metrics, policy).
	Part string
	// prog_load: the ids of the maps the new program uses (Event.Prog
	// names the program), the first of ProgMapCount.
	ProgMaps     []uint32
	ProgMapCount uint32
	// map_mmap (and an access_denied on mmap_file): the protection asked
	// for (PROT_* bits); Event.Flags holds the MAP_* flags.
	Prot    uint32
	HasProt bool
	// access_denied: the LSM hook that refused (bpf, bpf_map,
	// file_receive, mmap_file) and, for the bpf hook, the command.
	Hook string
	Cmd  string
	// map_changed (not while down): the previous read of the map; the
	// change happened between Since and the event's Time. Not written
	// out: the alert engine weighs who could write the map meanwhile.
	Since time.Time
	// monitor_gap: the last time bpfmon's state file says it was alive,
	// and whether it then stopped cleanly (SIGINT, SIGTERM) rather than
	// being killed, crashing or losing power. The gap lasted from
	// LastAlive to the event's Time.
	LastAlive time.Time
	CleanStop bool
	// monitor_gap: the state file exists but cannot be trusted (Reason
	// says why), so when bpfmon last ran, and how it stopped, are
	// unknown: the gap is as long as it could be.
	StateUntrusted bool
	// lineage: what happened (Event.Process did it).
	Lineage *Lineage
	// map_writes_counted: the first of the writes counted (Event.Time is
	// the last) and their operation (update, delete, push, pop).
	First time.Time
	Op    string
	// hidden_object: what is hidden and which views saw it.
	Hidden *Hidden
	// prog_detached, attach_changed: the attachment lost (Event.Prog
	// was attached there).
	Attach *Attach
}

// Attach is the attachment a prog_detached or attach_changed event is
// about.
type Attach struct {
	Kind      string // "xdp", "link", "cgroup" or "tc"
	Point     string // the attach point, in words
	Interface string // xdp, tcx: the interface's name
	Mode      string // xdp: skb, drv or hw
	LinkID    uint32 // a bpf_link's id; 0: none
	LinkType  string // obj_pin of a link: its type (bpftool's names)
	// prog_attach, prog_detach: the attach type (cilium/ebpf's names, as
	// the inventory's), the target's inode (a cgroup's id, a netns's
	// inode) or, for tcx and netkit, the interface's index (Ifindex).
	AttachType string
	TargetIno  uint64
	// xdp_set, tc_filter_del: the device as the kernel gave it (its
	// index and the inode of its network namespace); for tc_filter_del
	// Direction ("ingress", "egress" or the parent in hex) and Priority
	// (0: every priority) as asked. ModeProgs (xdp_set): the program of
	// each XDP mode (skb, drv, hw) after the call, 0 for none.
	Ifindex   uint32
	NetNS     uint64
	Direction string
	Priority  uint16
	ModeProgs [3]uint32
	// NewProg is the program attached there now (attach_changed).
	NewProg *Prog
}

// Hidden is a hidden_object event's finding: an object that bpf(2)'s
// listing skips (BPF_*_GET_NEXT_ID) or refuses (BPF_*_GET_FD_BY_ID) while
// other views show it. The map, when a map, is Event.Map (as far as any
// view tells); a program is Event.Prog.
type Hidden struct {
	Kind     string   // "map" or "prog"
	ID       uint32   // the object's id
	SeenBy   []string // the views that show it (inventory.View*)
	MissedBy []string // the views that do not: the listing, and any other that missed it
}

// Kinds of lineage event.
const (
	LineageCgroupJoin      = "cgroup_join"       // Target was moved into cgroup Cgroup
	LineageCloneIntoCgroup = "clone_into_cgroup" // Target was started in cgroup Cgroup, not its parent's
	LineageLoaderEnv       = "loader_env"        // the process exec'd with loader variables Vars
	LineagePtraceTraceme   = "ptrace_traceme"    // the process asked its parent to trace it
	LineagePtraceAttach    = "ptrace_attach"     // the process attached to Target with ptrace
	LineageProcessVMWrite  = "process_vm_write"  // the process wrote Target's memory (process_vm_writev)
	LineageProcMemOpen     = "proc_mem_open"     // the process opened Target's /proc/PID/mem for writing
	LineageFork            = "fork"              // a marked process started Target
	LineageExec            = "exec"              // a marked process exec'd
	LineageExit            = "exit"              // a marked process exited
)

// Lineage is a lineage event's finding: a process that may carry code that
// is not its executable's (or that joined a cgroup it was not started in)
// is marked, with everything it starts, until it exits; a marked process
// never counts as an owner (internal/alert).
type Lineage struct {
	Kind string // Lineage* above
	// Target is the process it happened to, when not the event's
	// Process. TargetByPID: the kernel named it only by the pid the
	// caller passed, resolved at once (Target.StartTime is then 0).
	Target      *Process
	TargetByPID bool
	Cgroup      uint64   // cgroup_join, clone_into_cgroup: the cgroup entered
	Vars        []string // loader_env: LD_PRELOAD, LD_AUDIT, LD_LIBRARY_PATH, or "uninspected" (too large to read)
	Request     string   // ptrace_attach: PTRACE_ATTACH or PTRACE_SEIZE
}

// Event is one report. Optional parts are nil or flagged by a Has field.
type Event struct {
	Time   time.Time
	Type   Type
	Source string
	// Alert is set when a tamper rule matched the event.
	Alert *Alert

	HasResult bool
	Result    int64 // syscall return: 0, a new fd, or a negative errno

	Process *Process
	Map     *Map
	// Prog is the program that made a kernel-side write (source kernel),
	// nil when no program did (the kernel itself, or bpf(2)).
	Prog *Prog
	// Interrupt: the write ran in interrupt context (softirq packet
	// processing, say), where no process is responsible; Process is nil.
	Interrupt bool

	HasFD bool
	FD    int32

	// Key and Value hold the bytes passed to (or, for lookup-and-delete,
	// returned by) the kernel, up to the capture limit. KeyTotal and
	// ValueTotal are the full lengths; Truncated says a prefix was cut.
	Key, Value           []byte
	HasKey, HasValue     bool
	KeyTotal, ValueTotal uint64
	Truncated            bool
	KeyFault, ValueFault bool // pointer was unreadable when captured
	// KernelCopy: Key and Value are the kernel's own copy, taken by a kernel
	// hook inside the call, not the caller's buffers read at syscall entry.
	// UserCopyDiffers: the buffers read at entry held other bytes, i.e. they
	// changed during the call (another thread racing the monitor).
	KernelCopy, UserCopyDiffers bool

	// Owner identifies the element of a local-storage map written by a BPF
	// program (these maps have no key of their own): the task's thread id,
	// the socket's inode number, the inode's number or the cgroup's id.
	Owner    uint64
	HasOwner bool

	HasCount bool
	Count    uint64 // batch: elements processed; lost: events lost

	Path      string
	PathFD    int32 // BPF_F_PATH_FD: Path is relative to this directory fd
	HasPathFD bool

	Flags    uint64 // the call's flags: update/batch elem_flags, open_flags, file_flags
	HasFlags bool
	Compat   bool   // called through the 32-bit compat syscall entry
	ReqMapID uint32 // map_get_fd_by_id: the id asked for

	// Extra holds what only the rarer event types carry, apart: an Event is
	// allocated for every call on the hot path and should stay small.
	Extra *Extra

	// The content scanner's findings (map_changed, map_not_scanned).
	OldValue    []byte // the value at the previous pass
	HasOldValue bool
	Change      string // ChangeModified, ChangeAdded or ChangeRemoved
	WhileDown   bool   // the change happened while bpfmon was not running
	Reason      string // why a map was not scanned, or why a change is reported without its keys
	// Granularity marks a coarse comparison (map_changed of a map too
	// large for --scan-memory): "range", Count ranges of key hashes
	// changed; "map", the map as a whole. Keys and old values unknown.
	Granularity string
}

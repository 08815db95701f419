package output

import (
	"encoding/json"
	"fmt"
	"slices"
	"sort"
	"strings"

	"github.com/bpfmon/bpfmon/internal/event"
)

// Field is one field the writers can put in an event: its JSON key, how
// the text writer shows it, the event types that carry it and what it
// means. Fields is the one table of them: docs/reference/events.md is
// generated from it (internal/docgen), TestFieldsMatchWriters holds both
// writers to it, and the golden tests check each line they expect
// against it (CheckDocumented), so the reference cannot drift from what
// bpfmon writes.
type Field struct {
	// JSON is the key, as a path under its object for the members of
	// alert, process, map, prog and lineage ("map.id").
	JSON string
	// Text is how the text writer shows the field: its key ("pid=") or
	// its mark ("[interrupt]"), then, after a space, anything more to say;
	// "" when the text writer leaves it out.
	Text string
	// Events are the event types that can carry the field; nil: every one.
	Events []event.Type
	// Doc says what the field holds.
	Doc string
}

// objects are the JSON objects whose members Fields lists one by one;
// other values (key_btf, lineage.target, map.programs) are documented as
// a whole.
var objects = []string{"alert", "process", "process.pod", "map", "prog", "lineage"}

// bySource lists the event types that sources report, in the event
// package's order, plus more; not lost, which every source reports and
// which carries only its count.
func bySource(sources []string, more ...event.Type) []event.Type {
	var ts []event.Type
	for _, t := range event.Types {
		if t == event.Lost {
			continue
		}
		for _, s := range sources {
			if t.ReportedBy(s) && !slices.Contains(ts, t) {
				ts = append(ts, t)
			}
		}
	}
	for _, t := range more {
		if !slices.Contains(ts, t) {
			ts = append(ts, t)
		}
	}
	return ts
}

var (
	syscallTypes = bySource([]string{event.SourceSyscall})
	// withProcess: every type but those about bpfmon itself or found by
	// reading maps.
	withProcess = bySource([]string{event.SourceSyscall, event.SourceKernel, event.SourceLSM, event.SourceLineage}, event.HolderWhileDown)
	withMap     = []event.Type{event.MapUpdate, event.MapDelete, event.MapLookupAndDelete, event.MapUpdateBatch, event.MapDeleteBatch,
		event.MapLookupDeleteBatch, event.MapGetFDByID, event.ObjGet, event.ObjPin, event.MapCreate, event.MapFreeze,
		event.MapIterLink, event.MapMmap, event.MapWritesCounted, event.MapChanged, event.MapNotScanned, event.AccessDenied, event.HolderWhileDown,
		event.HiddenObject, event.ProgDetached, event.AttachChanged}
	withElements = []event.Type{event.MapUpdate, event.MapDelete, event.MapLookupAndDelete, event.MapUpdateBatch, event.MapDeleteBatch,
		event.MapLookupDeleteBatch, event.MapChanged}
	syscallWrites = []event.Type{event.MapUpdate, event.MapDelete, event.MapLookupAndDelete, event.MapUpdateBatch, event.MapDeleteBatch,
		event.MapLookupDeleteBatch}
	kernelWrites = []event.Type{event.MapUpdate, event.MapDelete}
)

// Fields lists every field, in the order the JSON writer writes them.
var Fields = []Field{
	{"time", "HH:MM:SS.nnnnnnnnn first, local time of day", nil,
		"RFC 3339, UTC, nanoseconds: when the call entered the kernel (for findings: when they were made)"},
	{"event", "the event type, second (after the alert, if any)", nil, "the event type: see Event types"},
	{"source", "", nil, "what reported it: `syscall`, `kernel` (a write inside the kernel, by a BPF program), `scan` (the content scanner), " +
		"`lsm` (a refusal by `--enforce`), `alert` (the alert engine), `state` (the saved state compared at start), `lineage` (the lineage sensor), `netattach` (the netattach sensor's netlink hooks) " +
		"or `output` (events bpfmon could not write). The text writer leaves it out: the event type implies it"},
	{"alert.rule", "ALERT SEVERITY RULE before the event type", nil, "the tamper rule the event broke (docs/reference/alerts.md)"},
	{"alert.severity", "ALERT SEVERITY RULE before the event type", nil, "`low`, `medium`, `high` or `critical`: the rule's, as the policy sets it"},
	{"alert.reason", "why= last", nil, "why, in words: who, which map, whose it is"},
	{"result", "result= with the errno's name when negative: result=-14(EFAULT)", bySource([]string{event.SourceSyscall, event.SourceLSM, event.SourceNetAttach}),
		"the syscall's return: 0, a new fd, an address (`map_mmap`) or a negative errno; absent when the exit was not seen. `access_denied`: -1 (EPERM); `xdp_set`, `tc_filter_del`: the kernel function's, 0 or a negative errno"},
	{"process.pid", "pid=", withProcess, "the process (thread group id) that made the call"},
	{"process.tid", "tid= when it differs from pid", withProcess, "its thread"},
	{"process.ppid", "", withProcess, "its parent"},
	{"process.uid", "uid=", withProcess, "its user id"},
	{"process.gid", "", withProcess, "its group id"},
	{"process.comm", "comm=", withProcess, "its name, chosen by the process: never an identity"},
	{"process.exe", "exe=", withProcess,
		"its executable's path as the kernel resolves it (a walk of its dentries and mounts, like d_path, once per process), else from /proc/PID/exe when that still names the executable inode the kernel reported; absent when unknown"},
	{"process.cgroup_id", "", withProcess, "its cgroup v2 id (the inode of the cgroup's directory)"},
	{"process.cgroup", "", withProcess, "that cgroup's path, resolved from the id, so known for a process that already exited"},
	{"process.container_id", "container=", withProcess, "the container id found in the cgroup path (docker, containerd, cri-o and podman layouts)"},
	{"process.pod.uid", "pod=NAMESPACE/NAME ... pod_uid=UID, or pod=UID when only the uid is known", withProcess,
		"the Kubernetes pod's uid: from the container runtime (CRI), or from the cgroup path (`kubepods...pod<uid>`) when no runtime answered (yet); `pod` is absent outside a pod"},
	{"process.pod.namespace", "pod=NAMESPACE/NAME", withProcess, "the pod's namespace, from the container runtime's CRI (PodSandboxStatus): what the kubelet asked for, never chosen by the process; absent until the runtime answered"},
	{"process.pod.name", "pod=NAMESPACE/NAME", withProcess, "the pod's name, from the container runtime's CRI, as namespace"},
	{"process.pod.container", "pod_container=", withProcess, "the container's name in the pod spec, from the container runtime's CRI (ContainerStatus)"},
	{"process.relation", "(newcomer) or (holder) after exe; a creator is not marked", withProcess,
		"`creator` (created the map while bpfmon ran), `holder` (held an fd to it when bpfmon started) or `newcomer`"},
	{"map.id", "map=ID:\"NAME\"(TYPE)", withMap, "the map's global id; 0 for a failed `map_create`, whose map fields are the ones requested"},
	{"map.name", "map=ID:\"NAME\"(TYPE)", withMap, "its name, chosen by its creator: never an identity"},
	{"map.type", "map=ID:\"NAME\"(TYPE)", withMap, "its type, by bpftool's names: `hash`, `array`, ..."},
	{"map.key_size", "", withMap, "key size in bytes"},
	{"map.value_size", "", withMap, "value size in bytes"},
	{"map.max_entries", "", withMap, "maximum number of entries"},
	{"map.flags", "", withMap, "its map_flags"},
	{"map.frozen", "", withMap, "frozen against writes from user space"},
	{"map.programs", "", withMap, "[{`id`, `name`}]: the programs that use the map, from the inventory (loaded after start: within about five seconds)"},
	{"map.pins", "", withMap, "the paths where the map is pinned, from the inventory"},
	{"prog.id", "prog=ID:\"NAME\"(TAG), or prog=unknown", []event.Type{event.MapUpdate, event.MapDelete, event.ProgLoad, event.MapIterLink, event.MapWritesCounted, event.ProgDetached, event.AttachChanged, event.LinkDetach, event.LinkUpdate, event.ObjPin, event.ProgAttach, event.ProgDetach, event.XDPSet, event.TCFilterDel, event.LinkRelease, event.HiddenObject},
		"`source` `kernel`: the program that wrote (absent when no program did: the kernel itself); `prog_load`: the program loaded; `map_iter_link`: the iterator's program; `prog_detached`, `attach_changed`: the protected program that lost the attachment (its `tag` is empty); `link_detach`, `link_update`, `obj_pin` of a link: the link's program; `prog_detach`: the program detached (absent when the call names none); `prog_attach` with `BPF_F_REPLACE`: the program replaced (absent without); `xdp_set`, `tc_filter_del`: the protected program taken off (absent when none was); `hidden_object` of kind `prog`: the hidden program. 0 when not known"},
	{"prog.unknown", "prog=unknown", kernelWrites,
		"true when the writer was inside a program bpfmon could not identify: it then names none rather than risk a wrong one"},
	{"prog.name", "prog=ID:\"NAME\"(TAG)", []event.Type{event.MapUpdate, event.MapDelete, event.ProgLoad, event.MapIterLink, event.MapWritesCounted, event.ProgDetached, event.AttachChanged, event.LinkDetach, event.LinkUpdate, event.ObjPin, event.ProgAttach, event.ProgDetach, event.XDPSet, event.TCFilterDel, event.LinkRelease, event.HiddenObject},
		"the program's full name (from its BTF) while it is loaded, the kernel's first 15 bytes once it is gone; chosen by its loader"},
	{"prog.tag", "prog=ID:\"NAME\"(TAG)", []event.Type{event.MapUpdate, event.MapDelete, event.ProgLoad, event.MapIterLink, event.MapWritesCounted, event.ProgDetached, event.AttachChanged, event.LinkDetach, event.LinkUpdate, event.ObjPin, event.ProgAttach, event.ProgDetach, event.XDPSet, event.TCFilterDel},
		"hex of the kernel's hash of the program's instructions"},
	{"prog.type", "prog_type=", []event.Type{event.MapUpdate, event.MapDelete, event.ProgLoad, event.MapIterLink, event.MapWritesCounted, event.LinkDetach, event.LinkUpdate, event.ObjPin, event.ProgAttach, event.ProgDetach, event.HiddenObject},
		"the program type (bpftool's names); a failed `prog_load` has only this, as requested"},
	{"prog.risky", "risky= joined by commas", []event.Type{event.ProgLoad},
		"`prog_load`: what lets the program rewrite what user space reads or what the kernel returns, read from its instructions: `bpf_probe_write_user`, `bpf_override_return`, `bpf_send_signal`, `bpf_send_signal_thread`, `prog_type_syscall` (docs/hidden-objects.md)"},
	{"prog.risky_unknown", "risky=unknown", []event.Type{event.ProgLoad}, "`prog_load`: the program's instructions could not be read, so `risky` is unknown"},
	{"prog_maps", "prog_maps= ids joined by commas", []event.Type{event.ProgLoad, event.ProgDetached, event.AttachChanged},
		"`prog_load`: ids of the maps the program uses, read in the kernel from the new fd (the first 64); `prog_detached`, `attach_changed`: the protected maps it uses"},
	{"prog_map_count", "…(N maps) after prog_maps", []event.Type{event.ProgLoad}, "how many maps it uses, when more than `prog_maps` lists"},
	{"interrupt", "[interrupt]", kernelWrites, "`source` `kernel`: the write ran in interrupt context (softirq packet processing, say); there is no `process`"},
	{"fd", "fd=", bySource([]string{event.SourceSyscall}, event.HolderWhileDown, event.XDPSet),
		"the caller's fd for the map (`map_create`, `map_get_fd_by_id`, `obj_get`, `prog_load`: the new fd; `holder_while_down`: the holder's; `link_detach`, `link_update`: the link's; `prog_attach`, `prog_detach`: the target's, or for tcx and netkit the ifindex; `xdp_set`: the program's as asked, -1 to detach)"},
	{"key", "key= (fault) when unreadable, …(N bytes) when cut", withElements,
		"lowercase hex of the key passed to the kernel, up to `--capture-bytes`; batches: the keys concatenated"},
	{"key_btf", "key_btf= members as name=value, no spaces", withElements,
		"where the map has BTF: `key` rendered by type, as a JSON value: an object for a struct or union (members by name, an unnamed one as `_`), " +
			"a number for an integer, `true`/`false` for a bool, a string for a char array (trailing NULs trimmed) or a char, an enum's name (its number when the value has none), " +
			"a pointer or an integer wider than 64 bits as a `\"0x...\"` string, an array as an array, a global-data section (`.data`, `.bss`) as an object of its variables. " +
			"A member that cannot be read (a bitfield wider than 64 bits, one beyond the value) is `null`. Absent when the map has no BTF or the bytes do not fit the type " +
			"(a truncated capture, per-CPU values, a batch's keys); the hex is always there"},
	{"key_btf_truncated", "key_btf= ending in …", withElements,
		"the rendering reached its limit (4,096 bytes) and was cut short: `key_btf` is still a valid JSON value, holding the members and elements that fit"},
	{"value", "value= (fault) when unreadable, …(N bytes) when cut", withElements,
		"lowercase hex of the value passed to the kernel (`map_lookup_and_delete`: removed, read after the call; a kernel-side pop: the element removed). " +
			"Per-CPU maps: one value per possible CPU, each padded to 8 bytes, as user space passes them (a kernel-side write: the CPU the program ran on)"},
	{"value_btf", "value_btf=", withElements, "`value` rendered by type, as `key_btf`"},
	{"value_btf_truncated", "value_btf= ending in …", withElements, "as `key_btf_truncated`"},
	{"truncated", "…(N bytes) after the hex", withElements, "true when a key or value was longer than the capture limit: the prefix is reported"},
	{"key_total", "…(N bytes) after the key", withElements, "with `truncated`: the key's full length"},
	{"value_total", "…(N bytes) after the value", withElements, "with `truncated`: the value's full length"},
	{"kernel_copy", "[kernel_copy]", syscallWrites, "`key`/`value` are the kernel's own copy, taken by a kernel hook (fexit) inside the call, not the caller's buffers read at syscall entry"},
	{"user_copy_differs", "[user_copy_differs]", syscallWrites,
		"the caller's buffers held other bytes at syscall entry: another thread changed them during the call, which is worth a look"},
	{"owner", "owner=", kernelWrites,
		"local-storage writes by programs, which have no key: the element's owner (the task's thread id, the socket's inode number, the inode's number or the cgroup's id)"},
	{"key_fault", "key=(fault)", syscallWrites, "the key's pointer could not be read (the kernel normally fails the call with EFAULT)"},
	{"value_fault", "value=(fault)", syscallWrites, "the value's pointer could not be read"},
	{"count", "count=", []event.Type{event.MapUpdateBatch, event.MapDeleteBatch, event.MapLookupDeleteBatch, event.MapWritesCounted, event.Lost, event.MapChanged, event.AlertsSuppressed},
		"batch commands: elements the kernel processed; `map_writes_counted`: the writes counted; `lost`: events lost; `map_changed`: the keys a per-map summary stands for; `alerts_suppressed`: alerts held back"},
	{"first", "first=", []event.Type{event.MapWritesCounted}, "`map_writes_counted`: the time of the first write counted (RFC 3339; `time` is the last)"},
	{"op", "op=", []event.Type{event.MapWritesCounted}, "`map_writes_counted`: the operation counted: `update`, `delete`, `push` or `pop`"},
	{"path", "path=", []event.Type{event.ObjGet, event.ObjPin, event.PolicyReloaded}, "`obj_get`/`obj_pin`: the path as passed; `policy_reloaded`: the policy file"},
	{"path_fd", "path_fd=", []event.Type{event.ObjGet, event.ObjPin}, "the directory fd `path` is relative to, with `BPF_F_PATH_FD`"},
	{"flags", "flags=0x in hex", bySource([]string{event.SourceSyscall}, event.AccessDenied, event.XDPSet),
		"the call's flags: `BPF_ANY`/`BPF_NOEXIST`/..., batch elem_flags, open or file flags, `map_mmap`'s MAP_* flags, `prog_attach`'s and `prog_detach`'s attach_flags (`BPF_F_ALLOW_MULTI` 0x2, `BPF_F_REPLACE` 0x4); `xdp_set`: `XDP_FLAGS_*` (0x2 skb, 0x4 drv, 0x8 hw); `access_denied` on `bpf_map` or `file_receive`: the fmode asked for (3: read and write)"},
	{"hook", "hook=", []event.Type{event.AccessDenied}, "`access_denied`: the LSM hook that refused: `bpf`, `bpf_map`, `file_receive` or `mmap_file`"},
	{"cmd", "cmd=", []event.Type{event.AccessDenied}, "`access_denied` on the `bpf` hook: the command, named like its event (`map_update`, ...)"},
	{"prot", "prot= joined by |", []event.Type{event.MapMmap, event.AccessDenied}, "`map_mmap`: the protection asked for (`read`, `write`, `exec`, other bits in hex)"},
	{"abi", "[ia32] (arm64: [aarch32]) for the compat entry; nothing for the native one", syscallTypes,
		"`source` `syscall`: `x86_64`, or `ia32` for a call through the 32-bit compat entry (arm64 builds: `aarch64`, or `aarch32`)"},
	{"requested_map_id", "requested_map_id=", []event.Type{event.MapGetFDByID}, "`map_get_fd_by_id`: the id asked for"},
	{"old_value", "old_value=", []event.Type{event.MapChanged}, "`map_changed`: the value at the previous pass, in hex"},
	{"old_value_btf", "old_value_btf=", []event.Type{event.MapChanged}, "`old_value` rendered by type, as `value_btf`"},
	{"old_value_btf_truncated", "old_value_btf= ending in …", []event.Type{event.MapChanged}, "as `key_btf_truncated`"},
	{"change", "change=", []event.Type{event.MapChanged}, "`map_changed`: `modified`, `added` or `removed`"},
	{"granularity", "granularity=", []event.Type{event.MapChanged}, "`map_changed` of a map compared coarser for lack of `--scan-memory` (docs/memory.md): `range` (one hash per range of keys: `count` ranges changed) or `map` (one hash for the whole map); the old values are unknown there, `reason` says why"},
	{"while_down", "while_down", []event.Type{event.MapChanged}, "`map_changed`: the change happened while bpfmon was not running (`--state`)"},
	{"last_alive", "last_alive=", []event.Type{event.MonitorGap}, "`monitor_gap`: the last time bpfmon was known alive (RFC 3339)"},
	{"clean_stop", "clean_stop or unclean_stop", []event.Type{event.MonitorGap}, "`monitor_gap`: whether bpfmon then stopped cleanly (SIGINT, SIGTERM)"},
	{"lineage.kind", "lineage=", []event.Type{event.LineageEvent},
		"what happened: `loader_env`, `cgroup_join`, `clone_into_cgroup`, `ptrace_attach`, `ptrace_traceme`, `process_vm_write`, `proc_mem_open`, `fork`, `exec` or `exit`"},
	{"lineage.target", "target_pid= with target_comm= and target_exe=", []event.Type{event.LineageEvent}, "the process it happened to, as a `process` object"},
	{"lineage.target_by_pid", "", []event.Type{event.LineageEvent}, "the kernel named the target only by the pid the caller passed, resolved at once"},
	{"lineage.cgroup_id", "cgroup_id=", []event.Type{event.LineageEvent}, "`cgroup_join`, `clone_into_cgroup`: the cgroup entered"},
	{"lineage.vars", "var= once per variable", []event.Type{event.LineageEvent},
		"`loader_env`: the loader variables set (`LD_PRELOAD`, `LD_AUDIT`, `LD_LIBRARY_PATH`), or `uninspected` (an environment too large to read)"},
	{"lineage.request", "request=", []event.Type{event.LineageEvent}, "`ptrace_attach`: `PTRACE_ATTACH` or `PTRACE_SEIZE`"},
	{"hidden", "hidden=KIND:ID with seen_by= and missed_by= joined by commas", []event.Type{event.HiddenObject},
		"`hidden_object`: {`kind` (`map` or `prog`), `id`, `seen_by`: the views that show it (maps: `fdinfo`, `bpffs`, `prog_map_ids`, `bpf_map_iter`, `sensor`; programs: `bpf_prog_iter`, `bpf_link`, `fdinfo`, `bpffs`, `sensor`), `missed_by`: those that do not (`get_next_id`, `get_fd_by_id`, and the other views that missed it)} (docs/hidden-objects.md)"},
	{"attachment", "attachment=POINT with new_prog=ID:\"NAME\" when replaced; xdp_set, tc_filter_del of no protected program: attachment=\"\" ifindex= netns= with mode=, direction= and priority= as asked", []event.Type{event.ProgDetached, event.AttachChanged, event.LinkDetach, event.LinkUpdate, event.ProgAttach, event.ProgDetach, event.ObjPin, event.XDPSet, event.TCFilterDel, event.LinkRelease},
		"`link_release`: {`kind` `link`, `link_id`, `link_type`, `point` (the last scan's words for a protected program's link, else `link ID (TYPE)`)}; `xdp_set`, `tc_filter_del`: {`kind` (`xdp`, `tc`), `ifindex`, `netns`, `mode` as asked, `direction` and `priority` as asked, and `point`, `interface` and `new_prog` when a protected program was taken off}; `prog_attach`, `prog_detach`: {`kind` (`cgroup`, `tcx`, `netkit`, `sockmap`, `flow_dissector`, `lirc`, `other`), `attach_type` (cilium/ebpf's names: `CGroupInetIngress`), `cgroup_id` (a cgroup's) or `target_ino` (the inode of the target fd's file: a netns's), `ifindex` (tcx, netkit), `point` (the last scan's words for a protected program's cgroup, else built from these), `new_prog` for an attach: the program attached}; `link_detach`, `link_update`: {`kind` `link`, `link_id`, `point` (empty for a program bpfmon does not protect), `new_prog` for an update: the program put behind the link}; `obj_pin` of a link: {`kind` `link`, `link_id`, `link_type` (bpftool's names), `point` `link ID (TYPE)`}; `prog_detached`, `attach_changed`: {`kind` (`xdp`, `link`, `cgroup`), `point`: the attach point in words (`xdp skb on veth0 (ifindex 5, netns 4026532174)`, `link 12 (tcx)`), `interface`, `mode` (`skb`, `drv`, `hw`), `link_id`, and for `attach_changed` `new_prog` {`id`, `name`}: the program there now} (docs/programs.md)"},
	{"part", "part=", []event.Type{event.PartError}, "`part_error`: the part of bpfmon that failed: `sensors`, `scanner`, `alerts`, `output`, `metrics` or `policy`"},
	{"reason", "reason=", []event.Type{event.MapNotScanned, event.MapChanged, event.HolderWhileDown, event.MonitorGap, event.PartError, event.PolicyReloaded, event.ProgDetached, event.AttachChanged},
		"`prog_detached`, `attach_changed`: how it was found (the attachment scan names no process); `map_not_scanned`: why; `map_changed` while down without its keys, `holder_while_down`, `monitor_gap`: what was found, in words; `part_error`: what failed and whether the part retries; `policy_reloaded`: what changed"},
}

// EventDoc documents one event type.
type EventDoc struct {
	Type event.Type
	// Command is the bpf(2) command or other operation reported.
	Command string
	Doc     string
}

// EventDocs documents every event type, in the event package's order
// (TestEventDocs checks that none is missing).
var EventDocs = []EventDoc{
	{event.MapUpdate, "`BPF_MAP_UPDATE_ELEM`; from a program: an update, a push onto a queue, stack or bloom filter, a local-storage element created",
		"key and new value; a push has a value and no key, a local-storage write an `owner` instead of a key"},
	{event.MapDelete, "`BPF_MAP_DELETE_ELEM`; from a program: a delete, a pop from a queue or stack, a local-storage delete",
		"key, or `owner`; a pop's `value` is the element removed (with fexit: a kprobe runs before it is known)"},
	{event.MapLookupAndDelete, "`BPF_MAP_LOOKUP_AND_DELETE_ELEM`", "key; `value` is the value removed (read after the call)"},
	{event.MapUpdateBatch, "`BPF_MAP_UPDATE_BATCH`", "keys and values concatenated; `count` processed"},
	{event.MapDeleteBatch, "`BPF_MAP_DELETE_BATCH`", "keys concatenated; `count` processed"},
	{event.MapLookupDeleteBatch, "`BPF_MAP_LOOKUP_AND_DELETE_BATCH`", "keys and values removed; `count`"},
	{event.MapGetFDByID, "`BPF_MAP_GET_FD_BY_ID`", "`result` is the new fd; `requested_map_id`"},
	{event.ObjGet, "`BPF_OBJ_GET` of a pinned map", "`path`; `result` is the new fd"},
	{event.ObjPin, "`BPF_OBJ_PIN` of a map or a link", "`path`; a link's pin has no map fields but `prog`, the link's program, and `attachment` {`kind` `link`, `link_id`, `link_type`} (a program's pin is not reported; docs/programs.md)"},
	{event.MapCreate, "`BPF_MAP_CREATE`", "the new map, or on failure the requested attributes with id 0"},
	{event.MapFreeze, "`BPF_MAP_FREEZE`", ""},
	{event.ProgLoad, "`BPF_PROG_LOAD`",
		"`prog` {`id`, `name`, `tag`, `type`} of the program loaded and `prog_maps`, the ids of the maps it uses, read in the kernel from the new fd; on failure only the requested `prog.type`"},
	{event.MapIterLink, "`BPF_LINK_CREATE` of an iterator over a map's elements (`bpf_map_elem`, `bpf_sk_storage_map`; Linux 5.9+)",
		"the map, `fd` (the map's, as passed), `prog` of the iterator's program, `result` the link's fd: that program gets a writable pointer to every value and can rewrite the whole map with no update call; the content scanner finds what it changes"},
	{event.MapMmap, "none: `mmap(2)` of a map's fd", "`prot`, `flags` (MAP_*), `result` the address; from `mmap`, `mmap2` and `old_mmap`, either ABI"},
	{event.MapWritesCounted, "none: BPF programs' writes counted in the kernel",
		"`source` `kernel`: a known program's later writes to a map neither protected nor chosen with `--map-id`, summed per map, `prog`, process and `op` every 10 s and at the stop: `count`, `first`, `time` the last (docs/kernel-writes.md; `--kernel-writes all` itemizes them)"},
	{event.Lost, "none",
		"`count` calls (`source` `syscall`), kernel-side writes (`kernel`), refusals (`lsm`) or lineage records (`lineage`) the kernel could not hand over; events bpfmon could not write to its output (`output`)"},
	{event.MapChanged, "none: found by the content scanner", "`change`, `key`, `value`, `old_value`; or a per-map summary with `count`"},
	{event.MapNotScanned, "none", "a map the content scanner cannot read, once, with `reason`"},
	{event.AccessDenied, "none: `--enforce` refused it", "`hook`, `cmd` for the bpf hook, `result` -1 (EPERM)"},
	{event.HolderWhileDown, "none: found at start (`--state`)", "a process holds a writable `fd` to a protected map and is not one of its owners"},
	{event.MonitorGap, "none: found at start (`--state`)", "bpfmon was not running from `last_alive` to `time`; `clean_stop` says whether it had stopped cleanly, `reason` in words"},
	{event.LineageEvent, "none: tracepoints on exec, fork, exit, cgroup moves, ptrace, process_vm_writev, openat",
		"`lineage`: how a process came to be (docs/alerts.md, Owners that cannot be impersonated)"},
	{event.AlertsSuppressed, "none", "`count` alerts of one rule the rate limit held back, with that rule's alert"},
	{event.PartError, "none: a part of bpfmon failed a pass",
		"`source` `bpfmon`: `part` (`sensors`, `scanner`, `alerts`, `output`, `metrics`, `policy`) failed and retries at the next pass, or cannot go on; `reason` says which and why (docs/hardening.md); written with `--alerts-only` too"},
	{event.PolicyReloaded, "none: SIGHUP",
		"`source` `bpfmon`: the `--policy` file at `path` was loaded again; `reason` says what changed; written with `--alerts-only` too"},
	{event.HiddenObject, "none: found by the inventory's cross-view check",
		"`source` `inventory`: a map (with the map fields) or a program (with `prog`) that bpf(2)'s own listing skips or refuses while other views show it, with `hidden`; once per object while it stays hidden (docs/hidden-objects.md)"},
	{event.LinkDetach, "`BPF_LINK_DETACH`",
		"`fd` the link's, `prog` its program, `attachment` {`link_id`, `point`}: the link no longer attaches its program (docs/programs.md)"},
	{event.LinkUpdate, "`BPF_LINK_UPDATE`",
		"`fd` the link's, `prog` its program until now, `attachment.new_prog` the program put in its place, `flags` (`BPF_F_REPLACE`) (docs/programs.md)"},
	{event.ProgAttach, "`BPF_PROG_ATTACH`",
		"`fd` the target's, `attachment` the attach point and `new_prog` the program attached, `flags` the attach flags; with `BPF_F_REPLACE`, `prog` the program replaced (docs/programs.md)"},
	{event.ProgDetach, "`BPF_PROG_DETACH`",
		"`fd` the target's, `attachment` the attach point, `prog` the program detached: absent when the call names none (a cgroup's single program, detached without its fd) (docs/programs.md)"},
	{event.XDPSet, "none: netlink IFLA_XDP (`ip link set dev X xdp ...`), seen by the netattach sensor's hook on `dev_change_xdp_fd`",
		"`source` `netattach`: a process attached, replaced or detached a device's XDP program over netlink; `result`, `fd` (the program's, -1 to detach) and `flags` (`XDP_FLAGS_*`) as asked, `attachment` {`kind` `xdp`, `ifindex`, `netns`, `mode` when asked; when it took a protected program off: `prog`, `point`, `interface`, `new_prog`} (docs/programs.md)"},
	{event.TCFilterDel, "none: netlink RTM_DELTFILTER (`tc filter del`), seen by the netattach sensor's hook on `tc_del_tfilter`",
		"`source` `netattach`: a process deleted tc filters; `result`, `attachment` {`kind` `tc`, `ifindex`, `netns`, `direction`, `priority` (0: every priority) as asked; when it took a protected program off: `prog`, `point`, `interface`} (docs/programs.md)"},
	{event.LinkRelease, "none: the last file of a bpf_link closed (its last fd, or the process holding it exiting), seen by the netattach sensor's hook on `bpf_link_release`",
		"`source` `netattach`: a process closed the file that held a link's last reference (no pin, no other file), detaching the link's program; `result` 0, `prog` the link's program (its id; its name when protected), `attachment` {`kind` `link`, `link_id`, `link_type`, `point`}; a pinned link's unlink, whose last reference the pin's inode drops, is not seen (docs/programs.md)"},
	{event.ProgDetached, "none: found by the attachment scan (netlink, bpf_links, BPF_PROG_QUERY)",
		"`source` `inventory`: a protected program (one using a protected map: `map`, `prog_maps`) is no longer attached at `attachment`; no `process`: the scan sees the result, not who did it (docs/programs.md)"},
	{event.AttachChanged, "none: found by the attachment scan",
		"`source` `inventory`: another program (`attachment.new_prog`) holds the attach point a protected program held: replaced over netlink or by `BPF_LINK_UPDATE` (docs/programs.md)"},
}

// FieldsOf returns the fields events of type t can carry, in Fields' order.
func FieldsOf(t event.Type) []Field {
	var fs []Field
	for _, f := range Fields {
		if f.Events == nil || slices.Contains(f.Events, t) {
			fs = append(fs, f)
		}
	}
	return fs
}

// JSONKeys returns the keys of one JSON line as Fields names them: the
// top-level keys, and the members of the objects Fields lists one by
// one, as paths ("map.id").
func JSONKeys(line []byte) ([]string, error) {
	var top map[string]json.RawMessage
	if err := json.Unmarshal(line, &top); err != nil {
		return nil, err
	}
	keys, err := objectKeys("", top)
	sort.Strings(keys)
	return keys, err
}

// objectKeys lists the keys of an object at prefix, and those of the
// objects in it that objects names.
func objectKeys(prefix string, obj map[string]json.RawMessage) ([]string, error) {
	var keys []string
	for k, v := range obj {
		k = prefix + k
		keys = append(keys, k)
		if !slices.Contains(objects, k) {
			continue
		}
		var members map[string]json.RawMessage
		if err := json.Unmarshal(v, &members); err != nil {
			return nil, fmt.Errorf("%s: %w", k, err)
		}
		sub, err := objectKeys(k+".", members)
		if err != nil {
			return nil, err
		}
		keys = append(keys, sub...)
	}
	return keys, nil
}

// CheckDocumented checks that every key of one JSON line is in Fields,
// listed for the line's event type. The golden tests call it on the lines
// they expect.
func CheckDocumented(line []byte) error {
	keys, err := JSONKeys(line)
	if err != nil {
		return err
	}
	var ev struct {
		Event event.Type `json:"event"`
	}
	if err := json.Unmarshal(line, &ev); err != nil {
		return err
	}
	var bad []string
	for _, k := range keys {
		if slices.Contains(objects, k) {
			continue
		}
		i := slices.IndexFunc(Fields, func(f Field) bool { return f.JSON == k })
		switch {
		case i < 0:
			bad = append(bad, k+" (not in output.Fields)")
		case Fields[i].Events != nil && !slices.Contains(Fields[i].Events, ev.Event):
			bad = append(bad, fmt.Sprintf("%s (output.Fields does not list it for %s)", k, ev.Event))
		}
	}
	if bad != nil {
		return fmt.Errorf("undocumented: %s", strings.Join(bad, ", "))
	}
	return nil
}

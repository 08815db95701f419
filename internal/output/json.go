package output

import (
	"strconv"
	"strings"
	"time"

	"github.com/bpfmon/bpfmon/internal/arch"
	"github.com/bpfmon/bpfmon/internal/event"
	"github.com/bpfmon/bpfmon/internal/jsonstr"
	"github.com/bpfmon/bpfmon/internal/names"
)

// jsonWriter writes one JSON object per line. The field names and their
// order are a stable interface (docs/reference/events.md, generated from
// Fields); optional fields are left out when they do not apply.
type jsonWriter struct {
	*lines
	buf []byte
	tc  timeCache
}

func (w *jsonWriter) Write(ev *event.Event) error {
	return flushLine(w.lines, &w.buf, appendJSON(w.buf[:0], ev, &w.tc))
}

func (w *jsonWriter) Flush() error { return w.lines.flush() }

// appendJSON appends ev as one JSON object and a newline. Its body is the
// list of the fields in the order they are written (Fields' order): one
// function a field, or a group written together (an object; a value and
// its rendering), called behind the field's own test so that an absent
// field costs a branch, not a call (the few that inline test themselves).
// A new field is a function at its place here and a row in Fields.
func appendJSON(b []byte, ev *event.Event, tc *timeCache) []byte {
	b = append(b, `{"time":"`...)
	b = tc.appendUTC(b, ev.Time)
	b = append(b, `","event":`...)
	b = appendJSONString(b, string(ev.Type))
	b = append(b, `,"source":`...)
	b = appendJSONString(b, ev.Source)
	if ev.Alert != nil {
		b = jsonAlert(b, ev)
	}
	if ev.HasResult {
		b = jsonResult(b, ev)
	}
	b = jsonProcess(b, ev)
	if ev.Map != nil {
		b = jsonMap(b, ev)
	}
	if ev.Prog != nil {
		b = jsonProg(b, ev)
	}
	if ev.Extra != nil && ev.Extra.ProgMaps != nil {
		b = jsonProgMaps(b, ev)
	}
	b = jsonInterrupt(b, ev)
	if ev.HasFD {
		b = jsonFD(b, ev)
	}
	if ev.HasKey {
		b = jsonKey(b, ev)
	}
	if ev.HasValue {
		b = jsonValue(b, ev)
	}
	if ev.HasKey || ev.HasValue {
		b = jsonTruncated(b, ev)
	}
	b = jsonKernelCopy(b, ev)
	b = jsonUserCopyDiffers(b, ev)
	if ev.HasOwner {
		b = jsonOwner(b, ev)
	}
	b = jsonKeyFault(b, ev)
	b = jsonValueFault(b, ev)
	if ev.HasCount {
		b = jsonCount(b, ev)
	}
	if ev.Path != "" {
		b = jsonPath(b, ev)
	}
	if ev.HasPathFD {
		b = jsonPathFD(b, ev)
	}
	if ev.HasFlags {
		b = jsonFlags(b, ev)
	}
	if ev.Extra != nil && ev.Extra.Hook != "" {
		b = jsonHook(b, ev)
	}
	if ev.Extra != nil && ev.Extra.Cmd != "" {
		b = jsonCmd(b, ev)
	}
	if ev.Extra != nil && ev.Extra.HasProt {
		b = jsonProt(b, ev)
	}
	b = jsonABI(b, ev)
	if ev.ReqMapID != 0 {
		b = jsonRequestedMapID(b, ev)
	}
	if ev.HasOldValue {
		b = jsonOldValue(b, ev)
	}
	if ev.Change != "" {
		b = jsonChange(b, ev)
	}
	b = jsonWhileDown(b, ev)
	if ev.Granularity != "" {
		b = jsonGranularity(b, ev)
	}
	if ev.Extra != nil && !ev.Extra.LastAlive.IsZero() {
		b = jsonLastAlive(b, ev)
	}
	if ev.Extra != nil && ev.Extra.Lineage != nil {
		b = jsonLineage(b, ev)
	}
	if ev.Extra != nil && ev.Extra.Part != "" {
		b = jsonPart(b, ev)
	}
	if ev.Extra != nil && ev.Extra.Hidden != nil {
		b = jsonHidden(b, ev)
	}
	if ev.Extra != nil && ev.Extra.Attach != nil {
		b = appendJSONAttach(b, ev.Extra.Attach)
	}
	if ev.Extra != nil && !ev.Extra.First.IsZero() {
		b = jsonFirst(b, ev)
	}
	if ev.Reason != "" {
		b = jsonReason(b, ev)
	}
	return append(b, '}', '\n')
}

func jsonAlert(b []byte, ev *event.Event) []byte {
	a := ev.Alert
	b = append(b, `,"alert":{"rule":`...)
	b = appendJSONString(b, a.Rule)
	b = append(b, `,"severity":`...)
	b = appendJSONString(b, a.Severity)
	b = append(b, `,"reason":`...)
	b = appendJSONString(b, a.Reason)
	b = append(b, '}')
	return b
}

func jsonResult(b []byte, ev *event.Event) []byte {
	b = append(b, `,"result":`...)
	b = strconv.AppendInt(b, ev.Result, 10)
	return b
}

func jsonProcess(b []byte, ev *event.Event) []byte {
	if p := ev.Process; p != nil {
		b = append(b, `,"process":`...)
		b = appendJSONProcess(b, p)
	}
	return b
}

func jsonMap(b []byte, ev *event.Event) []byte {
	m := ev.Map
	b = append(b, `,"map":{"id":`...)
	b = strconv.AppendUint(b, uint64(m.ID), 10)
	b = append(b, `,"name":`...)
	b = appendJSONString(b, m.Name)
	b = append(b, `,"type":"`...)
	b = names.AppendMapType(b, m.Type)
	b = append(b, `","key_size":`...)
	b = strconv.AppendUint(b, uint64(m.KeySize), 10)
	b = append(b, `,"value_size":`...)
	b = strconv.AppendUint(b, uint64(m.ValueSize), 10)
	b = append(b, `,"max_entries":`...)
	b = strconv.AppendUint(b, uint64(m.MaxEntries), 10)
	b = append(b, `,"flags":`...)
	b = strconv.AppendUint(b, uint64(m.Flags), 10)
	b = append(b, `,"frozen":`...)
	b = strconv.AppendBool(b, m.Frozen)
	if m.Programs != nil {
		b = append(b, `,"programs":[`...)
		for i, p := range m.Programs {
			if i > 0 {
				b = append(b, ',')
			}
			b = append(b, `{"id":`...)
			b = strconv.AppendUint(b, uint64(p.ID), 10)
			b = append(b, `,"name":`...)
			b = appendJSONString(b, p.Name)
			b = append(b, '}')
		}
		b = append(b, ']')
	}
	if m.Pins != nil {
		b = append(b, `,"pins":[`...)
		for i, p := range m.Pins {
			if i > 0 {
				b = append(b, ',')
			}
			b = appendJSONString(b, p)
		}
		b = append(b, ']')
	}
	b = append(b, '}')
	return b
}

func jsonProg(b []byte, ev *event.Event) []byte {
	pr := ev.Prog
	b = append(b, `,"prog":{"id":`...)
	b = strconv.AppendUint(b, uint64(pr.ID), 10)
	if pr.Unknown {
		b = append(b, `,"unknown":true`...)
	} else if pr.ID != 0 {
		b = append(b, `,"name":`...)
		b = appendJSONString(b, pr.Name)
		b = append(b, `,"tag":`...)
		b = appendJSONString(b, pr.Tag)
	}
	if pr.Type != 0 {
		b = append(b, `,"type":"`...)
		b = names.AppendProgType(b, pr.Type)
		b = append(b, '"')
	}
	if pr.Risky != "" {
		b = append(b, `,"risky":[`...)
		for i, r := 0, pr.Risky; r != ""; i++ {
			var one string
			one, r, _ = strings.Cut(r, ",")
			if i > 0 {
				b = append(b, ',')
			}
			b = appendJSONString(b, one)
		}
		b = append(b, ']')
	}
	if pr.RiskyUnknown {
		b = append(b, `,"risky_unknown":true`...)
	}
	b = append(b, '}')
	return b
}

func jsonProgMaps(b []byte, ev *event.Event) []byte {
	x := ev.Extra
	b = append(b, `,"prog_maps":[`...)
	for i, id := range x.ProgMaps {
		if i > 0 {
			b = append(b, ',')
		}
		b = strconv.AppendUint(b, uint64(id), 10)
	}
	b = append(b, ']')
	if int(x.ProgMapCount) > len(x.ProgMaps) {
		b = append(b, `,"prog_map_count":`...)
		b = strconv.AppendUint(b, uint64(x.ProgMapCount), 10)
	}
	return b
}

func jsonInterrupt(b []byte, ev *event.Event) []byte {
	if ev.Interrupt {
		b = append(b, `,"interrupt":true`...)
	}
	return b
}

func jsonFD(b []byte, ev *event.Event) []byte {
	b = append(b, `,"fd":`...)
	b = strconv.AppendInt(b, int64(ev.FD), 10)
	return b
}

func jsonKey(b []byte, ev *event.Event) []byte {
	b = append(b, `,"key":"`...)
	b = appendHex(b, ev.Key)
	b = append(b, '"')
	if r := keyType(ev); r != nil {
		b = appendJSONTyped(b, `,"key_btf":`, `,"key_btf_truncated":true`, r, ev.Key)
	}
	return b
}

func jsonValue(b []byte, ev *event.Event) []byte {
	b = append(b, `,"value":"`...)
	b = appendHex(b, ev.Value)
	b = append(b, '"')
	if r := valueType(ev); r != nil {
		b = appendJSONTyped(b, `,"value_btf":`, `,"value_btf_truncated":true`, r, ev.Value)
	}
	return b
}

func jsonTruncated(b []byte, ev *event.Event) []byte {
	b = append(b, `,"truncated":`...)
	b = strconv.AppendBool(b, ev.Truncated)
	if ev.Truncated {
		// Only the totals of the parts that were captured: a total
		// without its prefix would say nothing.
		if ev.HasKey {
			b = append(b, `,"key_total":`...)
			b = strconv.AppendUint(b, ev.KeyTotal, 10)
		}
		if ev.HasValue {
			b = append(b, `,"value_total":`...)
			b = strconv.AppendUint(b, ev.ValueTotal, 10)
		}
	}
	return b
}

func jsonKernelCopy(b []byte, ev *event.Event) []byte {
	if ev.KernelCopy {
		b = append(b, `,"kernel_copy":true`...)
	}
	return b
}

func jsonUserCopyDiffers(b []byte, ev *event.Event) []byte {
	if ev.UserCopyDiffers {
		b = append(b, `,"user_copy_differs":true`...)
	}
	return b
}

func jsonOwner(b []byte, ev *event.Event) []byte {
	b = append(b, `,"owner":`...)
	b = strconv.AppendUint(b, ev.Owner, 10)
	return b
}

func jsonKeyFault(b []byte, ev *event.Event) []byte {
	if ev.KeyFault {
		b = append(b, `,"key_fault":true`...)
	}
	return b
}

func jsonValueFault(b []byte, ev *event.Event) []byte {
	if ev.ValueFault {
		b = append(b, `,"value_fault":true`...)
	}
	return b
}

func jsonCount(b []byte, ev *event.Event) []byte {
	b = append(b, `,"count":`...)
	b = strconv.AppendUint(b, ev.Count, 10)
	return b
}

func jsonPath(b []byte, ev *event.Event) []byte {
	b = append(b, `,"path":`...)
	b = appendJSONString(b, ev.Path)
	return b
}

func jsonPathFD(b []byte, ev *event.Event) []byte {
	b = append(b, `,"path_fd":`...)
	b = strconv.AppendInt(b, int64(ev.PathFD), 10)
	return b
}

func jsonFlags(b []byte, ev *event.Event) []byte {
	b = append(b, `,"flags":`...)
	b = strconv.AppendUint(b, ev.Flags, 10)
	return b
}

func jsonHook(b []byte, ev *event.Event) []byte {
	x := ev.Extra
	b = append(b, `,"hook":`...)
	b = appendJSONString(b, x.Hook)
	return b
}

func jsonCmd(b []byte, ev *event.Event) []byte {
	x := ev.Extra
	b = append(b, `,"cmd":`...)
	b = appendJSONString(b, x.Cmd)
	return b
}

func jsonProt(b []byte, ev *event.Event) []byte {
	x := ev.Extra
	b = append(b, `,"prot":[`...)
	for i, name := range names.Prot(x.Prot) {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, '"')
		b = append(b, name...)
		b = append(b, '"')
	}
	b = append(b, ']')
	return b
}

func jsonABI(b []byte, ev *event.Event) []byte {
	if ev.Process != nil && ev.Source == event.SourceSyscall {
		if ev.Compat {
			b = append(b, `,"abi":"`+arch.CompatABI+`"`...)
		} else {
			b = append(b, `,"abi":"`+arch.NativeABI+`"`...)
		}
	}
	return b
}

func jsonRequestedMapID(b []byte, ev *event.Event) []byte {
	b = append(b, `,"requested_map_id":`...)
	b = strconv.AppendUint(b, uint64(ev.ReqMapID), 10)
	return b
}

func jsonOldValue(b []byte, ev *event.Event) []byte {
	b = append(b, `,"old_value":"`...)
	b = appendHex(b, ev.OldValue)
	b = append(b, '"')
	if ev.Map != nil && ev.Map.ValueType != nil {
		b = appendJSONTyped(b, `,"old_value_btf":`, `,"old_value_btf_truncated":true`, ev.Map.ValueType, ev.OldValue)
	}
	return b
}

func jsonChange(b []byte, ev *event.Event) []byte {
	b = append(b, `,"change":`...)
	b = appendJSONString(b, ev.Change)
	return b
}

func jsonWhileDown(b []byte, ev *event.Event) []byte {
	if ev.WhileDown {
		b = append(b, `,"while_down":true`...)
	}
	return b
}

func jsonGranularity(b []byte, ev *event.Event) []byte {
	b = append(b, `,"granularity":`...)
	b = appendJSONString(b, ev.Granularity)
	return b
}

func jsonLastAlive(b []byte, ev *event.Event) []byte {
	x := ev.Extra
	b = append(b, `,"last_alive":"`...)
	b = x.LastAlive.UTC().AppendFormat(b, time.RFC3339Nano)
	b = append(b, `","clean_stop":`...)
	b = strconv.AppendBool(b, x.CleanStop)
	return b
}

func jsonLineage(b []byte, ev *event.Event) []byte {
	x := ev.Extra
	b = appendJSONLineage(b, x.Lineage)
	return b
}

func jsonPart(b []byte, ev *event.Event) []byte {
	x := ev.Extra
	b = append(b, `,"part":`...)
	b = appendJSONString(b, x.Part)
	return b
}

func jsonHidden(b []byte, ev *event.Event) []byte {
	x := ev.Extra
	h := x.Hidden
	b = append(b, `,"hidden":{"kind":`...)
	b = appendJSONString(b, h.Kind)
	b = append(b, `,"id":`...)
	b = strconv.AppendUint(b, uint64(h.ID), 10)
	b = appendJSONStrings(b, `,"seen_by":`, h.SeenBy)
	b = appendJSONStrings(b, `,"missed_by":`, h.MissedBy)
	b = append(b, '}')
	return b
}

func jsonFirst(b []byte, ev *event.Event) []byte {
	x := ev.Extra
	b = append(b, `,"first":"`...)
	b = x.First.UTC().AppendFormat(b, time.RFC3339Nano)
	b = append(b, `","op":`...)
	b = appendJSONString(b, x.Op)
	return b
}

func jsonReason(b []byte, ev *event.Event) []byte {
	b = append(b, `,"reason":`...)
	b = appendJSONString(b, ev.Reason)
	return b
}

// appendJSONTyped appends field (`,"value_btf":`) and data rendered by r,
// and cut when the rendering was cut short; nothing when r cannot render
// data.
func appendJSONTyped(b []byte, field, cut string, r event.Renderer, data []byte) []byte {
	n := len(b)
	b = append(b, field...)
	b, res := r.AppendJSON(b, data)
	switch res {
	case event.RenderedWhole:
	case event.RenderedCut:
		b = append(b, cut...)
	default:
		b = b[:n]
	}
	return b
}

// appendJSONProcess appends p as a JSON object.
func appendJSONProcess(b []byte, p *event.Process) []byte {
	b = append(b, `{"pid":`...)
	b = strconv.AppendUint(b, uint64(p.PID), 10)
	b = append(b, `,"tid":`...)
	b = strconv.AppendUint(b, uint64(p.TID), 10)
	b = append(b, `,"ppid":`...)
	b = strconv.AppendUint(b, uint64(p.PPID), 10)
	b = append(b, `,"uid":`...)
	b = strconv.AppendUint(b, uint64(p.UID), 10)
	b = append(b, `,"gid":`...)
	b = strconv.AppendUint(b, uint64(p.GID), 10)
	b = append(b, `,"comm":`...)
	b = appendJSONString(b, p.Comm)
	if p.Exe != "" {
		b = append(b, `,"exe":`...)
		b = appendJSONString(b, p.Exe)
	}
	b = append(b, `,"cgroup_id":`...)
	b = strconv.AppendUint(b, p.CgroupID, 10)
	if p.Cgroup != "" {
		b = append(b, `,"cgroup":`...)
		b = appendJSONString(b, p.Cgroup)
	}
	if p.ContainerID != "" {
		b = append(b, `,"container_id":`...)
		b = appendJSONString(b, p.ContainerID)
	}
	if p.Relation != "" {
		b = append(b, `,"relation":`...)
		b = appendJSONString(b, p.Relation)
	}
	if pod := p.Pod; pod != nil {
		b = append(b, `,"pod":{"uid":`...)
		b = appendJSONString(b, pod.UID)
		if pod.Name != "" {
			b = append(b, `,"namespace":`...)
			b = appendJSONString(b, pod.Namespace)
			b = append(b, `,"name":`...)
			b = appendJSONString(b, pod.Name)
			b = append(b, `,"container":`...)
			b = appendJSONString(b, pod.Container)
		}
		b = append(b, '}')
	}
	b = append(b, '}')
	return b
}

// appendJSONString appends s as a JSON string that is valid, and safe to
// print, whatever bytes s holds (see jsonstr.Append).
func appendJSONString(dst []byte, s string) []byte { return jsonstr.Append(dst, s) }

// appendJSONStrings appends key (with its comma and colon) and ss as an
// array of strings; [] for none.
func appendJSONStrings(b []byte, key string, ss []string) []byte {
	b = append(b, key...)
	b = append(b, '[')
	for i, s := range ss {
		if i > 0 {
			b = append(b, ',')
		}
		b = appendJSONString(b, s)
	}
	return append(b, ']')
}

// timeCache formats times as RFC 3339 in UTC with exactly nine fractional
// digits. Events arrive in bursts within the same second, so it keeps the
// "2006-01-02T15:04:05." prefix of the last second it formatted and only
// appends the nanoseconds for the next events of that second.
type timeCache struct {
	sec    int64
	valid  bool
	prefix [20]byte
}

// layoutRFC3339Nano9 is RFC 3339 with always nine fractional digits
// (time.RFC3339Nano drops trailing zeros).
const layoutRFC3339Nano9 = "2006-01-02T15:04:05.000000000Z07:00"

func (c *timeCache) appendUTC(dst []byte, t time.Time) []byte {
	sec := t.Unix()
	if !c.valid || sec != c.sec {
		u := t.UTC()
		if y := u.Year(); y < 0 || y > 9999 {
			// Not representable in RFC 3339; never seen from the kernel.
			// Let the time package do what it can.
			return u.AppendFormat(dst, layoutRFC3339Nano9)
		}
		if len(u.AppendFormat(c.prefix[:0], "2006-01-02T15:04:05.")) != len(c.prefix) {
			return u.AppendFormat(dst, layoutRFC3339Nano9)
		}
		c.sec, c.valid = sec, true
	}
	dst = append(dst, c.prefix[:]...)
	ns := t.Nanosecond()
	var frac [9]byte
	for i := len(frac) - 1; i >= 0; i-- {
		frac[i] = byte('0' + ns%10)
		ns /= 10
	}
	dst = append(dst, frac[:]...)
	return append(dst, 'Z')
}

// appendJSONLineage appends a lineage event's "lineage" object.
func appendJSONLineage(b []byte, l *event.Lineage) []byte {
	b = append(b, `,"lineage":{"kind":`...)
	b = appendJSONString(b, l.Kind)
	if l.Target != nil {
		b = append(b, `,"target":`...)
		b = appendJSONProcess(b, l.Target)
		if l.TargetByPID {
			b = append(b, `,"target_by_pid":true`...)
		}
	}
	if l.Cgroup != 0 {
		b = append(b, `,"cgroup_id":`...)
		b = strconv.AppendUint(b, l.Cgroup, 10)
	}
	if l.Vars != nil {
		b = append(b, `,"vars":[`...)
		for i, v := range l.Vars {
			if i > 0 {
				b = append(b, ',')
			}
			b = appendJSONString(b, v)
		}
		b = append(b, ']')
	}
	if l.Request != "" {
		b = append(b, `,"request":`...)
		b = appendJSONString(b, l.Request)
	}
	return append(b, '}')
}

// JSONLine renders events as the JSON lines of the json format, for a
// destination other than a Writer's (the syslog output sends each line
// as a message). Not safe for concurrent use; it allocates nothing per
// event once its caller's buffer has grown.
type JSONLine struct{ tc timeCache }

// Append appends ev as one JSON object, without the newline.
func (j *JSONLine) Append(dst []byte, ev *event.Event) []byte {
	b := appendJSON(dst, ev, &j.tc)
	return b[:len(b)-1]
}

// appendJSONAttach writes a prog_detached's or attach_changed's attachment.
func appendJSONAttach(b []byte, a *event.Attach) []byte {
	b = append(b, `,"attachment":{"kind":`...)
	b = appendJSONString(b, a.Kind)
	b = append(b, `,"point":`...)
	b = appendJSONString(b, a.Point)
	if a.Interface != "" {
		b = append(b, `,"interface":`...)
		b = appendJSONString(b, a.Interface)
	}
	if a.Mode != "" {
		b = append(b, `,"mode":`...)
		b = appendJSONString(b, a.Mode)
	}
	if a.LinkID != 0 {
		b = append(b, `,"link_id":`...)
		b = strconv.AppendUint(b, uint64(a.LinkID), 10)
	}
	if a.LinkType != "" {
		b = append(b, `,"link_type":`...)
		b = appendJSONString(b, a.LinkType)
	}
	if a.AttachType != "" {
		b = append(b, `,"attach_type":`...)
		b = appendJSONString(b, a.AttachType)
	}
	if a.TargetIno != 0 {
		if a.Kind == "cgroup" {
			b = append(b, `,"cgroup_id":`...)
		} else {
			b = append(b, `,"target_ino":`...)
		}
		b = strconv.AppendUint(b, a.TargetIno, 10)
	}
	if a.Ifindex != 0 || a.NetNS != 0 {
		b = append(b, `,"ifindex":`...)
		b = strconv.AppendUint(b, uint64(a.Ifindex), 10)
	}
	if a.NetNS != 0 {
		b = append(b, `,"netns":`...)
		b = strconv.AppendUint(b, a.NetNS, 10)
	}
	if a.Direction != "" {
		b = append(b, `,"direction":`...)
		b = appendJSONString(b, a.Direction)
		b = append(b, `,"priority":`...)
		b = strconv.AppendUint(b, uint64(a.Priority), 10)
	}
	if np := a.NewProg; np != nil {
		b = append(b, `,"new_prog":{"id":`...)
		b = strconv.AppendUint(b, uint64(np.ID), 10)
		b = append(b, `,"name":`...)
		b = appendJSONString(b, np.Name)
		b = append(b, '}')
	}
	return append(b, '}')
}

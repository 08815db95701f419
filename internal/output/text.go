package output

import (
	"strconv"
	"time"

	"github.com/bpfmon/bpfmon/internal/arch"
	"github.com/bpfmon/bpfmon/internal/event"
	"github.com/bpfmon/bpfmon/internal/names"
)

// textWriter writes one line per event for people, for example
//
//	10:00:00.123456789 map_update pid=1234 comm="x" uid=0 exe=/usr/bin/x map=42:"cilium_policy"(hash) fd=3 key=00000001 value=0100000000000000 flags=0x0 result=0
//	10:00:00.200000000 map_update pid=77 comm="evil\n" uid=1000 [ia32] map=42:"cilium_policy"(hash) fd=5 key=01 value=0011…(4096 bytes) result=-14(EFAULT)
//	10:00:01.000000000 lost count=12
//	10:00:02.000000000 map_update pid=1234 comm="x" uid=0 map=43:"cfg"(hash) fd=4 key=03000000 key_btf=3 value=2a00000001000000 value_btf={pid=42,enabled=true} flags=0x0 result=0
//
// The time is the local time of day. Fields that do not apply are left out.
// Strings that processes choose are escaped Go-style (strconv.Quote), so a
// line never holds a control character, C1 control, U+2028/U+2029 or invalid
// UTF-8 byte, and an event never spans more than one line. comm and map
// names are always quoted; exe and paths are written bare when they consist
// only of printable ASCII other than space, '"' and '\', and quoted
// otherwise. The event source is not shown (the event type implies it).
// Where the map has BTF, key_btf, value_btf and old_value_btf follow the
// hex they render, their strings quoted the same way.
type textWriter struct {
	*lines
	buf []byte
}

func (w *textWriter) Write(ev *event.Event) error {
	return flushLine(w.lines, &w.buf, appendText(w.buf[:0], ev))
}

func (w *textWriter) Flush() error { return w.lines.flush() }

// appendText appends ev as one line of text and a newline. Its body is the
// list of the fields in the order they are written, one function a field
// (or a group written together), as appendJSON's; a new field is a
// function at its place here and its Text form in Fields.
func appendText(b []byte, ev *event.Event) []byte {
	b = ev.Time.Local().AppendFormat(b, "15:04:05.000000000")
	b = append(b, ' ')
	if a := ev.Alert; a != nil {
		b = append(b, "ALERT "...)
		b = appendTextString(b, a.Severity, false)
		b = append(b, ' ')
		b = appendTextString(b, a.Rule, false)
		b = append(b, ' ')
	}
	b = appendTextString(b, string(ev.Type), false)
	if ev.Process != nil {
		b = textProcess(b, ev)
	}
	b = textCompat(b, ev)
	if ev.Map != nil {
		b = textMap(b, ev)
	}
	if ev.Prog != nil {
		b = textProg(b, ev)
	}
	if ev.Extra != nil && ev.Extra.ProgMaps != nil {
		b = textProgMaps(b, ev)
	}
	b = textInterrupt(b, ev)
	if ev.ReqMapID != 0 {
		b = textRequestedMapID(b, ev)
	}
	if ev.HasFD {
		b = textFD(b, ev)
	}
	if ev.HasOwner {
		b = textOwner(b, ev)
	}
	if ev.HasKey || ev.KeyFault {
		b = textKey(b, ev)
	}
	b = textChange(b, ev)
	if ev.HasOldValue {
		b = textOldValue(b, ev)
	}
	if ev.HasValue || ev.ValueFault {
		b = textValue(b, ev)
	}
	b = textKernelCopy(b, ev)
	b = textUserCopyDiffers(b, ev)
	b = textWhileDown(b, ev)
	b = textGranularity(b, ev)
	if ev.Extra != nil && !ev.Extra.LastAlive.IsZero() {
		b = textLastAlive(b, ev)
	}
	if ev.Extra != nil && ev.Extra.Hidden != nil {
		b = textHidden(b, ev)
	}
	if ev.Extra != nil && ev.Extra.Attach != nil {
		b = textAttach(b, ev.Extra.Attach)
	}
	if ev.Extra != nil && !ev.Extra.First.IsZero() {
		b = textFirst(b, ev)
	}
	if ev.Extra != nil && ev.Extra.Lineage != nil {
		b = textLineage(b, ev)
	}
	if ev.Extra != nil && ev.Extra.Part != "" {
		b = textPart(b, ev)
	}
	b = textReason(b, ev)
	if ev.HasCount {
		b = textCount(b, ev)
	}
	b = textPath(b, ev)
	if ev.HasPathFD {
		b = textPathFD(b, ev)
	}
	if ev.HasFlags {
		b = textFlags(b, ev)
	}
	if ev.Extra != nil && ev.Extra.Hook != "" {
		b = textHook(b, ev)
	}
	if ev.Extra != nil && ev.Extra.Cmd != "" {
		b = textCmd(b, ev)
	}
	if ev.Extra != nil && ev.Extra.HasProt {
		b = textProt(b, ev)
	}
	if ev.HasResult {
		b = textResult(b, ev)
	}
	if ev.Alert != nil {
		b = textWhy(b, ev)
	}
	return append(b, '\n')
}

func textProcess(b []byte, ev *event.Event) []byte {
	p := ev.Process
	b = append(b, " pid="...)
	b = strconv.AppendUint(b, uint64(p.PID), 10)
	if p.TID != p.PID {
		b = append(b, " tid="...)
		b = strconv.AppendUint(b, uint64(p.TID), 10)
	}
	b = append(b, " comm="...)
	b = appendTextString(b, p.Comm, true)
	b = append(b, " uid="...)
	b = strconv.AppendUint(b, uint64(p.UID), 10)
	if p.Exe != "" {
		b = append(b, " exe="...)
		b = appendTextString(b, p.Exe, false)
	}
	if p.ContainerID != "" {
		b = append(b, " container="...)
		b = appendTextString(b, p.ContainerID, false)
	}
	if pod := p.Pod; pod != nil {
		b = append(b, " pod="...)
		if pod.Name != "" {
			b = appendTextString(b, pod.Namespace+"/"+pod.Name, false)
			b = append(b, " pod_container="...)
			b = appendTextString(b, pod.Container, false)
			b = append(b, " pod_uid="...)
		}
		b = appendTextString(b, pod.UID, false)
	}
	if p.Relation != "" && p.Relation != "creator" {
		b = append(b, " ("...)
		b = append(b, p.Relation...)
		b = append(b, ')')
	}
	return b
}

func textCompat(b []byte, ev *event.Event) []byte {
	if ev.Compat {
		b = append(b, " ["+arch.CompatABI+"]"...)
	}
	return b
}

func textMap(b []byte, ev *event.Event) []byte {
	m := ev.Map
	b = append(b, " map="...)
	b = strconv.AppendUint(b, uint64(m.ID), 10)
	b = append(b, ':')
	b = appendTextString(b, m.Name, true)
	b = append(b, '(')
	b = names.AppendMapType(b, m.Type)
	b = append(b, ')')
	return b
}

func textProg(b []byte, ev *event.Event) []byte {
	pr := ev.Prog
	if pr.Unknown {
		b = append(b, " prog=unknown"...)
	} else if pr.ID != 0 {
		b = append(b, " prog="...)
		b = strconv.AppendUint(b, uint64(pr.ID), 10)
		b = append(b, ':')
		b = appendTextString(b, pr.Name, true)
		b = append(b, '(')
		b = append(b, pr.Tag...)
		b = append(b, ')')
	}
	if pr.Type != 0 {
		b = append(b, " prog_type="...)
		b = names.AppendProgType(b, pr.Type)
	}
	if pr.Risky != "" {
		b = append(b, " risky="...)
		b = appendTextString(b, pr.Risky, false)
	}
	if pr.RiskyUnknown {
		b = append(b, " risky=unknown"...)
	}
	return b
}

func textProgMaps(b []byte, ev *event.Event) []byte {
	x := ev.Extra
	b = append(b, " prog_maps="...)
	for i, id := range x.ProgMaps {
		if i > 0 {
			b = append(b, ',')
		}
		b = strconv.AppendUint(b, uint64(id), 10)
	}
	if int(x.ProgMapCount) > len(x.ProgMaps) {
		b = append(b, "…("...)
		b = strconv.AppendUint(b, uint64(x.ProgMapCount), 10)
		b = append(b, " maps)"...)
	}
	return b
}

func textInterrupt(b []byte, ev *event.Event) []byte {
	if ev.Interrupt {
		b = append(b, " [interrupt]"...)
	}
	return b
}

func textRequestedMapID(b []byte, ev *event.Event) []byte {
	b = append(b, " requested_map_id="...)
	b = strconv.AppendUint(b, uint64(ev.ReqMapID), 10)
	return b
}

func textFD(b []byte, ev *event.Event) []byte {
	b = append(b, " fd="...)
	b = strconv.AppendInt(b, int64(ev.FD), 10)
	return b
}

func textOwner(b []byte, ev *event.Event) []byte {
	b = append(b, " owner="...)
	b = strconv.AppendUint(b, ev.Owner, 10)
	return b
}

func textKey(b []byte, ev *event.Event) []byte {
	b = append(b, " key="...)
	b = appendTextBytes(b, ev.Key, ev.KeyFault, ev.Truncated, ev.KeyTotal)
	if r := keyType(ev); r != nil && ev.HasKey {
		b = appendTextTyped(b, " key_btf=", r, ev.Key)
	}
	return b
}

func textChange(b []byte, ev *event.Event) []byte {
	if ev.Change != "" {
		b = append(b, " change="...)
		b = appendTextString(b, ev.Change, false)
	}
	return b
}

func textOldValue(b []byte, ev *event.Event) []byte {
	b = append(b, " old_value="...)
	b = appendHex(b, ev.OldValue)
	if ev.Map != nil && ev.Map.ValueType != nil {
		b = appendTextTyped(b, " old_value_btf=", ev.Map.ValueType, ev.OldValue)
	}
	return b
}

func textValue(b []byte, ev *event.Event) []byte {
	b = append(b, " value="...)
	b = appendTextBytes(b, ev.Value, ev.ValueFault, ev.Truncated, ev.ValueTotal)
	if r := valueType(ev); r != nil && ev.HasValue {
		b = appendTextTyped(b, " value_btf=", r, ev.Value)
	}
	return b
}

func textKernelCopy(b []byte, ev *event.Event) []byte {
	if ev.KernelCopy {
		b = append(b, " [kernel_copy]"...)
	}
	return b
}

func textUserCopyDiffers(b []byte, ev *event.Event) []byte {
	if ev.UserCopyDiffers {
		b = append(b, " [user_copy_differs]"...)
	}
	return b
}

func textWhileDown(b []byte, ev *event.Event) []byte {
	if ev.WhileDown {
		b = append(b, " while_down"...)
	}
	return b
}

func textGranularity(b []byte, ev *event.Event) []byte {
	if ev.Granularity != "" {
		b = append(b, " granularity="...)
		b = appendTextString(b, ev.Granularity, false)
	}
	return b
}

func textLastAlive(b []byte, ev *event.Event) []byte {
	x := ev.Extra
	b = append(b, " last_alive="...)
	b = x.LastAlive.UTC().AppendFormat(b, time.RFC3339Nano)
	if x.CleanStop {
		b = append(b, " clean_stop"...)
	} else {
		b = append(b, " unclean_stop"...)
	}
	return b
}

func textHidden(b []byte, ev *event.Event) []byte {
	x := ev.Extra
	h := x.Hidden
	b = append(b, " hidden="...)
	b = appendTextString(b, h.Kind, false)
	b = append(b, ':')
	b = strconv.AppendUint(b, uint64(h.ID), 10)
	b = appendTextList(b, " seen_by=", h.SeenBy)
	b = appendTextList(b, " missed_by=", h.MissedBy)
	return b
}

func textFirst(b []byte, ev *event.Event) []byte {
	x := ev.Extra
	b = append(b, " first="...)
	b = x.First.UTC().AppendFormat(b, time.RFC3339Nano)
	b = append(b, " op="...)
	b = append(b, x.Op...)
	return b
}

func textLineage(b []byte, ev *event.Event) []byte {
	x := ev.Extra
	l := x.Lineage
	b = append(b, " lineage="...)
	b = appendTextString(b, l.Kind, false)
	if t := l.Target; t != nil {
		b = append(b, " target_pid="...)
		b = strconv.AppendUint(b, uint64(t.PID), 10)
		if t.Comm != "" {
			b = append(b, " target_comm="...)
			b = appendTextString(b, t.Comm, true)
		}
		if t.Exe != "" {
			b = append(b, " target_exe="...)
			b = appendTextString(b, t.Exe, false)
		}
	}
	if l.Cgroup != 0 {
		b = append(b, " cgroup_id="...)
		b = strconv.AppendUint(b, l.Cgroup, 10)
	}
	for _, v := range l.Vars {
		b = append(b, " var="...)
		b = appendTextString(b, v, false)
	}
	if l.Request != "" {
		b = append(b, " request="...)
		b = appendTextString(b, l.Request, false)
	}
	return b
}

func textPart(b []byte, ev *event.Event) []byte {
	x := ev.Extra
	b = append(b, " part="...)
	b = appendTextString(b, x.Part, false)
	return b
}

func textReason(b []byte, ev *event.Event) []byte {
	if ev.Reason != "" {
		b = append(b, " reason="...)
		b = appendTextString(b, ev.Reason, true)
	}
	return b
}

func textCount(b []byte, ev *event.Event) []byte {
	b = append(b, " count="...)
	b = strconv.AppendUint(b, ev.Count, 10)
	return b
}

func textPath(b []byte, ev *event.Event) []byte {
	if ev.Path != "" {
		b = append(b, " path="...)
		b = appendTextString(b, ev.Path, false)
	}
	return b
}

func textPathFD(b []byte, ev *event.Event) []byte {
	b = append(b, " path_fd="...)
	b = strconv.AppendInt(b, int64(ev.PathFD), 10)
	return b
}

func textFlags(b []byte, ev *event.Event) []byte {
	b = append(b, " flags=0x"...)
	b = strconv.AppendUint(b, ev.Flags, 16)
	return b
}

func textHook(b []byte, ev *event.Event) []byte {
	x := ev.Extra
	b = append(b, " hook="...)
	b = appendTextString(b, x.Hook, false)
	return b
}

func textCmd(b []byte, ev *event.Event) []byte {
	x := ev.Extra
	b = append(b, " cmd="...)
	b = appendTextString(b, x.Cmd, false)
	return b
}

func textProt(b []byte, ev *event.Event) []byte {
	x := ev.Extra
	b = append(b, " prot="...)
	names := names.Prot(x.Prot)
	if len(names) == 0 {
		b = append(b, "none"...)
	}
	for i, name := range names {
		if i > 0 {
			b = append(b, '|')
		}
		b = append(b, name...)
	}
	return b
}

func textResult(b []byte, ev *event.Event) []byte {
	b = append(b, " result="...)
	b = strconv.AppendInt(b, ev.Result, 10)
	if ev.Result < 0 {
		if name := names.Errno(-ev.Result); name != "" {
			b = append(b, '(')
			b = append(b, name...)
			b = append(b, ')')
		}
	}
	return b
}

func textWhy(b []byte, ev *event.Event) []byte {
	a := ev.Alert
	b = append(b, " why="...)
	b = appendTextString(b, a.Reason, true)
	return b
}

// appendTextTyped appends field (" value_btf=") and data rendered by r,
// which marks a cut rendering with "…"; nothing when r cannot render data.
func appendTextTyped(b []byte, field string, r event.Renderer, data []byte) []byte {
	n := len(b)
	b = append(b, field...)
	b, res := r.AppendText(b, data)
	if res == event.RenderFailed {
		return b[:n]
	}
	return b
}

// appendTextBytes appends captured bytes as hex, "(fault)" when the
// pointer could not be read, and "…(N bytes)" when only a prefix of N bytes
// was captured.
func appendTextBytes(b, data []byte, fault, truncated bool, total uint64) []byte {
	if fault {
		return append(b, "(fault)"...)
	}
	b = appendHex(b, data)
	if truncated && total != uint64(len(data)) {
		b = append(b, "…("...)
		b = strconv.AppendUint(b, total, 10)
		b = append(b, " bytes)"...)
	}
	return b
}

// appendTextString appends s quoted with strconv.AppendQuote, which escapes
// every rune that is not printable by unicode.IsPrint (control characters,
// DEL, C1 controls, U+2028/U+2029, format characters such as bidi
// overrides) and every invalid UTF-8 byte. Unless always is set, s is
// written bare when it is non-empty printable ASCII without space, '"' or
// '\', which keeps paths readable.
// appendTextList appends key and ss joined by commas ("-" for none).
func appendTextList(b []byte, key string, ss []string) []byte {
	b = append(b, key...)
	if len(ss) == 0 {
		return append(b, '-')
	}
	for i, s := range ss {
		if i > 0 {
			b = append(b, ',')
		}
		b = appendTextString(b, s, false)
	}
	return b
}

func appendTextString(b []byte, s string, always bool) []byte {
	if !always && isBare(s) {
		return append(b, s...)
	}
	return strconv.AppendQuote(b, s)
}

func isBare(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; c <= ' ' || c >= 0x7f || c == '"' || c == '\\' {
			return false
		}
	}
	return true
}

// textAttach writes a prog_detached's or attach_changed's attachment.
func textAttach(b []byte, a *event.Attach) []byte {
	b = append(b, " attachment="...)
	b = appendTextString(b, a.Point, true)
	if a.Point == "" && (a.Ifindex != 0 || a.NetNS != 0) { // xdp_set, tc_filter_del of no protected program
		b = append(b, " ifindex="...)
		b = strconv.AppendUint(b, uint64(a.Ifindex), 10)
		b = append(b, " netns="...)
		b = strconv.AppendUint(b, a.NetNS, 10)
		if a.Mode != "" {
			b = append(b, " mode="...)
			b = append(b, a.Mode...)
		}
		if a.Direction != "" {
			b = append(b, " direction="...)
			b = appendTextString(b, a.Direction, true)
			b = append(b, " priority="...)
			b = strconv.AppendUint(b, uint64(a.Priority), 10)
		}
	}
	if np := a.NewProg; np != nil {
		b = append(b, " new_prog="...)
		b = strconv.AppendUint(b, uint64(np.ID), 10)
		b = append(b, ':')
		b = appendTextString(b, np.Name, true)
	}
	return b
}

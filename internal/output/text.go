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

// appendText appends ev as one line of text and a newline.
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
	if p := ev.Process; p != nil {
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
		if p.Relation != "" && p.Relation != "creator" {
			b = append(b, " ("...)
			b = append(b, p.Relation...)
			b = append(b, ')')
		}
	}
	if ev.Compat {
		b = append(b, " ["+arch.CompatABI+"]"...)
	}
	if m := ev.Map; m != nil {
		b = append(b, " map="...)
		b = strconv.AppendUint(b, uint64(m.ID), 10)
		b = append(b, ':')
		b = appendTextString(b, m.Name, true)
		b = append(b, '(')
		b = names.AppendMapType(b, m.Type)
		b = append(b, ')')
	}
	if pr := ev.Prog; pr != nil {
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
	}
	if x := ev.Extra; x != nil && x.ProgMaps != nil {
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
	}
	if ev.Interrupt {
		b = append(b, " [interrupt]"...)
	}
	if ev.ReqMapID != 0 {
		b = append(b, " requested_map_id="...)
		b = strconv.AppendUint(b, uint64(ev.ReqMapID), 10)
	}
	if ev.HasFD {
		b = append(b, " fd="...)
		b = strconv.AppendInt(b, int64(ev.FD), 10)
	}
	if ev.HasOwner {
		b = append(b, " owner="...)
		b = strconv.AppendUint(b, ev.Owner, 10)
	}
	if ev.HasKey || ev.KeyFault {
		b = append(b, " key="...)
		b = appendTextBytes(b, ev.Key, ev.KeyFault, ev.Truncated, ev.KeyTotal)
		if r := keyType(ev); r != nil && ev.HasKey {
			b = appendTextTyped(b, " key_btf=", r, ev.Key)
		}
	}
	if ev.Change != "" {
		b = append(b, " change="...)
		b = appendTextString(b, ev.Change, false)
	}
	if ev.HasOldValue {
		b = append(b, " old_value="...)
		b = appendHex(b, ev.OldValue)
		if ev.Map != nil && ev.Map.ValueType != nil {
			b = appendTextTyped(b, " old_value_btf=", ev.Map.ValueType, ev.OldValue)
		}
	}
	if ev.HasValue || ev.ValueFault {
		b = append(b, " value="...)
		b = appendTextBytes(b, ev.Value, ev.ValueFault, ev.Truncated, ev.ValueTotal)
		if r := valueType(ev); r != nil && ev.HasValue {
			b = appendTextTyped(b, " value_btf=", r, ev.Value)
		}
	}
	if ev.KernelCopy {
		b = append(b, " [kernel_copy]"...)
	}
	if ev.UserCopyDiffers {
		b = append(b, " [user_copy_differs]"...)
	}
	if ev.WhileDown {
		b = append(b, " while_down"...)
	}
	if ev.Granularity != "" {
		b = append(b, " granularity="...)
		b = appendTextString(b, ev.Granularity, false)
	}
	if x := ev.Extra; x != nil && !x.LastAlive.IsZero() {
		b = append(b, " last_alive="...)
		b = x.LastAlive.UTC().AppendFormat(b, time.RFC3339Nano)
		if x.CleanStop {
			b = append(b, " clean_stop"...)
		} else {
			b = append(b, " unclean_stop"...)
		}
	}
	if x := ev.Extra; x != nil && x.Hidden != nil {
		h := x.Hidden
		b = append(b, " hidden="...)
		b = appendTextString(b, h.Kind, false)
		b = append(b, ':')
		b = strconv.AppendUint(b, uint64(h.ID), 10)
		b = appendTextList(b, " seen_by=", h.SeenBy)
		b = appendTextList(b, " missed_by=", h.MissedBy)
	}
	if x := ev.Extra; x != nil && x.Attach != nil {
		b = append(b, " attachment="...)
		b = appendTextString(b, x.Attach.Point, true)
		if np := x.Attach.NewProg; np != nil {
			b = append(b, " new_prog="...)
			b = strconv.AppendUint(b, uint64(np.ID), 10)
			b = append(b, ':')
			b = appendTextString(b, np.Name, true)
		}
	}
	if x := ev.Extra; x != nil && !x.First.IsZero() {
		b = append(b, " first="...)
		b = x.First.UTC().AppendFormat(b, time.RFC3339Nano)
		b = append(b, " op="...)
		b = append(b, x.Op...)
	}
	if x := ev.Extra; x != nil && x.Lineage != nil {
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
	}
	if x := ev.Extra; x != nil && x.Part != "" {
		b = append(b, " part="...)
		b = appendTextString(b, x.Part, false)
	}
	if ev.Reason != "" {
		b = append(b, " reason="...)
		b = appendTextString(b, ev.Reason, true)
	}
	if ev.HasCount {
		b = append(b, " count="...)
		b = strconv.AppendUint(b, ev.Count, 10)
	}
	if ev.Path != "" {
		b = append(b, " path="...)
		b = appendTextString(b, ev.Path, false)
	}
	if ev.HasPathFD {
		b = append(b, " path_fd="...)
		b = strconv.AppendInt(b, int64(ev.PathFD), 10)
	}
	if ev.HasFlags {
		b = append(b, " flags=0x"...)
		b = strconv.AppendUint(b, ev.Flags, 16)
	}
	if x := ev.Extra; x != nil && x.Hook != "" {
		b = append(b, " hook="...)
		b = appendTextString(b, x.Hook, false)
	}
	if x := ev.Extra; x != nil && x.Cmd != "" {
		b = append(b, " cmd="...)
		b = appendTextString(b, x.Cmd, false)
	}
	if x := ev.Extra; x != nil && x.HasProt {
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
	}
	if ev.HasResult {
		b = append(b, " result="...)
		b = strconv.AppendInt(b, ev.Result, 10)
		if ev.Result < 0 {
			if name := names.Errno(-ev.Result); name != "" {
				b = append(b, '(')
				b = append(b, name...)
				b = append(b, ')')
			}
		}
	}
	if a := ev.Alert; a != nil {
		b = append(b, " why="...)
		b = appendTextString(b, a.Reason, true)
	}
	return append(b, '\n')
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

package alert

import (
	"fmt"
	"slices"
	"strings"

	"github.com/bpfmon/bpfmon/internal/event"
	"github.com/bpfmon/bpfmon/internal/inventory"
	"github.com/bpfmon/bpfmon/internal/policy"
)

// xdpModeIndex is a mode's index in event.Attach.ModeProgs (enum
// bpf_xdp_mode), -1 for none.
func xdpModeIndex(mode string) int {
	switch mode {
	case "skb":
		return 0
	case "drv":
		return 1
	case "hw":
		return 2
	}
	return -1
}

// netTaken reports whether the netlink change ev.Extra.Attach took
// program id off its attachment a (from the last scan): an xdp_set that
// left another program, or none, in a's mode on a's device; a
// tc_filter_del of a's device, direction and priority (or of every
// priority).
func netTaken(ev *event.Event, id uint32, a inventory.Attachment) bool {
	x := ev.Extra.Attach
	if a.Ifindex != x.Ifindex || a.NetNS != x.NetNS || a.LinkID != 0 {
		return false // a link's program is not the netlink path's to take off (EBUSY)
	}
	switch ev.Type {
	case event.XDPSet:
		i := xdpModeIndex(a.Mode)
		return a.Kind == "xdp" && i >= 0 && x.ModeProgs[i] != id
	case event.TCFilterDel:
		return a.Kind == "tc" && a.AttachType == x.Direction && (x.Priority == 0 || a.Target == fmt.Sprintf("priority %d", x.Priority))
	}
	return false
}

// matchNetAttach: a process changed a device's XDP program or deleted tc
// filters over netlink (the netattach sensor), taking a protected program
// (as the last scan found it) off one of its attachments. The event is
// given the program and the attach point; a caller that owns none of the
// program's protected maps raises program-detached, naming it. The
// attach point is noted, so that the scan's finding of the same detach
// (prog_detached, attach_changed, which names no process) is not reported
// a second time: one detach, one alert, the one that names the process.
func (e *Engine) matchNetAttach(ev *event.Event) (string, string, limitKey) {
	x, p := ev.Extra, ev.Process
	if x == nil || x.Attach == nil || p == nil || !succeeded(ev) {
		return "", "", limitKey{}
	}
	var (
		w      watchedProg
		progID uint32
		points []string
	)
	// The last scan's attachments, and the scan's before, for a change
	// the last scan saw the result of before its event was read.
	for _, progs := range []map[uint32]watchedProg{e.attach.progs, e.attach.prev} {
		for id, cand := range progs {
			for _, a := range cand.attach {
				if !netTaken(ev, id, a) || slices.Contains(points, a.Point) {
					continue
				}
				e.notePoint(a.Point)
				points = append(points, a.Point)
				if progID == 0 || id < progID {
					progID, w = id, cand
					x.Attach.Point, x.Attach.Interface, x.Attach.Mode = a.Point, a.Interface, a.Mode
				}
			}
		}
	}
	if progID == 0 {
		return "", "", limitKey{}
	}
	ev.Prog = &event.Prog{ID: progID, Name: w.name}
	if i := xdpModeIndex(x.Attach.Mode); ev.Type == event.XDPSet && i >= 0 && x.Attach.ModeProgs[i] != 0 {
		x.Attach.NewProg = &event.Prog{ID: x.Attach.ModeProgs[i]}
	}
	gs, names := e.strangerGuards(w, p)
	if len(gs) == 0 {
		return "", "", limitKey{} // the owner's own unload or reload, or nothing protected
	}
	what := fmt.Sprintf("took %s off %s (XDP over netlink)", e.progText(ev.Prog), strings.Join(points, ", "))
	if ev.Type == event.TCFilterDel {
		what = fmt.Sprintf("deleted the tc filter of %s at %s (RTM_DELTFILTER)", e.progText(ev.Prog), strings.Join(points, ", "))
	} else if np := x.Attach.NewProg; np != nil {
		what = fmt.Sprintf("put program %d in place of %s at %s (XDP over netlink)", np.ID, e.progText(ev.Prog), x.Attach.Point)
	}
	who := e.who(p)
	if p.Exe == "" && p.Comm != "" {
		who += fmt.Sprintf(" (comm %q)", p.Comm) // for people only: the process has exited
	}
	return policy.RuleProgramDetached, fmt.Sprintf("%s, not an owner, %s, which uses %s; %s", who, what, strings.Join(names, ", "), e.ownersText(gs[0])),
		limitKey{rule: policy.RuleProgramDetached, mapID: gs[0].id, who: identity(p), progID: progID}
}

// notePoint remembers that a process named by a kernel hook changed the
// attachment at point, for the next two scans: their finding there (or
// one of the scan before, still waiting for its delay) is that change,
// reported already. Two, because a scan that read the attachments just
// before the change finds nothing, and the one after finds it.
func (e *Engine) notePoint(point string) {
	if e.attach.pointOps == nil {
		e.attach.pointOps = map[string]int{}
	}
	if len(e.attach.pointOps) < callsMax {
		e.attach.pointOps[point] = 2
	}
}

// Trust across restarts: who owned the protected maps when bpfmon last
// ran, saved with its state (--state) and restored when it starts again,
// so that a process that got a handle to a protected map while bpfmon was
// not watching does not become an owner by holding it at the restart.

package alert

import (
	"bytes"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/bpfmon/bpfmon/internal/cgroups"
	"github.com/bpfmon/bpfmon/internal/event"
	"github.com/bpfmon/bpfmon/internal/inventory"
	"github.com/bpfmon/bpfmon/internal/policy"
)

// Trust is who owned the protected maps: what Engine.Trust saves and
// Config.Restored gives back. Identities, not pids: a restarted owner is
// still its map's owner.
type Trust struct {
	Maps []TrustedMap `json:"maps"`
}

// TrustedMap is one protected map and its owners (the policy's owners
// are not saved: they are the policy's at every start).
type TrustedMap struct {
	ID     uint32         `json:"id"`
	Name   string         `json:"name"`
	Owners []TrustedOwner `json:"owners"`
}

// TrustedOwner is an Owner as saved.
type TrustedOwner struct {
	ExeDev   uint64 `json:"exe_dev,omitempty"` // 0 in states of bpfmon before it saved devices: any device
	ExeIno   uint64 `json:"exe_ino"`
	CgroupID uint64 `json:"cgroup_id"`
	Exe      string `json:"exe,omitempty"`
	Cgroup   string `json:"cgroup,omitempty"`
	How      string `json:"how"`
}

// Trust returns the protected maps with their owners, for saving.
func (e *Engine) Trust() Trust {
	e.mu.Lock()
	defer e.mu.Unlock()
	t := Trust{Maps: make([]TrustedMap, 0, len(e.guarded))}
	for _, g := range e.guarded {
		m := TrustedMap{ID: g.id, Name: g.name, Owners: make([]TrustedOwner, 0, len(g.owners))}
		for _, o := range g.owners {
			m.Owners = append(m.Owners, TrustedOwner{ExeDev: o.ExeDev, ExeIno: o.ExeIno, CgroupID: o.CgroupID, Exe: o.Exe, Cgroup: o.Cgroup, How: o.How})
		}
		t.Maps = append(t.Maps, m)
	}
	slices.SortFunc(t.Maps, func(a, b TrustedMap) int { return int(a.ID) - int(b.ID) })
	return t
}

// restoredOwners returns the saved owners of map id (named name, "" when
// not known yet), and whether it was protected when they were saved. The
// same id names the same map: the caller restores only a trust saved on
// this boot, and the kernel does not reuse a map id until its ids wrap
// around; a name that differs says they did.
func (e *Engine) restoredOwners(id uint32, name string) ([]Owner, bool) {
	r := e.cfg.Restored
	if r == nil {
		return nil, false
	}
	i := slices.IndexFunc(r.Maps, func(m TrustedMap) bool { return m.ID == id })
	if i < 0 {
		return nil, false
	}
	m := r.Maps[i]
	if name != "" && m.Name != "" && name != m.Name {
		return nil, false
	}
	owners := make([]Owner, 0, len(m.Owners))
	for _, o := range m.Owners {
		owners = append(owners, Owner{Identity: event.Identity{ExeDev: o.ExeDev, ExeIno: o.ExeIno, CgroupID: o.CgroupID}, Exe: o.Exe, Cgroup: o.Cgroup, How: o.How})
	}
	return owners, true
}

// startHolder is a process that held an fd to a map when bpfmon started.
type startHolder struct {
	inventory.Holder
	fds []int // every fd it held to the map, the first in Holder.FD
}

// bootstrap decides what the holders at start of map g are: owners, on a
// first start (or for a map protected for the first time, created while
// bpfmon was down) unless the policy names the owners; otherwise
// strangers, and each that holds a writable fd and is not an owner
// (restored, the creator, the policy's) is reported as a
// holder_while_down event, written at the next Tick.
func (e *Engine) bootstrap(g *guarded) {
	saved, restored := e.restoredOwners(g.id, g.name)
	for _, o := range saved {
		e.addOwner(g, o)
	}
	trustHolders := !restored && len(e.pol.Owners) == 0 && !e.cfg.DistrustHolders
	for _, h := range e.startHolders[g.id] {
		o, ok := e.idents[h.PID]
		if !ok || h.PID == e.cfg.SelfPID {
			continue // gone before it could be looked at: it holds nothing now
		}
		if trustHolders {
			e.addOwner(g, o)
			continue
		}
		p := &event.Process{PID: h.PID, ExeDev: o.ExeDev, ExeIno: o.ExeIno, CgroupID: o.CgroupID}
		if e.owns(g, p) || !h.Writable {
			continue // an owner; or a read-only fd, which writes nothing
		}
		why := "not one of the owners saved when bpfmon last ran"
		switch {
		case e.cfg.DistrustHolders && !restored:
			why = "not an owner: the state file that would say who owned the map cannot be trusted"
		case !restored:
			why = "not one of the owners the policy names"
		}
		e.pending = append(e.pending, e.holderEvent(g, h, o, why))
	}
}

// holderEvent is the holder_while_down event for h, a stranger holding g.
func (e *Engine) holderEvent(g *guarded, h startHolder, o Owner, why string) *event.Event {
	p := &event.Process{PID: h.PID, TID: h.PID, Comm: h.Comm, Exe: o.Exe, ExeDev: o.ExeDev, ExeIno: o.ExeIno, CgroupID: o.CgroupID,
		Cgroup: o.Cgroup, ContainerID: cgroups.ContainerID(o.Cgroup)}
	p.PPID, p.UID, p.GID = procStatus(h.PID)
	m := e.startShapes[g.id]
	m.ID, m.Name = g.id, g.name
	fds := make([]string, len(h.fds))
	for i, fd := range h.fds {
		fds[i] = strconv.Itoa(fd)
	}
	return &event.Event{Time: e.cfg.Now(), Type: event.HolderWhileDown, Source: event.SourceState, Process: p, Map: &m,
		HasFD: true, FD: int32(h.FD),
		Reason: fmt.Sprintf("held writable fd %s to the map when bpfmon started, %s: it got the handle while bpfmon was not watching", strings.Join(fds, ", "), why)}
}

// procStatus reads a process's parent and real uid and gid, zero where
// unknown. They describe the process to a person; nothing is decided by
// them.
func procStatus(pid uint32) (ppid, uid, gid uint32) {
	b, err := os.ReadFile("/proc/" + strconv.FormatUint(uint64(pid), 10) + "/status")
	if err != nil {
		return 0, 0, 0
	}
	field := func(name string) uint32 {
		i := bytes.Index(b, []byte("\n"+name+":\t"))
		if i < 0 {
			return 0
		}
		rest := b[i+len(name)+3:]
		if j := bytes.IndexAny(rest, "\t\n"); j >= 0 {
			rest = rest[:j]
		}
		n, _ := strconv.ParseUint(string(rest), 10, 32)
		return uint32(n)
	}
	return field("PPid"), field("Uid"), field("Gid")
}

// Pending events are written by the next Tick.
func (e *Engine) takePending() []*event.Event {
	out := e.pending
	e.pending = nil
	return out
}

// matchState matches the events of the saved state's comparison at start.
func (e *Engine) matchState(ev *event.Event) (string, string, limitKey) {
	switch ev.Type {
	case event.MonitorGap:
		x := ev.Extra
		if x != nil && x.StateUntrusted {
			return policy.RuleMonitorGap, "bpfmon's state file cannot be trusted (" + ev.Reason + "): when bpfmon last ran, how it stopped and who owned the protected maps are unknown, so this start is after a gap of unknown length, not a first start; every holder of a protected map is reported as holder_while_down and none is an owner",
				limitKey{rule: policy.RuleMonitorGap}
		}
		if x == nil || x.CleanStop || x.LastAlive.IsZero() {
			return "", "", limitKey{}
		}
		gap := ev.Time.Sub(x.LastAlive).Round(time.Second)
		return policy.RuleMonitorGap, fmt.Sprintf("bpfmon did not stop cleanly (killed, crashed or the power was lost): it was last known alive at %s, %s before this start, and nothing was watched meanwhile; who got handles to protected maps meanwhile is reported as holder_while_down, what changed in them as map_changed while_down",
			x.LastAlive.UTC().Format(time.RFC3339), gap), limitKey{rule: policy.RuleMonitorGap}
	case event.HolderWhileDown:
		g := e.guarded[mapID(ev)]
		if g == nil || ev.Process == nil {
			return "", "", limitKey{}
		}
		key := limitKey{rule: policy.RuleHolderWhileDown, mapID: g.id, who: identity(ev.Process)}
		return key.rule, fmt.Sprintf("%s held fd %d to %s when bpfmon started, and is not an owner: it got the handle while bpfmon was not watching, and its writes are foreign; %s",
			e.who(ev.Process), ev.FD, e.guardedText(g), e.ownersText(g)), key
	}
	return "", "", limitKey{}
}

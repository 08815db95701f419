// Marked processes: those the lineage sensor saw come to be in a way that
// does not make them the owner's work, whatever executable and cgroup they
// have. They never count as owners, and one that has (or takes on) an
// owner's identity is an owner-impersonation alert.

package alert

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/bpfmon/bpfmon/internal/event"
	"github.com/bpfmon/bpfmon/internal/policy"
)

// mark is why a process is not an owner's work.
type mark struct {
	start uint64 // its start time; 0: whichever process has the pid
	why   string
}

// marked reports whether p is a marked process, and why.
func (e *Engine) marked(p *event.Process) (mark, bool) {
	if p == nil || len(e.marks) == 0 {
		return mark{}, false
	}
	m, ok := e.marks[p.PID]
	if !ok || (m.start != 0 && p.StartTime != 0 && m.start != p.StartTime) {
		return mark{}, false
	}
	return m, true
}

// learnLineage marks and unmarks processes from a lineage event.
func (e *Engine) learnLineage(ev *event.Event) {
	l := lineageOf(ev)
	p := ev.Process
	if l == nil || p == nil {
		return
	}
	setMark := func(who *event.Process, why string) {
		if who == nil || who.PID == 0 || who.PID == e.cfg.SelfPID {
			return
		}
		if len(e.marks) >= learntMax {
			// Full: the oldest marks are of processes long gone,
			// mostly; a mark dropped would make a stranger an
			// owner again, so say it.
			clear(e.marks)
			e.cfg.Warn(fmt.Errorf("more than %d processes marked by the lineage sensor: marks forgotten", learntMax))
		}
		if _, ok := e.marked(who); !ok {
			e.marks[who.PID] = mark{start: who.StartTime, why: why}
		}
	}
	at := ev.Time.UTC().Format(time.RFC3339)
	switch l.Kind {
	case event.LineageCgroupJoin:
		setMark(l.Target, fmt.Sprintf("it was moved into cgroup %s by %s at %s", e.cgroupText(l.Cgroup), e.who(p), at))
	case event.LineageCloneIntoCgroup:
		setMark(l.Target, fmt.Sprintf("it was started into cgroup %s by %s, in another cgroup, at %s", e.cgroupText(l.Cgroup), e.who(p), at))
	case event.LineageLoaderEnv:
		setMark(p, fmt.Sprintf("it was started with %s (code its executable does not bring) at %s", strings.Join(l.Vars, ", "), at))
	case event.LineagePtraceTraceme:
		setMark(p, fmt.Sprintf("it asked its parent, pid %d, to trace it (PTRACE_TRACEME) at %s", p.PPID, at))
	case event.LineagePtraceAttach:
		setMark(l.Target, fmt.Sprintf("%s attached to it (%s) at %s", e.who(p), l.Request, at))
	case event.LineageProcessVMWrite:
		setMark(l.Target, fmt.Sprintf("%s wrote into its memory (process_vm_writev) at %s", e.who(p), at))
	case event.LineageProcMemOpen:
		setMark(l.Target, fmt.Sprintf("%s opened its /proc/%d/mem for writing at %s", e.who(p), l.Target.PID, at))
	case event.LineageFork:
		parent, ok := e.marked(p)
		why := "its parent, pid " + strconv.FormatUint(uint64(p.PID), 10) + ", was marked"
		if ok {
			why += ": " + parent.why
		}
		setMark(l.Target, why)
	case event.LineageExec:
		setMark(p, "it was marked before it exec'd")
	case event.LineageExit:
		if _, ok := e.marked(p); ok {
			delete(e.marks, p.PID)
		}
	}
}

func lineageOf(ev *event.Event) *event.Lineage {
	if ev.Type != event.LineageEvent || ev.Extra == nil {
		return nil
	}
	return ev.Extra.Lineage
}

// matchLineage alerts when the process a lineage event marks has an
// owner's identity: the impersonation is told when it happens, before
// the impersonator touches a map.
func (e *Engine) matchLineage(ev *event.Event) (string, string, limitKey) {
	l := lineageOf(ev)
	if l == nil || ev.Process == nil {
		return "", "", limitKey{}
	}
	subject := ev.Process
	switch l.Kind {
	case event.LineageCgroupJoin, event.LineageCloneIntoCgroup, event.LineagePtraceAttach,
		event.LineageProcessVMWrite, event.LineageProcMemOpen, event.LineageFork:
		subject = l.Target
	case event.LineageExit:
		return "", "", limitKey{}
	}
	if subject == nil || subject.ExeIno == 0 {
		return "", "", limitKey{}
	}
	m, ok := e.marked(subject)
	if !ok {
		return "", "", limitKey{}
	}
	var owned []*guarded
	for _, g := range e.guarded {
		if e.identityOwns(g, identity(subject)) {
			owned = append(owned, g)
		}
	}
	if len(owned) == 0 {
		return "", "", limitKey{}
	}
	slices.SortFunc(owned, func(a, b *guarded) int { return int(a.id) - int(b.id) })
	var maps []string
	for i, g := range owned {
		if i == 3 {
			maps = append(maps, fmt.Sprintf("and %d more", len(owned)-3))
			break
		}
		maps = append(maps, e.guardedText(g))
	}
	key := limitKey{rule: policy.RuleOwnerImpersonation, mapID: owned[0].id, who: identity(subject)}
	return key.rule, fmt.Sprintf("%s has the identity of an owner of %s, but %s: it is not an owner until it exits, and its handles and writes are foreign",
		e.who(subject), strings.Join(maps, ", "), m.why), key
}

// cgroupText names a cgroup id by its path where known.
func (e *Engine) cgroupText(id uint64) string {
	if p := e.cfg.Cgroups.Path(id); p != "" {
		return p
	}
	return "id " + strconv.FormatUint(id, 10)
}

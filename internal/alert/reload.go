package alert

import (
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/bpfmon/bpfmon/internal/event"
	"github.com/bpfmon/bpfmon/internal/inventory"
	"github.com/bpfmon/bpfmon/internal/policy"
)

// Unenforcer is what an Enforcer that can take protection back has
// (the BPF LSM sensor): a reload that drops a selector or an owner
// drops it from the kernel's maps too.
type Unenforcer interface {
	Unprotect(mapID uint32) error
	// RemoveOwner undoes AddOwner(mapID, id).
	RemoveOwner(mapID uint32, id event.Identity) error
}

// Reload swaps the policy for pol, in one step under the engine's lock:
// no event is judged by a mix of the two. Maps no selector of pol picks
// any more are no longer guarded (nor enforced); the policy's owners are
// looked up again; maps pol selects in maps (an inventory read for the
// reload) are guarded from now on, owned by their creator, the policy's
// owners and, as at start, the processes that held them when bpfmon
// started; rule settings and the rate limit are pol's. It returns what
// changed, in words, "" for nothing.
func (e *Engine) Reload(pol *policy.Policy, maps []inventory.Map) string {
	e.mu.Lock()
	defer e.mu.Unlock()
	old := e.pol
	changes := policyChanges(old, pol)
	e.pol, e.cfg.Policy = pol, pol
	if old.AlertRate != pol.AlertRate || old.AlertBurst != pol.AlertBurst {
		e.lim = newLimiter(pol.AlertRate, pol.AlertBurst)
	}
	un, _ := e.cfg.Enforcer.(Unenforcer)

	// Owners: looked up again from pol's list.
	oldOwners := e.policyOwners
	e.policyOwners, e.warned = nil, map[int]bool{}
	e.resolvePolicyOwners()
	if un != nil {
		for _, o := range oldOwners {
			if !slices.ContainsFunc(e.policyOwners, func(x Owner) bool { return x.Identity == o.Identity }) {
				e.enforce(un.RemoveOwner(0, o.Identity))
			}
		}
	}

	// Maps: those whose selector is gone are let go; the others take
	// pol's immutability.
	sels := map[string]policy.Selector{}
	for _, s := range pol.Protect {
		sels[s.String()] = s
	}
	var dropped []string
	for id, g := range e.guarded {
		s, ok := sels[g.why]
		if !ok {
			delete(e.guarded, id)
			dropped = append(dropped, strconv.FormatUint(uint64(id), 10))
			if un != nil {
				e.enforce(un.Unprotect(id))
			}
			continue
		}
		g.immutable = s.Immutable
	}
	before := len(e.guarded)
	e.refresh(maps)
	if len(dropped) > 0 {
		slices.Sort(dropped)
		changes = append(changes, "maps no longer protected: "+strings.Join(dropped, ", "))
	}
	if n := len(e.guarded) - before; n > 0 {
		changes = append(changes, fmt.Sprintf("%d more maps protected", n))
	}
	return strings.Join(changes, "; ")
}

// policyChanges lists what differs from old to pol, in words.
func policyChanges(old, pol *policy.Policy) []string {
	var out []string
	diff := func(what string, a, b []string) {
		var add, del []string
		for _, x := range b {
			if !slices.Contains(a, x) {
				add = append(add, x)
			}
		}
		for _, x := range a {
			if !slices.Contains(b, x) {
				del = append(del, x)
			}
		}
		if len(add) > 0 {
			out = append(out, what+" added: "+strings.Join(add, " "))
		}
		if len(del) > 0 {
			out = append(out, what+" removed: "+strings.Join(del, " "))
		}
	}
	sels := func(p *policy.Policy) []string {
		var s []string
		for _, x := range p.Protect {
			v := x.String()
			if x.Immutable {
				v += " (immutable)"
			}
			s = append(s, v)
		}
		return s
	}
	owners := func(p *policy.Policy) []string {
		var s []string
		for _, o := range p.Owners {
			v := o.Exe
			switch {
			case o.PodNamespace != "":
				v = podOwnerText(o)
			case o.Cgroup != "":
				v += " in " + o.Cgroup
			}
			s = append(s, v)
		}
		return s
	}
	diff("selectors", sels(old), sels(pol))
	diff("owners", owners(old), owners(pol))
	for _, r := range policy.Rules {
		a, b := old.Rules[r.Name], pol.Rules[r.Name]
		switch {
		case a.Enabled != b.Enabled && b.Enabled:
			out = append(out, "rule "+r.Name+" enabled")
		case a.Enabled != b.Enabled:
			out = append(out, "rule "+r.Name+" disabled")
		}
		if a.Severity != b.Severity {
			out = append(out, "rule "+r.Name+" severity "+a.Severity+" -> "+b.Severity)
		}
	}
	if old.AlertRate != pol.AlertRate || old.AlertBurst != pol.AlertBurst {
		out = append(out, fmt.Sprintf("alerts rate %d/s burst %d -> %d/s burst %d", old.AlertRate, old.AlertBurst, pol.AlertRate, pol.AlertBurst))
	}
	return out
}

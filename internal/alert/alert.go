// Package alert turns bpfmon's stream of map events into tamper alerts that
// a security team can act on. A busy host writes maps all the time; what
// matters is a write to a map that a security tool depends on, by someone
// who is not that tool. So the engine keeps, for every protected map, who
// owns it, and flags the events of everyone else.
//
// Owners are told apart by kernel identities, never by names a process
// chooses: an owner is an executable (its inode) running in a cgroup (its
// id). The owners of a map are the process that created it (seen by the
// syscall sensor), the policy's owners, and either the owners saved when
// bpfmon last ran (trust.go) or, on a first start with no owners in the
// policy, the processes holding it when bpfmon started. A BPF program
// writes for its owners when it used the map when bpfmon started, or was
// loaded by an owner. Names (of maps and programs) only select maps to
// protect; they never exempt anything.
//
// The engine also keeps alerts from being buried: each rule has a rate
// limit, the first alert for each rule, map and process identity always
// passes, and what the limit holds back is counted and reported.
package alert

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"github.com/bpfmon/bpfmon/internal/cgroups"
	"github.com/bpfmon/bpfmon/internal/event"
	"github.com/bpfmon/bpfmon/internal/inventory"
	"github.com/bpfmon/bpfmon/internal/policy"
	"github.com/bpfmon/bpfmon/internal/procexe"
)

// Owner is an identity with what it looks like to a person.
type Owner struct {
	event.Identity
	Exe    string // executable path, as seen when it was learnt
	Cgroup string // cgroup path; "" for any
	How    string // "creator", "holder" (at start), "loader" or "policy"
	// Pod is the learnt owner's pod when it was learnt (a loader's,
	// for its programs' writes: podOwns); nil outside one or unknown.
	Pod *event.Pod
}

func (o Owner) String() string {
	s := o.Exe
	if s == "" {
		s = "inode " + strconv.FormatUint(o.ExeIno, 10)
	}
	if o.CgroupID == 0 {
		return s + " in any cgroup"
	}
	cg := o.Cgroup
	if cg == "" {
		cg = "cgroup " + strconv.FormatUint(o.CgroupID, 10)
	}
	return s + " in " + cg
}

// Enforcer is told what the engine protects and who owns it, so that the
// kernel can refuse everyone else (--enforce). Its methods are called with
// the engine's lock held, in the order the engine learns things.
type Enforcer interface {
	Protect(mapID uint32) error
	// AddOwner lets id write map mapID; mapID 0: every protected map.
	AddOwner(mapID uint32, id event.Identity) error
}

// Config configures an Engine.
type Config struct {
	Policy *policy.Policy
	// SelfPID is bpfmon's process and SelfMaps its maps: any access to
	// them by another process is an alert.
	SelfPID  uint32
	SelfMaps []uint32
	// SelfExe is bpfmon's own executable (device and inode; CgroupID is
	// not compared): its reads, bpfmon maps and features, another
	// bpfmon's content scanner, are not alerts; its writes are judged as
	// anyone's. Zero: none known.
	SelfExe event.Identity
	Cgroups *cgroups.Resolver
	// Enforcer, when set, receives the protected maps and their owners.
	Enforcer Enforcer
	// Itemize, when set, is told of each map the engine starts to
	// protect: the kernel-side sensor then reports every write to it
	// rather than counting a known program's writes (called with the
	// engine's lock held).
	Itemize func(mapID uint32) error
	// Warn reports problems that do not stop the engine (an owner's
	// executable that does not exist, an enforcer that failed).
	Warn func(error)
	// Now is the clock (tests); nil: time.Now.
	Now func() time.Time
	// Restored is who owned the protected maps when bpfmon last ran on
	// this boot (Trust, saved with --state); nil on a first start. A
	// map it lists keeps those owners and no other holder at start; a
	// map it does not list (created while bpfmon was down, or protected
	// for the first time) is owned by its holders at start, as on a
	// first start, unless the policy names owners.
	Restored *Trust
	// DistrustHolders: the state file that would say who owned the
	// protected maps exists but cannot be trusted (damaged, failing its
	// checksum, writable by others). No holder at start becomes an
	// owner; each holding a writable fd is a holder_while_down.
	DistrustHolders bool
}

// Protected is a map the engine guards.
type Protected struct {
	ID     uint32
	Name   string
	Why    string // the selector that chose it
	Owners []Owner
}

type guarded struct {
	id     uint32
	name   string
	why    string
	owners []Owner
	// progs are the programs that used the map when bpfmon started:
	// their writes are their loaders', who were there first.
	progs []uint32
	// immutable: the policy says the map never changes once protected.
	immutable bool
	// What tells an owner's unreported write (a store through a lookup
	// pointer, or a mapping) from a stranger's, for the content
	// scanner's finds (see unexplained):
	//  - ownerMapped: an owner mapped the map writable;
	//  - foreignLoad: the latest load of a program using the map by a
	//    non-owner (the program may be gone by the next pass);
	//  - foreignLasting: a non-owner's writable mapping or iterator
	//    link, which no hook sees end: said until bpfmon stops.
	ownerMapped    bool
	foreignLoad    time.Time
	foreignLasting string
}

// Engine evaluates events against the policy. Safe for concurrent use.
type Engine struct {
	mu      sync.Mutex
	cfg     Config
	pol     *policy.Policy
	self    map[uint32]bool
	guarded map[uint32]*guarded
	// What bpfmon saw at start: each map's holders and programs.
	startHolders map[uint32][]startHolder
	startShapes  map[uint32]event.Map // the maps held at start
	startProgs   map[uint32][]uint32
	idents       map[uint32]Owner // holders' identities by pid, at start
	// pending are events the engine makes itself (holder_while_down),
	// written at the next Tick.
	pending []*event.Event
	// marks are the processes the lineage sensor says are not an
	// owner's work, by pid (lineage.go).
	marks map[uint32]mark
	// Learnt since: who created which map, who loaded which program.
	creators map[uint32]Owner
	loaders  map[uint32]Owner
	// The policy's owners, resolved to identities (exe paths are looked
	// up again at each refresh: an upgrade replaces the inode).
	policyOwners []Owner
	warned       map[int]bool // policy owners (by index) said to be unresolvable
	lim          limiter
	hidden       hiddenState // what the cross-view check reported (hidden.go)
	attach       attachState // the protected programs' attachments (attach.go)
}

// learntMax bounds the creators and loaders kept: maps and programs
// created while bpfmon runs, most of them gone soon after.
const learntMax = 1 << 16

// New returns an engine; call Start with the inventory at start.
func New(cfg Config) *Engine {
	if cfg.Policy == nil {
		cfg.Policy = policy.Default()
	}
	if cfg.Cgroups == nil {
		cfg.Cgroups = cgroups.NewResolver()
	}
	if cfg.Warn == nil {
		cfg.Warn = func(error) {}
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	e := &Engine{cfg: cfg, pol: cfg.Policy, self: map[uint32]bool{}, guarded: map[uint32]*guarded{},
		startHolders: map[uint32][]startHolder{}, startShapes: map[uint32]event.Map{}, startProgs: map[uint32][]uint32{}, idents: map[uint32]Owner{},
		creators: map[uint32]Owner{}, loaders: map[uint32]Owner{}, warned: map[int]bool{}, marks: map[uint32]mark{},
		lim: newLimiter(cfg.Policy.AlertRate, cfg.Policy.AlertBurst)}
	for _, id := range cfg.SelfMaps {
		e.self[id] = true
	}
	return e
}

// Start records the state at start (maps with their holders, programs and
// pins), resolves the policy's owners and protects the maps the policy
// selects. bpfmon's own maps are protected too, owned by bpfmon alone.
func (e *Engine) Start(maps []inventory.Map) {
	e.mu.Lock()
	defer e.mu.Unlock()
	for _, m := range maps {
		for _, h := range m.Holders {
			hs := e.startHolders[m.ID]
			if i := slices.IndexFunc(hs, func(x startHolder) bool { return x.PID == h.PID }); i >= 0 {
				hs[i].fds = append(hs[i].fds, h.FD)
				hs[i].Writable = hs[i].Writable || h.Writable
			} else {
				e.startHolders[m.ID] = append(hs, startHolder{Holder: h, fds: []int{h.FD}})
				e.startShapes[m.ID] = event.Map{ID: m.ID, Name: m.Name, Type: m.TypeID, KeySize: m.KeySize,
					ValueSize: m.ValueSize, MaxEntries: m.MaxEntries, Flags: m.Flags, Frozen: m.Frozen}
			}
			if _, ok := e.idents[h.PID]; !ok {
				if o, err := ProcessOwner(h.PID, e.cfg.Cgroups); err == nil {
					o.How = "holder"
					e.idents[h.PID] = o
				}
			}
		}
		for _, p := range m.Programs {
			e.startProgs[m.ID] = append(e.startProgs[m.ID], p.ID)
		}
	}
	if en := e.cfg.Enforcer; en != nil {
		for id := range e.self {
			e.enforce(en.Protect(id))
		}
	}
	e.resolvePolicyOwners()
	e.refresh(maps)
	e.crossView(maps, true)
	e.scanAttachments(maps, true)
}

// Refresh protects maps that a later inventory shows the policy selects
// (new pins, new programs using a map), and looks up the policy's owners
// again.
func (e *Engine) Refresh(maps []inventory.Map) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.resolvePolicyOwners()
	e.refresh(maps)
	e.crossView(maps, false)
	e.scanAttachments(maps, false)
}

func (e *Engine) refresh(maps []inventory.Map) {
	for _, m := range maps {
		if e.guarded[m.ID] != nil || e.self[m.ID] {
			continue
		}
		progs := make([]event.Prog, 0, len(m.Programs))
		for _, p := range m.Programs {
			progs = append(progs, event.Prog{ID: p.ID, Name: p.Name})
		}
		if why := e.selects(m.ID, m.Name, m.Pins, progs); why != "" {
			e.protect(m.ID, m.Name, why)
		}
	}
}

// resolvePolicyOwners turns the policy's owners into identities. One that
// cannot be resolved (no such executable or cgroup yet) is said once.
func (e *Engine) resolvePolicyOwners() {
	for i, po := range e.pol.Owners {
		if po.PodNamespace != "" {
			// Matched by pod (podOwns), on the executable's path as the
			// pod's mount namespace names it: no identity to resolve
			// here, nor one to give the enforcer, which knows no pods.
			continue
		}
		ino, dev, err := procexe.File(po.Exe)
		if err != nil {
			e.warnOwner(i, fmt.Errorf("policy owner %s (line %d): %w; its writes alert until it exists", po.Exe, po.Line, err))
			continue
		}
		o := Owner{Identity: event.Identity{ExeDev: dev, ExeIno: ino}, Exe: po.Exe, Cgroup: po.Cgroup, How: "policy"}
		if po.Cgroup != "" {
			id, err := cgroupID(e.cfg.Cgroups, po.Cgroup)
			if err != nil {
				e.warnOwner(i, fmt.Errorf("policy owner %s in cgroup %s (line %d): %w; its writes alert until the cgroup exists", po.Exe, po.Cgroup, po.Line, err))
				continue
			}
			o.CgroupID = id
		}
		if slices.ContainsFunc(e.policyOwners, func(x Owner) bool { return x.Identity == o.Identity }) {
			continue
		}
		e.policyOwners = append(e.policyOwners, o)
		if en := e.cfg.Enforcer; en != nil {
			e.enforce(en.AddOwner(0, o.Identity))
		}
	}
}

// warnOwner warns about policy owner i, once: the owners are looked up
// again at every refresh.
func (e *Engine) warnOwner(i int, err error) {
	if !e.warned[i] {
		e.warned[i] = true
		e.cfg.Warn(err)
	}
}

// selects returns the first selector of the policy that picks the map, as
// text, or "".
func (e *Engine) selects(id uint32, name string, pins []string, progs []event.Prog) string {
	for _, s := range e.pol.Protect {
		switch s.Kind {
		case policy.SelectID:
			if s.ID == id {
				return s.String()
			}
		case policy.SelectName:
			if name == s.Value {
				return s.String()
			}
		case policy.SelectPin:
			if slices.Contains(pins, s.Value) {
				return s.String()
			}
		case policy.SelectProgram:
			for _, p := range progs {
				// The kernel keeps 15 bytes of a program's name.
				if p.Name == s.Value || (len(p.Name) == 15 && strings.HasPrefix(s.Value, p.Name)) {
					return s.String()
				}
			}
		case policy.SelectProgramID:
			for _, p := range progs {
				if p.ID == s.ID {
					return s.String()
				}
			}
		}
	}
	return ""
}

// immutable reports whether the selector (as text) that chose a map
// makes it immutable.
func (e *Engine) immutable(why string) bool {
	for _, s := range e.pol.Protect {
		if s.String() == why && s.Immutable {
			return true
		}
	}
	return false
}

// protect starts guarding a map, with the owners known for it: its
// creator, its saved owners or the processes that held it at start
// (bootstrap).
func (e *Engine) protect(id uint32, name, why string, extra ...Owner) *guarded {
	g := e.guarded[id]
	if g == nil {
		g = &guarded{id: id, name: name, why: why, progs: e.startProgs[id], immutable: e.immutable(why)}
		e.guarded[id] = g
		if f := e.cfg.Itemize; f != nil {
			if err := f(id); err != nil {
				e.cfg.Warn(err)
			}
		}
		if en := e.cfg.Enforcer; en != nil {
			e.enforce(en.Protect(id))
		}
		if c, ok := e.creators[id]; ok {
			e.addOwner(g, c)
		}
		e.bootstrap(g)
	}
	for _, o := range extra {
		e.addOwner(g, o)
	}
	return g
}

func (e *Engine) addOwner(g *guarded, o Owner) {
	if o.ExeIno == 0 || slices.ContainsFunc(g.owners, func(x Owner) bool { return x.Identity == o.Identity }) {
		return
	}
	g.owners = append(g.owners, o)
	if en := e.cfg.Enforcer; en != nil {
		e.enforce(en.AddOwner(g.id, o.Identity))
	}
}

func (e *Engine) enforce(err error) {
	if err != nil {
		e.cfg.Warn(fmt.Errorf("enforcement: %w", err))
	}
}

// Protected lists the maps guarded now, by id.
func (e *Engine) Protected() []Protected {
	e.mu.Lock()
	defer e.mu.Unlock()
	out := make([]Protected, 0, len(e.guarded))
	for _, g := range e.guarded {
		out = append(out, Protected{ID: g.id, Name: g.name, Why: g.why, Owners: append(slices.Clone(g.owners), e.policyOwners...)})
	}
	slices.SortFunc(out, func(a, b Protected) int { return int(a.ID) - int(b.ID) })
	return out
}

// Evaluate learns from ev (creators, loaders, maps the policy selects) and
// sets ev.Alert when a rule matches and the rate limit lets it through.
func (e *Engine) Evaluate(ev *event.Event) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.learn(ev)
	rule, reason, key := e.match(ev)
	if rule == "" {
		return
	}
	r, ok := e.pol.Enabled(rule)
	if !ok {
		return
	}
	if !e.lim.allow(rule, key, e.cfg.Now()) {
		return
	}
	ev.Alert = &event.Alert{Rule: rule, Severity: r.Severity, Reason: reason}
}

func succeeded(ev *event.Event) bool { return !ev.HasResult || ev.Result >= 0 }

func identity(p *event.Process) event.Identity { return p.Identity() }

func (e *Engine) ownerOf(p *event.Process, how string) Owner {
	return Owner{Identity: identity(p), Exe: p.Exe, Cgroup: e.cfg.Cgroups.Path(p.CgroupID), How: how, Pod: p.Pod}
}

// learn records what ev teaches: a map's creator, a program's loader, and
// maps that a creation, pin or program load makes the policy select.
func (e *Engine) learn(ev *event.Event) {
	p := ev.Process
	if p == nil || !succeeded(ev) || p.PID == e.cfg.SelfPID {
		return
	}
	e.atWork(ev)
	switch ev.Type {
	case event.MapCreate:
		if ev.Map == nil || ev.Map.ID == 0 {
			return
		}
		c := e.ownerOf(p, "creator")
		bound(e.creators)
		e.creators[ev.Map.ID] = c
		if g := e.guarded[ev.Map.ID]; g != nil {
			e.addOwner(g, c) // the inventory's refresh saw the map first
		} else if why := e.selects(ev.Map.ID, ev.Map.Name, nil, nil); why != "" {
			e.protect(ev.Map.ID, ev.Map.Name, why)
		}
	case event.ObjPin:
		if ev.Map == nil || ev.Path == "" || ev.HasPathFD || e.guarded[ev.Map.ID] != nil {
			return
		}
		if why := e.selects(ev.Map.ID, ev.Map.Name, []string{ev.Path}, nil); why != "" {
			e.protect(ev.Map.ID, ev.Map.Name, why)
		}
	case event.LineageEvent:
		e.learnLineage(ev)
	case event.ProgLoad:
		if _, marked := e.marked(p); ev.Prog == nil || ev.Prog.ID == 0 || marked {
			return // a marked loader's programs write for no owner
		}
		l := e.ownerOf(p, "loader")
		bound(e.loaders)
		e.loaders[ev.Prog.ID] = l
		if why := e.selects(0, "", nil, []event.Prog{*ev.Prog}); why != "" {
			// The program the policy names: its loader owns its maps.
			for _, id := range progMaps(ev) {
				if !e.self[id] {
					e.protect(id, "", why, l)
				}
			}
		}
	}
}

// bound keeps a learnt table under learntMax: when full, it is emptied (the
// entries are maps and programs created while bpfmon ran, which are
// protected, and so remembered, already if the policy selects them).
func bound(m map[uint32]Owner) {
	if len(m) >= learntMax {
		clear(m)
	}
}

// owns reports whether p is an owner of g: it has an owner's identity (or
// is in a pod the policy's owners name: podOwns) and is not marked (lineage.go).
func (e *Engine) owns(g *guarded, p *event.Process) bool {
	if _, marked := e.marked(p); marked {
		return false
	}
	return e.identityOwns(g, identity(p)) || e.podOwns(p)
}

// podOwns reports whether p's pod makes it a policy owner of every
// protected map: its namespace (and the start of its name, and its
// executable's path, where the owner gives them) are an owner's. The pod
// is the container runtime's answer for the container id in p's cgroup
// path (internal/pods), which the process cannot choose; a pod not yet
// known (the runtime is asked when a container is first seen, and until
// it answers only the uid from the cgroup path is known) has no
// namespace, and owns nothing: its writes alert rather than pass. The
// caller checks the lineage marks.
func (e *Engine) podOwns(p *event.Process) bool {
	if p == nil || p.Pod == nil || p.Pod.Namespace == "" || p.ExeIno == 0 {
		return false
	}
	for _, o := range e.pol.Owners {
		if o.PodNamespace != "" && o.PodNamespace == p.Pod.Namespace && strings.HasPrefix(p.Pod.Name, o.PodPrefix) && (o.Exe == "" || o.Exe == p.Exe) {
			return true
		}
	}
	return false
}

// identityOwns reports whether identity id is one of g's owners.
func (e *Engine) identityOwns(g *guarded, id event.Identity) bool {
	if id.ExeIno == 0 {
		return false // no executable: nothing to tell it by
	}
	match := func(o Owner) bool {
		return o.ExeIno == id.ExeIno && (o.ExeDev == 0 || id.ExeDev == 0 || o.ExeDev == id.ExeDev) && (o.CgroupID == 0 || o.CgroupID == id.CgroupID)
	}
	return slices.ContainsFunc(g.owners, match) || slices.ContainsFunc(e.policyOwners, match)
}

// progOwns reports whether program prog writes for g's owners: it used the
// map when bpfmon started, or an owner loaded it.
func (e *Engine) progOwns(g *guarded, prog *event.Prog) bool {
	if prog == nil || prog.Unknown || prog.ID == 0 {
		return false
	}
	if slices.Contains(g.progs, prog.ID) {
		return true
	}
	l, ok := e.loaders[prog.ID]
	return ok && e.owns(g, &event.Process{ExeIno: l.ExeIno, CgroupID: l.CgroupID, Exe: l.Exe, Pod: l.Pod})
}

// limitKey is what makes an alert new for the rate limit: the rule, the
// map and who.
type limitKey struct {
	rule   string
	mapID  uint32
	who    event.Identity
	progID uint32
}

// verbs say, for the events that modify a map (event.Info.Modifies), what
// was done, and what was tried when the call failed.
var verbs = map[event.Type][2]string{
	event.MapUpdate:            {"updated", "tried to update"},
	event.MapDelete:            {"deleted from", "tried to delete from"},
	event.MapLookupAndDelete:   {"deleted from", "tried to delete from"},
	event.MapUpdateBatch:       {"updated (batch)", "tried to update (batch)"},
	event.MapDeleteBatch:       {"deleted from (batch)", "tried to delete from (batch)"},
	event.MapLookupDeleteBatch: {"deleted from (batch)", "tried to delete from (batch)"},
	event.MapFreeze:            {"froze", "tried to freeze"},
	event.MapWritesCounted:     {"wrote (counted writes) to", "tried to write to"},
}

// match returns the rule ev breaks, why, and its rate-limit key.
func (e *Engine) match(ev *event.Event) (string, string, limitKey) {
	switch ev.Type {
	case event.Lost:
		if len(e.guarded) == 0 {
			return "", "", limitKey{}
		}
		return policy.RuleEventsLost, fmt.Sprintf("%d %s events were lost while %d maps are protected: a write to one of them may be among them", ev.Count, ev.Source, len(e.guarded)),
			limitKey{rule: policy.RuleEventsLost}
	case event.AccessDenied:
		return policy.RuleWriteDenied, e.deniedReason(ev), limitKey{rule: policy.RuleWriteDenied, mapID: mapID(ev), who: identity(ev.Process)}
	case event.AlertsSuppressed:
		return "", "", limitKey{}
	case event.MonitorGap, event.HolderWhileDown:
		return e.matchState(ev)
	case event.HiddenObject:
		return e.matchHidden(ev)
	case event.ProgDetached, event.AttachChanged:
		return e.matchDetached(ev)
	}
	p := ev.Process
	if p != nil && p.PID == e.cfg.SelfPID {
		return "", "", limitKey{}
	}
	if ev.Type == event.ProgLoad {
		if rule, why, key := e.matchProgLoad(ev); rule != "" {
			return rule, why, key
		}
		return e.matchRewriting(ev)
	}
	if ev.Type == event.LineageEvent {
		return e.matchLineage(ev)
	}
	if ev.Type == event.LinkDetach || ev.Type == event.LinkUpdate || ev.Type == event.LinkRelease {
		return e.matchLinkOp(ev)
	}
	if ev.Type == event.ProgDetach || ev.Type == event.ProgAttach {
		return e.matchProgOp(ev)
	}
	if ev.Type == event.XDPSet || ev.Type == event.TCFilterDel {
		return e.matchNetAttach(ev)
	}
	if ev.Map == nil {
		return "", "", limitKey{}
	}
	key := limitKey{mapID: ev.Map.ID, who: identity(p)}
	isWrite := ev.Type.Info().Modifies
	handle := ev.Type.Info().Handle && succeeded(ev)
	iter := ev.Type == event.MapIterLink && succeeded(ev)
	if !isWrite && !iter && e.selfRead(ev) {
		return "", "", limitKey{} // bpfmon's own binary reading: bpfmon maps, another bpfmon's scanner
	}
	if e.self[ev.Map.ID] && p != nil && (handle || isWrite || iter || ev.Type == event.MapMmap) {
		key.rule = policy.RuleSelfAccess
		return key.rule, fmt.Sprintf("%s %s bpfmon's own %s", e.who(p), e.did(ev), e.mapText(ev.Map.ID, ev.Map.Name)), key
	}
	g := e.guarded[ev.Map.ID]
	if g == nil {
		return "", "", limitKey{}
	}
	e.notePaths(g, ev, iter)
	switch {
	case ev.Type == event.MapChanged:
		return e.unexplained(g, ev, key)
	case g.immutable && isWrite && succeeded(ev) && (p == nil || e.owns(g, p)) && (ev.Source != event.SourceKernel || ev.Prog == nil || e.progOwns(g, ev.Prog)):
		// An owner's (or the kernel's) write: a stranger's is
		// foreign-write below.
		key.rule, key.progID = policy.RuleImmutableChange, progID(ev)
		by := "the kernel"
		if ev.Source == event.SourceKernel && ev.Prog != nil {
			by = e.progText(ev.Prog)
		} else if p != nil {
			by = e.who(p) + ", an owner,"
		}
		return key.rule, fmt.Sprintf("%s %s %s, which the policy says is immutable", by, e.did(ev), e.guardedText(g)), key
	case isWrite && ev.Source == event.SourceKernel:
		if ev.Prog == nil || e.progOwns(g, ev.Prog) {
			return "", "", limitKey{} // the kernel itself, or an owner's program
		}
		key.rule, key.who, key.progID = policy.RuleForeignWrite, event.Identity{}, ev.Prog.ID
		return key.rule, fmt.Sprintf("%s %s %s; %s", e.progText(ev.Prog), e.did(ev), e.guardedText(g), e.ownersText(g)), key
	case p == nil || e.owns(g, p):
		return "", "", limitKey{}
	case isWrite:
		key.rule = policy.RuleForeignWrite
	case handle:
		key.rule = policy.RuleForeignHandle
	case iter:
		// A program that may rewrite every value, attached by a
		// non-owner: as a foreign program using the map.
		key.rule = policy.RuleForeignProgram
	case ev.Type == event.MapMmap:
		key.rule = policy.RuleForeignMmap
	default:
		return "", "", limitKey{}
	}
	return key.rule, fmt.Sprintf("%s, not an owner, %s %s; %s", e.who(p), e.did(ev), e.guardedText(g), e.ownersText(g)), key
}

// selfRead reports whether ev is a read by a process of bpfmon's own
// executable, known by its inode and device, never by a name: a handle
// or a read-only mapping, by a process the lineage sensor did not mark
// (a loader variable, a tracer, its memory written by another could make
// it do what bpfmon does not).
func (e *Engine) selfRead(ev *event.Event) bool {
	p, self := ev.Process, e.cfg.SelfExe
	if p == nil || self.ExeIno == 0 || p.ExeIno != self.ExeIno || p.ExeDev == 0 || p.ExeDev != self.ExeDev {
		return false
	}
	if ev.Type == event.MapMmap && writableMapping(ev) {
		return false
	}
	if _, marked := e.marked(p); marked {
		return false
	}
	return true
}

// notePaths records the ways to write g that no hook reports: an owner's
// writable mapping, a stranger's program, mapping or iterator.
func (e *Engine) notePaths(g *guarded, ev *event.Event, iter bool) {
	p := ev.Process
	if p == nil || !succeeded(ev) {
		return
	}
	switch {
	case ev.Type == event.MapMmap && writableMapping(ev):
		if e.owns(g, p) {
			g.ownerMapped = true
		} else if g.foreignLasting == "" {
			g.foreignLasting = "a writable mapping by " + e.who(p)
		}
	case iter && !e.owns(g, p) && g.foreignLasting == "":
		g.foreignLasting = "an iterator attached by " + e.who(p)
	}
}

// writableMapping: a map_mmap whose protection includes PROT_WRITE, or
// is not known.
func writableMapping(ev *event.Event) bool {
	return ev.Extra == nil || !ev.Extra.HasProt || ev.Extra.Prot&unix.PROT_WRITE != 0
}

func progID(ev *event.Event) uint32 {
	if ev.Source == event.SourceKernel && ev.Prog != nil {
		return ev.Prog.ID
	}
	return 0
}

// bpfFRdonlyProg is BPF_F_RDONLY_PROG: programs can only read the map.
const bpfFRdonlyProg = 1 << 7

// unexplained judges a change the content scanner found in g that no
// reported write explains. Such a change is an owner's work, not an
// alert, when an owner had an unreported way to write the map (a
// program an owner loaded, or that used the map when bpfmon started,
// and that may write it; or an owner's writable mapping) and no stranger
// had one since the map was read before (a program loaded meanwhile or
// still using it, a writable mapping, an iterator). Immutable maps, and
// changes made while bpfmon was down, when nothing was watched, alert
// whatever the owners could do.
func (e *Engine) unexplained(g *guarded, ev *event.Event, key limitKey) (string, string, limitKey) {
	what := "a " + ev.Change + " element"
	if ev.Change == event.ChangeAdded {
		what = "an added element"
	}
	if ev.HasCount {
		what = strconv.FormatUint(ev.Count, 10) + " changed elements"
	}
	found := fmt.Sprintf("the content scanner found %s in %s that no reported write explains", what, e.guardedText(g))
	key.rule = policy.RuleUnexplainedChange
	if g.immutable {
		key.rule = policy.RuleImmutableChange
		return key.rule, found + ", and the policy says it is immutable", key
	}
	if ev.WhileDown {
		return key.rule, found + ", made while bpfmon was down", key
	}
	if why := e.foreignPath(g, ev); why != "" {
		return key.rule, found + "; a non-owner could write it: " + why, key
	}
	if by := e.ownerPath(g, ev); by != "" {
		return "", "", limitKey{} // an owner's program or mapping did
	}
	return key.rule, found + " (a store through a lookup pointer or a mapping, or a write no hook sees), and no owner's program or mapping can write it", key
}

// foreignPath says how a non-owner could write g without a reported
// write since the map's previous read, or "".
func (e *Engine) foreignPath(g *guarded, ev *event.Event) string {
	if g.foreignLasting != "" {
		return g.foreignLasting
	}
	var since time.Time
	if ev.Extra != nil {
		since = ev.Extra.Since
	}
	if !g.foreignLoad.IsZero() && (since.IsZero() || !g.foreignLoad.Before(since)) {
		return "a program that uses it was loaded by a non-owner at " + g.foreignLoad.UTC().Format(time.RFC3339)
	}
	for _, mp := range ev.Map.Programs {
		if p := (&event.Prog{ID: mp.ID, Name: mp.Name}); !e.progOwns(g, p) {
			return e.progText(p) + ", not an owner's, uses it"
		}
	}
	return ""
}

// ownerPath says how an owner could write g without a reported write:
// one of its programs that uses the map and may write it, or its
// writable mapping; "" if none.
func (e *Engine) ownerPath(g *guarded, ev *event.Event) string {
	if g.ownerMapped {
		return "an owner's mapping"
	}
	if ev.Map.Flags&bpfFRdonlyProg != 0 {
		return ""
	}
	for _, mp := range ev.Map.Programs {
		if p := (&event.Prog{ID: mp.ID, Name: mp.Name}); e.progOwns(g, p) {
			return e.progText(p)
		}
	}
	return ""
}

// matchProgLoad: a program that uses a protected map, loaded by someone
// who does not own it (or any program using bpfmon's maps).
func (e *Engine) matchProgLoad(ev *event.Event) (string, string, limitKey) {
	p := ev.Process
	if p == nil || ev.Prog == nil || ev.Prog.ID == 0 || !succeeded(ev) {
		return "", "", limitKey{}
	}
	key := limitKey{who: identity(p)}
	for _, id := range progMaps(ev) {
		if e.self[id] {
			key.rule, key.mapID = policy.RuleSelfAccess, id
			return key.rule, fmt.Sprintf("%s loaded %s, which uses bpfmon's own map %d", e.who(p), e.progText(ev.Prog), id), key
		}
	}
	for _, id := range progMaps(ev) {
		if g := e.guarded[id]; g != nil && !e.owns(g, p) {
			g.foreignLoad = e.cfg.Now()
		}
	}
	for _, id := range progMaps(ev) {
		if g := e.guarded[id]; g != nil && !e.owns(g, p) {
			key.rule, key.mapID = policy.RuleForeignProgram, id
			return key.rule, fmt.Sprintf("%s, not an owner, loaded %s, which uses %s; %s", e.who(p), e.progText(ev.Prog), e.guardedText(g), e.ownersText(g)), key
		}
	}
	return "", "", limitKey{}
}

func progMaps(ev *event.Event) []uint32 {
	if ev.Extra == nil {
		return nil
	}
	return ev.Extra.ProgMaps
}

func mapID(ev *event.Event) uint32 {
	if ev.Map == nil {
		return 0
	}
	return ev.Map.ID
}

func (e *Engine) deniedReason(ev *event.Event) string {
	what, x := "access", ev.Extra
	if x == nil {
		x = &event.Extra{}
	}
	switch x.Hook {
	case "bpf":
		what = x.Cmd
	case "bpf_map":
		what = "a writable handle"
	case "file_receive":
		what = "receiving a writable handle (SCM_RIGHTS or pidfd_getfd)"
	case "mmap_file":
		what = "a writable mapping"
	}
	s := fmt.Sprintf("refused %s to %s", what, e.who(ev.Process))
	if ev.Map != nil {
		if g := e.guarded[ev.Map.ID]; g != nil {
			s += " on " + e.guardedText(g)
		} else {
			s += " on " + e.mapText(ev.Map.ID, ev.Map.Name)
		}
	}
	return s + " (--enforce)"
}

// who names a process for a reason: pid, executable and cgroup, which is
// how it is told from an owner.
func (e *Engine) who(p *event.Process) string {
	if p == nil {
		return "a task in interrupt context"
	}
	exe := p.Exe
	if exe == "" {
		exe = "unknown executable"
	}
	cg := p.Cgroup
	if cg == "" {
		cg = e.cfg.Cgroups.Path(p.CgroupID)
	}
	if cg == "" {
		cg = "cgroup " + strconv.FormatUint(p.CgroupID, 10)
	}
	return fmt.Sprintf("pid %d (%s in %s)", p.PID, exe, cg)
}

func (e *Engine) did(ev *event.Event) string {
	if w, ok := verbs[ev.Type]; ok {
		if !succeeded(ev) {
			return w[1]
		}
		return w[0]
	}
	switch ev.Type {
	case event.MapGetFDByID:
		return "obtained a handle (BPF_MAP_GET_FD_BY_ID) to"
	case event.ObjGet:
		return "obtained a handle (BPF_OBJ_GET " + ev.Path + ") to"
	case event.MapIterLink:
		if ev.Prog != nil {
			return "attached an iterator, " + e.progText(ev.Prog) + ", which may rewrite every value, to"
		}
		return "attached an iterator, which may rewrite every value, to"
	case event.MapMmap:
		if ev.Extra != nil && ev.Extra.Prot&unix.PROT_WRITE != 0 {
			return "mapped, writable,"
		}
		return "mapped"
	}
	return string(ev.Type) + " on"
}

func (e *Engine) mapText(id uint32, name string) string {
	if name == "" {
		return "map " + strconv.FormatUint(uint64(id), 10)
	}
	return fmt.Sprintf("map %d %q", id, name)
}

func (e *Engine) guardedText(g *guarded) string {
	return fmt.Sprintf("protected %s (%s)", e.mapText(g.id, g.name), g.why)
}

func (e *Engine) progText(p *event.Prog) string {
	if p.Unknown || p.ID == 0 {
		return "an unidentified BPF program"
	}
	s := fmt.Sprintf("program %d %q (tag %s)", p.ID, p.Name, p.Tag)
	if p.Tag == "" { // known from the inventory, which reads no tag
		s = fmt.Sprintf("program %d %q", p.ID, p.Name)
	}
	if l, ok := e.loaders[p.ID]; ok {
		s += " loaded by " + l.String()
	}
	return s
}

func (e *Engine) ownersText(g *guarded) string {
	var all []string
	for _, o := range append(slices.Clone(g.owners), e.policyOwners...) {
		all = append(all, o.String()+" ("+o.How+")")
	}
	for _, o := range e.pol.Owners {
		if o.PodNamespace != "" {
			all = append(all, podOwnerText(o)+" (policy)")
		}
	}
	if len(all) == 0 {
		return "it has no known owner (created before bpfmon started and held by no process then)"
	}
	var parts []string
	for i, o := range all {
		if i == 3 {
			parts = append(parts, fmt.Sprintf("and %d more", len(all)-3))
			break
		}
		parts = append(parts, o)
	}
	return "owners: " + strings.Join(parts, ", ")
}

// podOwnerText names a policy owner by pod.
func podOwnerText(o policy.Owner) string {
	s := "pods in namespace " + o.PodNamespace
	if o.PodPrefix != "" {
		s = "pods " + o.PodPrefix + "* in namespace " + o.PodNamespace
	}
	if o.Exe != "" {
		s = o.Exe + " in " + s
	}
	return s
}

// Tick returns the events the engine made itself since the last tick
// (holder_while_down, for the sink to evaluate and write), and reports
// what the rate limit held back: one alerts_suppressed event per rule,
// itself an alert of that rule's severity so that --alerts-only shows it.
func (e *Engine) Tick() []*event.Event {
	e.mu.Lock()
	defer e.mu.Unlock()
	now := e.cfg.Now()
	out := append(e.takePending(), e.dueAttachments(now)...)
	for _, r := range policy.Rules {
		n := e.lim.suppressed[r.Name]
		if n == 0 {
			continue
		}
		delete(e.lim.suppressed, r.Name)
		rule := e.pol.Rules[r.Name]
		out = append(out, &event.Event{Time: now, Type: event.AlertsSuppressed, Source: event.SourceAlert, HasCount: true, Count: n,
			Alert: &event.Alert{Rule: r.Name, Severity: rule.Severity,
				Reason: fmt.Sprintf("%d more %s alerts were not reported since the last report: rate limit %d/s after a burst of %d (alerts.rate, alerts.burst)", n, r.Name, e.pol.AlertRate, e.pol.AlertBurst)}})
	}
	return out
}

// limiter is a token bucket per rule, with a pass for what is new: the
// first alert of each rule, map and process identity is always reported,
// so a flood from one source cannot hide another.
type limiter struct {
	rate, burst float64
	tokens      map[string]float64
	last        map[string]time.Time
	seen        map[limitKey]bool
	suppressed  map[string]uint64
}

// seenMax bounds the keys remembered as seen; past it, only the buckets
// decide.
const seenMax = 4096

func newLimiter(rate, burst int) limiter {
	return limiter{rate: float64(max(rate, 1)), burst: float64(max(burst, 1)), tokens: map[string]float64{},
		last: map[string]time.Time{}, seen: map[limitKey]bool{}, suppressed: map[string]uint64{}}
}

func (l *limiter) allow(rule string, key limitKey, now time.Time) bool {
	tokens, ok := l.tokens[rule]
	if !ok {
		tokens = l.burst
	} else {
		tokens = min(l.burst, tokens+now.Sub(l.last[rule]).Seconds()*l.rate)
	}
	l.last[rule] = now
	fresh := !l.seen[key] && len(l.seen) < seenMax
	if fresh {
		l.seen[key] = true
	}
	switch {
	case tokens >= 1:
		tokens--
	case !fresh:
		l.tokens[rule] = tokens
		l.suppressed[rule]++
		return false
	}
	l.tokens[rule] = tokens
	return true
}

// ProcessOwner is the identity of a running process, from /proc: the
// inode of its executable and the id of its cgroup.
func ProcessOwner(pid uint32, cg *cgroups.Resolver) (Owner, error) {
	exe, ino, dev, err := procexe.Of(pid)
	if err != nil {
		return Owner{}, err
	}
	o := Owner{Identity: event.Identity{ExeDev: dev, ExeIno: ino}, Exe: exe}
	path, err := cg.ProcessPath(pid)
	if err != nil {
		return Owner{}, err
	}
	id, err := cgroupID(cg, path)
	if err != nil {
		return Owner{}, err
	}
	o.CgroupID, o.Cgroup = id, path
	return o, nil
}

// cgroupID is the id of cgroup path. Without a cgroup2 mount, every
// process is in the root, whose id is 1.
func cgroupID(cg *cgroups.Resolver, path string) (uint64, error) {
	id, err := cg.ID(path)
	if err != nil && cg.Root() == "" && path == "/" {
		return 1, nil
	}
	return id, err
}

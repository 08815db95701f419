package alert

import (
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/bpfmon/bpfmon/internal/cgroups"
	"github.com/bpfmon/bpfmon/internal/event"
	"github.com/bpfmon/bpfmon/internal/inventory"
	"github.com/bpfmon/bpfmon/internal/policy"
)

// The engine's live behaviour (every rule against real bpf(2) calls) is
// tested end to end in cmd/bpfmon; these tests pin down its bookkeeping
// with events built by hand: the rate limit, identities, the policy.

type clock struct{ t time.Time }

func (c *clock) now() time.Time { return c.t }

func update(mapID uint32, who event.Identity, pid uint32) *event.Event {
	return &event.Event{Type: event.MapUpdate, Source: event.SourceSyscall, HasResult: true,
		Process: &event.Process{PID: pid, ExeIno: who.ExeIno, ExeDev: who.ExeDev, CgroupID: who.CgroupID, Exe: "/x"}, Map: &event.Map{ID: mapID, Name: "m"}}
}

func TestRateLimit(t *testing.T) {
	c := &clock{t: time.Unix(1000, 0)}
	pol := policy.Default()
	pol.AlertRate, pol.AlertBurst = 1, 2
	pol.AddProtect(policy.Selector{Kind: policy.SelectID, Value: "7", ID: 7}, policy.Selector{Kind: policy.SelectID, Value: "8", ID: 8})
	e := New(Config{Policy: pol, SelfPID: 1, Now: c.now})
	e.Start([]inventory.Map{{ID: 7}, {ID: 8}})
	foreign := event.Identity{ExeIno: 99, CgroupID: 5}
	alerted := func(ev *event.Event) bool { e.Evaluate(ev); return ev.Alert != nil }

	var got []bool
	for i := 0; i < 5; i++ {
		got = append(got, alerted(update(7, foreign, 100)))
	}
	if want := []bool{true, true, false, false, false}; !slices.Equal(got, want) {
		t.Errorf("a burst of 5 with burst 2: %v, want %v", got, want)
	}
	// Tokens gone, but a new map (or identity) is never held back.
	if !alerted(update(8, foreign, 100)) || !alerted(update(7, event.Identity{ExeIno: 98, CgroupID: 5}, 101)) {
		t.Error("a new map or identity was held back by another's flood")
	}
	// One second later, one token.
	c.t = c.t.Add(time.Second)
	if !alerted(update(7, foreign, 100)) || alerted(update(7, foreign, 100)) {
		t.Error("refill: want one alert after a second, then none")
	}
	evs := e.Tick()
	if len(evs) != 1 || evs[0].Type != event.AlertsSuppressed || evs[0].Count != 4 || evs[0].Alert == nil ||
		evs[0].Alert.Rule != policy.RuleForeignWrite || evs[0].Alert.Severity != policy.SeverityCritical {
		t.Fatalf("suppression report: %+v", evs)
	}
	if len(e.Tick()) != 0 {
		t.Error("a second report of the same suppressions")
	}
}

// TestOwners: the holders at start (on a first start, with no owners in
// the policy) own a map by executable and cgroup, not by pid; a disabled
// rule never alerts; the enforcer hears of every protected map and owner.
// TestTrustAtStart has the policy's owners.
func TestOwners(t *testing.T) {
	cg := cgroups.NewResolver()
	me, err := ProcessOwner(uint32(os.Getpid()), cg)
	if err != nil {
		t.Fatal(err)
	}
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	pol := policy.Default()
	pol.AddProtect(policy.Selector{Kind: policy.SelectName, Value: "guarded"})
	pol.Rules[policy.RuleForeignHandle] = policy.Rule{Name: policy.RuleForeignHandle, Severity: "low", Enabled: false}
	en := &recorder{}
	e := New(Config{Policy: pol, SelfPID: 1, Cgroups: cg, Enforcer: en, SelfMaps: []uint32{3}})
	e.Start([]inventory.Map{
		{ID: 7, Name: "guarded", Holders: []inventory.Holder{{PID: uint32(os.Getpid()), Exe: exe}}},
		{ID: 9, Name: "other"},
	})
	p := e.Protected()
	if len(p) != 1 || p[0].ID != 7 || p[0].Why != "name:guarded" || len(p[0].Owners) != 1 || p[0].Owners[0].Identity != me.Identity {
		t.Fatalf("protected: %+v", p)
	}
	for _, tc := range []struct {
		name string
		ev   *event.Event
		rule string
	}{
		{"the holder's executable in its cgroup, another pid", update(7, me.Identity, 4242), ""},
		{"the holder's executable in another cgroup", update(7, event.Identity{ExeIno: me.ExeIno, CgroupID: me.CgroupID + 1}, 4242), policy.RuleForeignWrite},
		{"the holder's inode number on another filesystem", update(7, event.Identity{ExeIno: me.ExeIno, ExeDev: me.ExeDev + 1, CgroupID: me.CgroupID}, 4243), policy.RuleForeignWrite},
		{"another executable", update(7, event.Identity{ExeIno: me.ExeIno + 1, CgroupID: me.CgroupID}, 4244), policy.RuleForeignWrite},
		{"a map nobody protects", update(9, event.Identity{ExeIno: 1, CgroupID: 1}, 4245), ""},
		{"a disabled rule", &event.Event{Type: event.MapGetFDByID, HasResult: true, Result: 4,
			Process: &event.Process{PID: 4246, ExeIno: 1, CgroupID: 1}, Map: &event.Map{ID: 7}}, ""},
		{"bpfmon's own map", update(3, me.Identity, 4247), policy.RuleSelfAccess},
	} {
		e.Evaluate(tc.ev)
		switch {
		case tc.rule == "" && tc.ev.Alert != nil:
			t.Errorf("%s: alert %+v", tc.name, *tc.ev.Alert)
		case tc.rule != "" && (tc.ev.Alert == nil || tc.ev.Alert.Rule != tc.rule):
			t.Errorf("%s: alert %+v, want %s", tc.name, tc.ev.Alert, tc.rule)
		case tc.rule == policy.RuleForeignWrite && !strings.Contains(tc.ev.Alert.Reason, "owners: "+exe):
			t.Errorf("%s: the reason does not name the owners: %s", tc.name, tc.ev.Alert.Reason)
		}
	}
	// A map created later with the selected name: its creator owns it.
	creator := event.Identity{ExeIno: 555, CgroupID: 6}
	e.Evaluate(&event.Event{Type: event.MapCreate, HasResult: true, Result: 3, Process: &event.Process{PID: 50, ExeIno: 555, CgroupID: 6}, Map: &event.Map{ID: 20, Name: "guarded"}})
	byCreator, byOther := update(20, creator, 51), update(20, me.Identity, 52)
	e.Evaluate(byCreator)
	e.Evaluate(byOther)
	if byCreator.Alert != nil || byOther.Alert == nil {
		t.Errorf("the creator's write alerted: %+v; another identity's did not: %v", byCreator.Alert, byOther.Alert == nil)
	}
	// Each exactly (a substring of the joined log would take "protect 30"
	// for "protect 3"), and nothing else.
	want := []string{"protect 3", "protect 7", "add 7 me", "protect 20", "add 20 555"}
	got := slices.Clone(en.log)
	slices.Sort(got)
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Errorf("the enforcer was told %q, want %q", en.log, want)
	}
}

// TestMissingOwnerWarnedOnce: a policy owner whose executable does not
// exist is said once, not at every refresh; once it exists, it owns.
func TestMissingOwnerWarnedOnce(t *testing.T) {
	exe := t.TempDir() + "/agent"
	pol := policy.Default()
	pol.Owners = []policy.Owner{{Exe: exe, Line: 3}}
	var warnings []string
	e := New(Config{Policy: pol, Warn: func(err error) { warnings = append(warnings, err.Error()) }})
	e.Start(nil)
	e.Refresh(nil)
	e.Refresh(nil)
	if len(warnings) != 1 || !strings.Contains(warnings[0], exe) {
		t.Fatalf("warnings: %q, want one naming %s", warnings, exe)
	}
	if err := os.WriteFile(exe, nil, 0o755); err != nil {
		t.Fatal(err)
	}
	e.Refresh(nil)
	if len(e.policyOwners) != 1 || e.policyOwners[0].Exe != exe {
		t.Errorf("policy owners once the executable exists: %+v", e.policyOwners)
	}
}

// recorder is an Enforcer that writes down what it is told.
type recorder struct{ log []string }

func (r *recorder) Protect(id uint32) error {
	r.log = append(r.log, "protect "+itoa(id))
	return nil
}

func (r *recorder) AddOwner(id uint32, o event.Identity) error {
	who := itoa64(o.ExeIno)
	if exe, err := os.Executable(); err == nil {
		var st unix.Stat_t
		if unix.Stat(exe, &st) == nil && st.Ino == o.ExeIno {
			who = "me"
		}
	}
	var sh unix.Stat_t
	if unix.Stat("/bin/sh", &sh) == nil && sh.Ino == o.ExeIno {
		who = "sh"
	}
	r.log = append(r.log, "add "+itoa(id)+" "+who)
	return nil
}

func itoa(v uint32) string   { return strconv.FormatUint(uint64(v), 10) }
func itoa64(v uint64) string { return strconv.FormatUint(v, 10) }

// BenchmarkEvaluate is the engine's cost per event on the write path, for
// the common case: a write to a map nobody protects.
func BenchmarkEvaluate(b *testing.B) {
	pol := policy.Default()
	pol.AddProtect(policy.Selector{Kind: policy.SelectID, Value: "7", ID: 7})
	e := New(Config{Policy: pol, SelfPID: 1, SelfMaps: []uint32{3, 4, 5}})
	e.Start([]inventory.Map{{ID: 7}, {ID: 9}})
	ev := update(9, event.Identity{ExeIno: 99, CgroupID: 5}, 100)
	b.ReportAllocs()
	for b.Loop() {
		e.Evaluate(ev)
	}
}

// BenchmarkEvaluateProtected is the cost per event on a protected map: an
// owner's write, and a change the content scanner found that the owner's
// program explains.
func BenchmarkEvaluateProtected(b *testing.B) {
	pol := policy.Default()
	pol.AddProtect(policy.Selector{Kind: policy.SelectID, Value: "7", ID: 7})
	e := New(Config{Policy: pol, SelfPID: 1, SelfMaps: []uint32{3, 4, 5}})
	e.Start([]inventory.Map{{ID: 7, Programs: []inventory.Program{{ID: 100}}}})
	e.Evaluate(&event.Event{Type: event.MapCreate, HasResult: true, Result: 3,
		Process: &event.Process{PID: 100, ExeIno: 99, CgroupID: 5}, Map: &event.Map{ID: 7}})
	write := update(7, event.Identity{ExeIno: 99, CgroupID: 5}, 100)
	changed := &event.Event{Type: event.MapChanged, Source: event.SourceScan, Change: event.ChangeModified,
		Map: &event.Map{ID: 7, Programs: []event.MapProgram{{ID: 100}}}}
	b.ReportAllocs()
	for b.Loop() {
		e.Evaluate(write)
		changed.Alert = nil
		e.Evaluate(changed)
	}
}

// TestVerbsCoverModifyingTypes: every event type the table says modifies
// a map is alerted as a write, and its reason needs words for it.
func TestVerbsCoverModifyingTypes(t *testing.T) {
	for _, typ := range event.Types {
		if _, ok := verbs[typ]; ok != typ.Info().Modifies {
			t.Errorf("%s: verbs %v, modifies %v", typ, ok, typ.Info().Modifies)
		}
	}
}

// TestUnexplainedChange: a change the content scanner finds in a
// protected map alerts only when no owner could have made it unreported,
// or a stranger could have: an owner's program using the map (one there
// at start, or loaded by an owner) or an owner's writable mapping
// explain it; a stranger's program (loaded since the previous read, or
// still using the map), writable mapping or iterator do not; nor do a
// read-only map for programs, a change while down, or an immutable map.
func TestUnexplainedChange(t *testing.T) {
	c := &clock{t: time.Unix(1000, 0)}
	cg := cgroups.NewResolver()
	me, err := ProcessOwner(uint32(os.Getpid()), cg)
	if err != nil {
		t.Fatal(err)
	}
	exe, _ := os.Executable()
	pol := policy.Default()
	pol.AlertBurst = 1000
	for _, id := range []uint32{7, 8, 9, 10, 11} {
		pol.AddProtect(policy.Selector{Kind: policy.SelectID, Value: strconv.Itoa(int(id)), ID: id, Immutable: id == 11})
	}
	e := New(Config{Policy: pol, SelfPID: 1, Cgroups: cg, Now: c.now})
	holder := []inventory.Holder{{PID: uint32(os.Getpid()), Exe: exe}}
	ownerProg := []inventory.Program{{ID: 100, Name: "owner_count"}}
	e.Start([]inventory.Map{{ID: 7, Holders: holder, Programs: ownerProg}, {ID: 8, Holders: holder},
		{ID: 9, Holders: holder, Programs: ownerProg}, {ID: 10, Holders: holder, Programs: ownerProg},
		{ID: 11, Holders: holder, Programs: ownerProg}})
	stranger := &event.Process{PID: 4000, ExeIno: me.ExeIno + 1, CgroupID: me.CgroupID, Exe: "/x"}
	owner := &event.Process{PID: 4001, ExeIno: me.ExeIno, CgroupID: me.CgroupID, Exe: exe}
	progs := func(ids ...uint32) []event.MapProgram {
		var ps []event.MapProgram
		for _, id := range ids {
			ps = append(ps, event.MapProgram{ID: id, Name: "p" + strconv.Itoa(int(id))})
		}
		return ps
	}
	changed := func(id uint32, flags uint32, since time.Time, ps []event.MapProgram) *event.Event {
		return &event.Event{Time: c.t, Type: event.MapChanged, Source: event.SourceScan, Change: event.ChangeModified,
			Map: &event.Map{ID: id, Flags: flags, Programs: ps}, Extra: &event.Extra{Since: since}}
	}
	rule := func(ev *event.Event) string {
		e.Evaluate(ev)
		if ev.Alert == nil {
			return ""
		}
		return ev.Alert.Rule
	}
	check := func(name string, ev *event.Event, want string) {
		t.Helper()
		if got := rule(ev); got != want {
			t.Errorf("%s: rule %q, want %q (%+v)", name, got, want, ev.Alert)
		}
	}
	un, im := policy.RuleUnexplainedChange, policy.RuleImmutableChange
	before := c.t.Add(-time.Second)

	check("the owner's program at start uses it", changed(7, 0, before, progs(100)), "")
	check("read-only for programs", changed(7, bpfFRdonlyProg, before, progs(100)), un)
	check("no program uses it", changed(7, 0, before, nil), un)
	check("a program nobody saw loaded uses it too", changed(7, 0, before, progs(100, 200)), un)
	wd := changed(7, 0, before, progs(100))
	wd.WhileDown = true
	check("while down", wd, un)

	// A program an owner loads owns its writes.
	e.Evaluate(&event.Event{Time: c.t, Type: event.ProgLoad, HasResult: true, Result: 5, Process: owner,
		Prog: &event.Prog{ID: 300, Name: "owner2"}, Extra: &event.Extra{ProgMaps: []uint32{7}}})
	check("a program the owner loaded", changed(7, 0, before, progs(300)), "")

	// A stranger's program, loaded at 1000s and gone by the next pass.
	load := &event.Event{Time: c.t, Type: event.ProgLoad, HasResult: true, Result: 5, Process: stranger,
		Prog: &event.Prog{ID: 400, Name: "evil"}, Extra: &event.Extra{ProgMaps: []uint32{7}}}
	check("the stranger's load", load, policy.RuleForeignProgram)
	check("a change since before the stranger's load", changed(7, 0, before, progs(100)), un)
	c.t = c.t.Add(10 * time.Second)
	check("a change in a later window", changed(7, 0, c.t.Add(-time.Second), progs(100)), "")

	// Mappings: an owner's writable one explains; a stranger's read-only
	// one does not taint, its writable one does, for good.
	mmap := func(id uint32, p *event.Process, prot uint32) *event.Event {
		return &event.Event{Time: c.t, Type: event.MapMmap, HasResult: true, Result: 0x7f0000, Process: p,
			Map: &event.Map{ID: id}, Extra: &event.Extra{Prot: prot, HasProt: true}}
	}
	check("no way to write map 8", changed(8, 0, before, nil), un)
	check("the owner maps 8", mmap(8, owner, unix.PROT_READ|unix.PROT_WRITE), "")
	check("the owner's mapping", changed(8, 0, before, nil), "")
	check("a stranger maps 9 read-only", mmap(9, stranger, unix.PROT_READ), policy.RuleForeignMmap)
	check("after a read-only mapping", changed(9, 0, before, progs(100)), "")
	check("a stranger maps 9 writable", mmap(9, stranger, unix.PROT_READ|unix.PROT_WRITE), policy.RuleForeignMmap)
	c.t = c.t.Add(time.Hour)
	ev := changed(9, 0, c.t.Add(-time.Second), progs(100))
	check("after a writable mapping, an hour on", ev, un)
	if ev.Alert != nil && !strings.Contains(ev.Alert.Reason, "a writable mapping by pid 4000") {
		t.Errorf("the reason does not say who could write: %s", ev.Alert.Reason)
	}
	check("a stranger's iterator on 10", &event.Event{Time: c.t, Type: event.MapIterLink, HasResult: true, Result: 8, Process: stranger,
		Map: &event.Map{ID: 10}, Prog: &event.Prog{ID: 500}}, policy.RuleForeignProgram)
	check("after the iterator", changed(10, 0, c.t.Add(-time.Second), progs(100)), un)

	// Immutable: any change, the owner's reported write included.
	check("immutable, the owner's program could", changed(11, 0, before, progs(100)), im)
	check("immutable, the owner's update", update(11, owner.Identity(), owner.PID), im)
	check("immutable, a stranger's update", update(11, stranger.Identity(), stranger.PID), policy.RuleForeignWrite)
	check("immutable, the owner's program writes (kernel)", &event.Event{Time: c.t, Type: event.MapUpdate, Source: event.SourceKernel,
		Map: &event.Map{ID: 11}, Prog: &event.Prog{ID: 100, Name: "owner_count"}}, im)
	check("not immutable, the owner's program writes (kernel)", &event.Event{Time: c.t, Type: event.MapUpdate, Source: event.SourceKernel,
		Map: &event.Map{ID: 7}, Prog: &event.Prog{ID: 100, Name: "owner_count"}}, "")
}

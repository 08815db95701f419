package alert

import (
	"strings"
	"testing"
	"time"

	"github.com/bpfmon/bpfmon/internal/event"
	"github.com/bpfmon/bpfmon/internal/inventory"
	"github.com/bpfmon/bpfmon/internal/policy"
)

// Owners named by pod (policy owners with pod_namespace): a process in a
// pod of the namespace (as the runtime named it: process.pod) owns every
// protected map; one in another namespace, one whose pod is not known
// yet, one in a pod of the wrong name or executable, and a marked one do
// not. A program an owner by pod loaded writes for the owners, and a call
// by one counts as the owners' work for program-detached.

// podEngine guards map 7, whose owners are the policy's: any process in
// namespace kube-system, and /usr/bin/agent in the pods agent-* of
// namespace tools.
func podEngine(t *testing.T) *Engine {
	t.Helper()
	pol, err := policy.Parse("pods.yaml", []byte("version: 1\nprotect:\n  - id: 7\nowners:\n  - pod_namespace: kube-system\n  - {pod_namespace: tools, pod_name_prefix: agent-, exe: /usr/bin/agent}\nalerts: {rate: 100000, burst: 100000}\n"))
	if err != nil {
		t.Fatal(err)
	}
	c := &clock{t: time.Unix(1000, 0)}
	e := New(Config{Policy: pol, SelfPID: 1, Now: c.now, Warn: func(err error) { t.Error(err) }})
	e.Start([]inventory.Map{{ID: 7, Name: "guarded"}})
	return e
}

// inPod is a process in a container of pod ns/name, with executable exe.
func inPod(pid uint32, ns, name, exe string) *event.Process {
	p := &event.Process{PID: pid, TID: pid, StartTime: uint64(pid), Exe: exe, ExeIno: 700 + uint64(pid), ExeDev: 8, CgroupID: 900 + uint64(pid),
		ContainerID: strings.Repeat("a", 64)}
	if ns != "" || name != "" {
		p.Pod = &event.Pod{Namespace: ns, Name: name, UID: "0b1c2d3e-0000-4000-8000-000000000001", Container: "c"}
	}
	return p
}

func TestPodOwners(t *testing.T) {
	for _, tc := range []struct {
		name string
		p    *event.Process
		want string // the rule of its write to map 7, "" for none
	}{
		{"in the namespace", inPod(10, "kube-system", "coredns-1", "/coredns"), ""},
		{"prefix, exe and namespace", inPod(11, "tools", "agent-x7", "/usr/bin/agent"), ""},
		{"another namespace", inPod(12, "default", "coredns-1", "/coredns"), policy.RuleForeignWrite},
		{"a namespace the prefix is of", inPod(13, "kube", "kube-system", "/coredns"), policy.RuleForeignWrite},
		{"pod not known yet: uid from the cgroup only", inPod(14, "", "", "/coredns"), policy.RuleForeignWrite},
		{"outside a pod", &event.Process{PID: 15, Exe: "/coredns", ExeIno: 715, CgroupID: 915}, policy.RuleForeignWrite},
		{"other pod name", inPod(16, "tools", "web-1", "/usr/bin/agent"), policy.RuleForeignWrite},
		{"other executable", inPod(17, "tools", "agent-x7", "/bin/sh"), policy.RuleForeignWrite},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := podEngine(t)
			if tc.p.Pod != nil && tc.p.Pod.Namespace == "" {
				tc.p.Pod = &event.Pod{UID: "0b1c2d3e-0000-4000-8000-000000000001"}
			}
			if got := writeAlert(e, tc.p); got != tc.want {
				t.Errorf("write by %+v (pod %+v): rule %q, want %q", tc.p, tc.p.Pod, got, tc.want)
			}
		})
	}
}

// TestPodOwnerMarked: a process in an owner's namespace that the lineage
// sensor marked is no owner; its unmarked neighbour in the same pod is.
func TestPodOwnerMarked(t *testing.T) {
	for _, kind := range []string{event.LineageCgroupJoin, event.LineageLoaderEnv, event.LineagePtraceAttach} {
		t.Run(kind, func(t *testing.T) {
			e := podEngine(t)
			victim := inPod(20, "kube-system", "coredns-1", "/coredns")
			actor := &event.Process{PID: 30, TID: 30, Exe: "/bin/sh", ExeIno: 1, CgroupID: 1}
			if kind == event.LineageLoaderEnv {
				actor = victim
			}
			e.Evaluate(lineageEvent(kind, actor, victim))
			if got := writeAlert(e, victim); got != policy.RuleForeignWrite {
				t.Errorf("write by the marked process: rule %q, want foreign-write", got)
			}
			if got := writeAlert(e, inPod(21, "kube-system", "coredns-1", "/coredns")); got != "" {
				t.Errorf("write by an unmarked process of the pod: rule %q, want none", got)
			}
		})
	}
}

// TestPodOwnerPrograms: a program loaded by an owner by pod writes for
// the owners; one loaded by a stranger, or by the owner's process before
// its pod was known, does not.
func TestPodOwnerPrograms(t *testing.T) {
	e := podEngine(t)
	load := func(id uint32, p *event.Process) {
		e.Evaluate(&event.Event{Type: event.ProgLoad, Source: event.SourceSyscall, HasResult: true, Result: 5, Process: p,
			Prog: &event.Prog{ID: id, Name: "p"}, Extra: &event.Extra{ProgMaps: []uint32{7}}})
	}
	load(100, inPod(40, "kube-system", "cilium-1", "/cilium"))
	load(101, inPod(41, "default", "web-1", "/cilium"))
	load(102, inPod(42, "", "", "/cilium"))
	for id, want := range map[uint32]string{100: "", 101: policy.RuleForeignWrite, 102: policy.RuleForeignWrite} {
		ev := &event.Event{Type: event.MapUpdate, Source: event.SourceKernel, Prog: &event.Prog{ID: id, Name: "p"}, Map: &event.Map{ID: 7, Name: "guarded"}}
		e.Evaluate(ev)
		got := ""
		if ev.Alert != nil {
			got = ev.Alert.Rule
		}
		if got != want {
			t.Errorf("kernel write by program %d: rule %q, want %q", id, got, want)
		}
	}
	// The owners are named in an alert's reason.
	ev := &event.Event{Type: event.MapUpdate, Source: event.SourceSyscall, HasResult: true, Process: inPod(43, "default", "x", "/x"), Map: &event.Map{ID: 7}}
	e.Evaluate(ev)
	if ev.Alert == nil || !strings.Contains(ev.Alert.Reason, "pods in namespace kube-system (policy)") || !strings.Contains(ev.Alert.Reason, "/usr/bin/agent in pods agent-* in namespace tools (policy)") {
		t.Errorf("alert %+v: want the owners by pod in its reason", ev.Alert)
	}
}

// TestPodOwnerDetach: a detach found by the attachment scan is the
// owners' work when an owner by pod made a call since the scan before; a
// call by a process whose pod is not known yet is not.
func TestPodOwnerDetach(t *testing.T) {
	c := &clock{t: time.Unix(1000, 0)}
	pol, err := policy.Parse("pods.yaml", []byte("version: 1\nprotect:\n  - id: 7\nowners:\n  - pod_namespace: kube-system\n"))
	if err != nil {
		t.Fatal(err)
	}
	e := New(Config{Policy: pol, SelfPID: 1, Now: c.now, Warn: func(err error) { t.Error(err) }})
	xdp := inventory.Attachment{Kind: "xdp", Point: "xdp skb on v0 (ifindex 5, netns 1)", Interface: "v0", Mode: "skb"}
	with := inventory.Map{ID: 7, Name: "rules", Programs: []inventory.Program{{ID: 100, Name: "fw", Attachments: []inventory.Attachment{xdp}}}}
	without := inventory.Map{ID: 7, Name: "rules", Programs: []inventory.Program{{ID: 100, Name: "fw"}}}
	e.Start([]inventory.Map{with})
	scan := func(m inventory.Map) []*event.Event {
		t.Helper()
		c.t = c.t.Add(10 * time.Second)
		e.Refresh([]inventory.Map{m})
		c.t = c.t.Add(attachDelay)
		evs := e.Tick()
		for _, ev := range evs {
			e.Evaluate(ev)
		}
		return evs
	}
	call := func(p *event.Process) {
		c.t = c.t.Add(time.Second)
		e.Evaluate(&event.Event{Type: event.ObjGet, HasResult: true, Result: 4, Process: p, Map: &event.Map{ID: 7}})
	}
	for _, tc := range []struct {
		name  string
		p     *event.Process
		alert bool
	}{
		{"pod not known yet", inPod(50, "", "", "/cilium"), true},
		{"owner by pod", inPod(51, "kube-system", "cilium-1", "/cilium"), false},
	} {
		scan(with)
		if tc.p.Pod != nil && tc.p.Pod.Namespace == "" {
			tc.p.Pod = &event.Pod{UID: "0b1c2d3e-0000-4000-8000-000000000001"}
		}
		call(tc.p)
		evs := scan(without)
		if len(evs) != 1 || evs[0].Type != event.ProgDetached || (evs[0].Alert != nil) != tc.alert {
			t.Errorf("%s, then the detach: %+v, want an alert %v", tc.name, evs, tc.alert)
		}
	}
}

// TestPodOwnerReload: a reload that drops the owner by pod makes its
// pod's processes strangers, and says so.
func TestPodOwnerReload(t *testing.T) {
	e := podEngine(t)
	p := inPod(60, "kube-system", "coredns-1", "/coredns")
	if got := writeAlert(e, p); got != "" {
		t.Fatalf("before the reload: rule %q, want none", got)
	}
	next, err := policy.Parse("pods.yaml", []byte("version: 1\nprotect:\n  - id: 7\nowners:\n  - {pod_namespace: tools, pod_name_prefix: agent-, exe: /usr/bin/agent}\n"))
	if err != nil {
		t.Fatal(err)
	}
	changes := e.Reload(next, []inventory.Map{{ID: 7, Name: "guarded"}})
	if !strings.Contains(changes, "pods in namespace kube-system") {
		t.Errorf("changes %q: want the dropped owner by pod named", changes)
	}
	if got := writeAlert(e, p); got != policy.RuleForeignWrite {
		t.Errorf("after the reload: rule %q, want foreign-write", got)
	}
}

package main

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/bpfmon/bpfmon/internal/testutil"
	"github.com/bpfmon/bpfmon/internal/testutil/critest"
)

// podEvent is what the pod test reads of an event.
type podEvent struct {
	Event   string
	Alert   *struct{ Rule, Reason string }
	Map     *struct{ ID uint32 }
	Process *struct {
		PID         int
		Cgroup      string
		ContainerID string `json:"container_id"`
		Pod         *struct{ Namespace, Name, UID, Container string }
	}
}

// writesTo returns the map_update events on map id.
func writesTo(t *testing.T, lines []string, id uint32) []podEvent {
	t.Helper()
	var out []podEvent
	for _, l := range lines {
		var ev podEvent
		if err := json.Unmarshal([]byte(l), &ev); err != nil {
			t.Fatalf("invalid JSON line %q: %v", l, err)
		}
		if ev.Event == "map_update" && ev.Map != nil && ev.Map.ID == id && ev.Process != nil {
			out = append(out, ev)
		}
	}
	return out
}

// TestWatchPods: a pod prod/web-1, started through a real containerd's
// CRI by the test acting as the kubelet, writes a map again and again (a
// host binary run with chroot in its privileged container, so in the
// pod's cgroups). bpfmon watch names the pod (namespace, name, uid,
// container) from containerd for those writes, and no pod for a host
// process's write to the same map. With containerd stopped, a new watch
// still reports the pod's writes, with the pod uid from the cgroup path.
func TestWatchPods(t *testing.T) {
	testutil.RequireRoot(t)
	rt := critest.Start(t)
	m, id := newMap(t)
	defer m.Close()
	foreign := testutil.ForeignExecutable(t, "foreign.test")

	w := startWatch(t, "--format", "json", "--cri-socket", rt.Socket, "--scan-interval", "0", "--metrics-addr", "127.0.0.1:0")
	if !strings.Contains(w.stderr.String(), "pod_metadata") {
		t.Errorf("the features line names no pod_metadata: %s", w.stderr.String())
	}
	loop := fmt.Sprintf("while :; do chroot /host %s -test.run='^$'; sleep 0.2; done", foreign)
	pod := rt.RunPod(t, "prod", "web-1", "app", map[string]string{actEnv: fmt.Sprintf("update:%d:1", id)}, "/bin/sh", "-c", loop)
	act(t, foreign, fmt.Sprintf("update:%d:2", id)) // a host process

	var named *podEvent
	deadline := time.Now().Add(testutil.Timeout(20 * time.Second))
	for named == nil {
		for _, ev := range writesTo(t, w.lines(t), id) {
			if p := ev.Process.Pod; p != nil && p.Name != "" {
				named = &ev
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("no write to map %d named pod prod/web-1 within 20s; container log: %s; events: %v", id, rt.Logs(pod), writesTo(t, w.lines(t), id))
		}
		time.Sleep(200 * time.Millisecond)
	}
	p := named.Process
	if *p.Pod != (struct{ Namespace, Name, UID, Container string }{"prod", "web-1", pod.UID, "app"}) || p.ContainerID != pod.ContainerID {
		t.Errorf("pod %+v, container %s; want prod/web-1 uid %s container app, id %s", *p.Pod, p.ContainerID, pod.UID, pod.ContainerID)
	}
	if !strings.Contains(p.Cgroup, "pod"+pod.UID) {
		t.Errorf("cgroup %s: want the kubelet's layout with pod%s", p.Cgroup, pod.UID)
	}
	hosts := 0
	for _, ev := range writesTo(t, w.lines(t), id) {
		if ev.Process.ContainerID == "" {
			hosts++
			if ev.Process.Pod != nil {
				t.Errorf("a host process's write names pod %+v", *ev.Process.Pod)
			}
		}
	}
	if hosts == 0 {
		t.Error("the host process's write is missing")
	}
	w.stop(t, syscall.SIGINT)

	// containerd stopped: the pod's processes go on, no runtime answers.
	rt.Stop(t)
	w2 := startWatch(t, "--format", "json", "--cri-socket", rt.Socket, "--scan-interval", "0")
	deadline = time.Now().Add(testutil.Timeout(20 * time.Second))
	for {
		evs := writesTo(t, w2.lines(t), id)
		var pod2 *podEvent
		for _, ev := range evs {
			if ev.Process.ContainerID == pod.ContainerID {
				pod2 = &ev
			}
		}
		if pod2 != nil {
			if p := pod2.Process.Pod; p == nil || p.UID != pod.UID || p.Name != "" {
				t.Errorf("with containerd stopped: pod %+v, want uid %s only", p, pod.UID)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no write by the pod with containerd stopped within 20s: %v", evs)
		}
		time.Sleep(200 * time.Millisecond)
	}
	w2.stop(t, syscall.SIGINT)
}

// TestWatchPodOwners: a policy whose owner is the pod namespace prod,
// and pod prod/web-1 started through a real containerd as the kubelet
// would. Its processes are marked by the lineage sensor twice over:
// containerd's opt plugin (on by default) sets LD_LIBRARY_PATH in
// containerd's own environment, so each shim starts with it (loader_env),
// and runc's cgroupfs driver moves the container's first process into its
// cgroup (cgroup_join, seen with the plugin disabled). A marked process
// is no owner whatever its pod: the pod's writes to the protected map are
// foreign-write, as a host process's are, and the alert names the owners
// by pod (docs/alerts.md, "Owners by pod"). The unmarked case is
// internal/alert's TestPodOwners.
func TestWatchPodOwners(t *testing.T) {
	testutil.RequireRoot(t)
	rt := critest.Start(t)
	m, id := newMap(t)
	defer m.Close()
	foreign := testutil.ForeignExecutable(t, "foreign.test")
	pol := filepath.Join(t.TempDir(), "pods.yaml")
	if err := os.WriteFile(pol, []byte(fmt.Sprintf("version: 1\nprotect:\n  - id: %d\nowners:\n  - pod_namespace: prod\nalerts: {rate: 100000, burst: 100000}\n", id)), 0o600); err != nil {
		t.Fatal(err)
	}
	w := startWatch(t, "--format", "json", "--cri-socket", rt.Socket, "--scan-interval", "0", "--policy", pol)
	loop := fmt.Sprintf("while :; do chroot /host %s -test.run='^$'; sleep 0.2; done", foreign)
	pod := rt.RunPod(t, "prod", "web-1", "app", map[string]string{actEnv: fmt.Sprintf("update:%d:1", id)}, "/bin/sh", "-c", loop)
	act(t, foreign, fmt.Sprintf("update:%d:2", id)) // a host process

	deadline := time.Now().Add(testutil.Timeout(20 * time.Second))
	for {
		var named, host []podEvent
		for _, ev := range writesTo(t, w.lines(t), id) {
			switch {
			case ev.Process.ContainerID == "":
				host = append(host, ev)
			case ev.Process.Pod != nil && ev.Process.Pod.Namespace == "prod":
				named = append(named, ev)
			}
		}
		if len(named) >= 2 && len(host) > 0 {
			for _, ev := range append(named, host...) {
				if ev.Alert == nil || ev.Alert.Rule != "foreign-write" || !strings.Contains(ev.Alert.Reason, "owners: pods in namespace prod (policy)") {
					t.Errorf("a write by pid %d (pod %+v): alert %+v, want a foreign-write naming the owners by pod", ev.Process.PID, ev.Process.Pod, ev.Alert)
				}
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("within 20s: %d writes named pod prod/web-1 (want 2), %d by the host (want 1); container log: %s", len(named), len(host), rt.Logs(pod))
		}
		time.Sleep(200 * time.Millisecond)
	}
	w.stop(t, syscall.SIGINT)
}
